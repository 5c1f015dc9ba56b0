"""When transfers (and the 2-PCM occasional RESETs) happen during training.

* ``array`` mode: every ``interval_examples`` examples, every column of every layer.
* ``column`` mode: column j of a layer with m columns is transferred when
  ``examples % interval == floor((j + 1) * interval / m) % interval``, so each column is
  still transferred once per interval but the work is spread evenly over it.
"""

from __future__ import annotations

import torch

from .config import ChipConfig


class TransferSchedule:
    def __init__(self, chip: ChipConfig, columns_per_layer: list[int], device="cpu"):
        self.interval = chip.transfer.interval_examples
        self.mode = chip.transfer.mode
        if chip.cell.kind == "digital":
            self.has_transfer, self.reset_interval = False, 0
        else:
            from . import cell as _builtin  # noqa: F401 - the built-in kinds, registered on import
            from .interface import cell_class

            cls = cell_class(chip.cell.kind)
            self.has_transfer = bool(cls.has_transfer)
            self.reset_interval = int(cls.maintenance_interval_examples(chip))
        self.n_layers = len(columns_per_layer)
        self._tables: list[dict[int, torch.Tensor]] = []
        if self.mode == "column":
            for m in columns_per_layer:
                table: dict[int, list[int]] = {}
                for j in range(m):
                    table.setdefault(((j + 1) * self.interval // m) % self.interval, []).append(j)
                self._tables.append({r: torch.tensor(c, dtype=torch.long, device=device) for r, c in table.items()})

    def transfers_due(self, examples_seen: int) -> list[tuple[int, torch.Tensor | None]]:
        """(layer, columns or None for all) to transfer after ``examples_seen`` examples."""
        if not self.has_transfer or examples_seen == 0:
            return []
        if self.mode == "array":
            if examples_seen % self.interval == 0:
                return [(i, None) for i in range(self.n_layers)]
            return []
        r = examples_seen % self.interval
        return [(i, t[r]) for i, t in enumerate(self._tables) if r in t]

    def reset_due(self, examples_seen: int) -> bool:
        return self.reset_interval > 0 and examples_seen > 0 and examples_seen % self.reset_interval == 0

    def pulse_window_closes(self, examples_seen: int) -> bool:
        """The ED Fig. 2 statistics window: two transfer intervals."""
        return examples_seen > 0 and examples_seen % (2 * self.interval) == 0
