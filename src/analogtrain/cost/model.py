"""The cost model: operations, time, energy and area of training on the 2PCM+3T1C chip.

Pure functions of a network's layer sizes and a :class:`~analogtrain.cost.params.CostParams`.
The equations are written out in docs/cost_model.md; each function below says which.

Operation counting (the same count is used for the GPUs):

* forward pass: one multiply-accumulate per weight = **2 ops** per weight;
* backward pass: **2 ops** per weight of every layer whose input error is needed (all but the
  first layer, unless ``timing.backward_through_first_layer``);
* update: one multiply (x_i * delta_j) and one accumulate per weight = **2 ops** per weight.

A fully used array therefore performs 6 ops per cell per training example.  Biases are
weights (one extra row per layer).  Activation functions, derivatives and the transfer are
not counted as operations, but their energy and time are.

Two sets of figures come out:

* the **figure of merit** of the hardware: one fully used ``array.rows x array.cols`` array
  in steady state (forward, backward, update every example, plus its share of the
  transfers).  This is the chip's counterpart of a GPU's peak TFLOP/s and is what the
  paper's 28,065 GOP/s/W and 3.6 TOP/s/mm^2 are compared with;
* the figures **for the given network** mapped onto tiles (utilisation, periphery of small
  layers, scheduling included), per image and per operation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError
from ..timing import (
    Tile,
    map_network,
    phase_times_s,
    time_breakdown_s,
    transfer_event_time_s,
)
from ..timing import (
    backward_needed as _backward_needed,
)
from .gpus import GpuComparison, compare_gpus, gpu_by_name, gpu_run_estimate
from .params import PAPER_GOPS_PER_W, PAPER_TOPS_PER_MM2, CostParams, load_cost_params

__all__ = [
    "Tile",
    "FigureOfMerit",
    "RunCost",
    "CostReport",
    "ENERGY_COMPONENTS",
    "PERIPHERY_ENERGY_COMPONENTS",
    "parse_layer_sizes",
    "map_network",
    "ops_per_example",
    "cell_area_um2",
    "phase_times_s",
    "transfer_event_time_s",
    "capacitor_pulse_energy_j",
    "figure_of_merit",
    "estimate",
]

#: Energy components, in the order they are reported.
ENERGY_COMPONENTS = (
    "array_read",  # analog MAC currents through the cells (forward + backward reads)
    "line_drivers",  # charging row/column lines for the reads and the update pulses
    "neuron_converters",  # integrate + convert each neuron output (forward and backward)
    "neuron_digital",  # activation/derivative, x and delta registers, routing onward
    "tile_partial_sums",  # digital adds of partial sums of tiled layers
    "capacitor_update",  # charge/discharge of the 3T1C capacitors by coincident pulses
    "transfer_pcm_pulses",  # RESET + tuning pulses of the PCM at transfer (amortised)
    "transfer_verify_reads",  # reads/conversions of the weights during transfer (amortised)
    "static",  # static power of the arrays over the time
)

#: Components that belong to the periphery (paid per line or per array, not per cell).
PERIPHERY_ENERGY_COMPONENTS = ("line_drivers", "neuron_converters", "neuron_digital", "tile_partial_sums", "static")

AREA_COMPONENTS = ("cells", "row_periphery", "column_periphery", "array_fixed")
TIME_COMPONENTS = ("forward", "backward", "update", "transfer_amortised")


# --------------------------------------------------------------------------------------
# Network and mapping
# --------------------------------------------------------------------------------------
def parse_layer_sizes(text: str | list[int] | tuple[int, ...]) -> list[int]:
    """``"528-250-125-10"`` -> ``[528, 250, 125, 10]``; ConfigError on anything else."""
    if isinstance(text, (list, tuple)):
        sizes = list(text)
    else:
        parts = str(text).strip().replace(",", "-").split("-")
        try:
            sizes = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(
                f"--network must be layer sizes joined by '-', e.g. 528-250-125-10; got {text!r}"
            ) from None
    if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise ConfigError(
            f"--network needs at least two positive layer sizes, e.g. 528-250-125-10; got {text!r}"
        )
    return sizes


def _layer_cells(layer_sizes: list[int]) -> list[int]:
    return [(a + 1) * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:])]


def ops_per_example(layer_sizes: list[int], params: CostParams) -> dict[str, float]:
    """Operations per training example: ``{"forward", "backward", "update", "total"}``."""
    cells = _layer_cells(layer_sizes)
    fwd = 2.0 * sum(cells)
    bwd = 2.0 * sum(c for i, c in enumerate(cells) if _backward_needed(i, params))
    upd = 2.0 * sum(cells)
    return {"forward": fwd, "backward": bwd, "update": upd, "total": fwd + bwd + upd}


# --------------------------------------------------------------------------------------
# Unit cell, times, per-tile energies
# --------------------------------------------------------------------------------------
def cell_area_um2(params: CostParams) -> float:
    """A_cell = (n_3T1C * A_T + n_PCM * A_1T1R) * F^2 + C / (C per area)."""
    c = params.cell
    f2_um2 = (params.technology.node_nm * 1e-3) ** 2
    transistors = c.transistors_3t1c * c.transistor_area_f2 + c.pcm_devices * c.pcm_access_area_f2
    return transistors * f2_um2 + c.capacitance_ff / c.capacitor_density_ff_per_um2


def capacitor_pulse_energy_j(params: CostParams) -> float:
    """E = C * dV * V_dd: charge moved by one pulse, drawn from the supply."""
    c = params.cell
    return c.capacitance_ff * 1e-15 * c.capacitor_step_mv * 1e-3 * params.technology.supply_voltage_v


def _read_energy_per_cell_j(params: CostParams) -> float:
    """E = G * V_read^2 * t_window * duty, for one read of one cell."""
    c, t = params.cell, params.timing
    return c.read_conductance_us * 1e-6 * c.read_voltage_v**2 * t.read_pulse_duration_ns * 1e-9 * c.mean_input_duty


def _line_pulse_energy_j(cells_on_line: int, params: CostParams) -> float:
    """E = (cells * c_line) * V_dd^2 for one pulse on one line."""
    return cells_on_line * params.cell.line_capacitance_per_cell_ff * 1e-15 * params.technology.supply_voltage_v**2


def _verify_reads_per_cell(pulses_per_cell: float, params: CostParams) -> float:
    """One initial read plus one verify after each non-RESET tuning pulse, each of ``reads_averaged`` reads."""
    return (max(pulses_per_cell - params.transfer.resets_per_cell, 0.0) + 1.0) * params.transfer.reads_averaged


def _tile_energy_j(
    tile: Tile,
    params: CostParams,
    *,
    backward: bool,
    digital_fwd: bool,
    digital_bwd: bool,
    cap_pulses_per_cell: float,
    tuning_pulses_per_cell: float,
    interval: float,
) -> dict[str, float]:
    """Energy of one tile for one example (without static power)."""
    e = params.energy
    reads = 1 + int(backward)
    conv = e.neuron_conversion_energy_pj * 1e-12
    dig = e.neuron_digital_energy_pj * 1e-12
    slots_fired = params.timing.update_pulse_slots * e.update_line_activity
    row_line = _line_pulse_energy_j(tile.alloc_cols, params)  # a row line crosses the columns
    col_line = _line_pulse_energy_j(tile.alloc_rows, params)
    out = dict.fromkeys(ENERGY_COMPONENTS, 0.0)
    out["array_read"] = reads * tile.cells * _read_energy_per_cell_j(params)
    out["line_drivers"] = (
        tile.rows * row_line  # forward: inputs on the rows
        + (tile.cols * col_line if backward else 0.0)  # backward: errors on the columns
        + slots_fired * (tile.rows * row_line + tile.cols * col_line)  # update pulses
    )
    out["neuron_converters"] = conv * (tile.cols + (tile.rows if backward else 0))
    out["neuron_digital"] = dig * ((tile.cols if digital_fwd else 0) + (tile.rows if backward and digital_bwd else 0))
    out["capacitor_update"] = tile.cells * cap_pulses_per_cell * capacitor_pulse_energy_j(params)
    out["transfer_pcm_pulses"] = tile.cells * tuning_pulses_per_cell * e.pcm_pulse_energy_pj * 1e-12 / interval
    out["transfer_verify_reads"] = tile.cells * _verify_reads_per_cell(tuning_pulses_per_cell, params) * conv / interval
    return out


def _tile_area_um2(tile: Tile, params: CostParams) -> dict[str, float]:
    a = params.array
    return {
        "cells": tile.alloc_rows * tile.alloc_cols * cell_area_um2(params),
        "row_periphery": tile.alloc_rows * a.row_periphery_area_um2,
        "column_periphery": tile.alloc_cols * a.col_periphery_area_um2,
        "array_fixed": a.array_fixed_area_um2,
    }


def _add(into: dict[str, float], more: dict[str, float], scale: float = 1.0) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0.0) + scale * v


# --------------------------------------------------------------------------------------
# Figure of merit
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FigureOfMerit:
    """One fully used array in steady state: the hardware's counterpart of a GPU's peak."""

    array_rows: int
    array_cols: int
    ops_per_example: float
    cycle_s: float
    time_breakdown_s: dict[str, float]
    energy_per_example_j: float
    energy_breakdown_j: dict[str, float]
    area_mm2: float
    area_breakdown_mm2: dict[str, float]
    cell_area_um2: float
    gops_per_w: float
    tops_per_mm2: float
    energy_per_op_fj: float
    power_density_w_per_mm2: float
    paper_gops_per_w: float = PAPER_GOPS_PER_W
    paper_tops_per_mm2: float = PAPER_TOPS_PER_MM2

    @property
    def gops_per_w_vs_paper(self) -> float:
        """Relative deviation from the paper's 28,065 GOP/s/W."""
        return self.gops_per_w / self.paper_gops_per_w - 1.0

    @property
    def tops_per_mm2_vs_paper(self) -> float:
        """Relative deviation from the paper's 3.6 TOP/s/mm^2."""
        return self.tops_per_mm2 / self.paper_tops_per_mm2 - 1.0

    @property
    def periphery_area_share(self) -> float:
        return 1.0 - self.area_breakdown_mm2["cells"] / self.area_mm2

    @property
    def periphery_energy_share(self) -> float:
        return sum(self.energy_breakdown_j[k] for k in PERIPHERY_ENERGY_COMPONENTS) / self.energy_per_example_j

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            gops_per_w_vs_paper=self.gops_per_w_vs_paper,
            tops_per_mm2_vs_paper=self.tops_per_mm2_vs_paper,
            periphery_area_share=self.periphery_area_share,
            periphery_energy_share=self.periphery_energy_share,
        )
        return d


def figure_of_merit(params: CostParams | str | None = None) -> FigureOfMerit:
    """GOP/s/W and TOP/s/mm^2 of one fully used array (equations in docs/cost_model.md)."""
    params = load_cost_params(params)
    a = params.array
    tile = Tile(0, 0, 0, a.rows, a.cols, a.rows, a.cols)
    interval = float(params.transfer.interval_examples)
    pulses = params.transfer.tuning_pulses_per_cell
    phases = phase_times_s(params)
    times = {
        "forward": phases["read"],
        "backward": phases["read"],
        "update": phases["update"],
        "transfer_amortised": transfer_event_time_s(a.rows, pulses, params) / interval,
    }
    cycle = sum(times.values())
    energy = _tile_energy_j(
        tile, params, backward=True, digital_fwd=True, digital_bwd=True,
        cap_pulses_per_cell=params.energy.capacitor_pulses_per_cell_per_example,
        tuning_pulses_per_cell=pulses, interval=interval,
    )
    energy["static"] = params.energy.array_static_power_mw * 1e-3 * cycle
    e_total = sum(energy.values())
    area_um2 = _tile_area_um2(tile, params)
    area_mm2 = sum(area_um2.values()) * 1e-6
    ops = 6.0 * tile.cells
    return FigureOfMerit(
        array_rows=a.rows,
        array_cols=a.cols,
        ops_per_example=ops,
        cycle_s=cycle,
        time_breakdown_s=times,
        energy_per_example_j=e_total,
        energy_breakdown_j=energy,
        area_mm2=area_mm2,
        area_breakdown_mm2={k: v * 1e-6 for k, v in area_um2.items()},
        cell_area_um2=cell_area_um2(params),
        gops_per_w=ops / e_total / 1e9,
        tops_per_mm2=ops / cycle / area_mm2 / 1e12,
        energy_per_op_fj=e_total / ops * 1e15,
        power_density_w_per_mm2=e_total / cycle / area_mm2,
    )


# --------------------------------------------------------------------------------------
# Network estimate and run cost
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunCost:
    """What one simulated training run would have cost on the chip, and on a GPU."""

    examples: int
    transfers: int
    transfer_interval_examples: int
    update_pulses: list[float]
    transfer_tuning_pulses: list[float]
    cells: list[int]
    from_run: list[str]  # run_stats keys that were used (the rest are nominal)
    time_s: float
    time_breakdown_s: dict[str, float]
    energy_j: float
    energy_breakdown_j: dict[str, float]
    ops: float
    gops_per_w: float
    gpu_name: str
    gpu_time_s: float
    gpu_energy_j: float
    gpu_time_at_peak_s: float
    gpu_energy_at_peak_j: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CostReport:
    """All outputs of :func:`estimate`."""

    params: CostParams
    layer_sizes: list[int]
    synapses: int
    tiles: list[Tile]
    pipelined: bool
    ops_per_example: float
    ops_breakdown: dict[str, float]
    time_per_example_s: float
    time_breakdown_s: dict[str, float]
    images_per_s: float
    energy_per_example_j: float
    energy_breakdown_j: dict[str, float]
    area_mm2: float
    area_breakdown_mm2: dict[str, float]
    gops_per_w: float
    tops_per_mm2: float
    figure_of_merit: FigureOfMerit
    gpus: list[GpuComparison] = field(default_factory=list)
    run: RunCost | None = None

    @property
    def joules_per_image(self) -> float:
        return self.energy_per_example_j

    @property
    def periphery_area_share(self) -> float:
        return 1.0 - self.area_breakdown_mm2["cells"] / self.area_mm2

    @property
    def periphery_energy_share(self) -> float:
        return sum(self.energy_breakdown_j[k] for k in PERIPHERY_ENERGY_COMPONENTS) / self.energy_per_example_j

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of everything (parameters included)."""
        return {
            "params_name": self.params.name,
            "params": self.params.to_dict(),
            "operation_counting": (
                "forward MAC = 2 ops/weight; backward MAC = 2 ops/weight of each layer whose "
                "input error is needed; update = 2 ops/weight (multiply + accumulate); biases "
                "are weights; activations and transfers are not counted as ops"
            ),
            "layer_sizes": list(self.layer_sizes),
            "synapses": self.synapses,
            "tiles": [asdict(t) for t in self.tiles],
            "pipelined": self.pipelined,
            "ops_per_example": self.ops_per_example,
            "ops_breakdown": dict(self.ops_breakdown),
            "time_per_example_s": self.time_per_example_s,
            "time_breakdown_s": dict(self.time_breakdown_s),
            "images_per_s": self.images_per_s,
            "energy_per_example_j": self.energy_per_example_j,
            "joules_per_image": self.joules_per_image,
            "energy_breakdown_j": dict(self.energy_breakdown_j),
            "area_mm2": self.area_mm2,
            "area_breakdown_mm2": dict(self.area_breakdown_mm2),
            "periphery_area_share": self.periphery_area_share,
            "periphery_energy_share": self.periphery_energy_share,
            "gops_per_w": self.gops_per_w,
            "tops_per_mm2": self.tops_per_mm2,
            "figure_of_merit": self.figure_of_merit.to_dict(),
            "gpus": [g.to_dict() for g in self.gpus],
            "run": self.run.to_dict() if self.run is not None else None,
        }


def _network_energy_and_time(
    tiles: list[Tile],
    layer_sizes: list[int],
    params: CostParams,
    *,
    cap_pulses_per_cell: list[float],
    tuning_pulses_per_cell: list[float],
    interval: float,
) -> tuple[dict[str, float], dict[str, float], float]:
    """Per-example energy (without static), time breakdown, and the transfer-event time."""
    n_layers = len(layer_sizes) - 1
    energy = dict.fromkeys(ENERGY_COMPONENTS, 0.0)
    for t in tiles:
        bwd = _backward_needed(t.layer, params)
        _add(
            energy,
            _tile_energy_j(
                t, params, backward=bwd,
                digital_fwd=t.row_tile == 0, digital_bwd=t.col_tile == 0,
                cap_pulses_per_cell=cap_pulses_per_cell[t.layer],
                tuning_pulses_per_cell=tuning_pulses_per_cell[t.layer], interval=interval,
            ),
        )
    # partial sums of tiled layers: forward over row tiles, backward over column tiles
    add_e = params.energy.partial_sum_add_energy_pj * 1e-12
    for layer in range(n_layers):
        lt = [t for t in tiles if t.layer == layer]
        n_rt = 1 + max(t.row_tile for t in lt)
        n_ct = 1 + max(t.col_tile for t in lt)
        rows, cols = layer_sizes[layer] + 1, layer_sizes[layer + 1]
        energy["tile_partial_sums"] += add_e * (n_rt - 1) * cols
        if _backward_needed(layer, params):
            energy["tile_partial_sums"] += add_e * (n_ct - 1) * rows
    times, transfer_event = time_breakdown_s(tiles, layer_sizes, params,
                                             tuning_pulses_per_cell=tuning_pulses_per_cell, interval=interval)
    return energy, times, transfer_event


def _per_layer(stats: dict[str, Any], key: str, n_layers: int, chips: float) -> list[float | None] | None:
    """One value per layer, for one chip.

    An entry may be a number (a total over all ``chips`` simulated chips, divided by
    ``chips``), a list of per-chip numbers (averaged), or None (nominal for that layer).
    """
    value = stats.get(key)
    if value is None:
        return None
    values = list(value)
    if len(values) != n_layers:
        raise ValueError(f"run_stats[{key!r}] has {len(values)} entries, expected one per layer ({n_layers})")
    out: list[float | None] = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        if isinstance(v, (list, tuple)):
            v = sum(float(x) for x in v) / len(v) if len(v) else None
        else:
            v = float(v) / chips
        if v is not None and (v < 0 or not math.isfinite(v)):
            raise ValueError(f"run_stats[{key!r}] must be finite and not negative, got {values}")
        out.append(v)
    return out


def estimate(
    layer_sizes: list[int] | str,
    params: CostParams | str | None = None,
    run_stats: dict[str, Any] | None = None,
) -> CostReport:
    """Cost of training ``layer_sizes`` on the chip, per example and (with ``run_stats``) per run.

    ``run_stats`` (every key optional, nominal values fill in): ``examples``,
    ``update_pulses`` (per layer, total coincident capacitor pulses over the run),
    ``transfers``, ``transfer_tuning_pulses`` (per layer, incl. RESETs), ``cells`` (per layer),
    ``transfer_interval_examples``; optionally ``chips`` (how many chips were simulated side by
    side: per-layer numbers are then totals over them, per-layer lists are per-chip values).
    Costs are for one chip.
    """
    sizes = parse_layer_sizes(layer_sizes)
    params = load_cost_params(params)
    n_layers = len(sizes) - 1
    tiles = map_network(sizes, params)
    cells = _layer_cells(sizes)
    interval = float(params.transfer.interval_examples)
    nominal_cap = [params.energy.capacitor_pulses_per_cell_per_example] * n_layers
    nominal_tune = [params.transfer.tuning_pulses_per_cell] * n_layers

    energy, times, _ = _network_energy_and_time(
        tiles, sizes, params, cap_pulses_per_cell=nominal_cap, tuning_pulses_per_cell=nominal_tune, interval=interval
    )
    t_example = sum(times.values())
    energy["static"] = params.energy.array_static_power_mw * 1e-3 * len(tiles) * t_example
    e_example = sum(energy.values())
    area = dict.fromkeys(AREA_COMPONENTS, 0.0)
    for t in tiles:
        _add(area, _tile_area_um2(t, params), 1e-6)
    area_mm2 = sum(area.values())
    ops = ops_per_example(sizes, params)
    fom = figure_of_merit(params)
    gpus = compare_gpus(
        ops_per_example=ops["total"],
        chip_gops_per_w=fom.gops_per_w,
        chip_tops_per_mm2=fom.tops_per_mm2,
        chip_time_per_image_s=t_example,
        chip_energy_per_image_j=e_example,
        gpu_params=params.gpu,
    )
    run = _run_cost(sizes, tiles, cells, params, run_stats, ops["total"]) if run_stats is not None else None
    return CostReport(
        params=params,
        layer_sizes=sizes,
        synapses=sum(cells),
        tiles=tiles,
        pipelined=params.timing.pipelined,
        ops_per_example=ops["total"],
        ops_breakdown={k: v for k, v in ops.items() if k != "total"},
        time_per_example_s=t_example,
        time_breakdown_s=times,
        images_per_s=1.0 / t_example,
        energy_per_example_j=e_example,
        energy_breakdown_j=energy,
        area_mm2=area_mm2,
        area_breakdown_mm2=area,
        gops_per_w=ops["total"] / e_example / 1e9,
        tops_per_mm2=ops["total"] / t_example / area_mm2 / 1e12,
        figure_of_merit=fom,
        gpus=gpus,
        run=run,
    )


def _run_cost(
    sizes: list[int],
    tiles: list[Tile],
    cells_model: list[int],
    params: CostParams,
    stats: dict[str, Any],
    ops_example: float,
) -> RunCost:
    """Totals for a run from the pulses and transfers it actually simulated."""
    n_layers = len(sizes) - 1
    stats = dict(stats)
    if stats.get("cells") is None and stats.get("cells_per_layer") is not None:
        stats["cells"] = stats["cells_per_layer"]
    used = [k for k in ("examples", "update_pulses", "transfers", "transfer_tuning_pulses", "cells",
                        "transfer_interval_examples") if stats.get(k) is not None]
    chips = float(stats.get("chips") or 1)
    if chips <= 0:
        raise ValueError(f"run_stats['chips'] must be positive, got {chips}")
    interval = int(stats.get("transfer_interval_examples") or params.transfer.interval_examples)
    if interval < 1:
        raise ValueError(f"run_stats['transfer_interval_examples'] must be >= 1, got {interval}")
    transfers_given = stats.get("transfers")
    examples = stats.get("examples")
    if examples is None:
        examples = int(transfers_given) * interval if transfers_given is not None else interval
    examples = int(examples)
    transfers = int(transfers_given) if transfers_given is not None else examples // interval
    if examples < 0 or transfers < 0:
        raise ValueError(f"run_stats examples/transfers must not be negative, got {examples}/{transfers}")
    cells_f = _per_layer(stats, "cells", n_layers, 1.0) or [None] * n_layers
    cells = [int(c) if c is not None else cm for c, cm in zip(cells_f, cells_model)]
    upd_f = _per_layer(stats, "update_pulses", n_layers, chips) or [None] * n_layers
    update_pulses = [
        v if v is not None else params.energy.capacitor_pulses_per_cell_per_example * c * examples
        for v, c in zip(upd_f, cells)
    ]
    tune_f = _per_layer(stats, "transfer_tuning_pulses", n_layers, chips) or [None] * n_layers
    tuning = [
        v if v is not None else params.transfer.tuning_pulses_per_cell * c * transfers
        for v, c in zip(tune_f, cells)
    ]
    # per-cell rates the model's per-example formulas take
    ex = max(examples, 1)
    cap_rate = [p / (c * ex) if c else 0.0 for p, c in zip(update_pulses, cells)]
    tune_rate = [
        p / (c * transfers) if c and transfers else params.transfer.tuning_pulses_per_cell
        for p, c in zip(tuning, cells)
    ]
    # per-example energy of everything but capacitor pulses, transfers and static
    energy_ex, times, transfer_event = _network_energy_and_time(
        tiles, sizes, params, cap_pulses_per_cell=cap_rate, tuning_pulses_per_cell=tune_rate, interval=1.0
    )
    # capacitor and transfer energy straight from the run's counts, scaled to the chip's cells
    scale = [cm / c if c else 0.0 for cm, c in zip(cells_model, cells)]
    conv = params.energy.neuron_conversion_energy_pj * 1e-12
    cap_e = sum(p * s for p, s in zip(update_pulses, scale)) * capacitor_pulse_energy_j(params)
    pcm_e = sum(p * s for p, s in zip(tuning, scale)) * params.energy.pcm_pulse_energy_pj * 1e-12
    verify_reads = params.transfer.reads_averaged * sum(
        (max(p - params.transfer.resets_per_cell * c * transfers, 0.0) + c * transfers) * s
        for p, c, s in zip(tuning, cells, scale)
    )
    energy = {k: v * examples for k, v in energy_ex.items()}
    energy["capacitor_update"] = cap_e
    energy["transfer_pcm_pulses"] = pcm_e
    energy["transfer_verify_reads"] = verify_reads * conv
    time_breakdown = {k: v * examples for k, v in times.items() if k != "transfer_amortised"}
    time_breakdown["transfer"] = transfers * transfer_event if transfers else 0.0
    time_s = sum(time_breakdown.values())
    energy["static"] = params.energy.array_static_power_mw * 1e-3 * len(tiles) * time_s
    e_total = sum(energy.values())
    ops_total = ops_example * examples
    gpu = gpu_by_name(params.gpu.reference_gpu)
    g_t, g_e = gpu_run_estimate(gpu, ops_total, params.gpu, steps=examples)
    g_tp, g_ep = gpu_run_estimate(gpu, ops_total, params.gpu, at_peak=True)
    return RunCost(
        examples=examples,
        transfers=transfers,
        transfer_interval_examples=interval,
        update_pulses=update_pulses,
        transfer_tuning_pulses=tuning,
        cells=cells,
        from_run=used,
        time_s=time_s,
        time_breakdown_s=time_breakdown,
        energy_j=e_total,
        energy_breakdown_j=energy,
        ops=ops_total,
        gops_per_w=ops_total / e_total / 1e9 if e_total > 0 else 0.0,
        gpu_name=gpu.name,
        gpu_time_s=g_t,
        gpu_energy_j=g_e,
        gpu_time_at_peak_s=g_tp,
        gpu_energy_at_peak_j=g_ep,
    )

