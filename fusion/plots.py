"""PNG plots of detection results: ROC, DET (FAR vs FRR, normal-deviate axes), score
histograms by method, ablation bars and robustness curves. Matplotlib's Agg backend.

Each plot has two functions: ``*_figure`` builds and returns the matplotlib figure (so
that tests and notebooks can read its axes), and ``*_plot`` / ``score_histograms`` /
``ablation_bars`` / ``robustness_curves`` write it to one PNG and return the path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fusion import metrics

__all__ = ["roc_plot", "det_plot", "score_histograms", "ablation_bars", "robustness_curves",
           "roc_figure", "det_figure", "score_histogram_figure", "ablation_figure",
           "robustness_figure", "DET_TICKS", "CHANCE_AUC"]

#: Value of each perturbation that leaves an image unchanged (where the clean point goes).
IDENTITY = {"jpeg": 100.0, "blur": 0.0, "noise": 0.0, "resize": 1.0, "gamma": 1.0}
#: Perturbations that get stronger as their value goes down (their x axis is inverted).
STRONGER_WHEN_LOWER = {"jpeg", "resize"}
#: DET tick positions (error rates); the axes run from 0.05% to 99.95%, so 0.1% and 99.9%
#: are both on the plot.
DET_TICKS = (0.001, 0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99, 0.999)
DET_LIMITS = (5e-4, 1 - 5e-4)
#: Rates are clipped here so that 0 and 1 (no errors, all errors) stay inside the axes.
DET_CLIP = (6e-4, 1 - 6e-4)
#: AUC of a detector that guesses (the chance line of ablation bars).
CHANCE_AUC = 0.5


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _finish(fig, ax, legend_loc=None):
    """Legend (unless None) and tight layout; returns the figure."""
    if legend_loc is not None:
        ax.legend(loc=legend_loc, fontsize=8)
    fig.tight_layout()
    return fig


def save_figure(fig, path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG and close it; returns the path."""
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)
    return Path(path)


def _curves(labels, scores, methods):
    """("all", labels, scores) plus one entry per fake method against all reals."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    out = [("all", labels, scores)]
    if methods is not None:
        methods = np.asarray(methods).astype(str)
        fake_methods = sorted(set(methods[labels == 1]))
        if len(fake_methods) > 1:
            for m in fake_methods:
                keep = (labels == 0) | (methods == m)
                out.append((m, labels[keep], scores[keep]))
    return [c for c in out if (c[1] == 0).any() and (c[1] == 1).any()]


def roc_plot(labels, scores, path, methods=None, title="ROC") -> Path:
    """ROC (TPR vs FPR), overall and per fake method, with the AUC in the legend: a PNG."""
    return save_figure(roc_figure(labels, scores, methods, title), path)


def roc_figure(labels, scores, methods=None, title="ROC"):
    """The figure of :func:`roc_plot`; the dotted diagonal is chance."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, y, s in _curves(labels, scores, methods):
        fpr, tpr, _ = metrics.roc_points(y, s)
        auc = metrics.core_metrics(y, s)["auc"]
        ax.plot(fpr, tpr, lw=2 if name == "all" else 1, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="chance")
    ax.set(xlabel="FPR (reals flagged as fake)", ylabel="TPR (fakes caught)", title=title,
           xlim=(0, 1), ylim=(0, 1))
    return _finish(fig, ax, "lower right")


def det_plot(labels, scores, path, methods=None, title="DET") -> Path:
    """DET curve: FAR (fakes accepted, APCER) against FRR (reals rejected, BPCER): a PNG."""
    return save_figure(det_figure(labels, scores, methods, title), path)


def det_figure(labels, scores, methods=None, title="DET"):
    """The figure of :func:`det_plot`.

    Both axes use the normal-deviate (probit) scale, labelled in % from 0.1% to 99.9%
    (:data:`DET_TICKS`); the legend gives each curve's EER in % as well. Rates are clipped
    to :data:`DET_CLIP` so that zero error rates stay on the plot, at its edge.
    """
    from scipy.stats import norm
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, y, s in _curves(labels, scores, methods):
        fpr, tpr, _ = metrics.roc_points(y, s)
        frr, far = np.clip(fpr, *DET_CLIP), np.clip(1 - tpr, *DET_CLIP)
        eer = metrics.eer(y, s)
        ax.plot(norm.ppf(frr), norm.ppf(far), lw=2 if name == "all" else 1,
                label=f"{name} (EER {100 * eer:.1f}%)")
    ticks = np.array(DET_TICKS)
    ax.set_xticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks], fontsize=7)
    ax.set_yticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks], fontsize=7)
    lim = norm.ppf(DET_LIMITS)
    ax.plot(lim, lim, "k:", lw=0.8, label="FAR = FRR")
    ax.grid(alpha=0.25)
    ax.set(xlim=lim, ylim=lim, xlabel="FRR % (reals rejected, BPCER)",
           ylabel="FAR % (fakes accepted, APCER)", title=title)
    return _finish(fig, ax, "upper right")


def score_histograms(scores, methods, path, threshold=None, title="Scores by method",
                     xlabel="fake score") -> Path:
    """Overlaid score histograms, one per method ("real" included), with the threshold: a PNG."""
    return save_figure(score_histogram_figure(scores, methods, threshold, title, xlabel), path)


def score_histogram_figure(scores, methods, threshold=None, title="Scores by method",
                           xlabel="fake score"):
    """The figure of :func:`score_histograms`: sample counts (not densities) per bin, the
    same 40 bins for every method, so that bar heights compare across methods and sets.
    ``xlabel`` names what ``scores`` are (a probability, a decision value...)."""
    plt = _pyplot()
    scores = np.asarray(scores, dtype=float)
    methods = np.asarray(methods).astype(str)
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(scores.min(), scores.max() + 1e-12, 41) if scores.size else 10
    for m in sorted(set(methods), key=lambda m: (m != "real", m)):
        chosen = scores[methods == m]
        ax.hist(chosen, bins=bins, alpha=0.5, label=f"{m} (n = {chosen.size})")
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel=xlabel, ylabel="samples (count)", title=title)
    return _finish(fig, ax, "best")


def ablation_bars(table, path, metric="auc", title="Ablation") -> Path:
    """Horizontal bars of ``metric`` per row of an ablation table (with CI whiskers if present): a PNG."""
    return save_figure(ablation_figure(table, metric, title), path)


def ablation_figure(table, metric="auc", title="Ablation"):
    """The figure of :func:`ablation_bars`, with a dashed chance line at AUC (or EER) 0.5."""
    plt = _pyplot()
    t = table.sort_values(metric, ascending=(metric != "auc"))
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.3 * len(t) + 1)))
    labels = (t["kind"] + ": " + t["fusion"] + " [" + t["features"] + "]").tolist()
    err = None
    lo, hi = f"{metric}_lo", f"{metric}_hi"
    if lo in t and hi in t and t[lo].notna().all():
        err = np.vstack([t[metric] - t[lo], t[hi] - t[metric]]).clip(min=0)
    ax.barh(range(len(t)), t[metric], xerr=err, color="tab:blue", alpha=0.8)
    ax.axvline(CHANCE_AUC, color="tab:red", ls="--", lw=1, label=f"chance ({metric.upper()} {CHANCE_AUC:g})")
    ax.set_yticks(range(len(t)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel=metric.upper(), title=title, xlim=(0, 1) if metric in ("auc", "eer") else None)
    return _finish(fig, ax, "best")


def robustness_curves(results, path, clean=None, metric_names=("auc", "eer"), title="Robustness") -> Path:
    """Metrics against perturbation strength (:func:`robustness_figure`): a PNG."""
    return save_figure(robustness_figure(results, clean, metric_names, title), path)


def robustness_figure(results, clean=None, metric_names=("auc", "eer"), title="Robustness"):
    """Metrics against perturbation strength: one column per perturbation type, one row per metric.

    Parameters
    ----------
    results : dict
        ``{series: {spec: metrics}}``, ``spec`` as ``"jpeg:50"`` and ``metrics`` a dict
        holding ``metric_names`` (e.g. one series "model", or one per ablation row).
    clean : dict, optional
        ``{series: metrics}`` on unperturbed data, drawn at the identity value of each
        perturbation (JPEG 100, blur 0, noise 0, resize 1, gamma 1) and joined to the curve.
    """
    plt = _pyplot()
    by_type: dict = {}
    for series, per_spec in results.items():
        for spec, m in per_spec.items():
            name, _, value = spec.partition(":")
            by_type.setdefault(name, {}).setdefault(series, []).append((float(value), m))
    types = sorted(by_type) or ["none"]
    fig, axes = plt.subplots(len(metric_names), len(types), squeeze=False,
                             figsize=(3.6 * len(types) + 0.6, 2.8 * len(metric_names) + 0.4))
    for col, name in enumerate(types):
        for row, key in enumerate(metric_names):
            ax = axes[row, col]
            for i, (series, points) in enumerate(sorted(by_type.get(name, {}).items())):
                points = sorted(points, key=lambda p: p[0])
                if clean and series in clean and name in IDENTITY:
                    points = sorted(points + [(IDENTITY[name], clean[series])], key=lambda p: p[0])
                    ax.plot([IDENTITY[name]], [clean[series].get(key, np.nan)], "k*", ms=9,
                            label="clean" if i == 0 else None, zorder=3)
                ax.plot([p[0] for p in points], [p[1].get(key, np.nan) for p in points], "o-",
                        color=f"C{i}", lw=1.5, ms=4, label=str(series))
            if name in STRONGER_WHEN_LOWER:
                ax.invert_xaxis()
            ax.set(xlabel=name if name == "gamma" else f"{name} (stronger ->)", ylabel=key.upper())
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(name)
    axes[0, -1].legend(loc="best", fontsize=7)
    fig.suptitle(title)
    return _finish(fig, axes[0, 0])
