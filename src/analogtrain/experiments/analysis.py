"""What a run records beyond accuracy: histograms of the device state (G+, G-, V_C, weights),
the pulse statistics of ED Fig. 2, the per-synapse pulse window, and the wall-time cost of
training several chips in one batch.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import Dataset
from ..runs.results import TrainingResult
from .settings import Settings, variant_config


def _hist(t: torch.Tensor, lo: float | None = None, hi: float | None = None, bins: int = 60) -> dict[str, Any]:
    a = t.detach().to("cpu", torch.float64).flatten().numpy()
    a = a[np.isfinite(a)]
    if lo is None or hi is None:
        lo_, hi_ = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
        if hi_ <= lo_:
            lo_, hi_ = lo_ - 0.5, hi_ + 0.5
        lo, hi = (lo_ if lo is None else lo), (hi_ if hi is None else hi)
    counts, edges = np.histogram(np.clip(a, lo, hi), bins=bins, range=(lo, hi))
    return {
        "edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
        "mean": float(a.mean()) if a.size else math.nan, "std": float(a.std()) if a.size else math.nan,
        "min": float(a.min()) if a.size else math.nan, "max": float(a.max()) if a.size else math.nan,
        "n": int(a.size),
    }


def _chip_slice(chips: tuple[int, int] | None) -> slice:
    return slice(None) if chips is None else slice(chips[0], chips[1])


def state_histograms(trainer, snapshot: bool = False, chips: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """Per layer, histograms (all chips pooled) of G+, G- (uS), V_C (V) and the weights;
    ``chips`` (a, b): of chips a .. b-1 only (a variant of a batch).

    Reading V_C brings the deferred capacitor leakage up to date, which changes the run's
    floating-point path; with ``snapshot`` the cells are deep-copied first, so a histogram
    taken during training leaves the run bit for bit as it would have been.
    """
    chip = trainer.config.chip
    sel = _chip_slice(chips)
    out = []
    for layer in trainer.mlp.layers:
        cells = getattr(layer, "cells", None)
        if cells is None:
            out.append({"weight": _hist(layer.weights()[sel])})
            continue
        if snapshot:
            cells = copy.deepcopy(cells)
        st = cells.state_tensors()  # brings deferred capacitor leakage up to date
        entry: dict[str, Any] = {"weight": _hist(cells.weight_us()[sel] / layer.scale_us)}
        entry["g_plus_us"] = _hist(st["g_plus_us"][sel], 0.0, chip.pcm.g_max_us)
        entry["g_minus_us"] = _hist(st["g_minus_us"][sel], 0.0, chip.pcm.g_max_us)
        if "v_c_v" in st:
            entry["v_c_v"] = _hist(st["v_c_v"][sel], 0.0, chip.capacitor.supply_v)
            entry["polarity_negative_fraction"] = float((st["polarity"][sel] < 0).double().mean())
        out.append(entry)
    return out


def pooled_pulse_statistics(trainer, chips: tuple[int, int] | None = None) -> dict[str, Any] | None:
    """Median and 90th percentile of |net| and total pulses over every tracked synapse of every
    layer and chip (the last complete two-interval window), or None without a window; ``chips``
    (a, b): of chips a .. b-1 only."""
    window = trainer.pulse_window
    if not window or not any(window):
        return None
    sel = _chip_slice(chips)
    net = torch.cat([w["net"][sel].abs().flatten() for w in window if w]).double()
    tot = torch.cat([w["total"][sel].flatten() for w in window if w]).double()
    return {
        "window_examples": 2 * trainer.schedule.interval,
        "tracked_synapses": int(net.numel()),
        "median_abs_net": float(net.median()), "median_total": float(tot.median()),
        "mean_abs_net": float(net.mean()), "mean_total": float(tot.mean()),
        "p90_abs_net": float(torch.quantile(net, 0.9)), "p90_total": float(torch.quantile(tot, 0.9)),
    }


def save_pulse_window(trainer, path: Path, chips: tuple[int, int] | None = None) -> str | None:
    """Write the last window's per-synapse pulses (of chips a .. b-1 with ``chips``) to ``path``."""
    window = trainer.pulse_window
    if not window or not any(window):
        return None
    sel = _chip_slice(chips)
    arrays = {}
    for i, w in enumerate(window):
        if w:
            arrays[f"layer{i}_net"] = w["net"][sel].to(torch.float32).numpy()
            arrays[f"layer{i}_total"] = w["total"][sel].to(torch.float32).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path.name


def measure_chip_batching(variant: str, settings: Settings, data: Dataset, chips: int, seed: int,
                          device: str = "cpu", examples: int | None = None, repeats: int = 2) -> dict[str, Any]:
    """Wall time of the same ``examples`` training steps with one chip and with ``chips`` chips in one
    trainer; ratio = batched / one chip.  The two are timed alternately ``repeats`` times and the
    fastest of each is kept (other programs sharing the cores only ever add time).  Both run the
    eager step (compiling would be timed too)."""
    from ..training import Trainer

    n = examples or settings.timing_examples
    times: dict[int, list[float]] = {1: [], chips: []}
    for _ in range(repeats):
        for c in times:
            cfg = variant_config(variant, settings, c, seed, "off")
            trainer = Trainer(cfg, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes,
                              device=device)
            t0 = time.perf_counter()
            trainer.train(epochs=math.ceil(n / data.n_train), progress=False,
                          on_step=lambda tr: tr.state.examples_seen >= n)
            times[c].append(time.perf_counter() - t0)
    one, many = min(times[1]), min(times[chips])
    return {
        "variant": variant, "examples": n, "chips": chips, "wall_1chip_s": one, "wall_batched_s": many,
        "ratio": many / one if one > 0 else math.nan,
        "per_chip_speedup": chips * one / many if many > 0 else math.nan,
        "repeats": repeats, "all_wall_s": {str(k): v for k, v in times.items()},
        "note": "same training steps (no evaluation), fastest of the repeats; transfers only if the interval "
                "falls within them",
    }


def variant_cost(res: TrainingResult) -> dict[str, Any] | None:
    """What a variant's run would have cost on the chip (:func:`analogtrain.cost.cli.training_cost`,
    docs/cost_model.md), or None for a variant the cost model does not describe (software, the
    2-PCM cell) or whose config this version cannot read."""
    from ..config import ExperimentConfig
    from ..cost.cli import training_cost
    from ..errors import ConfigError

    try:
        chip = ExperimentConfig.from_dict(res.config).chip
    except (ConfigError, TypeError, KeyError):
        return None
    return training_cost(res, chip)


def paper_figure_of_merit() -> dict[str, float]:
    """The cost model's figure of merit with its own parameters (a 4-slot, 25 ns update, as
    the paper's 28,065 GOP/s/W and 3.6 TOP/s/mm^2 assume), next to the paper's numbers."""
    from ..cost.model import figure_of_merit
    from ..cost.params import load_cost_params

    params = load_cost_params("nature2018")
    fom = figure_of_merit(params)
    return {"gops_per_w": fom.gops_per_w, "tops_per_mm2": fom.tops_per_mm2,
            "paper_gops_per_w": fom.paper_gops_per_w, "paper_tops_per_mm2": fom.paper_tops_per_mm2,
            "update_slots": params.timing.update_pulse_slots,
            "update_pulse_ns": params.timing.update_pulse_duration_ns}
