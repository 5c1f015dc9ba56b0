"""analogtrain.nn and analogtrain.optim: the layers read, transpose-read and update as the crossbar does."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import analogtrain.nn as ann
from analogtrain.crossbar import AnalogCrossbar
from analogtrain.errors import CheckpointError, ConfigError
from analogtrain.optim import ChipSGD
from analogtrain.presets import get_preset

IDEAL_READ = {"pcm": {"read_noise_us": 0.0, "read_noise_rel": 0.0},
              "periphery": {"input_bits": 0, "output_bits": 0, "forward_output_range": 1e6,
                            "output_layer_range": 1e6, "backward_output_range": 1e6}}


def chip(preset: str = "nature2018", **chip_overrides):
    return get_preset(preset, {"chip": chip_overrides}).chip


def twin_crossbar(layer: ann.AnalogLinear, seed: int) -> AnalogCrossbar:
    """A crossbar built and programmed exactly as the layer's tile was (same draws, same order)."""
    t = layer.tile
    xb = AnalogCrossbar(t.n_in, t.n_out, layer.chip, learning_rate=0.1, chips=1,
                        generator=torch.Generator().manual_seed(seed), tracked_synapses=0)
    g = torch.Generator().manual_seed(seed * 1_000_003 + 7)
    w = (torch.rand((t.n_out, t.rows), generator=g) * 2 - 1) * (1.0 / t.n_in**0.5)
    xb.program(w.unsqueeze(0))
    return xb


@pytest.mark.parametrize("preset", ["nature2018", "2pcm"])
def test_forward_and_input_gradient_are_the_crossbar_reads_with_noise(preset):
    """Same seed: the layer's forward is the crossbar's forward read and its input gradient the
    transpose read, bit for bit, read noise and converters included."""
    layer = ann.AnalogLinear(12, 5, chip=chip(preset), seed=3)
    xb = twin_crossbar(layer, 3)
    x = torch.rand(4, 12, requires_grad=True)
    g = torch.randn(4, 5)
    y = layer(x)
    y_ref = xb.forward(x.detach().unsqueeze(0))[0]
    assert torch.equal(y.detach(), y_ref)
    y.backward(g)
    z_ref = xb.backward(g.unsqueeze(0))[0]
    assert torch.equal(x.grad, z_ref)


def test_forward_is_the_matrix_product_when_reads_are_ideal():
    layer = ann.AnalogLinear(6, 4, chip=chip(**IDEAL_READ))
    x = torch.rand(3, 6, requires_grad=True)
    y = layer(x)
    torch.testing.assert_close(y, nn.functional.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-6)
    g = torch.randn(3, 4)
    y.backward(g)
    torch.testing.assert_close(x.grad, g @ layer.weight, rtol=1e-5, atol=1e-6)


def test_conv_forward_and_gradient_equal_conv2d_when_reads_are_ideal():
    conv = ann.AnalogConv2d(2, 3, 3, stride=1, padding=1, chip=chip(**IDEAL_READ))
    x = torch.rand(2, 2, 5, 5, requires_grad=True)
    y = conv(x)
    ref = nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(y)
    y.backward(g)
    xr = x.detach().clone().requires_grad_(True)
    nn.functional.conv2d(xr, conv.weight, conv.bias, padding=1).backward(g)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("preset", ["nature2018", "2pcm", "nature2018-no-inversion"])
def test_chipsgd_applies_exactly_the_pulses_of_the_crossbar_update(preset):
    """One example: forward, backward and ChipSGD.step leave the cells exactly as the crossbar's
    forward(remember=True), backward and update do for the same seed and errors."""
    layer = ann.AnalogLinear(10, 4, chip=chip(preset), seed=11)
    xb = twin_crossbar(layer, 11)
    x = torch.rand(1, 10) * 0.9 + 0.1  # every row active: the crossbar reads all rows
    d = torch.randn(1, 4) * 0.3
    xb.forward(x.unsqueeze(0), remember=True)
    xb.backward(d.unsqueeze(0))
    xb.update(d)
    opt = ChipSGD(layer.parameters(), lr=0.1, time_per_example_s=0.0)
    y = layer(x.requires_grad_(True))  # an input that needs its gradient: the transpose read runs
    (y * -d).sum().backward()  # dL/dy = -d: the error delta = -dL/dy = d
    opt.step()
    assert layer.tile.update_pulses.item() == xb.update_pulses.item() > 0
    mine, ref = layer.tile.cells.state_dict(), xb.cells.state_dict()
    for k in ref:
        assert torch.equal(mine[k], ref[k]), k
    assert torch.equal(layer.tile.weights(), xb.weights())


def test_minibatch_update_is_the_sum_of_per_example_updates():
    """Rounded pulses: a minibatch step gives each example its own rounded update, summed."""
    cfg = chip(update={"pulse_mode": "rounded", "pulse_train_length": 50}, **IDEAL_READ)
    layer = ann.AnalogLinear(5, 3, chip=cfg, seed=2)
    x = torch.rand(4, 5)
    g = torch.randn(4, 3) * 0.2
    layer(x).backward(g)
    rec = layer._pending[0]
    k = layer.tile.pulse_gen.k = 0.3 * layer.tile.scale_us / layer.tile.cells.nominal_step_us
    xa = torch.nn.functional.pad(x, (0, 1), value=1.0)
    expected = sum(torch.round(k * torch.outer(xa[b], -g[b])).clamp(-50, 50) for b in range(4))
    got = layer.tile.pulse_gen.counts(rec.x, rec.d, None).counts[0]
    assert torch.equal(got, expected)


def test_chipsgd_gives_digital_parameters_plain_sgd():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Sigmoid(), ann.AnalogLinear(5, 3))
    opt = ChipSGD(model.parameters(), lr=0.05)
    x, y = torch.rand(8, 6), torch.randint(0, 3, (8,))
    nn.functional.cross_entropy(model(x), y).backward()
    expected = [(p - 0.05 * p.grad).detach() for p in model[0].parameters()]
    assert all(p.grad.abs().sum() > 0 for p in model[0].parameters())
    opt.step()
    for p, e in zip(model[0].parameters(), expected):
        assert torch.equal(p.detach(), e)
    assert model[2].tile.update_pulses.item() > 0


def test_transfer_happens_on_the_schedule_and_flips_polarity():
    cfg = chip(transfer={"interval_examples": 6})
    layer = ann.AnalogLinear(4, 2, chip=cfg)
    opt = ChipSGD(layer.parameters(), lr=0.1)
    polarity = []
    for _ in range(3):  # minibatches of 4: transfers are due at examples 6 (inside the second) and 12
        layer(torch.rand(4, 4)).sum().backward()
        opt.step()
        opt.zero_grad()
        polarity.append((opt.chip_events["transfers"], layer.tile.cells.polarity.flatten().tolist()))
    assert polarity == [(0, [1.0, 1.0]), (1, [-1.0, -1.0]), (2, [1.0, 1.0])]
    assert layer.examples_seen == 12


def test_zero_grad_between_forward_and_backward_keeps_the_update():
    layer = ann.AnalogLinear(4, 2)
    opt = ChipSGD(layer.parameters())
    loss = layer(torch.rand(3, 4)).sum()
    opt.zero_grad()  # a common loop order: forward, zero_grad, backward, step
    loss.backward()
    opt.step()
    assert layer.tile.update_pulses.item() > 0
    layer(torch.rand(3, 4)).sum().backward()
    opt.zero_grad()  # errors not yet applied are dropped, as gradients are
    opt.step()
    assert layer.examples_seen == 3


def test_eval_and_no_grad_reads_leave_nothing_to_update():
    layer = ann.AnalogLinear(4, 2)
    layer.eval()
    layer(torch.rand(3, 4))
    layer.train()
    with torch.no_grad():
        layer(torch.rand(3, 4))
    assert layer._pending == []
    opt = ChipSGD(layer.parameters())
    before = layer.tile.cells.state_dict()["v_c_v"].clone()
    opt.step()
    assert torch.equal(layer.tile.cells.state_dict()["v_c_v"], before)


class LeNetish(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 6, 3)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6 * 2 * 2, 8), nn.Sigmoid(), nn.Linear(8, 3))

    def forward(self, x):
        x = nn.functional.avg_pool2d(torch.sigmoid(self.c1(x)), 2)
        return self.head(torch.sigmoid(self.c2(x)))


def test_convert_leaves_no_linear_or_conv_behind_and_keeps_the_weights():
    torch.manual_seed(1)
    model = LeNetish()
    x = torch.rand(2, 1, 10, 10)
    y0 = model(x)
    ideal = {**IDEAL_READ, "pcm": {"program_sigma_us": 0.0, "program_sigma_rel": 0.0, "read_noise_us": 0.0,
                                   "read_noise_rel": 0.0}}
    ann.convert(model, chip=chip(**ideal, transfer={"tolerance_us": 1e-3, "max_iterations": 50}))
    assert not [m for m in model.modules() if type(m) in (nn.Linear, nn.Conv2d)]
    assert [type(m).__name__ for m in ann.analog_layers(model)] == ["AnalogConv2d", "AnalogConv2d",
                                                                    "AnalogLinear", "AnalogLinear"]
    assert ann.analog_layers(model)[-1].output_layer
    torch.testing.assert_close(model(x), y0, atol=2e-3, rtol=0)  # programmed to within the tuning tolerance


def test_convert_select_and_unsupported_layers():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ConfigError, match="groups"):
        ann.convert(model)
    ann.convert(model, select=lambda name, m: isinstance(m, nn.Linear))
    assert type(model[0]) is nn.Conv2d and isinstance(model[2], ann.AnalogLinear)


def test_convert_copies_weights_within_programming_error():
    torch.manual_seed(0)
    lin = nn.Linear(30, 4)
    model = ann.convert(nn.Sequential(lin), chip="nature2018")
    err = (model[0].weight - lin.weight.detach()).abs()
    assert err.max() < 0.05 and err.mean() < 0.01  # closed-loop tuning to 0.3 uS in 60 uS per weight


def test_state_dict_round_trips_bit_for_bit_and_training_continues_identically():
    cfg = chip(transfer={"interval_examples": 5})
    a = ann.AnalogConv2d(1, 2, 3, chip=cfg, seed=4)
    opt = ChipSGD(a.parameters(), lr=0.2)
    for _ in range(3):
        a(torch.rand(2, 1, 5, 5)).sum().backward()
        opt.step()
        opt.zero_grad()
    sd = a.state_dict()
    b = ann.AnalogConv2d(1, 2, 3, chip=cfg, seed=99)
    b.load_state_dict(sd)
    sd_b = b.state_dict()
    assert sd.keys() == sd_b.keys()
    for k in sd:
        assert torch.equal(sd[k], sd_b[k]), k
    opt_b = ChipSGD(b.parameters(), lr=0.2)
    x = torch.rand(2, 1, 5, 5)
    for layer, o in ((a, opt), (b, opt_b)):
        layer(x).sum().backward()
        o.step()
    assert torch.equal(a.weight, b.weight)
    assert torch.equal(a(x), b(x))


def test_state_of_another_version_is_refused_in_one_line():
    layer = ann.AnalogLinear(3, 2)
    sd = layer.state_dict()
    sd["tile.version"] = torch.tensor(0)
    with pytest.raises(CheckpointError, match="version 0") as err:
        ann.AnalogLinear(3, 2).load_state_dict(sd)
    assert "\n" not in str(err.value)
    sd = layer.state_dict()
    sd["tile.cells.version"] = torch.tensor(7)
    with pytest.raises(CheckpointError, match="version 7"):
        ann.AnalogLinear(3, 2).load_state_dict(sd)
    sd = layer.state_dict()
    del sd["tile.cells.v_c_v"]
    with pytest.raises(CheckpointError, match="v_c_v"):
        ann.AnalogLinear(3, 2).load_state_dict(sd)


def test_to_device_keeps_the_state():
    layer = ann.AnalogLinear(3, 2)
    w = layer.weight
    assert layer.to("cpu") is layer
    assert torch.equal(layer.weight, w)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_state_moves_to_cuda_and_back():
    layer = ann.AnalogLinear(3, 2)
    sd = layer.state_dict()
    layer.cuda()
    assert layer.tile.cells.g_plus.is_cuda
    opt = ChipSGD(layer.parameters())
    layer(torch.rand(2, 3, device="cuda")).sum().backward()
    opt.step()
    layer.cpu()
    back = ann.AnalogLinear(3, 2)
    back.load_state_dict(sd)
    assert back.tile.cells.g_plus.device.type == "cpu"


def test_a_digital_chip_is_refused():
    with pytest.raises(ConfigError, match="torch.nn.Linear"):
        ann.AnalogLinear(3, 2, chip="software")


def test_the_simulator_does_not_import_the_cost_model():
    """Dependencies run one way: the layers, the optimizer and the trainer never load analogtrain.cost."""
    import subprocess
    import sys

    code = ("import sys, analogtrain.training, analogtrain.nn, analogtrain.optim, analogtrain.timing; "
            "print(sorted(m for m in sys.modules if m.startswith('analogtrain.cost')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_leak_clock_and_the_cost_model_read_one_timing():
    from analogtrain.cost.model import estimate
    from analogtrain.cost.params import chip_cost_params
    from analogtrain.timing import chip_timing
    from analogtrain.training import chip_time_per_example_s

    cfg = get_preset("nature2018", {"chip": {"update": {"pulse_train_length": 62}},
                                    "training": {"leak_clock": "cost-model"}})
    sizes = [528, 250, 125, 10]
    t = chip_timing(cfg.chip, sizes)
    assert chip_time_per_example_s(cfg, sizes) == t.time_per_example_s
    assert estimate(sizes, chip_cost_params(cfg.chip)).time_per_example_s == t.time_per_example_s
    # the update phase follows the chip's 62 slots of 10 ns (+ 5 ns gaps, + 20 ns overhead)
    assert t.breakdown_s["update"] == pytest.approx((62 * 15 + 20) * 1e-9)
