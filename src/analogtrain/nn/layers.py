"""Analog layers: torch modules whose weights live in a simulated crossbar tile.

Each layer holds one :class:`~analogtrain.crossbar.AnalogCrossbar` (the *tile*: the unit cells
of the chip, the periphery's converters, the pulse generator) -- the same object the paper's
MLP (:mod:`analogtrain.network`) is built from, so a layer here and a layer there run the same
physics code.

* **Forward** is the array read, rows -> columns: the input DAC (inputs clipped to
  ``[0, chip.periphery.forward_input_range]`` and quantised), ``y = W x`` as column currents
  with read noise, the output ADC (clipped, quantised).
* **Backward** (a custom :class:`torch.autograd.Function`): the gradient to the layer's input is
  the transpose read through the same array, columns -> rows, with the periphery's gain
  control, quantisation, clipping and read noise.  The chip's backward does not see the DAC's
  clip, so neither does this gradient (straight through).  The layer also keeps what the
  chip's update needs: the DAC'd inputs ``x`` and the errors ``delta = -dLoss/dy``.
* **Update**: not by autograd but by :class:`analogtrain.optim.ChipSGD`, which applies
  ``eta x delta`` as pulse coincidences on the cells, lets chip time pass (leakage) and
  transfers on the chip's schedule.  There are no float weights to update: the layer's only
  ``torch.nn.Parameter`` is an empty *anchor* by which the optimizer finds the layer.

The presented weights are readable as ``layer.weight`` / ``layer.bias`` (copies, in software
units).  ``state_dict()`` holds the tile's named state under ``tile.*`` (conductances,
capacitor voltages, polarities, mismatch draws, clocks, the random stream); it round-trips bit
for bit, and a state of another format version is refused with one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import ChipConfig, ExperimentConfig
from ..crossbar import AnalogCrossbar
from ..errors import CheckpointError, ConfigError
from ..network import fan_in_uniform
from ..schedule import TransferSchedule

#: version of the ``tile.*`` entries of a layer's state_dict
TILE_STATE_VERSION = 1


def resolve_chip(chip: ChipConfig | ExperimentConfig | str | None) -> ChipConfig:
    """A chip config from a preset name, an experiment config, a chip config, or None (``nature2018``)."""
    if chip is None:
        chip = "nature2018"
    if isinstance(chip, str):
        from ..presets import get_preset

        chip = get_preset(chip)
    if isinstance(chip, ExperimentConfig):
        chip = chip.chip
    if not isinstance(chip, ChipConfig):
        raise ConfigError(f"chip must be a preset name, an ExperimentConfig or a ChipConfig, got {type(chip).__name__}")
    if chip.cell.kind == "digital":
        raise ConfigError("chip.cell.kind 'digital' has no analog cells; use torch.nn.Linear / torch.nn.Conv2d "
                          "for the software layer")
    return chip


@dataclass
class _Pending:
    """One read of a training forward pass, waiting for its errors and then for the optimizer."""

    x: torch.Tensor  # DAC'd row inputs [1, E, rows]
    examples: int  # training examples these E events belong to
    d: torch.Tensor | None = None  # errors -dLoss/dy [1, E, cols], set by backward


class _TileRead(torch.autograd.Function):
    """y = the tile's forward read of x; dL/dx = the tile's transpose read of dL/dy."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, anchor: torch.Tensor, layer: "AnalogLayer", examples: int,
                learn: bool) -> torch.Tensor:
        tile = layer.tile
        xa = tile.input_(x.detach())
        y = tile.read(xa)
        record = None
        if learn:
            record = _Pending(xa, examples)
            layer._pending.append(record)
        ctx.layer, ctx.record = layer, record
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None, None]:
        layer: AnalogLayer = ctx.layer
        if ctx.record is not None:
            ctx.record.d = grad_y.detach().neg()
        grad_x = layer.tile.backward(grad_y.detach().contiguous()) if ctx.needs_input_grad[0] else None
        return grad_x, torch.zeros_like(layer.analog_anchor), None, None, None


class AnalogLayer(nn.Module):
    """What every analog layer shares: the tile, the anchor, the pending updates, the schedule.

    ``rows`` inputs per read (+1 bias row with ``bias``), ``out`` columns.  ``chip``: a preset
    name, an :class:`~analogtrain.config.ExperimentConfig` or a
    :class:`~analogtrain.config.ChipConfig` (default the ``nature2018`` preset).
    ``max_weight``: the software weight that ``F * g_program_max_us`` represents (the layer's
    analog range; default ``chip.cell.max_weight_of(layer_index)``).  ``output_layer``: the
    ADC uses ``chip.periphery.output_layer_range`` (logits).  ``seed`` fixes the layer's
    fabrication draws (mismatch), programming errors, noise and pulse trains.
    """

    def __init__(self, in_rows: int, out: int, bias: bool, chip: ChipConfig | ExperimentConfig | str | None,
                 layer_index: int, max_weight: float | None, output_layer: bool, seed: int,
                 device: torch.device | str | None):
        super().__init__()
        self.chip = resolve_chip(chip)
        dev = torch.device(device if device is not None else "cpu")
        self.seed = int(seed)
        self.layer_index, self.max_weight, self.output_layer = layer_index, max_weight, output_layer
        self.generator = torch.Generator(device=dev).manual_seed(self.seed)
        self.tile = self._build_tile(in_rows, out, bias, dev, self.generator)
        self.analog_anchor = nn.Parameter(torch.zeros(0, device=dev))
        self.analog_anchor._analog_layer = self  # type: ignore[attr-defined]
        self._pending: list[_Pending] = []
        self.examples_seen = 0
        self.schedule = TransferSchedule(self.chip, [out], dev)

    def _build_tile(self, in_rows: int, out: int, bias: bool, device: torch.device,
                    generator: torch.Generator) -> AnalogCrossbar:
        return AnalogCrossbar(in_rows, out, self.chip, learning_rate=1.0, chips=1, generator=generator,
                              device=device, layer_index=self.layer_index, tracked_synapses=0,
                              output_layer=self.output_layer, bias=bias, max_weight=self.max_weight)

    # -- weights -------------------------------------------------------------------------
    def program_(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Program the cells to present ``weight`` [out, in] (and ``bias`` [out]) by closed-loop tuning."""
        w = weight.detach().reshape(self.tile.n_out, -1).to(self.tile.device, torch.float32)
        if self.tile.bias:
            b = torch.zeros(self.tile.n_out, device=w.device) if bias is None else bias.detach().to(w)
            w = torch.cat([w, b.view(-1, 1)], dim=1)
        self.tile.program(w.unsqueeze(0))

    def _init_weights(self, fan_in: int) -> None:
        """torch's default init for Linear/Conv2d: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), weight and bias,
        drawn from the layer's own generator (on the CPU, so every device programs the same targets)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7)
        w = fan_in_uniform(self.tile.n_out, self.tile.rows, fan_in, g)
        self.tile.program(w.unsqueeze(0).to(self.tile.device))

    def presented_weights(self) -> torch.Tensor:
        """The weights the array presents now [out, rows] (software units, bias column last)."""
        return self.tile.weights()[0]

    # -- the chip's update (called by ChipSGD) -------------------------------------------
    def apply_pending_update(self, learning_rate: float) -> int:
        """Apply ``eta x delta`` of every read since the last step as pulses; the examples it covered."""
        records = [r for r in self._pending if r.d is not None]
        self._pending.clear()
        if not records:
            return 0
        x = torch.cat([r.x for r in records], dim=1)
        d = torch.cat([r.d for r in records], dim=1)  # type: ignore[misc]
        self.tile.set_learning_rate(learning_rate)
        self.tile.apply_update(x, d)
        return max(r.examples for r in records)

    def advance_examples(self, examples: int, time_per_example_s: float) -> dict[str, int]:
        """Let ``examples`` training examples of chip time pass, one by one, transferring and
        maintaining the cells on the chip's schedule.  Returns what happened (counts)."""
        out = {"transfers": 0, "tuning_pulses": 0, "maintenance_pulses": 0}
        for _ in range(examples):
            self.tile.advance_time(time_per_example_s)
            self.examples_seen += 1
            for _, cols in self.schedule.transfers_due(self.examples_seen):
                out["tuning_pulses"] += self.tile.transfer(cols).tuning_pulses
                out["transfers"] += 1
            if self.schedule.reset_due(self.examples_seen):
                out["maintenance_pulses"] += self.tile.maintain().tuning_pulses
        return out

    def _learns(self) -> bool:
        """Whether this read is a training read whose errors the update will need."""
        return self.training and torch.is_grad_enabled() and self.analog_anchor.requires_grad

    def discard_pending(self) -> None:
        """Forget the errors of reads not yet applied (what ``zero_grad`` means for an analog layer).

        Reads whose backward has not run yet are kept: ``zero_grad()`` between the forward
        pass and ``backward()`` is a common loop order and must not lose the update."""
        self._pending[:] = [r for r in self._pending if r.d is None]

    # -- state -----------------------------------------------------------------------------
    def tile_state_dict(self) -> dict[str, torch.Tensor]:
        out = dict(self.tile.state_dict())  # the crossbar's named state, as the paper's MLP saves it
        out.update({
            "version": torch.tensor(TILE_STATE_VERSION),
            "examples_seen": torch.tensor(self.examples_seen, dtype=torch.int64),
            "rng_state": self.generator.get_state(),
            "rng_device": torch.tensor(0 if self.generator.device.type == "cpu" else 1),
        })
        return out

    def load_tile_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        version = state.get("version")
        if version is None or int(version) != TILE_STATE_VERSION:
            found = "no version" if version is None else f"version {int(version)}"
            raise CheckpointError(f"analog layer state has {found}; this analogtrain reads version "
                                  f"{TILE_STATE_VERSION} (save it again with the version that wrote it)")
        try:
            self.tile.load_state_dict(state)
        except KeyError as exc:
            raise CheckpointError(f"analog layer state lacks {exc}; it was not written by this layer") from None
        self.examples_seen = int(state["examples_seen"])
        same_kind = (int(state["rng_device"]) == 0) == (self.generator.device.type == "cpu")
        if same_kind:
            self.generator.set_state(state["rng_state"].cpu())
        else:  # a CPU stream cannot continue on CUDA (or back): a new stream, seeded from the saved one
            seed = int(torch.frombuffer(bytearray(state["rng_state"].cpu().numpy().tobytes()[:8]),
                                        dtype=torch.int64)[0]) & (2**63 - 1)
            self.generator.manual_seed(seed)

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for k, v in self.tile_state_dict().items():
            destination[f"{prefix}tile.{k}"] = v.detach().clone()

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
                              missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        head = f"{prefix}tile."
        mine = {k[len(head):]: v for k, v in state_dict.items() if k.startswith(head)}
        unexpected_keys[:] = [k for k in unexpected_keys if not k.startswith(head)]
        if not mine:
            if strict:
                missing_keys.append(f"{head}*")
            return
        self.load_tile_state_dict(mine)

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        """``.to(device)``, ``.cuda()``, ``.cpu()`` move the tile too (its state via state_dict);
        dtype conversions leave the cells in float32, the precision their physics is written for."""
        before = self.analog_anchor.device
        out = super()._apply(fn, recurse)
        after = self.analog_anchor.device
        if after != before:
            state = {k: v.to(after) if k != "rng_state" else v for k, v in self.tile_state_dict().items()}
            self.generator = torch.Generator(device=after)
            self.tile = self._build_tile(self.tile.n_in, self.tile.n_out, self.tile.bias, after, self.generator)
            self.schedule = TransferSchedule(self.chip, [self.tile.n_out], after)
            self.load_tile_state_dict(state)
            self._pending.clear()
        return out


class AnalogLinear(AnalogLayer):
    """``y = W x + b`` read from a crossbar: rows = ``in_features`` (+1 bias row), columns = ``out_features``.

    A drop-in for :class:`torch.nn.Linear` (inputs ``[..., in_features]``), trained by
    :class:`analogtrain.optim.ChipSGD`.  Over a minibatch, every example is its own read and its
    own update cycle (its own pulse trains); the cells receive the sum of the coincidences, so
    the update is ``eta * sum_b x_b delta_b`` -- plain SGD on the summed (or, with a mean loss,
    averaged) loss, as a chip that accumulates a minibatch's pulses before the next read would
    train.  The chip time of B examples passes after the update.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 chip: ChipConfig | ExperimentConfig | str | None = None, *, layer_index: int = 0,
                 max_weight: float | None = None, output_layer: bool = False, seed: int = 0,
                 device: torch.device | str | None = None):
        super().__init__(in_features, out_features, bias, chip, layer_index, max_weight, output_layer, seed, device)
        self.in_features, self.out_features = in_features, out_features
        self._init_weights(in_features)

    @property
    def weight(self) -> torch.Tensor:
        """The presented weights [out_features, in_features] (a copy, software units)."""
        w = self.presented_weights()
        return w[:, :-1] if self.tile.bias else w

    @property
    def bias(self) -> torch.Tensor | None:
        """The presented bias [out_features] (a copy), or None."""
        return self.presented_weights()[:, -1].clone() if self.tile.bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        flat = x.reshape(1, -1, self.in_features)
        y = _TileRead.apply(flat, self.analog_anchor, self, int(flat.shape[1]), self._learns())
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.tile.bias}, " \
               f"cell={self.chip.cell.kind!r}"


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class AnalogConv2d(AnalogLayer):
    """A 2-D convolution whose kernel is a crossbar: rows = ``in_channels * kh * kw`` (+1 bias row),
    columns = ``out_channels``.

    Each output position is one read of the array with that position's input patch on the
    rows (``unfold``), so a B-image minibatch with P output positions makes B * P reads.  The
    update, like the read, is per position: every position's ``x_p delta_p`` is its own update
    cycle with its own pulse trains, and a cell counts the coincidences of all of them, i.e.
    ``dW = eta * sum_{b,p} x_{b,p} delta_{b,p}`` -- the gradient of the convolution, applied as
    the chip would apply it, one position after the other, without first summing in digital
    (which would need a digital accumulator for every weight, the thing the chip avoids).
    With ``chip.update.pulse_mode = "rounded"`` each position's tiny update rounds on its own,
    and most round to zero: use the stochastic update for convolutions.  Only
    ``groups = 1`` and zero padding.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", chip: ChipConfig | ExperimentConfig | str | None = None, *,
                 layer_index: int = 0, max_weight: float | None = None, output_layer: bool = False, seed: int = 0,
                 device: torch.device | str | None = None):
        if groups != 1:
            raise ConfigError(f"AnalogConv2d supports groups=1 only (got {groups}); keep that layer digital")
        if padding_mode != "zeros":
            raise ConfigError(f"AnalogConv2d supports padding_mode='zeros' only (got {padding_mode!r})")
        if isinstance(padding, str):
            raise ConfigError("AnalogConv2d needs a numeric padding (got a string); give the padding in pixels")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
        super().__init__(fan_in, out_channels, bias, chip, layer_index, max_weight, output_layer, seed, device)
        self._init_weights(fan_in)

    @property
    def weight(self) -> torch.Tensor:
        """The presented kernel [out_channels, in_channels, kh, kw] (a copy, software units)."""
        w = self.presented_weights()
        w = w[:, :-1] if self.tile.bias else w
        return w.reshape(self.out_channels, self.in_channels, *self.kernel_size)

    @property
    def bias(self) -> torch.Tensor | None:
        return self.presented_weights()[:, -1].clone() if self.tile.bias else None

    def program_(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().program_(weight.reshape(self.out_channels, -1), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"AnalogConv2d expects input [batch, channels, height, width], got shape {tuple(x.shape)}")
        b, _, h, w = x.shape
        kh, kw = self.kernel_size
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        cols = nn.functional.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # [B, K, P]
        reads = cols.transpose(1, 2).reshape(1, b * oh * ow, cols.shape[1])
        y = _TileRead.apply(reads, self.analog_anchor, self, b, self._learns())
        return y.reshape(b, oh * ow, self.out_channels).transpose(1, 2).reshape(b, self.out_channels, oh, ow)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.tile.bias}, cell={self.chip.cell.kind!r}")
