"""Fusion strategies: how per-feature blocks become one fake score (see :mod:`fusion.heads.base`)."""
from fusion.heads.base import (  # noqa: F401  (the package's public names)
    CONSTANT_RTOL, FORMAT_VERSION, FUSIONS, SKLEARN_HEADS, Z_CLIP, AttentionFusion, BlockScaler,
    ConcatFusion, EarlyFusion, EarlyFusionBase, EarlySpatialFusion, FusionData, FusionHead,
    GatingFusion, HierarchicalFusion, LateFusion, MajorityVoteFusion, MaxConfidenceFusion,
    MLPFusion, PerFeatureThresholdFusion, PoolingFusion, SequenceFusion, SoftVoteFusion,
    StackingFusion, ThresholdFusion, TorchFusion, WeightedFusion, create_fusion,
    decision_sklearn_head, fit_sklearn_head, gbm_decision, gbm_to_arrays, head_from_state,
    list_fusions, load_head, parse_groups, predict_sklearn_head, register_fusion,
    sklearn_head_setting, torch_device)

__all__ = ["FusionData", "FusionHead", "register_fusion", "create_fusion", "list_fusions",
           "load_head", "head_from_state", "FUSIONS", "SKLEARN_HEADS"]
