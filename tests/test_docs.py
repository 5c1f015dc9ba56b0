"""The documentation: every Python block of docs/*.md runs, the site builds with --strict, and
nothing in src/ or docs/ cites a file outside the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# docs/extending.md's blocks run in tests/test_extending.py, which also checks what they print
PAGES = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "extending.md")
BLOCKS = [(p.name, i, code) for p in PAGES
          for i, code in enumerate(re.findall(r"```python\n(.*?)```", p.read_text(encoding="utf-8"), flags=re.S))]


@pytest.mark.parametrize("page,index,code", BLOCKS, ids=[f"{p}#{i + 1}" for p, i, _ in BLOCKS])
def test_docs_python_block_runs(page, index, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"docs/{page} block {index + 1}", "exec"), {})


def test_docs_have_python_examples():
    assert {p for p, _, _ in BLOCKS} >= {"api.md", "getting-started.md", "checkpoints.md", "configuration.md"}


def test_the_site_builds_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs, "mkdocs is installed with the test extra"
    run = subprocess.run([mkdocs, "build", "--strict", "-q", "-d", str(tmp_path / "site")], cwd=ROOT,
                         capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    html = (tmp_path / "site" / "configuration" / "index.html").read_text(encoding="utf-8")
    assert "leak_time_constant_s" in html and "nature2018-held-reference" in html  # generated tables
    assert "analogtrain sweep" in (tmp_path / "site" / "cli" / "index.html").read_text(encoding="utf-8")


def test_nothing_cites_a_file_outside_the_repository():
    offenders = []
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "docs").rglob("*.md")]:
        text = path.read_text(encoding="utf-8")
        if "SYSTEM.md" in text or "DESIGN.md" in text or "STYLE.md" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
