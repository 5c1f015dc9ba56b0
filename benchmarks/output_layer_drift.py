"""Where the output layer's mean weight goes on the chip, and what the 3T1C window takes of an update.

The softmax error sums to zero over the classes for every example, so exact SGD never moves the
mean over classes of the output layer's weights (software keeps it at its initial value).  On the
chip it moves, and a shift of that mean shifts every logit towards the output ADC's clip
(docs/physics.md, "Periphery").  This script measures it on short MNIST runs:

1. ``asked vs taken``: over the first transfer interval minus one example (7,999 examples), the
   change of the output layer's weights that the update pulses asked for (net pulses x the
   nominal step, per cell) against the change the cells actually present, and the share of cells
   driven below the read transistor's threshold.
2. ``knobs``: the output layer's mean weight after ``--examples`` examples for the preset and for
   the same preset with one piece of the physics idealised at a time.

Usage::

    python benchmarks/output_layer_drift.py --data-dir ../shared/data/mnist [--examples 16000] [--json OUT]

Deterministic (seed 0); about 1 minute per knob on one core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

import analogtrain as at
from analogtrain.config import merge_overrides
from analogtrain.training import Trainer

PRESET = "nature2018"

KNOBS: dict[str, tuple[str, dict]] = {
    "software": ("software", {}),
    "chip (preset)": (PRESET, {}),
    "no CMOS mismatch": (PRESET, {"chip": {"capacitor": {"current_mismatch_rel": 0.0,
                                                          "read_threshold_mismatch_v": 0.0}}}),
    "no channel-length modulation": (PRESET, {"chip": {"capacitor": {"channel_modulation_per_v": 0.0}}}),
    "no leak": (PRESET, {"chip": {"capacitor": {"leak_time_constant_s": 1e6}}}),
    "V_T = 0": (PRESET, {"chip": {"capacitor": {"read_threshold_v": 0.0}}}),
    "ideal PCM": (PRESET, {"chip": {"pcm": {"program_sigma_us": 0.0, "program_sigma_rel": 0.0,
                                            "read_noise_us": 0.0, "read_noise_rel": 0.0}}}),
    "ideal converters": (PRESET, {"chip": {"periphery": {"input_bits": 0, "output_bits": 0}}}),
    "no polarity inversion": (PRESET, {"chip": {"cell": {"polarity_inversion": False}}}),
}


def _trainer(data, preset: str, overrides: dict, n: int) -> Trainer:
    base = {"training": {"epochs": 1, "compile": "off"}}
    cfg = at.get_preset(preset, merge_overrides(base, overrides))
    return Trainer(cfg, data.x_train[:n], data.y_train[:n], data.x_test[:2000], data.y_test[:2000], data.n_classes)


def asked_vs_taken(data) -> dict:
    tr = _trainer(data, PRESET, {}, 7999)
    out = tr.mlp.layers[-1]
    if out.tracked.numel() != out.rows * out.n_out:
        raise SystemExit("the output layer must be tracked whole (training.tracked_synapses >= its cells)")
    w0 = out.weights()[0].clone()
    tr.train(progress=False)
    taken = (out.weights()[0] - w0).T.double()  # [rows, classes]
    net = out.tracked_net[0][torch.argsort(out.tracked)].view(out.rows, out.n_out)
    asked = net * (out.cells.nominal_step_us / out.scale_us)
    cells = out.cells
    cells.sync()
    below = float((cells.v[0] < cells.mismatch.threshold_v[0]).double().mean())
    return {
        "examples": 7999,
        "asked_mean": float(asked.mean()), "asked_std": float(asked.std()),
        "taken_mean": float(taken.mean()), "taken_std": float(taken.std()),
        "correlation": float(torch.corrcoef(torch.stack([asked.flatten(), taken.flatten()]))[0, 1]),
        "below_threshold_fraction": below,
    }


def knobs(data, n: int) -> dict:
    out = {}
    for name, (preset, ov) in KNOBS.items():
        t0 = time.perf_counter()
        res = _trainer(data, preset, ov, n).train(progress=False)
        layers = res.history[-1].layers
        out[name] = {"output_layer_mean": layers[-1]["mean"][0], "output_layer_std": layers[-1]["std"][0],
                     "test_accuracy_2000": res.final_test_accuracy[0]}
        print(f"  {name:30s} output-layer mean {layers[-1]['mean'][0]:+.4f}  std {layers[-1]['std'][0]:.3f}  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True, help="folder with the four MNIST files")
    ap.add_argument("--examples", type=int, default=16000, help="training examples of each knob run (default 16,000)")
    ap.add_argument("--json", help="also write the numbers to this file")
    ap.add_argument("--skip-knobs", action="store_true", help="only the asked-vs-taken measurement")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        data = at.load_dataset("mnist", data_dir=args.data_dir, download=False)
    except at.UserError as exc:
        print(f"output_layer_drift: error: {exc}", file=sys.stderr)
        return 2
    print(f"{PRESET}, MNIST, seed 0: output layer, first transfer interval")
    avt = asked_vs_taken(data)
    print(f"  asked (net pulses x step): mean {avt['asked_mean']:+.4f}, std {avt['asked_std']:.3f} weight units")
    print(f"  taken (presented weights): mean {avt['taken_mean']:+.4f}, std {avt['taken_std']:.3f} "
          f"(correlation {avt['correlation']:.2f}); {100 * avt['below_threshold_fraction']:.0f} % of cells below V_T")
    result = {"command": " ".join(["python", "benchmarks/output_layer_drift.py", *(argv or sys.argv[1:])]),
              "asked_vs_taken": avt}
    if not args.skip_knobs:
        print(f"output-layer mean weight after {args.examples} examples (software keeps it at its initial value):")
        result["knobs"] = knobs(data, args.examples)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
