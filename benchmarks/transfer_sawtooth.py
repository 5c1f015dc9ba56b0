"""Test accuracy within transfer intervals: does it fall at a transfer, or during the interval?

The 20-epoch MNIST runs with the held reference (preset ``nature2018``) alternate: an epoch
that ends right after a transfer (even epochs: 120,000 examples = 15 intervals of 8,000) reads
about 0.5 points lower than one that ends in mid-interval (docs/reproduce.md).  This script
follows the accuracy through whole intervals.  It trains ``--warmup-epochs`` epochs, then, from
the next transfer on, measures every ``--every`` examples for ``--intervals`` intervals, and also
one example before each transfer, so a step at the transfer itself shows apart from any drift
during the interval.

Each measurement, per chip: the test accuracy on the first ``--test`` test images, and per layer
the mean over cells of the 3T1C term s (g - g_shared) in weight units (what leakage and the
update pulses have added since the last transfer; the transfer folds it into the PCM pair and
resets it to about 0).  Measuring puts the random stream back, so the training is the same with
or without it: the same update pulses and transfers, with device states equal up to float
rounding (measuring applies the deferred leakage at that moment; a test checks this).

Usage::

    python benchmarks/transfer_sawtooth.py --data-dir ../shared/data/mnist \
        [--preset nature2018-held-reference --preset nature2018] [--chips 3] \
        [--set chip.capacitor.leak_time_constant_s=1e6] [--json OUT]

Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

import analogtrain as at
from analogtrain.config import collect_overrides, merge_overrides
from analogtrain.training import Trainer


def _capacitor_terms(trainer: Trainer) -> list[list[float]]:
    """Per layer, per chip: mean of s (g - g_shared) over cells, in weight units."""
    out = []
    for layer in trainer.mlp.layers:
        cells = getattr(layer, "cells", None)
        if cells is None or not getattr(cells, "has_capacitor", False):
            out.append([0.0] * trainer.config.training.chips)
            continue
        term = cells.capacitor_pair_us() * cells.polarity.unsqueeze(1)
        out.append((term.mean(dim=(1, 2)) / layer.scale_us).tolist())
    return out


def build_trainer(data, preset: str, overrides: dict, args) -> Trainer:
    """A trainer of ``preset`` for ``args.warmup_epochs + 1`` epochs, tested on the first ``args.test`` images."""
    base = {"training": {"epochs": args.warmup_epochs + 1, "chips": args.chips, "seed": args.seed}}
    cfg = at.get_preset(preset, merge_overrides(base, overrides))
    return Trainer(cfg, data.x_train, data.y_train, data.x_test[:args.test], data.y_test[:args.test],
                   data.n_classes)


def window(trainer: Trainer, args) -> tuple[int, int]:
    """(first transfer at or after the warm-up, example count where measuring stops)."""
    interval = trainer.config.chip.transfer.interval_examples
    warm = args.warmup_epochs * trainer.x_train.shape[0]
    start = -(-warm // interval) * interval
    return start, start + args.intervals * interval


def follow(trainer: Trainer, args) -> dict:
    """Train to the end of the measured window, measuring as the module says; the points."""
    interval = trainer.config.chip.transfer.interval_examples
    start, stop = window(trainer, args)
    points: list[dict] = []

    def measure(tr: Trainer) -> None:
        with tr.mlp.stream_kept():
            acc = tr.evaluate()
            terms = _capacitor_terms(tr)
        seen = tr.state.examples_seen
        points.append({"examples": seen, "since_transfer": (seen - start) % interval,
                       "test_accuracy": acc, "capacitor_term_mean": terms})

    def on_step(tr: Trainer) -> bool:
        seen = tr.state.examples_seen
        if seen >= start:
            k = seen - start
            if k % args.every == 0 or k % interval == interval - 1:
                measure(tr)
        return seen >= stop

    t0 = time.perf_counter()
    trainer.train(progress=not args.quiet, on_step=on_step)
    return {"interval": interval, "first_transfer": start, "points": points, "wall_s": time.perf_counter() - t0}


def _mean(v: list[float]) -> float:
    return sum(v) / len(v)


def summarize(run: dict) -> list[str]:
    pts, interval = run["points"], run["interval"]
    lines = [f"{run['preset']} {json.dumps(run['overrides']) if run['overrides'] else ''}".rstrip(),
             f"  measured from example {run['first_transfer']:,} (a transfer) over "
             f"{len(pts)} points, {run['wall_s'] / 60:.1f} min",
             "  examples  since transfer  accuracy (mean over chips)  3T1C term mean per layer (weight units)"]
    for p in pts:
        terms = "  ".join(f"{_mean(t):+.4f}" for t in p["capacitor_term_mean"])
        lines.append(f"  {p['examples']:8d}  {p['since_transfer']:14d}  {100 * _mean(p['test_accuracy']):8.2f} %"
                     f"                  {terms}")
    before = [_mean(p["test_accuracy"]) for p in pts if p["since_transfer"] == interval - 1]
    after = [_mean(p["test_accuracy"]) for p in pts if p["since_transfer"] == 0]
    mid = [_mean(p["test_accuracy"]) for p in pts if p["since_transfer"] == interval // 2]
    parts = [f"{label} {100 * _mean(v):.2f} %" for label, v in
             (("right after a transfer", after), ("mid-interval", mid), ("one example before a transfer", before)) if v]
    if parts:
        lines.append("  mean accuracy " + ", ".join(parts))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True, help="folder with the four MNIST files")
    ap.add_argument("--preset", action="append", help="chip preset (repeatable; default nature2018-held-reference and "
                                                      "nature2018)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every preset")
    ap.add_argument("--chips", type=int, default=3, help="chips per preset (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup-epochs", type=int, default=2, help="epochs trained before measuring (default 2)")
    ap.add_argument("--intervals", type=int, default=2, help="transfer intervals measured (default 2)")
    ap.add_argument("--every", type=int, default=1000, help="examples between measurements (default 1,000)")
    ap.add_argument("--test", type=int, default=5000, help="test images per measurement (default 5,000)")
    ap.add_argument("--json", help="also write the numbers to this file")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        overrides = collect_overrides(sets=args.set)
        data = at.load_dataset("mnist", data_dir=args.data_dir, download=False)
    except at.UserError as exc:
        print(f"transfer_sawtooth: error: {exc}", file=sys.stderr)
        return 2
    runs = []
    for preset in args.preset or ["nature2018-held-reference", "nature2018"]:
        run = {"preset": preset, "overrides": overrides,
               **follow(build_trainer(data, preset, overrides, args), args)}
        print("\n".join(summarize(run)), flush=True)
        runs.append(run)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"command": " ".join(["python", "benchmarks/transfer_sawtooth.py", *(argv or sys.argv[1:])]),
                       "runs": runs}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
