"""The vectorised pixel code of the blends and augmentations gives, bit for bit, what the
plain per-pixel formulas in their docstrings give (the references of
``python -m fusion.cascade.bench_pixels``, which times both)."""
import cv2
import numpy as np

from fusion.cascade.bench_pixels import (main as bench_main, reference_alpha_blend,
                                         reference_changed_mask, reference_color_jitter,
                                         reference_source_tone)
from fusion.cascade.blend import _color_jitter, augment_crop
from pipelines.editing import changed_mask
from pipelines.synthesis import alpha_blend, draw_source_params, sbi_source
from tests.face_fixtures import load_aligned_faces


def _images(seed=0, n=12):
    rng = np.random.default_rng(seed)
    for k in range(n):
        h, w = (int(v) for v in rng.integers(8, 140, 2))
        yield k, rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_changed_mask_is_any_channel_differs():
    rng = np.random.default_rng(1)
    for channels in (1, 2, 3, 4):
        a = rng.integers(0, 4, (37, 51, channels), dtype=np.uint8)
        b = rng.integers(0, 4, (37, 51, channels), dtype=np.uint8)
        got = changed_mask(a, b)
        assert got.dtype == np.uint8 and got.shape == (37, 51)
        np.testing.assert_array_equal(got, reference_changed_mask(a, b))
    a = rng.integers(0, 3, (9, 5, 6), dtype=np.uint8)  # more channels: numpy's reduction
    np.testing.assert_array_equal(changed_mask(a, a[::-1]), np.any(a != a[::-1], -1))
    assert not changed_mask(a, a.copy()).any()


def test_alpha_blend_computes_only_where_alpha_is_not_zero_with_the_same_result():
    for k, target in _images(2):
        rng = np.random.default_rng(k)
        source = rng.integers(0, 256, target.shape, dtype=np.uint8)
        h, w = target.shape[:2]
        region = np.zeros((h, w), np.float32)
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        region[y0:y0 + 1 + int(rng.integers(0, h)), x0:x0 + 1 + int(rng.integers(0, w))] = 1
        alpha = cv2.GaussianBlur(region, (0, 0), 1 + k % 4) * rng.uniform(0.2, 1)
        for a in (alpha, np.zeros_like(alpha), np.ones_like(alpha)):
            np.testing.assert_array_equal(alpha_blend(target, source, a),
                                          reference_alpha_blend(target, source, a))
    # a float source (the benchmark's colour edit) and a float target are rounded alike
    target = np.random.default_rng(3).uniform(0, 255, (20, 30, 3))
    np.testing.assert_array_equal(alpha_blend(target, target[::-1] + 0.4, alpha[:20, :30]),
                                  reference_alpha_blend(target, target[::-1] + 0.4, alpha[:20, :30]))


def test_colour_jitter_is_its_formula():
    for k, img in _images(4):
        np.testing.assert_array_equal(_color_jitter(img, np.random.default_rng(k)),
                                      reference_color_jitter(img, np.random.default_rng(k)))


def test_noise_augmentation_is_its_formula():
    p = {"noise": 1.0}
    for k, img in _images(5):
        mask = np.zeros(img.shape[:2], np.uint8)
        got, _ = augment_crop(img, mask, ("noise",), np.random.default_rng(k), p)
        rng = np.random.default_rng(k)
        for _ in range(3):  # the draws of color, downup and blur, which come first
            rng.random()
        rng.random()  # noise fires
        noise = rng.normal(0, rng.uniform(1, 6), img.shape)
        np.testing.assert_array_equal(got, np.clip(np.rint(img + noise), 0, 255).astype(np.uint8))


def test_sbi_source_tables_equal_the_per_pixel_formulas():
    faces = load_aligned_faces(2, 96)
    for k in range(8):
        target, lm = faces.images[k % 2], faces.landmarks[k % 2]
        params = draw_source_params(np.random.default_rng(k), k / 7, 40.0)
        params["frequency"] = "none"  # the part after the tone change is unchanged code
        got = sbi_source(target, lm, params)
        src = reference_source_tone(target, params)
        scale, shift = params["scale"], params["shift_px"]
        cx, cy = lm.mean(0)
        m = np.array([[scale, 0, (1 - scale) * cx + shift[0]], [0, scale, (1 - scale) * cy + shift[1]]])
        src = cv2.warpAffine(src.astype(np.float32), m, (96, 96), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT_101)
        np.testing.assert_array_equal(got, np.clip(np.rint(src), 0, 255).astype(np.uint8))
        assert (got != target).any()


def test_pixel_benchmark_times_ours_beside_each_reference(capsys):
    assert bench_main(["--size", "96", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    for name in ("changed mask", "alpha blend", "colour jitter", "SBI source tone", "H.264"):
        assert name in out
    assert out.count("bit-identical") >= 4  # the codec line may say either
