"""``analogtrain reproduce``: the experiment driver, its report and its command line.

The end-to-end test is the ``reproduce all --quick`` smoke run on even smaller subsets (two
chips, ~120 training images), so that it stays well under a minute and a half on two cores.
"""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest
import torch

from analogtrain.errors import ConfigError, DataError, UserError
from analogtrain.experiments import prepare, reproduce, settings
from analogtrain.experiments.checks import ed_fig2_reading, paper_checks
from analogtrain.experiments.figures import (
    FIGURE_KINDS,
    figure_paths,
    pulse_figure_rows,
)
from analogtrain.runs.results import (
    SCHEMA_VERSION,
    EpochRecord,
    ExperimentResult,
    RunResult,
    TrainingResult,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _parser() -> argparse.ArgumentParser:
    """The analogtrain parser with ``reproduce`` registered (as cli.py does, or will)."""
    from analogtrain import cli

    parser = cli.make_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "reproduce" not in sub.choices:
        reproduce.add_parser(sub)
    return parser


def test_quick_all_writes_report_figures_and_results(shared_data, tmp_path):
    out = tmp_path / "run"
    res = reproduce.run_reproduction(
        "all", out, chips=2, quick=True, data_dir=shared_data, limit_train=100, limit_test=80,
        cache_dir=tmp_path / "features", progress=False, timing_examples=80,
    )
    assert res.complete and res.quick
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "SMOKE RUN" in report
    saved = RunResult.read(out)  # the typed results read back from results.json equal what the run returned
    assert saved.schema_version == SCHEMA_VERSION and saved.to_dict() == json.loads(json.dumps(res.to_dict()))
    assert list(saved.experiments) == list(reproduce.EXPERIMENTS)
    for exp, entry in saved.experiments.items():
        assert f"## {exp}" in report
        assert list(entry.variants) == list(reproduce.DEFAULT_VARIANTS)
        for name, run in entry.variants.items():
            assert run.chips == 2
            assert len(run.final_test_accuracy) == 2, (exp, name)
            assert run.history and run.config["training"]["chips"] == 2
            assert run.analysis["state_histograms"]
            layers = run.history[-1].layers  # per-epoch weight spread, every variant
            assert len(layers) == len(entry.network) - 1 and all(len(s["std"]) == 2 for s in layers)
            section = report.split(f"## {exp}")[1]
            assert "### Weight spread per epoch" in section
            assert re.search(rf"\| {re.escape(name)} \| {len(layers)} \| [0-9.]+ / [0-9.]+ \(epoch", section), name
        for kind, path in figure_paths(out, exp).items():
            assert path.read_bytes()[:8] == PNG_MAGIC, (exp, kind)
            assert f"({path.relative_to(out).as_posix()})" in report
        # the batched-chips timing is measured and reported
        t = entry.timing
        assert t["chips"] == 2 and t["examples"] == 80 and t["wall_1chip_s"] > 0 and t["wall_batched_s"] > 0
        assert t["ratio"] == pytest.approx(t["wall_batched_s"] / t["wall_1chip_s"])
        assert entry.checks and all(c["verdict"] == "not evaluated" for c in entry.checks)
    assert report.count("Cost of batching chips") == len(reproduce.EXPERIMENTS)
    assert "the time of one chip" in report

    mnist = saved.experiments["mnist"]
    assert mnist.network == [528, 250, 125, 10] and not mnist.dataset["stand_in"]
    hybrid = mnist.variants["nature2018"]
    assert hybrid.transfers >= 2 and hybrid.analysis["pulse_statistics_pooled"]["tracked_synapses"] > 0
    assert hybrid.analysis["state_histograms_before_last_transfer"][0]["v_c_v"]["n"] > 0
    assert (out / "data" / hybrid.analysis["pulse_window_file"]).is_file()
    assert mnist.variants["2pcm"].transfers == 0
    assert "regenerat" in saved.experiments["mnist-backrand"].dataset["description"].lower()
    for exp, classes in (("cifar10", 10), ("cifar100", 100)):
        entry = saved.experiments[exp]
        if entry.dataset["stand_in"]:  # EfficientNet-Lite0 weights not installed here
            assert "Stand-in data" in report
            continue
        # a single analog layer on the 1,280 EfficientNet-Lite0 features, scaled into the DAC range
        assert entry.network == [1280, classes] and entry.settings["hidden"] == []
        assert entry.dataset["features"]["input_size"] == settings.QUICK_INPUT_SIZE
        assert entry.variants["nature2018"].cells_per_layer == [1281 * classes]


def test_cli_stand_in_run_and_summary(tmp_path, monkeypatch, capsys):
    """Without data on disk a quick run uses the digits stand-in and says so."""
    monkeypatch.setenv("ANALOGTRAIN_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("ANALOGTRAIN_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    args = _parser().parse_args(["reproduce", "cifar10", "--quick", "--out", str(tmp_path / "o"), "--chips", "1",
                                 "--variants", "software", "nature2018", "--limit-train", "60", "--limit-test",
                                 "40", "--quiet"])
    assert args.func is reproduce.run_cli and args.threads == 1
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "cifar10: software" in printed
    entry = RunResult.read(tmp_path / "o").experiments["cifar10"]
    assert entry.dataset["stand_in"] and entry.network == [64, 10]
    assert entry.timing is None  # one chip: nothing to compare
    assert "Stand-in data" in (tmp_path / "o" / "report.md").read_text(encoding="utf-8")
    for path in figure_paths(tmp_path / "o", "cifar10").values():
        assert path.read_bytes()[:8] == PNG_MAGIC


def test_cli_flags_and_defaults():
    args = _parser().parse_args(["reproduce", "mnist"])
    assert (args.experiment, args.out, args.chips, args.quick, args.threads) == ("mnist", "runs/reproduce", 3,
                                                                                   False, 1)
    assert args.variants is None and args.epochs is None and args.data_dir is None
    args = _parser().parse_args(["reproduce", "all", "--quick", "--chips", "5", "--epochs", "2", "--variants",
                                 "software", "2pcm", "--data-dir", "d", "--threads", "2", "--out", "o"])
    assert (args.experiment, args.chips, args.epochs, args.variants, args.data_dir, args.threads) == (
        "all", 5, 2, ["software", "2pcm"], "d", 2)


@pytest.mark.parametrize("argv, error, words", [
    (["reproduce", "mnist", "--chips", "0"], ConfigError, "--chips"),
    (["reproduce", "mnist", "--threads", "0"], ConfigError, "--threads"),
    (["reproduce", "mnist", "--variants", "nature2019"], ConfigError, "did you mean 'nature2018'"),
    (["reproduce", "mnist", "--data-dir", "/nonexistent/analogtrain-data"], DataError, "does not exist"),
])
def test_cli_user_errors_are_one_line(argv, error, words, tmp_path):
    args = _parser().parse_args([*argv, "--out", str(tmp_path / "o"), "--quiet"])
    with pytest.raises(error) as exc:
        args.func(args)
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_cli_unknown_experiment_is_a_user_error():
    with pytest.raises(UserError, match="invalid choice"):
        _parser().parse_args(["reproduce", "imagenet"])


def test_api_argument_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown experiment"):
        reproduce.run_reproduction("mnits", tmp_path)
    with pytest.raises(ConfigError, match="chips"):
        reproduce.run_reproduction("mnist", tmp_path, chips=0)
    with pytest.raises(ConfigError, match="epochs"):
        reproduce.run_reproduction("mnist", tmp_path, epochs=0)
    assert reproduce.resolve_variants(["software", "software", "2pcm"]) == ["software", "2pcm"]


def test_scale_features_into_the_dac_range():
    rng = np.random.default_rng(0)
    f_train = rng.uniform(0, 6, size=(50, 4)).astype(np.float32)
    f_train[:, 2] = 3.0  # constant on the training set
    f_test = np.array([[-1.0, 7.0, 3.0, 2.0]], dtype=np.float32)
    x_tr, x_te, info = prepare.scale_features(f_train, f_test)
    assert x_tr.dtype == np.float32 and x_tr.min() >= 0 and x_tr.max() <= 1
    assert np.allclose(x_tr[:, [0, 1, 3]].max(axis=0), 1) and np.allclose(x_tr[:, [0, 1, 3]].min(axis=0), 0)
    assert (x_tr[:, 2] == 0).all() and x_te[0, 2] == 0
    assert x_te[0, 0] == 0 and x_te[0, 1] == 1  # clipped, as the DAC would
    assert info["constant_features"] == 1 and info["test_values_clipped_fraction"] == pytest.approx(0.5)


def _result(final: list[float] | None = None, kind: str = "2pcm+3t1c", **analysis) -> TrainingResult:
    """A made-up training result: final accuracy per chip, cell kind, and what a study added."""
    history = [EpochRecord(1, list(final), list(final), 1, 0, 1.0)] if final else []
    return TrainingResult(network=[4, 2], synapses=10, cells_per_layer=[10], chips=len(final or [1]),
                          leak_clock_s=1e-6, epochs_completed=len(history), examples=1, wall_s=1.0, history=history,
                          transfers=0, initial_programming_pulses=[0], transfer_tuning_pulses=[0],
                          transfer_unconverged_devices=[0], occasional_reset_pulses=[0], update_pulses=[None],
                          saturated_updates=[None], pulse_statistics=None, pulse_statistics_per_window=[],
                          config={"chip": {"cell": {"kind": kind}}}, analysis=analysis)


def _fake(finals: dict[str, list[float]], exp: str = "mnist", pooled: dict | None = None) -> ExperimentResult:
    pooled = pooled or {}
    return ExperimentResult(exp, {}, [4, 2], variants={
        name: _result(acc, pulse_statistics_pooled=pooled.get(name)) for name, acc in finals.items()})


def test_paper_checks_say_what_is_and_is_not_reproduced():
    good = _fake({"software": [0.979, 0.979], "nature2018": [0.977, 0.978], "nature2018-no-inversion": [0.95, 0.96],
                  "2pcm": [0.90, 0.91], "nature2018-ideal-cmos": [0.978, 0.978]},
                 pooled={"nature2018": {"median_abs_net": 90, "median_total": 1200},
                         "2pcm": {"median_abs_net": 8, "median_total": 40}})
    verdicts = {c["claim"]: c["verdict"] for c in paper_checks(good)}
    assert set(verdicts.values()) == {"reproduced"}, verdicts
    bad = _fake({"software": [0.98], "nature2018": [0.96], "nature2018-no-inversion": [0.97], "2pcm": [0.975]},
                pooled={"nature2018": {"median_abs_net": 3, "median_total": 20}})
    checks = {c["claim"]: c["verdict"] for c in paper_checks(bad)}
    assert checks["the 2PCM+3T1C chip (nature2018) trains to software-equivalent accuracy"] == "not reproduced"
    assert checks["without polarity inversion, CMOS mismatch costs accuracy"] == "not reproduced"
    assert checks["the PCM-only 2-PCM cell is clearly worse"] == "not reproduced"
    assert checks["polarity inversion cancels the CMOS mismatch"] == "not evaluated"
    assert "not reproduced" in checks.values()
    # a smoke run never claims anything
    assert {c["verdict"] for c in paper_checks(good, quick=True)} == {"not evaluated"}
    assert set(FIGURE_KINDS) == {"accuracy", "pulse_statistics", "pulse_windows", "state_histograms",
                                 "transfer_pulses", "weight_spread"}


def test_the_papers_pulse_counts_are_placed_in_the_run_window_by_window():
    """ED Fig. 2 gives one typical synapse over 16,000 images; the report says in which windows
    of the run its total and its net fit (within a factor 3)."""
    res = _result([0.9])
    res.pulse_statistics_per_window = [
        {"examples": 16_000 * (i + 1), "median_total": t, "median_abs_net": n, "layers": []}
        for i, (t, n) in enumerate([(2500, 74), (1100, 32), (400, 20), (100, 10)])]
    text = ed_fig2_reading(res, "2pcm+3t1c")
    assert "the total fits 3 of 4 windows (examples 0-48,000)" in text
    assert "the net fits 1 of 4 windows (examples 0-16,000)" in text
    assert "both fit 1 of 4 windows (examples 0-16,000)" in text
    res.pulse_statistics_per_window = []
    assert ed_fig2_reading(res, "2pcm+3t1c") == "no pulse windows recorded"


def test_interrupted_run_resumes_to_the_same_results(tmp_path, monkeypatch):
    """Ctrl-C during a variant, then --resume: finished variants are kept, the interrupted one
    continues from its checkpoint, and every result equals that of an uninterrupted run."""
    from analogtrain.training import Trainer

    monkeypatch.setenv("ANALOGTRAIN_DATA_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    kw = dict(chips=2, quick=True, variants=["software", "nature2018"], limit_train=60, limit_test=40,
              progress=False, measure_batching=False, checkpoint_every=25)
    whole = reproduce.run_reproduction("mnist", tmp_path / "whole", **kw)

    real_save = Trainer.save_checkpoint
    saves = []

    def save_then_interrupt(self, path, extra=None):
        out = real_save(self, path, extra)
        if "nature2018" in str(path):
            saves.append(str(path))
            if len(saves) == 2:
                raise KeyboardInterrupt
        return out

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        reproduce.run_reproduction("mnist", tmp_path / "cut", **kw)
    ckpt = reproduce.checkpoint_path(tmp_path / "cut", "mnist", "nature2018")
    assert ckpt.exists()
    monkeypatch.setattr(Trainer, "save_checkpoint", real_save)
    logs = []
    resumed = reproduce.run_reproduction("mnist", tmp_path / "cut", resume=True, log=logs.append, **kw)
    assert any("software] done in the interrupted run" in line for line in logs)
    assert any("nature2018] resuming" in line for line in logs)
    assert not ckpt.exists()  # removed once the variant's results are written
    for v in ("software", "nature2018"):
        a, b = whole.variant(v), resumed.variant(v)
        assert a.final_test_accuracy == b.final_test_accuracy
        assert [h.test_accuracy for h in a.history] == [h.test_accuracy for h in b.history]
        assert a.update_pulses == b.update_pulses
    with pytest.raises(ConfigError, match="--resume"):
        reproduce.run_reproduction("mnist", tmp_path / "cut", resume=True, **dict(kw, chips=3))


def test_a_run_cut_in_its_first_variant_resumes(tmp_path, monkeypatch):
    """Before any variant has finished, the run folder already holds the run, so --resume continues
    the first variant from its checkpoint instead of refusing."""
    from analogtrain.training import Trainer

    monkeypatch.setenv("ANALOGTRAIN_DATA_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    kw = {"chips": 1, "quick": True, "variants": ["nature2018"], "limit_train": 60, "limit_test": 40,
          "progress": False, "measure_batching": False, "checkpoint_every": 25}
    whole = reproduce.run_reproduction("mnist", tmp_path / "whole", **kw)
    real_save = Trainer.save_checkpoint

    def save_then_interrupt(self, path, extra=None):
        real_save(self, path, extra)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        reproduce.run_reproduction("mnist", tmp_path / "cut", **kw)
    monkeypatch.setattr(Trainer, "save_checkpoint", real_save)
    resumed = reproduce.run_reproduction("mnist", tmp_path / "cut", resume=True, **kw)
    assert resumed.variant("nature2018").final_test_accuracy == whole.variant("nature2018").final_test_accuracy
    logs: list[str] = []  # resuming a finished run trains nothing and says that it rewrites the report
    again = reproduce.run_reproduction("mnist", tmp_path / "cut", resume=True, log=logs.append, **kw)
    assert any("is complete; nothing trains again" in line for line in logs)
    assert again.variant("nature2018").final_test_accuracy == resumed.variant("nature2018").final_test_accuracy


def test_a_run_that_fails_before_training_leaves_no_run_behind(tmp_path, monkeypatch):
    """Missing data fails before any variant trains: the folder holds no run, so the same command
    with the data given is not refused as overwriting one."""
    def no_data(*args, **kwargs):
        raise DataError("no CIFAR-10 files under DIR; give --data-dir")

    monkeypatch.setattr(reproduce, "prepare_data", no_data)
    with pytest.raises(DataError):
        reproduce.run_reproduction("cifar10", tmp_path / "out", quick=True, progress=False)
    assert not (tmp_path / "out" / "results.json").exists()


def test_runs_of_one_experiment_merge_into_one_report(tmp_path, monkeypatch, capsys):
    """Variants trained in separate runs share one report; runs that differ in seed or settings do not."""
    from analogtrain import cli

    monkeypatch.setenv("ANALOGTRAIN_DATA_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    kw = dict(quick=True, limit_train=60, limit_test=40, progress=False, measure_batching=False)
    reproduce.run_reproduction("mnist", tmp_path / "a", chips=2, variants=["software", "nature2018"], **kw)
    reproduce.run_reproduction("mnist", tmp_path / "b", chips=1, variants=["software", "2pcm"], **kw)
    assert cli.main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")]) == 0
    # a merged report is a run too: not overwritten without --force
    capsys.readouterr()
    assert cli.main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")]) != 0
    assert "--force" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m"), "--force"]) == 0
    merged = RunResult.read(tmp_path / "m")
    entry = merged.experiments["mnist"]
    assert list(entry.variants) == ["software", "nature2018", "2pcm"]
    # the software baseline of the run with more chips is kept, the other is listed as not used
    assert entry.variants["software"] == RunResult.read(tmp_path / "a").variant("software")
    assert entry.variants["2pcm"] == RunResult.read(tmp_path / "b").variant("2pcm")
    assert merged.extra["merge_skipped"] == [f"mnist/software from {tmp_path / 'b'}"]
    assert {c["claim"] for c in entry.checks} >= {"the PCM-only 2-PCM cell is clearly worse"}
    text = (tmp_path / "m" / "report.md").read_text()
    assert "chips per variant: software 2, nature2018 2, 2pcm 1" in text and "merged from" in text
    # each source run's CPU is recorded and shown; runs of one machine raise no warning
    from analogtrain.runs.store import cpu_model
    assert [m["cpu"] for m in merged.extra["merged_from"]] == [cpu_model(), cpu_model()]
    assert f"CPU {cpu_model()}" in text and "different (or unrecorded) CPUs" not in text
    # a run from another CPU: merged, with the warning that the same seed is then another run
    res_b = json.loads((tmp_path / "b" / "results.json").read_text())
    res_b["environment"]["cpu"] = "Some Other CPU @ 2.0GHz"
    (tmp_path / "b" / "results.json").write_text(json.dumps(res_b))
    assert cli.main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "mx")]) == 0
    text_x = (tmp_path / "mx" / "report.md").read_text()
    assert "different (or unrecorded) CPUs" in text_x and "CPU Some Other CPU @ 2.0GHz" in text_x
    for p in figure_paths(tmp_path / "m", "mnist").values():
        assert p.is_file() and p.stat().st_size > 10_000
    windows = sorted(p.name for p in (tmp_path / "m" / "data").glob("*.npz"))  # software has no pulses
    assert windows == ["mnist__2pcm__pulse_window.npz", "mnist__nature2018__pulse_window.npz"]
    # another seed: refused with one line
    reproduce.run_reproduction("mnist", tmp_path / "c", chips=1, variants=["2pcm"], seed=1, **kw)
    capsys.readouterr()
    assert cli.main(["report", str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(tmp_path / "m2")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "seed" in err
    # another schedule (epochs): refused, naming what differs
    reproduce.run_reproduction("mnist", tmp_path / "d", chips=1, variants=["2pcm"], epochs=1, **kw)
    capsys.readouterr()
    assert cli.main(["report", str(tmp_path / "a"), str(tmp_path / "d"), "--out", str(tmp_path / "m3")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "different settings (epochs differs)" in err
    assert cli.main(["report", str(tmp_path / "a"), str(tmp_path / "b")]) != 0  # merging needs --out
    assert "--out" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path / "a")]) == 0  # one run: re-rendered in place


def test_config_overrides_reach_every_variant_and_the_report(tmp_path, monkeypatch, capsys):
    """--set changes the chip of every variant, is recorded, and keeps runs with other overrides apart."""
    from analogtrain import cli

    monkeypatch.setenv("ANALOGTRAIN_DATA_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    argv = ["reproduce", "mnist", "--quick", "--chips", "1", "--variants", "software", "nature2018",
            "--limit-train", "60", "--limit-test", "40", "--quiet", "--set", "chip.transfer.mode=column",
            "--set", "chip.capacitor.pull_current_na=12.5"]
    assert cli.main([*argv, "--out", str(tmp_path / "o")]) == 0
    saved = RunResult.read(tmp_path / "o")
    want = {"chip": {"transfer": {"mode": "column"}, "capacitor": {"pull_current_na": 12.5}}}
    assert saved.arguments["overrides"] == want
    entry = saved.experiments["mnist"]
    assert entry.settings["overrides"] == want
    cfg = entry.variants["nature2018"].config
    assert cfg["chip"]["transfer"]["mode"] == "column" and cfg["chip"]["capacitor"]["pull_current_na"] == 12.5
    assert cfg["chip"]["cell"]["transfer_offset_us"] == 0.0  # the preset's own setting is kept
    text = (tmp_path / "o" / "report.md").read_text(encoding="utf-8")
    assert '`chip.transfer.mode = "column"`' in text and "`chip.capacitor.pull_current_na = 12.5`" in text
    # a run without the overrides cannot share its report, and resuming with other overrides is refused
    reproduce.run_reproduction("mnist", tmp_path / "plain", chips=1, variants=["2pcm"], quick=True,
                               limit_train=60, limit_test=40, progress=False, measure_batching=False)
    capsys.readouterr()
    assert cli.main(["report", str(tmp_path / "o"), str(tmp_path / "plain"), "--out", str(tmp_path / "m")]) != 0
    assert "overrides" in capsys.readouterr().err
    assert cli.main([*argv[:-2], "--out", str(tmp_path / "o"), "--resume"]) != 0
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("sets, words", [
    (["training.epochs=3"], "use --epochs"),
    (["chip.transfer.interval_examples=100"], "--transfer-interval"),
    (["chip.capacitor.capacitance_f=1"], "capacitance_f"),
    (["chip.transfer.mode=diagonal"], "chip.transfer.mode"),
])
def test_bad_config_overrides_fail_before_training(sets, words, tmp_path, one_error_line):
    from analogtrain import cli

    argv = ["reproduce", "mnist", "--quick", "--out", str(tmp_path / "o"), "--quiet"]
    for item in sets:
        argv += ["--set", item]
    assert cli.main(argv) != 0
    assert words in one_error_line()
    assert not (tmp_path / "o" / "results.json").exists()


def test_pulse_figure_falls_back_to_another_full_cell_variant():
    def v(kind, window=True):
        return _result([0.5], kind, pulse_window_file="w.npz" if window else None)
    both = {"software": v("digital", False), "nature2018": v("2pcm+3t1c"), "2pcm": v("2pcm"),
            "nature2018-held-reference": v("2pcm+3t1c")}
    assert pulse_figure_rows(both) == ["nature2018", "2pcm"]
    # a run of the leaking reference alone still gets its ED Fig. 2
    alone = {"nature2018-held-reference": v("2pcm+3t1c"), "nature2018-offset": v("2pcm+3t1c", False)}
    assert pulse_figure_rows(alone) == ["nature2018-held-reference"]
    assert pulse_figure_rows({"software": v("digital", False)}) == []


def test_cpu_model_names_the_processor(tmp_path, monkeypatch):
    """The run's environment names the CPU, read from /proc/cpuinfo where there is one."""
    from analogtrain.runs import store as experiment

    name = experiment.cpu_model()
    assert isinstance(name, str) and name and name != "unknown"
    assert experiment.environment()["cpu"] == name
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Test CPU 9000\n")
    real_open = open

    def fake_open(path, *args, **kwargs):
        return real_open(cpuinfo if path == "/proc/cpuinfo" else path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    assert experiment.cpu_model() == "Test CPU 9000"
    cpuinfo.write_text("processor\t: 0\n")  # no model line: falls back to platform, never empty
    monkeypatch.setattr(experiment.platform, "processor", lambda: "")
    monkeypatch.setattr(experiment.platform, "machine", lambda: "x86_64")
    assert experiment.cpu_model() == "x86_64"


def test_variants_trained_side_by_side_give_the_same_results(tmp_path, monkeypatch):
    """--jobs 2 trains variants in two processes; every number equals training them one by one."""
    monkeypatch.setenv("ANALOGTRAIN_DATA_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    kw = dict(quick=True, limit_train=60, limit_test=40, progress=False, measure_batching=False, chips=2,
              variants=["software", "nature2018", "2pcm"])
    one = reproduce.run_reproduction("mnist", tmp_path / "one", jobs=1, **kw)
    two = reproduce.run_reproduction("mnist", tmp_path / "two", jobs=2, **kw)
    a, b = one.experiments["mnist"].variants, two.experiments["mnist"].variants
    assert list(a) == list(b) == ["software", "nature2018", "2pcm"]
    for v in a:
        assert a[v].final_test_accuracy == b[v].final_test_accuracy, v
        assert a[v].update_pulses == b[v].update_pulses, v
    # the workers' epoch lines reach the parent's log (printed above its one progress display)
    logs: list[str] = []
    reproduce.run_reproduction("mnist", tmp_path / "shown", jobs=2, log=logs.append, **{**kw, "progress": True})
    for v in ("software", "nature2018", "2pcm"):
        assert any(f"[mnist/{v}] epoch 2/2: test accuracy" in line for line in logs), (v, logs)
        assert any(f"[mnist/{v}] final test accuracy" in line for line in logs), v
    with pytest.raises(ConfigError, match="--jobs"):
        reproduce.run_reproduction("mnist", tmp_path / "three", jobs=0, **kw)


def test_jobs_start_the_costliest_variants_first(tmp_path, monkeypatch):
    """--jobs hands out the units by their cost (STEP_COST per variant): a batch of three 3T1C
    variants, then 2-PCM, then the 3T1C variants alone in their order, software last."""
    monkeypatch.setenv("ANALOGTRAIN_DATA_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    variants = ["software", "nature2018", "nature2018-held-reference", "2pcm", "nature2018-no-inversion"]
    s = settings.make_settings("mnist", prepare.prepare_data("mnist", None, True, 60, 40, 0, False, None, None,
                                                             settings.CIFAR_BACKBONE, "cpu"), True, None, 20, {})
    assert reproduce.longest_first(reproduce.batch_groups(variants, s, 2, 0), s, 2, 0) == [
        ["nature2018", "nature2018-held-reference", "nature2018-no-inversion"], ["2pcm"], ["software"]]
    assert reproduce.longest_first([[v] for v in variants], s, 2, 0) == [
        ["2pcm"], ["nature2018"], ["nature2018-held-reference"], ["nature2018-no-inversion"], ["software"]]


def test_variants_trained_as_one_batch_give_the_results_they_have_alone(tmp_path, monkeypatch):
    """--batch-variants on: the 2PCM+3T1C variants that differ in per-chip parameters train as one
    batch of chips, and every variant's accuracies, pulse counts, ED Fig. 2 statistics (window by
    window), device-state histograms and transfer log equal those of training it alone."""
    monkeypatch.setenv("ANALOGTRAIN_DATA_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    variants = ["software", "nature2018", "nature2018-held-reference", "2pcm", "nature2018-no-inversion"]
    kw = dict(quick=True, limit_train=60, limit_test=40, progress=False, measure_batching=False, chips=2,
              variants=variants, transfer_interval=20)
    s = settings.make_settings("mnist", prepare.prepare_data("mnist", None, True, 60, 40, 0, False, None, None,
                                                             settings.CIFAR_BACKBONE, "cpu"), True, None, 20, {})
    assert reproduce.batch_groups(variants, s, 2, 0) == [
        ["software"], ["nature2018", "nature2018-held-reference", "nature2018-no-inversion"], ["2pcm"]]
    alone = reproduce.run_reproduction("mnist", tmp_path / "alone", batch_variants=False, **kw)
    logs: list[str] = []
    batch = reproduce.run_reproduction("mnist", tmp_path / "batch", batch_variants=True, log=logs.append,
                                       **{**kw, "progress": True})
    assert any("trained as one batch of 6 chips" in line for line in logs)
    a, b = alone.experiments["mnist"].variants, batch.experiments["mnist"].variants
    assert list(a) == list(b) == variants
    for v in variants:
        ra, rb = a[v], b[v]
        assert rb.chips == 2 and rb.config == ra.config, v
        assert [h.test_accuracy for h in ra.history] == [h.test_accuracy for h in rb.history], v
        assert ra.update_pulses == rb.update_pulses and ra.transfer_tuning_pulses == rb.transfer_tuning_pulses, v
        assert ra.per_chip_counts == rb.per_chip_counts, v
        assert ra.pulse_statistics == rb.pulse_statistics, v
        strip = [{k: w[k] for k in ("examples", "median_total", "median_abs_net", "layers") if k in w}
                 for w in ra.pulse_statistics_per_window]
        assert strip == rb.pulse_statistics_per_window and strip, v
        keys = ["state_histograms"] + (["pulse_statistics_pooled"] if v != "software" else [])
        if v.startswith("nature2018"):
            keys.append("state_histograms_before_last_transfer")
        for key in keys:
            assert ra.analysis.get(key) and ra.analysis[key] == rb.analysis.get(key), (v, key)
        assert [e["pulses"] for e in ra.analysis["transfer_pulse_log"]] == \
            [e["pulses"] for e in rb.analysis["transfer_pulse_log"]], v
    assert b["nature2018"].analysis["trained_in_batch_with"] == ["nature2018-held-reference", "nature2018-no-inversion"]
    assert "trained as one batch of chips" in (tmp_path / "batch" / "report.md").read_text(encoding="utf-8")
    assert not (tmp_path / "batch" / "checkpoints").exists() or not any((tmp_path / "batch" / "checkpoints").iterdir())


def test_a_batch_that_diverges_falls_back_to_its_variants_one_at_a_time(tmp_path, monkeypatch):
    """A chip diverging stops a whole batch; its variants then train alone, each to the result it
    has alone, and the log says why."""
    from analogtrain.errors import TrainingDivergedError
    from analogtrain.training import Trainer

    monkeypatch.setenv("ANALOGTRAIN_DATA_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    kw = dict(quick=True, limit_train=60, limit_test=40, progress=False, measure_batching=False, chips=2,
              variants=["nature2018", "nature2018-no-inversion"], transfer_interval=20)
    alone = reproduce.run_reproduction("mnist", tmp_path / "alone", batch_variants=False, **kw)
    real = Trainer._check_finite

    def diverge_in_batches(self):
        if self.chip_configs is not None and self.state.examples_seen >= 40:
            raise TrainingDivergedError("non-finite weights appeared in layer 1 after 40 examples")
        return real(self)

    monkeypatch.setattr(Trainer, "_check_finite", diverge_in_batches)
    logs: list[str] = []
    batch = reproduce.run_reproduction("mnist", tmp_path / "batch", batch_variants=True, log=logs.append,
                                       **{**kw, "progress": True})
    assert any("the batch nature2018, nature2018-no-inversion stopped" in line for line in logs), logs
    for v in kw["variants"]:
        a, b = alone.experiments["mnist"].variants[v], batch.experiments["mnist"].variants[v]
        assert [h.test_accuracy for h in a.history] == [h.test_accuracy for h in b.history], v
        assert "trained_in_batch_with" not in b.analysis
