"""Face-part regions and local self-blends (pipelines/face_parts.py)."""
import cv2
import numpy as np
import pytest

from pipelines.face_parts import (BLEND_KINDS, BLEND_PARTS, VERDICT_PARTS, blend_reach, part_blend,
                                  part_mask, part_means, parts_changed, verdict_regions,
                                  verdict_regions_batch, verdict_text)
from pipelines.synthesis import face_hull_mask
from tests.face_fixtures import load_aligned_faces


@pytest.fixture(scope="module")
def faces():
    return load_aligned_faces(3, 128)


def _kind(name: str) -> str:
    return name.split(":")[0] if ":" in name else ("cheek" if name.startswith("cheek") else name)


def test_part_blend_mask_is_exactly_the_changed_pixels(faces):
    for i in range(len(faces)):
        for k, kind in enumerate(BLEND_KINDS):
            crop = faces.images[i]
            edited, mask = part_blend(crop, faces.landmarks[i], np.random.default_rng(10 * i + k),
                                      difficulty=float(k % 3) / 2, part=kind)
            assert edited.dtype == np.uint8 and mask.dtype == np.uint8
            np.testing.assert_array_equal(mask.astype(bool), np.any(edited != crop, axis=-1))
            assert mask.any()


def test_part_blend_stays_in_its_part_grown_by_the_stated_deformation(faces):
    for i in range(len(faces)):
        lm = faces.landmarks[i]
        crop = faces.images[i]
        reach = blend_reach(lm)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * int(np.ceil(reach)) + 1,) * 2)
        hull = face_hull_mask(lm, crop.shape).astype(bool)
        for seed in range(4):
            for kind in ("eyes", "brows", "nose", "mouth", "cheek", "jaw", "forehead", "union"):
                info = {}
                _, mask = part_blend(crop, lm, np.random.default_rng(seed), difficulty=seed / 3,
                                     part=kind, info=info)
                names = info["part"].split(":")[-1].split("+")
                region = np.zeros(crop.shape[:2], np.uint8)
                for name in names:
                    region |= part_mask(name, lm, crop.shape)
                grown = cv2.dilate(region, kernel).astype(bool)
                assert not (mask.astype(bool) & ~grown).any(), (kind, seed)
                assert (mask.astype(bool) & region.astype(bool)).any()
                if kind not in ("forehead", "union"):
                    # a local edit: far smaller than the whole face
                    assert mask.sum() < 0.8 * hull.sum(), (kind, mask.sum(), hull.sum())


def test_part_blends_are_deterministic_by_seed(faces):
    crop, lm = faces.images[0], faces.landmarks[0]
    a = part_blend(crop, lm, np.random.default_rng(7), 0.3)
    b = part_blend(crop, lm, np.random.default_rng(7), 0.3)
    c = part_blend(crop, lm, np.random.default_rng(8), 0.3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_every_part_is_drawn(faces):
    crop, lm = faces.images[1], faces.landmarks[1]
    kinds, singles = {}, set()
    for seed in range(200):
        info = {}
        part_blend(crop, lm, np.random.default_rng(seed), 0.5, info=info)
        kinds[_kind(info["part"])] = kinds.get(_kind(info["part"]), 0) + 1
        singles.update(info["part"].split(":")[-1].split("+"))
    assert set(kinds) == set(BLEND_KINDS)
    assert min(kinds.values()) >= 8  # each of 9 kinds about 200 / 9 = 22 times
    assert set(BLEND_PARTS) <= singles  # both cheeks, alone or in unions


def test_verdict_regions_are_disjoint_and_named(faces):
    lm = faces.landmarks[0]
    regions = verdict_regions(lm, (128, 128))
    assert regions.shape == (len(VERDICT_PARTS), 128, 128)
    assert regions.sum(0).max() == 1  # disjoint
    assert all(r.any() for r in regions)
    # the mouth's region is where the mouth landmarks are; outside lies outside the hull
    mouth = regions[VERDICT_PARTS.index("mouth")]
    x, y = np.round(lm[62]).astype(int)
    assert mouth[y, x]
    assert not (regions[-1] & face_hull_mask(lm, (128, 128)).astype(bool)).any()
    # batch version: rescaled landmarks, cached, NaN landmarks give empty regions
    batch = verdict_regions_batch(np.stack([lm, np.full((68, 2), np.nan)]), 128, 64)
    np.testing.assert_array_equal(batch[0], verdict_regions(lm * 0.5, (64, 64)))
    assert not batch[1].any()


def test_part_means_changed_and_verdict_text_by_hand():
    regions = np.zeros((1, len(VERDICT_PARTS), 4, 4), bool)
    regions[0, 0, 0] = True            # eyes: row 0 (4 px)
    regions[0, 3, 1:3] = True          # mouth: rows 1-2 (8 px)
    probs = np.zeros((1, 4, 4))
    probs[0, 1] = 1.0                  # half the mouth region at 1
    probs[0, 0, 0] = 0.4               # one eye pixel at 0.4
    truth = np.zeros((1, 4, 4))
    truth[0, 1, :1] = 1                # 1 of 8 mouth pixels (< 20 %)
    truth[0, 0] = 1                    # all eyes
    means = part_means(probs, regions)
    assert means[0, 3] == pytest.approx(0.5) and means[0, 0] == pytest.approx(0.1)
    assert np.isnan(means[0, 1])
    changed = parts_changed(truth, regions)
    assert changed[0, 0] == 1 and changed[0, 3] == 0 and np.isnan(changed[0, 1])
    assert verdict_text(means[0], top=2) == "mouth 0.50, eyes 0.10"


def test_unknown_part_is_refused(faces):
    with pytest.raises(ValueError, match="unknown part blend"):
        part_blend(faces.images[0], faces.landmarks[0], 0, part="ear")
    with pytest.raises(ValueError, match="unknown face part"):
        part_mask("ear", faces.landmarks[0], (128, 128))
