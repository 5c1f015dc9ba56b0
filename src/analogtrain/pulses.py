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
from .noise import NoiseSource, fires, noise_source


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

    def words_needed(self, chips: int, rows: int, cols: int) -> int:
        """Random words (one per slot, :mod:`analogtrain.noise`) one update of a [chips, rows, cols] block draws."""
        if self.cfg.pulse_mode == "rounded":
            return 0
        return chips * (rows + cols) * self.cfg.pulse_train_length

    def counts(self, x: torch.Tensor, d: torch.Tensor, noise: "NoiseSource | torch.Generator | None") -> PulseBatch:
        """Pulse counts [C, rows, cols] for row inputs ``x`` [C, rows] and column errors ``d`` [C, cols].

        Several update events per chip (the examples of a minibatch, the output positions of
        a convolution): ``x`` [C, E, rows] and ``d`` [C, E, cols].  Each event is its own
        update cycle with its own pulse trains and gains, and the counts are summed over the
        events (a cell counts every coincidence it receives); with E = 1 this is the same
        computation, drawing the same random words, as the two-dimensional form.

        ``noise`` is a noise source (:mod:`analogtrain.noise`), or a generator or chip streams to draw from.
        """
        if self.cfg.pulse_mode == "rounded":
            return self._rounded(x, d)
        return self._stochastic(x, d, noise_source(noise, x.device, x.dtype))

    def _rounded(self, x, d) -> PulseBatch:
        limit = float(self.cfg.pulse_train_length)
        if x.dim() == 3:  # events: each rounded and clipped on its own, then summed
            n = torch.mul(x.unsqueeze(-1), d.unsqueeze(-2)).mul_(self.k).round_()
            sat = n.abs().amax(dim=(1, 2, 3)) > limit
            n = n.clamp_(-limit, limit).sum(dim=1)
            return PulseBatch(n, n.abs().sum(dim=(1, 2)), sat)
        n = torch.mul(x.unsqueeze(-1), d.unsqueeze(-2))
        n.mul_(self.k).round_()
        sat = n.abs().amax(dim=(1, 2)) > limit
        n.clamp_(-limit, limit)
        return PulseBatch(n, n.abs().sum(dim=(1, 2)), sat)

    def _stochastic(self, x, d, noise) -> PulseBatch:
        """Coincidences of random pulse trains.  Row inputs are non-negative (the DAC clips
        them to [0, range]); column errors carry the sign.  ``x`` [C, (E,) rows]."""
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
        if x.dim() == 3:  # events: slots of every event side by side, [C, lines, E * L], no copies
            c, e = x.shape[0], x.shape[1]
            r = noise.words((c, rows + d.shape[-1], e, length))  # the E = 1 layout of the 2-D form
            px, qd = (x * gx).transpose(1, 2).unsqueeze(-1), ad.mul_(gd).transpose(1, 2).unsqueeze(-1)
            bx, bd = fires(r[:, :rows], px).to(x.dtype), fires(r[:, rows:], qd).to(x.dtype)
            total = (bx.sum(dim=1) * bd.sum(dim=1)).sum(dim=(1, 2))
            bd.mul_(torch.sign(d).transpose(1, 2).unsqueeze(-1))
            bx, bd = bx.view(c, rows, e * length), bd.view(c, d.shape[-1], e * length)
            sat = sat.squeeze(-1).any(dim=1, keepdim=True)
        else:
            r = noise.words((x.shape[0], rows + d.shape[-1], length))
            px, qd = (x * gx).unsqueeze(-1), ad.mul_(gd).unsqueeze(-1)
            bx, bd = fires(r[:, :rows], px).to(x.dtype), fires(r[:, rows:], qd).to(x.dtype)
            total = (bx.sum(dim=1) * bd.sum(dim=1)).sum(dim=-1)
            bd.mul_(torch.sign(d).unsqueeze(-1))
        n = torch.bmm(bx, bd.transpose(1, 2))
        return PulseBatch(n, total, sat.squeeze(-1))
