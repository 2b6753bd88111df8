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
choices in ``info`` and ``return _finish(target, edited, region)``; add it to
:data:`FACE_EDITS` (and to :data:`NEEDS_DONOR` if it uses the donor). The tests in
``tests/pipelines/test_benchmark.py`` run over every entry.

Example
-------
>>> from skimage import data
>>> from pipelines.faces import FaceAligner
>>> face = FaceAligner(size=256).process(data.astronaut())
>>> edited, mask = sbi(face.crop, face.landmarks, np.random.default_rng(0), "mid")
>>> bool((mask == np.any(edited != face.crop, axis=-1)).all()), bool(mask.any())
(True, True)
"""
from __future__ import annotations

import cv2
import numpy as np

from pipelines.editing import _check_image, changed_mask
from pipelines.faces import similarity_transform

__all__ = ["FACE_EDITS", "NEEDS_DONOR", "DIFFICULTIES", "difficulty_value", "apply_face_edit",
           "sbi", "xray", "swap_eyes", "swap_nose", "swap_mouth", "swap_face", "copy_move",
           "inpaint", "resample", "local_color", "local_blur", "local_sharpen",
           "face_hull_mask"]

#: Named difficulty levels and their value in [0, 1] (0 = large, strong, hard-edged).
DIFFICULTIES = {"easy": 0.0, "mid": 0.5, "hard": 1.0}

# iBUG 68-point groups.
JAW, BROWS, NOSE = slice(0, 17), slice(17, 27), slice(27, 36)
RIGHT_EYE, LEFT_EYE, MOUTH = slice(36, 42), slice(42, 48), slice(48, 68)
RIGHT_BROW, LEFT_BROW = slice(17, 22), slice(22, 27)


# ---------------------------------------------------------------------------- checks

def difficulty_value(difficulty) -> float:
    """``"easy"``/``"mid"``/``"hard"`` or a float in [0, 1] -> float in [0, 1]."""
    if isinstance(difficulty, str):
        if difficulty not in DIFFICULTIES:
            raise ValueError(f"unknown difficulty {difficulty!r}; expected one of "
                             f"{', '.join(DIFFICULTIES)} or a number in [0, 1]")
        return DIFFICULTIES[difficulty]
    value = float(difficulty)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {value}")
    return value


def _check_face(image, landmarks, name: str) -> tuple[np.ndarray, np.ndarray]:
    image = _check_image(image, name, min_side=32)
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise ValueError(f"{name} landmarks must be a finite 68 x 2 array, got shape {lm.shape}")
    return image, lm


def _check_donor(donor, donor_landmarks, target: np.ndarray):
    if donor is None or donor_landmarks is None:
        raise ValueError("this edit needs a donor face and its landmarks")
    donor, dlm = _check_face(donor, donor_landmarks, "donor")
    return donor, dlm


def _r(value, digits: int = 4):
    """Round floats (and arrays) for the manifest."""
    if isinstance(value, np.ndarray) or isinstance(value, (list, tuple)):
        return [_r(v, digits) for v in np.asarray(value, np.float64).ravel().tolist()]
    if isinstance(value, (np.integer, int)):
        return int(value)
    return round(float(value), digits)


def _record(info, **params):
    if info is not None:
        info.update({k: (_r(v) if isinstance(v, (float, np.floating, np.ndarray, tuple, list))
                         else v) for k, v in params.items()})


# ---------------------------------------------------------------------------- masks

def _face_width(lm: np.ndarray) -> float:
    return max(8.0, float(np.linalg.norm(lm[16] - lm[0])))


def _hull(points: np.ndarray, shape) -> np.ndarray:
    region = np.zeros(shape[:2], np.uint8)
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    cv2.fillConvexPoly(region, hull, 1)
    return region


def face_hull_mask(landmarks, shape) -> np.ndarray:
    """H x W uint8 {0, 1}: convex hull of the 68 landmarks (jaw line and brows)."""
    return _hull(np.asarray(landmarks, np.float64), shape)


def _part_region(part: str, lm: np.ndarray, shape) -> np.ndarray:
    """Region of a face part, dilated a little so that it covers the part's skin border."""
    fw = _face_width(lm)
    if part == "eyes":
        region = _hull(np.vstack([lm[RIGHT_EYE], lm[RIGHT_BROW]]), shape)
        region |= _hull(np.vstack([lm[LEFT_EYE], lm[LEFT_BROW]]), shape)
        grow = 0.04
    elif part == "nose":
        region = _hull(np.vstack([lm[NOSE], lm[[31, 35]] + [[-0.03 * fw, 0], [0.03 * fw, 0]]]),
                       shape)
        grow = 0.04
    elif part == "mouth":
        region = _hull(lm[MOUTH], shape)
        grow = 0.05
    elif part == "face":
        # Jaw and lower brows, without the forehead (hair would make a visible seam).
        region = _hull(np.vstack([lm[JAW], lm[BROWS]]), shape)
        grow = -0.02
    else:
        raise ValueError(f"unknown face part {part!r}")
    k = int(round(abs(grow) * fw)) * 2 + 1
    if k > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        region = cv2.dilate(region, kernel) if grow > 0 else cv2.erode(region, kernel)
    return region


def _deformed_hull(lm: np.ndarray, shape, rng, d: float, info=None) -> np.ndarray:
    """The landmark hull with a random smooth elastic outline and a random dilate/erode.

    Returns H x W uint8 {0, 1}. The outline is resampled to 48 points whose distance to the
    centroid is scaled by a smooth random factor (up to +-10 % at difficulty 0, +-5 % at 1).
    """
    hull = cv2.convexHull(np.round(lm).astype(np.float32)).reshape(-1, 2).astype(np.float64)
    closed = np.vstack([hull, hull[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    t = np.concatenate([[0], np.cumsum(seg)])
    s = np.linspace(0, t[-1], 48, endpoint=False)
    outline = np.stack([np.interp(s, t, closed[:, 0]), np.interp(s, t, closed[:, 1])], axis=1)
    centre = outline.mean(0)
    # Smooth radial noise: a few low-frequency sinusoids around the outline.
    amp = (0.10 - 0.05 * d) * rng.uniform(0.3, 1.0)
    phases = rng.uniform(0, 2 * np.pi, 3)
    weights = rng.uniform(-1, 1, 3)
    angle = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    noise = sum(w * np.sin((k + 2) * angle + p) for k, (w, p) in enumerate(zip(weights, phases)))
    noise = noise / max(np.abs(noise).max(), 1e-6)
    outline = centre + (outline - centre) * (1 + amp * noise)[:, None]
    region = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(region, [np.round(outline).astype(np.int32)], 1)
    fw = _face_width(lm)
    k = int(rng.integers(0, max(1, int(0.04 * fw)) + 1))
    op = str(rng.choice(["dilate", "erode", "none"]))
    if k > 0 and op != "none":
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
        morphed = cv2.dilate(region, kernel) if op == "dilate" else cv2.erode(region, kernel)
        if morphed.any():
            region = morphed
    _record(info, hull_elastic_amp=amp, hull_morph=op, hull_morph_px=k)
    return region


def _feather(region: np.ndarray, sigma: float) -> np.ndarray:
    """Float32 alpha in [0, 1]: the region blurred with ``sigma`` px (hard edges at 0)."""
    alpha = region.astype(np.float32)
    if sigma > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
        # Keep the region's interior fully opaque: the blur only softens the border.
        alpha = np.clip(alpha * 2.0, 0.0, 1.0) if region.any() else alpha
    return alpha


def _anchor_region(lm: np.ndarray, shape, rng, d: float, info=None, scale: float = 1.0):
    """A random ellipse centred near a random landmark; radius 22 % of the face width at
    difficulty 0, 10 % at 1 (times ``scale``). H x W uint8 {0, 1}, never empty."""
    h, w = shape[:2]
    fw = _face_width(lm)
    index = int(rng.integers(0, 68))
    centre = lm[index] + rng.normal(0, 0.03 * fw, 2)
    centre = np.clip(centre, 0, [w - 1, h - 1])
    radius = fw * (0.22 - 0.12 * d) * scale
    axes = radius * rng.uniform(0.6, 1.0, 2)
    angle = rng.uniform(0, 180)
    region = np.zeros((h, w), np.uint8)
    cv2.ellipse(region, (int(round(centre[0])), int(round(centre[1]))),
                (max(2, int(round(axes[0]))), max(2, int(round(axes[1])))), angle, 0, 360, 1, -1)
    _record(info, anchor_landmark=index, centre=centre, axes=axes, angle=angle)
    return region


# ---------------------------------------------------------------------------- pixels

def _blend(target: np.ndarray, source: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None].astype(np.float32)
    mixed = target.astype(np.float32) * (1 - a) + source.astype(np.float32) * a
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _finish(target: np.ndarray, edited: np.ndarray, region: np.ndarray):
    """``(edited, exact mask)``; a no-op edit gets its region's lowest bit flipped so that
    every fake has a non-empty mask (happens only for degenerate, flat regions)."""
    mask = changed_mask(target, edited)
    if not mask.any():
        edited = edited.copy()
        where = region.astype(bool) if region.any() else np.ones(region.shape, bool)
        edited[where] ^= 1
        mask = changed_mask(target, edited)
    return edited, mask


def color_transfer(source: np.ndarray, target: np.ndarray, region: np.ndarray,
                   weight: float = 1.0) -> np.ndarray:
    """Reinhard colour transfer in Lab: match ``source``'s mean and std inside ``region`` to
    ``target``'s, mixed with the original by ``weight`` in [0, 1]. uint8 RGB result."""
    sel = region.astype(bool)
    if weight <= 0 or sel.sum() < 4:
        return source
    src = cv2.cvtColor(source.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    tgt = cv2.cvtColor(target.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    mu_s, sd_s = src[sel].mean(0), src[sel].std(0) + 1e-3
    mu_t, sd_t = tgt[sel].mean(0), tgt[sel].std(0) + 1e-3
    moved = (src - mu_s) / sd_s * sd_t + mu_t
    moved = src + weight * (moved - src)
    out = cv2.cvtColor(moved.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)


def _warp_donor(donor: np.ndarray, dlm: np.ndarray, lm: np.ndarray, idx, shape) -> np.ndarray:
    m = similarity_transform(dlm[idx], lm[idx])
    return cv2.warpAffine(donor, m, (shape[1], shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


# ---------------------------------------------------------------------------- SBI / X-ray

def _sbi_source(target: np.ndarray, lm: np.ndarray, rng, d: float, info=None) -> np.ndarray:
    """The SBI pseudo-source: colour, frequency and small affine transforms of the target."""
    strength = 1.0 - 0.6 * d
    h, w = target.shape[:2]
    hsv = cv2.cvtColor(target, cv2.COLOR_RGB2HSV).astype(np.float32)
    hue = rng.uniform(-6, 6) * strength              # OpenCV hue: 0-180
    sat = 1 + rng.uniform(-0.25, 0.25) * strength
    val = 1 + rng.uniform(-0.2, 0.2) * strength
    hsv[..., 0] = np.mod(hsv[..., 0] + hue, 180)
    hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] * val, 0, 255)
    src = cv2.cvtColor(np.rint(hsv).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    contrast = 1 + rng.uniform(-0.15, 0.15) * strength
    brightness = rng.uniform(-15, 15) * strength
    src = np.clip((src - 128) * contrast + 128 + brightness, 0, 255)

    freq = str(rng.choice(["blur", "sharpen", "downup", "none"]))
    freq_value = 0.0
    if freq == "blur":
        freq_value = rng.uniform(0.5, 1.5)
        src = cv2.GaussianBlur(src, (0, 0), freq_value)
    elif freq == "sharpen":
        freq_value = rng.uniform(0.3, 1.0) * strength
        src = np.clip(src + freq_value * (src - cv2.GaussianBlur(src, (0, 0), 1.0)), 0, 255)
    elif freq == "downup":
        freq_value = rng.uniform(0.35, 0.75)
        small = cv2.resize(src, (max(8, round(w * freq_value)), max(8, round(h * freq_value))),
                           interpolation=cv2.INTER_AREA)
        src = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)

    fw = _face_width(lm)
    shift = rng.uniform(-0.03, 0.03, 2) * fw * strength
    scale = 1 + rng.uniform(-0.05, 0.05) * strength
    cx, cy = lm.mean(0)
    m = np.array([[scale, 0, (1 - scale) * cx + shift[0]],
                  [0, scale, (1 - scale) * cy + shift[1]]])
    src = cv2.warpAffine(src.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT_101)
    _record(info, hue_shift=hue, saturation=sat, value=val, contrast=contrast,
            brightness=brightness, frequency=freq, frequency_value=freq_value,
            shift_px=shift, scale=scale)
    return np.clip(np.rint(src), 0, 255).astype(np.uint8)


def _blend_over_hull(target, source, lm, rng, d, info):
    region = _deformed_hull(lm, target.shape, rng, d, info)
    fw = _face_width(lm)
    sigma = fw * rng.uniform(0.01, 0.03 + 0.05 * d)
    # Blend ratio as in SBI (mostly 1, sometimes partial); lower on harder levels.
    ratio = float(rng.choice([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])) * (1 - 0.3 * d) + 0.3 * d * \
        rng.uniform(0.5, 1.0)
    alpha = cv2.GaussianBlur(region.astype(np.float32), (0, 0), sigma) * ratio
    _record(info, mask_sigma_px=sigma, blend_ratio=ratio)
    return _finish(target, _blend(target, source, alpha), region)


def sbi(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None, info=None):
    """Self-blended image: the face blended with a transformed copy of itself.

    The pseudo-source gets an HSV and brightness/contrast change, one of blur, sharpen or
    downscale-upscale, and a shift/scale of up to 3 %/5 % of the face width; it is blended
    over the landmark hull deformed elastically and by a random dilate/erode, Gaussian-
    blurred (sigma 1-3 % of the face width at difficulty 0, up to 8 % at 1) and scaled by a
    random blend ratio. ``donor`` is ignored. Returns ``(edited, mask)``.
    """
    target, lm = _check_face(target, landmarks, "target")
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    source = _sbi_source(target, lm, rng, d, info)
    return _blend_over_hull(target, source, lm, rng, d, info)


def xray(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None, info=None):
    """Face X-ray-style blend of a donor face warped onto the target's 68 landmarks.

    The donor is colour-corrected (Reinhard, Lab) towards the target inside the hull with a
    weight rising from about 0.2 (easy) to 1 (hard), then blended as in :func:`sbi`.
    """
    target, lm = _check_face(target, landmarks, "target")
    donor, dlm = _check_donor(donor, donor_landmarks, target)
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    warped = _warp_donor(donor, dlm, lm, np.arange(68), target.shape)
    weight = float(np.clip(d + rng.uniform(-0.2, 0.2), 0.0, 1.0)) if d > 0 else rng.uniform(0, 0.4)
    warped = color_transfer(warped, target, face_hull_mask(lm, target.shape), weight)
    _record(info, color_weight=weight)
    return _blend_over_hull(target, warped, lm, rng, d, info)


# ---------------------------------------------------------------------------- part swaps

_PART_POINTS = {"eyes": np.r_[17:27, 36:48], "nose": np.r_[27:36, 39, 42],
                "mouth": np.r_[31:36, 48:68], "face": np.arange(68)}


def _swap(part: str, target, landmarks, rng, difficulty, donor, donor_landmarks, info):
    target, lm = _check_face(target, landmarks, "target")
    donor, dlm = _check_donor(donor, donor_landmarks, target)
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    warped = _warp_donor(donor, dlm, lm, _PART_POINTS[part], target.shape)
    region = _part_region(part, lm, target.shape)
    fw = _face_width(lm)
    if d <= 0.25:        # easy: hard edges, no colour matching
        method, sigma, weight = "paste", 0.0, 0.0
    elif d <= 0.75:      # mid: light feathering, partial colour matching
        method, sigma, weight = "feather", fw * rng.uniform(0.005, 0.015), rng.uniform(0.4, 0.8)
    else:                # hard: seamless cloning or wide feathering with full colour matching
        method = str(rng.choice(["seamless", "feather"]))
        sigma, weight = fw * rng.uniform(0.015, 0.04), 1.0
    _record(info, part=part, method=method, feather_sigma_px=sigma, color_weight=weight)
    if method == "seamless":
        # seamlessClone needs the region off the border; it places the source's masked
        # patch centred on the region's bounding box, so the content stays in place.
        region[:2], region[-2:], region[:, :2], region[:, -2:] = 0, 0, 0, 0
        ys, xs = np.nonzero(region)
        if len(ys) >= 16:
            x, y, w, h = cv2.boundingRect(np.stack([xs, ys], 1).astype(np.int32))
            centre = (x + w // 2, y + h // 2)
            edited = cv2.seamlessClone(warped, target, region * 255, centre, cv2.NORMAL_CLONE)
            return _finish(target, edited, region)
        _record(info, method="feather")  # region too small to clone
    warped = color_transfer(warped, target, region, weight)
    return _finish(target, _blend(target, warped, _feather(region, sigma)), region)


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
    return 0.0 if d <= 0.25 else _face_width(lm) * rng.uniform(0.01, 0.04) * d


def copy_move(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None,
              info=None):
    """A region of the same face moved by 1-2 region radii (copy-move forgery)."""
    target, lm = _check_face(target, landmarks, "target")
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    region = _anchor_region(lm, target.shape, rng, d, info)
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
    _record(info, offset_px=(dx, dy), feather_sigma_px=sigma)
    return _finish(target, _blend(target, moved, _feather(region, sigma)), region)


def inpaint(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None,
            info=None):
    """``cv2.inpaint`` (Telea or Navier-Stokes) over a random landmark-anchored region."""
    target, lm = _check_face(target, landmarks, "target")
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    region = _anchor_region(lm, target.shape, rng, d, info, scale=0.8)
    method = str(rng.choice(["telea", "ns"]))
    radius = float(rng.uniform(2, 6))
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    edited = cv2.inpaint(target, region, radius, flag)
    _record(info, inpaint_method=method, inpaint_radius=radius)
    return _finish(target, edited, region)


def resample(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None,
             info=None):
    """Local resize/warp: a region magnified or shrunk about its centre (and slightly
    rotated), resampled bilinearly and feathered into the face."""
    target, lm = _check_face(target, landmarks, "target")
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    region = _anchor_region(lm, target.shape, rng, d, info)
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
    weight = _feather(region, max(1.0, _local_sigma(lm, rng, d)))
    map_x = (gx + weight * (src_x - gx)).astype(np.float32)
    map_y = (gy + weight * (src_y - gy)).astype(np.float32)
    edited = cv2.remap(target, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    _record(info, scale=scale, rotation_deg=np.rad2deg(rot))
    return _finish(target, edited, region)


def local_color(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None,
                info=None):
    """Local colour/illumination change: per-channel gain and offset (up to 30 % and 30
    levels at difficulty 0, a third of that at 1) in a landmark-anchored region."""
    target, lm = _check_face(target, landmarks, "target")
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    region = _anchor_region(lm, target.shape, rng, d, info)
    strength = 1 - 0.67 * d
    illum = rng.uniform(-0.3, 0.3) * strength
    gain = 1 + illum + rng.uniform(-0.12, 0.12, 3) * strength
    offset = rng.uniform(-30, 30, 3) * strength
    recoloured = target.astype(np.float32) * gain.astype(np.float32) + offset.astype(np.float32)
    sigma = _local_sigma(lm, rng, d)
    _record(info, gain=gain, offset=offset, feather_sigma_px=sigma)
    return _finish(target, _blend(target, np.clip(recoloured, 0, 255), _feather(region, sigma)),
                   region)


def local_blur(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None,
               info=None):
    """Gaussian blur (sigma 2.5-4 px at difficulty 0, 0.8-1.5 px at 1) of a local region."""
    target, lm = _check_face(target, landmarks, "target")
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    region = _anchor_region(lm, target.shape, rng, d, info)
    sigma = rng.uniform(2.5, 4.0) * (1 - d) + rng.uniform(0.8, 1.5) * d
    blurred = cv2.GaussianBlur(target, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    feather = _local_sigma(lm, rng, d)
    _record(info, blur_sigma_px=sigma, feather_sigma_px=feather)
    return _finish(target, _blend(target, blurred, _feather(region, feather)), region)


def local_sharpen(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None,
                  info=None):
    """Unsharp masking (amount 1.5-2.5 at difficulty 0, 0.4-0.8 at 1) of a local region."""
    target, lm = _check_face(target, landmarks, "target")
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    region = _anchor_region(lm, target.shape, rng, d, info)
    amount = rng.uniform(1.5, 2.5) * (1 - d) + rng.uniform(0.4, 0.8) * d
    radius = rng.uniform(1.0, 2.0)
    t = target.astype(np.float32)
    sharp = np.clip(t + amount * (t - cv2.GaussianBlur(t, (0, 0), radius)), 0, 255)
    feather = _local_sigma(lm, rng, d)
    _record(info, amount=amount, radius_px=radius, feather_sigma_px=feather)
    return _finish(target, _blend(target, sharp, _feather(region, feather)), region)


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
