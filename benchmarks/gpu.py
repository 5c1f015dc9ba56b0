"""Chips per second on a GPU, and whether CUDA and the CPU agree.

    python benchmarks/gpu.py --data-dir ../shared/data/mnist                 # on a CUDA machine
    python benchmarks/gpu.py --device cpu --chips 1 4 --images 300 --agree-images 300   # a small CPU run

1. **Throughput.** ``nature2018`` training of MNIST 528-250-125-10 at minibatch 1 through
   ``Trainer.train`` with 1, 16, 256 and 1,024 chips batched, in chip-images/s (chips x images /
   seconds, after a warm-up that includes compiling), next to plain PyTorch FP32 SGD of the same
   network (autograd, minibatch 1) on the same device, in one run.  Chip counts that do not fit in
   the device's memory are refused by the simulator's own memory check and reported as such.
2. **Agreement.** The same config trained on the CPU and on ``--device`` with different random
   streams (CUDA's generator is not the CPU's): final test accuracy per chip and the ED Fig. 2
   pulse medians, each as mean and spread over the chips; the two devices agree when each
   difference of means is within the larger spread (plus a small floor).

Prints a table and, with ``--json FILE``, writes every figure.  Exits 0 whether or not the
devices agree; the verdict is in the output.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import analogtrain as at  # noqa: E402
from analogtrain.errors import UserError  # noqa: E402
from analogtrain.training import Trainer  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load(data_dir: str | None, n_train: int, n_test: int):
    if data_dir:
        return at.load_dataset("mnist", data_dir, download=False).subset(n_train, n_test)
    g = torch.Generator().manual_seed(0)  # no data: MNIST-like sparse random images
    x = (torch.rand(n_train + n_test, 528, generator=g) > 0.8).float() * torch.rand(n_train + n_test, 528, generator=g)
    y = torch.randint(0, 10, (n_train + n_test,), generator=g)
    from analogtrain.data import Dataset

    return Dataset("random", x[:n_train], y[:n_train], x[n_train:], y[n_train:], 10, (528,), {})


def chip_rate(data, device: torch.device, chips: int, images: int, warmup: int, compile_mode: str) -> dict[str, Any]:
    cfg = at.get_preset("nature2018", {"training": {"chips": chips, "epochs": 1, "compile": compile_mode}})
    try:
        tr = Trainer(cfg, data.x_train[: warmup + images], data.y_train[: warmup + images],
                     data.x_test[:10], data.y_test[:10], 10, device=device)
    except UserError as exc:
        return {"chips": chips, "refused": str(exc)}
    done = [0]

    def stop(t: Trainer) -> bool:
        done[0] += 1
        return done[0] == warmup

    tr.train(progress=False, on_step=stop)  # warm-up (and compile), then time the rest of the epoch
    _sync(device)
    t0 = time.perf_counter()
    tr.train(progress=False)
    _sync(device)
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"chips": chips, "images": images, "seconds": dt, "chip_images_per_s": chips * images / dt,
            "peak_device_bytes": peak}


def plain_rate(data, device: torch.device, images: int, warmup: int) -> dict[str, Any]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(528, 250), torch.nn.Sigmoid(), torch.nn.Linear(250, 125),
                              torch.nn.Sigmoid(), torch.nn.Linear(125, 10)).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = data.x_train.to(device), data.y_train.to(device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def run(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            opt.zero_grad()
            loss_fn(net(x[i:i + 1]), y[i:i + 1]).backward()
            opt.step()

    run(0, warmup)
    _sync(device)
    t0 = time.perf_counter()
    run(warmup, warmup + images)
    _sync(device)
    dt = time.perf_counter() - t0
    return {"images": images, "seconds": dt, "images_per_s": images / dt}


def _stats(values: list[float]) -> dict[str, float]:
    m = sum(values) / len(values)
    return {"mean": m, "spread": max(values) - min(values)}


def agreement(data, device: torch.device, chips: int, images: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dev in (torch.device("cpu"), device):
        cfg = at.get_preset("nature2018", {"training": {"chips": chips, "epochs": 1, "compile": "off"},
                                           "chip": {"transfer": {"interval_examples": max(2, images // 6)}}})
        tr = Trainer(cfg, data.x_train[:images], data.y_train[:images], data.x_test, data.y_test, 10, device=dev)
        res = tr.train(progress=False)
        per_chip_pulses = [float(sum(layer)) / images for layer in zip(*res.update_pulses)]
        out[dev.type] = {"accuracy": _stats(res.final_test_accuracy),
                         "update_pulses_per_image": _stats(per_chip_pulses),
                         "median_total_last_window": (res.pulse_statistics_per_window or [{}])[-1].get("median_total")}
    a, b = out["cpu"], out[device.type]
    verdict = {}
    for key, floor in (("accuracy", 0.02), ("update_pulses_per_image", 0.0)):
        diff = abs(a[key]["mean"] - b[key]["mean"])
        allowed = max(a[key]["spread"], b[key]["spread"]) + floor * max(1.0, abs(a[key]["mean"]))
        verdict[key] = {"difference": diff, "allowed": allowed, "agree": diff <= allowed}
    out["verdict"] = verdict
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="device to benchmark (default cuda)")
    ap.add_argument("--data-dir", help="folder with the MNIST files (default: MNIST-like random images)")
    ap.add_argument("--chips", type=int, nargs="+", default=[1, 16, 256, 1024])
    ap.add_argument("--images", type=int, default=2000, help="timed images per configuration")
    ap.add_argument("--warmup", type=int, default=200, help="untimed images first (compiling happens here)")
    ap.add_argument("--compile", choices=("on", "off"), default="on")
    ap.add_argument("--agree-chips", type=int, default=8)
    ap.add_argument("--agree-images", type=int, default=3000)
    ap.add_argument("--json", help="write every figure here")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device here; run it on a GPU machine or give --device cpu", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    n = args.warmup + max(args.images, args.agree_images)
    data = load(args.data_dir, n, 1000)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    plain = plain_rate(data, device, args.images, args.warmup)
    rows = [chip_rate(data, device, c, args.images, args.warmup, args.compile) for c in args.chips]
    print(f"device {device} ({name}), torch {torch.__version__}; MNIST 528-250-125-10, minibatch 1")
    print(f"plain PyTorch SGD: {plain['images_per_s']:,.0f} images/s")
    print("| chips | chip-images/s | vs plain SGD | peak device memory |")
    print("|---|---|---|---|")
    for r in rows:
        if "refused" in r:
            print(f"| {r['chips']} | refused: {r['refused']} | | |")
            continue
        mem = f"{r['peak_device_bytes'] / 1e9:.2f} GB" if r["peak_device_bytes"] else "-"
        print(f"| {r['chips']} | {r['chip_images_per_s']:,.0f} | {r['chip_images_per_s'] / plain['images_per_s']:.2f} "
              f"| {mem} |")
    agree = agreement(data, device, args.agree_chips, args.agree_images)
    for key, v in agree["verdict"].items():
        print(f"CPU vs {device.type}, {key}: means differ by {v['difference']:.4g}, allowed {v['allowed']:.4g} "
              f"({'agree' if v['agree'] else 'DISAGREE'}); cpu {agree['cpu'][key]}, {device.type} "
              f"{agree[device.type][key]}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device), "name": name, "plain": plain, "chips": rows,
                                               "agreement": agree}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
