"""MNIST-backrand: seeded regeneration from MNIST, and the original .amat format."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from analogtrain.data import backrand as B
from analogtrain.data import load_backrand_amat, load_dataset, load_mnist_backrand
from analogtrain.data.mnist import load_mnist_arrays
from analogtrain.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def mnist_arrays(shared_data: Path) -> dict[str, np.ndarray]:
    arrays, _ = load_mnist_arrays(shared_data, download=False, progress=False)
    return arrays


def _regen(arrays, **kw):
    return B.regenerate_backrand(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], **kw)


SMALL = {"n_train": 300, "n_valid": 50, "n_test": 400}


# --------------------------------------------------------------------------- regeneration


def test_same_seed_same_data_other_seed_other_data(mnist_arrays):
    a = _regen(mnist_arrays, seed=0, **SMALL)
    b = _regen(mnist_arrays, seed=0, **SMALL)
    c = _regen(mnist_arrays, seed=1, **SMALL)
    for key in ("x_train", "y_train", "x_valid", "x_test", "idx_test"):
        assert np.array_equal(a[key], b[key])
    assert not np.array_equal(a["x_train"], c["x_train"])
    assert not np.array_equal(a["idx_train"], c["idx_train"])


def test_small_sizes_are_prefixes_of_larger(mnist_arrays):
    small = _regen(mnist_arrays, **SMALL)
    big = _regen(mnist_arrays, n_train=1000, n_valid=200, n_test=1000)
    for split in ("train", "valid", "test"):
        n = len(small[f"x_{split}"])
        assert np.array_equal(small[f"x_{split}"], big[f"x_{split}"][:n])
        assert np.array_equal(small[f"idx_{split}"], big[f"idx_{split}"][:n])


def test_recipe_properties(mnist_arrays):
    g = _regen(mnist_arrays, **SMALL)
    all_x = np.concatenate([mnist_arrays["x_train"], mnist_arrays["x_test"]])
    all_y = np.concatenate([mnist_arrays["y_train"], mnist_arrays["y_test"]])
    assert g["x_train"].shape == (300, 28, 28) and g["x_train"].dtype == np.float32
    for split in ("train", "valid", "test"):
        x, idx = g[f"x_{split}"], g[f"idx_{split}"]
        assert np.array_equal(g[f"y_{split}"], all_y[idx])  # labels follow their digits
        digit = all_x[idx].astype(np.float32) / 255
        assert np.all(x >= digit) and x.min() >= 0 and x.max() <= 1  # max(digit, noise)
        assert np.all(x[digit == 1.0] == 1.0)  # full ink stays full ink
        bg = x[digit == 0]
        assert abs(bg.mean() - 0.5) < 0.01 and abs(bg.var() - 1 / 12) < 0.005  # U[0, 1)
    # train and valid come from MNIST's training set; no image is used twice
    assert g["idx_train"].max() < 60_000 and g["idx_valid"].max() < 60_000
    used = np.concatenate([g["idx_train"], g["idx_valid"], g["idx_test"]])
    assert len(np.unique(used)) == len(used)


def test_combine_replace(mnist_arrays):
    a = _regen(mnist_arrays, n_train=50, n_valid=0, n_test=0, combine="max")
    r = _regen(mnist_arrays, n_train=50, n_valid=0, n_test=0, combine="replace")
    digit = mnist_arrays["x_train"][a["idx_train"]].astype(np.float32) / 255
    assert np.array_equal(r["x_train"][digit == 0], a["x_train"][digit == 0])
    assert np.array_equal(r["x_train"][digit > 0], digit[digit > 0])


def test_full_sizes(shared_data):
    t0 = time.perf_counter()
    ds = load_dataset("mnist-backrand", data_dir=shared_data, download=False, progress=False)
    elapsed = time.perf_counter() - t0
    assert (ds.n_train, ds.n_valid, ds.n_test) == (10_000, 2_000, 50_000)
    assert ds.x_train.shape == (10_000, 528) and ds.image_shape == (22, 24)
    assert ds.x_valid is not None and ds.x_valid.dtype == torch.float32
    assert ds.meta["regenerated"] is True and ds.meta["seed"] == 0 and "max(digit, background)" in ds.meta["recipe"]
    n_tr, n_te = ds.meta["test_from_mnist_train"], ds.meta["test_from_mnist_test"]
    assert n_tr + n_te == 50_000 and 0 < n_te <= 10_000
    counts = torch.bincount(ds.y_train, minlength=10)
    assert int(counts.min()) > 800  # a random draw covers every class
    assert elapsed < 15


def test_loader_small_and_full_variant(shared_data):
    ds = load_mnist_backrand(shared_data, download=False, source="regenerate", crop=False, seed=3, **SMALL)
    assert ds.name == "mnist-backrand-full" and ds.image_shape == (28, 28)
    assert (ds.n_train, ds.n_valid, ds.n_test) == (300, 50, 400)
    cropped = load_dataset("mnist-backrand", data_dir=shared_data, download=False, seed=3, **SMALL)
    assert torch.equal(ds.x_test.view(-1, 28, 28)[:, 3:25, 2:26].reshape(-1, 528), cropped.x_test)
    assert cropped.meta["sizes"] == {"train": 300, "valid": 50, "test": 400}


def test_bad_arguments(shared_data):
    with pytest.raises(ConfigError, match="n_train"):
        load_mnist_backrand(shared_data, n_train=10_001)
    with pytest.raises(ConfigError, match="source"):
        load_mnist_backrand(shared_data, source="web")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="combine"):
        load_mnist_backrand(shared_data, download=False, combine="add", **SMALL)  # type: ignore[arg-type]


def test_regeneration_without_mnist_is_a_clear_error(tmp_path):
    with pytest.raises(DataError) as ei:
        load_mnist_backrand(tmp_path, download=False, **SMALL)
    msg = str(ei.value)
    assert msg.startswith("MNIST-backrand is regenerated from MNIST")
    assert "train-images-idx3-ubyte.gz not found" in msg and "\n" not in msg


# --------------------------------------------------------------------------- .amat files


def _write_amat(path: Path, images: np.ndarray, labels: np.ndarray, transposed: bool) -> None:
    imgs = images.transpose(0, 2, 1) if transposed else images
    rows = np.concatenate([imgs.reshape(len(imgs), -1), labels[:, None].astype(np.float64)], axis=1)
    np.savetxt(path, rows, fmt="%.8e", delimiter="  ")


@pytest.fixture(scope="module")
def small_backrand(mnist_arrays):
    g = _regen(mnist_arrays, n_train=8, n_valid=0, n_test=4, seed=5)
    return g["x_train"], g["y_train"], g["x_test"], g["y_test"]


@pytest.mark.parametrize("stored_transposed", [True, False])
def test_amat_round_trip_detects_orientation(tmp_path, small_backrand, stored_transposed):
    xtr, ytr, xte, yte = small_backrand
    _write_amat(tmp_path / B.AMAT_TRAIN, xtr, ytr, stored_transposed)
    _write_amat(tmp_path / B.AMAT_TEST, xte, yte, stored_transposed)
    ds = load_backrand_amat(tmp_path / B.AMAT_TRAIN, tmp_path / B.AMAT_TEST, crop=False, valid_rows=2)
    assert ds.meta["amat_transposed"] is stored_transposed
    assert ds.meta["amat_orientation"] == "detected from the mean image"
    assert ds.meta["regenerated"] is False
    assert (ds.n_train, ds.n_valid, ds.n_test) == (6, 2, 4)
    np.testing.assert_allclose(ds.x_train.numpy(), xtr[:6].reshape(6, -1), atol=1e-7)
    np.testing.assert_allclose(ds.x_valid.numpy(), xtr[6:].reshape(2, -1), atol=1e-7)
    np.testing.assert_allclose(ds.x_test.numpy(), xte.reshape(4, -1), atol=1e-7)
    assert ds.y_train.tolist() == ytr[:6].tolist() and ds.y_test.tolist() == yte.tolist()
    # the caller can force the orientation
    forced = load_backrand_amat(tmp_path / B.AMAT_TRAIN, tmp_path / B.AMAT_TEST, crop=False,
                                valid_rows=2, transposed=not stored_transposed)
    assert forced.meta["amat_orientation"] == "given by the caller"
    assert not torch.allclose(forced.x_test, ds.x_test)
    cropped = load_backrand_amat(tmp_path / B.AMAT_TRAIN, tmp_path / B.AMAT_TEST, valid_rows=2)
    assert cropped.x_test.shape == (4, 528)


def test_detect_transposed_needs_digits():
    rng = np.random.default_rng(0)
    assert B.detect_transposed(rng.random((20, 28, 28))) is None


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda rows: rows.__setitem__(2, rows[2][:-1]), r"has 784 values on row 3, expected 785"),
        (lambda rows: rows.__setitem__(1, rows[1] + [0.5]), r"has 786 values on row 2"),
        (lambda rows: rows[0].__setitem__(10, 1.5), r"pixel value 1.5 on row 1, expected values in \[0, 1\]"),
        (lambda rows: rows[3].__setitem__(784, 10.0), r"label 10.0 on row 4, expected an integer 0-9"),
        (lambda rows: rows[3].__setitem__(784, 2.5), r"label 2.5 on row 4"),
        (lambda rows: rows[1].__setitem__(5, "abc"), r"non-numeric value on row 2"),
    ],
)
def test_bad_amat_rows(tmp_path, edit, pattern):
    rows = [[0.25] * 784 + [3.0] for _ in range(4)]
    edit(rows)
    path = tmp_path / B.AMAT_TEST
    path.write_text("\n".join(" ".join(str(v) for v in r) for r in rows) + "\n")
    good = tmp_path / B.AMAT_TRAIN
    good.write_text("\n".join(" ".join(["0.1"] * 784 + ["1"]) for _ in range(3)) + "\n")
    with pytest.raises(DataError, match=pattern) as ei:
        load_backrand_amat(good, path, valid_rows=1)
    assert f"{B.AMAT_TEST} in {tmp_path}" in str(ei.value)


def test_amat_not_text_or_empty(tmp_path):
    good = tmp_path / "good.amat"
    good.write_text(" ".join(["0.1"] * 784 + ["1"]) + "\n")
    (tmp_path / "bin.amat").write_bytes(b"\x89PNG\x00\xff")
    with pytest.raises(DataError, match="bin.amat .* is not a text file"):
        load_backrand_amat(good, tmp_path / "bin.amat", valid_rows=0)
    (tmp_path / "empty.amat").write_text("\n")
    with pytest.raises(DataError, match="empty.amat .* is empty"):
        load_backrand_amat(good, tmp_path / "empty.amat", valid_rows=0)
    with pytest.raises(DataError, match="need more than the 2000 validation rows"):
        load_backrand_amat(good, good)


def test_auto_prefers_amat_files_and_checks_row_counts(tmp_path, small_backrand):
    xtr, ytr, xte, yte = small_backrand
    d = tmp_path / "mnist-backrand"
    d.mkdir()
    _write_amat(d / B.AMAT_TRAIN, xtr, ytr, True)
    _write_amat(d / B.AMAT_TEST, xte, yte, True)
    with pytest.raises(DataError, match=rf"{B.AMAT_TRAIN} in .* has 8 rows, expected 12000"):
        load_mnist_backrand(tmp_path, download=False)


def test_amat_from_zip(tmp_path, small_backrand):
    xtr, ytr, xte, yte = small_backrand
    _write_amat(tmp_path / B.AMAT_TRAIN, xtr, ytr, True)
    _write_amat(tmp_path / B.AMAT_TEST, xte, yte, True)
    root = tmp_path / "root"
    root.mkdir()
    with zipfile.ZipFile(root / B.AMAT_ZIP, "w") as zf:
        zf.write(tmp_path / B.AMAT_TRAIN, B.AMAT_TRAIN)
        zf.write(tmp_path / B.AMAT_TEST, B.AMAT_TEST)
    found = B._read_amat_sources(root)
    assert found is not None
    (tr, tr_name, tr_where), (te, te_name, te_where) = found["train"], found["test"]
    assert tr_where == str(root / B.AMAT_ZIP)
    ds = load_backrand_amat(tr, te, valid_rows=2, crop=False, _names=((tr_name, tr_where), (te_name, te_where)))
    np.testing.assert_allclose(ds.x_test.numpy(), xte.reshape(4, -1), atol=1e-7)
    # through the loader the tiny archive is found, then rejected for its size
    with pytest.raises(DataError, match=rf"{B.AMAT_TRAIN} in {root / B.AMAT_ZIP} has 8 rows"):
        load_mnist_backrand(root, download=False, source="amat")


def test_bad_zip_and_missing_amat(tmp_path):
    (tmp_path / B.AMAT_ZIP).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=rf"archive {B.AMAT_ZIP} in .* is not a readable zip file"):
        load_mnist_backrand(tmp_path, download=False, source="amat")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as ei:
        load_mnist_backrand(empty, download=False, source="amat")
    msg = str(ei.value)
    assert B.AMAT_TRAIN in msg and str(empty / "mnist-backrand") in msg and "source='regenerate'" in msg


def test_no_validation_split_is_allowed(shared_data):
    from analogtrain.data import load_mnist_backrand

    d = load_mnist_backrand(shared_data / "mnist", n_train=20, n_valid=0, n_test=10)
    assert tuple(d.x_train.shape) == (20, 528)
    assert d.x_valid is None or d.x_valid.shape[0] == 0
