"""Late fusion: one ``--head`` classifier per feature, then a rule combines their scores.

``soft-vote``, ``majority-vote``, ``max-confidence``, ``threshold`` (k of n) and ``stacking``
(a meta logistic regression on out-of-fold scores).
"""
from __future__ import annotations

import math

import numpy as np

from fusion import metrics
from fusion.heads.base import FusionHead, _logit, _prefixed, register_fusion
from fusion.heads.classifiers import decision_sklearn_head, fit_sklearn_head, sklearn_head_setting


def _log_mean_sigmoid(z):
    """``log(mean(sigmoid(z), axis=1))`` without forming the (saturating) probabilities."""
    from scipy.special import logsumexp
    return logsumexp(-np.logaddexp(0.0, -z), axis=1) - math.log(z.shape[1])


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
