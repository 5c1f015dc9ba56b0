"""benchmarks/speed.py: its chip loop must train as a long run does (transfers every interval,
counted across timed passes, and their time kept apart) with or without the subnormal flush."""

from __future__ import annotations

import importlib.util
import sys

import torch

from conftest import REPO_ROOT

_spec = importlib.util.spec_from_file_location("speed", REPO_ROOT / "benchmarks" / "speed.py")
speed = importlib.util.module_from_spec(_spec)
sys.modules["speed"] = speed  # dataclasses look their module up there
_spec.loader.exec_module(speed)


def _data(n: int = 70):
    g = torch.Generator().manual_seed(3)
    return torch.rand(n, 528, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_transfers_fall_every_interval_across_passes():
    x, y = _data()
    net = speed.build(x, y, "nature2018", 1, False, {"chip": {"transfer": {"interval_examples": 25}}})
    counts = []
    for a, b in ((0, 20), (20, 45), (45, 70)):  # 70 examples in three passes: transfers after 25 and 50
        sec, transfer_s, transfers = speed.chip(x[a:b], y[a:b], net)
        assert 0 <= transfer_s < sec
        counts.append(transfers)
    assert counts == [0, 1, 1]
    assert net.seen == 70


def test_flush_changes_no_result_and_restores_the_default():
    x, y = _data(30)
    weights = []
    for flush in (True, False):
        net = speed.build(x, y, "nature2018", 1, False, {"chip": {"transfer": {"interval_examples": 20}}})
        speed.chip(x, y, net, flush)
        weights.append([layer.weights().clone() for layer in net.mlp.layers])
        # after the pass subnormal floats are back to torch's default: they survive arithmetic
        assert float(torch.tensor(1e-40) * torch.tensor(1.0)) > 0
    for a, b in zip(*weights):
        assert torch.equal(a, b)


def test_pretraining_repeats_the_untimed_images_as_often_as_needed():
    assert speed.pretraining_passes(0, 58000) == []
    assert speed.pretraining_passes(0, 0) == []  # --images the whole set, no pretraining
    assert speed.pretraining_passes(30000, 58000) == [30000]
    assert speed.pretraining_passes(150000, 58000) == [58000, 58000, 34000]
    assert sum(speed.pretraining_passes(116001, 58000)) == 116001
