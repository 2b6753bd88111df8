"""End to end: ``python -m pipelines.extract`` on the demo, FF++, bad input, resume."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from skimage import data

from pipelines.extract import main
from stores import open_store

REPO = Path(__file__).resolve().parents[2]


def _run(*argv):
    return main([*map(str, argv), "--no-progress"])


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo.h5"
    assert _run("--out", out, "--workers", 0, "--features", "rgb,mask,lbp,dct") == 0
    summary = capsys.readouterr().out
    assert "failures     none" in summary and "samples/s" in summary
    assert summary.splitlines()[-1] == f"next: python -m stores.info {out}"
    with open_store(out) as store:
        meta = store.meta
        assert set(meta["split"]) == {"train", "val", "test"}
        assert set(meta["label"]) == {0, 1}
        for split in ("train", "val", "test"):
            assert set(meta.loc[meta.split == split, "label"]) == {0, 1}
        X, y, m = store.read(["lbp", "dct"], split="test")
        assert len(X) == len(y) == len(m) > 0 and np.isfinite(X).all()
        crops, _ = store.read_map("rgb")
        masks, mmeta = store.read_map("mask")
        assert crops.shape[1:] == (256, 256, 3) and crops.dtype == np.uint8
        fake = mmeta["label"].to_numpy() == 1
        assert masks[fake].reshape(fake.sum(), -1).any(axis=1).all()  # every fake has its edit mask
        assert not masks[~fake].any()
        assert store.attrs("lbp")["code_version"]
        assert store.run["dataset"] == "demo"


def test_demo_on_a_dask_local_cluster_matches_in_process(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    assert _run("--out", a, "--workers", 0, "--features", "lbp", "--limit", 12, "--images-per-task", 4) == 0
    assert _run("--out", b, "--workers", 2, "--features", "lbp", "--limit", 12, "--images-per-task", 4) == 0
    with open_store(a) as sa, open_store(b) as sb:
        assert sa.meta.equals(sb.meta)
        np.testing.assert_array_equal(sa.read(["lbp"])[0], sb.read(["lbp"])[0])


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "nope"], "--dataset: unknown data set 'nope'"),
    (["--features", "lbp,nonexistent"], "unknown feature(s) nonexistent"),
    (["--dataset", "ff++", "--root", "/does/not/exist"], "/does/not/exist"),
    (["--frames", "0"], "--frames must be at least 1"),
    (["--out", "/does/not/exist/x.h5"], "--out: folder /does/not/exist does not exist"),
    (["--faces", "biggest"], "--faces must be one of largest, all, got 'biggest'"),
    (["--neighbours", "-1"], "--neighbours must be at least 0, got -1"),
    (["--dataset", "folder", "--fallback-detector", "nope"],
     "--fallback-detector: unknown detector 'nope'; choose none or one of"),
])
def test_wrong_flags_stop_before_any_work(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _run(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_adding_a_feature_keeps_the_old_ones(tmp_path, capsys):
    out = tmp_path / "s.h5"
    assert _run("--out", out, "--workers", 0, "--features", "rgb", "--limit", 6) == 0
    with h5py.File(out) as h5:
        before = h5["maps/rgb"][...]
    assert _run("--out", out, "--workers", 0, "--features", "rgb,lbp", "--limit", 6) == 0
    assert "lbp added; rgb kept" in capsys.readouterr().out
    with h5py.File(out) as h5:
        np.testing.assert_array_equal(h5["maps/rgb"][...], before)
        assert "lbp" in h5["features"]
    assert _run("--out", out, "--workers", 0, "--features", "lbp", "--limit", 6) == 0
    assert "already in the store" in capsys.readouterr().out
    # a store made with other settings is refused, not silently mixed
    assert _run("--out", out, "--workers", 0, "--features", "dct", "--limit", 6, "--size", 128) == 2
    assert "other settings" in capsys.readouterr().err


def _write_video(path, frames):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25,
                             (frames[0].shape[1], frames[0].shape[0]))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def test_corrupt_video_and_faceless_image_are_recorded_and_the_run_goes_on(tmp_path, capsys):
    root = tmp_path / "data"
    (root / "real").mkdir(parents=True)
    (root / "fake").mkdir()
    cv2.imwrite(str(root / "real" / "astronaut.png"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "real" / "coffee.png"), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    (root / "fake" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    out = tmp_path / "f.h5"
    assert _run("--dataset", "folder", "--root", root, "--out", out, "--workers", 0,
                "--features", "rgb,lbp") == 0
    summary = capsys.readouterr().out
    assert "corrupt_video: 1" in summary and "no_face: 1" in summary
    with open_store(out) as store:
        assert len(store) == 1 and store.meta["source_path"][0].endswith("astronaut.png")
        errors = store.errors.set_index("cause")
        assert errors.loc["corrupt_video", "source_path"].endswith("broken.mp4")
        assert errors.loc["no_face", "source_path"].endswith("coffee.png")
        lm = store.landmarks()[0]
        assert np.isfinite(lm).all() and (lm >= 0).all() and (lm < 256).all()
        facts = store.source_meta.iloc[0]  # recorded for the confound audit
        assert (facts["image_width"], facts["image_height"], facts["is_jpeg"]) == (512, 512, 0)
        assert facts["file_bytes"] == os.path.getsize(root / "real" / "astronaut.png")
        assert 50 < facts["face_width"] < 512 and np.isnan(facts["video_bitrate"])


@pytest.mark.slow
def test_killed_run_resumes_and_gives_the_same_store(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "pipelines.extract", "--workers", "0", "--no-progress",
            "--features", "rgb,lbp,dct", "--images-per-task", "2"]
    out = tmp_path / "r.h5"
    proc = subprocess.Popen([*args, "--out", str(out)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shard_dir = tmp_path / "r.h5.shards"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shard_dir.glob("*/part-*.h5"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name for p in shard_dir.glob("*/part-*.h5")}
    assert len(done) >= 3 and not out.exists()
    resumed = subprocess.run([*args, "--out", str(out)], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    n_resumed = int(resumed.stdout.split("samples")[1].split("(")[1].split(" of")[0])
    assert n_resumed >= len(done)
    clean = tmp_path / "clean.h5"
    assert subprocess.run([*args, "--out", str(clean)], env=env, cwd=tmp_path,
                          capture_output=True, timeout=300).returncode == 0
    with open_store(out) as a, open_store(clean) as b:
        assert a.meta.equals(b.meta)
        np.testing.assert_array_equal(a.read(["lbp", "dct"])[0], b.read(["lbp", "dct"])[0])
        np.testing.assert_array_equal(a.read_map("rgb")[0], b.read_map("rgb")[0])
    assert not shard_dir.exists()


@pytest.mark.slow
@pytest.mark.shared_data
def test_ffpp_sample_end_to_end(ffpp_root, tmp_path):
    out = tmp_path / "ffpp.h5"
    assert _run("--dataset", "ff++", "--root", ffpp_root, "--features", "rgb,mask,lbp,dct",
                "--frames", 3, "--workers", 2, "--out", out) == 0
    with open_store(out) as store:
        meta = store.meta
        accounted = len(meta) + (store.errors["frame_index"] >= 0).sum()
        assert accounted == 7 * 3 and len(store.errors[store.errors["frame_index"] < 0]) == 0
        split_of = meta.groupby("video_id")["split"].first().to_dict()
        assert split_of == {"real/youtube/519": "train", "Deepfakes/519_515": "train",
                            "Face2Face/750_743": "train", "real/youtube/004": "val",
                            "NeuralTextures/004_982": "val", "real/youtube/634": "test",
                            "FaceSwap/634_660": "test"}
        labels = meta.groupby("video_id")["label"].first()
        assert (labels == [0 if v.startswith("real/") else 1 for v in labels.index]).all()
        assert set(meta["method"]) == {"real", "Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"}
        assert (meta.groupby("video_id").size() == 3).all()
        lm = store.landmarks()
        assert np.isfinite(lm).all() and (lm >= 0).all() and (lm < 256).all()
        X, y, m = store.read(["lbp", "dct"], split="test")
        assert set(m["video_id"]) == {"real/youtube/634", "FaceSwap/634_660"} and len(X) == 6
        # fakes with a paired real get difference masks; 750_743 has no real 750 here
        masks, mm = store.read_map("mask", label=1)
        valid = store.valid("mask")[store.select(label=1)]
        assert not valid[mm["video_id"].to_numpy() == "Face2Face/750_743"].any()
        paired = mm["video_id"].to_numpy() != "Face2Face/750_743"
        area = masks[paired].reshape(paired.sum(), -1).mean(axis=1)
        assert (area > 0.01).all() and (area < 0.7).all()


def test_editbench_landmarks_reach_the_store(tmp_path):
    from pipelines.faces import FaceAligner
    face = FaceAligner().process(data.astronaut())
    root = tmp_path / "bench"
    (root / "images").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "a.png"), cv2.cvtColor(face.crop, cv2.COLOR_RGB2BGR))
    row = {"image": "images/a.png", "mask": None, "label": 0, "edit": "real", "split": "train",
           "landmarks": face.landmarks.tolist()}
    (root / "manifest.jsonl").write_text(__import__("json").dumps(row) + "\n")
    out = tmp_path / "b.h5"
    assert _run("--dataset", "editbench", "--root", root, "--out", out, "--workers", 0,
                "--features", "head_pose") == 0
    with open_store(out) as store:
        np.testing.assert_allclose(store.landmarks()[0], face.landmarks, atol=1e-4)
        assert store.valid("head_pose").all()


def test_an_existing_dask_scheduler_is_used(tmp_path):
    from dask.distributed import LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        out = tmp_path / "s.h5"
        assert _run("--out", out, "--features", "lbp", "--limit", 4,
                    "--scheduler", cluster.scheduler_address) == 0
    with open_store(out) as store:
        assert len(store) == 4 and store.valid("lbp").all()


def test_clip_without_weights_stops_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CLMF_CLIP_WEIGHTS", raising=False)
    out = tmp_path / "c.h5"
    assert _run("--out", out, "--features", "lbp,clip", "--workers", 0) == 2
    err = capsys.readouterr().err
    assert "--clip-weights" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_gpu_features_get_one_worker(monkeypatch, capsys):
    """Without a GPU here, the rule is checked with a stand-in extractor on 'cuda'."""
    import pipelines.extract as px

    class OnCuda:
        device = "cuda"

    monkeypatch.setattr(px, "_extractor", lambda name, params=None: OnCuda() if name == "cnn" else object())
    assert px.uses_gpu(["lbp", "cnn"], {}) and not px.uses_gpu(["lbp"], {})
    seen = {}

    def fake_client(args, workers):
        seen["workers"] = workers
        raise RuntimeError("stop here")

    monkeypatch.setattr(px, "_client", fake_client)
    args = px.build_parser().parse_args(["--workers", "2", "--no-progress"])
    with pytest.raises(RuntimeError, match="stop here"):
        list(px.run_tasks([()], args, gpu=True))
    assert seen["workers"] == 1 and "one worker owns" in capsys.readouterr().err


def test_maps_are_kept_by_choice(tmp_path, capsys):
    out = tmp_path / "m.h5"
    assert _run("--out", out, "--workers", 0, "--features", "lbp,fft", "--limit", 4) == 0
    with open_store(out) as store:
        assert store.maps == ["lbp"] and store.features == ["fft", "lbp"]
    out2 = tmp_path / "m2.h5"
    assert _run("--out", out2, "--workers", 0, "--features", "lbp,fft", "--limit", 4,
                "--maps", "all") == 0
    with open_store(out2) as store:
        assert store.maps == ["fft", "lbp"]
    assert _run("--out", tmp_path / "x.h5", "--features", "rgb", "--maps", "none") == 2
    assert "rgb, which has only a map" in capsys.readouterr().err
