"""The compiled training step is the eager step: same numbers up to float rounding, same seed
same run, and a clean fall-back when compiling is impossible."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch

import analogtrain as at
from analogtrain.network import build_mlp


def _net(preset: str, seed: int = 0, **chip):
    cfg = at.get_preset(preset, {"training": {"seed": seed, "chips": 2, "hidden": [12, 6]}, "chip": chip})
    mlp, _ = build_mlp(cfg, 30, 4)
    return cfg, mlp


def _examples(n: int = 12):
    g = torch.Generator().manual_seed(7)
    x = torch.rand(n, 30, generator=g)
    x[x < 0.6] = 0.0  # most inputs zero, as for MNIST pixels: exercises the row-block path
    x[0] = torch.rand(30, generator=g)  # one dense example: the all-rows path of layer 1
    return x, torch.randint(0, 4, (n,), generator=g)


def _train(mlp, cfg, x, y):
    preds = []
    for i in range(x.shape[0]):
        preds.append(mlp.train_example(x[i], y[i]))
        mlp.advance_time(cfg.training.time_per_example_s)
    return torch.stack(preds)


def _state(mlp):
    out = []
    for layer in mlp.layers:
        c = layer.cells
        c.sync()
        out += [c.g_plus, c.g_minus] + ([c.v] if hasattr(c, "v") else [])
    return out


needs_compiler = pytest.mark.skipif(
    not (shutil.which("c++") or shutil.which("g++")) and not torch.cuda.is_available(),
    reason="torch.compile needs a C++ compiler on CPU (the fall-back test below covers its absence)")


@needs_compiler
@pytest.mark.parametrize("preset", ["nature2018", "nature2018-held-reference", "2pcm"])
def test_compiled_step_matches_eager_and_is_deterministic(preset):
    x, y = _examples()
    cfg, eager = _net(preset)
    _, comp = _net(preset)
    _, comp2 = _net(preset)
    assert comp.compile() and comp2.compile() and comp.compiled
    pe, pc, pc2 = _train(eager, cfg, x, y), _train(comp, cfg, x, y), _train(comp2, cfg, x, y)
    assert torch.equal(pc, pc2)
    for a, b in zip(_state(comp), _state(comp2)):
        assert torch.equal(a, b)  # same seed, same compiled run, bit for bit
    assert torch.equal(pe, pc)
    for a, b in zip(_state(eager), _state(comp)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    moved = sum(float((b - a).abs().sum()) for a, b in zip(_state(_net(preset)[1]), _state(comp)))
    assert moved > 0  # the run did change the state


@pytest.mark.parametrize("overrides", [
    {},
    {"update": {"pulse_mode": "rounded"}},
    {"periphery": {"output_noise": 0.01}},
    {"pcm": {"read_noise_us": 0.0, "read_noise_rel": 0.0}},
])
@pytest.mark.parametrize("preset", ["nature2018", "nature2018-held-reference", "2pcm"])
def test_noise_demand_matches_what_the_step_draws(preset, overrides):
    """The eager step raises if the pre-drawn random numbers are not used exactly."""
    x, y = _examples(4)
    cfg, mlp = _net(preset, **overrides)
    _train(mlp, cfg, x, y)


def test_compile_failure_falls_back_to_eager(monkeypatch):
    x, y = _examples(3)
    cfg, ref = _net("nature2018")
    _, mlp = _net("nature2018")

    def broken(fn, **_kw):
        def call(*a, **k):
            raise RuntimeError("no C++ compiler")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    assert mlp.compile()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        preds = _train(mlp, cfg, x, y)
    assert any("torch.compile failed" in str(w.message) for w in caught)
    assert not mlp.compiled
    assert torch.equal(preds, _train(ref, cfg, x, y))
    for a, b in zip(_state(ref), _state(mlp)):
        assert torch.equal(a, b)


def test_software_and_drift_stay_eager():
    _, sw = _net("software")
    assert not sw.compile() and not sw.compiled
    _, drift = _net("nature2018", pcm={"drift_nu": 0.05})
    assert not drift.compile()


@pytest.mark.parametrize("preset", ["nature2018", "2pcm"])
def test_the_compiled_step_is_traced_once_over_a_thousand_changing_examples(shared_data, preset):
    """MNIST examples have different numbers of non-zero pixels, so each step reads a block of
    rows of another size and draws another number of random words (and, for the 2-PCM cell,
    another number of normals for its pulsed cells): the step is traced once, with dynamic
    sizes, and never again."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    import analogtrain as at
    from analogtrain.training import Trainer

    d = at.load_dataset("mnist", shared_data / "mnist", download=False).subset(1000, 50)
    sizes = {int((x > 0).sum()) for x in d.x_train[:1000]}
    assert len(sizes) > 100  # the inputs really change
    cfg = at.get_preset(preset, {"training": {"epochs": 1, "compile": "on", "hidden": [32, 16]}})
    torch._dynamo.reset()
    counters.clear()
    Trainer(cfg, d.x_train, d.y_train, d.x_test, d.y_test, d.n_classes).train(progress=False)
    assert counters["stats"]["unique_graphs"] == 1
    assert counters["frames"]["total"] == 1


@pytest.mark.parametrize("compiled", [False, True])
def test_the_2pcm_step_draws_every_cells_normal_beforehand_where_counting_would_sync(monkeypatch, compiled):
    """On a GPU (here: the CPU told to behave so) the partial-SET noise is drawn with the step's
    other numbers, one normal per cell of the update: the eager step checks that the demand is
    used exactly, and the compiled step is the eager one (what the noise does to each device:
    tests/test_physics.py, in both modes)."""
    from analogtrain import cell, noise

    for module in (cell, noise):
        monkeypatch.setattr(module, "sparse_normals", lambda device: False)
    torch._dynamo.reset()
    x, y = _examples(6)
    cfg, eager = _net("2pcm")
    assert eager.layers[0].cells.update_normals(10) == 10
    _train(eager, cfg, x, y)  # raises if noise_demand() and the draws differ
    if compiled:
        _, comp = _net("2pcm")
        assert comp.compile()
        _train(comp, cfg, x, y)
        for a, b in zip(_state(eager), _state(comp)):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()
