"""The unit-cell interface and the registry from cell kind to class.

A crossbar (:class:`analogtrain.crossbar.AnalogCrossbar`) holds its cells as one object that
plays the role :class:`UnitCells` describes: state tensors of shape ``[chips, rows, columns]``
(conductances in uS), a read of the presented weight, a pulse update, the passing of time, the
transfer and the maintenance a cell needs, and its named state.  The crossbar, the transfer
schedule, the ``nn`` layers and the optimizer speak only this interface, so a new device is one
new module: a class that implements it, registered under a new ``chip.cell.kind``::

    @register_cell("my-device")
    class MyCells:
        ...

``chip.cell.kind = "my-device"`` then builds it (docs/extending.md works one example through).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

import torch

from .config import register_cell_kind
from .errors import ConfigError

if TYPE_CHECKING:
    from .config import ChipConfig


@dataclass
class TransferStats:
    """What one transfer (or 2-PCM refresh) did."""

    columns: int = 0
    cells: int = 0
    tuning_pulses: int = 0
    unconverged: int = 0
    per_chip_pulses: list[int] = field(default_factory=list)
    per_chip_unconverged: list[int] = field(default_factory=list)

    def pulses_of(self, chips: int) -> list[int]:
        """Tuning pulses per chip (zeros where the stats hold none: nothing was programmed)."""
        return list(self.per_chip_pulses) or [0] * chips

    def unconverged_of(self, chips: int) -> list[int]:
        """Unconverged devices per chip (zeros where the stats hold none)."""
        return list(self.per_chip_unconverged) or [0] * chips


@runtime_checkable
class UnitCells(Protocol):
    """What a crossbar needs from its cells.  Tensors are ``[chips, rows, columns]``."""

    #: the ``chip.cell.kind`` this class implements
    kind: ClassVar[str]
    #: whether the cell has a volatile part that a periodic transfer moves into the PCM
    has_transfer: ClassVar[bool]
    #: variance of one read of each cell's presented weight (uS^2)
    read_var_us2: torch.Tensor

    @property
    def nominal_step_us(self) -> float:
        """|dW| of one update pulse on a nominal cell (uS): sets pulses per unit of update."""
        ...

    @classmethod
    def maintenance_interval_examples(cls, chip: ChipConfig) -> int:
        """Examples between calls of :meth:`maintain` for ``chip`` (0: the cell needs none)."""
        ...

    # -- reads -------------------------------------------------------------------------
    def weight_us(self) -> torch.Tensor:
        """The presented weight of every cell now (uS)."""
        ...

    def read_block(self, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(presented weight, per-cell state the update needs) of the given rows (all if None)."""
        ...

    def read_var_block(self, rows: torch.Tensor) -> torch.Tensor:
        ...

    # -- update and time ---------------------------------------------------------------
    def update_normals(self, cells: int) -> int:
        """Normal random numbers an update of ``cells`` cells draws."""
        ...

    def apply_block(self, n: torch.Tensor, rows: torch.Tensor | None, v: torch.Tensor | None, noise=None) -> None:
        """Apply signed pulse counts ``n`` (in the weight's direction) to the given rows."""
        ...

    def after_update(self) -> None:
        """Bookkeeping after a step's tensor work."""
        ...

    def advance_time(self, dt_s: float, examples: int = 1) -> None:
        """Let ``dt_s`` seconds of chip time pass (``examples`` training examples)."""
        ...

    # -- programming -------------------------------------------------------------------
    def program_weights(self, w_us: torch.Tensor) -> TransferStats:
        """Initial programming of the presented weights ``w_us`` (uS)."""
        ...

    def transfer(self, cols: torch.Tensor | None = None) -> TransferStats:
        """Move the volatile part into the non-volatile one (nothing for cells without one)."""
        ...

    def maintain(self) -> TransferStats:
        """Periodic maintenance (the 2-PCM cell's occasional RESET; nothing for most cells)."""
        ...

    # -- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Named state tensors (a copy-free view of the state, current as of now)."""
        ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict` (tensors are copied into this object's device and dtype)."""
        ...


CellFactory = Callable[["ChipConfig", tuple[int, int, int], Any, torch.device | str, torch.dtype],
                       UnitCells]
_T = TypeVar("_T")
_CELLS: dict[str, Callable[..., UnitCells]] = {}


def register_cell(kind: str) -> Callable[[_T], _T]:
    """Class decorator: make ``chip.cell.kind = kind`` build this class.

    The class is called as ``cls(chip_config, shape, generator, device, dtype)``.  ``generator`` is
    the chips' random streams (:class:`analogtrain.noise.ChipStreams`, one per chip, in the
    paper's network) or a ``torch.Generator`` (the ``nn`` layers): draw with
    :func:`analogtrain.noise.randn` (chips first), which takes either, so a chip's draws never
    depend on the other chips.  Chips of different configurations come as the keyword
    ``chip_configs`` (a cell that does not take it trains only batches of one configuration).
    """

    def deco(cls: _T) -> _T:
        old = _CELLS.get(kind)
        same = old is not None and (old.__module__, old.__qualname__) == (cls.__module__, cls.__qualname__)
        if old is not None and old is not cls and not same:  # a re-run definition (reload, notebook) replaces
            raise ValueError(f"cell kind {kind!r} is already registered to {old.__module__}.{old.__qualname__}")
        _CELLS[kind] = cls  # type: ignore[assignment]
        cls.kind = kind  # type: ignore[attr-defined]
        register_cell_kind(kind)
        return cls

    return deco


def cell_class(kind: str) -> Callable[..., UnitCells]:
    """The class registered for ``kind`` (a :class:`ConfigError` naming the kinds there are otherwise).
    The built-in kinds are registered when :mod:`analogtrain.cell` is imported, which importing
    the package does."""
    if kind not in _CELLS:
        raise ConfigError(f"no analog cell is registered for chip.cell.kind {kind!r}; "
                          f"analog kinds: {', '.join(sorted(_CELLS))}")
    return _CELLS[kind]


def analog_kinds() -> tuple[str, ...]:
    """Registered analog cell kinds (``digital`` is the exact software network, not a cell)."""
    return tuple(_CELLS)
