"""MNIST: the real files from ../shared/data, and every way a file can be bad."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from analogtrain.data import Dataset, load_dataset, load_mnist
from analogtrain.data import mnist as M
from analogtrain.errors import ConfigError, DataError

README_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(scope="module")
def mnist(shared_data: Path) -> Dataset:
    return load_mnist(shared_data, download=False, progress=False)


@pytest.fixture(scope="module")
def mnist_full(shared_data: Path) -> Dataset:
    return load_dataset("mnist-full", data_dir=shared_data, download=False, progress=False)


# --------------------------------------------------------------------------- real data


def test_embedded_checksums_match_readme_and_files(shared_data):
    assert {n: s for n, s in M.FILES.values()} == README_SHA256
    for name, sha in README_SHA256.items():
        assert hashlib.sha256((shared_data / "mnist" / name).read_bytes()).hexdigest() == sha


def test_real_mnist_cropped(mnist):
    assert mnist.name == "mnist"
    assert mnist.x_train.shape == (60_000, 528) and mnist.x_test.shape == (10_000, 528)
    assert mnist.image_shape == (22, 24) and mnist.n_inputs == 528 and mnist.n_classes == 10
    assert mnist.x_train.dtype == torch.float32 and mnist.y_train.dtype == torch.int64
    assert float(mnist.x_train.min()) == 0.0 and float(mnist.x_train.max()) == 1.0
    assert mnist.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert torch.bincount(mnist.y_train, minlength=10).tolist() == TRAIN_CLASS_COUNTS
    assert int(torch.bincount(mnist.y_test).sum()) == 10_000
    assert mnist.x_valid is None and mnist.y_valid is None
    assert mnist.meta["crop"]["rows"] == [3, 25] and mnist.meta["crop"]["cols"] == [2, 26]
    assert mnist.meta["sha256"] == README_SHA256


def test_crop_is_the_documented_window(mnist, mnist_full):
    assert mnist_full.name == "mnist-full" and mnist_full.image_shape == (28, 28)
    assert mnist_full.x_train.shape == (60_000, 784)
    full = mnist_full.x_test.view(-1, 28, 28)
    assert torch.equal(full[:, 3:25, 2:26].reshape(-1, 528), mnist.x_test)
    assert torch.equal(mnist_full.y_test, mnist.y_test)
    # scaling is value / 255 exactly
    raw = np.frombuffer(gzip.decompress(Path(mnist.meta["files"]["t10k-images-idx3-ubyte.gz"]).read_bytes()),
                        np.uint8, offset=16).reshape(-1, 28, 28)
    assert torch.equal(full[:5], torch.from_numpy(raw[:5].astype(np.float32)) / 255)


def test_files_directly_in_data_dir(shared_data):
    arrays, meta = M.load_mnist_arrays(shared_data / "mnist", download=False, progress=False)
    assert arrays["x_train"].shape == (60_000, 28, 28) and arrays["y_test"].shape == (10_000,)


def test_custom_crop_and_bad_crop(shared_data):
    arrays, _ = M.load_mnist_arrays(shared_data, download=False)
    assert M.crop_images(arrays["x_test"], (0, 28), (0, 28)).shape == (10_000, 28, 28)
    with pytest.raises(ConfigError, match="crop window"):
        M.crop_images(arrays["x_test"], (3, 30), (2, 26))
    with pytest.raises(ConfigError, match="crop="):
        load_mnist(shared_data, download=False, crop="middle")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="fixes the crop"):
        load_dataset("mnist", data_dir=shared_data, crop=False)


def test_subset(mnist):
    small = mnist.subset(100, 20)
    assert small.n_train == 100 and small.n_test == 20
    assert torch.equal(small.x_train, mnist.x_train[:100])
    assert small.meta["subset"]["of"]["n_train"] == 60_000
    assert mnist.subset(10**9, 5).n_train == 60_000
    with pytest.raises(ConfigError):
        mnist.subset(-1, 5)


# --------------------------------------------------------------------------- bad files


def _idx_images(n: int, rows: int = 28, cols: int = 28, magic: int = 2051, extra: int = 0) -> bytes:
    return struct.pack(">IIII", magic, n, rows, cols) + bytes(n * rows * cols + extra)


def _idx_labels(labels: list[int] | np.ndarray, magic: int = 2049) -> bytes:
    return struct.pack(">II", magic, len(labels)) + bytes(np.asarray(labels, dtype=np.uint8))


def test_parse_small_hand_written_idx():
    p = Path("/x/small.gz")
    x = M.parse_idx_images(_idx_images(3), p, expected_count=3)
    assert x.shape == (3, 28, 28) and x.dtype == np.uint8
    y = M.parse_idx_labels(_idx_labels([0, 9, 3]), p, expected_count=3)
    assert y.tolist() == [0, 9, 3]


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (_idx_images(3, magic=2049), "magic number 2049, expected 2051 .*label file"),
        (_idx_images(3, rows=27), "holds 27x28 images, expected 28x28"),
        (_idx_images(3)[:-5], "has 2363 bytes after decompression, expected 2368"),
        (_idx_images(3, extra=1), "expected 2368 for 3 images"),
        (_idx_images(4), "says it holds 4 images, expected 3"),
        (b"\x00\x00\x08", "too short"),
    ],
)
def test_bad_image_idx(data, pattern):
    with pytest.raises(DataError, match=pattern) as ei:
        M.parse_idx_images(data, Path("/data/mnist/train-images-idx3-ubyte.gz"), expected_count=3)
    assert "train-images-idx3-ubyte.gz in /data/mnist" in str(ei.value)
    assert "delete it and rerun" in str(ei.value)


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (_idx_labels([1, 2, 3], magic=2051), "magic number 2051, expected 2049 .*image file"),
        (_idx_labels([1, 12, 3]), "label 12 at index 1, expected 0-9"),
        (_idx_labels([1, 2, 3])[:-1], "has 10 bytes after decompression, expected 11"),
        (_idx_labels([1, 2]), "says it holds 2 labels, expected 3"),
    ],
)
def test_bad_label_idx(data, pattern):
    with pytest.raises(DataError, match=pattern) as ei:
        M.parse_idx_labels(data, Path("/d/t10k-labels-idx1-ubyte.gz"), expected_count=3)
    assert "t10k-labels-idx1-ubyte.gz" in str(ei.value)


@pytest.fixture
def mnist_copy(shared_data, tmp_path) -> Path:
    """A writable copy of the four MNIST files in tmp_path/mnist."""
    d = tmp_path / "mnist"
    shutil.copytree(shared_data / "mnist", d)
    return d


def test_wrong_checksum_names_file(mnist_copy):
    f = mnist_copy / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(f.read_bytes())
    data[100] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(DataError) as ei:
        load_mnist(mnist_copy.parent, download=False)
    msg = str(ei.value)
    assert f"t10k-labels-idx1-ubyte.gz in {mnist_copy} fails its SHA-256 check" in msg
    assert "expected f7ae60f92e00" in msg and "\n" not in msg


def test_truncated_gzip_names_file(mnist_copy):
    f = mnist_copy / "t10k-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:2000])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz in .* is truncated"):
        load_mnist(mnist_copy.parent, download=False, verify=False)


def test_not_gzip_names_file(mnist_copy):
    (mnist_copy / "t10k-images-idx3-ubyte.gz").write_bytes(b"<html>404 not found</html>")
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz in .* is not a valid gzip file"):
        load_mnist(mnist_copy.parent, download=False, verify=False)


def test_valid_gzip_with_bad_content(mnist_copy):
    labels = np.zeros(10_000, dtype=np.uint8)
    labels[1234] = 10
    (mnist_copy / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_labels(labels)))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz .* label 10 at index 1234"):
        load_mnist(mnist_copy.parent, download=False, verify=False)
    # swapped image/label files are caught by the magic number
    (mnist_copy / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_images(10_000)))
    with pytest.raises(DataError, match="magic number 2051, expected 2049"):
        load_mnist(mnist_copy.parent, download=False, verify=False)


def test_count_mismatch_between_files(mnist_copy):
    (mnist_copy / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_labels(np.zeros(9_999))))
    with pytest.raises(DataError, match="says it holds 9999 labels, expected 10000"):
        load_mnist(mnist_copy.parent, download=False, verify=False)


def test_missing_file_without_download(tmp_path):
    with pytest.raises(DataError) as ei:
        load_mnist(tmp_path, download=False)
    msg = str(ei.value)
    assert "MNIST file train-images-idx3-ubyte.gz not found in" in msg
    assert str(tmp_path / "mnist") in msg and "\n" not in msg


def test_offline_download_gives_clear_error(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(DataError) as ei:
        load_mnist(tmp_path, mirrors=[f"http://127.0.0.1:{port}/mnist/", (tmp_path / "none").as_uri()],
                   progress=False)
    msg = str(ei.value)
    assert "could not download train-images-idx3-ubyte.gz" in msg
    assert f"put the original file in {tmp_path / 'mnist'} by hand" in msg
    assert not (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").exists()


def test_download_from_local_mirror(shared_data, tmp_path):
    root = tmp_path / "cache"
    ds = load_mnist(root, mirrors=[(shared_data / "mnist").as_uri() + "/"], progress=False)
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(README_SHA256)
    assert ds.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_env_var_is_used(shared_data, monkeypatch):
    monkeypatch.setenv("ANALOGTRAIN_DATA_DIR", str(shared_data))
    arrays, meta = M.load_mnist_arrays(download=False)
    assert meta["files"]["train-images-idx3-ubyte.gz"] == str(shared_data / "mnist" / "train-images-idx3-ubyte.gz")
