"""Peak memory per simulated synapse, measured: what one more chip costs.

For each chip count, a fresh process builds the ``Trainer`` a user's run builds (MNIST
528-250-125-10, ``nature2018`` unless ``--preset``; initial programming included), trains it
``--images`` examples through ``Trainer.train`` (compiled step unless ``--compile off``), then
evaluates the test set once, and reports its peak resident memory (Linux ``VmHWM``).  The
memory one chip adds is the difference between two chip counts' peaks, per chip and synapse:

    bytes per synapse = (peak(C) - peak(C_min)) / ((C - C_min) * synapses per chip)

so the process, torch, the data and the compiled code (the same for every chip count) drop
out.  Beside it the script prints the bytes of the state tensors the crossbars hold (counted
tensor by tensor) and the estimate the memory check uses before a run starts
(``analogtrain.memory.bytes_per_synapse``).

    python benchmarks/memory.py --data-dir ../shared/data/mnist --chips 1 16 64
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _vm(key: str) -> int:
    """A /proc/self/status memory figure (bytes)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status (Linux only)")


def state_bytes(mlp) -> int:
    """Bytes of every tensor the network's layers hold (each storage counted once)."""
    import torch

    seen: set[int] = set()
    storages: set[int] = set()
    total = 0

    def walk(obj, depth: int = 0) -> None:
        nonlocal total
        if depth > 6 or id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            st = obj.untyped_storage()
            if st.data_ptr() not in storages:
                storages.add(st.data_ptr())
                total += st.nbytes()
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v, depth + 1)
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v, depth + 1)
        elif type(obj).__module__.startswith("analogtrain") and hasattr(obj, "__dict__"):
            for v in vars(obj).values():
                walk(v, depth + 1)

    walk(mlp)
    return total


def one(args: argparse.Namespace) -> dict:
    """The measurement of one chip count (run in a process of its own)."""
    import torch

    sys.path.insert(0, str(HERE))
    import speed

    from analogtrain.data import load_dataset
    from analogtrain.memory import bytes_per_synapse, network_synapses

    torch.set_num_threads(1)
    data = load_dataset("mnist", data_dir=args.data_dir)
    x, y = data.x_train.contiguous(), data.y_train.contiguous()
    x_test, y_test = data.x_test[: args.test_images], data.y_test[: args.test_images]
    net = speed.build(x, y, x_test, y_test, args.preset, args.one, args.compile == "on")
    if net is None:
        raise SystemExit(f"{args.preset} cannot be compiled; use --compile off")
    phases = {"built": _vm("VmHWM")}
    speed.chip(net, args.images)
    phases["trained"] = _vm("VmHWM")
    net.trainer.evaluate()
    phases["evaluated"] = _vm("VmHWM")
    synapses = network_synapses([x.shape[1], 250, 125, int(y.max()) + 1])
    return {"chips": args.one, "peak_bytes": _vm("VmHWM"), "peak_bytes_after": phases, "synapses_per_chip": synapses,
            "state_bytes_per_synapse": state_bytes(net.trainer.mlp) / (synapses * args.one),
            "estimate_bytes_per_synapse": bytes_per_synapse(net.trainer.config.chip)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (else the usual lookup)")
    ap.add_argument("--chips", type=int, nargs="+", default=[1, 16, 64], help="chip counts (default 1 16 64)")
    ap.add_argument("--preset", default="nature2018")
    ap.add_argument("--images", type=int, default=300, help="training examples per measurement (default 300)")
    ap.add_argument("--test-images", type=int, default=10000, help="test images evaluated once (default 10000)")
    ap.add_argument("--compile", choices=("on", "off"), default="on")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a child process's chip count
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args)))
        return 0
    if len(args.chips) < 2 or min(args.chips) < 1:
        ap.error("--chips needs at least two positive chip counts (the smallest is the reference)")
    rows = []
    for c in sorted(set(args.chips)):
        cmd = [sys.executable, __file__, "--one", str(c), "--preset", args.preset, "--images", str(args.images),
               "--test-images", str(args.test_images), "--compile", args.compile]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "child failed", file=sys.stderr)
            return 1
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    ref = rows[0]
    print(f"MNIST 528-250-125-10, {args.preset}, {ref['synapses_per_chip']:,} synapses per chip, "
          f"{args.images} training examples and one evaluation of {args.test_images} test images, "
          f"step compiled: {args.compile}")
    print(f"{'chips':>6} {'peak (MB)':>10} {'bytes/synapse over ' + str(ref['chips']) + ' chip(s)':>30} "
          f"{'state bytes/synapse':>20} {'estimate':>9}")
    for r in rows:
        extra = r["chips"] - ref["chips"]
        r["marginal_bytes_per_synapse"] = (
            (r["peak_bytes"] - ref["peak_bytes"]) / (extra * ref["synapses_per_chip"]) if extra else None)
        marginal = f"{r['marginal_bytes_per_synapse']:.1f}" if extra else "-"
        print(f"{r['chips']:>6} {r['peak_bytes'] / 2**20:>10.0f} {marginal:>30} "
              f"{r['state_bytes_per_synapse']:>20.1f} {r['estimate_bytes_per_synapse']:>9}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "preset": args.preset, "images": args.images,
                       "test_images": args.test_images, "compile": args.compile, "argv": sys.argv}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
