"""What a source file is, apart from its pixels: the facts the confound audit checks.

A detector should not be able to tell reals from fakes by the size, encoding or bitrate of
their files, or by the size of the face in the frame. :func:`file_metadata` reads those
facts once per source (no decoding beyond the file header), :func:`face_box_size` per
frame; ``pipelines.extract`` stores them under ``/source_meta`` (see
``stores.schema.SOURCE_META_FIELDS``) and ``python -m fusion.audit`` trains a model on them.

Example
-------
>>> jpeg_quality_from_table([16, 11, 10, 16, 24, 40, 51, 61] + [99] * 56) < 60
True
"""
from __future__ import annotations

import math
import os

import numpy as np

#: The IJG (libjpeg) luminance quantisation table at quality 50, in natural order.
IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float64)


def jpeg_quality_from_table(table) -> float:
    """IJG quality (1-100) whose luminance table scaling best matches ``table`` (64 values).

    libjpeg scales the base table by ``S = 5000 / q`` (q < 50) or ``200 - 2q`` (q >= 50)
    percent; the mean ratio to the base table gives S, hence q. Tables of other encoders
    get the quality of the IJG table of the same mean ratio.
    """
    t = np.asarray(list(table), np.float64).ravel()
    if t.size != 64:
        raise ValueError(f"a JPEG quantisation table has 64 entries, got {t.size}")
    scale = 100.0 * float(np.mean(t / IJG_LUMINANCE))
    q = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return float(np.clip(q, 1.0, 100.0))


def image_file_metadata(path) -> dict:
    """Width, height, bytes and JPEG quantisation facts of an image file (header only)."""
    from PIL import Image
    out = {"file_bytes": float(os.path.getsize(path))}
    with Image.open(path) as im:
        out["image_width"], out["image_height"] = float(im.width), float(im.height)
        is_jpeg = im.format == "JPEG"
        out["is_jpeg"] = float(is_jpeg)
        tables = getattr(im, "quantization", None) if is_jpeg else None
        if tables:
            lum = tables[min(tables)]
            out["jpeg_quality"] = jpeg_quality_from_table(lum)
            out["jpeg_qtable_mean"] = float(np.mean(list(lum)))
    return out


def video_file_metadata(path) -> dict:
    """Width, height, bytes and mean bitrate (bit/s: bytes * 8 / duration) of a video file."""
    import cv2
    out = {"file_bytes": float(os.path.getsize(path)), "is_jpeg": 0.0}
    cap = cv2.VideoCapture(str(path))
    try:
        width, height = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
        fps, count = cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        cap.release()
    if width > 0 and height > 0:
        out["image_width"], out["image_height"] = float(width), float(height)
    if fps > 0 and count > 0:
        out["video_bitrate"] = out["file_bytes"] * 8.0 * fps / count
    return out


def file_metadata(source) -> dict:
    """:func:`image_file_metadata` or :func:`video_file_metadata` of a ``Source``; ``{}`` when
    the file cannot be read that way (a demo source, an unreadable header)."""
    if source.kind not in ("image", "video") or not os.path.isfile(source.path):
        return {}
    try:
        reader = image_file_metadata if source.kind == "image" else video_file_metadata
        return reader(source.path)
    except Exception:  # noqa: BLE001 -- metadata must never cost a sample; the audit sees NaN
        return {}


def face_box_size(box) -> dict:
    """``{"face_width", "face_height"}`` in source pixels of an ``(x0, y0, x1, y1)`` box (or {})."""
    if box is None:
        return {}
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, np.float64).ravel()[:4])
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        return {}
    return {"face_width": x1 - x0, "face_height": y1 - y0}
