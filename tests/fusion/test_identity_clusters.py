"""Identities for honest CIs: recorded at extraction, read as the video from older stores,
and resampled whole by the cluster bootstrap."""
import json

import h5py
import numpy as np
import pandas as pd
import pytest

from fusion import metrics
from fusion.metrics import _cluster_resamples, identity_clusters
from pipelines.datasets import _celebdf_identity, _ffpp_identity, index_editbench
from stores import open_store, write_store


def test_a_bootstrap_by_identity_resamples_whole_identities():
    rng = np.random.default_rng(0)
    # 8 people, each with a real video (3 frames) and a fake one (2 frames): 40 rows
    identity = np.repeat([f"p{i}" for i in range(8)], 5)
    labels = np.tile([0, 0, 0, 1, 1], 8)
    resamples, stratified = _cluster_resamples(labels, identity, 200, rng)
    assert stratified is False and len(resamples) > 150  # a person holds both classes
    size = pd.Series(identity).value_counts()
    for rows in resamples:
        drawn = pd.Series(identity[rows]).value_counts()
        # every person drawn k times brings all 5 rows k times: never a part of a person
        assert (drawn % size[drawn.index] == 0).all()
    ci = metrics.compute_metrics(labels, np.linspace(0, 1, 40), video_ids=[f"v{i}" for i in range(40)],
                                 identities=identity, n_boot=50)["ci"]
    assert ci["cluster"] == "identity" and ci["n_clusters"] == {"real": 8, "fake": 8}


def test_identity_clusters_only_when_identities_group_videos():
    assert identity_clusters(["a", "a", "b"], ["v1", "v2", "v3"]).tolist() == ["a", "a", "b"]
    assert identity_clusters(["v1", "v1", "v2"], ["v1", "v1", "v2"]) is None  # an old store
    assert identity_clusters(["x", "y"], ["v1", "v2"]) is None  # one video per identity: same clusters
    with pytest.raises(ValueError, match="one id per sample"):
        identity_clusters(["a"], ["v1", "v2"])


def test_ffpp_and_celebdf_identities():
    assert _ffpp_identity("000", actors=False) == _ffpp_identity("000_003", actors=False) == "youtube/000"
    assert _ffpp_identity("01__talking", actors=True) == "actors/01"
    assert _ffpp_identity("01_02__talking__ABC123", actors=True) == "actors/01"
    assert _celebdf_identity("Celeb-synthesis", "id0_id1_0000") == _celebdf_identity("Celeb-real", "id0_0001")
    assert _celebdf_identity("YouTube-real", "00042") == "youtube/00042"


def test_an_editbench_store_carries_the_source_as_identity(tmp_path):
    import cv2
    from pipelines.extract import main
    root = tmp_path / "bench"
    (root / "img").mkdir(parents=True)
    rows = []
    for k, (source, edit) in enumerate([("a.jpg", "real"), ("a.jpg", "sbi"), ("b.jpg", "real"),
                                        ("b.jpg", "xray")]):
        image = np.random.default_rng(k).integers(0, 256, (40, 40, 3), np.uint8)
        cv2.imwrite(str(root / "img" / f"{k}.png"), image)
        rows.append({"image": f"img/{k}.png", "mask": None, "label": int(edit != "real"),
                     "edit": edit, "split": "train", "source": source})
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert [s.identity for s in index_editbench(root)] == ["a.jpg", "b.jpg", "a.jpg", "b.jpg"]
    out = tmp_path / "bench.h5"
    assert main(["--dataset", "editbench", "--root", str(root), "--features", "color", "--size", "32",
                 "--workers", "0", "--out", str(out), "--no-progress"]) == 0
    with open_store(out) as store:
        meta = store.meta.sort_values("video_id")
    assert dict(zip(meta["video_id"], meta["identity"])) == {
        "real/img/0": "a.jpg", "sbi/img/1": "a.jpg", "real/img/2": "b.jpg", "xray/img/3": "b.jpg"}


def test_an_old_store_reads_identity_as_the_video(tmp_path):
    meta = pd.DataFrame({"sample_id": ["x:a:0", "x:b:0"], "dataset": "x", "split": "test",
                         "label": [0, 1], "method": ["real", "m"], "video_id": ["real/a", "m/b"],
                         "frame_index": 0, "source_path": ["/a.png", "/b.png"]})
    path = write_store(tmp_path / "old.h5", meta, vectors={"f": np.ones((2, 2))})
    with h5py.File(path, "a") as h5:  # as written before identities were recorded
        del h5["meta/identity"]
    with open_store(path) as store:
        assert store.meta["identity"].tolist() == ["real/a", "m/b"]
        assert list(store.meta.columns)[-1] == "identity"
