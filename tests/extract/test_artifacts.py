"""Tests of extract/artifacts.py (warping, blending)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from extract.artifacts import (BlendingBoundaryExtractor, HullMorphology,
                               WarpingArtifactExtractor, laplacian, masked_mean, masked_var)
from extract.geometry import landmark_hull_masks
from extract.registry import FaceBatch
from tests.extract.test_basic import check_contract


def edited(batch: FaceBatch, edit) -> FaceBatch:
    """Each face with ``edit(image)`` pasted back inside its landmark hull."""
    hull = landmark_hull_masks(batch.landmarks, batch.images.shape[1:3])
    images = batch.images.copy()
    for i in range(len(images)):
        images[i][hull[i]] = edit(batch.images[i])[hull[i]]
    return FaceBatch(images, batch.landmarks)


def test_laplacian_hand_computed():
    g = np.zeros((3, 3), np.float32)
    g[1, 1] = 1
    np.testing.assert_array_equal(laplacian(g), [[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    ramp = np.tile(np.arange(5, dtype=np.float32), (5, 1))
    assert (laplacian(ramp)[:, 1:-1] == 0).all()      # linear ramp: no curvature


def test_masked_statistics_and_morphology():
    values = np.arange(8, dtype=np.float32).reshape(2, 4)
    mask = np.array([[1, 1, 0, 0], [0, 0, 0, 1]], np.uint8)  # 0, 1, 7
    assert masked_var(values, mask) == pytest.approx(np.var([0, 1, 7]), rel=1e-12)
    np.testing.assert_allclose(masked_mean(np.dstack([values, 2 * values]), mask),
                               [8 / 3, 16 / 3], rtol=1e-12)
    assert np.isnan(masked_var(values, np.zeros_like(mask)))
    assert np.isnan(masked_mean(values, np.zeros_like(mask))).all()
    dot = np.zeros((7, 7), np.uint8)
    dot[3, 3] = 1
    shapes = HullMorphology(dot)
    assert shapes(1, True).sum() == 5      # a radius-1 disc is the 3x3 cross
    assert HullMorphology(shapes(1, True))(1, False).sum() == 1
    assert shapes(1, True) is shapes(1, True)           # each radius computed once
    assert (shapes(0, False) == dot).all()


def test_hull_morphology_equals_whole_crop_filtering():
    """Filtering only the hull's (grown) bounding box gives OpenCV's whole-crop result,
    also for hulls cut by the crop border and for an empty mask."""
    rng = np.random.default_rng(0)
    for trial in range(60):
        h, w = rng.integers(20, 120, 2)
        mask = np.zeros((h, w), np.uint8)
        if trial % 7:
            pts = rng.integers(-10, max(h, w) + 10, (rng.integers(3, 9), 2)).astype(np.int32)
            cv2.fillConvexPoly(mask, cv2.convexHull(pts), 1)
        shapes = HullMorphology(mask)
        for radius in (1, 6, 20):
            disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
            for dilate in (True, False):
                whole = (cv2.dilate if dilate else cv2.erode)(mask, disc, borderValue=0)
                np.testing.assert_array_equal(shapes(radius, dilate), whole)


def test_blurred_inner_face_lowers_sharpness_ratio(real_face_batch):
    blurred = edited(real_face_batch, lambda im: cv2.GaussianBlur(im, (0, 0), 2.0))
    ext = WarpingArtifactExtractor()
    before, after = ext.extract(real_face_batch), ext.extract(blurred)
    assert before["valid"].all() and after["valid"].all()
    for col in (2, 3, 4):
        assert (after["vector"][:, col] < before["vector"][:, col] - 0.3).all(), col
    np.testing.assert_allclose(after["vector"][:, 1], before["vector"][:, 1], rtol=0.2)


def test_colour_shifted_paste_raises_boundary_colour_difference(real_face_batch):
    def tint(im):
        return np.clip(im.astype(np.int16) + [30, 0, -30], 0, 255).astype(np.uint8)
    pasted = edited(real_face_batch, tint)
    ext = BlendingBoundaryExtractor()
    before, after = ext.extract(real_face_batch), ext.extract(pasted)
    assert before["valid"].all() and after["valid"].all()
    assert (after["vector"][:, 5] > before["vector"][:, 5] + 5).all()       # delta_ab
    assert (after["vector"][:, 6] > before["vector"][:, 6]).mean() >= 0.75  # delta_E


def test_hard_paste_raises_boundary_gradient():
    rng = np.random.default_rng(1)
    image = np.full((1, 128, 128, 3), 120, np.uint8) + rng.integers(0, 5, (1, 128, 128, 3),
                                                                     dtype=np.uint8)
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    lm = np.stack([64 + 30 * np.cos(t), 64 + 35 * np.sin(t)], -1)[None].astype(np.float32)
    plain = FaceBatch(image, lm)
    pasted = edited(plain, lambda im: im // 2)
    ext = BlendingBoundaryExtractor()
    a, b = ext.extract(plain)["vector"][0], ext.extract(pasted)["vector"][0]
    assert b[3] > a[3] + 1                    # gradient in the band vs inside/outside
    assert b[4] < a[4] - 10                   # darker just inside the boundary


def test_nan_landmarks_are_invalid(real_face_batch):
    b = real_face_batch.subset(slice(0, 2))
    lm = b.landmarks.copy()
    lm[0, 5] = np.nan
    for ext in (WarpingArtifactExtractor(), BlendingBoundaryExtractor()):
        out = ext.extract(FaceBatch(b.images, lm))
        np.testing.assert_array_equal(out["valid"], [False, True])
        assert np.isnan(out["vector"][0]).all()


def test_warping_contract(real_face_batch):
    assert check_contract(WarpingArtifactExtractor(), real_face_batch)["valid"].all()
    assert check_contract(WarpingArtifactExtractor(sigmas=(1.5,)), real_face_batch)[
        "vector"].shape[1] == 4


def test_blending_contract(real_face_batch):
    assert check_contract(BlendingBoundaryExtractor(), real_face_batch)["valid"].all()
