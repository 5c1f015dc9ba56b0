"""Unit cells: how devices combine into the weight each crossbar position presents.

All cell state is held as tensors of shape ``[chips, rows, columns]`` (rows = inputs
including the bias row, columns = outputs), so many independent chips train together and a
set of rows (the inputs that are non-zero for an example) is a contiguous block of memory.
Conductances in uS; the presented weight ``W`` is in uS too (the crossbar divides by the
uS-per-weight scale).  Per-column quantities (polarity, the shared reference cell) have
shape ``[chips, columns]``.

* :class:`HybridCells` -- the paper's cell,
  ``W = F (G+ - G-) + s (g - g_shared)``: two PCM devices written only at transfer, a 3T1C
  cell that takes every update, a reference 3T1C ``g_shared`` per column (held at the reset
  voltage, or leaking like the cells: ``chip.cell.shared_reference``), and the polarity
  ``s = +-1`` per column that flips at each transfer.
* :class:`PCMPairCells` -- the 2-PCM baseline, ``W = F (G+ - G-)``, updated by partial-SET
  pulses on G+ (increase) or G- (decrease), with an occasional RESET-and-reprogram of pairs
  that have saturated.

Row blocks.  Most of an example's work touches only the rows whose input is non-zero (MNIST
pixels are mostly zero).  ``block(rows)`` returns the presented weight of those rows only and
``apply_pulses(n, rows)`` updates them; leakage of the other rows is not lost but deferred:
every row keeps the time it was last brought up to date, and the exact exponential for the
elapsed time is applied when the row is next touched (leakage is linear, so this equals
applying it after every example).  Clocks are kept in seconds since a time origin, which moves to
now at every full read of the weights, every transfer, and after ``REBASE_AFTER_S`` of chip time.

Chips of one batch may differ in the parameters of :data:`analogtrain.perchip.PER_CHIP_FIELDS`
(``chip_configs``, one per chip): each is held as a per-chip tensor, so a chip computes the same
whatever the others are.  A held reference is the leaking one with its leakage switched off.
"""

from __future__ import annotations

import torch

from .config import ChipConfig
from .devices import Capacitor3T1C, PCMDevice
from .interface import TransferStats, register_cell
from .noise import ChipStreams, chip_ranges, noise_source, randn, sparse_normals
from .perchip import per_chip

#: version of the named state of the cells (state_dict); bumped when names or meanings change
CELL_STATE_VERSION = 2  # 2: row clocks in seconds (row_clock_s); version 1 kept them in units of tau

#: closed-loop programming works on groups of chips of at most this many devices (at least one
#: chip), so its temporaries (about ten full-shape tensors per tuning iteration, and both devices'
#: results) do not set a many-chip run's peak memory; per-chip streams leave every result unchanged
TUNE_GROUP_DEVICES = 1 << 18

#: chip time (s) after which the deferred leakage is brought up to date and the clocks restart, so
#: float32 clocks in seconds keep a resolution far below any leak time constant
REBASE_AFTER_S = 1e-3


def _col(t: torch.Tensor) -> torch.Tensor:
    """A per-column tensor [C, cols] broadcast over rows: [C, 1, cols]."""
    return t.unsqueeze(1)


def _chip_totals(t: torch.Tensor) -> torch.Tensor:
    """Per-chip sums [C] (int64) of an integer or bool tensor [C, ...], summed along its last dimension
    in int32 first, so no full-shape int64 copy is made (a row's sum stays far below 2**31)."""
    rows = t.sum(dim=-1, dtype=torch.int32) if t.dim() > 1 else t.to(torch.int32)
    return rows.reshape(rows.shape[0], -1).sum(dim=1, dtype=torch.int64) if rows.dim() > 0 else rows.to(torch.int64)


class _PCMPair:
    """State and physics shared by both cells: the PCM pair G+, G- with optional drift."""

    def __init__(self, cfg: ChipConfig, shape: tuple[int, int, int], generator, device, dtype,
                 chip_configs=None):
        self.cfg = cfg
        self.shape = shape
        self.generator = generator
        self.chip_configs = chip_configs
        # closed-loop tuning tolerance of each chip's transfers [C, 1, 1]
        self._tolerance_us = self._per_chip("transfer.tolerance_us", device, dtype).view(-1, 1, 1)
        self.pcm = PCMDevice(cfg.pcm)
        self.g_plus = torch.full(shape, cfg.pcm.g_reset_us, device=device, dtype=dtype)
        self.g_minus = torch.full(shape, cfg.pcm.g_reset_us, device=device, dtype=dtype)
        self.time_s = 0.0
        self.drift = cfg.pcm.drift_nu > 0
        c, _, n_cols = shape
        # time at which each column's PCMs were last programmed (for drift)
        self.programmed_at_s = torch.zeros((c, n_cols), device=device, dtype=torch.float64)
        if self.drift:
            self.nu_plus = self._draw_nu(shape)
            self.nu_minus = self._draw_nu(shape)
        self.w_pcm_us = torch.zeros(shape, device=device, dtype=dtype)
        self.read_var_us2 = torch.zeros(shape, device=device, dtype=dtype)
        self._examples_since_drift = 0

    def _per_chip(self, field: str, device, dtype=torch.float32) -> torch.Tensor:
        """``field`` for each chip, a [C] tensor (:func:`analogtrain.perchip.per_chip`)."""
        return per_chip(self.cfg, self.chip_configs, field, self.shape[0], device, dtype)

    def _draw_nu(self, shape) -> torch.Tensor:
        p = self.cfg.pcm
        nu = p.drift_nu + p.drift_nu_sigma * randn(shape, self.generator, self.g_plus.device, self.g_plus.dtype)
        return nu.clamp_(min=0.0)

    def drift_factors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self.drift:
            return None
        elapsed = _col((self.time_s - self.programmed_at_s).to(self.g_plus.dtype))
        return self.pcm.drift_factor(elapsed, self.nu_plus), self.pcm.drift_factor(elapsed, self.nu_minus)

    def effective_conductances(self) -> tuple[torch.Tensor, torch.Tensor]:
        """G+, G- as read now (drift applied)."""
        d = self.drift_factors()
        if d is None:
            return self.g_plus, self.g_minus
        return self.g_plus * d[0], self.g_minus * d[1]

    def refresh_pcm(self) -> None:
        """Recompute the PCM part of W and the read-noise variance matrix (after any PCM change)."""
        gp, gm = self.effective_conductances()
        f = self.cfg.cell.gain_f
        torch.sub(gp, gm, out=self.w_pcm_us).mul_(f)
        sp = self.pcm.read_sigma_us(gp)
        sp.mul_(sp)
        sm = self.pcm.read_sigma_us(gm)
        torch.add(sp, sm.mul_(sm), out=self.read_var_us2).mul_(f * f)

    def read_pcm_weight_us(self, cols: torch.Tensor | None = None) -> torch.Tensor:
        """A noisy read of F (G+ - G-), for the given columns (all if None), as the transfer reads it
        (each device's read the mean of ``chip.transfer.reads_averaged`` reads)."""
        gp, gm = self.effective_conductances()
        if cols is not None:
            gp, gm = gp[:, :, cols], gm[:, :, cols]
        return self._read_pair_us(gp, gm, self.generator)

    def _read_pair_us(self, gp: torch.Tensor, gm: torch.Tensor, generator) -> torch.Tensor:
        """F times the difference of noisy reads of ``gp`` and ``gm`` (each the mean of
        ``chip.transfer.reads_averaged`` reads), drawing from ``generator``."""
        n = self.cfg.transfer.reads_averaged
        return self.cfg.cell.gain_f * (self.pcm.read(gp, generator, n) - self.pcm.read(gm, generator, n))

    def _streams(self, a: int, b: int):
        """The random streams of chips a .. b-1 (the one shared generator without per-chip streams)."""
        return self.generator.subset(a, b) if isinstance(self.generator, ChipStreams) else self.generator

    def _chip_groups(self, cells_per_chip: int) -> list[tuple[int, int]]:
        """Chip ranges [a, b) to program one at a time: at most ``TUNE_GROUP_DEVICES`` devices each
        (at least one chip), so closed-loop tuning's temporaries stay small beside the state.
        With per-chip streams a chip's draws do not depend on its group; with one generator for
        all chips, they would, so then all chips form one group."""
        return chip_ranges(self.generator, self.shape[0], TUNE_GROUP_DEVICES // max(1, cells_per_chip))

    def _tune_pair(self, target_w_us: torch.Tensor, a: int, b: int):
        """RESET both devices and tune the one on the target's side so F(G+ - G-) ~ target, for
        chips ``a`` .. ``b-1`` (``target_w_us`` holds theirs).  Returns G+, G-, pulses and
        unconverged devices per pair."""
        p = self.cfg.pcm
        t = self.cfg.transfer
        gen = self._streams(a, b)
        tol = self._tolerance_us[a:b]
        target_g = target_w_us / self.cfg.cell.gain_f
        plus = self.pcm.tune(target_g.clamp(min=0).add_(p.g_reset_us), tol, t.max_iterations, gen, t.reads_averaged)
        minus = self.pcm.tune(target_g.neg_().clamp_(min=0).add_(p.g_reset_us), tol, t.max_iterations, gen,
                              t.reads_averaged)
        del target_g
        pulses = plus.pulses.add_(minus.pulses)  # int32, in place
        unconverged = plus.converged.logical_not().to(torch.int32).add_(minus.converged.logical_not())
        return plus.conductance_us, minus.conductance_us, pulses, unconverged

    def program_pair(self, target_w_us: torch.Tensor, cols: torch.Tensor | None) -> TransferStats:
        """Program the pairs of the given columns (all if None) to ``target_w_us`` (their shape)."""
        per_chip: list[int] = []
        unconverged: list[int] = []
        for a, b in self._chip_groups(int(target_w_us[0].numel())):
            gp, gm, pulses, unc = self._tune_pair(target_w_us[a:b], a, b)
            if cols is None:
                self.g_plus[a:b] = gp
                self.g_minus[a:b] = gm
            else:
                self.g_plus[a:b, :, cols] = gp
                self.g_minus[a:b, :, cols] = gm
            per_chip += _chip_totals(pulses).tolist()
            unconverged += _chip_totals(unc).tolist()
            del gp, gm, pulses, unc
        if cols is None:
            self.programmed_at_s.fill_(self.time_s)
        else:
            self.programmed_at_s[:, cols] = self.time_s
        if self.drift:  # a newly programmed device drifts with a newly drawn exponent
            if cols is None:
                self.nu_plus, self.nu_minus = self._draw_nu(self.shape), self._draw_nu(self.shape)
            else:
                sub = (self.shape[0], self.shape[1], int(cols.numel()))
                self.nu_plus[:, :, cols] = self._draw_nu(sub)
                self.nu_minus[:, :, cols] = self._draw_nu(sub)
        return TransferStats(columns=int(target_w_us.shape[2]), cells=int(target_w_us[0].numel()),
                             tuning_pulses=sum(per_chip), unconverged=sum(unconverged), per_chip_pulses=per_chip,
                             per_chip_unconverged=unconverged)

    def reprogram_pairs(self, mask: torch.Tensor) -> TransferStats:
        """Read, RESET and reprogram only the pairs in ``mask`` (full-shape bool) to the weight each
        presented (a noisy read, as the transfer reads); the others keep their devices.

        Chip by chip, the masked pairs are read and tuned as one compact vector, drawing from that
        chip's stream only, so the work and the draws follow the pairs programmed, not the array.
        Drift bookkeeping stays per column, so a refreshed pair keeps its column's age.
        """
        c_all = self.shape[0]
        per_chip, unconverged = [0] * c_all, [0] * c_all
        flat = mask.reshape(c_all, -1)
        counts = flat.sum(dim=1).tolist()
        if not any(counts):
            return TransferStats()
        gp_now, gm_now = self.effective_conductances()
        for c, k in enumerate(counts):
            if not k:
                continue
            idx = flat[c].nonzero().squeeze(1)
            gp = gp_now[c].reshape(-1).index_select(0, idx).view(1, 1, -1)
            gm = gm_now[c].reshape(-1).index_select(0, idx).view(1, 1, -1)
            target = self._read_pair_us(gp, gm, self._streams(c, c + 1))
            new_p, new_m, pulses, unc = self._tune_pair(target, c, c + 1)
            self.g_plus[c].view(-1).index_copy_(0, idx, new_p.view(-1))
            self.g_minus[c].view(-1).index_copy_(0, idx, new_m.view(-1))
            per_chip[c], unconverged[c] = int(pulses.sum()), int(unc.sum())
        return TransferStats(columns=0, cells=int(sum(counts)), tuning_pulses=sum(per_chip),
                             unconverged=sum(unconverged), per_chip_pulses=per_chip, per_chip_unconverged=unconverged)

    # -- named state ------------------------------------------------------------------------
    def _pair_tensors(self) -> dict[str, torch.Tensor]:
        """The PCM pair's state tensors by name (the tensors themselves: what is saved and loaded into)."""
        out = {
            "g_plus_us": self.g_plus,
            "g_minus_us": self.g_minus,
            "programmed_at_s": self.programmed_at_s,
            "w_pcm_us": self.w_pcm_us,  # as last computed (with drift, it is re-read only every so often)
            "read_var_us2": self.read_var_us2,
        }
        if self.drift:
            out.update({"nu_plus": self.nu_plus, "nu_minus": self.nu_minus})
        return out

    def _pair_state(self) -> dict[str, torch.Tensor]:
        return {**self._pair_tensors(),
                "time_s": torch.tensor(self.time_s, dtype=torch.float64),
                "examples_since_drift": torch.tensor(self._examples_since_drift, dtype=torch.int64)}

    def _load_tensors(self, state: dict[str, torch.Tensor], names: dict[str, torch.Tensor]) -> None:
        """Copy ``state[name]`` into each tensor of ``names`` (name -> target tensor); the
        set of names must match exactly (one-line error naming what differs)."""
        from .errors import CheckpointError

        want = set(names) | {"time_s", "examples_since_drift", "version"}
        got = set(state)
        if got != want:
            missing, extra = sorted(want - got), sorted(got - want)
            raise CheckpointError(f"{type(self).__name__} state does not match this chip config "
                                  f"(missing {missing or 'nothing'}, unexpected {extra or 'nothing'})")
        version = int(state["version"])
        if version != CELL_STATE_VERSION:
            raise CheckpointError(f"{type(self).__name__} state has version {version}, this analogtrain reads "
                                  f"version {CELL_STATE_VERSION}; retrain or load it with the version that wrote it")
        for name, target in names.items():
            src = state[name]
            if tuple(src.shape) != tuple(target.shape):
                raise CheckpointError(f"{type(self).__name__} state {name!r} has shape {tuple(src.shape)}, "
                                      f"this layer needs {tuple(target.shape)}")
            target.copy_(src)
        self.time_s = float(state["time_s"])
        self._examples_since_drift = int(state["examples_since_drift"])

    def advance_drift(self, examples: int) -> bool:
        """Re-evaluate drift every ``drift_refresh_examples``; True when W changed."""
        if not self.drift:
            return False
        self._examples_since_drift += examples
        if self._examples_since_drift >= self.cfg.pcm.drift_refresh_examples:
            self._examples_since_drift = 0
            self.refresh_pcm()
            return True
        return False


@register_cell("2pcm+3t1c")
class HybridCells(_PCMPair):
    """2PCM + 3T1C cells: ``W = F (G+ - G-) + s (g - g_shared)`` (uS)."""

    has_capacitor = True
    has_transfer = True

    def __init__(self, cfg: ChipConfig, shape: tuple[int, int, int], generator, device, dtype=torch.float32,
                 chip_configs=None):
        super().__init__(cfg, shape, generator, device, dtype, chip_configs)
        c, n_rows, n_cols = shape
        cap = cfg.capacitor
        self.cap = Capacitor3T1C(cap)
        cells = (lambda field: self._per_chip(field, device, dtype).view(-1, 1, 1))
        self.mismatch = self.cap.draw_mismatch(shape, generator, device, dtype,
                                               cells("capacitor.current_mismatch_rel"),
                                               cells("capacitor.read_threshold_mismatch_v"))
        # per chip: 1/tau [C, 1, 1]; reference held at the reset voltage by the periphery, or leaking [C, 1];
        # polarity inversion at transfer [C, 1]; transfer offset [C, 1, 1]
        self._inv_tau = cells("capacitor.leak_time_constant_s").reciprocal()
        self._reference_leaks = self._per_chip("cell.shared_reference", device).bool().view(-1, 1)
        self._inversion = self._per_chip("cell.polarity_inversion", device).bool().view(-1, 1)
        self._offset_us = cells("cell.transfer_offset_us")
        self.threshold_shared_v = self.cap.draw_thresholds((c, n_cols), generator, device, dtype,
                                                           cells("capacitor.read_threshold_mismatch_v").view(-1, 1))
        self.v_shared = torch.full((c, n_cols), cap.reset_v, device=device, dtype=dtype)
        self.v = torch.full(shape, cap.reset_v, device=device, dtype=dtype)
        self.cap.prepare(self.v)
        # Deferred leakage: row i's voltages are current as of time origin + clock_s[i] (seconds).
        self._origin_s = 0.0
        self._row_clock_s = torch.zeros(n_rows, dtype=dtype, device=device)
        self._rows_in_step = True  # every row is current as of the origin
        self.now_s_t = torch.zeros((), dtype=dtype, device=device)  # seconds since the origin, for the tensor step
        self.polarity = torch.ones((c, n_cols), device=device, dtype=dtype)
        self.w_us = torch.zeros(shape, device=device, dtype=dtype)
        self._sk = torch.zeros((c, 1, n_cols), device=device, dtype=dtype)  # s k per column
        self._scratch = torch.empty(shape, device=device, dtype=dtype)
        self._stale = True  # W must be recomputed from the state before the next read
        self._block: tuple[torch.Tensor, torch.Tensor] | None = None
        self.refresh_pcm()

    @property
    def nominal_step_us(self) -> float:
        """|dW| of one pulse on a nominal cell at the reset voltage (uS)."""
        return self.cap.cfg.step_at_reset_us

    # -- leakage bookkeeping -------------------------------------------------------------
    def _keep(self, clock_s: torch.Tensor, now_s: torch.Tensor | float) -> torch.Tensor:
        """exp(-(now - clock) / tau) per chip and row, [C, rows, 1]: what is left of V - V_leak of rows
        last brought up to date at ``clock_s`` [rows] (seconds since the origin)."""
        return clock_s.view(1, -1, 1).sub(now_s).mul(self._inv_tau).exp_()

    def _reference_keep(self, now_s: torch.Tensor | float) -> torch.Tensor:
        """The same for the reference cells [C, 1]: exp(-now / tau) where they leak, 1 where held."""
        leak = torch.as_tensor(now_s, dtype=self._inv_tau.dtype, device=self._inv_tau.device)
        leak = (-leak * self._inv_tau.view(-1, 1)).exp()
        return torch.where(self._reference_leaks, leak, torch.ones_like(leak))

    def sync(self) -> None:
        """Apply all deferred leakage so every capacitor voltage is current; new origin."""
        now_s = self.time_s - self._origin_s
        if now_s != 0.0 or not self._rows_in_step:
            self._stale = True  # the voltages change: W must be recomputed
            self.cap.relax_(self.v_shared, self._reference_keep(now_s))
            self.cap.relax_(self.v, self._keep(self._row_clock_s, now_s))
        self._rows_in_step = True
        self._origin_s = self.time_s
        self._row_clock_s.zero_()
        self.now_s_t.zero_()

    def refresh_pcm(self) -> None:
        super().refresh_pcm()
        self._refresh_columns()

    def _refresh_columns(self) -> None:
        """Cache s k per column; it changes only at transfer."""
        torch.mul(_col(self.polarity), self.cfg.capacitor.read_transconductance_us_per_v, out=self._sk)
        self._stale = True

    def _reference_term(self) -> torch.Tensor:
        """-s g_shared(now) per column [C, 1, cols] (a leaking reference's deferred leak applied).

        ``v_shared`` is current as of the time origin; the reference has not been pulsed since,
        so its voltage now is ``V_leak + (v_shared - V_leak) exp(-now / tau)`` where it leaks and
        ``v_shared`` where it is held.  Pure tensor work.
        """
        v = self.cap.relax_(self.v_shared.clone(), self._reference_keep(self.now_s_t))
        return _col(self.cap.conductance_us(v, self.threshold_shared_v).mul_(self.polarity).neg_())

    def _base(self, rows: torch.Tensor | None) -> torch.Tensor:
        """The column part of the presented weight for a block of rows (all if None)."""
        w_pcm = self.w_pcm_us if rows is None else self.w_pcm_us.index_select(1, rows)
        return w_pcm + self._reference_term()

    # -- the presented weight ----------------------------------------------------------
    def _presented(self, base: torch.Tensor, v: torch.Tensor, vt: torch.Tensor, out: torch.Tensor | None = None,
                   scratch: torch.Tensor | None = None) -> torch.Tensor:
        """W = (W_pcm - s g_shared) + s k relu(V - V_T), for any block of rows."""
        over = torch.sub(v, vt, out=scratch).clamp_(min=0.0)
        return torch.addcmul(base, self._sk, over, out=out)

    def capacitor_pair_us(self) -> torch.Tensor:
        """g - g_shared for every cell (uS), without the polarity."""
        self.sync()
        g = self.cap.conductance_us(self.v, self.mismatch.threshold_v)
        return g - _col(self.cap.conductance_us(self.v_shared, self.threshold_shared_v))

    def weight_us(self) -> torch.Tensor:
        """The presented weight (uS) of every cell, recomputed once after any change."""
        if self._stale or not self._rows_in_step or self.time_s != self._origin_s:
            self.sync()
            self._presented(self._base(None), self.v, self.mismatch.threshold_v, out=self.w_us, scratch=self._scratch)
            self._stale = False
        return self.w_us

    def read_block(self, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(presented weight [C, k, cols], capacitor voltages) of the given rows (all if None).

        Leakage of those rows is brought up to date first (exact: each row's deferred
        exponential from its own clock to now).  The voltages are what ``apply_block`` needs;
        for all rows they are the state tensor itself.  Pure tensor work, no Python state.

        All rows eager: W goes into the cached weight and its scratch, so a step allocates no
        full-shape tensors.  Inside a compiled step W is a value of the step (the update makes
        the cache stale anyway): writing it to the cache and the scratch would only add two
        stores per cell (5-6 % of a 16-chip MNIST step, the same results).
        """
        if rows is None:
            v = self.v
            self.cap.relax_(v, self._keep(self._row_clock_s, self.now_s_t))
            out, scratch = (None, None) if torch.compiler.is_compiling() else (self.w_us, self._scratch)
            return self._presented(self._base(None), v, self.mismatch.threshold_v, out=out, scratch=scratch), v
        v = self.v.index_select(1, rows)
        self.cap.relax_(v, self._keep(self._row_clock_s.index_select(0, rows), self.now_s_t))
        return self._presented(self._base(rows), v, self.mismatch.threshold_v.index_select(1, rows)), v

    def block(self, rows: torch.Tensor) -> torch.Tensor:
        """Presented weight of the given rows [C, k, cols] (their leakage brought up to date).

        The block's capacitor voltages are kept for the ``apply_pulses(n, rows)`` that follows.
        """
        w, v = self.read_block(rows)
        self._block = (rows, v)
        return w

    def read_var_block(self, rows: torch.Tensor) -> torch.Tensor:
        return self.read_var_us2.index_select(1, rows)

    # -- dynamics ----------------------------------------------------------------------
    def update_normals(self, cells: int) -> int:  # noqa: ARG002
        """Normal random numbers an update of ``cells`` cells draws (none: the 3T1C step is deterministic)."""
        return 0

    def apply_block(self, n: torch.Tensor, rows: torch.Tensor | None, v: torch.Tensor, noise=None) -> None:  # noqa: ARG002
        """Apply signed pulse counts ``n`` (in the weight's direction) to the 3T1C cells of ``rows``.

        ``v`` are those rows' voltages from :meth:`read_block` (leakage up to date).  The
        capacitor moves in direction ``s * sign(n)``: with s = -1 an increase of W is a
        discharge.  ``n`` is used as scratch.  Pure tensor work; call :meth:`after_update`
        once the step is done.
        """
        n_cap = n.mul_(_col(self.polarity))
        if rows is None:
            self.cap.apply_pulses_(v, n_cap, self.mismatch)
            self._row_clock_s.fill_(self.now_s_t)
        else:
            self.cap.apply_pulses_(v, n_cap, self.mismatch.rows(rows))
            self.v.index_copy_(1, rows, v)
            self._row_clock_s.index_fill_(0, rows, self.now_s_t)

    def after_update(self) -> None:
        self._rows_in_step = False
        self._stale = True

    def apply_pulses(self, n: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """Apply signed pulse counts ``n`` to all cells, or to ``rows`` after ``block(rows)``."""
        if rows is None:
            self.sync()
            self.apply_block(n, None, self.v)
        else:
            if self._block is None or self._block[0] is not rows:
                raise RuntimeError("apply_pulses(n, rows) must follow block(rows)")
            self.apply_block(n, rows, self._block[1])
            self._block = None
        self.after_update()

    def advance_time(self, dt_s: float, examples: int = 1) -> None:
        """Let ``dt_s`` seconds pass: capacitor leakage (deferred, exact), PCM drift.

        A held reference (docs/physics.md, section 2) does not leak; a leaking one relaxes like the
        cells, with the same deferred clock.
        """
        self.time_s += dt_s
        now_s = self.time_s - self._origin_s
        if now_s > REBASE_AFTER_S:  # restart the clocks before float32 seconds lose resolution
            self.sync()
        else:
            self.now_s_t.fill_(now_s)
        if self.advance_drift(examples):
            self._refresh_columns()

    def transfer(self, cols: torch.Tensor | None = None) -> TransferStats:
        """Move the weight into the PCM pair (docs/physics.md, section 3, step 5), then flip s.

        Read W; RESET the capacitors (cells and shared) to V_reset; read the residual of the
        capacitor pair at reset, r = g(V_reset) - g_shared(V_reset); program the PCM pair to
        ``W - s_new (offset + r)``, so that after the transfer the cell presents
        ``W - s_new * offset`` and the correction is left to g growing; flip s.
        """
        cap = self.cfg.capacitor
        self.sync()
        sel = (lambda t: t) if cols is None else (lambda t: t[:, :, cols])
        selc = (lambda t: t) if cols is None else (lambda t: t[:, cols])
        w_read = self.read_pcm_weight_us(cols) + _col(selc(self.polarity)) * sel(self.capacitor_pair_us())
        s_old = selc(self.polarity)
        s_new = torch.where(self._inversion, -s_old, s_old)
        if cols is None:
            self.v.fill_(cap.reset_v)
            self.v_shared.fill_(cap.reset_v)
        else:
            self.v[:, :, cols] = cap.reset_v
            self.v_shared[:, cols] = cap.reset_v
        residual = sel(self.capacitor_pair_us())
        target = w_read - _col(s_new) * (self._offset_us + residual)
        stats = self.program_pair(target, cols)
        if cols is None:
            self.polarity.copy_(s_new)
        else:
            self.polarity[:, cols] = s_new
        self.refresh_pcm()
        return stats

    def program_weights(self, w_us: torch.Tensor) -> TransferStats:
        """Initial programming: capacitors at reset, PCM pair tuned to ``w_us - s (offset + r)``."""
        self.sync()
        self.v.fill_(self.cfg.capacitor.reset_v)
        self.v_shared.fill_(self.cfg.capacitor.reset_v)
        s = _col(self.polarity)
        stats = self.program_pair(w_us - s * (self._offset_us + self.capacitor_pair_us()), None)
        self.refresh_pcm()
        return stats

    @classmethod
    def maintenance_interval_examples(cls, chip: ChipConfig) -> int:  # noqa: ARG003
        return 0

    def maintain(self) -> TransferStats:
        """Nothing: the transfer keeps the 3T1C within its range."""
        return TransferStats()

    def _named_tensors(self) -> dict[str, torch.Tensor]:
        out = {
            "v_c_v": self.v,
            "v_shared_v": self.v_shared,
            "polarity": self.polarity,
            "threshold_shared_v": self.threshold_shared_v,
            "row_clock_s": self._row_clock_s,
        }
        out.update({f"mismatch_{k}": v for k, v in self.mismatch.tensors().items()})
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Named state, raw: the deferred leakage is not brought up to date (that would change
        the float path of the run), its clocks are saved instead.  Tensors are the state
        itself (not copies); scalars are 0-d tensors."""
        out = {"version": torch.tensor(CELL_STATE_VERSION), **self._pair_state(), **self._named_tensors(),
               "origin_s": torch.tensor(self._origin_s, dtype=torch.float64),
               "rows_in_step": torch.tensor(self._rows_in_step)}
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)
        if "version" in state and int(state["version"]) == 1 and "row_clock" in state:
            # version 1 kept the row clocks in units of tau (one tau for every chip then)
            state["row_clock_s"] = state.pop("row_clock") * self.cfg.capacitor.leak_time_constant_s
            state["version"] = torch.tensor(CELL_STATE_VERSION)
        origin = state.pop("origin_s", None)
        rows_in_step = state.pop("rows_in_step", None)
        if origin is None or rows_in_step is None:
            from .errors import CheckpointError

            raise CheckpointError("HybridCells state lacks origin_s or rows_in_step; it was not written by "
                                  "HybridCells.state_dict()")
        self._load_tensors(state, {**self._pair_tensors(), **self._named_tensors()})
        self._origin_s = float(origin)
        self._rows_in_step = bool(rows_in_step)
        self.now_s_t.fill_(self.time_s - self._origin_s)
        self._refresh_columns()  # the column terms from the restored state; W is recomputed on its next read

    def state_tensors(self) -> dict[str, torch.Tensor]:
        self.sync()
        out = {
            "g_plus_us": self.g_plus,
            "g_minus_us": self.g_minus,
            "v_c_v": self.v,
            "v_shared_v": self.v_shared,
            "polarity": self.polarity,
            "threshold_shared_v": self.threshold_shared_v,
            "programmed_at_s": self.programmed_at_s,
        }
        out.update({f"mismatch_{k}": v for k, v in self.mismatch.tensors().items()})
        if self.drift:
            out.update({"nu_plus": self.nu_plus, "nu_minus": self.nu_minus})
        return out


@register_cell("2pcm")
class PCMPairCells(_PCMPair):
    """2-PCM baseline: ``W = F (G+ - G-)``, gradual partial SET and occasional RESET."""

    has_capacitor = False
    has_transfer = False

    def __init__(self, cfg: ChipConfig, shape: tuple[int, int, int], generator, device, dtype=torch.float32,
                 chip_configs=None):
        super().__init__(cfg, shape, generator, device, dtype, chip_configs)
        self.step_plus = self.pcm.draw_set_step_factor(shape, generator, device, dtype)
        self.step_minus = self.pcm.draw_set_step_factor(shape, generator, device, dtype)
        self.refresh_pcm()

    @property
    def nominal_step_us(self) -> float:
        """|dW| of one partial-SET pulse on a nominal device at G = 0 (uS)."""
        return self.cfg.cell.gain_f * self.cfg.pcm.set_step_us

    def weight_us(self) -> torch.Tensor:
        return self.w_pcm_us

    def read_block(self, rows: torch.Tensor | None) -> tuple[torch.Tensor, None]:
        """(presented weight of the given rows, None): the PCM pair has no other state to read."""
        return (self.w_pcm_us if rows is None else self.w_pcm_us.index_select(1, rows)), None

    def block(self, rows: torch.Tensor) -> torch.Tensor:
        return self.read_block(rows)[0]

    def read_var_block(self, rows: torch.Tensor) -> torch.Tensor:
        return self.read_var_us2.index_select(1, rows)

    def update_normals(self, cells: int) -> int:
        """Normal random numbers an update of ``cells`` cells draws beforehand: on the CPU none, the
        partial-SET noise is drawn for the pulsed cells only as the update goes
        (:func:`analogtrain.noise.pulsed_normals`); elsewhere one per cell (a cell's pulses all go
        to one of its devices), drawn with the step's other numbers (:func:`analogtrain.noise.sparse_normals`)."""
        if self.cfg.pcm.set_step_sigma_rel <= 0 or sparse_normals(self.g_plus.device):
            return 0
        return cells

    def apply_block(self, n: torch.Tensor, rows: torch.Tensor | None, v=None, noise=None) -> None:  # noqa: ARG002
        """n > 0: partial SET of G+; n < 0: partial SET of G- (the weight goes down).

        ``noise``: the source of the cycle-to-cycle noise (default: the cells' generator).  A
        cell's pulses all go to one of its two devices, so one normal per pulsed cell is its
        noise, drawn only for the cells that have pulses.
        """
        z = None
        if self.cfg.pcm.set_step_sigma_rel > 0:
            z = noise_source(self.generator if noise is None else noise, n.device, n.dtype).pulsed_normal(n)
        up = n.clamp(min=0.0)
        down = n.neg_().clamp_(min=0.0)
        if rows is None:
            self.g_plus.copy_(self.pcm.partial_set(self.g_plus, up, self.step_plus, z))
            self.g_minus.copy_(self.pcm.partial_set(self.g_minus, down, self.step_minus, z))
            self.refresh_pcm()
            return
        gp = self.pcm.partial_set(self.g_plus.index_select(1, rows), up, self.step_plus.index_select(1, rows), z)
        gm = self.pcm.partial_set(self.g_minus.index_select(1, rows), down, self.step_minus.index_select(1, rows), z)
        self.g_plus.index_copy_(1, rows, gp)
        self.g_minus.index_copy_(1, rows, gm)
        if self.drift:
            self.refresh_pcm()
        else:  # only these rows changed: refresh just them
            self._refresh_rows(rows, gp, gm)

    def after_update(self) -> None:
        return None

    def apply_pulses(self, n: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        self.apply_block(n, rows)

    def _refresh_rows(self, rows: torch.Tensor, gp: torch.Tensor, gm: torch.Tensor) -> None:
        """W_pcm and the read-noise variance of a block of rows (no drift)."""
        f = self.cfg.cell.gain_f
        self.w_pcm_us.index_copy_(1, rows, (gp - gm).mul_(f))
        sp, sm = self.pcm.read_sigma_us(gp), self.pcm.read_sigma_us(gm)
        self.read_var_us2.index_copy_(1, rows, sp.mul_(sp).addcmul_(sm, sm).mul_(f * f))

    def sync(self) -> None:
        return None

    def advance_time(self, dt_s: float, examples: int = 1) -> None:
        self.time_s += dt_s
        self.advance_drift(examples)

    def saturated(self) -> torch.Tensor:
        """Pairs that need the occasional RESET: either device above the threshold."""
        thr = self.cfg.pcm.reset_threshold_us
        return (self.g_plus > thr) | (self.g_minus > thr)

    @classmethod
    def maintenance_interval_examples(cls, chip: ChipConfig) -> int:
        return chip.pcm.reset_check_interval_examples

    def maintain(self) -> TransferStats:
        """The occasional RESET-and-reprogram of saturated pairs."""
        return self.occasional_reset()

    def _step_tensors(self) -> dict[str, torch.Tensor]:
        return {"set_step_plus": self.step_plus, "set_step_minus": self.step_minus}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Named state (the tensors themselves; scalars as 0-d tensors)."""
        return {"version": torch.tensor(CELL_STATE_VERSION), **self._pair_state(), **self._step_tensors()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)
        if "version" in state and int(state["version"]) == 1:  # version 1 differs only for 2PCM+3T1C cells
            state["version"] = torch.tensor(CELL_STATE_VERSION)
        self._load_tensors(state, {**self._pair_tensors(), **self._step_tensors()})

    def occasional_reset(self) -> TransferStats:
        """RESET-and-reprogram every saturated pair to the weight it presented (read)."""
        stats = self.reprogram_pairs(self.saturated())
        if stats.cells:
            self.refresh_pcm()
        return stats

    def transfer(self, cols: torch.Tensor | None = None) -> TransferStats:  # noqa: ARG002
        """A 2-PCM cell has nothing to transfer."""
        return TransferStats()

    def program_weights(self, w_us: torch.Tensor) -> TransferStats:
        stats = self.program_pair(w_us, None)
        self.refresh_pcm()
        return stats

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {
            "g_plus_us": self.g_plus,
            "g_minus_us": self.g_minus,
            "set_step_plus": self.step_plus,
            "set_step_minus": self.step_minus,
            "programmed_at_s": self.programmed_at_s,
        }
        if self.drift:
            out.update({"nu_plus": self.nu_plus, "nu_minus": self.nu_minus})
        return out
