"""PNG figures of a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from .runs.results import TrainingResult


def accuracy_vs_epoch(runs: dict[str, TrainingResult], path: Path, title: str = "") -> Path:
    """Test accuracy (%) vs epoch, mean over chips with min-max band, one line per run."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name, res in runs.items():
        hist = res.history
        if not hist:
            continue
        ep = [h.epoch for h in hist]
        mean = [100 * h.test_accuracy_mean for h in hist]
        lo = [100 * min(h.test_accuracy) for h in hist]
        hi = [100 * max(h.test_accuracy) for h in hist]
        (line,) = ax.plot(ep, mean, marker="o", label=f"{name} ({mean[-1]:.2f}%)")
        if len(hist[0].test_accuracy) > 1:
            ax.fill_between(ep, lo, hi, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "test accuracy vs epoch")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
