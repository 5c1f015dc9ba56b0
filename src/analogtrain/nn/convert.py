"""Turn a model's ``nn.Linear`` / ``nn.Conv2d`` layers into analog ones."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..config import ChipConfig, ExperimentConfig
from .layers import AnalogConv2d, AnalogLinear, resolve_chip


def convert(model: nn.Module, chip: ChipConfig | ExperimentConfig | str | None = None,
            select: Callable[[str, nn.Module], bool] | None = None, *, seed: int = 0,
            copy_weights: bool = True, output_layer: str | None = "last") -> nn.Module:
    """Replace ``model``'s ``nn.Linear`` and ``nn.Conv2d`` modules by analog ones, in place; returns it.

    ``select(name, module)``: convert only the modules for which it returns True (default all).
    ``copy_weights``: program each new layer to present the old layer's weights (closed-loop
    tuning, with the chip's programming error); otherwise they start from torch's default init.
    Layers are numbered in the order the model lists them: layer ``i`` uses
    ``chip.cell.max_weight_of(i)`` as its analog range and seed ``seed + i``.
    ``output_layer="last"``: the last converted module reads with the output layer's ADC range
    (``chip.periphery.output_layer_range``; it is meant for the logits); ``None``: none does.
    Modules the chip cannot hold (``groups != 1``, non-zero padding modes) raise a
    :class:`~analogtrain.errors.ConfigError` naming the module; leave them out with ``select``.
    """
    chip_cfg = resolve_chip(chip)
    targets = [(name, m) for name, m in model.named_modules()
               if type(m) in (nn.Linear, nn.Conv2d) and (select is None or select(name, m))]
    for i, (name, old) in enumerate(targets):
        last = output_layer == "last" and i == len(targets) - 1
        device = old.weight.device
        kw = dict(chip=chip_cfg, layer_index=i, output_layer=last, seed=seed + i, device=device)
        if isinstance(old, nn.Linear):
            new: nn.Module = AnalogLinear(old.in_features, old.out_features, old.bias is not None, **kw)
        else:
            from ..errors import ConfigError

            try:
                new = AnalogConv2d(old.in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                                   old.dilation, old.groups, old.bias is not None, old.padding_mode, **kw)
            except ConfigError as exc:
                raise ConfigError(f"cannot convert {name!r}: {exc}") from None
        if copy_weights:
            with torch.no_grad():
                new.program_(old.weight, old.bias)  # type: ignore[operator]
        new.train(old.training)
        _set_submodule(model, name, new)
    return model


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def analog_layers(model: nn.Module) -> list[nn.Module]:
    """The analog layers of ``model``, in order."""
    from .layers import AnalogLayer

    return [m for m in model.modules() if isinstance(m, AnalogLayer)]
