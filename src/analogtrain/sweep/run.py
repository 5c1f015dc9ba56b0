"""Running a sweep on Ray: local by default, a cluster with ``address``.

Each point is one Ray task asking for one CPU (``num_cpus=1``) -- or one GPU per point where the
spec trains on CUDA -- so Ray places as many points side by side as the machine or cluster has
cores.  Results come back as they finish; a point that fails is recorded with its one-line
error and the others go on.  ``resume=True`` skips the points that finished (their
``result.json`` is there) and continues the unfinished ones from their checkpoints.  With
``method = "asha"`` the points run as Ray Tune trials under the ASHA scheduler, reporting the
mean test accuracy after every epoch; the trials it stops are marked ``stopped_early``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError, OutputError, UserError
from ..runs.store import refuse_overwrite, require_resumable, write_json
from .point import group_points, read_result, train_group, train_point
from .spec import SweepSpec, load_spec

SPEC_FILE = "sweep.json"


def _init_ray(address: str | None, max_parallel: int | None) -> None:
    import ray

    if ray.is_initialized():
        return
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address:
        kw["address"] = address
    else:  # a cluster of its own: never attach to another cluster a 'ray start' left on this machine
        kw["address"] = "local"
        kw["num_cpus"] = max_parallel or os.cpu_count() or 1
    # the workers must import this package from the same source tree as the driver
    src = str(Path(__file__).resolve().parents[2])
    kw["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
                                      "OMP_NUM_THREADS": "1"}}
    try:
        ray.init(**kw)
    except ConnectionError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc}; start it with 'ray start --head' "
                          "(docs/sweeps.md) or leave out --address for a local run") from None


def _prepare(spec: SweepSpec, out: Path, resume: bool, force: bool) -> None:
    marker = out / SPEC_FILE
    if resume:
        require_resumable(out, SPEC_FILE, "sweep")
        saved = json.loads(marker.read_text(encoding="utf-8"))
        if saved.get("spec") != spec.to_dict():
            raise OutputError(f"{out} holds a sweep of another spec; resume it with the spec it was started with, "
                              "or choose another --out")
        return
    refuse_overwrite(out, SPEC_FILE, "sweep", force)
    if marker.is_file():  # --force: the old points go, so that nothing of them is read as done
        import re
        import shutil

        for d in out.iterdir():
            if d.is_dir() and re.fullmatch(r"(group-)?[0-9a-f]{12}", d.name):
                shutil.rmtree(d)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write into {out}: {exc.strerror or exc}; choose another --out") from None
    write_json(marker, {"spec": spec.to_dict()})


def _spec_for_workers(spec: SweepSpec) -> dict[str, Any]:
    d = spec.to_dict()
    if d.get("data_dir") and spec.source:  # relative data paths are relative to where the command runs
        d["data_dir"] = str(Path(d["data_dir"]).expanduser().resolve())
    return d


def run_sweep(spec: SweepSpec | str | Path, out: str | Path, address: str | None = None,
              max_parallel: int | None = None, resume: bool = False, force: bool = False,
              progress: bool = True) -> dict[str, Any]:
    """Run every point of ``spec`` not yet finished; write the table and the report; return a summary."""
    from tqdm.auto import tqdm

    spec = load_spec(spec) if not isinstance(spec, SweepSpec) else spec
    out = Path(out)
    _prepare(spec, out, resume, force)
    points = [p.to_dict() for p in spec.points()]
    done = {p["id"]: r for p in points if (r := read_result(out, p["id"])) is not None}
    todo = [p for p in points if p["id"] not in done]
    worker_spec = _spec_for_workers(spec)
    t0 = time.perf_counter()
    if todo:
        _init_ray(address, max_parallel)
        bar = tqdm(total=len(points), initial=len(done), desc=spec.name, unit="point", disable=not progress,
                   dynamic_ncols=True)
        failed = sum(1 for r in done.values() if r.get("status") == "failed")
        if spec.method == "asha":
            results = _run_asha(spec, worker_spec, todo, out, bar)
        else:
            groups = group_points(worker_spec, todo, spec.group)
            results = _run_tasks(worker_spec, groups, out, max_parallel, bar, failed)
        bar.close()
        done.update(results)
    from .report import write_report
    from .table import write_table

    rows = write_table(spec, points, done, out)
    report = write_report(spec, rows, out)
    summary = {"points": len(points), "trained": len(todo), "done": sum(r["status"] == "done" for r in done.values()),
               "failed": sum(r["status"] == "failed" for r in done.values()),
               "stopped_early": sum(bool(r.get("stopped_early")) for r in done.values()),
               "wall_s": time.perf_counter() - t0, "table": str(out / "results.parquet"), "report": str(report)}
    return summary


def _run_tasks(worker_spec: dict[str, Any], groups: list[list[dict[str, Any]]], out: Path,
               max_parallel: int | None, bar: Any, failed: int) -> dict[str, dict[str, Any]]:
    """One Ray task per group of points (:func:`~analogtrain.sweep.point.group_points`; a group of
    one without ``group`` in the spec)."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=2)(train_group)
    limit = max_parallel or max(1, int(ray.cluster_resources().get("CPU", 1)))
    pending = list(groups)
    running: dict[Any, list[dict[str, Any]]] = {}
    results: dict[str, dict[str, Any]] = {}

    def show() -> None:
        bar.set_postfix(running=sum(map(len, running.values())), failed=failed, refresh=True)

    while pending or running:
        while pending and len(running) < limit:
            g = pending.pop(0)
            running[task.remote(worker_spec, g, str(out))] = g
        show()
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            g = running.pop(ref)
            try:
                rows = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a lost worker after its retries: record, go on
                err = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                rows = [{"point": p, "status": "failed", "error": err} for p in g]
            for p, res in zip(g, rows):
                results[p["id"]] = res
                failed += res.get("status") == "failed"
            bar.update(len(g))
    show()
    return results


def _run_asha(spec: SweepSpec, worker_spec: dict[str, Any], todo: list[dict[str, Any]], out: Path,
              bar: Any) -> dict[str, dict[str, Any]]:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    def trainable(config: dict[str, Any]) -> None:
        point = config["point"]

        def report(epoch: int, acc: list[float]) -> None:
            tune.report({"accuracy": sum(acc) / len(acc), "epoch": epoch})

        res = train_point(worker_spec, point, str(out), report_epoch=report)
        if res["status"] == "failed":
            tune.report({"accuracy": float("nan"), "epoch": 0, "failed": True})

    scheduler = ASHAScheduler(time_attr="epoch", metric="accuracy", mode="max", max_t=spec.epochs,
                              grace_period=int(spec.asha.get("grace_period", 1)),
                              reduction_factor=float(spec.asha.get("reduction_factor", 3)))
    tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}),
                       param_space={"point": tune.grid_search(todo)},
                       tune_config=tune.TuneConfig(scheduler=scheduler),
                       run_config=tune.RunConfig(storage_path=str((out / "tune").resolve()), verbose=0))
    grid = tuner.fit()
    results: dict[str, dict[str, Any]] = {}
    for r in grid:
        point = r.config["point"]
        res = read_result(out, point["id"])
        epochs = int((r.metrics or {}).get("epoch") or 0)
        if res is None:  # stopped by ASHA before the end: what its epochs reached
            res = {"point": point, "status": "done", "error": None, "stopped_early": True,
                   "epochs_completed": epochs, "accuracy": [], "final_accuracy": None,
                   "energy_per_image_j": None, "chip_time_per_image_s": None}
            acc = (r.metrics or {}).get("accuracy")
            res["final_accuracy_mean"] = acc
            write_json(out / point["id"] / "result.json", res)
        results[point["id"]] = res
        bar.update(1)
    return results


def main_sweep(args: Any) -> int:
    """``analogtrain sweep SPEC --out DIR``: the CLI's entry point."""
    try:
        import pyarrow  # noqa: F401
        import ray  # noqa: F401
    except ImportError as exc:
        raise UserError(f"analogtrain sweep needs {exc.name}; install it with pip install 'analogtrain[sweep]'") from None
    summary = run_sweep(args.spec, args.out, address=args.address, max_parallel=args.max_parallel,
                        resume=args.resume, force=args.force, progress=not args.quiet)
    print(f"{summary['points']} points: {summary['done']} done, {summary['failed']} failed"
          + (f", {summary['stopped_early']} stopped early by ASHA" if summary["stopped_early"] else "")
          + f" ({summary['trained']} trained now, {summary['wall_s']:.0f} s)")
    print(f"wrote {summary['table']} and {summary['report']}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sweep", help="a parameter study, its points run in parallel on Ray (local or a cluster)",
                       description="Run every point of a sweep spec (TOML; see examples/sweeps/ and docs/sweeps.md) "
                                   "as Ray tasks, then write DIR/results.parquet and DIR/report.md.")
    p.add_argument("spec", help="the sweep spec, a .toml file")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the points, the table and the report")
    p.add_argument("--address", default=None, help="Ray cluster to run on: 'auto' (the one this machine belongs to) "
                                                   "or ray://HOST:PORT; default: a local Ray on this machine")
    p.add_argument("--max-parallel", type=int, default=None, metavar="N",
                   help="at most N points at once (default: local, every core; a cluster, as many as fit)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in DIR: finished points are not rerun")
    p.add_argument("--force", action="store_true", help="start over in a DIR that already holds a sweep")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main_sweep)
