"""The reference decision: nature2018 leaks its reference, the held one is an ablation, old names still read."""

from __future__ import annotations

import json

import pytest

import analogtrain as at
from analogtrain.report import load_results, upgrade_variant_names
from analogtrain.reproduce import DEFAULT_VARIANTS, resolve_variants


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
    def res(ref):
        cell = {"kind": "2pcm+3t1c"} if ref is None else {"kind": "2pcm+3t1c", "shared_reference": ref}
        return {"config": {"chip": {"cell": cell}}, "final_test_accuracy": [0.9]}
    return {"format": "analogtrain-reproduce", "variants": ["software", "nature2018", "nature2018-leaking-reference"],
            "experiments": {"mnist": {"variants": {"software": {"config": {"chip": {"cell": {"kind": "digital"}}}},
                                                   "nature2018": res("held"),
                                                   "nature2018-leaking-reference": res("leaking")}}}}


def test_results_recorded_under_the_old_names_read_under_the_new_ones(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(_old_results()), encoding="utf-8")
    r = load_results(tmp_path)
    assert r["variants"] == ["software", "nature2018-held-reference", "nature2018"]
    v = r["experiments"]["mnist"]["variants"]
    assert v["nature2018"]["config"]["chip"]["cell"]["shared_reference"] == "leaking"
    assert v["nature2018-held-reference"]["config"]["chip"]["cell"]["shared_reference"] == "held"
    # a run older still, whose config did not name the reference (it was held), is read as held
    old = _old_results()
    del old["experiments"]["mnist"]["variants"]["nature2018"]["config"]["chip"]["cell"]["shared_reference"]
    assert "nature2018-held-reference" in upgrade_variant_names(old)["experiments"]["mnist"]["variants"]


def test_a_current_run_keeps_its_names():
    new = _old_results()
    new["variants"] = ["nature2018"]
    new["experiments"]["mnist"]["variants"] = {"nature2018": _old_results()["experiments"]["mnist"]["variants"][
        "nature2018-leaking-reference"]}
    assert upgrade_variant_names(new)["variants"] == ["nature2018"]


def test_a_merged_report_of_runs_under_the_old_names_renders(tmp_path, monkeypatch):
    """Two runs written before the decision (held 'nature2018', 'nature2018-leaking-reference')
    merge into one report that names them as they are called now."""
    from analogtrain import cli, reproduce

    monkeypatch.setenv("ANALOGTRAIN_DATA_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    kw = dict(quick=True, limit_train=60, limit_test=40, progress=False, measure_batching=False, chips=1)
    reproduce.run_reproduction("mnist", tmp_path / "a", variants=["software", "nature2018-held-reference"], **kw)
    reproduce.run_reproduction("mnist", tmp_path / "b", variants=["software", "nature2018"], **kw)
    for run, (new, old) in (("a", ("nature2018-held-reference", "nature2018")),
                            ("b", ("nature2018", "nature2018-leaking-reference"))):
        f = tmp_path / run / "results.json"
        r = json.loads(f.read_text())
        r["variants"] = [old if v == new else v for v in r["variants"]]
        entry = r["experiments"]["mnist"]
        entry["variants"] = {old if k == new else k: v for k, v in entry["variants"].items()}
        f.write_text(json.dumps(r))
    assert cli.main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")]) == 0
    merged = json.loads((tmp_path / "m" / "results.json").read_text())
    assert set(merged["experiments"]["mnist"]["variants"]) == {"software", "nature2018", "nature2018-held-reference"}
    report = (tmp_path / "m" / "report.md").read_text()
    assert "nature2018-held-reference" in report and "leaking-reference" not in report
