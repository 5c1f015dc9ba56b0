"""The embedded 8x8 digits, the Dataset container and the name registry."""

from __future__ import annotations

import pytest
import torch

from analogtrain.data import DATASETS, Dataset, load_dataset, load_digits
from analogtrain.errors import ConfigError


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


def test_shapes_and_ranges(digits):
    assert digits.name == "digits" and digits.image_shape == (8, 8) and digits.n_classes == 10
    assert digits.x_train.shape == (1437, 64) and digits.x_test.shape == (360, 64)
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64
    assert float(digits.x_train.min()) == 0.0 and float(digits.x_train.max()) == 1.0
    # values are multiples of 1/16
    assert torch.equal(digits.x_test * 16, (digits.x_test * 16).round())
    assert digits.meta["seed"] == 0 and digits.meta["regenerated"] is False


def test_split_is_stratified_and_complete(digits):
    test_counts = torch.bincount(digits.y_test, minlength=10)
    assert int(test_counts.min()) >= 35 and int(test_counts.max()) <= 37
    total = torch.bincount(digits.y_train, minlength=10) + test_counts
    assert total.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    # no image is in both splits
    train_rows = {tuple(r) for r in digits.x_train.tolist()}
    overlap = sum(tuple(r) in train_rows for r in digits.x_test.tolist())
    assert overlap <= 2  # the bundled data has a few exact duplicate images


def test_deterministic_per_seed(digits):
    again = load_digits()
    assert torch.equal(again.x_train, digits.x_train) and torch.equal(again.y_test, digits.y_test)
    other = load_digits(seed=1)
    assert not torch.equal(other.x_train, digits.x_train)
    assert load_digits(n_test=100).n_test == 100


def test_bad_arguments():
    with pytest.raises(ConfigError, match="n_test"):
        load_digits(n_test=5)
    with pytest.raises(ConfigError, match="seed"):
        load_digits(seed=-1)


def test_registry_and_dispatch():
    assert set(DATASETS) == {"digits", "mnist", "mnist-full", "mnist-backrand", "mnist-backrand-full"}
    assert all(isinstance(v, str) and "\n" not in v for v in DATASETS.values())
    ds = load_dataset("Digits")
    assert ds.n_train == 1437
    assert load_dataset("digits", n_test=200).n_test == 200


@pytest.mark.parametrize(("name", "suggestion"), [("mnsit", "mnist"), ("mnist-backrnd", "mnist-backrand")])
def test_unknown_name_did_you_mean(name, suggestion):
    with pytest.raises(ConfigError) as ei:
        load_dataset(name)
    msg = str(ei.value)
    assert f"did you mean {suggestion!r}" in msg
    assert "digits, mnist, mnist-full, mnist-backrand, mnist-backrand-full" in msg


def test_unknown_name_without_close_match():
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'; known datasets"):
        load_dataset("imagenet")


def test_subset_and_repr(digits):
    s = digits.subset(10, 5)
    assert (s.n_train, s.n_test) == (10, 5)
    assert torch.equal(s.y_train, digits.y_train[:10])
    assert digits.n_train == 1437  # original untouched (frozen)
    assert "train=10" in repr(s) and "inputs=64" in repr(s)
    with pytest.raises(ConfigError):
        digits.subset(1.5, 2)  # type: ignore[arg-type]


def test_dataset_validates_its_fields():
    x = torch.zeros(4, 6)
    y = torch.zeros(4, dtype=torch.int64)
    Dataset("t", x, y, x, y, 2, (2, 3))
    with pytest.raises(ValueError, match="image_shape"):
        Dataset("t", x, y, x, y, 2, (2, 2))
    with pytest.raises(ValueError, match="y_train"):
        Dataset("t", x, y[:3], x, y, 2, (2, 3))
    with pytest.raises(ValueError, match="float32"):
        Dataset("t", x.double(), y, x, y, 2, (2, 3))
    with pytest.raises(ValueError, match="both"):
        Dataset("t", x, y, x, y, 2, (2, 3), x_valid=x)
    ds = Dataset("t", x, y, x, y, 2, (2, 3), x_valid=x, y_valid=y)
    assert ds.subset(1, 1, n_valid=2).n_valid == 2
