"""Checkpoints: the whole state of a :class:`~analogtrain.training.Trainer` in one file.

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
import errno
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .errors import CheckpointError, ConfigError, OutputError

if TYPE_CHECKING:
    from .training import Trainer

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


def data_fingerprint(trainer: Trainer) -> str:
    """SHA-256 of the trainer's training and test data (cached on the trainer)."""
    cached = getattr(trainer, "_data_sha256", None)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    for name in ("x_train", "y_train", "x_test", "y_test"):
        t = getattr(trainer, name).detach().cpu().contiguous()
        h.update(f"\0{name}\0{str(t.dtype)}\0{list(t.shape)}\0".encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    trainer._data_sha256 = h.hexdigest()  # type: ignore[attr-defined]
    return trainer._data_sha256  # type: ignore[attr-defined]


def _data_info(trainer: Trainer) -> dict[str, Any]:
    return {
        "n_train": int(trainer.x_train.shape[0]),
        "n_test": int(trainer.x_test.shape[0]),
        "n_inputs": int(trainer.x_train.shape[1]),
        "n_classes": int(trainer.n_classes),
        "sha256": data_fingerprint(trainer),
    }


def encode_trainer(trainer: Trainer) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, str]]:
    """(values, tensors, skipped): :meth:`Trainer.state_dict` split into its plain values (JSON)
    and its tensors (copied to the CPU), by name.  ``skipped`` is empty: every entry of a state
    dict is a tensor or a plain value."""
    values: dict[str, Any] = {}
    tensors: dict[str, torch.Tensor] = {}
    for name, v in trainer.state_dict().items():
        if isinstance(v, torch.Tensor):
            tensors[name] = v.detach().cpu().clone(memory_format=torch.contiguous_format)
        else:
            values[name] = v
    return values, tensors, {}


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


def check_state_fits(fresh: dict[str, Any], saved: dict[str, Any]) -> None:
    """Raise a one-line :class:`CheckpointError` unless the state dict ``saved`` fits a trainer
    whose own state dict is ``fresh``: the same names, tensors of the same shape and dtype,
    plain values of the same kinds.  Nothing is changed."""
    try:
        missing = sorted(set(fresh) - set(saved) - {"pulse_window_layers"})
        fresh_windows = {k for k in fresh if k.startswith("pulse_window.")}
        extra = sorted(set(saved) - set(fresh) - {k for k in saved if k.startswith("pulse_window.")} - fresh_windows)
        if missing or extra:
            raise ValueError(f"entries missing {missing[:3]} or unexpected {extra[:3]}")
        if saved.get("version") != fresh["version"]:
            raise ValueError(f"state version {saved.get('version')!r}, this analogtrain reads {fresh['version']}")
        for name, f in fresh.items():
            if name.startswith("pulse_window"):
                continue
            v = saved[name]
            if isinstance(f, torch.Tensor):
                if not isinstance(v, torch.Tensor) or v.shape != f.shape or v.dtype != f.dtype:
                    raise ValueError(f"{name} is not a {f.dtype} tensor of shape {tuple(f.shape)}")
                if v.is_floating_point() and name.startswith("mlp.") and not bool(torch.isfinite(v).all()):
                    raise ValueError(f"{name} holds non-finite values")
            else:
                _plain(v, name)
                _same_shape(f, v, name)
        layers = saved.get("pulse_window_layers")
        if layers is not None:
            if not (isinstance(layers, list) and len(layers) == len(fresh["counters"]["tuning_pulses"])
                    and all(isinstance(b, bool) for b in layers)):
                raise ValueError("pulse_window_layers does not match the network")
            for i, has in enumerate(layers):
                for part in ("net", "total"):
                    if has and not isinstance(saved.get(f"pulse_window.{i}.{part}"), torch.Tensor):
                        raise ValueError(f"pulse_window.{i}.{part} is missing")
        from .training import EpochRecord

        for h in saved["training_state"]["history"]:
            if not isinstance(h, dict):
                raise ValueError("training_state.history holds something that is not an epoch record")
            EpochRecord(**h)
    except CheckpointError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise CheckpointError(f"checkpoint state does not fit this run ({_one_line(exc, 160)})") from None


def checkpoint_bytes(trainer: Trainer, extra: dict[str, Any] | None = None) -> bytes:
    """The checkpoint of ``trainer`` as bytes (what :func:`save_checkpoint` writes)."""
    import safetensors.torch

    from . import __version__

    tree, tensors, skipped = encode_trainer(trainer)
    st = trainer.state
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "analogtrain": __version__,
        "torch": torch.__version__,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": trainer.config.to_dict(),
        "data": _data_info(trainer),
        "progress": {"epoch": st.epoch, "position": st.position, "examples_seen": st.examples_seen},
        "extra": dict(extra or {}),
        "skipped": skipped,
        "values": tree,
    }
    state_json = json.dumps(state, separators=(",", ":"))
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "state": state_json,
        "sha256": _digest(state_json, tensors),
    }
    return safetensors.torch.save(tensors, metadata=metadata)


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


def save_checkpoint(trainer: Trainer, path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
    """Write the whole state of ``trainer`` to ``path`` (atomically); ``extra`` is any small
    JSON-able dict stored beside it and returned by :func:`load_into`."""
    return atomic_write(path, checkpoint_bytes(trainer, extra))


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
        from . import __version__

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


# -- restoring ---------------------------------------------------------------------------
def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in a or k not in b:
                return sub
            d = _first_difference(a[k], b[k], sub)
            if d is not None:
                return d
        return None
    return None if a == b else (path or "(top level)")


def restore(trainer: Trainer, ck: Checkpoint) -> dict[str, Any]:
    """Put the state of checkpoint ``ck`` into ``trainer`` (built with the same config and
    data); returns the checkpoint's ``extra`` dict."""
    # the saved config as this version reads it: a setting added since then takes its default
    diff = _first_difference(config_of(ck).to_dict(), trainer.config.to_dict())
    if diff is not None:
        raise CheckpointError(f"checkpoint {ck.path} was written with another config (they differ at {diff})")
    data = ck.state["data"]
    if data.get("sha256") != data_fingerprint(trainer):
        raise CheckpointError(f"checkpoint {ck.path} was trained on other data ({data.get('n_train')} train / "
                              f"{data.get('n_test')} test images there, {trainer.x_train.shape[0]} / "
                              f"{trainer.x_test.shape[0]} here, or different images)")
    state: dict[str, Any] = {**ck.state["values"], **ck.tensors}
    try:
        trainer.load_state_dict(state)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {ck.path}: {exc}") from None
    return ck.extra


def load_into(trainer: Trainer, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the checkpoint at ``path`` and put its state into ``trainer``; returns ``extra``."""
    return restore(trainer, read_checkpoint(path))


def config_of(ck: Checkpoint):
    """The validated :class:`~analogtrain.config.ExperimentConfig` a checkpoint was written with."""
    from .config import ExperimentConfig

    try:
        return ExperimentConfig.from_dict(ck.config)
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {ck.path} holds an invalid config: {exc}") from None


def load_trainer(path: str | os.PathLike[str], x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
                 y_test: torch.Tensor, n_classes: int | None = None, device: str | torch.device = "cpu") -> Trainer:
    """A :class:`~analogtrain.training.Trainer` rebuilt from the checkpoint's config and the
    given data, with the checkpoint's state restored: ``train()`` continues the run."""
    from .training import Trainer

    ck = read_checkpoint(path)
    trainer = Trainer(config_of(ck), x_train, y_train, x_test, y_test, n_classes, device=device)
    restore(trainer, ck)
    return trainer
