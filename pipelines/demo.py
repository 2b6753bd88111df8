"""The built-in demo data set: real photographs shipped with scikit-image, and local edits.

Nothing is downloaded and nothing outside the installed packages is read. Reals are square
crops of the photographs of real scenes that scikit-image's wheel carries (astronaut,
chelsea, coffee, rocket, the two motorcycle stereo views, and the grey camera, coins and
moon, converted to RGB). Fakes are *other* crops of the same photographs, edited by
``pipelines.editing`` (splice, blend, colour, blur) with an exact mask.

- :data:`CROPS_PER_PHOTO` crops per photograph: the first :data:`REAL_CROPS` are reals,
  the rest become fakes (one edit each, the edits cycling over ``EDITS``), so every photo
  gives both labels: 45 reals and 45 fakes in all.
- Splits are by photograph (no photograph, and no scene, in two splits), see
  :data:`PHOTO_SPLITS`; the donor of a splice/blend comes from the same split.
- A source is ``kind="demo"`` with ``path="skimage:<photo>"`` and ``params`` a tuple of
  ``(key, value)`` pairs: ``crop``, ``edit`` ("" for reals), ``donor`` ("" when unused),
  ``seed``, ``difficulty``; ``dict(source.params)`` reads it.

Example
-------
>>> from pipelines.demo import demo_sources, render_demo_source
>>> sources = demo_sources()
>>> rgb, mask = render_demo_source(sources[0], size=64)
>>> rgb.shape, mask.shape
((64, 64, 3), (64, 64))
"""
from __future__ import annotations

import zlib
from functools import lru_cache

import cv2
import numpy as np

from pipelines.editing import EDITS, NEEDS_DONOR
from pipelines.samples import FAKE, REAL, REAL_METHOD, Source

__all__ = ["PHOTO_SPLITS", "CROPS_PER_PHOTO", "REAL_CROPS", "demo_sources",
           "render_demo_source", "render_demo_crop", "load_photo"]

#: Photograph -> split. The two motorcycle views show one scene and stay together.
PHOTO_SPLITS = {
    "astronaut": "train", "chelsea": "train", "motorcycle_left": "train",
    "motorcycle_right": "train", "coins": "train",
    "coffee": "val", "moon": "val",
    "rocket": "test", "camera": "test",
}
CROPS_PER_PHOTO = 10
REAL_CROPS = 5
DIFFICULTIES = (0.2, 0.5, 0.8)
DATASET = "demo"


def _stable_seed(text: str) -> int:
    # zlib.crc32, not hash(): identical in every process and on every machine.
    return zlib.crc32(text.encode("utf-8")) & 0x7FFFFFFF


def _scene(photo: str) -> str:
    return photo.split("_")[0]


@lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """The skimage photograph ``name`` as H x W x 3 uint8 RGB (read once per process)."""
    if name not in PHOTO_SPLITS:
        raise ValueError(f"unknown demo photo {name!r}; expected one of {sorted(PHOTO_SPLITS)}")
    import skimage.data

    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        image = left if name.endswith("left") else right
    else:
        image = getattr(skimage.data, name)()
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = np.ascontiguousarray(image[..., :3])
    image.setflags(write=False)
    return image


def _crop_box(photo: str, crop: int) -> tuple[int, int, int]:
    """(top, left, side) of square crop ``crop`` of ``photo``: 45-80 % of the short side."""
    h, w = load_photo(photo).shape[:2]
    rng = np.random.default_rng(_stable_seed(f"{photo}/crop{crop}"))
    side = int(round(min(h, w) * rng.uniform(0.45, 0.8)))
    top = int(rng.integers(0, h - side + 1))
    left = int(rng.integers(0, w - side + 1))
    return top, left, side


def render_demo_crop(photo: str, crop: int, size: int = 256) -> np.ndarray:
    """Unedited square crop ``crop`` of ``photo`` resized to ``size`` x ``size`` x 3 uint8."""
    if int(size) < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    top, left, side = _crop_box(photo, int(crop))
    patch = load_photo(photo)[top:top + side, left:left + side]
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
    return cv2.resize(patch, (int(size), int(size)), interpolation=interp)


def demo_sources() -> list[Source]:
    """Every demo source (45 reals, 45 fakes), sorted by split, label and video id."""
    edits = list(EDITS)
    sources = []
    for index, (photo, split) in enumerate(PHOTO_SPLITS.items()):
        donors = [p for p, s in PHOTO_SPLITS.items() if s == split and _scene(p) != _scene(photo)]
        for crop in range(CROPS_PER_PHOTO):
            if crop < REAL_CROPS:
                params = (("crop", crop), ("edit", ""), ("donor", ""), ("seed", 0),
                          ("difficulty", 0.0))
                sources.append(Source(path=f"skimage:{photo}", dataset=DATASET, split=split,
                                      label=REAL, method=REAL_METHOD,
                                      video_id=f"{REAL_METHOD}/{photo}/crop{crop}",
                                      kind="demo", params=params))
                continue
            k = crop - REAL_CROPS
            edit = edits[(index + k) % len(edits)]
            donor = donors[(index + k) % len(donors)] if edit in NEEDS_DONOR else ""
            params = (("crop", crop), ("edit", edit), ("donor", donor),
                      ("seed", _stable_seed(f"{photo}/{crop}/{edit}")),
                      ("difficulty", DIFFICULTIES[(index + k) % len(DIFFICULTIES)]))
            sources.append(Source(path=f"skimage:{photo}", dataset=DATASET, split=split,
                                  label=FAKE, method=edit,
                                  video_id=f"{edit}/{photo}/crop{crop}", kind="demo",
                                  params=params))
    order = {"train": 0, "val": 1, "test": 2}
    return sorted(sources, key=lambda s: (order[s.split], s.label, s.video_id))


def render_demo_source(source: Source, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Render a demo source.

    Parameters
    ----------
    source : Source
        A ``kind="demo"`` source from :func:`demo_sources`.
    size : int
        Output side in pixels.

    Returns
    -------
    rgb : ndarray, size x size x 3, uint8
    mask : ndarray, size x size, uint8 in {0, 1}
        The pixels the edit changed (all zeros for reals).
    """
    if source.kind != "demo" or not source.path.startswith("skimage:"):
        raise ValueError(f"not a demo source: {source.path!r} (kind {source.kind!r})")
    photo = source.path.split(":", 1)[1]
    params = dict(source.params)
    target = render_demo_crop(photo, params["crop"], size)
    edit = params.get("edit", "")
    if not edit:
        return target, np.zeros(target.shape[:2], np.uint8)
    if edit not in EDITS:
        raise ValueError(f"unknown demo edit {edit!r} in {source.video_id}; "
                         f"expected one of {sorted(EDITS)}")
    rng = np.random.default_rng(params["seed"])
    difficulty = params["difficulty"]
    if edit in NEEDS_DONOR:
        donor = render_demo_crop(params["donor"], params["crop"], size)
        return EDITS[edit](target, donor, rng, difficulty)
    return EDITS[edit](target, rng, difficulty)
