"""Training, example by example, with the transfer schedule; results as a plain dict.

The data order of epoch e is a permutation drawn from a generator seeded with (seed, e), so
every variant of one seed (software, analog presets) sees the same images in the same order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._configbase import first_difference
from .config import ChipConfig, ExperimentConfig
from .errors import CheckpointError, ConfigError, OutputError, TrainingDivergedError
from .network import build_mlp
from .runs.checkpoint import (
    Checkpoint,
    check_state_fits,
    read_checkpoint,
    save_checkpoint,
)
from .runs.results import PER_CHIP_COUNTS, EpochRecord, TrainingResult
from .schedule import TransferSchedule


@dataclass
class TrainingState:
    """Where a run is: enough to continue it (with the simulator state)."""

    epoch: int = 0  # epochs completed
    position: int = 0  # examples done within the current epoch
    examples_seen: int = 0
    transfers: int = 0
    transfer_events: int = 0
    train_correct: list[int] = field(default_factory=list)
    history: list[EpochRecord] = field(default_factory=list)
    wall_s: float = 0.0


#: training steps from which ``training.compile = "auto"`` compiles the step
COMPILE_MIN_STEPS = 50_000


@contextlib.contextmanager
def denormals_flushed() -> Iterator[None]:
    """Flush subnormal floats (below 1.2e-38 in float32) to zero inside the block.

    Arithmetic on subnormals is many times slower on x86, and they carry no physics at the
    scales of this simulator (volts, microsiemens, pulse probabilities resolved to 2**-16).
    Flushing them leaves MNIST runs bit for bit the same (30,000 examples compiled, 20,000
    eager). It was added for a 1.76x speed-up of long compiled runs that controlled
    measurements later did not reproduce (README, "Speed": ``benchmarks/speed.py
    --keep-subnormals`` shows no difference within the machine's noise); it is kept because
    it costs nothing and guards against such slowdowns. On leaving, the setting goes back to
    torch's default (off). Where the CPU cannot flush, nothing changes.
    """
    supported = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if supported:
            torch.set_flush_denormal(False)


def chip_time_per_example_s(config: ExperimentConfig, sizes: list[int]) -> float:
    """The chip time (s) that passes per training example, as leakage sees it.

    ``training.leak_clock = "fixed"``: ``training.time_per_example_s``.  ``"cost-model"``: the
    chip's time per example for the network ``sizes`` (:func:`analogtrain.timing.chip_timing`,
    the timing the cost model reads too: docs/cost_model.md), with the simulated chip's update
    pulse train, pulse width and transfer reads, i.e. forward + backward reads + the update
    phase + the amortised transfer.  The transfer is counted in both transfer modes, as the
    chip's average time per example (array-wide, it happens in one block while the capacitors
    are about to be reset, so this slightly overstates the leakage there).  Only the 2PCM+3T1C
    cell has capacitors; other cells get the fixed value, which nothing reads.
    """
    t = config.training
    if t.leak_clock != "cost-model" or config.chip.cell.kind != "2pcm+3t1c":
        return float(t.time_per_example_s)
    from .timing import chip_timing

    return float(chip_timing(config.chip, list(sizes)).time_per_example_s)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_033 + epoch)
    return torch.randperm(n, generator=g)


class Trainer:
    """Trains one config (all its chips at once) on one dataset.

    ``x_train`` [N, D] float in [0, 1], ``y_train`` [N] int64; same for test.
    """

    def __init__(self, config: ExperimentConfig, x_train: torch.Tensor, y_train: torch.Tensor,
                 x_test: torch.Tensor, y_test: torch.Tensor, n_classes: int | None = None,
                 device: str | torch.device = "cpu", chip_configs: Sequence[ChipConfig] | None = None,
                 chip_ids: Sequence[int] | None = None):
        self.config = config
        #: per-chip configurations and indices of a batch of differing chips (None: chips 0.. of ``config``)
        self.chip_configs = None if chip_configs is None else list(chip_configs)
        ids = None if chip_ids is None else [int(c) for c in chip_ids]
        self.chip_ids = None if ids == list(range(config.training.chips)) else ids  # the default ids: no batch
        self.device = torch.device(device)
        self.x_train = x_train.to(self.device, torch.float32)
        self.y_train = y_train.to(torch.int64)
        self.x_test = x_test.to(self.device, torch.float32)
        self.y_test = y_test.to(self.device, torch.int64)
        self.n_classes = int(n_classes if n_classes is not None else int(y_train.max()) + 1)
        self._data_sha256: str | None = None  # data_fingerprint(), computed on first use
        from .memory import check_fits

        sizes = [self.x_train.shape[1], *config.training.hidden, self.n_classes]
        #: the memory estimate the run was checked against before it started
        self.memory = check_fits(config.chip, sizes, config.training.chips, self.device)
        self.mlp, program_stats = build_mlp(config, self.x_train.shape[1], self.n_classes, self.device,
                                            self.chip_configs, self.chip_ids)
        mode = config.training.compile
        if mode == "on" or (mode == "auto" and config.training.epochs * self.x_train.shape[0] >= COMPILE_MIN_STEPS):
            self.mlp.compile()
        self.sizes = [self.x_train.shape[1], *config.training.hidden, self.n_classes]
        #: chip time per example that leakage sees (s): ``training.leak_clock``
        self.time_per_example_s = chip_time_per_example_s(config, self.sizes)
        self.schedule = TransferSchedule(config.chip, [layer.n_out for layer in self.mlp.layers], self.device)
        chips = config.training.chips
        self.initial_programming_pulses = [s.tuning_pulses for s in program_stats]
        #: the same counts chip by chip: per counter (PER_CHIP_COUNTS), per layer, per chip; None for
        #: a run resumed from a checkpoint that did not keep them
        self.per_chip_counts: dict[str, list[list[int]]] | None = {
            "initial_programming_pulses": [s.pulses_of(chips) for s in program_stats],
            **{k: [[0] * chips for _ in self.mlp.layers] for k in PER_CHIP_COUNTS[1:]}}
        self.tuning_pulses = [0 for _ in self.mlp.layers]
        self.unconverged = [0 for _ in self.mlp.layers]
        self.reset_pulses = [0 for _ in self.mlp.layers]
        self._round_pulses = [0 for _ in self.mlp.layers]
        self.transfer_pulse_log: list[dict[str, Any]] = []
        self.pulse_window: list[dict[str, Any]] | None = None
        #: ED Fig. 2 statistics of every window of two transfer intervals, over the whole run
        self.pulse_window_history: list[dict[str, Any]] = []
        self.state = TrainingState(train_correct=[0] * chips)

    def _batch_record(self) -> dict[str, Any]:
        """The chips of a batch as the checkpoint header records them (empty for a plain run)."""
        out: dict[str, Any] = {}
        if self.chip_configs is not None:
            out["chip_configs"] = [c.to_dict() for c in self.chip_configs]
        if self.chip_ids is not None:
            out["chip_ids"] = list(self.chip_ids)
        return out

    # -- evaluation --------------------------------------------------------------------
    def evaluate(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> list[float]:
        """Test accuracy (fraction) per chip."""
        return self._evaluate(x, y)[0]

    def _evaluate(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                  clip_limits: list[float] | None = None) -> tuple[list[float], list[torch.Tensor] | None]:
        """(test accuracy per chip, per-layer clipped fractions when ``clip_limits`` are given), one pass."""
        x = self.x_test if x is None else x
        y = self.y_test if y is None else y
        try:
            got = self.mlp.predict(x, batch=self.config.training.eval_batch, check_finite=True,
                                   clip_limits=clip_limits)
        except FloatingPointError:
            raise TrainingDivergedError(
                f"non-finite network outputs in evaluation after {self.state.examples_seen} examples; "
                "lower training.learning_rate or check the chip config"
            ) from None
        pred, clipped = got if clip_limits is not None else (got, None)
        return (pred == y.unsqueeze(0)).double().mean(dim=1).tolist(), clipped

    def _clip_limits(self) -> list[float]:
        """Per layer, the forward output magnitude at which the chip's ADC clips (a hair below it)."""
        per = self.config.chip.periphery
        last = len(self.mlp.layers) - 1
        return [per.forward_range(li == last) * (1 - 1e-6) for li in range(last + 1)]

    @torch.no_grad()
    def layer_statistics(self, clipped: list[torch.Tensor] | None = None) -> list[dict[str, list[float]]]:
        """Per layer, per chip: how the weights are spread and how often the outputs clip.

        ``mean``, ``std``, ``abs_max``: the presented weights (software units, bias included).
        ``at_range``: fraction of weights with |w| >= 98 % of the layer's analog range
        (``chip.cell.max_weight``, the weight that ``F * g_program_max_us`` represents); for the
        software network it says how many weights lie where the chip could not hold them.
        ``output_clipped``: fraction of the test set's forward outputs (pre-activations) at or
        beyond the layer's ``chip.periphery.forward_output_range`` (the output layer's
        ``output_layer_range``), where the chip's ADC clips (software:
        would clip).  Measured at the end of every epoch; the same numbers for every variant
        make their weight spreads comparable epoch by epoch.

        ``clipped``: those fractions as the epoch's evaluation pass counted them; without it they
        are measured here, in a pass that puts the random stream back.
        """
        if clipped is None:
            clipped = self.mlp.output_clipping(self.x_test, self._clip_limits(), batch=self.config.training.eval_batch)
        out = []
        for li, layer in enumerate(self.mlp.layers):
            w = layer.weights().flatten(1).double()
            rng = self.config.chip.cell.max_weight_of(li)
            out.append({
                "mean": w.mean(dim=1).tolist(),
                "std": w.std(dim=1).tolist(),
                "abs_max": w.abs().amax(dim=1).tolist(),
                "at_range": (w.abs() >= 0.98 * rng).double().mean(dim=1).tolist(),
                "output_clipped": clipped[li].tolist(),
            })
        return out

    # -- the loop ------------------------------------------------------------------------
    def _after_example(self) -> None:
        st = self.state
        mlp = self.mlp
        mlp.advance_time(self.time_per_example_s)
        st.examples_seen += 1
        seen = st.examples_seen
        due = self.schedule.transfers_due(seen)
        if due:
            st.transfer_events += 1
            for li, cols in due:
                s = mlp.layers[li].transfer(cols)
                self.tuning_pulses[li] += s.tuning_pulses
                self.unconverged[li] += s.unconverged
                self._round_pulses[li] += s.tuning_pulses
                self._count_per_chip("transfer_tuning_pulses", li, s.pulses_of(mlp.chips))
                self._count_per_chip("transfer_unconverged_devices", li, s.unconverged_of(mlp.chips))
            self._check_finite()
        if self.schedule.has_transfer and seen % self.schedule.interval == 0:
            # one transfer round: every column of every layer has been transferred once
            st.transfers += 1
            self.transfer_pulse_log.append(self._round_entry(seen))
            self._round_pulses = [0] * len(mlp.layers)
        if self.schedule.reset_due(seen):
            for li, layer in enumerate(mlp.layers):
                s = layer.maintain()
                self.reset_pulses[li] += s.tuning_pulses
                self._count_per_chip("occasional_reset_pulses", li, s.pulses_of(mlp.chips))
        if self.schedule.pulse_window_closes(seen):
            self.pulse_window = [self._window_stats(layer) for layer in mlp.layers]
            self.pulse_window_history.append(self._window_summary(seen))

    def _round_entry(self, seen: int) -> dict[str, Any]:
        """The transfer log's entry of the round that just ended: tuning pulses per layer, and per
        layer and chip (the running per-chip totals less the earlier rounds'), where the run has
        kept them from its start."""
        entry: dict[str, Any] = {"examples": seen, "pulses": list(self._round_pulses)}
        log = self.transfer_pulse_log
        if self.per_chip_counts is not None and all("pulses_per_chip" in e for e in log):
            now = self.per_chip_counts["transfer_tuning_pulses"]
            entry["pulses_per_chip"] = [
                [n - sum(e["pulses_per_chip"][li][c] for e in log) for c, n in enumerate(layer)]
                for li, layer in enumerate(now)]
        return entry

    def config_groups(self) -> list[tuple[int, int]] | None:
        """For a batch of chips of several configurations: the chip ranges [a, b) of consecutive
        chips with one configuration (a variant, a sweep point).  None for chips of one config."""
        cfgs = self.chip_configs
        if cfgs is None:
            return None
        groups, start = [], 0
        for i in range(1, len(cfgs) + 1):
            if i == len(cfgs) or cfgs[i] != cfgs[start]:
                groups.append((start, i))
                start = i
        return groups if len(groups) > 1 else None

    def _count_per_chip(self, name: str, layer: int, counts: list[int]) -> None:
        if self.per_chip_counts is not None:
            row = self.per_chip_counts[name][layer]
            for c, n in enumerate(counts):
                row[c] += int(n)

    def _window_summary(self, seen: int) -> dict[str, Any]:
        """Medians of total and |net| pulses per tracked synapse in the window just closed,
        pooled over layers and chips and per layer (ED Fig. 2's two numbers, window by window);
        for a batch of several configurations also each configuration's (``by_config``)."""
        out = {"examples": seen, **self._window_medians()}
        groups = self.config_groups()
        if groups:
            out["by_config"] = [{"chips": [a, b], **self._window_medians((a, b))} for a, b in groups]
        return out

    def _window_medians(self, chips: tuple[int, int] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"layers": []}
        nets, tots = [], []
        for w in self.pulse_window or []:
            if not w or w["net"].numel() == 0:
                out["layers"].append(None)
                continue
            net, tot = w["net"], w["total"]
            if chips is not None:
                net, tot = net[chips[0]:chips[1]], tot[chips[0]:chips[1]]
            net, tot = net.abs().double().flatten(), tot.double().flatten()
            nets.append(net)
            tots.append(tot)
            out["layers"].append({"median_total": float(tot.median()), "median_abs_net": float(net.median())})
        if tots:
            out["median_total"] = float(torch.cat(tots).median())
            out["median_abs_net"] = float(torch.cat(nets).median())
        return out

    @staticmethod
    def _window_stats(layer) -> dict[str, Any]:
        if not hasattr(layer, "reset_tracking"):
            return {}
        net, total = layer.reset_tracking()
        return {"net": net.cpu(), "total": total.cpu()}

    def _check_finite(self) -> None:
        for i, layer in enumerate(self.mlp.layers):
            if layer.has_nonfinite():
                raise TrainingDivergedError(
                    f"non-finite weights appeared in layer {i + 1} after {self.state.examples_seen} examples; "
                    "lower training.learning_rate or check the chip config"
                )

    def train(self, epochs: int | None = None, progress: bool = True,
              on_epoch: Callable[[EpochRecord], None] | None = None,
              on_step: Callable[["Trainer"], bool] | None = None,
              checkpoint_every: int | None = None,
              checkpoint_path: str | os.PathLike[str] | None = None) -> TrainingResult:
        """Train until ``epochs`` epochs are complete (default: the config's), return results.

        ``on_step(trainer)`` is called after every example; returning True stops training
        early (the state stays resumable: :meth:`save_checkpoint`, then :meth:`load_checkpoint`
        or :meth:`from_checkpoint` and ``train()`` again).

        With ``checkpoint_path``, a checkpoint is written there every ``checkpoint_every``
        examples (counted over the whole run, if given) and at the end of every epoch; if the
        state becomes non-finite, it is saved beside it (``*-diverged.safetensors``) and the
        :class:`TrainingDivergedError` says where.  Checkpointing does not change the results:
        a run resumed from any checkpoint ends bit for bit where the uninterrupted run ends.

        Subnormal floats are flushed to zero while it runs (:func:`denormals_flushed`).
        """
        with denormals_flushed():
            return self._train(epochs, progress, on_epoch, on_step, checkpoint_every, checkpoint_path)

    def _train(self, epochs: int | None, progress: bool,
               on_epoch: Callable[[EpochRecord], None] | None,
               on_step: Callable[["Trainer"], bool] | None,
               checkpoint_every: int | None,
               checkpoint_path: str | os.PathLike[str] | None) -> TrainingResult:
        from tqdm.auto import tqdm

        every = checkpoint_every if checkpoint_path is not None else None
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ConfigError(f"checkpoint_every must be a positive integer, got {every!r}")
        epochs = self.config.training.epochs if epochs is None else epochs
        st = self.state
        n = self.x_train.shape[0]
        seed = self.config.training.seed
        chips = self.config.training.chips
        label_t = self.y_train.to(self.device)
        x_train = self.x_train
        mlp = self.mlp
        while st.epoch < epochs:
            order = epoch_order(n, seed, st.epoch).tolist()
            correct = torch.tensor(st.train_correct, dtype=torch.int64, device=self.device)
            t0 = time.perf_counter()
            bar = tqdm(total=n, initial=st.position, desc=f"epoch {st.epoch + 1}/{epochs}", unit="img",
                       disable=not progress, leave=False, mininterval=0.5, dynamic_ncols=True)
            i = start = st.position
            stopped = False
            while i < n:
                idx = order[i]
                label = label_t[idx]
                pred = mlp.train_example(x_train[idx], label)
                correct += pred == label
                try:
                    self._after_example()
                except TrainingDivergedError as exc:
                    raise self._diverged(exc, checkpoint_path, i + 1, correct, t0, bar) from None
                i += 1
                if i % 500 == 0:
                    bar.update(500 if i - 500 >= start else i - start)
                    bar.set_postfix(train_acc=f"{float(correct.double().mean()) / i:.3f}", refresh=False)
                    self._check_state_finite(checkpoint_path, i, correct, t0, bar)
                if every is not None and st.examples_seen % every == 0:
                    t0 = self._checkpoint_in_epoch(checkpoint_path, i, correct, t0, bar)
                if on_step is not None and on_step(self):
                    stopped = True
                    break
            bar.close()
            st.position = i
            st.train_correct = correct.tolist()
            st.wall_s += time.perf_counter() - t0
            if stopped:
                return self.results()
            try:
                self._check_finite()
                test_acc, clipped = self._evaluate(clip_limits=self._clip_limits())
                layer_stats = self.layer_statistics(clipped)
            except TrainingDivergedError as exc:
                raise self._diverged(exc, checkpoint_path) from None
            rec = EpochRecord(
                epoch=st.epoch + 1,
                test_accuracy=test_acc,
                train_accuracy=[c / n for c in st.train_correct],
                examples=st.examples_seen,
                transfers=st.transfers,
                wall_s=st.wall_s,
                layers=layer_stats,
            )
            st.history.append(rec)
            st.epoch += 1
            st.position = 0
            st.train_correct = [0] * chips
            if checkpoint_path is not None:
                self.save_checkpoint(checkpoint_path)
            if on_epoch is not None:
                on_epoch(rec)
        return self.results()

    # -- named state ---------------------------------------------------------------------
    #: version of :meth:`state_dict`'s names and meanings (3: one random stream per chip,
    #: ``mlp.generator`` is a [chips, n] byte tensor)
    STATE_VERSION = 3

    def state_dict(self) -> dict[str, Any]:
        """The whole state of the run, by name: the network's (``mlp.*``: every layer's cells and
        statistics, the random stream) as tensors, and the loop's (epoch, position, history,
        counters, pulse windows) as plain values.  What a checkpoint holds."""
        out: dict[str, Any] = {f"mlp.{k}": v for k, v in self.mlp.state_dict().items()}
        st = self.state
        out["version"] = self.STATE_VERSION
        out["training_state"] = {
            "epoch": st.epoch, "position": st.position, "examples_seen": st.examples_seen, "transfers": st.transfers,
            "transfer_events": st.transfer_events, "train_correct": list(st.train_correct), "wall_s": st.wall_s,
            "history": [dataclasses.asdict(r) for r in st.history]}
        out["counters"] = {"initial_programming_pulses": list(self.initial_programming_pulses),
                           "tuning_pulses": list(self.tuning_pulses), "unconverged": list(self.unconverged),
                           "reset_pulses": list(self.reset_pulses), "round_pulses": list(self._round_pulses),
                           "transfer_pulse_log": list(self.transfer_pulse_log),
                           "pulse_window_history": list(self.pulse_window_history)}
        if self.per_chip_counts is not None:
            out["counters_per_chip"] = {k: [list(v) for v in layers] for k, layers in self.per_chip_counts.items()}
        window = self.pulse_window
        out["pulse_window_layers"] = None if window is None else [bool(w) for w in window]
        for i, w in enumerate(window or []):
            if w:
                out[f"pulse_window.{i}.net"] = w["net"]
                out[f"pulse_window.{i}.total"] = w["total"]
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`.  Everything is checked before anything is changed, so a
        state that does not fit leaves the trainer as it was (:class:`CheckpointError`, one line)."""
        check_state_fits(self.state_dict(), state, variable="pulse_window.",
                         optional=("pulse_window_layers", "counters_per_chip"))
        try:  # check and convert everything first: nothing changes unless all of it converts
            ts = state["training_state"]
            history = [EpochRecord(**h) for h in ts["history"]]
            new_state = TrainingState(epoch=int(ts["epoch"]), position=int(ts["position"]),
                                      examples_seen=int(ts["examples_seen"]), transfers=int(ts["transfers"]),
                                      transfer_events=int(ts["transfer_events"]),
                                      train_correct=[int(c) for c in ts["train_correct"]], history=history,
                                      wall_s=float(ts["wall_s"]))
            c = state["counters"]
            counters = {k: [int(v) for v in c[k]] for k in ("initial_programming_pulses", "tuning_pulses",
                                                              "unconverged", "reset_pulses", "round_pulses")}
            if len(new_state.train_correct) != self.config.training.chips or any(
                    len(counters[k]) != len(self.mlp.layers) for k in counters):
                raise ValueError("counters of another network")
            log, windows = list(c["transfer_pulse_log"]), list(c["pulse_window_history"])
            per_chip = state.get("counters_per_chip")  # absent in checkpoints of earlier versions
            if per_chip is not None:
                per_chip = {k: [[int(n) for n in layer] for layer in per_chip[k]] for k in PER_CHIP_COUNTS}
                if any(len(v) != len(self.mlp.layers) or any(len(row) != self.config.training.chips for row in v)
                       for v in per_chip.values()):
                    raise ValueError("per-chip counters of another network")
            layers = state["pulse_window_layers"]
            if layers is not None and (not isinstance(layers, list) or len(layers) != len(self.mlp.layers)
                                       or not all(isinstance(b, bool) for b in layers)):
                raise ValueError("pulse_window_layers does not match the network")
            pulse_window = None if layers is None else [
                {"net": state[f"pulse_window.{i}.net"].cpu(), "total": state[f"pulse_window.{i}.total"].cpu()}
                if has else {} for i, has in enumerate(layers)]
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise CheckpointError(f"checkpoint state does not fit this run ({' '.join(str(exc).split())[:160]})") from None
        self.mlp.load_state_dict({k[len("mlp."):]: v for k, v in state.items()
                                  if k.startswith("mlp.") and isinstance(v, torch.Tensor)})
        self.state = new_state
        self.initial_programming_pulses = counters["initial_programming_pulses"]
        self.tuning_pulses, self.unconverged = counters["tuning_pulses"], counters["unconverged"]
        self.reset_pulses, self._round_pulses = counters["reset_pulses"], counters["round_pulses"]
        self.transfer_pulse_log, self.pulse_window_history = log, windows
        self.per_chip_counts = per_chip
        self.pulse_window = pulse_window

    # -- checkpoints ---------------------------------------------------------------------
    def data_fingerprint(self) -> str:
        """SHA-256 of the training and test data (computed once): a checkpoint of this run
        fits only a trainer of the same data."""
        if self._data_sha256 is None:
            h = hashlib.sha256()
            for name in ("x_train", "y_train", "x_test", "y_test"):
                t = getattr(self, name).detach().cpu().contiguous()
                h.update(f"\0{name}\0{str(t.dtype)}\0{list(t.shape)}\0".encode())
                if t.numel():
                    h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
            self._data_sha256 = h.hexdigest()
        return self._data_sha256

    def save_checkpoint(self, path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
        """Write :meth:`state_dict`, the config, the data's fingerprint and the progress to
        ``path`` (safetensors, atomic; format in :mod:`analogtrain.runs.checkpoint`).

        ``extra``: a small JSON-able dict stored with it (returned by :meth:`load_checkpoint`).
        """
        st = self.state
        header = {
            "config": self.config.to_dict(),
            "batch": self._batch_record(),  # empty for a plain run: not written
            "data": {"n_train": int(self.x_train.shape[0]), "n_test": int(self.x_test.shape[0]),
                     "n_inputs": int(self.x_train.shape[1]), "n_classes": int(self.n_classes),
                     "sha256": self.data_fingerprint()},
            "progress": {"epoch": st.epoch, "position": st.position, "examples_seen": st.examples_seen},
            "extra": dict(extra or {}),
        }
        return save_checkpoint(path, self.state_dict(), header)

    def load_checkpoint(self, path: str | os.PathLike[str] | Checkpoint) -> dict[str, Any]:
        """Restore the state saved at ``path`` into this trainer, which must have been built
        with the same config and data (:class:`CheckpointError` otherwise, and the trainer is
        left as it was); returns the checkpoint's ``extra``."""
        ck = path if isinstance(path, Checkpoint) else read_checkpoint(path)
        # the saved config as this version reads it: a setting added since then takes its default
        diff = first_difference(_config_of(ck).to_dict(), self.config.to_dict())
        if diff is None and _batch_of(ck) != self._batch_record():
            diff = "the chips of the batch (their configurations or indices)"
        if diff is not None:
            raise CheckpointError(f"checkpoint {ck.path} was written with another config (they differ at "
                                  f"{diff or '(top level)'})")
        data = ck.state["data"]
        if data.get("sha256") != self.data_fingerprint():
            raise CheckpointError(f"checkpoint {ck.path} was trained on other data ({data.get('n_train')} train / "
                                  f"{data.get('n_test')} test images there, {self.x_train.shape[0]} / "
                                  f"{self.x_test.shape[0]} here, or different images)")
        try:
            self.load_state_dict(ck.state_dict)
        except CheckpointError as exc:
            raise CheckpointError(f"checkpoint {ck.path}: {exc}") from None
        return ck.extra

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], x_train: torch.Tensor, y_train: torch.Tensor,
                        x_test: torch.Tensor, y_test: torch.Tensor, n_classes: int | None = None,
                        device: str | torch.device = "cpu") -> "Trainer":
        """A trainer rebuilt from the config saved at ``path`` and the given data, with the saved
        state restored; ``train()`` continues the run."""
        ck = read_checkpoint(path)
        batch = _batch_of(ck)
        chip_configs = batch.get("chip_configs")
        trainer = cls(_config_of(ck), x_train, y_train, x_test, y_test, n_classes, device=device,
                      chip_configs=None if chip_configs is None else [ChipConfig.from_dict(c) for c in chip_configs],
                      chip_ids=batch.get("chip_ids"))
        trainer.load_checkpoint(ck)
        return trainer

    def _record_progress(self, i: int, correct: torch.Tensor, t0: float) -> float:
        """Store the loop's position, running accuracy and wall time in the state; new t0."""
        st = self.state
        now = time.perf_counter()
        st.position = i
        st.train_correct = correct.tolist()
        st.wall_s += now - t0
        return now

    def _checkpoint_in_epoch(self, path: str | os.PathLike[str], i: int, correct: torch.Tensor, t0: float,
                             bar: Any = None) -> float:
        self._check_state_finite(path, i, correct, t0, bar)
        self._record_progress(i, correct, t0)
        self.save_checkpoint(path)
        return time.perf_counter()  # the time spent writing is not training time

    def _check_state_finite(self, path: str | os.PathLike[str] | None, i: int, correct: torch.Tensor,
                            t0: float, bar: Any = None) -> None:
        """Cheap check of the raw device state (conductances, capacitor voltages, digital
        weights) without bringing deferred leakage up to date (that would change the
        floating-point path of the run)."""
        for li, layer in enumerate(self.mlp.layers):
            cells = getattr(layer, "cells", None)
            state = cells.state_dict() if cells is not None else {"w": layer.w}  # raw: nothing synced
            for t in state.values():
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    exc = TrainingDivergedError(
                        f"non-finite device state appeared in layer {li + 1} after {self.state.examples_seen} "
                        "examples; lower training.learning_rate or check the chip config"
                    )
                    raise self._diverged(exc, path, i, correct, t0, bar)

    def _diverged(self, exc: TrainingDivergedError, path: str | os.PathLike[str] | None, i: int | None = None,
                  correct: torch.Tensor | None = None, t0: float | None = None,
                  bar: Any = None) -> TrainingDivergedError:
        """Save the diverged state beside the checkpoint (if checkpointing) and say where."""
        if bar is not None:
            bar.close()  # before the error is printed
        if i is not None and correct is not None and t0 is not None:
            self._record_progress(i, correct, t0)
        if path is None:
            return exc
        p = Path(path)
        bad = p.with_name(f"{p.stem}-diverged{p.suffix or '.safetensors'}")
        try:
            self.save_checkpoint(bad)
        except OutputError as err:
            return TrainingDivergedError(f"{exc}; could not save the state ({err})")
        return TrainingDivergedError(f"{exc}; the state at that point is saved in {bad}")

    # -- results -----------------------------------------------------------------------
    def results(self) -> TrainingResult:
        """What the run has given so far, as a :class:`~analogtrain.runs.results.TrainingResult`."""
        st = self.state
        layers = self.mlp.layers
        cells = [layer.n_out * layer.rows for layer in layers]
        return TrainingResult(
            network=list(self.sizes),
            synapses=sum(cells),
            cells_per_layer=cells,
            chips=self.config.training.chips,
            leak_clock_s=self.time_per_example_s,
            epochs_completed=st.epoch,
            examples=st.examples_seen,
            wall_s=st.wall_s,
            history=list(st.history),
            transfers=st.transfers,
            initial_programming_pulses=list(self.initial_programming_pulses),
            transfer_tuning_pulses=list(self.tuning_pulses),
            transfer_unconverged_devices=list(self.unconverged),
            occasional_reset_pulses=list(self.reset_pulses),
            update_pulses=[[float(v) for v in layer.update_pulses] if hasattr(layer, "update_pulses") else None
                           for layer in layers],
            saturated_updates=[[float(v) for v in layer.saturated_updates] if hasattr(layer, "saturated_updates")
                               else None for layer in layers],
            pulse_statistics=self.pulse_statistics(),
            pulse_statistics_per_window=list(self.pulse_window_history),
            config=self.config.to_dict(),
            per_chip_counts=None if self.per_chip_counts is None else {
                k: [list(v) for v in layers] for k, layers in self.per_chip_counts.items()},
        )

    def pulse_statistics(self, chips: tuple[int, int] | None = None) -> list[dict[str, Any]] | None:
        """Per layer: median |net| and total update pulses per tracked synapse over the last
        complete window of two transfer intervals (ED Fig. 2), and the update rate.  ``chips``
        (a, b): of chips a .. b-1 only.  For a batch of several configurations, each layer's
        entry also holds each configuration's (``by_config``)."""
        if self.pulse_window is None:
            return None
        out = []
        window = 2 * self.schedule.interval
        groups = self.config_groups() if chips is None else None
        for w in self.pulse_window:
            if not w or w["net"].numel() == 0:
                out.append({})
                continue
            net, total = w["net"].abs(), w["total"]
            if chips is not None:
                net, total = net[chips[0]:chips[1]], total[chips[0]:chips[1]]
            entry: dict[str, Any] = {
                "window_examples": window,
                "tracked_synapses": int(net.shape[1]),
                "median_abs_net": float(net.median()),
                "mean_abs_net": float(net.mean()),
                "median_total": float(total.median()),
                "mean_total": float(total.mean()),
                "p90_abs_net": float(net.flatten().kthvalue(max(1, int(0.9 * net.numel()))).values),
                "p90_total": float(total.flatten().kthvalue(max(1, int(0.9 * total.numel()))).values),
            }
            out.append(entry)
        if groups:
            by = [self.pulse_statistics((a, b)) or [] for a, b in groups]
            for li, entry in enumerate(out):
                if entry:
                    entry["by_config"] = [{"chips": [a, b], **g[li]} for (a, b), g in zip(groups, by)]
        return out


def _batch_of(ck: Checkpoint) -> dict[str, Any]:
    """The batch a checkpoint records (empty for a plain run), its chip configurations validated and
    written out in full as this version writes them, so that a setting added since compares equal."""
    batch = dict(ck.state.get("batch") or {})
    if "chip_configs" in batch:
        try:
            batch["chip_configs"] = [ChipConfig.from_dict(c).to_dict() for c in batch["chip_configs"]]
        except ConfigError as exc:
            raise CheckpointError(f"checkpoint {ck.path} holds an invalid chip configuration: {exc}") from None
    return batch


def _config_of(ck: Checkpoint) -> ExperimentConfig:
    """The validated config a checkpoint was written with."""
    try:
        return ExperimentConfig.from_dict(ck.config)
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {ck.path} holds an invalid config: {exc}") from None


def train(config: ExperimentConfig | str, data, epochs: int | None = None, seed: int | None = None,
          chips: int | None = None, progress: bool = False, device: str = "cpu") -> TrainingResult:
    """Train ``config`` (a preset name or a config) on ``data`` (a :class:`~analogtrain.data.Dataset`)
    and return its :class:`~analogtrain.runs.results.TrainingResult`; ``epochs``, ``seed`` and ``chips`` override the config's.

    >>> import analogtrain as at
    >>> data = at.load_dataset("digits").subset(300, 100)
    >>> result = at.train("software", data, epochs=1, seed=0)
    >>> round(result.final_test_accuracy_mean, 2) > 0.5
    True
    """
    from .presets import get_preset

    cfg = get_preset(config) if isinstance(config, str) else config
    t_over: dict[str, Any] = {k: v for k, v in (("epochs", epochs), ("seed", seed), ("chips", chips)) if v is not None}
    if t_over:
        cfg = cfg.replace(training=cfg.training.replace(**t_over))
    trainer = Trainer(cfg, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes, device=device)
    result = trainer.train(progress=progress)
    result.dataset = data.info()
    return result
