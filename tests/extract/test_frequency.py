"""Tests of extract/frequency.py (dct, fft, npr): hand cases, scipy references, contract."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import scipy.stats

from extract.frequency import (ZERO_COEFFICIENT, DCTExtractor, FFTExtractor, NPRExtractor,
                               azimuthal_average, block_dct, histogram_moments, log_dct_map,
                               npr_residual, radial_distance)
from extract.registry import FaceBatch


def _batch(images) -> FaceBatch:
    return FaceBatch(np.ascontiguousarray(images, np.uint8))


def test_block_dct_equals_scipy_per_block(faces):
    gray = faces.gray[:2].astype(np.float64)
    coefs = block_dct(gray, 8)
    tiles_per_row = gray.shape[2] // 8
    for t in (0, 5, tiles_per_row + 3, coefs.shape[1] - 1):
        r, c = divmod(t, tiles_per_row)
        ref = scipy.fft.dctn(gray[1, r * 8:r * 8 + 8, c * 8:c * 8 + 8], norm="ortho")
        np.testing.assert_allclose(coefs[1, t], ref.ravel(), atol=1e-9)


def test_dct_constant_image_has_only_dc():
    image = np.full((1, 32, 40, 3), 100, np.uint8)
    gray = _batch(image).gray
    coefs = block_dct(gray, 8)
    np.testing.assert_allclose(coefs[..., 0], 100 * 8, rtol=1e-6)  # ortho DC = 8 x mean
    np.testing.assert_allclose(coefs[..., 1:], 0, atol=1e-9)
    full = log_dct_map(gray)
    assert full[0, 0, 0] == pytest.approx(np.log1p(100 * np.sqrt(32 * 40)), rel=1e-5)
    assert np.abs(full[0].ravel()[1:]).max() < 1e-4
    out = DCTExtractor().extract(_batch(image))
    vec = out["vector"][0]
    np.testing.assert_allclose(vec[:126], 0, atol=1e-6)  # beta and std of every AC
    hist = vec[126:].reshape(63, 8)
    np.testing.assert_allclose(hist[:, 4], 1)  # all coefficients in the bin just above 0


def test_dct_vector_matches_definition(faces):
    ex = DCTExtractor()
    vec = ex.extract(faces.subset(slice(0, 1)))["vector"][0]
    ac = block_dct(faces.gray[:1].astype(np.float64))[0, :, 1:]
    np.testing.assert_allclose(vec[:63], np.abs(ac).mean(0), rtol=1e-5)
    np.testing.assert_allclose(vec[63:126], ac.std(0), rtol=1e-5)
    # coefficients of flat tiles are 0 up to rounding: they count as 0 (bin [0, 8))
    flat = np.abs(ac[:, 7]) < ZERO_COEFFICIENT
    assert flat.any()
    column = np.where(flat, 0.0, ac[:, 7])
    counts, _ = np.histogram(np.clip(column, -32, 32 - 1e-9), bins=8, range=(-32, 32))
    np.testing.assert_allclose(vec[126 + 7 * 8:126 + 8 * 8], counts / len(ac), atol=1e-7)
    names = ex.outputs(256)["vector"].columns
    assert names[0] == "dct_u0v1_beta" and names[63] == "dct_u0v1_std"


def test_azimuthal_average_of_radial_pattern():
    h = w = 64
    r = radial_distance(h, w)
    values = np.floor(r)[None].repeat(2, 0)  # constant on every ring
    values[1] *= 2
    rings = azimuthal_average(values, 32)
    np.testing.assert_allclose(rings[0], np.arange(32))
    np.testing.assert_allclose(rings[1], 2 * np.arange(32))
    assert r[32, 32] == 0 and r[32, 40] == 8


def test_fft_hand_cases():
    h = w = 64
    x = np.arange(w)
    # a horizontal cosine at 16 cycles: all non-DC energy at radius 16 (> 0.25 * 32)
    wave = 128 + 100 * np.cos(2 * np.pi * 16 * x / w)
    image = np.broadcast_to(wave[None, :, None], (h, w, 3)).round()
    ex = FFTExtractor()
    out = ex.extract(_batch(image[None]))
    vec = out["vector"][0]
    spec = out["map"][0, :, :, 0]
    assert np.unravel_index(np.argmax(spec * (radial_distance(h, w) > 0)), spec.shape) in (
        (32, 16), (32, 48))
    hf = vec[-3:]
    assert hf[0] == pytest.approx(1, abs=1e-6) and hf[1] == pytest.approx(0, abs=1e-6)
    assert ex.outputs(64)["vector"].shape == (32 + 3,)
    # a constant image has no energy outside DC: ratios undefined -> NaN, valid False
    flat = ex.extract(_batch(np.full((1, 16, 16, 3), 9)))
    assert not flat["valid"][0] and np.isnan(flat["vector"]).all()


def test_fft_ratios_match_direct_sums(faces):
    out = FFTExtractor().extract(faces.subset(slice(0, 2)))
    gray = faces.gray[1].astype(np.float64)
    energy = np.abs(np.fft.fftshift(np.fft.fft2(gray))) ** 2
    r = radial_distance(*gray.shape)
    expected = [energy[r > f * 128].sum() / energy[r > 0].sum() for f in (0.25, 0.5, 0.75)]
    np.testing.assert_allclose(out["vector"][1, -3:], expected, rtol=1e-4)
    rings = np.log1p(np.sqrt(energy))
    np.testing.assert_allclose(out["vector"][1, 10], rings[(r >= 10) & (r < 11)].mean(),
                               rtol=1e-4)


def test_npr_residual_definition():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (2, 7, 6, 3)).astype(np.uint8)
    res = npr_residual(x)
    for i, j in ((0, 0), (1, 1), (3, 2), (6, 5), (6, 4)):
        np.testing.assert_array_equal(res[:, i, j], x[:, i, j].astype(np.float32)
                                      - x[:, i - i % 2, j - j % 2])


def test_npr_stats_match_scipy(faces):
    out = NPRExtractor().extract(faces)
    vec = out["vector"].reshape(len(faces), 3, 4)
    for i in (0, len(faces) - 1):
        res = out["map"][i].astype(np.float64)
        keep = np.ones(res.shape[:2], bool)
        keep[::2, ::2] = False
        for c in range(3):
            v = res[..., c][keep]
            ref = [np.abs(v).mean(), v.std(), scipy.stats.skew(v), scipy.stats.kurtosis(v)]
            # exact in float64 from the integer histogram: only the float32 output rounds
            np.testing.assert_allclose(vec[i, c], ref, rtol=1e-6, atol=1e-7)


def test_histogram_moments_match_scipy_and_hand_values():
    rng = np.random.default_rng(4)
    values = np.arange(-5, 6) / 5.0
    samples = rng.choice(values, size=(3, 500), p=np.linspace(1, 3, 11) / 22)
    counts = np.stack([(s[:, None] == values).sum(0) for s in samples])
    got = histogram_moments(counts, values)
    ref = np.stack([np.abs(samples).mean(1), samples.std(1), scipy.stats.skew(samples, axis=1),
                    scipy.stats.kurtosis(samples, axis=1)], axis=1)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
    # {-1, 1} once each: mean |x| 1, std 1, skew 0, kurtosis 1 - 3 = -2; constant: 0, 0, 0, 0
    np.testing.assert_allclose(histogram_moments(np.array([[1, 0, 1], [0, 4, 0]]),
                                                 np.array([-1.0, 0.0, 1.0])),
                               [[1, 1, 0, -2], [0, 0, 0, 0]], atol=1e-15)


@pytest.mark.parametrize("cls", [DCTExtractor, FFTExtractor, NPRExtractor])
def test_empty_and_tiny_batches_do_not_raise(cls):
    ex = cls()
    empty = ex.extract(_batch(np.zeros((0, 64, 64, 3))))
    assert empty["vector"].shape == (0,) + ex.outputs(64)["vector"].shape
    assert empty["map"].shape == (0, 64, 64) + ex.outputs(64)["map"].shape[-1:]
    rng = np.random.default_rng(3)
    tiny = ex.extract(_batch(rng.integers(0, 256, (2, 4, 4, 3))))
    assert tiny["vector"].shape == (2,) + ex.outputs(4)["vector"].shape
    # an image smaller than one DCT block is invalid (NaN); the others compute
    assert tiny["valid"].all() == (cls is not DCTExtractor)
    assert np.isnan(tiny["vector"][~tiny["valid"]]).all()
