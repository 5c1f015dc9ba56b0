"""Optimizers that apply the chip's own update (see :class:`ChipSGD`)."""

from .chip_sgd import ChipSGD

__all__ = ["ChipSGD"]
