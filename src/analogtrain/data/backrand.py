"""MNIST-backrand: MNIST digits on a uniform random background.

The dataset ("mnist-back-rand") was introduced by H. Larochelle, D. Erhan, A. Courville,
J. Bergstra and Y. Bengio, "An empirical evaluation of deep architectures on problems with
many factors of variation", ICML 2007, and distributed by the LISA lab (Université de
Montréal) as ``mnist_background_random.zip`` with two text files
``mnist_background_random_train.amat`` (12,000 rows: 10,000 training then 2,000 validation
examples, "we used the last 2000 examples of the training sets as validation sets") and
``mnist_background_random_test.amat`` (50,000 rows).  Each row holds 784 pixel values in
[0, 1] and then the label 0-9, space separated.  The archive is no longer downloadable, so
this module

(a) **regenerates** the dataset from the original MNIST files (:func:`regenerate_backrand`),
    deterministically from a seed, and
(b) **loads the original .amat files** when a user has them (:func:`load_backrand_amat`).

What the authors published about the recipe (their web companion to the paper): "a random
background was inserted in the digit image. Each pixel value of the background was
generated uniformly between 0 and 255", with the sizes above.  They did not publish how the
background combines with the anti-aliased digit pixels, nor which MNIST images they used
(their MATLAB scripts were available only on request).  Our regeneration recipe, with the
unpublished choices marked [assumed]:

1. Pixel scale: MNIST uint8 / 255, so ink = 1, background = 0.
2. Image selection [assumed]: ``rng = default_rng(SeedSequence(seed).spawn(4)[0])``;
   ``perm = rng.permutation(60000)`` over MNIST's training set; training examples are
   ``perm[:10000]``, validation ``perm[10000:12000]``.  The 50,000 test examples are drawn
   from the 58,000 MNIST images not used above (the other 48,000 training images, then the
   10,000 test images, in that order): ``pool[rng.permutation(58000)[:50000]]``.  MNIST has
   only 70,000 images, so the test set necessarily mixes MNIST training and test images,
   as the original's 62,000 examples must have; no image appears in two splits.
3. Background: an independent draw per pixel and per image, uniform on [0, 1) (float32,
   i.e. 0..255 on the byte scale, not quantised), from ``default_rng`` generators seeded
   with children 1, 2, 3 of the same ``SeedSequence`` for the train, validation and test
   splits.
4. Combination [assumed]: ``pixel = max(digit, background)`` (``combine="max"``): full ink
   stays 1, blank pixels show the noise, and anti-aliased edges never get darker than the
   background behind them.  ``combine="replace"`` uses the noise only where the digit pixel
   is exactly 0.
5. Optional 22x24 crop afterwards, the same window as MNIST (:mod:`.mnist`).

Smaller sizes (``n_train`` etc.) take prefixes of each split: the selection always follows
the full-size recipe, so a small set is exactly the first rows of the full one.

The .amat pixel order: loaders written by other users of the original files reshape each
row to 28x28 and transpose it (the files were written column-major from MATLAB), whereas
MNIST is row-major.  We do not rely on that: with ``transposed=None`` (default) the loader
detects the orientation from the mean image (digits are taller than wide, so the ink's
vertical spread exceeds its horizontal spread) and records the decision in ``meta``.
"""

from __future__ import annotations

import os
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .mnist import CROP_COLS, CROP_ROWS, crop_images, load_mnist_arrays
from .paths import dataset_dir, find_file

if TYPE_CHECKING:
    from . import Dataset

SUBDIR = "mnist-backrand"
"""Subfolder of the data root searched for the original .amat files."""
AMAT_TRAIN = "mnist_background_random_train.amat"
AMAT_TEST = "mnist_background_random_test.amat"
AMAT_ZIP = "mnist_background_random.zip"
ORIGINAL_SIZES: dict[str, int] = {"train": 10_000, "valid": 2_000, "test": 50_000}
"""Split sizes of the original dataset (Larochelle et al. 2007)."""
N_PIXELS = 784
DEFAULT_SEED = 0

_COMBINE_TEXT = {"max": "pixel = max(digit, background)", "replace": "pixel = digit if digit > 0 else background"}


def recipe(combine: str = "max") -> str:
    """One-line description of the regeneration recipe, stored in ``meta["recipe"]``."""
    return (
        "pixels = MNIST uint8/255; ss = SeedSequence(seed).spawn(4); rng(ss[0]) permutes MNIST "
        "train (60k): train = perm[:10000], valid = perm[10000:12000]; test = pool[rng(ss[0])."
        "permutation(58000)[:50000]] with pool = perm[12000:] then MNIST test 0..9999; "
        "background U[0,1) float32 per pixel from rng(ss[1]), rng(ss[2]), rng(ss[3]) for train, "
        f"valid, test; {_COMBINE_TEXT[combine]}; smaller n_* take prefixes; optional 22x24 crop "
        "img[3:25, 2:26]"
    )


RECIPE = recipe("max")
"""The default recipe text."""

__all__ = [
    "AMAT_TRAIN",
    "AMAT_TEST",
    "AMAT_ZIP",
    "ORIGINAL_SIZES",
    "RECIPE",
    "recipe",
    "regenerate_backrand",
    "parse_amat",
    "detect_transposed",
    "load_backrand_amat",
    "load_mnist_backrand",
]

Combine = Literal["max", "replace"]


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name}={value!r} must be an integer between {lo} and {hi}")
    return value


def regenerate_backrand(
    mnist_x_train: np.ndarray,
    mnist_y_train: np.ndarray,
    mnist_x_test: np.ndarray,
    mnist_y_test: np.ndarray,
    *,
    seed: int = DEFAULT_SEED,
    n_train: int = ORIGINAL_SIZES["train"],
    n_valid: int = ORIGINAL_SIZES["valid"],
    n_test: int = ORIGINAL_SIZES["test"],
    combine: Combine = "max",
) -> dict[str, np.ndarray]:
    """Regenerate MNIST-backrand from MNIST uint8 arrays (recipe in the module docstring).

    Returns float32 images [N, 28, 28] in [0, 1] and int64 labels for ``train``, ``valid``
    and ``test`` (keys ``x_train``, ``y_train``, ...), plus the int64 source indices
    ``idx_*`` into MNIST (0..59,999 training set, 60,000..69,999 test set).
    """
    n_tr_full, n_va_full, n_te_full = (ORIGINAL_SIZES[k] for k in ("train", "valid", "test"))
    _check_int("n_train", n_train, 0, n_tr_full)
    _check_int("n_valid", n_valid, 0, n_va_full)
    _check_int("n_test", n_test, 0, n_te_full)
    _check_int("seed", seed, 0, 2**63 - 1)
    if combine not in ("max", "replace"):
        raise ConfigError(f"combine={combine!r} must be 'max' or 'replace'")
    n_mnist_train, n_mnist_test = len(mnist_x_train), len(mnist_x_test)
    if n_mnist_train != 60_000 or n_mnist_test != 10_000:
        raise ValueError("regenerate_backrand needs the full MNIST (60,000 + 10,000 images)")

    children = np.random.SeedSequence(seed).spawn(4)
    rng = np.random.default_rng(children[0])
    perm = rng.permutation(n_mnist_train)
    pool = np.concatenate([perm[n_tr_full + n_va_full :], n_mnist_train + np.arange(n_mnist_test)])
    test_pick = pool[rng.permutation(len(pool))[:n_te_full]]
    sources = {
        "train": perm[:n_train],
        "valid": perm[n_tr_full : n_tr_full + n_valid],
        "test": test_pick[:n_test],
    }
    all_x = np.concatenate([mnist_x_train, mnist_x_test])
    all_y = np.concatenate([mnist_y_train, mnist_y_test]).astype(np.int64)
    out: dict[str, np.ndarray] = {}
    for k, split in enumerate(("train", "valid", "test"), start=1):
        idx = sources[split].astype(np.int64)
        digits = all_x[idx].astype(np.float32)
        digits /= np.float32(255.0)
        noise = np.random.default_rng(children[k]).random(digits.shape, dtype=np.float32)
        if combine == "max":
            np.maximum(digits, noise, out=noise)
            images = noise
        else:
            images = np.where(digits > 0, digits, noise)
        out[f"x_{split}"] = images
        out[f"y_{split}"] = all_y[idx]
        out[f"idx_{split}"] = idx
    return out


def _bad_amat(name: str, where: str, problem: str) -> DataError:
    return DataError(
        f"MNIST-backrand file {name} in {where} {problem}; replace it with the original file "
        "from mnist_background_random.zip, or use source='regenerate'"
    )


def parse_amat(data: bytes, name: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse an .amat text file: rows of 784 pixel values in [0, 1] then a label 0-9.

    Returns float32 [N, 784] pixels in file order and int64 [N] labels.  ``name`` and
    ``where`` (the file name and its folder or archive) are used in error messages.  Row
    length, numeric syntax, value range and labels are all checked.
    """
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise _bad_amat(name, where, f"is not a text file (byte {exc.start} is not ASCII)") from exc
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise _bad_amat(name, where, "is empty")
    width = N_PIXELS + 1
    try:
        with warnings.catch_warnings():
            # Older NumPy warns and stops at a bad token, newer raises: either way we rescan.
            warnings.simplefilter("ignore")
            flat: np.ndarray | None = np.fromstring(text, dtype=np.float64, sep=" ")
    except ValueError:
        flat = None
    if flat is None or flat.size != len(lines) * width:
        for i, line in enumerate(lines, start=1):
            tokens = line.split()
            if len(tokens) != width:
                raise _bad_amat(
                    name, where, f"has {len(tokens)} values on row {i}, expected {width} (784 pixels and a label)"
                )
            try:
                np.array(tokens, dtype=np.float64)
            except ValueError as exc:
                raise _bad_amat(name, where, f"has a non-numeric value on row {i} ({exc})") from exc
        raise _bad_amat(name, where, "could not be parsed as rows of numbers")
    table = flat.reshape(len(lines), width)
    pixels, labels = table[:, :N_PIXELS], table[:, N_PIXELS]
    bad = ~np.isfinite(pixels) | (pixels < -1e-6) | (pixels > 1 + 1e-6)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise _bad_amat(name, where, f"has pixel value {pixels[r, c]} on row {r + 1}, expected values in [0, 1]")
    bad_lab = ~np.isfinite(labels) | (labels != np.round(labels)) | (labels < 0) | (labels > 9)
    if bad_lab.any():
        r = int(np.flatnonzero(bad_lab)[0])
        raise _bad_amat(name, where, f"has label {labels[r]} on row {r + 1}, expected an integer 0-9")
    return np.clip(pixels, 0.0, 1.0).astype(np.float32), labels.astype(np.int64)


def detect_transposed(images: np.ndarray) -> bool | None:
    """Guess whether [N, 28, 28] digit images are stored transposed (columns first).

    Handwritten digits are taller than wide, so in a correctly oriented mean image the ink
    (above the background level) spreads more along rows (vertically) than along columns.
    Returns True (transposed), False (MNIST orientation) or None when the two spreads are
    within 5% of each other (undecidable, e.g. no digits in the data).
    """
    mean = images.reshape(len(images), 28, 28).astype(np.float64).mean(axis=0)
    ink = np.clip(mean - np.median(mean), 0.0, None)
    if ink.sum() <= 0:
        return None
    pos = np.arange(28, dtype=np.float64)

    def spread(profile: np.ndarray) -> float:
        w = profile / profile.sum()
        mu = float((w * pos).sum())
        return float(np.sqrt((w * (pos - mu) ** 2).sum()))

    vertical, horizontal = spread(ink.sum(axis=1)), spread(ink.sum(axis=0))
    if max(vertical, horizontal) < 1.05 * min(vertical, horizontal):
        return None
    return horizontal > vertical


def _read_amat_sources(
    data_dir: str | os.PathLike[str] | None,
) -> dict[str, tuple[bytes, str, str]] | None:
    """Read the .amat files (loose, or from the .zip): split -> (bytes, file name, location).

    Returns None when neither the two loose files nor the archive is there.
    """
    loose = {k: find_file(n, SUBDIR, data_dir) for k, n in (("train", AMAT_TRAIN), ("test", AMAT_TEST))}
    if all(loose.values()):
        out: dict[str, tuple[bytes, str, str]] = {}
        for k, p in loose.items():
            assert p is not None
            try:
                out[k] = (p.read_bytes(), p.name, str(p.parent))
            except OSError as exc:
                raise _bad_amat(p.name, str(p.parent), f"cannot be read ({exc.strerror or exc})") from exc
        return out
    zpath = find_file(AMAT_ZIP, SUBDIR, data_dir)
    if zpath is None:
        return None
    try:
        with zipfile.ZipFile(zpath) as zf:
            members = {Path(m).name: m for m in zf.namelist()}
            out = {}
            for k, n in (("train", AMAT_TRAIN), ("test", AMAT_TEST)):
                if n not in members:
                    raise DataError(
                        f"archive {zpath.name} in {zpath.parent} has no {n}; replace it with the "
                        "original mnist_background_random.zip, or use source='regenerate'"
                    )
                out[k] = (zf.read(members[n]), n, str(zpath))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"archive {zpath.name} in {zpath.parent} is not a readable zip file ({exc}); replace "
            "it with the original mnist_background_random.zip, or use source='regenerate'"
        ) from exc
    return out


def _to_dataset(
    name_base: str,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    crop: bool,
    meta: dict[str, object],
) -> Dataset:
    from . import Dataset

    tensors: dict[str, torch.Tensor] = {}
    shape: tuple[int, ...] = (28, 28)
    for split, (x, y) in splits.items():
        x = x.reshape(len(x), 28, 28)
        if crop:
            x = crop_images(x)
        shape = tuple(int(s) for s in x.shape[1:])
        flat = int(np.prod(x.shape[1:]))  # not -1: a split may be empty (n_valid=0)
        tensors[f"x_{split}"] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), flat))
        tensors[f"y_{split}"] = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    meta = dict(meta)
    meta["crop"] = (
        {"rows": list(CROP_ROWS), "cols": list(CROP_COLS), "tag": "assumed, same window as 'mnist'"}
        if crop
        else None
    )
    return Dataset(
        name=name_base if crop else f"{name_base}-full",
        n_classes=10,
        image_shape=shape,
        meta=meta,
        **tensors,
    )


def load_backrand_amat(
    train_file: str | os.PathLike[str] | bytes,
    test_file: str | os.PathLike[str] | bytes,
    *,
    crop: bool = True,
    transposed: bool | None = None,
    valid_rows: int = ORIGINAL_SIZES["valid"],
    expected_rows: tuple[int, int] | None = None,
    n_train: int | None = None,
    n_valid: int | None = None,
    n_test: int | None = None,
    _names: tuple[tuple[str, str], tuple[str, str]] | None = None,
) -> Dataset:
    """Load the original MNIST-backrand .amat files as a :class:`~analogtrain.data.Dataset`.

    ``train_file``/``test_file`` are paths (or the raw bytes).  The last ``valid_rows`` rows
    of the training file (2,000 in the original) become the validation split.
    ``expected_rows=(12000, 50000)`` enforces the original row counts.  ``transposed``: True
    if each row stores the image column by column, False if row by row like MNIST, None to
    detect it (see :func:`detect_transposed`; undecidable data falls back to True, what
    other users of the original files report).  ``n_*`` keep only the first rows of a split.
    Parsing is bound by text-to-float conversion: about 4 s per 12,000 rows on a 2-core
    machine, so the 50,000-row test file takes roughly 15 s.
    """
    raw: list[tuple[bytes, str, str]] = []
    for i, f in enumerate((train_file, test_file)):
        if isinstance(f, bytes):
            name, where = _names[i] if _names else ("<bytes>", "memory")
            raw.append((f, name, where))
        else:
            p = Path(f)
            try:
                raw.append((p.read_bytes(), p.name, str(p.parent)))
            except OSError as exc:
                raise _bad_amat(p.name, str(p.parent), f"cannot be read ({exc.strerror or exc})") from exc
    (tr_x, tr_y), (te_x, te_y) = (parse_amat(d, n, w) for d, n, w in raw)
    if expected_rows is not None:
        for (d, n, w), arr, want in zip(raw, (tr_x, te_x), expected_rows):
            if len(arr) != want:
                raise _bad_amat(n, w, f"has {len(arr)} rows, expected {want}")
    if len(tr_x) <= valid_rows:
        n, w = raw[0][1], raw[0][2]
        raise _bad_amat(n, w, f"has {len(tr_x)} rows, need more than the {valid_rows} validation rows")
    images = np.concatenate([tr_x, te_x]).reshape(-1, 28, 28)
    detected = detect_transposed(images)
    if transposed is None:
        use_t = True if detected is None else detected
        how = "detected from the mean image" if detected is not None else "undecidable; default True"
    else:
        use_t, how = bool(transposed), "given by the caller"
    if use_t:
        tr_x = tr_x.reshape(-1, 28, 28).transpose(0, 2, 1).reshape(-1, N_PIXELS)
        te_x = te_x.reshape(-1, 28, 28).transpose(0, 2, 1).reshape(-1, N_PIXELS)
    cut = len(tr_x) - valid_rows
    splits = {
        "train": (tr_x[:cut][:n_train], tr_y[:cut][:n_train]),
        "valid": (tr_x[cut:][:n_valid], tr_y[cut:][:n_valid]),
        "test": (te_x[:n_test], te_y[:n_test]),
    }
    meta: dict[str, object] = {
        "source": "original MNIST-backrand .amat files (Larochelle et al., ICML 2007)",
        "regenerated": False,
        "files": {"train": f"{raw[0][2]}/{raw[0][1]}", "test": f"{raw[1][2]}/{raw[1][1]}"},
        "rows": {"train_file": int(cut + valid_rows), "test_file": int(len(te_x))},
        "validation": f"last {valid_rows} rows of the training file",
        "amat_transposed": use_t,
        "amat_orientation": how,
        "amat_orientation_detected": detected,
    }
    return _to_dataset("mnist-backrand", splits, crop, meta)


def load_mnist_backrand(
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    crop: bool = True,
    source: Literal["auto", "regenerate", "amat"] = "auto",
    seed: int = DEFAULT_SEED,
    n_train: int = ORIGINAL_SIZES["train"],
    n_valid: int = ORIGINAL_SIZES["valid"],
    n_test: int = ORIGINAL_SIZES["test"],
    combine: Combine = "max",
    amat_transposed: bool | None = None,
    verify: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> Dataset:
    """MNIST-backrand as a :class:`~analogtrain.data.Dataset` with a validation split.

    ``source="auto"`` loads the original .amat files when they are in the data root (loose,
    or as ``mnist_background_random.zip``, in ``<root>/mnist-backrand/`` or ``<root>/``) and
    otherwise regenerates the dataset from MNIST (downloaded if needed and ``download``);
    ``"amat"`` requires the files; ``"regenerate"`` always regenerates.  ``seed``,
    ``combine`` apply to regeneration; ``n_train``/``n_valid``/``n_test`` (at most
    10,000/2,000/50,000) keep the first examples of each split.  ``crop=True`` gives 22x24 =
    528 inputs, ``False`` 28x28 = 784.  ``meta["regenerated"]`` says which one you got.
    """
    if source not in ("auto", "regenerate", "amat"):
        raise ConfigError(f"source={source!r} must be 'auto', 'regenerate' or 'amat'")
    _check_int("n_train", n_train, 0, ORIGINAL_SIZES["train"])
    _check_int("n_valid", n_valid, 0, ORIGINAL_SIZES["valid"])
    _check_int("n_test", n_test, 0, ORIGINAL_SIZES["test"])
    if source in ("auto", "amat"):
        found = _read_amat_sources(data_dir)
        if found is not None:
            tr, te = found["train"], found["test"]
            return load_backrand_amat(
                tr[0],
                te[0],
                crop=crop,
                transposed=amat_transposed,
                expected_rows=(ORIGINAL_SIZES["train"] + ORIGINAL_SIZES["valid"], ORIGINAL_SIZES["test"]),
                n_train=n_train,
                n_valid=n_valid,
                n_test=n_test,
                _names=((tr[1], tr[2]), (te[1], te[2])),
            )
        if source == "amat":
            folder = dataset_dir(SUBDIR, data_dir)
            raise DataError(
                f"MNIST-backrand files {AMAT_TRAIN} and {AMAT_TEST} (or {AMAT_ZIP}) not found in "
                f"{folder} or {folder.parent}; the original archive is no longer downloadable, so "
                "put your copy there, or use source='regenerate'"
            )
    try:
        arrays, mnist_meta = load_mnist_arrays(
            data_dir, download, verify=verify, mirrors=mirrors, progress=progress
        )
    except DataError as exc:
        raise DataError(f"MNIST-backrand is regenerated from MNIST, which failed: {exc}") from exc
    gen = regenerate_backrand(
        arrays["x_train"],
        arrays["y_train"],
        arrays["x_test"],
        arrays["y_test"],
        seed=seed,
        n_train=n_train,
        n_valid=n_valid,
        n_test=n_test,
        combine=combine,
    )
    meta: dict[str, object] = {
        "source": "regenerated from MNIST (original MNIST-backrand archive no longer downloadable)",
        "reference": "Larochelle, Erhan, Courville, Bergstra, Bengio, 'An empirical evaluation of "
        "deep architectures on problems with many factors of variation', ICML 2007",
        "regenerated": True,
        "recipe": recipe(combine),
        "combine": combine,
        "seed": seed,
        "sizes": {"train": n_train, "valid": n_valid, "test": n_test},
        "original_sizes": dict(ORIGINAL_SIZES),
        "test_from_mnist_train": int((gen["idx_test"] < 60_000).sum()),
        "test_from_mnist_test": int((gen["idx_test"] >= 60_000).sum()),
        "mnist": mnist_meta,
    }
    splits = {s: (gen[f"x_{s}"], gen[f"y_{s}"]) for s in ("train", "valid", "test")}
    return _to_dataset("mnist-backrand", splits, crop, meta)

