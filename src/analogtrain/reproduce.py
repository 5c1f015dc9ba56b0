"""Reproduce the experiments of Ambrogio et al. (Nature 558, 60-67, 2018) in one command.

``run_reproduction("mnist", "runs/reproduce")`` trains every variant (software baseline,
``nature2018``, ``nature2018-held-reference``, ``nature2018-no-inversion``, ``nature2018-ideal-cmos``,
``2pcm``) of one
experiment, ``chips`` simulated chips per variant trained together in one
:class:`~analogtrain.training.Trainer` (``training.chips``), and writes ``results.json``,
``report.md`` and PNG figures (:mod:`analogtrain.report`) into the output folder.

=================  ==============================================================================
experiment         what is trained
=================  ==============================================================================
``mnist``          528-250-125-10 on MNIST cropped to 22x24, 20 epochs, transfer every 8,000
``mnist-backrand`` the same network on MNIST-backrand (regenerated from MNIST unless the original
                   ``.amat`` files are in the data folder), 20 epochs [assumed]
``cifar10``        only the last layer, 1280(+bias)->10, on EfficientNet-Lite0 features
``cifar100``       the same, 1280(+bias)->100
``all``            the four above, one after the other
=================  ==============================================================================

CIFAR: the features of a fixed ImageNet-pretrained EfficientNet-Lite0 are computed once
(cached on disk by :func:`analogtrain.features.extract_features`), scaled per feature to the
DAC range [0, 1] with the training set's minimum and maximum (test features clipped), and the
single analog layer (``training.hidden = []``) is trained on them with the same learning rate
and epochs as the software baseline (:data:`CIFAR_LEARNING_RATE`, :data:`CIFAR_EPOCHS`).

``quick=True`` is a smoke run, not the paper's experiment: small subsets, 2 epochs, a short
transfer interval so that transfers and the two-interval pulse statistics happen at all, CIFAR
features at 32 px; where a dataset (or the EfficientNet weights) is not on disk it uses the
embedded 8x8 digits as a stand-in instead of downloading, and says so in the report.

Besides the variants, each experiment measures the cost of batching chips: the wall time of
the same ``nature2018`` training steps with ``chips`` chips in one trainer and with one chip.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import Dataset
from .errors import ConfigError, DataError

EXPERIMENTS: tuple[str, ...] = ("mnist", "mnist-backrand", "cifar10", "cifar100")
DEFAULT_VARIANTS: tuple[str, ...] = (
    "software", "nature2018", "nature2018-held-reference", "nature2018-no-inversion", "nature2018-ideal-cmos",
    "2pcm",
)
#: the variant whose batched-vs-one-chip wall time is measured
TIMING_VARIANT = "nature2018"

MNIST_HIDDEN = (250, 125)  # [group] 528-250-125-10
MNIST_EPOCHS = 20  # [paper]
MNIST_LEARNING_RATE = 0.1  # the package default (config.TrainingConfig.learning_rate)
#: MNIST-backrand: the background lights every pixel, so the mean input energy sum(x^2) is 229
#: against MNIST's 87; 0.04 keeps eta * sum(x^2), the size of one update's step in the
#: pre-activations, at MNIST's value.  At 0.1 the software baseline peaked at 81 % (epoch 10)
#: and fell to 37 % by epoch 20; at 0.05 and 0.02 it ends at 82-83 % (3 chips, 20 epochs).
BACKRAND_LEARNING_RATE = 0.04
TRANSFER_INTERVAL = 8000  # [paper] MNIST; used for every experiment [assumed for the others]

#: CIFAR last-layer training (our choice, docs/reproduce.md): plain SGD at minibatch 1
CIFAR_LEARNING_RATE = 0.02
CIFAR_EPOCHS = 10
CIFAR_BACKBONE = "efficientnet-lite0"
CIFAR_INPUT_SIZE = 224

# --quick (smoke run) sizes
QUICK_TRAIN = 1000
QUICK_TEST = 500
QUICK_EPOCHS = 2
QUICK_INPUT_SIZE = 32
QUICK_TIMING_EXAMPLES = 200
FULL_TIMING_EXAMPLES = 2000

#: default checkpoint interval of reproduce runs (examples)
CHECKPOINT_EVERY = 20_000
FORMAT = "analogtrain-reproduce"
VERSION = 1


# ----------------------------------------------------------------------------- plans


def _prepared(name: str, x_train, y_train, x_test, y_test, n_classes: int, info: dict[str, Any]) -> Dataset:
    """The inputs of one experiment as a :class:`~analogtrain.data.Dataset` (flat inputs);
    ``meta`` says what they are (stand-in or real, features, scaling)."""
    return Dataset(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                   n_classes=int(n_classes), image_shape=(int(x_train.shape[1]),), meta=info)


@dataclass(frozen=True)
class Settings:
    """How one experiment is trained (the same for every variant)."""

    hidden: tuple[int, ...]
    epochs: int
    learning_rate: float
    transfer_interval: int
    reset_check_interval: int
    timing_examples: int
    #: the user's config overrides (``--set``, ``--config``), applied to every variant last
    user_overrides: dict[str, Any] = field(default_factory=dict)

    def overrides(self, chips: int, seed: int) -> dict[str, Any]:
        from .config import merge_overrides

        base = {
            "training": {"hidden": list(self.hidden), "epochs": self.epochs, "learning_rate": self.learning_rate,
                         "chips": chips, "seed": seed},
            "chip": {"transfer": {"interval_examples": self.transfer_interval},
                     "pcm": {"reset_check_interval_examples": self.reset_check_interval}},
        }
        return merge_overrides(base, self.user_overrides)

    def to_dict(self) -> dict[str, Any]:
        out = {"hidden": list(self.hidden), "epochs": self.epochs, "learning_rate": self.learning_rate,
               "transfer_interval_examples": self.transfer_interval,
               "reset_check_interval_examples": self.reset_check_interval,
               "timing_examples": self.timing_examples}
        if self.user_overrides:  # absent when empty, so runs from before the option still resume and merge
            out["overrides"] = self.user_overrides
        return out


def _settings(experiment: str, data: Dataset, quick: bool, epochs: int | None,
              transfer_interval: int | None = None, user_overrides: dict[str, Any] | None = None) -> Settings:
    cifar = experiment.startswith("cifar")
    hidden: tuple[int, ...] = () if cifar else MNIST_HIDDEN
    lr = CIFAR_LEARNING_RATE if cifar else (BACKRAND_LEARNING_RATE if experiment == "mnist-backrand"
                                            else MNIST_LEARNING_RATE)
    if epochs is None:
        epochs = QUICK_EPOCHS if quick else (CIFAR_EPOCHS if cifar else MNIST_EPOCHS)
    total = data.n_train * epochs
    if quick:
        # several transfers and at least one complete two-interval pulse window in a smoke run
        interval = max(20, total // 6)
        reset_every = max(1, interval // 8)  # the full run's 1,000 : 8,000
        timing = min(QUICK_TIMING_EXAMPLES, total)
    else:
        interval = TRANSFER_INTERVAL
        reset_every = 1000
        timing = min(FULL_TIMING_EXAMPLES, total)
    if transfer_interval is not None:
        interval = transfer_interval
        reset_every = max(1, round(transfer_interval / 8))
    if user_overrides:
        # a learning rate or network given with --set also shapes the settings the report shows
        tr = user_overrides.get("training", {})
        hidden = tuple(tr.get("hidden", hidden))
        lr = tr.get("learning_rate", lr)
    return Settings(hidden, epochs, lr, interval, reset_every, timing, dict(user_overrides or {}))


# ----------------------------------------------------------------------------- data


def _digits_stand_in(experiment: str, n_train: int | None, n_test: int | None, seed: int,
                     reason: str) -> Dataset:
    from .data import load_digits

    d = load_digits()
    x_tr, x_te = d.x_train, d.x_test
    name = "digits (stand-in)"
    what = f"scikit-learn 8x8 digits, a stand-in for {experiment}"
    if experiment == "mnist-backrand":
        g = torch.Generator().manual_seed(seed * 31 + 7)
        x_tr = torch.maximum(x_tr, torch.rand(x_tr.shape, generator=g))
        x_te = torch.maximum(x_te, torch.rand(x_te.shape, generator=g))
        name = "digits on random background (stand-in)"
        what += " (max(digit, U(0,1)) background, as the MNIST-backrand regeneration)"
    elif experiment.startswith("cifar"):
        what += " (pixels used as the 'features' of the single trained layer)"
    x_tr, y_tr = x_tr[:n_train], d.y_train[:n_train]
    x_te, y_te = x_te[:n_test], d.y_test[:n_test]
    return _prepared(name, x_tr, y_tr, x_te, y_te, d.n_classes, {
        "name": name, "stand_in": True, "stand_in_reason": reason, "description": what,
        "n_train": int(x_tr.shape[0]), "n_test": int(x_te.shape[0]), "n_inputs": int(x_tr.shape[1]),
        "n_classes": d.n_classes,
    })


def _from_dataset(data, note: str) -> Dataset:
    from .experiment import _dataset_info

    info = _dataset_info(data)
    info["stand_in"] = False
    info["description"] = note
    return _prepared(data.name, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes, info)


def _load_mnist_like(experiment: str, data_dir, quick: bool, n_train: int | None, n_test: int | None,
                     seed: int, progress: bool) -> Dataset:
    from .data import load_dataset

    kw: dict[str, Any] = {}
    if experiment == "mnist-backrand":
        # regenerate (or read) only what is used: smaller splits are prefixes of the full ones
        # n_valid=1, not 0: load_mnist_backrand fails on an empty validation split (reshape of 0 rows)
        kw = {"progress": progress, "n_valid": 1}
        if n_train is not None:
            kw["n_train"] = min(n_train, 10_000)
        if n_test is not None:
            kw["n_test"] = min(n_test, 50_000)
    try:
        data = load_dataset(experiment, data_dir=data_dir, download=not quick, **kw)
    except DataError as exc:
        if not quick:
            raise
        return _digits_stand_in(experiment, n_train, n_test, seed, f"{experiment} not on disk ({exc})")
    if experiment != "mnist-backrand" and (n_train is not None or n_test is not None):
        data = data.subset(n_train if n_train is not None else data.n_train,
                           n_test if n_test is not None else data.n_test)
    if experiment == "mnist-backrand":
        regen = bool(data.meta.get("regenerated"))
        note = ("MNIST-backrand REGENERATED from MNIST (the original archive is no longer downloadable; "
                "recipe in analogtrain.data.backrand), cropped to 22x24" if regen else
                "MNIST-backrand from the original .amat files, cropped to 22x24")
    else:
        note = "MNIST cropped to 22x24 = 528 inputs"
    return _from_dataset(data, note)


def _balanced(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices, as equal per class as possible, seeded; sorted."""
    if n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per = n // len(classes)
    picked = [rng.choice(np.flatnonzero(y == c), min(per, int((y == c).sum())), replace=False) for c in classes]
    out = np.concatenate(picked) if picked else np.empty(0, dtype=np.int64)
    rest = np.setdiff1d(np.arange(len(y)), out)
    if n > len(out):
        out = np.concatenate([out, rng.choice(rest, n - len(out), replace=False)])
    return np.sort(out)


def scale_features(f_train: np.ndarray, f_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Per-feature min-max scaling to the DAC range [0, 1], fitted on the training set.

    ``x = (f - min_train) / (max_train - min_train)``; a feature that is constant on the
    training set becomes 0; test features are clipped to [0, 1] (as the DAC would).
    """
    lo = f_train.min(axis=0)
    hi = f_train.max(axis=0)
    span = hi - lo
    dead = span <= 0
    span = np.where(dead, 1.0, span)
    x_tr = np.clip((f_train - lo) / span, 0.0, 1.0)
    x_tr[:, dead] = 0.0
    x_te_raw = (f_test - lo) / span
    clipped = float(((x_te_raw < 0) | (x_te_raw > 1)).mean()) if x_te_raw.size else 0.0
    x_te = np.clip(x_te_raw, 0.0, 1.0)
    x_te[:, dead] = 0.0
    info = {
        "method": "per-feature min-max from the training set; test clipped to [0, 1]",
        "constant_features": int(dead.sum()),
        "test_values_clipped_fraction": clipped,
        "train_mean_scaled": float(x_tr.mean()) if x_tr.size else 0.0,
        "raw_max": float(hi.max()) if hi.size else 0.0,
    }
    return x_tr.astype(np.float32), x_te.astype(np.float32), info


def _load_cifar_features(experiment: str, data_dir, quick: bool, n_train: int | None, n_test: int | None,
                         seed: int, progress: bool, cache_dir, input_size: int | None, backbone_name: str,
                         device: str) -> Dataset:
    from .data import load_cifar
    from .features import extract_features, get_backbone

    try:
        images = load_cifar(experiment, data_dir, download=not quick, progress=progress)  # type: ignore[arg-type]
    except DataError as exc:
        if not quick:
            raise
        return _digits_stand_in(experiment, n_train, n_test, seed, f"{experiment} not on disk ({exc})")
    size = input_size or (QUICK_INPUT_SIZE if quick else CIFAR_INPUT_SIZE)
    try:
        backbone = get_backbone(backbone_name, input_size=size, device=device)
    except ConfigError as exc:
        if not quick:
            raise
        return _digits_stand_in(experiment, n_train, n_test, seed, f"backbone unavailable ({exc})")
    ytr_all = np.asarray(images.y_train, dtype=np.int64)
    yte_all = np.asarray(images.y_test, dtype=np.int64)
    # seeded class-balanced selections (the test files are ordered by class: a prefix would not do)
    tr = _balanced(ytr_all, n_train, seed) if n_train is not None else np.arange(len(ytr_all))
    te = _balanced(yte_all, n_test, seed + 1) if n_test is not None else np.arange(len(yte_all))
    t0 = time.perf_counter()
    f_tr = extract_features(images.x_train[tr], backbone, cache_dir=cache_dir, progress=progress)
    f_te = extract_features(images.x_test[te], backbone, cache_dir=cache_dir, progress=progress)
    feat_s = time.perf_counter() - t0
    x_tr, x_te, scaling = scale_features(f_tr, f_te)
    subset = images.meta.get("subset")
    info = {
        "name": experiment, "stand_in": False,
        "description": (f"{experiment.upper()} images -> {backbone.name} features at {size} px "
                        f"({backbone.num_features} per image), scaled to [0, 1]"),
        "n_train": int(len(tr)), "n_test": int(len(te)), "n_inputs": int(x_tr.shape[1]),
        "n_classes": int(images.n_classes),
        "images": {"n_train_available": int(len(ytr_all)), "n_test_available": int(len(yte_all)),
                   "development_subset": bool(subset),
                   "source": str(images.meta.get("source", images.meta.get("path", "")))},
        "features": {"backbone": backbone.name, "input_size": size, "num_features": backbone.num_features,
                     "weights_sha256": backbone.weights_id, "extract_or_load_s": feat_s,
                     "cache_dir": None if cache_dir is False else str(cache_dir) if cache_dir else "default"},
        "scaling": scaling,
    }
    return _prepared(experiment, torch.from_numpy(x_tr), torch.from_numpy(ytr_all[tr]),
                        torch.from_numpy(x_te), torch.from_numpy(yte_all[te]), int(images.n_classes), info)


def prepare_data(experiment: str, data_dir=None, quick: bool = False, limit_train: int | None = None,
                 limit_test: int | None = None, seed: int = 0, progress: bool = True, cache_dir=None,
                 input_size: int | None = None, backbone: str = CIFAR_BACKBONE, device: str = "cpu") -> Dataset:
    """The training and test inputs of ``experiment`` (see the module docstring)."""
    n_train = limit_train if limit_train is not None else (QUICK_TRAIN if quick else None)
    n_test = limit_test if limit_test is not None else (QUICK_TEST if quick else None)
    if experiment in ("mnist", "mnist-backrand"):
        return _load_mnist_like(experiment, data_dir, quick, n_train, n_test, seed, progress)
    return _load_cifar_features(experiment, data_dir, quick, n_train, n_test, seed, progress, cache_dir,
                                input_size, backbone, device)


# ----------------------------------------------------------------------------- state summaries


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


def state_histograms(trainer, snapshot: bool = False) -> list[dict[str, Any]]:
    """Per layer, histograms (all chips pooled) of G+, G- (uS), V_C (V) and the weights.

    Reading V_C brings the deferred capacitor leakage up to date, which changes the run's
    floating-point path; with ``snapshot`` the cells are deep-copied first, so a histogram
    taken during training leaves the run bit for bit as it would have been.
    """
    chip = trainer.config.chip
    out = []
    for layer in trainer.mlp.layers:
        cells = getattr(layer, "cells", None)
        if cells is None:
            out.append({"weight": _hist(layer.weights())})
            continue
        if snapshot:
            cells = copy.deepcopy(cells)
        st = cells.state_tensors()  # brings deferred capacitor leakage up to date
        entry: dict[str, Any] = {"weight": _hist(cells.weight_us() / layer.scale_us)}
        entry["g_plus_us"] = _hist(st["g_plus_us"], 0.0, chip.pcm.g_max_us)
        entry["g_minus_us"] = _hist(st["g_minus_us"], 0.0, chip.pcm.g_max_us)
        if "v_c_v" in st:
            entry["v_c_v"] = _hist(st["v_c_v"], 0.0, chip.capacitor.supply_v)
            entry["polarity_negative_fraction"] = float((st["polarity"] < 0).double().mean())
        out.append(entry)
    return out


def pooled_pulse_statistics(trainer) -> dict[str, Any] | None:
    """Median and 90th percentile of |net| and total pulses over every tracked synapse of every
    layer and chip (the last complete two-interval window), or None without a window."""
    window = trainer.pulse_window
    if not window or not any(window):
        return None
    net = torch.cat([w["net"].abs().flatten() for w in window if w]).double()
    tot = torch.cat([w["total"].flatten() for w in window if w]).double()
    return {
        "window_examples": 2 * trainer.schedule.interval,
        "tracked_synapses": int(net.numel()),
        "median_abs_net": float(net.median()), "median_total": float(tot.median()),
        "mean_abs_net": float(net.mean()), "mean_total": float(tot.mean()),
        "p90_abs_net": float(torch.quantile(net, 0.9)), "p90_total": float(torch.quantile(tot, 0.9)),
    }


def _save_pulse_window(trainer, path: Path) -> str | None:
    window = trainer.pulse_window
    if not window or not any(window):
        return None
    arrays = {}
    for i, w in enumerate(window):
        if w:
            arrays[f"layer{i}_net"] = w["net"].to(torch.float32).numpy()
            arrays[f"layer{i}_total"] = w["total"].to(torch.float32).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path.name


# ----------------------------------------------------------------------------- training


def _config(variant: str, settings: Settings, chips: int, seed: int, compile_mode: str = "auto"):
    from .config import merge_overrides
    from .presets import get_preset

    return get_preset(variant, merge_overrides(settings.overrides(chips, seed), {"training": {"compile": compile_mode}}))


def checkpoint_path(out_dir: Path, experiment: str, variant: str) -> Path:
    """Where the variant in progress keeps its checkpoint (removed once its results are written)."""
    return out_dir / "checkpoints" / f"{experiment}__{variant}.safetensors"


def _train_variant(variant: str, settings: Settings, data: Dataset, chips: int, seed: int, device: str,
                   progress: bool, log: Callable[[str], None], out_dir: Path, experiment: str,
                   compile_mode: str = "auto", checkpoint_every: int = CHECKPOINT_EVERY,
                   resume: bool = False) -> dict[str, Any]:
    from .training import Trainer

    cfg = _config(variant, settings, chips, seed, compile_mode)
    trainer = Trainer(cfg, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes, device=device)
    ckpt = checkpoint_path(out_dir, experiment, variant)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    if resume and ckpt.exists():
        trainer.load_checkpoint(ckpt)
        log(f"  [{experiment}/{variant}] resuming from {ckpt} at example {trainer.state.examples_seen:,}")

    def on_epoch(rec) -> None:
        accs = ", ".join(f"{100 * a:.2f}" for a in rec.test_accuracy)
        log(f"  [{experiment}/{variant}] epoch {rec.epoch}/{settings.epochs}: test accuracy % per chip {accs} "
            f"(transfers {rec.transfers}, {rec.wall_s:.1f} s)")

    # V_C is reset at every transfer, and a run of whole intervals ends with one: keep the state
    # one example before the last transfer too, when the capacitors hold a whole interval of updates
    total = settings.epochs * data.n_train
    interval = settings.transfer_interval
    last = (total // interval) * interval if cfg.chip.cell.kind == "2pcm+3t1c" else 0
    snap: dict[str, Any] = {}

    def on_step(tr) -> bool:
        if last > 1 and tr.state.examples_seen == last - 1:
            snap["hist"] = state_histograms(tr, snapshot=True)
        return False

    result = trainer.train(progress=progress, on_epoch=on_epoch, on_step=on_step if last > 1 else None,
                           checkpoint_every=checkpoint_every, checkpoint_path=ckpt)
    result["variant"] = variant
    result["state_histograms"] = state_histograms(trainer)
    if snap:
        result["state_histograms_before_last_transfer"] = snap["hist"]
        result["state_before_last_transfer_examples"] = last - 1
    result["transfer_pulse_log"] = list(trainer.transfer_pulse_log)
    result["pulse_statistics_pooled"] = pooled_pulse_statistics(trainer)
    window_file = out_dir / "data" / f"{experiment}__{variant}__pulse_window.npz"
    result["pulse_window_file"] = _save_pulse_window(trainer, window_file)
    if not snap and last > 1:
        result["state_histograms_before_last_transfer_missing"] = "the run was resumed after that point"
    return result


def measure_chip_batching(variant: str, settings: Settings, data: Dataset, chips: int, seed: int,
                          device: str = "cpu", examples: int | None = None, repeats: int = 2) -> dict[str, Any]:
    """Wall time of the same ``examples`` training steps with one chip and with ``chips`` chips in one
    trainer; ratio = batched / one chip.  The two are timed alternately ``repeats`` times and the
    fastest of each is kept (other programs sharing the cores only ever add time).  Both run the
    eager step (compiling would be timed too)."""
    from .training import Trainer

    n = examples or settings.timing_examples
    times: dict[int, list[float]] = {1: [], chips: []}
    for _ in range(repeats):
        for c in times:
            cfg = _config(variant, settings, c, seed, "off")
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


# ----------------------------------------------------------------------------- driver


def _reductions(experiment: str, data: Dataset, settings: Settings, quick: bool, limit_train: int | None,
                limit_test: int | None) -> list[str]:
    """How this run differs from the full-size experiment (empty: it is the full experiment)."""
    out = []
    if quick:
        out.append("--quick smoke run")
    if data.meta.get("stand_in"):
        out.append("stand-in data")
    if limit_train is not None or limit_test is not None or (quick and not data.meta.get("stand_in")):
        out.append(f"subset of the data ({data.n_train:,} training / {data.n_test:,} test examples)")
    full_epochs = CIFAR_EPOCHS if experiment.startswith("cifar") else MNIST_EPOCHS
    if settings.epochs != full_epochs:
        out.append(f"{settings.epochs} epochs instead of {full_epochs}")
    if settings.transfer_interval != TRANSFER_INTERVAL:
        out.append(f"transfer every {settings.transfer_interval:,} examples instead of {TRANSFER_INTERVAL:,}")
    images = data.meta.get("images") or {}
    if images.get("development_subset"):
        out.append(f"CIFAR development subset ({images.get('n_train_available'):,} of the 50,000 training images)")
    feats = data.meta.get("features") or {}
    if feats and feats.get("input_size") != CIFAR_INPUT_SIZE:
        out.append(f"features at {feats.get('input_size')} px instead of {CIFAR_INPUT_SIZE}")
    return out


def _check_positive(name: str, value: Any, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


#: settings that have their own flag (or are the experiment's), so ``--set`` may not give them
_FLAG_KEYS = {"training.epochs": "--epochs", "training.chips": "--chips", "training.seed": "--seed",
              "training.compile": "--compile", "chip.transfer.interval_examples": "--transfer-interval",
              "chip.pcm.reset_check_interval_examples": "--transfer-interval (the RESET check runs 8 times as often)"}


def check_user_overrides(overrides: dict[str, Any] | None, variants: Sequence[str]) -> dict[str, Any]:
    """Validate ``--set`` / ``--config`` overrides against every variant's config; returns a copy.

    Raises :class:`ConfigError` (one line) for a key that has its own flag, an unknown key or a
    bad value, before anything is trained.
    """
    from .config import flatten_overrides
    from .presets import get_preset

    if not overrides:
        return {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"config overrides must be a table of sections, got {type(overrides).__name__}")
    for key, _ in flatten_overrides(overrides):
        if key in _FLAG_KEYS:
            raise ConfigError(f"reproduce sets {key} itself; use {_FLAG_KEYS[key]} instead of --set/--config")
    for variant in variants:
        get_preset(variant, overrides)  # unknown keys and invalid values fail here, naming the key
    return copy.deepcopy(overrides)


def resolve_variants(variants: Sequence[str] | None) -> list[str]:
    """The variants to train (presets), checked; default :data:`DEFAULT_VARIANTS`."""
    from .presets import PRESET_NAMES

    if variants is None:
        return list(DEFAULT_VARIANTS)
    if isinstance(variants, str):
        variants = [variants]
    from .presets import RENAMED, canonical_name

    out: list[str] = []
    for v in variants:
        if v in RENAMED:
            v = canonical_name(v)
        if v not in PRESET_NAMES:
            close = difflib.get_close_matches(str(v), PRESET_NAMES, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"unknown variant {v!r}; {hint}variants are presets: {', '.join(PRESET_NAMES)}")
        if v not in out:
            out.append(v)
    if not out:
        raise ConfigError("give at least one variant")
    return out


def resolve_experiments(experiment: str) -> list[str]:
    if experiment == "all":
        return list(EXPERIMENTS)
    if experiment not in EXPERIMENTS:
        close = difflib.get_close_matches(str(experiment), [*EXPERIMENTS, "all"], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown experiment {experiment!r}; {hint}choose from {', '.join([*EXPERIMENTS, 'all'])}")
    return [experiment]


#: results.json fields that must match for --resume
_RESUME_KEYS = ("experiment", "quick", "chips", "variants", "seed", "arguments")


def _previous_run(out: Path, results: dict[str, Any]) -> dict[str, Any] | None:
    """The results.json of the interrupted run in ``out`` (None if there is none yet); a run
    with other settings is an error, so results of different runs are never mixed."""
    path = out / "results.json"
    if not path.exists():
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            prev = json.load(fh)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} to resume ({exc}); start a new run with another --out") from None
    if not isinstance(prev, dict) or prev.get("format") != FORMAT:
        raise DataError(f"{path} is not a results file of analogtrain reproduce; start a new run with another --out")
    for key in _RESUME_KEYS:
        if prev.get(key) != json.loads(json.dumps(results[key])):
            raise ConfigError(f"--resume: the run in {out} used {key} = {prev.get(key)!r}, this command "
                              f"{results[key]!r}; repeat the original command with --resume, or use another --out")
    return prev


def _quiet(_: str) -> None:
    """The log of a variant trained in a worker process (the parent says what finished)."""


def run_reproduction(experiment: str, out_dir: str | Path, chips: int = 3, quick: bool = False,
                     data_dir: str | Path | None = None, epochs: int | None = None,
                     variants: Sequence[str] | None = None, progress: bool = True, threads: int | None = 1, *,
                     limit_train: int | None = None, limit_test: int | None = None, seed: int = 0,
                     cache_dir: str | Path | None = None, input_size: int | None = None,
                     backbone: str = CIFAR_BACKBONE, device: str = "cpu", transfer_interval: int | None = None,
                     measure_batching: bool = True, timing_examples: int | None = None,
                     log: Callable[[str], None] | None = None, compile_mode: str = "auto",
                     resume: bool = False, force: bool = False, checkpoint_every: int = CHECKPOINT_EVERY,
                     jobs: int = 1,
                     overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one experiment (or ``"all"``) for every variant; write results.json, report.md, figures.

    Args:
        experiment: ``mnist``, ``mnist-backrand``, ``cifar10``, ``cifar100`` or ``all``.
        out_dir: output folder (created).
        chips: simulated chips per variant, trained together in one trainer.
        quick: smoke run (small subsets, 2 epochs, short transfer interval; stand-ins for missing data).
        data_dir: dataset root (as ``load_dataset``); None: ``$ANALOGTRAIN_DATA_DIR`` or the user cache.
        epochs: override the epochs of every experiment.
        variants: presets to train (default :data:`DEFAULT_VARIANTS`).
        progress: progress bars and per-epoch lines.
        threads: torch CPU threads while running (restored afterwards); None leaves them.
        limit_train, limit_test: use only this many training / test examples (class-balanced for CIFAR).
        seed: the seed of every variant (initial weights and data order are shared across variants).
        cache_dir: feature cache folder for CIFAR (default: the package's cache location).
        input_size: backbone input resolution in pixels (default 224; 32 with ``quick``).
        backbone: feature extractor name (:func:`analogtrain.features.get_backbone`).
        device: torch device of the simulation.
        transfer_interval: examples between transfers (default 8,000, the paper's MNIST value; quick: a
            sixth of the run); the 2-PCM RESET check runs 8 times as often.
        measure_batching: measure the wall time of ``chips`` chips batched vs one chip.
        timing_examples: training steps of that measurement (default 2,000; quick: 200).
        log: where progress lines go (default ``print`` when ``progress``).
        compile_mode: ``training.compile`` of every variant (auto, on, off).
        resume: continue the interrupted run in ``out_dir`` (same arguments): variants whose results
            are in its results.json are kept, the one in progress continues from its checkpoint.
            A folder with no run to resume is refused in one line.
        force: replace the run ``out_dir`` already holds (otherwise a folder holding a run is refused).
        jobs: train up to this many variants at once, each in its own process with ``threads``
            threads (the results are the same as one after the other).
        overrides: nested config overrides (as ``--set`` / ``--config`` give them) applied to every
            variant on top of its preset and the experiment's settings, e.g.
            ``{"chip": {"transfer": {"mode": "column"}}}``; recorded in the results and the report.
        checkpoint_every: the variant in progress writes ``out_dir/checkpoints/EXP__VARIANT.safetensors``
            every this many examples and at each epoch end (removed when the variant is done).

    Returns the results dict that is also written to ``out_dir/results.json``.
    """
    from . import report
    from .experiment import environment, prepare_output_dir, write_json

    names = resolve_experiments(experiment)
    variant_list = resolve_variants(variants)
    _check_positive("chips", chips, allow_none=False)
    if chips > 256:
        raise ConfigError(f"chips must be at most 256, got {chips}")
    for name, value in (("epochs", epochs), ("threads", threads), ("limit_train", limit_train),
                        ("limit_test", limit_test), ("input_size", input_size),
                        ("transfer_interval", transfer_interval), ("timing_examples", timing_examples)):
        _check_positive(name, value)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise DataError(f"data folder {data_dir} does not exist; pass the folder that holds mnist/, cifar10/, ...")
    user_overrides = check_user_overrides(overrides, variant_list)
    out = prepare_output_dir(out_dir)
    if log is None:
        log = (lambda s: print(s, flush=True)) if progress else (lambda s: None)

    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    t_start = time.perf_counter()
    results: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "experiment": experiment, "quick": quick, "chips": chips,
        "variants": variant_list, "seed": seed, "threads": threads, "device": device,
        "arguments": {"data_dir": None if data_dir is None else str(data_dir), "epochs": epochs,
                      "limit_train": limit_train, "limit_test": limit_test, "input_size": input_size,
                      "backbone": backbone, "cache_dir": None if cache_dir is None else str(cache_dir),
                      "transfer_interval": transfer_interval,
                      **({"overrides": user_overrides} if user_overrides else {})},
        "environment": environment(), "experiments": {}, "wall_s": 0.0, "complete": False,
    }
    from .runstore import refuse_overwrite, require_resumable

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"--jobs must be a positive integer, got {jobs!r}")

    if resume:
        require_resumable(out, "results.json", "reproduce")
    else:
        refuse_overwrite(out, "results.json", "reproduce", force)
    previous = _previous_run(out, results) if resume else None
    if previous is not None:
        t_start -= previous.get("wall_s", 0.0)  # wall time counts the interrupted part too
    try:
        for exp in names:
            t_exp = time.perf_counter()
            log(f"analogtrain reproduce: {exp}{' (quick smoke run)' if quick else ''}")
            data = prepare_data(exp, data_dir, quick, limit_train, limit_test, seed, progress, cache_dir,
                                input_size, backbone, device)
            settings = _settings(exp, data, quick, epochs, transfer_interval, user_overrides)
            network = [data.n_inputs, *settings.hidden, data.n_classes]
            log(f"  data: {data.meta.get('description', data.name)}; {data.n_train} train / {data.n_test} test; "
                f"network {'-'.join(map(str, network))}; {settings.epochs} epochs; {chips} chip(s)")
            if data.meta.get("stand_in"):
                log(f"  NOTE: no {exp} data ({data.meta.get('stand_in_reason')}): the 8x8 digits stand in, so "
                    f"these numbers say nothing about {exp}; give --data-dir to train on it")
            elif quick:
                log("  NOTE: a smoke run (--quick): the numbers show that the pipeline works, not the paper's results")
            entry: dict[str, Any] = {
                "experiment": exp, "dataset": data.meta, "network": network, "settings": settings.to_dict(),
                "reduced": _reductions(exp, data, settings, quick, limit_train, limit_test),
                "variants": {}, "timing": None, "wall_s": 0.0,
            }
            results["experiments"][exp] = entry
            done = ((previous or {}).get("experiments", {}).get(exp) or {}).get("variants", {})
            todo = []
            for variant in variant_list:
                if isinstance(done.get(variant), dict) and "final_test_accuracy" in done[variant]:
                    entry["variants"][variant] = done[variant]
                    log(f"  [{exp}/{variant}] done in the interrupted run: kept")
                else:
                    todo.append(variant)

            def finished(variant: str, res: dict[str, Any]) -> None:
                entry["variants"][variant] = res
                entry["variants"] = {v: entry["variants"][v] for v in variant_list if v in entry["variants"]}
                acc = res["final_test_accuracy"]
                log(f"  [{exp}/{variant}] final test accuracy {100 * sum(acc) / len(acc):.2f}% "
                    f"(chips {', '.join(f'{100 * a:.2f}' for a in acc)})")
                entry["wall_s"] = time.perf_counter() - t_exp
                results["wall_s"] = time.perf_counter() - t_start
                write_json(out / "results.json", results)
                checkpoint_path(out, exp, variant).unlink(missing_ok=True)

            args = (settings, data, chips, seed, device)
            rest = (out, exp, compile_mode, checkpoint_every, resume)
            if jobs > 1 and len(todo) > 1:
                import concurrent.futures
                import multiprocessing

                log(f"  training {len(todo)} variants, {min(jobs, len(todo))} at a time (--jobs {jobs})")
                with concurrent.futures.ProcessPoolExecutor(
                        max_workers=min(jobs, len(todo)), mp_context=multiprocessing.get_context("spawn"),
                        initializer=torch.set_num_threads, initargs=(threads or 1,)) as pool:
                    futures = {pool.submit(_train_variant, v, *args, False, _quiet, *rest): v for v in todo}
                    for fut in concurrent.futures.as_completed(futures):
                        finished(futures[fut], fut.result())
            else:
                for variant in todo:
                    finished(variant, _train_variant(variant, *args, progress, log, *rest))
            old_timing = ((previous or {}).get("experiments", {}).get(exp) or {}).get("timing")
            if measure_batching and chips > 1 and isinstance(old_timing, dict):
                entry["timing"] = old_timing
            elif measure_batching and chips > 1:
                timing_variant = TIMING_VARIANT if TIMING_VARIANT in variant_list else variant_list[0]
                entry["timing"] = measure_chip_batching(timing_variant, settings, data, chips, seed, device,
                                                        examples=timing_examples)
                t = entry["timing"]
                log(f"  timing {timing_variant}, {t['examples']} examples: 1 chip {t['wall_1chip_s']:.2f} s, "
                    f"{chips} chips batched {t['wall_batched_s']:.2f} s (ratio {t['ratio']:.2f}, "
                    f"{t['per_chip_speedup']:.2f}x per chip)")
            entry["wall_s"] = time.perf_counter() - t_exp
            entry["checks"] = report.paper_checks(entry, quick)
            results["wall_s"] = time.perf_counter() - t_start
            write_json(out / "results.json", results)
            report.write_report(results, out, figures=exp)
        results["complete"] = True
        results["wall_s"] = time.perf_counter() - t_start
        write_json(out / "results.json", results)
        report.write_report(results, out, figures=[])
        log(f"wrote {out / 'report.md'}, {out / 'results.json'} and figures in {out / 'figures'}")
    finally:
        torch.set_num_threads(old_threads)
    return results


# ----------------------------------------------------------------------------- command line


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``reproduce`` subcommand on an ``argparse`` subparsers object."""
    from .presets import PRESET_NAMES

    p = subparsers.add_parser(
        "reproduce",
        help="reproduce the paper's experiments (all variants, several chips) and write a report",
        description=(
            "Train the software baseline and the analog variants of one of the paper's experiments "
            "(Ambrogio et al., Nature 2018), several simulated chips per variant trained together, and write "
            "results.json, report.md and figures into --out. Full-size runs take hours; --quick is a smoke run "
            "of a few minutes on small subsets."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=("examples:\n"
                "  analogtrain reproduce all --quick --out runs/smoke\n"
                "  analogtrain reproduce mnist --data-dir ../shared/data --out runs/mnist\n"
                "  analogtrain reproduce cifar10 --chips 5 --variants software nature2018 --out runs/c10\n"
                "  analogtrain reproduce mnist --variants software nature2018 --set chip.transfer.mode=column "
                "--out runs/col\n"),
    )
    p.add_argument("experiment", choices=[*EXPERIMENTS, "all"], help="which experiment (all: the four in turn)")
    p.add_argument("--out", metavar="DIR", default="runs/reproduce", help="output folder (default runs/reproduce)")
    p.add_argument("--chips", type=int, default=3, metavar="N",
                   help="simulated chips per variant, trained together (default 3)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: small subsets, 2 epochs, short transfer interval, 32-px CIFAR features; "
                        "the embedded digits stand in for data that is not on disk")
    p.add_argument("--epochs", type=int, metavar="N", help="epochs of every experiment (default: MNIST 20, "
                                                            f"CIFAR {CIFAR_EPOCHS}; quick {QUICK_EPOCHS})")
    p.add_argument("--variants", nargs="+", metavar="PRESET",
                   help=f"presets to train (default: {' '.join(DEFAULT_VARIANTS)}); any of {', '.join(PRESET_NAMES)}")
    p.add_argument("--data-dir", metavar="DIR", help="dataset root holding mnist/, cifar10/, cifar100/ "
                                                     "(else $ANALOGTRAIN_DATA_DIR, else the user cache)")
    p.add_argument("--threads", type=int, default=1, metavar="T", help="torch CPU threads (default 1)")
    p.add_argument("--limit-train", type=int, metavar="N", help="use only N training examples")
    p.add_argument("--limit-test", type=int, metavar="N", help="use only N test examples")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed shared by all variants (default 0)")
    p.add_argument("--cache-dir", metavar="DIR", help="CIFAR feature cache (default: the user cache)")
    p.add_argument("--input-size", type=int, metavar="PX",
                   help=f"backbone input resolution for CIFAR (default {CIFAR_INPUT_SIZE}; quick {QUICK_INPUT_SIZE})")
    p.add_argument("--transfer-interval", type=int, metavar="N",
                   help=f"examples between transfers (default {TRANSFER_INTERVAL:,}, the paper's MNIST value)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value for every variant, on top of its preset, e.g. --set "
                        "chip.transfer.mode=column (repeatable; recorded in results.json and the report)")
    p.add_argument("--config", metavar="FILE", help="TOML/JSON file of config overrides for every variant")
    p.add_argument("--device", default="cpu", help="torch device of the simulation (default cpu)")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="fuse each training step with torch.compile (auto: for runs of 50,000 steps or more)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out (give the same arguments): finished variants are "
                        "kept, the one in progress continues from its checkpoint")
    p.add_argument("--force", action="store_true", help="replace the run that --out already holds")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="train up to N variants at once, each in its own process on one thread "
                        "(default: the cores there are; results are the same as with --jobs 1)")
    p.add_argument("--checkpoint-every", type=int, default=CHECKPOINT_EVERY, metavar="N",
                   help=f"checkpoint the variant in progress every N examples (default {CHECKPOINT_EVERY:,})")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``analogtrain reproduce`` (``args`` from :func:`add_parser`)."""
    from . import report

    for name in ("chips", "threads", "epochs", "limit_train", "limit_test", "input_size", "transfer_interval",
                 "checkpoint_every"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {args.seed}")
    try:
        dev = torch.device(args.device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"--device {args.device!r} is not a torch device; use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {args.device}: no CUDA GPU is available to this torch; use --device cpu")
    from .config import collect_overrides

    overrides = collect_overrides(args.config, args.set)
    try:
        results = run_reproduction(
            args.experiment, args.out, chips=args.chips, quick=args.quick, data_dir=args.data_dir,
            epochs=args.epochs, variants=args.variants, progress=not args.quiet, threads=args.threads,
            limit_train=args.limit_train, limit_test=args.limit_test, seed=args.seed, cache_dir=args.cache_dir,
            input_size=args.input_size, device=args.device, transfer_interval=args.transfer_interval,
            compile_mode=args.compile, resume=args.resume, force=args.force,
            jobs=args.jobs or max(1, os.cpu_count() or 1),
            checkpoint_every=args.checkpoint_every,
            overrides=overrides,
        )
    except KeyboardInterrupt:
        import shlex
        import sys

        cmd = " ".join(shlex.quote(a) for a in sys.argv[1:] if a != "--resume")
        print(f"\nanalogtrain: interrupted; the variant in progress was checkpointed at most "
              f"{args.checkpoint_every:,} examples ago. Continue with: analogtrain {cmd} --resume", file=sys.stderr)
        return 130
    print(report.summary_text(results))
    return 0
