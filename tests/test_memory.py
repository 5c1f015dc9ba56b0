"""A run that cannot fit is refused before it starts, with one line."""

from __future__ import annotations

import pytest
import torch

import analogtrain as at
from analogtrain import cli
from analogtrain.crossbar import AnalogCrossbar
from analogtrain.errors import ConfigError
from analogtrain.memory import (
    STEP_TEMPORARY_BYTES,
    bytes_per_synapse,
    check_fits,
    network_synapses,
)


def test_bytes_per_synapse_counts_the_cells_state():
    chip = at.get_preset("nature2018").chip
    xb = AnalogCrossbar(40, 30, chip, 0.1, 2, torch.Generator().manual_seed(0), tracked_synapses=0)
    full = (2, 41, 30)
    held = {t.data_ptr(): t for o in (xb.cells, xb.cells.mismatch) for t in vars(o).values()
            if isinstance(t, torch.Tensor) and tuple(t.shape) == full}
    state = sum(t.element_size() * t.numel() for t in held.values()) / (2 * 41 * 30)
    assert bytes_per_synapse(chip) == state + STEP_TEMPORARY_BYTES
    assert bytes_per_synapse(at.get_preset("2pcm").chip) < bytes_per_synapse(chip)


def test_check_fits_refuses_in_one_line_and_passes_what_fits():
    chip = at.get_preset("nature2018").chip
    est = check_fits(chip, [528, 250, 125, 10], 3, available=10**9)
    assert est.synapses == network_synapses([528, 250, 125, 10]) == 164_885
    with pytest.raises(ConfigError, match=r"needs about .* GB .* 8 chips .* has 0.01 GB available") as err:
        check_fits(chip, [528, 2000, 2000, 10], 8, available=10**7)
    assert "\n" not in str(err.value)


def test_cli_refuses_a_run_that_cannot_fit(one_error_line, tmp_path):
    assert cli.main(["train", "--hidden", "100000-100000", "--epochs", "1", "--out", str(tmp_path / "r")]) == 2
    assert "needs about" in one_error_line()


def _trainer(chips: int, preset: str = "nature2018"):
    from analogtrain.training import Trainer

    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(40, 30, generator=g), torch.randint(0, 4, (40,), generator=g)
    over = {"training": {"chips": chips, "hidden": [12], "compile": "off", "eval_batch": 7},
            "chip": {"transfer": {"interval_examples": 10}, "pcm": {"reset_check_interval_examples": 5,
                                                                     "reset_threshold_us": 3.0}}}
    cfg = at.get_preset(preset, over)
    return Trainer(cfg, x, y, x[:23], y[:23], n_classes=4)


def _state(tr) -> dict[str, torch.Tensor]:
    return {k: v for k, v in tr.state_dict().items() if isinstance(v, torch.Tensor)}


@pytest.mark.parametrize("preset", ["nature2018", "2pcm"])
def test_programming_a_group_of_chips_at_a_time_changes_nothing(monkeypatch, preset):
    """Initial programming and transfers in groups of one chip (the memory bound) give every
    chip the state and pulse counts of programming all chips at once."""
    import analogtrain.cell as cell

    whole = _trainer(3, preset)
    whole.train(epochs=1, progress=False)
    monkeypatch.setattr(cell, "TUNE_GROUP_DEVICES", 1)
    grouped = _trainer(3, preset)
    grouped.train(epochs=1, progress=False)
    a, b = _state(whole), _state(grouped)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert whole.results().transfer_tuning_pulses == grouped.results().transfer_tuning_pulses
    done = whole.results()
    assert whole.state.transfers == 4 if preset == "nature2018" else sum(done.occasional_reset_pulses) > 0
    assert done.occasional_reset_pulses == grouped.results().occasional_reset_pulses


def test_evaluating_a_group_of_chips_at_a_time_changes_nothing(monkeypatch):
    """An evaluation read one chip at a time (the memory bound) predicts what reading all chips
    at once does, and leaves every chip's random stream where it would be."""
    import analogtrain.network as network

    whole, grouped = _trainer(3), _trainer(3)
    monkeypatch.setattr(network, "EVAL_BYTES_PER_CELL", 0)
    monkeypatch.setattr(network, "EVAL_MIN_GROUP_BYTES", 1)
    assert grouped.mlp._eval_groups(7) == [(0, 1), (1, 2), (2, 3)]
    p = grouped.mlp.predict(grouped.x_test, batch=7, clip_limits=[0.5, 0.5])
    monkeypatch.setattr(network, "EVAL_MIN_GROUP_BYTES", 2**40)
    assert whole.mlp._eval_groups(7) == [(0, 3)]
    q = whole.mlp.predict(whole.x_test, batch=7, clip_limits=[0.5, 0.5])
    assert torch.equal(p[0], q[0])
    assert all(torch.equal(u, v) for u, v in zip(p[1], q[1]))
    assert torch.equal(grouped.mlp.generator.get_state(), whole.mlp.generator.get_state())
