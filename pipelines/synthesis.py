"""Face synthesis with exact masks: self-blends, X-ray blends, part regions and masks.

The one home of the blends that make fakes from real faces, shared by the image-editing
benchmark (:mod:`pipelines.edits_face`, whose ``sbi`` and ``xray`` edits are these) and by
the cascade's online self-blending (:mod:`fusion.cascade.blend`), both importing it
downward. It holds

- the blends: :func:`sbi` (self-blended image, Shiohara & Yamasaki, CVPR 2022: the face
  blended with a colour-, frequency- and affine-transformed copy of itself over a deformed,
  blurred landmark hull) and :func:`xray` (Face X-ray-style blend, Li et al., CVPR 2020: a
  donor face warped onto the target's landmarks, colour-corrected, blended the same way);
  each is a draw of its random choices (:func:`draw_source_params`, :func:`draw_hull_params`,
  :func:`draw_blend_params`) then their application (:func:`sbi_source`,
  :func:`deformed_hull`, :func:`blend_region`), so that :mod:`pipelines.synthesis_temporal`
  can vary the choices from frame to frame of a clip;
- the part regions: the iBUG 68-point landmark groups (:data:`JAW`, :data:`MOUTH`, ...),
  :data:`PART_POINTS`, :func:`part_region`, :func:`anchor_region` and the landmark hulls
  (:func:`face_hull_mask`);
- the masks and pixel steps every face edit shares: :func:`feather_alpha`,
  :func:`alpha_blend`, :func:`color_transfer`, :func:`warp_donor` and :func:`finish_edit`,
  which returns the exact mask (``np.any(edited != target, axis=-1)``, never empty);
- the input checks and the ``info`` record of every random choice (:func:`check_face`,
  :func:`difficulty_value`, :func:`record_choices`).

Every blend takes an aligned RGB ``uint8`` face (H x W x 3), its 68 ``landmarks`` (68 x 2,
pixels), a random generator and a ``difficulty`` (``"easy"``, ``"mid"``, ``"hard"`` or a
float in [0, 1], 0 = easy) and returns ``(edited, mask)``. The same inputs and seed give
the same output (NumPy ``default_rng`` and OpenCV only).

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

__all__ = ["DIFFICULTIES", "difficulty_value", "sbi", "xray", "face_hull_mask", "part_region",
           "anchor_region", "PART_POINTS", "feather_alpha", "alpha_blend", "color_transfer",
           "warp_donor", "finish_edit", "check_face", "check_donor", "record_choices",
           "face_width", "JAW", "BROWS", "NOSE", "RIGHT_EYE", "LEFT_EYE", "MOUTH",
           "RIGHT_BROW", "LEFT_BROW", "draw_source_params", "sbi_source", "draw_hull_params",
           "deformed_hull", "draw_blend_params", "blend_region", "FREQUENCY_OPS"]

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


def check_face(image, landmarks, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(image, landmarks as float64)``; ValueError naming ``name`` unless the image is an
    RGB ``uint8`` face of at least 32 px and the landmarks a finite 68 x 2 array."""
    image = _check_image(image, name, min_side=32)
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise ValueError(f"{name} landmarks must be a finite 68 x 2 array, got shape {lm.shape}")
    return image, lm


def check_donor(donor, donor_landmarks, target: np.ndarray):
    """:func:`check_face` of the donor; ValueError when there is none."""
    if donor is None or donor_landmarks is None:
        raise ValueError("this edit needs a donor face and its landmarks")
    donor, dlm = check_face(donor, donor_landmarks, "donor")
    return donor, dlm


def _r(value, digits: int = 4):
    """Round floats (and arrays) for the manifest."""
    if isinstance(value, np.ndarray) or isinstance(value, (list, tuple)):
        return [_r(v, digits) for v in np.asarray(value, np.float64).ravel().tolist()]
    if isinstance(value, (np.integer, int)):
        return int(value)
    return round(float(value), digits)


def record_choices(info, **params):
    """Add ``params`` (floats and arrays rounded to 4 digits) to the ``info`` dict, if any."""
    if info is not None:
        info.update({k: (_r(v) if isinstance(v, (float, np.floating, np.ndarray, tuple, list))
                         else v) for k, v in params.items()})


# ---------------------------------------------------------------------------- masks

def face_width(lm: np.ndarray) -> float:
    """Jaw width in pixels (landmark 0 to 16), at least 8: the scale of every region."""
    return max(8.0, float(np.linalg.norm(lm[16] - lm[0])))


def _hull(points: np.ndarray, shape) -> np.ndarray:
    region = np.zeros(shape[:2], np.uint8)
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    cv2.fillConvexPoly(region, hull, 1)
    return region


def face_hull_mask(landmarks, shape) -> np.ndarray:
    """H x W uint8 {0, 1}: convex hull of the 68 landmarks (jaw line and brows)."""
    return _hull(np.asarray(landmarks, np.float64), shape)



#: Landmarks of each face part, on which a donor's part is aligned.
PART_POINTS = {"eyes": np.r_[17:27, 36:48], "nose": np.r_[27:36, 39, 42],
                "mouth": np.r_[31:36, 48:68], "face": np.arange(68)}


def part_region(part: str, lm: np.ndarray, shape) -> np.ndarray:
    """Region of a face part, dilated a little so that it covers the part's skin border."""
    fw = face_width(lm)
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


def draw_hull_params(rng, d: float, fw: float) -> dict:
    """The random choices of :func:`deformed_hull` at difficulty ``d`` for a face ``fw`` px
    wide: ``amp`` (radial scale of the outline noise, 0.3-1 x (0.10 - 0.05 d)), ``phases``
    and ``weights`` (3 each: the noise's sinusoids), ``morph`` (dilate/erode/none) and
    ``morph_px`` (its radius, 0 to 4 % of ``fw``)."""
    amp = (0.10 - 0.05 * d) * rng.uniform(0.3, 1.0)
    phases = rng.uniform(0, 2 * np.pi, 3)
    weights = rng.uniform(-1, 1, 3)
    k = int(rng.integers(0, max(1, int(0.04 * fw)) + 1))
    op = str(rng.choice(["dilate", "erode", "none"]))
    return {"amp": amp, "phases": phases, "weights": weights, "morph": op, "morph_px": k}


def deformed_hull(lm: np.ndarray, shape, params: dict, points=None, info=None) -> np.ndarray:
    """The landmark hull, its outline deformed and dilated/eroded (:func:`draw_hull_params`).

    Returns H x W uint8 {0, 1}. The outline of the hull of ``points`` (default: all 68
    landmarks ``lm``) is resampled to 48 points whose distance to the centroid is scaled by
    ``1 + amp * noise`` (``noise`` a sum of three sinusoids, peak 1); then it is dilated or
    eroded by a disk of radius ``morph_px`` (unless that empties it).
    """
    pts = lm if points is None else np.asarray(points, np.float64)
    hull = cv2.convexHull(np.round(pts).astype(np.float32)).reshape(-1, 2).astype(np.float64)
    closed = np.vstack([hull, hull[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    t = np.concatenate([[0], np.cumsum(seg)])
    s = np.linspace(0, t[-1], 48, endpoint=False)
    outline = np.stack([np.interp(s, t, closed[:, 0]), np.interp(s, t, closed[:, 1])], axis=1)
    centre = outline.mean(0)
    # Smooth radial noise: a few low-frequency sinusoids around the outline.
    amp, phases, weights = params["amp"], params["phases"], params["weights"]
    angle = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    noise = sum(w * np.sin((k + 2) * angle + p) for k, (w, p) in enumerate(zip(weights, phases)))
    noise = noise / max(np.abs(noise).max(), 1e-6)
    outline = centre + (outline - centre) * (1 + amp * noise)[:, None]
    region = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(region, [np.round(outline).astype(np.int32)], 1)
    region = apply_morph(region, params["morph"], int(params["morph_px"]))
    record_choices(info, hull_elastic_amp=amp, hull_morph=params["morph"],
                   hull_morph_px=int(params["morph_px"]))
    return region


def apply_morph(region: np.ndarray, op: str, k: int) -> np.ndarray:
    """``region`` dilated or eroded (``op``; ``"none"`` leaves it) by an elliptic kernel of
    radius ``k`` px; a morph that would empty the region is not applied."""
    if k > 0 and op != "none":
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
        morphed = cv2.dilate(region, kernel) if op == "dilate" else cv2.erode(region, kernel)
        if morphed.any():
            region = morphed
    return region


def random_morph(region: np.ndarray, max_px: int, rng):
    """``(region, op, k)``: ``region`` dilated, eroded or left (``op``, drawn uniformly) by
    an elliptic kernel of radius ``k`` px drawn in [0, max(1, max_px)] (:func:`apply_morph`)."""
    k = int(rng.integers(0, max(1, max_px) + 1))
    op = str(rng.choice(["dilate", "erode", "none"]))
    return apply_morph(region, op, k), op, k


def feather_alpha(region: np.ndarray, sigma: float) -> np.ndarray:
    """Float32 alpha in [0, 1]: the region blurred with ``sigma`` px (hard edges at 0)."""
    alpha = region.astype(np.float32)
    if sigma > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
        # Keep the region's interior fully opaque: the blur only softens the border.
        alpha = np.clip(alpha * 2.0, 0.0, 1.0) if region.any() else alpha
    return alpha


def anchor_region(lm: np.ndarray, shape, rng, d: float, info=None, scale: float = 1.0):
    """A random ellipse centred near a random landmark; radius 22 % of the face width at
    difficulty 0, 10 % at 1 (times ``scale``). H x W uint8 {0, 1}, never empty."""
    h, w = shape[:2]
    fw = face_width(lm)
    index = int(rng.integers(0, 68))
    centre = lm[index] + rng.normal(0, 0.03 * fw, 2)
    centre = np.clip(centre, 0, [w - 1, h - 1])
    radius = fw * (0.22 - 0.12 * d) * scale
    axes = radius * rng.uniform(0.6, 1.0, 2)
    angle = rng.uniform(0, 180)
    region = np.zeros((h, w), np.uint8)
    cv2.ellipse(region, (int(round(centre[0])), int(round(centre[1]))),
                (max(2, int(round(axes[0]))), max(2, int(round(axes[1])))), angle, 0, 360, 1, -1)
    record_choices(info, anchor_landmark=index, centre=centre, axes=axes, angle=angle)
    return region


# ---------------------------------------------------------------------------- pixels

def alpha_blend(target: np.ndarray, source: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``target * (1 - alpha) + source * alpha``, rounded to ``uint8`` (alpha: H x W).

    Where alpha is 0 that is ``target`` exactly, so only the bounding box of alpha's
    non-zero pixels is computed (a blurred face region covers a part of the crop)."""
    alpha, target = np.asarray(alpha), np.asarray(target)
    # alpha 0: the formula's value is the target in float32, rounded (itself for uint8)
    out = (target.copy() if target.dtype == np.uint8
           else np.clip(np.rint(target.astype(np.float32)), 0, 255).astype(np.uint8))
    rows, cols = np.flatnonzero(alpha.any(1)), np.flatnonzero(alpha.any(0))
    if not len(rows):
        return out
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    a = alpha[box][..., None].astype(np.float32)
    mixed = target[box].astype(np.float32) * (1 - a) + source[box].astype(np.float32) * a
    out[box] = np.clip(np.rint(mixed), 0, 255)
    return out


def finish_edit(target: np.ndarray, edited: np.ndarray, region: np.ndarray):
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


def warp_donor(donor: np.ndarray, dlm: np.ndarray, lm: np.ndarray, idx, shape) -> np.ndarray:
    """``donor`` warped by the similarity transform that maps its landmarks ``dlm[idx]``
    onto ``lm[idx]``, at ``shape``."""
    m = similarity_transform(dlm[idx], lm[idx])
    return cv2.warpAffine(donor, m, (shape[1], shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


# ---------------------------------------------------------------------------- SBI / X-ray

FREQUENCY_OPS = ("blur", "sharpen", "downup", "none")


def draw_source_params(rng, d: float, fw: float) -> dict:
    """The random choices of :func:`sbi_source` at difficulty ``d`` (``strength = 1 - 0.6 d``)
    for a face ``fw`` px wide: ``hue`` (OpenCV units, 0-180 wrap; +-6 strength),
    ``saturation`` and ``value`` (factors, 1 +-0.25 / 0.2 strength), ``contrast`` (1 +-0.15
    strength), ``brightness`` (grey levels, +-15 strength), ``frequency`` (one of
    :data:`FREQUENCY_OPS`) with ``frequency_value`` (blur sigma 0.5-1.5 px, sharpen amount
    0.3-1 x strength, down-up scale 0.35-0.75), ``shift_px`` (2, +-3 % of ``fw`` x strength)
    and ``scale`` (1 +-0.05 strength)."""
    strength = 1.0 - 0.6 * d
    hue = rng.uniform(-6, 6) * strength              # OpenCV hue: 0-180
    sat = 1 + rng.uniform(-0.25, 0.25) * strength
    val = 1 + rng.uniform(-0.2, 0.2) * strength
    contrast = 1 + rng.uniform(-0.15, 0.15) * strength
    brightness = rng.uniform(-15, 15) * strength
    freq = str(rng.choice(list(FREQUENCY_OPS)))
    freq_value = 0.0
    if freq == "blur":
        freq_value = rng.uniform(0.5, 1.5)
    elif freq == "sharpen":
        freq_value = rng.uniform(0.3, 1.0) * strength
    elif freq == "downup":
        freq_value = rng.uniform(0.35, 0.75)
    shift = rng.uniform(-0.03, 0.03, 2) * fw * strength
    scale = 1 + rng.uniform(-0.05, 0.05) * strength
    return {"hue": hue, "saturation": sat, "value": val, "contrast": contrast,
            "brightness": brightness, "frequency": freq, "frequency_value": freq_value,
            "shift_px": shift, "scale": scale}


def sbi_source(target: np.ndarray, lm: np.ndarray, params: dict, info=None) -> np.ndarray:
    """The SBI pseudo-source: the colour, frequency and small affine transforms of
    ``params`` (:func:`draw_source_params`) applied to the target. uint8 H x W x 3."""
    h, w = target.shape[:2]
    hue, sat, val = params["hue"], params["saturation"], params["value"]
    # The HSV and contrast/brightness changes act on 8-bit values one by one, so they are
    # look-up tables: the float32 formulas below evaluated on the 256 levels, bit-identical
    # to evaluating them on every pixel
    levels = np.arange(256, dtype=np.float32)
    hsv_lut = np.stack([np.mod(levels + hue, 180), np.clip(levels * sat, 0, 255),
                        np.clip(levels * val, 0, 255)], axis=-1)
    hsv_lut = np.rint(hsv_lut).astype(np.uint8).reshape(256, 1, 3)
    hsv = cv2.LUT(cv2.cvtColor(np.ascontiguousarray(target), cv2.COLOR_RGB2HSV), hsv_lut)
    contrast, brightness = params["contrast"], params["brightness"]
    tone = np.clip((levels - 128) * contrast + 128 + brightness, 0, 255).astype(np.float32)
    src = cv2.LUT(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), tone.reshape(256, 1))

    freq, freq_value = params["frequency"], params["frequency_value"]
    if freq == "blur":
        src = cv2.GaussianBlur(src, (0, 0), freq_value)
    elif freq == "sharpen":
        src = np.clip(src + freq_value * (src - cv2.GaussianBlur(src, (0, 0), 1.0)), 0, 255)
    elif freq == "downup":
        small = cv2.resize(src, (max(8, round(w * freq_value)), max(8, round(h * freq_value))),
                           interpolation=cv2.INTER_AREA)
        src = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)

    shift, scale = params["shift_px"], params["scale"]
    cx, cy = lm.mean(0)
    m = np.array([[scale, 0, (1 - scale) * cx + shift[0]],
                  [0, scale, (1 - scale) * cy + shift[1]]])
    src = cv2.warpAffine(src.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT_101)
    record_choices(info, hue_shift=hue, saturation=sat, value=val, contrast=contrast,
            brightness=brightness, frequency=freq, frequency_value=freq_value,
            shift_px=shift, scale=scale)
    return np.clip(np.rint(src), 0, 255).astype(np.uint8)


def draw_blend_params(rng, d: float) -> dict:
    """The random choices of :func:`blend_region` at difficulty ``d``: ``sigma_fw`` (mask
    blur sigma as a fraction of the face width, 0.01 to 0.03 + 0.05 d) and ``ratio`` (blend
    ratio in [0.25, 1]: as in SBI mostly 1, sometimes partial; lower on harder levels)."""
    sigma_fw = rng.uniform(0.01, 0.03 + 0.05 * d)
    ratio = float(rng.choice([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])) * (1 - 0.3 * d) + 0.3 * d * \
        rng.uniform(0.5, 1.0)
    return {"sigma_fw": sigma_fw, "ratio": ratio}


def blend_region(target, source, region, fw: float, params: dict, info=None):
    """``source`` blended into ``target`` over ``region`` blurred by ``params["sigma_fw"] *
    fw`` px and scaled by ``params["ratio"]``: ``(edited, exact mask)`` (:func:`finish_edit`)."""
    sigma = fw * params["sigma_fw"]
    ratio = params["ratio"]
    alpha = cv2.GaussianBlur(region.astype(np.float32), (0, 0), sigma) * ratio
    record_choices(info, mask_sigma_px=sigma, blend_ratio=ratio)
    return finish_edit(target, alpha_blend(target, source, alpha), region)


def _blend_over_hull(target, source, lm, rng, d, info):
    fw = face_width(lm)
    region = deformed_hull(lm, target.shape, draw_hull_params(rng, d, fw), info=info)
    return blend_region(target, source, region, fw, draw_blend_params(rng, d), info)


def sbi(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None, info=None):
    """Self-blended image: the face blended with a transformed copy of itself.

    The pseudo-source gets an HSV and brightness/contrast change, one of blur, sharpen or
    downscale-upscale, and a shift/scale of up to 3 %/5 % of the face width; it is blended
    over the landmark hull deformed elastically and by a random dilate/erode, Gaussian-
    blurred (sigma 1-3 % of the face width at difficulty 0, up to 8 % at 1) and scaled by a
    random blend ratio. ``donor`` is ignored. Returns ``(edited, mask)``.
    """
    target, lm = check_face(target, landmarks, "target")
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    source = sbi_source(target, lm, draw_source_params(rng, d, face_width(lm)), info)
    return _blend_over_hull(target, source, lm, rng, d, info)


def xray(target, landmarks, rng, difficulty="mid", donor=None, donor_landmarks=None, info=None):
    """Face X-ray-style blend of a donor face warped onto the target's 68 landmarks.

    The donor is colour-corrected (Reinhard, Lab) towards the target inside the hull with a
    weight rising from about 0.2 (easy) to 1 (hard), then blended as in :func:`sbi`.
    """
    target, lm = check_face(target, landmarks, "target")
    donor, dlm = check_donor(donor, donor_landmarks, target)
    rng, d = np.random.default_rng(rng), difficulty_value(difficulty)
    warped = warp_donor(donor, dlm, lm, np.arange(68), target.shape)
    weight = float(np.clip(d + rng.uniform(-0.2, 0.2), 0.0, 1.0)) if d > 0 else rng.uniform(0, 0.4)
    warped = color_transfer(warped, target, face_hull_mask(lm, target.shape), weight)
    record_choices(info, color_weight=weight)
    return _blend_over_hull(target, warped, lm, rng, d, info)
