"""The leakage guard: no fusion head is fitted or thresholded on rows that a stacked model
was trained or selected on.

A feature can be a trained model itself: ``cascade`` (:mod:`extract.cascade`) is a run of
the cascaded localization model, and it scores its own training blends far too well. A head
fitted on those rows learns to trust it more than it deserves, and a threshold taken there is
optimistic. The store records, per such feature, what the model was fitted and selected on
(its ``trained_on`` attribute: stores, splits and, for runs that recorded them, sample ids).

:func:`stacked_rows` turns that record into the set of excluded ids: the recorded sample
ids, or else the ids of the recorded splits (``train`` and ``val``) of the recorded stores.
:func:`overlap` counts the rows of a split that are among them, by their ``sample_id`` or
by their ``identity``: an edit-benchmark image made from a sample (``pipelines.benchmark
--from-store``) carries that sample's id as its identity, so a benchmark built from the
model's own training rows is caught too.

:func:`guard` is what ``fusion.train``, ``fusion.ablate`` and
:class:`fusion.sklearn.FusionClassifier` call: a :class:`~base.errors.UsageError` naming the
feature and the overlapping rows (count and first ids), or, with the explicit override
(``--allow-overlap``, ``allow_overlap=True``), the same text as a warning that the command
keeps in its ``metrics.json``. See ``docs/cascade_fusion.md`` for a recipe that needs no
override.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from base.errors import UsageError

#: The splits a head is fitted (train) and thresholded / tuned (val) on.
FITTED_SPLITS = ("train", "val")
#: Ids quoted in a refusal.
SHOWN = 3
OVERRIDE = "--allow-overlap"


def stacked_features(store, features) -> dict:
    """``{feature: trained_on record}`` for the features of ``store`` that are trained models
    (their store attributes hold ``trained_on``, a JSON object)."""
    out = {}
    for f in features:
        if f not in store.features:
            continue
        raw = store.attrs(f).get("trained_on")
        if raw:
            out[f] = json.loads(raw) if isinstance(raw, str) else dict(raw)
    return out


def stacked_rows(feature: str, record: dict) -> set:
    """The sample ids a stacked ``feature`` was trained or selected on, from its ``record``.

    Recorded ids when the run kept them; else the ``train_split`` and ``select_split`` rows
    of every recorded store and every row of its ``select_stores`` (with ``val_folders``, training moved rows of any split but test
    to val, so both splits are excluded whole). UsageError when neither is available: which
    rows are safe cannot then be told.
    """
    ids = record.get("sample_ids")
    if isinstance(ids, dict):
        return {str(v) for part in ids.values() for v in part}
    from stores import StoreError, open_store
    splits = [record.get("train_split", "train"), record.get("select_split", "val")]
    found, missing = set(), []
    for path in record.get("stores", []):
        if not Path(path).is_file():
            missing.append(str(path))
            continue
        try:
            with open_store(path) as store:
                found |= set(store.meta.loc[store.meta["split"].isin(splits), "sample_id"].astype(str))
        except StoreError:
            missing.append(str(path))
    for path in record.get("select_stores", []):  # they chose the epoch: every row counts
        try:
            with open_store(path) as store:
                found |= set(store.meta["sample_id"].astype(str))
        except (StoreError, OSError):
            missing.append(str(path))
    if missing or not record.get("stores"):
        raise UsageError(f"feature {feature!r} is a trained model whose training rows are not recorded "
                         f"and whose training store(s) {', '.join(missing) or '(none named)'} cannot be "
                         f"read: cannot check for leakage; retrain it with this version, or pass "
                         f"{OVERRIDE}")
    return found


def overlap(meta: pd.DataFrame, excluded: set) -> np.ndarray:
    """N bool: the rows of ``meta`` whose ``sample_id`` or ``identity`` is in ``excluded``."""
    if not excluded or not len(meta):
        return np.zeros(len(meta), bool)
    hit = np.array(meta["sample_id"].astype(str).isin(excluded), bool)
    if "identity" in meta:
        hit |= np.array(meta["identity"].astype(str).isin(excluded), bool)
    return hit


def overlap_message(feature: str, meta: pd.DataFrame, hit: np.ndarray, where: str) -> str:
    """One line naming the stacked feature, how many rows overlap and the first few ids."""
    ids = meta.loc[hit, "sample_id"].astype(str).tolist()
    shown = ", ".join(ids[:SHOWN]) + (", ..." if len(ids) > SHOWN else "")
    return (f"leakage: feature {feature!r} is a model trained or selected on {len(ids)} of the "
            f"{len(meta)} rows this head is {where} ({shown}); fit the fusion on rows it never saw "
            f"(docs/cascade_fusion.md) or pass {OVERRIDE} to proceed with this warning")


def guard(store, features, metas: dict, allow: bool = False) -> list[str]:
    """Refuse (UsageError) or, with ``allow``, return warnings for every stacked feature of
    ``features`` trained or selected on rows of the fitted splits.

    Parameters
    ----------
    store : stores.FeatureStore
        The store the features are read from (its attributes name the stacked features).
    features : list of str
    metas : dict
        ``{split: meta DataFrame}`` of the rows used; splits in :data:`FITTED_SPLITS` are
        fitted or thresholded on (refused), others (test) only reported (a warning always).
    allow : bool
        The explicit override: warnings instead of the refusal.

    Returns
    -------
    list of str
        The warnings (empty when no stacked feature meets its own rows).
    """
    warnings = []
    for feature, record in stacked_features(store, features).items():
        excluded = stacked_rows(feature, record) if not allow else _rows_or_none(feature, record)
        if excluded is None:
            warnings.append(f"leakage: feature {feature!r} is a trained model whose training rows "
                            f"cannot be read; not checked ({OVERRIDE})")
            continue
        fitted = [metas[s] for s in FITTED_SPLITS if s in metas and metas[s] is not None]
        if fitted:
            meta = pd.concat(fitted, ignore_index=True)
            hit = overlap(meta, excluded)
            if hit.any():
                message = overlap_message(feature, meta, hit, "fitted or thresholded on (train, val)")
                if not allow:
                    raise UsageError(message)
                warnings.append(message + f" [{OVERRIDE} given]")
        for split, meta in metas.items():
            if split in FITTED_SPLITS or meta is None:
                continue
            hit = overlap(meta, excluded)
            if hit.any():
                warnings.append(f"leakage: {split}: feature {feature!r} was trained or selected on "
                                f"{int(hit.sum())} of its {len(meta)} rows: its {split} metrics are "
                                "optimistic")
    return warnings


def _rows_or_none(feature: str, record: dict):
    try:
        return stacked_rows(feature, record)
    except UsageError:
        return None
