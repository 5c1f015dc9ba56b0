"""Chips of one batch that differ in their configuration train each as it would alone."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import fresh_compilation

import analogtrain as at
from analogtrain.cell import HybridCells
from analogtrain.config import ChipConfig, UpdateConfig
from analogtrain.errors import CheckpointError, ConfigError
from analogtrain.noise import ChipStreams
from analogtrain.pulses import PulseGenerator
from analogtrain.training import Trainer

QUIET_PCM = {"read_noise_us": 0.0, "read_noise_rel": 0.0, "program_sigma_us": 0.0, "program_sigma_rel": 0.0}
COMMON = {"chip": {"transfer": {"interval_examples": 100}}}


@pytest.fixture(scope="module")
def data():
    return at.load_dataset("digits").subset(240, 60)


def _config(preset: str, chips: int, extra: dict | None = None) -> at.ExperimentConfig:
    chip = {k: dict(v) for k, v in COMMON["chip"].items()}
    for section, values in (extra or {}).items():
        chip.setdefault(section, {}).update(values)
    over = {"training": {"chips": chips, "hidden": [16], "epochs": 2, "learning_rate": 0.2, "seed": 5}, "chip": chip}
    return at.get_preset(preset, over)


def _trainer(config, data, **kw) -> Trainer:
    return Trainer(config, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes, **kw)


def _chip_state(tr: Trainer, chip: int) -> list[torch.Tensor]:
    out = []
    for layer in tr.mlp.layers:
        out += [t[chip] for t in layer.cells.state_dict().values() if t.dim() > 0 and t.shape[0] == tr.mlp.chips]
        out.append(layer.update_pulses[chip])
    return out


# (preset, chip-config overrides, chip index) of each chip of the batch
BATCH = [
    ("nature2018", None, 0),
    ("nature2018-held-reference", None, 0),
    ("nature2018-held-reference", None, 1),
    ("nature2018-no-inversion", None, 0),
    ("nature2018-ideal-cmos", None, 0),
    ("nature2018", {"capacitor": {"leak_time_constant_s": 2e-4}}, 0),
    ("nature2018-offset", {"transfer": {"tolerance_us": 0.5}}, 2),
]


@pytest.mark.parametrize("compile", ["off", "on"])
def test_each_chip_of_a_mixed_batch_trains_as_it_would_alone(data, compile):
    """Every chip of a batch of different configurations ends bit for bit where its own run ends
    (compiled: from a fresh compilation state, see conftest.fresh_compilation)."""
    if compile == "on":
        fresh_compilation()
    chip_configs = [_config(p, 1, extra).chip for p, extra, _ in BATCH]
    base = _config("nature2018", len(BATCH))
    base = base.replace(training=base.training.replace(compile=compile))
    batch = _trainer(base, data, chip_configs=chip_configs, chip_ids=[i for _, _, i in BATCH])
    res = batch.train(progress=False)
    for k, (preset, extra, idx) in enumerate(BATCH):
        cfg = _config(preset, idx + 1, extra)
        alone = _trainer(cfg.replace(training=cfg.training.replace(compile=compile)), data)
        ra = alone.train(progress=False)
        assert res.final_test_accuracy[k] == ra.final_test_accuracy[idx], (preset, extra, idx)
        for a, b in zip(_chip_state(alone, idx), _chip_state(batch, k)):
            assert torch.equal(a, b), (preset, extra, idx)


def test_chips_of_a_batch_may_differ_only_where_shapes_and_cell_kind_stay(data):
    base = _config("nature2018", 2)
    other = _config("nature2018", 1, {"update": {"pulse_train_length": 15}}).chip
    with pytest.raises(ConfigError, match=r"chip\.update\.pulse_train_length.*train the others as a separate run"):
        _trainer(base, data, chip_configs=[base.chip, other])
    with pytest.raises(ConfigError, match=r"chip\.cell\.kind"):
        _trainer(base, data, chip_configs=[base.chip, _config("2pcm", 1).chip])
    with pytest.raises(ConfigError, match="2 but 3 chip indices"):
        _trainer(base, data, chip_ids=[0, 1, 2])


def test_a_batch_checkpoint_resumes_only_the_same_batch(data, tmp_path):
    base = _config("nature2018", 2)
    held = _config("nature2018-held-reference", 1).chip
    tr = _trainer(base, data, chip_configs=[base.chip, held])
    path = tr.save_checkpoint(tmp_path / "ck.safetensors")
    again = Trainer.from_checkpoint(path, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes)
    assert again.chip_configs is not None and again.chip_configs[1].cell.shared_reference == "held"
    with pytest.raises(CheckpointError, match="chips of the batch"):
        _trainer(base, data).load_checkpoint(path)


def test_each_chip_leaks_with_its_own_time_constant_and_reference():
    """Two chips, tau 1 ms (leaking reference) and 4 ms (held reference): each relaxes on its own clock."""
    taus, refs = (1e-3, 4e-3), ("leaking", "held")
    chips = [ChipConfig.from_dict({"pcm": QUIET_PCM, "capacitor": {"leak_time_constant_s": t},
                                   "cell": {"shared_reference": r}}) for t, r in zip(taus, refs)]
    cells = HybridCells(chips[0], (2, 3, 2), ChipStreams([1, 2]), "cpu", chip_configs=chips)
    cells.v.fill_(0.3)
    cells._stale = True
    for _ in range(400):
        cells.advance_time(5e-6)  # 2 ms in all, across several restarts of the clocks
    cells.sync()
    for c, tau in enumerate(taus):
        want = 0.8 + (0.3 - 0.8) * math.exp(-2e-3 / tau)
        torch.testing.assert_close(cells.v[c], torch.full_like(cells.v[c], want), rtol=1e-5, atol=1e-6)
    assert float(cells.v_shared[1].sub(0.5).abs().max()) == 0.0  # held at the reset voltage
    want_ref = 0.8 + (0.5 - 0.8) * math.exp(-2e-3 / taus[0])
    torch.testing.assert_close(cells.v_shared[0], torch.full_like(cells.v_shared[0], want_ref), rtol=1e-5, atol=1e-6)


def test_the_default_chip_indices_are_no_batch(data):
    base = _config("nature2018", 2)
    assert _trainer(base, data, chip_ids=[0, 1]).chip_ids is None
    assert _trainer(base, data, chip_ids=[1, 0]).chip_ids == [1, 0]


def test_pulse_counts_draw_from_chip_streams():
    """Drawn from per-chip streams, a chip's pulse counts do not depend on the chips beside it."""
    gen = PulseGenerator(UpdateConfig(), pulses_per_unit=20.0)
    x, d = torch.rand(2, 6), torch.randn(2, 4) * 0.3
    both = gen.counts(x, d, ChipStreams.seeded(0, [0, 1])).counts
    alone = gen.counts(x[1:], d[1:], ChipStreams.seeded(0, [1])).counts
    assert torch.equal(both[1:], alone)


def test_normals_for_pulsed_cells_draw_from_chip_streams_only_for_those_cells():
    """Chip c draws as many normals as it has pulsed cells, in their order, from its own stream:
    zeros elsewhere, and the same numbers alone as beside other chips."""
    from analogtrain.noise import pulsed_normals
    n = torch.randint(-2, 3, (3, 7, 5), generator=torch.Generator().manual_seed(4)).float()
    n[1] = 0.0  # a chip without pulses draws nothing
    z = pulsed_normals(n, ChipStreams.seeded(0, [0, 1, 2]))
    assert torch.equal(z == 0, n == 0)
    for c in range(3):
        alone = pulsed_normals(n[c:c + 1], ChipStreams.seeded(0, [c]))
        assert torch.equal(alone[0], z[c])
        streams = ChipStreams.seeded(0, [c])
        expected = torch.empty(int((n[c] != 0).sum())).normal_(generator=streams.generators[0])
        assert torch.equal(z[c][n[c] != 0], expected)


def test_a_batch_result_splits_into_the_results_of_its_chips(data):
    """A result of chips of several configurations, split by chip, gives each configuration
    what a run of only its chips gives: accuracies, update and programming pulse counts, cost."""
    from analogtrain.cost.cli import training_cost

    base, held = _config("nature2018", 4), _config("nature2018-held-reference", 2)
    batch = _trainer(base, data, chip_configs=[base.chip, held.chip, base.chip, held.chip], chip_ids=[0, 0, 1, 1])
    batch.train(epochs=1, progress=False)
    whole = batch.results()
    alone = _trainer(held, data)
    alone.train(epochs=1, progress=False)
    mine = alone.results()
    split = whole.select_chips([1, 3], config=held.to_dict())
    assert split.chips == 2 and split.transfers == mine.transfers > 0
    assert split.final_test_accuracy == mine.final_test_accuracy
    for name in ("initial_programming_pulses", "transfer_tuning_pulses", "transfer_unconverged_devices",
                 "occasional_reset_pulses", "update_pulses", "saturated_updates", "per_chip_counts"):
        assert getattr(split, name) == getattr(mine, name), name
    assert split.history[-1].layers == mine.history[-1].layers
    assert training_cost(split, held.chip) == training_cost(mine, held.chip)
    assert sum(whole.transfer_tuning_pulses) == sum(map(sum, whole.per_chip_counts["transfer_tuning_pulses"]))
    with pytest.raises(ValueError, match="not chips of this 4-chip result"):
        whole.select_chips([4])
