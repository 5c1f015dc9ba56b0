"""Compute backbone features once and keep them in an on-disk cache.

Running EfficientNet-Lite0 on 60,000 images takes many CPU minutes, whereas training the
analog last layer needs only the [N, F] feature matrix, so :func:`extract_features` stores
that matrix in a safetensors file (no pickle) whose name is a hash of everything that
determines it: backbone name, weights SHA-256, input size, preprocessing version and
normalisation, and the SHA-256 of the image bytes (with shape).  A later call with the same
inputs loads the file instead of recomputing.  A cache file that cannot be read, or whose
stored metadata or checksum does not match, is recomputed and rewritten with a warning.

Cache location: ``cache_dir`` if given; otherwise ``$ANALOGTRAIN_CACHE_DIR/features`` if that
variable is set, else the per-user cache directory (``platformdirs.user_cache_dir
("analogtrain")/features``).  ``cache_dir=False`` disables caching.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from .backbones import Backbone

__all__ = ["CACHE_FORMAT_VERSION", "default_cache_dir", "extract_features", "feature_cache_path"]

#: Version of the on-disk layout (part of the key).
CACHE_FORMAT_VERSION = 1
_TENSOR = "features"


def default_cache_dir() -> Path:
    env = os.environ.get("ANALOGTRAIN_CACHE_DIR")
    if env:
        return Path(env) / "features"
    import platformdirs

    return Path(platformdirs.user_cache_dir("analogtrain")) / "features"


def _images_digest(images: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{images.dtype.str}{images.shape}".encode())
    h.update(memoryview(np.ascontiguousarray(images)).cast("B"))
    return h.hexdigest()


def _key_fields(images: np.ndarray, backbone: Backbone) -> dict[str, object]:
    fields = dict(backbone.cache_fields())
    fields["images_sha256"] = _images_digest(images)
    fields["n_images"] = int(images.shape[0])
    fields["format"] = CACHE_FORMAT_VERSION
    return fields


def _key(fields: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def feature_cache_path(images: np.ndarray, backbone: Backbone, cache_dir: str | Path | None = None) -> Path:
    """Where :func:`extract_features` keeps the features of ``images`` under ``backbone``."""
    images = _check_images(images)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return _path_for(_key_fields(images, backbone), backbone, root)


def _path_for(fields: dict[str, object], backbone: Backbone, root: Path) -> Path:
    safe_name = backbone.name.replace(":", "-").replace("/", "-")
    return root / f"{safe_name}-{backbone.input_size}px-{_key(fields)[:32]}.safetensors"


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 images of shape [N, H, W, 3], got {images.dtype} {images.shape}"
        )
    return images


def _load(path: Path, fields: dict[str, object], n: int, f: int) -> np.ndarray:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as fh:
        meta = fh.metadata() or {}
        if json.loads(meta.get("key_fields", "null")) != fields:
            raise ValueError("metadata does not match the request")
        arr = fh.get_tensor(_TENSOR)
    if arr.dtype != np.float32 or arr.shape != (n, f):
        raise ValueError(f"stored array is {arr.dtype} {arr.shape}, expected float32 ({n}, {f})")
    if hashlib.sha256(arr.tobytes()).hexdigest() != meta.get("features_sha256"):
        raise ValueError("checksum mismatch")
    return arr


def _save(path: Path, arr: np.ndarray, fields: dict[str, object]) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "key_fields": json.dumps(fields, sort_keys=True),
        "features_sha256": hashlib.sha256(arr.tobytes()).hexdigest(),
        "torch_version": torch.__version__,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    try:
        save_file({_TENSOR: arr}, tmp, metadata=meta)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a cache file is ordinary data
        os.replace(tmp, path)  # atomic: readers never see a half-written file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _compute(images: np.ndarray, backbone: Backbone, batch_size: int, progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    n = images.shape[0]
    out = np.empty((n, backbone.num_features), dtype=np.float32)
    with torch.inference_mode(), tqdm(
        total=n, disable=not progress, unit="img", desc=f"features {backbone.name}@{backbone.input_size}"
    ) as bar:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            feats = backbone.features(backbone.preprocess(images[start:stop]))
            if tuple(feats.shape) != (stop - start, backbone.num_features):
                raise RuntimeError(
                    f"backbone {backbone.name} returned {tuple(feats.shape)}, "
                    f"expected ({stop - start}, {backbone.num_features})"
                )
            out[start:stop] = feats.detach().to("cpu", torch.float32).numpy()
            bar.update(stop - start)
    return out


def extract_features(
    images_uint8_nhwc: np.ndarray,
    backbone: Backbone,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    cache_dir: str | Path | None | bool = None,
    progress: bool = True,
) -> np.ndarray:
    """Features of ``images`` ([N, H, W, 3] uint8 RGB) under ``backbone``: float32 [N, F].

    Args:
        batch_size: images per forward pass.
        device: move the backbone there first (``None``: keep the backbone's own device).
        cache_dir: cache folder; ``None`` = default location (see module docs);
            ``False`` = no caching.
        progress: show a tqdm progress bar while computing.

    The result is identical (bit for bit) between the computing call and later cache hits.
    """
    images = _check_images(images_uint8_nhwc)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is not None:
        backbone.to(device)
    n, f = images.shape[0], backbone.num_features
    if n == 0:
        return np.empty((0, f), dtype=np.float32)
    if cache_dir is False:
        return _compute(images, backbone, batch_size, progress)

    fields = _key_fields(images, backbone)
    root = Path(cache_dir) if cache_dir not in (None, True) else default_cache_dir()
    path = _path_for(fields, backbone, root)
    if path.exists():
        try:
            return _load(path, fields, n, f)
        except Exception as e:  # noqa: BLE001 - any unreadable cache is recomputed
            warnings.warn(
                f"feature cache {path} is unreadable ({type(e).__name__}: {e}); recomputing",
                RuntimeWarning,
                stacklevel=2,
            )
    arr = _compute(images, backbone, batch_size, progress)
    try:
        _save(path, arr, fields)
    except OSError as e:
        warnings.warn(f"could not write feature cache {path}: {e}", RuntimeWarning, stacklevel=2)
    return arr
