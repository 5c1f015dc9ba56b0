"""From a desired update eta * x_i * delta_j to a number of update pulses per cell.

The chip updates every cell at once: row neurons fire pulses that encode x, column neurons
fire pulses that encode delta, and a cell receives one charge (or discharge) pulse for every
coincidence.  ``pulses_per_unit`` K is the number of nominal pulses that make a weight change
of ``eta * 1 * 1`` (set by the learning rate, the uS-per-weight scale and the cell's nominal
step: ``K = eta * us_per_weight / step_us``).

* ``rounded``: ``n_ij = round(K x_i delta_j)``, clipped to +-``pulse_train_length``.
* ``stochastic``: each row i fires in each of the ``L = pulse_train_length`` slots with
  probability ``p_i = c_x |x_i|``, each column j with ``q_j = c_d |delta_j|``; cell (i, j)
  counts the coincidences, ``n_ij ~ Binomial(L, p_i q_j)``, so ``E[n_ij] = K x_i delta_j``
  when ``c_x c_d L = K``.  The gains are balanced so the largest row and column
  probabilities are equal (at most 1; beyond that the update saturates at L pulses).

Counts are signed floats (integer valued), positive where the weight should increase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .config import UpdateConfig


@dataclass
class PulseBatch:
    """Signed counts of one update and cheap summaries of it."""

    counts: torch.Tensor  # [chips, rows, columns]
    total_per_chip: torch.Tensor  # sum of |n| per chip
    saturated_per_chip: torch.Tensor  # True where the update hit the pulse-train limit


class PulseGenerator:
    def __init__(self, cfg: UpdateConfig, pulses_per_unit: float):
        if not (pulses_per_unit > 0 and math.isfinite(pulses_per_unit)):
            raise ValueError(f"pulses_per_unit must be positive, got {pulses_per_unit}")
        self.cfg = cfg
        self.k = float(pulses_per_unit)

    def counts(self, x: torch.Tensor, d: torch.Tensor, generator: torch.Generator | None,
               out: torch.Tensor | None = None) -> PulseBatch:
        """Pulse counts [C, rows, cols] for row inputs ``x`` [C, rows] and column errors ``d`` [C, cols]."""
        if self.cfg.pulse_mode == "rounded":
            return self._rounded(x, d, out)
        return self._stochastic(x, d, generator, out)

    def _rounded(self, x, d, out) -> PulseBatch:
        limit = float(self.cfg.pulse_train_length)
        n = torch.mul(x.unsqueeze(-1), d.unsqueeze(-2), out=out)
        n.mul_(self.k).round_()
        sat = n.abs().amax(dim=(1, 2)) > limit
        n.clamp_(-limit, limit)
        return PulseBatch(n, n.abs().sum(dim=(1, 2)), sat)

    def _stochastic(self, x, d, generator, out) -> PulseBatch:
        """Coincidences of random pulse trains.  Row inputs are non-negative (the DAC clips
        them to [0, range]); column errors carry the sign."""
        length = self.cfg.pulse_train_length
        rows = x.shape[-1]
        ad = d.abs()
        mx = x.amax(dim=-1, keepdim=True)
        md = ad.amax(dim=-1, keepdim=True)
        # gains: the largest row and column probabilities are equal, q = sqrt(K mx md / L) <= 1
        q2 = (mx * md).mul_(self.k / length)
        sat = q2 > 1.0
        gx = q2.clamp(max=1.0).sqrt_()
        gd = gx / md.clamp_(min=1e-30)
        gx.div_(mx.clamp_(min=1e-30))
        r = torch.rand((x.shape[0], rows + d.shape[-1], length), generator=generator, device=x.device, dtype=x.dtype)
        bx = r[:, :rows].lt_((x * gx).unsqueeze(-1))
        bd = r[:, rows:].lt_(ad.mul_(gd).unsqueeze(-1))
        total = (bx.sum(dim=1) * bd.sum(dim=1)).sum(dim=-1)
        bd.mul_(torch.sign(d).unsqueeze(-1))
        n = torch.bmm(bx, bd.transpose(1, 2), out=out)
        return PulseBatch(n, total, sat.squeeze(-1))
