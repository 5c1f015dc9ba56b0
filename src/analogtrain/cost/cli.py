"""The ``analogtrain cost`` subcommand and the cost summary of ``analogtrain train``.

The top-level CLI registers the subcommand with :func:`add_parser` and calls :func:`run`;
:func:`format_run_cost` is what ``train`` prints after a run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .model import CostReport, estimate, figure_of_merit, parse_layer_sizes
from .params import COST_PRESETS, CostParams, chip_cost_params, load_cost_params
from .report import (
    format_report,
    format_run,
    format_sensitivity,
    plot_comparison,
    sensitivity,
    write_json,
)

if TYPE_CHECKING:
    from ..runs.results import TrainingResult

__all__ = ["add_parser", "run", "format_run_cost", "run_cost", "run_stats_of", "training_cost"]

DEFAULT_NETWORK = "528-250-125-10"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``cost`` on an ``argparse`` subparsers object and return its parser."""
    p = subparsers.add_parser(
        "cost",
        help="energy, area and time of training a network on the chip, vs GPUs",
        description=(
            "Estimate what training a fully connected network costs on the 2PCM+3T1C chip "
            "(energy per image, images/s, GOP/s/W, TOP/s/mm^2, with breakdowns) and compare "
            "with GPUs from their public specifications. Equations and sources: docs/cost_model.md."
        ),
    )
    p.add_argument(
        "--network", default=DEFAULT_NETWORK, metavar="SIZES",
        help=f"layer sizes joined by '-', each layer gets a bias row (default {DEFAULT_NETWORK})",
    )
    p.add_argument(
        "--params", default="nature2018", metavar="FILE_OR_PRESET",
        help=f"preset name ({', '.join(COST_PRESETS)}) or a JSON/TOML file of overrides (default nature2018)",
    )
    p.add_argument(
        "--chip", metavar="PRESET",
        help="cost the update pulse train (slots, pulse width, step) and transfer reads of this "
        "simulated chip preset (e.g. nature2018) instead of the cost model's own; the other "
        "circuit parameters stay as --params sets them (docs/cost_model.md, \"A run's cost\")",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the full report as JSON")
    p.add_argument("--plot", type=Path, metavar="FILE", help="write a PNG of the chip vs GPUs (log scale)")
    p.add_argument(
        "--sensitivity", action="store_true",
        help="also print how each inferred parameter x0.5 and x2 moves GOP/s/W and TOP/s/mm^2",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``analogtrain cost``; user mistakes raise :class:`~analogtrain.errors.ConfigError`."""
    sizes = parse_layer_sizes(getattr(args, "network", DEFAULT_NETWORK))
    params = load_cost_params(getattr(args, "params", None) or "nature2018")
    chip_preset = getattr(args, "chip", None)
    if chip_preset:
        from ..errors import ConfigError
        from ..presets import get_preset

        chip = get_preset(chip_preset).chip
        if chip.cell.kind != "2pcm+3t1c":
            raise ConfigError(
                f"--chip {chip_preset}: the cost model describes the 2PCM+3T1C cell, and this preset's "
                f"cell is {chip.cell.kind!r}; give a 2PCM+3T1C preset such as nature2018"
            )
        params = params.for_chip(chip)
    report = estimate(sizes, params)
    text = format_report(report)
    if not chip_preset:
        text += "\n\n" + _simulated_chip_line(params)
    rows = None
    if getattr(args, "sensitivity", False):
        rows = sensitivity(params)
        text += "\n\n" + format_sensitivity(rows, params)
    print(text)
    json_path = getattr(args, "json", None)
    if json_path:
        extra = {"sensitivity": [r.__dict__ for r in rows]} if rows is not None else None
        print(f"\nwrote {write_json(report, json_path, extra)}")
    plot_path = getattr(args, "plot", None)
    if plot_path:
        print(f"wrote {plot_comparison(report, plot_path)}")
    return 0


def _simulated_chip_line(params) -> str:
    """One line: the figure of merit of the chip the simulator trains (``nature2018``'s update
    pulse train), beside the cost model's own (what the paper's figure assumes)."""
    from ..presets import get_preset

    chip = get_preset("nature2018").chip
    fom = figure_of_merit(params.for_chip(chip))
    t = params.timing
    return (f"The chip above updates in {t.update_pulse_slots} slots of {t.update_pulse_duration_ns:g} ns (the paper's "
            f"figure); the simulated nature2018 chip updates in {chip.update.pulse_train_length} slots of "
            f"{chip.capacitor.pulse_width_ns:g} ns ({1e3 * chip.capacitor.step_at_reset_v:.2f} mV a pulse): "
            f"{fom.gops_per_w:,.0f} GOP/s/W, {fom.tops_per_mm2:.2f} TOP/s/mm^2 "
            "(analogtrain cost --chip nature2018 costs that chip throughout).")


def run_stats_of(run: TrainingResult, chip: Any) -> dict[str, Any]:
    """What the cost model needs of a training run (a
    :class:`~analogtrain.runs.results.TrainingResult`; ``chip`` its ``ChipConfig``): examples,
    transfers, and the pulse counts per chip (the run holds totals over its chips)."""
    chips = run.chips
    return {
        "examples": run.examples,
        "update_pulses": [sum(v) / chips for v in run.update_pulses],
        "transfers": run.transfers,
        "transfer_tuning_pulses": [p / chips for p in run.transfer_tuning_pulses],
        "cells": run.cells_per_layer,
        "transfer_interval_examples": chip.transfer.interval_examples,
    }


def training_cost(run: TrainingResult, chip: Any) -> dict[str, Any] | None:
    """What a training run (``chip`` its ``ChipConfig``) would have cost on the chip, per training
    image, with the update pulse train it simulated and the pulses it fired; and the figure of
    merit (one full array) of that update train.  None where the cost model does not describe the
    cell (software, the 2-PCM cell) or the run trained nothing."""
    params = chip_cost_params(chip)
    if params is None or not run.examples:
        return None
    report = estimate(run.network, params, run_stats=run_stats_of(run, chip))
    cost, fom = report.run, report.figure_of_merit
    assert cost is not None
    return {
        "update_slots": int(chip.update.pulse_train_length),
        "update_pulse_ns": float(chip.capacitor.pulse_width_ns),
        "energy_per_image_j": cost.energy_j / cost.examples,
        "chip_time_per_image_s": cost.time_s / cost.examples,
        "run_gops_per_w": cost.gops_per_w,
        "fom_gops_per_w": fom.gops_per_w,
        "fom_tops_per_mm2": fom.tops_per_mm2,
    }


def format_run_cost(
    layer_sizes: list[int] | str,
    run_stats: dict[str, Any] | None,
    params: CostParams | str | None = None,
) -> str:
    """What the run just simulated would have cost on the chip, next to the GPU estimate.

    ``run_stats`` keys (all optional): ``examples``, ``update_pulses``, ``transfers``,
    ``transfer_tuning_pulses``, ``cells``, ``transfer_interval_examples``.
    """
    return run_cost(layer_sizes, run_stats, params)[0]


def run_cost(
    layer_sizes: list[int] | str,
    run_stats: dict[str, Any] | None,
    params: CostParams | str | None = None,
) -> tuple[str, CostReport]:
    """:func:`format_run_cost`'s text together with the report it summarises (one estimate)."""
    params = load_cost_params(params)
    report = estimate(layer_sizes, params, run_stats=dict(run_stats or {}))
    assert report.run is not None
    return f"Cost model '{params.name}' (docs/cost_model.md):\n" + format_run(report.run), report
