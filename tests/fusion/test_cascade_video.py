"""The cascade's video head: clips of a video, training from real clips and their temporal
self-blends with the cascade frozen, one score per video, eval's video_head section,
determinism, resume, and the CLI's refusals."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from fusion.cascade.__main__ import main
from fusion.cascade.checkpoints import BEST_WEIGHTS, load_run
from fusion.cascade.config import TrainConfig
from fusion.cascade.data import StoreMaps, synthetic_images, synthetic_landmarks
from fusion.cascade.train import train
from fusion.cascade.video import (HEAD_DIR, HEAD_JSON, VideoHead, clip_starts, consecutive_runs,
                                  frame_features, load_video_head, video_groups, video_logits)
from fusion.cascade.video_train import real_clips, train_video_head
from stores import open_store, write_store

torch.set_num_threads(1)

TINY = dict(backbone="tiny", dim=32, heads=4, size=32, lr=3e-3)
QUIET = dict(progress=False, log=lambda *_: None)
RUNS = ((0, 1, 2, 3), (40, 41, 42, 43))  # two runs of 4 consecutive frames per video


def clip_store(path, n_videos=24, size=64, seed=0):
    """A store of ``n_videos`` synthetic videos, 8 frames each in two runs of 4 consecutive
    frames (``run["clip_len"] = 4``): every frame the video's image moved by a pixel or
    two, with its landmarks moved alike. A third of the videos are fakes (spliced squares)."""
    from extract import create_extractor
    from extract.registry import FaceBatch
    images, masks, labels, methods = synthetic_images(n_videos, size, seed, fake_fraction=0.33)
    lms = synthetic_landmarks(n_videos, size, np.random.default_rng(seed + 1))
    rng = np.random.default_rng(seed + 2)
    frames = [f for run in RUNS for f in run]
    split_of = np.array(["train", "val", "test"])[np.arange(n_videos) % 3]
    rows = {"img": [], "mask": [], "lm": [], "meta": []}
    for v in range(n_videos):
        for f in frames:
            dy, dx = (int(x) for x in rng.integers(-2, 3, 2))
            rows["img"].append(np.roll(images[v], (dy, dx), axis=(0, 1)))
            rows["mask"].append(np.roll(masks[v], (dy, dx), axis=(0, 1)))
            rows["lm"].append(lms[v] + [dx, dy])
            vid = f"{methods[v]}/{v:03d}"
            rows["meta"].append({"sample_id": f"{vid}:{f}", "dataset": "synthetic",
                                 "split": split_of[v], "label": int(labels[v]),
                                 "method": methods[v], "video_id": vid, "frame_index": f,
                                 "source_path": f"synthetic://{vid}"})
    meta = pd.DataFrame(rows["meta"])
    batch = FaceBatch(images=np.stack(rows["img"]), masks=np.stack(rows["mask"]),
                      mask_valid=np.ones(len(meta), bool), video_ids=meta["video_id"].to_numpy(),
                      frame_indices=meta["frame_index"].to_numpy())
    maps, attrs, valid = {}, {}, {}
    for name in ("rgb", "mask"):
        ex = create_extractor(name)
        out = ex.extract(batch)
        maps[name], valid[name], attrs[name] = out["map"], out["valid"], ex.attributes()
    return write_store(path, meta, maps=maps, attrs=attrs, valid=valid,
                       landmarks=np.stack(rows["lm"]).astype(np.float32),
                       run={"dataset": "synthetic", "size": size, "clip_len": 4})


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("video")
    store = clip_store(root / "clips.h5")
    run = root / "run"
    train(TrainConfig(store=str(store), out=str(run), epochs=1, batch_size=16, max_steps=2,
                      sbi="online", **TINY), **QUIET)
    return root, store, run


# ------------------------------------------------------------------------ clips of videos

def test_clip_starts_cover_every_frame():
    assert clip_starts(8, 4).tolist() == [0, 4]
    assert clip_starts(10, 4).tolist() == [0, 4, 6]
    assert clip_starts(3, 4).tolist() == [0] and clip_starts(4, 4).tolist() == [0]
    for n in range(1, 20):
        for t in range(1, 7):
            starts = clip_starts(n, t)
            covered = np.zeros(n, bool)
            for s in starts:
                covered[s:s + t] = True
            assert covered.all() and (starts + min(t, n) <= n).all()


def test_real_clips_are_consecutive_frames_of_one_real_video(video_run):
    _, store, _ = video_run
    with open_store(store) as s:
        meta, lms = s.meta, s.landmarks()
        clips = real_clips(meta, lms, 4, store_clip_len=4)
        reals = meta.loc[meta["label"] == 0, "video_id"].nunique()
        assert len(clips) == 2 * reals  # two runs of 4 per video
        for rows in clips:
            assert meta["video_id"].iloc[rows].nunique() == 1 and (meta["label"].iloc[rows] == 0).all()
            assert np.diff(meta["frame_index"].iloc[rows].to_numpy()).tolist() == [1, 1, 1]
        # clips of 3 never span the gap between the runs
        for rows in real_clips(meta, lms, 3, store_clip_len=4):
            assert np.diff(meta["frame_index"].iloc[rows].to_numpy()).tolist() == [1, 1]
        # a store of sampled single frames: consecutive *sampled* frames form the clip
        assert len(real_clips(meta, lms, 8, store_clip_len=1)) == reals
        assert len(real_clips(meta, lms, 8, store_clip_len=4)) == 0
        # frames without landmarks are left out of every clip
        lost = lms.copy()
        lost[clips[0][1]] = np.nan
        assert not any(clips[0][1] in r for r in real_clips(meta, lost, 2, store_clip_len=4))
    assert [len(r) for r in consecutive_runs([0, 1, 2, 3, 40, 41, 42, 43], 4)] == [4, 4]
    assert [len(r) for r in consecutive_runs([0, 9, 17], 1)] == [3]


def test_video_groups_order_frames_and_separate_methods():
    meta = pd.DataFrame({"method": ["a", "b", "a", "a"], "video_id": ["v", "v", "v", "w"],
                         "frame_index": [5, 0, 1, 0]})
    groups = video_groups(meta)
    assert [k for k, _ in groups] == ["a::v", "a::w", "b::v"]
    assert groups[0][1].tolist() == [2, 0]


def test_video_logits_average_the_clips_of_each_video():
    torch.manual_seed(0)
    head = VideoHead(6, 8).eval()
    rng = np.random.default_rng(0)
    pooled, logit = rng.normal(size=(11, 6)).astype(np.float32), rng.normal(size=11).astype(np.float32)
    groups = [("x", np.arange(6)), ("y", np.arange(6, 11))]
    got = video_logits(head, pooled, logit, groups, 4)
    with torch.no_grad():
        def one(rows):
            return head(torch.from_numpy(pooled[rows])[None], torch.from_numpy(logit[rows])[None],
                        torch.tensor([len(rows)]))[0].item()
        expected = [np.mean([one([0, 1, 2, 3]), one([2, 3, 4, 5])]),
                    np.mean([one([6, 7, 8, 9]), one([7, 8, 9, 10])])]
    assert got == pytest.approx(expected, abs=1e-5)
    # padding frames change nothing: a short clip scores alike alone and in a padded batch
    short = video_logits(head, pooled, logit, [("z", np.arange(3))], 4)
    assert short[0] == pytest.approx(one([0, 1, 2]), abs=1e-5)


def test_pooled_output_is_what_the_global_head_classifies(video_run):
    _, _, run = video_run
    model, config, _ = load_run(run)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        logits, _ = model.global_head(out["pooled"])
    assert out["pooled"].shape == (3, 3 * 32)
    assert torch.allclose(logits, out["logits"])


# ------------------------------------------------------------------------------ training

def test_head_trains_with_the_cascade_frozen_and_is_deterministic(video_run, tmp_path):
    import shutil

    from safetensors.torch import load_file
    _, store, run = video_run
    before = load_file(str(run / BEST_WEIGHTS))
    results = []
    for name in ("a", "b"):
        copy = tmp_path / name
        shutil.copytree(run, copy, ignore=shutil.ignore_patterns(HEAD_DIR))
        results.append(train_video_head(copy, [str(store)], clip_len=4, epochs=3, blends=1,
                                        seed=3, hidden=16, device="cpu", **QUIET))
    a, b = results
    after = load_file(str(tmp_path / "a" / BEST_WEIGHTS))
    assert all(torch.equal(before[k], after[k]) for k in before)  # the cascade is untouched
    assert a["history"] == [{**r, "seconds": a["history"][i]["seconds"]}
                            for i, r in enumerate(b["history"])]
    wa = load_file(str(tmp_path / "a" / HEAD_DIR / BEST_WEIGHTS))
    wb = load_file(str(tmp_path / "b" / HEAD_DIR / BEST_WEIGHTS))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    with open_store(store) as s:
        train_reals = s.meta[(s.meta.split == "train") & (s.meta.label == 0)].video_id.nunique()
    assert a["train_clips"] == 2 * train_reals
    record = json.loads((tmp_path / "a" / HEAD_DIR / HEAD_JSON).read_text())
    assert record["best"]["epoch"] in (1, 2, 3) and len(record["history"]) == 3
    assert record["head"] == "BiLSTM" and record["clip_len"] == 4
    # the training loss fell: the head learns to tell the clips from their blends
    losses = [r["train_loss"] for r in a["history"]]
    assert losses[-1] < losses[0]
    # another seed gives other blends and another head
    shutil.copytree(run, tmp_path / "c", ignore=shutil.ignore_patterns(HEAD_DIR))
    train_video_head(tmp_path / "c", [str(store)], clip_len=4, epochs=1, blends=1, seed=4,
                     hidden=16, device="cpu", **QUIET)
    wc = load_file(str(tmp_path / "c" / HEAD_DIR / BEST_WEIGHTS))
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_clip_augment_hook_reaches_reals_and_blends(video_run, tmp_path):
    import shutil
    _, store, run = video_run
    shutil.copytree(run, tmp_path / "r", ignore=shutil.ignore_patterns(HEAD_DIR))
    seen = []

    def darken(clip, rng):
        seen.append(clip.shape)
        return (clip // 2).astype(np.uint8)
    train_video_head(tmp_path / "r", [str(store)], clip_len=4, epochs=1, blends=1, seed=0,
                     hidden=16, device="cpu", clip_augment=darken, **QUIET)
    with open_store(store) as s:
        n_clips = sum(len(real_clips(s.meta[s.meta.split == sp].reset_index(drop=True),
                                     s.landmarks()[(s.meta.split == sp).to_numpy()], 4, 4))
                      for sp in ("train", "val"))
    assert len(seen) == 2 * n_clips and all(shape[0] == 4 for shape in seen)


# -------------------------------------------------------------------- eval, CLI, resume

def test_cli_trains_resumes_and_eval_reports_one_score_per_video(video_run, tmp_path, capsys):
    import shutil
    _, store, run = video_run
    run = shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns(HEAD_DIR))
    common = ["train-video", "--run", str(run), "--store", str(store), "--clip-len", "4",
              "--blends", "1", "--hidden", "16", "--device", "cpu", "--seed", "2"]
    assert main(common + ["--epochs", "2"]) == 0
    # a second run is refused without --overwrite or --resume; --resume continues it
    assert main(common + ["--epochs", "3"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(common + ["--epochs", "3", "--resume"]) == 0
    resumed = json.loads((run / HEAD_DIR / HEAD_JSON).read_text())
    fresh = tmp_path / "fresh"
    shutil.copytree(run, fresh, ignore=shutil.ignore_patterns(HEAD_DIR))
    assert main(["train-video", "--run", str(fresh), *common[3:], "--epochs", "3"]) == 0
    again = json.loads((fresh / HEAD_DIR / HEAD_JSON).read_text())
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed["history"]) == strip(again["history"])
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--store", str(store), "--n-boot", "20",
                 "--overlays", "0", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "video head (" in out and "mean of frames AUC" in out
    metrics = json.loads((run / "eval_test" / "metrics.json").read_text())
    section = metrics["video_head"]
    with open_store(store) as s:
        test = s.meta[s.meta.split == "test"]
        n_videos = test.groupby(["method", "video_id"]).ngroups
    assert section["n_videos"] == n_videos and section["n_clips"] == 2 * n_videos
    head = section["head"]
    assert head["n_real"] + head["n_fake"] == n_videos
    assert head["ci"]["cluster"] == "video" and len(head["ci"]["auc"]) == 2
    assert set(head["by_method"]) == set(test.loc[test.label == 1, "method"])
    # the mean-of-frames score here is the classification's own video score
    assert section["mean_of_frames"]["auc"] == pytest.approx(metrics["classification"]["video"]["auc"])
    page = (run / "eval_test" / "report.html").read_text()
    assert "test video head" in page and f"{head['auc']:.4f} [{head['ci']['auc'][0]:.4f}" in page
    videos = pd.read_csv(run / "eval_test" / "video_head_predictions.csv")
    assert len(videos) == n_videos and videos["video"].is_unique
    # each video's score recomputed from the head and the cascade's frame features
    model, config, _ = load_run(run)
    head_model, record = load_video_head(run)
    with open_store(store) as s:
        data = StoreMaps(s, "test")
        pooled, logit = frame_features(model, data.batch(np.arange(len(data)))["rgb"], 32, "cpu")
        expected = 1 / (1 + np.exp(-video_logits(head_model, pooled, logit, video_groups(data.meta), 4)))
    assert videos["video_head_score"].to_numpy() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("argv, message", [
    (["--hidden", "15"], "--hidden"),
    (["--lower-fraction", "1.5"], "--lower-fraction"),
    (["--resume", "--overwrite"], "give one"),
    (["--store", "/nonexistent.h5"], "/nonexistent.h5"),
    (["--clip-len", "0"], "--clip-len"),
])
def test_cli_bad_flags_stop_before_work(video_run, argv, message, capsys):
    _, store, run = video_run
    args = ["train-video", "--run", str(run), "--store", str(store), "--device", "cpu"]
    if "--store" in argv:
        args = args[:3] + args[5:]
    try:
        code = main(args + argv)
    except SystemExit as exc:  # argparse's own range checks
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (run / HEAD_DIR).exists()


def test_too_long_clips_are_refused_with_the_flag(video_run, tmp_path, capsys):
    _, store, run = video_run
    assert main(["train-video", "--run", str(run), "--store", str(store), "--clip-len", "9",
                 "--device", "cpu"]) == 2
    assert "--clip-len" in capsys.readouterr().err


# ------------------------------------------------------------------------ fusion.predict

def _face_video(path, n_frames=8):
    """An mp4 of a real face (skimage's astronaut) moving by a pixel or two per frame."""
    import cv2
    from skimage import data
    image = np.ascontiguousarray(data.astronaut()[:320, 60:380])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10,
                             (image.shape[1], image.shape[0]))
    for t in range(n_frames):
        moved = np.roll(image, (t % 3, t % 2), axis=(0, 1))
        writer.write(cv2.cvtColor(moved, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.mark.slow
def test_predict_gives_a_cascade_run_video_its_head_score(video_run, tmp_path, capsys):
    import shutil

    from fusion.predict import main as predict_main
    _, store, run = video_run
    run = shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns(HEAD_DIR))
    video = _face_video(tmp_path / "face.mp4")
    # without a head: frame scores and their mean, no video head score
    assert predict_main(["--model", str(run), str(video), "--out", str(tmp_path / "a.json")]) == 0
    plain = json.loads((tmp_path / "a.json").read_text())["results"][0]
    assert plain["faces"] and "video_head_score" not in plain
    assert plain["logit"] == pytest.approx(np.mean([f["logit"] for f in plain["faces"]]))
    assert main(["train-video", "--run", str(run), "--store", str(store), "--clip-len", "4",
                 "--blends", "1", "--hidden", "16", "--epochs", "1", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert predict_main(["--model", str(run), str(video), "--out", str(tmp_path / "b.json")]) == 0
    assert "video head score" in capsys.readouterr().out
    result = json.loads((tmp_path / "b.json").read_text())["results"][0]
    assert [f["score"] for f in result["faces"]] == [f["score"] for f in plain["faces"]]
    # the head's score, recomputed from the file's crops through the same functions
    from fusion.cascade.files import load_file_scorer
    from fusion.predict import _source, ingest_config
    from pathlib import Path
    scorer, record = load_file_scorer(run, "cpu")
    again = scorer.score_file(video, _source(Path(video)), ingest_config(record))
    model, config, _ = load_run(run)
    head, record = load_video_head(run)
    pooled, logit = frame_features(model, again["_crops"], config.size, "cpu")
    order = np.argsort([f["frame_index"] for f in again["faces"]], kind="stable")
    z = video_logits(head, pooled, logit, [("v", order)], record["clip_len"])[0]
    assert result["video_head_logit"] == pytest.approx(z, abs=1e-5)
    assert result["video_head_score"] == pytest.approx(1 / (1 + np.exp(-z)), abs=1e-6)
    assert logit.tolist() == pytest.approx([f["logit"] for f in result["faces"]], abs=1e-5)


def test_clip_codec_reencodes_whole_clips_by_its_probability():
    from fusion.cascade.video_train import CLIP_CRF, ClipCodec
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    assert ClipCodec(0.0)(clip, np.random.default_rng(1)) is clip
    a = ClipCodec(1.0)(clip, np.random.default_rng(1))
    b = ClipCodec(1.0)(clip, np.random.default_rng(1))
    assert a.shape == clip.shape and a.dtype == np.uint8 and not np.array_equal(a, clip)
    np.testing.assert_array_equal(a, b)  # deterministic by the clip's generator
    # the CRF is the second draw of that generator, as documented
    g = np.random.default_rng(1)
    g.random()
    from fusion.cascade.codec import h264_roundtrip
    np.testing.assert_array_equal(a, h264_roundtrip(clip, int(g.integers(CLIP_CRF[0], CLIP_CRF[1] + 1))))
    fired = sum(not np.array_equal(ClipCodec(0.5)(clip, np.random.default_rng(s)), clip)
                for s in range(60))
    assert 15 <= fired <= 45
