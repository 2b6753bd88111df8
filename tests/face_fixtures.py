"""Real aligned faces for extractor tests: ``load_aligned_faces(n, size) -> FaceBatch``.

Faces come from ../shared/data/faces/real when it is present (the first ``n`` files, in
sorted order, in which a face is found), otherwise from scikit-image's public-domain
astronaut portrait plus flipped and cropped copies of it, so tests run without shared data.
Results are cached per process.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from extract.registry import FaceBatch

_CACHE: dict[tuple[int, int], FaceBatch] = {}
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def _real_faces_dir() -> Path:
    root = Path(__file__).resolve().parents[1]
    shared = Path(os.environ.get("CLMF_SHARED_DATA", root.parent / "shared" / "data"))
    return shared / "faces" / "real"


def _shared_images():
    folder = _real_faces_dir()
    if not folder.is_dir():
        return
    from pipelines.frames import read_image
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in _IMAGE_SUFFIXES:
            try:
                yield path.stem, read_image(path)
            except Exception:  # a damaged test file is skipped, not fatal
                continue


def _astronaut_images():
    """The astronaut, flipped, and square crops at different offsets and scales."""
    from skimage import data
    image = data.astronaut()  # 512 x 512, face near x 180-270, y 80-170
    crops = [(0, 0, 512), (40, 20, 400), (100, 0, 360), (60, 40, 300), (0, 0, 420),
             (120, 30, 260), (20, 10, 460), (90, 50, 320)]
    i = 0
    while True:
        x0, y0, side = crops[(i // 2) % len(crops)]
        variant = image[y0:y0 + side, x0:x0 + side]
        if i % 2:
            variant = variant[:, ::-1]
        yield f"astronaut_{i}", np.ascontiguousarray(variant)
        i += 1


def load_aligned_faces(n: int = 8, size: int = 256) -> FaceBatch:
    """``n`` real aligned faces (``size`` px) with landmarks as an ``extract.registry.FaceBatch``.

    ``video_ids`` are the file stems (``astronaut_<i>`` for the fallback), ``frame_indices``
    zeros, and masks are all-zero with ``mask_valid`` False.
    """
    key = (int(n), int(size))
    if key in _CACHE:
        return _CACHE[key]
    from base.errors import SampleError
    from pipelines.faces import FaceAligner

    aligner = FaceAligner(size=size)
    crops, landmarks, names = [], [], []
    sources = [_shared_images(), _astronaut_images()]
    for source in sources:
        for name, rgb in source or ():
            if len(crops) == n:
                break
            try:
                face = aligner.process(rgb, path=name)
            except SampleError:
                continue
            crops.append(face.crop)
            landmarks.append(face.landmarks)
            names.append(name)
        if len(crops) == n:
            break
    batch = FaceBatch(images=np.stack(crops), landmarks=np.stack(landmarks),
                      video_ids=np.array(names), frame_indices=np.zeros(n, np.int64))
    _CACHE[key] = batch
    return batch
