"""Run folders, one rule for every command (``train``, ``reproduce``, ``sweep``).

* A new run goes into a folder that holds no run (``marker`` absent), or replaces one with
  ``force``; a folder holding a run -- finished or not -- is never overwritten silently.
* ``--resume`` needs a run to resume: a folder without the command's ``marker`` is refused in
  one line, the same for every command.
* Every file of a run is written atomically (:func:`atomic_write`): a run stopped at any
  moment leaves the previous version of each file, never half of one.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from ..errors import OutputError

__all__ = ["atomic_write", "cpu_model", "environment", "prepare_output_dir", "refuse_overwrite",
           "require_resumable", "write_json"]


def prepare_output_dir(out: str | Path) -> Path:
    """Create ``out`` and check it is writable; one clear error otherwise."""
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".analogtrain-write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to output directory {path}: {exc.strerror or exc}; "
                          "choose another --out or free space") from None
    return path


def refuse_overwrite(out: Path, marker: str, command: str, force: bool, resumable: bool = True) -> None:
    """Raise a one-line :class:`OutputError` when ``out`` already holds a run and ``force`` is off
    (``resumable``: the command can continue that run with ``--resume``, and the message says so)."""
    if (out / marker).exists() and not force:
        resume = "continue it with --resume, " if resumable else ""
        raise OutputError(f"{out} already holds an analogtrain {command} run; {resume}replace it with --force, "
                          "or choose another --out")


def require_resumable(out: Path, marker: str, command: str) -> None:
    """Raise a one-line :class:`OutputError` when ``out`` holds no run of ``command`` to resume."""
    if not out.is_dir():
        raise OutputError(f"nothing to resume: {out} is not a folder; give the --out folder of an "
                          f"analogtrain {command} run, or start one without --resume")
    if not (out / marker).exists():
        raise OutputError(f"nothing to resume in {out}: it holds no analogtrain {command} run (no {marker}); "
                          "start one without --resume")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EINVAL, errno.ENOTSUP):
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot fsync a directory
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: temporary file beside it, flush, fsync, rename,
    fsync of the folder.  Any OS error (permissions, full disk) raises :class:`OutputError`
    and leaves an existing ``path`` untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent if str(path.parent) else Path("."))
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; free some space or choose another "
                          "output directory") from None
    return path


def json_default(o: Any) -> Any:
    """What :func:`json.dumps` cannot write itself: tensors (as lists) and paths (as text)."""
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as indented JSON, atomically (:func:`atomic_write`)."""
    return atomic_write(path, json.dumps(payload, indent=2, default=json_default).encode("utf-8"))


def cpu_model() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else what :mod:`platform` knows.

    Recorded with every run because float results can depend on it: the same seed reruns bit
    for bit on one machine, but a CPU whose float kernels sum in another order can part from it
    over a million minibatch-1 steps (docs/reproduce.md: MNIST software ends at
    98.28 % on one VM and 98.04 % on another).
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Processor", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def environment() -> dict[str, Any]:
    """The software and machine a run was made on (recorded in every ``results.json``)."""
    return {
        "analogtrain": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
