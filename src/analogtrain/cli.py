"""The ``analogtrain`` command line.

Subcommands: ``train`` (one run, optionally beside the software baseline), ``presets`` (the
named chip configurations), ``cost`` (energy/area/time of the chip vs GPUs).  User mistakes
are printed as one line ``analogtrain: error: ...`` with a non-zero exit; no traceback
(2 config/arguments, 3 data, 4 checkpoint, 5 training diverged, 6 output not writable).

``train`` is interruptible: it checkpoints into ``--out`` (``checkpoint.safetensors`` for the
main run, ``checkpoint-software.safetensors`` for ``--compare software``, and ``resume.json``:
the settings, the configs of the runs and the results of those already finished) every
``--checkpoint-every`` examples and at each epoch end.  The first Ctrl-C (or SIGTERM) stops
after the current example, saves a checkpoint and exits with 130 (143); ``train --resume
DIR`` finishes the run, with results bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UserError

if TYPE_CHECKING:
    from .runs.results import TrainingResult

EPILOG = """examples:
  analogtrain train                                  # embedded 8x8 digits, no download
  analogtrain train --preset nature2018 --dataset mnist --epochs 3 --compare software
  analogtrain train --resume runs/latest            # continue an interrupted run
  analogtrain presets
  analogtrain cost --network 528-250-125-10
"""


def _add_train(sub) -> None:
    from .presets import PRESET_NAMES

    p = sub.add_parser(
        "train",
        help="train a network on the simulated chip",
        description=(
            "Train a fully connected network, one example at a time, on the simulated 2PCM+3T1C chip "
            "(or a baseline preset). Prints per-epoch test accuracy; writes results.json (accuracy per "
            "epoch, transfers, tuning and update pulses, wall time, the full config) and accuracy.png "
            "into --out. The run is checkpointed into --out (checkpoint.safetensors, resume.json) every "
            "--checkpoint-every examples and at every epoch end; Ctrl-C saves a checkpoint and stops, and "
            "--resume DIR finishes the run with results identical to an uninterrupted one."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    p.add_argument("--preset", metavar="NAME",
                   help=f"chip configuration: {', '.join(PRESET_NAMES)} (default nature2018)")
    p.add_argument("--dataset", metavar="NAME",
                   help="digits (embedded, default), mnist (22x24 crop, 528 inputs), mnist-full (784), "
                        "mnist-backrand, mnist-backrand-full")
    p.add_argument("--data-dir", metavar="DIR", help="where dataset files are (else $ANALOGTRAIN_DATA_DIR, "
                                                     "else the user cache); missing files are downloaded")
    p.add_argument("--no-download", action="store_true", help="never download; fail if files are missing")
    p.add_argument("--epochs", type=int, metavar="N", help="passes over the training set (default: config, 3)")
    p.add_argument("--seed", type=int, metavar="S", help="seed of weights, data order, devices and noise (default 0)")
    p.add_argument("--chips", type=int, metavar="C", help="independent chips trained together (default 1)")
    p.add_argument("--hidden", metavar="SIZES", help="hidden layer sizes, e.g. 250-125 (default from config)")
    p.add_argument("--learning-rate", type=float, metavar="ETA", help="SGD learning rate (default 0.1)")
    p.add_argument("--config", metavar="FILE", help="TOML/JSON file of config overrides")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set chip.capacitor.leak_time_constant_s=0.01 (repeatable)")
    p.add_argument("--compare", choices=["software"], help="also train the software baseline in the same run")
    p.add_argument("--limit-train", type=int, metavar="N", help="use only the first N training images")
    p.add_argument("--limit-test", type=int, metavar="N", help="use only the first N test images")
    p.add_argument("--out", metavar="DIR", help="output directory (default runs/latest)")
    p.add_argument("--force", action="store_true", help="replace the run that --out already holds")
    p.add_argument("--resume", metavar="DIR", help="continue the interrupted run whose --out was DIR, with its "
                                                   "saved settings (only --quiet, --threads, --device and "
                                                   "--checkpoint-every may be given with it)")
    p.add_argument("--checkpoint-every", type=int, metavar="N",
                   help=f"write DIR/checkpoint.safetensors every N examples (default {DEFAULT_CHECKPOINT_EVERY:,}) "
                        "and at every epoch end")
    p.add_argument("--threads", type=int, metavar="T",
                   help="torch CPU threads (default 1: one example at a time runs fastest on one thread, "
                        "and several threads stall badly when other programs share the cores)")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--compile", choices=("auto", "on", "off"),
                   help="fuse each training step with torch.compile (training.compile; default auto: on for "
                        "runs of 50,000 steps or more, where the ~30-60 s of compiling pays back)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        from .errors import ConfigError

        raise ConfigError(f"{name} must be a positive integer, got {value}")


#: default epochs on the embedded digits (about as many examples as half an MNIST epoch)
DIGITS_EPOCHS = 20


def build_config(args: argparse.Namespace):
    from .config import collect_overrides, merge_overrides
    from .errors import ConfigError
    from .presets import get_preset

    overrides = collect_overrides(args.config, args.set)
    if not isinstance(overrides.get("training", {}), dict):  # else the flags below would replace it unseen
        from ._configbase import _r

        raise ConfigError(f"training must be a table of TrainingConfig settings, got {_r(overrides['training'])}")
    training: dict[str, Any] = {}
    for key, val in (("epochs", args.epochs), ("seed", args.seed), ("chips", args.chips),
                     ("learning_rate", args.learning_rate), ("compile", getattr(args, "compile", None))):
        if val is not None:
            training[key] = val
    if (args.epochs is None and getattr(args, "dataset", None) == "digits"
            and "epochs" not in overrides.get("training", {})):
        training["epochs"] = DIGITS_EPOCHS  # 1,437 images per epoch: the 3 epochs meant for MNIST are too few
    if args.hidden:
        try:
            training["hidden"] = [int(v) for v in args.hidden.replace(",", "-").split("-") if v]
        except ValueError:
            raise ConfigError(f"--hidden must be sizes joined by '-', e.g. 250-125, got {args.hidden!r}") from None
    if training:
        overrides = merge_overrides(overrides, {"training": training})
    return get_preset(args.preset, overrides), overrides


def _load_data(args: argparse.Namespace):
    from .data import load_dataset

    _positive("--limit-train", args.limit_train)
    _positive("--limit-test", args.limit_test)
    data = load_dataset(args.dataset, data_dir=args.data_dir, download=not args.no_download)
    if args.limit_train or args.limit_test:
        data = data.subset(args.limit_train or data.n_train, args.limit_test or data.n_test)
    return data


DEFAULT_CHECKPOINT_EVERY = 10_000
RESUME_FILE = "resume.json"
RESUME_FORMAT = "analogtrain-resume"
RESUME_VERSION = 1

# options that define a run (with their defaults): with --resume they come from the run folder
_RUN_OPTIONS: dict[str, Any] = {
    "preset": None, "dataset": None, "data_dir": None, "no_download": False, "epochs": None, "seed": None,
    "chips": None, "hidden": None, "learning_rate": None, "config": None, "set": [], "compare": None,
    "limit_train": None, "limit_test": None, "out": None, "compile": None,
}
# what resume.json keeps of the command line (besides the resolved configs)
_SAVED_ARGS: dict[str, tuple[type, ...]] = {
    "preset": (str,), "dataset": (str,), "data_dir": (str, type(None)), "no_download": (bool,),
    "compare": (str, type(None)), "limit_train": (int, type(None)), "limit_test": (int, type(None)),
    "threads": (int, type(None)), "device": (str,), "checkpoint_every": (int,),
}


class _Interrupted(Exception):
    """Training stopped on a signal at a clean point; the checkpoint is written."""

    def __init__(self, signum: int, path: Path | None):
        super().__init__(signum)
        self.signum = signum
        self.path = path


class _StopOnSignal:
    """While active, the first SIGINT/SIGTERM asks training to stop after the current example
    (so the checkpoint is consistent); a second one interrupts at once (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def requested(self, trainer: Any) -> bool:  # noqa: ARG002  (Trainer.train's on_step)
        return self.signum is not None

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for name in ("SIGINT", "SIGTERM"):
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


def _checkpoint_file(out: Path, index: int, name: str) -> Path:
    """The checkpoint of the index-th run of a command: the main run's, then the baselines'."""
    return out / ("checkpoint.safetensors" if index == 0 else f"checkpoint-{name}.safetensors")


def _run_one(name: str, cfg, data, args, out: Path, ckpt: Path | None = None, resume: bool = False) -> TrainingResult:
    from .errors import CheckpointError
    from .training import Trainer

    if resume and ckpt is not None and ckpt.exists():
        trainer = Trainer.from_checkpoint(ckpt, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes,
                                          device=args.device)
        if trainer.config != cfg:
            raise CheckpointError(f"checkpoint {ckpt} was written with another config than the {name} run "
                                  f"recorded in {out / RESUME_FILE}")
        st = trainer.state
        print(f"[{name}] resuming from {ckpt.name}: {st.epoch} epoch(s) and {st.position} example(s) done",
              flush=True)
    else:
        trainer = Trainer(cfg, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes,
                          device=args.device)

    def on_epoch(rec) -> None:
        accs = ", ".join(f"{100 * a:.2f}%" for a in rec.test_accuracy)
        print(f"[{name}] epoch {rec.epoch}: test accuracy {accs}  "
              f"(transfers so far {rec.transfers}, {rec.examples / max(rec.wall_s, 1e-9):.0f} img/s)", flush=True)

    with _StopOnSignal() as stop:
        result = trainer.train(progress=not args.quiet, on_epoch=on_epoch, on_step=stop.requested,
                               checkpoint_every=args.checkpoint_every if ckpt is not None else None,
                               checkpoint_path=ckpt)
    if stop.signum is not None:
        if ckpt is not None:
            trainer.save_checkpoint(ckpt)
        raise _Interrupted(stop.signum, ckpt)
    result.dataset = data.info()
    result.variant = name
    return result


def _check_train_args(args: argparse.Namespace) -> None:
    """Numbers and names of the command line that the config does not check (or checks
    under another name)."""
    from .errors import ConfigError

    _positive("--epochs (training.epochs)", args.epochs)
    _positive("--chips (training.chips)", args.chips)
    _positive("--limit-train", args.limit_train)
    _positive("--limit-test", args.limit_test)
    _positive("--checkpoint-every", args.checkpoint_every)
    _positive("--threads", args.threads)
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed (training.seed) must be a non-negative integer, got {args.seed}")
    if args.learning_rate is not None and not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise ConfigError(f"--learning-rate (training.learning_rate) must be a positive number, got {args.learning_rate}")
    _check_device(args.device)


def _check_device(name: str | None) -> None:
    import torch

    from .errors import ConfigError

    if name is None:
        return
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"--device {name!r} is not a torch device; use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA GPU is available to this torch; use --device cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {name!r} is not supported; use cpu or cuda")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name}: MPS is not available here; use --device cpu")


def _read_resume(folder: Path) -> dict[str, Any]:
    """The run recorded in ``folder/resume.json``, checked; CheckpointError otherwise."""
    from .errors import CheckpointError

    f = folder / RESUME_FILE
    if not folder.is_dir():
        raise CheckpointError(f"nothing to resume: {folder} is not a folder (give the --out folder of a run)")
    try:
        text = f.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"nothing to resume in {folder}: it has no {RESUME_FILE} "
                              f"(start a run with --out {folder} first)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read {f}: {getattr(exc, 'strerror', None) or exc}") from None
    bad = f"{f} is corrupt or was edited; restart the run"
    try:
        rec = json.loads(text)
    except (ValueError, RecursionError):
        raise CheckpointError(f"{bad} (not valid JSON)") from None
    if not isinstance(rec, dict) or rec.get("format") != RESUME_FORMAT:
        raise CheckpointError(f"{f} is not an analogtrain run record")
    if rec.get("version") != RESUME_VERSION:
        raise CheckpointError(f"{f} has version {rec.get('version')!r}; this analogtrain reads version "
                              f"{RESUME_VERSION}")
    saved, plan, finished = rec.get("args"), rec.get("plan"), rec.get("finished")
    if not (isinstance(saved, dict) and isinstance(plan, list) and plan and isinstance(finished, dict)):
        raise CheckpointError(f"{bad} (missing fields)")
    for key, types in _SAVED_ARGS.items():
        v = saved.get(key)
        if key not in saved or not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
            raise CheckpointError(f"{bad} (args.{key} is {v!r})")
    for item in plan:
        if not (isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("config"), dict)):
            raise CheckpointError(f"{bad} (plan)")
    names = [item["name"] for item in plan]
    from .errors import DataError
    from .runs.results import TrainingResult

    for name, result in list(finished.items()):
        try:
            if name not in names or not isinstance(result, dict):
                raise DataError("not a result")
            finished[name] = TrainingResult.from_dict(result)
        except (DataError, TypeError, AttributeError):
            raise CheckpointError(f"{bad} (finished run {name!r})") from None
    return rec


def _write_resume(out: Path, rec: dict[str, Any]) -> None:
    from .runs.store import write_json

    finished = {k: v.to_dict() for k, v in rec["finished"].items()}  # TrainingResults
    write_json(out / RESUME_FILE, {**rec, "finished": finished})


def _plan_from_args(args: argparse.Namespace) -> tuple[list[dict[str, Any]], Any]:
    """[(name, config dict)] of the runs of this command, and the main config."""
    from .presets import get_preset

    cfg, overrides = build_config(args)
    plan = [{"name": args.preset, "config": cfg.to_dict()}]
    if args.compare == "software" and args.preset != "software":
        sw_overrides = {"training": overrides.get("training", {})} if overrides.get("training") else None
        plan.append({"name": "software", "config": get_preset("software", sw_overrides).to_dict()})
    return plan, cfg


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from .config import ExperimentConfig
    from .errors import CheckpointError, ConfigError, OutputError
    from .plots import accuracy_vs_epoch
    from .runs.results import ExperimentResult, RunResult
    from .runs.store import (
        environment,
        prepare_output_dir,
        refuse_overwrite,
        require_resumable,
    )

    _check_train_args(args)
    resuming = args.resume is not None
    if resuming:
        given = [k for k, default in _RUN_OPTIONS.items() if getattr(args, k) != default]
        if given:
            raise ConfigError(f"--resume continues a run with the settings it was started with; drop "
                              f"--{given[0].replace('_', '-')} (or start a new run with another --out)")
        out = Path(args.resume)
        require_resumable(out, RESUME_FILE, "train")
        rec = _read_resume(out)
        for key, value in rec["args"].items():
            if key in _SAVED_ARGS and (key not in ("threads", "device", "checkpoint_every")
                                       or getattr(args, key) is None):
                setattr(args, key, value)
        _check_device(args.device)
        try:
            cfgs = [ExperimentConfig.from_dict(item["config"]) for item in rec["plan"]]
        except ConfigError as exc:
            raise CheckpointError(f"{out / RESUME_FILE} holds an invalid config: {exc}") from None
        cfg = cfgs[0]
        out = prepare_output_dir(out)
    else:
        args.preset = args.preset or "nature2018"
        args.dataset = args.dataset or "digits"
        args.device = args.device or "cpu"
        args.checkpoint_every = args.checkpoint_every or DEFAULT_CHECKPOINT_EVERY
        args.threads = args.threads or 1
        plan, cfg = _plan_from_args(args)
        cfgs = [cfg] + [ExperimentConfig.from_dict(item["config"]) for item in plan[1:]]
        out = prepare_output_dir(args.out or "runs/latest")
        refuse_overwrite(out, RESUME_FILE, "train", args.force)
        rec = {
            "format": RESUME_FORMAT, "version": RESUME_VERSION,
            "args": {k: getattr(args, k) for k in _SAVED_ARGS},
            "plan": plan, "finished": {},
        }
        if args.data_dir is not None:
            rec["args"]["data_dir"] = str(Path(args.data_dir).resolve())
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = _load_data(args)
    if not resuming:
        for i, item in enumerate(rec["plan"]):  # checkpoints of an earlier run in the same folder
            _checkpoint_file(out, i, item["name"]).unlink(missing_ok=True)
        _write_resume(out, rec)
    print(f"analogtrain: {'resuming ' if resuming else ''}{args.preset} on {data.name} ({data.n_train} train / "
          f"{data.n_test} test, network {'-'.join(str(v) for v in [data.n_inputs, *cfg.training.hidden, data.n_classes])}, "
          f"{cfg.training.epochs} epochs, seed {cfg.training.seed}, {cfg.training.chips} chip(s))", flush=True)
    resume_hint = f"resume with: analogtrain train --resume {shlex.quote(str(out))}"
    runs: dict[str, TrainingResult] = {}
    try:
        for i, (item, run_cfg) in enumerate(zip(rec["plan"], cfgs)):
            name = item["name"]
            if name in rec["finished"]:
                runs[name] = rec["finished"][name]
                continue
            runs[name] = _run_one(name, run_cfg, data, args, out, _checkpoint_file(out, i, name), resume=resuming)
            rec["finished"][name] = runs[name]
            _write_resume(out, rec)
    except _Interrupted as stop:
        where = f"checkpoint saved in {stop.path}; " if stop.path is not None else ""
        print(f"analogtrain: interrupted; {where}{resume_hint}", file=sys.stderr, flush=True)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print(f"analogtrain: interrupted; {resume_hint} (from the last checkpoint)", file=sys.stderr, flush=True)
        return 130
    main_run = runs[args.preset]
    summary: dict[str, Any] = {"test_accuracy": main_run.final_test_accuracy_mean}
    if "software" in runs and args.preset != "software":
        sw = runs["software"].final_test_accuracy_mean
        summary["software_test_accuracy"] = sw
        summary["gap_points"] = 100 * (main_run.final_test_accuracy_mean - sw)  # chip - software
    extra: dict[str, Any] = {"preset": args.preset, "summary": summary}
    cost_text = _run_cost(main_run, cfg)
    if cost_text is not None and cost_text[1] is not None:
        extra["chip_cost"] = cost_text[1]
    RunResult(
        command="train", experiment=data.name, chips=cfg.training.chips, variants=list(runs),
        seed=cfg.training.seed, environment=environment(), threads=args.threads, device=args.device,
        arguments={k: rec["args"].get(k) for k in _SAVED_ARGS}, complete=True, extra=extra,
        wall_s=sum(r.wall_s for r in runs.values()),
        experiments={data.name: ExperimentResult(
            experiment=data.name, dataset=data.info(), network=list(main_run.network), variants=runs,
            settings={"hidden": list(cfg.training.hidden), "epochs": cfg.training.epochs,
                      "learning_rate": cfg.training.learning_rate,
                      "transfer_interval_examples": cfg.chip.transfer.interval_examples,
                      "reset_check_interval_examples": cfg.chip.pcm.reset_check_interval_examples},
            wall_s=sum(r.wall_s for r in runs.values()))},
    ).write(out)
    try:
        accuracy_vs_epoch(runs, out / "accuracy.png", title=f"{data.name}: test accuracy")
    except OSError as exc:
        raise OutputError(f"cannot write {out / 'accuracy.png'}: {exc.strerror or exc}; choose another --out "
                          "or free space") from None
    print(f"final test accuracy: {args.preset} {100 * summary['test_accuracy']:.2f}%", end="")
    if "software_test_accuracy" in summary:
        print(f", software {100 * summary['software_test_accuracy']:.2f}% (chip - software "
              f"{summary['gap_points']:+.2f} points; negative: the chip is below software)", end="")
    print()
    if cost_text is not None:
        print(cost_text[0])
    print(f"wrote {out / 'results.json'} and {out / 'accuracy.png'}")
    return 0


def _run_cost(run: TrainingResult, cfg) -> tuple[str, dict[str, Any] | None] | None:
    """What the run would have cost on the chip: (text, report dict); None for software.

    The cost model describes the 2PCM+3T1C cell only, so a run of another analog cell (the
    2-PCM baseline) gets a line saying it is not costed, and no report.
    """
    from .cost.cli import run_cost, run_stats_of
    from .cost.params import chip_cost_params

    kind = cfg.chip.cell.kind
    if kind == "digital":
        return None
    params = chip_cost_params(cfg.chip)
    if params is None:
        return (f"Not costed: the cost model (docs/cost_model.md) describes the 2PCM+3T1C cell, "
                f"and this run's cell is {kind!r}"), None

    text, report = run_cost(run.network, run_stats_of(run, cfg.chip), params)
    clock = run.leak_clock_s
    source = ("training.leak_clock = cost-model" if cfg.training.leak_clock == "cost-model"
              else "training.time_per_example_s")
    text += (
        f"\n  leakage clock: the simulation let {clock * 1e9:.0f} ns pass per example "
        f"({source}); the cost model times this chip at "
        f"{report.time_per_example_s * 1e9:.0f} ns per example"
    )
    out = report.to_dict()
    out["leak_clock_s"] = clock
    return text, out


def cmd_presets(args: argparse.Namespace) -> int:  # noqa: ARG001
    from .presets import preset_descriptions

    width = max(len(n) for n in preset_descriptions())
    for name, desc in preset_descriptions().items():
        print(f"{name:<{width}}  {desc}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .experiments.report import render

    if len(args.runs) == 1:
        if args.out is not None:
            raise ConfigError("--out is for merging several runs; with one run the report is re-rendered in place")
        print(f"wrote {render(args.runs[0])}")
        return 0
    if args.out is None:
        raise ConfigError("merging runs needs --out DIR, a new folder for the merged report")
    from .experiments.merge import merge_runs

    print(f"wrote {merge_runs(args.runs, args.out, force=args.force)}")
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report", help="render a run's report (reproduce or train), or merge several runs into one report",
        description="With one RUN_DIR (the --out of 'analogtrain reproduce' or 'analogtrain train'): render its "
                    "report.md and figures "
                    "from results.json. With several: merge their variants (the same experiments, seed, network "
                    "and data; e.g. variants trained in parallel processes) into one report in --out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  analogtrain report runs/mnist\n"
               "  analogtrain report runs/mnist_software_nature2018 runs/mnist_ablations --out runs/mnist_all\n")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="folders written by 'analogtrain reproduce' (or 'analogtrain train')")
    p.add_argument("--out", metavar="DIR", help="folder of the merged report (with several runs)")
    p.add_argument("--force", action="store_true", help="replace the merged run that --out already holds")
    p.set_defaults(func=cmd_report)


class _ArgumentError(UserError):
    """A command line argparse cannot parse (reported in one line, like every user error)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one ``analogtrain: error:`` line (no usage block)."""

    def error(self, message: str):  # type: ignore[override]
        raise _ArgumentError(f"{message} (see '{self.prog} --help')")


def make_parser() -> argparse.ArgumentParser:
    from ._version import __version__
    from .cost.cli import add_parser as add_cost_parser

    parser = _Parser(
        prog="analogtrain",
        description="Train neural networks on a simulated 2PCM+3T1C analog-memory training chip "
                    "(Ambrogio et al., Nature 558, 60-67, 2018) and estimate what it costs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"analogtrain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    pp = sub.add_parser("presets", help="list the named chip configurations",
                        description="List the named chip configurations with one line each.")
    pp.set_defaults(func=cmd_presets)
    add_cost_parser(sub)
    from .experiments.reproduce import add_parser as add_reproduce_parser

    add_reproduce_parser(sub)
    _add_report(sub)
    from .sweep.run import add_parser as add_sweep_parser

    add_sweep_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except UserError as exc:
        text = " ".join(str(exc).splitlines())  # one line, whatever the message holds
        print(f"analogtrain: error: {text}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("analogtrain: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
