"""Raw CIFAR-10 / CIFAR-100 images (uint8, NHWC) and labels.

Dataset: A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", technical
report, University of Toronto, 2009 (https://www.cs.toronto.edu/~kriz/cifar.html).  32x32
RGB images; CIFAR-10 has 10 classes, CIFAR-100 has 100 fine classes in 20 coarse
superclasses; 50,000 training and 10,000 test images each.

Two sources are understood:

(a) the official python tarballs ``cifar-10-python.tar.gz`` (MD5
    c58f30108f718f92721af3b95e74349a) and ``cifar-100-python.tar.gz`` (MD5
    eb9058c3a382ffc7106e4002c42a8d85), downloaded from the dataset page or found locally
    (also already extracted, as ``cifar-10-batches-py/`` or ``cifar-100-python/``);
(b) NumPy array files (``.npz``, loaded with ``allow_pickle=False``) with keys ``x_train``
    uint8 [N, 32, 32, 3], ``y_train`` [N], ``x_test``, ``y_test``, ``label_names`` and, for
    CIFAR-100, optionally ``y_train_coarse``, ``y_test_coarse``, ``coarse_label_names``.  The
    project's development subsets (full test set + 10,000 class-balanced training images)
    have this layout and are recognised by their SHA-256: ``meta["subset"]`` is then True.

**Why a restricted unpickler.** The batches inside the tarballs are Python pickles, and
``pickle.load`` on a file from the network can run arbitrary code.  We unpickle them with an
:class:`pickle.Unpickler` whose ``find_class`` resolves only the handful of names a CIFAR
batch refers to (NumPy's array and dtype reconstruction, and ``_codecs.encode`` for
bytes written by Python 3, ``bytes()`` for an empty one) and maps each to an inert stand-in defined here; the stand-ins
only record their arguments, and the arrays are then built by :func:`numpy.frombuffer`
from the recorded raw bytes after checking dtype, shape and length.  No NumPy or other
library code runs on the pickle's behalf, and any other global (``os.system`` ...) makes the
file fail with a :class:`~analogtrain.errors.DataError`.  The tarball's MD5 is checked too.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import tarfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, DataError
from .paths import data_root, dataset_dir, fetch_file, file_digest, find_file

MIRRORS: tuple[str, ...] = ("https://www.cs.toronto.edu/~kriz/",)
"""Base URLs of the official tarballs."""

TARBALLS: dict[str, tuple[str, str, str]] = {
    # which: (file name, MD5, top-level folder inside the archive)
    "cifar10": ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py"),
    "cifar100": ("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python"),
}

KNOWN_SUBSETS: dict[str, tuple[str, str, str]] = {
    # SHA-256 -> (which, file name, provenance) of the project's development array files
    "b2d608320005ba7afc2644a3dcb6d87241f8bf380ea7a67c46bc27c50e39b48c": (
        "cifar10",
        "cifar10_subset.npz",
        "development subset: full 10,000-image test set ordered by original filename and "
        "10,000 class-balanced training images (numpy default_rng(0)), decoded from the "
        "lossless PNG copy GitHub cyizhuo/CIFAR-10-dataset @ a828d74",
    ),
    "b6c34fa7900efe0530804a32e78b96b863ca973e1f59df3a13160e25f43b59a8": (
        "cifar100",
        "cifar100_subset.npz",
        "development subset: full 10,000-image test set ordered by original filename then "
        "fine label and 10,000 class-balanced training images (numpy default_rng(0)), decoded "
        "from the lossless PNG copy GitHub cyizhuo/CIFAR-100-dataset @ b105b30",
    ),
}

N_CLASSES = {"cifar10": 10, "cifar100": 100}
N_COARSE = 20
FULL_SIZES = {"train": 50_000, "test": 10_000}
IMAGE_SHAPE = (32, 32, 3)
REFERENCE = (
    "A. Krizhevsky, 'Learning Multiple Layers of Features from Tiny Images', tech. report, "
    "University of Toronto, 2009"
)

__all__ = ["CifarImages", "load_cifar", "TARBALLS", "KNOWN_SUBSETS", "MIRRORS", "safe_unpickle"]


@dataclass(frozen=True, eq=False)
class CifarImages:
    """CIFAR images as stored: uint8 [N, 32, 32, 3] (height, width, RGB; 0..255).

    ``y_*`` are int64 class indices (fine classes for CIFAR-100); ``label_names[i]`` names
    class ``i``.  For CIFAR-100 the coarse (superclass) labels are given when the source has
    them.  ``meta`` records the source file, its checksum, and ``subset`` (True for a
    development subset, False for the full official data).
    """

    which: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    label_names: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    y_train_coarse: np.ndarray | None = None
    y_test_coarse: np.ndarray | None = None
    coarse_label_names: tuple[str, ...] | None = None

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    def __repr__(self) -> str:
        return (
            f"CifarImages(which={self.which!r}, train={len(self.x_train)}, test={len(self.x_test)}, "
            f"n_classes={self.n_classes}, subset={self.meta.get('subset')})"
        )


# --------------------------------------------------------------------------- safe unpickling


class _ArrayStub:
    """Stands in for ``numpy.ndarray`` while unpickling; records the pickled state."""

    def __init__(self) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _DTypeStub:
    """Stands in for ``numpy.dtype(obj, align, copy)``; records its arguments and state."""

    def __init__(self, obj: Any, align: Any = False, copy: Any = False) -> None:
        self.obj = obj
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _FromBuffer:
    """Result of NumPy's protocol-5 ``_frombuffer(buf, dtype, shape, order)``."""

    def __init__(self, buf: Any, dtype: Any, shape: Any, order: Any) -> None:
        self.buf, self.dtype, self.shape, self.order = buf, dtype, shape, order


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _ArrayStub:
    if cls is not _ArrayStub:
        raise pickle.UnpicklingError("_reconstruct called with a class other than ndarray")
    return _ArrayStub()


def _codecs_encode(obj: Any, encoding: Any = "utf-8") -> bytes:
    # Python 3 writes bytes in protocol <= 2 as _codecs.encode(str, "latin1").
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only _codecs.encode(str, 'latin1') is allowed")
    return obj.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    # Python 3 writes b"" in protocol <= 2 as a call to bytes() with no argument.
    if args:
        raise pickle.UnpicklingError("only bytes() without arguments is allowed")
    return b""


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _ArrayStub,
    ("numpy", "dtype"): _DTypeStub,
    ("numpy.core.numeric", "_frombuffer"): _FromBuffer,
    ("numpy._core.numeric", "_frombuffer"): _FromBuffer,
    ("_codecs", "encode"): _codecs_encode,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None


_DTYPE_RE = re.compile(r"^[|<>=]?(b1|[iu][1248]|f[48])$")


def _to_dtype(stub: Any) -> np.dtype:
    if not isinstance(stub, _DTypeStub):
        raise pickle.UnpicklingError("array dtype is not a plain dtype")
    obj = stub.obj.decode("ascii") if isinstance(stub.obj, bytes) else stub.obj
    if not isinstance(obj, str) or not _DTYPE_RE.match(obj):
        raise pickle.UnpicklingError(f"array dtype {obj!r} is not a plain numeric type")
    dt = np.dtype(obj)
    state = stub.state
    if isinstance(state, tuple) and len(state) > 1:
        order = state[1].decode("ascii") if isinstance(state[1], bytes) else state[1]
        if order in ("<", ">"):
            dt = dt.newbyteorder(order)
    return dt


def _array_from(dtype: np.dtype, shape: Any, raw: Any, fortran: bool) -> np.ndarray:
    if isinstance(raw, str):
        raw = raw.encode("latin1")
    if not isinstance(raw, (bytes, bytearray)):
        raise pickle.UnpicklingError("array data is not raw bytes")
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise pickle.UnpicklingError("array shape is not a tuple of sizes")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if len(raw) != count * dtype.itemsize:
        raise pickle.UnpicklingError(f"array data has {len(raw)} bytes, expected {count * dtype.itemsize}")
    arr = np.frombuffer(bytes(raw), dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return np.ascontiguousarray(arr, dtype=dtype.newbyteorder("="))


def _materialise(obj: Any) -> Any:
    if isinstance(obj, _ArrayStub):
        st = obj.state
        if not isinstance(st, tuple) or len(st) not in (4, 5):
            raise pickle.UnpicklingError("array state is malformed")
        shape, dstub, fortran, raw = st[-4:]
        return _array_from(_to_dtype(dstub), shape, raw, bool(fortran))
    if isinstance(obj, _FromBuffer):
        return _array_from(_to_dtype(obj.dtype), obj.shape, obj.buf, obj.order == "F")
    if isinstance(obj, dict):
        return {_materialise(k): _materialise(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialise(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v) for v in obj)
    if isinstance(obj, (_DTypeStub,)):
        raise pickle.UnpicklingError("a bare dtype is not expected here")
    return obj


def safe_unpickle(data: bytes) -> Any:
    """Unpickle a CIFAR batch without running code from it (see the module docstring).

    Allows builtin containers, strings, bytes, numbers and plain numeric NumPy arrays; raises
    :class:`pickle.UnpicklingError` for anything else.
    """
    obj = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    return _materialise(obj)


# --------------------------------------------------------------------------- tarball batches


def _key(d: dict[Any, Any], name: str) -> Any:
    for k in (name, name.encode("ascii")):
        if k in d:
            return d[k]
    raise KeyError(name)


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _bad_tar(where: str, problem: str, which: str) -> DataError:
    name = TARBALLS[which][0]
    return DataError(
        f"CIFAR file {where} {problem}; delete it and rerun to download {name} again, or "
        "replace it with the original file"
    )


def _parse_batch(data: bytes, where: str, which: str, n_classes: int) -> dict[str, np.ndarray]:
    try:
        d = safe_unpickle(data)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, UnicodeDecodeError, MemoryError, OverflowError) as exc:
        raise _bad_tar(where, f"is not a valid CIFAR batch ({exc})", which) from exc
    if not isinstance(d, dict):
        raise _bad_tar(where, "is not a pickled dict", which)
    try:
        x = _key(d, "data")
        if which == "cifar10":
            labels = {"y": _key(d, "labels")}
        else:
            labels = {"y": _key(d, "fine_labels"), "y_coarse": _key(d, "coarse_labels")}
    except KeyError as exc:
        raise _bad_tar(where, f"lacks the key {exc.args[0]!r}", which) from exc
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        shape = getattr(x, "shape", None)
        raise _bad_tar(where, f"has data of shape {shape}, expected uint8 [N, 3072]", which)
    out = {"x": np.ascontiguousarray(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))}
    for k, v in labels.items():
        try:
            y = np.asarray(v, dtype=np.int64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _bad_tar(where, f"has non-integer labels ({exc})", which) from exc
        limit = n_classes if k == "y" else N_COARSE
        if y.shape != (len(x),):
            raise _bad_tar(where, f"has {y.size} labels for {len(x)} images", which)
        if len(y) and (y.min() < 0 or y.max() >= limit):
            raise _bad_tar(where, f"has labels outside 0-{limit - 1}", which)
        out[k] = y
    return out


def _members_from_tar(path: Path, which: str) -> dict[str, bytes]:
    folder = TARBALLS[which][2]
    wanted = _wanted_members(which)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tf:
            for m in tf:
                p = Path(m.name)
                if m.isfile() and p.name in wanted and p.parent.name == folder:
                    f = tf.extractfile(m)
                    if f is not None:
                        found[p.name] = f.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise _bad_tar(f"{path.name} in {path.parent}", f"is truncated or not a valid tar.gz archive ({exc})", which) from exc
    missing = [n for n in wanted if n not in found]
    if missing:
        raise _bad_tar(f"{path.name} in {path.parent}", f"lacks {folder}/{missing[0]}", which)
    return found


def _members_from_folder(folder: Path, which: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for n in _wanted_members(which):
        p = folder / n
        try:
            out[n] = p.read_bytes()
        except OSError as exc:
            raise DataError(
                f"CIFAR folder {folder} lacks a readable {n} ({exc.strerror or exc}); delete the "
                f"folder and put the original {TARBALLS[which][0]} in {folder.parent}"
            ) from exc
    return out


def _wanted_members(which: str) -> list[str]:
    if which == "cifar10":
        return [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    return ["train", "test", "meta"]


def _from_members(members: dict[str, bytes], which: str, where: str, meta: dict[str, Any]) -> CifarImages:
    n_classes = N_CLASSES[which]
    if which == "cifar10":
        train_names, test_names, meta_name = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta"
    else:
        train_names, test_names, meta_name = ["train"], ["test"], "meta"
    parts: dict[str, list[dict[str, np.ndarray]]] = {"train": [], "test": []}
    for split, names in (("train", train_names), ("test", test_names)):
        for n in names:
            parts[split].append(_parse_batch(members[n], f"{n} in {where}", which, n_classes))
    try:
        md = safe_unpickle(members[meta_name])
        if which == "cifar10":
            names = tuple(_text(s) for s in _key(md, "label_names"))
            coarse = None
        else:
            names = tuple(_text(s) for s in _key(md, "fine_label_names"))
            coarse = tuple(_text(s) for s in _key(md, "coarse_label_names"))
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, AttributeError,
            IndexError, UnicodeDecodeError) as exc:
        raise _bad_tar(f"{meta_name} in {where}", f"is not a valid CIFAR meta file ({exc})", which) from exc
    if len(names) != n_classes or (coarse is not None and len(coarse) != N_COARSE):
        raise _bad_tar(f"{meta_name} in {where}", f"has {len(names)} class names, expected {n_classes}", which)
    cat = {s: {k: np.concatenate([p[k] for p in parts[s]]) for k in parts[s][0]} for s in parts}
    meta = dict(meta)
    meta["n_train"], meta["n_test"] = len(cat["train"]["x"]), len(cat["test"]["x"])
    return CifarImages(
        which=which,
        x_train=cat["train"]["x"],
        y_train=cat["train"]["y"],
        x_test=cat["test"]["x"],
        y_test=cat["test"]["y"],
        label_names=names,
        meta=meta,
        y_train_coarse=cat["train"].get("y_coarse"),
        y_test_coarse=cat["test"].get("y_coarse"),
        coarse_label_names=coarse,
    )


def _load_tarball(path: Path, which: str, verify: bool) -> CifarImages:
    name, md5, _ = TARBALLS[which]
    digest = None
    if verify:
        got = file_digest(path, "md5")
        if got != md5:
            raise DataError(
                f"CIFAR file {path.name} in {path.parent} fails its MD5 check (expected {md5}, got "
                f"{got}); delete it and rerun to download again, or replace it with the original "
                f"{name}"
            )
        digest = got
    meta = {
        "source": f"official python tarball {name}",
        "reference": REFERENCE,
        "url": MIRRORS[0] + name,
        "file": str(path),
        "md5": digest or md5,
        "md5_verified": bool(verify),
        "subset": False,
        "test_order": "official test_batch order",
    }
    return _from_members(_members_from_tar(path, which), which, f"{path.name} in {path.parent}", meta)


def _load_folder(folder: Path, which: str) -> CifarImages:
    meta = {
        "source": f"extracted official python batches in {folder}",
        "reference": REFERENCE,
        "file": str(folder),
        "md5": None,
        "md5_verified": False,
        "subset": False,
        "test_order": "official test_batch order",
    }
    return _from_members(_members_from_folder(folder, which), which, str(folder), meta)


# --------------------------------------------------------------------------- array files


def _bad_npz(path: Path, problem: str) -> DataError:
    return DataError(
        f"CIFAR array file {path.name} in {path.parent} {problem}; replace it with a file in the "
        "documented layout (x_train uint8 [N,32,32,3], y_train, x_test, y_test, label_names)"
    )


def _load_arrays(path: Path, which: str, verify: bool) -> CifarImages:
    n_classes = N_CLASSES[which]
    sha = file_digest(path, "sha256") if verify else None
    try:
        with np.load(path, allow_pickle=False) as npz:
            files = set(npz.files)
            required = ["x_train", "y_train", "x_test", "y_test", "label_names"]
            missing = [k for k in required if k not in files]
            if missing:
                raise _bad_npz(path, f"lacks the key {missing[0]!r} (has {', '.join(sorted(files))})")
            arrays = {k: npz[k] for k in files}
    except DataError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, zlib.error) as exc:
        raise _bad_npz(path, f"cannot be read as a NumPy .npz without pickle ({exc})") from exc
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        x = arrays[f"x_{split}"]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
            raise _bad_npz(path, f"has x_{split} {x.dtype} {x.shape}, expected uint8 [N, 32, 32, 3]")
        out[f"x_{split}"] = x
        for key, limit in ((f"y_{split}", n_classes), (f"y_{split}_coarse", N_COARSE)):
            if key not in arrays:
                continue
            y = arrays[key]
            if not np.issubdtype(y.dtype, np.integer) or y.shape != (len(x),):
                raise _bad_npz(path, f"has {key} {y.dtype} {y.shape}, expected integers [{len(x)}]")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= limit):
                raise _bad_npz(path, f"has {key} values outside 0-{limit - 1}")
            out[key] = y.astype(np.int64)
    names = arrays["label_names"]
    if names.dtype.kind not in "US" or names.shape != (n_classes,):
        raise _bad_npz(path, f"has label_names {names.dtype} {names.shape}, expected {n_classes} strings")
    coarse = None
    if "coarse_label_names" in arrays:
        c = arrays["coarse_label_names"]
        if c.dtype.kind not in "US" or c.shape != (N_COARSE,):
            raise _bad_npz(path, f"has coarse_label_names {c.dtype} {c.shape}, expected {N_COARSE} strings")
        coarse = tuple(_text(s) for s in c.tolist())
    known = KNOWN_SUBSETS.get(sha or "")
    if known is not None and known[0] != which:
        raise _bad_npz(path, f"is the {known[0]} development subset, not {which}")
    n_train, n_test = len(out["x_train"]), len(out["x_test"])
    meta: dict[str, Any] = {
        "source": f"array file {path.name}",
        "reference": REFERENCE,
        "file": str(path),
        "sha256": sha,
        "sha256_verified": bool(verify),
        "known_file": known is not None,
        "provenance": known[2] if known else "user-supplied array file (not a known checksum)",
        "subset": True if known else (n_train < FULL_SIZES["train"] or n_test < FULL_SIZES["test"]),
        "n_train": n_train,
        "n_test": n_test,
    }
    if known:
        meta["test_order"] = "ordered by original filename (classes come in runs)"
    return CifarImages(
        which=which,
        x_train=out["x_train"],
        y_train=out["y_train"],
        x_test=out["x_test"],
        y_test=out["y_test"],
        label_names=tuple(_text(s) for s in names.tolist()),
        meta=meta,
        y_train_coarse=out.get("y_train_coarse"),
        y_test_coarse=out.get("y_test_coarse"),
        coarse_label_names=coarse,
    )


def _array_names(which: str) -> list[str]:
    return [f"{which}_subset.npz", f"{which}.npz"]


def _find_arrays(which: str, data_dir: str | os.PathLike[str] | None) -> Path | None:
    for n in _array_names(which):
        p = find_file(n, which, data_dir)
        if p is not None:
            return p
    return None


def _find_folder(which: str, data_dir: str | os.PathLike[str] | None) -> Path | None:
    folder = TARBALLS[which][2]
    root = data_root(data_dir)
    for p in (root / which / folder, root / folder):
        if p.is_dir():
            return p
    return None


def load_cifar(
    which: Literal["cifar10", "cifar100"],
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    source: Literal["auto", "tarball", "arrays"] = "auto",
    *,
    path: str | os.PathLike[str] | None = None,
    verify: bool = True,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
) -> CifarImages:
    """Load CIFAR-10 or CIFAR-100 images as uint8 NHWC arrays with labels.

    Files are looked for in ``<root>/<which>/`` and ``<root>/`` (root: ``data_dir``, then
    ``$ANALOGTRAIN_DATA_DIR``, then the user cache).  ``source``:

    - ``"tarball"``: the official python tarball (MD5-checked unless ``verify=False``) or its
      extracted folder; downloaded from the dataset page when missing and ``download``;
    - ``"arrays"``: an ``.npz`` array file named ``<which>_subset.npz`` or ``<which>.npz``
      (never downloaded);
    - ``"auto"``: a local tarball or extracted folder, else a local array file, else download
      the tarball.

    ``path`` names a file or folder directly (``.npz``, ``.tar.gz`` or extracted folder) and
    overrides the search.  Returns :class:`CifarImages`; ``meta["subset"]`` is True for the
    development subsets.
    """
    if which not in TARBALLS:
        raise ConfigError(f"which={which!r} must be 'cifar10' or 'cifar100'")
    if source not in ("auto", "tarball", "arrays"):
        raise ConfigError(f"source={source!r} must be 'auto', 'tarball' or 'arrays'")
    tar_name, md5, folder_name = TARBALLS[which]

    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():
            return _load_folder(p, which)
        if not p.is_file():
            raise DataError(f"CIFAR file {p} does not exist; check the path")
        if p.suffix == ".npz":
            return _load_arrays(p, which, verify)
        return _load_tarball(p, which, verify)

    if source in ("auto", "tarball"):
        tar = find_file(tar_name, which, data_dir)
        if tar is not None:
            return _load_tarball(tar, which, verify)
        folder = _find_folder(which, data_dir)
        if folder is not None:
            return _load_folder(folder, which)
    if source in ("auto", "arrays"):
        arr = _find_arrays(which, data_dir)
        if arr is not None:
            return _load_arrays(arr, which, verify)
        if source == "arrays":
            d = dataset_dir(which, data_dir)
            raise DataError(
                f"CIFAR array file {' or '.join(_array_names(which))} not found in {d} or "
                f"{d.parent}; put it there, pass path=, or use source='tarball'"
            )
    d = dataset_dir(which, data_dir)
    if not download:
        raise DataError(
            f"CIFAR file {tar_name} not found in {d} or {d.parent} (nor {folder_name}/ or "
            f"{_array_names(which)[0]}); put one there, or leave out --no-download (Python: download=True) to download it"
        )
    tar = fetch_file(
        tar_name,
        which,
        mirrors=tuple(MIRRORS if mirrors is None else mirrors),
        md5=md5,
        data_dir=data_dir,
        download_missing=True,
        verify=True,
        progress=progress,
        what="CIFAR",
    )
    return _load_tarball(tar, which, verify)
