"""A hostile tester's inputs against the fusion commands (``fusion.predict``, ``fusion.train``,
``fusion.cascade`` ...): each failure is one clear line naming the file or flag and its real
cause, with a non-zero exit where nothing was done. The pipelines-side cases are in
``tests/pipelines/test_bad_inputs.py``.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

REPO = Path(__file__).resolve().parents[2]


# --- inputs that cannot be scored, wrong causes ---------------------------------------------
def _lines(err: str) -> list[str]:
    """stderr's lines, less the model's own training warnings that predict repeats first."""
    return [line for line in err.strip().splitlines() if not line.startswith("warning: model ")]


@pytest.fixture(scope="module")
def scoring_runs(tmp_path_factory):
    """``(demo store, fusion.train run, the same run reading faces as --align face would)``.

    The demo store has no faces to align, so the face-aligned model is the same head with
    ``align: face`` in its recorded ingest settings: predict then detects faces first.
    """
    from fusion.train import main as train_main
    from pipelines.extract import main as extract_main
    root = tmp_path_factory.mktemp("scoring")
    store = root / "demo.h5"
    assert extract_main(["--out", str(store), "--workers", "0", "--features", "lbp,fft",
                         "--no-progress"]) == 0
    run = root / "run"
    assert train_main(["--store", str(store), "--features", "lbp,fft", "--out", str(run),
                       "--bootstrap", "0", "--no-plots"]) == 0
    face_run = root / "face_run"
    shutil.copytree(run, face_run)
    model_json = face_run / "model" / "model.json"
    config = json.loads(model_json.read_text())
    config["run"]["ingest"]["align"] = "face"
    model_json.write_text(json.dumps(config))
    return store, run, face_run


@pytest.fixture(scope="module")
def unscorable(tmp_path_factory):
    """Files fusion.predict cannot score with a face model, and the words naming the cause."""
    root = tmp_path_factory.mktemp("unscorable")
    (root / "text.mp4").write_text("this is not a video\n" * 20)
    cv2.imwrite(str(root / "dot.png"), np.full((1, 1, 3), 200, np.uint8))
    cv2.imwrite(str(root / "coffee.png"), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    (root / "zero.jpg").write_bytes(b"")
    cv2.imwrite(str(root / "astronaut.png"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return root, {"text.mp4": "the file holds text, not a video",
                  "dot.png": "the 1x1 image is too small to hold a face",
                  "coffee.png": "found no face in the 600x400 image",
                  "zero.jpg": "the file is empty (0 bytes)"}


@pytest.mark.parametrize("name", ["text.mp4", "dot.png", "coffee.png", "zero.jpg"])
def test_predict_names_an_unscorable_file_and_exits_1(name, scoring_runs, unscorable, capfd):
    from fusion.predict import main as predict_main
    _, _, face_run = scoring_runs
    root, words = unscorable
    assert predict_main(["--model", str(face_run), str(root / name)]) == 1
    out, err = capfd.readouterr()
    [line] = _lines(err)
    assert line.startswith(f"{root / name}: not scored: ") and words[name] in line, line
    assert out == ""


def test_predict_scoring_nothing_of_several_files_exits_1_listing_each(scoring_runs, unscorable,
                                                                         capfd):
    from fusion.predict import main as predict_main
    _, _, face_run = scoring_runs
    root, words = unscorable
    assert predict_main(["--model", str(face_run), *(str(root / n) for n in words)]) == 1
    lines = _lines(capfd.readouterr().err)
    assert len(lines) == len(words) + 1
    for line, (name, cause) in zip(lines, words.items()):
        assert line.startswith(f"{root / name}: not scored: ") and cause in line
    assert lines[-1] == f"python -m fusion.predict: error: none of the {len(words)} files " \
                        "could be scored"


def test_predict_with_some_files_scored_exits_0_and_lists_the_others(scoring_runs, unscorable,
                                                                      capfd):
    from fusion.predict import main as predict_main
    _, _, face_run = scoring_runs
    root, _ = unscorable
    assert predict_main(["--model", str(face_run), str(root / "astronaut.png"),
                         str(root / "zero.jpg")]) == 0
    out, err = capfd.readouterr()
    assert out.startswith(f"{root / 'astronaut.png'}: ")
    [line] = _lines(err)
    assert line.startswith(f"{root / 'zero.jpg'}: not scored: ") and "empty (0 bytes)" in line


def test_predict_prints_the_threshold_and_where_it_came_from(scoring_runs, tmp_path, capsys):
    from fusion.predict import main as predict_main
    from fusion.train import saved_threshold
    from fusion.predict import load_model_dir
    _, run, _ = scoring_runs
    image = tmp_path / "flat.png"
    cv2.imwrite(str(image), np.full((64, 64, 3), 120, np.uint8))
    assert predict_main(["--model", str(run), str(image)]) == 0
    line = capsys.readouterr().out.strip()
    head, config = load_model_dir(run)
    cut = float(head.probability(np.array([saved_threshold(head, config["run"])]))[0])
    assert line.startswith(f"{image}: ") , line
    assert f"threshold {cut:.3f} (EER on val)" in line, line


def test_predict_prints_no_raw_ffmpeg_or_opencv_lines(scoring_runs, unscorable):
    _, _, face_run = scoring_runs
    root, words = unscorable
    proc = subprocess.run([sys.executable, "-m", "fusion.predict", "--model", str(face_run),
                           str(root / "text.mp4")], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1
    assert _lines(proc.stderr) == [f"{root / 'text.mp4'}: not scored: {words['text.mp4']}"]
