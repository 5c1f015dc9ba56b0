"""analogtrain: train neural networks on a simulated 2PCM+3T1C analog-memory training chip.

The chip is the one of Ambrogio et al., "Equivalent-accuracy accelerated neural-network
training using analogue memory", Nature 558, 60-67 (2018).  Quick use::

    import analogtrain as at
    data = at.load_dataset("digits")                 # embedded; "mnist" downloads once
    result = at.train("nature2018", data, epochs=3)  # a preset name or an ExperimentConfig
    print(result.final_test_accuracy_mean)
"""

from ._version import __version__
from .config import (  # noqa: E402
    CapacitorConfig,
    CellConfig,
    ChipConfig,
    ExperimentConfig,
    PCMConfig,
    PeripheryConfig,
    TrainingConfig,
    TransferConfig,
    UpdateConfig,
)
from .data import Dataset, load_dataset  # noqa: E402
from .errors import ConfigError, DataError, UserError  # noqa: E402
from .presets import PRESET_NAMES, get_preset, preset_descriptions  # noqa: E402
from .training import Trainer, train  # noqa: E402

__all__ = [
    "CapacitorConfig", "CellConfig", "ChipConfig", "ConfigError", "DataError", "Dataset", "ExperimentConfig",
    "PCMConfig", "PRESET_NAMES", "PeripheryConfig", "Trainer", "TrainingConfig", "TransferConfig", "UpdateConfig",
    "UserError", "get_preset", "load_dataset", "preset_descriptions", "train", "__version__",
]
