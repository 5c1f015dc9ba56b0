"""Crossbar arrays: one unit cell per weight, inputs on rows, outputs summed on columns.

An array holds ``[chips, rows, columns]`` cells (rows = inputs + 1 always-on bias row).

* Forward, rows -> columns: ``y_j = sum_i W_ij x_i / S`` (Ohm + Kirchhoff), where S is the
  uS-per-weight scale; with DAC/ADC quantisation and read noise.
* Backward, columns -> rows (the transpose): ``z_i = sum_j W_ij delta_j / S``.
* Update: the pulse generator turns ``eta x_i delta_j`` into pulse counts that the cells apply
  all at once; the PCM is untouched.
* Transfer: delegated to the cells (:mod:`analogtrain.cell`).

Read noise.  Each device read adds independent Gaussian noise, so a column current carries
noise of variance ``sum_i x_i^2 var_ij``; it is sampled exactly in that form at the column
output (one matrix-vector product with the variance matrix), which is equivalent in
distribution to sampling every device and much cheaper.

:class:`DigitalCrossbar` has the same interface with exact FP32 weights: the software
baseline, trained by plain SGD with minibatch 1.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import cell as _builtin_cells  # noqa: F401 - registers the built-in cell kinds
from ._ops import rowblock_mv
from .config import ChipConfig
from .errors import ConfigError
from .interface import TransferStats, UnitCells, cell_class
from .noise import ChipStreams, GeneratorNoise, NoiseSource
from .periphery import Periphery
from .pulses import PulseGenerator

TRACKED_SYNAPSES = 4096


def _with_bias(x: torch.Tensor) -> torch.Tensor:
    """A new tensor [..., n + 1]: the inputs and the always-on bias input 1."""
    return torch.nn.functional.pad(x, (0, 1), value=1.0)


class StepContext(NamedTuple):
    """What a training step's forward read leaves for its update."""

    x: torch.Tensor  # inputs of the rows read [chips, k]
    rows: torch.Tensor | None  # those rows (None: all)
    w: torch.Tensor  # presented weights read (uS) [chips, k, cols]
    v: torch.Tensor | None  # capacitor voltages of those rows, brought up to date (3T1C cells)


class AnalogCrossbar:
    """A crossbar of analog unit cells (2PCM+3T1C or 2-PCM) with its periphery.

    Cells are stored ``[chips, rows, columns]``; :meth:`program` and :meth:`weights` speak
    the software layout ``[chips, n_out, n_in + 1]`` (bias last).
    """

    #: use the row-block path when at most this fraction of the rows has a non-zero input
    SPARSE_ROW_FRACTION = 0.6
    #: look for zero inputs at all (the network sets False for layers fed by sigmoids)
    sparse_inputs = True

    def __init__(self, n_in: int, n_out: int, chip: ChipConfig, learning_rate: float, chips: int,
                 generator: torch.Generator, device: torch.device | str = "cpu", dtype=torch.float32,
                 layer_index: int = 0, tracked_synapses: int = TRACKED_SYNAPSES, output_layer: bool = False,
                 bias: bool = True, max_weight: float | None = None, chip_configs=None):
        self.bias = bias
        self.device, self.dtype = torch.device(device), dtype
        self.n_in, self.n_out, self.rows, self.chips = n_in, n_out, n_in + int(bias), chips
        self.cfg = chip
        self.generator = generator
        shape = (chips, self.rows, n_out)
        cls = cell_class(chip.cell.kind)
        if chip_configs is None:
            self.cells: UnitCells = cls(chip, shape, generator, device, dtype)
        else:  # chips that differ in their configuration (analogtrain.perchip)
            try:
                self.cells = cls(chip, shape, generator, device, dtype, chip_configs=chip_configs)
            except TypeError as exc:
                if "chip_configs" not in str(exc):
                    raise
                raise ConfigError(f"cell kind {chip.cell.kind!r} cannot train chips of different configurations in "
                                  "one batch; train each configuration as its own run") from None
        # uS that represent a software weight of 1: F g_program_max_us / max_weight
        self.scale_us = (chip.us_per_weight(layer_index) if max_weight is None
                         else chip.cell.gain_f * chip.pcm.g_program_max_us / max_weight)
        self.periphery = Periphery(chip.periphery, output_layer)
        self.pulse_gen = PulseGenerator(chip.update, learning_rate * self.scale_us / self.cells.nominal_step_us)
        self.noisy_read = chip.pcm.read_noise_us > 0 or chip.pcm.read_noise_rel > 0
        self._ctx: StepContext | None = None
        # statistics
        self.update_pulses = torch.zeros(chips, dtype=torch.float64, device=device)
        self.saturated_updates = torch.zeros(chips, dtype=torch.float64, device=device)
        self.updates = 0
        n_cells = n_out * self.rows
        k = min(tracked_synapses, n_cells)
        sel = torch.Generator(device="cpu").manual_seed(12345 + n_cells)
        flat = torch.randperm(n_cells, generator=sel)[:k].to(device)
        self.tracked = flat
        self.tracked_row = flat // n_out
        self.tracked_col = flat % n_out
        self._row_pos = torch.empty(self.rows, dtype=torch.long, device=device)
        self.tracked_net = torch.zeros((chips, k), dtype=torch.float64, device=device)
        self.tracked_total = torch.zeros((chips, k), dtype=torch.float64, device=device)

    # -- weights -----------------------------------------------------------------------
    def program(self, weights: torch.Tensor) -> TransferStats:
        """Program initial weights ``[chips, n_out, n_in + 1]`` (software units, bias last)."""
        return self.cells.program_weights(weights.transpose(1, 2).contiguous() * self.scale_us)

    def weights(self) -> torch.Tensor:
        """The weights the array presents now, ``[chips, n_out, n_in + 1]`` in software units."""
        return (self.cells.weight_us() / self.scale_us).transpose(1, 2).contiguous()

    # -- reads -------------------------------------------------------------------------
    def _read_noise(self, inputs: torch.Tensor, var: torch.Tensor, out: torch.Tensor, transpose: bool,
                    noise: NoiseSource, block: bool = False) -> torch.Tensor:
        """Add the column-current read noise, std sqrt(sum_i x_i^2 var_i), to ``out`` (uS units)."""
        x2 = inputs * inputs
        std = (rowblock_mv(x2, var) if block else torch.bmm(x2, var.transpose(1, 2) if transpose else var)).sqrt_()
        return out.addcmul_(std, noise.normal(tuple(out.shape)))

    def _output_noise(self, out: torch.Tensor, noise: NoiseSource) -> torch.Tensor:
        sigma = self.cfg.periphery.output_noise
        if sigma > 0:  # given in weight x input units; outputs are still in uS units here
            out.add_(noise.normal(tuple(out.shape)), alpha=sigma * self.scale_us)
        return out

    def _noise(self, chips: tuple[int, int] | None = None) -> GeneratorNoise:
        """Draws from the layer's generator; ``chips`` (a, b): from chips a .. b-1's streams only."""
        gen = self.generator
        if chips is not None:
            if not isinstance(gen, ChipStreams):
                raise ValueError("reading a range of chips needs per-chip streams")
            gen = gen.subset(*chips)
        return GeneratorNoise(gen, self.device, self.dtype)

    def input_(self, x: torch.Tensor) -> torch.Tensor:
        """Row inputs as the DAC sets them: ``x`` [chips, batch, n_in] plus the bias row (a new tensor)."""
        return self.periphery.forward_input_(_with_bias(x) if self.bias else x.clone())

    def set_learning_rate(self, learning_rate: float) -> None:
        """The eta of the update: pulses per unit of ``eta x delta`` follow it."""
        self.pulse_gen.k = float(learning_rate) * self.scale_us / self.cells.nominal_step_us

    def active_rows(self, xa: torch.Tensor) -> torch.Tensor | None:
        """Rows with a non-zero input on any chip (one training example), or None for all rows.

        None also when too many rows are active for the row-block path to pay off.
        """
        if not self.sparse_inputs or xa.shape[1] != 1:
            return None
        nz = xa[0, 0] if self.chips == 1 else xa[:, 0, :].abs().sum(dim=0)
        active = nz.nonzero().squeeze(1)
        return active if active.numel() <= self.SPARSE_ROW_FRACTION * self.rows else None

    def noise_demand(self, active_rows: int, backward: bool) -> tuple[int, int]:
        """(random words, normals) one training step of this array draws (see :mod:`analogtrain.noise`)."""
        c = self.chips
        reads = c * self.n_out + (c * self.rows if backward else 0)
        normals = 0
        if self.noisy_read:
            normals += reads
        if self.cfg.periphery.output_noise > 0:
            normals += reads
        normals += self.cells.update_normals(c * active_rows * self.n_out)
        return self.pulse_gen.words_needed(c, active_rows, self.n_out), normals

    def forward(self, x: torch.Tensor, remember: bool = False, chips: tuple[int, int] | None = None) -> torch.Tensor:
        """Column outputs for row inputs ``x`` [chips, batch, n_in] (weight * input units).

        With ``remember`` (training, batch 1) the step is kept for :meth:`update`, and when few
        inputs are non-zero only their rows are read (the others contribute nothing).
        ``chips`` (a, b): read chips a .. b-1 only (``x`` holds their inputs; per-chip streams),
        so an evaluation can go a group of chips at a time.
        """
        xa = self.input_(x)
        if remember:
            if chips is not None:
                raise ValueError("a training step reads every chip")
            y, self._ctx = self.train_forward(xa, self.active_rows(xa), self._noise())
            return y
        return self.read(xa, self._noise(chips), chips)

    def read(self, xa: torch.Tensor, noise: NoiseSource | None = None,
             chips: tuple[int, int] | None = None) -> torch.Tensor:
        """Forward read of DAC'd row inputs ``xa`` [chips, batch, rows] -> column outputs (weight units);
        ``chips`` (a, b): of chips a .. b-1 (``xa`` holds theirs)."""
        noise = self._noise(chips) if noise is None else noise
        w, var = self.cells.weight_us(), self.cells.read_var_us2
        if chips is not None:
            w, var = w[chips[0]:chips[1]], var[chips[0]:chips[1]]
        y = torch.bmm(xa, w)
        if self.noisy_read:
            self._read_noise(xa, var, y, False, noise)
        self._output_noise(y, noise)
        return self.periphery.forward_output_(y, 1.0 / self.scale_us)

    def backward(self, d: torch.Tensor) -> torch.Tensor:
        """Row outputs for column errors ``d`` [chips, batch, n_out]; bias row dropped."""
        return self._backward(d, self.cells.weight_us(), self._noise())

    def _backward(self, d: torch.Tensor, w: torch.Tensor, noise: NoiseSource) -> torch.Tensor:
        dn, scale = self.periphery.backward_input(d)
        z = torch.bmm(dn, w.transpose(1, 2))
        if self.noisy_read:
            self._read_noise(dn, self.cells.read_var_us2, z, True, noise)
        self._output_noise(z, noise)
        return self.periphery.backward_output_(z[..., :-1] if self.bias else z, scale, 1.0 / self.scale_us)

    # -- one training step: pure tensor work (compilable), then after_update() ----------
    def train_forward(self, xa: torch.Tensor, rows: torch.Tensor | None,
                      noise: NoiseSource) -> tuple[torch.Tensor, StepContext]:
        """Forward read of a training example: DAC'd inputs ``xa`` [chips, 1, rows] -> outputs.

        ``rows``: read only these rows (the others have zero input), else all.  Leakage of the
        rows read is brought up to date first.  Returns the outputs and what the update needs.
        """
        xr = xa if rows is None else xa.index_select(2, rows)
        w, v = self.cells.read_block(rows)
        y = torch.bmm(xr, w) if rows is None else rowblock_mv(xr, w)
        if self.noisy_read:
            var = self.cells.read_var_us2 if rows is None else self.cells.read_var_block(rows)
            self._read_noise(xr, var, y, False, noise, block=rows is not None)
        self._output_noise(y, noise)
        return self.periphery.forward_output_(y, 1.0 / self.scale_us), StepContext(xr[:, 0, :], rows, w, v)

    def train_backward(self, d: torch.Tensor, ctx: StepContext, noise: NoiseSource) -> torch.Tensor:
        """Backward read of errors ``d`` [chips, 1, n_out] through the weights the forward read."""
        if ctx.rows is not None:
            raise RuntimeError("a backward read needs the full array; this step read a block of rows")
        return self._backward(d, ctx.w, noise)

    def train_update(self, d: torch.Tensor, ctx: StepContext, noise: NoiseSource) -> None:
        """Pulse the cells for errors ``d`` [chips, n_out] and the inputs of ``ctx``."""
        pb = self.pulse_gen.counts(ctx.x, d, noise)
        self.update_pulses += pb.total_per_chip
        self.saturated_updates += pb.saturated_per_chip
        if self.tracked.numel():
            self._track(pb.counts, ctx.rows)
        self.cells.apply_block(pb.counts, ctx.rows, ctx.v, noise)

    def after_update(self) -> None:
        """Bookkeeping outside the tensor step (counters, caches)."""
        self.updates += 1
        self.cells.after_update()

    def apply_update(self, x: torch.Tensor, d: torch.Tensor, noise: NoiseSource | None = None) -> None:
        """One update cycle for every event: DAC'd row inputs ``x`` [chips, E, rows] and column
        errors ``d`` [chips, E, cols] (``d = -dLoss/dy``), E update events (examples of a
        minibatch, output positions of a convolution) whose pulse coincidences add up in each
        cell.  Leakage of every row is brought up to date first (exact), as in
        :meth:`train_forward`.  The path of :meth:`train_update`, for all rows."""
        noise = self._noise() if noise is None else noise
        _, v = self.cells.read_block(None)
        self.train_update(d, StepContext(x, None, None, v), noise)  # type: ignore[arg-type]
        self.after_update()

    # -- update ------------------------------------------------------------------------
    def update(self, d: torch.Tensor) -> None:
        """Apply the update for errors ``d`` [chips, n_out] and the inputs of the last forward."""
        if self._ctx is None:
            raise RuntimeError("update() needs a forward(..., remember=True) first")
        self.train_update(d, self._ctx, self._noise())
        self.after_update()
        self._ctx = None

    def _track(self, n: torch.Tensor, rows: torch.Tensor | None) -> None:
        """Accumulate net and total pulses of the tracked synapses (ED Fig. 2 statistics)."""
        if rows is None:
            picked = n.view(self.chips, -1).index_select(1, self.tracked)
        else:
            pos = self._row_pos
            pos.fill_(-1).index_copy_(0, rows, torch.arange(rows.numel(), device=n.device))
            tr = pos.index_select(0, self.tracked_row)
            # rows that were not updated read a zero from the appended zero row
            tr.masked_fill_(tr < 0, rows.numel())
            padded = torch.nn.functional.pad(n, (0, 0, 0, 1))
            picked = padded[:, tr, self.tracked_col]
        self.tracked_net += picked
        self.tracked_total += picked.abs_()

    def reset_tracking(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (net, total) pulses of the tracked synapses since the last reset, and restart."""
        out = self.tracked_net.clone(), self.tracked_total.clone()
        self.tracked_net.zero_()
        self.tracked_total.zero_()
        return out

    # -- time, transfer, maintenance -----------------------------------------------------
    def advance_time(self, dt_s: float, examples: int = 1) -> None:
        self.cells.advance_time(dt_s, examples)

    def transfer(self, cols: torch.Tensor | None = None) -> TransferStats:
        return self.cells.transfer(cols)

    def maintain(self) -> TransferStats:
        """2-PCM cells: the occasional RESET of saturated pairs; nothing for other cells."""
        return self.cells.maintain()

    def has_nonfinite(self) -> bool:
        return not bool(torch.isfinite(self.cells.weight_us()).all())

    # -- named state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The cells' named state under ``cells.``, and the array's statistics (tensors themselves)."""
        out = {f"cells.{k}": v for k, v in self.cells.state_dict().items()}
        out.update({"update_pulses": self.update_pulses, "saturated_updates": self.saturated_updates,
                    "tracked_net": self.tracked_net, "tracked_total": self.tracked_total,
                    "updates": torch.tensor(self.updates, dtype=torch.int64)})
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.cells.load_state_dict({k[len("cells."):]: v for k, v in state.items() if k.startswith("cells.")})
        for name in ("update_pulses", "saturated_updates", "tracked_net", "tracked_total"):
            getattr(self, name).copy_(state[name])
        self.updates = int(state["updates"])
        self._ctx = None


class DigitalCrossbar:
    """Exact FP32 weights, updated by plain SGD: the software baseline."""

    def __init__(self, n_in: int, n_out: int, learning_rate: float, chips: int,
                 device: torch.device | str = "cpu", dtype=torch.float32):
        self.n_in, self.n_out, self.rows, self.chips = n_in, n_out, n_in + 1, chips
        self.learning_rate = learning_rate
        self.w = torch.zeros((chips, n_out, self.rows), device=device, dtype=dtype)
        self._x_last: torch.Tensor | None = None
        self.updates = 0

    def program(self, weights: torch.Tensor) -> TransferStats:
        self.w.copy_(weights)
        return TransferStats()

    def weights(self) -> torch.Tensor:
        return self.w.clone()

    def input_(self, x: torch.Tensor) -> torch.Tensor:
        return _with_bias(x)

    def active_rows(self, xa: torch.Tensor) -> None:  # noqa: ARG002
        return None

    def noise_demand(self, active_rows: int, backward: bool) -> tuple[int, int]:  # noqa: ARG002
        return 0, 0

    def forward(self, x: torch.Tensor, remember: bool = False, chips: tuple[int, int] | None = None) -> torch.Tensor:
        xa = _with_bias(x)
        if remember:
            self._x_last = xa
        w = self.w if chips is None else self.w[chips[0]:chips[1]]
        return torch.bmm(xa, w.transpose(1, 2))

    def backward(self, d: torch.Tensor) -> torch.Tensor:
        return torch.bmm(d, self.w)[..., :-1]

    def train_forward(self, xa: torch.Tensor, rows: None, noise) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ARG002
        return torch.bmm(xa, self.w.transpose(1, 2)), xa

    def train_backward(self, d: torch.Tensor, ctx: torch.Tensor, noise) -> torch.Tensor:  # noqa: ARG002
        return self.backward(d)

    def train_update(self, d: torch.Tensor, ctx: torch.Tensor, noise) -> None:  # noqa: ARG002
        """W += eta * delta x^T (delta is the error, minus the loss gradient)."""
        self.w.baddbmm_(d.unsqueeze(-1), ctx, alpha=self.learning_rate)

    def after_update(self) -> None:
        self.updates += 1

    def update(self, d: torch.Tensor) -> None:
        if self._x_last is None:
            raise RuntimeError("update() needs a forward(..., remember=True) first")
        self.train_update(d, self._x_last, None)
        self.after_update()
        self._x_last = None

    def advance_time(self, dt_s: float, examples: int = 1) -> None:  # noqa: ARG002
        return None

    def transfer(self, cols: torch.Tensor | None = None) -> TransferStats:  # noqa: ARG002
        return TransferStats()

    def maintain(self) -> TransferStats:
        return TransferStats()

    def has_nonfinite(self) -> bool:
        return not bool(torch.isfinite(self.w).all())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"w": self.w, "updates": torch.tensor(self.updates, dtype=torch.int64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.w.copy_(state["w"])
        self.updates = int(state["updates"])
        self._x_last = None
