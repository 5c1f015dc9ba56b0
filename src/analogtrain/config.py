"""Every physical and training parameter, as typed, validated config objects.

Units are in the field names (``_us`` microsiemens, ``_v`` volts, ``_s`` seconds, ``_ns``
nanoseconds, ``_na`` nanoamperes, ``_ff`` femtofarads, ``_mv`` millivolts).  Each field
carries a ``source`` tag: ``paper`` (stated in Ambrogio et al., Nature 558, 60-67, 2018),
``group`` (the same group's earlier work) or ``assumed`` (our default where the paper's value
could not be read; see ``docs/physics.md`` for the reasoning).

The tree is::

    ExperimentConfig
    ├── chip: ChipConfig
    │   ├── pcm: PCMConfig            (phase-change devices G+, G-)
    │   ├── capacitor: CapacitorConfig (3T1C cell: g(V_C), pull-up/down, leakage)
    │   ├── cell: CellConfig          (which cell, F, polarity inversion, weight scale)
    │   ├── periphery: PeripheryConfig (DAC/ADC, output noise)
    │   ├── update: UpdateConfig      (how eta*x*delta becomes pulses)
    │   └── transfer: TransferConfig  (when and how PCM is reprogrammed)
    └── training: TrainingConfig      (network, learning rate, epochs, seed, time per example)
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._configbase import ConfigBase, param
from .errors import ConfigError

#: the cell kinds built in; a new device registers its own (analogtrain.interface.register_cell)
CELL_KINDS = ("2pcm+3t1c", "2pcm", "digital")
_REGISTERED_KINDS: list[str] = []


def register_cell_kind(kind: str) -> None:
    """Make ``kind`` a valid ``chip.cell.kind`` (called by :func:`analogtrain.interface.register_cell`)."""
    if kind not in CELL_KINDS and kind not in _REGISTERED_KINDS:
        _REGISTERED_KINDS.append(kind)


def cell_kinds() -> tuple[str, ...]:
    """Every valid ``chip.cell.kind``: the built-in ones and those registered since."""
    return CELL_KINDS + tuple(_REGISTERED_KINDS)
SHARED_REFERENCES = ("held", "leaking")
LEAK_CLOCKS = ("fixed", "cost-model")


@dataclass(frozen=True)
class PCMConfig(ConfigBase):
    """Phase-change memory device: conductance range, programming, read noise, drift, partial SET."""

    section = "chip.pcm"

    g_max_us: float = param(25.0, unit="uS", gt=0, source="assumed",
                            doc="saturation conductance of a fully SET device")
    g_program_max_us: float = param(20.0, unit="uS", gt=0, source="paper",
                                    doc="largest conductance targeted when programming; control degrades above ~20 uS")
    g_reset_us: float = param(0.1, unit="uS", ge=0, source="assumed",
                              doc="conductance after a full RESET (amorphous plug)")
    program_sigma_us: float = param(0.5, unit="uS", ge=0, source="assumed",
                                    doc="absolute std of the conductance reached by one programming (SET-ramp) step")
    program_sigma_rel: float = param(0.05, ge=0, source="assumed",
                                     doc="std of one programming step relative to its target conductance (spread grows with G)")
    read_noise_us: float = param(0.05, unit="uS", ge=0, source="assumed",
                                 doc="absolute std of a single conductance read")
    read_noise_rel: float = param(0.01, ge=0, source="assumed",
                                  doc="std of a single read relative to the conductance")
    drift_nu: float = param(0.0, ge=0, le=1, source="assumed",
                            doc="mean drift exponent nu in G(t) = G0 (t/t0)^-nu; 0 disables drift")
    drift_nu_sigma: float = param(0.0, ge=0, source="assumed", doc="device-to-device std of nu")
    drift_t0_s: float = param(1e-6, unit="s", gt=0, source="assumed",
                              doc="reference time t0 after programming at which G = G0")
    drift_refresh_examples: int = param(100, ge=1, source="assumed",
                                        doc="drift is re-evaluated every this many training examples (it is slow)")
    # gradual SET for the 2-PCM baseline cell [group]
    set_step_us: float = param(0.75, unit="uS", gt=0, source="group",
                               doc="mean conductance increase of one partial-SET pulse at G = 0")
    set_step_nonlinearity: float = param(2.0, ge=0, source="group",
                                         doc="gamma in dG = set_step_us * (1 - G/g_max_us)^gamma (state dependence)")
    set_step_sigma_rel: float = param(0.5, ge=0, source="group",
                                      doc="cycle-to-cycle std of a partial-SET step, relative to its mean")
    set_step_mismatch_rel: float = param(0.2, ge=0, source="group",
                                         doc="device-to-device std of the partial-SET step size, relative")
    reset_threshold_us: float = param(18.0, unit="uS", gt=0, source="group",
                                      doc="2-PCM occasional RESET: a pair is refreshed when either device exceeds this")
    reset_check_interval_examples: int = param(1000, ge=1, source="group",
                                               doc="2-PCM: how often saturated pairs are looked for and refreshed")

    def validate(self) -> None:
        if self.g_program_max_us > self.g_max_us:
            raise ConfigError(
                f"chip.pcm.g_program_max_us ({self.g_program_max_us}) must not exceed chip.pcm.g_max_us ({self.g_max_us})"
            )
        if self.g_reset_us >= self.g_program_max_us:
            raise ConfigError("chip.pcm.g_reset_us must be below chip.pcm.g_program_max_us")


@dataclass(frozen=True)
class CapacitorConfig(ConfigBase):
    """3T1C cell: capacitor voltage V_C, read transistor g(V_C), PMOS pull-up, NMOS pull-down, leak.

    One pulse moves V_C by dV = I * pulse_width / C; the pull-up and pull-down act as
    current sources (with channel-length modulation) within the compliance range
    ``[V_dsat, V_DD - V_dsat]``, so updates are near-linear.  Each cell's
    pull-up and pull-down currents are scaled by its own fixed mismatch factors, drawn once
    at fabrication.  The read transistor works in its linear region:
    g = k (V_C - V_T) for V_C > V_T, else 0, with a per-cell V_T mismatch.
    """

    section = "chip.capacitor"

    supply_v: float = param(1.0, unit="V", gt=0, source="assumed", doc="V_DD: the pull-up drives V_C towards it")
    reset_v: float = param(0.5, unit="V", ge=0, source="paper", doc="V_C after a reset, where g is small")
    leak_target_v: float = param(0.8, unit="V", ge=0, source="paper",
                                 doc="voltage that leakage drifts V_C towards (higher g)")
    leak_time_constant_s: float = param(5e-3, unit="s", gt=0, source="assumed",
                                        doc="exponential leak time constant; 'a few milliseconds' in press material; "
                                            "applied after every training example (not per minibatch)")
    capacitance_ff: float = param(100.0, unit="fF", gt=0, source="assumed", doc="storage capacitor C")
    pull_current_na: float = param(25.0, unit="nA", gt=0, source="assumed",
                                   doc="nominal pull-up and pull-down current in saturation")
    pulse_width_ns: float = param(10.0, unit="ns", gt=0, source="assumed",
                                  doc="duration of one coincident row/column update pulse")
    saturation_headroom_v: float = param(0.1, unit="V", gt=0, source="assumed",
                                         doc="V_dsat: V_C stays within [V_dsat, V_DD - V_dsat], where the pull-up and "
                                             "pull-down transistors stay in saturation")
    channel_modulation_per_v: float = param(0.2, unit="1/V", ge=0, lt=2, source="assumed",
                                            doc="lambda: relative change of the pull currents per volt of V_C away "
                                                "from reset_v (steps up shrink and steps down grow as V_C rises)")
    current_mismatch_rel: float = param(0.1, ge=0, lt=1, source="assumed",
                                        doc="std of each cell's pull-up and pull-down current factors (independent, "
                                            "CMOS variability); the up/down asymmetry it causes is fixed per cell")
    read_threshold_v: float = param(0.3, unit="V", source="assumed", doc="V_T of the read transistor")
    read_threshold_mismatch_v: float = param(0.01, unit="V", ge=0, source="assumed",
                                             doc="std of V_T across cells (and the shared reference cells)")
    read_transconductance_us_per_v: float = param(20.0, unit="uS/V", gt=0, source="assumed",
                                                  doc="k in g = k (V_C - V_T)")

    def validate(self) -> None:
        for name in ("reset_v", "leak_target_v", "read_threshold_v"):
            v = getattr(self, name)
            if not 0 <= v <= self.supply_v:
                raise ConfigError(f"chip.capacitor.{name} ({v} V) must lie between 0 and supply_v ({self.supply_v} V)")
        if self.reset_v >= self.supply_v:
            raise ConfigError("chip.capacitor.reset_v must be below supply_v")
        if 2 * self.saturation_headroom_v >= self.supply_v:
            raise ConfigError("chip.capacitor.saturation_headroom_v must be below half of supply_v")
        if self.step_at_reset_v >= 0.1 * self.supply_v:
            raise ConfigError(
                f"one update pulse moves V_C by {self.step_at_reset_v:.4g} V, over a tenth of the supply; lower "
                "chip.capacitor.pull_current_na or pulse_width_ns, or raise capacitance_ff"
            )

    @property
    def step_at_reset_v(self) -> float:
        """Nominal V_C change of one pulse (current source in saturation), in volts (I t / C)."""
        return self.pull_current_na * 1e-9 * self.pulse_width_ns * 1e-9 / (self.capacitance_ff * 1e-15)

    @property
    def step_at_reset_us(self) -> float:
        """Nominal conductance change of one pulse (V_C above V_T), in uS."""
        return self.step_at_reset_v * self.read_transconductance_us_per_v


@dataclass(frozen=True)
class CellConfig(ConfigBase):
    """The unit cell W = F (G+ - G-) + s (g - g_shared) and how weights map onto it."""

    section = "chip.cell"

    kind: str = param("2pcm+3t1c", choices=cell_kinds, source="paper",
                      doc="'2pcm+3t1c' full cell, '2pcm' PCM-only baseline, 'digital' exact FP32 software weights")
    gain_f: float = param(3.0, gt=0, source="assumed", doc="F, gain of the PCM pair over the 3T1C pair (paper: F > 1)")
    polarity_inversion: bool = param(True, source="paper", doc="flip s after each transfer")
    transfer_offset_us: float = param(0.0, unit="uS", ge=0, source="assumed",
                                      doc="offset subtracted (with the new polarity) from the PCM target at transfer "
                                          "so that the correction falls to g, which grows more easily than it "
                                          "shrinks. The paper uses 2 uS; in our model that offset shifts every "
                                          "weight of a layer right after each transfer and costs accuracy "
                                          "(docs/physics.md), so the default is 0 and preset nature2018-offset "
                                          "keeps the paper's 2 uS")
    shared_reference: str = param("leaking", choices=SHARED_REFERENCES, source="decided",
                                  doc="the per-column reference 3T1C g_shared: 'leaking' = a 3T1C like the cells, "
                                      "reset with them at every transfer and leaking like them between resets "
                                      "(nothing drives it), so the leak cancels in g - g_shared (the paper "
                                      "evaluates g_shared at a capacitor voltage; the project's decision, "
                                      "docs/physics.md); 'held' = its gate actively driven at chip.capacitor.reset_v "
                                      "(ablation nature2018-held-reference), so the cells' leakage shifts every "
                                      "weight of a column together")
    max_weight: tuple[float, ...] = param((1.0, 2.0, 4.0), gt=0, source="assumed",
                                          doc="software weight represented by F * g_program_max_us, per layer from the "
                                              "input (a periphery gain; the last value repeats for deeper layers); "
                                              "sets the uS per weight unit")

    def validate(self) -> None:
        if not self.max_weight:
            raise ConfigError("chip.cell.max_weight needs at least one value")

    def max_weight_of(self, layer: int) -> float:
        """The software weight ``F * g_program_max_us`` represents in ``layer`` (the last value repeats)."""
        return self.max_weight[min(layer, len(self.max_weight) - 1)]


@dataclass(frozen=True)
class PeripheryConfig(ConfigBase):
    """Neuron circuits at the array edges: input DAC, output integrator/ADC, output noise."""

    section = "chip.periphery"

    input_bits: int = param(8, ge=0, le=24, source="assumed", doc="DAC resolution of row inputs; 0 = ideal")
    output_bits: int = param(8, ge=0, le=24, source="assumed", doc="ADC resolution of column outputs; 0 = ideal")
    forward_input_range: float = param(1.0, gt=0, source="assumed", doc="forward inputs are clipped to [0, range]")
    forward_output_range: float = param(12.0, gt=0, source="assumed",
                                        doc="forward outputs of the hidden layers (pre-activations, weight units) "
                                            "clipped to +-range")
    output_layer_range: float = param(24.0, gt=0, source="assumed",
                                      doc="forward outputs of the output layer (the logits the softmax error is "
                                          "computed from) clipped to +-range; an error computed from clipped "
                                          "logits does not decay as the margin grows, so this range must hold "
                                          "the logits training produces (MNIST software after 20 epochs: 17.5 % of "
                                          "test logits beyond +-12, 4.8 % beyond +-24; docs/physics.md)")
    backward_output_range: float = param(4.0, gt=0, source="assumed",
                                         doc="backward outputs clipped to +-range, in units of the largest input error")
    output_noise: float = param(0.0, ge=0, source="assumed",
                                doc="std of additive noise at each column output (weight*input units)")

    def forward_range(self, output_layer: bool) -> float:
        """Clipping range of a layer's forward outputs (weight units)."""
        return self.output_layer_range if output_layer else self.forward_output_range


@dataclass(frozen=True)
class UpdateConfig(ConfigBase):
    """How the desired update eta * x_i * delta_j becomes charge/discharge pulses."""

    section = "chip.update"

    pulse_mode: str = param("stochastic", choices=("stochastic", "rounded"), source="assumed",
                            doc="'stochastic': coincidences of random row/column pulse trains (expected count exact); "
                                "'rounded': n = round(eta x delta / dw)")
    pulse_train_length: int = param(31, ge=1, le=1024, source="assumed",
                                    doc="slots per update cycle; the most pulses one update can give a cell")


@dataclass(frozen=True)
class TransferConfig(ConfigBase):
    """Moving the 3T1C contribution into the PCM pair by closed-loop tuning."""

    section = "chip.transfer"

    interval_examples: int = param(8000, ge=1, source="paper", doc="examples between transfers (MNIST: 8,000)")
    mode: str = param("array", choices=("array", "column"), source="paper",
                      doc="'array': all columns at once; 'column': one column at a time, spread over the interval")
    tolerance_us: float = param(0.3, unit="uS", gt=0, source="assumed",
                                doc="closed-loop tuning stops when the verify read is within this of the target")
    max_iterations: int = param(20, ge=1, source="assumed", doc="most program-verify iterations per device")
    reads_averaged: int = param(1, ge=1, le=1024, source="assumed",
                                doc="reads averaged into each conductance read of the transfer (the read of W "
                                    "before the RESET, every verify of the closed-loop tuning, and the 2-PCM cell's "
                                    "RESET-and-reprogram); independent "
                                    "read noise falls as 1/sqrt(reads_averaged), and each read costs a read phase "
                                    "(time) and a conversion (energy) in the cost model")


@dataclass(frozen=True)
class ChipConfig(ConfigBase):
    section = "chip"

    pcm: PCMConfig = param(default_factory=PCMConfig)
    capacitor: CapacitorConfig = param(default_factory=CapacitorConfig)
    cell: CellConfig = param(default_factory=CellConfig)
    periphery: PeripheryConfig = param(default_factory=PeripheryConfig)
    update: UpdateConfig = param(default_factory=UpdateConfig)
    transfer: TransferConfig = param(default_factory=TransferConfig)

    def us_per_weight(self, layer: int = 0) -> float:
        """Conductance (uS, in W units) that represents a software weight of 1 in ``layer``."""
        return self.cell.gain_f * self.pcm.g_program_max_us / self.cell.max_weight_of(layer)


@dataclass(frozen=True)
class TrainingConfig(ConfigBase):
    section = "training"

    hidden: tuple[int, ...] = param((250, 125), ge=1, source="group", doc="hidden layer sizes (MNIST: 250, 125)")
    activation: str = param("sigmoid", choices=("sigmoid", "tanh", "relu"), source="group",
                            doc="hidden activation applied in the periphery")
    learning_rate: float = param(0.1, gt=0, source="assumed", doc="eta of plain SGD, minibatch 1")
    epochs: int = param(3, ge=1, doc="passes over the training set")
    seed: int = param(0, ge=0, doc="seed of initial weights, data order, device draws and noise")
    time_per_example_s: float = param(3.6e-7, unit="s", gt=0, source="assumed",
                                      doc="chip time per training example; sets how much leakage acts per example. "
                                          "Default: the 363 ns per image that our cost model (docs/cost_model.md) "
                                          "gives for MNIST 528-250-125-10 on the nature2018 timing. Used when "
                                          "training.leak_clock = 'fixed'")
    leak_clock: str = param("fixed", choices=LEAK_CLOCKS,
                            doc="where the chip time per example that leakage sees comes from: 'fixed' = "
                                "training.time_per_example_s; 'cost-model' = the cost model's time per example "
                                "for this network with the simulated chip's own update pulse train, pulse width "
                                "and transfer reads (analogtrain.training.chip_time_per_example_s), so a longer "
                                "update or transfer also leaks more. Cells without capacitors ignore it")
    tracked_synapses: int = param(4096, ge=0, doc="synapses per layer whose update pulses are counted one by one "
                                                   "(the ED Fig. 2 statistics); 0 turns the counting off")
    chips: int = param(1, ge=1, le=65536, doc="independent simulated chips trained together (batched); how many fit "
                       "is checked against the memory there is before a run starts")
    compile: str = param("auto", choices=("auto", "on", "off"),
                         doc="fuse each training step with torch.compile: 'on', 'off', or 'auto' = on for runs of "
                             "at least 50,000 training steps, where the ~30-60 s of compiling pays back "
                             "(results equal the eager step's up to float rounding)")
    eval_batch: int = param(1000, ge=1, doc="test images evaluated at once")


@dataclass(frozen=True)
class ExperimentConfig(ConfigBase):
    section = ""

    chip: ChipConfig = param(default_factory=ChipConfig)
    training: TrainingConfig = param(default_factory=TrainingConfig)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON file of overrides into a dict (not validated yet)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found; pass the path of a .toml or .json file")
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:  # JSON/TOML/Unicode decode errors are ValueErrors
        what = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise ConfigError(f"config file {p} is not valid {p.suffix.lstrip('.') or 'TOML'}: {what}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a table of settings")
    return data


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``base`` (both plain dicts)."""
    out = dict(base)
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_overrides(out[k], v)
        else:
            out[k] = v
    return out


def flatten_overrides(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """A nested override dict as (dotted key, value) pairs in order, e.g. ``("chip.transfer.mode", "column")``."""
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        out += flatten_overrides(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]
    return out


def collect_overrides(config_file: str | Path | None = None, sets: Sequence[str] = ()) -> dict[str, Any]:
    """The overrides of a ``--config FILE`` and then each ``--set KEY=VALUE``, merged in that order."""
    out = load_config_file(config_file) if config_file else {}
    for item in sets:
        out = merge_overrides(out, parse_set_option(item))
    return out


def parse_set_option(text: str) -> dict[str, Any]:
    """Turn ``chip.capacitor.leak_time_constant_s=0.01`` into a nested dict (value parsed as TOML)."""
    if "=" not in text:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. chip.cell.gain_f=4), got {text!r}")
    key, _, raw = text.partition("=")
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except (ValueError, RecursionError):  # not a TOML value (TOMLDecodeError is a ValueError): a plain string
        value = raw.strip()
    out: dict[str, Any] = {}
    cur = out
    parts = key.split(".")
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value
    return out
