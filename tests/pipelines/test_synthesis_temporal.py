"""Temporal self-blends: exact masks per frame, drifting parameters within their bounds,
determinism, and frame 0 equal to the still-image self-blend."""
import cv2
import numpy as np
import pytest

from pipelines.synthesis import MOUTH, sbi
from pipelines.synthesis_temporal import DRIFTING, drift_bounds, temporal_sbi
from tests.face_fixtures import load_aligned_faces


@pytest.fixture(scope="module")
def faces():
    return load_aligned_faces(3, 128)


def _moving_clip(image, landmarks, n, seed=0):
    """``n`` frames of a face moving by a few pixels (a translation per frame), and their
    landmarks moved alike: a stand-in for consecutive video frames."""
    rng = np.random.default_rng(seed)
    offsets = np.cumsum(rng.uniform(-1.5, 1.5, (n, 2)), axis=0)
    offsets[0] = 0
    frames = [cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), image.shape[1::-1],
                             borderMode=cv2.BORDER_REFLECT_101) for dx, dy in offsets]
    return np.stack(frames), np.asarray(landmarks, np.float64)[None] + offsets[:, None]


@pytest.mark.parametrize("region", ["face", "lower"])
def test_every_frame_mask_is_exactly_its_changed_pixels(faces, region):
    for i, d in enumerate((0.0, 0.5, 1.0)):
        frames, lms = _moving_clip(faces.images[i], faces.landmarks[i], 6, seed=i)
        clip, masks, params = temporal_sbi(frames, lms, np.random.default_rng(i), d, region=region)
        assert clip.shape == frames.shape and clip.dtype == np.uint8
        assert masks.shape == frames.shape[:3] and masks.dtype == np.uint8
        assert len(params) == len(frames)
        for t in range(len(frames)):
            changed = np.any(clip[t] != frames[t], axis=-1)
            assert np.array_equal(masks[t].astype(bool), changed)
            assert changed.any()
        if region == "lower":
            # lip-sync's area: the mouth is rewritten, the eyes are left alone
            for t in range(len(frames)):
                eyes = np.round(lms[t, 36:48].mean(0)).astype(int)
                assert masks[t][eyes[1], eyes[0]] == 0
                mouth = np.zeros(masks[t].shape, np.uint8)
                cv2.fillConvexPoly(mouth, cv2.convexHull(np.round(lms[t, MOUTH]).astype(np.int32)), 1)
                assert masks[t][mouth > 0].mean() > 0.5


def test_parameters_drift_within_the_stated_bounds(faces):
    seen_frequencies = set()
    for seed in range(24):
        d = seed / 23
        frames, lms = _moving_clip(faces.images[seed % 3], faces.landmarks[seed % 3], 8, seed)
        _, _, params = temporal_sbi(frames, lms, seed, d, drift=0.2, jitter=0.1)
        bounds = params[0]["bounds"]
        assert bounds == drift_bounds(d, params[0]["frequency"], params[0]["face_width_px"])
        seen_frequencies.add(params[0]["frequency"])
        for p in params:
            assert p["frequency"] == params[0]["frequency"] and p["morph"] == params[0]["morph"]
            for name in DRIFTING:
                lo, hi = bounds[name]
                assert lo - 1e-9 <= p[name] <= hi + 1e-9, (name, p[name], lo, hi)
            assert isinstance(p["morph_px"], int)
            assert all(0 <= p[f"phase_{k}"] < 2 * np.pi for k in range(3))
        # the parameters move from frame to frame (a range of zero width cannot)
        for name in DRIFTING:
            values = np.array([p[name] for p in params])
            lo, hi = bounds[name]
            if name != "morph_px" and hi > lo:
                assert np.ptp(values) > 0, name
        for k in range(3):
            assert np.ptp([p[f"phase_{k}"] for p in params]) > 0
    assert len(seen_frequencies) >= 3
    # the bounds are sbi's ranges, checked by hand at both ends of the difficulty scale
    easy, hard = drift_bounds(0.0, "sharpen", 100.0), drift_bounds(1.0, "sharpen", 100.0)
    assert easy["hue"] == (-6, 6) and hard["hue"] == pytest.approx((-2.4, 2.4))
    assert easy["ratio"] == (0.25, 1.0) and hard["ratio"] == pytest.approx((0.325, 1.0))
    assert easy["frequency_value"] == (0.3, 1.0) and hard["frequency_value"] == pytest.approx((0.12, 0.4))
    assert easy["amp"] == pytest.approx((0.03, 0.10)) and easy["morph_px"] == (0.0, 4.0)
    assert hard["sigma_fw"] == pytest.approx((0.01, 0.08))


def test_without_drift_or_jitter_a_still_clip_is_one_blend_repeated(faces):
    frames = np.stack([faces.images[0]] * 4)
    lms = np.stack([faces.landmarks[0]] * 4)
    clip, masks, _ = temporal_sbi(frames, lms, 5, 0.3, drift=0.0, jitter=0.0)
    assert all(np.array_equal(clip[0], c) for c in clip[1:])
    # and with the default drift the same still clip flickers: frames differ from each other
    clip, _, _ = temporal_sbi(frames, lms, 5, 0.3)
    assert all(not np.array_equal(clip[0], c) for c in clip[1:])


def test_first_frame_and_one_frame_clips_are_the_still_self_blend(faces):
    for seed in range(4):
        frames, lms = _moving_clip(faces.images[1], faces.landmarks[1], 5, seed)
        clip, masks, _ = temporal_sbi(frames, lms, np.random.default_rng(seed), 0.6)
        still, still_mask = sbi(frames[0], lms[0], np.random.default_rng(seed), 0.6)
        assert np.array_equal(clip[0], still) and np.array_equal(masks[0], still_mask)
        one, one_mask, params = temporal_sbi(frames[:1], lms[:1], np.random.default_rng(seed), 0.6)
        assert one.shape == (1,) + frames.shape[1:] and len(params) == 1
        assert np.array_equal(one[0], still) and np.array_equal(one_mask[0], still_mask)


def test_clips_are_deterministic_by_seed(faces):
    frames, lms = _moving_clip(faces.images[2], faces.landmarks[2], 5)
    a = temporal_sbi(frames, lms, 11, "hard", region="lower")
    b = temporal_sbi(frames, lms, 11, "hard", region="lower")
    c = temporal_sbi(frames, lms, 12, "hard", region="lower")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert [{k: v for k, v in p.items()} for p in a[2]] == b[2]
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("kwargs, message", [
    ({"landmarks": np.zeros((2, 68, 2))}, "T x 68 x 2"),
    ({"drift": -0.1}, "drift"),
    ({"jitter": float("nan")}, "jitter"),
    ({"region": "eyes"}, "region"),
    ({"frames": np.zeros((0, 64, 64, 3), np.uint8), "landmarks": np.zeros((0, 68, 2))}, "T >= 1"),
])
def test_bad_inputs_name_the_argument(faces, kwargs, message):
    frames, lms = _moving_clip(faces.images[0], faces.landmarks[0], 3)
    args = {"frames": frames, "landmarks": lms, "rng": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        temporal_sbi(**args)
