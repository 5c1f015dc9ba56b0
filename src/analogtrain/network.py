"""Multilayer networks of crossbar arrays, with activations in the periphery.

``MLP`` runs one training example on every chip at once: forward through the arrays
(rows -> columns), softmax + cross-entropy at the output, the errors backward through the
same arrays (columns -> rows) times the activation's derivative, then every array's update.
The error is ``delta = -dLoss/dz`` so that updates read ``dW = eta x delta^T``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence

import torch

from .config import ChipConfig, ExperimentConfig
from .crossbar import AnalogCrossbar, DigitalCrossbar
from .errors import ConfigError
from .noise import BufferNoise, ChipStreams, Streams, chip_ranges, randn, streams_key, words
from .perchip import check_batch

Layer = AnalogCrossbar | DigitalCrossbar

#: an evaluation reads a group of chips at a time whose temporaries (the DAC'd inputs, their
#: squares for the read noise, outputs and noise: about six float32 tensors of batch x widest
#: layer per chip) stay within EVAL_BYTES_PER_CELL bytes per cell of the network's chips (an
#: eighth of the state's ~40), or EVAL_MIN_GROUP_BYTES where that is more, so evaluating many
#: chips does not set a run's peak memory while large batches still go in a few groups.  With
#: per-chip streams every chip's result is the same in any group.
EVAL_BYTES_PER_CELL = 5
EVAL_MIN_GROUP_BYTES = 16 * 2**20

#: inductor options of the compiled step: its generated wrapper would re-check every input's
#: size, stride and alignment on each call (~60 checks per step), which the guards of
#: torch.compile already establish before the call.  The end-to-end gain was within this
#: machine's run-to-run noise (a few percent at most).
COMPILE_OPTIONS = {"size_asserts": False, "alignment_asserts": False, "scalar_asserts": False}


def _activation(name: str):
    if name == "sigmoid":
        return torch.sigmoid, lambda a: a * (1.0 - a)
    if name == "tanh":
        return torch.tanh, lambda a: 1.0 - a * a
    if name == "relu":
        return torch.relu, lambda a: (a > 0).to(a.dtype)
    raise ValueError(f"unknown activation {name!r}")


def fan_in_uniform(n_out: int, rows: int, fan_in: int, generator: torch.Generator,
                   dtype=torch.float32) -> torch.Tensor:
    """Weights [n_out, rows] drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch's default for
    Linear and Conv2d, bias included)."""
    bound = 1.0 / fan_in**0.5
    return (torch.rand((n_out, rows), generator=generator, dtype=dtype) * 2 - 1) * bound


def init_weights(sizes: Sequence[int], chips: int | Sequence[int], seed: int, dtype=torch.float32) -> list[torch.Tensor]:
    """Initial weights per chip: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and bias.

    Chip c draws from its own generator seeded with (seed, c), so the software baseline and
    every analog variant start from the same weights chip by chip.  ``chips``: how many, or the
    chips' indices c (a batch of several variants' chips).
    """
    per_layer: list[list[torch.Tensor]] = [[] for _ in range(len(sizes) - 1)]
    for c in (range(chips) if isinstance(chips, int) else chips):
        g = torch.Generator().manual_seed(seed * 1_000_003 + c)
        for li, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            per_layer[li].append(fan_in_uniform(n_out, n_in + 1, n_in, g, dtype))
    return [torch.stack(ws) for ws in per_layer]


class MLP:
    def __init__(self, layers: list[Layer], activation: str = "sigmoid", generator: Streams = None):
        self.layers = layers
        self.activation_name = activation
        self._act, self._dact = _activation(activation)
        self.generator = generator
        self._streams_key = streams_key(generator)  # how the compiled step draws for pulsed cells
        self._compiled_step = None  # the compiled step runner, when compile() was called

    @property
    def chips(self) -> int:
        return self.layers[0].chips

    def forward(self, x: torch.Tensor, remember: bool = False, clip_limits: Sequence[float] | None = None,
                clip_counts: list[torch.Tensor] | None = None,
                chips: tuple[int, int] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits [chips, batch, classes] and the hidden activations.

        With ``clip_limits`` (one per layer), ``clip_counts[i]`` [chips] is increased by the number
        of layer i's forward outputs with |z| >= its limit.  ``chips`` (a, b): chips a .. b-1 only
        (``x`` holds their inputs; ``clip_counts`` stay one entry per chip of the network).
        """
        h = x
        hidden: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            z = layer.forward(h, remember=remember, chips=chips)
            if clip_limits is not None:
                counts = clip_counts[i] if chips is None else clip_counts[i][chips[0]:chips[1]]
                counts += (z.abs() >= clip_limits[i]).flatten(1).sum(dim=1)
            if i < len(self.layers) - 1:
                h = self._act(z)
                hidden.append(h)
            else:
                h = z
        return h, hidden

    def compile(self) -> bool:
        """Fuse the training step with ``torch.compile`` (the same code, traced once).

        Results equal the eager step's up to float rounding of fused arithmetic; the same seed
        still gives the same run.  Returns False, and stays eager, for the software network (a
        few BLAS calls: nothing to fuse) and where the step depends on Python-side time (PCM
        drift) and so cannot be traced once for all steps.
        """
        if not any(hasattr(layer, "cells") for layer in self.layers):
            return False
        for layer in self.layers:
            cells = getattr(layer, "cells", None)
            if cells is not None and getattr(cells, "drift", False):
                return False
        compiled = torch.compile(self._step, dynamic=None, options=COMPILE_OPTIONS)
        ran = [False]

        def run(*args):
            """The compiled step; if compiling fails (no C++ compiler, ...), say so once and go on
            eager.  Tracing and code generation happen before the step touches any state, so the
            eager retry starts from the same state."""
            try:
                out = compiled(*args)
            except Exception as exc:  # noqa: BLE001 - any compiler failure means: run eager
                if ran[0]:
                    raise
                warnings.warn(f"torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                              "training continues without it (slower)", RuntimeWarning, stacklevel=3)
                self._compiled_step = None
                return self._step(*args)
            ran[0] = True
            return out

        self._compiled_step = run
        return True

    @property
    def compiled(self) -> bool:
        return self._compiled_step is not None

    def train_example(self, x: torch.Tensor, label: int | torch.Tensor) -> torch.Tensor:
        """One SGD step on one example ``x`` [n_in] (the same for all chips).

        Returns the predicted class per chip (before the update).  The random numbers of the
        whole step are drawn first, per chip, so the step itself is pure tensor work.
        """
        first = self.layers[0]
        xa = first.input_(x.view(1, 1, -1).expand(self.chips, 1, -1))
        rows = first.active_rows(xa)
        k = first.rows if rows is None else int(rows.shape[0])
        n_u = n_z = 0
        for i, layer in enumerate(self.layers):
            u, z = layer.noise_demand(k if i == 0 else layer.rows, backward=i > 0)
            n_u += u
            n_z += z
        dev, dt, c = xa.device, xa.dtype, self.chips
        u_buf = words((c, n_u // c), self.generator, dev) if n_u else None  # [chips, words per chip]
        z_buf = randn((c, n_z // c), self.generator, dev, dt) if n_z else None
        if not isinstance(label, torch.Tensor):
            label = torch.tensor(label, device=dev)
        if self._compiled_step is not None:
            # the active rows, and so the random words drawn, change size with every example: say
            # so up front, so the step is traced once with dynamic sizes instead of being traced
            # for the first example's sizes and again for the second's
            if rows is not None and rows.shape[0] > 1:
                torch._dynamo.maybe_mark_dynamic(rows, 0)
            if u_buf is not None:
                torch._dynamo.maybe_mark_dynamic(u_buf, 1)
            if z_buf is not None:
                torch._dynamo.maybe_mark_dynamic(z_buf, 1)
        pred = (self._compiled_step or self._step)(xa, rows, label, u_buf, z_buf)
        for layer in self.layers:
            layer.after_update()
        return pred

    def _step(self, xa: torch.Tensor, rows: torch.Tensor | None, label: torch.Tensor,
              u: torch.Tensor | None, z: torch.Tensor | None) -> torch.Tensor:
        """Forward, backward and update of one example on every chip: tensors in, tensors out."""
        noise = BufferNoise(u, z, self._streams_key)
        last = len(self.layers) - 1
        ctxs = []
        hidden: list[torch.Tensor] = []
        h = xa
        for i, layer in enumerate(self.layers):
            y, ctx = layer.train_forward(h if i == 0 else layer.input_(h), rows if i == 0 else None, noise)
            ctxs.append(ctx)
            if i < last:
                h = self._act(y)
                hidden.append(h)
            else:
                h = y
        logits = h
        classes = torch.arange(logits.shape[-1], device=logits.device)
        d = (classes == label).to(logits.dtype) - torch.softmax(logits, dim=-1)
        deltas = [d]
        for i in range(last, 0, -1):
            back = self.layers[i].train_backward(deltas[0], ctxs[i], noise)
            deltas.insert(0, back * self._dact(hidden[i - 1]))
        for layer, delta, ctx in zip(self.layers, deltas, ctxs):
            layer.train_update(delta[:, 0, :], ctx, noise)
        if not torch.compiler.is_compiling() and noise.unused() != (0, 0):
            raise RuntimeError(f"noise_demand() drew {noise.unused()} more random numbers than the step used")
        return logits[:, 0, :].argmax(dim=-1)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch: int = 1000, check_finite: bool = False,
                clip_limits: Sequence[float] | None = None) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Predicted classes [chips, N] for inputs ``x`` [N, n_in].

        With ``check_finite``, non-finite outputs raise :class:`FloatingPointError`.  With
        ``clip_limits`` (one per layer), returns ``(classes, clipped)`` where ``clipped[i]``
        [chips] is the fraction of layer i's forward outputs with |z| >= its limit.
        """
        counts = [torch.zeros(self.chips, dtype=torch.float64, device=x.device) for _ in self.layers]
        groups = []
        for chips in self._eval_groups(min(batch, max(1, x.shape[0]))):
            out = []
            for start in range(0, x.shape[0], batch):
                xb = x[start:start + batch].unsqueeze(0).expand(chips[1] - chips[0], -1, -1)
                logits, _ = self.forward(xb, clip_limits=clip_limits, clip_counts=counts,
                                         chips=None if chips == (0, self.chips) else chips)
                if check_finite and not bool(torch.isfinite(logits).all()):
                    raise FloatingPointError("non-finite network outputs")
                out.append(logits.argmax(dim=-1))
            groups.append(torch.cat(out, dim=1))
        pred = torch.cat(groups, dim=0)
        if clip_limits is None:
            return pred
        return pred, [c / (x.shape[0] * layer.n_out) for c, layer in zip(counts, self.layers)]

    def _eval_groups(self, batch: int) -> list[tuple[int, int]]:
        """Chip ranges [a, b) an evaluation of ``batch`` inputs at a time reads one after another
        (:data:`EVAL_BYTES_PER_CELL`); one group of all chips without per-chip streams."""
        widest = max(max(layer.rows, layer.n_out) for layer in self.layers)
        cells = sum(layer.rows * layer.n_out for layer in self.layers)
        budget = max(EVAL_MIN_GROUP_BYTES, EVAL_BYTES_PER_CELL * self.chips * cells)
        return chip_ranges(self.generator, self.chips, budget // (6 * 4 * batch * widest))

    def output_clipping(self, x: torch.Tensor, limits: Sequence[float], batch: int = 1000) -> list[torch.Tensor]:
        """Per layer, the fraction [chips] of forward outputs with |z| >= that layer's ``limits`` entry,
        over inputs ``x`` [N, n_in].

        A measurement only: the random stream (read noise) is put back where it was, so the
        training that follows is the same with or without it.
        """
        with self.stream_kept():
            _, clipped = self.predict(x, batch, clip_limits=limits)
        return clipped

    @contextlib.contextmanager
    def stream_kept(self) -> Iterator[None]:
        """Measure inside this block without moving the random stream (read noise draws are put back)."""
        saved = self.generator.get_state() if self.generator is not None else None
        try:
            yield
        finally:
            if saved is not None:
                self.generator.set_state(saved)

    def advance_time(self, dt_s: float) -> None:
        for layer in self.layers:
            layer.advance_time(dt_s)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every layer's named state under ``layers.<i>.``, and the random stream (``generator``)."""
        out = {f"layers.{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.state_dict().items()}
        if self.generator is not None:
            out["generator"] = self.generator.get_state()
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for i, layer in enumerate(self.layers):
            head = f"layers.{i}."
            layer.load_state_dict({k[len(head):]: v for k, v in state.items() if k.startswith(head)})
        if self.generator is not None:
            self.generator.set_state(state["generator"].cpu())  # generator states are CPU byte tensors


def build_mlp(config: ExperimentConfig, n_inputs: int, n_classes: int, device="cpu",
              chip_configs: Sequence[ChipConfig] | None = None,
              chip_ids: Sequence[int] | None = None) -> tuple[MLP, list]:
    """The network of ``config`` with initial weights programmed; returns (mlp, programming stats).

    ``chip_configs``: one chip configuration per chip, for chips that differ in the parameters of
    :data:`analogtrain.perchip.PER_CHIP_FIELDS`; ``chip_ids``: each chip's index c, which fixes its
    initial weights and random stream (default 0, 1, ...), so chip c of any batch trains as chip
    c of a run of its own configuration.
    """
    t = config.training
    sizes = [n_inputs, *t.hidden, n_classes]
    ids = list(range(t.chips)) if chip_ids is None else [int(c) for c in chip_ids]
    if len(ids) != t.chips or (chip_configs is not None and len(chip_configs) != t.chips):
        raise ConfigError(f"training.chips is {t.chips} but {len(ids)} chip indices and "
                          f"{t.chips if chip_configs is None else len(chip_configs)} chip configurations were given")
    if chip_configs is not None:
        check_batch([config.chip, *chip_configs])
    weights = init_weights(sizes, ids, t.seed)
    gen = ChipStreams.seeded(t.seed, ids, device)  # one stream per chip (analogtrain.noise)
    layers: list[Layer] = []
    stats = []
    for li, (n_in, n_out, w) in enumerate(zip(sizes[:-1], sizes[1:], weights)):
        if config.chip.cell.kind == "digital":
            layer: Layer = DigitalCrossbar(n_in, n_out, t.learning_rate, t.chips, device)
        else:
            layer = AnalogCrossbar(n_in, n_out, config.chip, t.learning_rate, t.chips, gen, device, layer_index=li,
                                   tracked_synapses=t.tracked_synapses, output_layer=li == len(sizes) - 2,
                                   chip_configs=chip_configs)
        stats.append(layer.program(w.to(device)))
        if li > 0 and t.activation in ("sigmoid", "tanh"):
            layer.sparse_inputs = False  # smooth activations are never exactly zero: skip the search
        if torch.device(device).type != "cpu":
            layer.sparse_inputs = False  # finding the active rows is a host sync; a GPU reads every row
        layers.append(layer)
    return MLP(layers, t.activation, gen), stats
