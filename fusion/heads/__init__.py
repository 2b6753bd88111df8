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
``_items(data)``. Put the class in its family's module below (or a new one that imports
:mod:`fusion.heads.base` and is imported here), and re-export its name here. The contract
tests in ``tests/fusion/test_heads.py`` run over every registered name.

Families, one module each
-------------------------
* :mod:`~fusion.heads.feature_level`: ``concat`` (standardise, concatenate, sklearn head
  ``logreg`` | ``linear-svm`` | ``gbm``, see :mod:`~fusion.heads.classifiers`), ``weighted``,
  ``mlp``, ``attention``, ``gating``, ``pooling``, ``hierarchical`` (torch);
* :mod:`~fusion.heads.late` (one classifier per feature, then combine): ``soft-vote``,
  ``majority-vote``, ``stacking``, ``max-confidence``, ``threshold``;
* :mod:`~fusion.heads.early` (maps, not vectors): ``early`` (channel-stacked),
  ``early-spatial`` (tiled side by side, Peng et al. 2020);
* :mod:`~fusion.heads.sequence` (spatio-temporal): ``sequence`` (BiLSTM over the frames of
  each video).

:mod:`~fusion.heads.base` holds the registry, :class:`FusionData`, :class:`BlockScaler`, the
base classes and saving / loading; it imports no family module.

Every head imputes non-finite feature values (NaN or +-inf, alike: rows a feature could not be computed for) with the
training-column mean and standardises each block with training statistics; both are part of
the saved model. Columns (near-)constant on train are set to 0 and standardised values are
clipped to +-:data:`Z_CLIP` (see :class:`BlockScaler`), so one column that never varied in
training cannot saturate every test score. Rank on :meth:`FusionHead.decision_function`
(logits), not on ``predict_proba``: float64 sigmoid is exactly 1.0 above a logit of ~37. Models are saved without pickle: ``model.json`` (config) plus ``.npz``
(sklearn coefficients, GBM tree arrays) or ``.safetensors`` (torch weights). In memory a
fitted head pickles as that same state (joblib workers, ``fusion.sklearn``), rebuilt by
:func:`head_from_state`. Pickles written while this was one module ``fusion/heads.py`` name
``fusion.heads.<name>``; every such name is re-exported here, so they still load.
"""
from fusion.heads.base import (  # noqa: F401  (the package's public names)
    CONSTANT_RTOL, FORMAT_VERSION, FUSIONS, SKLEARN_HEADS, Z_CLIP, BlockScaler, FusionData,
    FusionHead, TorchFusion, create_fusion, head_from_state, list_fusions, load_head,
    register_fusion, torch_device)
from fusion.heads.classifiers import (  # noqa: F401
    decision_sklearn_head, fit_sklearn_head, gbm_decision, gbm_to_arrays, predict_sklearn_head,
    sklearn_head_setting)
# importing the family modules registers their heads
from fusion.heads.feature_level import (  # noqa: F401
    AttentionFusion, ConcatFusion, GatingFusion, HierarchicalFusion, MLPFusion, PoolingFusion,
    WeightedFusion, parse_groups)
from fusion.heads.late import (  # noqa: F401
    LateFusion, MajorityVoteFusion, MaxConfidenceFusion, PerFeatureThresholdFusion,
    SoftVoteFusion, StackingFusion, ThresholdFusion)
from fusion.heads.early import EarlyFusion, EarlyFusionBase, EarlySpatialFusion  # noqa: F401
from fusion.heads.sequence import SequenceFusion  # noqa: F401

__all__ = ["FusionData", "FusionHead", "register_fusion", "create_fusion", "list_fusions",
           "load_head", "head_from_state", "FUSIONS", "SKLEARN_HEADS"]
