"""The sweep's results as data: one row per point and chip, in Parquet (pyarrow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .spec import SweepSpec

TABLE_FILE = "results.parquet"


def rows(spec: SweepSpec, points: list[dict[str, Any]], results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """A row per point and chip (one row with chip = -1 for a point that did not train)."""
    out = []
    keys = [a.key for a in spec.parameters]
    for p in points:
        r = results.get(p["id"], {"status": "missing", "error": "not run"})
        base = {"point": p["id"], "preset": p["preset"], "seed": p["seed"],
                **{k: float(p["values"][k]) if isinstance(p["values"].get(k), (int, float)) else None for k in keys},
                "status": r.get("status"), "error": r.get("error"), "stopped_early": bool(r.get("stopped_early")),
                "epochs_completed": int(r.get("epochs_completed") or 0),
                "energy_per_image_j": r.get("energy_per_image_j"),
                "chip_time_per_image_s": r.get("chip_time_per_image_s"),
                "wall_s": r.get("wall_s"), "batched_with": int(r.get("batched_with") or 1), "node": r.get("node"), "host": r.get("host"), "cpu": r.get("cpu")}
        final = r.get("final_accuracy")
        if not final:
            out.append({**base, "chip": -1, "final_accuracy": r.get("final_accuracy_mean"), "accuracy_per_epoch": []})
            continue
        per_epoch = r.get("accuracy") or []
        for c, acc in enumerate(final):
            out.append({**base, "chip": c, "final_accuracy": float(acc),
                        "accuracy_per_epoch": [float(e[c]) for e in per_epoch]})
    return out


def write_table(spec: SweepSpec, points: list[dict[str, Any]], results: dict[str, dict[str, Any]],
                out: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table_rows = rows(spec, points, results)
    pq.write_table(pa.Table.from_pylist(table_rows), out / TABLE_FILE)
    return table_rows


def read_table(out: str | Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(Path(out) / TABLE_FILE).to_pylist()
