"""Named configurations of the paper's experiments.  A preset is just a filled-in config."""

from __future__ import annotations

import difflib
from typing import Any

from .config import ExperimentConfig, merge_overrides
from .errors import ConfigError

_DEFAULT = ExperimentConfig().to_dict()

# name -> (one-line description, overrides of the default config; ExperimentConfig() is nature2018)
_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "nature2018": (
        "the paper's chip: 2PCM+3T1C cell, F=3, polarity inversion, transfer every 8,000 examples, a reference "
        "3T1C g_shared that leaks like the cells (transfer offset 0, see nature2018-offset)",
        {},
    ),
    "nature2018-held-reference": (
        "ablation: as nature2018 with the reference g_shared actively held at the reset voltage, so the cells' "
        "leakage shifts whole columns (MNIST needs a leak time constant of ~10 ms or more)",
        {"chip": {"cell": {"shared_reference": "held"}}},
    ),
    "nature2018-offset": (
        "as nature2018 with the paper's 2 uS transfer offset (in our model it shifts every weight after a transfer)",
        {"chip": {"cell": {"transfer_offset_us": 2.0}}},
    ),
    "nature2018-no-inversion": (
        "as nature2018 without polarity inversion: the 3T1C up/down mismatch is no longer cancelled",
        {"chip": {"cell": {"polarity_inversion": False}}},
    ),
    "nature2018-ideal-cmos": (
        "as nature2018 with no CMOS mismatch (identical pull-up/pull-down and V_T in every cell)",
        {"chip": {"capacitor": {"current_mismatch_rel": 0.0, "read_threshold_mismatch_v": 0.0}}},
    ),
    "2pcm": (
        "PCM-only cell W = F(G+ - G-): gradual partial SET, occasional RESET of saturated pairs (the group's 2015 design)",
        {"chip": {"cell": {"kind": "2pcm"}}},
    ),
    "software": (
        "exact FP32 weights, plain SGD at minibatch 1: the software baseline",
        {"chip": {"cell": {"kind": "digital"}}},
    ),
}

#: former names, still accepted: name -> (the preset it is now, why)
RENAMED: dict[str, tuple[str, str]] = {
    "nature2018-leaking-reference": (
        "nature2018", "the leaking reference is the paper's chip now (nature2018); the held one is "
                      "nature2018-held-reference"),
}

PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)


def preset_descriptions() -> dict[str, str]:
    return {name: desc for name, (desc, _) in _PRESETS.items()}


def canonical_name(name: str) -> str:
    """The current name of preset ``name`` (a renamed preset's new name; others unchanged)."""
    return RENAMED[name][0] if name in RENAMED else name


def _lookup(name: str) -> tuple[str, dict[str, Any]]:
    if name in RENAMED:
        import warnings

        new, why = RENAMED[name]
        warnings.warn(f"preset {name!r} was renamed: {why}; use {new!r}", FutureWarning, stacklevel=3)
        name = new
    if name not in _PRESETS:
        close = difflib.get_close_matches(name, PRESET_NAMES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown preset {name!r}{hint} (run 'analogtrain presets' to list them)")
    return _PRESETS[name]


def preset_dict(name: str) -> dict[str, Any]:
    """The full config of a preset as a plain dict."""
    return merge_overrides(_DEFAULT, _lookup(name)[1])


def get_preset(name: str, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """The validated config of preset ``name``, with optional nested ``overrides`` applied."""
    data = preset_dict(name)
    if overrides:
        data = merge_overrides(data, overrides)
    return ExperimentConfig.from_dict(data)

