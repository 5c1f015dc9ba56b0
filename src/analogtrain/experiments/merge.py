"""One report from several ``analogtrain reproduce`` runs of the same experiment.

Variants of one experiment can be trained in separate processes (two cores: two runs at
once), on separate machines, or at separate times, and then shown together::

    analogtrain report runs/mnist_a runs/mnist_b --out runs/mnist

:func:`merge_runs` reads each run's ``results.json``, checks that the runs can share a report
(the same seed, the same full-size or ``--quick`` mode, and, per experiment, the same network,
schedule, learning rate and data), takes the union of their variants, copies the per-synapse
pulse windows, recomputes the checks against the paper and writes ``report.md`` and the figures.
A variant present in more than one run is taken from the run that trained more chips (the
first given, on a tie); the others are listed in the report as not used.  Every variant
keeps its own chip count, and the report gives it per variant.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path

from .._configbase import first_difference
from ..errors import DataError, OutputError
from ..runs.results import ExperimentResult
from ..runs.store import refuse_overwrite
from . import checks, report

#: what must agree between two runs of one experiment for their variants to share a report
_SAME_SETTINGS = ("settings", "network")
_SAME_DATA = ("name", "n_train", "n_test", "n_inputs", "n_classes")


def merge_runs(runs: Sequence[str | Path], out: str | Path, force: bool = False) -> Path:
    """Merge the reproduce runs in ``runs`` into one report in ``out``; returns the report's path.
    A folder that already holds a run (a merged one too) is replaced only with ``force``."""
    dirs = [Path(r) for r in runs]
    if len(dirs) < 2:
        raise DataError("merging needs at least two run folders")
    out = Path(out)
    if any(out.resolve() == d.resolve() for d in dirs):
        raise OutputError(f"--out {out} is one of the runs being merged; choose a new folder")
    refuse_overwrite(out, "results.json", "report", force, resumable=False)
    loaded = [(d, report.load_results(d)) for d in dirs]
    first_dir, first = loaded[0]
    for d, r in loaded[1:]:
        for key in ("seed", "quick"):
            if getattr(r, key) != getattr(first, key):
                raise DataError(f"{d} and {first_dir} differ in {key} ({getattr(r, key)!r} vs "
                                f"{getattr(first, key)!r}); only runs of the same seed and mode can share a report")

    experiments: dict[str, ExperimentResult] = {}
    first_run: dict[str, Path] = {}  # experiment -> the run its settings were taken from
    source: dict[tuple[str, str], Path] = {}  # (experiment, variant) -> the run the variant is taken from
    skipped: list[str] = []
    for d, r in loaded:
        for name, entry in r.experiments.items():
            merged = experiments.get(name)
            if merged is None:
                merged = experiments[name] = dataclasses.replace(entry, variants={}, checks=None, wall_s=0.0,
                                                                 timing=None)
                first_run[name] = d
            else:
                ref_dir = first_run[name]
                for key in _SAME_SETTINGS:
                    diff = first_difference(getattr(entry, key), getattr(merged, key))
                    if diff is not None:
                        raise DataError(f"{d} and {ref_dir} trained {name} with different {key} "
                                        f"({diff or key} differs); their variants cannot share a report")
                for key in _SAME_DATA:
                    if entry.dataset.get(key) != merged.dataset.get(key):
                        raise DataError(f"{d} and {ref_dir} trained {name} on different data ({key}: "
                                        f"{entry.dataset.get(key)!r} vs {merged.dataset.get(key)!r}); their "
                                        "variants cannot share a report")
            merged.wall_s += entry.wall_s
            if merged.timing is None and entry.timing:
                merged.timing = entry.timing
            for variant, res in entry.variants.items():
                if not res.history:
                    continue  # unfinished in that run
                have = merged.variants.get(variant)
                if have is not None:
                    keep_new = res.chips > have.chips
                    loser = source[(name, variant)] if keep_new else d
                    skipped.append(f"{name}/{variant} from {loser}")
                    if not keep_new:
                        continue
                merged.variants[variant] = res
                source[(name, variant)] = d

    if not any(e.variants for e in experiments.values()):
        raise DataError("none of the runs has a finished variant to report")
    try:
        (out / "data").mkdir(parents=True, exist_ok=True)
        for (name, variant), d in source.items():
            window = experiments[name].variants[variant].analysis.get("pulse_window_file")
            if window and (d / "data" / window).is_file():
                shutil.copyfile(d / "data" / window, out / "data" / window)
    except OSError as exc:
        raise OutputError(f"cannot write into {out}: {exc.strerror or exc}; choose another --out") from None

    quick = first.quick
    variants: list[str] = []
    for _, r in loaded:
        variants += [v for v in r.variants if v not in variants]
    for entry in experiments.values():
        entry.variants = {v: entry.variants[v] for v in variants if v in entry.variants}
        entry.checks = checks.paper_checks(entry, quick)
    chips = sorted({res.chips for e in experiments.values() for res in e.variants.values()})
    results = dataclasses.replace(
        first,
        experiment=",".join(experiments),
        variants=variants,
        chips=chips[0] if len(chips) == 1 else chips,
        experiments=experiments,
        wall_s=sum(r.wall_s for _, r in loaded),
        # complete when every variant some run set out to train finished in one of the runs
        complete=all(v in e.variants for e in experiments.values() for v in variants),
        extra={**first.extra,
               "merged_from": [{"run": str(d), "variants": list(r.variants), "chips": r.chips,
                                "time_utc": r.environment.get("time_utc"), "cpu": r.environment.get("cpu")}
                               for d, r in loaded],
               "merge_skipped": skipped},
    )
    results.write(out)
    return report.write_report(results, out)
