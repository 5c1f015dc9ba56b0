"""The chip's timing: how long each phase of a training example takes, and so the time per example.

One object read by both sides: the simulator's leakage clock (``training.leak_clock =
"cost-model"``: the chip time that passes per example) and the cost model (time, throughput,
static energy).  Nothing here knows of energy, area or GPUs, and nothing in the simulator
imports :mod:`analogtrain.cost`.

Parameters are the ``cost.array``, ``cost.timing`` and ``cost.transfer`` sections of the cost
model's parameters (:class:`analogtrain.cost.params.CostParams` holds them); functions take any
object with ``array``, ``timing`` and ``transfer`` attributes (a ``CostParams`` or a
:class:`TimingSpec`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._configbase import ConfigBase, param

__all__ = [
    "ArrayParams", "TimingParams", "TransferParams", "TimingSpec", "Tile", "ChipTiming",
    "map_network", "backward_needed", "phase_times_s", "transfer_event_time_s", "time_breakdown_s",
    "timing_for_chip", "chip_timing",
]


class HasTiming(Protocol):
    array: "ArrayParams"
    timing: "TimingParams"
    transfer: "TransferParams"


@dataclass(frozen=True)
class ArrayParams(ConfigBase):
    """Array size, tiling of large layers, and the periphery around each array."""

    section = "cost.array"

    rows: int = param(
        512, ge=2, doc="Rows (inputs) of one physical array; larger layers are tiled.",
        source="assumed: a power of two; the paper measured a 512x1,024 PCM array",
    )
    cols: int = param(
        512, ge=1, doc="Columns (outputs) of one physical array.",
        source="assumed: square array, neurons on both edges for forward and backward reads",
    )
    tile_allocation: str = param(
        "fitted", choices=("fitted", "full"),
        doc="'fitted': each tile is built to the size of the part of the layer it holds; "
        "'full': every tile is a whole rows x cols array, unused cells and periphery count.",
        source="assumed: a design built for this network",
    )
    row_periphery_area_um2: float = param(
        300.0, unit="um^2", ge=0,
        doc="Per row: input driver, backward-pass neuron (integrator, duration conversion, "
        "derivative), update pulse generator.",
        source="assumed: pitch-matched integrate-and-compare neuron, ~1.7 um x 175 um at 90 nm; "
        "a SAR ADC per line would be 10-50x larger",
    )
    col_periphery_area_um2: float = param(
        300.0, unit="um^2", ge=0,
        doc="Per column: forward-pass neuron, error driver, update pulse generator, g_shared "
        "reference cell.",
        source="assumed: same circuit as a row (the array is used in both directions)",
    )
    array_fixed_area_um2: float = param(
        20_000.0, unit="um^2", ge=0,
        doc="Per array: control, bias and reference generators, interface to the routing.",
        source="assumed: ~2% of a 512x512 array at 90 nm",
    )


@dataclass(frozen=True)
class TimingParams(ConfigBase):
    """Pulse durations of each phase and how layers are scheduled."""

    section = "cost.timing"

    read_pulse_duration_ns: float = param(
        40.0, unit="ns", gt=0,
        doc="Read window: longest duration-coded input pulse, over which column currents integrate.",
        source="assumed: 8-bit duration code with a ~0.16 ns step",
    )
    neuron_conversion_ns: float = param(
        40.0, unit="ns", ge=0,
        doc="Time to convert the integrated charge, apply the activation and hand it on.",
        source="assumed: one duration-coded conversion of the same resolution as the input",
    )
    update_pulse_duration_ns: float = param(
        25.0, unit="ns", gt=0, doc="Duration of one charge/discharge pulse of the update.",
        source="assumed: a nA-scale pull-up current moves 10 fF by ~2 mV in tens of ns",
    )
    update_pulse_gap_ns: float = param(
        5.0, unit="ns", ge=0, doc="Gap between consecutive update pulse slots.",
        source="assumed: settling between pulses",
    )
    update_pulse_slots: int = param(
        4, ge=1, doc="Pulse slots per update phase (the most pulses one row or column can fire).",
        source="assumed: x and delta each quantised to a few pulses per update",
    )
    update_overhead_ns: float = param(
        20.0, unit="ns", ge=0, doc="Time to compute the pulse counts from x and delta.",
        source="assumed: a few digital clock cycles",
    )
    pcm_reset_pulse_ns: float = param(
        50.0, unit="ns", gt=0, doc="Duration of a PCM RESET pulse at transfer.",
        source="assumed: typical melt-quench pulse of 90-nm mushroom PCM",
    )
    pcm_set_pulse_ns: float = param(
        100.0, unit="ns", gt=0, doc="Duration of one partial-SET tuning pulse at transfer.",
        source="assumed: partial SET pulses of ~100 ns, a step of an 8-step ramp",
    )
    row_tuning_slowdown: float = param(
        1.2, ge=1.0,
        doc="Ratio of the tuning steps a row needs (its slowest cell) to the mean steps per cell.",
        source="assumed: closed-loop tuning of a whole row waits for its slowest cell",
    )
    pipelined: bool = param(
        True,
        doc="Pipeline layers across examples (each array works on a different example); "
        "otherwise one example runs through all layers before the next starts.",
        source="group: the group's speed estimates (Burr et al. IEDM 2015; Narayanan et al. 2017) "
        "pipeline layers across examples; the exact scheme here is ours",
    )
    backward_through_first_layer: bool = param(
        False,
        doc="Also run the backward read through the first layer (its result, the error on the "
        "input pixels, is not needed for training).",
        source="assumed: skipped, since nothing uses it",
    )


@dataclass(frozen=True)
class TransferParams(ConfigBase):
    """The periodic transfer of the weights into the PCM pair."""

    section = "cost.transfer"

    interval_examples: int = param(
        8_000, ge=1, doc="Training examples between transfers.",
        source="paper: every 8,000 images on MNIST (ED Fig. 2)",
    )
    tuning_pulses_per_cell: float = param(
        10.0, ge=0,
        doc="PCM programming pulses per cell per transfer incl. RESETs (nominal, when the run's "
        "counts are not given).",
        source="assumed: 2 RESETs plus the 8-step SET ramp the paper measured",
    )
    resets_per_cell: float = param(
        2.0, ge=0, doc="RESET pulses per cell per transfer (both PCMs of the pair).",
        source="paper: both PCMs are RESET before the target one is programmed",
    )
    reads_averaged: int = param(
        1, ge=1, le=1024,
        doc="Reads averaged into each conductance read of the transfer (the initial read and every "
        "verify); each costs one read phase and one conversion. The simulator's "
        "chip.transfer.reads_averaged; train passes its run's value.",
        source="assumed: one read per verify",
    )


@dataclass(frozen=True)
class Tile:
    """One physical array holding part of one layer."""

    layer: int
    row_tile: int
    col_tile: int
    rows: int  # rows (inputs incl. bias) of the layer held here
    cols: int  # columns (outputs) held here
    alloc_rows: int  # rows physically built (== rows when fitted)
    alloc_cols: int

    @property
    def cells(self) -> int:
        return self.rows * self.cols


def _split(n: int, parts: int) -> list[int]:
    base, extra = divmod(n, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def map_network(layer_sizes: list[int], params: HasTiming) -> list[Tile]:
    """Tile each fully connected layer (``n_in + 1`` bias rows x ``n_out`` columns).

    A layer larger than one array is split into ``ceil(rows/R) x ceil(cols/C)`` tiles of
    balanced size; row tiles produce partial sums that are added digitally.
    """
    arr = params.array
    tiles = []
    for layer, (n_in, n_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:])):
        rows, cols = n_in + 1, n_out
        row_parts = _split(rows, math.ceil(rows / arr.rows))
        col_parts = _split(cols, math.ceil(cols / arr.cols))
        for i, r in enumerate(row_parts):
            for j, c in enumerate(col_parts):
                full = arr.tile_allocation == "full"
                tiles.append(Tile(layer, i, j, r, c, arr.rows if full else r, arr.cols if full else c))
    return tiles


def backward_needed(layer: int, params: HasTiming) -> bool:
    return layer > 0 or params.timing.backward_through_first_layer


def phase_times_s(params: HasTiming) -> dict[str, float]:
    """Durations of one read phase and one update phase, in seconds.

    t_read = t_pulse + t_convert;  t_update = slots * (t_upd_pulse + t_gap) + t_overhead.
    """
    t = params.timing
    read = (t.read_pulse_duration_ns + t.neuron_conversion_ns) * 1e-9
    update = (t.update_pulse_slots * (t.update_pulse_duration_ns + t.update_pulse_gap_ns) + t.update_overhead_ns) * 1e-9
    return {"read": read, "update": update}


def transfer_event_time_s(rows: int, pulses_per_cell: float, params: HasTiming) -> float:
    """Time to transfer one array, row by row (all columns of a row tuned in parallel).

    t = rows * [n_reset * t_RESET + (n_pulses - n_reset) * slowdown * (t_SET + k t_read) + k t_read]
    with k = ``reads_averaged`` reads per verify (the last term is the initial read of the weight).
    """
    t = params.timing
    n_reset = min(params.transfer.resets_per_cell, pulses_per_cell)
    n_tune = max(pulses_per_cell - n_reset, 0.0)
    t_read = phase_times_s(params)["read"] * params.transfer.reads_averaged
    per_row = n_reset * t.pcm_reset_pulse_ns * 1e-9 + n_tune * t.row_tuning_slowdown * (t.pcm_set_pulse_ns * 1e-9 + t_read) + t_read
    return rows * per_row


def time_breakdown_s(tiles: list[Tile], layer_sizes: list[int], params: HasTiming, *,
                     tuning_pulses_per_cell: list[float], interval: float) -> tuple[dict[str, float], float]:
    """Per-example time breakdown (forward, backward, update, amortised transfer) and the time
    of one transfer event, for the network ``layer_sizes`` mapped onto ``tiles``."""
    phases = phase_times_s(params)
    n_layers = len(layer_sizes) - 1
    transfer_event = max(transfer_event_time_s(t.rows, tuning_pulses_per_cell[t.layer], params) for t in tiles)
    n_bwd = sum(backward_needed(layer, params) for layer in range(n_layers))
    if params.timing.pipelined:
        # the busiest array (one with a backward read, if any) sets the pace;
        # all arrays transfer together while training pauses
        any_bwd = any(backward_needed(t.layer, params) for t in tiles)
        times = {
            "forward": phases["read"],
            "backward": phases["read"] if any_bwd else 0.0,
            "update": phases["update"],
        }
    else:
        times = {
            "forward": n_layers * phases["read"],
            "backward": n_bwd * phases["read"],
            "update": phases["update"],  # all layers update at once
        }
    times["transfer_amortised"] = transfer_event / interval
    return times, transfer_event


@dataclass(frozen=True)
class TimingSpec:
    """The three sections timing reads, without the rest of the cost model's parameters."""

    array: ArrayParams = field(default_factory=ArrayParams)
    timing: TimingParams = field(default_factory=TimingParams)
    transfer: TransferParams = field(default_factory=TransferParams)


def timing_for_chip(chip: Any, timing: TimingParams | None = None,
                    transfer: TransferParams | None = None) -> tuple[TimingParams, TransferParams]:
    """The timing of the chip a simulation runs (a ``ChipConfig``), where the simulator says it:

    * ``timing.update_pulse_slots`` <- ``chip.update.pulse_train_length``;
    * ``timing.update_pulse_duration_ns`` <- ``chip.capacitor.pulse_width_ns``;
    * ``transfer.reads_averaged`` <- ``chip.transfer.reads_averaged``.
    """
    timing = (timing or TimingParams()).replace(update_pulse_slots=int(chip.update.pulse_train_length),
                                                update_pulse_duration_ns=float(chip.capacitor.pulse_width_ns))
    transfer = (transfer or TransferParams()).replace(reads_averaged=chip.transfer.reads_averaged)
    return timing, transfer


@dataclass(frozen=True)
class ChipTiming:
    """How long one training example takes on the chip, and of what."""

    time_per_example_s: float
    breakdown_s: dict[str, float]
    transfer_event_s: float


def chip_timing(chip: Any, layer_sizes: list[int], spec: TimingSpec | None = None) -> ChipTiming:
    """The timing of training ``layer_sizes`` on ``chip`` (a ``ChipConfig``), with the nominal
    transfer (``spec.transfer.tuning_pulses_per_cell``) amortised over the transfer interval."""
    spec = spec or TimingSpec()
    timing, transfer = timing_for_chip(chip, spec.timing, spec.transfer)
    spec = TimingSpec(spec.array, timing, transfer)
    tiles = map_network(list(layer_sizes), spec)
    n_layers = len(layer_sizes) - 1
    times, event = time_breakdown_s(tiles, list(layer_sizes), spec,
                                    tuning_pulses_per_cell=[transfer.tuning_pulses_per_cell] * n_layers,
                                    interval=float(transfer.interval_examples))
    return ChipTiming(sum(times.values()), times, event)
