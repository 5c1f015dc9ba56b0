"""Cost model of the 2PCM+3T1C training chip: energy, area, time, and the GPU comparison.

>>> from analogtrain.cost import estimate
>>> report = estimate([528, 250, 125, 10], "nature2018")
>>> round(report.figure_of_merit.gops_per_w, -2) > 0
True

See docs/cost_model.md for the equations and the source of every parameter.
"""

from __future__ import annotations

from .gpus import GPUS, GpuComparison, GpuSpec, compare_gpus
from .model import (
    CostReport,
    FigureOfMerit,
    RunCost,
    Tile,
    estimate,
    figure_of_merit,
    map_network,
    ops_per_example,
    parse_layer_sizes,
)
from .params import (
    COST_PRESETS,
    PAPER_GOPS_PER_W,
    PAPER_TOPS_PER_MM2,
    CostParams,
    load_cost_params,
)

__all__ = [
    "COST_PRESETS",
    "CostParams",
    "CostReport",
    "FigureOfMerit",
    "GPUS",
    "GpuComparison",
    "GpuSpec",
    "PAPER_GOPS_PER_W",
    "PAPER_TOPS_PER_MM2",
    "RunCost",
    "Tile",
    "compare_gpus",
    "estimate",
    "figure_of_merit",
    "load_cost_params",
    "map_network",
    "ops_per_example",
    "parse_layer_sizes",
]
