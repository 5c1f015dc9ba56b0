"""The chip as PyTorch layers: analog ``Linear`` and ``Conv2d`` on simulated crossbar tiles.

>>> import torch, analogtrain.nn as ann
>>> from analogtrain.optim import ChipSGD
>>> layer = ann.AnalogLinear(4, 3, chip="nature2018")
>>> opt = ChipSGD(layer.parameters(), lr=0.1)
>>> loss = layer(torch.rand(2, 4)).pow(2).sum()
>>> loss.backward(); opt.step(); opt.zero_grad()
>>> tuple(layer.weight.shape)
(3, 4)
"""

from .convert import analog_layers, convert
from .layers import AnalogConv2d, AnalogLayer, AnalogLinear, resolve_chip

__all__ = ["AnalogConv2d", "AnalogLayer", "AnalogLinear", "analog_layers", "convert", "resolve_chip"]
