"""Multilayer networks of crossbar arrays, with activations in the periphery.

``MLP`` runs one training example on every chip at once: forward through the arrays
(rows -> columns), softmax + cross-entropy at the output, the errors backward through the
same arrays (columns -> rows) times the activation's derivative, then every array's update.
The error is ``delta = -dLoss/dz`` so that updates read ``dW = eta x delta^T``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .config import ExperimentConfig
from .crossbar import AnalogCrossbar, DigitalCrossbar

Layer = AnalogCrossbar | DigitalCrossbar


def _activation(name: str):
    if name == "sigmoid":
        return torch.sigmoid, lambda a: a * (1.0 - a)
    if name == "tanh":
        return torch.tanh, lambda a: 1.0 - a * a
    if name == "relu":
        return torch.relu, lambda a: (a > 0).to(a.dtype)
    raise ValueError(f"unknown activation {name!r}")


def init_weights(sizes: Sequence[int], chips: int, seed: int, dtype=torch.float32) -> list[torch.Tensor]:
    """Initial weights per chip: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and bias.

    Chip c draws from its own generator seeded with (seed, c), so the software baseline and
    every analog variant start from the same weights chip by chip.
    """
    per_layer: list[list[torch.Tensor]] = [[] for _ in range(len(sizes) - 1)]
    for c in range(chips):
        g = torch.Generator().manual_seed(seed * 1_000_003 + c)
        for li, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = 1.0 / n_in**0.5
            per_layer[li].append((torch.rand((n_out, n_in + 1), generator=g, dtype=dtype) * 2 - 1) * bound)
    return [torch.stack(ws) for ws in per_layer]


class MLP:
    def __init__(self, layers: list[Layer], activation: str = "sigmoid"):
        self.layers = layers
        self.activation_name = activation
        self._act, self._dact = _activation(activation)

    @property
    def chips(self) -> int:
        return self.layers[0].chips

    def forward(self, x: torch.Tensor, remember: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits [chips, batch, classes] and the hidden activations."""
        h = x
        hidden: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            z = layer.forward(h, remember=remember)
            if i < len(self.layers) - 1:
                h = self._act(z)
                hidden.append(h)
            else:
                h = z
        return h, hidden

    def train_example(self, x: torch.Tensor, label: int) -> torch.Tensor:
        """One SGD step on one example ``x`` [n_in] (the same for all chips).

        Returns the predicted class per chip (before the update).
        """
        xb = x.view(1, 1, -1).expand(self.chips, 1, -1)
        logits, hidden = self.forward(xb, remember=True)
        p = torch.softmax(logits, dim=-1)
        d = p.neg_()
        d[..., label] += 1.0
        deltas = [d]
        for i in range(len(self.layers) - 1, 0, -1):
            back = self.layers[i].backward(deltas[0])
            deltas.insert(0, back.mul_(self._dact(hidden[i - 1])))
        for layer, delta in zip(self.layers, deltas):
            layer.update(delta[:, 0, :])
        return logits[:, 0, :].argmax(dim=-1)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch: int = 1000, check_finite: bool = False) -> torch.Tensor:
        """Predicted classes [chips, N] for inputs ``x`` [N, n_in].

        With ``check_finite``, non-finite outputs raise :class:`FloatingPointError`.
        """
        out = []
        for start in range(0, x.shape[0], batch):
            xb = x[start:start + batch].unsqueeze(0).expand(self.chips, -1, -1)
            logits, _ = self.forward(xb)
            if check_finite and not bool(torch.isfinite(logits).all()):
                raise FloatingPointError("non-finite network outputs")
            out.append(logits.argmax(dim=-1))
        return torch.cat(out, dim=1)

    def advance_time(self, dt_s: float) -> None:
        for layer in self.layers:
            layer.advance_time(dt_s)


def build_mlp(config: ExperimentConfig, n_inputs: int, n_classes: int, device="cpu") -> tuple[MLP, list]:
    """The network of ``config`` with initial weights programmed; returns (mlp, programming stats)."""
    t = config.training
    sizes = [n_inputs, *t.hidden, n_classes]
    weights = init_weights(sizes, t.chips, t.seed)
    gen = torch.Generator(device=device).manual_seed(t.seed * 7_919 + 17)
    layers: list[Layer] = []
    stats = []
    for li, (n_in, n_out, w) in enumerate(zip(sizes[:-1], sizes[1:], weights)):
        if config.chip.cell.kind == "digital":
            layer: Layer = DigitalCrossbar(n_in, n_out, t.learning_rate, t.chips, device)
        else:
            layer = AnalogCrossbar(n_in, n_out, config.chip, t.learning_rate, t.chips, gen, device, layer_index=li,
                                   tracked_synapses=t.tracked_synapses)
        stats.append(layer.program(w.to(device)))
        if li > 0 and t.activation in ("sigmoid", "tanh"):
            layer.sparse_inputs = False  # smooth activations are never exactly zero: skip the search
        layers.append(layer)
    mlp = MLP(layers, t.activation)
    mlp.generator = gen  # type: ignore[attr-defined]
    return mlp, stats
