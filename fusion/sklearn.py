"""CLMF's fusion heads as scikit-learn classifiers: ``cross_val_score``, ``GridSearchCV``,
``Pipeline`` and ``clone`` work on them.

:class:`FusionClassifier` wraps one head of :mod:`fusion.heads` (any registered fusion whose
inputs are per-sample vectors: ``concat``, the late fusions, the torch feature-level heads)
behind ``fit(X, y)``, ``predict_proba`` (N x 2), ``decision_function``, ``predict`` and
``get_params`` / ``set_params``.

Feature blocks come from the column names
-----------------------------------------
A DataFrame column ``<feature>__<column>`` belongs to block ``<feature>`` (everything before
the first ``__``, :data:`stores.COLUMN_SEP`, as in ``ColumnTransformer`` output names);
``store.read(features, split=..., as_frame=True)`` returns exactly such a frame. A plain
array, or a frame none of whose column names holds ``__``, is one block named ``"x"``.
``features`` (default: every block, in column order) selects and orders the blocks, so
which features to fuse is a hyper-parameter like any other::

    >>> from fusion.sklearn import FusionClassifier
    >>> from sklearn.model_selection import GridSearchCV, GroupKFold   # doctest: +SKIP
    >>> X, y, meta = store.read(["lbp", "dct", "fft"], split="train", as_frame=True)  # doctest: +SKIP
    >>> search = GridSearchCV(FusionClassifier(), {"fusion": ["concat", "soft-vote"],
    ...                       "features": [["lbp"], ["lbp", "dct", "fft"]]},
    ...                       scoring="roc_auc", cv=GroupKFold(3))  # doctest: +SKIP
    >>> search.fit(X, y, groups=meta["video_id"])                    # doctest: +SKIP

Hyper-parameters
----------------
``fusion``, ``features``, ``head`` (``logreg`` | ``linear-svm`` | ``gbm``, for the fusions that
use one), ``seed`` and ``val_size`` are named arguments; the heads' own parameters
(``epochs``, ``lr``, ``d``, ``mode``, ``pool``, ``groups``, ``k``, ...) are keyword
arguments, ``FusionClassifier(fusion="attention", epochs=50)``. scikit-learn reads
parameters from the signature of ``__init__``, which cannot list every head's parameters,
so :meth:`get_params` adds the keyword arguments to the named ones, :meth:`set_params`
sets them, and ``clone`` and ``GridSearchCV`` carry them over. Whether the chosen fusion
takes them is checked by ``fit`` (a ValueError naming the parameters it does take), as
scikit-learn validates in ``fit``.

Validation data
---------------
The CLI heads pick their C (or GBM learning rate) on a val split and stop torch training
on val loss. ``fit(X, y)`` has no val split: with ``val_size=0`` (default) the linear heads
use C = 1 and GBM a learning rate of 0.2 (the middle of their grids) and torch heads stop
on train loss. With ``0 < val_size < 1`` that share of the rows is held out for those
choices and the head is fitted on the rest; pass ``fit(X, y, groups=video_ids)`` so that
whole videos are held out (without groups, rows are drawn stratified by label, and frames
of one video land on both sides). Inside ``GridSearchCV`` the outer search already picks
on held-out folds, so ``val_size=0`` is usually what you want.

Non-finite values
-----------------
NaN and +-inf are treated alike, as in the CLIs (see :mod:`fusion.train`): a missing value
the head replaces with its train-column mean. ``fit`` and the predicting methods say so with
a :class:`NonFiniteFeatureWarning` naming each block and how many rows hold such a value.

Stacked features
----------------
A feature that is itself a trained model (``cascade``) must not be fitted on the rows that
model was trained or selected on. ``store.read(..., as_frame=True)`` marks such blocks in
``X.attrs``; ``fit(X, y, meta=meta)`` (``meta`` from the same ``store.read``) checks the rows
and raises a ValueError naming the feature and the overlapping rows
(:mod:`fusion.leakage`); ``allow_overlap=True`` fits anyway with a :class:`LeakageWarning`.

Not wrapped: the map fusions (``early``, ``early-spatial``) and ``sequence``, which needs
each row's video and frame index; use ``python -m fusion.train`` for those.

Decision values and thresholds
------------------------------
``decision_function`` is the head's decision value (a logit for most heads) shifted so that
0 is a fake probability of 0.5; ``predict`` says fake where it is > 0, as scikit-learn
expects. The CLIs' threshold at the val EER is not applied; tune one with
``sklearn.model_selection.TunedThresholdClassifierCV`` if you need it. Rank on
``decision_function`` rather than ``predict_proba`` (the sigmoid saturates above ~37).
The fitted head is ``head_``: ``clf.head_.save(directory)`` writes the pickle-free model
files of :meth:`fusion.heads.FusionHead.save`.
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from fusion import heads
from base.errors import UsageError
from stores.reader import COLUMN_SEP, STACKED_ATTR

__all__ = ["FusionClassifier", "feature_blocks", "PLAIN_BLOCK", "NonFiniteFeatureWarning",
           "LeakageWarning"]

#: The block name of a plain array, or of a frame without ``<feature>__<column>`` names.
PLAIN_BLOCK = "x"


class NonFiniteFeatureWarning(UserWarning):
    """Rows of a feature block hold NaN or inf; the head imputes them with the train mean."""


class LeakageWarning(UserWarning):
    """``allow_overlap=True`` let a stacked feature meet rows it was trained or selected on."""


def feature_blocks(columns) -> dict[str, list[int]]:
    """``{feature: [column positions]}`` from ``<feature>__<column>`` names, in column order.

    Names without the separator are an error unless no name has it (then one block,
    :data:`PLAIN_BLOCK`, holds every column).

    >>> feature_blocks(["lbp__0", "lbp__1", "dct__u0v1"])
    {'lbp': [0, 1], 'dct': [2]}
    >>> feature_blocks(["a", "b"])
    {'x': [0, 1]}
    """
    names = [str(c) for c in columns]
    plain = [n for n in names if COLUMN_SEP not in n or n.startswith(COLUMN_SEP)]
    if len(plain) == len(names):
        return {PLAIN_BLOCK: list(range(len(names)))}
    if plain:
        raise ValueError(f"column {plain[0]!r} names no feature: name every column "
                         f"<feature>{COLUMN_SEP}<column> (as store.read(..., as_frame=True) does), "
                         "or none of them (one block)")
    out: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        out.setdefault(n.split(COLUMN_SEP, 1)[0], []).append(i)
    return out


class FusionClassifier(ClassifierMixin, BaseEstimator):
    """A CLMF fusion head as a scikit-learn binary classifier (see the module docstring).

    Parameters
    ----------
    fusion : str
        A registered vector fusion (``fusion.heads.list_fusions()``), default ``"concat"``.
    features : list of str or None
        Feature blocks to fuse, in this order; None (default) takes every block of ``X``.
    head : str
        ``logreg`` (default), ``linear-svm`` or ``gbm``; used by the fusions that train
        sklearn classifiers (``concat`` and the late fusions), ignored by the torch heads.
    seed : int
        Seeds the head (sklearn ``random_state``, torch initialisation and batches) and the
        ``val_size`` split.
    val_size : float
        Share of the training rows held out as the heads' val split, in [0, 1); 0 (default)
        holds out nothing.
    allow_overlap : bool
        Fit even when a stacked feature of ``X`` (``cascade``) was trained or selected on
        rows of ``X``, with a :class:`LeakageWarning`; False (default) refuses (ValueError).
    **params
        The head's own hyper-parameters (``fusion.heads.FUSIONS[fusion].accepted_params``).

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two labels seen in ``fit``; ``classes_[1]`` is the positive ("fake") class.
    head_ : fusion.heads.FusionHead
        The fitted head.
    features_ : list of str
        The blocks fused, in order.
    n_features_in_, feature_names_in_ :
        As every scikit-learn estimator (``feature_names_in_`` only for a DataFrame).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 200)
    >>> X = rng.normal(size=(200, 3)) + y[:, None]
    >>> clf = FusionClassifier().fit(X, y)
    >>> clf.predict_proba(X[:2]).shape, clf.features_
    ((2, 2), ['x'])
    """

    def __init__(self, fusion="concat", features=None, head="logreg", seed=0, val_size=0.0,
                 allow_overlap=False, **params):
        self.fusion = fusion
        self.allow_overlap = allow_overlap
        self.features = features
        self.head = head
        self.seed = seed
        self.val_size = val_size
        for key, value in params.items():
            setattr(self, key, value)

    # parameters -----------------------------------------------------------------------------
    def _head_param_names(self) -> list[str]:
        """The keyword hyper-parameters: public attributes that are neither named arguments
        nor fitted (scikit-learn's trailing underscore)."""
        named = set(self._get_param_names())
        return [k for k in vars(self) if k not in named and not k.startswith("_") and not k.endswith("_")]

    def get_params(self, deep=True):
        """The named parameters plus the head's keyword parameters."""
        out = super().get_params(deep=deep)
        out.update({k: getattr(self, k) for k in self._head_param_names()})
        return out

    def set_params(self, **params):
        """Set named parameters and head keyword parameters.

        Like ``__init__``, any keyword is stored; ``fit`` raises ValueError for one the
        chosen fusion does not take (scikit-learn validates in ``fit``, not before).
        """
        named = set(self._get_param_names())
        for key, value in params.items():
            if key in named:
                super().set_params(**{key: value})
            else:
                setattr(self, key, value)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # every head imputes NaN and inf (invalid rows) with the train mean
        tags.classifier_tags.multi_class = False
        return tags

    # validation -----------------------------------------------------------------------------
    def _check_config(self) -> type:
        """The fusion class, after checking every parameter (ValueError names the first bad one)."""
        if self.fusion not in heads.FUSIONS:
            raise ValueError(f"unknown fusion {self.fusion!r}; choose from {', '.join(heads.list_fusions())}")
        cls = heads.FUSIONS[self.fusion]
        if cls.inputs != "vector" or cls.family == "sequence":
            raise ValueError(f"fusion {self.fusion!r} reads {'maps' if cls.inputs == 'map' else 'whole videos'}, "
                             "not per-sample vectors: train it with `python -m fusion.train`")
        if cls.uses_head and self.head not in heads.SKLEARN_HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose from {', '.join(heads.SKLEARN_HEADS)}")
        if not isinstance(self.seed, numbers.Integral) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if not (isinstance(self.val_size, numbers.Real) and 0 <= self.val_size < 1):
            raise ValueError(f"val_size must be a number in [0, 1), got {self.val_size!r}")
        if self.features is not None:
            if isinstance(self.features, str) or not all(isinstance(f, str) for f in self.features):
                raise ValueError(f"features must be a list of feature names or None, got {self.features!r}")
            if not self.features or len(set(self.features)) != len(self.features):
                raise ValueError(f"features must name each block once, got {list(self.features)!r}")
        return cls

    def _warn_nonfinite(self, data: heads.FusionData, doing: str):
        from fusion.scoring import nonfinite_warnings, nonfinite_counts
        for line in nonfinite_warnings(nonfinite_counts(data), f"FusionClassifier.{doing}"):
            warnings.warn(line, NonFiniteFeatureWarning, stacklevel=3)

    def _data(self, X, y) -> heads.FusionData:
        # C order, as the store's arrays: a DataFrame's values are often column-major, and
        # BLAS then sums in another order (scores 1e-15 apart from the same head on the store)
        return heads.FusionData({f: np.ascontiguousarray(X[:, self.block_columns_[f]])
                                 for f in self.features_}, y)

    # fitting --------------------------------------------------------------------------------
    def fit(self, X, y, groups=None, meta=None):
        """Fit the head on ``X`` (DataFrame with ``<feature>__<column>`` names, or an array).

        ``groups`` (one id per row, e.g. ``meta["video_id"]``) is used only with
        ``val_size > 0``: the held-out rows are whole groups. ``meta`` (the rows' metadata,
        the third value of ``store.read``) lets the leakage guard check a frame that holds a
        stacked feature (``X.attrs[stores.reader.STACKED_ATTR]``, set by
        ``store.read(as_frame=True)``): fitting on rows that feature's model was trained or
        selected on is a ValueError naming the feature and the rows, unless
        ``allow_overlap``. Without ``meta`` such a frame is refused.
        """
        cls = self._check_config()
        self._guard_leakage(X, meta)
        columns = list(X.columns) if hasattr(X, "columns") else None
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), ensure_all_finite=False)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if self.classes_.size < 2:
            raise ValueError(f"FusionClassifier needs both classes (reals and fakes); y has one class "
                             f"only ({self.classes_.tolist()})")
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type != "binary":
            raise ValueError(f"Only binary classification is supported (real vs fake). The type of the "
                             f"target is {y_type}.")
        blocks = feature_blocks(columns) if columns is not None else {PLAIN_BLOCK: list(range(X.shape[1]))}
        features = list(self.features) if self.features is not None else list(blocks)
        missing = [f for f in features if f not in blocks]
        if missing:
            raise ValueError(f"X has no block {missing[0]!r}; its blocks are {', '.join(blocks)}")
        head_params = {k: getattr(self, k) for k in self._head_param_names()}
        cls.check_params(features, head_params)
        self.features_ = features
        self.block_columns_ = {f: np.asarray(blocks[f], dtype=np.intp) for f in features}
        target = (y == self.classes_[1]).astype(np.int64)
        fit_rows, val_rows = self._val_split(target, groups)
        self.head_ = heads.create_fusion(self.fusion, features, head=self.head, seed=int(self.seed),
                                         **head_params)
        data = self._data(X, target)
        self._warn_nonfinite(data, "fit")
        train = heads.FusionData({f: b[fit_rows] for f, b in data.blocks.items()}, target[fit_rows])
        val = None if val_rows is None else \
            heads.FusionData({f: b[val_rows] for f, b in data.blocks.items()}, target[val_rows])
        if np.unique(train.y).size < 2:
            raise ValueError("the rows left for fitting after val_size hold one class only")
        self.head_.fit(train, val)
        return self

    def _guard_leakage(self, X, meta):
        """Refuse (or warn about, with ``allow_overlap``) a stacked block fitted on its own rows."""
        from fusion import leakage
        stacked = dict(getattr(X, "attrs", {}).get(STACKED_ATTR) or {})
        if self.features is not None:
            stacked = {f: r for f, r in stacked.items() if f in self.features}
        for feature, record in stacked.items():
            if meta is None:
                message = (f"leakage: X holds the stacked feature {feature!r} (a trained model): pass "
                           "fit(X, y, meta=meta) with the rows' metadata from store.read so they can be "
                           "checked against its training rows, or allow_overlap=True")
                if not self.allow_overlap:
                    raise ValueError(message)
                warnings.warn(message, LeakageWarning, stacklevel=3)
                continue
            if len(meta) != len(X):
                raise ValueError(f"meta has {len(meta)} rows for {len(X)} rows of X")
            try:
                excluded = leakage.stacked_rows(feature, record)
            except UsageError as exc:
                if not self.allow_overlap:
                    raise ValueError(str(exc)) from None
                warnings.warn(str(exc), LeakageWarning, stacklevel=3)
                continue
            meta = meta.reset_index(drop=True)
            hit = leakage.overlap(meta, excluded)
            if hit.any():
                message = leakage.overlap_message(feature, meta, hit, "fitted on").replace(
                    leakage.OVERRIDE, "allow_overlap=True")
                if not self.allow_overlap:
                    raise ValueError(message)
                warnings.warn(message, LeakageWarning, stacklevel=3)

    def _val_split(self, target, groups):
        """``(fit rows, val rows or None)`` for ``val_size``."""
        rows = np.arange(target.size)
        if not self.val_size:
            return rows, None
        from sklearn.model_selection import GroupShuffleSplit, StratifiedShuffleSplit
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != (target.size,):
                raise ValueError(f"groups must have one id per row, got shape {groups.shape} for {target.size} rows")
            if np.unique(groups).size < 2:
                raise ValueError("val_size with groups needs at least 2 groups")
            splitter = GroupShuffleSplit(n_splits=1, test_size=self.val_size, random_state=int(self.seed))
            fit_rows, val_rows = next(splitter.split(rows, target, groups))
        else:
            n_val = int(np.ceil(self.val_size * target.size))
            if np.bincount(target).min() < 2 or not 2 <= n_val <= target.size - 2:
                raise ValueError(f"val_size={self.val_size} leaves too few rows of a class on one side "
                                 f"({target.size} rows)")
            splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=int(self.seed))
            fit_rows, val_rows = next(splitter.split(rows, target))
        return np.sort(fit_rows), np.sort(val_rows)

    # predicting -----------------------------------------------------------------------------
    def _head_decision(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32), ensure_all_finite=False)
        data = self._data(X, np.zeros(X.shape[0], np.int64))
        self._warn_nonfinite(data, "predict")
        return self.head_.decision_function(data)

    def decision_function(self, X) -> np.ndarray:
        """Decision value per row (N floats): > 0 means ``classes_[1]``; higher = more fake.

        The head's decision value (a logit for most heads) minus its value at probability 0.5.
        """
        decision = self._head_decision(X)  # checks fitted before head_ is read
        return decision - float(np.asarray(self.head_.decision_of(0.5)).ravel()[0])

    def predict_proba(self, X) -> np.ndarray:
        """N x 2 probabilities of ``classes_`` (the second column is the fake score)."""
        decision = self._head_decision(X)  # checks fitted before head_ is read
        p = self.head_.probability(decision)
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        """``classes_[1]`` where :meth:`decision_function` is > 0, else ``classes_[0]``."""
        decision = self.decision_function(X)  # checks fitted before classes_ is read
        return self.classes_[(decision > 0).astype(np.intp)]
