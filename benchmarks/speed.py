"""Training speed of the simulated chip against plain PyTorch SGD, in one run.

Times ``nature2018`` training of MNIST 528-250-125-10 at minibatch 1 and, on the same
images in the same order, plain PyTorch FP32 SGD of the same network (nn.Linear + sigmoid,
autograd, torch.optim.SGD, cross-entropy).  Prints images/s for each, their ratio, and the
peak resident memory of the process (Linux ru_maxrss).  Each timing is the best of
``--repeats`` rounds over ``--images`` images after one warm-up pass; each round times every
configuration once, so drifting machine speed hits both sides of a ratio alike.  A chip's
example count runs on across passes, so its transfers (every 8,000 examples) fall where they
would in one long run; their time is taken out of each round's speed and reported apart, with
the speed once they are amortised over the examples timed.

Fresh weights are not where a long run spends its time: ``--pretrain N`` first trains every
network (plain SGD included) on N images, untimed (passes over the images the rounds do not
time, repeated as often as N needs: N may exceed the training set), and times from there, so
effects that only appear later in training (saturated neurons, subnormal floats, many more
pulses per update) are measured too.  ``--keep-subnormals`` times the chip without the
flush-to-zero that ``Trainer.train`` sets, to show what that flush is worth.

    python benchmarks/speed.py --data-dir ../shared/data/mnist --images 4000
    python benchmarks/speed.py --data-dir ../shared/data/mnist --images 2000 --pretrain 30000 --compile on
    python benchmarks/speed.py --compile on --chips 8
    python benchmarks/speed.py --presets nature2018 2pcm software --json speed.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import sys
import time
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


@dataclass
class ChipNet:
    """A simulated network under test: its step, transfer schedule, the chip time per example
    that leakage sees (as ``Trainer`` computes it) and the examples it has trained on."""

    mlp: Any
    schedule: Any
    dt_s: float
    seen: int = 0


def build(x: torch.Tensor, y: torch.Tensor, preset: str, chips: int, compiled: bool,
          overrides=None) -> ChipNet | None:
    """A fresh network of ``preset`` (with config ``overrides``), its step compiled or not."""
    from analogtrain.network import build_mlp
    from analogtrain.presets import get_preset
    from analogtrain.schedule import TransferSchedule
    from analogtrain.training import chip_time_per_example_s

    cfg = get_preset(preset, {**(overrides or {}), "training": {"chips": chips}})
    n_out = int(y.max()) + 1
    mlp, _ = build_mlp(cfg, x.shape[1], n_out)
    if compiled and not mlp.compile():
        return None  # software network or PCM drift: the step stays eager
    sizes = [x.shape[1], *cfg.training.hidden, n_out]
    return ChipNet(mlp, TransferSchedule(cfg.chip, [layer.n_out for layer in mlp.layers]),
                   chip_time_per_example_s(cfg, sizes))


def chip(x: torch.Tensor, y: torch.Tensor, net: ChipNet, flush: bool = True) -> tuple[float, float, int]:
    """One pass of analogtrain training (transfers and leakage included), with subnormal floats
    flushed as ``Trainer.train`` does unless ``flush`` is False: (seconds in all, seconds of
    them spent in transfers or the 2-PCM cell's periodic reset, how many of those events).
    The network's example count carries over from pass to pass, so transfers fall where they
    would in one long run; leakage sees the chip time per example that ``Trainer`` uses."""
    from analogtrain.training import denormals_flushed

    mlp, sched = net.mlp, net.schedule
    transfer_s, transfers = 0.0, 0
    with denormals_flushed() if flush else contextlib.nullcontext():
        t0 = time.perf_counter()
        for i in range(x.shape[0]):
            mlp.train_example(x[i], y[i])
            mlp.advance_time(net.dt_s)
            net.seen += 1
            due = sched.transfers_due(net.seen)
            reset = sched.reset_due(net.seen)  # the 2-PCM cell's occasional RESET-and-reprogram
            if due or reset:
                t1 = time.perf_counter()
                for li, cols in due:
                    mlp.layers[li].transfer(cols)
                for layer in mlp.layers if reset else ():
                    layer.maintain()
                transfer_s += time.perf_counter() - t1
                transfers += 1
        return time.perf_counter() - t0, transfer_s, transfers


def pretraining_passes(pretrain: int, n_rest: int) -> list[int]:
    """Lengths of the passes over the ``n_rest`` untimed images that make ``pretrain`` images."""
    if pretrain == 0:
        return []
    return [min(n_rest, pretrain - a) for a in range(0, pretrain, n_rest)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (else the usual lookup)")
    ap.add_argument("--images", type=int, default=4000, help="images per timed pass (default 4000)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds, best is reported (default 3)")
    ap.add_argument("--presets", nargs="+", default=["nature2018"], help="chip presets to time")
    ap.add_argument("--chips", type=int, default=1, help="chips trained together (batched state)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--compile", choices=("on", "off", "both"), default="both",
                    help="time the torch.compile'd step, the eager step, or both (default both); compiling is "
                         "done in the warm-up pass and not timed")
    ap.add_argument("--pretrain", type=int, default=0,
                    help="train every network on this many images (untimed; passes over the images not timed, "
                         "repeated as needed) before the timed passes, to time a late stage of training "
                         "(default 0: fresh weights)")
    ap.add_argument("--keep-subnormals", action="store_true",
                    help="also time each chip configuration without flushing subnormal floats to zero")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from analogtrain.data import load_dataset

    data = load_dataset("mnist", data_dir=args.data_dir)
    n_avail = data.x_train.shape[0]
    if args.pretrain and args.images >= n_avail:
        ap.error(f"--images {args.images} leaves none of the {n_avail} training images for pretraining; lower it")
    x, y = data.x_train[: args.images].contiguous(), data.y_train[: args.images].contiguous()
    # pretraining passes over the images not timed, as often as --pretrain needs
    rest_x, rest_y = data.x_train[args.images:], data.y_train[args.images:]
    n_rest = rest_x.shape[0]
    pre_passes = pretraining_passes(args.pretrain, n_rest)
    hidden, lr = [250, 125], 0.1
    n_out = int(data.y_train.max()) + 1

    # build, warm up (compiling happens here) and pretrain everything first, then time in
    # rounds: each round times plain SGD and every chip configuration once, so a machine whose
    # speed drifts (shared cores, CPU steal on a VM) affects both sides of a ratio alike
    sgd = plain_net(x.shape[1], n_out, hidden, lr)
    plain_sgd(x[:500], y[:500], sgd)
    for n in pre_passes:
        plain_sgd(rest_x[:n], rest_y[:n], sgd)
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.compile]
    flushes = [True, False] if args.keep_subnormals else [True]
    nets, labels, compile_s, flush_of = {}, {}, {}, {}
    transfer_s: dict[str, float] = {}
    transfer_n: dict[str, int] = {}
    examples: dict[str, int] = {}

    def tally(key: str, n: int, timing: tuple[float, float, int]) -> tuple[float, float, int]:
        """Add a pass of ``n`` examples to ``key``'s transfer time, transfers and examples."""
        transfer_s[key] += timing[1]
        transfer_n[key] += timing[2]
        examples[key] += n
        return timing
    for preset in args.presets:
        for compiled in modes:
            for flush in flushes:
                key = f"{preset} (compiled)" if compiled else preset
                if not flush:
                    key += " (subnormals kept)"
                net = build(x, y, preset, args.chips, compiled)
                if net is None:
                    continue
                labels[key] = key if args.chips == 1 else f"{key} x{args.chips} chips"
                t0 = time.perf_counter()
                chip(x[:500], y[:500], net, flush)  # warm-up; compiles the step
                if compiled:
                    compile_s[key] = time.perf_counter() - t0
                transfer_s[key], transfer_n[key], examples[key] = 0.0, 0, 0
                for n in pre_passes:
                    tally(key, n, chip(rest_x[:n], rest_y[:n], net, flush))
                nets[key], flush_of[key] = net, flush
    # chip speeds are those of the training step (transfer time taken out of each round); the
    # transfers' share is measured over every timed and pretraining pass and added back as an
    # amortised cost per example
    rounds: dict[str, list[float]] = {"pytorch_sgd": [], **{k: [] for k in nets}}
    for _ in range(args.repeats):
        rounds["pytorch_sgd"].append(x.shape[0] / plain_sgd(x, y, sgd))
        for key, net in nets.items():
            sec, ts, _ = tally(key, x.shape[0], chip(x, y, net, flush_of[key]))
            rounds[key].append(args.chips * x.shape[0] / (sec - ts))
    results = {k: max(v) for k, v in rounds.items()}
    amortised = {k: args.chips / (args.chips / results[k] + transfer_s[k] / examples[k]) for k in nets}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"MNIST 528-250-125-10, minibatch 1, {args.images} images per round, best of {args.repeats}, "
          f"after {args.pretrain} pretraining images, {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}")
    base = results["pytorch_sgd"]
    print(f"{'pytorch_sgd':<48} {base:8.0f} images/s   ratio 1.00")
    for key, label in labels.items():
        per_round = ", ".join(f"{a / b:.2f}" for a, b in zip(rounds[key], rounds["pytorch_sgd"]))
        print(f"{label:<48} {results[key]:8.0f} images/s   ratio {results[key] / base:.2f}   "
              f"(per round: {per_round})")
        if transfer_n[key]:
            print(f"{'':<48} {amortised[key]:8.0f} images/s   ratio {amortised[key] / base:.2f}   with its "
                  f"{transfer_n[key]} transfers amortised ({transfer_s[key] / transfer_n[key]:.2f} s each, "
                  f"{examples[key]} examples)")
        else:
            print(f"{'':<48} no transfer fell in the {examples[key]} timed and pretraining examples")
    for key, sec in compile_s.items():
        print(f"compile + 500-image warm-up of {key}: {sec:.0f} s")
    print(f"peak resident memory {peak_mb:.0f} MB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"images_per_s": results, "images_per_s_with_transfers": amortised,
                       "transfer_s": transfer_s, "transfers": transfer_n, "examples": examples,
                       "peak_rss_mb": peak_mb, "images": args.images, "pretrain": args.pretrain,
                       "compile_and_warmup_s": compile_s, "rounds_images_per_s": rounds,
                       "threads": torch.get_num_threads(), "chips": args.chips, "argv": sys.argv}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
