"""The figures of a reproduction report, from its results (matplotlib, Agg backend).

Figures (matplotlib, Agg backend), per experiment ``E``, under ``figures/``:

* ``E_accuracy.png``: test accuracy vs epoch per variant (mean over chips, min-max band), and
  the gap to the software baseline in points (chip - software);
* ``E_pulse_statistics.png``: ED Fig. 2 of the paper: per tracked synapse, net vs total update
  pulses over the last complete window of two transfer intervals, for ``nature2018`` and ``2pcm``;
* ``E_state_histograms.png``: G+, G-, V_C and weights at the end of training, per layer;
* ``E_transfer_pulses.png``: PCM programming pulses per transfer (per chip);
* ``E_weight_spread.png``: per layer and epoch, the spread (std) of the weights, the share of
  weights at the layer's analog range limit and the share of forward outputs the ADC clips,
  per variant (software included), from ``Trainer.layer_statistics``.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..errors import OutputError  # noqa: E402
from ..runs.results import ExperimentResult, TrainingResult  # noqa: E402
from .checks import PAPER_PULSES, pulse_windows  # noqa: E402

FIGURE_KINDS = ("accuracy", "pulse_statistics", "pulse_windows", "state_histograms", "transfer_pulses",
                "weight_spread")


COLORS = {
    "software": "black",
    "nature2018": "tab:blue",
    "nature2018-no-inversion": "tab:red",
    "2pcm": "tab:green",
    "nature2018-ideal-cmos": "tab:orange",
    "nature2018-offset": "tab:purple",
    "nature2018-held-reference": "tab:cyan",
}


def _color(name: str, i: int) -> str:
    return COLORS.get(name, f"C{(i + 5) % 10}")


def figure_paths(out: Path, experiment: str) -> dict[str, Path]:
    return {k: out / "figures" / f"{experiment}_{k}.png" for k in FIGURE_KINDS}


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; choose another --out or free space") from None
    finally:
        plt.close(fig)


def _title(entry: ExperimentResult, quick: bool) -> str:
    ds = entry.dataset
    name = ds.get("name", entry.experiment)
    net = "-".join(str(n) for n in entry.network)
    t = f"{entry.experiment}: {name}, network {net}"
    if quick or ds.get("stand_in"):
        t += "  [SMOKE RUN]" if quick else "  [STAND-IN DATA]"
    return t


def plot_accuracy(entry: ExperimentResult, path: Path, quick: bool = False) -> Path:
    variants = entry.variants
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.4), dpi=110)
    sw = variants["software"].history if "software" in variants else None
    drawn = 0
    for i, (name, res) in enumerate(variants.items()):
        hist = res.history
        if not hist:
            continue
        ep = [h.epoch for h in hist]
        acc = np.array([[100 * a for a in h.test_accuracy] for h in hist])  # [epochs, chips]
        mean = acc.mean(axis=1)
        c = _color(name, i)
        ax.plot(ep, mean, marker="o", ms=3, color=c, label=f"{name} ({mean[-1]:.2f}%)")
        if acc.shape[1] > 1:
            ax.fill_between(ep, acc.min(axis=1), acc.max(axis=1), color=c, alpha=0.18, lw=0)
        drawn += 1
        if sw and name != "software" and len(sw) == len(hist):
            swm = np.array([100 * h.test_accuracy_mean for h in sw])
            gap = acc - swm[:, None]  # chip - software, as everywhere else
            ax2.plot(ep, gap.mean(axis=1), marker="o", ms=3, color=c, label=name)
            if acc.shape[1] > 1:
                ax2.fill_between(ep, gap.min(axis=1), gap.max(axis=1), color=c, alpha=0.18, lw=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("test accuracy (mean over chips, band: min-max)", fontsize=10)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(loc="lower right", fontsize=8)
    n_ep = max((len(r.history) for r in variants.values()), default=0)
    for a in (ax, ax2):
        a.set_xlim(0.5, max(1, n_ep) + 0.5)
        if n_ep <= 12:
            a.set_xticks(range(1, max(1, n_ep) + 1))
        else:
            a.xaxis.set_major_locator(MaxNLocator(10, integer=True))
    ax2.axhline(0, color="black", lw=0.8)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("chip - software (points)")
    ax2.set_title("gap to the software baseline (negative: below software)", fontsize=10)
    ax2.grid(alpha=0.3)
    if ax2.lines[1:]:
        ax2.legend(fontsize=8)
    else:
        ax2.text(0.5, 0.5, "no software baseline in this run", ha="center", va="center", transform=ax2.transAxes)
    fig.suptitle(_title(entry, quick), fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return path


def load_pulse_window(out: Path, res: TrainingResult) -> list[dict[str, np.ndarray]] | None:
    """The saved ED Fig. 2 window of one variant: per layer {'net', 'total'} [chips, tracked]."""
    name = res.analysis.get("pulse_window_file")
    if not name:
        return None
    path = out / "data" / name
    if not path.is_file():
        return None
    with np.load(path) as z:
        layers = sorted({int(k.split("_")[0][5:]) for k in z.files})
        return [{"net": z[f"layer{i}_net"], "total": z[f"layer{i}_total"]} for i in layers]


def pulse_figure_rows(variants: dict[str, TrainingResult]) -> list[str]:
    """The variants ED Fig. 2 is drawn for: the full 2PCM+3T1C cell (nature2018, else the first
    other variant with that cell and a saved window, e.g. the held reference) and the 2-PCM cell."""
    full = "nature2018" if "nature2018" in variants else next(
        (n for n, v in variants.items()
         if v.cell_kind == "2pcm+3t1c" and v.analysis.get("pulse_window_file")), None)
    return [n for n in (full, "2pcm") if n is not None and n in variants]


def plot_pulse_statistics(entry: ExperimentResult, out: Path, path: Path, quick: bool = False) -> Path:
    variants = entry.variants
    rows = pulse_figure_rows(variants)
    windows = {n: load_pulse_window(out, variants[n]) for n in rows}
    n_layers = max(1, len(entry.network) - 1)
    nr = max(1, len(rows))
    fig, axes = plt.subplots(nr, n_layers, figsize=(max(8.0, 3.9 * n_layers + 0.8), 3.4 * nr + 0.9), dpi=110,
                             squeeze=False)
    net = entry.network
    interval = entry.settings.get("transfer_interval_examples")
    for r in range(nr):
        name = rows[r] if rows else None
        w = windows.get(name) if name else None
        for li in range(n_layers):
            ax = axes[r][li]
            if not w or li >= len(w):
                ax.text(0.5, 0.5, "no complete window\n(two transfer intervals)" if name else
                        "no 2PCM+3T1C or 2-PCM variant in this run", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"{name or ''} layer {li + 1}", fontsize=9)
                continue
            tot = w[li]["total"].ravel()
            nt = w[li]["net"].ravel()
            # integer counts; net and total have the same parity (net = up - down, total = up + down), so
            # bins of an even width, centred on integers, hold both parities and show no checkerboard.
            # The axes cover 99% of the synapses (the bias row, always driven, is often far out).
            hi = max(2.0, float(np.percentile(tot, 99.0)))
            xs = 2 * max(1, math.ceil(hi / 120))
            xb = np.arange(-0.5, hi + xs, xs)
            yh = max(2.0, 1.15 * float(np.percentile(np.abs(nt), 99.0)))
            ys = 2 * max(1, math.ceil(yh / 60))
            half = math.ceil((yh + 1) / ys) * ys
            yb = np.arange(-half - 0.5, half + ys, ys)
            if hi <= 40 and yh <= 40:
                # few pulses: one marker per (total, net) pair that occurs, coloured by how many synapses
                xb = np.arange(-0.5, math.ceil(hi) + 1.5)
                half = math.ceil(yh) + 1
                yb = np.arange(-half - 0.5, half + 1.5)
                pairs, cnt = np.unique(np.stack([tot, nt], axis=1), axis=0, return_counts=True)
                size = float(np.clip(2500.0 / max(len(xb), len(yb)) ** 1.5, 4, 90))
                m = ax.scatter(pairs[:, 0], pairs[:, 1], c=cnt, s=size, marker="s", cmap="viridis",
                               norm=LogNorm(vmin=1, vmax=max(2, int(cnt.max()))), zorder=3)
                fig.colorbar(m, ax=ax, pad=0.01, fraction=0.05, label="synapses")
            else:
                counts, _, _ = np.histogram2d(tot, nt, bins=[xb, yb])
                if counts.sum() > 0:
                    m = ax.pcolormesh(xb, yb, counts.T, norm=LogNorm(vmin=1, vmax=max(2, counts.max())),
                                      cmap="viridis", shading="flat")
                    fig.colorbar(m, ax=ax, pad=0.01, fraction=0.05, label="synapses")
            xe = float(xb[-1])
            ax.plot([0, xe], [0, xe], "w--", lw=0.8)
            ax.plot([0, xe], [0, -xe], "w--", lw=0.8)
            ax.set_facecolor("#202020")
            ax.set_xlim(-0.5, xe)
            ax.set_ylim(float(yb[0]), float(yb[-1]))
            outside = int(((tot > xb[-1]) | (nt < yb[0]) | (nt > yb[-1])).sum())
            note = f"\n{outside} of {tot.size} beyond the axes" if outside else ""
            ax.set_xlabel("total pulses (|up| + |down|)", fontsize=8)
            ax.set_ylabel("net pulses (up - down)", fontsize=8)
            size = f" ({net[li]}+1->{net[li + 1]})" if len(net) > li + 1 else ""
            ax.set_title(f"{name}, layer {li + 1}{size}", fontsize=9)
            ax.text(0.03, 0.97, f"median total {np.median(tot):.0f}\nmedian |net| {np.median(np.abs(nt)):.0f}{note}",
                    transform=ax.transAxes, va="top", ha="left", fontsize=8, color="white")
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
    win = f"{2 * interval:,} examples" if interval else "two transfer intervals"
    fig.suptitle(f"{_title(entry, quick)}\nupdate pulses per tracked synapse over {win} (ED Fig. 2)\n"
                 "dashed: net = +-total", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return path


_QUANTITIES = (("g_plus_us", "G+ (uS)"), ("g_minus_us", "G- (uS)"), ("v_c_v", "V_C (V)"), ("weight", "weight"))


def plot_pulse_windows(entry: ExperimentResult, path: Path, quick: bool = False) -> Path:
    """ED Fig. 2 over the whole run: per window of two transfer intervals, the median total and
    median |net| update pulses per tracked synapse (every layer and chip pooled), per analog
    variant, with the paper's typical synapse as horizontal lines."""
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2), dpi=110)
    drawn = 0
    for i, (name, res) in enumerate(entry.variants.items()):
        wins = pulse_windows(res)
        if not wins:
            continue
        x = [w["examples"] for w in wins]
        color = _color(name, i)
        for ax, key in zip(axes, ("median_total", "median_abs_net")):
            ax.plot(x, [max(w[key], 0.5) for w in wins], color=color, lw=1.4, label=name)
        ref = PAPER_PULSES.get(res.cell_kind)
        if ref is not None:
            axes[0].axhline(ref["total"], color=color, ls=":", lw=1)
            axes[1].axhline(ref["net"], color=color, ls=":", lw=1)
        drawn += 1
    for ax, what in zip(axes, ("median total pulses", "median |net| pulses")):
        ax.set_yscale("log")
        ax.set_xlabel("examples (end of the window)")
        ax.set_ylabel(f"{what} per synapse and window")
        ax.grid(alpha=0.3, which="both")
    if drawn:
        axes[0].legend(fontsize=8)
    else:
        for ax in axes:
            ax.text(0.5, 0.5, "no pulse windows in this run", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(_title(entry, quick) + "\nupdate pulses per window of two transfer intervals; dotted: the paper's "
                 "typical synapse (ED Fig. 2)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return path


def plot_state_histograms(entry: ExperimentResult, path: Path, quick: bool = False) -> Path:
    variants = entry.variants
    n_layers = max(1, len(entry.network) - 1)
    fig, axes = plt.subplots(n_layers, 4, figsize=(15, 2.9 * n_layers + 0.7), dpi=100, squeeze=False)
    for li in range(n_layers):
        for qi, (key, label) in enumerate(_QUANTITIES):
            ax = axes[li][qi]
            any_drawn = False
            for i, (name, res) in enumerate(variants.items()):
                hs = res.analysis.get("state_histograms") or []
                if key == "v_c_v" and res.analysis.get("state_histograms_before_last_transfer"):
                    hs = res.analysis["state_histograms_before_last_transfer"]  # at the very end every V_C is reset
                if li >= len(hs) or key not in hs[li]:
                    continue
                h = hs[li][key]
                counts = np.asarray(h["counts"], dtype=float)
                edges = np.asarray(h["edges"], dtype=float)
                if counts.sum() <= 0:
                    continue
                dens = counts / (counts.sum() * np.diff(edges))
                ax.stairs(dens, edges, color=_color(name, i), label=name, lw=1.2)
                any_drawn = True
            if any_drawn:
                ax.set_yscale("log")
            else:
                ax.text(0.5, 0.5, "no variant has it", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            ax.set_xlabel(label, fontsize=8)
            ax.set_ylabel("density", fontsize=8)
            what = " before the last transfer" if key == "v_c_v" else " at the end"
            ax.set_title(f"layer {li + 1}: {label}{what}", fontsize=9)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    fig.suptitle(f"{_title(entry, quick)}\nstate at the end of training (V_C: one example before the last transfer, "
                 "which resets it); all chips pooled", fontsize=10)
    handles = [plt.Line2D([], [], color=_color(n, i), lw=1.5) for i, n in enumerate(variants)]
    fig.legend(handles, list(variants), loc="lower center", ncol=max(1, len(handles)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.045 if n_layers > 1 else 0.09, 1, 1))
    _save(fig, path)
    return path


def plot_transfer_pulses(entry: ExperimentResult, path: Path, quick: bool = False) -> Path:
    variants = entry.variants
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    drawn = False
    for i, (name, res) in enumerate(variants.items()):
        log = res.analysis.get("transfer_pulse_log") or []
        if not log:
            continue
        chips = res.chips
        cells = sum(res.cells_per_layer) or 1
        x = [0] + [e["examples"] for e in log]
        y = [sum(res.initial_programming_pulses) / chips] + [sum(e["pulses"]) / chips for e in log]
        ax.plot(x, [v / cells for v in y], marker="o", ms=3, color=_color(name, i), label=name)
        drawn = True
    if drawn:
        ax.legend(fontsize=8)
        ax.set_ylim(bottom=0)
    else:
        ax.text(0.5, 0.5, "no transfers in this run\n(no 2PCM+3T1C variant, or fewer examples than one interval)",
                ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("training examples (0: initial programming)")
    ax.set_ylabel("programming pulses per cell")
    ax.set_title(f"{_title(entry, quick)}\nPCM closed-loop tuning pulses per transfer (per cell, mean over chips)",
                 fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    return path


def has_layer_stats(res: TrainingResult) -> bool:
    """True when every epoch of a variant's history has its per-layer statistics (runs since they exist)."""
    return bool(res.history) and all(h.layers for h in res.history)


def plot_weight_spread(entry: ExperimentResult, path: Path, quick: bool = False) -> Path:
    """Per layer (columns): weight std per epoch (top); % of weights at the analog range limit
    (solid) and % of forward outputs at the ADC's clipping limit (dashed) per epoch (bottom)."""
    variants = {name: res for name, res in entry.variants.items() if has_layer_stats(res)}
    n_layers = max((len(res.history[0].layers) for res in variants.values()), default=0)
    fig, axes = plt.subplots(2, max(1, n_layers), figsize=(3.8 * max(1, n_layers) + 0.6, 6.2), dpi=110,
                             squeeze=False)
    names = list(entry.variants)
    for name, res in variants.items():
        c = _color(name, names.index(name))
        hist = res.history
        ep = [h.epoch for h in hist]
        for li in range(len(hist[0].layers)):
            def series(key: str) -> np.ndarray:
                return np.array([np.mean(h.layers[li][key]) for h in hist])

            axes[0, li].plot(ep, series("std"), marker="o", ms=2.5, color=c, label=name)
            axes[1, li].plot(ep, 100 * series("at_range"), marker="o", ms=2.5, color=c)
            axes[1, li].plot(ep, 100 * series("output_clipped"), ls="--", color=c)
    for li in range(n_layers):
        axes[0, li].set_title(f"layer {li + 1}", fontsize=10)
        axes[1, li].set_xlabel("epoch")
        for a in axes[:, li]:
            a.grid(alpha=0.3)
            a.xaxis.set_major_locator(MaxNLocator(10, integer=True))
    if n_layers:
        axes[0, 0].set_ylabel("weight std (software units)")
        axes[1, 0].set_ylabel("% at range limit (solid)\n% outputs clipped (dashed)")
        axes[0, 0].legend(fontsize=7)
    else:
        axes[0, 0].text(0.5, 0.5, "no per-epoch layer statistics in this run\n(recorded since they were added)",
                        ha="center", va="center", transform=axes[0, 0].transAxes)
    fig.suptitle(f"{_title(entry, quick)}\nweight spread and range use per epoch (mean over chips)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return path


def write_figures(entry: ExperimentResult, out: Path, quick: bool = False) -> dict[str, Path]:
    paths = figure_paths(out, entry.experiment)
    plot_accuracy(entry, paths["accuracy"], quick)
    plot_pulse_statistics(entry, out, paths["pulse_statistics"], quick)
    plot_pulse_windows(entry, paths["pulse_windows"], quick)
    plot_state_histograms(entry, paths["state_histograms"], quick)
    plot_transfer_pulses(entry, paths["transfer_pulses"], quick)
    plot_weight_spread(entry, paths["weight_spread"], quick)
    return paths
