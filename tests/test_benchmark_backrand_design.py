"""benchmarks/backrand_design.py: the design study's verdict is read off the sweeps' tables."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "backrand_design.py"


def _sweep(folder, title, points):
    """A sweep folder as `analogtrain sweep` leaves it: its report's title and a table of rows
    (point, preset, swept values, chip, final accuracy, accuracy per epoch, cost)."""
    folder.mkdir()
    (folder / "report.md").write_text(f"# Sweep: {title}\n", encoding="utf-8")
    rows = []
    for pid, preset, values, accs, energy in points:
        for c, a in enumerate(accs):
            rows.append({"point": pid, "preset": preset, "seed": 0, "status": "done", "chip": c,
                         "final_accuracy": a, "accuracy_per_epoch": [a - 0.01, a],
                         "energy_per_image_j": energy, "chip_time_per_image_s": None if energy is None else 6e-7,
                         **values})
    keys = {k for _, _, values, _, _ in points for k in values}  # every row has every swept column
    rows = [{**dict.fromkeys(keys), **r} for r in rows]
    pq.write_table(pa.Table.from_pylist(rows), folder / "results.parquet")


def _run(tmp_path, *folders):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(SCRIPT), *map(str, folders), "--out", str(out), "--last", "2"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (out / "figures" / "gap_vs_energy.png").stat().st_size > 0
    return (out / "report.md").read_text(encoding="utf-8")


def test_the_cheapest_point_within_a_point_of_software_is_named(tmp_path):
    _sweep(tmp_path / "a", "update resolution", [
        ("s", "software", {}, [0.85, 0.85], None),
        ("p1", "nature2018", {"chip.capacitor.pull_current_na": 6.25}, [0.845, 0.843], 60e-9),  # -0.6: within
        ("p2", "nature2018", {"chip.capacitor.pull_current_na": 12.5}, [0.842, 0.844], 45e-9),  # -0.7: cheaper
        ("p3", "nature2018", {"chip.capacitor.pull_current_na": 25.0}, [0.82, 0.82], 44e-9)])   # -3.0
    _sweep(tmp_path / "b", "device errors", [
        ("q1", "nature2018", {"chip.transfer.tolerance_us": 0.1}, [0.80, 0.80], 40e-9)])        # -5.0, cheapest
    report = _run(tmp_path, tmp_path / "a", tmp_path / "b")
    assert "software baseline reaches 85.00 %" in report
    assert "2 of 4 points come within 1 point of software" in report
    assert ("The cheapest: pull current (nA) 12.5, train slots 31, current mismatch 0.1, tolerance (uS) 0.3, "
            "leak tau (s) 0.005") in report
    assert "| device errors | 25 | 31 | 0.1 | 0.1 | 0.005 | 80.00 (80.00-80.00) | -5.00 |" in report


def test_without_such_a_point_the_closest_is_named(tmp_path):
    _sweep(tmp_path / "a", "update resolution", [
        ("s", "software", {}, [0.85], None),
        ("p1", "nature2018", {"chip.update.pulse_train_length": 124}, [0.83], 66e-9),
        ("p2", "nature2018", {"chip.update.pulse_train_length": 31}, [0.82], 44e-9)])
    report = _run(tmp_path, tmp_path / "a")
    assert "No point comes within 1 point of software. The closest: pull current (nA) 25, train slots 124" in report
    assert "(gap -2.00; -2.00 over the last 2 epochs)" in report
    assert "Over the mean of the last 2 epochs no point comes within 1 point of software either" in report


def test_an_unfinished_sweep_is_read_from_its_finished_points(tmp_path):
    """A sweep stopped before its table was written: the finished points' result.json files are
    read through the sweep's own table code, and the report marks the study unfinished."""
    import json

    from analogtrain.sweep import parse_spec

    spec = parse_spec({"name": "leak", "dataset": "digits", "presets": ["nature2018", "software"], "chips": 2,
                       "epochs": 2, "parameters": {"chip.capacitor.leak_time_constant_s": [0.02, 0.1]}})
    folder = tmp_path / "leak"
    folder.mkdir()
    (folder / "sweep.json").write_text(json.dumps({"spec": spec.to_dict()}), encoding="utf-8")
    points = {(p.preset, p.values.get("chip.capacitor.leak_time_constant_s")): p for p in spec.points()}
    for key, acc, energy in ((("software", None), [0.90, 0.90], None), (("nature2018", 0.02), [0.895, 0.893], 4e-8)):
        p = points[key]
        (folder / p.id).mkdir()
        (folder / p.id / "result.json").write_text(json.dumps(
            {"point": p.to_dict(), "status": "done", "error": None, "epochs_completed": 2,
             "accuracy": [[a - 0.01 for a in acc], acc], "final_accuracy": acc,
             "energy_per_image_j": energy, "chip_time_per_image_s": None if energy is None else 6e-7}),
            encoding="utf-8")
    report = _run(tmp_path, folder)
    assert "| leak (unfinished) | 25 | 31 | 0.1 | 0.3 | 0.02 | 89.40 (89.30-89.50) | -0.60 |" in report
    assert "1 of 1 points come within 1 point of software" in report
    assert "(the steadier figure), 1 of 1 points come within 1 point of software, cheapest first" in report
    assert "leak tau (s) 0.02: gap -0.60 (-0.60 at the last epoch), 40.0 nJ and 600 ns per image" in report
