"""3T1C cell: a capacitor whose voltage V_C sets the conductance of a read transistor.

State: the capacitor voltage ``V_C`` (volts).

Update pulses.  A coincident row/column pulse of width ``t_p`` turns on the PMOS pull-up
(charge) or the NMOS pull-down (discharge), each a current source in saturation whose
current changes slightly with its drain-source voltage (channel-length modulation,
coefficient lambda in 1/V).  Referred to the reset voltage V_r, one pulse moves V_C by

    dV_up(V) = + m_up I_0 t_p / C * (1 + lambda (V_r - V))     (less headroom above: weaker)
    dV_dn(V) = - m_dn I_0 t_p / C * (1 + lambda (V - V_r))

and V_C cannot leave the compliance range ``[V_dsat, V_DD - V_dsat]`` where a transistor
drops out of saturation (the update stops there).  ``m_up`` and ``m_dn`` are the cell's own
fixed mismatch factors (CMOS variability), drawn once at fabrication: each cell's up and
down steps differ in a fixed way.  The n pulses of one update (back to back, ~n x 10 ns)
are applied with the step evaluated at the V_C where the update starts; the error of that
against pulse-by-pulse stepping is O(n lambda dV) relative (< 0.1 % for n <= 30 at the
defaults).  The model is linear in V_C except for lambda: the paper's "near-linear" update.

Read.  The read transistor works in its linear region: ``g = k (V_C - V_T)`` for
V_C > V_T, else 0, with a per-cell threshold ``V_T``.

Leakage.  V_C relaxes exponentially towards ``leak_target_v`` with time constant tau:
``V(t + dt) = V_leak + (V(t) - V_leak) exp(-dt / tau)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import CapacitorConfig
from ..noise import randn

_SCALARS: dict[tuple[float, torch.dtype, torch.device], torch.Tensor] = {}


def _scalar(value: float, like: torch.Tensor) -> torch.Tensor:
    """A cached 0-d tensor of ``value`` with ``like``'s dtype and device (lerp_ wants a tensor end)."""
    key = (value, like.dtype, like.device)
    t = _SCALARS.get(key)
    if t is None:
        t = _SCALARS[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
    return t


@dataclass
class CapacitorMismatch:
    """Fixed per-cell draws (fabrication); tensors of the cells' shape."""

    step_up_v: torch.Tensor  # dV of one charge pulse in saturation
    step_down_v: torch.Tensor  # dV of one discharge pulse in saturation
    threshold_v: torch.Tensor  # V_T of the read transistor

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"step_up_v": self.step_up_v, "step_down_v": self.step_down_v, "threshold_v": self.threshold_v}

    def rows(self, rows: torch.Tensor) -> "CapacitorMismatch":
        """The update steps of a block of rows (the threshold is not needed for updates)."""
        return CapacitorMismatch(self.step_up_v.index_select(1, rows), self.step_down_v.index_select(1, rows),
                                 self.threshold_v)


class Capacitor3T1C:
    """Physics of the 3T1C cell; voltages are tensors passed in (updated in place where noted)."""

    def __init__(self, cfg: CapacitorConfig):
        self.cfg = cfg

    # -- fabrication -------------------------------------------------------------------
    def draw_mismatch(self, shape: tuple[int, ...], generator, device, dtype,
                      current_mismatch_rel: float | torch.Tensor | None = None,
                      threshold_mismatch_v: float | torch.Tensor | None = None) -> CapacitorMismatch:
        """Each cell's up and down step and read threshold.  The spreads default to the config's;
        per-chip spreads come as tensors that broadcast against ``shape`` (chips first)."""
        c = self.cfg
        step = c.step_at_reset_v
        rel = c.current_mismatch_rel if current_mismatch_rel is None else current_mismatch_rel

        def steps() -> torch.Tensor:  # step * max(1 + rel z, 0), in place on the draw
            return randn(shape, generator, device, dtype).mul_(rel).add_(1.0).clamp_(min=0.0).mul_(step)

        up = steps()
        down = steps()
        vt = self.draw_thresholds(shape, generator, device, dtype, threshold_mismatch_v)
        return CapacitorMismatch(up, down, vt)

    def draw_thresholds(self, shape: tuple[int, ...], generator, device, dtype,
                        threshold_mismatch_v: float | torch.Tensor | None = None) -> torch.Tensor:
        """V_T of read transistors (of the cells, or of the reference cells)."""
        c = self.cfg
        sigma = c.read_threshold_mismatch_v if threshold_mismatch_v is None else threshold_mismatch_v
        return randn(shape, generator, device, dtype).mul_(sigma).add_(c.read_threshold_v)

    # -- read --------------------------------------------------------------------------
    def conductance_us(self, v: torch.Tensor, threshold_v: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """g = k * max(V_C - V_T, 0) in uS."""
        out = torch.sub(v, threshold_v, out=out)
        return out.clamp_(min=0.0).mul_(self.cfg.read_transconductance_us_per_v)

    # -- update ------------------------------------------------------------------------
    def step_v(self, v: torch.Tensor, mismatch: CapacitorMismatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(up, down) magnitude of one pulse at voltage ``v`` (volts), before compliance clipping."""
        c = self.cfg
        dv = v - c.reset_v
        up = mismatch.step_up_v * (1.0 - c.channel_modulation_per_v * dv)
        down = mismatch.step_down_v * (1.0 + c.channel_modulation_per_v * dv)
        return up, down

    def apply_pulses_(self, v: torch.Tensor, n: torch.Tensor, mismatch: CapacitorMismatch) -> torch.Tensor:
        """Apply ``n`` signed pulses to every cell in place (n > 0 charge, n < 0 discharge).

        ``V += n_up dV_up(V) - n_dn dV_dn(V)``, clipped to the compliance range.  Written as
        ``p - lambda (V - V_r) q`` with ``p = n_up s_up - n_dn s_dn`` and
        ``q = n_up s_up + n_dn s_dn`` to keep the hot loop short.  ``n`` is used as scratch.
        """
        c = self.cfg
        up = n.clamp(min=0.0)
        down = up.sub(n)  # max(-n, 0)
        up.mul_(mismatch.step_up_v)
        down.mul_(mismatch.step_down_v)
        p = up.sub(down)
        q = up.add_(down)
        if c.channel_modulation_per_v:
            q.mul_(v.sub(c.reset_v))
            p.sub_(q, alpha=c.channel_modulation_per_v)
        v.add_(p)
        return v.clamp_(c.saturation_headroom_v, c.supply_v - c.saturation_headroom_v)

    # -- leakage -----------------------------------------------------------------------
    def prepare(self, like: torch.Tensor) -> None:
        """Create the constant tensors the leak uses for ``like``'s dtype and device now, so that a
        compiled step finds them already there (creating them while tracing would retrace it)."""
        _scalar(self.cfg.leak_target_v, like)

    def leak_keep_fraction(self, dt_s: float) -> float:
        """Fraction of (V - V_leak) that remains after dt: exp(-dt / tau)."""
        return math.exp(-dt_s / self.cfg.leak_time_constant_s)

    def relax_(self, v: torch.Tensor, keep: float | torch.Tensor) -> torch.Tensor:
        """V <- V_leak + (V - V_leak) * keep, in place (``keep`` a number or a broadcastable tensor)."""
        target = _scalar(self.cfg.leak_target_v, v)
        weight = 1.0 - keep if isinstance(keep, float) else keep.neg().add_(1.0)
        return v.lerp_(target, weight)

    def leak_(self, v: torch.Tensor, dt_s: float) -> torch.Tensor:
        """Exponential relaxation towards leak_target_v over dt seconds, in place."""
        return self.relax_(v, self.leak_keep_fraction(dt_s))
