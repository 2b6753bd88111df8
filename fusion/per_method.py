"""Detection per kind of fake: every manipulation method against all the reals.

A pooled AUC hides which kinds of fake a detector misses (a method far below chance can sit
inside a pooled 0.55). :func:`per_method_table` scores each method's fakes against *all* the
real samples, at two levels:

* **frame**: the AUC of the frames' decision values (the fake-minus-real logit);
* **video**: the AUC of the per-video mean frame logit, a video being ``(method, video_id)``
  (folder names repeat across methods: ``Deepfakes/000`` and ``Face2Face/000`` are two
  videos), as :func:`fusion.metrics.video_scores` groups them.

Each AUC has a cluster-bootstrap CI over videos (:func:`fusion.metrics.bootstrap_ci`: the
method's videos and the real videos are resampled, each class on its own), so frames of one
video count once. A method with fewer than :data:`MIN_METHOD_VIDEOS` fake videos gets a
warning: its AUC rests on too few independent samples (with one video, no CI at all).

The table is a list of dicts sorted by method name, never by score, so that two runs'
tables line up row by row.

Example
-------
>>> rows = per_method_table([0, 0, 1, 1, 1], [-2.0, 0.5, 1.0, -1.0, 3.0],
...                         ["real", "real", "a", "a", "b"], ["r1", "r2", "x", "x", "y"],
...                         n_boot=0)
>>> [(r["method"], r["n_videos"], r["frame_auc"], r["video_auc"]) for r in rows]
[('a', 1, 0.75, 0.5), ('b', 1, 1.0, 1.0)]
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from fusion.metrics import bootstrap_ci, video_scores

__all__ = ["MIN_METHOD_VIDEOS", "per_method_table", "per_method_warnings", "per_method_lines",
           "add_per_method", "auc_or_nan"]

#: A method with fewer fake videos than this earns a warning.
MIN_METHOD_VIDEOS = 3


def auc_or_nan(labels, scores) -> float:
    """scikit-learn's ROC AUC of ``scores`` against 0/1 ``labels``; NaN with one class."""
    labels = np.asarray(labels)
    return float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 else float("nan")


def per_method_table(labels, logits, methods, video_ids, n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> list[dict]:
    """Frame and video AUC of every fake method against all reals, with video-cluster CIs.

    Parameters
    ----------
    labels : (N,) 0 real / 1 fake.
    logits : (N,) frame decision values, higher = more fake (the model's fake-minus-real
        logit; any monotone score gives the same frame AUC, the video level averages it).
    methods : (N,) method per frame (the reals' method is ignored: all reals form one class).
    video_ids : (N,) video per frame; a video is ``(method, video_id)``.
    n_boot : bootstrap resamples for the CIs (0: none, the CI is ``[None, None]``).
    seed, level : the bootstrap's seed and confidence level.

    Returns
    -------
    list of dict, one per fake method, sorted by method name: ``method``, ``n_videos`` and
    ``n_frames`` (the method's fakes), ``n_real_videos`` and ``n_real_frames`` (all reals),
    ``frame_auc`` with ``frame_auc_ci`` ([lo, hi], clustered by video), ``video_auc`` (mean
    frame logit per video) with ``video_auc_ci``, and ``warning`` (str, or None).
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    logits = np.asarray(logits, np.float64).ravel()
    methods = np.asarray(methods, dtype=object).astype(str)
    video_ids = np.asarray(video_ids, dtype=object).astype(str)
    if not (labels.size == logits.size == methods.size == video_ids.size):
        raise ValueError(f"labels, logits, methods and video_ids must have one entry per frame, "
                         f"got {labels.size}, {logits.size}, {methods.size} and {video_ids.size}")
    keys = np.char.add(np.char.add(methods, "::"), video_ids)
    v_labels, v_scores, v_methods, v_keys = video_scores(labels, logits, methods, video_ids)
    real, v_real = labels == 0, v_labels == 0
    rows = []
    for method in sorted(set(methods[labels == 1].tolist())):
        frames = real | ((labels == 1) & (methods == method))
        videos = v_real | ((v_labels == 1) & (v_methods == method))
        frame_ci = bootstrap_ci(labels[frames], logits[frames], n_boot=n_boot, level=level,
                                seed=seed, clusters=keys[frames], cluster="video")
        video_ci = bootstrap_ci(v_labels[videos], v_scores[videos], n_boot=n_boot, level=level,
                                seed=seed, clusters=v_keys[videos], cluster="video")
        n_videos = int(((v_labels == 1) & (v_methods == method)).sum())
        row = {"method": method, "n_videos": n_videos,
               "n_frames": int(((labels == 1) & (methods == method)).sum()),
               "n_real_videos": int(v_real.sum()), "n_real_frames": int(real.sum()),
               "frame_auc": auc_or_nan(labels[frames], logits[frames]),
               "frame_auc_ci": [frame_ci["auc"][0], frame_ci["auc"][1]] if n_boot else [None, None],
               "video_auc": auc_or_nan(v_labels[videos], v_scores[videos]),
               "video_auc_ci": [video_ci["auc"][0], video_ci["auc"][1]] if n_boot else [None, None],
               "warning": None}
        if n_videos == 1:
            row["warning"] = (f"method {method!r} has one fake video: a single video decides "
                              "its AUCs (no CI)")
        elif n_videos < MIN_METHOD_VIDEOS:
            row["warning"] = (f"method {method!r} has {n_videos} fake videos (< {MIN_METHOD_VIDEOS} "
                              "per method): its AUCs rest on too few videos to compare methods")
        rows.append(row)
    return rows


def per_method_warnings(table: list[dict], name: str = "") -> list[str]:
    """The rows' warnings, each prefixed by ``name: `` when a set name is given."""
    return [f"{name}: {r['warning']}" if name else r["warning"] for r in table if r["warning"]]


def per_method_lines(table: list[dict]) -> list[str]:
    """Console lines of the table: one per method, CIs in brackets, a ``!`` on a warning."""
    def fmt(v, ci):
        if v is None or v != v:
            return "n/a"
        text = f"{v:.3f}"
        if ci and None not in ci and all(c == c for c in ci):
            text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
        return text
    lines = []
    for r in table:
        lines.append(f"    {r['method']}: {r['n_videos']} videos / {r['n_frames']} frames vs "
                     f"{r['n_real_videos']} real videos: frame AUC {fmt(r['frame_auc'], r['frame_auc_ci'])}"
                     f"  video AUC {fmt(r['video_auc'], r['video_auc_ci'])}"
                     + ("  (below chance)" if r["frame_auc"] < 0.5 else "")
                     + ("  (!) few videos" if r["warning"] else ""))
    return lines


def add_per_method(metrics: dict, meta, logits, n_boot: int, seed: int = 0) -> list[dict]:
    """Put the :func:`per_method_table` of a scored set into ``metrics["per_method"]`` and
    its warnings (prefixed by ``metrics["split"]``) after ``metrics["warnings"]``.

    ``meta`` holds ``label``, ``method`` and ``video_id`` per scored frame (a store's
    metadata rows), ``logits`` the frames' decision values. Returns the table.
    """
    table = per_method_table(meta["label"].to_numpy(), logits, meta["method"].to_numpy(),
                             meta["video_id"].to_numpy(), n_boot=n_boot, seed=seed)
    metrics["per_method"] = table
    metrics["warnings"] = list(metrics.get("warnings", [])) + per_method_warnings(
        table, str(metrics.get("split", "")))
    return table
