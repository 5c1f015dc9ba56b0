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
