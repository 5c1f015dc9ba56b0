"""Chips of one batch that differ in their configuration.

The chips of a run are stored along the first axis of every state tensor, and each has its own
random stream (:class:`analogtrain.noise.ChipStreams`).  They may also differ in the parameters
below: none of them changes an array's shape, the cell kind, or how many pulses a unit of
update takes, so chips that differ only there train as one batch, each exactly as it would
train alone.  This is what lets a study train several variants of the chip (a held and a
leaking reference, with and without polarity inversion, with and without CMOS mismatch, a range
of leak time constants) side by side at the cost of one run with more chips.

A cell reads a per-chip parameter through :func:`per_chip`, which gives a ``[chips]`` tensor
(the same value repeated when all chips agree), so a chip's arithmetic is the same whatever
its neighbours are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ._configbase import first_difference
from .config import ChipConfig
from .errors import ConfigError

#: the chip parameters that may differ between the chips of one batch (section.field)
PER_CHIP_FIELDS: tuple[str, ...] = (
    "capacitor.leak_time_constant_s",
    "capacitor.current_mismatch_rel",
    "capacitor.read_threshold_mismatch_v",
    "cell.shared_reference",
    "cell.polarity_inversion",
    "cell.transfer_offset_us",
    "transfer.tolerance_us",
)


def _get(cfg: ChipConfig, field: str) -> Any:
    section, name = field.split(".")
    return getattr(getattr(cfg, section), name)


def _without_per_chip(cfg: ChipConfig) -> dict[str, Any]:
    d = cfg.to_dict()
    for field in PER_CHIP_FIELDS:
        section, name = field.split(".")
        d[section].pop(name, None)
    return d


def check_batch(chips: Sequence[ChipConfig]) -> None:
    """Raise a one-line :class:`ConfigError` unless ``chips`` differ only in :data:`PER_CHIP_FIELDS`."""
    if not chips:
        raise ConfigError("a batch of chips needs at least one chip configuration")
    first = _without_per_chip(chips[0])
    for i, cfg in enumerate(chips[1:], start=1):
        diff = first_difference(first, _without_per_chip(cfg))
        if diff is not None:
            raise ConfigError(f"chips 0 and {i} of the batch differ in chip.{diff}; chips that train as one batch "
                              f"may differ only in {', '.join('chip.' + f for f in PER_CHIP_FIELDS)}: train the "
                              "others as a separate run")


def per_chip(base: ChipConfig, chips: Sequence[ChipConfig] | None, field: str, n: int,
             device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The value of ``field`` for each of the ``n`` chips, a ``[n]`` tensor (``base``'s value for every
    chip when ``chips`` is None).  Booleans and the reference mode (``leaking`` = 1) come as 0/1."""
    if field not in PER_CHIP_FIELDS:
        raise ValueError(f"{field} is not a per-chip parameter")
    if chips is not None and len(chips) != n:
        raise ValueError(f"{len(chips)} chip configurations for {n} chips")
    values = [_get(c, field) for c in (chips if chips is not None else [base] * n)]
    if field == "cell.shared_reference":
        values = [v == "leaking" for v in values]
    return torch.tensor([float(v) for v in values], device=device, dtype=dtype)


def batch_groups(configs: Sequence[Any], size: int | None = None) -> list[list[int]]:
    """Indices of ``configs`` (experiment configs) in groups that can train as one batch: analog
    chips with the same training settings that differ only in :data:`PER_CHIP_FIELDS`, at most
    ``size`` per group.  Deterministic and in order: the same configs give the same groups (what
    resuming a batch's checkpoint relies on)."""
    groups: list[tuple[Any, list[int]]] = []
    for i, cfg in enumerate(configs):
        for first, members in groups:
            if (size is not None and len(members) >= size) or cfg.training != first.training \
                    or "digital" in (cfg.chip.cell.kind, first.chip.cell.kind):
                continue
            try:
                check_batch([first.chip, cfg.chip])
            except ConfigError:
                continue
            members.append(i)
            break
        else:
            groups.append((cfg, [i]))
    return [members for _, members in groups]
