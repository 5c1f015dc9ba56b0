"""Training speed of the simulated chip against plain PyTorch SGD, in one run.

Times ``nature2018`` training of MNIST 528-250-125-10 at minibatch 1 and, on the same
images in the same order, plain PyTorch FP32 SGD of the same network (nn.Linear + sigmoid,
autograd, torch.optim.SGD, cross-entropy).  Prints images/s for each, their ratio, and the
peak resident memory of the process (Linux ru_maxrss).  Each timing is the best of
``--repeats`` rounds over ``--images`` images after one warm-up pass; each round times every
configuration once, so drifting machine speed hits both sides of a ratio alike.

    python benchmarks/speed.py --data-dir ../shared/data/mnist --images 4000
    python benchmarks/speed.py --compile on --chips 8
    python benchmarks/speed.py --presets nature2018 2pcm software --json speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time

import torch


def plain_sgd(x: torch.Tensor, y: torch.Tensor, hidden: list[int], lr: float) -> float:
    """Seconds for one pass of plain autograd SGD, minibatch 1."""
    sizes = [x.shape[1], *hidden, int(y.max()) + 1]
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Sigmoid())
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for i in range(x.shape[0]):
        opt.zero_grad()
        loss = loss_fn(net(x[i:i + 1]), y[i:i + 1])
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def build(x: torch.Tensor, y: torch.Tensor, preset: str, chips: int, compiled: bool):
    """A fresh network of ``preset`` (and its transfer schedule), its step compiled or not."""
    from analogtrain.network import build_mlp
    from analogtrain.presets import get_preset
    from analogtrain.schedule import TransferSchedule

    cfg = get_preset(preset, {"training": {"chips": chips}})
    mlp, _ = build_mlp(cfg, x.shape[1], int(y.max()) + 1)
    if compiled and not mlp.compile():
        return None  # software network or PCM drift: the step stays eager
    return cfg, mlp, TransferSchedule(cfg.chip, [layer.n_out for layer in mlp.layers])


def chip(x: torch.Tensor, y: torch.Tensor, net) -> float:
    """Seconds for one pass of analogtrain training (transfers and leakage included), with
    subnormal floats flushed as ``Trainer.train`` does."""
    from analogtrain.training import denormals_flushed

    cfg, mlp, sched = net
    dt = cfg.training.time_per_example_s
    with denormals_flushed():
        t0 = time.perf_counter()
        for i in range(x.shape[0]):
            mlp.train_example(x[i], y[i])
            mlp.advance_time(dt)
            for li, cols in sched.transfers_due(i + 1):
                mlp.layers[li].transfer(cols)
        return time.perf_counter() - t0


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
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from analogtrain.data import load_dataset

    data = load_dataset("mnist", data_dir=args.data_dir)
    x, y = data.x_train[: args.images].contiguous(), data.y_train[: args.images].contiguous()
    hidden, lr = [250, 125], 0.1

    # build and warm up everything first (compiling happens here), then time in rounds: each
    # round times plain SGD and every chip configuration once, so a machine whose speed drifts
    # (shared cores, CPU steal on a VM) affects both sides of a ratio alike
    plain_sgd(x[:500], y[:500], hidden, lr)
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.compile]
    nets, labels, compile_s = {}, {}, {}
    for preset in args.presets:
        for compiled in modes:
            key = f"{preset} (compiled)" if compiled else preset
            net = build(x, y, preset, args.chips, compiled)
            if net is None:
                continue
            labels[key] = key if args.chips == 1 else f"{key} x{args.chips} chips"
            t0 = time.perf_counter()
            chip(x[:500], y[:500], net)  # warm-up; compiles the step
            if compiled:
                compile_s[key] = time.perf_counter() - t0
            nets[key] = net
    rounds: dict[str, list[float]] = {"pytorch_sgd": [], **{k: [] for k in nets}}
    for _ in range(args.repeats):
        rounds["pytorch_sgd"].append(x.shape[0] / plain_sgd(x, y, hidden, lr))
        for key, net in nets.items():
            rounds[key].append(args.chips * x.shape[0] / chip(x, y, net))
    results = {k: max(v) for k, v in rounds.items()}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"MNIST 528-250-125-10, minibatch 1, {args.images} images, best of {args.repeats}, "
          f"{torch.get_num_threads()} thread(s), torch {torch.__version__}, {platform.processor() or platform.machine()}")
    base = results["pytorch_sgd"]
    print(f"{'pytorch_sgd':<36} {base:8.0f} images/s   ratio 1.00")
    for key, label in labels.items():
        per_round = ", ".join(f"{a / b:.2f}" for a, b in zip(rounds[key], rounds["pytorch_sgd"]))
        print(f"{label:<36} {results[key]:8.0f} images/s   ratio {results[key] / base:.2f}   "
              f"(per round: {per_round})")
    for key, sec in compile_s.items():
        print(f"compile + 500-image warm-up of {key}: {sec:.0f} s")
    print(f"peak resident memory {peak_mb:.0f} MB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"images_per_s": results, "peak_rss_mb": peak_mb, "images": args.images,
                       "compile_and_warmup_s": compile_s, "rounds_images_per_s": rounds,
                       "threads": torch.get_num_threads(), "chips": args.chips, "argv": sys.argv}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
