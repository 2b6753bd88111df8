"""From a :class:`~pipelines.samples.Source` to aligned crops: frames, faces, masks.

:func:`load_source` is what a worker runs per video or image. It returns the aligned
crops of the frames that worked and one error row per frame or source that did not, so a
bad frame never costs the rest of its video.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pipelines.errors import SampleError
from pipelines.samples import Source


@dataclass(frozen=True)
class IngestConfig:
    """How frames become crops (part of a store's identity: see ``run`` attributes)."""

    frames: int = 32
    clip_len: int = 1
    size: int = 256
    margin: float = 0.3
    align: str = "face"
    detector: str = "dlib-hog"
    min_face: int = 40
    diff_masks: bool = True
    diff_threshold: int = 20


@dataclass
class SourceCrops:
    """The crops of one source, in frame order, plus its failures."""

    records: list = field(default_factory=list)
    crops: list = field(default_factory=list)
    landmarks: list = field(default_factory=list)
    masks: list = field(default_factory=list)
    mask_valid: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    source_meta: list = field(default_factory=list)  # per record: pipelines.source_meta facts


def error_row(exc: SampleError, source: Source) -> dict:
    return {"source_path": exc.path, "video_id": source.video_id,
            "frame_index": exc.frame_index, "cause": exc.cause, "message": exc.message}


_ALIGNERS: dict = {}


def _aligner(config: IngestConfig):
    """One FaceAligner per process and configuration (the landmark model loads once)."""
    from pipelines.faces import FaceAligner
    key = (config.detector, config.size, config.margin, config.min_face)
    if key not in _ALIGNERS:
        _ALIGNERS[key] = FaceAligner(detector=config.detector, size=config.size,
                                     margin=config.margin, min_face=config.min_face)
    return _ALIGNERS[key]


def difference_mask(fake: np.ndarray, real: np.ndarray, threshold: int = 20) -> np.ndarray:
    """Approximate manipulation mask of an aligned fake/real crop pair.

    The per-pixel maximum absolute channel difference is blurred, thresholded at
    ``threshold`` grey levels and cleaned with a morphological opening then closing (the
    compression noise of both videos otherwise leaves speckle), as is common practice for
    FaceForensics++ pairs without mask videos.

    Returns
    -------
    ndarray, H x W, uint8 in {0, 1}
    """
    diff = np.abs(fake.astype(np.int16) - real.astype(np.int16)).max(axis=-1).astype(np.uint8)
    diff = cv2.GaussianBlur(diff, (5, 5), 0)
    mask = (diff > threshold).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel, iterations=2)


def _frames_of(source: Source, config: IngestConfig):
    """``(frame_indices, iterator of (index, rgb))`` of a video or image source."""
    from pipelines import frames as fr
    if source.kind == "image":
        return [0], iter([(0, fr.read_image(source.path))])
    total = fr.video_frame_count(source.path)
    indices = fr.sample_frame_indices(total, config.frames, config.clip_len)
    return list(indices), fr.read_video_frames(source.path, indices)


def _source_masks(source: Source, indices, out: SourceCrops):
    """Mask frames aligned with ``indices`` (dict index -> HxW mask), or None."""
    from pipelines import frames as fr
    if source.mask_path is None:
        return None
    try:
        if source.kind == "image":
            return {0: fr.read_mask_image(source.mask_path)}
        return dict(fr.read_mask_frames(source.mask_path, indices))
    except SampleError as exc:
        out.errors.append(error_row(SampleError("missing_mask", source.mask_path,
                                                f"mask unreadable: {exc.message}"), source))
        return None


def _real_frames(source: Source, indices, config: IngestConfig, out: SourceCrops):
    """The paired real video's frames at ``indices``, for difference masks, or None."""
    from pipelines import frames as fr
    if not (config.diff_masks and source.label == 1 and source.real_path and source.mask_path is None
            and source.kind == "video"):
        return None
    try:
        return dict(fr.read_video_frames(source.real_path, indices))
    except SampleError as exc:
        out.errors.append(error_row(SampleError("missing_mask", source.real_path,
                                                f"paired real video unreadable: {exc.message}"), source))
        return None


def load_source(source: Source, config: IngestConfig) -> SourceCrops:
    """Decode, detect, align one source; masks follow the identical transform.

    Masks come, in order of preference, from the source's mask file, from the difference
    with its paired real video (FF++ fakes, ``config.diff_masks``), or are all-zero for
    reals. A fake with neither has ``mask_valid`` False: it contributes no mask loss.
    """
    from pipelines import faces
    out = SourceCrops()
    if source.kind == "demo":
        from pipelines.demo import render_demo_source
        crop, mask = render_demo_source(source, size=config.size)
        out.records.append(source.sample_record(0))
        out.source_meta.append({})
        out.crops.append(crop)
        out.landmarks.append(np.full((68, 2), np.nan, np.float32))
        out.masks.append(np.zeros(crop.shape[:2], np.uint8) if mask is None else mask)
        out.mask_valid.append(True)
        return out
    try:
        indices, frames = _frames_of(source, config)
    except SampleError as exc:
        out.errors.append(error_row(exc, source))
        return out
    masks = _source_masks(source, indices, out)
    reals = _real_frames(source, indices, config, out)
    from pipelines.source_meta import face_box_size, file_metadata
    file_meta = file_metadata(source)
    prev_box = None
    try:
        for index, rgb in frames:
            try:
                if config.align == "face":
                    face = _aligner(config).process(rgb, prev_box=prev_box, path=source.path,
                                                    frame_index=index)
                    prev_box, M = face.box, face.M
                    crop, lm = face.crop, face.landmarks
                    box_meta = face_box_size(face.box)
                else:
                    box_meta = {}
                    crop = faces.resize_or_center_crop(rgb, config.size)
                    M = faces.center_crop_matrix(rgb.shape[0], rgb.shape[1], config.size)
                    lm = _known_landmarks(source, M)
            except SampleError as exc:
                out.errors.append(error_row(exc, source))
                continue
            mask, valid = _crop_mask(source, index, M, crop, masks, reals, config, out)
            out.records.append(source.sample_record(index))
            out.source_meta.append({**file_meta, **box_meta})
            out.crops.append(crop)
            out.landmarks.append(np.asarray(lm, np.float32))
            out.masks.append(mask)
            out.mask_valid.append(valid)
    except SampleError as exc:  # decoding broke mid-video: keep the frames already read
        out.errors.append(error_row(exc, source))
    return out


def _known_landmarks(source: Source, M) -> np.ndarray:
    """Landmarks a source carries (editbench manifests), moved into the crop; else NaN."""
    from pipelines import faces
    known = dict(source.params).get("landmarks") if source.params else None
    if known is None or len(known) != 136:
        return np.full((68, 2), np.nan, np.float32)
    return faces.transform_points(np.asarray(known, np.float64).reshape(68, 2), M)


def _crop_mask(source, index, M, crop, masks, reals, config, out):
    from pipelines import faces
    size = crop.shape[0]
    if source.label == 0:
        return np.zeros((size, size), np.uint8), True
    if masks is not None:
        if index in masks:
            return faces.warp_mask(masks[index], M, size), True
        out.errors.append(error_row(SampleError("missing_mask", source.mask_path,
                                                "mask video has no such frame", index), source))
    elif reals is not None and index in reals:
        real_crop = faces.warp_crop(reals[index], M, size)
        return difference_mask(crop, real_crop, config.diff_threshold), True
    return np.zeros((size, size), np.uint8), False
