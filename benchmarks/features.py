"""Feature-extraction speed and linear-probe quality of a backbone on CIFAR-10.

For each input resolution:

1. time: extract features of the first ``--n`` CIFAR-10 training images, cache disabled
   (one warm-up batch first, not timed);
2. probe (unless ``--no-probe``): features of ``--train`` training images and a seeded,
   class-balanced random ``--test`` test images (the test file is ordered by class, so a
   prefix would not do), cached in ``--cache-dir``; standardise with the training
   mean/std and fit a multinomial logistic regression (scikit-learn, L-BFGS) — the
   software counterpart of the 1-layer classifier the chip trains.

Example::

    python benchmarks/features.py --n 1000 --sizes 224 160 128 --train 10000 --test 2000
    python benchmarks/features.py --n 1000 --no-probe --threads 1 --batch-size 16   # timing only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from analogtrain.features import extract_features, get_backbone

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "cifar10_subset.npz"


def balanced_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices with (as far as possible) equal counts per class, seeded."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per = n // len(classes)
    idx = [rng.choice(np.flatnonzero(y == c), per, replace=False) for c in classes]
    out = np.concatenate(idx)
    rest = np.setdiff1d(np.arange(len(y)), out)
    out = np.concatenate([out, rng.choice(rest, n - len(out), replace=False)])
    return np.sort(out)


def linear_probe(ftr, ytr, fte, yte, C: float, max_iter: int) -> tuple[float, float, float]:
    from sklearn.linear_model import LogisticRegression

    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    a, b = (ftr - mu) / sd, (fte - mu) / sd
    t = time.perf_counter()
    clf = LogisticRegression(C=C, max_iter=max_iter)
    clf.fit(a, ytr)
    fit_s = time.perf_counter() - t
    return float(clf.score(a, ytr)), float(clf.score(b, yte)), fit_s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="cifar10_subset.npz")
    ap.add_argument("--backbone", default="efficientnet-lite0")
    ap.add_argument("--weights", default=None, help="optional weights file for the backbone")
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 160, 128], help="input resolutions")
    ap.add_argument("--n", type=int, default=1000, help="images for the timing run")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--train", type=int, default=10000, help="training images for the probe")
    ap.add_argument("--test", type=int, default=2000, help="test images for the probe")
    ap.add_argument(
        "--C", type=float, default=0.002,
        help="inverse L2 strength of the probe (0.001-0.002 best on a 8000/2000 split of the training subset at 160 px)",
    )
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--no-probe", action="store_true")
    ap.add_argument("--cache-dir", default=None, help="feature cache (default: the user cache)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    d = np.load(args.data)
    xtr, ytr, xte, yte = d["x_train"], d["y_train"], d["x_test"], d["y_test"]
    itr = np.arange(min(args.train, len(ytr)))  # the training subset is already shuffled
    ite = balanced_subset(yte, min(args.test, len(yte)), args.seed)
    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, device {args.device}"
    )
    print(f"# backbone {args.backbone}, batch {args.batch_size}; timing on {args.n} images; "
          f"probe: {len(itr)} train / {len(ite)} test (C={args.C})")
    results = []
    for size in args.sizes:
        bb = get_backbone(args.backbone, weights=args.weights, device=args.device, input_size=size)
        timing = xtr[: args.n]
        extract_features(timing[: args.batch_size], bb, batch_size=args.batch_size, cache_dir=False, progress=False)
        load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        t, c = time.perf_counter(), time.process_time()
        extract_features(timing, bb, batch_size=args.batch_size, cache_dir=False, progress=False)
        dt, cpu = time.perf_counter() - t, time.process_time() - c
        row = {
            "size": size,
            "n_timed": len(timing),
            "seconds": round(dt, 2),
            "img_per_s": round(len(timing) / dt, 1),
            "ms_per_img": round(1000 * dt / len(timing), 2),
            # CPU seconds (all threads) per image.  With --threads 1 this is hardly affected by
            # other processes sharing the cores (with more threads, waiting threads spin and
            # inflate it), so it is the robust figure on a busy machine.
            "cpu_ms_per_img": round(1000 * cpu / len(timing), 2),
            # 1-min load average just before/after timing: other processes on a shared
            # machine slow the run; a load above the core count means the figure is pessimistic.
            "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        }
        if not args.no_probe:
            t = time.perf_counter()
            ftr = extract_features(xtr[itr], bb, batch_size=args.batch_size, cache_dir=args.cache_dir)
            fte = extract_features(xte[ite], bb, batch_size=args.batch_size, cache_dir=args.cache_dir)
            row["extract_or_load_s"] = round(time.perf_counter() - t, 1)
            acc_tr, acc_te, fit_s = linear_probe(ftr, ytr[itr], fte, yte[ite], args.C, args.max_iter)
            row.update(train_acc=round(acc_tr, 4), test_acc=round(acc_te, 4), fit_s=round(fit_s, 1))
        results.append(row)
        print(json.dumps(row), flush=True)

    print()
    print("| size | time for n imgs (s) | img/s | ms/img | CPU ms/img | probe train acc | probe test acc |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        tr = f"{r['train_acc']:.4f}" if "train_acc" in r else "-"
        te = f"{r['test_acc']:.4f}" if "test_acc" in r else "-"
        print(
            f"| {r['size']} | {r['seconds']} | {r['img_per_s']} | {r['ms_per_img']} "
            f"| {r['cpu_ms_per_img']} | {tr} | {te} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
