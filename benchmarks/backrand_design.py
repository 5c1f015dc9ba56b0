"""What the chip needs on MNIST-backrand: the design study's verdict, from its sweeps.

Reads the tables (``results.parquet``) of the backrand design sweeps (update resolution,
device errors, all improvements together, capacitor leak, finer step with capacitor leak;
``examples/sweeps/backrand_*.toml``), puts every
point beside the software baseline of the same seed, and writes one report: a table of every
point with its accuracy gap to software and its cost per image (energy and chip time, from the
cost model with the point's own update train), a figure of the gap against the energy per image,
and the verdict: the cheapest point within ``--within`` points of software, or, where none is,
the closest one and what separates it from software.

The gap is the final test accuracy (mean over the point's chips) minus software's.  MNIST-backrand's
test accuracy moves by points from epoch to epoch, so the report also gives the gap of the mean
over the last ``--last`` epochs; the verdict uses the final epoch's, as every report of the project.

    python benchmarks/backrand_design.py runs/backrand-design runs/backrand-errors runs/backrand-best \\
        runs/backrand-leak runs/backrand-leak-fine --out docs/results/backrand-design
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

#: the swept parameters, their column names and units in the report
PARAMETERS = {
    "chip.capacitor.pull_current_na": ("pull current (nA)", "capacitor.pull_current_na"),
    "chip.update.pulse_train_length": ("train slots", "update.pulse_train_length"),
    "chip.capacitor.current_mismatch_rel": ("current mismatch", "capacitor.current_mismatch_rel"),
    "chip.transfer.tolerance_us": ("tolerance (uS)", "transfer.tolerance_us"),
    "chip.capacitor.leak_time_constant_s": ("leak tau (s)", "capacitor.leak_time_constant_s"),
}


def _default(chip, dotted: str) -> float:
    obj = chip
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return float(obj)


def load(folders: list[Path]) -> tuple[list[dict], dict]:
    """Per point (chip rows pooled): study, parameters, accuracies; and the software baseline."""
    import analogtrain as at

    chip = at.get_preset("nature2018").chip
    points: dict[tuple[str, str], dict] = {}
    software: dict | None = None
    for folder in folders:
        for row, study in _rows(folder):
            if row["status"] != "done":
                continue
            if row["preset"] == "software":
                software = software or {"rows": []}
                if (row["point"], row["chip"]) not in {(r["point"], r["chip"]) for r in software["rows"]}:
                    software["rows"].append(row)
                continue
            key = (study, row["point"])
            p = points.setdefault(key, {"study": study, "point": row["point"], "rows": [],
                                        "energy_j": row["energy_per_image_j"],
                                        "time_s": row["chip_time_per_image_s"]})
            for col, (_, field) in PARAMETERS.items():
                v = row.get(col)
                p[col] = float(v) if v is not None else _default(chip, field)
            p["rows"].append(row)
    if software is None:
        raise SystemExit("no software baseline in these sweeps: one of them must train the software preset")
    return list(points.values()), software


def _rows(folder: Path) -> list[tuple[dict, str]]:
    """The sweep's table rows with the sweep's name: its ``results.parquet``, or, for a sweep
    still running or stopped (no table yet), the rows its finished points give, made by the
    sweep's own table code."""
    import pyarrow.parquet as pq

    table = folder / "results.parquet"
    if table.exists():
        study = (folder / "report.md").read_text(encoding="utf-8").splitlines()[0].removeprefix("# Sweep: ")
        return [(r, study) for r in pq.read_table(table).to_pylist()]
    marker = folder / "sweep.json"
    if not marker.exists():
        raise SystemExit(f"{folder} holds no sweep (no results.parquet, no sweep.json)")
    import json

    from analogtrain.sweep import parse_spec
    from analogtrain.sweep.point import read_result
    from analogtrain.sweep.table import rows

    spec = parse_spec(json.loads(marker.read_text(encoding="utf-8"))["spec"])
    points = [p.to_dict() for p in spec.points()]
    done = {p["id"]: r for p in points if (r := read_result(folder, p["id"])) is not None}
    return [(r, spec.name + " (unfinished)") for r in rows(spec, points, done)]


def summarise(rows: list[dict], last: int) -> dict:
    final = [r["final_accuracy"] for r in rows]
    tail = [statistics.mean(r["accuracy_per_epoch"][-last:]) for r in rows]
    return {"final": statistics.mean(final), "min": min(final), "max": max(final), "tail": statistics.mean(tail),
            "chips": len(rows)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweeps", nargs="+", type=Path, help="--out folders of the backrand design sweeps")
    ap.add_argument("--out", type=Path, required=True, help="folder for report.md and figures/")
    ap.add_argument("--within", type=float, default=1.0, help="the gap (points) that counts as equivalent (default 1)")
    ap.add_argument("--last", type=int, default=5, help="epochs averaged for the steadier gap (default 5)")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points, software = load(args.sweeps)
    sw = summarise(software["rows"], args.last)
    for p in points:
        p.update(summarise(p["rows"], args.last))
        p["gap"] = 100 * (p["final"] - sw["final"])
        p["gap_tail"] = 100 * (p["tail"] - sw["tail"])
    points.sort(key=lambda p: (p["study"], p["energy_j"]))
    ok = [p for p in points if p["gap"] >= -args.within]
    best = max(points, key=lambda p: p["gap"])

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "figures").mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    studies = sorted({p["study"] for p in points})
    for i, study in enumerate(studies):
        ps = [p for p in points if p["study"] == study]
        ax.scatter([1e9 * p["energy_j"] for p in ps], [p["gap"] for p in ps], s=40, color=f"C{i}", label=study)
        ax.scatter([1e9 * p["energy_j"] for p in ps], [p["gap_tail"] for p in ps], s=40, facecolors="none",
                   edgecolors=f"C{i}")
        for p in ps:
            label = ", ".join(f"{p[c]:g}" for c in PARAMETERS)
            ax.annotate(label, (1e9 * p["energy_j"], p["gap"]), fontsize=6, xytext=(4, 3), textcoords="offset points")
    ax.axhline(-args.within, color="k", ls="--", lw=0.8)
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_xlabel("chip energy per training image (nJ), cost model with the point's update train")
    ax.set_ylabel("gap to software (points)")
    ax.set_title(f"MNIST-backrand: gap to software against cost (filled: final epoch; open: last {args.last} "
                 f"epochs)\nlabels: {', '.join(v[0] for v in PARAMETERS.values())}", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out / "figures" / "gap_vs_energy.png", dpi=130)
    plt.close(fig)

    head = " | ".join(v[0] for v in PARAMETERS.values())
    lines = [
        "# What the chip needs on MNIST-backrand",
        "",
        f"Made by `python benchmarks/backrand_design.py {' '.join(str(s) for s in args.sweeps)} --out {args.out}` "
        "from the sweeps' tables. Each point trained 3 chips for 20 epochs (seed 0); the software baseline "
        f"reaches {100 * sw['final']:.2f} % ({100 * sw['min']:.2f}-{100 * sw['max']:.2f} %) after its last epoch and "
        f"{100 * sw['tail']:.2f} % over its last {args.last}. Gaps are chip minus software, in points. Energy and "
        "chip time per training image come from the cost model with the point's own update train.",
        "",
        "![gap against energy](figures/gap_vs_energy.png)",
        "",
        f"| study | {head} | accuracy (%) | gap (final) | gap (last {args.last} epochs) | energy (nJ) | time (ns) |",
        "|---|" + "---|" * len(PARAMETERS) + "---|---|---|---|---|",
    ]
    for p in points:
        vals = " | ".join(f"{p[c]:g}" for c in PARAMETERS)
        lines.append(f"| {p['study']} | {vals} | {100 * p['final']:.2f} ({100 * p['min']:.2f}-{100 * p['max']:.2f}) | "
                     f"{p['gap']:+.2f} | {p['gap_tail']:+.2f} | {1e9 * p['energy_j']:.1f} | {1e9 * p['time_s']:.0f} |")
    lines += ["", "## Verdict", ""]

    def named(p: dict) -> str:
        return ", ".join(f"{v[0]} {p[c]:g}" for c, v in PARAMETERS.items())

    if ok:
        cheap = min(ok, key=lambda p: p["energy_j"])
        lines.append(f"{len(ok)} of {len(points)} points come within {args.within:g} point of software. The cheapest: "
                     f"{named(cheap)} (gap {cheap['gap']:+.2f}, {1e9 * cheap['energy_j']:.1f} nJ and "
                     f"{1e9 * cheap['time_s']:.0f} ns per image).")
    else:
        lines.append(f"No point comes within {args.within:g} point of software. The closest: {named(best)} "
                     f"(gap {best['gap']:+.2f}; {best['gap_tail']:+.2f} over the last {args.last} epochs).")
    ok_tail = sorted((p for p in points if p["gap_tail"] >= -args.within), key=lambda p: p["energy_j"])
    if ok_tail:
        lines += ["", f"Over the mean of the last {args.last} epochs (the steadier figure), {len(ok_tail)} of "
                  f"{len(points)} points come within {args.within:g} point of software, cheapest first:", ""]
        lines += [f"* {named(p)}: gap {p['gap_tail']:+.2f} ({p['gap']:+.2f} at the last epoch), "
                  f"{1e9 * p['energy_j']:.1f} nJ and {1e9 * p['time_s']:.0f} ns per image" for p in ok_tail]
    else:
        lines += ["", f"Over the mean of the last {args.last} epochs no point comes within {args.within:g} point of "
                  "software either."]
    (args.out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out / 'report.md'} and {args.out / 'figures' / 'gap_vs_energy.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
