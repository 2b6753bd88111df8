"""H.264 round trips and social-platform rescale chains for training crops and clips.

Deepfakes in the wild reach a detector through a video codec: FF++ ships its videos at
H.264 CRF 23 (``c23``) and CRF 40 (``c40``), and platforms rescale and re-encode what is
uploaded. JPEG re-compression alone does not teach a model what that does to blending
traces. This module encodes with the real codec, libx264 through PyAV (``av``, in memory,
no ffmpeg binary), and decodes with FFmpeg's H.264 decoder:

* :func:`h264_roundtrip` -- a clip (T x H x W x 3 uint8, T >= 1) or one frame through H.264
  at a CRF (or an average bitrate), 4:2:0 chroma, decoded back to the same shape. A clip is
  one stream (one I frame, then P/B frames predicted from it, as in a video file); a single
  frame is intra-coded. The encoder runs single-threaded, so the output is a function of
  the inputs alone (bit-identical across calls and processes). x264's SIMD code is on for
  single frames and off for clips (``simd``; see :data:`SIMD_NOTE`).
* :func:`rescale_chain` -- downscale, optionally re-encode at that size, upscale back: what
  a platform's transcode ladder does to a face.

A temporal-clip augmentation should call :func:`h264_roundtrip` once per *clip* (all its
frames in display order), not once per frame: inter-frame prediction, and the flicker of
its errors from frame to frame, only exist within one stream.

Colour: RGB <-> Y'CbCr 4:2:0 with OpenCV's BT.601 limited-range conversion (the one FFmpeg
applies to such video by default; it matches ``swscale`` to 1 grey level and is ~10 x
faster for small crops).

Example
-------
>>> import numpy as np
>>> clip = np.random.default_rng(0).integers(0, 256, (3, 33, 47, 3), dtype=np.uint8)
>>> out = h264_roundtrip(clip, crf=40)
>>> out.shape, out.dtype, bool((out != clip).any())
((3, 33, 47, 3), dtype('uint8'), True)
"""
from __future__ import annotations

import io

import cv2
import numpy as np

#: How to get the codec when it is missing.
INSTALL_HINT = "pip install av==18.1.0"
#: libx264 speed presets (slower: better quality per bit; the CRF scale is the same).
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
           "slower", "veryslow")
#: Interpolations :func:`rescale_chain` accepts, by name.
INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR,
                  "cubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA,
                  "lanczos": cv2.INTER_LANCZOS4}
#: Smallest side the encoder is given (smaller inputs are edge-padded, then cropped back).
MIN_SIDE = 16
#: Why ``simd`` defaults to on for one frame and off for a clip.
SIMD_NOTE = (
    "With x264's SIMD code (its assembly), the P/B frames of a clip encoded just after a "
    "clip of another size came out different now and then for identical calls (it reads "
    "bytes it never wrote); without it (asm=0) no stream differed in about 1,500 repeated "
    "calls. A single frame is one intra-coded I frame: with SIMD, 3,000 repeated calls over "
    "six sizes (1,500 in each of two processes), and three processes encoding the same 60 "
    "crops in different orders with clips in between, gave no differing frame, at half the "
    "CPU time of asm=0 at 384 px. SIMD and plain C choose some coding modes differently, so "
    "the two give "
    "different (equally valid) streams: a training run records which it used.")


def require_av():
    """The ``av`` module, with libx264; ImportError naming the pip install otherwise."""
    try:
        import av
    except ImportError:
        raise ImportError(f"the h264/rescale augmentations need PyAV: {INSTALL_HINT}") from None
    if "libx264" not in av.codecs_available:
        raise ImportError("the h264/rescale augmentations need PyAV built with libx264 "
                          f"(this av {av.__version__} has no libx264 encoder): {INSTALL_HINT}")
    return av


def _as_clip(frames) -> tuple[np.ndarray, bool]:
    arr = np.asarray(frames)
    single = arr.ndim == 3
    clip = arr[None] if single else arr
    if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8:
        raise ValueError("h264_roundtrip: expected uint8 frames T x H x W x 3 (or one "
                         f"H x W x 3 frame), got {arr.dtype} of shape {arr.shape}")
    if clip.shape[0] < 1 or clip.shape[1] < 1 or clip.shape[2] < 1:
        raise ValueError(f"h264_roundtrip: empty clip of shape {arr.shape}")
    return clip, single


def _yuv420_frame(av, i420: np.ndarray, w: int, h: int):
    """A yuv420p ``av.VideoFrame`` of an I420 array (``h * 3 / 2`` x ``w``) whose planes'
    row padding is zero: x264 reads past the row ends, and padding left as it was allocated
    made identical calls give different streams now and then."""
    frame = av.VideoFrame(w, h, "yuv420p")
    flat, c = i420.reshape(-1), (h // 2) * (w // 2)
    planes = (flat[:h * w].reshape(h, w), flat[h * w:h * w + c].reshape(h // 2, w // 2),
              flat[h * w + c:h * w + 2 * c].reshape(h // 2, w // 2))
    for plane, data in zip(frame.planes, planes):
        rows = np.zeros((data.shape[0], plane.line_size), np.uint8)
        rows[:, :data.shape[1]] = data
        plane.update(rows)
    return frame


def h264_roundtrip(frames, crf: float = 23, *, bitrate_kbps: float | None = None,
                   preset: str = "medium", fps: int = 25, simd: bool | None = None) -> np.ndarray:
    """Encode frames with libx264 and decode them back (in memory, single-threaded).

    Parameters
    ----------
    frames : array, T x H x W x 3 uint8 RGB (a clip, in display order) or H x W x 3
        Any size: odd or small sides are edge-padded to an even size of at least
        :data:`MIN_SIDE` for the encoder and cropped back.
    crf : float
        Constant rate factor, 0 (lossless luma) to 51 (worst). FF++ c23 is CRF 23, c40 is
        CRF 40. x264 codes I frames about 3 QP finer than P frames (ipratio 1.4), so a single
        frame at CRF c looks like the P frames of a clip at about c - 3.
    bitrate_kbps : float, optional
        Average-bitrate mode instead of ``crf`` (kbit/s at ``fps``): a platform-like fixed
        budget. Ignored when None (default).
    preset : str
        libx264 preset (:data:`PRESETS`; default ``medium``, FFmpeg's and so FF++'s).
    fps : int
        Frame rate written into the stream (the rate control's clock in bitrate mode).
    simd : bool, optional
        Let x264 use its SIMD code. None (default): for a single frame only, where it is
        deterministic and twice as fast; a clip is encoded without it (:data:`SIMD_NOTE`).

    Returns
    -------
    numpy.ndarray
        The decoded frames, the shape of ``frames``, uint8.

    Raises
    ------
    ValueError
        For frames that are not uint8 RGB or an out-of-range ``crf``/``bitrate_kbps``/``preset``.
    ImportError
        When PyAV (with libx264) is not installed.
    """
    clip, single = _as_clip(frames)
    if bitrate_kbps is None and not 0 <= crf <= 51:
        raise ValueError(f"h264_roundtrip: crf must be in [0, 51], got {crf}")
    if bitrate_kbps is not None and not bitrate_kbps > 0:
        raise ValueError(f"h264_roundtrip: bitrate_kbps must be > 0, got {bitrate_kbps}")
    if preset not in PRESETS:
        raise ValueError(f"h264_roundtrip: preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    av = require_av()
    t, h, w, _ = clip.shape
    if simd is None:
        simd = t == 1
    ph, pw = max(MIN_SIDE, h + h % 2), max(MIN_SIDE, w + w % 2)
    if (ph, pw) != (h, w):
        clip = np.pad(clip, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")

    # Through an in-memory raw H.264 stream: the demuxer hands the decoder properly padded
    # packets (packets rebuilt from bytes, or kept from the encoder, decoded differently now
    # and then: the decoder reads past a packet's end)
    buf = io.BytesIO()
    with av.open(buf, "w", format="h264") as out:
        enc = out.add_stream("libx264", rate=int(fps))
        enc.width, enc.height, enc.pix_fmt = pw, ph, "yuv420p"
        enc.thread_count = 1  # one thread: no slice/frame-thread races
        # Determinism: no lookahead thread, and no SIMD (asm=0) for clips (SIMD_NOTE)
        params = "threads=1:lookahead-threads=1:sync-lookahead=0" + ("" if simd else ":asm=0")
        options = {"preset": preset, "threads": "1", "x264-params": params}
        if bitrate_kbps is None:
            options["crf"] = f"{float(crf):g}"
        else:
            enc.bit_rate = int(round(bitrate_kbps * 1000))
        enc.options = options
        for i, rgb in enumerate(clip):
            frame = _yuv420_frame(av, cv2.cvtColor(np.ascontiguousarray(rgb),
                                                   cv2.COLOR_RGB2YUV_I420), pw, ph)
            frame.pts = i
            out.mux(enc.encode(frame))
        out.mux(enc.encode(None))
    buf.seek(0)
    with av.open(buf, "r", format="h264") as stream:
        stream.streams.video[0].thread_count = 1
        # copied out of each frame at once: to_ndarray may be a view of a reused buffer
        decoded = [f.to_ndarray(format="yuv420p").copy() for f in stream.decode(video=0)]
    decoded = [cv2.cvtColor(f, cv2.COLOR_YUV2RGB_I420) for f in decoded]
    if len(decoded) != t:
        raise RuntimeError(f"h264_roundtrip: {t} frames encoded but {len(decoded)} decoded")
    out = np.stack(decoded)[:, :h, :w]
    return np.ascontiguousarray(out[0] if single else out)


def rescale_chain(image: np.ndarray, scale: float, down: str = "area", up: str = "linear",
                  crf: float | None = None, preset: str = "medium",
                  simd: bool | None = None) -> np.ndarray:
    """Downscale ``image`` by ``scale``, optionally H.264-encode it at that size, upscale back.

    Parameters
    ----------
    image : array, H x W x 3 uint8 (or a clip T x H x W x 3: every frame alike, one stream)
    scale : float
        Side of the small copy as a fraction of the input's, in (0, 1]; at least 8 px.
    down, up : str
        Interpolations (:data:`INTERPOLATIONS`) of the two resizes.
    crf : float, optional
        Re-encode the small copy with :func:`h264_roundtrip` at this CRF; None: no codec.
    preset, simd
        Passed to :func:`h264_roundtrip`.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as ``image``.
    """
    if not 0 < scale <= 1:
        raise ValueError(f"rescale_chain: scale must be in (0, 1], got {scale}")
    for name in (down, up):
        if name not in INTERPOLATIONS:
            raise ValueError(f"rescale_chain: interpolation must be one of "
                             f"{', '.join(INTERPOLATIONS)}, got {name!r}")
    clip, single = _as_clip(image)
    h, w = clip.shape[1:3]
    small_size = (max(8, round(w * scale)), max(8, round(h * scale)))
    small = np.stack([cv2.resize(f, small_size, interpolation=INTERPOLATIONS[down]) for f in clip])
    if crf is not None:
        small = h264_roundtrip(small, crf, preset=preset, simd=simd)
    out = np.stack([cv2.resize(f, (w, h), interpolation=INTERPOLATIONS[up]) for f in small])
    return out[0] if single else out
