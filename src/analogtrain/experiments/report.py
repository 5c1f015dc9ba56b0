"""The report of a reproduction run: ``report.md`` with its figures (:mod:`.figures`) and the
checks against the paper (:mod:`.checks`).

Everything here works from the results dict that :func:`analogtrain.experiments.reproduce.run_reproduction`
returns (and writes to ``results.json``) plus the per-synapse pulse windows it saves under
``data/``, so a report can be re-rendered from a finished folder::

    analogtrain report runs/reproduce          # or: python -m analogtrain.experiments.report runs/reproduce

Several runs of one experiment merge into one report (:mod:`analogtrain.experiments.merge`).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402

from ..runs.results import EpochRecord, ExperimentResult, RunResult, TrainingResult  # noqa: E402
from ..runs.store import atomic_write  # noqa: E402
from .analysis import paper_figure_of_merit, variant_cost  # noqa: E402
from .checks import (  # noqa: E402
    HELD,
    cell_kind,
    ed_fig2_reading,
    final_accuracy,
    paper_checks,
    pulse_windows,
)
from .figures import figure_paths, has_layer_stats, write_figures  # noqa: E402


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, val in d.items():
        key = f"{prefix}{k}"
        if isinstance(val, dict):
            out.update(_flatten(val, key + "."))
        else:
            out[key] = val
    return out


def _fmt(x: Any, nd: int = 2) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        if math.isnan(x):
            return "n/a"
        return f"{x:,.{nd}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def _n(count: Any, word: str) -> str:
    """'1 chip', '3 chips'."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def _cell(text: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _verdict_md(v: str) -> str:
    return {"reproduced": "reproduced", "not reproduced": "**NOT REPRODUCED**", "inconclusive": "*inconclusive*",
            "not evaluated": "not evaluated"}.get(v, v)


def _experiment_md(entry: ExperimentResult, out: Path, quick: bool) -> list[str]:
    exp = entry.experiment
    ds = entry.dataset
    st = entry.settings
    variants = entry.variants
    figs = figure_paths(out, exp)
    rel = {k: p.relative_to(out).as_posix() for k, p in figs.items()}
    L: list[str] = [f"## {exp}", ""]
    if entry.reduced and not quick:
        L += [f"> **Reduced run:** {'; '.join(entry.reduced)}. The verdicts below are for this run, not for the "
              "paper's full-size experiment.", ""]
    if ds.get("stand_in"):
        L += [f"> **Stand-in data:** {ds.get('description')}. Reason: {ds.get('stand_in_reason')}.", ""]
    L += [
        f"* data: {ds.get('description', ds.get('name'))}; {_fmt(ds.get('n_train'))} training / "
        f"{_fmt(ds.get('n_test'))} test examples, {ds.get('n_inputs')} inputs, {ds.get('n_classes')} classes",
    ]
    meta = ds.get("meta") or {}
    if meta.get("regenerated"):
        L.append(f"* MNIST-backrand is a **regeneration** (seed {meta.get('seed')}, combine '{meta.get('combine')}'): "
                 "the original archive is no longer downloadable; recipe in `analogtrain.data.backrand`")
    if isinstance(meta.get("original_sizes"), dict):
        o = meta["original_sizes"]
        L.append(f"* the full dataset has {_fmt(o.get('train'))} training / {_fmt(o.get('valid'))} validation / "
                 f"{_fmt(o.get('test'))} test examples (the validation split is not used)")
    if isinstance(meta.get("subset"), dict):
        s = meta["subset"]
        L.append(f"* subset of {_fmt(s['of']['n_train'])} / {_fmt(s['of']['n_test'])} available examples")
    if ds.get("images"):
        im = ds["images"]
        dev = " (the development subset, not the full 50,000)" if im.get("development_subset") else ""
        L.append(f"* images: {_fmt(im.get('n_train_available'))} training{dev} / {_fmt(im.get('n_test_available'))} "
                 f"test available ({im.get('source')})")
    if ds.get("features"):
        f = ds["features"]
        sc = ds.get("scaling", {})
        L.append(f"* features: {f['backbone']} at {f['input_size']} px, {f['num_features']} per image (the paper: "
                 f"2,048 from an unnamed pretrained network); {sc.get('method')}; {sc.get('constant_features')} "
                 f"constant features; {100 * sc.get('test_values_clipped_fraction', 0):.2f}% of test values clipped; "
                 f"extraction or cache load {f.get('extract_or_load_s', 0):.1f} s")
    L.append(f"* network {'-'.join(str(n) for n in entry.network)} (biases as an extra input row); "
             f"{_n(st.get('epochs'), 'epoch')}, learning rate {st.get('learning_rate')}, minibatch 1; transfer every "
             f"{_fmt(st.get('transfer_interval_examples'))} examples; 2-PCM RESET check every "
             f"{_fmt(st.get('reset_check_interval_examples'))}")
    if st.get("overrides"):
        from ..config import flatten_overrides

        L.append("* config overrides applied to every variant on top of its preset: "
                 + ", ".join(f"`{k} = {json.dumps(v)}`" for k, v in flatten_overrides(st["overrides"])))
    counts = {name: res.chips for name, res in variants.items()}
    if len(set(counts.values())) <= 1:
        chips_text = f"{_n(next(iter(counts.values()), 0), 'chip')} per variant"
    else:  # a merged report: variants from runs with different chip counts
        chips_text = "chips per variant: " + ", ".join(f"{n} {c}" for n, c in counts.items())
    L.append(f"* {chips_text}, trained together in one trainer (same data order "
             "and initial weights, independent device draws and noise; chip c starts from the same weights in "
             f"every variant); wall time of the experiment {_fmt(entry.wall_s, 1)} s")
    L.append("")

    # accuracy
    L += ["### Test accuracy", "", f"![accuracy]({rel['accuracy']})", ""]
    sw = final_accuracy(variants.get("software"))
    L += ["| variant | final test accuracy (mean) | min - max over chips | chip - software (points) | "
          "wall time (s) | images/s (all chips) |", "|---|---|---|---|---|---|"]
    for name, res in variants.items():
        f = final_accuracy(res)
        if f is None:
            continue
        gap = "-" if name == "software" or sw is None else f"{f[0] - sw[0]:+.2f}"
        L.append(f"| {name} | {f[0]:.2f}% | {f[1]:.2f} - {f[2]:.2f}% | {gap} | {_fmt(res.wall_s, 1)} | "
                 f"{_fmt(res.images_per_s, 0)} |")
    L += ["", "chip - software: the variant's accuracy minus software's, in points; negative means the variant is "
          "below software.", ""]
    batched = [name for name, res in variants.items() if res.analysis.get("trained_in_batch_with")]
    if batched:
        L += [f"{', '.join(batched)} trained as one batch of chips (`--batch-variants`), each variant's chips with "
              "the results they have alone; their wall time is the batch's.", ""]

    checks = entry.checks or paper_checks(entry, quick)
    L += ["### The paper's claims", "", "| claim | paper | this run | verdict |", "|---|---|---|---|"]
    for c in checks:
        L.append(f"| {_cell(c['claim'])} | {_cell(c['paper'])} | {_cell(c['ours'])} | {_verdict_md(c['verdict'])} |")
    bad = [c for c in checks if c["verdict"] == "not reproduced"]
    L.append("")
    if bad:
        L.append("**Not reproduced here:** " + "; ".join(c["claim"] for c in bad) + ".")
        L.append("")

    # pulses
    L += ["### Update pulses per synapse (ED Fig. 2)", "", f"![pulse statistics]({rel['pulse_statistics']})", "",
          "Per tracked synapse (up to 4,096 per layer and chip), over the last complete window of two transfer "
          "intervals; the paper (MNIST, 16,000 images): about +-100 net of 1,000 total for the 2PCM+3T1C cell, "
          "+-10 of 50 for the 2-PCM cell.", "",
          "| variant | layer | window (examples) | median total | median abs(net) | p90 total | p90 abs(net) |",
          "|---|---|---|---|---|---|---|"]
    rows = 0
    for name, res in variants.items():
        for li, ps in enumerate(res.pulse_statistics or []):
            if ps:
                L.append(f"| {name} | {li + 1} | {_fmt(ps['window_examples'])} | {ps['median_total']:.0f} | "
                         f"{ps['median_abs_net']:.0f} | {ps['p90_total']:.0f} | {ps['p90_abs_net']:.0f} |")
                rows += 1
        pooled = res.analysis.get("pulse_statistics_pooled")
        if pooled:
            L.append(f"| {name} | all | {_fmt(pooled['window_examples'])} | {pooled['median_total']:.0f} | "
                     f"{pooled['median_abs_net']:.0f} | {pooled['p90_total']:.0f} | {pooled['p90_abs_net']:.0f} |")
    if not rows:
        L.append("| (no complete window in this run) | | | | | | |")
    L.append("")
    L += ["#### Over the whole run", "", f"![pulse windows]({rel['pulse_windows']})", "",
          "The same statistics for every window of two transfer intervals from the start of training (every layer "
          "and chip pooled). The figure in the paper gives one typical synapse over 16,000 images without saying "
          "when in the run they were counted; where its numbers fit this run (within a factor 3):", ""]
    for name, res in variants.items():
        if pulse_windows(res):
            L.append(f"* {name}: {ed_fig2_reading(res, cell_kind(res))}")
    L.append("")

    # transfers
    L += ["### Programming pulses", "", f"![transfer pulses]({rel['transfer_pulses']})", "",
          "| variant | transfers | initial programming (pulses/chip) | transfer tuning (pulses/chip, total) | "
          "per transfer per cell | unconverged devices/chip | 2-PCM occasional RESET (pulses/chip) | "
          "update pulses/chip |", "|---|---|---|---|---|---|---|---|"]
    for name, res in variants.items():
        if cell_kind(res) == "digital":
            continue
        chips = res.chips or 1
        cells = sum(res.cells_per_layer) or 1
        tp = sum(res.transfer_tuning_pulses) / chips
        n_tr = res.transfers
        per = tp / (n_tr * cells) if n_tr else math.nan
        upd = sum(sum(x) for x in res.update_pulses if x) / chips
        L.append(f"| {name} | {n_tr} | {_fmt(sum(res.initial_programming_pulses) / chips, 0)} | "
                 f"{_fmt(tp, 0)} | {_fmt(per, 2)} | "
                 f"{_fmt(sum(res.transfer_unconverged_devices) / chips, 0)} | "
                 f"{_fmt(sum(res.occasional_reset_pulses) / chips, 0)} | {_fmt(upd, 0)} |")
    L.append("")

    L += _cost_md(variants)

    L += ["### Weight spread per epoch", "", f"![weight spread]({rel['weight_spread']})", "",
          "Measured after every epoch for every variant (software included): the std of each layer's weights, "
          "the share at the layer's analog range limit (98 % of `chip.cell.max_weight`; for software: where the "
          "chip could not hold them) and the share of test-set pre-activations at the forward ADC's clipping "
          "limit (`chip.periphery.forward_output_range`, for the output layer `output_layer_range`; for software: "
          "where the chip would clip).", "",
          "| variant | layer | weight std: epoch 1 / middle / last | at range limit, last epoch | "
          "outputs clipped, last epoch |", "|---|---|---|---|---|"]
    spread_rows = 0
    for name, res in variants.items():
        if not has_layer_stats(res):
            continue
        hist = res.history
        mid = hist[(len(hist) - 1) // 2]
        for li in range(len(hist[-1].layers)):
            def m(h: EpochRecord, key: str) -> float:
                return float(np.mean(h.layers[li][key]))

            L.append(f"| {name} | {li + 1} | {m(hist[0], 'std'):.3f} / {m(mid, 'std'):.3f} (epoch {mid.epoch}) / "
                     f"{m(hist[-1], 'std'):.3f} | {100 * m(hist[-1], 'at_range'):.2f} % | "
                     f"{100 * m(hist[-1], 'output_clipped'):.2f} % |")
            spread_rows += 1
    if not spread_rows:
        L.append("| (no per-epoch layer statistics in this run) | | | | |")
    L.append("")

    L += ["### Device state at the end", "", f"![state histograms]({rel['state_histograms']})", "",
          "At the end of training, except V_C: every transfer resets the capacitors to 0.5 V and a run of whole "
          "transfer intervals ends with one, so V_C is shown one example before the last transfer.", "",
          "| variant | layer | weight mean +- std | weight min / max | G+ mean (uS) | G- mean (uS) | "
          "V_C mean (V), before the last transfer | columns with s = -1 |", "|---|---|---|---|---|---|---|---|"]
    for name, res in variants.items():
        for li, h in enumerate(res.analysis.get("state_histograms") or []):
            w = h["weight"]
            gp = h.get("g_plus_us", {}).get("mean")
            gm = h.get("g_minus_us", {}).get("mean")
            pre = res.analysis.get("state_histograms_before_last_transfer") or []
            vc = (pre[li] if li < len(pre) else h).get("v_c_v", {}).get("mean")
            pol = h.get("polarity_negative_fraction")
            L.append(f"| {name} | {li + 1} | {w['mean']:.3f} +- {w['std']:.3f} | {w['min']:.2f} / {w['max']:.2f} | "
                     f"{_fmt(gp)} | {_fmt(gm)} | {_fmt(vc, 3)} | {'-' if pol is None else f'{100 * pol:.0f}%'} |")
    L.append("")

    t = entry.timing
    L += ["### Cost of batching chips", ""]
    if t:
        L += [f"The same {t['examples']:,} training steps of {t['variant']}: one chip {t['wall_1chip_s']:.2f} s, "
              f"{t['chips']} chips in one trainer {t['wall_batched_s']:.2f} s: **{t['ratio']:.2f}x** the time of one "
              f"chip for {t['chips']}x the chips ({t['per_chip_speedup']:.2f}x faster per chip than one at a "
              "time).", ""]
    else:
        L += ["Not measured (one chip, or measurement switched off).", ""]

    # parameters
    base_name = "nature2018" if "nature2018" in variants else next(iter(variants), None)
    L += ["### Parameters", ""]
    if base_name:
        base = _flatten(variants[base_name].config)
        L += [f"Each variant's config differs from {base_name}'s in:", "", "| variant | differences |", "|---|---|"]
        for name, res in variants.items():
            if name == base_name:
                continue
            cfg = _flatten(res.config)
            diff = [f"`{k}` = {cfg.get(k)!r}" for k in sorted(set(base) | set(cfg)) if base.get(k) != cfg.get(k)]
            L.append(f"| {name} | {_cell(', '.join(diff) or '(none)')} |")
        L += ["", f"<details><summary>full {base_name} config of this experiment</summary>", "", "```json",
              json.dumps(variants[base_name].config, indent=1), "```", "</details>", ""]
    return L


def _cost_md(variants: dict[str, TrainingResult]) -> list[str]:
    """The cost section: the paper's figure of merit as the cost model recomputes it, and what
    each 2PCM+3T1C variant's training cost with the update train it simulated."""
    paper = paper_figure_of_merit()
    L = ["### What training costs on the chip (cost model)", "",
         f"The paper's figure of merit as the cost model recomputes it, with its own update of "
         f"{paper['update_slots']} slots of {paper['update_pulse_ns']:g} ns: {paper['gops_per_w']:,.0f} GOP/s/W and "
         f"{paper['tops_per_mm2']:.2f} TOP/s/mm^2 (paper: {paper['paper_gops_per_w']:,.0f} and "
         f"{paper['paper_tops_per_mm2']:g}). Each variant below is costed with the update pulse train it simulated "
         "and the pulses it fired (docs/cost_model.md, \"A run's cost\"); the figure of merit of that update train "
         "is what the chip that trained in this run would reach.", "",
         "| variant | update train | energy per image (nJ) | chip time per image (ns) | GOP/s/W of the run | "
         "figure of merit GOP/s/W | TOP/s/mm^2 |", "|---|---|---|---|---|---|---|"]
    rows = 0
    for name, res in variants.items():
        c = variant_cost(res)
        if c is None:
            continue
        L.append(f"| {name} | {c['update_slots']} x {c['update_pulse_ns']:g} ns | "
                 f"{1e9 * c['energy_per_image_j']:,.1f} | {1e9 * c['chip_time_per_image_s']:,.0f} | "
                 f"{c['run_gops_per_w']:,.0f} | {c['fom_gops_per_w']:,.0f} | {c['fom_tops_per_mm2']:.2f} |")
        rows += 1
    if not rows:
        L.append("| (no 2PCM+3T1C variant in this run) | | | | | | |")
    return [*L, ""]


def report_markdown(results: RunResult, out: Path) -> str:
    quick = results.quick
    exps = results.experiments
    env = results.environment
    L = ["# Reproduction of Ambrogio et al., Nature 558, 60-67 (2018)" if results.command == "reproduce" else
         f"# analogtrain {results.command}: {', '.join(results.variants)} on {results.experiment}", ""]
    if quick:
        L += ["> **SMOKE RUN (`--quick`)**: small subsets, few epochs, a short transfer interval and low-resolution "
              "CIFAR features; where a dataset was not on disk the embedded 8x8 digits stand in. The numbers show "
              "that the pipeline works; they are **not** a reproduction of the paper and the claims below are not "
              "evaluated.", ""]
    if not results.complete:
        L += ["> **Incomplete:** the run is still going or was interrupted; this report shows what has finished.", ""]
    chips = results.chips
    chips_text = (_n(chips, "simulated chip") if not isinstance(chips, list)
                  else f"{' or '.join(str(c) for c in chips)} simulated chips (see each variant)")
    L += [f"* experiment(s): {', '.join(exps) or 'none yet'}; variants: {', '.join(results.variants)}",
          f"* {chips_text} per variant, seed {results.seed}, "
          f"{_n(results.threads, 'torch thread')}, device {results.device}",
          f"* total wall time {_fmt(results.wall_s, 1)} s; analogtrain {env.get('analogtrain')}, "
          f"torch {env.get('torch')}, Python {env.get('python')}, {env.get('platform')}, "
          f"{'CPU ' + env['cpu'] + ', ' if env.get('cpu') else ''}{env.get('time_utc')}",
          "* everything below is in `results.json` (full configs, per-epoch accuracy per chip, pulse counts, "
          "histograms); per-synapse pulse windows are in `data/*.npz`"]
    merged = results.extra.get("merged_from", [])
    for m in merged:
        cpu = f"; CPU {m['cpu']}" if m.get("cpu") else ""
        L.append(f"* merged from `{m['run']}` ({', '.join(m['variants'])}; {_n(m['chips'], 'chip')}; started "
                 f"{m.get('time_utc')}{cpu})")
    cpus = {m.get("cpu") or "not recorded" for m in merged}
    if len(cpus) > 1:
        L.append("* **the merged runs ran on different (or unrecorded) CPUs**: float kernels differ between CPUs, "
                 "so the same seed need not give the same run, and the gaps below may mix that spread with the "
                 "variants' (on MNIST the software baseline moved 0.24 points between two machines)")
    for s in results.extra.get("merge_skipped", []):
        L.append(f"* not used (also in another run, which trained more chips or was given first): {s}")
    L.append("")
    if len(exps) > 1:
        names = list(results.variants)
        L += ["## Summary", "", "| experiment | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for exp, entry in exps.items():
            v = entry.variants
            sw = final_accuracy(v.get("software"))
            cells = []
            for n in names:
                f = final_accuracy(v[n]) if n in v else None
                if f is None:
                    cells.append("-")
                elif sw is None or n == "software":
                    cells.append(f"{f[0]:.2f}%")
                else:
                    cells.append(f"{f[0]:.2f}% ({sw[0] - f[0]:+.2f})")
            L.append(f"| {exp} | " + " | ".join(cells) + " |")
        L += ["", "Final test accuracy, mean over chips (gap to software in points).", ""]
    for entry in exps.values():
        L += _experiment_md(entry, out, quick)
    return "\n".join(L) + "\n"


def write_report(results: RunResult, out: str | Path, figures: str | list[str] | None = None) -> Path:
    """``out/report.md`` and the figures of the experiments in ``results``; returns the report's path.

    ``figures``: the experiments whose figures are (re)drawn (default: all); the figures of the
    others are drawn only if missing.
    """
    out = Path(out)
    quick = results.quick
    redraw = None if figures is None else ([figures] if isinstance(figures, str) else list(figures))
    for name, entry in results.experiments.items():
        if not entry.variants:
            continue
        missing = not all(p.is_file() for p in figure_paths(out, name).values())
        if redraw is None or name in redraw or missing:
            write_figures(entry, out, quick)
    text = report_markdown(results, out)
    return atomic_write(out / "report.md", text.encode("utf-8"))


def summary_text(results: RunResult) -> str:
    """A few lines for the terminal: final accuracies, gaps, claims not reproduced, batching ratio."""
    lines = []
    for exp, entry in results.experiments.items():
        v = entry.variants
        sw = final_accuracy(v.get("software"))
        parts = []
        for name, res in v.items():
            f = final_accuracy(res)
            if f is None:
                continue
            gap = "" if sw is None or name == "software" else f" ({f[0] - sw[0]:+.2f})"
            parts.append(f"{name} {f[0]:.2f}%{gap}")
        lines.append(f"{exp}: " + ", ".join(parts))
        if sw is not None and len(parts) > 1:
            lines.append("  (in brackets: chip - software in points; negative means below software)")
        t = entry.timing
        if t:
            lines.append(f"  {t['chips']} chips batched cost {t['ratio']:.2f}x one chip ({t['examples']} steps)")
        bad = [c["claim"] for c in entry.checks or [] if c["verdict"] == "not reproduced"]
        if bad:
            lines.append("  not reproduced: " + "; ".join(bad))
    return "\n".join(lines)


def _variant_name_now(name: str, res: TrainingResult) -> str:
    """The current name of a variant recorded under an older preset name: until the reference
    decision, ``nature2018`` held its reference (now ``nature2018-held-reference``) and the
    leaking reference was ``nature2018-leaking-reference`` (now ``nature2018``)."""
    ref = (res.config.get("chip", {}).get("cell", {}) or {}).get("shared_reference", "held")
    if name == "nature2018" and ref == "held":
        return HELD
    if name == "nature2018-leaking-reference":
        return "nature2018"
    return name


def upgrade_variant_names(results: RunResult) -> RunResult:
    """Rename variants of results written before the reference decision (see :func:`_variant_name_now`)."""
    renames: dict[str, str] = {}
    for entry in results.experiments.values():
        new = {}
        for name, res in entry.variants.items():
            now = _variant_name_now(name, res)
            renames[name] = now
            res.variant = now if res.variant is not None else None
            new[now] = res
        entry.variants = new
    results.variants = [renames.get(v, v) for v in results.variants]
    return results


def load_results(run: str | Path) -> RunResult:
    """The results of a run folder (any results version), variants under their current names;
    a one-line :class:`DataError` if it holds none."""
    return upgrade_variant_names(RunResult.read(run))


def render(out: str | Path) -> Path:
    """Re-render the report of a finished (or partial) run folder from its results.json, with the
    checks against the paper as this version makes them (results.json is left as the run wrote it)."""
    results = load_results(out)
    for entry in results.experiments.values():
        if entry.variants:
            entry.checks = paper_checks(entry, results.quick)
    return write_report(results, Path(out))


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) != 2:
        print("usage: python -m analogtrain.experiments.report RUN_DIR", file=sys.stderr)
        sys.exit(2)
    print(render(sys.argv[1]))
