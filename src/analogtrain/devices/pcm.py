"""Phase-change memory (PCM) device model.

Conductances are in microsiemens (uS).  A device is written only by

* a RESET pulse, which melts and quenches the plug: G -> ``g_reset_us``;
* a programming (SET) step used by closed-loop tuning, which lands near its target with a
  Gaussian error of std ``program_sigma_us + program_sigma_rel * target``;
* for the 2-PCM baseline cell, partial-SET pulses that raise G gradually with a nonlinear,
  state-dependent and stochastic step (gradual SET / abrupt RESET, Burr et al. 2015):
  ``dG = set_step_us * m * (1 - G/g_max)^gamma * (1 + sigma_c2c * xi)`` per pulse, where ``m``
  is the device's own fixed step factor.

Reads add Gaussian noise of std ``read_noise_us + read_noise_rel * G``.  Optional drift
multiplies the programmed conductance by ``((t - t_prog + t0) / t0)^-nu``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..config import PCMConfig
from ..noise import Streams, randn


@dataclass
class TuningResult:
    """Outcome of closed-loop tuning of a set of devices."""

    conductance_us: torch.Tensor  # final conductance of every device
    pulses: torch.Tensor  # programming pulses each device received (RESETs included), int32
    converged: torch.Tensor  # bool: verify read ended within tolerance


class PCMDevice:
    """Physics of PCM devices; state tensors are passed in and returned."""

    def __init__(self, cfg: PCMConfig):
        self.cfg = cfg

    # -- reads -------------------------------------------------------------------------
    def read_sigma_us(self, g: torch.Tensor) -> torch.Tensor:
        """Std of one read of conductance ``g`` (uS)."""
        return self.cfg.read_noise_us + self.cfg.read_noise_rel * g

    def read(self, g: torch.Tensor, generator: Streams, reads: int = 1,
             chips: Sequence[bool] | None = None) -> torch.Tensor:
        """A noisy read of each device: the mean of ``reads`` independent reads.

        Each read adds independent Gaussian noise of std ``read_sigma_us(g)``, so the mean of n
        reads is exactly ``g + N(0, read_sigma_us(g) / sqrt(n))``; it is drawn as that one
        normal (the same distribution as n draws averaged, at the cost of one).  ``chips``: read
        only the flagged chips (per-chip streams; the others' reads are noiseless and unused).
        """
        if reads < 1:
            raise ValueError(f"reads must be >= 1, got {reads}")
        if self.cfg.read_noise_us == 0 and self.cfg.read_noise_rel == 0:
            return g.clone()
        noise = randn(g.shape, generator, g.device, g.dtype, chips)
        sigma = self.read_sigma_us(g)
        if reads > 1:
            sigma = sigma / math.sqrt(reads)
        return g + noise * sigma

    # -- programming -------------------------------------------------------------------
    def program_sigma_us(self, target: torch.Tensor) -> torch.Tensor:
        """Std of the conductance reached by one programming step aimed at ``target``."""
        return self.cfg.program_sigma_us + self.cfg.program_sigma_rel * target

    def clip_target(self, target: torch.Tensor) -> torch.Tensor:
        """Targets are limited to what can be programmed: [g_reset, g_program_max]."""
        return target.clamp(self.cfg.g_reset_us, self.cfg.g_program_max_us)

    def tune(
        self,
        target_us: torch.Tensor,
        tolerance_us: float | torch.Tensor,
        max_iterations: int,
        generator: Streams,
        verify_reads: int = 1,
    ) -> TuningResult:
        """RESET each device, then program-verify until within tolerance or out of iterations.

        Each iteration applies one programming step to every device not yet converged; the
        step lands at ``target + N(0, program_sigma(target))`` (clipped to the physical range).
        The verify read (with read noise, averaged over ``verify_reads`` reads) decides
        convergence.  A device whose verify read
        shows an overshoot beyond the tolerance is RESET (one more pulse) before its next
        step, since a PCM device cannot be made less conductant gradually.  A device still
        outside the tolerance after ``max_iterations`` steps keeps its last step's conductance
        (an overshoot is not RESET when no step follows).

        With per-chip streams (the chips first in ``target_us``) a step draws only from the
        streams of chips with a device still tuning, so a chip's draws never depend on the other
        chips.
        """
        cfg = self.cfg
        target = self.clip_target(target_us)
        g = torch.full_like(target, cfg.g_reset_us)
        pulses = torch.ones(target.shape, dtype=torch.int32, device=target.device)  # initial RESET
        # devices whose target is the RESET state are done after the RESET
        active = (target - cfg.g_reset_us).abs() > tolerance_us
        for it in range(max_iterations):
            tuning = active.flatten(1).any(dim=1).tolist() if active.dim() > 1 else [bool(active.any())]
            if not any(tuning):
                break
            per_chip = tuning if active.dim() > 1 else None
            noise = randn(target.shape, generator, target.device, target.dtype, per_chip)
            attempt = (target + noise * self.program_sigma_us(target)).clamp(cfg.g_reset_us, cfg.g_max_us)
            g = torch.where(active, attempt, g)
            pulses += active.to(torch.int32)
            verify = self.read(g, generator, verify_reads, per_chip)
            miss = (verify - target).abs() > tolerance_us
            active = active & miss
            if it + 1 == max_iterations:
                break  # out of iterations: an overshoot stays as it is (no next try to RESET for)
            # an overshoot costs a RESET before the next try
            overshoot = active & (verify > target)
            g = torch.where(overshoot, torch.full_like(g, cfg.g_reset_us), g)
            pulses += overshoot.to(torch.int32)
        return TuningResult(conductance_us=g, pulses=pulses, converged=~active)

    # -- gradual SET (2-PCM cell) -----------------------------------------------------
    def draw_set_step_factor(self, shape: tuple[int, ...], generator, device, dtype) -> torch.Tensor:
        """Each device's fixed partial-SET step factor m (mean 1, std set_step_mismatch_rel, >= 0)."""
        f = 1.0 + self.cfg.set_step_mismatch_rel * randn(shape, generator, device, dtype)
        return f.clamp_(min=0.0)

    def partial_set(
        self,
        g: torch.Tensor,
        n_pulses: torch.Tensor,
        step_factor: torch.Tensor,
        normal: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Conductance after ``n_pulses`` (>= 0) partial-SET pulses.

        ``normal``: a standard normal per device for the cycle-to-cycle noise (needed when
        ``set_step_sigma_rel > 0``; only the devices that receive pulses use theirs).

        The mean step is evaluated at the starting conductance (a burst of pulses within one
        update), the cycle-to-cycle noise of n independent pulses adds in quadrature
        (std ``sqrt(n) * sigma * step``), and G cannot exceed ``g_max_us`` or fall below
        ``g_reset_us`` (a SET pulse never lowers G).
        """
        cfg = self.cfg
        headroom = (1.0 - g / cfg.g_max_us).clamp_(min=0.0)
        step = cfg.set_step_us * step_factor * headroom.pow_(cfg.set_step_nonlinearity)
        mean = n_pulses * step
        if cfg.set_step_sigma_rel > 0:
            if normal is None:
                raise ValueError("partial_set with set_step_sigma_rel > 0 needs a standard normal per device")
            dg = mean + normal * (cfg.set_step_sigma_rel * step) * n_pulses.sqrt()
            dg.clamp_(min=0.0)
        else:
            dg = mean
        return (g + dg).clamp_(max=cfg.g_max_us)

    # -- drift -------------------------------------------------------------------------
    def drift_factor(self, elapsed_s: torch.Tensor | float, nu: torch.Tensor | float) -> torch.Tensor:
        """G(t)/G0 = ((elapsed + t0)/t0)^-nu, elapsed measured from the end of programming."""
        t0 = self.cfg.drift_t0_s
        elapsed = torch.as_tensor(elapsed_s)
        return ((elapsed + t0) / t0) ** (-torch.as_tensor(nu))
