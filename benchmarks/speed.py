"""Training speed of the simulated chip against plain PyTorch SGD, in one run.

Times ``nature2018`` training of MNIST 528-250-125-10 at minibatch 1 as a user runs it,
through ``Trainer.train`` (leakage on the Trainer's clock, transfers where they fall in one long
run, the per-example bookkeeping, the test-set evaluation at each epoch's end), and, on the same
images in the same order, plain PyTorch FP32 SGD of the same network (nn.Linear + sigmoid,
autograd, torch.optim.SGD, cross-entropy).  Prints images/s for each, their ratio, and the
peak resident memory of the process (Linux ru_maxrss).  Each timing is the best of
``--repeats`` rounds over ``--images`` images after a 500-image warm-up; each round times every
configuration once, so drifting machine speed hits both sides of a ratio alike.  The run goes
on from round to round, so its transfers (every 8,000 examples) fall where they would in one
long run; their time (measured by wrapping the layers' transfer methods) is taken out of each
round's speed and reported apart, with the speed once they are amortised over every example.

Fresh weights are not where a long run spends its time: ``--pretrain N`` first trains every
network (plain SGD included) on N more images of the run, untimed, over as many epochs as N
needs, and times from there, so effects that only appear later in training (saturated neurons,
subnormal floats, many more pulses per update) are measured too.  ``--keep-subnormals`` also
times the chip without the flush-to-zero that ``Trainer.train`` sets, to show what that flush
is worth.

``--breakdown`` profiles one more round of each compiled chip and prints where its step's time
goes: inductor's fused kernels, the other kernels of the step, the compiled call's own work (guard
check, generated wrapper), the random numbers drawn, work between steps, and the trainer's Python;
and the speed the kernels and random numbers alone would allow, a bound on what removing
overhead can gain.

    python benchmarks/speed.py --data-dir ../shared/data/mnist --images 4000
    python benchmarks/speed.py --data-dir ../shared/data/mnist --images 2000 --pretrain 30000 --compile on
    python benchmarks/speed.py --compile on --chips 8
    python benchmarks/speed.py --presets nature2018 2pcm software --json speed.json
    python benchmarks/speed.py --compile on --threads 1 --breakdown
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch


def plain_net(n_in: int, n_out: int, hidden: list[int], lr: float):
    """A fresh plain PyTorch network (nn.Linear + sigmoid) and its SGD optimiser."""
    sizes = [n_in, *hidden, n_out]
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Sigmoid())
    net = torch.nn.Sequential(*layers)
    return net, torch.optim.SGD(net.parameters(), lr=lr)


def plain_sgd(x: torch.Tensor, y: torch.Tensor, model) -> float:
    """Seconds for one pass of plain autograd SGD, minibatch 1, continuing ``model``'s training."""
    net, opt = model
    loss_fn = torch.nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for i in range(x.shape[0]):
        opt.zero_grad()
        loss = loss_fn(net(x[i:i + 1]), y[i:i + 1])
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


#: the profiler label of work between training steps (transfers, resets, test evaluations), which
#: ``--breakdown`` keeps apart from the step
OUTSIDE_STEP = "between steps: transfer, reset or evaluation"

#: ``--breakdown``'s parts of a step's time, by profiler event name: inductor's fused kernels are
#: ``graph_*_cpp_fused_*`` (with ``torch._inductor.config.cpp.enable_kernel_profile``); the compiled
#: call's own work is the self time of dynamo's guard check and the compiled graph's wrapper
COMPILED_CALL = ("TorchDynamo Cache Lookup", "Torch-Compiled Region", "## Call CompiledFxGraph", "Pregraph bytecode",
                 "AOTDispatcher")


def breakdown(events, wall_s: float) -> dict[str, float]:
    """Seconds of a profiled pass by part: inductor's fused kernels, other kernels inside the
    compiled step (matrix products, custom ops), the compiled call's own work (guard check, the
    generated wrapper, its allocations), the random numbers the step draws before the call,
    work between steps (transfers, resets, evaluations: labelled :data:`OUTSIDE_STEP`), and the
    rest (the trainer's Python and its small tensor ops): ``wall_s`` less the others."""
    parts = dict.fromkeys(("fused kernels", "other kernels in the step", "compiled call overhead",
                           "random numbers drawn", "between steps", "rest: Python and small ops"), 0.0)
    for ev in events:
        chain, up = [], ev.cpu_parent
        while up is not None:
            chain.append(up.name)
            up = up.cpu_parent
        sec = ev.self_cpu_time_total / 1e6
        if OUTSIDE_STEP in chain or ev.name == OUTSIDE_STEP:
            parts["between steps"] += sec
        elif ev.name.startswith("graph_") and "cpp_fused" in ev.name:
            parts["fused kernels"] += sec
        elif ev.name.startswith(COMPILED_CALL):
            parts["compiled call overhead"] += sec
        elif any(name.startswith("Torch-Compiled Region") for name in chain):
            parts["other kernels in the step"] += sec
        elif ev.name in ("aten::random_", "aten::normal_"):
            parts["random numbers drawn"] += sec
    parts["rest: Python and small ops"] = wall_s - sum(parts.values())
    return parts


class TransferClock:
    """Times the transfers (and the 2-PCM cell's occasional RESET-and-reprogram) of a trainer's
    layers by wrapping their ``transfer`` and ``maintain`` methods: an instrument around what
    ``Trainer`` calls, not a copy of it.  ``seconds`` and ``events`` (examples after which any of
    them ran) accumulate until :meth:`take` reads and clears them.  It also labels those calls and
    the trainer's test evaluations :data:`OUTSIDE_STEP` for the profiler (``--breakdown``); the
    evaluations are labelled only, not timed apart."""

    def __init__(self, trainer: Any):
        self.trainer = trainer
        self.seconds = 0.0
        self._at: set[int] = set()
        for layer in trainer.mlp.layers:
            for name in ("transfer", "maintain"):
                if hasattr(layer, name):
                    setattr(layer, name, self._timed(getattr(layer, name)))
        evaluate = trainer._evaluate

        def labelled(*args, **kw):  # evaluations stay in the timed speed, --breakdown shows them apart
            with torch.profiler.record_function(OUTSIDE_STEP):
                return evaluate(*args, **kw)
        trainer._evaluate = labelled

    def _timed(self, method):
        def run(*args, **kw):
            t0 = time.perf_counter()
            try:
                with torch.profiler.record_function(OUTSIDE_STEP):  # a label for --breakdown
                    return method(*args, **kw)
            finally:
                self.seconds += time.perf_counter() - t0
                self._at.add(self.trainer.state.examples_seen)
        return run

    def take(self) -> tuple[float, int]:
        out = (self.seconds, len(self._at))
        self.seconds, self._at = 0.0, set()
        return out


@dataclass
class ChipNet:
    """A network under test: the ``Trainer`` a user's run would build, and its transfer clock."""

    trainer: Any
    clock: TransferClock

    @property
    def seen(self) -> int:
        return self.trainer.state.examples_seen


def build(x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, preset: str,
          chips: int, compiled: bool, overrides=None) -> ChipNet | None:
    """A fresh ``Trainer`` of ``preset`` (with config ``overrides``) on the training images ``x``,
    ``y`` and the test images ``x_test``, ``y_test`` (evaluated at every epoch's end, as in a run),
    its step compiled or not; None where the step cannot be compiled (software network, PCM drift)."""
    from analogtrain.config import merge_overrides
    from analogtrain.presets import get_preset
    from analogtrain.training import Trainer

    training = {"training": {"chips": chips, "compile": "on" if compiled else "off"}}
    cfg = get_preset(preset, merge_overrides(overrides or {}, training))
    trainer = Trainer(cfg, x, y, x_test, y_test, n_classes=int(y.max()) + 1)
    if compiled and not trainer.mlp.compiled:
        return None
    return ChipNet(trainer, TransferClock(trainer))


@contextlib.contextmanager
def subnormals_kept() -> Iterator[None]:
    """Inside the block ``Trainer.train`` does not flush subnormal floats to zero."""
    import analogtrain.training as training

    flushed = training.denormals_flushed
    training.denormals_flushed = contextlib.nullcontext
    try:
        yield
    finally:
        training.denormals_flushed = flushed


def image_order(n: int, seed: int, start: int, k: int) -> torch.Tensor:
    """Indices of training examples ``start`` .. ``start + k - 1`` of a run over ``n`` images with
    ``seed``, in ``Trainer``'s order (each epoch a permutation of its own), across epoch ends."""
    from analogtrain.training import epoch_order

    epoch, pos = divmod(start, n)
    parts = []
    while k > 0:
        part = epoch_order(n, seed, epoch)[pos:pos + k]
        parts.append(part)
        k -= part.numel()
        epoch, pos = epoch + 1, 0
    return torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64)


def chip(net: ChipNet, k: int, flush: bool = True) -> tuple[float, float, int]:
    """``Trainer.train`` on the next ``k`` examples, continuing where the last call stopped, with
    subnormal floats flushed to zero as ``train`` does unless ``flush`` is False: (seconds in all,
    seconds of them spent in transfers or the 2-PCM cell's periodic reset, how many such events).
    What runs is a user's run: leakage on Trainer's clock, transfers where they fall in one long
    run, the per-example bookkeeping, and the test-set evaluation at every epoch's end."""
    tr = net.trainer
    target = tr.state.examples_seen + k
    net.clock.take()
    with contextlib.nullcontext() if flush else subnormals_kept():
        t0 = time.perf_counter()
        while tr.state.examples_seen < target:
            tr.train(epochs=tr.state.epoch + 1, progress=False,
                     on_step=lambda t: t.state.examples_seen >= target)
        sec = time.perf_counter() - t0
    return (sec, *net.clock.take())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (else the usual lookup)")
    ap.add_argument("--images", type=int, default=4000, help="images per timed round (default 4000)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds, best is reported (default 3)")
    ap.add_argument("--presets", nargs="+", default=["nature2018"], help="chip presets to time")
    ap.add_argument("--chips", type=int, default=1, help="chips trained together (batched state)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--compile", choices=("on", "off", "both"), default="both",
                    help="time the torch.compile'd step, the eager step, or both (default both); compiling is "
                         "done in the warm-up pass and not timed")
    ap.add_argument("--pretrain", type=int, default=0,
                    help="train every network on this many images (untimed, continuing the run's order over "
                         "as many epochs as it takes) before the timed rounds, to time a late stage of training "
                         "(default 0: fresh weights)")
    ap.add_argument("--test-images", type=int, default=10000,
                    help="test images evaluated at every epoch's end (default 10000, MNIST's test set)")
    ap.add_argument("--keep-subnormals", action="store_true",
                    help="also time each chip configuration without flushing subnormal floats to zero")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one config value of every preset timed, as in `analogtrain train --set` "
                         "(repeatable), e.g. --set chip.capacitor.leak_time_constant_s=0.05")
    ap.add_argument("--breakdown", action="store_true",
                    help="after the timed rounds, profile one more round of each compiled chip and print where a "
                         "step's time goes, and the speed its kernels alone would allow (marks inductor's kernels "
                         "for the profiler, which costs a few microseconds per step in every round)")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    for name in ("images", "repeats", "chips", "test_images"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.pretrain < 0:
        ap.error("--pretrain must be 0 or more")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.breakdown:
        from torch._inductor import config as inductor_config

        inductor_config.cpp.enable_kernel_profile = True  # each fused kernel a profiler event
    from analogtrain.config import collect_overrides
    from analogtrain.data import load_dataset
    from analogtrain.errors import ConfigError

    try:
        overrides = collect_overrides(None, args.set)
    except ConfigError as exc:
        ap.error(str(exc))

    data = load_dataset("mnist", data_dir=args.data_dir)
    x_all, y_all = data.x_train.contiguous(), data.y_train.contiguous()
    x_test, y_test = data.x_test[: args.test_images], data.y_test[: args.test_images]
    n_all = x_all.shape[0]
    hidden, lr = [250, 125], 0.1
    n_out = int(y_all.max()) + 1
    warmup = 500

    # build, warm up (compiling happens here) and pretrain everything first, then time in
    # rounds: each round times plain SGD and every chip configuration once, so a machine whose
    # speed drifts (shared cores, CPU steal on a VM) affects both sides of a ratio alike
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.compile]
    flushes = [True, False] if args.keep_subnormals else [True]
    nets, labels, compile_s, flush_of = {}, {}, {}, {}
    transfer_s: dict[str, float] = {}
    transfer_n: dict[str, int] = {}

    def tally(key: str, timing: tuple[float, float, int]) -> tuple[float, float, int]:
        """Add a pass to ``key``'s transfer time and transfer count."""
        transfer_s[key] += timing[1]
        transfer_n[key] += timing[2]
        return timing
    for preset in args.presets:
        for compiled in modes:
            for flush in flushes:
                key = f"{preset} (compiled)" if compiled else preset
                if not flush:
                    key += " (subnormals kept)"
                try:
                    net = build(x_all, y_all, x_test, y_test, preset, args.chips, compiled, overrides)
                except ConfigError as exc:
                    ap.error(str(exc))
                if net is None:
                    continue
                labels[key] = key if args.chips == 1 else f"{key} x{args.chips} chips"
                transfer_s[key], transfer_n[key] = 0.0, 0
                t0 = time.perf_counter()
                tally(key, chip(net, warmup, flush))  # compiles the step
                if compiled:
                    compile_s[key] = time.perf_counter() - t0
                if args.pretrain:
                    tally(key, chip(net, args.pretrain, flush))
                nets[key], flush_of[key] = net, flush
    seeds = {net.trainer.config.training.seed for net in nets.values()}
    if len(seeds) > 1:
        ap.error(f"the presets train with different seeds ({sorted(seeds)}), so they see different images")
    seed = seeds.pop() if seeds else 0

    def sgd_pass(start: int, k: int) -> float:
        """Plain SGD on training examples start .. start+k-1 of the chips' order (in chunks)."""
        sec = 0.0
        for a in range(start, start + k, 20_000):
            idx = image_order(n_all, seed, a, min(20_000, start + k - a))
            sec += plain_sgd(x_all[idx], y_all[idx], sgd)
        return sec
    sgd = plain_net(x_all.shape[1], n_out, hidden, lr)
    sgd_pass(0, warmup + args.pretrain)
    done = warmup + args.pretrain

    # chip speeds are those of the training step (transfer time taken out of each round); the
    # transfers' share is measured over every timed and pretraining pass and added back as an
    # amortised cost per example
    rounds: dict[str, list[float]] = {"pytorch_sgd": [], **{k: [] for k in nets}}
    for _ in range(args.repeats):
        rounds["pytorch_sgd"].append(args.images / sgd_pass(done, args.images))
        for key, net in nets.items():
            sec, ts, _ = tally(key, chip(net, args.images, flush_of[key]))
            rounds[key].append(args.chips * args.images / (sec - ts))
            assert net.seen == done + args.images
        done += args.images
    results = {k: max(v) for k, v in rounds.items()}
    amortised = {k: args.chips / (args.chips / results[k] + transfer_s[k] / done) for k in nets}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    parts: dict[str, dict[str, float]] = {}
    if args.breakdown:  # after the peak memory is read: the profiler's records take memory too
        for key, net in nets.items():
            if not net.trainer.mlp.compiled:
                continue
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                sec, _, _ = chip(net, args.images, flush_of[key])
            parts[key] = breakdown(prof.events(), sec)

    print(f"MNIST 528-250-125-10, minibatch 1, Trainer.train, {args.images} images per round, best of "
          f"{args.repeats}, after {args.pretrain} pretraining images, {torch.get_num_threads()} thread(s), "
          f"{' '.join('--set ' + a for a in args.set) or 'presets as they are'}, "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}")
    base = results["pytorch_sgd"]
    print(f"{'pytorch_sgd':<48} {base:8.0f} images/s   ratio 1.00")
    for key, label in labels.items():
        per_round = ", ".join(f"{a / b:.2f}" for a, b in zip(rounds[key], rounds["pytorch_sgd"]))
        print(f"{label:<48} {results[key]:8.0f} images/s   ratio {results[key] / base:.2f}   "
              f"(per round: {per_round})")
        if transfer_n[key]:
            print(f"{'':<48} {amortised[key]:8.0f} images/s   ratio {amortised[key] / base:.2f}   with its "
                  f"{transfer_n[key]} transfers amortised ({transfer_s[key] / transfer_n[key]:.2f} s each, "
                  f"{done} examples)")
        else:
            print(f"{'':<48} no transfer fell in the {done} timed and pretraining examples")
    for key, part in parts.items():
        floor = sum(part[k] for k in ("fused kernels", "other kernels in the step", "random numbers drawn"))
        wall = sum(part.values())
        print(f"where a step of {labels[key]} goes (one profiled round of {args.images} images, "
              f"{1e6 * wall / args.images:.0f} us per step):")
        for name, sec in part.items():
            print(f"  {name:<40} {1e6 * sec / args.images:8.0f} us   {100 * sec / wall:5.1f} %")
        rate = args.chips * args.images / floor
        print(f"  its kernels and random numbers alone: {rate:.0f} images/s, ratio {rate / base:.2f} of pytorch_sgd")
    for key, sec in compile_s.items():
        print(f"compile + {warmup}-image warm-up of {key}: {sec:.0f} s")
    print(f"peak resident memory {peak_mb:.0f} MB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"images_per_s": results, "images_per_s_with_transfers": amortised,
                       "transfer_s": transfer_s, "transfers": transfer_n, "examples": done,
                       "peak_rss_mb": peak_mb, "images": args.images, "pretrain": args.pretrain,
                       "test_images": args.test_images, "compile_and_warmup_s": compile_s,
                       "rounds_images_per_s": rounds, "breakdown_s": parts, "threads": torch.get_num_threads(), "chips": args.chips,
                       "argv": sys.argv}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
