"""Mini-batches of store maps for the cascade model, online augmentation, self-blended fakes.

The model reads the maps cached in a store (``rgb``, ``lbp``, ``dct``, ``mask``); nothing
here re-extracts features. :class:`StoreMaps` reads the rows of one split with
``store.read_map(name, index=sorted_rows)`` one mini-batch at a time (or keeps them in
memory when the split is small), and :func:`to_model_inputs` turns a batch into tensors
resized on the fly to ``size``.

Augmentation (``--augment``, training only):

* ``flip``: horizontal flip of the crop, the LBP map and the mask. The log-DCT map is left
  as is: mirroring a row multiplies its DCT-II coefficient k by (-1)^k, so log|DCT| of the
  flipped crop is the stored map. The uniform LBP codes of a mirrored pattern are the codes
  of the mirrored map (they only count ones and transitions).
* ``jpeg``, ``blur``, ``noise``: applied to the RGB crop only. The LBP/DCT maps stay those
  of the unaugmented crop (recomputing them would mean re-extracting features in fusion/).

Self-blended fakes (``--sbi P``, training only, a simple version of Shiohara & Yamasaki,
CVPR 2022): each real training crop becomes, with probability P, a fake made by blending a
colour-jittered and blurred-or-sharpened copy of itself back over a random soft ellipse;
the thresholded ellipse becomes the target mask. Its LBP/DCT inputs stay those of the
source crop (LBP codes are invariant to the monotonic colour changes, not to the blur), so
only the RGB stream sees the blending boundary.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from fusion.cascade.model import LBP_CODES

REQUIRED_MAPS = ("rgb", "lbp", "dct")
AUGMENTATIONS = ("flip", "jpeg", "blur", "noise")


def parse_augment(text: str | None) -> tuple[str, ...]:
    """``"flip,jpeg"`` -> ``("flip", "jpeg")``; empty/None/"none" -> ``()``."""
    if not text or text.strip().lower() == "none":
        return ()
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in AUGMENTATIONS]
    if bad:
        raise ValueError(f"--augment: unknown {bad}; accepted: {', '.join(AUGMENTATIONS)}")
    return names


class StoreMaps:
    """The cascade inputs of one split of an open store.

    Parameters
    ----------
    store : stores.FeatureStore
    split : str or None
        ``train``/``val``/``test``; None for every sample.
    cache_bytes : int
        Keep the split's maps in memory when they take at most this much (else read each
        mini-batch from the store).
    """

    def __init__(self, store, split: str | None = None, cache_bytes: int = 1 << 30):
        missing = [m for m in REQUIRED_MAPS if m not in store.maps]
        if missing:
            raise ValueError(f"{store.path}: the cascade model needs the maps {list(REQUIRED_MAPS)} "
                             f"(and optionally 'mask'); missing {missing}. Extract them with "
                             "`python -m pipelines.extract --features rgb,lbp,dct,mask`")
        self.store = store
        self.rows = store.select(split=split)
        self.has_mask = "mask" in store.maps
        self.meta = store.meta.iloc[self.rows].reset_index(drop=True)
        self.labels = self.meta["label"].to_numpy(np.int64)
        self.mask_valid = (store.valid("mask", index=self.rows) if self.has_mask
                           else np.zeros(len(self.rows), bool))
        params = store.attrs("lbp")["params"]
        scales = params.get("scales")
        self.lbp_codes = int(scales[0][0]) + 2 if scales else LBP_CODES
        per_row = sum(int(np.prod(store.attrs(m)["shape"])) * (4 if m == "dct" else 1)
                      for m in self._names())
        self._cache = None
        if per_row * len(self.rows) <= cache_bytes:
            self._cache = self._read_rows(self.rows)

    def _names(self):
        return REQUIRED_MAPS + (("mask",) if self.has_mask else ())

    def __len__(self) -> int:
        return len(self.rows)

    def _read_rows(self, rows: np.ndarray) -> dict:
        return {name: self.store.read_map(name, index=rows)[0] for name in self._names()}

    def batch(self, positions) -> dict:
        """Numpy batch of the split's samples at ``positions`` (0..len-1), in that order."""
        positions = np.asarray(positions, np.int64)
        if self._cache is not None:
            maps = {k: v[positions] for k, v in self._cache.items()}
        else:
            order = np.argsort(self.rows[positions], kind="stable")
            sorted_maps = self._read_rows(self.rows[positions][order])
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(order))
            maps = {k: v[inverse] for k, v in sorted_maps.items()}
        size = maps["rgb"].shape[1:3]
        if not self.has_mask:
            maps["mask"] = np.zeros((len(positions),) + size + (1,), np.uint8)
        return {**maps, "label": self.labels[positions], "mask_valid": self.mask_valid[positions],
                "positions": positions}

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0):
        """Yield numpy batches; the order depends only on ``seed`` when shuffling."""
        order = (np.random.default_rng(seed).permutation(len(self)) if shuffle
                 else np.arange(len(self)))
        for start in range(0, len(order), batch_size):
            yield self.batch(order[start:start + batch_size])


def _resize(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if mode == "nearest":
        return F.interpolate(x, size=(size, size), mode="nearest")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=x.shape[-1] > size)


def to_model_inputs(batch: dict, size: int, lbp_codes: int = LBP_CODES,
                    device="cpu") -> dict:
    """Tensors for the model from a numpy batch: ``rgb`` N x 3 x size x size in [0, 1];
    ``lbp`` one-hot N x codes x size x size; ``dct`` standardised per sample; ``mask``
    N x 1 x size x size {0, 1}; ``label`` (N), ``mask_valid`` (N bool)."""
    rgb = torch.from_numpy(np.ascontiguousarray(batch["rgb"])).permute(0, 3, 1, 2).float() / 255
    rgb = _resize(rgb, size, "bilinear").clamp_(0, 1)
    codes = torch.from_numpy(np.ascontiguousarray(batch["lbp"][..., 0]).astype(np.int64))
    codes = _resize(codes[:, None].float(), size, "nearest")[:, 0].long().clamp_(0, lbp_codes - 1)
    lbp = F.one_hot(codes, lbp_codes).permute(0, 3, 1, 2).float()
    dct = torch.from_numpy(np.ascontiguousarray(batch["dct"])).permute(0, 3, 1, 2).float()
    dct = torch.nan_to_num(_resize(dct, size, "bilinear"))
    mean = dct.mean((1, 2, 3), keepdim=True)
    std = dct.std((1, 2, 3), keepdim=True).clamp_min(1e-6)
    dct = (dct - mean) / std
    mask = torch.from_numpy(np.ascontiguousarray(batch["mask"])).permute(0, 3, 1, 2).float()
    mask = (_resize(mask, size, "nearest") > 0.5).float()
    out = {"rgb": rgb, "lbp": lbp, "dct": dct, "mask": mask,
           "label": torch.from_numpy(np.asarray(batch["label"], np.int64)),
           "mask_valid": torch.from_numpy(np.asarray(batch["mask_valid"], bool))}
    return {k: v.to(device) for k, v in out.items()}


# ----------------------------------------------------------------------------- augmentation

def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    from torchvision.io import decode_jpeg, encode_jpeg
    u8 = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    return decode_jpeg(encode_jpeg(u8, quality=quality)).float() / 255


def augment_batch(inputs: dict, augment, gen: torch.Generator) -> dict:
    """Apply the named augmentations (see the module docstring) to CPU tensors in place-free
    fashion; randomness comes only from ``gen``."""
    if not augment:
        return inputs
    out = dict(inputs)
    n = out["rgb"].shape[0]
    rgb = out["rgb"].clone()
    if "flip" in augment:
        flip = torch.rand(n, generator=gen) < 0.5
        if flip.any():
            for key in ("lbp", "mask"):
                t = out[key].clone()
                t[flip] = t[flip].flip(-1)
                out[key] = t
            rgb[flip] = rgb[flip].flip(-1)
    for i in range(n):
        if "blur" in augment and float(torch.rand(1, generator=gen)) < 0.3:
            sigma = 0.3 + 0.9 * float(torch.rand(1, generator=gen))
            rgb[i:i + 1] = _gaussian_blur(rgb[i:i + 1], sigma)
        if "jpeg" in augment and float(torch.rand(1, generator=gen)) < 0.3:
            rgb[i] = _jpeg(rgb[i], int(50 + 45 * float(torch.rand(1, generator=gen))))
        if "noise" in augment and float(torch.rand(1, generator=gen)) < 0.3:
            sigma = 0.03 * float(torch.rand(1, generator=gen))
            rgb[i] = rgb[i] + sigma * torch.randn(rgb[i].shape, generator=gen)
    out["rgb"] = rgb.clamp(0, 1)
    return out


def random_blend_mask(size: int, gen: torch.Generator) -> torch.Tensor:
    """A soft random ellipse (1 x 1 x size x size in [0, 1]) with a Gaussian-blurred edge."""
    u = torch.rand(6, generator=gen)
    cy, cx = size * (0.35 + 0.3 * u[0]), size * (0.35 + 0.3 * u[1])
    ry, rx = size * (0.15 + 0.2 * u[2]), size * (0.15 + 0.2 * u[3])
    angle = math.pi * float(u[4])
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")
    dy, dx = yy - cy, xx - cx
    ca, sa = math.cos(angle), math.sin(angle)
    r = ((dx * ca + dy * sa) / rx) ** 2 + ((-dx * sa + dy * ca) / ry) ** 2
    hard = (r <= 1).float()[None, None]
    return _gaussian_blur(hard, max(1.0, size * (0.01 + 0.03 * float(u[5])))).clamp(0, 1)


def self_blend(inputs: dict, probability: float, gen: torch.Generator) -> dict:
    """Turn each real sample into a self-blended fake with ``probability`` (see module doc).

    The new fakes get label 1, a valid mask (soft blend mask > 0.5) and keep their LBP/DCT
    inputs. Returns a new dict; ``sbi`` (N bool) marks the blended rows.
    """
    out = dict(inputs)
    n, _, size, _ = out["rgb"].shape
    chosen = (torch.rand(n, generator=gen) < probability) & (out["label"].cpu() == 0)
    out["sbi"] = chosen
    if not chosen.any():
        return out
    rgb, mask = out["rgb"].clone(), out["mask"].clone()
    label, valid = out["label"].clone(), out["mask_valid"].clone()
    for i in torch.nonzero(chosen).flatten().tolist():
        src = rgb[i:i + 1]
        u = torch.rand(5, generator=gen)
        gain = 0.85 + 0.3 * torch.rand(1, 3, 1, 1, generator=gen)
        target = src * gain + (u[0] - 0.5) * 0.1
        blurred = _gaussian_blur(target, 0.6 + 1.2 * float(u[1]))
        # blur (low-pass) or unsharp masking (high-pass boost): a frequency-domain change.
        target = blurred if u[2] < 0.5 else target + (0.5 + float(u[3])) * (target - blurred)
        soft = random_blend_mask(size, gen)
        rgb[i:i + 1] = (soft * target.clamp(0, 1) + (1 - soft) * src).clamp(0, 1)
        mask[i:i + 1] = (soft > 0.5).float()
        label[i], valid[i] = 1, True
    out.update(rgb=rgb, mask=mask, label=label, mask_valid=valid)
    return out


# -------------------------------------------------------------------------- synthetic stores

def _smooth_noise(rng, size: int, cells: int, channels: int = 3) -> np.ndarray:
    coarse = rng.random((channels, cells, cells)).astype(np.float32)
    t = torch.from_numpy(coarse)[None]
    return F.interpolate(t, size=(size, size), mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()


def synthetic_images(n: int, size: int = 64, seed: int = 0, fake_fraction: float = 0.5):
    """Random textured crops; fakes carry a spliced square of another texture and colour.

    Returns ``(images N x size x size x 3 uint8, masks N x size x size uint8, labels N,
    methods N)``. Reals: smooth coloured noise. Fakes: the same kind of background with a
    square (a quarter to half of the side) filled with fine-grained noise of a shifted hue
    (method ``splice_color``) or a stripe texture (``splice_texture``); the mask is the square.
    """
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size, 3), np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    labels = (rng.random(n) < fake_fraction).astype(np.int64)
    labels[:2] = (0, 1)  # both classes in every split, however small
    methods = np.array(["real"] * n, dtype=object)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        base = 0.25 + 0.5 * _smooth_noise(rng, size, int(rng.integers(3, 6)))
        base += 0.05 * rng.standard_normal((size, size, 1)).astype(np.float32)
        img = base
        if labels[i]:
            side = int(rng.integers(size // 4, size // 2 + 1))
            y0, x0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
            patch = np.zeros((side, side, 3), np.float32)
            if rng.random() < 0.5:
                methods[i] = "splice_color"
                tint = rng.random(3).astype(np.float32)
                patch[:] = 0.2 + 0.6 * tint + 0.15 * rng.standard_normal((side, side, 3))
            else:
                methods[i] = "splice_texture"
                period = rng.uniform(2.5, 4.0)
                stripes = 0.5 + 0.4 * np.sin(2 * np.pi * (yy[:side, :side] + xx[:side, :side]) / period)
                patch[:] = stripes[..., None] * rng.uniform(0.6, 1.0, 3).astype(np.float32)
            img = base.copy()
            img[y0:y0 + side, x0:x0 + side] = patch
            masks[i, y0:y0 + side, x0:x0 + side] = 1
        images[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return images, masks, labels, methods


def write_synthetic_store(path, n: int = 96, size: int = 64, seed: int = 0,
                          splits=(0.6, 0.2, 0.2), no_mask_fraction: float = 0.1) -> Path:
    """Write a store of :func:`synthetic_images` with ``rgb``, ``lbp``, ``dct`` and ``mask`` maps.

    A test and benchmark fixture: the maps come from the project's registered extractors
    (``extract``), exactly as ``pipelines.extract`` would store them. About
    ``no_mask_fraction`` of the fakes get ``valid("mask")`` False. Splits are assigned per
    sample in the given proportions (train, val, test); each sample is its own video.
    """
    from extract import create_extractor
    from extract.registry import FaceBatch
    from stores import write_store

    images, masks, labels, methods = synthetic_images(n, size, seed)
    rng = np.random.default_rng(seed + 1)
    mask_valid = ~((labels == 1) & (rng.random(n) < no_mask_fraction))
    mask_valid[:2] = True
    bounds = np.cumsum(np.asarray(splits, float) / sum(splits)) * n
    split = np.array(["train"] * n, dtype=object)
    order = rng.permutation(n)
    split[order[int(round(bounds[0])):int(round(bounds[1]))]] = "val"
    split[order[int(round(bounds[1])):]] = "test"
    for s in ("train", "val", "test"):  # both classes everywhere
        for lab in (0, 1):
            if not np.any((split == s) & (labels == lab)):
                donor = np.flatnonzero((labels == lab) & (split == "train"))[0]
                split[donor] = s
    batch = FaceBatch(images=images, masks=np.where(mask_valid[:, None, None], masks, 0),
                      mask_valid=mask_valid,
                      video_ids=np.array([f"{m}/{i:04d}" for i, m in enumerate(methods)]),
                      frame_indices=np.zeros(n, np.int64))
    maps, attrs, valid = {}, {}, {}
    for name, params in (("rgb", {}), ("lbp", {"scales": ((8, 1),), "grid_scales": ((8, 1),)}),
                         ("dct", {}), ("mask", {})):
        ex = create_extractor(name, **params)
        result = ex.extract(batch)
        maps[name] = result["map"]
        valid[name] = result["valid"]
        attrs[name] = ex.attributes()
    ids = [f"{m}/{i:04d}" for i, m in enumerate(methods)]
    meta = pd.DataFrame({"sample_id": [f"{v}:0" for v in ids], "dataset": "synthetic",
                         "split": split, "label": labels, "method": methods, "video_id": ids,
                         "frame_index": 0, "source_path": [f"synthetic://{v}" for v in ids]})
    return write_store(path, meta, maps=maps, attrs=attrs, valid=valid,
                       run={"dataset": "synthetic", "size": size, "seed": seed})
