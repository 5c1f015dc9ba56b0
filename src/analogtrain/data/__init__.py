"""Datasets for the experiments of Ambrogio et al. (Nature 2018), as flat float tensors.

=====================  ==========================================================  ======
name                   content                                                     inputs
=====================  ==========================================================  ======
``digits``             scikit-learn's bundled 8x8 digits (no download), for tests     64
``mnist``              MNIST cropped to 22x24 (the paper's 528 inputs)               528
``mnist-full``         MNIST, all 28x28 pixels                                       784
``mnist-backrand``     MNIST digits on a uniform random background, cropped 22x24    528
``mnist-backrand-full``  the same, 28x28                                             784
=====================  ==========================================================  ======

:func:`load_dataset` dispatches on these names; the per-dataset loaders
(:func:`load_digits`, :func:`load_mnist`, :func:`load_mnist_backrand`) take more options.
Raw CIFAR-10/100 images (for the transfer-learning experiments, where features come from a
pretrained network) are loaded by :func:`load_cifar`.

Files are looked up under a data root (``data_dir`` argument, then ``$ANALOGTRAIN_DATA_DIR``,
then the user cache folder) and downloaded with checksum verification when missing; see
:mod:`analogtrain.data.paths`.  All user-fixable problems raise
:class:`~analogtrain.errors.DataError` (files) or :class:`~analogtrain.errors.ConfigError`
(arguments) with a one-line message.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import ConfigError

__all__ = [
    "Dataset",
    "DATASETS",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "load_mnist_backrand",
    "load_backrand_amat",
    "load_cifar",
    "CifarImages",
]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset with flat inputs.

    Attributes:
        name: registry name (``"mnist"``, ``"digits"``, ...).
        x_train, x_test: float32 [N, D] inputs; for image datasets pixel intensities in
            [0, 1] (0 = background, 1 = full ink), flattened row-major from ``image_shape``.
        y_train, y_test: int64 [N] class indices in ``0 .. n_classes-1``.
        n_classes: number of classes.
        image_shape: (rows, cols) of one image, e.g. (22, 24), (28, 28) or (8, 8).
        meta: provenance: source, reference, files and checksums, crop, whether the data was
            regenerated and with which recipe and seed, ...
        x_valid, y_valid: optional validation split (MNIST-backrand has 2,000), else None.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    image_shape: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    x_valid: torch.Tensor | None = None
    y_valid: torch.Tensor | None = None

    def __post_init__(self) -> None:
        splits = [("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)]
        if (self.x_valid is None) != (self.y_valid is None):
            raise ValueError("x_valid and y_valid must both be given or both be None")
        if self.x_valid is not None:
            splits.append(("valid", self.x_valid, self.y_valid))
        n_inputs = self.x_train.shape[1] if self.x_train.ndim == 2 else None
        for split, x, y in splits:
            if x.ndim != 2 or x.dtype != torch.float32:
                raise ValueError(f"x_{split} must be float32 [N, D], got {x.dtype} {tuple(x.shape)}")
            if y.ndim != 1 or y.dtype != torch.int64 or len(y) != len(x):
                raise ValueError(f"y_{split} must be int64 [{len(x)}], got {y.dtype} {tuple(y.shape)}")
            if x.shape[1] != n_inputs:
                raise ValueError(f"x_{split} has {x.shape[1]} inputs, x_train has {n_inputs}")
        size = 1
        for s in self.image_shape:
            size *= int(s)
        if size != n_inputs:
            raise ValueError(f"image_shape {self.image_shape} does not match {n_inputs} inputs")

    @property
    def n_inputs(self) -> int:
        """Number of inputs D (pixels per image)."""
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    @property
    def n_valid(self) -> int:
        return 0 if self.x_valid is None else int(self.x_valid.shape[0])

    def info(self) -> dict[str, Any]:
        """What a run records of its data: name, sizes, and the plain-valued part of ``meta``."""
        return {
            "name": self.name,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_inputs": self.n_inputs,
            "n_classes": int(self.n_classes),
            "meta": {k: v for k, v in dict(self.meta).items() if isinstance(v, (str, int, float, bool, list, dict))},
        }

    def subset(self, n_train: int, n_test: int, n_valid: int | None = None) -> Dataset:
        """The first ``n_train`` training and ``n_test`` test examples (for quick runs).

        Counts larger than a split are capped at its size.  ``n_valid`` (default: keep all)
        truncates the validation split the same way.  ``meta["subset"]`` records the counts.
        """
        for arg, value in (("n_train", n_train), ("n_test", n_test), ("n_valid", n_valid)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigError(f"{arg}={value!r} must be a non-negative integer")
        changes: dict[str, Any] = {
            "x_train": self.x_train[:n_train],
            "y_train": self.y_train[:n_train],
            "x_test": self.x_test[:n_test],
            "y_test": self.y_test[:n_test],
        }
        if self.x_valid is not None and n_valid is not None:
            changes["x_valid"] = self.x_valid[:n_valid]
            changes["y_valid"] = self.y_valid[:n_valid]  # type: ignore[index]
        meta = dict(self.meta)
        meta["subset"] = {
            "n_train": min(n_train, self.n_train),
            "n_test": min(n_test, self.n_test),
            "n_valid": self.n_valid if n_valid is None else min(n_valid, self.n_valid),
            "of": {"n_train": self.n_train, "n_test": self.n_test, "n_valid": self.n_valid},
        }
        changes["meta"] = meta
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        valid = f", valid={self.n_valid}" if self.x_valid is not None else ""
        return (
            f"Dataset(name={self.name!r}, train={self.n_train}, test={self.n_test}{valid}, "
            f"inputs={self.n_inputs}, image_shape={self.image_shape}, n_classes={self.n_classes})"
        )


DATASETS: dict[str, str] = {
    "digits": "scikit-learn's bundled 8x8 digits, 1,437 train / 360 test, 64 inputs (no download)",
    "mnist": "MNIST cropped to 22x24 = 528 inputs (the paper's network), 60,000 / 10,000",
    "mnist-full": "MNIST at full 28x28 = 784 inputs, 60,000 / 10,000",
    "mnist-backrand": "MNIST digits on uniform random background (Larochelle et al. 2007), "
    "cropped to 22x24 = 528 inputs, 10,000 train / 2,000 valid / 50,000 test",
    "mnist-backrand-full": "MNIST-backrand at full 28x28 = 784 inputs, 10,000 / 2,000 / 50,000",
}
"""Names accepted by :func:`load_dataset`, with a one-line description each."""


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    **kw: Any,
) -> Dataset:
    """Load a dataset by name (see :data:`DATASETS`); extra keywords go to its loader.

    ``data_dir`` overrides the data root (see :mod:`analogtrain.data.paths`); ``download=False``
    never touches the network (a missing file raises :class:`DataError`).  ``"digits"`` needs
    no files.  An unknown name raises :class:`ConfigError` with a did-you-mean suggestion.
    """
    key = _normalise(name) if isinstance(name, str) else name
    if key not in DATASETS:
        close = difflib.get_close_matches(str(key), list(DATASETS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"unknown dataset {name!r}; {hint}known datasets: {', '.join(DATASETS)}"
        )
    if key == "digits":
        return load_digits(**kw)
    if key in ("mnist", "mnist-full"):
        if "crop" in kw:
            raise ConfigError(
                f"dataset {key!r} fixes the crop; use 'mnist' (22x24) or 'mnist-full' (28x28), "
                "or call load_mnist(crop=...) for another window"
            )
        return load_mnist(data_dir, download, crop=(key == "mnist"), **kw)
    if "crop" in kw:
        raise ConfigError(
            f"dataset {key!r} fixes the crop; use 'mnist-backrand' (22x24) or "
            "'mnist-backrand-full' (28x28)"
        )
    return load_mnist_backrand(data_dir, download, crop=(key == "mnist-backrand"), **kw)


# Loaders are imported last: their modules import Dataset from here at call time.
from .backrand import load_backrand_amat, load_mnist_backrand  # noqa: E402
from .cifar import CifarImages, load_cifar  # noqa: E402
from .digits import load_digits  # noqa: E402
from .mnist import load_mnist  # noqa: E402
