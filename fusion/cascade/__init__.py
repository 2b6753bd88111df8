"""Cascaded localization model: RGB / texture (LBP) / frequency (DCT) streams fused by
cross-attention, a mask decoder, and region-based classification inside and outside the
predicted mask. Reads the maps cached in a feature store; never re-extracts.

Modules: :mod:`~fusion.cascade.model` (architecture, backbones), :mod:`~fusion.cascade.losses`
(the six loss terms), :mod:`~fusion.cascade.data` (store mini-batches, augmentation,
self-blended fakes, synthetic stores), :mod:`~fusion.cascade.config` (a run's settings and
its ``config.json``), :mod:`~fusion.cascade.checkpoints` (weights, resume state),
:mod:`~fusion.cascade.train` (the training loop), :mod:`~fusion.cascade.inference`
(evaluate / predict), :mod:`~fusion.cascade.overlays` (mask overlay PNGs),
:mod:`~fusion.cascade.localization` (pixel AUC, IoU, F1). CLI:
``python -m fusion.cascade train|eval|predict --help``.
"""
from fusion.cascade.losses import CascadeLoss, LossWeights
from fusion.cascade.model import CascadeModel, build_rgb_backbone

__all__ = ["CascadeModel", "build_rgb_backbone", "CascadeLoss", "LossWeights"]
