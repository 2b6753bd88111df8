"""Localization metrics of predicted manipulation masks: pixel AUC, IoU and F1 at 0.5.

Computed over the fakes that have a ground-truth mask (``valid("mask")``), overall and per
manipulation method. Pixel AUC pools every pixel of those samples; it is computed from
histograms of the predicted probabilities (``bins`` equal bins on [0, 1]), so it streams
over a data set of any size in constant memory (exact up to ties within a bin). IoU and F1
are per sample, on ``prob >= threshold``, then averaged; two empty masks score 1.

Example
-------
>>> import numpy as np
>>> acc = LocalizationAccumulator()
>>> t = np.zeros((1, 4, 4)); t[0, :2] = 1
>>> acc.update(t * 0.9, t, ["splice"])
>>> r = acc.result()
>>> r["all"]["pixel_auc"], r["all"]["iou"], r["by_method"]["splice"]["f1"]
(1.0, 1.0, 1.0)
"""
from __future__ import annotations

import numpy as np


def iou_f1(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample IoU and F1 (Dice) of boolean masks N x ... (both empty -> 1)."""
    p = np.asarray(pred, bool).reshape(len(pred), -1)
    t = np.asarray(target, bool).reshape(len(target), -1)
    inter = (p & t).sum(1)
    union = (p | t).sum(1)
    total = p.sum(1) + t.sum(1)
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    f1 = np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)
    return iou, f1


def auc_from_histograms(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC from counts of positive and negative scores per ascending bin (ties: 1/2)."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    neg_below = np.cumsum(neg) - neg
    return float((pos * (neg_below + 0.5 * neg)).sum() / (n_pos * n_neg))


class _Tally:
    def __init__(self, bins: int):
        self.pos = np.zeros(bins, np.int64)
        self.neg = np.zeros(bins, np.int64)
        self.iou, self.f1 = [], []

    def result(self) -> dict:
        n = len(self.iou)
        return {"n": n, "pixel_auc": auc_from_histograms(self.pos, self.neg),
                "iou": float(np.mean(self.iou)) if n else float("nan"),
                "f1": float(np.mean(self.f1)) if n else float("nan")}


class LocalizationAccumulator:
    """Accumulate predicted masks batch by batch; :meth:`result` gives the metrics.

    Parameters
    ----------
    threshold : float
        Binarisation threshold for IoU/F1 (0.5).
    bins : int
        Histogram bins for the pixel AUC.
    """

    def __init__(self, threshold: float = 0.5, bins: int = 1000):
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.threshold, self.bins = float(threshold), int(bins)
        self.tallies: dict[str, _Tally] = {}

    def update(self, probs, targets, methods):
        """Add samples: ``probs`` N x H x W (or N x 1 x H x W) in [0, 1], ``targets`` {0,1}
        of the same shape, ``methods`` N strings. Pass only fakes with a valid mask."""
        probs = np.asarray(probs, np.float64).reshape(len(probs), -1)
        targets = np.asarray(targets).reshape(len(targets), -1) > 0.5
        if probs.shape != targets.shape:
            raise ValueError(f"probs {probs.shape} and targets {targets.shape} differ in shape")
        which = np.clip((probs * self.bins).astype(np.int64), 0, self.bins - 1)
        iou, f1 = iou_f1(probs >= self.threshold, targets)
        for i, method in enumerate(methods):
            for key in ("all", f"method:{method}"):
                tally = self.tallies.setdefault(key, _Tally(self.bins))
                tally.pos += np.bincount(which[i][targets[i]], minlength=self.bins)
                tally.neg += np.bincount(which[i][~targets[i]], minlength=self.bins)
                tally.iou.append(iou[i])
                tally.f1.append(f1[i])

    def result(self) -> dict:
        """``{"all": {n, pixel_auc, iou, f1}, "by_method": {method: {...}}, "threshold"}``."""
        empty = {"n": 0, "pixel_auc": float("nan"), "iou": float("nan"), "f1": float("nan")}
        return {"threshold": self.threshold,
                "all": self.tallies["all"].result() if "all" in self.tallies else empty,
                "by_method": {k.split(":", 1)[1]: t.result()
                              for k, t in sorted(self.tallies.items()) if k != "all"}}


def prior_at_area(prior: np.ndarray) -> np.ndarray:
    """The ``prior_area`` baseline: the binary constant mask made of the prior's highest
    pixels, as many as the prior's mean (the mean training mask's area, rounded to whole
    pixels); ties go to the earlier pixel in row-major order. float32 0/1, prior's shape.

    The ``prior`` baseline binarises the mean training mask at the mask threshold; when
    training masks vary in place (part blends), that mean is diffuse, nowhere reaches 0.5,
    and the baseline is an empty mask. This one keeps the training masks' mean area wherever
    they fall most often, so a model must beat a non-empty constant mask too.

    >>> prior_at_area(np.array([[0.1, 0.4], [0.3, 0.0]])).tolist()
    [[0.0, 1.0], [0.0, 0.0]]
    """
    p = np.asarray(prior, np.float64)
    k = int(round(float(p.mean()) * p.size)) if p.size else 0
    out = np.zeros(p.size, np.float32)
    out[np.argsort(-p.ravel(), kind="stable")[:k]] = 1.0
    return out.reshape(p.shape)
