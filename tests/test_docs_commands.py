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
