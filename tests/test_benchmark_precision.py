"""benchmarks/transfer_precision.py: the error one transfer writes must follow the tuning's
tolerance and the averaged reads, and the cost it reports must grow with them."""

from __future__ import annotations

import importlib.util
import json
import math

from conftest import REPO_ROOT

import analogtrain as at

_spec = importlib.util.spec_from_file_location("transfer_precision", REPO_ROOT / "benchmarks" / "transfer_precision.py")
prec = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prec)

SMALL = ((120, 60), (61, 20))
STD = (0.23, 0.40)


def _measure(**transfer):
    cfg = at.get_preset("nature2018", {"chip": {"transfer": transfer}})
    return prec.measure(cfg, layers=SMALL, weight_std=STD, chips=2, seed=1)


def test_transfer_error_follows_tolerance_and_reads():
    default = _measure()
    chip = at.get_preset("nature2018").chip
    for i, lay in enumerate(default["layers"]):
        # a converged device ends within the tolerance of its target: |error| <= F * tol per weight,
        # plus the read of W (two devices, read noise of at most 0.05 uS + 1 % of ~10 uS each)
        bound_us = chip.cell.gain_f * (0.3 / math.sqrt(3) + math.sqrt(2) * 0.15)
        assert 0.3 * bound_us < lay["error_std"] * chip.us_per_weight(i) < bound_us
        assert lay["unconverged_share"] < 0.01
        assert lay["pulses_per_cell"] >= 2  # both RESETs and at least one step on most cells
    precise = _measure(tolerance_us=0.1, max_iterations=60, reads_averaged=16)
    for a, b in zip(default["layers"], precise["layers"]):
        assert b["error_std"] < 0.5 * a["error_std"]
        assert b["pulses_per_cell"] > 1.5 * a["pulses_per_cell"]
    assert precise["transfer_energy_nj_per_example"] > 5 * default["transfer_energy_nj_per_example"]
    assert precise["transfer_time_ns_per_example"] > 5 * default["transfer_time_ns_per_example"]
    assert precise["energy_nj_per_example"] > default["energy_nj_per_example"]
    # deterministic for a seed
    assert _measure() == default


def test_main_writes_the_grid(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert prec.main(["--tolerance", "0.3", "--reads", "1", "4", "--max-iterations", "5", "--chips", "1",
                      "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("\n| 0.3 |") == 2
    rows = json.loads(out.read_text())["rows"]
    assert [r["reads_averaged"] for r in rows] == [1, 4]
    assert prec.main(["--set", "chip.transfer.bogus=1"]) == 2
    assert "transfer_precision: error:" in capsys.readouterr().err
