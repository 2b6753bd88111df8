"""Tests of extract/texture.py: LBP codes identical to skimage, HOG and GLCM equal to
skimage, and the extractor contract (shapes, dtypes, finite, batch == items, determinism)."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.feature import graycomatrix, graycoprops, hog, local_binary_pattern

from extract.registry import FaceBatch
from extract.texture import (GLCM_PROPERTIES, GLCMExtractor, HOGExtractor, LBPExtractor,
                             glcm_batch, glcm_properties, gray_uint8, hog_batch, lbp_uniform,
                             quantize_gray)


@pytest.fixture(scope="module")
def random_gray():
    rng = np.random.default_rng(0)
    # few grey levels: many exact ties between neighbours and centres
    return np.concatenate([rng.integers(0, 4, (2, 40, 52)),
                           rng.integers(0, 256, (2, 40, 52))]).astype(np.uint8)


def test_gray_uint8_is_opencv_gray(faces):
    import cv2
    gray = gray_uint8(faces)
    for i in range(len(faces)):
        np.testing.assert_array_equal(gray[i], cv2.cvtColor(faces.images[i], cv2.COLOR_RGB2GRAY))


@pytest.mark.parametrize("P,R", [(8, 1), (16, 2), (24, 3), (4, 1.5)])
def test_lbp_codes_identical_to_skimage(faces, random_gray, P, R):
    for gray in (gray_uint8(faces)[:3], random_gray):
        ours = lbp_uniform(gray, P, R)
        for i, image in enumerate(gray):
            ref = local_binary_pattern(image, P, R, method="uniform")
            np.testing.assert_array_equal(ours[i], ref)


def test_lbp_hand_values():
    flat = np.full((5, 5), 7, np.uint8)
    assert (lbp_uniform(flat, 8, 1)[1:-1, 1:-1] == 8).all()  # all neighbours tie: >= centre
    spot = flat.copy()
    spot[2, 2] = 9  # centre brighter than all neighbours: no bit set
    assert lbp_uniform(spot, 8, 1)[2, 2] == 0
    with pytest.raises(ValueError):
        lbp_uniform(np.zeros((2, 2, 2, 2)), 8, 1)


def test_lbp_extractor_histograms(faces):
    ex = LBPExtractor()
    out = ex.extract(faces)
    spec = ex.outputs(faces.images.shape[1])
    vec = out["vector"]
    assert vec.shape == (len(faces),) + spec["vector"].shape
    assert len(spec["vector"].columns) == vec.shape[1]
    # whole-face histograms sum to 1 per scale, each grid cell to 1
    np.testing.assert_allclose(vec[:, :10].sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(vec[:, 10:28].sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(vec[:, 28:54].sum(1), 1, rtol=1e-5)
    cells = vec[:, 54:].reshape(len(faces), 16, 10)
    np.testing.assert_allclose(cells.sum(2), 1, rtol=1e-5)
    # the histogram is the one of skimage's codes
    gray = gray_uint8(faces)
    ref = local_binary_pattern(gray[0], 24, 3, method="uniform")
    np.testing.assert_allclose(vec[0, 28:54], np.bincount(ref.astype(int).ravel(), minlength=26)
                               / ref.size, rtol=1e-6)
    np.testing.assert_array_equal(out["map"][..., 0],
                                  lbp_uniform(gray, 8, 1))


def test_hog_matches_skimage(faces, random_gray):
    for gray, params in ((gray_uint8(faces)[:3], (9, (16, 16), (2, 2))),
                         (gray_uint8(faces)[:2], (6, (8, 12), (3, 2))),
                         (random_gray, (9, (8, 8), (2, 2)))):
        assert gray.dtype == np.uint8
        tables = hog_batch(gray, *params)                     # uint8: lookup tables
        direct = hog_batch(gray.astype(np.float64), *params)  # float: per-pixel arctan2
        np.testing.assert_allclose(tables, direct, rtol=1e-12, atol=1e-15)
        for i, image in enumerate(gray):
            ref = hog(image.astype(np.float64), orientations=params[0],
                      pixels_per_cell=params[1], cells_per_block=params[2],
                      block_norm="L2-Hys", feature_vector=True)
            np.testing.assert_allclose(tables[i], ref, atol=1e-5)


@pytest.mark.parametrize("levels", [8, 32, 256])
def test_glcm_matches_skimage(faces, levels):
    distances = (1, 2, 4)
    angles = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
    q = quantize_gray(gray_uint8(faces)[:2], levels)
    P = glcm_batch(q, distances, angles, levels)
    props = glcm_properties(P)
    for i, image in enumerate(q):
        ref = graycomatrix(image.astype(np.uint8), distances, angles, levels=levels,
                           symmetric=True, normed=True)
        np.testing.assert_allclose(P[i], ref.transpose(2, 3, 0, 1), atol=1e-12)
        for prop in GLCM_PROPERTIES:
            if prop == "entropy":
                p = ref.transpose(2, 3, 0, 1)
                expected = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0),
                                   axis=(2, 3))
            else:
                expected = graycoprops(ref, prop)
            np.testing.assert_allclose(props[prop][i], expected, rtol=1e-9, atol=1e-12,
                                       err_msg=prop)


def test_glcm_hand_values():
    stripes = np.tile(np.array([0, 1], np.uint8), (1, 4, 2))  # columns alternate 0, 1
    P = glcm_batch(stripes, (1,), (0.0, np.pi / 2), 2)
    np.testing.assert_allclose(P[0, 0, 0], [[0, 0.5], [0.5, 0]])  # horizontal: always 0-1
    np.testing.assert_allclose(P[0, 0, 1], [[0.5, 0], [0, 0.5]])  # vertical: always equal
    props = glcm_properties(P)
    np.testing.assert_allclose(props["contrast"][0, 0], [1, 0])
    np.testing.assert_allclose(props["entropy"][0, 0], [np.log(2), np.log(2)])
    with pytest.raises(ValueError):
        quantize_gray(stripes, 1)


def test_unknown_parameter_is_refused():
    from base.errors import UsageError
    with pytest.raises(UsageError):
        LBPExtractor(radius=3)


@pytest.mark.parametrize("cls", [LBPExtractor, HOGExtractor, GLCMExtractor])
def test_empty_and_tiny_batches_do_not_raise(cls):
    ex = cls()
    empty = ex.extract(FaceBatch(np.zeros((0, 64, 64, 3), np.uint8)))
    assert empty["vector"].shape == (0,) + ex.outputs(64)["vector"].shape
    tiny = ex.extract(FaceBatch(np.full((2, 8, 8, 3), 50, np.uint8)))
    assert tiny["vector"].shape == (2,) + ex.outputs(8)["vector"].shape
    if cls is HOGExtractor:  # no 2 x 2 block of 16 px cells fits: invalid, not an error
        assert not tiny["valid"].any()
    else:
        assert tiny["valid"].all() and np.isfinite(tiny["vector"]).all()
