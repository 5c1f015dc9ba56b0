"""How precisely one transfer writes the weights into the PCM pairs, and what that costs.

Each transfer reads W, RESETs both PCMs and tunes one of them back by program-verify
(docs/physics.md).  The programming step's spread, the verify tolerance and the read noise
leave an error in every weight, every transfer; on MNIST that error is what holds the chip
below software late in training (docs/reproduce.md, "What stops late MNIST").  This script
measures the error directly, for a grid of tuning tolerances and averaged reads
(``chip.transfer.reads_averaged``), without training anything:

* per layer of the MNIST network 528-250-125-10 (plus bias rows), weights are drawn from a
  normal with the std the default chip reaches after 20 MNIST epochs (0.23 / 0.40 / 1.1 weight
  units; benchmarks/results/mnist_late_gap.txt), programmed into the cells, and transferred once;
* the error is what the cell presents after the transfer minus what it should present
  (the weight before, minus s_new times the transfer offset), in weight units, and its std is
  given as a fraction of the weights' own std;
* the tuning pulses per cell, the share of devices left unconverged, and from the cost model
  (``analogtrain.cost``) the transfer's energy and time per training example at the transfer
  interval of the chip config (8,000 examples).

Usage::

    python benchmarks/transfer_precision.py [--preset nature2018]
        [--tolerance 0.3 0.2 0.1] [--reads 1 4 16] [--max-iterations 20 60] [--chips 2]
        [--set KEY=VALUE] [--json OUT]

Deterministic for a given seed; a few seconds per grid point on one CPU thread.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys

import torch

import analogtrain as at
from analogtrain.cell import HybridCells
from analogtrain.config import collect_overrides, merge_overrides
from analogtrain.cost import COST_PRESETS, estimate

#: MNIST 528-250-125-10 with a bias row per layer: (rows, columns) of each crossbar
LAYERS = ((529, 250), (251, 125), (126, 10))
#: weight std per layer (weight units) of the default chip after 20 MNIST epochs
#: (benchmarks/results/mnist_late_gap.txt, "chip, defaults")
WEIGHT_STD = (0.23, 0.40, 1.1)


def measure(cfg, layers=LAYERS, weight_std=WEIGHT_STD, chips: int = 2, seed: int = 0) -> dict:
    """One transfer of every layer under chip config ``cfg`` (an ExperimentConfig)."""
    chip = cfg.chip
    gen = torch.Generator().manual_seed(seed)
    out = {"layers": []}
    for i, ((rows, cols), std) in enumerate(zip(layers, weight_std)):
        scale = chip.us_per_weight(i)
        limit = chip.cell.max_weight_of(i)
        cells = HybridCells(chip, (chips, rows, cols), gen, "cpu")
        w = (torch.randn((chips, rows, cols), generator=gen) * std).clamp(-limit, limit)
        cells.program_weights(w * scale)
        before = cells.weight_us().clone()
        s_new = -cells.polarity if chip.cell.polarity_inversion else cells.polarity.clone()
        stats = cells.transfer()
        expected = before - s_new.unsqueeze(1) * chip.cell.transfer_offset_us
        err = (cells.weight_us() - expected) / scale
        n_cells = chips * rows * cols
        out["layers"].append({
            "rows": rows, "cols": cols, "weight_std": std,
            "error_std": float(err.std()),
            "error_rel": float(err.std()) / std,
            "error_p99_abs": float(err.abs().flatten().kthvalue(int(0.99 * err.numel())).values),
            "pulses_per_cell": stats.tuning_pulses / n_cells,
            "unconverged_share": stats.unconverged / (2 * n_cells),
        })
    # the transfer's share of the chip's energy and time per training example (cost model)
    interval = chip.transfer.interval_examples
    params = COST_PRESETS["nature2018"].for_chip(chip)
    cells_per_layer = [r * c for r, c in layers]
    run_stats = {"examples": interval, "transfers": 1, "transfer_interval_examples": interval,
                 "cells": cells_per_layer,
                 "transfer_tuning_pulses": [lay["pulses_per_cell"] * n
                                            for lay, n in zip(out["layers"], cells_per_layer)]}
    sizes = [layers[0][0] - 1] + [c for _, c in layers]
    run = estimate(sizes, params, run_stats).run
    e = run.energy_breakdown_j
    out["transfer_energy_nj_per_example"] = (e["transfer_pcm_pulses"] + e["transfer_verify_reads"]) / interval * 1e9
    out["energy_nj_per_example"] = run.energy_j / interval * 1e9
    out["transfer_time_ns_per_example"] = run.time_breakdown_s["transfer"] / interval * 1e9
    out["time_ns_per_example"] = run.time_s / interval * 1e9
    return out


def grid(preset: str, overrides: dict, tolerances, reads, iterations, chips: int, seed: int) -> list[dict]:
    rows = []
    for tol, n, it in itertools.product(tolerances, reads, iterations):
        point = {"chip": {"transfer": {"tolerance_us": tol, "reads_averaged": n, "max_iterations": it}}}
        cfg = at.get_preset(preset, merge_overrides(overrides, point))
        rows.append({"tolerance_us": tol, "reads_averaged": n, "max_iterations": it,
                     **measure(cfg, chips=chips, seed=seed)})
    return rows


def table(rows: list[dict]) -> list[str]:
    lines = ["| tolerance (µS) | reads averaged | max iterations | error std per layer (weight units) "
             "| error / weight std | tuning pulses per cell | unconverged devices | transfer energy "
             "(nJ / example) | energy (nJ / example) | transfer time (ns / example) | time (ns / example) |",
             "|" + "---|" * 11]
    def per_layer(r: dict, key: str, fmt: str) -> str:
        return " / ".join(fmt.format(lay[key]) for lay in r["layers"])

    def percent(r: dict, key: str, digits: int) -> str:
        return " / ".join(f"{100 * lay[key]:.{digits}f} %" for lay in r["layers"])

    for r in rows:
        lines.append(
            f"| {r['tolerance_us']:g} | {r['reads_averaged']} | {r['max_iterations']} "
            f"| {per_layer(r, 'error_std', '{:.4f}')} "
            f"| {percent(r, 'error_rel', 1)} "
            f"| {per_layer(r, 'pulses_per_cell', '{:.1f}')} "
            f"| {percent(r, 'unconverged_share', 2)} "
            f"| {r['transfer_energy_nj_per_example']:.1f} | {r['energy_nj_per_example']:.1f} "
            f"| {r['transfer_time_ns_per_example']:.0f} | {r['time_ns_per_example']:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="nature2018", help="chip preset (default "
                    "nature2018: the leaking reference)")
    ap.add_argument("--tolerance", type=float, nargs="+", default=[0.3, 0.2, 0.1], help="tuning tolerances, µS")
    ap.add_argument("--reads", type=int, nargs="+", default=[1, 4, 16], help="reads averaged per read")
    ap.add_argument("--max-iterations", type=int, nargs="+", default=[20, 60], help="program-verify iterations")
    ap.add_argument("--chips", type=int, default=2, help="independent chips (device draws) per point (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        overrides = collect_overrides(sets=args.set)
        rows = grid(args.preset, overrides, args.tolerance, args.reads, args.max_iterations, args.chips, args.seed)
    except at.UserError as exc:
        print(f"transfer_precision: error: {exc}", file=sys.stderr)
        return 2
    print(f"one transfer of MNIST 528-250-125-10, preset {args.preset}, {args.chips} chips, seed {args.seed}"
          + (f", overrides {overrides}" if overrides else ""))
    print("\n".join(table(rows)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"command": " ".join(["python", "benchmarks/transfer_precision.py", *(argv or sys.argv[1:])]),
                       "preset": args.preset, "overrides": overrides, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
