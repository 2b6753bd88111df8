"""A hostile tester's inputs to the fusion commands: each bad input gives one clear line
naming the flag or file and the real cause, with exit 2 before any work where nothing can be
done; nothing passes silently and nothing a run wrote is replaced unasked.

The sibling of ``tests/pipelines/test_bad_inputs.py``; stores are tiny and made in tmp_path.
Each section is one contiguous block.
"""
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from skimage import data

import stores
from tests.fusion.test_heads import make_store
from tests.fusion.test_predict import demo_run  # noqa: F401 (a fixture: store and run)


def _lines(err: str) -> list[str]:
    """stderr's lines, less the model's own training warnings that predict repeats first."""
    return [line for line in err.strip().splitlines() if not line.startswith("warning: model ")]


def _one_line(err: str) -> str:
    """The one line of stderr, less the model's own training warnings that predict repeats."""
    lines = _lines(err)
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def vector_store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("store") / "s.h5", with_nan=False)


# --- overwrite ---
# No run's files are replaced without --overwrite; two runs cannot write one folder at once.

def _train(store, out, *extra):
    from fusion.train import main
    return main(["--store", str(store), "--features", "a,b", "--out", str(out),
                 "--bootstrap", "0", "--no-plots", *map(str, extra)])


@pytest.fixture(scope="module")
def trained_run(vector_store, tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    assert _train(vector_store, run) == 0
    return run


def test_train_refuses_a_folder_holding_a_run_and_leaves_it_alone(vector_store, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(vector_store, run) == 0
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    capsys.readouterr()
    assert _train(vector_store, run, "--seed", "1") == 2
    line = _one_line(capsys.readouterr().err)
    assert f"--out {run} already holds a run (" in line
    assert "config.json" in line and "pass --overwrite to replace it or choose another folder" in line
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def test_overwrite_replaces_the_whole_run_and_no_stale_file_remains(vector_store, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(vector_store, run) == 0
    (run / "importance").mkdir()
    (run / "importance" / "importance.csv").write_text("old\n")
    assert _train(vector_store, run, "--overwrite", "--seed", "1") == 0
    assert not (run / "importance").exists()
    assert json.loads((run / "config.json").read_text())["flags"]["seed"] == 1
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # no lock left


def test_a_failed_overwrite_puts_the_old_run_back(vector_store, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(vector_store, run) == 0
    before = sorted(p.name for p in run.iterdir())
    capsys.readouterr()
    assert _train(vector_store, run, "--overwrite", "--fusion", "nonesuch") == 2
    assert "--fusion: unknown fusion 'nonesuch'" in _one_line(capsys.readouterr().err)
    assert sorted(p.name for p in run.iterdir()) == before


def test_the_run_a_killed_overwrite_was_replacing_is_named_then_cleared(vector_store, tmp_path,
                                                                       capsys):
    # kill -9 during an --overwrite run leaves the old run in a hidden folder beside the new
    # run's partial files: a rerun names that folder; --overwrite clears both
    run = tmp_path / "run"
    assert _train(vector_store, run) == 0
    kept = run / ".clmf-run.lock.replaced-999999-deadbeef"
    kept.mkdir()
    for p in list(run.iterdir()):
        if p != kept:
            p.rename(kept / p.name)
    (run / "metrics.json").write_text("{")  # the killed run's partial file
    capsys.readouterr()
    assert _train(vector_store, run) == 2
    line = _one_line(capsys.readouterr().err)
    assert "already holds a run (metrics.json)" in line
    assert f"is kept in {kept}: move its files back to restore it" in line
    (run / "metrics.json").unlink()  # an emptied folder still keeps the old run: refused
    assert _train(vector_store, run) == 2
    assert "(nothing else)" in _one_line(capsys.readouterr().err)
    assert _train(vector_store, run, "--overwrite") == 0
    assert not list(run.glob(".clmf-run.lock*"))
    assert json.loads((run / "metrics.json").read_text())


def test_a_run_writing_the_folder_is_named_with_its_pid(vector_store, tmp_path, capsys):
    from base.outputs import claim_output_dir
    run = tmp_path / "run"
    with claim_output_dir(run):  # another run (here: this process) is writing it
        assert _train(vector_store, run, "--overwrite") == 2
        line = _one_line(capsys.readouterr().err)
        assert f"--out {run} is in use by another run (pid {os.getpid()} on " in line
        assert "wait for it to finish" in line
    assert not run.exists()  # the claim made it empty and removed it again


def test_two_runs_started_together_one_writes_the_other_is_refused(vector_store, tmp_path):
    run = tmp_path / "run"
    code = ("import sys; from fusion.train import main; sys.exit(main(["
            f"'--store', {str(vector_store)!r}, '--features', 'a,b', '--out', {str(run)!r}, "
            "'--bootstrap', '0', '--no-plots']))")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = sorted((p.wait(timeout=120), p.stderr.read()) for p in procs)
    assert [rc for rc, _ in results] == [0, 2], results
    line = _one_line(results[1][1])
    assert f"--out {run}" in line and ("in use by another run (pid" in line or "already holds a run" in line)


def test_a_stale_lock_of_a_killed_run_is_taken_over_when_the_folder_is_empty(vector_store, tmp_path):
    from base.outputs import RUN_LOCK
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / RUN_LOCK).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                            "started": "2020-01-01T00:00:00"}))
    assert _train(vector_store, run) == 0
    assert (run / "model" / "model.json").is_file() and not (run / RUN_LOCK).exists()


def test_a_stale_lock_beside_a_partial_run_asks_for_overwrite(vector_store, tmp_path, capsys):
    from base.outputs import RUN_LOCK
    run = tmp_path / "run"
    run.mkdir()
    (run / "scores.csv").write_text("partial\n")
    (run / RUN_LOCK).write_text(json.dumps({"pid": 2 ** 22 + 1, "host": socket.gethostname()}))
    assert _train(vector_store, run) == 2
    assert "already holds a run (scores.csv); pass --overwrite" in _one_line(capsys.readouterr().err)


def test_out_naming_a_file_is_one_line(vector_store, tmp_path, capsys):
    f = tmp_path / "taken.txt"
    f.write_text("x")
    assert _train(vector_store, f) == 2
    assert _one_line(capsys.readouterr().err).endswith(f"--out {f} is a file, not a folder")


def test_overwrite_refuses_to_clear_the_current_folder_or_one_holding_an_input(
        vector_store, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("mine")
    assert _train(vector_store, ".", "--overwrite") == 2
    assert "--out . holds the current folder; --overwrite clears only a run folder" in \
        _one_line(capsys.readouterr().err)
    assert (tmp_path / "keep.txt").is_file()
    store_dir = tmp_path / "data"
    store_dir.mkdir()
    store = store_dir / "s.h5"
    store.write_bytes(Path(vector_store).read_bytes())
    assert _train(store, store_dir, "--overwrite") == 2
    assert f"--out {store_dir} holds {store}, an input of this run" in _one_line(capsys.readouterr().err)
    assert store.is_file()


def _cascade_run(tmp_path):
    run = tmp_path / "crun"
    run.mkdir()
    (run / "config.json").write_text("{}")  # enough for the flag checks before the model loads
    return run


def _busy(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "old.txt").write_text("an earlier run's file")
    return folder


@pytest.mark.parametrize("command", ["evaluate", "importance", "importance-default", "ablate",
                                     "audit", "cascade-eval", "cascade-eval-default",
                                     "cascade-predict", "predict-overlay", "cascade-train"])
def test_every_command_refuses_a_folder_holding_files(command, vector_store, trained_run, tmp_path,
                                                      capsys):
    from fusion.ablate import main as ablate
    from fusion.audit import main as audit
    from fusion.cascade.__main__ import main as cascade
    from fusion.evaluate import main as evaluate
    from fusion.importance import main as importance
    from fusion.predict import main as predict
    out = _busy(tmp_path / "out")
    s, r = str(vector_store), str(trained_run)
    if command == "evaluate":
        rc = evaluate(["--model", r, "--store", s, "--out", str(out), "--bootstrap", "0"])
    elif command == "importance":
        rc = importance(["--store", s, "--run", r, "--out", str(out), "--repeats", "1"])
    elif command == "importance-default":
        out = _busy(trained_run / "importance")
        rc = importance(["--store", s, "--run", r, "--repeats", "1"])
    elif command == "ablate":
        rc = ablate(["--store", s, "--features", "a,b", "--out", str(out), "--bootstrap", "0"])
    elif command == "audit":
        rc = audit(["--store", s, "--out", str(out), "--bootstrap", "0"])
    elif command.startswith("cascade-eval"):
        crun = _cascade_run(tmp_path)
        if command.endswith("default"):
            out = _busy(crun / "eval_test")
        rc = cascade(["eval", "--run", str(crun), "--store", s, "--device", "cpu"]
                     + ([] if command.endswith("default") else ["--out", str(out)]))
    elif command == "cascade-predict":
        rc = cascade(["predict", "--run", str(_cascade_run(tmp_path)), "--store", s,
                      "--out", str(out), "--device", "cpu"])
    elif command == "cascade-train":
        rc = cascade(["train", "--store", s, "--out", str(out), "--device", "cpu"])
    else:
        image = tmp_path / "face.png"
        from PIL import Image
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
        rc = predict(["--model", r, str(image), "--overlay", str(out)])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2, line
    assert f" {out} already holds " in line and "old.txt" in line and "--overwrite" in line, line
    if command == "cascade-train":
        assert "--resume" in line
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]


def test_importance_twice_refuses_then_overwrite_replaces(vector_store, trained_run, tmp_path, capsys):
    from fusion.importance import main as importance
    out = tmp_path / "imp"
    argv = ["--store", str(vector_store), "--run", str(trained_run), "--out", str(out),
            "--repeats", "1", "--no-plots", "--mi-samples", "50"]
    assert importance(argv) == 0
    capsys.readouterr()
    assert importance(argv) == 2
    assert "pass --overwrite" in _one_line(capsys.readouterr().err)
    assert importance([*argv, "--overwrite"]) == 0


def test_predict_out_file_is_not_replaced_without_overwrite(trained_run, tmp_path, capsys):
    from fusion.predict import main as predict
    image = tmp_path / "face.png"
    from PIL import Image
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    result = tmp_path / "result.json"
    result.write_text("earlier result")
    assert predict(["--model", str(trained_run), str(image), "--out", str(result)]) == 2
    assert _one_line(capsys.readouterr().err).endswith(
        f"--out {result} already exists; pass --overwrite to replace it or choose another file")
    assert result.read_text() == "earlier result"
    assert predict(["--model", str(trained_run), str(image), "--out", str(tmp_path)]) == 2
    assert _one_line(capsys.readouterr().err).endswith(f"--out {tmp_path} is a folder, not a file")


def test_next_lines_of_train_and_evaluate_run_without_overwrite(vector_store, tmp_path, capsys):
    """The printed next: commands write into fresh folders, so they are never refused."""
    from fusion.importance import main as importance
    run = tmp_path / "run"
    assert _train(vector_store, run) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("next: ")][0]
    assert "fusion.importance" in line
    assert importance(["--store", str(vector_store), "--run", str(run), "--repeats", "1",
                       "--no-plots", "--mi-samples", "50"]) == 0
    assert (run / "importance" / "importance.csv").is_file()



def test_extract_out_naming_a_folder_is_one_line(tmp_path, capsys):
    from pipelines.extract import main as extract
    folder = tmp_path / "runs"
    folder.mkdir()
    assert extract(["--out", str(folder), "--workers", "0", "--features", "lbp", "--no-progress"]) == 2
    assert _one_line(capsys.readouterr().err).endswith(f"--out {folder} is a folder, not a store file")
    assert list(folder.iterdir()) == []


def test_cascade_train_takes_resume_or_overwrite_not_both(vector_store, tmp_path, capsys):
    from fusion.cascade.__main__ import main as cascade
    assert cascade(["train", "--store", str(vector_store), "--out", str(tmp_path / "crun"),
                    "--device", "cpu", "--resume", "--overwrite"]) == 2
    assert _one_line(capsys.readouterr().err).endswith(
        "--resume continues the run in --out, --overwrite replaces it: give one")
    assert not (tmp_path / "crun").exists()

# --- zero and negative counts ---
# Zero is not "not given": a count outside its range stops the run before any work, with one
# line naming the flag and the accepted range.

def _status(main, argv) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own error exit
        return exc.code


def _cascade_argv(command, flag, value, tmp_path, store):
    if command == "train":
        return ["train", "--store", store, "--out", tmp_path / "crun", "--device", "cpu",
                "--backbone", "tiny", flag, value]
    return [command, "--run", _cascade_run(tmp_path), "--store", store, "--device", "cpu", flag, value]


@pytest.mark.parametrize("command, flag, value, accepted", [
    ("train", "--epochs", "0", "an integer >= 1"),
    ("train", "--epochs", "-2", "an integer >= 1"),
    ("train", "--batch-size", "0", "an integer >= 1"),
    ("train", "--size", "0", "an integer >= 16"),
    ("train", "--dim", "0", "an integer >= 1"),
    ("train", "--heads", "0", "an integer >= 1"),
    ("train", "--max-steps", "0", "an integer >= 1"),
    ("train", "--cache-mb", "-1", "an integer >= 0"),
    ("train", "--seed", "-1", "an integer >= 0"),
    ("train", "--threads", "-1", "an integer >= 0"),
    ("train", "--backbone-size", "0", "an integer >= 16"),
    ("train", "--lr", "0", "a number > 0"),
    ("train", "--lr", "nan", "a number > 0"),
    ("train", "--weight-decay", "-1", "a number >= 0"),
    ("train", "--warmup-epochs", "-1", "a number >= 0"),
    ("train", "--alpha", "-0.5", "a number >= 0"),
    ("eval", "--overlays", "-3", "an integer >= 0"),
    ("eval", "--batch-size", "0", "an integer >= 1"),
    ("eval", "--n-boot", "-1", "an integer >= 0"),
    ("predict", "--overlays", "-3", "an integer >= 0"),
    ("predict", "--batch-size", "0", "an integer >= 1"),
    ("predict", "--threads", "-2", "an integer >= 0"),
])
def test_cascade_counts_out_of_range_stop_before_any_work(command, flag, value, accepted,
                                                          vector_store, tmp_path, capsys):
    from fusion.cascade.__main__ import main
    t0 = time.perf_counter()
    assert _status(main, _cascade_argv(command, flag, value, tmp_path, vector_store)) == 2
    assert time.perf_counter() - t0 < 5
    line = _one_line(capsys.readouterr().err)
    assert f"{flag}: expected {accepted}, got {value}" in line, line
    assert sorted(p.name for p in tmp_path.rglob("*")) == ([] if command == "train" else
                                                         ["config.json", "crun"])


@pytest.mark.parametrize("module, argv, flag, accepted", [
    ("fusion.train", ["--features", "a,b", "--seed", "-1"], "--seed", "an integer >= 0"),
    ("fusion.train", ["--features", "a,b", "--bootstrap", "-1"], "--bootstrap", "an integer >= 0"),
    ("fusion.evaluate", ["--model", "RUN", "--out", "OUT", "--bootstrap", "-5"], "--bootstrap",
     "an integer >= 0"),
    ("fusion.ablate", ["--features", "a,b", "--seed", "-3"], "--seed", "an integer >= 0"),
    ("fusion.ablate", ["--features", "a,b", "--bootstrap", "-1"], "--bootstrap", "an integer >= 0"),
    ("fusion.audit", ["--seed", "-1"], "--seed", "an integer >= 0"),
    ("fusion.importance", ["--run", "RUN", "--repeats", "0"], "--repeats", "an integer >= 1"),
    ("fusion.importance", ["--run", "RUN", "--chunk", "0"], "--chunk", "an integer >= 1"),
    ("fusion.importance", ["--run", "RUN", "--top", "0"], "--top", "an integer >= 1"),
    ("fusion.importance", ["--run", "RUN", "--mi-samples", "0"], "--mi-samples", "an integer >= 10"),
    ("fusion.importance", ["--run", "RUN", "--seed", "-1"], "--seed", "an integer >= 0"),
])
def test_vector_fusion_counts_out_of_range_stop_before_any_work(module, argv, flag, accepted,
                                                                vector_store, tmp_path, capsys):
    import importlib
    main = importlib.import_module(module).main
    argv = [str(tmp_path / a) if a in ("RUN", "OUT") else a for a in argv]
    assert _status(main, ["--store", vector_store, *argv]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{flag}: expected {accepted}, got {argv[-1]}" in line, line
    assert list(tmp_path.iterdir()) == []


def test_predict_frames_zero_and_bench_steps_zero_are_refused(trained_run, tmp_path, capsys):
    from fusion.cascade.bench import main as bench
    from fusion.predict import main as predict
    assert _status(predict, ["--model", trained_run, "--frames", "0", tmp_path / "x.png"]) == 2
    assert "--frames: expected an integer >= 1, got 0" in _one_line(capsys.readouterr().err)
    assert _status(bench, ["--steps", "0"]) == 2
    assert "--steps: expected an integer >= 1, got 0" in _one_line(capsys.readouterr().err)


def test_a_zero_count_in_a_config_file_is_refused_naming_the_key(vector_store, tmp_path, capsys):
    from fusion.cascade.__main__ import main
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 0\n")
    assert _status(main, ["train", "--store", vector_store, "--out", tmp_path / "crun",
                          "--config", config]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"--config {config}: epochs (--epochs): expected an integer >= 1, got 0" in line, line


# --- the flag the user typed ---

@pytest.mark.parametrize("fusions", ["nonesuch", "concat,nonesuch"])
def test_a_bad_fusions_value_names_fusions(fusions, vector_store, tmp_path, capsys):
    from fusion import heads
    from fusion.ablate import main as ablate
    assert ablate(["--store", str(vector_store), "--features", "a,b", "--fusions", fusions,
                   "--out", str(tmp_path / "abl")]) == 2
    line = _one_line(capsys.readouterr().err)
    vector = [f for f in heads.list_fusions() if heads.FUSIONS[f].inputs == "vector"]
    assert line.endswith(f"error: --fusions: unknown fusion 'nonesuch'; choose from {', '.join(vector)}")
    assert not (tmp_path / "abl").exists()


# --- file modes and the one-epoch plot ---

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_safetensors_files_get_the_umask_mode_like_every_other_file(umask, tmp_path):
    import torch
    from fusion.cascade.checkpoints import save_weights
    from fusion.modelio import save_model
    old = os.umask(umask)
    try:
        save_model(tmp_path / "m", {"k": 1}, arrays={"a": np.zeros(2)}, tensors={"t": torch.zeros(2)})
        save_weights(tmp_path / "c" / "best.safetensors", torch.nn.Linear(2, 1))
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    for path in (tmp_path / "m" / "weights.safetensors", tmp_path / "m" / "model.json",
                 tmp_path / "c" / "best.safetensors"):
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["best.safetensors"]  # no temp file


def test_a_one_epoch_history_plot_shows_its_points(tmp_path):
    import matplotlib.image as mpimg
    from fusion.cascade.train import history_figure, plot_history
    history = [{"epoch": 1, "train": {"total": 0.9, "global": 0.6, "mask": 0.3},
                "val": {"auc": 0.7, "iou": 0.2, "pixel_auc": 0.8}}]
    import matplotlib.pyplot as plt
    fig = history_figure(history)
    try:
        for ax in fig.axes:
            lines = ax.get_lines()
            assert lines and all(line.get_marker() not in (None, "None", "", " ") for line in lines)
    finally:
        plt.close(fig)
    plot_history(history, tmp_path / "training.png")
    image = mpimg.imread(tmp_path / "training.png")[..., :3]
    h, w = image.shape[:2]
    # the left axes' plot area, left of its legend (upper right) and above the axis labels
    area = image[int(0.25 * h):int(0.85 * h), int(0.1 * w):int(0.43 * w)]
    coloured = (area.max(axis=2) - area.min(axis=2)) > 0.3
    assert coloured.sum() > 20  # the markers of the one epoch


# --- non-finite features and warnings ---
def _tiny_meta():
    """12 train, 6 val and 4 test videos of 4 frames: 16 test rows (reals and fakes A, B)."""
    from tests.fusion.test_heads import synthetic_meta
    return synthetic_meta(n_videos_per_split=(12, 6, 4), frames=4)


def _nonfinite_store(path, bad=np.nan, marked_valid=True, split="test", rows=8, seed=0, flip=False,
                     reals_only=False):
    """A store with an informative feature ``a`` and a feature ``fft`` whose value is ``bad``
    in the first ``rows`` rows of ``split`` (marked valid or not); ``bad=None``: all finite.
    ``flip``: the labels are swapped after the features are drawn (a model scores it inverted);
    ``reals_only``: the fakes are left out."""
    meta = _tiny_meta()
    rng = np.random.default_rng(seed)
    y = meta["label"].to_numpy()
    if flip:
        meta["label"] = 1 - y
        meta["method"] = np.where(y == 1, "real", "A")
    if reals_only:
        keep = y == 0
        meta, y = meta[keep].reset_index(drop=True), y[keep]
    a = (rng.normal(size=(len(meta), 3)) + 1.5 * y[:, None]).astype(np.float32)
    fft = (rng.normal(size=(len(meta), 2)) + 0.5 * y[:, None]).astype(np.float32)
    valid = np.ones(len(meta), bool)
    if bad is not None:
        hit = np.flatnonzero(meta["split"].to_numpy() == split)[:rows]
        fft[hit] = bad
        valid[hit] = marked_valid
    attrs = {k: {"extractor": k, "version": "1", "params": {}} for k in ("a", "fft")}
    return stores.write_store(path, meta, vectors={"a": a, "fft": fft}, attrs=attrs,
                              valid={"fft": valid})


def _train_cli(store, out, *extra):
    from fusion.train import main
    return main(["--store", str(store), "--features", "a,fft", "--out", str(out), "--bootstrap", "0",
                 "--no-plots", *extra])


def _evaluate_cli(run, store, out, *extra, plots=False):
    from fusion.evaluate import main
    return main(["--model", str(run), "--store", str(store), "--out", str(out), "--bootstrap", "0",
                 *([] if plots else ["--no-plots"]), *extra])


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """A model trained on a store without a NaN, to score the damaged stores with."""
    root = tmp_path_factory.mktemp("clean")
    assert _train_cli(_nonfinite_store(root / "clean.h5", bad=None), root / "run") == 0
    return root / "run"


CASES = [(np.nan, True), (np.nan, False), (np.inf, True), (-np.inf, False)]
IDS = ["nan-valid", "nan-invalid", "inf-valid", "-inf-invalid"]


@pytest.mark.parametrize("bad, marked_valid", CASES, ids=IDS)
def test_evaluate_counts_and_prints_nonfinite_rows(bad, marked_valid, clean_run, tmp_path, capsys):
    store = _nonfinite_store(tmp_path / "bad.h5", bad, marked_valid)
    capsys.readouterr()
    assert _evaluate_cli(clean_run, store, tmp_path / "ev", "--split", "test") == 0
    printed = capsys.readouterr().out
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["nonfinite"] == {"fft": {"rows": 8, "of": 16, "marked_valid": 8 if marked_valid else 0}}
    line = [w for w in m["warnings"] if "'fft'" in w]
    assert len(line) == 1 and line[0].startswith("test: feature 'fft' is NaN or infinite in 8 of 16 rows")
    assert ("8 of them marked valid" in line[0]) == marked_valid
    printed_line = [x for x in printed.splitlines() if "'fft' is NaN or infinite in 8 of 16 rows" in x]
    assert len(printed_line) == 1 and printed_line[0].startswith("WARNING non-finite features: test:")


def test_nan_and_inf_are_scored_alike(clean_run, tmp_path):
    scores = []
    for name, bad in (("nan", np.nan), ("inf", np.inf), ("neg", -np.inf)):
        store = _nonfinite_store(tmp_path / f"{name}.h5", bad, True)
        assert _evaluate_cli(clean_run, store, tmp_path / name, "--split", "test") == 0
        scores.append(pd.read_csv(tmp_path / name / "scores.csv")["logit"].to_numpy())
    np.testing.assert_array_equal(scores[0], scores[1])
    np.testing.assert_array_equal(scores[0], scores[2])


@pytest.mark.parametrize("split", ["train", "test"])
def test_train_counts_nonfinite_rows_per_split(split, tmp_path, capsys):
    store = _nonfinite_store(tmp_path / "bad.h5", np.inf, True, split=split)
    assert _train_cli(store, tmp_path / "run") == 0
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    n = 48 if split == "train" else 16
    assert m["nonfinite"] == {split: {"fft": {"rows": 8, "of": n, "marked_valid": 8}}}
    assert f"{split}: feature 'fft' is NaN or infinite in 8 of {n} rows" in capsys.readouterr().out


def test_ablate_warns_of_nonfinite_rows_of_the_pick(tmp_path, capsys):
    from fusion.ablate import main
    store = _nonfinite_store(tmp_path / "bad.h5", np.nan, False)
    assert main(["--store", str(store), "--features", "a,fft", "--stages", "single,loo", "--out",
                 str(tmp_path / "abl"), "--bootstrap", "0"]) == 0
    saved = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    rows = {r["features"]: r for r in saved["rows"]}
    assert any("'fft' is NaN or infinite in 8 of 16" in w for w in rows["a,fft"]["warnings"])
    assert not any("'fft'" in w for w in rows["a"]["warnings"])


def test_info_check_reports_nonfinite_values_per_feature(tmp_path, capsys):
    from stores.info import main
    valid = _nonfinite_store(tmp_path / "valid.h5", np.nan, True)
    assert main([str(valid), "--check"]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1
    assert f"{valid}: feature 'fft' is NaN or infinite in 8 rows marked valid" in err
    assert "nonfinite fft: NaN or inf in 8 rows, 8 of them marked valid (a problem)" in captured.out
    invalid = _nonfinite_store(tmp_path / "invalid.h5", np.nan, False)
    assert main([str(invalid), "--check"]) == 0
    assert "nonfinite fft: NaN or inf in 8 rows, all marked invalid (not computed)" in capsys.readouterr().out
    clean = _nonfinite_store(tmp_path / "clean.h5", None)
    assert main([str(clean), "--check"]) == 0
    assert "nonfinite none" in capsys.readouterr().out


def test_fusion_classifier_takes_inf_as_it_takes_nan():
    from fusion.sklearn import FusionClassifier, NonFiniteFeatureWarning
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    X = np.column_stack([rng.normal(size=40) + 2 * y, rng.normal(size=40)])
    results = []
    for bad in (np.nan, np.inf, -np.inf):
        Xb = X.copy()
        Xb[:, 1] = bad  # an all-NaN / all-inf column
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            clf = FusionClassifier().fit(Xb, y)
            results.append(clf.decision_function(Xb))
        lines = [str(w.message) for w in caught if issubclass(w.category, NonFiniteFeatureWarning)]
        assert any("FusionClassifier.fit: feature 'x' is NaN or infinite in 40 of 40 rows" in s for s in lines)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_evaluate_prints_warnings_grouped_most_serious_first(clean_run, tmp_path, capsys):
    from fusion.warning_groups import KINDS, kind_of
    store = _nonfinite_store(tmp_path / "bad.h5", np.nan, False)
    capsys.readouterr()
    assert _evaluate_cli(clean_run, store, tmp_path / "ev", "--split", "test") == 0
    printed = [x for x in capsys.readouterr().out.splitlines() if x.startswith("WARNING ")]
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    kinds = [kind_of(w) for w in m["warnings"]]
    assert len(set(kinds)) >= 2 and len(m["warnings"]) > len(set(kinds))  # something to group
    assert len(printed) == len(set(kinds))  # one line per kind
    order = [name for name, _ in KINDS] + ["note"]
    shown = [x[len("WARNING "):].split(":")[0] for x in printed]
    assert shown == sorted(set(kinds), key=order.index)
    for w in m["warnings"]:  # every warning's set is still named
        assert any(w.split(":")[0] + ":" in x for x in printed)


def test_importance_warns_when_the_model_is_worse_than_chance(clean_run, tmp_path, capsys):
    from fusion.importance import main
    flipped = _nonfinite_store(tmp_path / "flipped.h5", None, flip=True)
    capsys.readouterr()
    assert main(["--store", str(flipped), "--run", str(clean_run), "--out", str(tmp_path / "imp"),
                 "--repeats", "2", "--no-plots"]) == 0
    printed = capsys.readouterr().out.splitlines()
    saved = json.loads((tmp_path / "imp" / "importance.json").read_text())
    assert saved["below_chance"] and saved["auc"] < 0.5 and saved["split"] == "val"
    assert saved["warnings"][0].startswith(f"val: AUC {saved['auc']:.3f} is below chance (0.5)")
    # prominent: the first line printed, and again after the table
    assert printed[0].startswith("WARNING worse than chance: val: AUC") and "mean the opposite" in printed[0]
    assert printed[-2] == printed[0] and printed[-1].startswith("next:")


def test_importance_of_a_sound_model_has_no_chance_warning(clean_run, tmp_path, capsys):
    from fusion.importance import main
    store = _nonfinite_store(tmp_path / "same.h5", None)
    assert main(["--store", str(store), "--run", str(clean_run), "--out", str(tmp_path / "imp"),
                 "--repeats", "2", "--no-plots"]) == 0
    assert "below chance" not in capsys.readouterr().out
    saved = json.loads((tmp_path / "imp" / "importance.json").read_text())
    assert saved["below_chance"] is False and saved["warnings"] == []


def test_evaluate_on_reals_only_shows_the_false_positives_and_why_no_auc(clean_run, tmp_path, capsys):
    store = _nonfinite_store(tmp_path / "reals.h5", None, reals_only=True, seed=3)
    capsys.readouterr()
    out = tmp_path / "ev"
    assert _evaluate_cli(clean_run, store, out, plots=True) == 0
    printed = capsys.readouterr().out
    scores = pd.read_csv(out / "scores.csv")
    m = json.loads((out / "metrics.json").read_text())
    called = int((scores["logit"] >= m["threshold"]).sum())  # the decision, counted independently
    n = len(scores)
    assert n == 8 and (scores["label"] == 0).all()  # 2 real test videos of 4 frames
    assert m["decisions"] == {"reals": n, "reals_called_fake": called, "fakes": 0, "fakes_called_real": 0,
                              "false_positive_rate": called / n, "false_negative_rate": None}
    assert f"{called} of {n} reals called fake (false-positive rate {called / n:.3f}" in printed
    assert "AUC, EER and ROC/DET are not defined: the store has reals only (one class)" in printed
    assert "next:" not in printed  # fusion.importance needs reals and fakes
    assert "plots: scores.png (ROC and DET need reals and fakes)" in printed
    assert (out / "scores.png").is_file() and not (out / "roc.png").exists()
    page = (out / "report.html").read_text()
    assert f"{called} of {n} reals called fake" in page and "scores.png" in page


REPO = Path(__file__).resolve().parents[2]


# --- inputs that cannot be scored, wrong causes ---------------------------------------------
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


def test_predict_with_a_whole_image_model_refuses_an_image_below_min_face(scoring_runs,
                                                                        unscorable, capfd):
    # --align none scores the whole image as the face crop: a 1x1 image upscaled to it
    # was scored (FAKE 0.83) and exited 0
    from fusion.predict import main as predict_main
    _, run, _ = scoring_runs
    root, _ = unscorable
    assert predict_main(["--model", str(run), str(root / "dot.png")]) == 1
    out, err = capfd.readouterr()
    [line] = _lines(err)
    assert line.startswith(f"{root / 'dot.png'}: not scored: ") and \
        "the 1x1 image is smaller than min_face=40 px" in line, line
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
    from fusion.predict import load_model_dir
    from fusion.scoring import saved_threshold
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
    from fusion.cascade.config import TrainConfig
    from fusion.cascade.train import train
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cascade")
    store = write_synthetic_store(root / "syn.h5", n=24, size=32, seed=0)
    run = root / "run"
    train(TrainConfig(store=str(store), out=str(run), epochs=1, batch_size=8, max_steps=1,
                      backbone="tiny", dim=32, heads=4, size=32, sbi="off"),
          progress=False, log=lambda *_: None)
    return store, run


def test_a_cascade_run_given_to_fusion_evaluate_is_named_as_such(cascade_run, scoring_runs,
                                                                tmp_path, capsys):
    from fusion.evaluate import main as evaluate_main
    from fusion.predict import main as predict_main
    _, run = cascade_run
    store, _, _ = scoring_runs
    image = tmp_path / "flat.png"
    cv2.imwrite(str(image), np.full((64, 64, 3), 120, np.uint8))
    # fusion.predict scores files with a cascade run too (fusion.cascade.files): a file
    # without a face is named with its cause, as for a fusion.train model
    assert predict_main(["--model", str(run), str(image)]) == 1
    assert f"{image}: not scored: " in capsys.readouterr().err
    words = (f"--model {run}: this is a fusion.cascade run, not a fusion.train run; use "
             f"python -m fusion.cascade eval --run {run} (or predict)")
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
    assert f"--config {config}: seed (--seed): expected an integer >= 0, got '99999" in line
    assert "..." in line and len(line) < 400, line[:500]


def test_an_error_line_is_cut_after_error_line_max_characters():
    from base.cli import ERROR_LINE_MAX, error_line
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
        cv2.imwrite(str(tmp_path / "data" / rel), np.full((48, 48, 3), 90, np.uint8))
    assert extract_main(["--dataset", "folder", "--root", str(tmp_path / "data"), "--features",
                         "lbp", "--align", "none", "--workers", "0", "--no-progress",
                         "--out", str(tmp_path / "s.h5")]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: folder: skipped 1 file(s) in other/: not a folder "
                                   "name this data set reads (real/ (reals); fake/")
    assert len(captured.err.strip().splitlines()) == 1 and "samples      2" in captured.out
