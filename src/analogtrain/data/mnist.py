"""MNIST: the four original IDX files, fully validated, optionally cropped to 22x24.

Source: Y. LeCun, C. Cortes, C. J. C. Burges, the MNIST database of handwritten digits
(http://yann.lecun.com/exdb/mnist/, CC BY-SA 3.0); reference: LeCun et al., Proc. IEEE
86(11):2278-2324, 1998.  60,000 training and 10,000 test images of 28x28 pixels, uint8,
0 = background, 255 = ink.  The original site no longer serves the files reliably, so we
download from two public mirrors that serve byte-identical copies (checked against the
SHA-256 values below, which match the published MD5s):

- https://ossci-datasets.s3.amazonaws.com/mnist/ (the mirror PyTorch uses)
- https://storage.googleapis.com/cvdf-datasets/mnist/

File format (IDX, all integers big-endian, then gzip): images have magic 2051, item count,
rows, columns, then count*rows*cols unsigned bytes row-major; labels have magic 2049, item
count, then one unsigned byte per item.  :func:`parse_idx_images` and :func:`parse_idx_labels`
check every one of these fields and the payload length; any problem, including a truncated
or corrupt gzip stream, raises a one-line :class:`~analogtrain.errors.DataError` naming the
file.

**Crop (our assumption).** The paper's network has 528 inputs: Burr et al. (2015) cropped
MNIST to 22x24 pixels, but we could not read which border they removed.  We keep rows 3..24
(22 rows) and columns 2..25 (24 columns), i.e. ``img[3:25, 2:26]``, which removes 3 rows at
the top and bottom and 2 columns at the left and right.  Measured on the 60,000 training
images, it discards 0.9% of the total ink (sum of pixel values), almost all of it from the
bottom three rows (about a quarter of the images have some ink there); the column cut loses
0.02%.  The best 22-row window would be rows 4..25 (0.7% lost), so the choice matters
little.  The crop window is a parameter (:data:`CROP_ROWS`, :data:`CROP_COLS`, ``crop=`` of
:func:`load_mnist`).

Pixels are scaled to [0, 1] as ``float32(value) / 255``.  Parsing all 70,000 images takes
well under a second, so no parsed cache is written.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .paths import fetch_file

if TYPE_CHECKING:
    from . import Dataset

SUBDIR = "mnist"
"""Subfolder of the data root that holds the MNIST files."""

MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
"""Base URLs tried in order when a file is missing."""

FILES: dict[str, tuple[str, str]] = {
    # key: (file name, SHA-256 of the .gz file as distributed)
    "train_images": (
        "train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    "train_labels": (
        "train-labels-idx1-ubyte.gz",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    "test_images": (
        "t10k-images-idx3-ubyte.gz",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    "test_labels": (
        "t10k-labels-idx1-ubyte.gz",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
}
"""The four distribution files and their SHA-256 checksums."""

EXPECTED_COUNTS = {"train": 60_000, "test": 10_000}
IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
ROWS = COLS = 28

CROP_ROWS: tuple[int, int] = (3, 25)
"""Rows kept by the 22x24 crop, as a half-open range: rows 3..24 [assumed]."""
CROP_COLS: tuple[int, int] = (2, 26)
"""Columns kept by the 22x24 crop, as a half-open range: columns 2..25 [assumed]."""
CROPPED_SHAPE: tuple[int, int] = (CROP_ROWS[1] - CROP_ROWS[0], CROP_COLS[1] - CROP_COLS[0])

__all__ = [
    "MIRRORS",
    "FILES",
    "CROP_ROWS",
    "CROP_COLS",
    "CROPPED_SHAPE",
    "read_gzip",
    "parse_idx_images",
    "parse_idx_labels",
    "load_mnist_arrays",
    "crop_images",
    "images_to_tensor",
    "load_mnist",
]


def read_gzip(path: Path) -> bytes:
    """Read and decompress a gzip file; corrupt or truncated streams raise :class:`DataError`."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise DataError(
            f"cannot read {path.name} in {path.parent} ({exc.strerror or exc}); check its "
            "permissions or delete it and rerun to download again"
        ) from exc
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        kind = "truncated" if isinstance(exc, EOFError) else "not a valid gzip file"
        raise DataError(
            f"MNIST file {path.name} in {path.parent} is {kind} ({exc}); delete it and rerun "
            "to download again, or replace it with the original file"
        ) from exc


def _bad(path: Path, problem: str) -> DataError:
    return DataError(
        f"MNIST file {path.name} in {path.parent} {problem}; delete it and rerun to download "
        "again, or replace it with the original file"
    )


def parse_idx_images(data: bytes, path: Path, expected_count: int | None = None) -> np.ndarray:
    """Parse an uncompressed IDX3 image file into a read-only uint8 array [N, 28, 28].

    ``path`` is only used in error messages.  Checks magic 2051, 28x28 size, the item count
    (against ``expected_count`` when given) and the exact payload length.
    """
    if len(data) < 16:
        raise _bad(path, f"is too short for an IDX image header ({len(data)} bytes)")
    magic, count, rows, cols = struct.unpack(">IIII", data[:16])
    if magic != IMAGE_MAGIC:
        hint = " (that is a label file)" if magic == LABEL_MAGIC else ""
        raise _bad(path, f"has magic number {magic}, expected {IMAGE_MAGIC} for images{hint}")
    if (rows, cols) != (ROWS, COLS):
        raise _bad(path, f"holds {rows}x{cols} images, expected {ROWS}x{COLS}")
    if expected_count is not None and count != expected_count:
        raise _bad(path, f"says it holds {count} images, expected {expected_count}")
    want = 16 + count * rows * cols
    if len(data) != want:
        raise _bad(path, f"has {len(data)} bytes after decompression, expected {want} for {count} images")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def parse_idx_labels(data: bytes, path: Path, expected_count: int | None = None) -> np.ndarray:
    """Parse an uncompressed IDX1 label file into a uint8 array [N]; labels must be 0-9."""
    if len(data) < 8:
        raise _bad(path, f"is too short for an IDX label header ({len(data)} bytes)")
    magic, count = struct.unpack(">II", data[:8])
    if magic != LABEL_MAGIC:
        hint = " (that is an image file)" if magic == IMAGE_MAGIC else ""
        raise _bad(path, f"has magic number {magic}, expected {LABEL_MAGIC} for labels{hint}")
    if expected_count is not None and count != expected_count:
        raise _bad(path, f"says it holds {count} labels, expected {expected_count}")
    if len(data) != 8 + count:
        raise _bad(path, f"has {len(data)} bytes after decompression, expected {8 + count} for {count} labels")
    labels = np.frombuffer(data, dtype=np.uint8, offset=8)
    if count and int(labels.max()) > 9:
        bad = int(np.flatnonzero(labels > 9)[0])
        raise _bad(path, f"has label {int(labels[bad])} at index {bad}, expected 0-9")
    return labels


def load_mnist_arrays(
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    verify: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Locate (or download), check and parse the four MNIST files.

    Returns ``(arrays, meta)`` where ``arrays`` has uint8 ``x_train`` [60000, 28, 28],
    ``y_train`` [60000], ``x_test`` [10000, 28, 28], ``y_test`` [10000], and ``meta`` records
    the files' paths and SHA-256 checksums.
    """
    mirror_list = tuple(MIRRORS if mirrors is None else mirrors)
    paths: dict[str, Path] = {}
    for key, (name, sha) in FILES.items():
        paths[key] = fetch_file(
            name,
            SUBDIR,
            mirrors=mirror_list,
            sha256=sha,
            data_dir=data_dir,
            download_missing=download,
            verify=verify,
            progress=progress,
            what="MNIST",
        )
    arrays: dict[str, np.ndarray] = {}
    for split, n in EXPECTED_COUNTS.items():
        ipath, lpath = paths[f"{split}_images"], paths[f"{split}_labels"]
        x = parse_idx_images(read_gzip(ipath), ipath, expected_count=n)
        y = parse_idx_labels(read_gzip(lpath), lpath, expected_count=n)
        if len(x) != len(y):  # unreachable with expected_count, kept for clarity
            raise _bad(ipath, f"holds {len(x)} images but {lpath.name} holds {len(y)} labels")
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    meta: dict[str, object] = {
        "source": "MNIST (LeCun, Cortes, Burges), original IDX files",
        "reference": "LeCun et al., Proc. IEEE 86(11):2278-2324, 1998",
        "license": "CC BY-SA 3.0",
        "files": {FILES[k][0]: str(p) for k, p in paths.items()},
        "sha256": {name: sha for name, sha in FILES.values()},
        "checksums_verified": bool(verify),
    }
    return arrays, meta


def crop_images(
    images: np.ndarray,
    rows: tuple[int, int] = CROP_ROWS,
    cols: tuple[int, int] = CROP_COLS,
) -> np.ndarray:
    """Crop [N, 28, 28] images to ``images[:, rows[0]:rows[1], cols[0]:cols[1]]``."""
    r0, r1 = rows
    c0, c1 = cols
    if not (0 <= r0 < r1 <= images.shape[1] and 0 <= c0 < c1 <= images.shape[2]):
        raise ConfigError(
            f"crop window rows {rows}, cols {cols} does not fit {images.shape[1]}x{images.shape[2]} "
            "images; use half-open ranges inside the image, e.g. rows (3, 25), cols (2, 26)"
        )
    return images[:, r0:r1, c0:c1]


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W] (0..255) -> float32 [N, H*W] in [0, 1] (value / 255)."""
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    return torch.from_numpy(flat.copy() if not flat.flags.writeable else flat).to(torch.float32).div_(255.0)


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    crop: bool | tuple[tuple[int, int], tuple[int, int]] = True,
    verify: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> Dataset:
    """MNIST as a :class:`~analogtrain.data.Dataset`.

    ``crop=True`` (dataset ``"mnist"``) gives the paper's 22x24 = 528 inputs, ``img[3:25, 2:26]``
    [assumed window, see the module docstring]; ``crop=False`` (``"mnist-full"``) gives all
    784 pixels; ``crop=((r0, r1), (c0, c1))`` any other window.  Pixel values are float32
    in [0, 1]; labels int64 0-9.  Files are found under the data root (see
    :mod:`analogtrain.data.paths`) or downloaded when ``download`` is true.
    """
    from . import Dataset  # runtime import: the package imports this module

    arrays, meta = load_mnist_arrays(
        data_dir, download, verify=verify, mirrors=mirrors, progress=progress
    )
    window = _crop_window(crop)
    xs = {}
    for split in ("train", "test"):
        x = arrays[f"x_{split}"]
        if window is not None:
            x = crop_images(x, *window)
        xs[split] = x
    shape = tuple(int(s) for s in xs["train"].shape[1:])
    meta = dict(meta)
    meta["crop"] = (
        None
        if window is None
        else {"rows": list(window[0]), "cols": list(window[1]), "tag": "assumed (Burr et al. 2015 cropped to 22x24; border not published)"}
    )
    meta["scaling"] = "float32(pixel) / 255, in [0, 1]"
    return Dataset(
        name="mnist" if window == (CROP_ROWS, CROP_COLS) else ("mnist-full" if window is None else "mnist-crop"),
        x_train=images_to_tensor(xs["train"]),
        y_train=torch.from_numpy(arrays["y_train"].astype(np.int64)),
        x_test=images_to_tensor(xs["test"]),
        y_test=torch.from_numpy(arrays["y_test"].astype(np.int64)),
        n_classes=10,
        image_shape=shape,
        meta=meta,
    )


def _crop_window(
    crop: bool | tuple[tuple[int, int], tuple[int, int]],
) -> tuple[tuple[int, int], tuple[int, int]] | None:
    if crop is True:
        return CROP_ROWS, CROP_COLS
    if crop is False or crop is None:
        return None
    try:
        (r0, r1), (c0, c1) = crop
        return (int(r0), int(r1)), (int(c0), int(c1))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"crop={crop!r} is not understood; use True (22x24 paper crop), False (full 28x28) "
            "or ((row_start, row_stop), (col_start, col_stop))"
        ) from exc
