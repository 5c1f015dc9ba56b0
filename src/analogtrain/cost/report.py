"""Text tables, JSON and the comparison figure for a :class:`~analogtrain.cost.model.CostReport`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, OutputError
from .model import (
    AREA_COMPONENTS,
    ENERGY_COMPONENTS,
    CostReport,
    RunCost,
    figure_of_merit,
)
from .params import CostParams

__all__ = [
    "format_report",
    "format_run",
    "format_sensitivity",
    "sensitivity",
    "SensitivityRow",
    "write_json",
    "plot_comparison",
]


# --------------------------------------------------------------------------------------
# number formatting
# --------------------------------------------------------------------------------------
_PREFIXES = [(1e-15, "f"), (1e-12, "p"), (1e-9, "n"), (1e-6, "u"), (1e-3, "m"), (1.0, ""), (1e3, "k"), (1e6, "M"), (1e9, "G")]


def _si(value: float, unit: str, digits: int = 3) -> str:
    """1.23e-8, "J" -> "12.3 nJ"."""
    if value == 0 or not math.isfinite(value):
        return f"0 {unit}" if value == 0 else f"{value} {unit}"
    for scale, prefix in reversed(_PREFIXES):
        if abs(value) >= scale:
            break
    else:
        scale, prefix = _PREFIXES[0]
    return f"{value / scale:.{digits}g} {prefix}{unit}"


def _num(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _table(headers: list[str], rows: list[list[str]], align: str | None = None) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    align = align or "l" + "r" * (len(headers) - 1)

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align)).rstrip()

    lines = [fmt(headers), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def _breakdown(title: str, parts: dict[str, float], unit: str, order: tuple[str, ...] | None = None) -> str:
    total = sum(parts.values())
    keys = list(order) if order else list(parts)

    def show(v: float) -> str:
        return f"{v:.4f} {unit}" if unit == "mm^2" else _si(v, unit)

    rows = [[k, show(parts[k]), f"{100 * parts[k] / total:.1f}%" if total else "-"] for k in keys if k in parts]
    rows.append(["total", show(total), "100.0%"])
    return f"{title}\n" + _table(["component", "value", "share"], rows)


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------
def format_report(report: CostReport) -> str:
    """The full text report: headline, breakdowns, GPU table."""
    p = report.params
    fom = report.figure_of_merit
    net = "-".join(map(str, report.layer_sizes))
    ob = report.ops_breakdown
    sched = "pipelined across layers" if report.pipelined else "one example at a time through all layers"
    out = [
        f"analogtrain cost model - parameter set '{p.name}', network {net}",
        f"  {report.synapses:,} synapses (weights incl. one bias row per layer) on {len(report.tiles)} tile(s) "
        f"of at most {p.array.rows}x{p.array.cols} cells ({p.array.tile_allocation}); "
        f"{p.technology.node_nm:g} nm node, cell {fom.cell_area_um2:.2f} um^2",
        f"  ops per example: {report.ops_per_example:,.0f} = forward {ob['forward']:,.0f} + backward "
        f"{ob['backward']:,.0f} + update {ob['update']:,.0f}",
        "  (a multiply-accumulate = 2 ops; update = multiply + accumulate = 2 ops per weight;"
        + (" backward through layer 1 not needed, not counted)" if not p.timing.backward_through_first_layer else ")"),
        "",
        f"Chip figure of merit: one fully used {fom.array_rows}x{fom.array_cols} array, steady state "
        "(6 ops per cell per example)",
        _table(
            ["metric", "model", "paper", "deviation"],
            [
                ["energy efficiency (GOP/s/W)", _num(fom.gops_per_w), _num(fom.paper_gops_per_w), f"{100 * fom.gops_per_w_vs_paper:+.1f}%"],
                ["throughput per area (TOP/s/mm^2)", _num(fom.tops_per_mm2), _num(fom.paper_tops_per_mm2), f"{100 * fom.tops_per_mm2_vs_paper:+.1f}%"],
                ["energy per op", _si(fom.energy_per_op_fj * 1e-15, "J"), _si(1 / (fom.paper_gops_per_w * 1e9), "J"), ""],
                ["cycle per example", _si(fom.cycle_s, "s"), "", ""],
                ["array area", f"{fom.area_mm2:.3f} mm^2", "", ""],
                ["power density", f"{fom.power_density_w_per_mm2:.3f} W/mm^2", "", ""],
                ["periphery share of area / energy", f"{100 * fom.periphery_area_share:.0f}% / {100 * fom.periphery_energy_share:.0f}%", "", ""],
            ],
        ),
        "",
        f"This network ({sched}):",
        _table(
            ["metric", "value"],
            [
                ["time per example", _si(report.time_per_example_s, "s")],
                ["images per second", f"{report.images_per_s:,.0f}"],
                ["energy per image", _si(report.joules_per_image, "J")],
                ["chip area (arrays + periphery)", f"{report.area_mm2:.3f} mm^2"],
                ["energy efficiency (GOP/s/W)", _num(report.gops_per_w)],
                ["throughput per area (TOP/s/mm^2)", _num(report.tops_per_mm2)],
                ["periphery share of area / energy", f"{100 * report.periphery_area_share:.0f}% / {100 * report.periphery_energy_share:.0f}%"],
            ],
        ),
        "",
        "Tiles: " + ", ".join(f"L{t.layer + 1}[{t.row_tile},{t.col_tile}] {t.rows}x{t.cols}" for t in report.tiles),
        "",
        _breakdown("Time per example (network)", report.time_breakdown_s, "s"),
        "",
        _breakdown("Energy per example (network)", report.energy_breakdown_j, "J", ENERGY_COMPONENTS),
        "",
        _breakdown("Area (network)", report.area_breakdown_mm2, "mm^2", AREA_COMPONENTS),
        "",
        _breakdown(f"Energy per example (figure of merit, {fom.array_rows}x{fom.array_cols} array)", fom.energy_breakdown_j, "J", ENERGY_COMPONENTS),
        "",
        format_gpu_table(report),
    ]
    if report.run is not None:
        out += ["", format_run(report.run)]
    return "\n".join(out)


def format_gpu_table(report: CostReport) -> str:
    """Per-op (at each GPU's peak) and per-image (same network, minibatch 1) comparison."""
    fom = report.figure_of_merit
    gp = report.params.gpu
    per_op = [
        ["chip (figure of merit)", "", "", "", _num(fom.gops_per_w), _num(fom.tops_per_mm2), "1", "1"],
        ["chip (this network)", "", "", "", _num(report.gops_per_w), _num(report.tops_per_mm2), "", ""],
    ]
    per_img = [["chip (this network)", "", _si(report.time_per_example_s, "s"), _si(report.joules_per_image, "J"), "", "", "1", "1"]]
    for g in report.gpus:
        s = g.gpu
        per_op.append([
            f"{s.name} ({s.year})", _num(s.peak_fp16_tflops), f"{s.tdp_w:.0f}", f"{s.die_area_mm2:.0f}",
            _num(g.gops_per_w), f"{g.tops_per_mm2:.3g}",
            f"{g.chip_efficiency_advantage:,.0f}x", f"{g.chip_area_advantage:,.1f}x",
        ])
        per_img.append([
            s.name, f"{100 * g.utilisation:.2g}%", _si(g.time_per_image_s, "s"), _si(g.energy_per_image_j, "J"),
            _si(g.time_per_image_at_peak_s, "s"), _si(g.energy_per_image_at_peak_j, "J"),
            f"{g.chip_speed_advantage:,.1f}x", f"{g.chip_energy_per_image_advantage:,.0f}x",
        ])
    return (
        "GPU comparison per operation (GPU at peak dense FP16 from its data sheet, board TDP, die area)\n"
        + _table(["", "TFLOP/s", "W", "mm^2", "GOP/s/W", "TOP/s/mm^2", "chip adv. (eff.)", "chip adv. (area)"], per_op)
        + "\n\nGPU comparison per image of this network, training at minibatch 1: GPU time = max(ops / "
        f"(peak x {100 * gp.minibatch1_utilisation:g}%), {gp.minibatch1_step_floor_us:g} us step floor), energy = time x "
        f"{100 * gp.power_fraction_of_tdp:g}% of TDP; '@peak' = the bound no GPU can beat (full TDP)\n"
        + _table(
            ["", "util.", "time/image", "J/image", "time @peak", "J @peak", "chip faster", "chip less energy"], per_img
        )
    )


def format_run(run: RunCost) -> str:
    """Summary of what a simulated run would have cost."""
    nominal = sorted(set(["examples", "update_pulses", "transfers", "transfer_tuning_pulses", "cells"]) - set(run.from_run))
    lines = [
        f"This run on the chip: {run.examples:,} examples, {run.transfers:,} transfers "
        f"(every {run.transfer_interval_examples:,}), {run.ops:.3g} ops",
        f"  time {_si(run.time_s, 's')} (transfers {_si(run.time_breakdown_s.get('transfer', 0.0), 's')}), "
        f"energy {_si(run.energy_j, 'J')} ({_num(run.gops_per_w)} GOP/s/W)",
        "  energy: " + ", ".join(
            f"{k} {_si(v, 'J')}" for k, v in run.energy_breakdown_j.items() if v > 0
        ),
        f"  same run on a {run.gpu_name}: {_si(run.gpu_time_s, 's')}, {_si(run.gpu_energy_j, 'J')} at the assumed "
        f"minibatch-1 utilisation; {_si(run.gpu_time_at_peak_s, 's')}, {_si(run.gpu_energy_at_peak_j, 'J')} at peak",
    ]
    if nominal:
        lines.append("  (nominal values used for: " + ", ".join(nominal) + ")")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# sensitivity
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SensitivityRow:
    name: str
    value: Any
    unit: str
    source: str
    gops_per_w_half: float | None  # relative change of GOP/s/W with the parameter x0.5
    gops_per_w_double: float | None
    tops_per_mm2_half: float | None
    tops_per_mm2_double: float | None


def _scaled(value: Any, factor: float) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(1, int(round(value * factor)))
    return value * factor


def sensitivity(params: CostParams, *, only_inferred: bool = True) -> list[SensitivityRow]:
    """Each (inferred) chip parameter x0.5 and x2: relative change of the figure of merit."""
    base = figure_of_merit(params)
    rows = []
    for dotted, unit, source, _doc, value in params.sources():
        if dotted.startswith("gpu.") or isinstance(value, (bool, str)):
            continue
        if only_inferred and not source.startswith("assumed"):
            continue
        results = []
        for factor in (0.5, 2.0):
            try:
                fom = figure_of_merit(params.with_value(dotted, _scaled(value, factor)))
            except ConfigError:
                results.append((None, None))
                continue
            results.append((fom.gops_per_w / base.gops_per_w - 1.0, fom.tops_per_mm2 / base.tops_per_mm2 - 1.0))
        rows.append(SensitivityRow(dotted, value, unit, source, results[0][0], results[1][0], results[0][1], results[1][1]))
    return rows


def format_sensitivity(rows: list[SensitivityRow], params: CostParams | None = None) -> str:
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:+.1f}%"

    body = [
        [r.name, f"{r.value:g} {r.unit}".strip(), pct(r.gops_per_w_half), pct(r.gops_per_w_double),
         pct(r.tops_per_mm2_half), pct(r.tops_per_mm2_double)]
        for r in sorted(rows, key=lambda r: -max(abs(x or 0.0) for x in (r.gops_per_w_half, r.gops_per_w_double, r.tops_per_mm2_half, r.tops_per_mm2_double)))
    ]
    head = "Sensitivity of the figure of merit to each inferred parameter (x0.5 / x2; n/a = outside its allowed range)"
    if params is not None:
        fom = figure_of_merit(params)
        head += f"\nbase: {_num(fom.gops_per_w)} GOP/s/W, {_num(fom.tops_per_mm2)} TOP/s/mm^2 ('{params.name}')"
    return head + "\n" + _table(
        ["parameter", "value", "GOP/s/W x0.5", "GOP/s/W x2", "TOP/s/mm^2 x0.5", "TOP/s/mm^2 x2"], body, "llrrrr"
    )


# --------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------
def _prepare(path: Path) -> Path:
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder for {path}: {exc.strerror}; choose a writable path") from None
    return path


def write_json(report: CostReport, path: Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``report.to_dict()`` (plus ``extra``) as JSON."""
    path = _prepare(path)
    data = report.to_dict()
    if extra:
        data.update(extra)
    try:
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}; choose a writable path") from None
    return path


def plot_comparison(report: CostReport, path: Path) -> Path:
    """PNG: GOP/s/W and TOP/s/mm^2 of the chip and each GPU, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = _prepare(path)
    fom = report.figure_of_merit
    labels = ["chip\nfull array", "chip\nthis net"] + [g.gpu.name.replace(" ", "\n") for g in report.gpus]
    eff = [fom.gops_per_w, report.gops_per_w] + [g.gops_per_w for g in report.gpus]
    dens = [fom.tops_per_mm2, report.tops_per_mm2] + [g.tops_per_mm2 for g in report.gpus]
    colors = ["tab:red", "lightcoral"] + ["tab:gray"] * len(report.gpus)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, values, title, paper, unit in (
        (axes[0], eff, "Energy efficiency", fom.paper_gops_per_w, "GOP/s/W"),
        (axes[1], dens, "Throughput per area", fom.paper_tops_per_mm2, "TOP/s/mm$^2$"),
    ):
        bars = ax.bar(range(len(values)), values, color=colors)
        ax.set_yscale("log")
        ax.set_ylim(min(values) / 2, max(max(values), paper) * 4)
        ax.axhline(paper, color="k", ls="--", lw=1, label=f"paper: {paper:,g}")
        ax.set_xticks(range(len(values)), labels, fontsize=7)
        ax.set_ylabel(unit)
        ax.set_title(title)
        for b, v in zip(bars, values):
            ax.annotate(_num(v), (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(
        f"2PCM+3T1C chip ('{report.params.name}', {report.params.technology.node_nm:g} nm; network "
        f"{'-'.join(map(str, report.layer_sizes))}) vs GPUs at peak dense FP16",
        fontsize=10,
    )
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=150)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}; choose a writable path") from None
    finally:
        plt.close(fig)
    return path

