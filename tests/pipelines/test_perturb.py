"""Tests of pipelines.perturb: parsing, and each perturbation does what it says."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.perturb import PERTURBATIONS, apply_perturbation, parse_perturbations, psnr


@pytest.fixture(scope="module")
def images():
    from skimage import data
    face = data.astronaut()[::2, ::2]  # 256 x 256, real texture
    return np.stack([face, face[:, ::-1], np.ascontiguousarray(face.transpose(1, 0, 2))])


def _high_freq_energy(batch):
    g = batch.astype(np.float64).mean(-1)
    return float((np.diff(g, axis=1) ** 2).mean() + (np.diff(g, axis=2) ** 2).mean())


def test_parse():
    assert parse_perturbations("jpeg:50,blur:1.5,noise:5,resize:0.5,gamma:1.2") == [
        ("jpeg", 50.0), ("blur", 1.5), ("noise", 5.0), ("resize", 0.5), ("gamma", 1.2)]
    assert parse_perturbations("") == []
    assert parse_perturbations(" JPEG:90 ") == [("jpeg", 90.0)]


@pytest.mark.parametrize("spec, words", [("sepia:1", "unknown perturbation"),
                                         ("jpeg", "no value"), ("jpeg:abc", "not a number"),
                                         ("jpeg:0", "1-100"), ("jpeg:50.5", "integer"),
                                         ("resize:1.5", "(0, 1]"), ("gamma:0", "> 0"),
                                         ("noise:-1", ">= 0"), ("blur:nan", ">= 0")])
def test_parse_errors(spec, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        parse_perturbations(spec)


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_shape_dtype_and_determinism(images, name):
    value = {"jpeg": 70, "blur": 1.0, "noise": 3.0, "resize": 0.5, "gamma": 1.3}[name]
    out = apply_perturbation(images, name, value, seed=1)
    assert out.shape == images.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, apply_perturbation(images, name, value, seed=1))
    assert not np.array_equal(out, images)


def test_lower_jpeg_quality_lowers_psnr(images):
    scores = [psnr(images, apply_perturbation(images, "jpeg", q)) for q in (95, 70, 30, 10)]
    assert scores == sorted(scores, reverse=True) and scores[0] > 35


def test_more_noise_lowers_psnr(images):
    scores = [psnr(images, apply_perturbation(images, "noise", s, seed=0)) for s in (1, 5, 20)]
    assert scores == sorted(scores, reverse=True)
    assert abs(scores[1] - 20 * math.log10(255 / 5)) < 1.0  # PSNR of std-5 noise ~ 34.2 dB
    assert not np.array_equal(apply_perturbation(images, "noise", 5, seed=0),
                              apply_perturbation(images, "noise", 5, seed=1))


def test_blur_reduces_high_frequency_energy(images):
    energies = [_high_freq_energy(apply_perturbation(images, "blur", s)) for s in (0.5, 1.5, 3)]
    assert _high_freq_energy(images) > energies[0] > energies[1] > energies[2]


def test_blur_matches_per_image_gaussian(images):
    import cv2
    out = apply_perturbation(images, "blur", 1.5)
    for image, blurred in zip(images, out):
        np.testing.assert_array_equal(blurred, cv2.GaussianBlur(image, (0, 0), 1.5,
                                                                borderType=cv2.BORDER_REFLECT_101))


@pytest.mark.parametrize("name, value", [("resize", 1.0), ("gamma", 1.0), ("blur", 0.0),
                                         ("noise", 0.0)])
def test_identity_values(images, name, value):
    out = apply_perturbation(images, name, value)
    np.testing.assert_array_equal(out, images)
    assert out is not images


def test_resize_and_gamma_direction(images):
    assert psnr(images, apply_perturbation(images, "resize", 0.75)) > \
        psnr(images, apply_perturbation(images, "resize", 0.25))
    assert apply_perturbation(images, "gamma", 2.0).mean() < images.mean() < \
        apply_perturbation(images, "gamma", 0.5).mean()


def test_psnr_and_input_checks(images):
    assert psnr(images, images) == math.inf
    with pytest.raises(ValueError, match="one shape"):
        psnr(images, images[:1])
    with pytest.raises(ValueError, match="N x H x W x 3 uint8"):
        apply_perturbation(images[0], "jpeg", 50)
    with pytest.raises(ValueError, match="unknown perturbation"):
        apply_perturbation(images, "sepia", 1)
