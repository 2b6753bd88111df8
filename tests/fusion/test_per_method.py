"""fusion.per_method: frame and video AUC per kind of fake against all reals, checked against
scikit-learn by hand, and its place in ``fusion.cascade eval`` (metrics.json, summary,
report.html)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from fusion.per_method import (MIN_METHOD_VIDEOS, per_method_lines, per_method_table,
                               per_method_warnings)

torch.set_num_threads(1)


def video_store(path, n_real_videos=4, fake_videos=(("splice_color", 3), ("splice_texture", 2),
                                                    ("lonely", 1)),
                frames=3, size=32, seed=0, split="val", shuffle_labels=False):
    """A store of multi-frame "videos" of :func:`fusion.cascade.data.synthetic_images` crops:
    ``n_real_videos`` real videos and, per ``(method, count)``, that many fake videos, each of
    ``frames`` crops with landmarks, all in ``split``. ``shuffle_labels`` permutes the videos'
    (label, method) among them with a fixed seed: the same images, other labels."""
    from extract import create_extractor
    from extract.registry import FaceBatch
    from fusion.cascade.data import synthetic_images, synthetic_landmarks
    from stores import write_store

    n_fake_videos = sum(c for _, c in fake_videos)
    n_videos = n_real_videos + n_fake_videos
    reals = synthetic_images(n_real_videos * frames + 2, size, seed, fake_fraction=0.0)
    fakes = synthetic_images(n_fake_videos * frames + 2, size, seed + 1, fake_fraction=1.0)
    real_idx = np.flatnonzero(reals[2] == 0)[:n_real_videos * frames]
    fake_idx = np.flatnonzero(fakes[2] == 1)[:n_fake_videos * frames]
    images = np.concatenate([reals[0][real_idx], fakes[0][fake_idx]])
    masks = np.concatenate([reals[1][real_idx], fakes[1][fake_idx]])
    video_label = np.array([0] * n_real_videos + [1] * n_fake_videos)
    video_method = np.array(["real"] * n_real_videos
                            + [m for m, c in fake_videos for _ in range(c)], dtype=object)
    if shuffle_labels:
        order = np.random.default_rng(seed + 7).permutation(n_videos)
        video_label, video_method = video_label[order], video_method[order]
    labels = np.repeat(video_label, frames)
    methods = np.repeat(video_method, frames)
    video_ids = np.repeat([f"v{v:03d}" for v in range(n_videos)], frames).astype(object)
    n = len(labels)
    masks = np.where(labels[:, None, None] == 1, masks, 0)
    batch = FaceBatch(images=images, masks=masks, mask_valid=np.ones(n, bool),
                      video_ids=video_ids, frame_indices=np.tile(np.arange(frames), n_videos))
    maps, attrs, valid = {}, {}, {}
    for name in ("rgb", "mask"):
        ex = create_extractor(name)
        result = ex.extract(batch)
        maps[name], valid[name], attrs[name] = result["map"], result["valid"], ex.attributes()
    frame_index = np.tile(np.arange(frames), n_videos)
    meta = pd.DataFrame({"sample_id": [f"{v}:{f}" for v, f in zip(video_ids, frame_index)],
                         "dataset": "synthetic", "split": split, "label": labels,
                         "method": methods, "video_id": video_ids, "frame_index": frame_index,
                         "source_path": [f"synthetic://{v}" for v in video_ids]})
    landmarks = synthetic_landmarks(n, size, np.random.default_rng(seed + 2))
    return write_store(path, meta, maps=maps, attrs=attrs, valid=valid, landmarks=landmarks,
                       run={"dataset": "synthetic", "size": size, "seed": seed})


def _hand_table(labels, logits, methods, videos):
    """Per method: sklearn AUC of its frames vs all real frames, and of its videos' mean
    logits vs all real videos' (a video is (method, video_id))."""
    df = pd.DataFrame({"label": labels, "logit": logits, "method": methods, "video": videos})
    per_video = df.groupby(["method", "video"]).agg(label=("label", "max"), logit=("logit", "mean"))
    per_video = per_video.reset_index()
    out = {}
    for m in sorted(set(df.loc[df.label == 1, "method"])):
        f = df[(df.label == 0) | (df.method == m)]
        v = per_video[(per_video.label == 0) | (per_video.method == m)]
        out[m] = (roc_auc_score(f.label, f.logit), roc_auc_score(v.label, v.logit),
                  int((v.label == 1).sum()))
    return out


def test_table_equals_sklearn_by_hand():
    rng = np.random.default_rng(0)
    # 5 real videos, method a: 4 videos, b: 2, c: 1; 2-5 frames each; a video id repeats
    # across methods ("000"), which must stay two videos
    rows = []
    for method, n in (("real", 5), ("a", 4), ("b", 2), ("c", 1)):
        for v in range(n):
            for _ in range(int(rng.integers(2, 6))):
                shift = {"real": 0.0, "a": 1.0, "b": 0.3, "c": -2.0}[method]
                rows.append((int(method != "real"), shift + rng.normal(), method, f"{v:03d}"))
    labels, logits, methods, videos = (np.array(c) for c in zip(*rows))
    table = per_method_table(labels, logits, methods, videos, n_boot=200, seed=1)
    hand = _hand_table(labels, logits, methods, videos)
    assert [r["method"] for r in table] == ["a", "b", "c"]  # by name, not by score
    for r in table:
        frame_auc, video_auc, n_videos = hand[r["method"]]
        assert r["frame_auc"] == pytest.approx(frame_auc, abs=1e-12)
        assert r["video_auc"] == pytest.approx(video_auc, abs=1e-12)
        assert r["n_videos"] == n_videos and r["n_real_videos"] == 5
        assert r["n_frames"] == int((methods == r["method"]).sum())
        assert r["n_real_frames"] == int((labels == 0).sum())
    a = table[0]
    assert a["frame_auc_ci"][0] <= a["frame_auc"] <= a["frame_auc_ci"][1]
    assert a["video_auc_ci"][0] <= a["video_auc"] <= a["video_auc_ci"][1]
    assert a["frame_auc_ci"][1] - a["frame_auc_ci"][0] > 0.01  # videos resampled, not zero-width
    assert a["warning"] is None
    assert "has 2 fake videos (< 3 per method)" in table[1]["warning"]
    assert "has one fake video: a single video decides" in table[2]["warning"]
    from fusion.warning_groups import kind_of
    assert [kind_of(r["warning"]) for r in table[1:]] == ["too few videos", "one video decides"]
    assert all(v != v for v in table[2]["video_auc_ci"] + table[2]["frame_auc_ci"])  # NaN: no CI
    assert per_method_warnings(table, "test") == [f"test: {table[1]['warning']}",
                                                  f"test: {table[2]['warning']}"]
    lines = per_method_lines(table)
    assert len(lines) == 3 and lines[0].strip().startswith("a: 4 videos")
    assert "(!) few videos" in lines[1] and "(!)" not in lines[0]
    assert table[2]["frame_auc"] < 0.5 and "(below chance)" in lines[2]
    assert "(below chance)" not in lines[0]
    assert MIN_METHOD_VIDEOS == 3


def test_video_level_is_the_mean_frame_logit_not_the_mean_probability():
    # fake video: logits 6 and -2 (mean 2, prob mean ~0.56); real video: 1 and 1 (mean 1, prob
    # 0.73): the mean logit ranks the fake above the real, the mean probability does not
    labels, logits = np.array([0, 0, 1, 1]), np.array([1.0, 1.0, 6.0, -2.0])
    table = per_method_table(labels, logits, ["real", "real", "x", "x"], ["r", "r", "f", "f"],
                             n_boot=0)
    assert table[0]["video_auc"] == 1.0
    p = 1 / (1 + np.exp(-logits))
    assert p[2:].mean() < p[:2].mean()


def test_cascade_eval_writes_the_table_summary_and_report(tmp_path, capsys):
    from fusion.cascade.__main__ import main
    from fusion.cascade.checkpoints import load_run
    from fusion.cascade.data import StoreMaps
    from fusion.cascade.inference import run_inference
    from stores import open_store

    store = video_store(tmp_path / "videos.h5", split="test")
    train_store = video_store(tmp_path / "train.h5", seed=5, split="train")
    run, out = tmp_path / "run", tmp_path / "eval"
    assert main(["train", "--store", str(train_store), "--out", str(run), "--backbone", "tiny",
                 "--random-init", "--dim", "16", "--size", "32", "--epochs", "1",
                 "--batch-size", "8", "--max-steps", "2", "--device", "cpu", "--workers", "0",
                 "--augment", "none"]) == 0
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--store", str(store), "--out", str(out),
                 "--n-boot", "100", "--overlays", "0", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    table = metrics["per_method"]
    # the hand computation from the same model's logits on the same crops
    model, config, _ = load_run(run)
    with open_store(store) as s:
        data = StoreMaps(s, "test")
        logits = run_inference(model, data, config.size, torch.device("cpu"))["logits"]
        meta = data.meta
    hand = _hand_table(meta["label"].to_numpy(), logits, meta["method"].to_numpy(),
                       meta["video_id"].to_numpy())
    assert [r["method"] for r in table] == ["lonely", "splice_color", "splice_texture"]
    for r in table:
        assert (r["frame_auc"], r["video_auc"], r["n_videos"]) == pytest.approx(hand[r["method"]])
        assert r["n_frames"] == 3 * r["n_videos"] and r["n_real_videos"] == 4
    # predictions.csv's probabilities give the same frame AUCs (the logit only removes ties)
    pred = pd.read_csv(out / "predictions.csv")
    for r in table:
        f = pred[(pred.label == 0) | (pred.method == r["method"])]
        assert r["frame_auc"] == pytest.approx(roc_auc_score(f.label, f.score), abs=1e-9)
    assert "test: method 'lonely' has one fake video" in " ".join(metrics["warnings"])
    assert "test: method 'splice_texture' has 2 fake videos (< 3" in " ".join(metrics["warnings"])
    assert "per kind of fake" in printed and "splice_color: 3 videos / 9 frames vs 4 real videos" in printed
    page = (out / "report.html").read_text()
    assert "test per kind of fake" in page and "video AUC [95% CI]" in page
    section = page[page.index("test per kind of fake</h2>"):]
    assert section.index("lonely") < section.index("splice_color") < section.index("splice_texture")
