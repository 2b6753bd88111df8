"""Online self-blending and augmentation of training crops for the cascade model.

Self-blended images (SBI; Shiohara & Yamasaki, CVPR 2022) train a detector from real faces
alone: every epoch, every real crop gets a *fresh* self-blend made from its stored
landmarks, by the same blend as the benchmark's ``sbi`` edit
(:func:`pipelines.synthesis.sbi`): the source is the same face, colour-jittered, blurred,
sharpened or down-up sampled, and shifted/scaled by a few percent; it is blended over the
landmark convex hull, elastically deformed, eroded or dilated, and blurred with a random
kernel, at a random blend ratio. With ``--part-blend P``, a share P of the blends are
local instead (:mod:`pipelines.face_parts`): the same transformed copy blended over one face
part, a union of parts or landmark-anchored blobs, so the mask head cannot answer "the
face" whatever was changed. The blend's mask -- exactly the pixels it changed -- is the
mask head's target. The real and its blend go into the same mini-batch.

Augmentations (:data:`AUGMENTATIONS`, the plan's "data process optimisation") are then
applied to reals and blends alike, never to one class only: JPEG re-compression, Gaussian
blur, Gaussian noise, colour jitter, downscale-upscale, horizontal flip (which also
flips the mask), an H.264 round trip at FF++ c23- to c40-like quality and a social-platform
rescale chain (:mod:`fusion.cascade.codec`, libx264 through PyAV). Everything runs on 8-bit
crops with NumPy, OpenCV and libx264. Only the flip changes the mask: the mask says which
pixels the blend made, and an augmentation applied to the whole crop makes none.

Randomness: each crop's blend and augmentations are drawn from
``numpy.random.default_rng([seed, epoch, source, row])``, so a sample is the same whatever
the batch it lands in, and a run is reproducible (and resumable) from its seed. Whether an
augmentation fires is drawn whether it is on or not, so switching one on or off leaves the
others' draws alone; the two codec augmentations (``h264``, ``rescale``) are drawn only in
recipes that use one of them, so recipes without them draw what they drew before they existed.

Example
-------
>>> import numpy as np
>>> from skimage import data
>>> from pipelines.faces import FaceAligner
>>> face = FaceAligner(size=256).process(data.astronaut())
>>> blended, mask = online_blend(face.crop, face.landmarks, np.random.default_rng(0))
>>> bool((mask == np.any(blended != face.crop, axis=-1)).all()), bool(mask.any())
(True, True)
"""
from __future__ import annotations

import cv2
import numpy as np

from extract.cascade import resize_crop
from fusion.cascade.codec import h264_roundtrip, rescale_chain
from pipelines.face_parts import part_blend
from pipelines.synthesis import sbi

#: Augmentations in application order, with their probability per crop.
AUGMENTATIONS = {"color": 0.3, "downup": 0.2, "blur": 0.2, "noise": 0.2, "jpeg": 0.4,
                 "flip": 0.5, "h264": 0.5, "rescale": 0.3}
#: H.264 CRF of ``h264``: an integer, uniform in [18, 45] (FF++ c23 = 23, c40 = 40; a single
#: crop is intra-coded, about 3 CRF finer than a clip's P frames, hence the top of 45).
H264_CRF = (18, 45)
#: ``rescale``: side fraction, interpolations down / up, chance and CRF of the re-encode.
RESCALE_SCALE = (0.3, 0.8)
RESCALE_DOWN = ("area", "linear", "cubic", "nearest")
RESCALE_UP = ("linear", "cubic", "lanczos")
RESCALE_ENCODE_P, RESCALE_CRF = 0.5, (23, 34)
#: What each augmentation draws (documented in ``--help``).
AUGMENTATION_HELP = {
    "color": "brightness +-10%, contrast +-10%, saturation +-15%",
    "downup": "downscale to 40-80% and back (INTER_AREA / INTER_LINEAR)",
    "blur": "Gaussian blur, sigma 0.3-1.2 px",
    "noise": "Gaussian noise, std 1-6 grey levels",
    "jpeg": "JPEG re-compression, quality 40-95",
    "flip": "horizontal flip (mask too)",
    "h264": f"H.264 round trip (libx264 preset medium, 4:2:0), CRF uniform integer "
            f"{H264_CRF[0]}-{H264_CRF[1]}",
    "rescale": f"downscale to {RESCALE_SCALE[0]:.0%}-{RESCALE_SCALE[1]:.0%} of the side "
               f"({'/'.join(RESCALE_DOWN)}, equally likely), with p {RESCALE_ENCODE_P:g} "
               f"H.264 at that size with CRF uniform integer {RESCALE_CRF[0]}-{RESCALE_CRF[1]}, "
               f"upscale back ({'/'.join(RESCALE_UP)})",
}
#: Augmentations that need PyAV.
CODEC_AUGMENTATIONS = ("h264", "rescale")


def parse_augment(text: str | None) -> tuple[str, ...]:
    """``"flip,jpeg"`` -> ``("flip", "jpeg")``; ``"all"`` -> every augmentation;
    empty/None/``"none"`` -> ``()``. Raises ValueError naming the unknown names."""
    if not text or text.strip().lower() == "none":
        return ()
    if text.strip().lower() == "all":
        return tuple(AUGMENTATIONS)
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in AUGMENTATIONS]
    if bad:
        raise ValueError(f"--augment: unknown {bad}; accepted: all, none, "
                         f"{', '.join(AUGMENTATIONS)}")
    return names


def parse_augment_p(text: str | None) -> dict[str, float]:
    """``"h264=0.8,jpeg=0.2"`` -> ``{"h264": 0.8, "jpeg": 0.2}``: per-crop probabilities
    that replace those of :data:`AUGMENTATIONS` (``--augment-p``); empty/None -> ``{}``.
    Raises ValueError naming the flag for an unknown name or a value outside [0, 1]."""
    out = {}
    for part in (t.strip() for t in (text or "").split(",")):
        if not part:
            continue
        name, eq, value = (x.strip() for x in part.partition("="))
        if name not in AUGMENTATIONS:
            raise ValueError(f"--augment-p: unknown augmentation {name!r}; accepted: "
                             f"{', '.join(AUGMENTATIONS)}")
        try:
            p = float(value) if eq else float("nan")
        except ValueError:
            p = float("nan")
        if not 0 <= p <= 1:
            raise ValueError(f"--augment-p: {part!r}: expected NAME=P with P in [0, 1]")
        out[name] = p
    return out


def has_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """N bool: rows whose 68 landmarks are all finite (a blend needs them)."""
    lm = np.asarray(landmarks, np.float64)
    return np.isfinite(lm.reshape(len(lm), lm[0].size if len(lm) else 0)).all(1)


def online_blend(crop: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
                 part_probability: float = 0.0):
    """A fresh self-blend of one real crop: ``(blended uint8 H x W x 3, mask uint8 H x W)``.

    The difficulty (size of the elastic deformation, blur of the mask, strength of the
    source transforms; see :mod:`pipelines.synthesis`) is drawn uniformly in [0, 1]. With
    probability ``part_probability`` the blend is a local one over a face part, a union of
    parts or landmark-anchored blobs (:func:`pipelines.face_parts.part_blend`, the same
    source transforms), else over the whole landmark hull (:func:`pipelines.synthesis.sbi`).
    The mask is exactly the changed pixels, never empty. ``part_probability`` 0 draws
    exactly what it drew before part blends existed.
    """
    difficulty = float(rng.uniform(0.0, 1.0))
    if part_probability > 0 and rng.random() < part_probability:
        return part_blend(crop, landmarks, rng, difficulty)
    return sbi(crop, landmarks, rng, difficulty=difficulty)


def _color_jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Saturation, contrast and brightness of :data:`AUGMENTATION_HELP` ``color``:
    ``grey + (f - grey) * s``, then ``(f - 128) * c + 128 + 255 * b``, rounded, in float32.
    Computed in place, in the same float32 operations in the same order as those formulas
    (bit-identical to them; 2.6x faster at 384 px than with their temporaries)."""
    f = img.astype(np.float32)
    grey = f[..., 0].copy()  # the channel mean as numpy's mean sums a short axis: in order
    for c in range(1, f.shape[-1]):
        grey += f[..., c]
    grey /= np.float32(f.shape[-1])
    grey = grey[..., None]
    f -= grey
    f *= rng.uniform(0.85, 1.15)
    f += grey
    f -= 128
    f *= rng.uniform(0.9, 1.1)
    f += 128
    f += 255 * rng.uniform(-0.1, 0.1)
    np.rint(f, out=f)
    return np.clip(f, 0, 255, out=f).astype(np.uint8)


def augment_crop(image: np.ndarray, mask: np.ndarray, augment, rng: np.random.Generator,
                 probabilities: dict | None = None, codec_simd: bool = True):
    """Apply the named augmentations to one 8-bit crop (and flip its mask along).

    Each augmentation in ``augment`` fires with its probability in :data:`AUGMENTATIONS`
    (or in ``probabilities``, which overrides some of them: :func:`parse_augment_p`); the
    draws come from ``rng`` only. ``codec_simd``: let x264 use its SIMD code for ``h264``
    and ``rescale`` (:data:`fusion.cascade.codec.SIMD_NOTE`; False reproduces runs made
    before it was used). Returns new ``(image, mask)`` arrays.
    """
    img = image
    h, w = img.shape[:2]
    chance = {**AUGMENTATIONS, **(probabilities or {})}
    # Recipes without a codec augmentation draw exactly what they drew before these existed
    # (so their runs reproduce and resume bit for bit); with one, both are drawn.
    with_codec = bool(set(augment) & set(CODEC_AUGMENTATIONS))
    for name in AUGMENTATIONS:
        if name in CODEC_AUGMENTATIONS and not with_codec:
            continue
        fire = rng.random() < chance[name]  # always drawn: same stream whatever is on
        if name not in augment or not fire:
            continue
        if name == "color":
            img = _color_jitter(img, rng)
        elif name == "downup":
            scale = rng.uniform(0.4, 0.8)
            small = cv2.resize(img, (max(8, round(w * scale)), max(8, round(h * scale))),
                               interpolation=cv2.INTER_AREA)
            img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        elif name == "blur":
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.2))
        elif name == "noise":
            noise = rng.normal(0, rng.uniform(1, 6), img.shape)
            noise += img  # in place: the values of clip(rint(img + noise)), fewer copies
            np.rint(noise, out=noise)
            img = np.clip(noise, 0, 255, out=noise).astype(np.uint8)
        elif name == "jpeg":
            quality = int(rng.integers(40, 96))
            ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        elif name == "flip":
            img, mask = img[:, ::-1], mask[:, ::-1]
        elif name == "h264":
            img = h264_roundtrip(img, int(rng.integers(H264_CRF[0], H264_CRF[1] + 1)),
                                 simd=codec_simd)
        elif name == "rescale":
            scale = rng.uniform(*RESCALE_SCALE)
            down = RESCALE_DOWN[rng.integers(len(RESCALE_DOWN))]
            up = RESCALE_UP[rng.integers(len(RESCALE_UP))]
            encode = rng.random() < RESCALE_ENCODE_P
            crf = int(rng.integers(RESCALE_CRF[0], RESCALE_CRF[1] + 1))
            img = rescale_chain(img, scale, down, up, crf if encode else None,
                                simd=codec_simd)
    return np.ascontiguousarray(img), np.ascontiguousarray(mask)


def sample_rng(seed: int, epoch: int, source: int, row: int) -> np.random.Generator:
    """The generator of one crop in one epoch (see the module docstring)."""
    return np.random.default_rng([int(seed), int(epoch), int(source), int(row)])


def resize_pair(image: np.ndarray, mask: np.ndarray, size: int):
    """Crop and mask at the model's input size: INTER_AREA for the crop when shrinking,
    the mask's area fraction thresholded at 0.5."""
    if image.shape[0] == size and image.shape[1] == size:
        return image, mask
    interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    m = cv2.resize(mask.astype(np.float32), (size, size), interpolation=interp)
    # the crop as the ``cascade`` feature extractor resizes it (one function for both)
    return resize_crop(image, size), (m > 0.5).astype(np.uint8)
