"""The results of a run as typed, versioned objects: what ``results.json`` holds.

Three levels, each a dataclass that writes itself to plain JSON values (``to_dict``) and
reads itself back (``from_dict``):

* :class:`TrainingResult` -- one trainer run: every chip of one config (a variant), its
  accuracy per epoch and chip (:class:`EpochRecord`), pulse counts, the config;
* :class:`ExperimentResult` -- one experiment of a run: its data, network and settings, and a
  :class:`TrainingResult` per variant;
* :class:`RunResult` -- one command's run folder (``train`` or ``reproduce``): its arguments,
  the machine it ran on, and an :class:`ExperimentResult` per experiment.

``RunResult.read(folder)`` reads ``folder/results.json`` of this version and of every earlier
one (:data:`SCHEMA_VERSION`; version 1 was the untyped ``reproduce`` file, which has the same
fields), so reports of old runs still render.  Analyses a study adds to a variant (state
histograms, pulse windows) are kept under :attr:`TrainingResult.analysis` by name.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from .store import write_json

__all__ = ["SCHEMA_VERSION", "EpochRecord", "ExperimentResult", "RunResult", "TrainingResult"]

#: version of the results.json layout this analogtrain writes (reads it and every earlier one)
SCHEMA_VERSION = 2
#: the ``format`` tag of a results.json
FORMAT = "analogtrain-results"
#: the tag of version-1 files (``reproduce`` only)
_FORMAT_V1 = "analogtrain-reproduce"


#: training-result fields that version-1 files written before they existed lack, with what that meant
_ADDED_LATER: dict[str, Any] = {"pulse_statistics_per_window": [], "saturated_updates": [], "per_chip_counts": None}

#: the programming counts a result keeps chip by chip (``TrainingResult.per_chip_counts``); each
#: is also a field of the result, summed over the chips
PER_CHIP_COUNTS = ("initial_programming_pulses", "transfer_tuning_pulses", "transfer_unconverged_devices",
                   "occasional_reset_pulses")


@dataclass
class EpochRecord:
    """One epoch of a trainer run, every chip."""

    epoch: int
    test_accuracy: list[float]  # per chip
    train_accuracy: list[float]  # running, per chip, during the epoch
    examples: int
    transfers: int
    wall_s: float
    #: per layer, what :meth:`Trainer.layer_statistics` measured at the end of the epoch
    layers: list[dict[str, list[float]]] = field(default_factory=list)

    @property
    def test_accuracy_mean(self) -> float:
        return sum(self.test_accuracy) / len(self.test_accuracy)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["test_accuracy_mean"] = self.test_accuracy_mean
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EpochRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class TrainingResult:
    """What one trainer run gives: every chip of one config, trained together."""

    network: list[int]
    synapses: int
    cells_per_layer: list[int]
    chips: int
    leak_clock_s: float  # the chip's time per example (the leak clock)
    epochs_completed: int
    examples: int
    wall_s: float
    history: list[EpochRecord]
    transfers: int
    initial_programming_pulses: list[int]
    transfer_tuning_pulses: list[int]
    transfer_unconverged_devices: list[int]
    occasional_reset_pulses: list[int]
    #: per layer, per chip: coincidence pulses fired (None for a digital layer)
    update_pulses: list[list[float] | None]
    saturated_updates: list[list[float] | None]
    #: per layer: ED Fig. 2 statistics of the last complete two-interval window (None: no window)
    pulse_statistics: list[dict[str, Any]] | None
    #: the same statistics for every window of the run, in order
    pulse_statistics_per_window: list[dict[str, Any]]
    config: dict[str, Any]
    variant: str | None = None
    dataset: dict[str, Any] | None = None
    #: what a study added (state histograms, pulse window file, ...), by name
    analysis: dict[str, Any] = field(default_factory=dict)
    #: the PER_CHIP_COUNTS chip by chip: per count, per layer, per chip (None in results of
    #: earlier versions and of runs resumed from their checkpoints)
    per_chip_counts: dict[str, list[list[int]]] | None = None

    def select_chips(self, chips: Sequence[int], config: dict[str, Any] | None = None,
                     variant: str | None = None) -> TrainingResult:
        """The result of chips ``chips`` (indices) of this run alone, as a run of only them gives it:
        per-chip values picked, counts summed over those chips.  ``config``: theirs, where the run
        was a batch of several configurations.  The pulse statistics pool the tracked synapses of
        the chips they were taken over: the selection has them where the chips are one
        configuration of such a batch (``by_config``), else none (nor this result's ``analysis``)."""
        if self.per_chip_counts is None:
            raise DataError("this result keeps no per-chip counts (an earlier version wrote it), so it cannot be "
                            "split by chip")
        idx = [int(c) for c in chips]
        if not idx or min(idx) < 0 or max(idx) >= self.chips:
            raise ValueError(f"chips {idx} are not chips of this {self.chips}-chip result")

        def pick(values: list) -> list:
            return [values[i] for i in idx]

        history = [dataclasses.replace(r, test_accuracy=pick(r.test_accuracy), train_accuracy=pick(r.train_accuracy),
                                       layers=[{k: pick(v) for k, v in layer.items()} for layer in r.layers])
                   for r in self.history]
        counts = {k: [pick(layer) for layer in v] for k, v in self.per_chip_counts.items()}
        totals = {k: [sum(layer) for layer in v] for k, v in counts.items()}
        span = [idx[0], idx[-1] + 1] if idx == list(range(idx[0], idx[-1] + 1)) else None

        def of_config(entry: dict[str, Any] | None) -> dict[str, Any] | None:
            """``entry``'s statistics over exactly the selected chips, if it has them."""
            for sub in (entry or {}).get("by_config") or []:
                if sub.get("chips") == span:
                    return {k: v for k, v in sub.items() if k != "chips"}
            return None

        stats = [of_config(e) if e else {} for e in self.pulse_statistics or []]
        windows = [of_config(w) for w in self.pulse_statistics_per_window]
        pulse_statistics = stats if stats and all(e is not None for e in stats) else None
        per_window = [{"examples": w["examples"], **sub} for w, sub in zip(self.pulse_statistics_per_window, windows)
                      if sub is not None] if all(sub is not None for sub in windows) else []
        return dataclasses.replace(
            self, chips=len(idx), history=history, **totals,
            update_pulses=[None if v is None else pick(v) for v in self.update_pulses],
            saturated_updates=[None if v is None else pick(v) for v in self.saturated_updates],
            pulse_statistics=pulse_statistics, pulse_statistics_per_window=per_window, analysis={},
            per_chip_counts=counts,
            config=self.config if config is None else config, variant=self.variant if variant is None else variant)

    @property
    def final_test_accuracy(self) -> list[float] | None:
        """Test accuracy per chip after the last epoch (None before the first)."""
        return list(self.history[-1].test_accuracy) if self.history else None

    @property
    def final_test_accuracy_mean(self) -> float | None:
        return self.history[-1].test_accuracy_mean if self.history else None

    @property
    def images_per_s(self) -> float:
        """Training examples per second of wall time (all chips together count once)."""
        return self.examples / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def cell_kind(self) -> str:
        """The unit cell of the chip (``"digital"`` for the software baseline)."""
        return str(self.config.get("chip", {}).get("cell", {}).get("kind", "digital"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("history", "analysis"):
                continue
            out[f.name] = getattr(self, f.name)
        out["history"] = [r.to_dict() for r in self.history]
        out["images_per_s"] = self.images_per_s
        out["final_test_accuracy"] = self.final_test_accuracy
        out["final_test_accuracy_mean"] = self.final_test_accuracy_mean
        out.update(self.analysis)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingResult:
        names = {f.name for f in dataclasses.fields(cls)} - {"history", "analysis"}
        derived = {"images_per_s", "final_test_accuracy", "final_test_accuracy_mean"}
        d = {**_ADDED_LATER, **d}
        missing = sorted(n for n in names if n not in d and n not in ("variant", "dataset"))
        if missing:
            raise DataError(f"a training result lacks {', '.join(missing[:4])}; the file is not an analogtrain result")
        kwargs = {k: d[k] for k in names if k in d}
        history = [EpochRecord.from_dict(h) for h in d.get("history", [])]
        analysis = {k: v for k, v in d.items() if k not in names and k not in derived and k != "history"}
        return cls(history=history, analysis=analysis, **kwargs)


@dataclass
class ExperimentResult:
    """One experiment of a run: its data, network and settings, and one result per variant."""

    experiment: str
    dataset: dict[str, Any]
    network: list[int]
    settings: dict[str, Any] = field(default_factory=dict)
    #: how this run differs from the full-size experiment (empty: it is the full experiment)
    reduced: list[str] = field(default_factory=list)
    variants: dict[str, TrainingResult] = field(default_factory=dict)
    #: the wall-time cost of batching chips (``reproduce``), or None
    timing: dict[str, Any] | None = None
    wall_s: float = 0.0
    #: the paper's claims held against this experiment (:func:`analogtrain.experiments.checks.paper_checks`)
    checks: list[dict[str, Any]] | None = None
    #: what else a merge or a study recorded (``merged_from``, ``merge_skipped``, ...), by name
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("variants", "notes")}
        out["variants"] = {k: v.to_dict() for k, v in self.variants.items()}
        if out["checks"] is None:
            del out["checks"]
        out.update(self.notes)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentResult:
        names = {f.name for f in dataclasses.fields(cls)} - {"variants", "notes"}
        kwargs = {k: d[k] for k in names if k in d}
        variants = {k: TrainingResult.from_dict(v) for k, v in (d.get("variants") or {}).items()}
        notes = {k: v for k, v in d.items() if k not in names and k != "variants"}
        return cls(variants=variants, notes=notes, **{"dataset": {}, "network": [], **kwargs})


@dataclass
class RunResult:
    """The results of one command's run folder (``results.json``)."""

    command: str  # "train" or "reproduce"
    experiment: str  # what was asked for: an experiment, "all", or the dataset of a train run
    chips: int | list[int]  # chips per variant (a merge of runs with different counts: each count)
    variants: list[str]
    seed: int
    environment: dict[str, Any]
    experiments: dict[str, ExperimentResult] = field(default_factory=dict)
    quick: bool = False
    threads: int | None = None
    device: str = "cpu"
    arguments: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    complete: bool = False
    #: what the command adds beside the experiments (train: ``summary``, ``chip_cost``), by name
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": FORMAT, "version": self.schema_version}
        for f in dataclasses.fields(self):
            if f.name in ("experiments", "extra", "schema_version"):
                continue
            out[f.name] = getattr(self, f.name)
        out["experiments"] = {k: v.to_dict() for k, v in self.experiments.items()}
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "results") -> RunResult:
        """Read any version this analogtrain knows; a one-line :class:`DataError` otherwise."""
        if not isinstance(d, dict) or d.get("format") not in (FORMAT, _FORMAT_V1):
            raise DataError(f"{where} is not the results.json of an analogtrain run")
        version = d.get("version")
        if d["format"] == _FORMAT_V1:
            if version != 1:
                raise DataError(f"{where} has reproduce results version {version!r}; this analogtrain reads 1 and "
                                f"{SCHEMA_VERSION}")
            d = {**d, "command": "reproduce"}
        elif version != SCHEMA_VERSION:
            raise DataError(f"{where} has results version {version!r}; this analogtrain reads up to {SCHEMA_VERSION} "
                            "(render it with the analogtrain that wrote it)")
        names = {f.name for f in dataclasses.fields(cls)} - {"experiments", "extra", "schema_version"}
        try:
            kwargs = {k: d[k] for k in names if k in d}
            experiments = {k: ExperimentResult.from_dict(v) for k, v in (d.get("experiments") or {}).items()}
            extra = {k: v for k, v in d.items() if k not in names and k not in ("experiments", "format", "version")}
            return cls(experiments=experiments, extra=extra, **kwargs)
        except (TypeError, AttributeError, KeyError) as exc:
            raise DataError(f"{where} is damaged or incomplete ({exc}); rerun or restore the file") from None

    def variant(self, name: str, experiment: str | None = None) -> TrainingResult:
        """The result of variant ``name`` (of ``experiment``; may be left out when the run has one)."""
        if experiment is None:
            if len(self.experiments) != 1:
                raise KeyError(f"the run has experiments {', '.join(self.experiments)}; name one")
            experiment = next(iter(self.experiments))
        return self.experiments[experiment].variants[name]

    def write(self, folder: str | Path) -> Path:
        """Write ``folder/results.json`` atomically."""
        return write_json(Path(folder) / "results.json", self.to_dict())

    @classmethod
    def read(cls, folder: str | Path) -> RunResult:
        """Read ``folder/results.json``; a one-line :class:`DataError` if missing or not one."""
        f = Path(folder) / "results.json"
        try:
            raw = json.loads(f.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{f} not found; give the --out folder of an analogtrain run") from None
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {f}: {exc}") from None
        return cls.from_dict(raw, str(f))
