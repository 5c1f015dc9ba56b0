"""Checkpoint files: the whole state of a run in one file.

The trainer writes and reads them (:meth:`Trainer.save_checkpoint
<analogtrain.training.Trainer.save_checkpoint>`, :meth:`~analogtrain.training.Trainer.load_checkpoint`);
this module is the file format only and knows nothing of the trainer.

A checkpoint holds everything needed to continue a run so that it ends bit for bit where
the uninterrupted run would have ended: :meth:`Trainer.state_dict() <analogtrain.training.Trainer.state_dict>`,
which is built from the named, versioned state dicts of the network, its crossbars and their
cells (``mlp.layers.<i>.cells.v_c_v``, ...; the deferred-leak clocks instead of bringing the
leak up to date, which would change the float path), the random stream, and the loop's
state (epoch, position, history, counters, pulse windows); plus the full config, a
fingerprint (SHA-256) of the dataset and a format version.  Nothing is found by walking
private attributes: renaming one does not change what a checkpoint holds.

Format.  One `safetensors <https://github.com/huggingface/safetensors>`_ file: the state dict's
tensors by name, plus string metadata ``format``, ``format_version``, ``state`` (JSON: the
state dict's plain values, the config, the progress) and ``sha256`` (a digest of ``state``
and of every tensor's name, dtype, shape and bytes).  Loading parses JSON and raw tensor
bytes only: nothing in the file can execute code (no pickle), and no object is created from a
name found in the file.  Before anything is restored the whole state is checked against the
trainer's own state dict (names, tensor shapes and dtypes, value kinds), so a truncated,
corrupted or edited file, or one of another format version, raises
:class:`~analogtrain.errors.CheckpointError` with one line and leaves the trainer as it was.
A checkpoint is written atomically (temporary file in the same folder, fsync, rename, fsync
of the folder) and a failed write raises :class:`~analogtrain.errors.OutputError`.

What is not saved: the dataset (fingerprinted instead), the config objects (the config is
saved as a dict and must match), the transfer schedule (a pure function of the config) and
what is recomputed from the state (the cells' cached presented weights).

>>> import analogtrain as at, tempfile, os
>>> from analogtrain.training import Trainer
>>> d = at.load_dataset("digits").subset(100, 50)
>>> cfg = at.get_preset("nature2018", {"training": {"hidden": [8], "epochs": 1}})
>>> tr = Trainer(cfg, d.x_train, d.y_train, d.x_test, d.y_test, d.n_classes)
>>> path = os.path.join(tempfile.mkdtemp(), "ck.safetensors")
>>> _ = tr.save_checkpoint(path)
>>> tr2 = Trainer.from_checkpoint(path, d.x_train, d.y_train, d.x_test, d.y_test, d.n_classes)
>>> tr2.state.examples_seen
0
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from ..errors import CheckpointError
from .store import atomic_write

__all__ = ["FORMAT", "FORMAT_VERSION", "Checkpoint", "check_state_fits", "checkpoint_bytes", "read_checkpoint",
           "save_checkpoint", "split_state"]

FORMAT = "analogtrain-checkpoint"
FORMAT_VERSION = 2

_SCALARS = (bool, int, float, str, type(None))


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _digest(state_json: str, tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    h.update(state_json.encode("utf-8"))
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"\0{name}\0{str(t.dtype)}\0{list(t.shape)}\0".encode())
        flat = t.detach().cpu().contiguous().reshape(-1)
        if flat.numel():
            h.update(memoryview(flat.view(torch.uint8).numpy()))
    return h.hexdigest()


def split_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(values, tensors): a state dict split into its plain values (JSON) and its tensors
    (copied to the CPU, contiguous), by name."""
    values: dict[str, Any] = {}
    tensors: dict[str, torch.Tensor] = {}
    for name, v in state.items():
        if isinstance(v, torch.Tensor):
            tensors[name] = v.detach().cpu().clone(memory_format=torch.contiguous_format)
        else:
            values[name] = v
    return values, tensors


def _plain(v: Any, path: str) -> None:
    """Raise ValueError unless ``v`` is built from JSON's plain values only."""
    if isinstance(v, dict):
        for k, e in v.items():
            if not isinstance(k, str):
                raise ValueError(f"{path} has a non-string key")
            _plain(e, f"{path}.{k}")
    elif isinstance(v, list):
        for i, e in enumerate(v):
            _plain(e, f"{path}.{i}")
    elif not isinstance(v, _SCALARS):
        raise ValueError(f"{path} is a {type(v).__name__}")


def _same_shape(fresh: Any, saved: Any, path: str) -> None:
    """``saved`` has ``fresh``'s structure: the same keys, list lengths where fixed, value kinds."""
    if isinstance(fresh, dict):
        if not isinstance(saved, dict) or set(saved) != set(fresh):
            raise ValueError(f"{path} does not have the entries this version writes")
        for k in fresh:
            _same_shape(fresh[k], saved[k], f"{path}.{k}")
    elif isinstance(fresh, bool):
        if not isinstance(saved, bool):
            raise ValueError(f"{path} is not true/false")
    elif isinstance(fresh, (int, float)):
        if isinstance(saved, bool) or not isinstance(saved, (int, float)) or not math.isfinite(saved):
            raise ValueError(f"{path} is not a finite number")
    elif isinstance(fresh, list):
        if not isinstance(saved, list):
            raise ValueError(f"{path} is not a list")


def check_state_fits(fresh: dict[str, Any], saved: dict[str, Any], variable: str | None = None,
                     optional: tuple[str, ...] = ()) -> None:
    """Raise a one-line :class:`CheckpointError` unless the state dict ``saved`` fits an object
    whose own state dict is ``fresh``: the same names, tensors of the same shape and dtype,
    plain values of the same kinds and structure, finite floats.  Entries whose name starts
    with ``variable`` may come and go (their number depends on the progress of the run) and are
    left to the owner to check, as are the ``optional`` names.  Nothing is changed."""
    try:
        def fixed(names):
            return {k for k in names if not (variable and k.startswith(variable)) and k not in optional}

        missing, extra = sorted(fixed(fresh) - set(saved)), sorted(fixed(saved) - set(fresh))
        if missing or extra:
            raise ValueError(f"entries missing {missing[:3]} or unexpected {extra[:3]}")
        if saved.get("version") != fresh.get("version"):
            raise ValueError(f"state version {saved.get('version')!r}, this analogtrain reads {fresh.get('version')}")
        for name in fixed(fresh):
            f, v = fresh[name], saved[name]
            if isinstance(f, torch.Tensor):
                if not isinstance(v, torch.Tensor) or v.shape != f.shape or v.dtype != f.dtype:
                    raise ValueError(f"{name} is not a {f.dtype} tensor of shape {tuple(f.shape)}")
                if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                    raise ValueError(f"{name} holds non-finite values")
            else:
                _plain(v, name)
                _same_shape(f, v, name)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise CheckpointError(f"checkpoint state does not fit this run ({_one_line(exc, 160)})") from None


def checkpoint_bytes(state: dict[str, Any], header: dict[str, Any]) -> bytes:
    """A checkpoint as bytes (what :func:`save_checkpoint` writes): the state dict ``state``
    and the ``header`` (``config``, ``data``, ``progress``, ``extra``, and ``batch`` for chips of
    different configurations: plain values)."""
    import safetensors.torch

    values, tensors = split_state(state)
    full = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "analogtrain": __version__,
        "torch": torch.__version__,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **{key: dict(header.get(key) or {}) for key in ("config", "data", "progress", "extra")},
        **({"batch": dict(header["batch"])} if header.get("batch") else {}),
        "values": values,
    }
    state_json = json.dumps(full, separators=(",", ":"))
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "state": state_json,
        "sha256": _digest(state_json, tensors),
    }
    return safetensors.torch.save(tensors, metadata=metadata)


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any], header: dict[str, Any]) -> Path:
    """Write a checkpoint of the state dict ``state`` with ``header`` to ``path`` (atomically)."""
    return atomic_write(path, checkpoint_bytes(state, header))


# -- reading -----------------------------------------------------------------------------
@dataclasses.dataclass
class Checkpoint:
    """A checkpoint file read and verified: its JSON state and its tensors."""

    path: Path
    state: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    @property
    def config(self) -> dict[str, Any]:
        return self.state["config"]

    @property
    def progress(self) -> dict[str, Any]:
        return self.state["progress"]

    @property
    def extra(self) -> dict[str, Any]:
        return self.state["extra"]

    @property
    def state_dict(self) -> dict[str, Any]:
        """The saved state dict: plain values and tensors, by name."""
        return {**self.state["values"], **self.tensors}


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and verify a checkpoint file (no code is executed); :class:`CheckpointError` if it
    is missing, truncated, corrupted, edited or of another format version."""
    import safetensors.torch

    path = Path(path)
    where = f"checkpoint {path}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{where} not found") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {where}: {exc.strerror or exc}") from None
    not_ours = f"{where} is not an analogtrain checkpoint or is corrupt"
    if len(data) < 8:
        raise CheckpointError(f"{where} is truncated ({len(data)} bytes)")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise CheckpointError(f"{not_ours} (header of {n} bytes in a file of {len(data)} bytes: truncated?)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"{not_ours} (unreadable header)") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{not_ours} (no analogtrain metadata)")
    version = meta.get("format_version")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(f"{where} has format version {_one_line(repr(version), 40)}; analogtrain "
                              f"{__version__} reads version {FORMAT_VERSION} (resume it with the analogtrain "
                              "that wrote it, or restart the run)")
    state_json, digest = meta.get("state"), meta.get("sha256")
    if not isinstance(state_json, str) or not isinstance(digest, str):
        raise CheckpointError(f"{not_ours} (incomplete metadata)")
    try:
        tensors = safetensors.torch.load(data)
    except Exception as exc:  # SafetensorError and friends: the tensor part is damaged
        raise CheckpointError(f"{not_ours} ({_one_line(exc, 120)})") from None
    if _digest(state_json, tensors) != digest:
        raise CheckpointError(f"{where} fails its checksum: the file is corrupt or was modified; use an earlier "
                              "checkpoint or restart the run")
    try:
        state = json.loads(state_json)
    except (ValueError, RecursionError):
        raise CheckpointError(f"{not_ours} (unreadable state)") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{not_ours} (inconsistent state)")
    for key, kind in (("config", dict), ("data", dict), ("progress", dict), ("extra", dict), ("values", dict)):
        if not isinstance(state.get(key), kind):
            raise CheckpointError(f"{not_ours} (state has no {key})")
    return Checkpoint(path, state, tensors)
