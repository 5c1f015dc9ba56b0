"""The reference decision: nature2018 leaks its reference, the held one is an ablation, old names still read."""

from __future__ import annotations

import json

import pytest

import analogtrain as at
from analogtrain.experiments.report import load_results, upgrade_variant_names
from analogtrain.experiments.reproduce import DEFAULT_VARIANTS, resolve_variants
from analogtrain.runs.results import EpochRecord, RunResult, TrainingResult


def test_the_default_config_is_the_nature2018_preset():
    assert at.ExperimentConfig() == at.get_preset("nature2018")
    assert at.ExperimentConfig().chip.cell.shared_reference == "leaking"
    assert at.get_preset("nature2018-held-reference").chip.cell.shared_reference == "held"


def test_the_old_preset_name_is_an_alias_that_says_so():
    with pytest.warns(FutureWarning, match="renamed.*nature2018-held-reference"):
        cfg = at.get_preset("nature2018-leaking-reference")
    assert cfg == at.get_preset("nature2018")
    assert resolve_variants(["nature2018-leaking-reference"]) == ["nature2018"]


def test_reproduce_trains_the_decided_variants():
    assert DEFAULT_VARIANTS == ("software", "nature2018", "nature2018-held-reference", "nature2018-no-inversion",
                                "nature2018-ideal-cmos", "2pcm")


def _old_results() -> dict:
    """A version-1 reproduce results.json written before the reference decision."""
    def res(ref, kind="2pcm+3t1c"):
        cell = {"kind": kind} if ref is None else {"kind": kind, "shared_reference": ref}
        return TrainingResult(
            network=[4, 2], synapses=10, cells_per_layer=[10], chips=1, leak_clock_s=1e-6, epochs_completed=1,
            examples=1, wall_s=1.0, history=[EpochRecord(1, [0.9], [0.9], 1, 0, 1.0)], transfers=0,
            initial_programming_pulses=[0], transfer_tuning_pulses=[0], transfer_unconverged_devices=[0],
            occasional_reset_pulses=[0], update_pulses=[None], saturated_updates=[None], pulse_statistics=None,
            pulse_statistics_per_window=[], config={"chip": {"cell": cell}}).to_dict()
    return {"format": "analogtrain-reproduce", "version": 1, "experiment": "mnist", "chips": 1, "seed": 0,
            "environment": {}, "variants": ["software", "nature2018", "nature2018-leaking-reference"],
            "experiments": {"mnist": {"experiment": "mnist", "dataset": {}, "network": [4, 2],
                                      "variants": {"software": res(None, "digital"), "nature2018": res("held"),
                                                   "nature2018-leaking-reference": res("leaking")}}}}


def test_results_recorded_under_the_old_names_read_under_the_new_ones(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(_old_results()), encoding="utf-8")
    r = load_results(tmp_path)
    assert r.command == "reproduce" and r.variants == ["software", "nature2018-held-reference", "nature2018"]
    v = r.experiments["mnist"].variants
    assert v["nature2018"].config["chip"]["cell"]["shared_reference"] == "leaking"
    assert v["nature2018-held-reference"].config["chip"]["cell"]["shared_reference"] == "held"
    # a run older still, whose config did not name the reference (it was held), is read as held
    old = _old_results()
    del old["experiments"]["mnist"]["variants"]["nature2018"]["config"]["chip"]["cell"]["shared_reference"]
    assert "nature2018-held-reference" in upgrade_variant_names(RunResult.from_dict(old)).experiments["mnist"].variants


def test_a_current_run_keeps_its_names():
    new = _old_results()
    new["variants"] = ["nature2018"]
    new["experiments"]["mnist"]["variants"] = {"nature2018": _old_results()["experiments"]["mnist"]["variants"][
        "nature2018-leaking-reference"]}
    assert upgrade_variant_names(RunResult.from_dict(new)).variants == ["nature2018"]


def test_a_merged_report_of_runs_under_the_old_names_renders(tmp_path, monkeypatch):
    """Two runs written before the decision (held 'nature2018', 'nature2018-leaking-reference')
    merge into one report that names them as they are called now."""
    from analogtrain import cli
    from analogtrain.experiments import reproduce

    monkeypatch.setenv("ANALOGTRAIN_DATA_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    kw = dict(quick=True, limit_train=60, limit_test=40, progress=False, measure_batching=False, chips=1)
    reproduce.run_reproduction("mnist", tmp_path / "a", variants=["software", "nature2018-held-reference"], **kw)
    reproduce.run_reproduction("mnist", tmp_path / "b", variants=["software", "nature2018"], **kw)
    for run, (new, old) in (("a", ("nature2018-held-reference", "nature2018")),
                            ("b", ("nature2018", "nature2018-leaking-reference"))):
        f = tmp_path / run / "results.json"
        r = json.loads(f.read_text())
        # as a version-1 file of that time: the untyped reproduce format, under the old names
        r.update(format="analogtrain-reproduce", version=1)
        del r["command"]
        r["variants"] = [old if v == new else v for v in r["variants"]]
        entry = r["experiments"]["mnist"]
        entry["variants"] = {old if k == new else k: v for k, v in entry["variants"].items()}
        f.write_text(json.dumps(r))
    assert cli.main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")]) == 0
    merged = RunResult.read(tmp_path / "m")
    assert merged.schema_version == 2  # a merge of version-1 runs is written in today's version
    assert set(merged.experiments["mnist"].variants) == {"software", "nature2018", "nature2018-held-reference"}
    report = (tmp_path / "m" / "report.md").read_text()
    assert "nature2018-held-reference" in report and "leaking-reference" not in report
