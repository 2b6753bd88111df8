"""Tests for pipelines.frames: frame sampling, video/image/mask readers and their failures."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from base.errors import SampleError
from pipelines.frames import (VideoReader, read_image, read_mask_frames, read_mask_image,
                              read_video_frames, sample_frame_indices, video_frame_count)


# ---------------------------------------------------------------- sample_frame_indices

@pytest.mark.parametrize("n_total,n,clip_len", [(100, 4, 1), (300, 32, 1), (751, 32, 4),
                                                (10, 3, 3), (1000, 1, 1), (1000, 1, 8)])
def test_sample_frame_indices_properties(n_total, n, clip_len):
    idx = sample_frame_indices(n_total, n, clip_len)
    assert idx.dtype == np.int64
    assert len(idx) == n * clip_len
    assert np.all(np.diff(idx) > 0)
    assert idx[0] == 0 and idx[-1] < n_total
    starts = idx[::clip_len]
    # every clip is clip_len consecutive frames
    assert np.array_equal(idx.reshape(n, clip_len) - starts[:, None],
                          np.tile(np.arange(clip_len), (n, 1)))
    if n > 1:
        assert idx[-1] == n_total - 1  # spread to the end of the video
        gaps = np.diff(starts)
        assert gaps.max() - gaps.min() <= 1  # uniform up to rounding


def test_sample_frame_indices_known_values():
    assert sample_frame_indices(100, 4).tolist() == [0, 33, 66, 99]
    assert sample_frame_indices(100, 2, clip_len=3).tolist() == [0, 1, 2, 97, 98, 99]


@pytest.mark.parametrize("n_total,n,clip_len", [(10, 10, 1), (10, 32, 1), (10, 4, 3), (5, 1, 5)])
def test_sample_frame_indices_returns_all_frames_when_asking_for_more(n_total, n, clip_len):
    assert sample_frame_indices(n_total, n, clip_len).tolist() == list(range(n_total))


@pytest.mark.parametrize("args", [(0, 4), (10, 0), (10, 2, 0), (-1, 2), (10.0, 2), (10, True)])
def test_sample_frame_indices_rejects_bad_arguments(args):
    with pytest.raises(ValueError, match="positive integer"):
        sample_frame_indices(*args)


# ---------------------------------------------------------------- video reading

@pytest.fixture(scope="module")
def ffpp_video(ffpp_root):
    return ffpp_root / "original_sequences" / "youtube" / "c23" / "videos" / "519.mp4"


def _sequential_frames(path, wanted):
    """Reference: decode every frame with a plain cv2 loop and keep the wanted ones."""
    cap = cv2.VideoCapture(str(path))
    frames, i = {}, 0
    last = max(wanted)
    while i <= last:
        ok, frame = cap.read()
        assert ok, f"reference decode failed at frame {i}"
        if i in wanted:
            frames[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        i += 1
    cap.release()
    return frames


@pytest.mark.shared_data
@pytest.mark.parametrize("seek_gap", [0, 10**9, None], ids=["seek", "sequential", "default"])
def test_read_video_frames_matches_sequential_decode(ffpp_video, seek_gap):
    n_total = video_frame_count(ffpp_video)
    assert n_total > 100
    # sparse frames (seek path with seek_gap=0) and a dense run (grab path)
    wanted = sorted(set(sample_frame_indices(min(n_total, 200), 5).tolist()) | {101, 102, 103})
    expected = _sequential_frames(ffpp_video, set(wanted))
    got = list(read_video_frames(ffpp_video, wanted, seek_gap=seek_gap))
    assert [i for i, _ in got] == wanted
    for i, frame in got:
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
        np.testing.assert_array_equal(frame, expected[i], err_msg=f"frame {i}")


@pytest.mark.shared_data
def test_read_video_frames_sorts_and_deduplicates(ffpp_video):
    got = [i for i, _ in read_video_frames(ffpp_video, [5, 2, 5, 0])]
    assert got == [0, 2, 5]


@pytest.mark.shared_data
def test_read_video_frames_rejects_index_past_end(ffpp_video):
    n_total = video_frame_count(ffpp_video)
    with pytest.raises(ValueError, match="past the end"):
        list(read_video_frames(ffpp_video, [n_total + 5]))


def _write_test_video(path, n=12, size=(64, 48)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, size)
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write mp4v videos")
    rng = np.random.default_rng(0)
    for _ in range(n):
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()


def test_video_reader_steps_back_and_forward_to_the_right_frames(tmp_path):
    path = tmp_path / "grey.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write mp4v videos")
    for i in range(30):
        writer.write(np.full((48, 64, 3), 8 * i, np.uint8))  # frame i is grey level 8 i
    writer.release()
    with VideoReader(path, seek_gap=5) as reader:
        assert reader.n_total == 30
        for index in (3, 4, 12, 11, 9, 28, 0, 29):  # forward, back, long gaps
            assert abs(reader.read(index).mean() - 8 * index) < 3, index
        with pytest.raises(ValueError, match="outside"):
            reader.read(30)


def test_random_bytes_raise_corrupt_video(tmp_path):
    path = tmp_path / "random.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(SampleError) as info:
        list(read_video_frames(path, [0]))
    assert info.value.cause == "corrupt_video"
    assert info.value.path == str(path) and "random.mp4" in str(info.value)
    with pytest.raises(SampleError, match="corrupt_video"):
        video_frame_count(path)


def test_missing_video_raises_corrupt_video(tmp_path):
    with pytest.raises(SampleError, match="does not exist") as info:
        video_frame_count(tmp_path / "absent.mp4")
    assert info.value.cause == "corrupt_video"


def test_truncated_video_raises_corrupt_video(tmp_path):
    full = tmp_path / "full.mp4"
    _write_test_video(full)
    data = full.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(SampleError) as info:
        list(read_video_frames(truncated, range(12)))
    assert info.value.cause == "corrupt_video"
    assert "truncated.mp4" in str(info.value)


def test_mid_video_decode_failure_keeps_earlier_frames(tmp_path, monkeypatch):
    path = tmp_path / "ok.mp4"
    _write_test_video(path, n=12)
    real_capture = cv2.VideoCapture

    class FailingCapture:
        """Wraps a real capture; frame 6 fails to decode."""

        def __init__(self, *args):
            self.cap, self.pos = real_capture(*args), 0

        def __getattr__(self, name):
            return getattr(self.cap, name)

        def grab(self):
            self.pos += 1
            return self.pos - 1 != 6 and self.cap.grab()

        def read(self):
            self.pos += 1
            if self.pos - 1 == 6:
                return False, None
            return self.cap.read()

    monkeypatch.setattr(cv2, "VideoCapture", FailingCapture)
    got = []
    with pytest.raises(SampleError) as info:
        for i, frame in read_video_frames(path, [0, 3, 6, 9]):
            got.append(i)
    assert got == [0, 3]
    assert info.value.cause == "corrupt_video" and info.value.frame_index == 6


def test_read_mask_frames_binarises_max_channel(tmp_path):
    path = tmp_path / "mask.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write mp4v videos")
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[8:40, 16:48] = 255
    for _ in range(4):
        writer.write(frame)
    writer.release()
    masks = dict(read_mask_frames(path, [0, 3]))
    assert sorted(masks) == [0, 3]
    for mask in masks.values():
        assert mask.shape == (48, 64) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1}
        # lossy codec: compare away from the square's edges
        assert mask[12:36, 20:44].all() and not mask[:4].any() and not mask[:, :10].any()


# ---------------------------------------------------------------- images

def _write(path, image):
    ok, buf = cv2.imencode(path.suffix, image)
    assert ok
    buf.tofile(str(path))


def test_read_image_colour_grey_rgba_and_unicode_path(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    colour = tmp_path / "visage_é_顔.png"
    _write(colour, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(read_image(colour), rgb)

    grey = tmp_path / "grey.png"
    _write(grey, rgb[..., 0])
    got = read_image(grey)
    assert got.shape == (20, 30, 3)
    np.testing.assert_array_equal(got[..., 1], rgb[..., 0])

    rgba = tmp_path / "rgba.png"
    bgra = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full((20, 30), 7, np.uint8)])
    _write(rgba, bgra)
    np.testing.assert_array_equal(read_image(rgba), rgb)


@pytest.mark.parametrize("content", [b"", b"not an image at all"])
def test_read_image_unreadable(tmp_path, content):
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(SampleError) as info:
        read_image(path)
    assert info.value.cause == "unreadable_image" and "broken.jpg" in str(info.value)
    with pytest.raises(SampleError, match="unreadable_image"):
        read_mask_image(path)


def test_read_image_missing_file(tmp_path):
    with pytest.raises(SampleError, match="unreadable_image"):
        read_image(tmp_path / "absent.png")


def test_read_mask_image_thresholds_max_channel(tmp_path):
    mask = np.zeros((10, 12, 3), np.uint8)
    mask[2:5, 3:6, 2] = 200   # one channel above 127 -> 1
    mask[6:8, 6:9] = 127      # not above 127 -> 0
    path = tmp_path / "mask.png"
    _write(path, mask)
    got = read_mask_image(path)
    expected = np.zeros((10, 12), np.uint8)
    expected[2:5, 3:6] = 1
    np.testing.assert_array_equal(got, expected)
    grey = tmp_path / "grey_mask.png"
    _write(grey, mask[..., 2])
    np.testing.assert_array_equal(read_mask_image(grey), expected)
