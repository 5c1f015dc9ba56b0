"""The inputs of each experiment: MNIST and MNIST-backrand cropped to 22x24, CIFAR images turned
into the features of a fixed pretrained backbone (cached) and scaled to the DAC range, and the
embedded 8x8 digits as a stand-in for a ``--quick`` run without the data (said in the report).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ..data import Dataset
from ..errors import ConfigError, DataError
from .settings import (
    CIFAR_BACKBONE,
    CIFAR_INPUT_SIZE,
    QUICK_INPUT_SIZE,
    QUICK_TEST,
    QUICK_TRAIN,
)


def _prepared(name: str, x_train, y_train, x_test, y_test, n_classes: int, info: dict[str, Any]) -> Dataset:
    """The inputs of one experiment as a :class:`~analogtrain.data.Dataset` (flat inputs);
    ``meta`` says what they are (stand-in or real, features, scaling)."""
    return Dataset(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                   n_classes=int(n_classes), image_shape=(int(x_train.shape[1]),), meta=info)


def _digits_stand_in(experiment: str, n_train: int | None, n_test: int | None, seed: int,
                     reason: str) -> Dataset:
    from ..data import load_digits

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
    

    info = data.info()
    info["stand_in"] = False
    info["description"] = note
    return _prepared(data.name, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes, info)


def _load_mnist_like(experiment: str, data_dir, quick: bool, n_train: int | None, n_test: int | None,
                     seed: int, progress: bool) -> Dataset:
    from ..data import load_dataset

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
    from ..data import load_cifar
    from ..features import extract_features, get_backbone

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
