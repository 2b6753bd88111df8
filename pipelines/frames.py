"""Frame sampling and decoding: which frames of a video to use, and reading them cheaply.

Videos are decoded with OpenCV (``cv2.VideoCapture``, FFmpeg backend). Reading 32 frames of
a 500-frame video is dominated by decoding, so :func:`read_video_frames` walks forward with
``cap.grab()`` (no colour conversion, no copy) over short gaps and seeks only over long ones.
All readers return RGB ``uint8`` arrays; masks are ``uint8`` in {0, 1}.

Failures a data set can contain (a file that does not open, a truncated stream) raise
:class:`base.errors.SampleError` so that the pipeline records them and goes on.

Example
-------
>>> sample_frame_indices(100, 4)
array([ 0, 33, 66, 99])
>>> sample_frame_indices(100, 2, clip_len=3)
array([ 0,  1,  2, 97, 98, 99])
"""
from __future__ import annotations

import codecs
import os
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from base.errors import SampleError


def quiet_video_logs() -> None:
    """Keep FFmpeg's and OpenCV's own log lines off stderr.

    A file that does not open makes FFmpeg print ``[mov,mp4,...] moov atom not found`` and
    OpenCV ``[ WARN:0@1.4] global cap.cpp:212 open VIDEOIO(FFMPEG): ...`` straight to file
    descriptor 2, before the :class:`SampleError` that says the same in one line. OpenCV reads
    ``OPENCV_FFMPEG_LOGLEVEL`` once, when the first video is opened (setting it afterwards
    changes nothing; measured with opencv-python-headless 4.14), so this runs at import. A
    user's own ``OPENCV_FFMPEG_LOGLEVEL`` or ``OPENCV_LOG_LEVEL`` is kept, to debug a decoder.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


quiet_video_logs()

#: Seek (``CAP_PROP_POS_FRAMES``) instead of grabbing forward when the next wanted frame is
#: more than this many frames ahead. FF++ c23 videos have long GOPs, so a seek decodes from
#: an earlier keyframe and costs 56-668 ms, growing with the position (measured on the 7
#: ../shared/data/ffpp videos, 1 thread), while ``grab()`` costs 0.8-1.0 ms/frame at 480p,
#: 1.1-2.3 at 720p and 5.8 at 1080p: seeking breaks even only over gaps of 54-198 frames.
#: Median ms per video to read the sampled frames (``python -m pipelines.frames``):
#:    8 frames: seek always 1557, seek_gap 64: 703, seek_gap 250: 571, never seek 551;
#:   32 frames: seek always 6074, seek_gap 64: 639, seek_gap 250: 634, never seek 664.
#: So reading is sequential for typical sampling; seeks are kept for gaps long enough to
#: skip at least one keyframe (x264's default keyframe interval is 250).
SEEK_GAP = 250


def sample_frame_indices(n_total: int, n: int, clip_len: int = 1) -> np.ndarray:
    """Indices of ``n`` clips of ``clip_len`` consecutive frames spread over a video.

    Parameters
    ----------
    n_total : int
        Number of frames in the video (> 0).
    n : int
        Number of clips (> 0).
    clip_len : int
        Consecutive frames per clip (> 0); 1 samples single frames.

    Returns
    -------
    ndarray of int64
        Sorted, unique frame indices in ``[0, n_total)``. Clip starts are
        ``round(linspace(0, n_total - clip_len, n))``; when ``n * clip_len >= n_total``
        every frame is returned.
    """
    for name, value in (("n_total", n_total), ("n", n), ("clip_len", clip_len)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if n * clip_len >= n_total:
        return np.arange(n_total, dtype=np.int64)
    starts = np.unique(np.round(np.linspace(0, n_total - clip_len, n)).astype(np.int64))
    return np.unique((starts[:, None] + np.arange(clip_len, dtype=np.int64)).ravel())


#: Leading bytes of image formats, to name an image given a video extension.
_IMAGE_SIGNATURES = ((b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"),
                     (b"GIF8", "a GIF image"), (b"BM", "a BMP image"))


def _read_head(path: str, n: int = 16, missing: str = "corrupt_video") -> bytes:
    """The first ``n`` bytes of ``path`` (-1: all of it).

    Raises ``SampleError("unreadable_file")`` naming the OS reason (permission denied,
    symbolic link loop, a folder) when the file cannot be opened, and ``SampleError(missing)``
    when there is no file of that name at all.
    """
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as exc:
        cause = "unreadable_file" if os.path.lexists(path) else missing
        raise SampleError(cause, path, f"cannot open the file ({exc.strerror or exc})") from None


def _image_kind(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    return next((kind for magic, kind in _IMAGE_SIGNATURES if head.startswith(magic)), None)


def _is_text(head: bytes) -> bool:
    """Whether the leading bytes of a file are plain text (UTF-8, no control bytes but
    whitespace): a text file given an image or video extension."""
    try:  # incremental: a multi-byte character cut at the end of ``head`` is no objection
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return bool(text) and all(c.isprintable() or c in "\t\n\r\f" for c in text)


def _content_problem(head: bytes) -> str | None:
    """What the leading bytes of a file that does not decode say it is (None: no idea)."""
    if not head:
        return "the file is empty (0 bytes)"
    if _is_text(head):
        return "the file holds text"
    return None


def _open_video(path) -> cv2.VideoCapture:
    path = os.fspath(path)
    if not os.path.lexists(path):
        raise SampleError("corrupt_video", path, "file does not exist")
    head = _read_head(path, 512)
    image = _image_kind(head)
    if image:
        raise SampleError("wrong_format", path, f"the file holds {image}, not a video; "
                          "give it its image extension")
    problem = _content_problem(head)
    if problem:  # empty: a video that is not there yet; text: another kind of file
        raise SampleError("corrupt_video" if not head else "wrong_format", path,
                          problem if not head else f"{problem}, not a video")
    # one decoding thread: a worker is one core, and FFmpeg's frame threads cost ~15% more
    # CPU per frame than they save in wall time (measured on the FF++ sample)
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    if not cap.isOpened():
        cap.release()
        raise SampleError("corrupt_video", path, "OpenCV/FFmpeg cannot open the file "
                          "(not a video, or truncated before the stream header)")
    return cap


def video_frame_count(path) -> int:
    """Number of frames in the video at ``path`` as the container reports it.

    Raises ``SampleError("corrupt_video")`` when the file cannot be opened or reports no frames.
    """
    cap = _open_video(path)
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    if n <= 0:
        raise SampleError("corrupt_video", os.fspath(path), "the video reports 0 frames")
    return n


class VideoReader:
    """Random access to the frames of one video, decoding forward where that is cheaper.

    ``read(index)`` walks forward with ``grab()`` over gaps up to ``seek_gap`` frames and
    seeks otherwise (also backwards), so reading increasing indices costs what
    :func:`read_video_frames` costs, and an occasional step back (a neighbouring frame)
    costs one seek. Use as a context manager, or call :meth:`close`.

    Raises ``SampleError("corrupt_video")`` when the file does not open, reports 0 frames,
    or a frame fails to decode; ``ValueError`` for an index outside ``[0, n_total)``.
    """

    def __init__(self, path, convert: Callable[[np.ndarray], np.ndarray] | None = None,
                 seek_gap: int | None = None):
        self.path = os.fspath(path)
        self.convert = convert or _bgr_to_rgb
        self.seek_gap = SEEK_GAP if seek_gap is None else seek_gap
        self._cap = _open_video(self.path)
        self.n_total = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if self.n_total <= 0:
            self.close()
            raise SampleError("corrupt_video", self.path, "the video reports 0 frames")
        self._pos = 0  # index of the frame the next grab() decodes

    def read(self, index: int) -> np.ndarray:
        """Frame ``index``, converted (RGB ``uint8`` by default)."""
        target = int(index)
        if not 0 <= target < self.n_total:
            raise ValueError(f"frame index {target} is outside {self.path} "
                             f"({self.n_total} frames)")
        if target < self._pos or target - self._pos > self.seek_gap:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, target)
            self._pos = target
        while self._pos < target:
            if not self._cap.grab():
                raise SampleError("corrupt_video", self.path, f"frame {self._pos} of "
                                  f"{self.n_total} failed to decode (truncated or damaged "
                                  "stream)", self._pos)
            self._pos += 1
        ok, frame = self._cap.read()
        self._pos += 1
        if not ok or frame is None:
            raise SampleError("corrupt_video", self.path, f"frame {target} of {self.n_total} "
                              "failed to decode (truncated or damaged stream)", target)
        return self.convert(frame)

    def close(self):
        self._cap.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _iter_video(path, indices: Iterable[int], convert: Callable[[np.ndarray], np.ndarray],
                seek_gap: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    wanted = np.unique(np.asarray(list(indices), dtype=np.int64))
    if wanted.size and wanted[0] < 0:
        raise ValueError(f"frame indices must be >= 0, got {int(wanted[0])}")
    with VideoReader(path, convert, seek_gap) as reader:
        if wanted.size and wanted[-1] >= reader.n_total:
            raise ValueError(f"frame index {int(wanted[-1])} is past the end of {reader.path} "
                             f"({reader.n_total} frames)")
        for target in wanted.tolist():
            yield target, reader.read(target)


def _bgr_to_rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _binarise(image: np.ndarray) -> np.ndarray:
    """{0, 1} uint8 mask: 1 where any colour channel is above half its range."""
    if image.ndim == 3:
        image = image[..., :3].max(axis=2)
    half = np.iinfo(image.dtype).max // 2 if image.dtype.kind in "ui" else 0.5
    return (image > half).astype(np.uint8)


def read_video_frames(path, indices: Iterable[int],
                      seek_gap: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, rgb)`` for the frames ``indices`` of a video, in increasing order.

    Parameters
    ----------
    path : str or Path
        Video file.
    indices : iterable of int
        Frame indices (sorted and de-duplicated here), each in ``[0, frame count)``.
    seek_gap : int, optional
        Seek instead of decoding forward over gaps longer than this; default :data:`SEEK_GAP`.

    Yields
    ------
    (int, ndarray H x W x 3 uint8 RGB)

    Raises
    ------
    SampleError
        ``corrupt_video`` when the file does not open, reports 0 frames, or a frame fails
        to decode; in the last case ``frame_index`` names the frame, and frames already
        yielded stay usable.
    ValueError
        An index is negative or past the reported frame count.
    """
    return _iter_video(path, indices, _bgr_to_rgb, seek_gap)


def read_mask_frames(path, indices: Iterable[int],
                     seek_gap: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Like :func:`read_video_frames` for a mask video: yields ``(index, H x W uint8 {0, 1})``.

    A pixel is 1 where the maximum over its colour channels is above 127 (FF++ mask videos
    are compressed grey-ish videos, so values near 0 and 255 are both noisy).
    """
    return _iter_video(path, indices, _binarise, seek_gap)


def _decode_file(path, flags: int, cause: str) -> np.ndarray:
    path = os.fspath(path)
    # read + imdecode instead of cv2.imread: imread cannot open non-ASCII paths on Windows
    buffer = np.frombuffer(_read_head(path, -1, missing=cause), dtype=np.uint8)
    image = None
    if buffer.size:
        try:
            image = cv2.imdecode(buffer, flags)
        except cv2.error:
            image = None
    if image is None:
        problem = _content_problem(buffer[:512].tobytes())
        raise SampleError(cause, path, f"not a decodable image: {problem}" if problem else
                          "not a decodable image (truncated or an unsupported format)")
    return image


def read_image(path) -> np.ndarray:
    """Read an image file as H x W x 3 uint8 RGB.

    Grey images are replicated to 3 channels, alpha is dropped, 16-bit images are scaled to
    8 bits and the EXIF orientation is applied (``cv2.IMREAD_COLOR``). Raises
    ``SampleError("unreadable_image")`` when the file cannot be decoded.
    """
    return cv2.cvtColor(_decode_file(path, cv2.IMREAD_COLOR, "unreadable_image"),
                        cv2.COLOR_BGR2RGB)


def read_mask_image(path) -> np.ndarray:
    """Read a mask image as H x W uint8 in {0, 1} (max over colour channels above half range).

    Raises ``SampleError("unreadable_image")`` when the file cannot be decoded.
    """
    return _binarise(_decode_file(path, cv2.IMREAD_UNCHANGED, "unreadable_image"))


def _time_readers(root, frames=(8, 32), gaps=(0, 64, 250, 10**9)) -> dict:
    """ms per video to read ``frames`` sampled frames with each seek gap (0: seek always,
    10**9: never seek). Used to choose :data:`SEEK_GAP`."""
    import glob
    import time

    cv2.setNumThreads(1)
    videos = sorted(glob.glob(os.path.join(os.fspath(root), "**", "*.mp4"), recursive=True))
    results = {}
    for n in frames:
        for gap in gaps:
            times = []
            for video in videos:
                idx = sample_frame_indices(video_frame_count(video), n)
                start = time.perf_counter()
                for _ in read_video_frames(video, idx, seek_gap=gap):
                    pass
                times.append(1000 * (time.perf_counter() - start))
            results[(n, gap)] = float(np.median(times))
            print(f"{n:3d} frames  seek_gap {gap:>10d}: median {results[(n, gap)]:7.1f} ms/video")
    return results


if __name__ == "__main__":
    import sys

    _time_readers(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/ffpp")
