"""The ``--head`` classifiers (``logreg``, ``linear-svm``, ``gbm``) that ``concat`` and the late
fusions fit, kept as plain numpy arrays so a saved model needs no pickle.

:func:`fit_sklearn_head` fits one (its hyper-parameter picked on val) and returns arrays;
:func:`decision_sklearn_head` / :func:`predict_sklearn_head` score with them. A GBM is stored as
padded tree arrays (:func:`gbm_to_arrays`) and evaluated by :func:`gbm_decision`.
"""
from __future__ import annotations

import math

import numpy as np

from fusion import metrics
from fusion.heads.base import SKLEARN_HEADS, _sigmoid


def _val_auc(y, s) -> float:
    a = metrics.core_metrics(y, s)["auc"] if len(y) else math.nan
    return -1.0 if math.isnan(a) else a


def fit_sklearn_head(kind: str, X, y, X_val=None, y_val=None, seed: int = 0, grid=None) -> dict:
    """Fit a ``logreg`` / ``linear-svm`` / ``gbm`` classifier, picking its hyper-parameter on val.

    Grids: C in {0.01, 0.1, 1, 10} for the linear models, learning rate in {0.05, 0.2} for GBM
    (100 trees of depth 3); the val AUC picks, and without val the middle value is used.
    Returns plain numpy arrays (see :func:`predict_sklearn_head`), never a fitted estimator.
    """
    X = np.asarray(X, dtype=np.float32)
    if kind not in SKLEARN_HEADS:
        raise ValueError(f"unknown head {kind!r}; choose from {', '.join(SKLEARN_HEADS)}")
    if len(np.unique(y)) < 2:
        raise ValueError("training data has one class only; a classifier needs reals and fakes")
    if kind == "gbm":
        grid = grid or [0.05, 0.2]
    else:
        grid = grid or [0.01, 0.1, 1.0, 10.0]
    have_val = X_val is not None and len(X_val) and len(np.unique(y_val)) == 2
    candidates = grid if have_val else [grid[len(grid) // 2]]
    best, best_auc = None, -np.inf
    for value in candidates:
        params = _fit_one_sklearn(kind, X, y, value, seed)
        if not have_val:
            return params
        auc = _val_auc(y_val, predict_sklearn_head(params, X_val))
        if auc > best_auc:
            best, best_auc = params, auc
    return best


def _fit_one_sklearn(kind, X, y, value, seed) -> dict:
    if kind == "logreg":
        from sklearn.linear_model import LogisticRegression
        # lbfgs on standardised float32 input converges in a few dozen iterations; tol 1e-3
        # is far below what changes a ranking metric.
        clf = LogisticRegression(C=value, solver="lbfgs", max_iter=200, tol=1e-3)
        clf.fit(X, y)
        return {"kind": np.array("logreg"), "coef": clf.coef_.ravel().astype(np.float64),
                "intercept": np.asarray(clf.intercept_, dtype=np.float64), "C": np.array(value)}
    if kind == "linear-svm":
        from sklearn.svm import LinearSVC
        clf = LinearSVC(C=value, dual="auto", max_iter=2000, tol=1e-3, random_state=seed)
        clf.fit(X, y)
        return {"kind": np.array("linear-svm"), "coef": clf.coef_.ravel().astype(np.float64),
                "intercept": np.asarray(clf.intercept_, dtype=np.float64), "C": np.array(value)}
    from sklearn.ensemble import GradientBoostingClassifier
    clf = GradientBoostingClassifier(n_estimators=100, max_depth=3, learning_rate=value,
                                     subsample=1.0, random_state=seed)
    clf.fit(X, y)
    return gbm_to_arrays(clf)


def gbm_to_arrays(clf) -> dict:
    """A fitted binary ``GradientBoostingClassifier`` as padded tree arrays (no pickle).

    Trees are stacked into ``(n_trees, max_nodes)`` arrays of children, split feature,
    threshold and leaf value; ``init`` is the prior log-odds the boosting starts from.
    """
    trees = [est[0].tree_ for est in clf.estimators_]
    n_nodes = max(t.node_count for t in trees)
    shape = (len(trees), n_nodes)
    left, right = np.full(shape, -1, np.int32), np.full(shape, -1, np.int32)
    feat, thr = np.zeros(shape, np.int32), np.zeros(shape, np.float64)
    value = np.zeros(shape, np.float64)
    for i, t in enumerate(trees):
        n = t.node_count
        left[i, :n], right[i, :n] = t.children_left, t.children_right
        feat[i, :n] = np.maximum(t.feature, 0)
        thr[i, :n], value[i, :n] = t.threshold, t.value[:, 0, 0]
    prior = float(np.clip(np.mean(clf.init_.class_prior_[1]), 1e-12, 1 - 1e-12))
    return {"kind": np.array("gbm"), "left": left, "right": right, "feature": feat,
            "threshold": thr, "value": value, "init": np.array(math.log(prior / (1 - prior))),
            "learning_rate": np.array(clf.learning_rate), "max_depth": np.array(clf.max_depth)}


def gbm_decision(params: dict, X) -> np.ndarray:
    """Raw log-odds of the tree arrays from :func:`gbm_to_arrays` (all trees at once)."""
    X = np.asarray(X, dtype=np.float32)  # sklearn compares float32 features with the thresholds
    left, right, feat = params["left"], params["right"], params["feature"]
    thr, value = params["threshold"], params["value"]
    n_trees = left.shape[0]
    rows = np.arange(n_trees)[:, None]
    node = np.zeros((n_trees, X.shape[0]), dtype=np.int64)
    cols = np.arange(X.shape[0])[None, :]
    for _ in range(int(params["max_depth"]) + 1):
        lft = left[rows, node]
        leaf = lft == -1
        if leaf.all():
            break
        go_left = X[cols, feat[rows, node]] <= thr[rows, node]
        node = np.where(leaf, node, np.where(go_left, lft, right[rows, node]))
    return float(params["init"]) + float(params["learning_rate"]) * value[rows, node].sum(axis=0)


def decision_sklearn_head(params: dict, X) -> np.ndarray:
    """Decision values of :func:`fit_sklearn_head` arrays: the logit (logreg), the margin
    (linear SVM) or the raw log-odds (GBM). Higher = more fake; never saturates."""
    if str(params["kind"]) == "gbm":
        return gbm_decision(params, X)
    X = np.asarray(X, dtype=np.float64)
    return X @ params["coef"] + float(params["intercept"][0])


def predict_sklearn_head(params: dict, X) -> np.ndarray:
    """Scores in [0, 1] from :func:`fit_sklearn_head` arrays: the sigmoid of
    :func:`decision_sklearn_head` (logreg's probability; for the linear SVM and GBM
    monotone, so ranking metrics are unchanged, but not calibrated)."""
    return _sigmoid(decision_sklearn_head(params, X))


def sklearn_head_setting(params: dict) -> float:
    """The hyper-parameter :func:`fit_sklearn_head` picked: C, or GBM's learning rate."""
    return float(params["learning_rate"] if str(params["kind"]) == "gbm" else params["C"])
