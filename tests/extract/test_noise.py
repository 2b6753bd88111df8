"""Tests of extract/noise.py (prnu): hand cases of the wavelet residual and the contract."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from extract.noise import PRNUExtractor, lag1_correlation, wavelet_noise_residual
from extract.registry import FaceBatch


def _smooth(h=256, w=256):
    """A smooth periodic image (the transform extends images periodically)."""
    y, x = np.mgrid[0:h, 0:w]
    return 100 + 40 * np.sin(2 * np.pi * x / w) * np.cos(4 * np.pi * y / h)


def test_constant_image_has_zero_residual():
    residual, energy = wavelet_noise_residual(np.full((2, 64, 64), 120.0), "db4", 3)
    assert np.abs(residual).max() < 1e-9 and np.abs(energy).max() < 1e-18


def test_residual_tracks_small_added_noise():
    rng = np.random.default_rng(0)
    clean = _smooth()[None]
    base = wavelet_noise_residual(clean)[0].std()
    stds = {}
    for sigma in (1.0, 2.0, 3.0, 10.0):
        noisy = clean + rng.normal(0, sigma, clean.shape)
        stds[sigma] = wavelet_noise_residual(noisy)[0].std()
    assert base < 0.25  # the smooth image alone leaves almost nothing
    # noise at or below the denoiser's sigma (3) passes into the residual almost whole...
    for sigma in (1.0, 2.0, 3.0):
        assert stds[sigma] == pytest.approx(sigma, rel=0.15)
    # ...while strong noise counts as signal and is mostly kept out (see the Notes)
    assert stds[10.0] < 3.0


def test_residual_is_image_minus_denoised():
    rng = np.random.default_rng(1)
    image = _smooth(64, 64)[None] + rng.normal(0, 2, (1, 64, 64))
    residual, _ = wavelet_noise_residual(image, "db4", 2, sigma=1e-9)
    # with sigma -> 0 nothing counts as noise except the exact-zero signal estimate
    assert np.abs(residual).max() < 1e-6
    residual, _ = wavelet_noise_residual(image, "db4", 2, sigma=1e9)
    # with sigma -> inf every detail coefficient is noise: residual = image - its LL part
    import pywt
    coeffs = pywt.wavedec2(image, "db4", mode="periodization", level=2, axes=(-2, -1))
    low = pywt.waverec2([coeffs[0]] + [tuple(np.zeros_like(c) for c in d) for d in coeffs[1:]],
                        "db4", mode="periodization", axes=(-2, -1))
    np.testing.assert_allclose(residual, image - low, atol=1e-6)


def test_vector_matches_definition(faces):
    out = PRNUExtractor().extract(faces.subset(slice(0, 2)))
    res = out["map"][1, :, :, 0].astype(np.float64)
    vec = out["vector"][1]
    assert vec[0] == pytest.approx(res.std(), rel=1e-4)
    assert vec[1] == pytest.approx(scipy.stats.kurtosis(res.ravel()), rel=1e-3)
    assert vec[2] == pytest.approx(np.corrcoef(res[:, :-1].ravel(), res[:, 1:].ravel())[0, 1],
                                   abs=1e-4)
    assert vec[3] == pytest.approx(np.corrcoef(res[:-1].ravel(), res[1:].ravel())[0, 1],
                                   abs=1e-4)
    assert lag1_correlation(np.ones((1, 4, 4)), 1)[0] == 0


def test_too_small_is_invalid_not_an_error():
    out = PRNUExtractor().extract(FaceBatch(np.zeros((2, 24, 24, 3), np.uint8)))
    assert not out["valid"].any() and np.isnan(out["vector"]).all()
    assert out["vector"].shape == (2, 16) and out["map"].shape == (2, 24, 24, 1)


def test_contract(faces):
    ex = PRNUExtractor()
    specs = ex.outputs(faces.images.shape[1])
    out = ex.extract(faces)
    assert out["valid"].all()
    for key, spec in specs.items():
        assert out[key].shape == (len(faces),) + spec.shape
        assert out[key].dtype == np.dtype(spec.dtype) and np.isfinite(out[key]).all()
    assert len(set(specs["vector"].columns)) == specs["vector"].shape[0]
    again = ex.extract(faces)
    for key in specs:
        np.testing.assert_array_equal(again[key], out[key])
        for i in (0, len(faces) - 1):
            one = ex.extract(faces.subset(slice(i, i + 1)))[key][0]
            np.testing.assert_allclose(one, out[key][i], rtol=1e-6, atol=1e-6)
