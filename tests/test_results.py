"""RunResult: the typed, versioned results.json of every command."""

from __future__ import annotations

import json

import pytest

from analogtrain.data import load_dataset
from analogtrain.errors import DataError
from analogtrain.presets import get_preset
from analogtrain.runs.results import SCHEMA_VERSION, ExperimentResult, RunResult
from analogtrain.training import train


@pytest.fixture(scope="module")
def trained():
    cfg = get_preset("nature2018", {"training": {"hidden": [8], "epochs": 1, "seed": 0}})
    return train(cfg, load_dataset("digits").subset(200, 80))


def _run(res) -> RunResult:
    return RunResult(command="reproduce", experiment="digits", chips=res.chips, variants=["nature2018"], seed=0,
                     environment={"cpu": "test"},
                     experiments={"digits": ExperimentResult("digits", res.dataset, res.network,
                                                             variants={"nature2018": res})},
                     extra={"note": "kept by name"})


def test_a_run_writes_and_reads_back_the_same_typed_result(trained, tmp_path):
    run = _run(trained)
    run.write(tmp_path)
    back = RunResult.read(tmp_path)
    assert back == run and back.schema_version == SCHEMA_VERSION
    res = back.variant("nature2018")
    assert res.final_test_accuracy == trained.final_test_accuracy and res.history[0].epoch == 1
    assert res.images_per_s == pytest.approx(res.examples / res.wall_s)
    assert back.extra == {"note": "kept by name"}
    raw = json.loads((tmp_path / "results.json").read_text())
    assert raw["format"] == "analogtrain-results" and raw["version"] == SCHEMA_VERSION
    # the derived numbers are written for readers without analogtrain, and not read back as state
    v = raw["experiments"]["digits"]["variants"]["nature2018"]
    assert v["final_test_accuracy_mean"] == pytest.approx(trained.final_test_accuracy_mean)


def test_a_version_1_reproduce_file_is_read(trained, tmp_path):
    raw = _run(trained).to_dict()
    raw.update(format="analogtrain-reproduce", version=1)
    del raw["command"]
    (tmp_path / "results.json").write_text(json.dumps(raw))
    back = RunResult.read(tmp_path)
    assert back.command == "reproduce" and back.variant("nature2018").history == trained.history


@pytest.mark.parametrize("change, words", [
    (lambda r: r.update(version=SCHEMA_VERSION + 1), "reads up to"),
    (lambda r: r.update(format="something-else"), "not the results.json of an analogtrain run"),
    (lambda r: r["experiments"]["digits"]["variants"]["nature2018"].pop("network"), "lacks network"),
])
def test_a_file_of_another_version_or_damaged_is_refused_in_one_line(trained, tmp_path, change, words):
    raw = _run(trained).to_dict()
    change(raw)
    (tmp_path / "results.json").write_text(json.dumps(raw))
    with pytest.raises(DataError, match=words) as err:
        RunResult.read(tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="not found"):
        RunResult.read(tmp_path / "nothing")
