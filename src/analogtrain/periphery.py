"""Neuron circuits at the array edges: input DACs, output integrators/ADCs, output noise.

Forward, the row inputs (activations in [0, range]) are set by a DAC of ``input_bits``;
the column outputs are clipped to +-``forward_output_range`` and digitised by an ADC of
``output_bits``.  Backward, the error vector is first scaled by its largest magnitude (the
periphery's gain control), digitised signed, and the column-to-row outputs are clipped to
+-``backward_output_range`` (in units of that largest error) before being scaled back.
``bits = 0`` means ideal (no quantisation).
"""

from __future__ import annotations

import torch

from .config import PeripheryConfig


def quantize_unsigned_(x: torch.Tensor, bits: int, full_range: float) -> torch.Tensor:
    """Clip to [0, range] and round to 2^bits - 1 equal steps (in place)."""
    x.clamp_(0.0, full_range)
    if bits > 0:
        step = full_range / (2**bits - 1)
        x.div_(step).round_().mul_(step)
    return x


def quantize_signed_(x: torch.Tensor, bits: int, full_range: float) -> torch.Tensor:
    """Clip to [-range, range] and round to the 2^bits - 1 levels symmetric about 0 (in place)."""
    x.clamp_(-full_range, full_range)
    if bits > 0:
        step = full_range / (2 ** (bits - 1) - 1) if bits > 1 else full_range
        x.div_(step).round_().mul_(step)
    return x


class Periphery:
    def __init__(self, cfg: PeripheryConfig):
        self.cfg = cfg

    def forward_input(self, x: torch.Tensor) -> torch.Tensor:
        return quantize_unsigned_(x.clone(), self.cfg.input_bits, self.cfg.forward_input_range)

    def forward_output_(self, y: torch.Tensor) -> torch.Tensor:
        return quantize_signed_(y, self.cfg.output_bits, self.cfg.forward_output_range)

    def backward_input(self, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised, quantised error, scale) with ``d ~ normalised * scale``."""
        scale = d.abs().amax(dim=-1, keepdim=True).clamp_(min=1e-30)
        dn = quantize_signed_(d / scale, self.cfg.input_bits, 1.0)
        return dn, scale

    def backward_output_(self, z: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        quantize_signed_(z, self.cfg.output_bits, self.cfg.backward_output_range)
        return z.mul_(scale)
