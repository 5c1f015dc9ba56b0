"""Every `analogtrain ...` command shown in the README and the docs parses: its subcommand and
every option it names exist (the docs cannot name a flag the CLI has dropped)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from analogtrain import cli

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: placeholders the docs use, and a value that parses
PLACEHOLDERS = {"PRESET": "nature2018", "TAU": "0.01", "DIR": "runs/x", "FILE": "x.toml", "SPEC.toml": "x.toml",
                "RUN": "runs/x", "HEAD_IP:6379": "127.0.0.1:6379", "KEY=VALUE": "training.epochs=1", "DATA": "data"}


def commands() -> list[tuple[str, str]]:
    out = []
    for f in FILES:
        for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", f.read_text(encoding="utf-8"), flags=re.S):
            for line in block.splitlines():
                line = line.split(" #")[0].strip().removesuffix("&").strip()  # '&': started in the background
                if line.startswith("analogtrain ") and "..." not in line and "|" not in line:
                    out.append((f.name, line))
    return out


CMDS = commands()


def test_the_docs_show_commands():
    assert len(CMDS) >= 15


@pytest.mark.parametrize("where,line", CMDS, ids=[f"{w}:{l[:60]}" for w, l in CMDS])
def test_documented_command_parses(where, line):
    argv = [PLACEHOLDERS.get(a, a) for a in shlex.split(line)[1:]]
    try:
        args = cli.make_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{where}: '{line}' does not parse (exit {exc.code})")
    assert args.command == argv[0]


#: what makes a documented command small enough for a test, per subcommand (appended: a later
#: flag wins over the document's own); the command is otherwise run as written
SMALL = {
    "train": ["--limit-train", "60", "--limit-test", "30", "--epochs", "1", "--hidden", "8", "--quiet"],
    "reproduce": ["--quick", "--limit-train", "40", "--limit-test", "20", "--epochs", "1", "--chips", "1",
                  "--jobs", "1", "--quiet"],
}
#: commands that only illustrate a setting and cannot run here: a cluster address, a spec of
#: the reader's own
NOT_HERE = ("--address", "study.toml")


def _small(argv: list[str], data: Path) -> list[str]:
    argv = [str(data) if a == "DATA" else str(data / "mnist") if a == "../shared/data/mnist"
            else str(data) if a == "../shared/data" else a for a in argv]
    if "--resume" in argv and argv[0] == "train":
        return argv  # a resumed run takes its settings from the run it continues
    extra = list(SMALL.get(argv[0], []))  # a resumed reproduce gets the arguments of the run it continues
    if argv[0] == "reproduce" and "--variants" not in argv:
        extra += ["--variants", "software", "nature2018"]
    return [*argv, *extra]


@pytest.mark.parametrize("name", sorted({w for w, _ in CMDS}))
def test_documented_commands_run_in_small_form(name, shared_data, tmp_path, monkeypatch, capsys):
    """Each page's commands, in the page's order (a resume or a report follows the run it
    names), in an empty folder, made small by SMALL: they all finish with exit status 0."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    ran = 0
    for where, line in CMDS:
        if where != name or any(n in line for n in NOT_HERE):
            continue
        argv = _small(shlex.split(line)[1:], shared_data)
        if argv[0] == "reproduce" and "--resume" in argv:
            # a finished run has nothing to resume; resume the run of the page's first reproduce command
            out = argv[argv.index("--out") + 1]
            if not (tmp_path / out / "results.json").exists():
                continue
        code = cli.main(argv)
        captured = capsys.readouterr()
        assert code == 0, f"{name}: '{line}' exited {code}: {captured.err.strip()[-300:]}"
        assert "Traceback" not in captured.err
        ran += 1
    assert ran > 0
