"""Video-like copies of a folder of images: each downscaled and passed through H.264.

::

    python scripts/video_like_copies.py SRC OUT [--seed 0] [--long-side 160,360] [--crf 23,40]

Mirrors every image under ``SRC`` to the same relative path under ``OUT`` (as PNG): the
image is resized (INTER_AREA) so that its longer side is a uniform random integer in
``--long-side`` and round-tripped through libx264 at a uniform integer CRF in ``--crf``
(:func:`fusion.cascade.codec.h264_roundtrip`; FF++ c23 is CRF 23, c40 CRF 40). Each file's
draws come from ``default_rng([seed, crc32(relative path)])``: a rerun writes the same bytes,
and a file already written is kept, so a killed run resumes.

Used to give a real-vs-generated training set the same video history on both sides: when
generated faces are clean photos and the reals include compressed video frames, a head
learns "compressed = real"; copies of both classes at video quality take that cue away.
The copy keeps its file's stem, so a ``folder`` data set puts it in the split of its
original (``crc32(stem)``).
"""
from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def video_like(image: np.ndarray, rng: np.random.Generator, long_side=(160, 360),
               crf=(23, 40)) -> np.ndarray:
    """One RGB uint8 image downscaled to a random longer side and H.264 round-tripped."""
    from fusion.cascade.codec import h264_roundtrip
    h, w = image.shape[:2]
    side = int(rng.integers(long_side[0], long_side[1] + 1))
    q = int(rng.integers(crf[0], crf[1] + 1))
    if max(h, w) > side:
        f = side / max(h, w)
        image = cv2.resize(image, (max(2, round(w * f)), max(2, round(h * f))),
                           interpolation=cv2.INTER_AREA)
    return h264_roundtrip(image, q, simd=True)


def _pair(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition(",")
    return int(lo), int(hi or lo)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/video_like_copies.py", description=__doc__.split("\n\n")[0])
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--long-side", type=_pair, default=(160, 360), help="min,max longer side (px)")
    p.add_argument("--crf", type=_pair, default=(23, 40), help="min,max H.264 CRF")
    args = p.parse_args(argv)
    src, out = Path(args.src), Path(args.out)
    if not src.is_dir():
        print(f"{p.prog}: {src}: no such folder", file=sys.stderr)
        return 2
    files = sorted(f for f in src.rglob("*") if f.suffix.lower() in IMAGE_EXTS and f.is_file())
    written = unreadable = 0
    for f in files:
        rel = f.relative_to(src)
        target = (out / rel).with_suffix(".png")
        if target.is_file():
            continue
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if bgr is None:
            print(f"{p.prog}: {f}: not a readable image, skipped", file=sys.stderr)
            unreadable += 1
            continue
        rng = np.random.default_rng([args.seed, zlib.crc32(rel.as_posix().encode())])
        copy = video_like(bgr[..., ::-1], rng, args.long_side, args.crf)
        target.parent.mkdir(parents=True, exist_ok=True)
        ok, png = cv2.imencode(".png", np.ascontiguousarray(copy[..., ::-1]))
        tmp = target.with_suffix(".part")  # not an image name: a killed run leaves no half file to read
        tmp.write_bytes(png.tobytes())
        tmp.replace(target)
        written += 1
    print(f"{written} copies written, {len(files) - written - unreadable} kept from an earlier run, "
          f"{unreadable} unreadable -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
