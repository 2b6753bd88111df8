"""Choosing the checkpoint on real fakes that never train: ``train --select-store``.

Self-blend validation measures what training teaches (blending boundaries and their masks)
and, as the README's wildval measurements show, does not predict how a run does on real
deepfakes of other kinds.
``--select-store STORE.h5[,...]`` adds a yardstick of real manipulations (for example
``wildval.h5``, extracted from ``../shared/data/wildval``) that only *chooses*:

* after every epoch, rank 0 scores the store's crops as they are -- no blend, no
  augmentation, only the resize to ``--size`` that evaluation applies too -- with the model
  in eval mode under ``torch.no_grad`` (:func:`fusion.cascade.inference.run_inference`): no
  gradient, no BatchNorm statistics and no draw of any random generator come from it, so
  every epoch's weights are the same with or without the flag, whatever its labels say
  (``tests/fusion/test_cascade_selection.py`` shuffles them);
* the epoch's ``select`` record in ``history.json`` holds the frame AUC (every crop's
  fake-minus-real logit against its label), the video AUC (the mean frame logit per
  ``(method, video_id)``) and per method both, for each select store and averaged over them;
* the checkpoint is chosen by :func:`selection_score`.

**The rule** (:func:`selection_score`): the mean of the self-blend val score of today (the
mean of val AUC and val IoU) and the select stores' frame AUC, equally weighted. Self-blend
val alone chose epochs that do worse on real fakes; the select store alone is small
(wildval: 6 real and 21 fake videos) and a checkpoint chosen on it alone is tuned to those
27 videos. The frame AUC rather than the video AUC because it ranks 8 times as many samples
(216 crops against 27 videos): it moves less with one video. Where val gives neither AUC
nor IoU, the frame AUC alone chooses. ``history.json`` records both parts
(``selection``), so another rule can be computed afterwards from the same run.

**Which samples** (``--select-split``): ``auto`` (default) takes the store's val split
when it has one, else every sample -- but a store without val that holds test samples is
refused, as choosing on test is what selection exists to avoid; ``all``, ``train``, ``val``
or ``test`` name them explicitly. A select store that is also a training ``--store`` may
not share a row with training.

Example
-------
>>> selection_score(0.8, 0.6)
0.7
>>> selection_score(None, 0.6)
0.6
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fusion.cascade.config import SELECT_SPLITS
from fusion.cascade.data import StoreMaps
from fusion.cascade.inference import run_inference
from fusion.metrics import video_scores
from fusion.per_method import auc_or_nan, per_method_table

#: How the selection score is made of its parts (recorded in history.json).
RULE = "mean of the self-blend val score and the select stores' frame AUC"

__all__ = ["SELECT_SPLITS", "RULE", "select_rows", "selection_score", "SelectionSet",
           "select_text", "recipe_line"]


def select_rows(store, split: str, flag: str = "--select-store") -> tuple[np.ndarray, str]:
    """``(sorted rows, split used)`` of ``store`` for ``--select-split split`` (see the module
    docstring for ``auto``); raises ValueError naming ``flag`` and the store otherwise."""
    if split not in SELECT_SPLITS:
        raise ValueError(f"--select-split must be one of {', '.join(SELECT_SPLITS)}, got {split!r}")
    if split == "auto":
        rows = store.select(split="val")
        if len(rows):
            return rows, "val"
        if len(store.select(split="test")):
            raise ValueError(f"{flag} {store.path}: no val split but test samples; choosing on "
                             "test is what selection must avoid: pass --select-split all (or test) "
                             "if this store is held out for choosing")
        split = "all"
    rows = store.select(split=None if split == "all" else split)
    if not len(rows):
        raise ValueError(f"{flag} {store.path}: no samples in split {split!r}")
    return rows, split


def selection_score(val_score: float | None, select_frame_auc: float) -> float:
    """The checkpoint's score: the mean of ``val_score`` (self-blend val, the mean of its AUC
    and IoU) and ``select_frame_auc``; the latter alone when ``val_score`` is None or NaN."""
    parts = [v for v in (val_score, select_frame_auc) if v is not None and math.isfinite(v)]
    return float(np.mean(parts)) if parts else float("nan")


class SelectionSet:
    """The select stores' crops, opened once for the run and scored after every epoch.

    Parameters
    ----------
    paths : list of str
        ``--select-store`` files.
    split : str
        ``--select-split`` (:data:`SELECT_SPLITS`).
    cache_bytes : int
        Keep a store's crops in memory up to this size (``--cache-mb``).
    training_rows : dict, optional
        ``{resolved store path: rows}`` that train; a select row among them is refused.
    """

    def __init__(self, paths, split: str = "auto", cache_bytes: int = 1 << 30,
                 training_rows: dict | None = None):
        from stores import open_store
        self.stores, self.sources, self.splits = [], [], []
        training_rows = training_rows or {}
        try:
            for path in paths:
                store = open_store(path)
                self.stores.append(store)
                rows, used = select_rows(store, split)
                shared = np.intersect1d(rows, training_rows.get(Path(path).resolve(), []))
                if shared.size:
                    raise ValueError(f"--select-store {path}: {shared.size} of its split {used!r} "
                                     "samples are training samples of --store; pick another "
                                     "--select-split (the selection set must not train)")
                data = StoreMaps(store, rows=rows, cache_bytes=cache_bytes)
                n_real, n_fake = int((data.labels == 0).sum()), int((data.labels == 1).sum())
                if not (n_real and n_fake):
                    raise ValueError(f"--select-store {path}: split {used!r} holds {n_real} reals "
                                     f"and {n_fake} fakes; choosing on AUC needs both")
                self.sources.append(data)
                self.splits.append(used)
        except BaseException:
            self.close()
            raise

    @property
    def n_samples(self) -> int:
        return sum(len(s) for s in self.sources)

    def sample_ids(self) -> list[str]:
        """The store sample ids of every select row (they chose the checkpoint, so a stacked
        fusion must not fit on them: :mod:`fusion.leakage`)."""
        return [str(v) for data in self.sources for v in data.meta["sample_id"]]

    def describe(self) -> list[dict]:
        """Per store: path, split used, real and fake crops and videos (for config.json)."""
        out = []
        for data, used in zip(self.sources, self.splits):
            videos = data.meta.groupby("label")["video_id"].nunique()
            out.append({"path": str(data.path), "split": used,
                        "n_real": int((data.labels == 0).sum()), "n_fake": int((data.labels == 1).sum()),
                        "real_videos": int(videos.get(0, 0)), "fake_videos": int(videos.get(1, 0))})
        return out

    def score(self, model, size: int, device, batch_size: int = 64, amp: bool = True) -> dict:
        """Frame and video AUC of ``model`` on every select store (eval mode, no gradient).

        Returns ``{"frame_auc", "video_auc"}`` (means over the stores) and ``stores``: per
        store path ``frame_auc``, ``video_auc``, ``n_frames``, ``n_videos`` and ``by_method``
        (``{method: {"frame_auc", "video_auc", "n_videos"}}``, each against all reals).
        """
        per_store = {}
        for data in self.sources:
            logits = run_inference(model, data, size, device, batch_size=batch_size, amp=amp)["logits"]
            meta = data.meta
            methods, videos = meta["method"].to_numpy(), meta["video_id"].to_numpy()
            v_labels, v_scores, _, _ = video_scores(data.labels, logits, methods, videos)
            table = per_method_table(data.labels, logits, methods, videos, n_boot=0)
            per_store[str(data.path)] = {
                "frame_auc": auc_or_nan(data.labels, logits),
                "video_auc": auc_or_nan(v_labels, v_scores),
                "n_frames": len(data), "n_videos": int(v_labels.size),
                "by_method": {r["method"]: {"frame_auc": r["frame_auc"], "video_auc": r["video_auc"],
                                            "n_videos": r["n_videos"]} for r in table}}
        return {"frame_auc": float(np.mean([s["frame_auc"] for s in per_store.values()])),
                "video_auc": float(np.mean([s["video_auc"] for s in per_store.values()])),
                "stores": per_store}

    def record(self, row: dict, val_score: float, model, size: int, device, batch_size: int,
               amp: bool) -> float:
        """Score the select stores into ``row["select"]``, write the parts of the selection
        score into ``row["selection"]`` and return the score (:func:`selection_score`).
        ``val_score`` counts only when ``row["val"]`` has a finite AUC or IoU (else it is the
        loss fallback, on another scale)."""
        row["select"] = self.score(model, size, device, batch_size, amp)
        val = row.get("val") or {}
        on_scale = any(v is not None and math.isfinite(v) for v in (val.get("auc"), val.get("iou")))
        val_part = float(val_score) if on_scale else None
        row["selection"] = {"rule": RULE, "val_score": val_part,
                            "select_frame_auc": row["select"]["frame_auc"]}
        return selection_score(val_part, row["select"]["frame_auc"])

    def close(self) -> None:
        for store in self.stores:
            store.close()
        self.stores = []


def select_text(row: dict) -> str:
    """`` select frame auc F video auc V`` (3 decimals) for an epoch's log line; "" for an
    epoch without a select record."""
    if "select" not in row:
        return ""
    s = row["select"]
    return f" select frame auc {s['frame_auc']:.3f} video auc {s['video_auc']:.3f}"


def recipe_line(best: dict | None) -> str:
    """One line with the chosen epoch's numbers, printed at the end of training.

    ``val``: the self-blend val score (the mean of its AUC and IoU); ``select``: the select
    stores' frame AUC, the part the score uses; ``score``: the selection score. The same
    numbers are in ``best.json`` and the epoch's row of ``history.json``.

    >>> recipe_line({"epoch": 3, "selection_score": 0.65, "val": {"auc": 0.75, "iou": 0.65},
    ...              "select": {"frame_auc": 0.6, "video_auc": 0.5},
    ...              "selection": {"val_score": 0.7}})
    'best epoch 3: val 0.700 (auc 0.750, iou 0.650), select 0.600 (frame AUC 0.600, video AUC 0.500), score 0.650'
    """
    if not best:
        return "best epoch: none (no epoch finished)"
    fmt = lambda v: "n/a" if v is None or v != v else f"{v:.3f}"  # noqa: E731
    val, select = best.get("val"), best.get("select")
    parts = [f"best epoch {best['epoch']}:"]
    if val:
        val_score = (best["selection"]["val_score"] if "selection" in best
                     else best["selection_score"])
        parts.append(f"val {fmt(val_score)} (auc {fmt(val.get('auc'))}, iou {fmt(val.get('iou'))}),")
    else:
        parts.append("no val,")
    if select:
        parts.append(f"select {fmt(select['frame_auc'])} (frame AUC {fmt(select['frame_auc'])}, "
                     f"video AUC {fmt(select['video_auc'])}),")
    parts.append(f"score {fmt(best['selection_score'])}")
    return " ".join(parts)
