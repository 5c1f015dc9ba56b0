"""Reproduce the experiments of Ambrogio et al. (Nature 558, 60-67, 2018) in one command.

``run_reproduction("mnist", "runs/reproduce")`` trains every variant (software baseline,
``nature2018``, ``nature2018-held-reference``, ``nature2018-no-inversion``, ``nature2018-ideal-cmos``,
``2pcm``) of one
experiment, ``chips`` simulated chips per variant trained together in one
:class:`~analogtrain.training.Trainer` (``training.chips``), and writes ``results.json``,
``report.md`` and PNG figures (:mod:`analogtrain.experiments.report`) into the output folder.

=================  ==============================================================================
experiment         what is trained
=================  ==============================================================================
``mnist``          528-250-125-10 on MNIST cropped to 22x24, 20 epochs, transfer every 8,000
``mnist-backrand`` the same network on MNIST-backrand (regenerated from MNIST unless the original
                   ``.amat`` files are in the data folder), 20 epochs [assumed]
``cifar10``        only the last layer, 1280(+bias)->10, on EfficientNet-Lite0 features
``cifar100``       the same, 1280(+bias)->100
``all``            the four above, one after the other
=================  ==============================================================================

CIFAR: the features of a fixed ImageNet-pretrained EfficientNet-Lite0 are computed once
(cached on disk by :func:`analogtrain.features.extract_features`), scaled per feature to the
DAC range [0, 1] with the training set's minimum and maximum (test features clipped), and the
single analog layer (``training.hidden = []``) is trained on them with the same learning rate
and epochs as the software baseline (:data:`CIFAR_LEARNING_RATE`, :data:`CIFAR_EPOCHS`).

``quick=True`` is a smoke run, not the paper's experiment: small subsets, 2 epochs, a short
transfer interval so that transfers and the two-interval pulse statistics happen at all, CIFAR
features at 32 px; where a dataset (or the EfficientNet weights) is not on disk it uses the
embedded 8x8 digits as a stand-in instead of downloading, and says so in the report.

Besides the variants, each experiment measures the cost of batching chips: the wall time of
the same ``nature2018`` training steps with ``chips`` chips in one trainer and with one chip.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..data import Dataset
from ..errors import ConfigError, DataError, TrainingDivergedError
from ..runs.results import ExperimentResult, RunResult, TrainingResult
from . import checks, report
from .analysis import (
    measure_chip_batching,
    pooled_pulse_statistics,
    save_pulse_window,
    state_histograms,
)
from .prepare import prepare_data
from .settings import (
    CHECKPOINT_EVERY,
    CIFAR_BACKBONE,
    CIFAR_EPOCHS,
    CIFAR_INPUT_SIZE,
    DEFAULT_VARIANTS,
    EXPERIMENTS,
    QUICK_EPOCHS,
    QUICK_INPUT_SIZE,
    TIMING_VARIANT,
    TRANSFER_INTERVAL,
    Settings,
    make_settings,
    reductions,
    variant_config,
)


def checkpoint_path(out_dir: Path, experiment: str, variant: str) -> Path:
    """Where the variant in progress keeps its checkpoint (removed once its results are written)."""
    return out_dir / "checkpoints" / f"{experiment}__{variant}.safetensors"


def batch_groups(variants: Sequence[str], settings: Settings, chips: int, seed: int,
                 compile_mode: str = "auto") -> list[list[str]]:
    """``variants`` in groups that train as one batch of chips: analog variants with the same
    training settings whose chips differ only in per-chip parameters
    (:data:`analogtrain.perchip.PER_CHIP_FIELDS`): with the default variants, ``nature2018``, the
    held reference, no inversion and ideal CMOS.  Order kept; the others alone."""
    from ..perchip import batch_groups as groups_of

    configs = [variant_config(v, settings, chips, seed, compile_mode) for v in variants]
    return [[variants[i] for i in group] for group in groups_of(configs)]


#: what a chip-example costs by cell kind, relative to the 2PCM+3T1C cell, to start the longest
#: units of ``--jobs`` first.  MNIST, 3 chips: software 786 s against ``nature2018``'s 4,568 s
#: (docs/results/mnist); ``benchmarks/speed.py --chips 3 --compile on --threads 1``: 2-PCM at 0.40 of
#: plain SGD's images/s per chip-image, ``nature2018`` at 0.60.  Only the order depends on these.
STEP_COST = {"digital": 0.17, "2pcm+3t1c": 1.0, "2pcm": 1.5}


def longest_first(units: Sequence[list[str]], settings: Settings, chips: int, seed: int,
                  compile_mode: str = "auto") -> list[list[str]]:
    """``units`` (variants trained together) in the order that keeps ``--jobs`` workers busy to the
    end: the costliest first (:data:`STEP_COST` per variant, all of an experiment's variants seeing
    the same examples), ties in their given order.  MNIST's six variants on two workers, at the
    costs of :data:`STEP_COST` (a 3T1C variant 1.0, 2-PCM 1.5, software 0.17): in the default order
    2-PCM starts last and the run takes 3.5 times a 3T1C variant's time; longest first, 3.0."""
    def cost(unit: list[str]) -> float:
        return sum(STEP_COST.get(variant_config(v, settings, chips, seed, compile_mode).chip.cell.kind, 1.0)
                   for v in unit)
    return sorted(units, key=cost, reverse=True)


def _train_batch(variants: list[str], settings: Settings, data: Dataset, chips: int, seed: int, device: str,
                 progress: bool, log: Callable[[str], None], out_dir: Path, experiment: str,
                 compile_mode: str = "auto", checkpoint_every: int = CHECKPOINT_EVERY,
                 resume: bool = False) -> dict[str, TrainingResult]:
    """Train ``variants`` (one, or a group of :func:`batch_groups`) as one batch of ``chips`` chips
    each; every variant's chips start from the weights and random streams of a run of its own
    and end where that run ends, so each variant's result is the one it has alone."""
    from ..training import Trainer

    cfgs = [variant_config(v, settings, chips, seed, compile_mode) for v in variants]
    if len(variants) == 1:
        trainer = Trainer(cfgs[0], data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes,
                          device=device)
    else:
        first = cfgs[0]
        batch = first.replace(training=first.training.replace(chips=chips * len(variants)))
        trainer = Trainer(batch, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes, device=device,
                          chip_configs=[c.chip for c in cfgs for _ in range(chips)],
                          chip_ids=[i for _ in cfgs for i in range(chips)])
    ranges = {v: (k * chips, (k + 1) * chips) for k, v in enumerate(variants)}
    ckpt = checkpoint_path(out_dir, experiment, "+".join(variants))
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    name = "/".join(variants) if len(variants) > 1 else variants[0]
    if resume and ckpt.exists():
        trainer.load_checkpoint(ckpt)
        log(f"  [{experiment}/{name}] resuming from {ckpt} at example {trainer.state.examples_seen:,}")
    elif len(variants) > 1:
        log(f"  [{experiment}] {', '.join(variants)}: {chips} chips each, trained as one batch of "
            f"{chips * len(variants)} chips")

    def on_epoch(rec) -> None:
        for v, (a, b) in ranges.items():
            accs = ", ".join(f"{100 * acc:.2f}" for acc in rec.test_accuracy[a:b])
            log(f"  [{experiment}/{v}] epoch {rec.epoch}/{settings.epochs}: test accuracy % per chip {accs} "
                f"(transfers {rec.transfers}, {rec.wall_s:.1f} s)")

    # V_C is reset at every transfer, and a run of whole intervals ends with one: keep the state
    # one example before the last transfer too, when the capacitors hold a whole interval of updates
    total = settings.epochs * data.n_train
    interval = settings.transfer_interval
    last = (total // interval) * interval if cfgs[0].chip.cell.kind == "2pcm+3t1c" else 0
    snap: dict[str, Any] = {}

    def on_step(tr) -> bool:
        if last > 1 and tr.state.examples_seen == last - 1:
            for v, span in ranges.items():
                snap[v] = state_histograms(tr, snapshot=True, chips=span if len(variants) > 1 else None)
        return False

    result = trainer.train(progress=progress, on_epoch=on_epoch, on_step=on_step if last > 1 else None,
                           checkpoint_every=checkpoint_every, checkpoint_path=ckpt)
    out: dict[str, TrainingResult] = {}
    for v, cfg in zip(variants, cfgs):
        span = ranges[v] if len(variants) > 1 else None
        res = result if span is None else result.select_chips(range(*span), config=cfg.to_dict(), variant=v)
        res.variant = v
        extra = res.analysis
        if span is not None:
            extra["trained_in_batch_with"] = [w for w in variants if w != v]
        extra["state_histograms"] = state_histograms(trainer, chips=span)
        if v in snap:
            extra["state_histograms_before_last_transfer"] = snap[v]
            extra["state_before_last_transfer_examples"] = last - 1
        extra["transfer_pulse_log"] = _transfer_log(trainer.transfer_pulse_log, span)
        extra["pulse_statistics_pooled"] = pooled_pulse_statistics(trainer, chips=span)
        window_file = out_dir / "data" / f"{experiment}__{v}__pulse_window.npz"
        extra["pulse_window_file"] = save_pulse_window(trainer, window_file, chips=span)
        if v not in snap and last > 1:
            extra["state_histograms_before_last_transfer_missing"] = "the run was resumed after that point"
        out[v] = res
    return out


def _batch_diverged(out: Path, experiment: str, unit: list[str], exc: Exception, log: Callable[[str], None]) -> None:
    """A batch of variants stopped because some chip diverged: say so and drop its checkpoint; its
    variants then train one at a time (a diverging variant stops the run as it would alone)."""
    log(f"  [{experiment}] the batch {', '.join(unit)} stopped ({exc}); training its variants one at a time")
    checkpoint_path(out, experiment, "+".join(unit)).unlink(missing_ok=True)


def _transfer_log(log: list[dict[str, Any]], chips: tuple[int, int] | None) -> list[dict[str, Any]]:
    """The trainer's transfer log, or its entries for chips a .. b-1 of a batch (their tuning
    pulses per layer, summed over those chips)."""
    if chips is None:
        return list(log)
    a, b = chips
    return [{"examples": e["examples"], "pulses": [sum(layer[a:b]) for layer in e["pulses_per_chip"]]}
            for e in log if "pulses_per_chip" in e]


def _check_positive(name: str, value: Any, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


#: settings that have their own flag (or are the experiment's), so ``--set`` may not give them
_FLAG_KEYS = {"training.epochs": "--epochs", "training.chips": "--chips", "training.seed": "--seed",
              "training.compile": "--compile", "chip.transfer.interval_examples": "--transfer-interval",
              "chip.pcm.reset_check_interval_examples": "--transfer-interval (the RESET check runs 8 times as often)"}


def check_user_overrides(overrides: dict[str, Any] | None, variants: Sequence[str]) -> dict[str, Any]:
    """Validate ``--set`` / ``--config`` overrides against every variant's config; returns a copy.

    Raises :class:`ConfigError` (one line) for a key that has its own flag, an unknown key or a
    bad value, before anything is trained.
    """
    from ..config import flatten_overrides
    from ..presets import get_preset

    if not overrides:
        return {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"config overrides must be a table of sections, got {type(overrides).__name__}")
    for key, _ in flatten_overrides(overrides):
        if key in _FLAG_KEYS:
            raise ConfigError(f"reproduce sets {key} itself; use {_FLAG_KEYS[key]} instead of --set/--config")
    for variant in variants:
        get_preset(variant, overrides)  # unknown keys and invalid values fail here, naming the key
    return copy.deepcopy(overrides)


def resolve_variants(variants: Sequence[str] | None) -> list[str]:
    """The variants to train (presets), checked; default :data:`DEFAULT_VARIANTS`."""
    from ..presets import PRESET_NAMES

    if variants is None:
        return list(DEFAULT_VARIANTS)
    if isinstance(variants, str):
        variants = [variants]
    from ..presets import RENAMED, canonical_name

    out: list[str] = []
    for v in variants:
        if v in RENAMED:
            v = canonical_name(v)
        if v not in PRESET_NAMES:
            close = difflib.get_close_matches(str(v), PRESET_NAMES, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"unknown variant {v!r}; {hint}variants are presets: {', '.join(PRESET_NAMES)}")
        if v not in out:
            out.append(v)
    if not out:
        raise ConfigError("give at least one variant")
    return out


def resolve_experiments(experiment: str) -> list[str]:
    if experiment == "all":
        return list(EXPERIMENTS)
    if experiment not in EXPERIMENTS:
        close = difflib.get_close_matches(str(experiment), [*EXPERIMENTS, "all"], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown experiment {experiment!r}; {hint}choose from {', '.join([*EXPERIMENTS, 'all'])}")
    return [experiment]


#: what must match for --resume
_RESUME_KEYS = ("experiment", "quick", "chips", "variants", "seed", "arguments")


def _previous_run(out: Path, results: RunResult) -> RunResult | None:
    """The results of the interrupted run in ``out`` (None if there is none yet); a run with
    other settings is an error, so results of different runs are never mixed."""
    if not (out / "results.json").exists():
        return None
    try:
        prev = RunResult.read(out)
    except DataError as exc:
        raise DataError(f"cannot resume: {exc}; start a new run with another --out") from None
    if prev.command != "reproduce":
        raise DataError(f"{out} holds an analogtrain {prev.command} run, not a reproduce run; use another --out")
    for key in _RESUME_KEYS:
        mine = json.loads(json.dumps(getattr(results, key)))
        if getattr(prev, key) != mine:
            raise ConfigError(f"--resume: the run in {out} used {key} = {getattr(prev, key)!r}, this command "
                              f"{mine!r}; repeat the original command with --resume, or use another --out")
    return prev


class _QueueLog:
    """The log of a variant trained in a worker process: its lines go to the parent through a queue."""

    def __init__(self, queue) -> None:
        self.queue = queue

    def __call__(self, line: str) -> None:
        self.queue.put(line)


class _JobsProgress:
    """One progress display for the variants trained side by side (``--jobs``): epochs done of
    all of them, which are running, which are done, and an ETA; each variant's epoch lines are
    printed above it as they arrive."""

    def __init__(self, experiment: str, variants: list[str], epochs: int, show: bool,
                 log: Callable[[str], None]) -> None:
        from tqdm.auto import tqdm

        self.log, self.running, self.done = log, list(variants), 0
        self.bar = tqdm(total=len(variants) * epochs, desc=f"{experiment}: {len(variants)} variants", unit="epoch",
                        disable=not show, dynamic_ncols=True)
        self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"done {self.done}, running {', '.join(self.running) or '-'}", refresh=True)

    def drain(self, queue) -> None:
        import queue as queue_mod

        while True:
            try:
                line = queue.get_nowait()
            except queue_mod.Empty:
                return
            if "] epoch " in line:
                self.bar.update(1)
            self.write(line)

    def write(self, line: str) -> None:
        """Print ``line`` above the display."""
        self.bar.clear()
        self.log(line)
        self.bar.refresh()

    def variant_done(self, variant: str) -> None:
        if variant in self.running:
            self.running.remove(variant)
        self.done += 1
        self._postfix()

    def __enter__(self) -> _JobsProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()


def run_reproduction(experiment: str, out_dir: str | Path, chips: int = 3, quick: bool = False,
                     data_dir: str | Path | None = None, epochs: int | None = None,
                     variants: Sequence[str] | None = None, progress: bool = True, threads: int | None = 1, *,
                     limit_train: int | None = None, limit_test: int | None = None, seed: int = 0,
                     cache_dir: str | Path | None = None, input_size: int | None = None,
                     backbone: str = CIFAR_BACKBONE, device: str = "cpu", transfer_interval: int | None = None,
                     measure_batching: bool = True, timing_examples: int | None = None,
                     log: Callable[[str], None] | None = None, compile_mode: str = "auto",
                     resume: bool = False, force: bool = False, checkpoint_every: int = CHECKPOINT_EVERY,
                     jobs: int = 1, batch_variants: bool | None = None,
                     overrides: dict[str, Any] | None = None) -> RunResult:
    """Run one experiment (or ``"all"``) for every variant; write results.json, report.md, figures.

    Args:
        experiment: ``mnist``, ``mnist-backrand``, ``cifar10``, ``cifar100`` or ``all``.
        out_dir: output folder (created).
        chips: simulated chips per variant, trained together in one trainer.
        quick: smoke run (small subsets, 2 epochs, short transfer interval; stand-ins for missing data).
        data_dir: dataset root (as ``load_dataset``); None: ``$ANALOGTRAIN_DATA_DIR`` or the user cache.
        epochs: override the epochs of every experiment.
        variants: presets to train (default :data:`DEFAULT_VARIANTS`).
        progress: progress bars and per-epoch lines.
        threads: torch CPU threads while running (restored afterwards); None leaves them.
        limit_train, limit_test: use only this many training / test examples (class-balanced for CIFAR).
        seed: the seed of every variant (initial weights and data order are shared across variants).
        cache_dir: feature cache folder for CIFAR (default: the package's cache location).
        input_size: backbone input resolution in pixels (default 224; 32 with ``quick``).
        backbone: feature extractor name (:func:`analogtrain.features.get_backbone`).
        device: torch device of the simulation.
        transfer_interval: examples between transfers (default 8,000, the paper's MNIST value; quick: a
            sixth of the run); the 2-PCM RESET check runs 8 times as often.
        measure_batching: measure the wall time of ``chips`` chips batched vs one chip.
        timing_examples: training steps of that measurement (default 2,000; quick: 200).
        log: where progress lines go (default ``print`` when ``progress``).
        compile_mode: ``training.compile`` of every variant (auto, on, off).
        resume: continue the interrupted run in ``out_dir`` (same arguments): variants whose results
            are in its results.json are kept, the one in progress continues from its checkpoint.
            A folder with no run to resume is refused in one line.
        force: replace the run ``out_dir`` already holds (otherwise a folder holding a run is refused).
        jobs: train up to this many variants at once, each in its own process with ``threads``
            threads (the results are the same as one after the other).
        batch_variants: train the 2PCM+3T1C variants that differ only in per-chip parameters
            (:func:`batch_groups`) as one batch of chips; each variant's results are the same as
            alone.  None: on a GPU only (on a CPU a batch costs per chip what separate runs do, and
            separate runs share the cores; docs/reproduce.md).
        overrides: nested config overrides (as ``--set`` / ``--config`` give them) applied to every
            variant on top of its preset and the experiment's settings, e.g.
            ``{"chip": {"transfer": {"mode": "column"}}}``; recorded in the results and the report.
        checkpoint_every: the variant in progress writes ``out_dir/checkpoints/EXP__VARIANT.safetensors``
            every this many examples and at each epoch end (removed when the variant is done).

    Returns the :class:`~analogtrain.runs.results.RunResult` that is also written to
    ``out_dir/results.json``.
    """
    from ..runs.store import environment, prepare_output_dir

    names = resolve_experiments(experiment)
    variant_list = resolve_variants(variants)
    _check_positive("chips", chips, allow_none=False)
    if chips > 256:
        raise ConfigError(f"chips must be at most 256, got {chips}")
    for name, value in (("epochs", epochs), ("threads", threads), ("limit_train", limit_train),
                        ("limit_test", limit_test), ("input_size", input_size),
                        ("transfer_interval", transfer_interval), ("timing_examples", timing_examples)):
        _check_positive(name, value)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise DataError(f"data folder {data_dir} does not exist; pass the folder that holds mnist/, cifar10/, ...")
    user_overrides = check_user_overrides(overrides, variant_list)
    batch = torch.device(device).type == "cuda" if batch_variants is None else bool(batch_variants)
    out = prepare_output_dir(out_dir)
    if log is None:
        log = (lambda s: print(s, flush=True)) if progress else (lambda s: None)

    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    t_start = time.perf_counter()
    results = RunResult(
        command="reproduce", experiment=experiment, quick=quick, chips=chips, variants=variant_list, seed=seed,
        threads=threads, device=device,
        arguments={"data_dir": None if data_dir is None else str(data_dir), "epochs": epochs,
                   "limit_train": limit_train, "limit_test": limit_test, "input_size": input_size,
                   "backbone": backbone, "cache_dir": None if cache_dir is None else str(cache_dir),
                   "transfer_interval": transfer_interval,
                   **({"overrides": user_overrides} if user_overrides else {}),
                   **({"batch_variants": True} if batch else {})},
        environment=environment(),
    )
    from ..runs.store import refuse_overwrite, require_resumable

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"--jobs must be a positive integer, got {jobs!r}")

    if resume:
        require_resumable(out, "results.json", "reproduce")
    else:
        refuse_overwrite(out, "results.json", "reproduce", force)
    previous = _previous_run(out, results) if resume else None
    started = previous is not None  # results.json is in the folder (written before the first variant trains)
    if previous is not None:
        t_start -= previous.wall_s  # wall time counts the interrupted part too
        if previous.complete:
            log(f"analogtrain reproduce: the run in {out} is complete; nothing trains again, and its report and "
                "figures are written again from its results")
    try:
        for exp in names:
            t_exp = time.perf_counter()
            log(f"analogtrain reproduce: {exp}{' (quick smoke run)' if quick else ''}")
            data = prepare_data(exp, data_dir, quick, limit_train, limit_test, seed, progress, cache_dir,
                                input_size, backbone, device)
            settings = make_settings(exp, data, quick, epochs, transfer_interval, user_overrides)
            network = [data.n_inputs, *settings.hidden, data.n_classes]
            log(f"  data: {data.meta.get('description', data.name)}; {data.n_train} train / {data.n_test} test; "
                f"network {'-'.join(map(str, network))}; {settings.epochs} epochs; {chips} chip(s)")
            if data.meta.get("stand_in"):
                log(f"  NOTE: no {exp} data ({data.meta.get('stand_in_reason')}): the 8x8 digits stand in, so "
                    f"these numbers say nothing about {exp}; give --data-dir to train on it")
            elif quick:
                log("  NOTE: a smoke run (--quick): the numbers show that the pipeline works, not the paper's results")
            entry = ExperimentResult(
                experiment=exp, dataset=data.meta, network=network, settings=settings.to_dict(),
                reduced=reductions(exp, data, settings, quick, limit_train, limit_test))
            results.experiments[exp] = entry
            before = previous.experiments.get(exp) if previous is not None else None
            todo = []
            for variant in variant_list:
                if before is not None and variant in before.variants and before.variants[variant].history:
                    entry.variants[variant] = before.variants[variant]
                    log(f"  [{exp}/{variant}] done in the interrupted run: kept")
                else:
                    todo.append(variant)

            def finished(variant: str, res: TrainingResult, unit: list[str] | None = None) -> None:
                entry.variants[variant] = res
                entry.variants = {v: entry.variants[v] for v in variant_list if v in entry.variants}
                acc = res.final_test_accuracy or []
                log(f"  [{exp}/{variant}] final test accuracy {100 * (res.final_test_accuracy_mean or 0):.2f}% "
                    f"(chips {', '.join(f'{100 * a:.2f}' for a in acc)})")
                entry.wall_s = time.perf_counter() - t_exp
                results.wall_s = time.perf_counter() - t_start
                results.write(out)
                if unit is None or all(v in entry.variants for v in unit):
                    checkpoint_path(out, exp, "+".join(unit or [variant])).unlink(missing_ok=True)

            if not started:  # from here on the folder holds the run, so a run cut in its first variant resumes
                results.write(out)
                started = True
            args = (settings, data, chips, seed, device)
            rest = (out, exp, compile_mode, checkpoint_every, resume)
            units = batch_groups(todo, settings, chips, seed, compile_mode) if batch else [[v] for v in todo]
            if jobs > 1 and len(units) > 1:
                import concurrent.futures
                import multiprocessing

                units = longest_first(units, settings, chips, seed, compile_mode)
                log(f"  training {len(todo)} variants, {min(jobs, len(units))} at a time (--jobs {jobs})")
                ctx = multiprocessing.get_context("spawn")
                with ctx.Manager() as manager, concurrent.futures.ProcessPoolExecutor(
                        max_workers=min(jobs, len(units)), mp_context=ctx,
                        initializer=torch.set_num_threads, initargs=(threads or 1,)) as pool:
                    lines = manager.Queue()
                    futures = {pool.submit(_train_batch, u, *args, False, _QueueLog(lines), *rest): u for u in units}
                    with _JobsProgress(exp, todo, settings.epochs, progress, log) as bar:
                        outer_log, log = log, bar.write  # finished() prints above the display too
                        pending = set(futures)
                        while pending:
                            ready, pending = concurrent.futures.wait(pending, timeout=1.0)
                            bar.drain(lines)
                            for fut in ready:
                                unit = futures[fut]
                                exc = fut.exception()
                                if isinstance(exc, TrainingDivergedError) and len(unit) > 1:
                                    _batch_diverged(out, exp, unit, exc, log)
                                    for v in unit:
                                        single = pool.submit(_train_batch, [v], *args, False, _QueueLog(lines), *rest)
                                        futures[single] = [v]
                                        pending.add(single)
                                    continue
                                for variant, res in fut.result().items():
                                    finished(variant, res, unit)
                                    bar.variant_done(variant)
                        bar.drain(lines)
                        log = outer_log
            else:
                for unit in units:
                    try:
                        batch_results = _train_batch(unit, *args, progress, log, *rest)
                    except TrainingDivergedError as exc:
                        if len(unit) == 1:
                            raise
                        _batch_diverged(out, exp, unit, exc, log)
                        for v in unit:  # each written as it finishes: one that diverges keeps the others'
                            finished(v, _train_batch([v], *args, progress, log, *rest)[v])
                        continue
                    for variant, res in batch_results.items():
                        finished(variant, res, unit)
            old_timing = before.timing if before is not None else None
            if measure_batching and chips > 1 and isinstance(old_timing, dict):
                entry.timing = old_timing
            elif measure_batching and chips > 1:
                timing_variant = TIMING_VARIANT if TIMING_VARIANT in variant_list else variant_list[0]
                entry.timing = t = measure_chip_batching(timing_variant, settings, data, chips, seed, device,
                                                         examples=timing_examples)
                log(f"  timing {timing_variant}, {t['examples']} examples: 1 chip {t['wall_1chip_s']:.2f} s, "
                    f"{chips} chips batched {t['wall_batched_s']:.2f} s (ratio {t['ratio']:.2f}, "
                    f"{t['per_chip_speedup']:.2f}x per chip)")
            entry.wall_s = time.perf_counter() - t_exp
            entry.checks = checks.paper_checks(entry, quick)
            results.wall_s = time.perf_counter() - t_start
            results.write(out)
            report.write_report(results, out, figures=exp)
        results.complete = True
        results.wall_s = time.perf_counter() - t_start
        results.write(out)
        report.write_report(results, out, figures=[])
        log(f"wrote {out / 'report.md'}, {out / 'results.json'} and figures in {out / 'figures'}")
    finally:
        torch.set_num_threads(old_threads)
    return results


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``reproduce`` subcommand on an ``argparse`` subparsers object."""
    from ..presets import PRESET_NAMES

    p = subparsers.add_parser(
        "reproduce",
        help="reproduce the paper's experiments (all variants, several chips) and write a report",
        description=(
            "Train the software baseline and the analog variants of one of the paper's experiments "
            "(Ambrogio et al., Nature 2018), several simulated chips per variant trained together, and write "
            "results.json, report.md and figures into --out. Full-size runs take hours; --quick is a smoke run "
            "of a few minutes on small subsets."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=("examples:\n"
                "  analogtrain reproduce all --quick --out runs/smoke\n"
                "  analogtrain reproduce mnist --data-dir ../shared/data --out runs/mnist\n"
                "  analogtrain reproduce cifar10 --chips 5 --variants software nature2018 --out runs/c10\n"
                "  analogtrain reproduce mnist --variants software nature2018 --set chip.transfer.mode=column "
                "--out runs/col\n"),
    )
    p.add_argument("experiment", choices=[*EXPERIMENTS, "all"], help="which experiment (all: the four in turn)")
    p.add_argument("--out", metavar="DIR", default="runs/reproduce", help="output folder (default runs/reproduce)")
    p.add_argument("--chips", type=int, default=3, metavar="N",
                   help="simulated chips per variant, trained together (default 3)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: small subsets, 2 epochs, short transfer interval, 32-px CIFAR features; "
                        "the embedded digits stand in for data that is not on disk")
    p.add_argument("--epochs", type=int, metavar="N", help="epochs of every experiment (default: MNIST 20, "
                                                            f"CIFAR {CIFAR_EPOCHS}; quick {QUICK_EPOCHS})")
    p.add_argument("--variants", nargs="+", metavar="PRESET",
                   help=f"presets to train (default: {' '.join(DEFAULT_VARIANTS)}); any of {', '.join(PRESET_NAMES)}")
    p.add_argument("--data-dir", metavar="DIR", help="dataset root holding mnist/, cifar10/, cifar100/ "
                                                     "(else $ANALOGTRAIN_DATA_DIR, else the user cache)")
    p.add_argument("--threads", type=int, default=1, metavar="T", help="torch CPU threads (default 1)")
    p.add_argument("--limit-train", type=int, metavar="N", help="use only N training examples")
    p.add_argument("--limit-test", type=int, metavar="N", help="use only N test examples")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed shared by all variants (default 0)")
    p.add_argument("--cache-dir", metavar="DIR", help="CIFAR feature cache (default: the user cache)")
    p.add_argument("--input-size", type=int, metavar="PX",
                   help=f"backbone input resolution for CIFAR (default {CIFAR_INPUT_SIZE}; quick {QUICK_INPUT_SIZE})")
    p.add_argument("--transfer-interval", type=int, metavar="N",
                   help=f"examples between transfers (default {TRANSFER_INTERVAL:,}, the paper's MNIST value)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value for every variant, on top of its preset, e.g. --set "
                        "chip.transfer.mode=column (repeatable; recorded in results.json and the report)")
    p.add_argument("--config", metavar="FILE", help="TOML/JSON file of config overrides for every variant")
    p.add_argument("--device", default="cpu", help="torch device of the simulation (default cpu)")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="fuse each training step with torch.compile (auto: for runs of 50,000 steps or more)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out (give the same arguments): finished variants are "
                        "kept, the one in progress continues from its checkpoint")
    p.add_argument("--force", action="store_true", help="replace the run that --out already holds")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="train up to N variants at once, each in its own process on one thread "
                        "(default: the cores there are; results are the same as with --jobs 1)")
    p.add_argument("--batch-variants", choices=("auto", "on", "off"), default="auto",
                   help="train the 2PCM+3T1C variants that differ only in per-chip parameters as one batch of "
                        "chips, each with the results it has alone (auto: on a GPU only; on a CPU separate runs "
                        "on the cores are as fast)")
    p.add_argument("--checkpoint-every", type=int, default=CHECKPOINT_EVERY, metavar="N",
                   help=f"checkpoint the variant in progress every N examples (default {CHECKPOINT_EVERY:,})")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``analogtrain reproduce`` (``args`` from :func:`add_parser`)."""
    for name in ("chips", "threads", "epochs", "limit_train", "limit_test", "input_size", "transfer_interval",
                 "checkpoint_every"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {args.seed}")
    try:
        dev = torch.device(args.device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"--device {args.device!r} is not a torch device; use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {args.device}: no CUDA GPU is available to this torch; use --device cpu")
    from ..config import collect_overrides

    overrides = collect_overrides(args.config, args.set)
    try:
        results = run_reproduction(
            args.experiment, args.out, chips=args.chips, quick=args.quick, data_dir=args.data_dir,
            epochs=args.epochs, variants=args.variants, progress=not args.quiet, threads=args.threads,
            limit_train=args.limit_train, limit_test=args.limit_test, seed=args.seed, cache_dir=args.cache_dir,
            input_size=args.input_size, device=args.device, transfer_interval=args.transfer_interval,
            compile_mode=args.compile, resume=args.resume, force=args.force,
            jobs=args.jobs or max(1, os.cpu_count() or 1),
            batch_variants={"auto": None, "on": True, "off": False}[args.batch_variants],
            checkpoint_every=args.checkpoint_every,
            overrides=overrides,
        )
    except KeyboardInterrupt:
        import shlex
        import sys

        cmd = " ".join(shlex.quote(a) for a in sys.argv[1:] if a != "--resume")
        print(f"\nanalogtrain: interrupted; the variant in progress was checkpointed at most "
              f"{args.checkpoint_every:,} examples ago. Continue with: analogtrain {cmd} --resume", file=sys.stderr)
        return 130
    print(report.summary_text(results))
    return 0
