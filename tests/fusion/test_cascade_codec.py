"""H.264 round trips and rescale chains (fusion/cascade/codec.py) and the h264 / rescale
augmentations of the cascade's training crops (fusion/cascade/blend.py)."""
import sys

import cv2
import numpy as np
import pytest

from fusion.cascade.blend import (AUGMENTATIONS, H264_CRF, RESCALE_CRF, RESCALE_DOWN,
                                  RESCALE_SCALE, RESCALE_UP, augment_crop, online_blend,
                                  parse_augment, parse_augment_p, sample_rng)
from fusion.cascade.codec import h264_roundtrip, rescale_chain
from fusion.cascade.config import TrainConfig
from fusion.cascade.data import StoreMaps, TrainingSet, synthetic_faces_store
from stores import open_store
from tests.face_fixtures import load_aligned_faces


@pytest.fixture(scope="module")
def faces():
    return load_aligned_faces(2, 128)


@pytest.fixture(scope="module")
def face_store(tmp_path_factory):
    return synthetic_faces_store(tmp_path_factory.mktemp("codec") / "faces.h5", n=120, size=64,
                                 seed=1)


def _psnr(a, b) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


def _i420(rgb):
    """RGB -> BT.601 4:2:0 -> RGB without a codec: what CRF 0 (lossless x264) must give."""
    return cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), cv2.COLOR_YUV2RGB_I420)


# ---------------------------------------------------------------------------- the codec

@pytest.mark.parametrize("shape", [(1, 7, 9, 3), (3, 33, 47, 3), (2, 64, 64, 3), (40, 31, 3)])
def test_roundtrip_keeps_shape_and_dtype_and_changes_the_frames(shape):
    frames = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = h264_roundtrip(frames, crf=23)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert (out != frames).mean() > 0.5  # noise does not survive 4:2:0 and CRF 23


def test_crf_0_is_the_lossless_chroma_subsampling_only(faces):
    # x264 at CRF 0 is lossless: what remains is the RGB <-> 4:2:0 conversion, computed
    # here without the codec
    clip = faces.images[:2]
    np.testing.assert_array_equal(h264_roundtrip(clip, crf=0), np.stack([_i420(f) for f in clip]))
    odd = np.ascontiguousarray(faces.images[0][:45, :37])
    np.testing.assert_array_equal(h264_roundtrip(odd, crf=0)[:44, :36], _i420(odd[:44, :36]))


def test_crf_40_loses_more_than_crf_23(faces):
    for img in faces.images:
        psnr = {crf: _psnr(h264_roundtrip(img, crf), img) for crf in (18, 23, 30, 40, 45)}
        assert psnr[18] > psnr[23] > psnr[30] > psnr[40] > psnr[45], psnr
        assert psnr[23] - psnr[40] > 5, psnr  # ~29 vs ~20 dB on these faces
        assert psnr[40] > 15, psnr  # still the same picture


def test_bitrate_mode_a_smaller_budget_loses_more(faces):
    clip = np.stack([np.roll(faces.images[0], k, axis=1) for k in range(4)])
    low, high = (_psnr(h264_roundtrip(clip, bitrate_kbps=kb), clip) for kb in (50, 1000))
    assert high - low > 5, (low, high)


def test_clip_frames_come_back_in_order():
    levels = np.array([20, 90, 160, 230], np.uint8)
    clip = np.broadcast_to(levels[:, None, None, None], (4, 32, 32, 3)).copy()
    out = h264_roundtrip(clip, crf=30)
    np.testing.assert_allclose(out.mean((1, 2, 3)), levels, atol=3)


def test_roundtrip_is_deterministic_whatever_was_encoded_before(faces):
    img = faces.images[0]
    first = h264_roundtrip(img, 35)
    h264_roundtrip(faces.images[1], 20)  # another stream in between shares no state
    np.testing.assert_array_equal(first, h264_roundtrip(img, 35))
    assert not np.array_equal(first, h264_roundtrip(img, 36))


@pytest.mark.parametrize("kwargs, message", [
    ({"frames": np.zeros((8, 8, 3), np.float32)}, "uint8"),
    ({"frames": np.zeros((2, 8, 8), np.uint8)}, "T x H x W x 3"),
    ({"frames": np.zeros((0, 8, 8, 3), np.uint8)}, "empty"),
    ({"crf": 52}, "crf must be in"),
    ({"bitrate_kbps": 0}, "bitrate_kbps must be > 0"),
    ({"preset": "fastest"}, "preset must be one of"),
])
def test_bad_inputs_are_one_clear_error(kwargs, message):
    args = {"frames": np.zeros((8, 8, 3), np.uint8), **kwargs}
    with pytest.raises(ValueError, match=message):
        h264_roundtrip(**args)


def test_missing_pyav_names_the_pip_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ImportError, match=r"pip install av==18\.1\.0"):
        h264_roundtrip(img)
    with pytest.raises(ImportError, match=r"pip install av==18\.1\.0"):
        augment_crop(img, img[..., 0], ("h264",), _firing_rng("h264"))
    # a run asking for a codec augmentation stops at validation, before any work
    with pytest.raises(ValueError, match=r"--augment h264.*pip install av==18\.1\.0"):
        TrainConfig(store="s.h5", out=str(tmp_path), augment="h264").validate()
    TrainConfig(store="s.h5", out=str(tmp_path), augment="jpeg,flip").validate()


def test_rescale_chain_at_full_scale_is_the_identity_or_the_codec_alone(faces):
    img = faces.images[0]
    np.testing.assert_array_equal(rescale_chain(img, 1.0, "nearest", "nearest"), img)
    np.testing.assert_array_equal(rescale_chain(img, 1.0, "area", "cubic", crf=30),
                                  h264_roundtrip(img, 30))
    small = rescale_chain(img, 0.5, "area", "linear")
    half = cv2.resize(cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA), (128, 128),
                      interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(small, half)
    coded = rescale_chain(img, 0.5, "area", "linear", crf=40)
    assert coded.shape == img.shape and _psnr(coded, img) < _psnr(small, img)
    with pytest.raises(ValueError, match="scale must be in"):
        rescale_chain(img, 1.5)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        rescale_chain(img, 0.5, down="bogus")


# ---------------------------------------------------------------------- the augmentations

def _firing_rng(name: str, seed_from: int = 0):
    """A generator whose draw for ``name`` fires (found by trying seeds)."""
    for seed in range(seed_from, seed_from + 1000):
        draws = np.random.default_rng(seed).random(list(AUGMENTATIONS).index(name) + 1)
        if draws[-1] < AUGMENTATIONS[name]:
            return np.random.default_rng(seed)
    raise AssertionError(name)


def test_codec_augmentations_are_listed_and_part_of_all():
    assert AUGMENTATIONS["h264"] == 0.5 and AUGMENTATIONS["rescale"] == 0.3
    assert {"h264", "rescale"} <= set(parse_augment("all"))
    assert parse_augment("h264,rescale") == ("h264", "rescale")


@pytest.mark.parametrize("name", ["h264", "rescale"])
def test_codec_augmentations_change_the_crop_not_the_mask(faces, name):
    crop = faces.images[0]
    mask = np.zeros(crop.shape[:2], np.uint8)
    mask[40:90, 30:100] = 1
    for seed in (0, 50, 100):
        img, m = augment_crop(crop, mask, (name,), _firing_rng(name, seed))
        assert img.shape == crop.shape and img.dtype == np.uint8
        assert not np.array_equal(img, crop)
        np.testing.assert_array_equal(m, mask)  # no pixel was made by the blend here
    # with the flip too, the mask is the flipped mask, whatever the codec did
    rng = _firing_rng("flip")
    _, m = augment_crop(crop, mask, ("h264", "rescale", "flip"), rng)
    np.testing.assert_array_equal(m, mask[:, ::-1])


def test_h264_augmentation_is_deterministic_by_seed_and_draws_its_crf_in_range(faces):
    crop = faces.images[1]
    mask = np.zeros(crop.shape[:2], np.uint8)
    a, _ = augment_crop(crop, mask, ("h264",), _firing_rng("h264", 7))
    b, _ = augment_crop(crop, mask, ("h264",), _firing_rng("h264", 7))
    np.testing.assert_array_equal(a, b)
    # the CRF is the draw right after the 7 firing draws; the crop is that CRF's round trip
    rng = _firing_rng("h264", 7)
    rng.random(len(AUGMENTATIONS) - 1)
    crf = int(rng.integers(H264_CRF[0], H264_CRF[1] + 1))
    assert H264_CRF[0] <= crf <= H264_CRF[1]
    np.testing.assert_array_equal(a, h264_roundtrip(crop, crf))
    outputs = {augment_crop(crop, mask, ("h264",), _firing_rng("h264", s))[0].tobytes()
               for s in range(0, 200, 20)}
    assert len(outputs) > 3  # different seeds, different CRFs


def test_augment_p_parses_and_refuses_bad_values():
    assert parse_augment_p("h264=0.8, jpeg=0") == {"h264": 0.8, "jpeg": 0.0}
    assert parse_augment_p("") == {} and parse_augment_p(None) == {}
    for bad, message in (("h264=1.5", "P in"), ("h264", "P in"), ("h264=x", "P in"),
                         ("rotate=0.2", "unknown augmentation 'rotate'")):
        with pytest.raises(ValueError, match=f"--augment-p: .*{message}"):
            parse_augment_p(bad)


def _fired(name: str, data: StoreMaps, p: int, s: int, epoch: int, seed: int, prob: float):
    """Whether ``name`` fires for the real and for the blend of item (s, p), replayed from
    the sample's generator: the blend's draws, then each crop's augmentation draws in table
    order (only ``name`` is on, so only its parameters are drawn, right after it fires)."""
    params = {"h264": lambda r: r.integers(H264_CRF[0], H264_CRF[1] + 1),
              "rescale": lambda r: (r.uniform(*RESCALE_SCALE), r.integers(len(RESCALE_DOWN)),
                                    r.integers(len(RESCALE_UP)), r.random(),
                                    r.integers(RESCALE_CRF[0], RESCALE_CRF[1] + 1))}
    rng = sample_rng(seed, epoch, s, data.rows[p])
    online_blend(data.batch([p])["rgb"][0], data.landmarks[p], rng)
    fired = []
    for _ in range(2):  # the real, then its blend
        for n in AUGMENTATIONS:
            fire = rng.random() < (prob if n == name else AUGMENTATIONS[n])
            if n == name:
                fired.append(fire)
                if fire:
                    params[name](rng)
    return fired


@pytest.mark.parametrize("name, override", [("h264", None), ("rescale", None), ("h264", 0.2)])
def test_reals_and_blends_are_augmented_alike_at_the_stated_probability(face_store, name,
                                                                        override):
    prob = AUGMENTATIONS[name] if override is None else override
    augment_p = {} if override is None else {name: override}
    with open_store(face_store) as store:
        data = StoreMaps(store, "train")
        plain = TrainingSet([data], "online", augment=(), size=64, seed=3)
        aug = TrainingSet([data], "online", augment=(name,), size=64, seed=3, augment_p=augment_p)
        changed = {0: [], 1: []}
        for epoch in range(8):
            for s, p in plain.items:
                fired = _fired(name, data, p, s, epoch, 3, prob)
                for k, (x, y) in enumerate(zip(plain.samples(s, p, epoch), aug.samples(s, p, epoch))):
                    assert x[2] == y[2] == k and y[4] == bool(k)  # real, then its blend
                    np.testing.assert_array_equal(x[1], y[1])  # the mask is untouched
                    differs = not np.array_equal(x[0], y[0])
                    assert differs == fired[k], (name, epoch, s, p, k)
                    changed[k].append(differs)
    for label, flags in changed.items():
        n, rate = len(flags), float(np.mean(flags))
        # binomial: within 4.5 standard deviations of the stated probability
        assert abs(rate - prob) < 4.5 * np.sqrt(prob * (1 - prob) / n), (label, n, rate, prob)


def test_clips_roundtrip_identically_every_time():
    # Seen before the fix: packets rebuilt from bytes the decoder read past, and x264's SIMD
    # code gave another stream for the P/B frames of a clip encoded just after a clip of
    # another size (CRF 18-42 on this 4-frame 64 px clip)
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    other = rng.integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    for crf in range(18, 46, 2):
        first = h264_roundtrip(clip, crf)
        for _ in range(2):
            h264_roundtrip(other, 30)
            np.testing.assert_array_equal(h264_roundtrip(clip, crf), first)


# ---------------------------------------------------------------------------- x264's SIMD code

def test_simd_is_on_for_single_frames_and_off_for_clips_by_default(faces):
    img = faces.images[0]
    assert np.array_equal(h264_roundtrip(img, 30), h264_roundtrip(img, 30, simd=True))
    clip = np.stack([np.roll(img, k, axis=1) for k in range(3)])
    assert np.array_equal(h264_roundtrip(clip, 30), h264_roundtrip(clip, 30, simd=False))
    # the flag reaches x264: its SIMD and C code choose some coding modes differently
    assert any(not np.array_equal(h264_roundtrip(img, crf, simd=True),
                                  h264_roundtrip(img, crf, simd=False)) for crf in (20, 30, 40))


_SIMD_CASES = ((0, 128, 23), (1, 96, 40), (0, 45, 31), (1, 64, 18), (0, 111, 45))


def _simd_case_outputs(images):
    out = []
    for k, side, crf in _SIMD_CASES:
        img = cv2.resize(images[k], (side, side + 3), interpolation=cv2.INTER_AREA)
        out.append(h264_roundtrip(img, crf))
    return out


def test_simd_single_frames_are_the_same_across_calls_sizes_and_processes(faces, tmp_path):
    import hashlib
    import subprocess
    first = _simd_case_outputs(faces.images)
    h264_roundtrip(np.stack([faces.images[1][:70, :50]] * 3), 30)  # a clip of another size
    for a, b in zip(first, _simd_case_outputs(faces.images[::-1][::-1])):
        np.testing.assert_array_equal(a, b)
    digest = hashlib.sha256(b"".join(o.tobytes() for o in first)).hexdigest()
    np.save(tmp_path / "faces.npy", faces.images)
    code = ("import hashlib, numpy as np\n"
            "from tests.fusion.test_cascade_codec import _simd_case_outputs\n"
            f"out = _simd_case_outputs(np.load({str(tmp_path / 'faces.npy')!r}))\n"
            "print(hashlib.sha256(b''.join(o.tobytes() for o in out)).hexdigest())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == digest


def test_codec_simd_is_a_run_setting_that_old_runs_lack(face_store, monkeypatch):
    assert TrainConfig(store="a.h5", out="r").codec_simd is True
    saved = TrainConfig(store="a.h5", out="r", sbi="online").to_json()
    assert TrainConfig.from_json(saved).codec_simd is True
    del saved["codec_simd"]  # a run saved before SIMD was used encoded without it
    assert TrainConfig.from_json(saved).codec_simd is False
    seen = []
    real = h264_roundtrip
    monkeypatch.setattr("fusion.cascade.blend.h264_roundtrip",
                        lambda *a, **k: seen.append(k["simd"]) or real(*a, **k))
    data = StoreMaps(open_store(face_store), "train")
    for simd in (True, False):
        seen.clear()
        ts = TrainingSet([data], "online", augment=("h264",), size=64, seed=0,
                         augment_p={"h264": 1.0}, codec_simd=simd)
        ts.samples(*(int(v) for v in ts.items[0]), epoch=1)  # a real, with landmarks
        assert seen == [simd, simd]  # the real and its blend
