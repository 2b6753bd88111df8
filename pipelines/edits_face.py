"""Landmark-aware face edits with exact manipulation masks, for the image-editing benchmark.

Every edit takes an aligned RGB ``uint8`` face ``target`` (H x W x 3), its 68 iBUG
``landmarks`` (68 x 2, pixels), a random generator and a ``difficulty`` (``"easy"``,
``"mid"``, ``"hard"`` or a float in [0, 1], 0 = easy), and returns ``(edited, mask)``:

- ``edited``: H x W x 3 ``uint8``;
- ``mask``: H x W ``uint8`` in {0, 1}, exactly ``np.any(edited != target, axis=-1)``,
  never empty.

Easy edits are large and strong with hard edges and no colour matching; hard edits are
smaller or weaker, feathered and colour-matched (seamless cloning for some part swaps).
Pass a dict as ``info`` to receive every random choice (JSON-serialisable), which the
benchmark writes to its manifest. The same inputs and seed give the same output
(NumPy ``default_rng`` and OpenCV only).

The blends (``sbi``, ``xray``), the part regions and the masks the edits share live in
:mod:`pipelines.synthesis`, which the cascade's training imports too; this module holds
the benchmark's other edits and the registry.

Edits (:data:`FACE_EDITS`)
--------------------------
``sbi``
    Self-blended image (Shiohara & Yamasaki, CVPR 2022): the face blended with a colour-,
    frequency- and affine-transformed copy of itself over a deformed, blurred landmark hull.
``xray``
    Face X-ray-style blend (Li et al., CVPR 2020): a donor face warped onto the target's
    landmarks, colour-corrected, blended over a deformed, blurred landmark hull.
``swap-eyes``, ``swap-nose``, ``swap-mouth``, ``swap-face``
    Part swaps from a donor face (Real-and-Fake-Face style).
``copy-move``, ``inpaint``, ``resample``, ``color``, ``blur``, ``sharpen``
    Local edits of one region of the same face, anchored on a landmark.

How to add a new face edit
--------------------------
Write ``edit(target, landmarks, rng, difficulty, donor=None, donor_landmarks=None,
info=None)``, build the edited image with vectorised NumPy/OpenCV, record the random
choices in ``info`` (:func:`~pipelines.synthesis.record_choices`) and ``return
finish_edit(target, edited, region)`` (:mod:`pipelines.synthesis`); add it to
:data:`FACE_EDITS` (and to :data:`NEEDS_DONOR` if it uses the donor). The tests in
``tests/pipelines/test_benchmark.py`` run over every entry.

Example
-------
>>> from skimage import data
>>> from pipelines.faces import FaceAligner
>>> face = FaceAligner(size=256).process(data.astronaut())
>>> rng = np.random.default_rng(0)
>>> edited, mask = apply_face_edit("sbi", face.crop, face.landmarks, rng, "mid")
>>> bool((mask == np.any(edited != face.crop, axis=-1)).all()), bool(mask.any())
(True, True)
"""
from __future__ import annotations

import cv2
import numpy as np

from pipelines.synthesis import (PART_POINTS, alpha_blend, anchor_region, check_donor, check_face,
                                 color_transfer, difficulty_value, face_width, feather_alpha,
                                 finish_edit, part_region, record_choices, sbi, warp_donor, xray)

__all__ = ["FACE_EDITS", "NEEDS_DONOR", "apply_face_edit", "swap_eyes", "swap_nose",
           "swap_mouth", "swap_face", "copy_move", "inpaint", "resample", "local_color",
           "local_blur", "local_sharpen"]


# ---------------------------------------------------------------------------- part swaps

def _swap(part: str, target, landmarks, rng, difficulty, donor, donor_landmarks, info):
    target, lm = check_face(target, landmarks, "target")
    donor, dlm = check_donor(donor, donor_landmarks, target)
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    warped = warp_donor(donor, dlm, lm, PART_POINTS[part], target.shape)
    region = part_region(part, lm, target.shape)
    fw = face_width(lm)
    if d <= 0.25:        # easy: hard edges, no colour matching
        method, sigma, weight = "paste", 0.0, 0.0
    elif d <= 0.75:      # mid: light feathering, partial colour matching
        method, sigma, weight = "feather", fw * rng.uniform(0.005, 0.015), rng.uniform(0.4, 0.8)
    else:                # hard: seamless cloning or wide feathering with full colour matching
        method = str(rng.choice(["seamless", "feather"]))
        sigma, weight = fw * rng.uniform(0.015, 0.04), 1.0
    record_choices(info, part=part, method=method, feather_sigma_px=sigma, color_weight=weight)
    if method == "seamless":
        # seamlessClone needs the region off the border; it places the source's masked
        # patch centred on the region's bounding box, so the content stays in place.
        region[:2], region[-2:], region[:, :2], region[:, -2:] = 0, 0, 0, 0
        ys, xs = np.nonzero(region)
        if len(ys) >= 16:
            x, y, w, h = cv2.boundingRect(np.stack([xs, ys], 1).astype(np.int32))
            centre = (x + w // 2, y + h // 2)
            edited = cv2.seamlessClone(warped, target, region * 255, centre, cv2.NORMAL_CLONE)
            return finish_edit(target, edited, region)
        record_choices(info, method="feather")  # region too small to clone
    warped = color_transfer(warped, target, region, weight)
    return finish_edit(target, alpha_blend(target, warped, feather_alpha(region, sigma)), region)


def swap_eyes(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None,
              info=None):
    """Both eyes and brows of ``donor``, aligned on their landmarks. Returns ``(edited, mask)``."""
    return _swap("eyes", target, landmarks, rng, difficulty, donor, donor_landmarks, info)


def swap_nose(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None,
              info=None):
    """The nose of ``donor``, aligned on the nose landmarks. Returns ``(edited, mask)``."""
    return _swap("nose", target, landmarks, rng, difficulty, donor, donor_landmarks, info)


def swap_mouth(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None,
               info=None):
    """The mouth of ``donor``, aligned on the mouth landmarks. Returns ``(edited, mask)``."""
    return _swap("mouth", target, landmarks, rng, difficulty, donor, donor_landmarks, info)


def swap_face(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None,
              info=None):
    """The inner face (jaw and brow hull) of ``donor``. Returns ``(edited, mask)``."""
    return _swap("face", target, landmarks, rng, difficulty, donor, donor_landmarks, info)


# ---------------------------------------------------------------------------- local edits

def _local_sigma(lm, rng, d) -> float:
    """Feathering of local edits: hard edges at difficulty 0, up to 4 % of the face at 1."""
    return 0.0 if d <= 0.25 else face_width(lm) * rng.uniform(0.01, 0.04) * d


def copy_move(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None,
              info=None):
    """A region of the same face moved by 1-2 region radii (copy-move forgery)."""
    target, lm = check_face(target, landmarks, "target")
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    region = anchor_region(lm, target.shape, rng, d, info)
    ys, xs = np.nonzero(region)
    radius = max(np.ptp(xs), np.ptp(ys)) / 2 + 1
    theta = rng.uniform(0, 2 * np.pi)
    dist = radius * rng.uniform(1.0, 2.0)
    dx, dy = dist * np.cos(theta), dist * np.sin(theta)
    h, w = target.shape[:2]
    # The pasted content comes from (x - dx, y - dy): a patch moved by (dx, dy).
    moved = cv2.warpAffine(target, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    sigma = _local_sigma(lm, rng, d)
    record_choices(info, offset_px=(dx, dy), feather_sigma_px=sigma)
    return finish_edit(target, alpha_blend(target, moved, feather_alpha(region, sigma)), region)


def inpaint(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None,
            info=None):
    """``cv2.inpaint`` (Telea or Navier-Stokes) over a random landmark-anchored region."""
    target, lm = check_face(target, landmarks, "target")
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    region = anchor_region(lm, target.shape, rng, d, info, scale=0.8)
    method = str(rng.choice(["telea", "ns"]))
    radius = float(rng.uniform(2, 6))
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    edited = cv2.inpaint(target, region, radius, flag)
    record_choices(info, inpaint_method=method, inpaint_radius=radius)
    return finish_edit(target, edited, region)


def resample(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None,
             info=None):
    """Local resize/warp: a region magnified or shrunk about its centre (and slightly
    rotated), resampled bilinearly and feathered into the face."""
    target, lm = check_face(target, landmarks, "target")
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    region = anchor_region(lm, target.shape, rng, d, info)
    ys, xs = np.nonzero(region)
    cx, cy = xs.mean(), ys.mean()
    amount = rng.uniform(0.25, 0.45) * (1 - 0.7 * d)
    scale = 1 + amount if rng.integers(0, 2) else 1 / (1 + amount)
    rot = np.deg2rad(rng.uniform(-8, 8) * (1 - 0.5 * d))
    h, w = target.shape[:2]
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = np.cos(-rot) / scale, np.sin(-rot) / scale
    src_x = cx + c * (gx - cx) - s * (gy - cy)
    src_y = cy + s * (gx - cx) + c * (gy - cy)
    weight = feather_alpha(region, max(1.0, _local_sigma(lm, rng, d)))
    map_x = (gx + weight * (src_x - gx)).astype(np.float32)
    map_y = (gy + weight * (src_y - gy)).astype(np.float32)
    edited = cv2.remap(target, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    record_choices(info, scale=scale, rotation_deg=np.rad2deg(rot))
    return finish_edit(target, edited, region)


def local_color(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None,
                info=None):
    """Local colour/illumination change: per-channel gain and offset (up to 30 % and 30
    levels at difficulty 0, a third of that at 1) in a landmark-anchored region."""
    target, lm = check_face(target, landmarks, "target")
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    region = anchor_region(lm, target.shape, rng, d, info)
    strength = 1 - 0.67 * d
    illum = rng.uniform(-0.3, 0.3) * strength
    gain = 1 + illum + rng.uniform(-0.12, 0.12, 3) * strength
    offset = rng.uniform(-30, 30, 3) * strength
    recoloured = target.astype(np.float32) * gain.astype(np.float32) + offset.astype(np.float32)
    sigma = _local_sigma(lm, rng, d)
    record_choices(info, gain=gain, offset=offset, feather_sigma_px=sigma)
    edited = alpha_blend(target, np.clip(recoloured, 0, 255), feather_alpha(region, sigma))
    return finish_edit(target, edited, region)


def local_blur(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None,
               info=None):
    """Gaussian blur (sigma 2.5-4 px at difficulty 0, 0.8-1.5 px at 1) of a local region."""
    target, lm = check_face(target, landmarks, "target")
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    region = anchor_region(lm, target.shape, rng, d, info)
    sigma = rng.uniform(2.5, 4.0) * (1 - d) + rng.uniform(0.8, 1.5) * d
    blurred = cv2.GaussianBlur(target, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    feather = _local_sigma(lm, rng, d)
    record_choices(info, blur_sigma_px=sigma, feather_sigma_px=feather)
    edited = alpha_blend(target, blurred, feather_alpha(region, feather))
    return finish_edit(target, edited, region)


def local_sharpen(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None,
                  info=None):
    """Unsharp masking (amount 1.5-2.5 at difficulty 0, 0.4-0.8 at 1) of a local region."""
    target, lm = check_face(target, landmarks, "target")
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    region = anchor_region(lm, target.shape, rng, d, info)
    amount = rng.uniform(1.5, 2.5) * (1 - d) + rng.uniform(0.4, 0.8) * d
    radius = rng.uniform(1.0, 2.0)
    t = target.astype(np.float32)
    sharp = np.clip(t + amount * (t - cv2.GaussianBlur(t, (0, 0), radius)), 0, 255)
    feather = _local_sigma(lm, rng, d)
    record_choices(info, amount=amount, radius_px=radius, feather_sigma_px=feather)
    edited = alpha_blend(target, sharp, feather_alpha(region, feather))
    return finish_edit(target, edited, region)


#: Edit name -> function ``(target, landmarks, rng, difficulty, donor=None,
#: donor_landmarks=None, info=None) -> (edited, mask)``.
FACE_EDITS = {
    "sbi": sbi, "xray": xray,
    "swap-eyes": swap_eyes, "swap-nose": swap_nose, "swap-mouth": swap_mouth,
    "swap-face": swap_face,
    "copy-move": copy_move, "inpaint": inpaint, "resample": resample,
    "color": local_color, "blur": local_blur, "sharpen": local_sharpen,
}
#: Edits that take their content from another face.
NEEDS_DONOR = frozenset({"xray", "swap-eyes", "swap-nose", "swap-mouth", "swap-face"})


def apply_face_edit(name: str, target, landmarks, rng, difficulty="mid", donor=None,
                    donor_landmarks=None, info=None):
    """Run edit ``name`` of :data:`FACE_EDITS`; donors are required for :data:`NEEDS_DONOR`."""
    if name not in FACE_EDITS:
        raise ValueError(f"unknown face edit {name!r}; expected one of {', '.join(FACE_EDITS)}")
    if name in NEEDS_DONOR and (donor is None or donor_landmarks is None):
        raise ValueError(f"face edit {name!r} needs a donor face and its landmarks")
    return FACE_EDITS[name](target, landmarks, rng, difficulty, donor=donor,
                            donor_landmarks=donor_landmarks, info=info)
