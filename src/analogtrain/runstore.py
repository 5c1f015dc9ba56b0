"""Run folders, one rule for every command (``train``, ``reproduce``, ``sweep``).

* A new run goes into a folder that holds no run (``marker`` absent), or replaces one with
  ``force``; a folder holding a run -- finished or not -- is never overwritten silently.
* ``--resume`` needs a run to resume: a folder without the command's ``marker`` is refused in
  one line, the same for every command.
"""

from __future__ import annotations

from pathlib import Path

from .errors import OutputError


def refuse_overwrite(out: Path, marker: str, command: str, force: bool) -> None:
    """Raise a one-line :class:`OutputError` when ``out`` already holds a run and ``force`` is off."""
    if (out / marker).exists() and not force:
        raise OutputError(f"{out} already holds an analogtrain {command} run; continue it with --resume, "
                          f"replace it with --force, or choose another --out")


def require_resumable(out: Path, marker: str, command: str) -> None:
    """Raise a one-line :class:`OutputError` when ``out`` holds no run of ``command`` to resume."""
    if not out.is_dir():
        raise OutputError(f"nothing to resume: {out} is not a folder; give the --out folder of an "
                          f"analogtrain {command} run, or start one without --resume")
    if not (out / marker).exists():
        raise OutputError(f"nothing to resume in {out}: it holds no analogtrain {command} run (no {marker}); "
                          "start one without --resume")
