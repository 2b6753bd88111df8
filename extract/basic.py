"""Pass-through extractors: the aligned crop itself (``rgb``) and the manipulation mask (``mask``).

They carry no hand-crafted signal; the localization model and the fusion heads use them as
raw inputs beside the engineered features.
"""
from __future__ import annotations

import numpy as np

from extract.registry import Extractor, FaceBatch, OutputSpec, register_extractor


@register_extractor
class RGBExtractor(Extractor):
    """The aligned RGB crop as a map.

    Returns
    -------
    map : size x size x 3 uint8
        The crop unchanged (RGB, 0-255). ``valid`` is always True.
    """

    name = "rgb"
    version = "1"
    needs = ()
    defaults = {}

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        return {"map": OutputSpec("map", (size, size, 3), "uint8")}

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        return {"map": np.array(batch.images, dtype=np.uint8, copy=True),
                "valid": np.ones(len(batch), bool)}


@register_extractor
class MaskExtractor(Extractor):
    """The ground-truth manipulation mask as a map, and its area fraction as a vector.

    Returns
    -------
    map : size x size x 1 uint8
        ``batch.masks`` in {0, 1}; all zeros where the sample has no mask.
    vector : (1,) float32
        ``area``: fraction of crop pixels marked manipulated, in [0, 1]; NaN where
        ``mask_valid`` is False.
    valid : N bool
        ``batch.mask_valid``.
    """

    name = "mask"
    version = "1"
    needs = ("mask",)
    defaults = {}

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        return {"vector": OutputSpec("vector", (1,), "float32", ("area",)),
                "map": OutputSpec("map", (size, size, 1), "uint8")}

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        masks = (np.asarray(batch.masks) > 0).astype(np.uint8)
        valid = np.asarray(batch.mask_valid, bool).copy()
        area = masks.reshape(len(masks), -1).mean(axis=1, dtype=np.float64).astype(np.float32)
        area[~valid] = np.nan
        return {"vector": area[:, None], "map": masks[..., None], "valid": valid}
