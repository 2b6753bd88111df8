"""The mask threshold of a cascade run, chosen on its own validation set, never on test.

IoU, F1 and the flagged area of reals score the binary mask ``p >= threshold``. 0.5 is a
convention, not a choice: a mask head that spreads low probabilities over every face flags
much of a real crop at 0.5, and over-covers a small edited part. ``fusion.cascade eval
--mask-threshold val`` instead rebuilds the run's validation set (the same fixed draw of
self-blends and reals that chose its checkpoint), scores every threshold of
:data:`GRID` on it, and keeps the one with the highest mean IoU over the validation fakes
among those whose validation reals have a mean flagged area of at most ``budget``
(:data:`REAL_AREA_BUDGET`, the false-positive area a user accepts). When no threshold
meets the budget, the one that flags the least of the reals. The test split only ever
sees the chosen value. The ``prior`` and ``hull`` baselines keep their own masks (the
prior at 0.5, as before; the hull is binary).

Example
-------
>>> import numpy as np
>>> curves = {"threshold": np.array([0.3, 0.5, 0.7]), "real_flagged_area": np.array([0.2, 0.05, 0.01]),
...           "fake_iou": np.array([0.6, 0.5, 0.3]), "fake_f1": np.array([0.7, 0.6, 0.4]),
...           "n_real": 4, "n_fake": 4}
>>> choose_threshold(curves, budget=0.05)["value"]
0.5
"""
from __future__ import annotations

import math

import numpy as np

#: Thresholds scored on val.
GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))
#: Default largest mean flagged area of val reals (``--real-area-budget``).
REAL_AREA_BUDGET = 0.02


def check_budget(budget: float) -> float:
    """``budget`` as a float; ValueError naming ``--real-area-budget`` outside [0, 1]."""
    if not 0 <= budget <= 1:
        raise ValueError(f"--real-area-budget must be in [0, 1], got {budget}")
    return float(budget)


def choose_threshold(curves: dict, budget: float = REAL_AREA_BUDGET) -> dict:
    """The rule of the module docstring applied to the output of
    :func:`fusion.cascade.inference.threshold_curves`:
    ``{"value", "budget", "met_budget", "val_real_flagged_area", "val_fake_iou",
    "val_fake_f1", "n_real", "n_fake", "curves"}``."""
    budget = check_budget(budget)
    t = np.asarray(curves["threshold"], np.float64)
    real, iou = np.asarray(curves["real_flagged_area"]), np.asarray(curves["fake_iou"])
    if not curves["n_fake"]:
        raise ValueError("--mask-threshold val: the run's validation set has no fake with a "
                         "mask to choose a threshold on")
    ok = real <= budget if curves["n_real"] else np.ones(len(t), bool)
    if ok.any():
        k = int(np.flatnonzero(ok)[np.argmax(iou[ok])])  # first (lowest) on ties
    else:
        k = int(np.flatnonzero(real == real.min())[-1])
    return {"value": float(t[k]), "budget": float(budget), "met_budget": bool(ok.any()),
            "val_real_flagged_area": float(real[k]), "val_fake_iou": float(iou[k]),
            "val_fake_f1": float(curves["fake_f1"][k]), "n_real": int(curves["n_real"]),
            "n_fake": int(curves["n_fake"]),
            "curves": {key: [float(v) for v in curves[key]]
                       for key in ("threshold", "real_flagged_area", "fake_iou", "fake_f1")}}


def run_val_set(config):
    """The run's validation samples, as training drew them (``ArrayMaps``; the training
    stores must be readable at the paths of its ``config.json``)."""
    from base.cli import not_a_file
    from fusion.cascade.splits import open_training_sources, validation_set
    from stores import open_store
    missing = [f"{p} ({not_a_file(p)})" for p in config.stores if not_a_file(p)]
    if missing:
        raise ValueError(f"--mask-threshold val: the run's training store(s) "
                         f"{', '.join(missing)} are not there; its validation set is drawn "
                         "from them (or give --mask-threshold a number)")
    stores = [open_store(p) for p in config.stores]
    try:
        _, val_sources = open_training_sources(config, stores)
        val = validation_set(config, val_sources).fixed()
    finally:
        for s in stores:
            s.close()
    if not len(val):
        raise ValueError("--mask-threshold val: the run's validation split is empty")
    return val


def parse_mask_threshold(text) -> float | str:
    """``"val"`` or a number in (0, 1) (``--mask-threshold``); ValueError otherwise."""
    if isinstance(text, str) and text.strip().lower() == "val":
        return "val"
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not 0 < value < 1:
        raise ValueError(f"--mask-threshold must be val or a number in (0, 1), got {text!r}")
    return value
