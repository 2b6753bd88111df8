"""Tests of extract/geometry.py (head_pose, symmetry)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from extract.geometry import (FACE_MODEL_3D, IBUG68_MIRROR, HeadPoseExtractor, SymmetryExtractor,
                              camera_matrix, euler_to_rotation, lbp_codes, mirror_about_columns,
                              rotation_to_euler)
from extract.registry import FaceBatch
from tests.extract.test_basic import check_contract

SIZE = 256


def project_model(pitch, yaw, roll, distance=600.0):
    """The 3-D model seen under a known pose: 68 x 2 crop coordinates."""
    rvec = cv2.Rodrigues(euler_to_rotation(pitch, yaw, roll))[0]
    tvec = np.array([[3.0], [-5.0], [distance]])
    pts, _ = cv2.projectPoints(FACE_MODEL_3D, rvec, tvec, camera_matrix(SIZE, SIZE), None)
    return pts.reshape(68, 2).astype(np.float32)


def test_mirror_index_is_an_involution():
    assert sorted(IBUG68_MIRROR) == list(range(68))
    np.testing.assert_array_equal(IBUG68_MIRROR[IBUG68_MIRROR], np.arange(68))
    # a frontal model is mirror-symmetric up to the model's small asymmetries
    flipped = FACE_MODEL_3D[IBUG68_MIRROR] * [-1, 1, 1]
    assert np.abs(flipped - FACE_MODEL_3D).max() < 5


@pytest.mark.parametrize("angles", [(0, 0, 0), (10, -20, 5), (-15, 30, -8), (5, 45, 12)])
def test_head_pose_recovers_known_rotation(angles):
    lm = project_model(*angles)[None]
    out = HeadPoseExtractor().extract(FaceBatch(np.zeros((1, SIZE, SIZE, 3), np.uint8), lm))
    assert out["valid"][0]
    np.testing.assert_allclose(out["vector"][0, :3], angles, atol=1.0)
    # exact landmarks of one rigid model: central and whole-face poses agree
    assert out["vector"][0, 6] < 0.5
    assert np.abs(out["vector"][0, 3:6]).max() < 0.01


def test_euler_round_trip():
    angles = np.array([12.0, -33.0, 7.5])
    np.testing.assert_allclose(rotation_to_euler(euler_to_rotation(*angles)), angles, atol=1e-9)


def test_head_pose_inconsistency_grows_when_central_face_is_moved():
    lm = project_model(0, 0, 0)
    swapped = project_model(0, 25, 0)     # central face turned, contour kept
    mixed = lm.copy()
    mixed[17:] = swapped[17:] - swapped[17:36].mean(0) + lm[17:36].mean(0)
    out = HeadPoseExtractor().extract(FaceBatch(np.zeros((2, SIZE, SIZE, 3), np.uint8),
                                                np.stack([lm, mixed])))
    assert out["valid"].all()
    assert out["vector"][1, 6] > out["vector"][0, 6] + 5


def test_head_pose_nan_landmarks_are_invalid():
    lm = np.stack([project_model(0, 10, 0), project_model(0, 10, 0)])
    lm[1, 30] = np.nan
    out = HeadPoseExtractor().extract(FaceBatch(np.zeros((2, SIZE, SIZE, 3), np.uint8), lm))
    np.testing.assert_array_equal(out["valid"], [True, False])
    assert np.isnan(out["vector"][1]).all() and np.isfinite(out["vector"][0]).all()


def test_head_pose_collapsed_landmarks_are_invalid(real_face_batch):
    batch = real_face_batch.subset(slice(0, 2))
    landmarks = batch.landmarks.copy()
    landmarks[1] = 128.0                 # every point on the crop centre: no pose to fit
    out = HeadPoseExtractor().extract(FaceBatch(batch.images, landmarks))
    np.testing.assert_array_equal(out["valid"], [True, False])
    assert np.isnan(out["vector"][1]).all() and np.isfinite(out["vector"][0]).all()


def test_head_pose_contract(real_face_batch):
    out = check_contract(HeadPoseExtractor(), real_face_batch)
    assert out["valid"].all()
    assert (np.abs(out["vector"][:, :3]) < 60).all()   # near-frontal aligned crops


def symmetric_face():
    """A random image symmetric about x = 127.5 with symmetric landmarks on that axis."""
    rng = np.random.default_rng(0)
    half = rng.integers(0, 256, (SIZE, SIZE // 2, 3), dtype=np.uint8)
    image = np.concatenate([half, half[:, ::-1]], axis=1)
    lm = project_model(0, 0, 0)
    first = np.flatnonzero(np.arange(68) < IBUG68_MIRROR)      # one point of each pair
    lm[IBUG68_MIRROR[first]] = lm[first] * [-1, 1] + [SIZE - 1, 0]
    lm[IBUG68_MIRROR == np.arange(68), 0] = (SIZE - 1) / 2       # midline points on the axis
    return image, lm


def test_symmetric_image_gives_zero_differences():
    image, lm = symmetric_face()
    out = SymmetryExtractor().extract(FaceBatch(image[None], lm[None]))
    assert out["valid"][0]
    np.testing.assert_allclose(out["vector"][0], 0, atol=1e-4)


def test_asymmetric_image_gives_positive_differences():
    image, lm = symmetric_face()
    broken = image.copy()
    broken[:, :SIZE // 2] = broken[:, :SIZE // 2] // 2      # darken the left half
    lm2 = lm.copy()
    lm2[36:42, 1] += 4                                       # lower one eye
    out = SymmetryExtractor().extract(FaceBatch(np.stack([image, broken]), np.stack([lm, lm2])))
    assert (out["vector"][1] > out["vector"][0] + 1e-3).all()


def test_mirror_about_columns_hand_computed():
    img = np.array([[[0, 1, 2, 3]]], np.float32)           # 1 x 1 x 4
    mirrored, inside = mirror_about_columns(img, np.array([1.5]))
    np.testing.assert_array_equal(mirrored[0, 0], [3, 2, 1, 0])
    np.testing.assert_array_equal(inside[0], [True] * 4)
    mirrored, inside = mirror_about_columns(img, np.array([1.25]))   # source 2.5, 1.5, .5, -.5
    np.testing.assert_allclose(mirrored[0, 0, :3], [2.5, 1.5, 0.5])
    np.testing.assert_array_equal(inside[0], [True, True, True, False])


def test_lbp_codes_hand_computed():
    g = np.array([[[5, 9, 1], [4, 5, 6], [7, 2, 3]]], np.float32)
    # clockwise from top-left: 5 9 1 6 3 2 7 4 >= 5 -> 1 1 0 1 0 0 1 0 (bit 0 first)
    assert lbp_codes(g)[0, 1, 1] == 0b01001011
    assert (lbp_codes(np.full((1, 4, 4), 7.0)) == 255).all()


def test_symmetry_nan_landmarks_are_invalid(real_face_batch):
    batch = real_face_batch.subset(slice(0, 2))
    lm = batch.landmarks.copy()
    lm[1, 0] = np.nan
    out = SymmetryExtractor().extract(FaceBatch(batch.images, lm))
    np.testing.assert_array_equal(out["valid"], [True, False])
    assert np.isnan(out["vector"][1]).all()


def test_symmetry_contract(real_face_batch):
    out = check_contract(SymmetryExtractor(), real_face_batch)
    assert out["valid"].all()
    # a face and its mirror image: identical asymmetry of the landmarks
    b = real_face_batch.subset(slice(0, 1))
    lm = b.landmarks[0].copy()
    lm[:, 0] = SIZE - 1 - lm[:, 0]
    flipped = FaceBatch(b.images[:, :, ::-1].copy(), lm[IBUG68_MIRROR][None])
    again = SymmetryExtractor().extract(flipped)["vector"][0]
    np.testing.assert_allclose(again[3], out["vector"][0, 3], rtol=1e-4)
    np.testing.assert_allclose(again[0], out["vector"][0, 0], rtol=0.05)
