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

from tests.fusion.test_predict import demo_run  # noqa: F401 (a fixture: store and run)

REPO = Path(__file__).resolve().parents[2]


# --- inputs that cannot be scored, wrong causes ---------------------------------------------
def _lines(err: str) -> list[str]:
    """stderr's lines, less the model's own training warnings that predict repeats first."""
    return [line for line in err.strip().splitlines() if not line.startswith("warning: model ")]


@pytest.fixture(scope="module")
def scoring_runs(demo_run):
    """``(demo store, fusion.train run, the same run reading faces as --align face would)``.

    The demo store has no faces to align, so the face-aligned model is the same head with
    ``align: face`` in its recorded ingest settings: predict then detects faces first.
    """
    root, run = demo_run
    face_run = root / "face_run"
    shutil.copytree(run, face_run)
    model_json = face_run / "model" / "model.json"
    config = json.loads(model_json.read_text())
    config["run"]["ingest"]["align"] = "face"
    model_json.write_text(json.dumps(config))
    return root / "demo.h5", run, face_run


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


def test_a_directory_given_as_a_file_is_named_as_such(scoring_runs, tmp_path, capsys):
    from fusion.predict import main as predict_main
    from fusion.train import main as train_main
    from stores.info import main as info_main
    store, run, _ = scoring_runs
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    with pytest.raises(SystemExit) as exit_info:  # --config is read while parsing
        train_main(["--config", str(folder)])
    assert exit_info.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert f"--config {folder}: is a directory, expected a file" in line
    assert predict_main(["--model", str(run), str(folder)]) == 2
    assert f"{folder}: is a directory, expected a file" in _one_line(capsys.readouterr().err)
    assert info_main([str(folder)]) == 2
    assert f"{folder}: is a directory, expected a file" in _one_line(capsys.readouterr().err)
    assert train_main(["--store", str(folder), "--features", "lbp", "--out",
                       str(tmp_path / "r")]) == 2
    assert f"--store {folder}: is a directory, expected a file" in \
        _one_line(capsys.readouterr().err)


def _one_line(err: str) -> str:
    lines = _lines(err)
    assert len(lines) == 1, err
    return lines[0]


def test_a_fusion_train_run_given_to_the_cascade_is_named_as_such(scoring_runs, capsys):
    from fusion.cascade.__main__ import main as cascade_main
    store, run, _ = scoring_runs
    for command in (["eval", "--n-boot", "0"], ["predict"]):
        out = run.parent / f"cascade_{command[0]}"
        assert cascade_main([*command, "--run", str(run), "--store", str(store), "--out",
                             str(out), "--device", "cpu"]) == 2
        line = _one_line(capsys.readouterr().err)
        assert f"--run {run}: this is a fusion.train run, not a cascade run; use " \
               f"python -m fusion.evaluate or python -m fusion.predict --model {run}" in line
        assert "format" not in line and "retrain" not in line and not out.exists()


@pytest.fixture(scope="module")
def cascade_run(tmp_path_factory):
    """A one-step cascade run on a small synthetic store: ``(store, run)``."""
    import torch
    from fusion.cascade.data import write_synthetic_store
    from fusion.cascade.train import TrainConfig, train
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cascade")
    store = write_synthetic_store(root / "syn.h5", n=24, size=32, seed=0)
    run = root / "run"
    train(TrainConfig(store=str(store), out=str(run), epochs=1, batch_size=8, max_steps=1,
                      backbone="tiny", dim=32, heads=4, size=32, sbi="off"),
          progress=False, log=lambda *_: None)
    return store, run


def test_a_cascade_run_given_as_a_fusion_model_is_named_as_such(cascade_run, scoring_runs,
                                                                tmp_path, capsys):
    from fusion.evaluate import main as evaluate_main
    from fusion.predict import main as predict_main
    _, run = cascade_run
    store, _, _ = scoring_runs
    image = tmp_path / "flat.png"
    cv2.imwrite(str(image), np.full((64, 64, 3), 120, np.uint8))
    assert predict_main(["--model", str(run), str(image)]) == 2
    words = (f"--model {run}: this is a fusion.cascade run, not a fusion.train run; use "
             f"python -m fusion.cascade eval --run {run} (or predict)")
    assert words in _one_line(capsys.readouterr().err)
    assert evaluate_main(["--model", str(run), "--store", str(store), "--out",
                          str(tmp_path / "ev")]) == 2
    assert words in _one_line(capsys.readouterr().err)


def test_a_fakes_only_store_for_self_blending_says_it_has_no_reals(tmp_path, capsys):
    import h5py
    from fusion.cascade.__main__ import main as cascade_main
    from fusion.cascade.data import write_synthetic_store
    store = write_synthetic_store(tmp_path / "fakes.h5", n=16, size=32, seed=0,
                                  with_landmarks=True)
    with h5py.File(store, "a") as h5:
        h5["meta/label"][...] = 1
    out = tmp_path / "run"
    assert cascade_main(["train", "--store", str(store), "--out", str(out), "--backbone", "tiny",
                         "--dim", "32", "--size", "32", "--epochs", "1", "--device", "cpu",
                         "--sbi", "online"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"--store {store}: no real faces in split 'train'" in line
    assert "self-blended training (--sbi online) makes its fakes from reals" in line
    assert "--align face" not in line


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A YAML "billion laughs" under fusion.train's valid key ``features`` (under 1 KB): each
    level lists the one below ``width`` times, so it expands to ``width ** levels`` items."""
    rows = ["features:", "  - &l0 [" + ", ".join(["lol"] * width) + "]"]
    rows += [f"  - &l{k} [" + ", ".join([f"*l{k - 1}"] * width) + "]" for k in range(1, levels)]
    return "\n".join(rows) + "\n"


@pytest.mark.timeout(30)  # today: 45 s and a 302 MB line; the bomb expands to 9 ** 9 items
def test_a_yaml_alias_bomb_is_refused_at_once_in_one_short_line(tmp_path, capsys):
    from fusion.train import main as train_main
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_alias_bomb())
    assert bomb.stat().st_size < 1024
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--config", str(bomb)])
    assert exit_info.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert f"--config {bomb}: " in line and "aliases" in line and len(line) < 300, line[:500]


def test_a_long_config_value_is_echoed_cut_short(tmp_path, capsys):
    from fusion.train import main as train_main
    config = tmp_path / "long.json"
    config.write_text(json.dumps({"seed": "9" * 50 + "x" * 100_000}))
    with pytest.raises(SystemExit):
        train_main(["--config", str(config)])
    line = _one_line(capsys.readouterr().err)
    assert f"--config {config}: seed (--seed): expected int, got '99999" in line
    assert "..." in line and len(line) < 400, line[:500]


def test_an_error_line_is_cut_after_error_line_max_characters():
    from pipelines.cli import ERROR_LINE_MAX, error_line
    line = error_line("python -m x", "y" * (ERROR_LINE_MAX + 5000))
    assert line.endswith("... (5000 more characters)") and len(line) < ERROR_LINE_MAX + 60


def test_a_closed_pipe_ends_a_command_quietly(scoring_runs):
    """``stores.info STORE --errors | head -1``: the reader leaves before the output ends."""
    store, _, _ = scoring_runs
    proc = subprocess.Popen([sys.executable, "-m", "stores.info", str(store)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    proc.stdout.close()  # before the command has printed anything: every write fails
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert err == ""


def test_landmarks_of_an_empty_split_are_an_empty_mask():
    """A store of reals without a val split (``--limit``): self-blending found no landmarks
    to check there and stopped with "cannot reshape array of size 0"."""
    from fusion.cascade.blend import has_landmarks
    assert has_landmarks(np.zeros((0, 68, 2), np.float32)).shape == (0,)
    assert has_landmarks(np.full((2, 68, 2), np.nan)).tolist() == [False, False]


def _tour_reads_before_writes(readme: str) -> list[str]:
    """The stores the README's tour reads (``--store``) before a step writes them."""
    import shlex
    tour = readme.split("## A tour in", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    written, unmet = set(), []
    for line in tour.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        unmet += [v for f, v in zip(words, words[1:]) if f == "--store" and v not in written]
        if "pipelines.extract" in words:
            written.add(words[words.index("--out") + 1])
    return unmet


def test_the_readme_tour_reads_only_stores_an_earlier_step_writes():
    assert _tour_reads_before_writes((REPO / "README.md").read_text()) == []


def test_extract_names_a_folder_it_skips_in_one_warning_line(tmp_path, capsys):
    from pipelines.extract import main as extract_main
    for rel in ("real/a.png", "gan/b.png", "other/c.png"):
        (tmp_path / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "data" / rel), np.full((32, 32, 3), 90, np.uint8))
    assert extract_main(["--dataset", "folder", "--root", str(tmp_path / "data"), "--features",
                         "lbp", "--align", "none", "--workers", "0", "--no-progress",
                         "--out", str(tmp_path / "s.h5")]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: folder: skipped 1 file(s) in other/: not a folder "
                                   "name this data set reads (real/ (reals); fake/")
    assert len(captured.err.strip().splitlines()) == 1 and "samples      2" in captured.out
