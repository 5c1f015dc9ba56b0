"""Neuron circuits at the array edges: input DACs, output integrators/ADCs, output noise.

Forward, the row inputs (activations in [0, range]) are set by a DAC of ``input_bits``;
the column outputs are clipped to +-``forward_output_range`` (the output layer's, the logits,
to +-``output_layer_range``) and digitised by an ADC of ``output_bits``.  Backward, the error
vector is first scaled by its largest magnitude (the periphery's gain control), digitised signed, and the column-to-row outputs are clipped to
+-``backward_output_range`` (in units of that largest error) before being scaled back.
``bits = 0`` means ideal (no quantisation).
"""

from __future__ import annotations

import dataclasses

import torch

from .config import PeripheryConfig


class Periphery:
    """The converters of one array.  Methods work in place on scratch tensors.

    Column outputs arrive in uS x input units; ``gain`` (1 / uS-per-weight) turns them into
    weight x input units, folded into the same pass as the ADC.
    """

    def __init__(self, cfg: PeripheryConfig, output_layer: bool = False):
        # the output layer's ADC has its own range: it is this array's forward range
        self.cfg = dataclasses.replace(cfg, forward_output_range=cfg.forward_range(output_layer))
        self._in_step = cfg.forward_input_range / (2**cfg.input_bits - 1) if cfg.input_bits else 0.0
        self._in_levels = 2 ** (cfg.input_bits - 1) - 1 if cfg.input_bits > 1 else 1
        self._out_levels = 2 ** (cfg.output_bits - 1) - 1 if cfg.output_bits > 1 else 1

    def forward_input_(self, x: torch.Tensor) -> torch.Tensor:
        """DAC: clip to [0, range], round to input_bits (in place)."""
        x.clamp_(0.0, self.cfg.forward_input_range)
        if self._in_step:
            x.mul_(1.0 / self._in_step).round_().mul_(self._in_step)
        return x

    def _adc_(self, y: torch.Tensor, gain: float, full_range: float) -> torch.Tensor:
        if self.cfg.output_bits:
            levels = self._out_levels
            step = full_range / levels
            return y.mul_(gain / step).round_().clamp_(-levels, levels).mul_(step)
        return y.mul_(gain).clamp_(-full_range, full_range)

    def forward_output_(self, y: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """ADC of the forward column outputs: scale by gain, clip to +-range, round."""
        return self._adc_(y, gain, self.cfg.forward_output_range)

    def backward_input(self, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised, quantised error, scale) with ``d ~ normalised * scale``."""
        scale = d.abs().amax(dim=-1, keepdim=True).clamp_(min=1e-30)
        dn = d / scale
        if self.cfg.input_bits:
            levels = self._in_levels
            dn.mul_(levels).round_().div_(levels)
        return dn, scale

    def backward_output_(self, z: torch.Tensor, scale: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """ADC of the backward outputs (clip +-range in units of the largest error), rescaled."""
        return self._adc_(z, gain, self.cfg.backward_output_range).mul_(scale)
