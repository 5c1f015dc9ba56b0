"""The experiments' constants and the settings one experiment is trained with.

Schedules, network sizes and learning rates of the paper's experiments (each marked where it
comes from), the sizes of a ``--quick`` smoke run, and :class:`Settings`: how one experiment
is trained, the same for every variant.  Imported by the rest of :mod:`analogtrain.experiments`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..data import Dataset

EXPERIMENTS: tuple[str, ...] = ("mnist", "mnist-backrand", "cifar10", "cifar100")


DEFAULT_VARIANTS: tuple[str, ...] = (
    "software", "nature2018", "nature2018-held-reference", "nature2018-no-inversion", "nature2018-ideal-cmos",
    "2pcm",
)


#: the variant whose batched-vs-one-chip wall time is measured
TIMING_VARIANT = "nature2018"


MNIST_HIDDEN = (250, 125)  # [group] 528-250-125-10


MNIST_EPOCHS = 20  # [paper]


MNIST_LEARNING_RATE = 0.1  # the package default (config.TrainingConfig.learning_rate)


#: MNIST-backrand: the background lights every pixel, so the mean input energy sum(x^2) is 229
#: against MNIST's 87; 0.04 keeps eta * sum(x^2), the size of one update's step in the
#: pre-activations, at MNIST's value.  At 0.1 the software baseline peaked at 81 % (epoch 10)
#: and fell to 37 % by epoch 20; at 0.05 and 0.02 it ends at 82-83 % (3 chips, 20 epochs).
BACKRAND_LEARNING_RATE = 0.04


TRANSFER_INTERVAL = 8000  # [paper] MNIST; used for every experiment [assumed for the others]


#: CIFAR last-layer training (our choice, docs/reproduce.md): plain SGD at minibatch 1
CIFAR_LEARNING_RATE = 0.02


CIFAR_EPOCHS = 10


CIFAR_BACKBONE = "efficientnet-lite0"


CIFAR_INPUT_SIZE = 224


# --quick (smoke run) sizes
QUICK_TRAIN = 1000


QUICK_TEST = 500


QUICK_EPOCHS = 2


QUICK_INPUT_SIZE = 32


QUICK_TIMING_EXAMPLES = 200


FULL_TIMING_EXAMPLES = 2000


#: default checkpoint interval of reproduce runs (examples)
CHECKPOINT_EVERY = 20_000


@dataclass(frozen=True)
class Settings:
    """How one experiment is trained (the same for every variant)."""

    hidden: tuple[int, ...]
    epochs: int
    learning_rate: float
    transfer_interval: int
    reset_check_interval: int
    timing_examples: int
    #: the user's config overrides (``--set``, ``--config``), applied to every variant last
    user_overrides: dict[str, Any] = field(default_factory=dict)

    def overrides(self, chips: int, seed: int) -> dict[str, Any]:
        from ..config import merge_overrides

        base = {
            "training": {"hidden": list(self.hidden), "epochs": self.epochs, "learning_rate": self.learning_rate,
                         "chips": chips, "seed": seed},
            "chip": {"transfer": {"interval_examples": self.transfer_interval},
                     "pcm": {"reset_check_interval_examples": self.reset_check_interval}},
        }
        return merge_overrides(base, self.user_overrides)

    def to_dict(self) -> dict[str, Any]:
        out = {"hidden": list(self.hidden), "epochs": self.epochs, "learning_rate": self.learning_rate,
               "transfer_interval_examples": self.transfer_interval,
               "reset_check_interval_examples": self.reset_check_interval,
               "timing_examples": self.timing_examples}
        if self.user_overrides:  # absent when empty, so runs from before the option still resume and merge
            out["overrides"] = self.user_overrides
        return out


def make_settings(experiment: str, data: Dataset, quick: bool, epochs: int | None,
              transfer_interval: int | None = None, user_overrides: dict[str, Any] | None = None) -> Settings:
    cifar = experiment.startswith("cifar")
    hidden: tuple[int, ...] = () if cifar else MNIST_HIDDEN
    lr = CIFAR_LEARNING_RATE if cifar else (BACKRAND_LEARNING_RATE if experiment == "mnist-backrand"
                                            else MNIST_LEARNING_RATE)
    if epochs is None:
        epochs = QUICK_EPOCHS if quick else (CIFAR_EPOCHS if cifar else MNIST_EPOCHS)
    total = data.n_train * epochs
    if quick:
        # several transfers and at least one complete two-interval pulse window in a smoke run
        interval = max(20, total // 6)
        reset_every = max(1, interval // 8)  # the full run's 1,000 : 8,000
        timing = min(QUICK_TIMING_EXAMPLES, total)
    else:
        interval = TRANSFER_INTERVAL
        reset_every = 1000
        timing = min(FULL_TIMING_EXAMPLES, total)
    if transfer_interval is not None:
        interval = transfer_interval
        reset_every = max(1, round(transfer_interval / 8))
    if user_overrides:
        # a learning rate or network given with --set also shapes the settings the report shows
        tr = user_overrides.get("training", {})
        hidden = tuple(tr.get("hidden", hidden))
        lr = tr.get("learning_rate", lr)
    return Settings(hidden, epochs, lr, interval, reset_every, timing, dict(user_overrides or {}))


def variant_config(variant: str, settings: Settings, chips: int, seed: int, compile_mode: str = "auto"):
    from ..config import merge_overrides
    from ..presets import get_preset

    return get_preset(variant, merge_overrides(settings.overrides(chips, seed), {"training": {"compile": compile_mode}}))


def reductions(experiment: str, data: Dataset, settings: Settings, quick: bool, limit_train: int | None,
                limit_test: int | None) -> list[str]:
    """How this run differs from the full-size experiment (empty: it is the full experiment)."""
    out = []
    if quick:
        out.append("--quick smoke run")
    if data.meta.get("stand_in"):
        out.append("stand-in data")
    if limit_train is not None or limit_test is not None or (quick and not data.meta.get("stand_in")):
        out.append(f"subset of the data ({data.n_train:,} training / {data.n_test:,} test examples)")
    full_epochs = CIFAR_EPOCHS if experiment.startswith("cifar") else MNIST_EPOCHS
    if settings.epochs != full_epochs:
        out.append(f"{settings.epochs} epochs instead of {full_epochs}")
    if settings.transfer_interval != TRANSFER_INTERVAL:
        out.append(f"transfer every {settings.transfer_interval:,} examples instead of {TRANSFER_INTERVAL:,}")
    images = data.meta.get("images") or {}
    if images.get("development_subset"):
        out.append(f"CIFAR development subset ({images.get('n_train_available'):,} of the 50,000 training images)")
    feats = data.meta.get("features") or {}
    if feats and feats.get("input_size") != CIFAR_INPUT_SIZE:
        out.append(f"features at {feats.get('input_size')} px instead of {CIFAR_INPUT_SIZE}")
    return out
