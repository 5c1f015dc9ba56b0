"""The ``analogtrain`` command line.

Subcommands: ``train`` (one run, optionally beside the software baseline), ``presets`` (the
named chip configurations), ``cost`` (energy/area/time of the chip vs GPUs).  User mistakes
are printed as one line ``analogtrain: error: ...`` with a non-zero exit; no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .errors import UserError

EPILOG = """examples:
  analogtrain train                                  # embedded 8x8 digits, no download
  analogtrain train --preset nature2018 --dataset mnist --epochs 3 --compare software
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
            "into --out."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    p.add_argument("--preset", default="nature2018", metavar="NAME",
                   help=f"chip configuration: {', '.join(PRESET_NAMES)} (default nature2018)")
    p.add_argument("--dataset", default="digits", metavar="NAME",
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
    p.add_argument("--out", default="runs/latest", metavar="DIR", help="output directory (default runs/latest)")
    p.add_argument("--threads", type=int, metavar="T", help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        from .errors import ConfigError

        raise ConfigError(f"{name} must be a positive integer, got {value}")


def build_config(args: argparse.Namespace):
    from .config import load_config_file, merge_overrides, parse_set_option
    from .errors import ConfigError
    from .presets import get_preset

    overrides: dict[str, Any] = {}
    if args.config:
        overrides = merge_overrides(overrides, load_config_file(args.config))
    for item in args.set:
        overrides = merge_overrides(overrides, parse_set_option(item))
    training: dict[str, Any] = {}
    for key, val in (("epochs", args.epochs), ("seed", args.seed), ("chips", args.chips),
                     ("learning_rate", args.learning_rate)):
        if val is not None:
            training[key] = val
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


def _run_one(name: str, cfg, data, args, out: Path) -> dict[str, Any]:
    from .experiment import _dataset_info
    from .training import Trainer

    trainer = Trainer(cfg, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes, device=args.device)

    def on_epoch(rec) -> None:
        accs = ", ".join(f"{100 * a:.2f}%" for a in rec.test_accuracy)
        print(f"[{name}] epoch {rec.epoch}: test accuracy {accs}  "
              f"(transfers so far {rec.transfers}, {rec.examples / max(rec.wall_s, 1e-9):.0f} img/s)", flush=True)

    result = trainer.train(progress=not args.quiet, on_epoch=on_epoch)
    result["dataset"] = _dataset_info(data)
    result["name"] = name
    return result


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from .experiment import environment, prepare_output_dir, write_json
    from .plots import accuracy_vs_epoch
    from .presets import get_preset

    if args.threads is not None:
        _positive("--threads", args.threads)
        torch.set_num_threads(args.threads)
    cfg, overrides = build_config(args)
    out = prepare_output_dir(args.out)
    data = _load_data(args)
    print(f"analogtrain: {args.preset} on {data.name} ({data.n_train} train / {data.n_test} test, "
          f"network {'-'.join(str(v) for v in [data.n_inputs, *cfg.training.hidden, data.n_classes])}, "
          f"{cfg.training.epochs} epochs, seed {cfg.training.seed}, {cfg.training.chips} chip(s))", flush=True)
    runs: dict[str, dict[str, Any]] = {}
    runs[args.preset] = _run_one(args.preset, cfg, data, args, out)
    if args.compare == "software" and args.preset != "software":
        sw_overrides = {"training": overrides.get("training", {})} if overrides.get("training") else None
        sw_cfg = get_preset("software", sw_overrides)
        runs["software"] = _run_one("software", sw_cfg, data, args, out)
    payload: dict[str, Any] = {"preset": args.preset, "runs": runs, "environment": environment()}
    main_run = runs[args.preset]
    summary = {"test_accuracy": main_run["final_test_accuracy_mean"]}
    if "software" in runs and args.preset != "software":
        sw = runs["software"]["final_test_accuracy_mean"]
        summary["software_test_accuracy"] = sw
        summary["gap_points"] = 100 * (sw - main_run["final_test_accuracy_mean"])
    cost_text = _run_cost(main_run, cfg)
    if cost_text is not None:
        payload["chip_cost"] = cost_text[1]
    payload["summary"] = summary
    write_json(out / "results.json", payload)
    accuracy_vs_epoch(runs, out / "accuracy.png", title=f"{data.name}: test accuracy")
    print(f"final test accuracy: {args.preset} {100 * summary['test_accuracy']:.2f}%", end="")
    if "software_test_accuracy" in summary:
        print(f", software {100 * summary['software_test_accuracy']:.2f}% (gap {summary['gap_points']:+.2f} points)",
              end="")
    print()
    if cost_text is not None:
        print(cost_text[0])
    print(f"wrote {out / 'results.json'} and {out / 'accuracy.png'}")
    return 0


def _run_cost(run: dict[str, Any], cfg) -> tuple[str, dict[str, Any]] | None:
    """What the run would have cost on the chip (analog presets only)."""
    if cfg.chip.cell.kind == "digital":
        return None
    from .cost.cli import format_run_cost
    from .cost.model import estimate
    from .cost.params import load_cost_params

    chips = run["chips"]
    stats = {
        "examples": run["examples"],
        "update_pulses": [sum(v) / chips for v in run["update_pulses"]],
        "transfers": run["transfers"],
        "transfer_tuning_pulses": [p / chips for p in run["transfer_tuning_pulses"]],
        "cells": run["cells_per_layer"],
        "transfer_interval_examples": cfg.chip.transfer.interval_examples,
    }
    params = load_cost_params("nature2018")
    text = format_run_cost(run["network"], stats, params)
    report = estimate(run["network"], params, stats)
    return text, report.to_dict()


def cmd_presets(args: argparse.Namespace) -> int:  # noqa: ARG001
    from .presets import preset_descriptions

    width = max(len(n) for n in preset_descriptions())
    for name, desc in preset_descriptions().items():
        print(f"{name:<{width}}  {desc}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .cost.cli import add_parser as add_cost_parser

    parser = argparse.ArgumentParser(
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"analogtrain: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("analogtrain: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
