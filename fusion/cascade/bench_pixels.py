"""Per-crop cost of the self-blend and augmentation steps: our code beside the plain formula.

``python -m fusion.cascade.bench_pixels [--size 384] [--repeat 40]`` times, in one run and
on the same aligned real faces (``../shared``-free: scikit-image's astronaut, aligned and
resized), each vectorised step of the training data pipeline beside its reference -- the
per-pixel formula the step's docstring states, as the code computed it before -- and prints
ms per call and the ratio. Every output is asserted equal to its reference, bit for bit,
except x264's SIMD code, which codes some blocks differently from its plain C code (both
are deterministic: :data:`fusion.cascade.codec.SIMD_NOTE`); for it the PSNR of both
against the input is printed instead.

The references live here so that the tests check the pipeline against the same formulas
(``tests/pipelines/test_fast_pixels.py``).
"""
from __future__ import annotations

import sys
import time

import cv2
import numpy as np

from base.cli import CLIParser, at_least


def reference_changed_mask(target, edited):
    """1 where any channel differs: numpy's reduction over the last axis."""
    return np.any(edited != target, axis=-1).astype(np.uint8)


def reference_alpha_blend(target, source, alpha):
    """``target * (1 - alpha) + source * alpha`` on every pixel, rounded to uint8."""
    a = alpha[..., None].astype(np.float32)
    mixed = target.astype(np.float32) * (1 - a) + source.astype(np.float32) * a
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def reference_color_jitter(img, rng):
    """The ``color`` augmentation's formulas with their temporaries."""
    f = img.astype(np.float32)
    grey = f.mean(-1, keepdims=True)
    f = grey + (f - grey) * rng.uniform(0.85, 1.15)
    f = (f - 128) * rng.uniform(0.9, 1.1) + 128 + 255 * rng.uniform(-0.1, 0.1)
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def reference_source_tone(target, params):
    """The HSV and contrast/brightness change of :func:`pipelines.synthesis.sbi_source`,
    computed on every pixel (float32 H x W x 3, before its frequency and affine steps)."""
    hsv = cv2.cvtColor(target, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = np.mod(hsv[..., 0] + params["hue"], 180)
    hsv[..., 1] = np.clip(hsv[..., 1] * params["saturation"], 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] * params["value"], 0, 255)
    src = cv2.cvtColor(np.rint(hsv).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    return np.clip((src - 128) * params["contrast"] + 128 + params["brightness"], 0, 255)


def _ms(fn, repeat: int) -> float:
    fn()  # warm-up
    t0 = time.process_time()
    for _ in range(repeat):
        fn()
    return 1000 * (time.process_time() - t0) / repeat


def _psnr(a, b) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def run(size: int = 384, repeat: int = 40) -> list[dict]:
    """One row per step: ``name``, ``ours_ms``, ``reference_ms``, ``ratio``, ``equal``."""
    from skimage import data

    from fusion.cascade.blend import _color_jitter
    from fusion.cascade.codec import h264_roundtrip
    from pipelines.editing import changed_mask
    from pipelines.faces import FaceAligner
    from pipelines.synthesis import (alpha_blend, deformed_hull, draw_hull_params,
                                     draw_source_params, face_width, sbi_source)

    face = FaceAligner(size=size).process(data.astronaut())
    crop, lm = face.crop, face.landmarks
    rng = np.random.default_rng(0)
    params = draw_source_params(rng, 0.5, face_width(lm))
    params = {**params, "frequency": "none", "shift_px": np.zeros(2), "scale": 1.0}
    region = deformed_hull(lm, crop.shape, draw_hull_params(rng, 0.5, face_width(lm)))
    alpha = cv2.GaussianBlur(region.astype(np.float32), (0, 0), 0.02 * face_width(lm))
    source = sbi_source(crop, lm, params)
    edited = alpha_blend(crop, source, alpha)

    def ours_tone():
        return sbi_source(crop, lm, params)

    def reference_tone():  # with the identity warp and rounding sbi_source ends with
        src = reference_source_tone(crop, params)
        m = np.array([[1.0, 0, 0], [0, 1.0, 0]])
        src = cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT_101)
        return np.clip(np.rint(src), 0, 255).astype(np.uint8)

    steps = [
        ("changed mask", lambda: changed_mask(crop, edited),
         lambda: reference_changed_mask(crop, edited)),
        ("alpha blend", lambda: alpha_blend(crop, source, alpha),
         lambda: reference_alpha_blend(crop, source, alpha)),
        ("colour jitter", lambda: _color_jitter(crop, np.random.default_rng(1)),
         lambda: reference_color_jitter(crop, np.random.default_rng(1))),
        ("SBI source tone (HSV, contrast)", ours_tone, reference_tone),
    ]
    rows = []
    for name, ours, reference in steps:
        equal = bool(np.array_equal(ours(), reference()))
        if not equal:
            raise AssertionError(f"bench_pixels: {name} differs from its reference")
        o, r = _ms(ours, repeat), _ms(reference, repeat)
        rows.append({"name": name, "ours_ms": o, "reference_ms": r, "ratio": r / o,
                     "equal": equal})
    simd = lambda: h264_roundtrip(crop, 30, simd=True)  # noqa: E731
    plain = lambda: h264_roundtrip(crop, 30, simd=False)  # noqa: E731
    o, r = _ms(simd, max(4, repeat // 4)), _ms(plain, max(4, repeat // 4))
    rows.append({"name": "H.264 round trip, CRF 30 (SIMD vs asm=0)", "ours_ms": o,
                 "reference_ms": r, "ratio": r / o, "equal": bool(np.array_equal(simd(), plain())),
                 "psnr_db": (_psnr(simd(), crop), _psnr(plain(), crop))})
    return rows


def main(argv=None) -> int:
    p = CLIParser(prog="python -m fusion.cascade.bench_pixels", description=__doc__)
    p.add_argument("--size", type=at_least(32), default=384, help="crop side (default 384)")
    p.add_argument("--repeat", type=at_least(1), default=40, help="calls timed per step (default 40)")
    args = p.parse_args(argv)
    rows = run(args.size, args.repeat)
    print(f"self-blend and augmentation steps on one {args.size} px face, CPU ms per call, "
          "one thread")
    for r in rows:
        same = "bit-identical" if r["equal"] else (
            "differs: PSNR vs input {:.2f} / {:.2f} dB".format(*r["psnr_db"]))
        print(f"  {r['name']:<42} ours {r['ours_ms']:7.2f}  reference {r['reference_ms']:7.2f}"
              f"  {r['ratio']:5.1f}x  ({same})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
