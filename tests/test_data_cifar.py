"""CIFAR-10/100: the shared development arrays, and tarballs in the official format."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import socket
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from analogtrain.data import CifarImages, load_cifar
from analogtrain.data import cifar as C
from analogtrain.errors import ConfigError, DataError

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# --------------------------------------------------------------------------- shared arrays


def test_cifar10_dev_subset(shared_data):
    c = load_cifar("cifar10", data_dir=shared_data, download=False)
    assert isinstance(c, CifarImages) and c.which == "cifar10" and c.n_classes == 10
    assert c.x_train.shape == (10_000, 32, 32, 3) and c.x_train.dtype == np.uint8
    assert c.x_test.shape == (10_000, 32, 32, 3)
    assert c.y_train.dtype == np.int64 and c.y_train[:10].tolist() == [5, 4, 2, 7, 5, 6, 0, 0, 5, 5]
    assert np.bincount(c.y_train).tolist() == [1000] * 10 and np.bincount(c.y_test).tolist() == [1000] * 10
    assert c.label_names == CIFAR10_NAMES
    assert c.meta["subset"] is True and c.meta["known_file"] is True
    assert c.meta["sha256"] == "b2d608320005ba7afc2644a3dcb6d87241f8bf380ea7a67c46bc27c50e39b48c"
    assert c.y_train_coarse is None
    assert abs(float(c.x_train[..., 0].mean()) - 126.0517) < 1e-3  # README statistics


def test_cifar100_dev_subset_via_path(shared_data):
    c = load_cifar("cifar100", path=shared_data / "cifar100" / "cifar100_subset.npz")
    assert c.n_classes == 100 and c.meta["subset"] is True
    assert c.y_train[:10].tolist() == [80, 14, 43, 29, 80, 27, 3, 44, 10, 49]
    assert c.label_names[:3] == ("apple", "aquarium_fish", "baby") and c.label_names[-1] == "worm"
    assert c.coarse_label_names is not None and len(c.coarse_label_names) == 20
    assert c.coarse_label_names[0] == "aquatic_mammals"
    # every fine class belongs to exactly one coarse class
    pairs = set(zip(c.y_train.tolist(), c.y_train_coarse.tolist()))
    assert len(pairs) == 100
    assert np.bincount(c.y_test_coarse).tolist() == [500] * 20


def test_arrays_source_and_wrong_which(shared_data, tmp_path):
    with pytest.raises(DataError, match="has label_names .* expected 100 strings"):
        load_cifar("cifar100", path=shared_data / "cifar10" / "cifar10_subset.npz")
    with pytest.raises(DataError) as ei:
        load_cifar("cifar10", data_dir=tmp_path, source="arrays")
    assert "cifar10_subset.npz or cifar10.npz not found in" in str(ei.value)


def _save_npz(path: Path, n: int = 6, **override) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
        "y_train": np.arange(n, dtype=np.uint8) % 10,
        "x_test": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
        "y_test": np.arange(n, dtype=np.int64) % 10,
        "label_names": np.array(CIFAR10_NAMES),
    }
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def test_user_array_file(tmp_path):
    (tmp_path / "cifar10").mkdir()
    _save_npz(tmp_path / "cifar10" / "cifar10.npz")
    c = load_cifar("cifar10", data_dir=tmp_path, download=False)
    assert c.meta["known_file"] is False and c.meta["subset"] is True and len(c.x_train) == 6
    assert c.meta["provenance"].startswith("user-supplied")


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ({"y_test": None}, "lacks the key 'y_test'"),
        ({"x_train": np.zeros((6, 3, 32, 32), np.uint8)}, r"has x_train uint8 \(6, 3, 32, 32\), expected uint8 \[N, 32, 32, 3\]"),
        ({"x_test": np.zeros((6, 32, 32, 3), np.float32)}, "has x_test float32"),
        ({"y_train": np.full(6, 10)}, "y_train values outside 0-9"),
        ({"y_train": np.zeros(5, np.int64)}, r"expected integers \[6\]"),
        ({"label_names": np.array(CIFAR10_NAMES[:9])}, "expected 10 strings"),
        ({"label_names": np.array(list(CIFAR10_NAMES), dtype=object)}, "without pickle"),
    ],
)
def test_bad_array_files(tmp_path, override, pattern):
    p = _save_npz(tmp_path / "bad.npz", **override)
    with pytest.raises(DataError, match=pattern) as ei:
        load_cifar("cifar10", path=p)
    assert f"bad.npz in {tmp_path}" in str(ei.value)


def test_not_an_npz(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="junk.npz .* cannot be read"):
        load_cifar("cifar10", path=p)


# --------------------------------------------------------------------------- tarballs


def _pickle_bytes(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _make_cifar10_tar(path: Path, per_batch: int = 3, n_test: int = 4) -> dict[str, np.ndarray]:
    """A tiny cifar-10-python.tar.gz in the official layout and encoding (bytes keys)."""
    rng = np.random.default_rng(1)
    xs, ys = [], []
    with tarfile.open(path, "w:gz") as tf:
        for i in range(1, 7):
            n = per_batch if i <= 5 else n_test
            x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            y = rng.integers(0, 10, n).tolist()
            batch = {
                b"batch_label": b"training batch %d of 5" % i,
                b"labels": y,
                b"data": x.transpose(0, 3, 1, 2).reshape(n, 3072),  # rows: R plane, G plane, B plane
                b"filenames": [b"img_%d.png" % j for j in range(n)],
            }
            _add(tf, f"cifar-10-batches-py/{'test_batch' if i == 6 else f'data_batch_{i}'}", _pickle_bytes(batch))
            xs.append(x)
            ys.append(y)
        meta = {b"num_cases_per_batch": per_batch, b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072}
        _add(tf, "cifar-10-batches-py/batches.meta", _pickle_bytes(meta))
        _add(tf, "cifar-10-batches-py/readme.html", b"<html></html>")
    return {"x_train": np.concatenate(xs[:5]), "y_train": np.concatenate(ys[:5]), "x_test": xs[5], "y_test": np.array(ys[5])}


def test_synthetic_cifar10_tarball(tmp_path):
    d = tmp_path / "cifar10"
    d.mkdir()
    want = _make_cifar10_tar(d / "cifar-10-python.tar.gz")
    c = load_cifar("cifar10", data_dir=tmp_path, source="tarball", verify=False)
    assert np.array_equal(c.x_train, want["x_train"]) and np.array_equal(c.x_test, want["x_test"])
    assert c.y_train.tolist() == want["y_train"].tolist() and c.y_test.dtype == np.int64
    assert c.label_names == CIFAR10_NAMES
    assert c.meta["subset"] is False and c.meta["md5_verified"] is False
    # with verification on, the (non-official) tarball fails its MD5 check
    with pytest.raises(DataError) as ei:
        load_cifar("cifar10", data_dir=tmp_path, source="tarball")
    msg = str(ei.value)
    assert f"cifar-10-python.tar.gz in {d} fails its MD5 check (expected c58f30108f718f92721af3b95e74349a" in msg


def test_extracted_folder(tmp_path):
    want = _make_cifar10_tar(tmp_path / "t.tar.gz")
    with tarfile.open(tmp_path / "t.tar.gz") as tf:
        tf.extractall(tmp_path / "root", filter="data")
    c = load_cifar("cifar10", data_dir=tmp_path / "root", download=False)
    assert np.array_equal(c.x_test, want["x_test"]) and c.meta["source"].startswith("extracted")


def test_synthetic_cifar100_tarball(tmp_path):
    rng = np.random.default_rng(2)
    fine = [f"class{i:02d}" for i in range(100)]
    coarse = [f"super{i:02d}" for i in range(20)]
    data = {}
    with tarfile.open(tmp_path / "cifar-100-python.tar.gz", "w:gz") as tf:
        for split, n in (("train", 5), ("test", 3)):
            x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            yf = rng.integers(0, 100, n)
            batch = {b"filenames": [b"f"] * n, b"batch_label": split.encode(), b"fine_labels": yf.tolist(),
                     b"coarse_labels": (yf // 5).tolist(), b"data": x.transpose(0, 3, 1, 2).reshape(n, -1)}
            _add(tf, f"cifar-100-python/{split}", _pickle_bytes(batch))
            data[split] = (x, yf)
        _add(tf, "cifar-100-python/meta", _pickle_bytes(
            {b"fine_label_names": [s.encode() for s in fine], b"coarse_label_names": [s.encode() for s in coarse]}))
    c = load_cifar("cifar100", path=tmp_path / "cifar-100-python.tar.gz", verify=False)
    assert np.array_equal(c.x_train, data["train"][0]) and c.y_test.tolist() == data["test"][1].tolist()
    assert c.y_train_coarse.tolist() == (data["train"][1] // 5).tolist()
    assert c.label_names == tuple(fine) and c.coarse_label_names == tuple(coarse)


class _Evil:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_malicious_pickle_is_not_executed(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "cifar-10-python.tar.gz"
    _make_cifar10_tar(path)
    # rebuild the archive with one batch replaced by a pickle that would call os.mkdir
    with tarfile.open(path) as tf:
        members = {m.name: tf.extractfile(m).read() for m in tf if m.isfile()}
    members["cifar-10-batches-py/data_batch_3"] = pickle.dumps({b"data": _Evil(str(target))}, protocol=2)
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            _add(tf, name, data)
    with pytest.raises(DataError, match=r"data_batch_3 in cifar-10-python.tar.gz .*global \w+\.mkdir is not allowed"):
        load_cifar("cifar10", path=path, verify=False)
    assert not target.exists()


def test_truncated_and_incomplete_tarballs(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    _make_cifar10_tar(path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz in .* is truncated or not a valid tar.gz"):
        load_cifar("cifar10", path=path, verify=False)
    with tarfile.open(path, "w:gz") as tf:
        _add(tf, "cifar-10-batches-py/data_batch_1", b"")
    with pytest.raises(DataError, match="lacks cifar-10-batches-py/data_batch_2"):
        load_cifar("cifar10", path=path, verify=False)


def test_safe_unpickle_arrays():
    arrays = {
        "be": np.arange(6, dtype=">i4").reshape(2, 3),
        "f": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
        "u8": np.arange(5, dtype=np.uint8),
        "empty": np.zeros((0, 3), dtype=np.int64),
    }
    for proto in (2, 4, 5):
        out = C.safe_unpickle(pickle.dumps({"a": arrays, "l": [1, 2.5, b"x", "y"]}, protocol=proto))
        for k, v in arrays.items():
            assert np.array_equal(out["a"][k], v) and out["a"][k].dtype.newbyteorder("=") == v.dtype.newbyteorder("=")
        assert out["l"] == [1, 2.5, b"x", "y"]
    with pytest.raises(pickle.UnpicklingError, match="not a plain numeric type"):
        C.safe_unpickle(pickle.dumps(np.array(["a"], dtype=object), protocol=2))


# --------------------------------------------------------------------------- download paths


def test_offline_and_no_download_errors(tmp_path):
    with pytest.raises(DataError) as ei:
        load_cifar("cifar100", data_dir=tmp_path, download=False)
    assert "cifar-100-python.tar.gz not found in" in str(ei.value) and "download=True" in str(ei.value)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(DataError) as ei:
        load_cifar("cifar10", data_dir=tmp_path, mirrors=[f"http://127.0.0.1:{port}/"], progress=False)
    msg = str(ei.value)
    assert "could not download cifar-10-python.tar.gz" in msg and str(tmp_path / "cifar10") in msg


def test_download_from_local_mirror(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    want = _make_cifar10_tar(mirror / "cifar-10-python.tar.gz")
    md5 = hashlib.md5((mirror / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
    name, _, folder = C.TARBALLS["cifar10"]
    monkeypatch.setitem(C.TARBALLS, "cifar10", (name, md5, folder))
    c = load_cifar("cifar10", data_dir=tmp_path / "root", mirrors=[mirror.as_uri()], progress=False)
    assert (tmp_path / "root" / "cifar10" / name).is_file()
    assert c.meta["md5"] == md5 and c.meta["md5_verified"] is True
    assert np.array_equal(c.x_train, want["x_train"])


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="cifar10"):
        load_cifar("cifar1000", data_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="source"):
        load_cifar("cifar10", data_dir=tmp_path, source="web")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="does not exist"):
        load_cifar("cifar10", path=tmp_path / "nope.npz")


def _py2_style_batch(x: np.ndarray, labels: list[int]) -> bytes:
    """Hand-written protocol-2 pickle as Python 2 cPickle wrote the official batches.

    Python 2 ``str`` objects (keys, dtype code, raw array data) appear as
    SHORT_BINSTRING/BINSTRING opcodes, which ``encoding="bytes"`` turns into bytes.
    """
    import struct

    def sbs(s: bytes) -> bytes:  # SHORT_BINSTRING
        return b"U" + bytes([len(s)]) + s

    def bi(v: int) -> bytes:  # BININT
        return b"J" + struct.pack("<i", v)

    raw = x.tobytes()
    shape = b"(" + b"".join(bi(s) for s in x.shape) + b"t"
    dtype = b"cnumpy\ndtype\n" + sbs(b"u1") + b"K\x00K\x01\x87R" + b"(K\x03" + sbs(b"|") + b"NNN" + bi(-1) + bi(-1) + b"K\x00tb"
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + b"K\x00\x85" + sbs(b"b") + b"\x87R"
        + b"(K\x01" + shape + dtype + b"\x89" + b"T" + struct.pack("<I", len(raw)) + raw + b"tb"
    )
    lab = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return b"\x80\x02}(" + sbs(b"data") + array + sbs(b"labels") + lab + b"u."


def test_python2_style_pickle_matches_numpy():
    x = np.arange(2 * 3072, dtype=np.uint64).astype(np.uint8).reshape(2, 3072)
    blob = _py2_style_batch(x, [3, 7])
    with warnings.catch_warnings():  # numpy.core is deprecated in NumPy 2
        warnings.simplefilter("ignore", DeprecationWarning)
        reference = pickle.loads(blob, encoding="bytes")  # noqa: S301 (our own bytes)
    ours = C.safe_unpickle(blob)
    assert set(ours) == {b"data", b"labels"} and ours[b"labels"] == [3, 7]
    assert np.array_equal(ours[b"data"], reference[b"data"]) and ours[b"data"].dtype == np.uint8
