"""benchmarks/memory.py: it counts the state the crossbars hold once per storage, and the
estimate the memory check uses before a run starts is never below that state."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
from conftest import REPO_ROOT

import analogtrain as at
from analogtrain.memory import bytes_per_synapse, network_synapses
from analogtrain.network import build_mlp

_spec = importlib.util.spec_from_file_location("memory_bench", REPO_ROOT / "benchmarks" / "memory.py")
memory_bench = importlib.util.module_from_spec(_spec)
sys.modules["memory_bench"] = memory_bench
_spec.loader.exec_module(memory_bench)


def test_state_bytes_counts_each_storage_once():
    class Holder:  # an analogtrain-like object: its tensors are walked
        pass

    Holder.__module__ = "analogtrain.fake"
    h = Holder()
    a = torch.zeros(100)
    h.a, h.view_of_a, h.b, h.both = a, a[10:], torch.zeros(7, dtype=torch.float64), [a, {"x": a}]
    assert memory_bench.state_bytes(h) == 100 * 4 + 7 * 8


@pytest.mark.parametrize("preset", ["nature2018", "2pcm"])
def test_the_memory_check_estimate_covers_the_state_held(preset):
    """The MNIST network of the benchmark (per-row and per-column tensors and the tracked synapses
    are small beside its arrays, as in any network worth checking)."""
    cfg = at.get_preset(preset, {"training": {"chips": 2, "hidden": [250, 125]}})
    mlp, _ = build_mlp(cfg, 528, 10)
    per_synapse = memory_bench.state_bytes(mlp) / (2 * network_synapses([528, 250, 125, 10]))
    assert 20 < per_synapse <= bytes_per_synapse(cfg.chip)
