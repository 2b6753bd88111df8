"""Tests of extract/color.py: conversions and moments against skimage.color / scipy.stats."""
from __future__ import annotations

import numpy as np
import scipy.stats
from skimage import color as skcolor

from extract.color import COLOR_SPACES, ColorExtractor, color_spaces, standardized_moments
from extract.registry import FaceBatch


REFERENCE = {"rgb": lambda x: x / 255.0, "hsv": skcolor.rgb2hsv, "ycbcr": skcolor.rgb2ycbcr,
             "lab": skcolor.rgb2lab}


def test_color_spaces_match_skimage(faces):
    spaces = color_spaces(faces.images[:3])
    rng = np.random.default_rng(0)
    rand = rng.integers(0, 256, (1, 32, 32, 3)).astype(np.uint8)
    rand_spaces = color_spaces(rand)
    for name, convert in REFERENCE.items():
        scale = {"rgb": 1, "hsv": 1, "ycbcr": 255, "lab": 100}[name]
        for ours, images in ((spaces[name], faces.images[:3]), (rand_spaces[name], rand)):
            ref = np.stack([convert(x) for x in images])
            np.testing.assert_allclose(ours, ref, atol=2e-6 * scale + 2e-5, err_msg=name)


def test_standardized_moments_match_scipy():
    rng = np.random.default_rng(2)
    x = rng.gamma(2.0, size=(3, 500, 2))
    for dtype, rtol in ((np.float64, 1e-10), (np.float32, 1e-4)):
        mean, std, skew, kurt = standardized_moments(x.astype(dtype), axis=1)
        np.testing.assert_allclose(mean, x.mean(1), rtol=rtol)
        np.testing.assert_allclose(std, x.std(1), rtol=rtol)
        np.testing.assert_allclose(skew, scipy.stats.skew(x, axis=1), rtol=rtol)
        np.testing.assert_allclose(kurt, scipy.stats.kurtosis(x, axis=1), rtol=rtol)
    _, std, skew, kurt = standardized_moments(np.full((2, 10), 3.0))
    assert (std == 0).all() and (skew == 0).all() and (kurt == 0).all()


def test_color_vector_matches_skimage_and_scipy(faces):
    ex = ColorExtractor()
    vec = ex.extract(faces)["vector"].astype(np.float64)
    columns = ex.outputs(faces.images.shape[1])["vector"].columns
    for i in (0, len(faces) - 1):
        expected = []
        for name in COLOR_SPACES:
            pixels = REFERENCE[name](faces.images[i]).reshape(-1, 3)
            for c in range(3):
                v = pixels[:, c]
                expected += [v.mean(), v.std(), scipy.stats.skew(v), scipy.stats.kurtosis(v)]
        expected = np.array(expected)
        np.testing.assert_allclose(vec[i, :48], expected, rtol=1e-3, atol=1e-5)
        rgb = faces.images[i] / 255.0
        dx = rgb[:, 1:, 1] - rgb[:, :-1, 1]
        dy = rgb[1:, :, 1] - rgb[:-1, :, 1]
        at = columns.index("color_grad_G_h_meanabs")
        np.testing.assert_allclose(vec[i, at:at + 4],
                                   [np.abs(dx).mean(), dx.std(), np.abs(dy).mean(), dy.std()],
                                   rtol=1e-4)
    assert columns[0] == "color_rgb_R_mean" and columns[-1] == "color_grad_B_v_std"


def test_constant_image_is_finite():
    out = ColorExtractor().extract(FaceBatch(np.full((2, 16, 16, 3), 77, np.uint8)))
    assert np.isfinite(out["vector"]).all() and out["valid"].all()


def test_contract(faces):
    ex = ColorExtractor()
    spec = ex.outputs(faces.images.shape[1])["vector"]
    out = ex.extract(faces)
    assert out["vector"].shape == (len(faces),) + spec.shape
    assert out["vector"].dtype == np.float32 and np.isfinite(out["vector"]).all()
    assert len(set(spec.columns)) == spec.shape[0]
    np.testing.assert_array_equal(ex.extract(faces)["vector"], out["vector"])
    for i in (0, len(faces) - 1):
        np.testing.assert_array_equal(ex.extract(faces.subset(slice(i, i + 1)))["vector"][0],
                                      out["vector"][i])
