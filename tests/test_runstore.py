"""One rule for run folders: --resume with nothing to resume is one line for every command, and a
folder that holds a run is not overwritten without --force."""

from __future__ import annotations

from pathlib import Path

import pytest

from analogtrain import cli

SMOKE = Path(__file__).resolve().parents[1] / "examples" / "sweeps" / "smoke.toml"


@pytest.mark.parametrize("argv", [
    ["train", "--resume", "{out}"],
    ["reproduce", "mnist", "--quick", "--out", "{out}", "--resume"],
    ["sweep", str(SMOKE), "--out", "{out}", "--resume"],
])
@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_resume_with_nothing_to_resume_is_one_line(argv, folder, tmp_path, one_error_line):
    out = tmp_path / folder
    if folder == "empty":
        out.mkdir()
    assert cli.main([a.replace("{out}", str(out)) for a in argv]) != 0
    assert "nothing to resume" in one_error_line()


def test_a_finished_train_run_is_not_overwritten_without_force(tmp_path, one_error_line, capsys):
    out = str(tmp_path / "run")
    args = ["train", "--epochs", "1", "--hidden", "8", "--out", out, "--limit-train", "60", "--limit-test", "30"]
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(args) != 0
    assert "already holds an analogtrain train run" in one_error_line()
    assert cli.main([*args, "--force"]) == 0


def test_a_reproduce_run_is_not_overwritten_without_force(tmp_path, monkeypatch, one_error_line, capsys):
    monkeypatch.setenv("ANALOGTRAIN_DATA_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    out = str(tmp_path / "rep")
    args = ["reproduce", "mnist", "--quick", "--chips", "1", "--variants", "software", "--out", out,
            "--limit-train", "40", "--limit-test", "20", "--quiet"]
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(args) != 0
    assert "already holds an analogtrain reproduce run" in one_error_line()
    assert cli.main([*args, "--force"]) == 0
