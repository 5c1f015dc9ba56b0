"""The ``analogtrain cost`` subcommand and the train command's cost summary."""

from __future__ import annotations

import argparse
import json

import pytest

from analogtrain.cost.cli import add_parser, format_run_cost, run
from analogtrain.errors import ConfigError


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="analogtrain")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["cost", *argv])


def test_cost_prints_table_and_breakdown(capsys):
    assert run(_parse(["--network", "528-250-125-10"])) == 0
    out = capsys.readouterr().out
    for text in ("GOP/s/W", "TOP/s/mm^2", "28,065", "images per second", "energy per image",
                 "transfer_pcm_pulses", "neuron_converters", "row_periphery", "P100", "V100", "A100", "H100"):
        assert text in out, text


def test_cost_writes_json_and_plot(tmp_path, capsys):
    js, png = tmp_path / "out" / "cost.json", tmp_path / "cost.png"
    assert run(_parse(["--json", str(js), "--plot", str(png), "--sensitivity"])) == 0
    data = json.loads(js.read_text(encoding="utf-8"))
    assert data["synapses"] == 164_885 and data["params_name"] == "nature2018"
    assert {"figure_of_merit", "energy_breakdown_j", "area_breakdown_mm2", "gpus", "sensitivity"} <= set(data)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Sensitivity" in capsys.readouterr().out


def test_bad_network_is_a_config_error():
    with pytest.raises(ConfigError, match="528-x-10"):
        run(_parse(["--network", "528-x-10"]))
    with pytest.raises(ConfigError):
        run(_parse(["--network", "528"]))


def test_unknown_params_key_is_a_config_error(tmp_path):
    f = tmp_path / "params.toml"
    f.write_text("[energy]\nneuron_energy_pj = 3.0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="neuron_energy_pj") as err:
        run(_parse(["--params", str(f)]))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="preset"):
        run(_parse(["--params", "no-such-preset"]))


def test_params_file_changes_the_result(tmp_path, capsys):
    f = tmp_path / "fast.json"
    f.write_text(json.dumps({"name": "fast-update", "timing": {"update_pulse_slots": 2}}), encoding="utf-8")
    assert run(_parse(["--params", str(f)])) == 0
    assert "fast-update" in capsys.readouterr().out


def test_format_run_cost_for_the_train_command():
    stats = {"examples": 16_000, "transfers": 2, "transfer_interval_examples": 8_000,
             "update_pulses": [1.6e8, 3.9e7, 1.6e6], "transfer_tuning_pulses": [2.6e6, 6.3e5, 2.5e4],
             "cells": [132_250, 31_375, 1_260]}
    text = format_run_cost([528, 250, 125, 10], stats, "nature2018")
    assert "16,000 examples" in text and "2 transfers" in text and "P100" in text
    assert "nominal values" not in text
    partial = format_run_cost("528-250-125-10", {"examples": 100}, None)
    assert "nominal values used for" in partial


def test_top_level_cli_shows_the_papers_figure_and_the_simulated_chips(capsys):
    """`analogtrain cost` gives the figure of merit with the cost model's own update (the paper's
    4 slots of 25 ns) and, beside it, that of the update train the simulated nature2018 chip uses."""
    from analogtrain.cli import main
    from analogtrain.cost.model import figure_of_merit
    from analogtrain.cost.params import load_cost_params
    from analogtrain.presets import get_preset

    assert main(["cost", "--network", "528-250-125-10"]) == 0
    out = capsys.readouterr().out
    assert "GOP/s/W" in out
    fom = figure_of_merit(load_cost_params("nature2018").for_chip(get_preset("nature2018").chip))
    assert "the simulated nature2018 chip updates in 31 slots of 10 ns (2.50 mV a pulse)" in out
    assert f"{fom.gops_per_w:,.0f} GOP/s/W, {fom.tops_per_mm2:.2f} TOP/s/mm^2" in out


def test_cost_of_a_simulated_chip_preset_times_its_update_train(tmp_path, capsys):
    from analogtrain.config import ChipConfig

    js = tmp_path / "chip.json"
    assert run(_parse(["--chip", "nature2018", "--json", str(js)])) == 0
    data = json.loads(js.read_text(encoding="utf-8"))
    chip = ChipConfig()
    slots, width = chip.update.pulse_train_length, chip.capacitor.pulse_width_ns
    timing = data["params"]["timing"]
    assert timing["update_pulse_slots"] == slots == 31
    assert timing["update_pulse_duration_ns"] == width == 10.0
    gap, overhead = timing["update_pulse_gap_ns"], timing["update_overhead_ns"]
    assert data["params"]["cell"]["capacitor_step_mv"] == pytest.approx(chip.capacitor.step_at_reset_v * 1e3)
    assert data["figure_of_merit"]["time_breakdown_s"]["update"] == pytest.approx((slots * (width + gap) + overhead) * 1e-9)
    assert "simulated chip" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="2PCM\\+3T1C"):
        run(_parse(["--chip", "2pcm"]))
    with pytest.raises(ConfigError, match="nature2018"):
        run(_parse(["--chip", "natur2018"]))
