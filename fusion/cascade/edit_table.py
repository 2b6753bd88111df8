"""Localization per edit type, beside the two baselines that never look at the image.

A cascade evaluation (``metrics.json``) already holds, per manipulation method, the model's
localization (``localization.by_method``), the same for the ``prior`` (the constant mean
training mask), the ``prior_area`` (the prior's highest pixels, as many as the training
masks' mean area: :func:`fusion.cascade.localization.prior_at_area`) and the ``hull`` (the
whole-face landmark hull) scored on the same fakes and masks
(``localization.<baseline>.by_method``), and the frame AUC of that method's fakes against
all reals (``classification.by_method``). :func:`edit_localization` lays them out as one
row per method (``per_edit_localization``) and a headline (``localization_headline``): the
model's IoU and F1 gain over the *best* of these baselines, per method, averaged separately over the
whole-face edits (:data:`WHOLE_FACE_EDITS`) and the local edits (:data:`LOCAL_EDITS`) of
the edit benchmark. Other methods (a store's own, e.g. FF++'s ``FaceSwap``) get rows in
group ``other`` and stay out of the headline.

Example
-------
>>> loc = {"by_method": {"blur": {"n": 2, "pixel_auc": 0.9, "iou": 0.4, "f1": 0.5}},
...        "prior": {"by_method": {"blur": {"n": 2, "pixel_auc": 0.6, "iou": 0.1, "f1": 0.2}}},
...        "hull": {"by_method": {"blur": {"n": 2, "pixel_auc": 0.5, "iou": 0.2, "f1": 0.3}}}}
>>> out = edit_localization({"localization": loc,
...                          "classification": {"by_method": {"blur": {"auc": 0.7}}}})
>>> row = out["per_edit_localization"][0]
>>> row["group"], row["best_baseline"], round(row["gain_iou"], 3)
('local', 'hull', 0.2)
"""
from __future__ import annotations

import math

__all__ = ["WHOLE_FACE_EDITS", "LOCAL_EDITS", "edit_localization", "edit_table_lines",
           "part_verdict_lines"]

#: Edits of the benchmark that change the whole face.
WHOLE_FACE_EDITS = ("sbi", "xray", "swap-face")
#: Edits of the benchmark that change one part or region of the face.
LOCAL_EDITS = ("swap-eyes", "swap-nose", "swap-mouth", "inpaint", "copy-move", "resample",
               "color", "blur", "sharpen")
#: Baselines that never look at the image; evaluations saved before ``prior_area`` existed
#: lack it (its columns are then None and the best of the other two counts).
BASELINES = ("prior", "prior_area", "hull")
_METRICS = ("pixel_auc", "iou", "f1")


def _value(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def group_of(method: str) -> str:
    """``whole-face``, ``local`` or ``other``."""
    return ("whole-face" if method in WHOLE_FACE_EDITS else "local" if method in LOCAL_EDITS
            else "other")


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def edit_localization(metrics: dict) -> dict:
    """``{"per_edit_localization": [row, ...], "localization_headline": {...}}`` from a
    cascade evaluation's ``classification`` and ``localization`` blocks.

    A row: ``method``, ``group``, ``n`` (fakes with masks), ``frame_auc``; the model's
    ``pixel_auc``, ``iou``, ``f1``; ``prior_*``, ``prior_area_*`` and ``hull_*`` the same
    for each baseline (absent baselines give None); ``best_baseline`` (the one of higher IoU on this method)
    and ``gain_iou`` / ``gain_f1`` over it. Rows are sorted by group (whole-face, local,
    other), then method name. The headline holds, per group, the methods, the mean of
    each row value and ``gain_iou`` / ``gain_f1``: the mean of the rows' gains (each over
    its own better baseline). NaN metrics become None.
    """
    loc = metrics.get("localization", {})
    by_auc = metrics.get("classification", {}).get("by_method", {}) or {}
    rows = []
    for method, m in (loc.get("by_method") or {}).items():
        row = {"method": method, "group": group_of(method), "n": int(m.get("n", 0)),
               "frame_auc": _value((by_auc.get(method) or {}).get("auc"))}
        row.update({k: _value(m.get(k)) for k in _METRICS})
        for base in BASELINES:
            b = ((loc.get(base) or {}).get("by_method") or {}).get(method) or {}
            row.update({f"{base}_{k}": _value(b.get(k)) for k in _METRICS})
        candidates = [b for b in BASELINES if row[f"{b}_iou"] is not None]
        best = max(candidates, key=lambda b: row[f"{b}_iou"]) if candidates else None
        row["best_baseline"] = best
        for k in ("iou", "f1"):
            row[f"gain_{k}"] = (row[k] - row[f"{best}_{k}"]
                                if best and row[k] is not None and row[f"{best}_{k}"] is not None
                                else None)
        rows.append(row)
    order = {"whole-face": 0, "local": 1, "other": 2}
    rows.sort(key=lambda r: (order[r["group"]], r["method"]))
    headline = {}
    for group in ("whole-face", "local"):
        chosen = [r for r in rows if r["group"] == group]
        if not chosen:
            continue
        headline[group] = {"methods": [r["method"] for r in chosen],
                           "best_baseline_iou": _mean(r[f"{r['best_baseline']}_iou"]
                                                      for r in chosen if r["best_baseline"]),
                           **{k: _mean(r[k] for r in chosen)
                              for k in ("frame_auc", "pixel_auc", "iou", "f1", "prior_iou",
                                        "prior_area_iou", "hull_iou", "gain_iou", "gain_f1")}}
    return {"per_edit_localization": rows, "localization_headline": headline}


def edit_table_lines(metrics: dict) -> list[str]:
    """The per-edit table and its headline as text lines for the printed summary (empty
    when the evaluation has no per-method localization)."""
    rows = metrics.get("per_edit_localization") or []
    if not rows:
        return []
    fmt = lambda v: "  n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["  localization per edit (model | prior | prior at its mean area | hull; gain = IoU "
             "over the best baseline):",
             f"    {'edit':<14}{'n':>5} {'frameAUC':>8} {'pixAUC':>7} {'IoU':>6} {'F1':>6}"
             f" {'prIoU':>6} {'prF1':>6} {'paIoU':>6} {'paF1':>6} {'huIoU':>6} {'huF1':>6}"
             f" {'gain':>7}"]
    for r in rows:
        gain = "    n/a" if r["gain_iou"] is None else f"{r['gain_iou']:+7.3f}"
        lines.append(f"    {r['method'][:14]:<14}{r['n']:>5} {fmt(r['frame_auc']):>8} "
                     f"{fmt(r['pixel_auc']):>7} {fmt(r['iou']):>6} {fmt(r['f1']):>6} "
                     f"{fmt(r['prior_iou']):>6} {fmt(r['prior_f1']):>6} "
                     f"{fmt(r.get('prior_area_iou')):>6} {fmt(r.get('prior_area_f1')):>6} "
                     f"{fmt(r['hull_iou']):>6} {fmt(r['hull_f1']):>6} {gain}")
    for group, h in (metrics.get("localization_headline") or {}).items():
        gain = "n/a" if h["gain_iou"] is None else f"{h['gain_iou']:+.3f}"
        lines.append(f"    headline, {group} edits ({len(h['methods'])}): IoU {fmt(h['iou'])} vs "
                     f"best baseline {fmt(h['best_baseline_iou'])}, gain {gain}; "
                     f"frame AUC {fmt(h['frame_auc'])}")
    return lines


def part_verdict_lines(metrics: dict) -> list[str]:
    """One summary line of the part verdicts' AUCs (``metrics["part_verdicts"]``), if any."""
    parts = (metrics.get("part_verdicts") or {}).get("by_part") or {}
    scored = [(p, v) for p, v in parts.items() if v.get("auc") is not None]
    if not scored:
        return []
    return ["  part verdicts, AUC of 'was this part changed?' (changed: >= "
            f"{metrics['part_verdicts']['changed_fraction']:g} of the part in the true mask): "
            + ", ".join(f"{p} {v['auc']:.3f} ({v['n_changed']}/{v['n_changed'] + v['n_unchanged']})"
                        for p, v in scored)]
