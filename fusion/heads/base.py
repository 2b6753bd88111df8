"""Fusion strategies: how per-feature blocks become one fake score.

How to add a new fusion
-----------------------
Subclass :class:`FusionHead`, set ``inputs`` ("vector" or "map"), implement
``_fit(train, val)``, ``_decision(data)`` (returns N decision values, higher = more fake:
the logit where the head has one; ``predict_proba`` is their sigmoid),
``_state()`` (a dict of numpy arrays, saved to ``weights.npz``) and ``_load_state(state)``,
then decorate the class with ``@register_fusion("name")``. A torch head subclasses
:class:`TorchFusion` instead and only implements ``_build()`` (the ``nn.Module``, whose
weights go to ``weights.safetensors``) and, if its inputs are not the per-feature vectors,
``_items(data)``. The contract tests in ``tests/fusion/test_heads.py`` run over every
registered name.

Families
--------
* feature level: ``concat`` (standardise, concatenate, sklearn head ``logreg`` |
  ``linear-svm`` | ``gbm``), ``weighted``, ``mlp``, ``attention``, ``gating``, ``pooling``,
  ``hierarchical`` (torch);
* late (one classifier per feature, then combine): ``soft-vote``, ``majority-vote``,
  ``stacking``, ``max-confidence``, ``threshold``;
* early (maps, not vectors): ``early`` (channel-stacked), ``early-spatial`` (tiled side by
  side, Peng et al. 2020);
* spatio-temporal: ``sequence`` (BiLSTM over the frames of each video).

Every head imputes non-finite feature values (NaN or +-inf, alike: rows a feature could not be computed for) with the
training-column mean and standardises each block with training statistics; both are part of
the saved model. Columns (near-)constant on train are set to 0 and standardised values are
clipped to +-:data:`Z_CLIP` (see :class:`BlockScaler`), so one column that never varied in
training cannot saturate every test score. Rank on :meth:`FusionHead.decision_function`
(logits), not on ``predict_proba``: float64 sigmoid is exactly 1.0 above a logit of ~37. Models are saved without pickle: ``model.json`` (config) plus ``.npz``
(sklearn coefficients, GBM tree arrays) or ``.safetensors`` (torch weights). In memory a
fitted head pickles as that same state (joblib workers, ``fusion.sklearn``), rebuilt by
:func:`head_from_state`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fusion import metrics, modelio

FUSIONS: dict[str, type["FusionHead"]] = {}
SKLEARN_HEADS = ("logreg", "linear-svm", "gbm")
FORMAT_VERSION = 1
#: Standardised feature values are clipped to [-Z_CLIP, Z_CLIP] (train standard deviations).
Z_CLIP = 10.0
#: A column whose train standard deviation is at most this share of its largest train
#: magnitude counts as constant (float32 rounding of a constant is ~1e-7 of it).
CONSTANT_RTOL = 1e-6

__all__ = ["FusionData", "FusionHead", "register_fusion", "create_fusion", "list_fusions",
           "load_head", "head_from_state", "FUSIONS", "SKLEARN_HEADS"]


def register_fusion(name: str):
    """Class decorator adding a :class:`FusionHead` subclass to the registry under ``name``."""
    def deco(cls):
        if name in FUSIONS:
            raise ValueError(f"fusion {name!r} is already registered")
        cls.name = name
        FUSIONS[name] = cls
        return cls
    return deco


def list_fusions() -> list[str]:
    return sorted(FUSIONS)


def create_fusion(name: str, features, **params) -> "FusionHead":
    """A fresh head of fusion ``name`` over ``features`` (vector or map names, in order)."""
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}; choose from {', '.join(list_fusions())}")
    return FUSIONS[name](list(features), **params)


# --------------------------------------------------------------------------------------------
# data
@dataclass
class FusionData:
    """One split as the heads see it.

    ``blocks`` maps feature name -> N x D float array (vector features) or N x H x W x C
    (map features, for early fusion); ``y`` is N int (0 real, 1 fake); ``meta`` the store's
    metadata rows (needed by ``sequence``: video_id, method, frame_index); ``valid`` (optional)
    maps feature name -> N bool, the store's ``valid`` flags of those rows.
    """
    blocks: dict
    y: np.ndarray
    meta: object = None
    valid: dict | None = None

    def __len__(self) -> int:
        return int(len(self.y))


# --------------------------------------------------------------------------------------------
# preprocessing
@dataclass
class BlockScaler:
    """Per-block NaN imputation (train mean), standardisation (train mean / std) and clipping.

    A column is *kept* when its train standard deviation exceeds :data:`CONSTANT_RTOL` times
    its largest train magnitude; other columns (constant on train: dead CNN units, an
    all-NaN column) carry no training information and are set to 0 on every split.
    Standardised values are clipped to ``[-Z_CLIP, Z_CLIP]``.

    >>> s = BlockScaler().fit({"f": np.array([[0., 1.], [0., 3.]])})
    >>> s.transform({"f": np.array([[5., 2.], [0., 1e9]])})["f"].tolist()
    [[0.0, 0.0], [0.0, 10.0]]
    """
    mean: dict = field(default_factory=dict)
    std: dict = field(default_factory=dict)
    keep: dict = field(default_factory=dict)

    def fit(self, blocks: dict) -> "BlockScaler":
        for name, x in blocks.items():
            x = np.asarray(x, dtype=np.float32)  # maps can be large: no float64 copy
            axes = tuple(range(x.ndim - 1))  # per column / per channel
            finite = np.isfinite(x)
            count = finite.sum(axis=axes)
            total = np.where(finite, x, 0).sum(axis=axes, dtype=np.float64)
            mean = np.where(count > 0, total / np.maximum(count, 1), 0.0)  # all-NaN column -> 0
            xi = np.where(finite, x, mean.astype(np.float32))
            std = xi.std(axis=axes, dtype=np.float64)
            scale = np.abs(xi).max(axis=axes) if xi.size else np.zeros_like(std)
            keep = (std > CONSTANT_RTOL * scale) & (std > 0)
            self.mean[name] = mean.astype(np.float32)
            self.std[name] = np.where(keep, std, 1.0).astype(np.float32)
            self.keep[name] = np.asarray(keep, bool)
        return self

    def constant_columns(self) -> dict:
        """``{block: number of columns neutralised as constant on train}``."""
        return {name: int((~k).sum()) for name, k in self.keep.items()}

    def transform(self, blocks: dict) -> dict:
        out = {}
        for name in self.mean:
            x = np.asarray(blocks[name], dtype=np.float32)
            x = np.where(np.isfinite(x), x, self.mean[name])
            z = (x - self.mean[name]) / self.std[name]
            keep = self.keep.get(name)
            if keep is not None:
                z = np.where(keep, z, 0.0)
            out[name] = np.clip(z, -Z_CLIP, Z_CLIP).astype(np.float32)
        return out

    def state(self) -> dict:
        s = {f"scaler.mean.{k}": v for k, v in self.mean.items()}
        s.update({f"scaler.std.{k}": v for k, v in self.std.items()})
        s.update({f"scaler.keep.{k}": v for k, v in self.keep.items()})
        return s

    @classmethod
    def from_state(cls, state: dict, names) -> "BlockScaler":
        # models saved before the keep mask existed keep every column
        return cls({n: np.asarray(state[f"scaler.mean.{n}"]) for n in names},
                   {n: np.asarray(state[f"scaler.std.{n}"]) for n in names},
                   {n: np.asarray(state[f"scaler.keep.{n}"], bool) for n in names
                    if f"scaler.keep.{n}" in state})


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


def _logit(p):
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def _log_mean_sigmoid(z):
    """``log(mean(sigmoid(z), axis=1))`` without forming the (saturating) probabilities."""
    from scipy.special import logsumexp
    return logsumexp(-np.logaddexp(0.0, -z), axis=1) - math.log(z.shape[1])


# --------------------------------------------------------------------------------------------
# sklearn heads with pickle-free parameters
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


# --------------------------------------------------------------------------------------------
# base class
class FusionHead:
    """Base of all fusion strategies. See the module docstring for how to add one."""

    name = "base"
    inputs = "vector"
    family = "feature"
    uses_head = False  # True where --head (logreg / linear-svm / gbm) matters
    accepted_params: dict = {}  # param name -> tuple of allowed values, or None for any value

    @classmethod
    def check_params(cls, features, params: dict):
        """Raise ValueError naming the first unknown or invalid hyper-parameter."""
        for k, v in params.items():
            if k not in cls.accepted_params:
                known = ", ".join(sorted(cls.accepted_params)) or "none"
                raise ValueError(f"fusion {cls.name!r} has no parameter {k!r} (it takes: {known})")
            allowed = cls.accepted_params[k]
            if allowed is not None and v not in allowed:
                raise ValueError(f"fusion {cls.name!r}: {k} must be one of {', '.join(map(str, allowed))}, got {v!r}")

    def __init__(self, features, head: str = "logreg", seed: int = 0, **params):
        if not features:
            raise ValueError("a fusion needs at least one feature")
        self.features = list(features)
        self.head = head
        self.seed = int(seed)
        self.params = dict(params)
        self.scaler: BlockScaler | None = None
        self.dims: dict = {}

    # public API -----------------------------------------------------------------------------
    def fit(self, train: FusionData, val: FusionData | None = None) -> "FusionHead":
        missing = [f for f in self.features if f not in train.blocks]
        if missing:
            raise ValueError(f"training data lacks feature(s) {missing}")
        if len(np.unique(train.y)) < 2:
            raise ValueError("training split has one class only; need both reals and fakes")
        raw = {f: train.blocks[f] for f in self.features}
        self.dims = {f: list(np.asarray(b).shape[1:]) for f, b in raw.items()}
        self.scaler = BlockScaler().fit(raw)
        self._fit(self._prep(train), self._prep(val) if val is not None and len(val) else None)
        return self

    def predict_proba(self, data: FusionData) -> np.ndarray:
        """Fake score per sample in [0, 1] (N floats, higher = more fake).

        A monotone map of :meth:`decision_function`; it saturates at 1.0 for large logits,
        so rank and threshold on the decision values.
        """
        return self.probability(self.decision_function(data))

    def decision_function(self, data: FusionData) -> np.ndarray:
        """Decision value per sample (N float64, higher = more fake; a logit for most heads)."""
        if self.scaler is None:
            raise RuntimeError(f"fusion {self.name!r} is not fitted")
        for f in self.features:
            if f not in data.blocks:
                raise ValueError(f"data lacks feature {f!r} the model was trained on")
            shape = list(np.shape(data.blocks[f])[1:])
            if shape != list(self.dims[f]):
                raise ValueError(f"feature {f!r} has shape {shape} per sample; the model expects {self.dims[f]}")
        return np.asarray(self._decision(self._prep(data)), dtype=np.float64).ravel()

    def probability(self, decision) -> np.ndarray:
        """The [0, 1] score of decision values (the sigmoid, for most heads)."""
        return _sigmoid(np.asarray(decision, np.float64))

    def decision_of(self, probability) -> np.ndarray:
        """Inverse of :meth:`probability`: for thresholds saved as probabilities by older runs."""
        return _logit(probability)

    def config(self) -> dict:
        return {"format_version": FORMAT_VERSION, "fusion": self.name, "features": self.features,
                "head": self.head, "seed": self.seed, "params": self.params, "dims": self.dims,
                "inputs": self.inputs}

    def save(self, directory, extra: dict | None = None) -> Path:
        """Write ``model.json`` (config + ``extra``) and the weights into ``directory``."""
        cfg = self.config()
        if extra:
            cfg["run"] = extra
        return modelio.save_model(directory, cfg, self._arrays(), self._tensor_state())

    def _arrays(self) -> dict:
        """The numpy state of a fitted head: scaler plus the head's own arrays."""
        return {**self.scaler.state(), **self._state()}

    def __reduce_ex__(self, protocol):
        # A fitted torch head holds a module of a class made inside a function, which pickle
        # cannot name; a fitted head is therefore pickled as what save() writes (config,
        # numpy state, torch tensors) and rebuilt by head_from_state, as load_head does.
        if self.scaler is None:
            return super().__reduce_ex__(protocol)
        tensors = {k: v.detach().cpu().clone() for k, v in self._tensor_state().items()}
        return head_from_state, (self.config(), self._arrays(), tensors)

    # for subclasses --------------------------------------------------------------------------
    def _prep(self, data: FusionData) -> FusionData:
        return FusionData(self.scaler.transform(data.blocks), np.asarray(data.y), data.meta)

    def _concat(self, data: FusionData) -> np.ndarray:
        return np.concatenate([data.blocks[f].reshape(len(data), -1) for f in self.features], axis=1)

    def _fit(self, train, val):
        raise NotImplementedError

    def _decision(self, data):
        raise NotImplementedError

    def _state(self) -> dict:
        raise NotImplementedError

    def _load_state(self, state: dict):
        raise NotImplementedError

    def _tensor_state(self) -> dict:
        return {}

    def _load_tensors(self, tensors: dict):
        pass


def load_head(directory) -> FusionHead:
    """Rebuild a saved head from ``model.json`` + weights (no pickle involved)."""
    cfg, arrays, tensors = modelio.load_model(directory)
    if cfg.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{directory}: model format {cfg.get('format_version')} != {FORMAT_VERSION}")
    return head_from_state(cfg, arrays, tensors)


def head_from_state(cfg: dict, arrays: dict, tensors: dict) -> FusionHead:
    """A fitted head from its :meth:`FusionHead.config`, numpy state and torch state: what
    :func:`load_head` reads from disk and what unpickling a fitted head calls."""
    head = create_fusion(cfg["fusion"], cfg["features"], head=cfg["head"], seed=cfg["seed"], **cfg["params"])
    head.dims = cfg["dims"]
    head.scaler = BlockScaler.from_state(arrays, head.features)
    head._load_state(arrays)
    head._load_tensors(tensors)
    return head


def _prefixed(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


# --------------------------------------------------------------------------------------------
# feature level: sklearn
@register_fusion("concat")
class ConcatFusion(FusionHead):
    """Standardise each feature, concatenate, one sklearn classifier (``--head``)."""
    uses_head = True

    def _fit(self, train, val):
        self.model = fit_sklearn_head(self.head, self._concat(train), train.y,
                                      None if val is None else self._concat(val),
                                      None if val is None else val.y, seed=self.seed)

    def _decision(self, data):
        return decision_sklearn_head(self.model, self._concat(data))

    def _state(self):
        return {f"model.{k}": v for k, v in self.model.items()}

    def _load_state(self, state):
        self.model = _prefixed(state, "model.")


# --------------------------------------------------------------------------------------------
# late fusion
class LateFusion(FusionHead):
    """One ``--head`` classifier per feature; subclasses combine the per-feature scores."""
    family = "late"
    uses_head = True

    def _fit(self, train, val):
        self.models = {}
        for f in self.features:
            self.models[f] = fit_sklearn_head(
                self.head, train.blocks[f].reshape(len(train), -1), train.y,
                None if val is None else val.blocks[f].reshape(len(val), -1),
                None if val is None else val.y, seed=self.seed)
        self._fit_combiner(train, self._base_scores(train))

    def _base_scores(self, data) -> np.ndarray:
        """Per-feature decision values (N x n_features), see :func:`decision_sklearn_head`."""
        return np.stack([decision_sklearn_head(self.models[f], data.blocks[f].reshape(len(data), -1))
                         for f in self.features], axis=1)

    def _decision(self, data):
        return self._combine(self._base_scores(data))

    def _fit_combiner(self, train, scores):
        pass

    def _combine(self, scores):
        raise NotImplementedError

    def _combiner_state(self) -> dict:
        return {}

    def _load_combiner(self, state):
        pass

    def _state(self):
        s = {f"base.{f}.{k}": v for f in self.features for k, v in self.models[f].items()}
        s.update({f"comb.{k}": v for k, v in self._combiner_state().items()})
        return s

    def _load_state(self, state):
        self.models = {f: _prefixed(state, f"base.{f}.") for f in self.features}
        self._load_combiner(_prefixed(state, "comb."))


@register_fusion("soft-vote")
class SoftVoteFusion(LateFusion):
    """Mean of the per-feature fake probabilities (its logit is the decision value)."""

    def _combine(self, scores):
        return _log_mean_sigmoid(scores) - _log_mean_sigmoid(-scores)


class PerFeatureThresholdFusion(LateFusion):
    """Late fusion with one decision threshold per feature, at that feature's train EER.

    Thresholds are on the per-feature decision values (logits); models saved with
    probability thresholds (key ``thresholds``) are converted on load.
    """

    def _fit_combiner(self, train, scores):
        self.thresholds = np.array([metrics.threshold_at_eer(train.y, scores[:, k])
                                    for k in range(scores.shape[1])])

    def _combiner_state(self):
        return {"logit_thresholds": self.thresholds}

    def _load_combiner(self, state):
        self.thresholds = (state["logit_thresholds"] if "logit_thresholds" in state
                           else _logit(state["thresholds"]))


@register_fusion("majority-vote")
class MajorityVoteFusion(PerFeatureThresholdFusion):
    """Share of per-feature classifiers voting fake, each at its own train-EER threshold.

    The score takes n+1 values (0, 1/n, ..., 1); a score above 0.5 is a strict majority.
    """

    def _combine(self, scores):
        return (scores >= self.thresholds).mean(axis=1)

    def probability(self, decision):
        return np.asarray(decision, np.float64)  # the vote share is already in [0, 1]

    def decision_of(self, probability):
        return np.asarray(probability, np.float64)


@register_fusion("max-confidence")
class MaxConfidenceFusion(LateFusion):
    """Per sample, the per-feature probability farthest from 0.5 (the most confident one)."""

    def _combine(self, scores):
        pick = np.abs(scores).argmax(axis=1)  # logit farthest from 0 = probability farthest from 0.5
        return scores[np.arange(len(scores)), pick]


@register_fusion("threshold")
class ThresholdFusion(PerFeatureThresholdFusion):
    """k-of-n rule on per-feature thresholds chosen at each feature's train EER.

    A sample is fake when at least ``k`` features score above their threshold (``k=1``, the
    default, is the OR rule; ``k=n`` is AND). The decision value is the k-th largest logit
    margin ``z_f - t_f``, so "decision >= 0" (probability >= 0.5) is exactly the k-of-n
    decision while the score stays continuous for ROC metrics.
    """
    accepted_params = {"k": None}

    def _combine(self, scores):
        k = int(self.params.get("k", 1))
        if not 1 <= k <= scores.shape[1]:
            raise ValueError(f"threshold fusion: k must be in 1..{scores.shape[1]}, got {k}")
        margins = np.sort(scores - self.thresholds, axis=1)[:, ::-1]
        return margins[:, k - 1]


@register_fusion("stacking")
class StackingFusion(LateFusion):
    """Meta logistic regression on out-of-fold per-feature decision values (5 folds).

    The out-of-fold values come from the same ``--head`` kind, with the same hyper-parameter
    (C or learning rate) that val picked for the base model used at prediction time, so the
    meta-learner is fitted on the kind of scores it is later applied to. The base models used
    at prediction time are those ``--head`` models refitted on all of train.
    """

    def _fit_combiner(self, train, scores):
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold

        n_splits = int(min(5, np.bincount(train.y).min()))
        oof = np.array(scores, dtype=np.float64)
        if n_splits >= 2:
            folds = list(StratifiedKFold(n_splits, shuffle=True, random_state=self.seed)
                         .split(np.zeros(len(train)), train.y))
            for k, f in enumerate(self.features):
                x = train.blocks[f].reshape(len(train), -1)
                setting = [sklearn_head_setting(self.models[f])]
                for fit_rows, held_out in folds:
                    params = fit_sklearn_head(self.head, x[fit_rows], train.y[fit_rows],
                                              seed=self.seed, grid=setting)
                    oof[held_out, k] = decision_sklearn_head(params, x[held_out])
        self.oof_scores = oof  # kept for inspection; not saved
        meta = LogisticRegression(max_iter=500).fit(oof, train.y)
        self.meta_coef, self.meta_intercept = meta.coef_.ravel(), np.asarray(meta.intercept_)

    def _combine(self, scores):
        return scores @ self.meta_coef + float(self.meta_intercept[0])

    def _combiner_state(self):
        return {"coef": self.meta_coef, "intercept": self.meta_intercept}

    def _load_combiner(self, state):
        self.meta_coef, self.meta_intercept = state["coef"], state["intercept"]


# --------------------------------------------------------------------------------------------
# torch heads
def _torch():
    import torch  # imported lazily: sklearn-only runs never pay for it
    return torch


def torch_device():
    """CUDA when available, else CPU."""
    torch = _torch()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TorchFusion(FusionHead):
    """Base of the torch heads: Adam, BCE loss, early stopping on val loss, seeded.

    Hyper-parameters (``params``): ``epochs`` (100), ``patience`` (10), ``lr`` (3e-3),
    ``batch_size`` (64), ``weight_decay`` (1e-4), ``hidden`` (64), ``d`` (token size, 32).
    Without a val split, train loss drives the early stopping.
    """
    defaults = {"epochs": 100, "patience": 10, "lr": 3e-3, "batch_size": 64,
                "weight_decay": 1e-4, "hidden": 64, "d": 32}
    accepted_params = dict.fromkeys(defaults)

    def p(self, key):
        return self.params.get(key, self.defaults.get(key))

    # subclasses: the network and how a split becomes tensors -------------------------------
    def _build(self):
        raise NotImplementedError

    def _items(self, data) -> tuple[list, np.ndarray]:
        """Network inputs (arrays with one row per training item) and item labels."""
        return [data.blocks[f].reshape(len(data), -1) for f in self.features], data.y

    def _to_samples(self, data, item_scores: np.ndarray) -> np.ndarray:
        return item_scores

    # training --------------------------------------------------------------------------------
    def _fit(self, train, val):
        torch = _torch()
        torch.manual_seed(self.seed)
        dev = torch_device()
        self.net = self._build().to(dev)
        xs, y = self._items(train)
        xs = [torch.as_tensor(np.ascontiguousarray(x)).to(dev) for x in xs]
        y = torch.as_tensor(np.array(y, dtype=np.float32)).to(dev)
        if val is not None and len(np.unique(val.y)) == 2:
            vx, vy = self._items(val)
            vx = [torch.as_tensor(np.ascontiguousarray(x)).to(dev) for x in vx]
            vy = torch.as_tensor(np.array(vy, dtype=np.float32)).to(dev)
        else:
            vx, vy = xs, y
        opt = torch.optim.Adam(self.net.parameters(), lr=self.p("lr"), weight_decay=self.p("weight_decay"))
        loss_fn = torch.nn.BCEWithLogitsLoss()
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        n, bs = len(y), int(self.p("batch_size"))
        best, best_state, bad = math.inf, None, 0
        for _ in range(int(self.p("epochs"))):
            self.net.train()
            perm = torch.randperm(n, generator=gen).to(dev)
            for i in range(0, n, bs):
                idx = perm[i:i + bs]
                opt.zero_grad()
                loss = loss_fn(self.net(*[x[idx] for x in xs]), y[idx])
                loss.backward()
                opt.step()
            vloss = loss_fn(self._logits(vx), vy).item()
            if vloss < best - 1e-5:
                best, bad = vloss, 0
                best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            else:
                bad += 1
                if bad >= int(self.p("patience")):
                    break
        self.net.load_state_dict(best_state)
        self.net.eval()

    def _logits(self, xs):
        torch = _torch()
        self.net.eval()
        bs = 4096
        with torch.no_grad():
            return torch.cat([self.net(*[x[i:i + bs] for x in xs]) for i in range(0, len(xs[0]), bs)])

    def _decision(self, data):
        torch = _torch()
        dev = next(self.net.parameters()).device
        xs, _ = self._items(data)
        logits = self._logits([torch.as_tensor(np.ascontiguousarray(x)).to(dev) for x in xs])
        return self._to_samples(data, logits.cpu().numpy().astype(np.float64))

    def _state(self):
        return {}

    def _load_state(self, state):
        pass

    def _tensor_state(self):
        return dict(self.net.state_dict())

    def _load_tensors(self, tensors):
        self.net = self._build().to(torch_device())
        self.net.load_state_dict(tensors)
        self.net.eval()


def _vector_dims(head) -> list[int]:
    return [int(np.prod(head.dims[f])) for f in head.features]


def _nn():
    return _torch().nn


def _token_projector(dims, d):
    nn = _nn()
    return nn.ModuleList([nn.Sequential(nn.Linear(k, d), nn.LayerNorm(d)) for k in dims])


def _make_module(forward, **modules):
    """A tiny nn.Module from sub-modules and a ``forward(self, *xs)`` function."""
    nn = _nn()

    class _Net(nn.Module):
        def __init__(self):
            super().__init__()
            for k, v in modules.items():
                setattr(self, k, v)

        def forward(self, *xs):
            return forward(self, *xs)

    return _Net()


def _token_net(head, forward, **modules):
    """A network over per-feature tokens: ``proj`` (one d-dim token per feature), a learned
    ``feature_embedding`` added to the tokens, an ``out`` MLP from d to one logit, plus
    ``modules``."""
    torch, nn = _torch(), _nn()
    d, dims = int(head.p("d")), _vector_dims(head)
    return _make_module(forward, proj=_token_projector(dims, d),
                        feature_embedding=nn.Parameter(torch.zeros(len(dims), d)),
                        out=nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 1)), **modules)


def _tokens(net, xs):
    torch = _torch()
    return torch.stack([proj(x) for proj, x in zip(net.proj, xs)], dim=1) + net.feature_embedding


@register_fusion("weighted")
class WeightedFusion(TorchFusion):
    """One linear scorer per feature, combined with learned softmax weights."""

    def _build(self):
        torch, nn = _torch(), _nn()
        dims = _vector_dims(self)

        def forward(net, *xs):
            s = torch.cat([lin(x) for lin, x in zip(net.scorers, xs)], dim=1)
            return (s * torch.softmax(net.alpha, 0)).sum(1) + net.bias

        return _make_module(forward, scorers=nn.ModuleList([nn.Linear(k, 1) for k in dims]),
                            alpha=nn.Parameter(torch.zeros(len(dims))), bias=nn.Parameter(torch.zeros(1)))

    def feature_weights(self) -> dict:
        """The learned softmax weight of each feature."""
        w = _torch().softmax(self.net.alpha.detach().cpu(), 0).numpy()
        return dict(zip(self.features, w.tolist()))


@register_fusion("mlp")
class MLPFusion(TorchFusion):
    """Concatenated features into a two-hidden-layer MLP with dropout."""

    def _build(self):
        torch, nn = _torch(), _nn()
        h = int(self.p("hidden"))
        mlp = nn.Sequential(nn.Linear(sum(_vector_dims(self)), h), nn.ReLU(), nn.Dropout(0.2),
                            nn.Linear(h, h // 2), nn.ReLU(), nn.Linear(h // 2, 1))
        return _make_module(lambda net, *xs: net.mlp(torch.cat(xs, 1)).squeeze(1), mlp=mlp)


@register_fusion("attention")
class AttentionFusion(TorchFusion):
    """Per-feature tokens, self-attention between them, then cross-attention from a learned query.

    ``mode``: "self+cross" (default), "self" (self-attention, mean over tokens) or "cross"
    (the learned query attends to the raw tokens).
    """
    accepted_params = {**TorchFusion.accepted_params, "mode": ("self+cross", "self", "cross")}

    def _build(self):
        torch, nn = _torch(), _nn()
        d = int(self.p("d"))
        mode = self.params.get("mode", "self+cross")
        self.check_params(self.features, {"mode": mode})

        def forward(net, *xs):
            t = _tokens(net, xs)
            if "self" in mode:
                a, _ = net.self_attn(t, t, t)
                t = net.norm(t + a)
            if "cross" in mode:
                q = net.query.expand(t.shape[0], -1, -1)
                pooled, _ = net.cross_attn(q, t, t)
                pooled = pooled.squeeze(1)
            else:
                pooled = t.mean(1)
            return net.out(pooled).squeeze(1)

        return _token_net(self, forward, self_attn=nn.MultiheadAttention(d, 4, batch_first=True),
                          norm=nn.LayerNorm(d), cross_attn=nn.MultiheadAttention(d, 4, batch_first=True),
                          query=nn.Parameter(torch.randn(1, 1, d) * 0.02))


@register_fusion("gating")
class GatingFusion(TorchFusion):
    """FiLM-conditioned tokens and softmax gates.

    The mean token is the context; it scales and shifts every token (FiLM:
    ``t * (1 + gamma) + beta``), then a gate per token weights the sum fed to the classifier.
    """

    def _build(self):
        torch, nn = _torch(), _nn()
        d = int(self.p("d"))

        def forward(net, *xs):
            t = _tokens(net, xs)
            gamma, beta = net.film(t.mean(1, keepdim=True)).chunk(2, dim=-1)
            t = t * (1 + gamma) + beta
            g = torch.softmax(net.gate(t), dim=1)
            return net.out((g * t).sum(1)).squeeze(1)

        return _token_net(self, forward, film=nn.Linear(d, 2 * d), gate=nn.Linear(d, 1))


@register_fusion("pooling")
class PoolingFusion(TorchFusion):
    """Per-feature tokens pooled by ``pool`` = "mean" (default) or "max", then an MLP."""
    accepted_params = {**TorchFusion.accepted_params, "pool": ("mean", "max")}

    def _build(self):
        pool = self.params.get("pool", "mean")
        self.check_params(self.features, {"pool": pool})

        def forward(net, *xs):
            t = _tokens(net, xs)
            return net.out(t.mean(1) if pool == "mean" else t.max(1).values).squeeze(1)

        return _token_net(self, forward)


def parse_groups(spec, features) -> list[list[str]]:
    """Feature groups for hierarchical fusion: "a,b;c" -> [["a", "b"], ["c"]].

    Default (None): consecutive pairs in the given feature order. Every feature must appear
    exactly once.
    """
    if spec is None:
        return [features[i:i + 2] for i in range(0, len(features), 2)]
    groups = spec if isinstance(spec, list) else [g.split(",") for g in str(spec).split(";")]
    groups = [[f.strip() for f in g if f.strip()] for g in groups]
    flat = [f for g in groups for f in g]
    if sorted(flat) != sorted(features):
        raise ValueError(f"hierarchical groups {spec!r} must use each of {features} exactly once")
    return groups


@register_fusion("hierarchical")
class HierarchicalFusion(TorchFusion):
    """Two-stage fusion: each feature group -> embedding, then the group embeddings -> score.

    ``groups`` param: "a,b;c" (see :func:`parse_groups`); default consecutive pairs.
    """
    accepted_params = {**TorchFusion.accepted_params, "groups": None}

    @classmethod
    def check_params(cls, features, params):
        super().check_params(features, params)
        parse_groups(params.get("groups"), list(features))

    def _build(self):
        torch, nn = _torch(), _nn()
        d = int(self.p("d"))
        groups = parse_groups(self.params.get("groups"), self.features)
        index = {f: i for i, f in enumerate(self.features)}
        dims = _vector_dims(self)
        members = [[index[f] for f in g] for g in groups]
        stage1 = nn.ModuleList([nn.Sequential(nn.Linear(sum(dims[i] for i in m), d), nn.ReLU())
                                for m in members])

        def forward(net, *xs):
            emb = [s(torch.cat([xs[i] for i in m], 1)) for s, m in zip(net.stage1, members)]
            return net.stage2(torch.cat(emb, 1)).squeeze(1)

        return _make_module(forward, stage1=stage1,
                            stage2=nn.Sequential(nn.Linear(d * len(groups), d), nn.ReLU(), nn.Linear(d, 1)))


def _small_cnn(in_channels: int):
    nn = _nn()
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, 1))


class EarlyFusionBase(TorchFusion):
    """Maps (N x H x W x C, read with ``read_map``) resized to ``size`` x ``size`` (64)."""
    inputs = "map"
    family = "early"
    accepted_params = {**TorchFusion.accepted_params, "size": None}

    def _resized(self, data) -> list[np.ndarray]:
        torch = _torch()
        size = int(self.params.get("size", 64))
        out = []
        for f in self.features:
            m = np.asarray(data.blocks[f], dtype=np.float32)
            if m.ndim == 3:
                m = m[..., None]
            t = torch.as_tensor(m).permute(0, 3, 1, 2)
            mode = "area" if t.shape[-1] >= size and t.shape[-2] >= size else "bilinear"
            kw = {} if mode == "area" else {"align_corners": False}
            out.append(torch.nn.functional.interpolate(t, size=(size, size), mode=mode, **kw).numpy())
        return out

    def _channels(self) -> list[int]:
        return [int(self.dims[f][-1]) if len(self.dims[f]) == 3 else 1 for f in self.features]


@register_fusion("early")
class EarlyFusion(EarlyFusionBase):
    """Maps stacked along the channel axis into a small CNN."""

    def _items(self, data):
        return [np.concatenate(self._resized(data), axis=1)], data.y

    def _build(self):
        return _make_module(lambda net, x: net.cnn(x).squeeze(1), cnn=_small_cnn(sum(self._channels())))


@register_fusion("early-spatial")
class EarlySpatialFusion(EarlyFusionBase):
    """Maps tiled side by side (Peng et al. 2020) into a small CNN.

    Maps with fewer channels than the widest one are zero-padded to its channel count.
    """

    def _items(self, data):
        maps = self._resized(data)
        c = max(m.shape[1] for m in maps)
        maps = [np.pad(m, ((0, 0), (0, c - m.shape[1]), (0, 0), (0, 0))) for m in maps]
        return [np.concatenate(maps, axis=3)], data.y

    def _build(self):
        return _make_module(lambda net, x: net.cnn(x).squeeze(1), cnn=_small_cnn(max(self._channels())))


@register_fusion("sequence")
class SequenceFusion(TorchFusion):
    """BiLSTM over the frames of each video; every frame gets its video's score.

    Frames are grouped by ``(method, video_id)`` and ordered by ``frame_index``; the LSTM
    outputs are averaged over the valid time steps. Needs ``meta`` with those columns.
    """
    family = "sequence"

    def _groups(self, data):
        import pandas as pd
        if data.meta is None:
            raise ValueError("sequence fusion needs per-sample meta (method, video_id, frame_index)")
        meta = pd.DataFrame({"method": np.asarray(data.meta["method"]).astype(str),
                             "video_id": np.asarray(data.meta["video_id"]).astype(str),
                             "frame_index": np.asarray(data.meta["frame_index"]), "row": np.arange(len(data))})
        meta = meta.sort_values(["method", "video_id", "frame_index"], kind="mergesort")
        return [g["row"].to_numpy() for _, g in meta.groupby(["method", "video_id"], sort=False)]

    def _items(self, data):
        x = self._concat(data)
        groups = self._groups(data)
        t_max = max(len(g) for g in groups)
        seq = np.zeros((len(groups), t_max, x.shape[1]), np.float32)
        lengths = np.zeros(len(groups), np.int64)
        for i, g in enumerate(groups):
            seq[i, :len(g)], lengths[i] = x[g], len(g)
        y = np.array([data.y[g].max() for g in groups])
        return [seq, lengths], y

    def _to_samples(self, data, item_scores):
        out = np.empty(len(data))
        for s, g in zip(item_scores, self._groups(data)):
            out[g] = s
        return out

    def _build(self):
        torch, nn = _torch(), _nn()
        h = int(self.p("hidden")) // 2

        def forward(net, seq, lengths):
            packed = nn.utils.rnn.pack_padded_sequence(seq, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = net.lstm(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=seq.shape[1])
            mask = (torch.arange(seq.shape[1], device=seq.device)[None, :] < lengths[:, None]).float()
            pooled = (out * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            return net.out(pooled).squeeze(1)

        return _make_module(forward, lstm=nn.LSTM(sum(_vector_dims(self)), h, batch_first=True, bidirectional=True),
                            out=nn.Linear(2 * h, 1))
