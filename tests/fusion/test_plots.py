"""fusion.plots: what a reader sees on each plot, read back from the matplotlib figures."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy.stats import norm  # noqa: E402
from sklearn.metrics import det_curve  # noqa: E402

from fusion import metrics, plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _scores(n=40, shift=1.5, seed=0):
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n), np.ones(n)].astype(int)
    s = rng.normal(size=2 * n) + shift * y
    methods = np.where(y == 0, "real", np.where(np.arange(2 * n) % 2, "A", "B"))
    return y, s, methods


def test_det_axes_are_in_percent_from_0_1_to_99_9():
    y, s, m = _scores()
    ax = plots.det_figure(y, s, m).axes[0]
    for labels, lim in ((ax.get_xticklabels(), ax.get_xlim()), (ax.get_yticklabels(), ax.get_ylim())):
        texts = [t.get_text() for t in labels]
        assert texts[0] == "0.1" and texts[-1] == "99.9" and "50" not in texts
        # 99.9% lies inside the axes, not on their edge
        assert lim[0] < norm.ppf(0.001) and lim[1] > norm.ppf(0.999)
    assert "%" in ax.get_xlabel() and "%" in ax.get_ylabel()


def test_det_legend_gives_the_eer_in_percent():
    y, s, m = _scores()
    texts = [t.get_text() for t in plots.det_figure(y, s, m).axes[0].get_legend().get_texts()]
    for name in ("all", "A", "B"):
        keep = (y == 0) | (m == name) if name != "all" else np.ones(len(y), bool)
        eer = metrics.eer(y[keep], s[keep])
        assert f"{name} (EER {100 * eer:.1f}%)" in texts, texts


def test_det_curve_matches_sklearn_and_zero_errors_stay_inside():
    y, s, _ = _scores()
    line = plots.det_figure(y, s).axes[0].get_lines()[0]
    frr, far = norm.cdf(line.get_xdata()), norm.cdf(line.get_ydata())
    fpr, fnr, _ = det_curve(y, s)  # sklearn's DET points (FPR = FRR of reals, FNR = FAR of fakes)
    inside = (fpr > plots.DET_CLIP[0]) & (fpr < plots.DET_CLIP[1]) & (fnr > plots.DET_CLIP[0]) & (fnr < plots.DET_CLIP[1])
    drawn = set(zip(np.round(frr, 9), np.round(far, 9)))
    assert inside.sum() > 5
    assert all((round(a, 9), round(b, 9)) in drawn for a, b in zip(fpr[inside], fnr[inside]))
    # a perfect detector: its zero error rates are drawn at the edge, inside the axes
    perfect = plots.det_figure(y, y + 0.1 * s).axes[0]
    lo, hi = perfect.get_xlim()
    xs = perfect.get_lines()[0].get_xdata()
    assert xs.min() >= lo and xs.max() <= hi


def test_histogram_bars_are_counts_per_method():
    y, s, m = _scores(n=8)
    ax = plots.score_histogram_figure(s, m, threshold=0.3).axes[0]
    bins = np.linspace(s.min(), s.max() + 1e-12, 41)
    containers = ax.containers
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    assert names[:3] == ["real (n = 8)", "A (n = 4)", "B (n = 4)"] and "threshold 0.3" in names
    for container, method in zip(containers, ["real", "A", "B"]):
        heights = np.array([p.get_height() for p in container])
        np.testing.assert_array_equal(heights, np.histogram(s[m == method], bins)[0])
        assert heights.sum() == (m == method).sum()
    assert "count" in ax.get_ylabel() and "density" not in ax.get_ylabel()


def test_ablation_bars_have_a_chance_line_at_auc_0_5():
    table = pd.DataFrame({"kind": ["single", "single", "loo"], "fusion": ["concat"] * 3,
                          "features": ["a", "b", "a,b"], "auc": [0.8, 0.45, 0.9]})
    ax = plots.ablation_figure(table).axes[0]
    vertical = [ln for ln in ax.get_lines() if np.allclose(ln.get_xdata(), plots.CHANCE_AUC)]
    assert len(vertical) == 1 and "chance" in vertical[0].get_label()
    assert ax.get_xlim() == (0.0, 1.0)
    widths = sorted(p.get_width() for p in ax.patches)
    assert widths == [0.45, 0.8, 0.9]


def test_plot_functions_still_write_pngs(tmp_path):
    y, s, m = _scores()
    paths = [plots.roc_plot(y, s, tmp_path / "roc.png", m), plots.det_plot(y, s, tmp_path / "det.png", m),
             plots.score_histograms(s, m, tmp_path / "h.png", 0.2)]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == []  # every written figure is closed


def test_train_histograms_name_decision_values_as_such(tmp_path, monkeypatch):
    import pandas as pd
    from fusion import scoring
    seen = {}
    real = plots.score_histograms

    def spy(*args, **kwargs):
        seen["xlabel"] = kwargs.get("xlabel")
        return real(*args, **kwargs)
    monkeypatch.setattr(plots, "score_histograms", spy)
    y, s, m = _scores(n=8)
    frame = pd.DataFrame({"label": y, "method": m, "score": 1 / (1 + np.exp(-s)), "logit": s})
    scoring.write_plots(frame, tmp_path, threshold=0.0)
    assert seen["xlabel"].startswith("decision value")
    scoring.write_plots(frame.drop(columns="logit"), tmp_path, threshold=0.5)
    assert seen["xlabel"] == "fake score"
