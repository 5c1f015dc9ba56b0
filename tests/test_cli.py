"""The command line: the quickstart runs, bad input gives one clear line and a non-zero exit."""

from __future__ import annotations

import shutil

import pytest

from analogtrain.cli import main
from analogtrain.runs.results import RunResult


def test_presets_lists_every_preset(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("nature2018", "nature2018-no-inversion", "nature2018-ideal-cmos", "2pcm", "software"):
        assert name in out


def test_train_writes_json_and_png(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--epochs", "2", "--hidden", "32", "--limit-train", "400", "--limit-test", "200",
                 "--compare", "software", "--out", str(out), "--quiet",
                 "--set", "chip.transfer.interval_examples=300"])
    assert code == 0
    res = RunResult.read(out)
    assert res.command == "train" and res.variants == ["nature2018", "software"]
    run = res.variant("nature2018")
    assert len(run.history) == 2 and run.transfers == 2
    assert run.config["chip"]["transfer"]["interval_examples"] == 300
    assert "gap_points" in res.extra["summary"]
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert "final test accuracy" in capsys.readouterr().out
    # one report system: a train run renders as a reproduce run does
    assert main(["report", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert text.startswith("# analogtrain train: nature2018, software on digits") and "2 epochs" in text


def test_train_costs_the_transfer_reads_it_simulated(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--hidden", "16", "--limit-train", "300", "--limit-test", "100",
                 "--out", str(out), "--quiet", "--set", "chip.transfer.interval_examples=100",
                 "--set", "chip.transfer.reads_averaged=4"]) == 0
    res = RunResult.read(out)
    cost, run = res.extra["chip_cost"], res.variant("nature2018")
    assert cost["params"]["transfer"]["reads_averaged"] == 4
    # the run is costed with the update pulse train it simulated, and its leakage clock is recorded beside it
    assert cost["params"]["timing"]["update_pulse_slots"] == run.config["chip"]["update"]["pulse_train_length"]
    assert cost["params"]["timing"]["update_pulse_duration_ns"] == run.config["chip"]["capacitor"]["pulse_width_ns"]
    assert cost["leak_clock_s"] == run.config["training"]["time_per_example_s"]
    conv = cost["params"]["energy"]["neuron_conversion_energy_pj"] * 1e-12
    resets = cost["params"]["transfer"]["resets_per_cell"]
    transfers = cost["run"]["transfers"]
    reads = sum(p - resets * c * transfers + c * transfers
                for p, c in zip(cost["run"]["transfer_tuning_pulses"], run.cells_per_layer))
    assert cost["run"]["energy_breakdown_j"]["transfer_verify_reads"] == pytest.approx(4 * reads * conv, rel=1e-9)


@pytest.mark.parametrize("argv, needle", [
    (["train", "--preset", "natur2018"], "did you mean 'nature2018'"),
    (["train", "--set", "chip.cell.gain_f=-1"], "chip.cell.gain_f must be > 0"),
    (["train", "--set", "chip.cell.gian_f=2"], "did you mean 'gain_f'"),
    (["train", "--dataset", "mnits"], "did you mean 'mnist'"),
    (["train", "--epochs", "0"], "training.epochs"),
    (["train", "--config", "/nonexistent/cfg.toml"], "not found"),
    (["cost", "--network", "528-x-10"], "528-x-10"),
])
def test_bad_input_is_one_clear_line(argv, needle, tmp_path, one_error_line):
    code = main([*argv, "--out", str(tmp_path)] if argv[0] == "train" else argv)
    assert code != 0
    assert needle in one_error_line()


def test_missing_mnist_offline_names_the_files(tmp_path, capsys, one_error_line):
    code = main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "empty"), "--no-download",
                 "--out", str(tmp_path / "o")])
    assert code != 0
    line = one_error_line()
    assert "train-images-idx3-ubyte.gz" in line


def test_corrupt_mnist_file_fails_its_checksum(tmp_path, capsys, shared_data, one_error_line):
    d = tmp_path / "mnist"
    d.mkdir()
    for f in (shared_data / "mnist").glob("*.gz"):
        shutil.copy(f, d / f.name)
    raw = bytearray((d / "t10k-labels-idx1-ubyte.gz").read_bytes())
    raw[100] ^= 0xFF
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(raw))
    code = main(["train", "--dataset", "mnist", "--data-dir", str(d), "--no-download", "--out", str(tmp_path / "o")])
    assert code != 0
    line = one_error_line()
    assert "t10k-labels-idx1-ubyte.gz" in line and "SHA-256" in line


def test_readme_python_snippet_runs():
    """The README's Python example, executed as written (docs cannot go stale)."""
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_train_does_not_cost_a_2pcm_run_with_the_3t1c_cost_model(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "2pcm", "--epochs", "1", "--hidden", "16", "--limit-train", "200",
                 "--limit-test", "100", "--out", str(out), "--quiet"]) == 0
    assert "chip_cost" not in RunResult.read(out).extra
    assert "Not costed: the cost model (docs/cost_model.md) describes the 2PCM+3T1C cell" in capsys.readouterr().out


def test_train_with_the_cost_model_leak_clock_says_so(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--hidden", "16", "--limit-train", "200", "--limit-test", "100",
                 "--out", str(out), "--quiet", "--set", "training.leak_clock=cost-model"]) == 0
    res = RunResult.read(out)
    clock = res.variant("nature2018").leak_clock_s
    assert res.extra["chip_cost"]["leak_clock_s"] == clock
    assert clock == pytest.approx(res.extra["chip_cost"]["time_per_example_s"], rel=1e-12)
    assert f"let {clock * 1e9:.0f} ns pass per example (training.leak_clock = cost-model)" in capsys.readouterr().out
