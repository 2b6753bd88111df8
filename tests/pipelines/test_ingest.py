"""Tests for pipelines.ingest: neighbouring frames for faceless samples, one sample per face."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from skimage import data

from pipelines.extract import main
from pipelines.ingest import IngestConfig, load_source, neighbour_indices
from pipelines.samples import Source
from stores import open_store
from tests.pipelines.test_extract import _write_video as write_video


def _write_video(path, frames):
    write_video(path, frames)
    return path


def _source(path, **kw):
    return Source(path=str(path), dataset="folder", split="train", label=kw.pop("label", 0),
                  method=kw.pop("method", "real"), video_id="real/clip", **kw)


@pytest.fixture(scope="module")
def video_with_faceless_frame(tmp_path_factory):
    """20 frames of the astronaut, except frame 10 (the coffee cup: no face)."""
    frames = [data.astronaut()] * 20
    frames[10] = cv2.resize(data.coffee(), (512, 512))
    return _write_video(tmp_path_factory.mktemp("v") / "clip.mp4", frames)


def test_neighbour_indices_nearest_first_inside_the_video_and_not_taken():
    assert neighbour_indices(10, 2, 20, {0, 10, 19}) == [11, 9, 12, 8]
    assert neighbour_indices(0, 2, 20, {0, 1}) == [2]
    assert neighbour_indices(19, 1, 20, {19, 18}) == []
    assert neighbour_indices(5, 0, 20, {5}) == []


def test_a_faceless_sampled_frame_is_replaced_by_its_neighbour(video_with_faceless_frame):
    config = IngestConfig(frames=3, neighbours=2)  # samples frames 0, 10, 19
    out = load_source(_source(video_with_faceless_frame), config)
    assert out.errors == []
    frames = [(r["requested_frame_index"], r["frame_index"]) for r in out.records]
    assert frames == [(0, 0), (10, 11), (19, 19)]
    assert out.records[1]["sample_id"] == "folder:real/clip:000011"
    # without neighbours the frame is a no_face row and the others stay
    off = load_source(_source(video_with_faceless_frame), IngestConfig(frames=3, neighbours=0))
    assert [r["frame_index"] for r in off.records] == [0, 19]
    assert [(e["cause"], e["frame_index"]) for e in off.errors] == [("no_face", 10)]


def test_a_neighbour_brings_its_own_mask_frame(tmp_path, video_with_faceless_frame):
    masks = [np.zeros((512, 512, 3), np.uint8) for _ in range(20)]
    masks[11][100:300, 150:350] = 255  # only the neighbour's mask frame has an edit
    mask_video = _write_video(tmp_path / "mask.mp4", masks)
    source = _source(video_with_faceless_frame, label=1, method="fake",
                     mask_path=str(mask_video))
    out = load_source(source, IngestConfig(frames=3, neighbours=1))
    assert out.errors == [] and all(out.mask_valid)
    used = [r["frame_index"] for r in out.records]
    assert used == [0, 11, 19]
    assert out.masks[1].sum() > 1000 and out.masks[0].sum() == 0 == out.masks[2].sum()


def test_a_video_without_faces_gives_no_face_rows_after_the_neighbours(tmp_path):
    from pipelines.bench_faces import textured_canvas
    video = _write_video(tmp_path / "empty.mp4",
                         [textured_canvas(480, 640, seed=s) for s in range(12)])
    start = time.perf_counter()
    out = load_source(_source(video), IngestConfig(frames=2, neighbours=2))
    elapsed = time.perf_counter() - start
    assert out.records == []
    assert [(e["cause"], e["frame_index"]) for e in out.errors] == [("no_face", 0), ("no_face", 11)]
    assert "nor in its neighbouring frames 1,2" in out.errors[0]["message"]
    assert "nor in its neighbouring frames 10,9" in out.errors[1]["message"]
    assert elapsed < 60  # 6 frames through the cascade: about 1 s on one free core


def test_wrong_face_mode_is_refused():
    with pytest.raises(ValueError, match="faces must be one of"):
        IngestConfig(faces="every")
    with pytest.raises(ValueError, match="neighbours must be >= 0"):
        IngestConfig(neighbours=-1)


@pytest.mark.shared_data
def test_faces_all_on_the_group_selfie_gives_one_sample_per_face(shared_data, tmp_path, capsys):
    selfie = (shared_data / "realfaces" / "real" / "photos" / "deepface" / "tests" / "unit"
              / "dataset" / "selfie-many-people.jpg")
    if not selfie.is_file():
        pytest.skip(f"group selfie not found at {selfie}")
    root = tmp_path / "data"
    (root / "real").mkdir(parents=True)
    (root / "real" / "selfie.jpg").symlink_to(selfie)
    stores = {}
    for mode in ("largest", "all"):
        stores[mode] = tmp_path / f"{mode}.h5"
        assert main(["--dataset", "folder", "--root", str(root), "--out", str(stores[mode]),
                     "--workers", "0", "--features", "rgb", "--faces", mode,
                     "--no-progress"]) == 0
    with open_store(stores["largest"]) as store:
        assert store.meta["sample_id"].tolist() == ["folder:real/selfie:000000"]
        largest = store.read_map("rgb")[0][0]
    with open_store(stores["all"]) as store:
        meta = store.meta
        crops = store.read_map("rgb")[0]
    # the photo's four whole frontal faces (test_faces checks where they are)
    assert meta["face_index"].tolist() == [0, 1, 2, 3]
    assert meta["sample_id"].tolist() == [f"folder:real/selfie:000000:f{i}" for i in range(4)]
    assert (meta["frame_index"] == 0).all() and (meta["requested_frame_index"] == 0).all()
    np.testing.assert_array_equal(crops[0], largest)  # face 0 is the largest
    assert all(np.abs(crops[i].astype(int) - crops[j]).mean() > 20
               for i in range(4) for j in range(i))  # four different faces
