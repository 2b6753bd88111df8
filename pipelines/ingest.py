"""From a :class:`~pipelines.samples.Source` to aligned crops: frames, faces, masks.

:func:`load_source` is what a worker runs per video or image. It returns the aligned
crops of the frames that worked and one error row per frame or source that did not, so a
bad frame never costs the rest of its video.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np

from base.errors import SampleError
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
    faces: str = "largest"
    neighbours: int = 2
    fallback_detector: str | None = None

    def __post_init__(self):
        if self.faces not in FACE_MODES:
            raise ValueError(f"faces must be one of {FACE_MODES}, got {self.faces!r}")
        if self.neighbours < 0:
            raise ValueError(f"neighbours must be >= 0, got {self.neighbours}")


#: ``IngestConfig.faces``: one sample per frame (its largest face), or one per face.
FACE_MODES = ("largest", "all")


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
    key = (config.detector, config.size, config.margin, config.min_face, config.fallback_detector)
    if key not in _ALIGNERS:
        _ALIGNERS[key] = FaceAligner(detector=config.detector, size=config.size,
                                     margin=config.margin, min_face=config.min_face,
                                     fallback=config.fallback_detector)
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


@contextmanager
def _frames_of(source: Source, config: IngestConfig):
    """``(sampled indices, read(index) -> rgb, frame count)`` of a video or image source.

    Video frames are read through one :class:`~pipelines.frames.VideoReader`, so the
    sampled frames are decoded forward and a neighbouring frame costs at most one seek.
    """
    from pipelines import frames as fr
    if source.kind == "image":
        image = fr.read_image(source.path)
        yield [0], lambda index: image, 1
        return
    with fr.VideoReader(source.path) as reader:
        indices = fr.sample_frame_indices(reader.n_total, config.frames, config.clip_len)
        yield [int(i) for i in indices], reader.read, reader.n_total


def neighbour_indices(index: int, k: int, n_total: int, taken) -> list[int]:
    """Frames tried in place of ``index``: ``index+1, index-1, ..., index+k, index-k``,
    inside ``[0, n_total)`` and not in ``taken`` (frames sampled or used already)."""
    out = []
    for step in range(1, k + 1):
        out += [i for i in (index + step, index - step) if 0 <= i < n_total and i not in taken]
    return out


def _faces_in(rgb, index, prev_box, source: Source, config: IngestConfig) -> list:
    aligner = _aligner(config)
    if config.faces == "all":
        return aligner.process_all(rgb, path=source.path, frame_index=index)
    return [aligner.process(rgb, prev_box=prev_box, path=source.path, frame_index=index)]


def faces_with_neighbours(index, rgb, read, candidates, prev_box, source: Source,
                          config: IngestConfig) -> tuple[list, int]:
    """``(faces, used index)`` of the sampled frame ``index``, or of the first of
    ``candidates`` (its neighbours, read with ``read``) that has a face when it has none.

    Raises the sampled frame's ``SampleError`` when no frame gives a face (a ``no_face``
    message then names the neighbours tried); other causes are raised at once.
    """
    try:
        return _faces_in(rgb, index, prev_box, source, config), index
    except SampleError as exc:
        if exc.cause != "no_face" or not candidates:
            raise
        first = exc
    frames = {i: read(i) for i in sorted(candidates)}  # in order: one seek back at most
    for i in candidates:
        try:
            return _faces_in(frames[i], i, prev_box, source, config), i
        except SampleError:
            continue
    raise SampleError("no_face", first.path, f"{first.message}, nor in its neighbouring "
                      f"frames {','.join(map(str, candidates))}", index)


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
        with _frames_of(source, config) as (indices, read, n_total):
            _align_frames(source, config, indices, read, n_total, out)
    except SampleError as exc:  # no video, or decoding broke mid-video: keep what was read
        out.errors.append(error_row(exc, source))
    return out


def _align_frames(source: Source, config: IngestConfig, indices, read, n_total,
                  out: SourceCrops):
    """Append the crops of the sampled frames to ``out`` (see :func:`load_source`).

    With ``config.align == "face"``, a single-frame sample (``clip_len`` 1) of a video
    whose frame has no face is replaced by its nearest neighbour within
    ``config.neighbours`` frames that has one; the record keeps both indices.
    """
    from pipelines import faces
    masks = _source_masks(source, indices, out)
    reals = _real_frames(source, indices, config, out)
    from pipelines.source_meta import face_box_size, file_metadata
    file_meta = file_metadata(source)
    k = config.neighbours if source.kind == "video" and config.clip_len == 1 else 0
    taken = set(indices)
    prev_box = None
    for index in indices:
        rgb = read(index)
        try:
            if config.align == "face":
                candidates = neighbour_indices(index, k, n_total, taken)
                found, used = faces_with_neighbours(index, rgb, read, candidates, prev_box,
                                                    source, config)
                taken.add(used)
                prev_box = found[0].box
                crops = [(f.crop, f.landmarks, f.M, face_box_size(f.box)) for f in found]
            else:
                if min(rgb.shape[:2]) < config.min_face:  # the whole frame is the face crop
                    raise SampleError("face_too_small", source.path,
                                      f"the {rgb.shape[1]}x{rgb.shape[0]} image is smaller than "
                                      f"min_face={config.min_face} px, too small to be a face "
                                      "crop (--align none)", index)
                crop = faces.resize_or_center_crop(rgb, config.size)
                M = faces.center_crop_matrix(rgb.shape[0], rgb.shape[1], config.size)
                crops, used = [(crop, _known_landmarks(source, M), M, {})], index
        except SampleError as exc:
            out.errors.append(error_row(exc, source))
            continue
        if used != index:
            _add_frame(source, used, masks, reals, out)
        for face_index, (crop, lm, M, box_meta) in enumerate(crops):
            mask, valid = _crop_mask(source, used, M, crop, masks, reals, config, out)
            out.records.append(source.sample_record(
                used, requested_frame_index=index,
                face_index=face_index if config.faces == "all" else None))
            out.source_meta.append({**file_meta, **box_meta})
            out.crops.append(crop)
            out.landmarks.append(np.asarray(lm, np.float32))
            out.masks.append(mask)
            out.mask_valid.append(valid)


def _add_frame(source: Source, index: int, masks, reals, out: SourceCrops):
    """Read frame ``index`` of the mask video and of the paired real video into ``masks``
    and ``reals`` (dicts, or None when the source has none): a neighbour was used."""
    from pipelines import frames as fr
    for frames, path, read in ((masks, source.mask_path, fr.read_mask_frames),
                               (reals, source.real_path, fr.read_video_frames)):
        if frames is None or index in frames:
            continue
        try:
            frames.update(read(path, [index]))
        except (SampleError, ValueError) as exc:
            out.errors.append(error_row(SampleError(
                "missing_mask", path, f"frame {index} unreadable: {exc}", index), source))


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
