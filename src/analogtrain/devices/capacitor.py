"""3T1C cell: a capacitor whose voltage V_C sets the conductance of a read transistor.

State: the capacitor voltage ``V_C`` (volts).

Update pulses.  A coincident row/column pulse of width ``t_p`` turns on the PMOS pull-up
(charge) or the NMOS pull-down (discharge).  Each works as a current source ``m I_0`` while
it has more than ``V_dsat`` of headroom (the distance of V_C from the rail it drives
towards: ``V_DD - V_C`` up, ``V_C`` down) and, closer to the rail, in its linear region
where the current falls in proportion to the headroom:

    I(h) = m I_0              for h >= V_dsat     (saturation: steps of dV = m I_0 t_p / C)
    I(h) = m I_0 h / V_dsat   for h <  V_dsat     (triode: h shrinks by (1 - dV/V_dsat) per pulse)

so updates are linear over most of the range and compress near the rails ("near-linear",
paper).  n pulses compose exactly: n_sat = min(n, ceil((h - V_dsat)/dV)) constant steps, then
the remaining pulses shrink the headroom geometrically.  ``m_up`` and ``m_dn`` are the
cell's own fixed mismatch factors (CMOS variability), drawn once at fabrication; they make
each cell's up and down steps differ in a fixed way.

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


@dataclass
class CapacitorMismatch:
    """Fixed per-cell draws (fabrication); tensors of the cells' shape."""

    step_up_v: torch.Tensor  # dV of one charge pulse in saturation
    step_down_v: torch.Tensor  # dV of one discharge pulse in saturation
    threshold_v: torch.Tensor  # V_T of the read transistor

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"step_up_v": self.step_up_v, "step_down_v": self.step_down_v, "threshold_v": self.threshold_v}

    def rows(self, rows: torch.Tensor) -> "CapacitorMismatch":
        return CapacitorMismatch(self.step_up_v.index_select(1, rows), self.step_down_v.index_select(1, rows),
                                 self.threshold_v.index_select(1, rows))


class Capacitor3T1C:
    """Physics of the 3T1C cell; voltages are tensors passed in (updated in place where noted)."""

    def __init__(self, cfg: CapacitorConfig):
        self.cfg = cfg

    # -- fabrication -------------------------------------------------------------------
    def draw_mismatch(self, shape: tuple[int, ...], generator, device, dtype) -> CapacitorMismatch:
        c = self.cfg
        step = c.step_at_reset_v

        def factors() -> torch.Tensor:
            f = 1.0 + c.current_mismatch_rel * torch.randn(shape, generator=generator, device=device, dtype=dtype)
            return f.clamp_(min=0.0)

        up = (step * factors()).clamp_(max=0.999 * c.saturation_headroom_v)
        down = (step * factors()).clamp_(max=0.999 * c.saturation_headroom_v)
        vt = c.read_threshold_v + c.read_threshold_mismatch_v * torch.randn(
            shape, generator=generator, device=device, dtype=dtype
        )
        return CapacitorMismatch(up, down, vt)

    def draw_thresholds(self, shape: tuple[int, ...], generator, device, dtype) -> torch.Tensor:
        """V_T of reference (shared) cells."""
        c = self.cfg
        return c.read_threshold_v + c.read_threshold_mismatch_v * torch.randn(
            shape, generator=generator, device=device, dtype=dtype
        )

    # -- read --------------------------------------------------------------------------
    def conductance_us(self, v: torch.Tensor, threshold_v: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """g = k * max(V_C - V_T, 0) in uS."""
        out = torch.sub(v, threshold_v, out=out)
        return out.clamp_(min=0.0).mul_(self.cfg.read_transconductance_us_per_v)

    # -- update ------------------------------------------------------------------------
    def apply_pulses_(self, v: torch.Tensor, n: torch.Tensor, mismatch: CapacitorMismatch) -> torch.Tensor:
        """Apply ``n`` signed pulses to every cell in place (n > 0 charge, n < 0 discharge).

        Exact composition of the piecewise current model (module docstring): with headroom
        h, step dV and V_dsat, ``n_sat = clip(ceil((h - V_dsat)/dV), 0, |n|)``,
        ``h <- (h - n_sat dV) (1 - dV/V_dsat)^(|n| - n_sat)``.
        """
        c = self.cfg
        vdd, vs = c.supply_v, c.saturation_headroom_v
        up = n > 0
        m = n.abs()
        step = torch.where(up, mismatch.step_up_v, mismatch.step_down_v)
        h = torch.where(up, vdd - v, v)
        n_sat = torch.minimum(((h - vs) / step).ceil_().clamp_(min=0.0), m)
        h.sub_(n_sat * step)
        n_tri = m.sub_(n_sat)
        h.mul_(torch.exp(n_tri.mul_(torch.log1p(step.div_(-vs)))))
        v.copy_(torch.where(up, vdd - h, h))
        return v

    # -- leakage -----------------------------------------------------------------------
    def leak_keep_fraction(self, dt_s: float) -> float:
        """Fraction of (V - V_leak) that remains after dt."""
        return math.exp(-dt_s / self.cfg.leak_time_constant_s)

    def leak_(self, v: torch.Tensor, dt_s: float) -> torch.Tensor:
        """Exponential relaxation towards leak_target_v over dt seconds, in place."""
        keep = self.leak_keep_fraction(dt_s)
        target = torch.tensor(self.cfg.leak_target_v, dtype=v.dtype, device=v.device)
        return v.lerp_(target, 1.0 - keep)
