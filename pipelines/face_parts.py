"""Face-part regions from the 68 landmarks, and local self-blends over them.

Two uses share the same regions:

- **Local self-blends** (:func:`part_blend`) for the cascade's online training: the face
  blended with the same transformed copy of itself as :func:`pipelines.synthesis.sbi`
  (colour, blur / sharpen / down-up sampling, small shift and scale), but only over a part
  of the face -- one part of :data:`BLEND_PARTS`, a random union of two or three of them,
  or one to three random blobs anchored on landmarks -- with a deformed, feathered mask.
  Same face only: nothing here takes a donor, and none of the benchmark's edits
  (:mod:`pipelines.edits_face`: part swaps, copy-move, inpaint, resample, colour, blur,
  sharpen) is called, so those stay unseen test manipulations.
- **Part verdicts** (:func:`verdict_regions`): for each region of :data:`VERDICT_PARTS`
  (eyes, brows, nose, mouth, cheeks, jaw, forehead, outside the face), a disjoint pixel
  mask, so that the mean predicted mask probability per part says *which* part looks
  changed (:func:`part_means`), and a stored mask says which part *was* changed
  (:func:`parts_changed`, rule :data:`CHANGED_FRACTION`).

Regions (``fw`` = face width, landmark 0 to 16; iBUG 68-point indices):

``eyes``      the two eye hulls (36-41, 42-47), grown by 4 % fw;
``brows``     the two brow hulls (17-21, 22-26), grown by 4 % fw;
``nose``      the nose hull (27-35, the wings widened by 3 % fw), grown by 2 % fw;
``mouth``     the mouth hull (48-67), grown by 3 % fw;
``cheek_right`` / ``cheek_left``  the hull of the jaw points 1-5 (15-11), the mouth
              corner, the nose wing and the lower eyelid, less eyes, nose and mouth
              (``cheeks`` is both, for verdicts; a blend takes one);
``jaw``       a band of 8 % fw inside the jaw line 2-14, and the chin below the mouth;
``forehead``  from the brows up by 30 % fw (towards the nose bridge from the chin),
              less the brows;
``outside``   (verdicts only) every pixel in none of the above and outside the landmark
              hull.

For verdicts the regions are made disjoint in the order of :data:`VERDICT_PARTS` (a pixel
of both the mouth and the jaw band counts as mouth).

Deformation of a blend's region (the bounds a test checks): a smooth random displacement
field of at most :data:`PART_WARP` fw per axis (half of it at difficulty 1), then a random
dilate or erode by at most :data:`PART_MORPH` fw; the alpha is that region Gaussian-blurred
with sigma between 0.5 % and 1.5 % + 2.5 % x difficulty of fw (at most
:data:`PART_SIGMA_MAX`) and scaled by SBI's random blend ratio. Every changed pixel
therefore lies within :func:`blend_reach` of the undeformed part region.

Example
-------
>>> from skimage import data
>>> from pipelines.faces import FaceAligner
>>> face = FaceAligner(size=256).process(data.astronaut())
>>> info = {}
>>> edited, mask = part_blend(face.crop, face.landmarks, np.random.default_rng(0), 0.5,
...                           part="mouth", info=info)
>>> bool((mask == np.any(edited != face.crop, axis=-1)).all()), info["part"]
(True, 'mouth')
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from pipelines.synthesis import (BROWS, LEFT_BROW, LEFT_EYE, MOUTH, NOSE, RIGHT_BROW,
                                 RIGHT_EYE, alpha_blend, anchor_region, check_face, difficulty_value,
                                 draw_source_params, face_hull_mask, face_width, finish_edit,
                                 random_morph, record_choices, sbi_source)

__all__ = ["BLEND_PARTS", "VERDICT_PARTS", "BLEND_KINDS", "CHANGED_FRACTION", "PART_WARP",
           "PART_MORPH", "PART_SIGMA_MAX", "part_mask", "verdict_regions", "verdict_regions_batch",
           "part_means", "parts_changed", "part_blend", "blend_reach", "verdict_text"]

#: Parts a local self-blend is drawn over (one cheek at a time).
BLEND_PARTS = ("eyes", "brows", "nose", "mouth", "cheek_right", "cheek_left", "jaw", "forehead")
#: What a blend covers: one part (each drawn equally often), a union of 2-3 parts, or blobs.
BLEND_KINDS = ("eyes", "brows", "nose", "mouth", "cheek", "jaw", "forehead", "union", "blob")
#: Regions of a part verdict, disjoint, in priority order.
VERDICT_PARTS = ("eyes", "brows", "nose", "mouth", "cheeks", "jaw", "forehead", "outside")
#: A part counts as changed when at least this fraction of its region's pixels is in the
#: true mask (and at least one pixel is).
CHANGED_FRACTION = 0.2
#: Largest displacement of a blend region's outline, per axis, in face widths.
PART_WARP = 0.03
#: Largest dilate / erode of a blend region, in face widths.
PART_MORPH = 0.03
#: Largest feathering sigma of a blend's alpha, in face widths (at difficulty 1).
PART_SIGMA_MAX = 0.04


def _hull(points, shape) -> np.ndarray:
    region = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(region, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    return region


def _grow(region: np.ndarray, px: float) -> np.ndarray:
    k = 2 * int(round(px)) + 1
    if k <= 1:
        return region
    return cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))


def part_mask(part: str, landmarks, shape) -> np.ndarray:
    """H x W uint8 {0, 1}: the region of ``part`` (:data:`BLEND_PARTS` or ``cheeks``) of a
    face with ``landmarks`` (68 x 2, pixels), as described in the module docstring.
    Raises ValueError for an unknown part."""
    lm = np.asarray(landmarks, np.float64)
    fw = face_width(lm)
    if part == "eyes":
        return _grow(_hull(lm[RIGHT_EYE], shape) | _hull(lm[LEFT_EYE], shape), 0.04 * fw)
    if part == "brows":
        return _grow(_hull(lm[RIGHT_BROW], shape) | _hull(lm[LEFT_BROW], shape), 0.04 * fw)
    if part == "nose":
        wings = lm[[31, 35]] + [[-0.03 * fw, 0], [0.03 * fw, 0]]
        return _grow(_hull(np.vstack([lm[NOSE], wings]), shape), 0.02 * fw)
    if part == "mouth":
        return _grow(_hull(lm[MOUTH], shape), 0.03 * fw)
    if part in ("cheek_right", "cheek_left", "cheeks"):
        sides = {"cheek_right": [1, 2, 3, 4, 5, 48, 31, 40, 41, 36],
                 "cheek_left": [15, 14, 13, 12, 11, 54, 35, 47, 46, 45]}
        names = ("cheek_right", "cheek_left") if part == "cheeks" else (part,)
        region = np.zeros(shape[:2], np.uint8)
        for name in names:
            region |= _hull(lm[sides[name]], shape)
        inner = part_mask("eyes", lm, shape) | part_mask("nose", lm, shape) | \
            part_mask("mouth", lm, shape)
        return region & (1 - inner)
    if part == "jaw":
        band = np.zeros(shape[:2], np.uint8)
        thickness = max(1, int(round(0.16 * fw)))
        cv2.polylines(band, [np.round(lm[2:15]).astype(np.int32)], False, 1, thickness)
        band &= face_hull_mask(lm, shape)
        chin = _hull(np.vstack([lm[6:11], lm[56:59]]), shape)
        return (band | chin) & (1 - part_mask("mouth", lm, shape))
    if part == "forehead":
        up = lm[27] - lm[8]
        up = up / max(np.linalg.norm(up), 1e-6)
        brows = lm[BROWS]
        polygon = np.vstack([brows, brows[::-1] + 0.30 * fw * up])
        return _hull(polygon, shape) & (1 - part_mask("brows", lm, shape))
    raise ValueError(f"unknown face part {part!r}; expected one of "
                     f"{', '.join(BLEND_PARTS + ('cheeks',))}")


def verdict_regions(landmarks, shape) -> np.ndarray:
    """P x H x W bool: the disjoint regions of :data:`VERDICT_PARTS` (the order of that
    tuple; an earlier part keeps a shared pixel). All False for non-finite landmarks."""
    lm = np.asarray(landmarks, np.float64)
    h, w = shape[:2]
    out = np.zeros((len(VERDICT_PARTS), h, w), bool)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        return out
    taken = np.zeros((h, w), bool)
    for i, part in enumerate(VERDICT_PARTS[:-1]):
        region = part_mask(part, lm, (h, w)).astype(bool) & ~taken
        out[i] = region
        taken |= region
    out[-1] = ~taken & ~face_hull_mask(lm, (h, w)).astype(bool)
    return out


@lru_cache(maxsize=4096)
def _cached_regions(key: bytes, h: int, w: int) -> np.ndarray:
    regions = verdict_regions(np.frombuffer(key, np.float64).reshape(68, 2), (h, w))
    regions.setflags(write=False)
    return regions


def verdict_regions_batch(landmarks, crop_size: int, size: int) -> np.ndarray:
    """N x P x size x size bool: :func:`verdict_regions` of each sample's 68 landmarks
    (given in ``crop_size`` crop pixels), drawn at ``size`` px. Cached per landmark set
    (an evaluation that scores a sample twice draws its regions once)."""
    lm = np.asarray(landmarks, np.float64).reshape(-1, 68, 2) * (size / crop_size)
    if not len(lm):
        return np.zeros((0, len(VERDICT_PARTS), size, size), bool)
    return np.stack([_cached_regions(np.ascontiguousarray(x).tobytes(), size, size) for x in lm])


def part_means(probs, regions) -> np.ndarray:
    """N x P float: the mean of ``probs`` (N x H x W) over each region (``regions`` N x P x
    H x W bool); NaN where a region is empty (no landmarks, or a part cut off the crop)."""
    probs = np.asarray(probs, np.float64).reshape(len(probs), 1, -1)
    regions = np.asarray(regions, bool).reshape(len(probs), regions.shape[1], -1)
    count = regions.sum(-1)
    total = np.einsum("npk,nk->np", regions.astype(np.float64), probs[:, 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def parts_changed(masks, regions, fraction: float = CHANGED_FRACTION) -> np.ndarray:
    """N x P float {0, 1, NaN}: 1 where at least ``fraction`` of a region's pixels (and at
    least one) are in the true mask (``masks`` N x H x W, > 0.5 = changed), 0 where fewer,
    NaN where the region is empty."""
    truth = np.asarray(masks).reshape(len(masks), -1) > 0.5
    regions = np.asarray(regions, bool).reshape(len(truth), regions.shape[1], -1)
    count = regions.sum(-1)
    hit = np.einsum("npk,nk->np", regions.astype(np.float32), truth.astype(np.float32))
    changed = (hit >= fraction * count) & (hit > 0)
    return np.where(count > 0, changed.astype(np.float64), np.nan)


def verdict_text(means, top: int = 3) -> str:
    """``"mouth 0.91, eyes 0.08, nose 0.05"``: the ``top`` parts of one sample's
    :func:`part_means` row, highest first (empty regions left out)."""
    means = np.asarray(means, np.float64)
    order = [i for i in np.argsort(-np.nan_to_num(means, nan=-1.0), kind="stable")
             if np.isfinite(means[i])]
    return ", ".join(f"{VERDICT_PARTS[i]} {means[i]:.2f}" for i in order[:top])


def blend_reach(landmarks, difficulty=1.0) -> float:
    """Pixels beyond the undeformed part region that a :func:`part_blend` may change:
    displacement (sqrt 2 x :data:`PART_WARP`), dilation (:data:`PART_MORPH`) and the alpha
    blur (OpenCV's kernel radius, 4 sigma, sigma at most :data:`PART_SIGMA_MAX`), plus 2 px
    of rounding."""
    fw = face_width(np.asarray(landmarks, np.float64))
    return (np.sqrt(2) * PART_WARP + PART_MORPH + 4 * PART_SIGMA_MAX) * fw + 2.0


def _deform(region: np.ndarray, lm: np.ndarray, rng, d: float, info=None) -> np.ndarray:
    """``region`` displaced by a smooth random field and dilated or eroded at random."""
    h, w = region.shape
    fw = face_width(lm)
    amp = PART_WARP * (1 - 0.5 * d) * rng.uniform(0.3, 1.0) * fw
    coarse = rng.uniform(-1, 1, (2, 4, 4)).astype(np.float32)
    # INTER_LINEAR keeps the field within [-1, 1] (a cubic would overshoot the bound)
    field = [cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) * amp for c in coarse]
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    moved = cv2.remap(region, gx + field[0], gy + field[1], cv2.INTER_NEAREST,
                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if moved.any():
        region = moved
    region, op, k = random_morph(region, int(PART_MORPH * fw), rng)
    record_choices(info, part_warp_px=amp, part_morph=op, part_morph_px=k)
    return region


def _blend_region(kind: str, lm: np.ndarray, shape, rng, d: float, info=None):
    """``(region, name)`` of a blend of ``kind`` (:data:`BLEND_KINDS`)."""
    if kind == "cheek":
        name = str(rng.choice(["cheek_right", "cheek_left"]))
        return part_mask(name, lm, shape), name
    if kind == "union":
        singles = [p for p in BLEND_PARTS if not p.startswith("cheek")] + ["cheek"]
        chosen = sorted(rng.choice(singles, size=int(rng.integers(2, 4)), replace=False))
        names = [str(rng.choice(["cheek_right", "cheek_left"])) if c == "cheek" else str(c)
                 for c in chosen]
        region = np.zeros(shape[:2], np.uint8)
        for name in names:
            region |= part_mask(name, lm, shape)
        return region, "union:" + "+".join(names)
    if kind == "blob":
        region = np.zeros(shape[:2], np.uint8)
        n = int(rng.integers(1, 4))
        for _ in range(n):
            region |= anchor_region(lm, shape, rng, d, None, scale=float(rng.uniform(0.5, 1.0)))
        return region, f"blob:{n}"
    return part_mask(kind, lm, shape), kind


def part_blend(target, landmarks, rng, difficulty="mid", part=None, info=None):
    """A local self-blend: the face blended with a transformed copy of itself over a part.

    Parameters
    ----------
    target : H x W x 3 uint8 aligned RGB face.
    landmarks : 68 x 2 float, pixels.
    rng : numpy Generator (or seed).
    difficulty : ``"easy"``, ``"mid"``, ``"hard"`` or a float in [0, 1]: harder means a
        weaker source transform, a smaller deformation, a wider feather.
    part : one of :data:`BLEND_KINDS`, or None to draw one uniformly.
    info : dict, optional; receives ``part`` (the region's name: a part, ``union:a+b``,
        ``blob:n``) and every random choice.

    Returns
    -------
    ``(edited uint8 H x W x 3, mask uint8 H x W)``; the mask is exactly the changed pixels
    (``np.any(edited != target, axis=-1)``), never empty.
    """
    target, lm = check_face(target, landmarks, "target")
    if part is not None and part not in BLEND_KINDS:
        raise ValueError(f"unknown part blend {part!r}; expected one of {', '.join(BLEND_KINDS)}")
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    kind = str(rng.choice(BLEND_KINDS)) if part is None else part
    source = sbi_source(target, lm, draw_source_params(rng, d, face_width(lm)), info)  # as sbi
    region, name = _blend_region(kind, lm, target.shape, rng, d, info)
    if not region.any():  # a part entirely off the crop: fall back to a blob on the face
        region, name = _blend_region("blob", lm, target.shape, rng, d, info)
    region = _deform(region, lm, rng, d, info)
    fw = face_width(lm)
    sigma = fw * rng.uniform(0.005, 0.015 + (PART_SIGMA_MAX - 0.015) * d)
    ratio = float(rng.choice([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])) * (1 - 0.3 * d) + 0.3 * d * \
        rng.uniform(0.5, 1.0)
    alpha = cv2.GaussianBlur(region.astype(np.float32), (0, 0), sigma) * ratio
    record_choices(info, part=name, mask_sigma_px=sigma, blend_ratio=ratio)
    return finish_edit(target, alpha_blend(target, source, alpha), region)
