"""Part verdicts of the cascade: which face part the predicted mask says was changed.

For every scored sample with landmarks, the mean predicted mask probability over each
region of :data:`pipelines.face_parts.VERDICT_PARTS` (eyes, brows, nose, mouth, cheeks, jaw,
forehead, outside the face; disjoint regions drawn from the sample's 68 landmarks at the
model's input size). They go into ``predictions.csv`` as ``part_<name>`` columns and a
``parts`` text column (``"mouth 0.91, eyes 0.08, nose 0.05"``, highest first).

Scored against stored masks (``metrics.json`` ``part_verdicts``): for each part, the AUC
of "was this part changed?", over every sample with a valid mask and that region on the
crop (reals count as unchanged everywhere). A part counts as changed when at least
:data:`pipelines.face_parts.CHANGED_FRACTION` (20 %) of its region's pixels are in the
true mask, compared at the model's input size.

Example
-------
>>> import numpy as np
>>> acc = PartVerdicts(2)
>>> regions = np.zeros((2, 8, 4, 4), bool); regions[:, 3, :2] = True; regions[:, 0, 2:] = True
>>> probs = np.zeros((2, 4, 4)); probs[0, :2] = 0.9
>>> truth = np.zeros((2, 4, 4)); truth[0, :2] = 1
>>> acc.update(np.arange(2), probs, truth, np.ones(2, bool), regions)
>>> float(acc.means[0, 3]), acc.changed[:, 3].tolist()
(0.9, [1.0, 0.0])
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.face_parts import (CHANGED_FRACTION, VERDICT_PARTS, part_means, parts_changed,
                                  verdict_regions_batch, verdict_text)

__all__ = ["PartVerdicts", "part_verdict_report", "add_part_columns", "PART_COLUMNS"]

#: ``predictions.csv`` column of each part's mean mask probability.
PART_COLUMNS = tuple(f"part_{p}" for p in VERDICT_PARTS)


class PartVerdicts:
    """Per-sample part means and "changed" labels, filled batch by batch.

    Parameters
    ----------
    n : int
        Samples in the scored set; ``means`` and ``changed`` are N x P (NaN until filled,
        and where a region is empty or a sample has no valid mask).
    """

    def __init__(self, n: int):
        self.means = np.full((n, len(VERDICT_PARTS)), np.nan)
        self.changed = np.full((n, len(VERDICT_PARTS)), np.nan)

    def update(self, positions, probs, truth, mask_valid, regions):
        """Add one batch: ``probs`` and ``truth`` K x H x W at the model's size,
        ``mask_valid`` K bool, ``regions`` K x P x H x W bool
        (:func:`pipelines.face_parts.verdict_regions_batch`)."""
        positions = np.asarray(positions)
        self.means[positions] = part_means(probs, regions)
        changed = parts_changed(truth, regions)
        changed[~np.asarray(mask_valid, bool)] = np.nan
        self.changed[positions] = changed

    def update_from_landmarks(self, positions, probs, truth, mask_valid, landmarks,
                              crop_size: int):
        """:meth:`update` with the regions drawn from ``landmarks`` (K x 68 x 2 in
        ``crop_size`` crop pixels) at the size of ``probs``."""
        regions = verdict_regions_batch(landmarks, crop_size, np.asarray(probs).shape[-1])
        self.update(positions, probs, truth, mask_valid, regions)

    def result(self) -> dict:
        return {"parts": list(VERDICT_PARTS), "means": self.means, "changed": self.changed}


def part_verdict_report(parts: dict | None) -> dict | None:
    """The ``part_verdicts`` block of ``metrics.json`` from :meth:`PartVerdicts.result`:
    per part ``auc`` (None with one class only), ``n_changed``, ``n_unchanged`` and the mean
    part probability of each; plus the rule. None without part verdicts."""
    if parts is None:
        return None
    from sklearn.metrics import roc_auc_score
    table = {}
    for i, part in enumerate(parts["parts"]):
        label, score = parts["changed"][:, i], parts["means"][:, i]
        ok = np.isfinite(label) & np.isfinite(score)
        y, s = label[ok].astype(int), score[ok]
        n_pos, n_neg = int(y.sum()), int((1 - y).sum())
        table[part] = {"auc": float(roc_auc_score(y, s)) if n_pos and n_neg else None,
                       "n_changed": n_pos, "n_unchanged": n_neg,
                       "mean_changed": float(s[y == 1].mean()) if n_pos else None,
                       "mean_unchanged": float(s[y == 0].mean()) if n_neg else None}
    return {"rule": f"a part counts as changed when >= {CHANGED_FRACTION:g} of its region's "
                    "pixels are in the true mask; AUC of the part's mean mask probability over "
                    "every sample with a valid mask (reals: nothing changed)",
            "changed_fraction": CHANGED_FRACTION, "by_part": table}


def add_part_columns(frame: pd.DataFrame, parts: dict | None) -> pd.DataFrame:
    """``frame`` with ``part_<name>`` columns and a ``parts`` verdict text
    (:func:`pipelines.face_parts.verdict_text`) per row; unchanged without part verdicts."""
    if parts is None:
        return frame
    for i, column in enumerate(PART_COLUMNS):
        frame[column] = parts["means"][:, i]
    frame["parts"] = [verdict_text(row) for row in parts["means"]]
    return frame
