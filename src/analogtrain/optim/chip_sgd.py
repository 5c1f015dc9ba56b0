"""ChipSGD: the chip's own update for analog layers, plain SGD for digital parameters."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from ..config import TrainingConfig

#: chip time per training example when none is given: ``training.time_per_example_s``'s default
DEFAULT_TIME_PER_EXAMPLE_S = TrainingConfig().time_per_example_s


class ChipSGD(torch.optim.Optimizer):
    """Stochastic gradient descent as the chip does it.

    ``step()`` does, for every analog layer (:mod:`analogtrain.nn`) among the parameters:

    1. the update ``dW = lr * sum x delta`` of every read since the last step, as stochastic
       pulse coincidences (or rounded counts: ``chip.update.pulse_mode``) on the cells -- for
       the 2PCM+3T1C cell, on the 3T1C capacitors only, in the direction ``s * sign(dW)``;
    2. leakage for the chip time of the examples the step covered
       (``time_per_example_s`` each: the minibatch size, times the time per example);
    3. the transfer into the PCM pair with polarity inversion when the chip's schedule says
       so (``chip.transfer.interval_examples``, array-wide or column by column), and the 2-PCM
       cell's occasional RESET, counted in examples, one by one, so a transfer due in the
       middle of a minibatch happens at its example.

    Digital parameters (any other ``torch.nn.Parameter``) get plain SGD, ``p -= lr * grad``.
    ``zero_grad()`` also forgets analog errors not yet applied (reads whose backward has not
    run yet are kept, so ``zero_grad()`` may sit between the forward pass and ``backward()``).  ``lr`` may differ per parameter
    group and may be changed by a torch LR scheduler: it sets the pulses per unit of update at
    every step.  ``time_per_example_s`` may be a per-group setting too.

    Minibatches.  Each example of a minibatch is a read of the array with the weights of the
    step's start and its own update cycle; the cells add up the coincidences.  So a minibatch
    of B with a mean loss is plain minibatch SGD with the chip's noise, and B examples' worth
    of leakage passes after the update.  The paper trains with B = 1.
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], lr: float = 0.1,
                 time_per_example_s: float = DEFAULT_TIME_PER_EXAMPLE_S):
        if not lr > 0:
            raise ValueError(f"ChipSGD needs lr > 0, got {lr}")
        if not time_per_example_s >= 0:
            raise ValueError(f"ChipSGD needs time_per_example_s >= 0, got {time_per_example_s}")
        super().__init__(params, {"lr": lr, "time_per_example_s": time_per_example_s})
        #: transfers and tuning pulses of the analog layers since the optimizer was built
        self.chip_events = {"transfers": 0, "tuning_pulses": 0, "maintenance_pulses": 0}

    @staticmethod
    def _layer(p: torch.Tensor):
        return getattr(p, "_analog_layer", None)

    def analog_layers(self) -> list[tuple[Any, dict[str, Any]]]:
        """(layer, its parameter group) for every analog layer this optimizer trains."""
        out = []
        for group in self.param_groups:
            for p in group["params"]:
                layer = self._layer(p)
                if layer is not None:
                    out.append((layer, group))
        return out

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if self._layer(p) is None and p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])
        analog = self.analog_layers()
        examples = [layer.apply_pending_update(group["lr"]) for layer, group in analog]
        n = max(examples, default=0)
        if n:
            for layer, group in analog:
                for k, v in layer.advance_examples(n, group["time_per_example_s"]).items():
                    self.chip_events[k] += v
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for layer, _ in self.analog_layers():
            layer.discard_pending()

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["chip_events"] = dict(self.chip_events)
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self.chip_events = dict(state_dict.pop("chip_events", self.chip_events))
        super().load_state_dict(state_dict)
