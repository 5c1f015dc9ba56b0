"""One training run end to end: config + dataset -> results dict, JSON and PNG in a folder."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .config import ExperimentConfig
from .errors import OutputError
from .presets import get_preset
from .training import Trainer


def _dataset_info(data) -> dict[str, Any]:
    return {
        "name": data.name,
        "n_train": int(data.x_train.shape[0]),
        "n_test": int(data.x_test.shape[0]),
        "n_inputs": int(data.x_train.shape[1]),
        "n_classes": int(data.n_classes),
        "meta": {k: v for k, v in dict(data.meta).items() if isinstance(v, (str, int, float, bool, list, dict))},
    }


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


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write JSON atomically (temporary file, fsync, rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, default=_json_default)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; choose another --out or free space") from None
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def train(config: ExperimentConfig | str, data, epochs: int | None = None, seed: int | None = None,
          chips: int | None = None, progress: bool = False, device: str = "cpu") -> dict[str, Any]:
    """Train ``config`` (a preset name or a config) on ``data`` and return the results dict.

    >>> import analogtrain as at
    >>> data = at.load_dataset("digits").subset(300, 100)
    >>> result = at.train("software", data, epochs=1, seed=0)
    >>> round(result["final_test_accuracy_mean"], 2) > 0.5
    True
    """
    cfg = get_preset(config) if isinstance(config, str) else config
    t_over: dict[str, Any] = {}
    if epochs is not None:
        t_over["epochs"] = epochs
    if seed is not None:
        t_over["seed"] = seed
    if chips is not None:
        t_over["chips"] = chips
    if t_over:
        cfg = cfg.replace(training=cfg.training.replace(**t_over))
    trainer = Trainer(cfg, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes, device=device)
    result = trainer.train(progress=progress)
    result["dataset"] = _dataset_info(data)
    return result


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
    return {
        "analogtrain": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
