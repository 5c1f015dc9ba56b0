"""Training one sweep point: the same core as ``analogtrain train``, in its own folder, resumable.

Runs inside a Ray worker (or in the calling process).  Returns a plain dict (JSON-able) that
the driver turns into table rows; writes ``POINT_DIR/result.json`` when done and keeps a
checkpoint while training, so a point interrupted by a lost worker continues where it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import UserError

RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.safetensors"

if TYPE_CHECKING:
    from ..runs.results import TrainingResult


def _node_id() -> str:
    """The Ray node this runs on (its id), or the host name outside Ray."""
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return socket.gethostname()


def load_data(spec: dict[str, Any]):
    from ..data import load_dataset

    data = load_dataset(spec["dataset"], spec.get("data_dir"), download=False)
    if spec.get("limit_train") or spec.get("limit_test"):
        data = data.subset(spec.get("limit_train") or len(data.x_train), spec.get("limit_test") or len(data.x_test))
    return data


def point_config(spec: dict[str, Any], point: dict[str, Any]):
    """The validated config of a point: preset, the spec's fixed config, the swept values, seed, chips, epochs."""
    from ..presets import get_preset
    from .spec import Point

    p = Point(point["preset"], point["values"], point["seed"])
    over = p.overrides(spec.get("config", {}))
    cfg = get_preset(p.preset, over)
    return cfg.replace(training=cfg.training.replace(seed=p.seed, chips=spec["chips"], epochs=spec["epochs"]))


def chip_cost(cfg, result: TrainingResult) -> dict[str, float | None]:
    """Energy and chip time per training image of the run, from the cost model (None where the
    cost model does not describe the cell)."""
    from ..cost.cli import training_cost

    cost = training_cost(result, cfg.chip) or {}
    return {key: cost.get(key) for key in ("energy_per_image_j", "chip_time_per_image_s")}


def _machine() -> dict[str, Any]:
    """Where a point trains (a row's node, host, process and CPU)."""
    from ..runs.store import cpu_model

    return {"node": _node_id(), "host": socket.gethostname(), "pid": os.getpid(), "cpu": cpu_model()}


def _checkpoint_every(data) -> int:
    return max(1000, len(data.x_train) // 4)


def _done(cfg, result: TrainingResult) -> dict[str, Any]:
    """What a finished point's row says of its training: network, epochs, accuracies and cost."""
    return {"status": "done", "error": None, "network": result.network, "epochs_completed": result.epochs_completed,
            "accuracy": [h.test_accuracy for h in result.history], "final_accuracy": result.final_test_accuracy,
            **chip_cost(cfg, result)}


def _failure(exc: Exception) -> str:
    """The one-line error a failed point records: a user error as it is, anything else with its
    type and the line it came from."""
    if isinstance(exc, UserError):
        return " ".join(str(exc).split())
    last = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{type(exc).__name__}: {' '.join(str(exc).split())} ({Path(last.filename).name}:{last.lineno})"


def train_point(spec: dict[str, Any], point: dict[str, Any], out: str,
                report_epoch: Callable[[int, list[float]], None] | None = None) -> dict[str, Any]:
    """Train one point (resuming its checkpoint if there is one); never raises for a bad point:
    the returned dict says ``status: failed`` with the one-line error."""
    import torch

    from ..runs.store import write_json
    from ..training import Trainer

    torch.set_num_threads(1)
    folder = Path(out) / point["id"]
    folder.mkdir(parents=True, exist_ok=True)
    base = {"point": point, **_machine()}
    t0 = time.perf_counter()
    try:
        cfg = point_config(spec, point)
        data = load_data(spec)
        ck = folder / CHECKPOINT_FILE
        if ck.is_file():
            trainer = Trainer.from_checkpoint(ck, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes)
        else:
            trainer = Trainer(cfg, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes)

        def on_epoch(rec) -> None:
            if report_epoch is not None:
                report_epoch(rec.epoch, list(rec.test_accuracy))

        result = trainer.train(progress=False, on_epoch=on_epoch, checkpoint_path=ck,
                               checkpoint_every=_checkpoint_every(data))
        out_row = {**base, **_done(cfg, result), "wall_s": time.perf_counter() - t0}
    except Exception as exc:  # noqa: BLE001 - a point that fails must not stop the sweep
        out_row = {**base, "status": "failed", "error": _failure(exc), "wall_s": time.perf_counter() - t0}
    write_json(folder / RESULT_FILE, out_row)
    return out_row


def group_points(spec: dict[str, Any], points: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    """``points`` in groups of at most ``size`` that can train as one batch: the same training
    settings, analog cells, and chips that differ only in per-chip parameters
    (:data:`analogtrain.perchip.PER_CHIP_FIELDS`).  Deterministic: the same points give the same
    groups (what resuming a group's checkpoint relies on)."""
    from ..perchip import batch_groups

    if size <= 1:
        return [[p] for p in points]
    groups = batch_groups([point_config(spec, p) for p in points], size)
    return [[points[i] for i in group] for group in groups]


def group_folder(out: str | Path, points: list[dict[str, Any]]) -> Path:
    """Where a group of points keeps its checkpoint: named by a digest of its points' ids."""
    digest = hashlib.sha256(" ".join(sorted(p["id"] for p in points)).encode()).hexdigest()[:12]
    return Path(out) / f"group-{digest}"


def train_group(spec: dict[str, Any], points: list[dict[str, Any]], out: str) -> list[dict[str, Any]]:
    """Train ``points`` (a group of :func:`group_points`) as one batch of chips and write each
    point's ``result.json`` as :func:`train_point` does: each point's chips start from the weights
    and random streams of a run of its own and end where that run ends (tests/test_perchip.py),
    so its row is the same; its cost comes from its own chips' pulse counts.  Never raises for a
    bad group: if the batch fails (a chip diverging stops a whole batch), every point trains
    alone, and only the points that fail alone are recorded as failed."""
    if len(points) == 1:
        return [train_point(spec, points[0], out)]
    import torch

    from ..runs.store import write_json
    from ..training import Trainer

    torch.set_num_threads(1)
    folders = [Path(out) / p["id"] for p in points]
    for f in folders:
        f.mkdir(parents=True, exist_ok=True)
    shared = group_folder(out, points)
    shared.mkdir(parents=True, exist_ok=True)
    base = {**_machine(), "batched_with": len(points)}
    t0 = time.perf_counter()
    try:
        cfgs = [point_config(spec, p) for p in points]
        n = int(spec["chips"])
        first = cfgs[0]
        config = first.replace(training=first.training.replace(chips=n * len(points)))
        chip_configs = [c.chip for c in cfgs for _ in range(n)]
        chip_ids = [i for _ in cfgs for i in range(n)]
        data = load_data(spec)
        ck = shared / CHECKPOINT_FILE
        if ck.is_file():
            trainer = Trainer.from_checkpoint(ck, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes)
        else:
            trainer = Trainer(config, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes,
                              chip_configs=chip_configs, chip_ids=chip_ids)
        result = trainer.train(progress=False, checkpoint_path=ck, checkpoint_every=_checkpoint_every(data))
        wall = time.perf_counter() - t0
        rows = [{"point": p, **base, **_done(cfg, result.select_chips(range(k * n, (k + 1) * n), config=cfg.to_dict())),
                 "wall_s": wall} for k, (p, cfg) in enumerate(zip(points, cfgs))]
    except Exception:  # noqa: BLE001 - a group that fails must not stop the sweep, nor cost its healthy points
        # one point's chips diverging (or any other failure) stops the whole batch: train every point
        # of the group alone instead, so each gets the row it would have had without the group
        (shared / CHECKPOINT_FILE).unlink(missing_ok=True)
        return [train_point(spec, p, out) for p in points]
    for folder, row in zip(folders, rows):
        write_json(folder / RESULT_FILE, row)
    return rows


def read_result(out: str | Path, point_id: str) -> dict[str, Any] | None:
    f = Path(out) / point_id / RESULT_FILE
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
