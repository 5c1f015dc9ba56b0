"""The embedded default dataset: scikit-learn's bundled 8x8 handwritten digits.

Source: ``sklearn.datasets.load_digits`` ships a copy of the test part of the UCI "Optical
Recognition of Handwritten Digits" data set (E. Alpaydin, C. Kaynak, 1998): 1,797 images of
8x8 pixels, each pixel the count of ink pixels (0..16) in a 4x4 block of the original 32x32
bitmap, classes 0-9.  It needs no download, so it is the dataset for tests, examples and
first runs.

We scale pixels to [0, 1] by dividing by 16 (float32) and draw a fixed stratified split with
:func:`sklearn.model_selection.train_test_split` (``stratify=y``, ``random_state=seed``):
by default 1,437 training and 360 test images (about 20% test), seed 0.  The split is
deterministic for a given seed and scikit-learn version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import ConfigError

if TYPE_CHECKING:
    from . import Dataset

N_IMAGES = 1797
"""Number of images bundled with scikit-learn."""

__all__ = ["N_IMAGES", "load_digits"]


def load_digits(seed: int = 0, n_test: int = 360) -> Dataset:
    """scikit-learn's 8x8 digits as a :class:`~analogtrain.data.Dataset` (64 inputs).

    ``n_test`` images (default 360) go to the test split, the rest (default 1,437) to the
    training split; the split is stratified by class and seeded with ``seed``.
    """
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    from . import Dataset

    if isinstance(n_test, bool) or not isinstance(n_test, int) or not 10 <= n_test <= N_IMAGES - 10:
        raise ConfigError(
            f"n_test={n_test!r} must be an integer between 10 and {N_IMAGES - 10} "
            "(at least one image per class on each side)"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be a non-negative integer")
    bunch = _sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float32) / np.float32(16.0)
    y = np.asarray(bunch.target, dtype=np.int64)
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=n_test, stratify=y, random_state=seed, shuffle=True)
    meta = {
        "source": "scikit-learn bundled digits (sklearn.datasets.load_digits)",
        "provenance": "UCI Optical Recognition of Handwritten Digits, test part (Alpaydin & "
        "Kaynak 1998), 8x8 block counts 0..16",
        "scaling": "float32(pixel) / 16, in [0, 1]",
        "split": f"stratified train_test_split, n_test={n_test}, random_state={seed}",
        "seed": seed,
        "regenerated": False,
    }
    return Dataset(
        name="digits",
        x_train=torch.from_numpy(np.ascontiguousarray(x[tr])),
        y_train=torch.from_numpy(np.ascontiguousarray(y[tr])),
        x_test=torch.from_numpy(np.ascontiguousarray(x[te])),
        y_test=torch.from_numpy(np.ascontiguousarray(y[te])),
        n_classes=10,
        image_shape=(8, 8),
        meta=meta,
    )
