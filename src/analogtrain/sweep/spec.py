"""A sweep specification (TOML) and the points it expands to.

::

    name = "leak time constant"
    dataset = "mnist"                 # any analogtrain dataset name
    data_dir = "../shared/data/mnist" # optional: where its files are
    limit_train = 10000               # optional: a prefix of the training / test sets
    limit_test = 2000
    presets = ["nature2018", "nature2018-held-reference"]
    seeds = [0]
    chips = 3                         # chips per point, trained together (batched)
    epochs = 20
    method = "grid"                   # "grid", "random" (samples draws), "asha" (random + early stopping)
    samples = 8                       # random / asha: how many points to draw
    sample_seed = 0
    group = 1                         # grid / random: up to this many points train as one batch
                                      # where they differ only in per-chip parameters (GPU)

    [config]                          # fixed overrides of every point (nested, as a config file)
    training = { hidden = [250, 125] }

    [parameters]                      # the swept parameters, by dotted config key
    "chip.capacitor.leak_time_constant_s" = [1e-3, 5e-3, 2e-2, 5e-2]   # a list: a grid axis
    "training.learning_rate" = { log_uniform = [0.02, 0.2] }           # random / asha only
    "chip.update.pulse_train_length" = { int_uniform = [16, 128] }     # random / asha only
    "chip.cell.gain_f" = { uniform = [2.0, 4.0] }                      # random / asha only

    [asha]                            # method = "asha": Ray Tune's ASHA scheduler
    grace_period = 2                  # epochs every point gets
    reduction_factor = 3

A point is (preset, one value per parameter, seed); its id is a digest of those, so the same
spec names the same points on every run (what ``--resume`` relies on).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import flatten_overrides, merge_overrides, parse_set_option
from ..errors import ConfigError

METHODS = ("grid", "random", "asha")
_DISTRIBUTIONS = ("values", "uniform", "log_uniform", "int_uniform")
_KEYS = {"name", "dataset", "data_dir", "limit_train", "limit_test", "presets", "seeds", "chips", "epochs",
         "method", "samples", "sample_seed", "config", "parameters", "asha", "group"}


@dataclass(frozen=True)
class Axis:
    """One swept parameter: a list of values, or a distribution to draw from."""

    key: str
    kind: str  # one of _DISTRIBUTIONS
    values: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0

    def draw(self, rng: np.random.Generator) -> Any:
        if self.kind == "values":
            return self.values[int(rng.integers(len(self.values)))]
        if self.kind == "uniform":
            return float(rng.uniform(self.low, self.high))
        if self.kind == "log_uniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return int(rng.integers(int(self.low), int(self.high) + 1))


@dataclass(frozen=True)
class Point:
    """One training run of a sweep: a preset, the swept values, a seed."""

    preset: str
    values: dict[str, Any]
    seed: int

    @property
    def id(self) -> str:
        text = json.dumps([self.preset, sorted(self.values.items()), self.seed], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def overrides(self, base: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in self.values.items():
            out = merge_overrides(out, parse_set_option(f"{key}={json.dumps(value)}"))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "preset": self.preset, "values": dict(self.values), "seed": self.seed}


@dataclass(frozen=True)
class SweepSpec:
    dataset: str
    presets: tuple[str, ...]
    parameters: tuple[Axis, ...]
    name: str = "sweep"
    data_dir: str | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    seeds: tuple[int, ...] = (0,)
    chips: int = 1
    epochs: int = 3
    method: str = "grid"
    samples: int = 0
    sample_seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    asha: dict[str, Any] = field(default_factory=dict)
    #: points trained as one batch at most (1: every point alone); points are grouped where their
    #: configurations differ only in analogtrain.perchip.PER_CHIP_FIELDS
    group: int = 1
    source: str = ""  # where the spec was read from (resolving data_dir)

    def points(self) -> list[Point]:
        """Every point, in a fixed order (presets, then the grid or the draws, then seeds)."""
        if self.method == "grid":
            grids = [a.values for a in self.parameters]
            combos = [dict(zip((a.key for a in self.parameters), c)) for c in itertools.product(*grids)]
        else:
            rng = np.random.default_rng(self.sample_seed)
            combos = [{a.key: a.draw(rng) for a in self.parameters} for _ in range(self.samples)]
        out: list[Point] = []
        for p in self.presets:
            seen: set[str] = set()
            digital = _is_digital(p)  # the chip's parameters do not reach the software baseline
            for c in combos:
                if digital:
                    c = {k: v for k, v in c.items() if not k.startswith("chip.")}
                for s in self.seeds:
                    point = Point(p, c, s)
                    if point.id not in seen:
                        seen.add(point.id)
                        out.append(point)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dataset": self.dataset, "data_dir": self.data_dir,
                "limit_train": self.limit_train, "limit_test": self.limit_test, "presets": list(self.presets),
                "seeds": list(self.seeds), "chips": self.chips, "epochs": self.epochs, "method": self.method,
                "samples": self.samples, "sample_seed": self.sample_seed, "config": self.config,
                "asha": self.asha, **({"group": self.group} if self.group != 1 else {}),
                "parameters": {a.key: list(a.values) if a.kind == "values" else {a.kind: [a.low, a.high]}
                               for a in self.parameters}}


def _is_digital(preset: str) -> bool:
    """True for a preset without analog cells (the software baseline)."""
    from ..presets import get_preset

    return get_preset(preset).chip.cell.kind == "digital"


def _axis(key: str, raw: Any, method: str) -> Axis:
    if isinstance(raw, list):
        if not raw:
            raise ConfigError(f"sweep parameter {key!r} has an empty list of values")
        return Axis(key, "values", tuple(raw))
    if isinstance(raw, dict) and len(raw) == 1:
        kind, arg = next(iter(raw.items()))
        if kind == "values" and isinstance(arg, list) and arg:
            return Axis(key, "values", tuple(arg))
        if kind in _DISTRIBUTIONS[1:]:
            if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(v, (int, float)) for v in arg)
                    and arg[0] < arg[1]):
                raise ConfigError(f"sweep parameter {key!r}: {kind} needs [low, high] with low < high, got {arg!r}")
            if kind == "log_uniform" and arg[0] <= 0:
                raise ConfigError(f"sweep parameter {key!r}: log_uniform needs a positive low bound")
            if method == "grid":
                raise ConfigError(f"sweep parameter {key!r} is a distribution ({kind}); a grid needs a list of "
                                  "values (or use method = \"random\" or \"asha\")")
            return Axis(key, kind, (), float(arg[0]), float(arg[1]))
    raise ConfigError(f"sweep parameter {key!r} must be a list of values or one of "
                      f"{{ uniform | log_uniform | int_uniform = [low, high] }}, got {raw!r}")


def parse_spec(data: dict[str, Any], source: str = "") -> SweepSpec:
    """A validated :class:`SweepSpec` from a parsed TOML table (one-line ConfigError otherwise)."""
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], sorted(_KEYS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown sweep setting {unknown[0]!r}{hint} (settings: {', '.join(sorted(_KEYS))})")
    if "dataset" not in data:
        raise ConfigError("a sweep spec needs dataset = \"...\" (e.g. \"digits\" or \"mnist\")")
    method = data.get("method", "grid")
    if method not in METHODS:
        raise ConfigError(f"sweep method must be one of {', '.join(METHODS)}, got {method!r}")
    presets = data.get("presets", ["nature2018"])
    if isinstance(presets, str):
        presets = [presets]
    from ..presets import PRESET_NAMES, canonical_name

    presets = [canonical_name(p) for p in presets]
    for p in presets:
        if p not in PRESET_NAMES:
            raise ConfigError(f"unknown preset {p!r} in the sweep spec; presets: {', '.join(PRESET_NAMES)}")
    params = data.get("parameters", {})
    if not isinstance(params, dict):
        raise ConfigError("[parameters] must be a table of dotted config keys")
    axes = tuple(_axis(k, v, method) for k, v in flatten_keys(params).items())

    def positive(name: str, default: int | None) -> int | None:
        v = data.get(name, default)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError(f"sweep setting {name} must be a positive integer, got {v!r}")
        return v

    if method == "grid" and data.get("samples") == 0:  # as to_dict() writes a grid's spec
        data = {k: v for k, v in data.items() if k != "samples"}
    samples = positive("samples", None)
    if method != "grid" and not samples:
        raise ConfigError(f"method = \"{method}\" needs samples = N (how many points to draw)")
    seeds = data.get("seeds", [0])
    seeds = [seeds] if isinstance(seeds, int) else seeds
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ConfigError(f"seeds must be a list of non-negative integers, got {seeds!r}")
    config = data.get("config", {})
    if not isinstance(config, dict):
        raise ConfigError("[config] must be a table of config overrides")
    asha = data.get("asha", {})
    if set(asha) - {"grace_period", "reduction_factor"}:
        raise ConfigError("[asha] takes grace_period and reduction_factor")
    group = positive("group", 1) or 1
    if group > 1 and method == "asha":
        raise ConfigError("group = N needs method = \"grid\" or \"random\": ASHA stops points one by one")
    return SweepSpec(
        dataset=str(data["dataset"]), presets=tuple(presets), parameters=axes, name=str(data.get("name", "sweep")),
        data_dir=data.get("data_dir"), limit_train=positive("limit_train", None), limit_test=positive("limit_test", None),
        seeds=tuple(seeds), chips=positive("chips", 1) or 1, epochs=positive("epochs", 3) or 3, method=method,
        samples=samples or 0, sample_seed=int(data.get("sample_seed", 0)), config=config, asha=dict(asha),
        group=group, source=source)


def flatten_keys(params: dict[str, Any]) -> dict[str, Any]:
    """``{"chip": {"cell": {"gain_f": [..]}}}`` and ``{"chip.cell.gain_f": [..]}`` alike -> dotted keys.
    A table with one distribution key (``{uniform = [..]}``) is a leaf."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, dict) and not (len(v) == 1 and next(iter(v)) in _DISTRIBUTIONS):
            out.update({f"{k}.{kk}": vv for kk, vv in flatten_keys(v).items()})
        else:
            out[k] = v
    return out


def load_spec(path: str | Path) -> SweepSpec:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"sweep spec {p} not found; give the path of a .toml file (examples/sweeps/)")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"sweep spec {p} is not valid TOML: {exc}") from None
    return parse_spec(data, str(p))


__all__ = ["Axis", "METHODS", "Point", "SweepSpec", "flatten_keys", "flatten_overrides", "load_spec", "parse_spec"]
