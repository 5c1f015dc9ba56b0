"""analogtrain sweep: points on local Ray, the table, resume, a failing point, a two-node cluster."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from analogtrain import cli
from analogtrain.errors import ConfigError
from analogtrain.sweep import load_spec, parse_spec, run_sweep
from analogtrain.sweep.point import load_data, point_config
from analogtrain.sweep.table import read_table

SMALL = {"name": "test", "dataset": "digits", "limit_train": 120, "limit_test": 60, "presets": ["nature2018"],
         "seeds": [0], "chips": 2, "epochs": 1, "config": {"training": {"hidden": [8]}},
         "parameters": {"chip.capacitor.leak_time_constant_s": [0.002, 0.02], "chip.update.pulse_train_length": [15, 31]}}
SMOKE = Path(__file__).resolve().parents[1] / "examples" / "sweeps" / "smoke.toml"


@pytest.fixture(scope="module")
def local_ray():
    ray.shutdown()
    yield
    ray.shutdown()


def test_spec_expands_to_a_grid_and_refuses_bad_settings():
    spec = parse_spec(SMALL)
    pts = spec.points()
    assert len(pts) == 4 and len({p.id for p in pts}) == 4
    assert parse_spec(SMALL).points()[0].id == pts[0].id  # same spec, same ids (what --resume relies on)
    assert load_spec(SMOKE).points()
    for bad, words in [({**SMALL, "methd": "grid"}, "did you mean 'method'"),
                       ({**SMALL, "parameters": {"chip.cell.gain_f": {"uniform": [1, 3]}}}, "a grid needs a list"),
                       ({**SMALL, "method": "random"}, "needs samples"),
                       ({**SMALL, "presets": ["nature2081"]}, "unknown preset")]:
        with pytest.raises(ConfigError, match=words):
            parse_spec(bad)


def test_the_software_baseline_is_trained_once_per_seed_not_once_per_chip_setting():
    """Chip parameters do not reach the digital baseline: a 2x2 grid of chip settings with
    software among the presets gives 4 analog points and one software point per seed; a
    training parameter still makes software points of its own."""
    spec = parse_spec({**SMALL, "presets": ["nature2018", "software"], "seeds": [0, 1]})
    pts = spec.points()
    assert sum(p.preset == "nature2018" for p in pts) == 8
    assert [(p.values, p.seed) for p in pts if p.preset == "software"] == [({}, 0), ({}, 1)]
    mixed = parse_spec({**SMALL, "presets": ["software"],
                        "parameters": {"training.learning_rate": [0.05, 0.1], "chip.cell.gain_f": [2.0, 3.0]}})
    assert [p.values for p in mixed.points()] == [{"training.learning_rate": 0.05}, {"training.learning_rate": 0.1}]


def test_random_draws_are_seeded_and_within_bounds():
    spec = parse_spec({**SMALL, "method": "random", "samples": 5,
                       "parameters": {"chip.cell.gain_f": {"log_uniform": [1.5, 6.0]},
                                      "chip.update.pulse_train_length": {"int_uniform": [8, 64]}}})
    pts = spec.points()
    assert [p.values for p in pts] == [p.values for p in spec.points()]
    assert all(1.5 <= p.values["chip.cell.gain_f"] <= 6.0 and 8 <= p.values["chip.update.pulse_train_length"] <= 64
               for p in pts)


def test_sweep_on_local_ray_equals_direct_training_resumes_and_isolates_a_failure(tmp_path, local_ray):
    spec_data = {**SMALL, "parameters": {"chip.capacitor.leak_time_constant_s": [0.002, -1.0],
                                         "chip.update.pulse_train_length": [15, 31]}}
    spec = parse_spec(spec_data)
    out = tmp_path / "sweep"
    summary = run_sweep(spec, out, max_parallel=2, progress=False)
    assert summary["points"] == 4 and summary["done"] == 2 and summary["failed"] == 2
    rows = read_table(out)
    failed = {r["point"]: r for r in rows if r["status"] == "failed"}
    assert len(failed) == 2
    assert all("leak_time_constant_s" in r["error"] and "\n" not in r["error"] for r in failed.values())
    done = [r for r in rows if r["status"] == "done"]
    assert len(done) == 4  # two points x two chips
    # every value equals a direct training of the same point
    from analogtrain.training import Trainer

    worker_spec = spec.to_dict()
    data = load_data(worker_spec)
    for p in spec.points():
        if p.values["chip.capacitor.leak_time_constant_s"] < 0:
            continue
        cfg = point_config(worker_spec, p.to_dict())
        direct = Trainer(cfg, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes).train(
            progress=False)
        mine = sorted((r["chip"], r["final_accuracy"]) for r in done if r["point"] == p.id)
        assert mine == list(enumerate(direct.final_test_accuracy))
        assert all(r["energy_per_image_j"] > 0 for r in done if r["point"] == p.id)
    report = (out / "report.md").read_text()
    assert "accuracy_vs_energy.png" in report and (out / "figures" / "accuracy_vs_energy.png").is_file()
    # resume: nothing is trained again
    again = run_sweep(spec, out, resume=True, progress=False)
    assert again["trained"] == 0 and again["done"] == 2
    # a finished sweep is not overwritten silently
    with pytest.raises(Exception, match="already holds an analogtrain sweep run"):
        run_sweep(spec, out, progress=False)


def test_resume_continues_an_unfinished_point(tmp_path, local_ray):
    spec = parse_spec({**SMALL, "parameters": {"chip.update.pulse_train_length": [15]}})
    out = tmp_path / "s"
    first = run_sweep(spec, out, progress=False)
    pid = spec.points()[0].id
    expected = read_table(out)
    (out / pid / "result.json").unlink()  # as if the worker was lost before it finished
    again = run_sweep(spec, out, resume=True, progress=False)
    assert first["done"] == again["done"] == 1 and again["trained"] == 1
    assert [r["final_accuracy"] for r in read_table(out)] == [r["final_accuracy"] for r in expected]


def test_cli_resume_with_nothing_to_resume_is_one_line(tmp_path, one_error_line):
    assert cli.main(["sweep", str(SMOKE), "--out", str(tmp_path / "none"), "--resume"]) != 0
    assert "nothing to resume" in one_error_line()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_second_ray_node_takes_points(tmp_path):
    """A head and a worker node started as separate 'ray start' processes on loopback: the
    sweep, pointed at the cluster, runs points on both nodes."""
    ray.shutdown()
    exe = shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    subprocess.run([exe, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                    "--include-dashboard", "false", *common], check=True, env=env, capture_output=True, timeout=120)
    try:
        subprocess.run([exe, "start", "--address", f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1", *common],
                       check=True, env=env, capture_output=True, timeout=120)
        spec = parse_spec({**SMALL, "seeds": [0, 1]})
        os.environ["RAY_AUTH_MODE"] = "disabled"
        summary = run_sweep(spec, tmp_path / "c", address=f"127.0.0.1:{port}", progress=False)
        assert summary["done"] == 8
        nodes = {r["node"] for r in read_table(tmp_path / "c")}
        assert len(nodes) == 2, nodes
    finally:
        ray.shutdown()
        os.environ.pop("RAY_AUTH_MODE", None)
        _stop_cluster(port)  # this cluster only: 'ray stop' would stop every Ray on the machine


def _cmdlines() -> dict[int, str]:
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                out[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                pass
    return out


def _stop_cluster(port: int) -> None:
    """Stop the processes of the cluster whose head listens on ``port`` (its GCS, raylets and
    agents, found by the port or by the cluster's session folder); their workers exit with them."""
    import re
    import signal

    procs = _cmdlines()
    mine = [pid for pid, cmd in procs.items() if f"gcs_server_port={port}" in cmd or f"127.0.0.1:{port}" in cmd]
    sessions = {m for pid in mine for m in re.findall(r"--session[-_]dir=(\S+)", procs[pid])}
    pids = {pid for pid, cmd in procs.items() if pid in mine or any(s in cmd for s in sessions)}
    pids.discard(os.getpid())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        time.sleep(2)
    current = Path("/tmp/ray/ray_current_cluster")  # what 'ray start' leaves for ray.init() to find
    if current.is_file() and current.read_text().strip().endswith(f":{port}"):
        current.unlink()


def test_cli_runs_the_smoke_example_then_resumes_with_nothing_to_do(tmp_path, local_ray, capsys):
    out = tmp_path / "smoke"
    assert cli.main(["sweep", str(SMOKE), "--out", str(out), "--quiet"]) == 0
    assert "4 points: 4 done, 0 failed (4 trained now" in capsys.readouterr().out
    assert cli.main(["sweep", str(SMOKE), "--out", str(out), "--resume", "--quiet"]) == 0
    assert "(0 trained now" in capsys.readouterr().out
    assert len(read_table(out)) == 8


def test_asha_runs_points_as_tune_trials_and_reports_them(tmp_path, local_ray):
    spec = parse_spec({**SMALL, "method": "asha", "samples": 3, "epochs": 2, "asha": {"grace_period": 1},
                       "parameters": {"chip.update.pulse_train_length": {"int_uniform": [8, 40]}}})
    summary = run_sweep(spec, tmp_path / "a", progress=False)
    assert summary["points"] == 3 and summary["failed"] == 0
    rows = read_table(tmp_path / "a")
    assert {r["point"] for r in rows} == {p.id for p in spec.points()}
    for r in rows:
        assert r["stopped_early"] or r["epochs_completed"] == 2
    assert "Points" in (tmp_path / "a" / "report.md").read_text()


def test_points_that_differ_only_per_chip_train_as_one_batch_with_the_same_rows(tmp_path, local_ray):
    """group = 4: points that differ only in per-chip parameters (the leak time constant) train as
    one batch; the pulse-train length changes the arrays, so its points form separate groups.
    Every point's accuracies and cost equal those of the point trained alone."""
    from analogtrain.sweep.point import group_points

    spec = parse_spec({**SMALL, "group": 4})
    pts = [p.to_dict() for p in spec.points()]
    groups = group_points(spec.to_dict(), pts, spec.group)
    assert sorted(map(len, groups)) == [2, 2]
    assert all(len({p["values"]["chip.update.pulse_train_length"] for p in g}) == 1 for g in groups)
    run_sweep(spec, tmp_path / "grouped", progress=False)
    run_sweep(parse_spec(SMALL), tmp_path / "alone", progress=False)
    grouped = {(r["point"], r["chip"]): r for r in read_table(tmp_path / "grouped")}
    alone = {(r["point"], r["chip"]): r for r in read_table(tmp_path / "alone")}
    assert grouped.keys() == alone.keys() and len(grouped) == 8
    for k, r in grouped.items():
        assert r["status"] == "done" and r["batched_with"] == 2 and alone[k]["batched_with"] == 1
        assert r["energy_per_image_j"] > 0
        for col in ("final_accuracy", "accuracy_per_epoch", "energy_per_image_j", "chip_time_per_image_s"):
            assert r[col] == alone[k][col], (k, col)
    with pytest.raises(ConfigError, match="group = N needs method"):
        parse_spec({**SMALL, "group": 2, "method": "asha", "samples": 2})


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "examples" / "sweeps").glob("*.toml")),
                         ids=lambda p: p.name)
def test_every_example_spec_parses_and_its_points_are_valid_configs(path):
    spec = load_spec(path)
    points = spec.points()
    assert points
    again = parse_spec(spec.to_dict())  # what a sweep's sweep.json records reads back as the same spec
    assert again.to_dict() == spec.to_dict() and [p.id for p in again.points()] == [p.id for p in points]
    for p in points:
        cfg = point_config(spec.to_dict(), p.to_dict())
        assert cfg.training.chips == spec.chips and cfg.training.epochs == spec.epochs


def test_a_group_whose_batch_fails_trains_its_points_alone(tmp_path, monkeypatch):
    """One point's chips diverging stops the whole batch: every point of the group then trains
    alone, so the healthy points keep the rows they have alone."""
    from analogtrain.errors import TrainingDivergedError
    from analogtrain.sweep.point import group_points, train_group
    from analogtrain.training import Trainer

    spec = parse_spec({**SMALL, "group": 4, "epochs": 1})
    d = spec.to_dict()
    group = max(group_points(d, [p.to_dict() for p in spec.points()], spec.group), key=len)
    assert len(group) == 2
    real = Trainer._check_finite

    def diverge_in_batches(self):
        if self.chip_configs is not None:
            raise TrainingDivergedError("non-finite weights appeared in layer 1 after 1 examples")
        return real(self)

    monkeypatch.setattr(Trainer, "_check_finite", diverge_in_batches)
    rows = train_group(d, group, str(tmp_path))
    assert [r["status"] for r in rows] == ["done", "done"]
    assert all("batched_with" not in r for r in rows)  # each trained alone (the table reads 1)
