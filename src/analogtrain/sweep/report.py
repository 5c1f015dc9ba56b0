"""The sweep's report: accuracy against each swept parameter, the gap to software, and
accuracy against the cost model's energy per image with the Pareto front."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from .spec import SweepSpec


def _stats(values: list[float]) -> tuple[float, float, float]:
    return sum(values) / len(values), min(values), max(values)


def _points(rows: list[dict[str, Any]], spec: SweepSpec) -> list[dict[str, Any]]:
    """Per point: mean and spread of the final accuracy over its chips, its cost, its values."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[r["point"]].append(r)
    out = []
    for pid, rs in by.items():
        accs = [r["final_accuracy"] for r in rs if r["final_accuracy"] is not None]
        first = rs[0]
        out.append({"point": pid, "preset": first["preset"], "seed": first["seed"], "status": first["status"],
                    "error": first["error"], "stopped_early": first["stopped_early"],
                    "values": {a.key: first[a.key] for a in spec.parameters if first[a.key] is not None},
                    "acc": _stats(accs) if accs else None, "energy": first["energy_per_image_j"],
                    "time": first["chip_time_per_image_s"], "epochs": first["epochs_completed"]})
    return out


def pareto_front(pairs: list[tuple[float, float]]) -> list[int]:
    """Indices of the (energy, accuracy) pairs no other pair beats in both (less energy, more accuracy)."""
    front = []
    for i, (e, a) in enumerate(pairs):
        if not any((e2 <= e and a2 >= a) and (e2 < e or a2 > a) for j, (e2, a2) in enumerate(pairs) if j != i):
            front.append(i)
    return sorted(front, key=lambda i: pairs[i][0])


def write_report(spec: SweepSpec, rows: list[dict[str, Any]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = _points(rows, spec)
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    software = {p["seed"]: p["acc"][0] for p in pts if p["preset"] == "software" and p["acc"]}
    lines = [f"# Sweep: {spec.name}", "",
             f"{spec.dataset}, {spec.epochs} epochs, {spec.chips} chip(s) per point, seeds {list(spec.seeds)}, "
             f"method {spec.method}; presets {', '.join(spec.presets)}. Accuracy is the final test accuracy, mean "
             "over the point's chips (min-max in brackets). The gap is chip minus software of the same seed, in "
             "points (negative: below software). The table is results.parquet (a row per point and chip).", ""]
    figures = []
    for axis in spec.parameters:
        key = axis.key
        fig, ax = plt.subplots(figsize=(6, 4))
        groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
        for p in pts:
            if p["acc"] is None or p["preset"] == "software":
                continue
            others = tuple((k, v) for k, v in sorted(p["values"].items()) if k != key)
            groups[(p["preset"], others)].append(p)
        for (preset, others), ps in sorted(groups.items(), key=lambda kv: str(kv[0])):
            ps = sorted(ps, key=lambda p: p["values"][key])
            x = [p["values"][key] for p in ps]
            mean = [100 * p["acc"][0] for p in ps]
            lo = [100 * (p["acc"][0] - p["acc"][1]) for p in ps]
            hi = [100 * (p["acc"][2] - p["acc"][0]) for p in ps]
            label = preset + "".join(f", {k.split('.')[-1]}={v:g}" for k, v in others if v is not None)
            ax.errorbar(x, mean, yerr=[lo, hi], marker="o", capsize=3, label=label)
        for seed, acc in software.items():
            ax.axhline(100 * acc, color="k", ls="--", lw=1, label=f"software (seed {seed})")
        if axis.kind == "log_uniform" or (axis.kind == "values" and _spans_decades(axis.values)):
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel("final test accuracy (%)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"accuracy_vs_{key.replace('.', '_')}.png"
        fig.savefig(fig_dir / name, dpi=110)
        plt.close(fig)
        figures.append((f"Accuracy against {key}", name))
    costed = [p for p in pts if p["acc"] is not None and p["energy"] is not None]
    if costed:
        pairs = [(p["energy"], p["acc"][0]) for p in costed]
        front = pareto_front(pairs)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.scatter([1e9 * e for e, _ in pairs], [100 * a for _, a in pairs], s=18, label="points")
        ax.plot([1e9 * pairs[i][0] for i in front], [100 * pairs[i][1] for i in front], "r-o", ms=5,
                label="Pareto front")
        ax.set_xlabel("chip energy per training image (nJ, cost model)")
        ax.set_ylabel("final test accuracy (%)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(fig_dir / "accuracy_vs_energy.png", dpi=110)
        plt.close(fig)
        figures.append(("Accuracy against the chip's energy per image (Pareto front in red)", "accuracy_vs_energy.png"))
        for i in front:
            costed[i]["pareto"] = True
    for title, name in figures:
        lines += [f"## {title}", "", f"![{title}](figures/{name})", ""]
    head = ["point", "preset", *[a.key for a in spec.parameters], "seed", "accuracy (%)", "gap (points)",
            "energy/image (nJ)", "time/image (ns)", "status"]
    lines += ["## Points", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in sorted(pts, key=lambda p: (p["preset"], [str(v) for v in p["values"].values()], p["seed"])):
        acc = (f"{100 * p['acc'][0]:.2f} ({100 * p['acc'][1]:.2f}-{100 * p['acc'][2]:.2f})" if p["acc"] else "-")
        gap = (f"{100 * (p['acc'][0] - software[p['seed']]):+.2f}" if p["acc"] and p["seed"] in software
               and p["preset"] != "software" else "-")
        status = p["status"] + (" (stopped early by ASHA, epoch %d)" % p["epochs"] if p["stopped_early"] else "")
        if p["status"] == "failed":
            status += f": {p['error']}"
        if p.get("pareto"):
            status += ", Pareto front"
        lines.append("| " + " | ".join([p["point"], p["preset"], *[_fmt(p["values"].get(a.key)) for a in spec.parameters],
                                        str(p["seed"]), acc, gap,
                                        f"{1e9 * p['energy']:.3g}" if p["energy"] else "-",
                                        f"{1e9 * p['time']:.3g}" if p["time"] else "-", status]) + " |")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def _spans_decades(values: tuple[Any, ...]) -> bool:
    nums = [v for v in values if isinstance(v, (int, float)) and v > 0]
    return len(nums) > 2 and max(nums) / min(nums) >= 30 and not math.isclose(max(nums), min(nums))
