"""benchmarks/speed.py: it must time what a user's run does (``Trainer.train``, continued from
pass to pass as one long run, transfers every interval and their time kept apart), show plain
SGD the same images in the same order, and train the same with or without the subnormal flush."""

from __future__ import annotations

import importlib.util
import sys

import torch
from conftest import REPO_ROOT

import analogtrain.training as training
from analogtrain.presets import get_preset
from analogtrain.training import Trainer, epoch_order

_spec = importlib.util.spec_from_file_location("speed", REPO_ROOT / "benchmarks" / "speed.py")
speed = importlib.util.module_from_spec(_spec)
sys.modules["speed"] = speed  # dataclasses look their module up there
_spec.loader.exec_module(speed)

SMALL = {"chip": {"transfer": {"interval_examples": 25}}}


def _data(n: int = 70):
    g = torch.Generator().manual_seed(3)
    return torch.rand(n, 528, generator=g), torch.randint(0, 10, (n,), generator=g)


def _net(n: int = 70, overrides=SMALL):
    x, y = _data(n)
    return speed.build(x, y, x[:10], y[:10], "nature2018", 1, False, overrides)


def test_transfers_fall_every_interval_across_passes():
    net = _net()
    counts = []
    for k in (20, 25, 25):  # 70 examples in three passes: transfers after 25 and 50
        sec, transfer_s, transfers = speed.chip(net, k)
        assert 0 < transfer_s < sec if transfers else transfer_s == 0
        counts.append(transfers)
    assert counts == [0, 1, 1]
    assert net.seen == 70 and net.trainer.state.transfers == 2


def test_passes_train_as_one_uninterrupted_run():
    """Passes of 20, 25, 25 and 5 examples over a 70-image set (an epoch end inside the last)
    leave the network, and the epoch's evaluation, exactly as one ``train`` call does."""
    net = _net()
    for k in (20, 25, 25, 5):
        speed.chip(net, k)
    x, y = _data()
    cfg = get_preset("nature2018", {**SMALL, "training": {"chips": 1, "compile": "off"}})
    ref = Trainer(cfg, x, y, x[:10], y[:10])
    ref.train(epochs=1, progress=False)
    ref.train(epochs=2, progress=False, on_step=lambda t: t.state.examples_seen >= 75)
    assert net.seen == ref.state.examples_seen == 75
    assert [r.test_accuracy for r in net.trainer.state.history] == [r.test_accuracy for r in ref.state.history]
    for a, b in zip(net.trainer.mlp.layers, ref.mlp.layers):
        assert torch.equal(a.weights(), b.weights())


def test_plain_sgd_sees_the_images_the_trainer_trains_on():
    net = _net(12, {})
    x_all = net.trainer.x_train
    seen: list[torch.Tensor] = []
    step = net.trainer.mlp.train_example

    def record(x, label):
        seen.append(x.clone())
        return step(x, label)

    net.trainer.mlp.train_example = record
    speed.chip(net, 7)
    speed.chip(net, 11)  # crosses the end of the first epoch
    order = speed.image_order(12, net.trainer.config.training.seed, 0, 18)
    assert torch.equal(torch.stack(seen), x_all[order])
    assert torch.equal(order[:12].sort().values, torch.arange(12))  # the first epoch is a permutation
    assert torch.equal(order[12:], epoch_order(12, net.trainer.config.training.seed, 1)[:6])
    assert torch.equal(speed.image_order(12, 0, 12, 6), speed.image_order(12, 0, 0, 18)[12:])


def test_flush_changes_no_result_and_restores_the_default():
    weights = []
    original = training.denormals_flushed
    for flush in (True, False):
        net = _net(30, {"chip": {"transfer": {"interval_examples": 20}}})
        speed.chip(net, 30, flush)
        weights.append([layer.weights().clone() for layer in net.trainer.mlp.layers])
        # after the pass subnormal floats are back to torch's default: they survive arithmetic
        assert float(torch.tensor(1e-40) * torch.tensor(1.0)) > 0
        assert training.denormals_flushed is original
    for a, b in zip(*weights):
        assert torch.equal(a, b)


def test_keeping_subnormals_turns_the_flush_off_inside_train():
    flushed = []
    original = training.denormals_flushed
    with speed.subnormals_kept():
        flushed.append(training.denormals_flushed is original)
    assert flushed == [False]
    assert training.denormals_flushed is original


def test_breakdown_parts_a_profiled_pass_of_the_compiled_step():
    """--breakdown's parts add up to the pass's wall time; the fused kernels, the other kernels of
    the step and the compiled call's own work are found under torch's event names, and a transfer
    and an epoch's evaluation are kept apart from the step."""
    from torch._inductor import config as inductor_config

    x, y = _data(40)
    with inductor_config.patch({"cpp.enable_kernel_profile": True}):
        net = speed.build(x, y, x[:10], y[:10], "nature2018", 1, True, SMALL)
        speed.chip(net, 5)  # compiles the step
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        sec, _, transfers = speed.chip(net, 40)  # a transfer after 25 examples, the evaluation after 40
    parts = speed.breakdown(prof.events(), sec)
    assert transfers == 1
    assert net.trainer.state.epoch == 1 and len(net.trainer.state.history) == 1

    def labelled(ev):
        while ev is not None and ev.name != speed.OUTSIDE_STEP:
            ev = ev.cpu_parent
        return ev is not None
    # the evaluation's prediction (network.predict's argmax) is labelled, the training steps' are not
    assert any(ev.name == "aten::argmax" and labelled(ev) for ev in prof.events())
    assert abs(sum(parts.values()) - sec) < 1e-9
    for name in ("fused kernels", "other kernels in the step", "compiled call overhead", "random numbers drawn",
                 "between steps"):
        assert parts[name] > 0, name
    assert parts["rest: Python and small ops"] > 0
