"""A hostile tester's inputs: each failure is one clear line or one ``/errors`` row naming the
file and its cause, the good files next to it still land, and nothing finished is lost.

Most cases share two extraction runs over one folder each (``--align none`` where faces are
not the point), so the file stays fast.
"""
import errno
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from PIL import Image
from skimage import data

import stores
from pipelines import extract as ex
from pipelines import frames
from stores import open_store

REPO = Path(__file__).resolve().parents[2]


def _run(*argv):
    return ex.main([*map(str, argv), "--no-progress"])


def _bgr(rgb):
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _write_video(path, n_frames, size=64):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (size, size))
    rng = np.random.default_rng(n_frames)
    for _ in range(n_frames):
        writer.write(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    writer.release()


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# -- one folder of odd and broken files, --align none ------------------------------------------
GOOD_IMAGES = ("huge.jpg", "grey.png", "cmyk.jpg", "deep16.png", "rgba.png", "photo.webp",
               "ünï cödé name.png", "x.jpg", "x.png")


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory):
    """``real/`` with every odd file, plus the failures they should give."""
    root = tmp_path_factory.mktemp("odd") / "data"
    real = root / "real"
    real.mkdir(parents=True)
    face = data.astronaut()
    small = cv2.resize(face, (48, 48))
    cv2.imwrite(str(real / "huge.jpg"), np.full((10000, 10000, 3), 90, np.uint8))
    cv2.imwrite(str(real / "grey.png"), cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    Image.fromarray(small).convert("CMYK").save(real / "cmyk.jpg")
    cv2.imwrite(str(real / "deep16.png"), _bgr(small).astype(np.uint16) * 257)
    cv2.imwrite(str(real / "rgba.png"), np.dstack([_bgr(small), np.full((48, 48), 128, np.uint8)]))
    cv2.imwrite(str(real / "photo.webp"), _bgr(small))
    cv2.imwrite(str(real / "dot.png"), np.full((1, 1, 3), 200, np.uint8))
    cv2.imwrite(str(real / "ünï cödé name.png"), _bgr(small))
    cv2.imwrite(str(real / "x.jpg"), _bgr(small))  # same stem as x.png: two samples
    cv2.imwrite(str(real / "x.png"), _bgr(small[::-1]))
    _write_video(real / "one_frame.mp4", 1)
    _write_video(real / "full.mp4", 12)
    full = (real / "full.mp4").read_bytes()
    (real / "truncated.mp4").write_bytes(full[: len(full) // 3])
    (real / "full.mp4").unlink()
    (real / "zero.jpg").write_bytes(b"")
    (real / "text.jpg").write_text("this is not an image\n" * 20)
    ok, jpeg = cv2.imencode(".jpg", _bgr(small))
    (real / "renamed.mp4").write_bytes(jpeg.tobytes())
    os.symlink("loop_b.jpg", real / "loop_a.jpg")
    os.symlink("loop_a.jpg", real / "loop_b.jpg")
    _write_video(real / "denied.mp4", 3)
    expected_errors = {
        "truncated.mp4": ("corrupt_video", "truncated"),
        # --align none takes the whole image as the face crop: 1x1 pixels cannot be one
        "dot.png": ("face_too_small", "the 1x1 image is smaller than min_face=40 px"),
        "zero.jpg": ("unreadable_image", "not a decodable image"),
        "text.jpg": ("unreadable_image", "not a decodable image"),
        "renamed.mp4": ("wrong_format", "holds a JPEG image, not a video"),
        "loop_a.jpg": ("unreadable_file", "Too many levels of symbolic links"),
        "loop_b.jpg": ("unreadable_file", "Too many levels of symbolic links"),
        "denied.mp4": ("unreadable_file", "Permission denied"),
    }
    return root, expected_errors


@pytest.fixture(scope="module")
def odd_store(odd_folder, tmp_path_factory):
    """One extraction over the odd folder. ``denied.mp4`` is made unreadable by refusing its
    open() in pipelines.frames: the tests run as root, for whom chmod 000 changes nothing."""
    root, _ = odd_folder
    home = tmp_path_factory.mktemp("home")
    out = tmp_path_factory.mktemp("odd_out") / "odd.h5"
    real_open = open

    def open_refusing_denied(path, *args, **kwargs):
        if str(path).endswith("denied.mp4"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(frames, "open", open_refusing_denied, raising=False)
    mp.setenv("HOME", str(home))
    try:
        rc = _run("--dataset", "folder", "--root", root, "--out", out, "--workers", 0,
                  "--align", "none", "--features", "rgb,lbp", "--size", 64, "--frames", 4)
    finally:
        mp.undo()
    assert rc == 0
    assert list(home.iterdir()) == []  # nothing hidden written into the home directory
    return out


def test_each_bad_file_gets_one_error_row_with_its_cause(odd_folder, odd_store):
    _, expected = odd_folder
    with open_store(odd_store) as store:
        errors = store.errors
    by_file = {Path(p).name: (c, m) for p, c, m in
               zip(errors["source_path"], errors["cause"], errors["message"])}
    for name, (cause, words) in expected.items():
        assert name in by_file, f"{name} has no /errors row"
        assert by_file[name][0] == cause and words in by_file[name][1], (name, by_file[name])
    assert set(by_file) == set(expected)


def test_the_good_files_next_to_them_land(odd_store):
    with open_store(odd_store) as store:
        meta = store.meta
        crops, _ = store.read_map("rgb")
        X, _, _ = store.read(["lbp"])
    names = [Path(p).name for p in meta["source_path"]]
    assert set(names) == set(GOOD_IMAGES) | {"one_frame.mp4"}
    assert names.count("one_frame.mp4") == 1 and len(names) == len(GOOD_IMAGES) + 1
    assert crops.shape[1:] == (64, 64, 3) and np.isfinite(X).all()
    ids = set(meta["video_id"])
    assert {"real/x.jpg", "real/x.png"} <= ids and meta["sample_id"].is_unique
    assert "real/ünï cödé name" in ids


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: chmod 000 does not stop root "
                    "reading; the permission case is covered by refusing open() instead")
def test_a_permission_denied_video_is_unreadable_file(tmp_path):
    path = tmp_path / "locked.mp4"
    _write_video(path, 2)
    path.chmod(0)
    with pytest.raises(frames.SampleError) as info:
        frames.video_frame_count(path)
    assert info.value.cause == "unreadable_file" and "Permission denied" in info.value.message


# -- faces: none, two, one -----------------------------------------------------------------------
def test_no_face_and_two_faces_with_aligned_crops(tmp_path):
    real = tmp_path / "data" / "real"
    real.mkdir(parents=True)
    face = data.astronaut()
    cv2.imwrite(str(real / "astronaut one.png"), _bgr(face))
    cv2.imwrite(str(real / "two_faces.png"), _bgr(np.concatenate([face, face[:, ::-1]], axis=1)))
    cv2.imwrite(str(real / "coffee.png"), _bgr(data.coffee()))
    out = tmp_path / "faces.h5"
    assert _run("--dataset", "folder", "--root", tmp_path / "data", "--out", out,
                "--workers", 0, "--features", "rgb", "--size", 64) == 0
    with open_store(out) as store:
        names = sorted(Path(p).name for p in store.meta["source_path"])
        errors = store.errors
        lm = store.landmarks()
    assert names == ["astronaut one.png", "two_faces.png"]
    assert np.isfinite(lm).all()
    assert len(errors) == 1 and errors["cause"][0] == "no_face"
    assert errors["source_path"][0].endswith("coffee.png")


# -- what stops a run before any work --------------------------------------------------------
def _editbench(root, image):
    root.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "ok.png"), np.zeros((8, 8, 3), np.uint8))
    rows = [{"image": "ok.png", "mask": None, "label": 0, "edit": None, "split": "train"},
            {"image": image, "mask": None, "label": 0, "edit": None, "split": "train"}]
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("image, words", [("../outside/secret.jpg", "leads outside --root"),
                                          ("/etc/hostname", "is absolute")])
def test_editbench_paths_outside_the_root_are_refused(image, words, tmp_path, capsys):
    (tmp_path / "outside").mkdir()
    cv2.imwrite(str(tmp_path / "outside" / "secret.jpg"), np.zeros((8, 8, 3), np.uint8))
    root = tmp_path / "bench"
    _editbench(root, image)
    assert _run("--dataset", "editbench", "--root", root, "--out", tmp_path / "e.h5",
                "--workers", 0) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"manifest.jsonl:2: path {image!r} {words}" in line
    assert line.startswith("python -m pipelines.extract: error: ")
    assert not (tmp_path / "e.h5").exists()


def test_dfdc_metadata_paths_outside_the_root_are_refused(tmp_path, capsys):
    part = tmp_path / "dfdc" / "dfdc_train_part_0"
    part.mkdir(parents=True)
    _write_video(tmp_path / "secret.mp4", 2)
    _write_video(part / "a.mp4", 2)
    (part / "metadata.json").write_text(json.dumps(
        {"a.mp4": {"label": "REAL"}, "../../secret.mp4": {"label": "REAL"}}))
    assert _run("--dataset", "dfdc", "--root", tmp_path / "dfdc", "--out", tmp_path / "d.h5",
                "--workers", 0) == 2
    line = _one_line(capsys.readouterr().err)
    assert "metadata.json: entry '../../secret.mp4': path" in line and "leads outside --root" in line


def test_same_stem_in_two_datasets_layouts_is_refused_naming_both(tmp_path):
    from pipelines.datasets import _unique_video_ids
    from pipelines.samples import Source
    a = Source(path="/d/a/x", dataset="d", split="train", label=0, method="real", video_id="real/x")
    b = Source(path="/d/b/x", dataset="d", split="train", label=0, method="real", video_id="real/x")
    with pytest.raises(ex.UsageError, match="/d/a/x and /d/b/x get the same sample id"):
        _unique_video_ids([a, b])


def test_an_unreachable_scheduler_fails_before_the_bar(tmp_path, capsys):
    t0 = time.perf_counter()
    rc = ex.main(["--out", str(tmp_path / "s.h5"), "--limit", "2", "--features", "lbp",
                  "--scheduler", "tcp://127.0.0.1:1", "--connect-timeout", "1"])
    assert rc == 2 and time.perf_counter() - t0 < 20
    line = _one_line(capsys.readouterr().err)  # one line: no progress bar was drawn
    assert "--scheduler tcp://127.0.0.1:1: no Dask scheduler answered within 1 s" in line
    assert not (tmp_path / "s.h5").exists()


def test_no_dashboard_and_no_port_warning_unless_asked(tmp_path):
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        busy.bind(("", 8787))
        busy.listen()
    except OSError:
        pass  # someone else holds 8787: the warning would fire just the same
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pipelines.extract", "--out", str(tmp_path / "k.h5"),
             "--limit", "4", "--features", "lbp", "--workers", "1", "--no-progress"],
            cwd=REPO, capture_output=True, text=True, timeout=240)
    finally:
        busy.close()
    assert proc.returncode == 0, proc.stderr
    assert "8787" not in proc.stderr and "dashboard" not in proc.stderr.lower()
    asked = subprocess.run(
        [sys.executable, "-m", "pipelines.extract", "--out", str(tmp_path / "d.h5"),
         "--limit", "2", "--features", "lbp", "--workers", "1", "--no-progress",
         "--dashboard", "127.0.0.1:0"], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert asked.returncode == 0, asked.stderr
    assert re.fullmatch(r"dashboard: http://127\.0\.0\.1:\d+/status", asked.stderr.strip())


# -- a full disk, two runs on one --out --------------------------------------------------------
DEMO = ("--limit", 6, "--images-per-task", 2, "--features", "lbp", "--workers", 0)


def test_a_full_disk_is_one_line_and_a_rerun_resumes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "full.h5"
    real_write = stores.writer._write_columns
    calls = {"n": 0}

    def full_disk_on_the_second_shard(group, columns, fields):
        if group.name == "/errors":
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("Can't decrement id ref count (file write failed: time = Tue, "
                                   "errno = 28, error message = 'No space left on device')")
        return real_write(group, columns, fields)

    monkeypatch.setattr(stores.writer, "_write_columns", full_disk_on_the_second_shard)
    assert _run("--out", out, *DEMO) == 1
    line = _one_line(capsys.readouterr().err)
    assert "no space left on device" in line and "finished shards are kept" in line
    assert ".shards" in line and line.startswith("python -m pipelines.extract: error: cannot write")
    done = list(tmp_path.glob("full.h5.shards/*/part-*.h5"))
    assert len(done) == 1 and not list(tmp_path.rglob("*.tmp")) and not out.exists()
    monkeypatch.setattr(stores.writer, "_write_columns", real_write)
    assert _run("--out", out, *DEMO) == 0
    assert "(1 of 3 tasks resumed" in capsys.readouterr().out
    with open_store(out) as store:
        assert len(store) == 6


def test_a_second_run_on_one_out_is_refused_naming_the_owner(tmp_path, capsys):
    out = tmp_path / "busy.h5"
    folder = tmp_path / "busy.h5.shards"
    folder.mkdir()
    owner = {"pid": os.getppid(), "host": socket.gethostname(), "started": "2026-01-01T00:00:00"}
    (folder / "LOCK").write_text(json.dumps(owner))
    assert _run("--out", out, *DEMO) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"--out {out} is in use by another extraction (pid {os.getppid()} on " \
           f"{socket.gethostname()}, started 2026-01-01T00:00:00)" in line
    assert "free" not in line and not out.exists()
    assert json.loads((folder / "LOCK").read_text()) == owner  # the owner's lock is left alone


def test_a_stale_lock_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / "stale.h5.shards"
    folder.mkdir()
    (folder / "LOCK").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                             "started": "2026-01-01T00:00:00"}))
    assert _run("--out", tmp_path / "stale.h5", *DEMO) == 0
    assert (tmp_path / "stale.h5").is_file() and not folder.exists()


def test_overlapping_merges_do_not_share_a_temporary_file(tmp_path, monkeypatch):
    shard = stores.write_store(tmp_path / "s.h5", {
        "sample_id": ["a"], "dataset": ["d"], "split": ["train"], "label": [0], "method": ["m"],
        "video_id": ["m/a"], "frame_index": [0], "source_path": ["/a.png"]},
        vectors={"f": np.ones((1, 3))})
    out = tmp_path / "merged.h5"
    real_create = stores.writer._create_feature_datasets
    nested = []

    def merge_again_meanwhile(h5, layout, n):
        if not nested:
            nested.append("running")
            nested.append(stores.merge_shards([shard], out))  # a second run's merge
        return real_create(h5, layout, n)

    monkeypatch.setattr(stores.writer, "_create_feature_datasets", merge_again_meanwhile)
    assert stores.merge_shards([shard], out) == 1 and nested == ["running", 1]
    with open_store(out) as store:
        assert store.read(["f"])[0].tolist() == [[1.0, 1.0, 1.0]]
    assert not list(tmp_path.glob("*.tmp"))


# -- damaged stores -----------------------------------------------------------------------------
@pytest.fixture()
def store_copy(tmp_path):
    from tests.fusion.test_heads import make_store
    return make_store(tmp_path / "s.h5", with_nan=False)


def _train(store, tmp_path, *extra):
    from fusion.train import main as train_main
    return train_main(["--store", str(store), "--features", "a,b", "--out", str(tmp_path / "run"),
                       "--bootstrap", "0", "--no-plots", *extra])


def _info(*argv):
    from stores.info import main as info_main
    return info_main([str(a) for a in argv])


def test_a_missing_meta_label_is_one_line_everywhere(store_copy, tmp_path, capsys):
    with h5py.File(store_copy, "a") as h5:
        del h5["meta/label"]
    assert _info(store_copy) == 1
    assert "dataset /meta/label is missing" in _one_line(capsys.readouterr().err)
    assert _train(store_copy, tmp_path) == 2
    assert "dataset /meta/label is missing" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_a_feature_with_too_few_rows_is_one_line(store_copy, tmp_path, capsys):
    with h5py.File(store_copy, "a") as h5:
        n = h5["meta/sample_id"].shape[0]
        short = h5["features/b"][: n - 5]
        del h5["features/b"]
        h5["features"].create_dataset("b", data=short)
    assert _info(store_copy) == 1
    assert f"dataset /features/b has {n - 5} rows for {n} samples" in \
        _one_line(capsys.readouterr().err)
    assert _train(store_copy, tmp_path) == 2
    assert "/features/b has" in _one_line(capsys.readouterr().err)


def test_a_corrupted_chunk_is_found_by_check_and_named_by_readers(store_copy, tmp_path, capsys):
    with h5py.File(store_copy, "r") as h5:
        info = h5["features/b"].id.get_chunk_info(0)
    with open(store_copy, "r+b") as f:
        f.seek(info.byte_offset + 8)
        f.write(b"\xde\xad\xbe\xef" * 8)
    assert _info(store_copy) == 0  # the summary reads no feature rows
    capsys.readouterr()
    assert _info(store_copy, "--check") == 1
    line = _one_line(capsys.readouterr().err)
    assert "dataset /features/b cannot be read" in line and "damaged" in line
    assert _train(store_copy, tmp_path) == 1
    assert "dataset /features/b cannot be read" in _one_line(capsys.readouterr().err)


def test_check_passes_a_sound_store(store_copy, capsys):
    assert _info(store_copy, "--check") == 0
    assert "row counts agree" in capsys.readouterr().out


# -- hyper-parameters, damaged model files -------------------------------------------------
@pytest.mark.parametrize("param, words", [
    ("epochs=abc", "--param epochs: fusion 'mlp' expects a whole number >= 1, got 'abc'"),
    ("lr=-1", "--param lr: fusion 'mlp' expects a number >= 0, got -1"),
    ("epochs=2.5", "expects a whole number >= 1, got 2.5"),
])
def test_bad_param_types_stop_before_any_work(param, words, store_copy, tmp_path, capsys):
    t0 = time.perf_counter()
    assert _train(store_copy, tmp_path, "--fusion", "mlp", "--param", param) == 2
    assert time.perf_counter() - t0 < 5
    assert words in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def _model_dir(tmp_path, name, payload: bytes):
    d = tmp_path / "model"
    d.mkdir()
    (d / "model.json").write_text("{}")
    (d / name).write_bytes(payload)
    return d


def test_a_tampered_safetensors_file_is_one_line_naming_it(tmp_path, capsys):
    from fusion.predict import main as predict_main
    d = _model_dir(tmp_path, "weights.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json]")
    image = tmp_path / "i.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    assert predict_main(["--model", str(d), str(image)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert f"{d / 'weights.safetensors'}: damaged or unsafe model file" in line


def test_an_npz_with_object_arrays_is_one_line_naming_it(tmp_path, capsys):
    from fusion.predict import main as predict_main
    d = tmp_path / "model"
    d.mkdir()
    (d / "model.json").write_text("{}")
    np.savez(d / "weights.npz", w=np.array([{"code": "print(1)"}], dtype=object))
    image = tmp_path / "i.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    assert predict_main(["--model", str(d), str(image)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert f"{d / 'weights.npz'}: damaged or unsafe model file (it holds object arrays" in line
