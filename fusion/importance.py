"""Which features matter: permutation importance per feature group, mutual information per
dimension. Both are called from Python on an opened store (or a path)::

    from fusion.importance import permutation_importance_by_group, mutual_information
    permutation_importance_by_group("ffpp.h5", ["lbp", "dct", "fft"])   # DataFrame
    mutual_information("ffpp.h5", ["lbp", "dct"])                       # DataFrame
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fusion import heads, metrics

__all__ = ["permutation_importance_by_group", "mutual_information"]


def _store(store):
    if isinstance(store, (str, bytes)) or hasattr(store, "__fspath__"):
        import stores
        return stores.open_store(store)
    return store


def permutation_importance_by_group(store, features, fusion="concat", head="logreg", split="test",
                                    n_repeats=5, seed=0, model=None, **params) -> pd.DataFrame:
    """Drop in AUC on ``split`` when one feature's whole block is shuffled across samples.

    A feature's dimensions are permuted together (same row permutation), so the importance is
    that of the feature group, not of single columns. ``model`` is a fitted
    :class:`fusion.heads.FusionHead`; without one, fusion ``fusion`` / ``head`` is fitted on
    train (val for model selection) first.

    Returns a DataFrame (feature, auc, auc_drop, auc_drop_std) sorted by ``auc_drop``, largest
    first; ``auc`` is the unpermuted AUC.
    """
    from fusion.train import load_split

    store = _store(store)
    features = list(features)
    if model is None:
        model = heads.create_fusion(fusion, features, head=head, seed=seed, **params)
        val = load_split(store, features, "val")
        model.fit(load_split(store, features, "train"), val if len(val) else None)
    data = load_split(store, features, split)
    if len(np.unique(data.y)) < 2:
        raise ValueError(f"split {split!r} needs reals and fakes for an AUC")
    base = metrics.core_metrics(data.y, model.decision_function(data))["auc"]
    rng = np.random.default_rng(seed)
    rows = []
    for f in features:
        drops = []
        for _ in range(n_repeats):
            blocks = dict(data.blocks)
            blocks[f] = data.blocks[f][rng.permutation(len(data))]
            permuted = heads.FusionData(blocks, data.y, data.meta)
            drops.append(base - metrics.core_metrics(data.y, model.decision_function(permuted))["auc"])
        rows.append({"feature": f, "auc": base, "auc_drop": float(np.mean(drops)),
                     "auc_drop_std": float(np.std(drops))})
    return pd.DataFrame(rows).sort_values("auc_drop", ascending=False, ignore_index=True)


def mutual_information(store, features, split="train", max_samples=20000, n_neighbors=3, seed=0) -> pd.DataFrame:
    """Mutual information (nats) between each feature dimension and the label.

    sklearn's ``mutual_info_classif`` (k-NN estimator) on at most ``max_samples`` rows of
    ``split`` (a seeded random subset); NaN values are replaced by the column mean.
    Returns a DataFrame (feature, dim, column, mi) sorted by ``mi``, largest first; ``column``
    is the store's column name for that dimension when the extractor recorded one.
    """
    from sklearn.feature_selection import mutual_info_classif

    store = _store(store)
    X, y, _ = store.read(list(features), split=split)
    if len(y) == 0:
        raise ValueError(f"split {split!r} has no samples")
    rng = np.random.default_rng(seed)
    if len(y) > max_samples:
        keep = np.sort(rng.choice(len(y), max_samples, replace=False))
        X, y = X[keep], y[keep]
    X = np.asarray(X, np.float64)
    col_mean = np.nanmean(np.where(np.isfinite(X), X, np.nan), axis=0) if np.isfinite(X).any() else np.zeros(X.shape[1])
    X = np.where(np.isfinite(X), X, np.nan_to_num(col_mean))
    mi = mutual_info_classif(X, y, n_neighbors=n_neighbors, random_state=seed)
    rows, start = [], 0
    for f in features:
        d = int(np.prod(store.attrs(f)["shape"]))
        cols = store.attrs(f).get("columns") or []
        for j in range(d):
            rows.append({"feature": f, "dim": j, "column": cols[j] if j < len(cols) else f"{f}[{j}]",
                         "mi": float(mi[start + j])})
        start += d
    return pd.DataFrame(rows).sort_values("mi", ascending=False, ignore_index=True)
