"""The examples run in CI on small slices, analog and digital, and really train."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("mode", [[], ["--digital"]])
def test_lenet5_example_trains_on_a_slice(shared_data, mode, capsys):
    res = _load("lenet5_mnist").main(["--data-dir", str(shared_data / "mnist"), "--epochs", "1",
                                      "--limit-train", "400", "--limit-test", "200", *mode])
    assert res["train_images"] == 400 and res["test_images"] == 200
    assert 0.0 <= res["test_accuracy"][0] <= 1.0
    assert "epoch 1: test accuracy" in capsys.readouterr().out


def test_lenet5_example_has_every_layer_analog():
    mod = _load("lenet5_mnist")
    import analogtrain.nn as ann

    model = ann.convert(mod.LeNet5())
    assert len(ann.analog_layers(model)) == 5
    assert not [m for m in model.modules() if type(m) in (torch.nn.Linear, torch.nn.Conv2d)]


def test_cifar_head_example_trains_on_a_slice(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ANALOGTRAIN_CACHE_DIR", str(tmp_path))  # a fresh feature cache
    res = _load("cifar_head").main(["--data-dir", str(shared_data), "--epochs", "1", "--limit-train", "100",
                                    "--limit-test", "50", "--input-size", "32"])
    assert res["features"] == 1280 and res["train_images"] == 100
    assert "epoch 1: test accuracy" in capsys.readouterr().out
