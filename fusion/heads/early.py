"""Early fusion: the feature *maps* (not vectors) go into one small CNN.

``early`` stacks the maps along the channel axis; ``early-spatial`` tiles them side by side
(Peng et al. 2020).
"""
from __future__ import annotations

import numpy as np

from fusion.heads.base import TorchFusion, _make_module, _nn, _torch, register_fusion


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
