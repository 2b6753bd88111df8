"""The model-side LBP and DCT streams equal the project's extractors (and OpenCV/skimage)."""
import cv2
import numpy as np
import pytest
import torch
from skimage.feature import local_binary_pattern

from extract import create_extractor
from extract.frequency import log_dct_map
from extract.registry import FaceBatch
from extract.texture import lbp_uniform as lbp_numpy
from fusion.cascade.streams import (LBP_CODES, dct_matrix, gray_float, gray_uint8, lbp_uniform,
                                    log_dct, stream_inputs)
from tests.face_fixtures import load_aligned_faces

torch.set_num_threads(1)

#: float32 matrix DCT against scipy's float64 dctn, on log1p(|coef|) values of 0-12.
DCT_TOLERANCE = 2e-3
#: float32 luma from two code paths (torch einsum, numpy matmul). A float32 dot product of
#: length 3 is within gamma_3 ~ 3u of the exact value relative to the sum of the |products|
#: (u = 2^-24), which here is the luma itself (non-negative terms), and an ulp is at least
#: u times the value: each path is within 3 ulps, two paths within 6. Seen here: 2.
GRAY_MAX_ULP = 6


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def faces():
    return load_aligned_faces(4, 128)


def test_gray_equals_opencv_on_every_8bit_colour():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, 512, 512, 3), dtype=np.uint8)
    expected = cv2.cvtColor(image[0], cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(gray_uint8(_tensor(image))[0].numpy(), expected)


def _luma_roundings(images: np.ndarray) -> list[np.ndarray]:
    """Every float32 luma a CPU may legitimately compute for BT.601 weights on 8-bit levels.

    A vector path may add the three products in any order and may fuse a multiply into
    an add (FMA); the exact value rounded once to float32 is one more candidate.
    """
    q = images.astype(np.float32)
    r, g, b = (q[..., c] * np.float32(w) for c, w in enumerate((0.299, 0.587, 0.114)))
    exact = (images.astype(np.float64) @ np.array([0.299, 0.587, 0.114], np.float32)
             .astype(np.float64)).astype(np.float32)
    return [(r + g) + b, r + (g + b), (r + b) + g, exact]


def test_gray_float_equals_facebatch_gray_to_a_stated_ulp_tolerance(faces):
    # torch's einsum and numpy's matmul take different vector paths whose float32 rounding
    # depends on the CPU (3,439 of 65,536 pixels one ulp apart on one Xeon, 14,956 up to two
    # ulps on another): the two are equal to GRAY_MAX_ULP, never asked to be bit-identical
    ours = gray_float(_tensor(faces.images)).numpy()
    np.testing.assert_array_max_ulp(ours, faces.gray, maxulp=GRAY_MAX_ULP)
    for candidate in _luma_roundings(faces.images):
        np.testing.assert_array_max_ulp(ours, candidate, maxulp=GRAY_MAX_ULP)
    # the stated tolerance is tight: a luma off by one grey level (or by 1e-3) is refused
    with pytest.raises(AssertionError):
        np.testing.assert_array_max_ulp(ours, faces.gray + np.float32(1e-3), maxulp=GRAY_MAX_ULP)


def test_the_ulp_tolerance_covers_roundings_that_exact_equality_refuses():
    # what failed on another CPU, reproduced here: two legitimate summation orders of the
    # same luma differ by an ulp on some pixels, so exact equality would fail between them
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
    orders = _luma_roundings(image)
    assert any(not np.array_equal(orders[0], other) for other in orders[1:])
    for other in orders[1:]:
        np.testing.assert_array_max_ulp(orders[0], other, maxulp=GRAY_MAX_ULP)


def test_lbp_equals_the_lbp_extractor_map_and_skimage(faces):
    ours = lbp_uniform(gray_uint8(_tensor(faces.images))).numpy()
    extractor = create_extractor("lbp")
    stored = extractor.extract(faces)["map"][..., 0]  # what pipelines.extract stores
    np.testing.assert_array_equal(ours, stored)
    grey = cv2.cvtColor(faces.images[0], cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(ours[0], local_binary_pattern(grey, 8, 1, method="uniform"))


def test_lbp_handles_ties_and_flat_images():
    flat = np.full((2, 16, 16), 100, np.int32)
    flat[1, 5, 5] = 101
    ours = lbp_uniform(torch.from_numpy(flat)).numpy()
    np.testing.assert_array_equal(ours, lbp_numpy(flat.astype(np.uint8), 8, 1))
    assert ours.max() <= LBP_CODES - 1


def test_log_dct_equals_the_dct_extractor_map(faces):
    ours = log_dct(gray_float(_tensor(faces.images))).numpy()
    stored = create_extractor("dct").extract(faces)["map"][..., 0]
    np.testing.assert_allclose(ours, stored, atol=DCT_TOLERANCE, rtol=0)
    np.testing.assert_allclose(ours, log_dct_map(faces.gray), atol=DCT_TOLERANCE, rtol=0)


def test_dct_matrix_is_orthonormal_dct2():
    import scipy.fft
    d = dct_matrix(12, dtype=torch.float64).numpy()
    np.testing.assert_allclose(d @ d.T, np.eye(12), atol=1e-12)
    np.testing.assert_allclose(d, scipy.fft.dct(np.eye(12), axis=0, norm="ortho"), atol=1e-12)


def test_stream_inputs_follow_the_rgb_tensor(faces):
    rgb = _tensor(faces.images)
    lbp, dct = stream_inputs(rgb)
    assert lbp.shape == (4, LBP_CODES, 128, 128) and dct.shape == (4, 1, 128, 128)
    torch.testing.assert_close(lbp.sum(1), torch.ones(4, 128, 128))
    torch.testing.assert_close(dct.mean((1, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    # a change of the RGB input (a blur of one face) changes both derived streams
    blurred = rgb.clone()
    blurred[0] = torch.from_numpy(cv2.GaussianBlur(faces.images[0], (0, 0), 1.5)).permute(2, 0, 1) / 255
    lbp2, dct2 = stream_inputs(blurred)
    assert not torch.equal(lbp2[0], lbp[0]) and not torch.equal(dct2[0], dct[0])
    assert torch.equal(lbp2[1:], lbp[1:]) and torch.equal(dct2[1:], dct[1:])


def test_batch_equals_per_image(faces):
    rgb = _tensor(faces.images)
    whole = stream_inputs(rgb)
    for i in range(len(rgb)):
        single = stream_inputs(rgb[i:i + 1])
        assert torch.equal(single[0][0], whole[0][i])
        torch.testing.assert_close(single[1][0], whole[1][i], atol=1e-5, rtol=0)


def test_bad_shapes_are_value_errors():
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        gray_uint8(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="N x H x W"):
        log_dct(torch.rand(8, 8))
