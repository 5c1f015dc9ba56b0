"""Checkpoints: the whole state of a :class:`~analogtrain.training.Trainer` in one file.

A checkpoint holds everything needed to continue a run so that it ends bit for bit where
the uninterrupted run would have ended:

* every tensor the simulator holds (conductances, capacitor voltages, polarities, per-cell
  mismatch draws, shared reference cells, drift state, deferred-leak clocks, cached weights,
  the crossbars' statistics), found by walking the objects rather than by a list of names,
  so a tensor added to a cell or crossbar later is saved without touching this module;
* the python scalars of the same objects (``time_s``, ``_origin_s``, ``_rows_in_step``,
  ``_stale``, counters ...), stored raw: nothing is synced or recomputed on save, since
  bringing the deferred leakage up to date would change the floating-point path;
* the state of every ``torch.Generator`` met on the walk (the network's shared one);
* the :class:`~analogtrain.training.TrainingState` (epoch, position in the epoch, examples
  seen, transfers, running train accuracy, history, wall time) and the trainer's counters;
* the full config, a fingerprint (SHA-256) of the dataset, and a format version.

Format.  One `safetensors <https://github.com/huggingface/safetensors>`_ file: the tensors,
plus string metadata ``format``, ``format_version``, ``state`` (JSON: the object tree with
its scalars and references to the tensors, the config, the training state) and ``sha256``
(a digest of ``state`` and of every tensor's name, dtype, shape and bytes).  Loading parses
JSON and raw tensor bytes only: nothing in the file can execute code (no pickle).  Objects
are never created from class names found in the file, except the whitelisted plain record
type :class:`~analogtrain.training.EpochRecord`.  A truncated, corrupted or edited file,
or one of another format version, raises :class:`~analogtrain.errors.CheckpointError` with
one line; a checkpoint is written atomically (temporary file in the same folder, fsync,
rename, fsync of the folder) and a failed write raises :class:`~analogtrain.errors.OutputError`.

What is not saved: the dataset (fingerprinted instead), the config objects (the config is
saved as a dict and must match), the transfer schedule (a pure function of the config) and
functions (activation functions).

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
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._configbase import ConfigBase
from .errors import CheckpointError, ConfigError, OutputError

if TYPE_CHECKING:
    from .training import Trainer

FORMAT = "analogtrain-checkpoint"
FORMAT_VERSION = 1

#: Trainer attributes that are not simulator state: the data (fingerprinted instead), the
#: config (saved as a dict), the device, the schedule (a pure function of the config) and the
#: memory estimate the run was checked against (recomputed from the config).
TRAINER_SKIP = frozenset({"config", "device", "x_train", "y_train", "x_test", "y_test", "schedule", "_data_sha256",
                          "memory"})

_SCALARS = (bool, int, float, str, type(None))


def _class_id(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}:{t.__qualname__}"


def _constructible() -> dict[str, type]:
    """Plain record classes a checkpoint may create (everything else is restored in place)."""
    from .training import EpochRecord

    return {f"{EpochRecord.__module__}:{EpochRecord.__qualname__}": EpochRecord}


def _is_ours(v: Any) -> bool:
    return (not isinstance(v, type) and type(v).__module__.startswith("analogtrain.")
            and hasattr(v, "__dict__") and not isinstance(v, ConfigBase))


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


# -- saving ------------------------------------------------------------------------------
class _Saver:
    """Walks objects and encodes them as a JSON tree whose leaves name saved tensors."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.skipped: dict[str, str] = {}
        self._generators: list[torch.Generator] = []
        self._seen: dict[int, str] = {}

    def obj(self, o: Any, path: str, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
        self._seen[id(o)] = path
        attrs = {name: self.value(val, f"{path}.{name}") for name, val in vars(o).items() if name not in skip}
        return {"obj": _class_id(o), "attrs": attrs}

    def value(self, v: Any, path: str) -> dict[str, Any]:
        if isinstance(v, _SCALARS):
            return {"v": v}
        if isinstance(v, torch.Tensor):
            self.tensors[path] = v.detach().cpu().clone(memory_format=torch.contiguous_format)
            return {"t": path, "dev": v.device.type}
        if isinstance(v, torch.Generator):
            for i, g in enumerate(self._generators):
                if g is v:
                    return {"gen": i}
            self._generators.append(v)
            i = len(self._generators) - 1
            self.tensors[f"__generator__.{i}"] = v.get_state().clone()
            return {"gen": i}
        if isinstance(v, np.generic):
            return {"v": v.item()}
        if isinstance(v, np.ndarray):
            self.tensors[path] = torch.from_numpy(np.ascontiguousarray(v).copy())
            return {"np": path}
        if isinstance(v, (list, tuple)):
            return {type(v).__name__ if type(v) in (list, tuple) else "list":
                    [self.value(e, f"{path}.{i}") for i, e in enumerate(v)]}
        if isinstance(v, dict):
            if all(isinstance(k, _SCALARS) for k in v):
                return {"dict": [[k, self.value(e, f"{path}.{k}")] for k, e in v.items()]}
        elif _is_ours(v):
            if id(v) in self._seen:
                return {"ref": self._seen[id(v)]}
            return self.obj(v, path)
        kind = "config" if isinstance(v, ConfigBase) else type(v).__name__
        if not (callable(v) or isinstance(v, (ConfigBase, torch.device, torch.dtype))):
            self.skipped[path] = kind
        return {"skip": kind}


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
    """(tree, tensors, skipped): the trainer's state as a JSON tree and the tensors it names.

    ``skipped`` lists attributes of a type the walk does not know how to save (path -> type);
    it should be empty (a test checks this for every preset).
    """
    saver = _Saver()
    tree = saver.obj(trainer, "trainer", skip=TRAINER_SKIP)
    return tree, saver.tensors, saver.skipped


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
        "tree": tree,
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
    for key, kind in (("config", dict), ("data", dict), ("progress", dict), ("extra", dict), ("tree", dict)):
        if not isinstance(state.get(key), kind):
            raise CheckpointError(f"{not_ours} (state has no {key})")
    return Checkpoint(path, state, tensors)


# -- restoring ---------------------------------------------------------------------------
class _Loader:
    """Decodes a saved tree against a freshly built trainer.

    Pass 1 (:meth:`obj`) checks everything and collects actions; pass 2 (:meth:`apply`)
    performs them, so a bad checkpoint leaves the trainer untouched.
    """

    def __init__(self, ck: Checkpoint, device: torch.device):
        self.ck = ck
        self.device = device
        self.actions: list[tuple[Any, ...]] = []
        self._gens: dict[int, int] = {}
        self._paths: dict[str, Any] = {}
        self._make = _constructible()

    def fail(self, path: str, problem: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {self.ck.path} does not fit this analogtrain: {path} {problem} "
                               "(was it written by another version?)")

    def tensor(self, key: Any, path: str) -> torch.Tensor:
        if not isinstance(key, str) or key not in self.ck.tensors:
            raise self.fail(path, "names a tensor that is not in the file")
        return self.ck.tensors[key]

    def obj(self, entry: Any, fresh: Any, path: str, skip: frozenset[str] = frozenset()) -> Any:
        if not (isinstance(entry, dict) and isinstance(entry.get("obj"), str) and isinstance(entry.get("attrs"), dict)):
            raise self.fail(path, "is malformed")
        if fresh is None or not hasattr(fresh, "__dict__") or _class_id(fresh) != entry["obj"]:
            cls = self._make.get(entry["obj"])
            if cls is None:
                found = "nothing" if fresh is None else _class_id(fresh)
                raise self.fail(path, f"is a {_one_line(entry['obj'], 80)} in the file but {found} here")
            return self._construct(cls, entry["attrs"], path)
        self._paths[path] = fresh
        saved = entry["attrs"]
        current = {k: v for k, v in vars(fresh).items() if k not in skip}
        for k, v in current.items():
            if k not in saved and not (callable(v) or isinstance(v, (ConfigBase, torch.device, torch.dtype))):
                raise self.fail(f"{path}.{k}", "is missing from the file")
        for k, e in saved.items():
            if k not in current:
                raise self.fail(f"{path}.{_one_line(k, 60)}", "is in the file but unknown here")
            new = self.value(e, current[k], f"{path}.{k}")
            if new is not current[k]:
                self.actions.append(("set", fresh, k, new))
        return fresh

    def _construct(self, cls: type, attrs: dict[str, Any], path: str) -> Any:
        names = {f.name for f in dataclasses.fields(cls)}
        if set(attrs) != names:
            raise self.fail(path, f"does not have the fields of {cls.__name__}")
        return cls(**{k: self.value(e, None, f"{path}.{k}") for k, e in attrs.items()})

    def value(self, e: Any, fresh: Any, path: str) -> Any:
        if not isinstance(e, dict) or not e:
            raise self.fail(path, "is malformed")
        if "obj" in e:
            return self.obj(e, fresh, path)
        if "v" in e:
            return self._scalar(e["v"], fresh, path)
        if "t" in e:
            saved = self.tensor(e["t"], path)
            if isinstance(fresh, torch.Tensor):
                if fresh.shape != saved.shape or fresh.dtype != saved.dtype:
                    raise self.fail(path, f"is {saved.dtype} {tuple(saved.shape)} in the file but "
                                          f"{fresh.dtype} {tuple(fresh.shape)} here")
                self.actions.append(("copy", fresh, saved))
                return fresh
            return saved.to("cpu" if e.get("dev") == "cpu" else self.device)
        if "np" in e:
            return self.tensor(e["np"], path).numpy().copy()
        if "gen" in e:
            if not isinstance(fresh, torch.Generator) or isinstance(e["gen"], bool) or not isinstance(e["gen"], int):
                raise self.fail(path, "is a random generator in the file but not here")
            state = self.tensor(f"__generator__.{e['gen']}", path)
            if self._gens.setdefault(id(fresh), e["gen"]) != e["gen"]:
                raise self.fail(path, "shares a random generator differently")
            try:
                torch.Generator(device=fresh.device).set_state(state)
            except (RuntimeError, TypeError, ValueError) as exc:
                raise self.fail(path, f"has an invalid generator state ({_one_line(exc, 80)})") from None
            self.actions.append(("gen", fresh, state))
            return fresh
        if "list" in e or "tuple" in e:
            items = e.get("list", e.get("tuple"))
            if not isinstance(items, list):
                raise self.fail(path, "is malformed")
            same = isinstance(fresh, (list, tuple)) and len(fresh) == len(items)
            new = [self.value(x, fresh[i] if same else None, f"{path}.{i}") for i, x in enumerate(items)]
            if same and type(fresh) is (list if "list" in e else tuple) and all(a is b for a, b in zip(new, fresh)):
                return fresh
            return new if "list" in e else tuple(new)
        if "dict" in e:
            items = e["dict"]
            if not isinstance(items, list) or not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], _SCALARS)
                                                      for p in items):
                raise self.fail(path, "is malformed")
            fd = fresh if isinstance(fresh, dict) else {}
            new_d = {k: self.value(x, fd.get(k), f"{path}.{k}") for k, x in items}
            if isinstance(fresh, dict) and new_d.keys() == fresh.keys() and all(new_d[k] is fresh[k] for k in new_d):
                return fresh
            return new_d
        if "ref" in e:
            if e["ref"] not in self._paths:
                raise self.fail(path, "refers to an object that is not in the file")
            return self._paths[e["ref"]]
        if "skip" in e:
            return fresh
        raise self.fail(path, "is malformed")

    def _scalar(self, v: Any, fresh: Any, path: str) -> Any:
        """A saved python scalar, of the kind the attribute has here (None fits anything)."""
        if not isinstance(v, _SCALARS):
            raise self.fail(path, "is malformed")
        if v is None or fresh is None or not isinstance(fresh, _SCALARS):
            return v
        if isinstance(fresh, bool) or isinstance(v, bool):
            ok = isinstance(fresh, bool) and isinstance(v, bool)
        elif isinstance(fresh, float):
            ok = isinstance(v, (int, float))
            v = float(v) if ok else v
        else:
            ok = isinstance(v, type(fresh))
        if not ok:
            raise self.fail(path, f"is a {type(v).__name__} in the file but a {type(fresh).__name__} here")
        return v

    def apply(self) -> None:
        with torch.no_grad():
            for action in self.actions:
                if action[0] == "copy":
                    action[1].copy_(action[2])
                elif action[0] == "gen":
                    action[1].set_state(action[2])
                else:
                    setattr(action[1], action[2], action[3])


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
    loader = _Loader(ck, trainer.device)
    try:
        loader.obj(ck.state["tree"], trainer, "trainer", skip=TRAINER_SKIP)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError, RecursionError,
            OverflowError) as exc:
        raise CheckpointError(f"checkpoint {ck.path} is malformed ({_one_line(exc, 120)})") from None
    loader.apply()
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
