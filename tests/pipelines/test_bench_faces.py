"""Tests for pipelines.bench_faces: portrait test videos and the three-path face benchmark."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from skimage import data

from pipelines import bench_faces
from pipelines.frames import read_video_frames, video_frame_count


@pytest.fixture(scope="module")
def portrait_video(tmp_path_factory):
    folder = tmp_path_factory.mktemp("portrait")
    src = folder / "astronaut.mp4"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 25, (512, 512))
    for shift in range(4):
        writer.write(cv2.cvtColor(np.roll(data.astronaut(), 4 * shift, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    return bench_faces.make_portrait_video(src, folder / "portrait.mp4", face_px=130)


def test_portrait_video_is_1080x1920_with_a_130_px_face(portrait_video):
    assert video_frame_count(portrait_video) == 4
    _, frame = next(iter(read_video_frames(portrait_video, [0])))
    assert frame.shape == (1920, 1080, 3)
    face = bench_faces.create_detector("dlib-hog-full").detect(frame)[0]
    assert 110 < face[2] - face[0] < 150
    # textured everywhere: no flat background for the detector to skip
    corner = frame[:200, :200].astype(float)
    assert corner.std() > 10


def test_bench_reports_recall_of_fast_and_cascade_against_the_reference(portrait_video, tmp_path):
    lines = []
    result = bench_faces.bench_videos([portrait_video], n_frames=2, names=["portrait"],
                                      progress=lines.append)
    row, summary = result["videos"][0], result["summary"]
    assert row["frames"] == 2 and row["reference_found"] == [0, 3]
    assert row["fast_found"] == [] and row["cascade_found"] == [0, 3]
    assert summary["fast_recall"] == 0.0 and summary["cascade_recall"] == 1.0
    assert all(row[f"{p}_ms"] > 0 for p in bench_faces.PATHS)
    # the fast stage ran on both frames (tracking never starts); a later stage found the face
    assert summary["stages"]["fast"]["calls"] >= 1
    assert set(summary["stages"]) - {"track", "fast"}
    assert any("recall of the reference's 2 frames: fast 0.0%, cascade 100.0%" in line
               for line in lines)
    json.dumps(result)  # the --json output is plain JSON
    png = bench_faces.plot_result(result, tmp_path / "faces.png")
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] > 100 and image.std() > 5


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "dfdc"], "--dataset must be ff++ or folder"),
    (["--frames", "0"], "--frames must be a positive integer"),
    (["--fallback", "nope"], "--fallback must be none or one of"),
    (["--root", "/does/not/exist"], "--root /does/not/exist: no such folder"),
])
def test_wrong_flags_give_one_line(argv, message, capsys):
    assert bench_faces.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
