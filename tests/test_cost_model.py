"""The cost model against the paper's figures and against its own physics."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analogtrain.cost import (
    COST_PRESETS,
    GPUS,
    PAPER_GOPS_PER_W,
    PAPER_TOPS_PER_MM2,
    estimate,
    figure_of_merit,
    load_cost_params,
    map_network,
    ops_per_example,
)
from analogtrain.cost.model import (
    ENERGY_COMPONENTS,
    phase_times_s,
    transfer_event_time_s,
)
from analogtrain.cost.report import format_sensitivity, sensitivity
from analogtrain.errors import ConfigError

MNIST = [528, 250, 125, 10]
P = COST_PRESETS["nature2018"]


# -- the paper's two numbers -----------------------------------------------------------
def test_nature2018_reproduces_paper_within_5_percent():
    fom = figure_of_merit("nature2018")
    assert abs(fom.gops_per_w / PAPER_GOPS_PER_W - 1) < 0.05, fom.gops_per_w
    assert abs(fom.tops_per_mm2 / PAPER_TOPS_PER_MM2 - 1) < 0.05, fom.tops_per_mm2
    assert PAPER_GOPS_PER_W == 28_065 and PAPER_TOPS_PER_MM2 == 3.6


def test_every_nature2018_parameter_has_a_source_tag():
    for dotted, _unit, source, doc, _value in P.sources():
        assert source.split(":")[0] in {"paper", "group", "spec", "assumed"}, dotted
        if source.startswith("assumed"):
            assert len(source) > len("assumed: ") + 10, f"{dotted}: give the reasoning"
        assert doc, dotted
    for gpu in GPUS:
        assert gpu.source.startswith("spec:")


# -- operation counting and mapping ----------------------------------------------------
def test_ops_counting_convention():
    rep = estimate(MNIST, P)
    assert rep.synapses == 529 * 250 + 251 * 125 + 126 * 10 == 164_885
    ops = ops_per_example(MNIST, P)
    assert ops["forward"] == ops["update"] == 2 * 164_885
    assert ops["backward"] == 2 * (251 * 125 + 126 * 10)  # no backward through layer 1
    both = ops_per_example(MNIST, P.with_value("timing.backward_through_first_layer", True))
    assert both["total"] == 6 * 164_885
    assert figure_of_merit(P).ops_per_example == 6 * P.array.rows * P.array.cols


def test_large_layer_is_tiled_and_full_allocation_costs_area():
    tiles = map_network(MNIST, P)
    first = [t for t in tiles if t.layer == 0]
    assert len(first) == 2 and sum(t.rows for t in first) == 529 and all(t.cols == 250 for t in first)
    assert sum(t.cells for t in tiles) == 164_885
    fitted = estimate(MNIST, P)
    full = estimate(MNIST, P.with_value("array.tile_allocation", "full"))
    assert full.area_mm2 > fitted.area_mm2
    assert full.tops_per_mm2 < fitted.tops_per_mm2
    assert full.ops_per_example == fitted.ops_per_example


# -- time ---------------------------------------------------------------------------------
@pytest.mark.parametrize("pipelined", [True, False])
def test_doubling_update_pulse_duration_adds_slots_times_duration(pipelined):
    base = P.with_value("timing.pipelined", pipelined)
    d = base.timing.update_pulse_duration_ns
    slots = base.timing.update_pulse_slots
    longer = base.with_value("timing.update_pulse_duration_ns", 2 * d)
    expected = slots * d * 1e-9  # t_update = slots * (t_pulse + t_gap) + t_overhead
    assert estimate(MNIST, longer).time_per_example_s - estimate(MNIST, base).time_per_example_s == pytest.approx(expected, rel=1e-9)
    assert figure_of_merit(longer).cycle_s - figure_of_merit(base).cycle_s == pytest.approx(expected, rel=1e-9)


def test_sequential_time_is_the_sum_of_the_phases():
    seq = P.with_value("timing.pipelined", False)
    rep = estimate(MNIST, seq)
    ph = phase_times_s(seq)
    transfer = transfer_event_time_s(265, seq.transfer.tuning_pulses_per_cell, seq) / seq.transfer.interval_examples
    expected = 3 * ph["read"] + 2 * ph["read"] + ph["update"] + transfer
    assert rep.time_per_example_s == pytest.approx(expected, rel=1e-12)
    assert estimate(MNIST, P).time_per_example_s < rep.time_per_example_s  # pipelining helps
    assert rep.images_per_s == pytest.approx(1 / rep.time_per_example_s)


def test_transfer_time_grows_with_rows_and_tuning_pulses():
    t1 = transfer_event_time_s(256, 10, P)
    assert transfer_event_time_s(512, 10, P) == pytest.approx(2 * t1)
    assert transfer_event_time_s(256, 20, P) > t1


# -- energy -------------------------------------------------------------------------------
def test_energy_breakdowns_sum_to_totals():
    rep = estimate(MNIST, P, run_stats={"examples": 16_000})
    assert set(rep.energy_breakdown_j) == set(ENERGY_COMPONENTS)
    assert sum(rep.energy_breakdown_j.values()) == pytest.approx(rep.energy_per_example_j, rel=1e-12)
    fom = rep.figure_of_merit
    assert sum(fom.energy_breakdown_j.values()) == pytest.approx(fom.energy_per_example_j, rel=1e-12)
    assert sum(rep.area_breakdown_mm2.values()) == pytest.approx(rep.area_mm2, rel=1e-12)
    assert sum(rep.time_breakdown_s.values()) == pytest.approx(rep.time_per_example_s, rel=1e-12)
    assert sum(rep.run.energy_breakdown_j.values()) == pytest.approx(rep.run.energy_j, rel=1e-12)
    assert sum(rep.run.time_breakdown_s.values()) == pytest.approx(rep.run.time_s, rel=1e-12)
    assert all(v >= 0 for v in rep.energy_breakdown_j.values())


def test_transfer_energy_scales_with_tuning_pulses_over_interval():
    base = figure_of_merit(P).energy_breakdown_j
    longer = figure_of_merit(P.with_value("transfer.interval_examples", 2 * P.transfer.interval_examples)).energy_breakdown_j
    for k in ("transfer_pcm_pulses", "transfer_verify_reads"):
        assert longer[k] == pytest.approx(base[k] / 2, rel=1e-12)
    more = figure_of_merit(P.with_value("transfer.tuning_pulses_per_cell", 2 * P.transfer.tuning_pulses_per_cell)).energy_breakdown_j
    assert more["transfer_pcm_pulses"] == pytest.approx(2 * base["transfer_pcm_pulses"], rel=1e-12)
    # verify reads: one initial read plus one per non-RESET pulse
    cells = P.array.rows * P.array.cols
    conv = P.energy.neuron_conversion_energy_pj * 1e-12
    n = P.transfer.tuning_pulses_per_cell
    assert base["transfer_verify_reads"] == pytest.approx(cells * (n - P.transfer.resets_per_cell + 1) * conv / P.transfer.interval_examples)
    # PCM pulses: cells * pulses * E_pulse / interval
    assert base["transfer_pcm_pulses"] == pytest.approx(cells * n * P.energy.pcm_pulse_energy_pj * 1e-12 / P.transfer.interval_examples)


def test_read_energy_follows_ohmic_formula():
    fom = figure_of_merit(P)
    c, t = P.cell, P.timing
    per_cell = c.read_conductance_us * 1e-6 * c.read_voltage_v**2 * t.read_pulse_duration_ns * 1e-9 * c.mean_input_duty
    assert fom.energy_breakdown_j["array_read"] == pytest.approx(2 * P.array.rows * P.array.cols * per_cell)
    doubled = figure_of_merit(P.with_value("cell.read_voltage_v", 2 * c.read_voltage_v))
    assert doubled.energy_breakdown_j["array_read"] == pytest.approx(4 * fom.energy_breakdown_j["array_read"])


# -- area and periphery ------------------------------------------------------------------
def test_larger_arrays_amortise_periphery():
    shares = []
    for n in (128, 256, 512, 1024):
        fom = figure_of_merit(P.with_value("array.rows", n).with_value("array.cols", n))
        shares.append((fom.periphery_area_share, fom.periphery_energy_share))
    areas, energies = zip(*shares)
    assert list(areas) == sorted(areas, reverse=True) and areas[0] > areas[-1] + 0.2
    assert list(energies) == sorted(energies, reverse=True) and energies[0] > energies[-1] + 0.1


def test_cell_area_from_transistor_footprint():
    fom = figure_of_merit(P)
    c = P.cell
    f2 = (P.technology.node_nm * 1e-3) ** 2
    expected = (c.transistors_3t1c * c.transistor_area_f2 + c.pcm_devices * c.pcm_access_area_f2) * f2 + c.capacitance_ff / c.capacitor_density_ff_per_um2
    assert fom.cell_area_um2 == pytest.approx(expected)
    assert fom.area_breakdown_mm2["cells"] == pytest.approx(P.array.rows * P.array.cols * expected * 1e-6)


# -- run statistics -------------------------------------------------------------------------
def test_averaged_transfer_reads_cost_conversions_and_read_phases():
    k = 4
    avg = P.with_value("transfer.reads_averaged", k)
    base, more = figure_of_merit(P).energy_breakdown_j, figure_of_merit(avg).energy_breakdown_j
    assert more["transfer_verify_reads"] == pytest.approx(k * base["transfer_verify_reads"], rel=1e-12)
    assert more["transfer_pcm_pulses"] == pytest.approx(base["transfer_pcm_pulses"], rel=1e-12)
    n, rows = P.transfer.tuning_pulses_per_cell, 256
    t_read = phase_times_s(P)["read"]
    extra = rows * ((n - P.transfer.resets_per_cell) * P.timing.row_tuning_slowdown + 1) * (k - 1) * t_read
    assert transfer_event_time_s(rows, n, avg) - transfer_event_time_s(rows, n, P) == pytest.approx(extra, rel=1e-9)
    cells = [132_250, 31_375, 1_260]
    stats = {"examples": 16_000, "transfers": 2, "transfer_interval_examples": 8_000, "cells": cells,
             "transfer_tuning_pulses": [c * 2 * 12 for c in cells]}
    run1, runk = estimate(MNIST, P, run_stats=stats).run, estimate(MNIST, avg, run_stats=stats).run
    assert runk.energy_breakdown_j["transfer_verify_reads"] == pytest.approx(
        k * run1.energy_breakdown_j["transfer_verify_reads"], rel=1e-12)
    assert runk.time_breakdown_s["transfer"] > run1.time_breakdown_s["transfer"]


def test_run_cost_uses_the_pulses_actually_simulated():
    cells = [132_250, 31_375, 1_260]
    stats = {"examples": 16_000, "transfers": 2, "transfer_interval_examples": 8_000, "cells": cells,
             "update_pulses": [1e8, 2e7, 1e6], "transfer_tuning_pulses": [c * 2 * 12 for c in cells]}
    run = estimate(MNIST, P, run_stats=stats).run
    assert run.from_run == ["examples", "update_pulses", "transfers", "transfer_tuning_pulses", "cells", "transfer_interval_examples"]
    doubled = estimate(MNIST, P, run_stats={**stats, "update_pulses": [2e8, 4e7, 2e6]}).run
    assert doubled.energy_breakdown_j["capacitor_update"] == pytest.approx(2 * run.energy_breakdown_j["capacitor_update"])
    more_tuning = estimate(MNIST, P, run_stats={**stats, "transfer_tuning_pulses": [c * 2 * 24 for c in cells]}).run
    assert more_tuning.energy_breakdown_j["transfer_pcm_pulses"] == pytest.approx(2 * run.energy_breakdown_j["transfer_pcm_pulses"])
    assert more_tuning.time_breakdown_s["transfer"] > run.time_breakdown_s["transfer"]
    # a run without counts falls back to the nominal per-example cost
    nominal = estimate(MNIST, P, run_stats={"examples": 80_000}).run
    rep = estimate(MNIST, P)
    assert nominal.transfers == 10
    assert nominal.energy_j == pytest.approx(80_000 * rep.energy_per_example_j, rel=1e-9)
    assert nominal.time_s == pytest.approx(80_000 * rep.time_per_example_s, rel=1e-9)
    assert nominal.gpu_time_s > nominal.time_s


def test_run_stats_per_chip_lists_and_bad_lengths():
    stats = {"examples": 8_000, "transfers": 1, "chips": 2, "update_pulses": [[1e6, 3e6], None, [0.0, 0.0]],
             "transfer_tuning_pulses": [2 * 1000.0, 2 * 500.0, 2 * 10.0]}
    run = estimate(MNIST, P, run_stats=stats).run
    assert run.update_pulses[0] == 2e6 and run.update_pulses[2] == 0.0
    assert run.transfer_tuning_pulses == [1000.0, 500.0, 10.0]
    with pytest.raises(ValueError, match="update_pulses"):
        estimate(MNIST, P, run_stats={"update_pulses": [1.0, 2.0]})


# -- GPUs --------------------------------------------------------------------------------
def test_gpu_table_has_the_four_generations_with_public_specs():
    rep = estimate(MNIST, P)
    names = " ".join(g.gpu.name for g in rep.gpus)
    for gen in ("P100", "V100", "A100", "H100"):
        assert gen in names
    p100 = next(g for g in GPUS if g.name == "P100 SXM2")
    assert (p100.peak_fp16_tflops, p100.die_area_mm2) == (21.2, 610.0)
    for g in rep.gpus:
        assert g.tops_per_mm2 == pytest.approx(g.gpu.peak_fp16_tflops / g.gpu.die_area_mm2)
        assert g.time_per_image_at_peak_s == pytest.approx(rep.ops_per_example / (g.gpu.peak_fp16_tflops * 1e12))
        assert g.time_per_image_s >= g.time_per_image_at_peak_s
        assert 0 < g.utilisation <= P.gpu.minibatch1_utilisation
    # the paper's "two orders of magnitude" against the 2018 GPU
    vs_p100 = next(g for g in rep.gpus if g.gpu.name.startswith("P100"))
    assert vs_p100.chip_efficiency_advantage > 100 and vs_p100.chip_area_advantage > 90


# -- parameters ----------------------------------------------------------------------------
def test_params_round_trip_and_file_overrides(tmp_path):
    assert load_cost_params("nature2018") is P
    f = tmp_path / "p.toml"
    f.write_text('name = "slow"\n[timing]\nupdate_pulse_duration_ns = 50.0\n', encoding="utf-8")
    p = load_cost_params(str(f))
    assert p.name == "slow" and p.timing.update_pulse_duration_ns == 50.0 and p.energy == P.energy
    j = tmp_path / "p.json"
    j.write_text(json.dumps(P.to_dict()), encoding="utf-8")
    assert load_cost_params(j) == P
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"timing": {"update_pulse_duraton_ns": 1}}), encoding="utf-8")
    with pytest.raises(ConfigError, match="update_pulse_duration_ns"):
        load_cost_params(bad)
    with pytest.raises(ConfigError, match="preset"):
        load_cost_params("nature2019")
    with pytest.raises(ConfigError, match="read_voltage_v"):
        P.with_value("cell.read_voltage_v", -1.0)


def test_sensitivity_table_covers_inferred_parameters():
    rows = sensitivity(P)
    names = {r.name for r in rows}
    assert "energy.neuron_conversion_energy_pj" in names and "transfer.interval_examples" not in names
    conv = next(r for r in rows if r.name == "energy.neuron_conversion_energy_pj")
    assert conv.gops_per_w_half > 0 > conv.gops_per_w_double and conv.tops_per_mm2_double == pytest.approx(0, abs=1e-12)
    assert "GOP/s/W x0.5" in format_sensitivity(rows, P)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.lists(st.integers(1, 1500), min_size=2, max_size=5))
def test_any_network_gives_consistent_positive_costs(sizes):
    rep = estimate(sizes, P)
    assert rep.time_per_example_s > 0 and rep.energy_per_example_j > 0 and rep.area_mm2 > 0
    assert sum(t.cells for t in rep.tiles) == rep.synapses
    assert math.isclose(sum(rep.energy_breakdown_j.values()), rep.energy_per_example_j, rel_tol=1e-12)
    # the network never beats a fully used array
    assert rep.tops_per_mm2 <= rep.figure_of_merit.tops_per_mm2 * (1 + 1e-9)
    json.dumps(rep.to_dict())


# -- docs stay true ------------------------------------------------------------------------
def test_docs_snippets_run(tmp_path):
    import doctest
    import re
    from pathlib import Path

    import analogtrain.cost as cost_pkg

    assert doctest.testmod(cost_pkg).failed == 0
    text = (Path(__file__).resolve().parents[1] / "docs" / "cost_model.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    exec(compile(code, "docs/cost_model.md", "exec"), {})
    toml = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    f = tmp_path / "p.toml"
    f.write_text(toml, encoding="utf-8")
    assert load_cost_params(str(f)).timing.update_pulse_duration_ns == 50.0
    # the headline numbers quoted in the docs are the model's
    fom = figure_of_merit(P)
    assert f"**{fom.gops_per_w:,.0f}**" in text and f"**{fom.tops_per_mm2:.2f}**" in text
