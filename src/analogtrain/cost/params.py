"""Parameters of the chip cost model (energy, area, time) and the ``nature2018`` preset.

Every field carries its unit and a ``source`` tag, which is also the comment the issue asks
for next to every number:

* ``paper``   -- stated in Ambrogio et al., Nature 558, 60-67 (2018);
* ``group``   -- from the same group's earlier work (Burr 2015/2017, Narayanan 2017);
* ``spec``    -- a public specification (data sheet);
* ``assumed`` -- our inference, with the reasoning after the colon.

The paper gives the two results (28,065 GOP/s/W and 3.6 TOP/s/mm^2) but the Methods text
with its circuit numbers could not be read for this project, so the circuit-level numbers
below are inferred.  They were chosen inside the range a 90-nm mixed-signal design
plausibly spans, then checked against the two targets; ``analogtrain cost --sensitivity``
shows how much each one moves the result (docs/cost_model.md).

The defaults of the dataclasses *are* the ``nature2018`` set; ``COST_PRESETS`` names it.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._configbase import ConfigBase, param
from ..config import merge_overrides
from ..errors import ConfigError
from ..timing import ArrayParams, TimingParams, TransferParams, timing_for_chip

__all__ = [
    "TechnologyParams",
    "CellParams",
    "ArrayParams",
    "TimingParams",
    "EnergyParams",
    "TransferParams",
    "GpuComparisonParams",
    "CostParams",
    "COST_PRESETS",
    "load_cost_params",
    "chip_cost_params",
    "PAPER_GOPS_PER_W",
    "PAPER_TOPS_PER_MM2",
]

#: The paper's calculated energy efficiency [paper, abstract].
PAPER_GOPS_PER_W = 28_065.0
#: The paper's calculated throughput per area [paper, abstract].
PAPER_TOPS_PER_MM2 = 3.6


@dataclass(frozen=True)
class TechnologyParams(ConfigBase):
    """CMOS technology of the chip (sets the unit-cell footprint and the supply)."""

    section = "cost.technology"

    node_nm: float = param(
        90.0, unit="nm", gt=0,
        doc="Feature size F used to size the cell's transistors (in F^2). Periphery areas, "
        "capacitor density and circuit energies are separate parameters for this node and do "
        "not follow it.",
        source="assumed: a mature node of the PCM test-chip era; with 14-nm transistors and a dense "
        "trench capacitor the cell is ~0.1 um^2 and 3.6 TOP/s/mm^2 would imply a cycle of several "
        "us per example, implausibly slow",
    )
    supply_voltage_v: float = param(
        1.2, unit="V", gt=0, le=5.0, doc="Core supply V_dd for line drivers and capacitor charging.",
        source="assumed: nominal core supply of 90-nm CMOS is 1.0-1.2 V",
    )


@dataclass(frozen=True)
class CellParams(ConfigBase):
    """The 2PCM+3T1C unit cell: footprint, read current, update charge."""

    section = "cost.cell"

    transistors_3t1c: int = param(
        3, ge=0, doc="Transistors of the volatile cell (read, PMOS pull-up, NMOS pull-down).",
        source="paper: 3T1C cell",
    )
    transistor_area_f2: float = param(
        40.0, unit="F^2", gt=0, doc="Footprint of one 3T1C transistor incl. contacts and spacing.",
        source="assumed: analog transistors drawn above minimum W/L for matching; a minimum "
        "logic transistor with contacts is ~20-30 F^2",
    )
    pcm_devices: int = param(
        2, ge=0, doc="PCM devices per cell (G+ and G-), each with its access transistor.",
        source="paper: two PCM devices per synapse",
    )
    pcm_access_area_f2: float = param(
        50.0, unit="F^2", gt=0,
        doc="Footprint of one 1T1R PCM (access transistor; the PCM element sits above it in the "
        "back end and adds no area).",
        source="assumed: the access transistor must pass a ~0.3 mA RESET current; published 1T1R "
        "PCM cells span ~25-60 F^2",
    )
    capacitance_ff: float = param(
        10.0, unit="fF", gt=0, doc="Capacitance of the 3T1C storage capacitor.",
        source="assumed: large enough for a ms-scale leak time with a low-leakage MOS capacitor "
        "and a mV-scale step per pulse",
    )
    capacitor_density_ff_per_um2: float = param(
        10.0, unit="fF/um^2", gt=0, doc="Capacitance per area of the storage capacitor.",
        source="assumed: thick-oxide MOS capacitor (~3 nm oxide, 11.5 fF/um^2); a deep-trench "
        "capacitor would be ~10x denser",
    )
    capacitor_step_mv: float = param(
        2.0, unit="mV", gt=0, doc="Change of V_C per coincident update pulse.",
        source="assumed: ~100 net pulses per transfer interval (paper, ED Fig. 2) must stay within "
        "a few hundred mV of the 0.5 V reset",
    )
    read_conductance_us: float = param(
        8.0, unit="uS", ge=0,
        doc="Mean total conductance a cell presents to a read (PCM pair + 3T1C read transistor).",
        source="assumed: PCMs programmed below ~20 uS (paper), one of the pair near zero after "
        "RESET; mean target plus 2 uS offset plus the 3T1C",
    )
    read_voltage_v: float = param(
        0.2, unit="V", gt=0, le=1.0, doc="Read voltage across the cell during a read pulse.",
        source="assumed: PCM reads are kept at ~0.1-0.3 V to avoid disturbing the phase",
    )
    mean_input_duty: float = param(
        0.5, gt=0, le=1.0,
        doc="Mean duration-coded input as a fraction of the full read window (activity).",
        source="assumed: mean magnitude of sigmoid/tanh-like hidden activations over MNIST",
    )
    line_capacitance_per_cell_ff: float = param(
        1.0, unit="fF", gt=0,
        doc="Row/column line capacitance per cell it crosses (wire plus gate/junction loads).",
        source="assumed: ~0.2 fF/um wire over a ~1.7 um cell pitch plus ~0.6 fF of device loads",
    )


@dataclass(frozen=True)
class EnergyParams(ConfigBase):
    """Energies of the neuron circuits, PCM pulses and static overhead."""

    section = "cost.energy"

    neuron_conversion_energy_pj: float = param(
        20.0, unit="pJ", ge=0,
        doc="Integrator plus conversion of one neuron output (also each verify read at transfer).",
        source="assumed: 8-bit conversion at a Walden figure of merit of ~80 fJ/step, "
        "typical of 90-nm converters",
    )
    neuron_digital_energy_pj: float = param(
        10.0, unit="pJ", ge=0,
        doc="Activation or derivative, registers for x and delta, routing to the next array.",
        source="assumed: a few hundred 90-nm logic gate toggles plus ~1 mm of 8-bit bus",
    )
    partial_sum_add_energy_pj: float = param(
        1.0, unit="pJ", ge=0,
        doc="Digital add of one partial sum when a layer is tiled over several arrays.",
        source="assumed: one 16-bit add at 90 nm",
    )
    update_line_activity: float = param(
        0.25, ge=0, le=1.0,
        doc="Fraction of update pulse slots that a row or column line actually fires.",
        source="assumed: most x and delta are small, so few lines fire their maximum",
    )
    capacitor_pulses_per_cell_per_example: float = param(
        0.0625, ge=0,
        doc="Coincident charge/discharge pulses a cell receives per example (nominal, when the "
        "run's counts are not given).",
        source="paper: ~1,000 pulses per synapse over 16,000 MNIST images (ED Fig. 2)",
    )
    pcm_pulse_energy_pj: float = param(
        40.0, unit="pJ", ge=0,
        doc="Supply energy of one PCM programming pulse (RESET or partial SET).",
        source="assumed: ~0.3 mA x 2.5 V x 50 ns for RESET; ~0.15 mA x 2.5 V x 100 ns for SET",
    )
    array_static_power_mw: float = param(
        2.0, unit="mW", ge=0,
        doc="Static power of one array (biases, references, clocking), paid for the whole time.",
        source="assumed: a few bias generators and a local clock tree",
    )


@dataclass(frozen=True)
class GpuComparisonParams(ConfigBase):
    """How a GPU is assumed to run the same training (minibatch 1)."""

    section = "cost.gpu"

    minibatch1_utilisation: float = param(
        0.01, gt=0, le=1.0,
        doc="Highest fraction of peak FP16 throughput a GPU reaches training an MLP one example "
        "at a time (time per image = max(ops / (peak x this), step floor)).",
        source="assumed: batch-1 GEMVs are memory-bandwidth bound; ~1% of peak is generous for "
        "the small matrices of an MLP",
    )
    minibatch1_step_floor_us: float = param(
        10.0, unit="us", ge=0,
        doc="Shortest time of one batch-1 training step on any GPU (kernel launches and "
        "synchronisation), which a faster GPU does not shorten; 0 disables it.",
        source="assumed: ~20 kernels per step (forward, backward, update of 3 layers) at "
        ">= 0.5 us each even with CUDA graphs; eager frameworks take 50-100 us",
    )
    power_fraction_of_tdp: float = param(
        0.5, gt=0, le=1.0,
        doc="Board power while training at minibatch 1, as a fraction of the TDP (at-peak "
        "figures always use the full TDP).",
        source="assumed: a latency-bound GPU draws well below its TDP (idle is ~15-25% of TDP)",
    )
    reference_gpu: str = param(
        "P100 SXM2", doc="GPU the train command's summary compares against.",
        source="assumed: the 2018 GPU the paper beats by ~100x is consistent with a P100 "
        "(docs/physics.md)",
    )


def _default(cls: type) -> Any:
    return param(default_factory=cls)


@dataclass(frozen=True)
class CostParams(ConfigBase):
    """All parameters of the cost model."""

    section = "cost"

    name: str = param("nature2018", doc="Name of this parameter set, printed in every report.")
    technology: TechnologyParams = _default(TechnologyParams)
    cell: CellParams = _default(CellParams)
    array: ArrayParams = _default(ArrayParams)
    timing: TimingParams = _default(TimingParams)
    energy: EnergyParams = _default(EnergyParams)
    transfer: TransferParams = _default(TransferParams)
    gpu: GpuComparisonParams = _default(GpuComparisonParams)

    def sources(self) -> list[tuple[str, str, str, str, Any]]:
        """(dotted name, unit, source, doc, value) for every numeric or flag parameter."""
        out = []
        for sect in ("technology", "cell", "array", "timing", "energy", "transfer", "gpu"):
            sub = getattr(self, sect)
            for name, unit, source, doc in type(sub).describe():
                out.append((f"{sect}.{name}", unit, source, doc, getattr(sub, name)))
        return out

    def with_value(self, dotted: str, value: Any) -> CostParams:
        """Copy with one nested parameter changed, e.g. ``with_value("timing.pipelined", False)``."""
        sect, _, name = dotted.partition(".")
        sub = getattr(self, sect, None)
        if not isinstance(sub, ConfigBase) or not name or not hasattr(sub, name):
            raise ConfigError(f"unknown cost parameter {dotted!r}; use section.name, e.g. 'timing.pipelined'")
        return self.replace(**{sect: sub.replace(**{name: value})})

    def for_chip(self, chip: Any) -> CostParams:
        """Copy that costs the chip a simulation ran (a ``ChipConfig``), where the two models
        describe the same thing:

        * ``timing.update_pulse_slots`` <- ``chip.update.pulse_train_length`` (the slots of
          one update's pulse trains: the simulated chip fires up to that many coincidences);
        * ``timing.update_pulse_duration_ns`` <- ``chip.capacitor.pulse_width_ns``;
        * ``cell.capacitor_step_mv`` <- the simulated nominal step I t / C
          (``chip.capacitor.step_at_reset_v``);
        * ``transfer.reads_averaged`` <- ``chip.transfer.reads_averaged``.

        The capacitor's area and the other circuit parameters stay the cost model's: the
        simulator's ``capacitance_ff`` only sets the step together with the pull current and
        pulse width (docs/cost_model.md, "A run's cost").
        """
        timing, transfer = timing_for_chip(chip, self.timing, self.transfer)
        out = self.replace(name=f"{self.name} + simulated chip", timing=timing, transfer=transfer)
        return out.with_value("cell.capacitor_step_mv", float(chip.capacitor.step_at_reset_v) * 1e3)


#: Named parameter sets.  ``nature2018`` is the set that reproduces the paper's two figures.
COST_PRESETS: dict[str, CostParams] = {"nature2018": CostParams()}


def load_cost_params(path_or_name: str | Path | CostParams | None = None) -> CostParams:
    """Return a preset by name, or read a JSON/TOML file of overrides.

    A file holds the same tables as :meth:`CostParams.to_dict` (``[timing]``, ``[energy]``,
    ...), optionally under one top-level ``[cost]`` table; keys it leaves out keep the values
    of the preset named by its ``base`` key (default ``nature2018``).  Unknown keys raise
    :class:`~analogtrain.errors.ConfigError`.
    """
    if path_or_name is None:
        return COST_PRESETS["nature2018"]
    if isinstance(path_or_name, CostParams):
        return path_or_name
    text = str(path_or_name)
    if text in COST_PRESETS:
        return COST_PRESETS[text]
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"--params {text!r} is neither a preset ({', '.join(COST_PRESETS)}) nor a readable "
            "JSON/TOML file; give a preset name or a path"
        )
    try:
        raw = path.read_bytes()
        if path.suffix.lower() == ".json":
            data = json.loads(raw.decode("utf-8"))
        else:
            data = tomllib.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read cost parameters from {path}: {exc}; fix the file's syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"cost parameter file {path} must hold a table of settings")
    if set(data) == {"cost"} and isinstance(data["cost"], dict):
        data = data["cost"]
    data = dict(data)
    base_name = data.pop("base", "nature2018")
    if base_name not in COST_PRESETS:
        raise ConfigError(f"base {base_name!r} in {path} is not a preset; use one of {', '.join(COST_PRESETS)}")
    merged = merge_overrides(COST_PRESETS[base_name].to_dict(), data)
    if "name" not in data:
        merged["name"] = f"{base_name}+{path.name}"
    return CostParams.from_dict(merged)


def chip_cost_params(chip: Any) -> CostParams | None:
    """The ``nature2018`` cost parameters adapted to a simulated chip (a ``ChipConfig``;
    :meth:`CostParams.for_chip`), or None when its cell is not the 2PCM+3T1C cell that the cost
    model describes.  What a run is costed with, and what the cost-model leakage clock uses."""
    if chip.cell.kind != "2pcm+3t1c":
        return None
    return load_cost_params("nature2018").for_chip(chip)
