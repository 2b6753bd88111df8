"""Detection metrics for deepfake scores: fake is the positive class (label 1, higher = more fake).

Error rates follow the ISO/IEC 30107-3 (presentation-attack detection) mapping, with a fake
playing the part of an attack presentation:

* **FAR** (false accept rate) = share of fakes accepted as real = FNR = APCER.
* **FRR** (false reject rate) = share of reals rejected as fake = FPR = BPCER.

So ``far_at_frr["0.01"]`` is the APCER at the operating point where at most 1% of real
samples are flagged (BPCER <= 1%), and ``frr_at_far`` is the converse.

Operating-point metrics (FAR@FRR, FRR@FAR, TPR@FPR) use the best *achievable* threshold:
the lowest error of one kind among ROC points whose other error does not exceed the target.
The EER alone is interpolated: FPR and FNR are linearly interpolated between the two ROC
points where ``FPR - FNR`` changes sign, which removes the bias of picking the nearest point.

The curves and ranking scores are scikit-learn's (``roc_curve``, ``det_curve``,
``roc_auc_score``, ``average_precision_score``); only the interpolated EER, which
scikit-learn lacks, and the operating-point search over its DET points are computed here.

Video-level metrics average frame scores per ``(method, video_id)``: folder names repeat
across manipulation methods (``Deepfakes/000`` and ``Face2Face/000``), so the method is part
of the key even when a caller's video ids already include it.

Confidence intervals are cluster bootstraps: frames of one video are not independent, so
whole videos (or identities, where the caller knows them) are resampled, and ``ci["cluster"]``
says which. Every :func:`compute_metrics` result carries ``warnings``: too few videos per
class, error-rate targets finer than one sample of the class, AUCs that rest on one video.

Example
-------
>>> import numpy as np
>>> m = compute_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], n_boot=0)
>>> round(m["auc"], 3), round(m["eer"], 3)
(0.75, 0.5)
"""
from __future__ import annotations

import copy
import math
from typing import Iterable

import numpy as np
from sklearn.metrics import average_precision_score, det_curve, roc_auc_score, roc_curve

RATE_TARGETS = (0.001, 0.01, 0.05, 0.1)
RATE_KEYS = tuple(str(t) for t in RATE_TARGETS)
#: Fewer independent videos (or identities) than this per class earns a warning.
MIN_CLUSTERS_PER_CLASS = 5
SINGLE_CLASS_NOTE = "only one class present (n_real={}, n_fake={}): ranking metrics are undefined (NaN)"

__all__ = [
    "RATE_TARGETS", "roc_points", "det_points", "eer", "threshold_at_eer", "far_at_frr", "frr_at_far",
    "tpr_at_fpr", "accuracy", "video_scores", "core_metrics", "compute_metrics",
    "bootstrap_ci", "BOOTSTRAP_METHODS", "ScoreOrder", "weighted_metrics", "WEIGHTED_KEYS",
    "reliability_warnings", "to_jsonable", "MIN_CLUSTERS_PER_CLASS",
]


def _validate(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(np.int64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores must have the same length, got {labels.size} and {scores.size}")
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite (got NaN or inf)")
    return labels, scores


def _both_classes(labels: np.ndarray) -> bool:
    return bool((labels == 0).any() and (labels == 1).any())


def roc_points(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of "score >= t means fake": ``(fpr, tpr, thresholds)``, starting at (0, 0).

    :func:`sklearn.metrics.roc_curve` with ``drop_intermediate=False``: one point per
    distinct score (ties move together), ``thresholds[0]`` is ``+inf``. With one class only
    the undefined rate is 0 everywhere (scikit-learn's NaN, without its warning), so a plot
    of such a set stays drawable; the metrics below return NaN for it instead.

    >>> fpr, tpr, thr = roc_points([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> fpr.tolist(), tpr.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    import warnings

    from sklearn.exceptions import UndefinedMetricWarning

    labels, scores = _validate(labels, scores)
    if labels.size == 0:
        return np.zeros(1), np.zeros(1), np.array([np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        fpr, tpr, thr = roc_curve(labels, scores, pos_label=1, drop_intermediate=False)
    return np.nan_to_num(fpr, nan=0.0), np.nan_to_num(tpr, nan=0.0), thr


def det_points(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DET of "score >= t means fake": ``(frr, far, thresholds)`` = ``(fpr, fnr, thresholds)``.

    :func:`sklearn.metrics.det_curve` with ``drop_intermediate=False``: every distinct-score
    operating point from the last one with FRR = 0 to the first with FAR = 0 (the points
    outside are dominated: more of one error for none less of the other), FRR decreasing.
    Raises ValueError when one class only is present.

    >>> frr, far, thr = det_points([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> frr.tolist(), far.tolist(), thr.tolist()
    ([0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.35, 0.4, 0.8])
    """
    labels, scores = _validate(labels, scores)
    if not _both_classes(labels):
        raise ValueError("a DET curve needs both classes (reals and fakes)")
    return det_curve(labels, scores, pos_label=1, drop_intermediate=False)


def _eer_from_det(frr, far, thr) -> tuple[float, float]:
    """Interpolated EER and the threshold of the DET point nearest the crossing.

    Walking from the strict end (FRR small, FAR large) towards the lenient one,
    ``FRR - FAR`` goes from <= 0 to >= 0; FRR and FAR are linearly interpolated between the
    two points where it changes sign (scikit-learn has no interpolated EER).
    """
    fpr, fnr, thr = frr[::-1], far[::-1], thr[::-1]  # FRR increasing
    diff = fpr - fnr
    i = int(np.argmax(diff >= 0))
    if i == 0:
        return float(fpr[0]), float(thr[0])
    d0, d1 = diff[i - 1], diff[i]
    t = d0 / (d0 - d1) if d1 != d0 else 0.0
    rate = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    # nearest point; a tie (t = 0.5 up to rounding) goes to the lenient side, point i
    j = i if t >= 0.5 - 1e-9 or not np.isfinite(thr[i - 1]) else i - 1
    return float(rate), float(thr[j])


def eer(labels, scores) -> float:
    """Equal error rate, linearly interpolated where FPR and FNR cross (NaN for one class).

    >>> eer([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4])
    0.0
    """
    labels, scores = _validate(labels, scores)
    if not _both_classes(labels):
        return math.nan
    return _eer_from_det(*det_points(labels, scores))[0]


def threshold_at_eer(labels, scores) -> float:
    """Decision threshold (``score >= t`` means fake) at the EER point, for choosing on val.

    The DET point nearest the interpolated crossing gives the threshold; with one class only,
    0.5 is returned.
    """
    labels, scores = _validate(labels, scores)
    if not _both_classes(labels):
        return 0.5
    return _eer_from_det(*det_points(labels, scores))[1]


def _best_rate(x: np.ndarray, err: np.ndarray, target: float) -> float:
    """Lowest ``err`` among operating points with ``x <= target``."""
    ok = x <= target + 1e-12
    return float(err[ok].min())


def far_at_frr(labels, scores, targets: Iterable[float] = RATE_TARGETS) -> dict[str, float]:
    """FAR (= FNR, fakes accepted) at FRR (= FPR, reals rejected) <= each target."""
    labels, scores = _validate(labels, scores)
    if not _both_classes(labels):
        return {str(t): math.nan for t in targets}
    frr, far, _ = det_points(labels, scores)
    return {str(t): _best_rate(frr, far, t) for t in targets}


def frr_at_far(labels, scores, targets: Iterable[float] = RATE_TARGETS) -> dict[str, float]:
    """FRR (= FPR, reals rejected) at FAR (= FNR, fakes accepted) <= each target."""
    labels, scores = _validate(labels, scores)
    if not _both_classes(labels):
        return {str(t): math.nan for t in targets}
    frr, far, _ = det_points(labels, scores)
    return {str(t): _best_rate(far, frr, t) for t in targets}


def tpr_at_fpr(labels, scores, targets: Iterable[float] = RATE_TARGETS) -> dict[str, float]:
    """Highest TPR (fakes caught) with FPR (reals flagged) <= each target."""
    return {k: (math.nan if math.isnan(v) else 1.0 - v) for k, v in far_at_frr(labels, scores, targets).items()}


def accuracy(labels, scores, threshold: float) -> float:
    """Share of samples right when ``score >= threshold`` means fake (NaN when empty)."""
    labels, scores = _validate(labels, scores)
    if labels.size == 0:
        return math.nan
    return float(((scores >= threshold).astype(np.int64) == labels).mean())


def video_scores(labels, scores, methods, video_ids):
    """Mean frame score per ``(method, video_id)``.

    Returns ``(labels, scores, methods, keys)`` with one entry per video; a video's label is
    the maximum of its frame labels (frames of one video share a label in practice).
    """
    import pandas as pd

    labels, scores = _validate(labels, scores)
    df = pd.DataFrame({"label": labels, "score": scores,
                       "method": np.asarray(methods, dtype=object).astype(str),
                       "video_id": np.asarray(video_ids, dtype=object).astype(str)})
    g = df.groupby(["method", "video_id"], sort=True).agg(label=("label", "max"), score=("score", "mean"))
    keys = [f"{m}::{v}" for m, v in g.index]
    return (g["label"].to_numpy(np.int64), g["score"].to_numpy(np.float64),
            g.index.get_level_values(0).to_numpy(), np.asarray(keys))


def core_metrics(labels, scores, threshold: float = 0.5) -> dict:
    """AUC, AP, accuracy, EER, FAR@FRR, FRR@FAR, TPR@FPR and class counts for one set."""
    labels, scores = _validate(labels, scores)
    n_real, n_fake = int((labels == 0).sum()), int((labels == 1).sum())
    out = {"n_real": n_real, "n_fake": n_fake, "acc": accuracy(labels, scores, threshold)}
    if not _both_classes(labels):
        nan_rates = {k: math.nan for k in RATE_KEYS}
        out.update(auc=math.nan, ap=math.nan, eer=math.nan, far_at_frr=dict(nan_rates),
                   frr_at_far=dict(nan_rates), tpr_at_fpr=dict(nan_rates),
                   note=SINGLE_CLASS_NOTE.format(n_real, n_fake))
        return out
    frr, far, thr = det_points(labels, scores)
    out.update(
        auc=float(roc_auc_score(labels, scores)),
        ap=float(average_precision_score(labels, scores)),
        eer=_eer_from_det(frr, far, thr)[0],
        far_at_frr={str(t): _best_rate(frr, far, t) for t in RATE_TARGETS},
        frr_at_far={str(t): _best_rate(far, frr, t) for t in RATE_TARGETS},
    )
    out["tpr_at_fpr"] = {k: 1.0 - v for k, v in out["far_at_frr"].items()}
    return out


def _auc_rows(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of every row of ``scores`` (B x n) against ``labels`` (B x n)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=1)
    n_pos = labels.sum(axis=1)
    n_neg = labels.shape[1] - n_pos
    return ((ranks * labels).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _cluster_draws(labels, clusters, n_boot, rng):
    """The clusters each of ``n_boot`` resamples draws with replacement, as codes.

    Clusters of one class only (videos) are drawn per class, as many as the class has (the
    fakes first, then the reals, in each resample); when some cluster holds both classes (an
    identity with its real and fake videos), all clusters are drawn together.
    Returns ``(picks, inverse, stratified)``: ``picks`` is ``(n_boot, n_clusters)`` codes,
    ``inverse`` the code of every sample.
    """
    codes, inverse = np.unique(clusters, return_inverse=True)
    has_real = np.bincount(inverse, weights=labels == 0, minlength=codes.size) > 0
    has_fake = np.bincount(inverse, weights=labels == 1, minlength=codes.size) > 0
    stratified = not (has_real & has_fake).any()
    if stratified:
        groups = [np.flatnonzero(has_fake), np.flatnonzero(has_real)]
        picks = [np.concatenate([rng.choice(g, size=g.size) for g in groups]) for _ in range(n_boot)]
    else:
        picks = [rng.choice(codes.size, size=codes.size) for _ in range(n_boot)]
    return np.array(picks, dtype=np.int64).reshape(n_boot, codes.size), inverse, stratified


def _cluster_resamples(labels, clusters, n_boot, rng):
    """``n_boot`` index arrays, each the rows of clusters drawn with replacement.

    Draws as :func:`_cluster_draws`; resamples that miss a class are dropped.
    Returns ``(resamples, stratified)``.
    """
    picks, inverse, stratified = _cluster_draws(labels, clusters, n_boot, rng)
    rows = [np.flatnonzero(inverse == k) for k in range(picks.shape[1])]
    out = [np.concatenate([rows[k] for k in pick]) for pick in picks]
    return [r for r in out if _both_classes(labels[r])], stratified


class ScoreOrder:
    """One sort of a scored set, shared by every weighting of it (:func:`weighted_metrics`).

    Attributes
    ----------
    fake_order, real_order : indices of the fakes (reals) by decreasing score.
    thresholds : (m,) the distinct scores, decreasing.
    fake_at, real_at : (m + 1,) how many fakes (reals) score at least each threshold, after
        a leading 0 for the threshold +inf.
    """

    def __init__(self, labels, scores):
        labels, scores = _validate(labels, scores)
        order = np.argsort(-scores, kind="stable")
        self.thresholds = np.unique(scores)[::-1]
        fake = labels[order] == 1
        self.fake_order, self.real_order = order[fake], order[~fake]
        # a sample of score s is counted at every threshold <= s
        self.fake_at = np.r_[0, np.searchsorted(-scores[self.fake_order], -self.thresholds, side="right")]
        self.real_at = np.r_[0, np.searchsorted(-scores[self.real_order], -self.thresholds, side="right")]


#: What :func:`weighted_metrics` can compute.
WEIGHTED_KEYS = ("auc", "ap", "eer", "eer_threshold", "far_at_frr", "frr_at_far", "tpr_at_fpr")


def _cumulative_at(weights, at):
    """Cumulative sums of every row of ``weights`` after its first ``at[g]`` columns, as float64."""
    c = np.zeros((weights.shape[0], weights.shape[1] + 1), weights.dtype)
    np.cumsum(weights, axis=1, dtype=weights.dtype, out=c[:, 1:])
    return c[:, at].astype(np.float64)


def weighted_metrics(fake_weights, real_weights, order: ScoreOrder, targets=RATE_TARGETS,
                     keys=WEIGHTED_KEYS) -> dict:
    """Core metrics of many integer weightings of one scored set at once, without re-sorting.

    A bootstrap resample that draws a sample k times is the set with that sample weighted
    by k. Every metric equals the one :func:`core_metrics` (and :func:`threshold_at_eer`)
    gives for the set with each sample repeated ``weight`` times: the same DET points, as
    exact integer counts (a distinct score of weight 0 repeats the point before it, which
    moves no minimum and no sign change), hence the same EER, rates and threshold; AUC and
    AP are the same sums, rounded differently (~1e-16).

    Parameters
    ----------
    fake_weights : (B, n_fake) integer weights, one row per weighting, fakes in
        ``order.fake_order``.
    real_weights : (B, n_real) the same for the reals, in ``order.real_order``.
    order : the :class:`ScoreOrder` of the set.
    targets : error-rate targets of the operating-point metrics.
    keys : which of :data:`WEIGHTED_KEYS` to compute.

    Returns
    -------
    dict of (B,) arrays: ``auc``, ``ap``, ``eer``, ``eer_threshold``, and dicts keyed like
    :data:`RATE_KEYS` for ``far_at_frr``, ``frr_at_far``, ``tpr_at_fpr``. Every row must
    weigh both classes.
    """
    rows = np.arange(fake_weights.shape[0])
    # cumulative weight flagged at each threshold, from +inf (nothing flagged) down
    tps = _cumulative_at(fake_weights, order.fake_at)
    fps = _cumulative_at(real_weights, order.real_at)
    pos, neg = tps[:, -1], fps[:, -1]
    out = {}
    if "auc" in keys:
        out["auc"] = (np.diff(fps, axis=1) * (tps[:, :-1] + tps[:, 1:])).sum(axis=1) / (2 * pos * neg)
    if "ap" in keys:
        out["ap"] = (np.diff(tps, axis=1) * tps[:, 1:] / np.maximum(tps[:, 1:] + fps[:, 1:], 1.0)).sum(axis=1) / pos
    frr = fps / neg[:, None]
    far = (pos[:, None] - tps) / pos[:, None]
    # frr rises and far falls from point to point, so each search below is a count. det_curve
    # starts at the last point without a false positive; the points before it have frr = 0
    # and a larger far, so counting over them changes no value: the crossing is never
    # among them (frr - far < 0 there), and where the curve's first point already has
    # frr = far = 0 the interpolation from the point before it lands on that point (t = 1).
    diff = frr - far
    i = (diff < 0).sum(axis=1)  # >= 1: the point at +inf has frr - far = -1
    d0, d1 = diff[rows, i - 1], diff[rows, i]
    t = d0 / (d0 - d1)  # d0 < 0 <= d1
    if "eer" in keys:
        out["eer"] = frr[rows, i - 1] + t * (frr[rows, i] - frr[rows, i - 1])
    if "eer_threshold" in keys:
        # a threshold of weight 0 is no point of the curve: take the last one that is
        present = np.concatenate([np.ones((rows.size, 1), bool), np.diff(tps + fps, axis=1) > 0], axis=1)
        col = np.arange(tps.shape[1])
        last = np.maximum.accumulate(np.where(present, col, 0), axis=1)
        thr = np.r_[np.inf, order.thresholds]
        thr_i, thr_h = thr[last[rows, i]], thr[last[rows, i - 1]]
        out["eer_threshold"] = np.where((t >= 0.5 - 1e-9) | ~np.isfinite(thr_h), thr_i, thr_h)
    if {"far_at_frr", "tpr_at_fpr"} & set(keys):
        # the lowest far where frr <= x is at the last such point
        out["far_at_frr"] = {str(x): far[rows, (frr <= x + 1e-12).sum(axis=1) - 1] for x in targets}
        out["tpr_at_fpr"] = {k: 1.0 - v for k, v in out["far_at_frr"].items()}
    if "frr_at_far" in keys:
        # the lowest frr where far <= x is at the first such point on the curve
        out["frr_at_far"] = {str(x): frr[rows, (far > x + 1e-12).sum(axis=1)] for x in targets}
    return {k: v for k, v in out.items() if k in keys}


#: Upper bound on the elements of one (resamples x samples) block of the weighted bootstrap.
_BLOCK_ELEMENTS = 1_000_000


def _bootstrap_weighted(labels, scores, n_boot, rng, clusters):
    """AUC, EER and FAR@FRR=1% of the resamples :func:`_bootstrap_reference` draws, from one
    sort and per-resample weights (see :func:`weighted_metrics`), in blocks of resamples.

    Returns ``(aucs, eers, fars, stratified)`` (``stratified`` None without clusters).
    """
    order = ScoreOrder(labels, scores)
    block = max(1, _BLOCK_ELEMENTS // labels.size)
    score = lambda w_fake, w_real: weighted_metrics(w_fake, w_real, order, targets=(0.01,),  # noqa: E731
                                                    keys=("auc", "eer", "far_at_frr"))
    parts, stratified = [], None
    if clusters is None:
        pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
        # the reference draws every resample's fakes, then every resample's reals: a copy of
        # the generator, moved past the fakes' draws, draws the reals block by block
        rng_neg = copy.deepcopy(rng)
        for b0 in range(0, n_boot, block):
            rng_neg.choice(pos, size=(min(block, n_boot - b0), pos.size))
        rank = np.empty(labels.size, np.int64)
        rank[order.fake_order] = np.arange(pos.size)
        rank[order.real_order] = np.arange(neg.size)

        def counts(drawn, n):
            b = drawn.shape[0]
            flat = (rank[drawn] + n * np.arange(b)[:, None]).ravel()
            return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.int32)

        for b0 in range(0, n_boot, block):
            b = min(block, n_boot - b0)
            w_fake = counts(rng.choice(pos, size=(b, pos.size)), pos.size)
            parts.append(score(w_fake, counts(rng_neg.choice(neg, size=(b, neg.size)), neg.size)))
    else:
        picks, inverse, stratified = _cluster_draws(labels, clusters, n_boot, rng)
        n_codes = picks.shape[1]
        drawn = np.bincount((picks + n_codes * np.arange(n_boot)[:, None]).ravel(),
                            minlength=n_boot * n_codes).reshape(n_boot, n_codes).astype(np.int32)
        n_fake = np.bincount(inverse, weights=labels == 1, minlength=n_codes)
        n_real = np.bincount(inverse, weights=labels == 0, minlength=n_codes)
        drawn = drawn[(drawn @ n_fake > 0) & (drawn @ n_real > 0)]  # as the reference, drop one-class resamples
        fake_code, real_code = inverse[order.fake_order], inverse[order.real_order]
        for b0 in range(0, drawn.shape[0], block):
            d = drawn[b0:b0 + block]
            parts.append(score(d[:, fake_code], d[:, real_code]))
    if not parts:
        return np.empty(0), np.empty(0), np.empty(0), stratified
    return (np.concatenate([p["auc"] for p in parts]), np.concatenate([p["eer"] for p in parts]),
            np.concatenate([p["far_at_frr"]["0.01"] for p in parts]), stratified)


def _bootstrap_reference(labels, scores, n_boot, rng, clusters):
    """The bootstrap as first written: each resample materialised and scored by scikit-learn.

    Kept to check :func:`_bootstrap_weighted` against (``bootstrap_ci(method="reference")``).
    Returns ``(aucs, eers, fars, stratified)``.
    """
    stratified = None
    if clusters is None:
        pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
        idx = np.concatenate([rng.choice(pos, size=(n_boot, pos.size)),
                              rng.choice(neg, size=(n_boot, neg.size))], axis=1)
        resamples = list(idx)
        aucs = _auc_rows(labels[idx], scores[idx])
    else:
        resamples, stratified = _cluster_resamples(labels, clusters, n_boot, rng)
        aucs = np.array([roc_auc_score(labels[r], scores[r]) for r in resamples])
    eers, fars = np.empty(len(resamples)), np.empty(len(resamples))
    for b, r in enumerate(resamples):
        frr, far, thr = det_points(labels[r], scores[r])
        eers[b] = _eer_from_det(frr, far, thr)[0]
        fars[b] = _best_rate(frr, far, 0.01)
    return aucs, eers, fars, stratified


def _cluster_counts(labels, clusters) -> dict:
    keys = np.asarray(clusters).astype(str)
    return {"real": int(np.unique(keys[labels == 0]).size), "fake": int(np.unique(keys[labels == 1]).size)}


BOOTSTRAP_METHODS = ("weighted", "reference")


def bootstrap_ci(labels, scores, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                 clusters=None, cluster: str | None = None, method: str = "weighted") -> dict:
    """Percentile bootstrap CIs for AUC, EER and FAR@FRR=1%.

    Without ``clusters`` single samples are resampled, reals and fakes separately
    (stratified). With ``clusters`` (one id per sample: the video, or the identity) whole
    clusters are resampled (see :func:`_cluster_draws`), because frames of one video are
    not independent; with fewer than 2 clusters in a class the interval is undefined (NaN)
    rather than the zero-width interval a single video would give.

    ``method="weighted"`` (default) scores all resamples from one sort of the scores, as
    per-resample sample weights (:func:`weighted_metrics`); ``"reference"`` materialises
    each resample and scores it with scikit-learn. Both draw the same resamples and give the
    same numbers (to ~1e-15); the weighted one is 14-41x faster on 2k-100k frames
    (``python -m fusion.bench_metrics``).

    Returns ``{"auc": [lo, hi], "eer": [lo, hi], "far_at_frr_0.01": [lo, hi], "n_boot", "level",
    "cluster", "n_clusters"}``; ``cluster`` names what was resampled ("sample" without
    ``clusters``, else ``cluster`` or "custom").
    """
    if method not in BOOTSTRAP_METHODS:
        raise ValueError(f"method must be one of {', '.join(BOOTSTRAP_METHODS)}, got {method!r}")
    labels, scores = _validate(labels, scores)
    nan_pair = [math.nan, math.nan]
    out = {"n_boot": int(n_boot), "level": level,
           "cluster": "sample" if clusters is None else (cluster or "custom")}
    if clusters is not None:
        clusters = np.asarray(clusters, dtype=object).astype(str)
        if clusters.shape != labels.shape:
            raise ValueError(f"clusters must have one id per sample, got {clusters.size} for {labels.size}")
        out["n_clusters"] = _cluster_counts(labels, clusters)
    else:
        out["n_clusters"] = {"real": int((labels == 0).sum()), "fake": int((labels == 1).sum())}
    nan_out = {"auc": nan_pair, "eer": list(nan_pair), "far_at_frr_0.01": list(nan_pair)}
    if n_boot <= 0 or not _both_classes(labels):
        out.update(nan_out)
        return out
    if min(out["n_clusters"].values()) < 2:
        out.update(nan_out, note=f"fewer than 2 {out['cluster']}s in a class: no confidence interval")
        return out
    rng = np.random.default_rng(seed)
    if method == "weighted":
        aucs, eers, fars, stratified = _bootstrap_weighted(labels, scores, n_boot, rng, clusters)
    else:
        aucs, eers, fars, stratified = _bootstrap_reference(labels, scores, n_boot, rng, clusters)
    if clusters is not None:
        out["stratified"], out["n_boot_used"] = stratified, int(aucs.size)
        if not aucs.size:
            out.update(nan_out)
            return out
    alpha = (1.0 - level) / 2
    q = lambda v: [float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))]  # noqa: E731
    out.update({"auc": q(aucs), "eer": q(eers), "far_at_frr_0.01": q(fars)})
    return out


def reliability_warnings(m: dict, min_clusters: int = MIN_CLUSTERS_PER_CLASS) -> list[str]:
    """Why the numbers of one :func:`compute_metrics` result deserve little trust.

    * fewer than ``min_clusters`` videos (or identities) in a class;
    * a FAR@FRR / FRR@FAR target below 1/n of the class it constrains (the ROC cannot
      resolve it: the smallest non-zero rate is 1/n);
    * a video-level or per-method AUC resting on a single video of a class.
    """
    out = []
    n_real, n_fake = m.get("n_real", 0), m.get("n_fake", 0)
    if not (n_real and n_fake):
        return [f"one class only (n_real={n_real}, n_fake={n_fake}): no ranking metric"]
    clusters = m.get("ci", {}).get("n_clusters") if m.get("ci", {}).get("cluster") not in (None, "sample") else None
    unit = m.get("ci", {}).get("cluster", "video")
    if clusters is None and "video" in m:
        clusters, unit = {"real": m["video"]["n_real"], "fake": m["video"]["n_fake"]}, "video"
    if clusters is not None and min(clusters.values()) < min_clusters:
        out.append(f"{clusters['real']} real and {clusters['fake']} fake {unit}s (< {min_clusters} per class): "
                   "AUC, EER and any threshold chosen here rest on too few independent samples")
    for key, n, cls in (("far_at_frr", n_real, "real"), ("frr_at_far", n_fake, "fake")):
        small = [t for t in RATE_KEYS if float(t) < 1.0 / n]
        if small:
            name = "FAR@FRR" if key == "far_at_frr" else "FRR@FAR"
            out.append(f"{name} target(s) {', '.join(small)} below 1/n_{cls} = 1/{n}: "
                       "not resolvable with this many samples")
    if "video" in m and min(m["video"]["n_real"], m["video"]["n_fake"]) == 1:
        out.append(f"video-level AUC from {m['video']['n_real']} real and {m['video']['n_fake']} fake "
                   "video(s): a single video decides it")
    for method, v in m.get("by_method_videos", {}).items():
        if min(v["real"], v["fake"]) == 1:
            out.append(f"per-method AUC of {method!r} from {v['real']} real and {v['fake']} fake video(s)")
    return out


def identity_clusters(identities, video_ids):
    """``identities`` as the bootstrap's clusters when they say more than the videos do (some
    identity spans several videos: an FF++ target and its fakes, the edits of one source
    photo), else None, and the videos are resampled. Stores written before identities were
    recorded read ``identity = video_id``; they keep video clusters.

    >>> identity_clusters(["a", "a", "b"], ["v1", "v2", "v3"]).tolist()
    ['a', 'a', 'b']
    >>> identity_clusters(["v1", "v2"], ["v1", "v2"]) is None
    True
    """
    if identities is None:
        return None
    identities = np.asarray(identities, dtype=object).astype(str)
    if video_ids is None:
        return identities
    videos = np.asarray(video_ids, dtype=object).astype(str)
    if identities.shape != videos.shape:
        raise ValueError(f"identities must have one id per sample, got {identities.size} for {videos.size}")
    pairs = np.unique(np.char.add(np.char.add(identities.astype(str), "\x00"), videos.astype(str)))
    return identities if pairs.size > np.unique(identities).size else None


def compute_metrics(labels, scores, methods=None, video_ids=None, threshold: float = 0.5,
                    n_boot: int = 1000, seed: int = 0, identities=None, ci_method: str = "weighted") -> dict:
    """All metrics for one evaluation set.

    Parameters
    ----------
    labels : (N,) 0 real / 1 fake.
    scores : (N,) higher = more fake.
    methods : (N,) manipulation method per sample ("real" for reals); default all "unknown".
    video_ids : (N,) video per sample; without them the video level is omitted.
    threshold : decision threshold for accuracy (``score >= threshold`` is fake).
    n_boot : bootstrap resamples for ``ci`` (0 to skip).
    identities : (N,) person per sample, where known; the CI then resamples identities
        (``ci["cluster"] == "identity"``), else videos (``"video"``), else samples.
    ci_method : how :func:`bootstrap_ci` scores the resamples ("weighted" or "reference";
        same numbers).

    Returns
    -------
    dict with the keys of :func:`core_metrics`, plus ``video`` (same metrics on per-video mean
    scores, keyed by (method, video_id)), ``by_method`` ({method: metrics of that method's
    fakes against all reals}), ``ci`` (:func:`bootstrap_ci`) and ``warnings``
    (:func:`reliability_warnings`). One class only gives NaN ranking metrics and a ``note``
    rather than an error.
    """
    labels, scores = _validate(labels, scores)
    methods = (np.full(labels.size, "unknown", dtype=object) if methods is None
               else np.asarray(methods, dtype=object).astype(str))
    out = core_metrics(labels, scores, threshold)
    real = labels == 0
    clusters, cluster = None, None
    if video_ids is not None:
        v_labels, v_scores, v_methods, _ = video_scores(labels, scores, methods, video_ids)
        out["video"] = core_metrics(v_labels, v_scores, threshold)
        out["video"]["n_videos"] = int(v_labels.size)
        keys = np.char.add(np.char.add(methods.astype(str), "::"), np.asarray(video_ids, dtype=object).astype(str))
        clusters, cluster = keys, "video"
        out["by_method_videos"] = {str(m): {"real": int(np.unique(keys[real]).size),
                                            "fake": int(np.unique(keys[methods == m]).size)}
                                   for m in sorted(set(methods[labels == 1]))}
    if identities is not None:
        clusters, cluster = np.asarray(identities, dtype=object).astype(str), "identity"
    out["by_method"] = {
        str(m): core_metrics(labels[real | (methods == m)], scores[real | (methods == m)], threshold)
        for m in sorted(set(methods[labels == 1]))
    }
    out["ci"] = bootstrap_ci(labels, scores, n_boot=n_boot, seed=seed, clusters=clusters, cluster=cluster,
                             method=ci_method)
    out["warnings"] = reliability_warnings(out)
    return out


def to_jsonable(obj):
    """Replace NaN/inf by None and numpy scalars by Python ones, recursively (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj
