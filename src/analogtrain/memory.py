"""How much memory a simulated chip needs, and refusing a run that cannot fit before it starts.

The state of a crossbar is a set of ``[chips, rows, columns]`` tensors (conductances, voltages,
mismatch draws, cached weights, read variances) plus the temporaries of one training step of the
same shape (the pulse counts, the block of weights read).  :func:`bytes_per_synapse` counts both
for a chip config by building a one-cell crossbar and adding up the bytes of its full-shape
tensors, so it follows the cell classes as they are, without a table to keep in step;
``benchmarks/speed.py`` reports the measured peak beside it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .config import ChipConfig
from .errors import ConfigError

#: full-shape float32 temporaries of one training step (pulse counts, the weights read, the
#: capacitor voltages of the rows read, and one scratch product), bytes per cell
STEP_TEMPORARY_BYTES = 4 * 4
#: the share of the available memory a run may plan to use (the rest: Python, torch, data, plots)
USABLE_FRACTION = 0.8


def bytes_per_synapse(chip: ChipConfig) -> int:
    """Bytes of state plus step temporaries per simulated synapse (one cell of one chip)."""
    if chip.cell.kind == "digital":
        return 4 + 4 + STEP_TEMPORARY_BYTES // 2  # the weight, its update, a read
    from .crossbar import AnalogCrossbar

    shape = (1, 3, 5)  # chips, rows (2 inputs + bias), columns: an unusual shape to recognise
    xb = AnalogCrossbar(2, 5, chip, 0.1, 1, torch.Generator().manual_seed(0), tracked_synapses=0)
    cells = 3 * 5
    seen: set[int] = set()
    total = 0
    for obj in (xb.cells, getattr(xb.cells, "mismatch", None)):
        for v in vars(obj).values() if obj is not None else ():
            if isinstance(v, torch.Tensor) and tuple(v.shape) == shape and v.data_ptr() not in seen:
                seen.add(v.data_ptr())
                total += v.element_size() * v.numel()
    return total // cells + STEP_TEMPORARY_BYTES


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Memory free for a new run on ``device``: CUDA's free memory, or the machine's available
    memory (Linux ``MemAvailable``); None where it cannot be read."""
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


@dataclass(frozen=True)
class MemoryEstimate:
    synapses: int
    chips: int
    bytes_per_synapse: int

    @property
    def bytes(self) -> int:
        return self.synapses * self.chips * self.bytes_per_synapse


def network_synapses(sizes: list[int]) -> int:
    """Cells of an MLP ``sizes`` with a bias row per layer."""
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def check_fits(chip: ChipConfig, sizes: list[int], chips: int, device: torch.device | str = "cpu",
               available: int | None = None) -> MemoryEstimate:
    """Raise a one-line :class:`ConfigError` when the chips' state cannot fit on ``device``."""
    est = MemoryEstimate(network_synapses(list(sizes)), int(chips), bytes_per_synapse(chip))
    have = available_bytes(device) if available is None else available
    if have is not None and est.bytes > USABLE_FRACTION * have:
        where = "the GPU has" if torch.device(device).type == "cuda" else "this machine has"
        raise ConfigError(
            f"this run needs about {_gb(est.bytes)} for the chips' state ({est.synapses:,} synapses x {est.chips} "
            f"chips x {est.bytes_per_synapse} bytes) but {where} {_gb(have)} available; use fewer or smaller "
            "hidden layers (--hidden) or fewer chips (--chips)")
    return est
