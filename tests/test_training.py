"""Training end to end: it learns, it is deterministic, the presets differ as they should."""

from __future__ import annotations

import pytest
import torch
from conftest import fresh_compilation

import analogtrain as at
from analogtrain.training import Trainer


@pytest.fixture(scope="module")
def digits():
    return at.load_dataset("digits")


def _trainer(preset: str, data, seed: int = 0, chips: int = 1, **training) -> Trainer:
    cfg = at.get_preset(preset, {"training": {"seed": seed, "chips": chips, "hidden": [32], **training},
                                 "chip": {"transfer": {"interval_examples": 500}}})
    return Trainer(cfg, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes)


def test_small_training_learns(digits):
    tr = _trainer("nature2018", digits, epochs=4, learning_rate=0.2)
    res = tr.train(progress=False)
    acc = res.final_test_accuracy_mean
    assert acc > 0.8, f"nature2018 reached only {acc:.3f} on digits"
    assert res.transfers == (4 * digits.n_train) // 500
    assert all(p > 0 for p in res.transfer_tuning_pulses)
    assert all(sum(p) > 0 for p in res.update_pulses)


def test_same_seed_same_result_and_different_seed_differs(digits):
    a = _trainer("nature2018", digits, seed=3, epochs=1)
    b = _trainer("nature2018", digits, seed=3, epochs=1)
    c = _trainer("nature2018", digits, seed=4, epochs=1)
    ra, rb, rc = (t.train(progress=False) for t in (a, b, c))
    for la, lb in zip(a.mlp.layers, b.mlp.layers):
        assert torch.equal(la.cells.g_plus, lb.cells.g_plus)
        assert torch.equal(la.cells.v, lb.cells.v)
    assert [h.test_accuracy for h in ra.history] == [h.test_accuracy for h in rb.history]
    assert not torch.equal(a.mlp.layers[0].cells.v, c.mlp.layers[0].cells.v)


def test_chips_are_independent_draws_of_the_same_run(digits):
    tr = _trainer("nature2018", digits, chips=3, epochs=1)
    res = tr.train(progress=False)
    cells = tr.mlp.layers[0].cells
    assert cells.v.shape[0] == 3
    assert not torch.equal(cells.mismatch.step_up_v[0], cells.mismatch.step_up_v[1])
    assert len(res.final_test_accuracy) == 3


def _chip_state(tr: Trainer, chip: int) -> list[torch.Tensor]:
    out = []
    for layer in tr.mlp.layers:
        out += [t[chip] for t in layer.cells.state_dict().values() if t.dim() > 0 and t.shape[0] == tr.mlp.chips]
        out += [layer.update_pulses[chip], layer.tracked_total[chip]]
    return out


@pytest.mark.parametrize(("preset", "compile"), [("nature2018", "off"), ("nature2018-held-reference", "off"),
                                                 ("2pcm", "off"), ("nature2018", "on"),
                                                 ("2pcm", "on")])
def test_a_chip_trains_the_same_alone_or_beside_others(digits, preset, compile):
    """Every chip draws from its own random stream (fabrication, programming, reads, pulse trains),
    so the first chips of a batch train bit for bit as a run of those chips alone (compiled: from
    a fresh compilation state, see conftest.fresh_compilation)."""
    if compile == "on":
        fresh_compilation()
    data = digits.subset(300, 60)
    kw = {"epochs": 2, "learning_rate": 0.2, "compile": compile}
    alone = _trainer(preset, data, chips=1, **kw)
    pair = _trainer(preset, data, chips=2, **kw)
    three = _trainer(preset, data, chips=3, **kw)
    ra, rp, r3 = (t.train(progress=False) for t in (alone, pair, three))
    assert r3.final_test_accuracy[:2] == rp.final_test_accuracy and rp.final_test_accuracy[:1] == ra.final_test_accuracy
    for c, small in ((0, alone), (0, pair), (1, pair)):
        for a, b in zip(_chip_state(small, c), _chip_state(three, c)):
            assert torch.equal(a, b)
    assert not torch.equal(three.mlp.layers[0].cells.g_plus[0], three.mlp.layers[0].cells.g_plus[2])


def test_software_baseline_is_plain_sgd(digits):
    """The digital array is exactly W += eta * delta x^T with delta = onehot - softmax."""
    tr = _trainer("software", digits, epochs=1, learning_rate=0.1)
    layer0 = [layer.weights() for layer in tr.mlp.layers]
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Sigmoid(), torch.nn.Linear(32, 10))
    with torch.no_grad():
        for lin, w in zip((net[0], net[2]), layer0):
            lin.weight.copy_(w[0, :, :-1])
            lin.bias.copy_(w[0, :, -1])
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = digits.x_train[:50], digits.y_train[:50]
    for i in range(50):
        tr.mlp.train_example(x[i], int(y[i]))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x[i:i + 1]), y[i:i + 1]).backward()
        opt.step()
    torch.testing.assert_close(tr.mlp.layers[0].weights()[0, :, :-1], net[0].weight.detach(), rtol=1e-4, atol=1e-5)


def test_2pcm_is_worse_than_the_full_cell(digits):
    res = {p: _trainer(p, digits, epochs=3, learning_rate=0.2).train(progress=False).final_test_accuracy_mean
           for p in ("nature2018", "2pcm")}
    assert res["2pcm"] < res["nature2018"] - 0.03, res


def test_layer_statistics_measure_spread_range_and_clipping(digits):
    """Known weights give known statistics; outputs beyond the ADC range are counted."""
    tr = _trainer("software", digits, epochs=1)
    w0, w1 = (layer.w for layer in tr.mlp.layers)
    mw = tr.config.chip.cell.max_weight  # (1, 2, 4): layer 1 range 1, layer 2 range 2
    w0.zero_()
    w0[0, :4, :10] = 0.99  # 40 of 32 * 65 weights at >= 98 % of range 1
    w1.zero_()
    w1[0, 3, -1] = 100.0  # output 3's bias: far beyond the +-12 clipping, for every image
    w1[0, 5, -1] = -5.0 * mw[1]
    stats = tr.layer_statistics()
    n0 = w0[0].numel()
    assert stats[0]["at_range"][0] == pytest.approx(40 / n0)
    assert stats[0]["mean"][0] == pytest.approx(40 * 0.99 / n0, rel=1e-6)
    assert stats[0]["std"][0] == pytest.approx(float(w0[0].double().std()), rel=1e-9)
    assert stats[0]["abs_max"][0] == pytest.approx(0.99)
    assert stats[1]["at_range"][0] == pytest.approx(2 / w1[0].numel())
    # hidden pre-activations: 10 inputs of the digits' [0, 1] pixels times 0.99 never reach 12
    assert stats[0]["output_clipped"][0] == 0.0
    assert stats[1]["output_clipped"][0] == pytest.approx(1 / 10)


def test_layer_statistics_do_not_change_the_run(digits):
    """Measuring reads the arrays (with read noise) but puts the random stream back: a run
    measured three extra times ends exactly where an unmeasured one does."""
    tr = _trainer("nature2018", digits, epochs=1)
    before = tr.mlp.generator.get_state()
    for _ in range(3):
        stats = tr.layer_statistics()
    assert torch.equal(tr.mlp.generator.get_state(), before)
    assert len(stats) == 2 and all(0.0 <= s["output_clipped"][0] <= 1.0 for s in stats)
    res = tr.train(progress=False)
    assert [set(s) for s in res.history[-1].layers] == [
        {"mean", "std", "abs_max", "at_range", "output_clipped"}] * 2
    plain = _trainer("nature2018", digits, epochs=1)
    plain.train(progress=False)
    for a, b in zip(tr.mlp.layers, plain.mlp.layers):
        assert torch.equal(a.cells.v, b.cells.v) and torch.equal(a.cells.g_plus, b.cells.g_plus)


def test_epoch_end_clipping_is_counted_in_the_evaluation_pass(digits):
    """The epoch's evaluation counts the clipped outputs as it goes; for the noise-free software
    network that equals a separate measurement, and asking for the counts changes no prediction."""
    cfg = at.get_preset("software", {"training": {"hidden": [32], "epochs": 1},
                                     "chip": {"periphery": {"output_layer_range": 2.0}}})  # some logits beyond it
    tr = Trainer(cfg, digits.x_train, digits.y_train, digits.x_test, digits.y_test, digits.n_classes)
    res = tr.train(progress=False)
    recorded = [s["output_clipped"] for s in res.history[-1].layers]
    assert recorded == [s["output_clipped"] for s in tr.layer_statistics()]
    assert recorded[-1][0] > 0
    pred, clipped = tr.mlp.predict(digits.x_test, clip_limits=[1e9, 1e9])
    assert torch.equal(pred, tr.mlp.predict(digits.x_test)) and all(float(c.sum()) == 0 for c in clipped)


def test_cost_model_leak_clock_times_the_simulated_update_train(digits):
    """``training.leak_clock = "cost-model"``: leakage sees the cost model's time per example for
    this network and the simulated chip, so a longer update pulse train leaks more per example;
    ``"fixed"`` keeps ``training.time_per_example_s``; a cell without capacitors ignores it."""
    from analogtrain.cost.model import estimate
    from analogtrain.cost.params import load_cost_params

    fixed = _trainer("nature2018", digits, time_per_example_s=5e-7)
    assert fixed.time_per_example_s == 5e-7
    derived = _trainer("nature2018", digits, time_per_example_s=5e-7, leak_clock="cost-model")
    params = load_cost_params("nature2018").for_chip(derived.config.chip)
    assert derived.time_per_example_s == estimate([64, 32, 10], params).time_per_example_s
    assert derived.time_per_example_s != 5e-7
    # four times the slots: t_update = slots * (t_pulse + t_gap) + t_overhead grows by 3 * 31 slot periods
    cfg = at.get_preset("nature2018", {"training": {"hidden": [32], "leak_clock": "cost-model"},
                                       "chip": {"update": {"pulse_train_length": 124}}})
    longer = Trainer(cfg, digits.x_train, digits.y_train, digits.x_test, digits.y_test, digits.n_classes)
    slot_s = (params.timing.update_pulse_duration_ns + params.timing.update_pulse_gap_ns) * 1e-9
    assert longer.time_per_example_s - derived.time_per_example_s == pytest.approx(93 * slot_s, rel=1e-9)
    assert _trainer("2pcm", digits, time_per_example_s=5e-7, leak_clock="cost-model").time_per_example_s == 5e-7

    # the clock is what every example advances the capacitors by, and the run records it
    seen: list[float] = []
    derived.mlp.advance_time = seen.append
    res = derived.train(epochs=1, progress=False)
    assert len(seen) == digits.n_train and set(seen) == {derived.time_per_example_s}
    assert res.leak_clock_s == derived.time_per_example_s


def test_training_flushes_subnormals_and_restores_the_default(digits):
    """Inside ``train`` subnormal floats become zero (they slowed long compiled runs ~1.8x and
    carry no physics); afterwards torch's default is back."""
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats")
    tiny = torch.tensor([1e-37], dtype=torch.float32)
    seen: list[float] = []

    def probe(_trainer) -> bool:
        seen.append(float(tiny / 1000))
        return len(seen) >= 3

    _trainer("nature2018", digits, epochs=1).train(progress=False, on_step=probe)
    assert seen == [0.0, 0.0, 0.0]
    assert float(tiny / 1000) > 0  # subnormal again outside training


def test_pulse_statistics_are_recorded_window_by_window():
    import analogtrain as at
    from analogtrain.training import Trainer

    d = at.load_dataset("digits").subset(200, 50)
    cfg = at.get_preset("nature2018", {"training": {"hidden": [8], "epochs": 2, "compile": "off"},
                                       "chip": {"transfer": {"interval_examples": 50}}})
    res = Trainer(cfg, d.x_train, d.y_train, d.x_test, d.y_test, d.n_classes).train(progress=False)
    windows = res.pulse_statistics_per_window
    assert [w["examples"] for w in windows] == [100, 200, 300, 400]
    assert all(w["median_total"] >= w["median_abs_net"] >= 0 for w in windows)
    assert len(windows[0]["layers"]) == 2
    last = res.pulse_statistics
    assert windows[-1]["layers"][0]["median_total"] == last[0]["median_total"]
