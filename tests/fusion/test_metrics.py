"""Tests for fusion.metrics against sklearn and hand-computed cases."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from fusion import metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_and_ap_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500)
    s = rng.normal(size=500) + y * 0.7
    s[:50] = np.round(s[:50], 1)  # some ties
    m = metrics.compute_metrics(y, s, n_boot=0)
    assert m["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert m["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert m["n_real"] + m["n_fake"] == 500


def test_roc_points_match_sklearn():
    from sklearn.metrics import roc_curve
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200), 1)
    fpr, tpr, _ = metrics.roc_points(y, s)
    fpr_sk, tpr_sk, _ = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, fpr_sk)
    np.testing.assert_allclose(tpr, tpr_sk)


def test_eer_is_interpolated_not_nearest_point():
    # reals 0.2, 0.5; fakes 0.5, 0.9. Sorted: 0.9F | tie 0.5 (R+F) | 0.2R.
    # ROC points (FPR, FNR): (0, 1), (0, 0.5), (0.5, 0), (1, 0).
    # The segment (0, 0.5) -> (0.5, 0) crosses FPR = FNR at 0.25; nearest points give 0.5 or 0.
    assert metrics.eer([0, 0, 1, 1], [0.2, 0.5, 0.5, 0.9]) == pytest.approx(0.25)


def test_eer_hand_case_perfect_and_crossing():
    assert metrics.eer([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert metrics.eer([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(1.0)
    # 4 reals 0.1 0.2 0.3 0.7, 2 fakes 0.6 0.8. Points (FPR, FNR): (0,1) (0,.5) (.25,.5) (.25,0):
    # FPR - FNR goes -0.25 -> +0.25 on the vertical step at FPR = 0.25, so EER = 0.25.
    assert metrics.eer([0, 0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.6, 0.8]) == pytest.approx(0.25)


def test_far_at_frr_and_frr_at_far_hand_case():
    # reals 0.1 0.2 0.3 0.6 ; fakes 0.4 0.5 0.7 0.8
    # ROC points (FRR=FPR, FAR=FNR): (0,1) (0,.75) (0,.5) (.25,.5) (.25,.25) (.25,0) (.5,0) ...
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.2, 0.3, 0.6, 0.4, 0.5, 0.7, 0.8]
    far = metrics.far_at_frr(y, s)
    # FRR <= 0.1: only FPR = 0 points allowed -> best FAR 0.5 (fakes 0.4, 0.5 accepted)
    assert far == {"0.001": 0.5, "0.01": 0.5, "0.05": 0.5, "0.1": 0.5}
    assert metrics.far_at_frr(y, s, targets=[0.25])["0.25"] == 0.0
    frr = metrics.frr_at_far(y, s)
    # FAR <= 0.1 needs FNR = 0 -> threshold 0.4 -> real 0.6 rejected -> FRR 0.25
    assert frr == {"0.001": 0.25, "0.01": 0.25, "0.05": 0.25, "0.1": 0.25}
    assert metrics.tpr_at_fpr(y, s)["0.01"] == 0.5
    m = metrics.compute_metrics(y, s, n_boot=0)
    assert m["far_at_frr"] == far and m["frr_at_far"] == frr


def test_threshold_at_eer_and_accuracy():
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.2, 0.3, 0.6, 0.4, 0.5, 0.7, 0.8]
    t = metrics.threshold_at_eer(y, s)
    # EER point (FPR .25, FNR .25) is reached with threshold 0.5: real 0.6 and fake 0.4 wrong
    assert t == 0.5
    assert metrics.accuracy(y, s, t) == 0.75


def test_video_level_keeps_methods_apart():
    # The same folder name "000" under two methods must stay two videos.
    labels = [0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.3, 0.9, 0.7, 0.2, 0.4]
    methods = ["real", "real", "Deepfakes", "Deepfakes", "FaceSwap", "FaceSwap"]
    vids = ["000", "000", "000", "000", "000", "000"]
    v_labels, v_scores, v_methods, keys = metrics.video_scores(labels, scores, methods, vids)
    assert len(keys) == 3
    got = dict(zip(v_methods, v_scores))
    assert got["real"] == pytest.approx(0.2)
    assert got["Deepfakes"] == pytest.approx(0.8)
    assert got["FaceSwap"] == pytest.approx(0.3)
    m = metrics.compute_metrics(labels, scores, methods, vids, n_boot=0)
    assert m["video"]["n_videos"] == 3
    assert m["video"]["n_fake"] == 2 and m["video"]["n_real"] == 1


def test_by_method_is_each_method_against_all_reals():
    labels = [0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.3, 0.9, 0.7, 0.2, 0.4]
    methods = ["real", "real", "A", "A", "B", "B"]
    m = metrics.compute_metrics(labels, scores, methods, n_boot=0)
    assert set(m["by_method"]) == {"A", "B"}
    assert m["by_method"]["A"]["auc"] == 1.0
    assert m["by_method"]["A"]["n_real"] == 2 and m["by_method"]["A"]["n_fake"] == 2
    assert m["by_method"]["B"]["auc"] == pytest.approx(roc_auc_score([0, 0, 1, 1], [0.1, 0.3, 0.2, 0.4]))


def test_single_class_gives_nan_and_note():
    m = metrics.compute_metrics([1, 1, 1], [0.2, 0.5, 0.9], ["A"] * 3, ["v1", "v1", "v2"])
    assert math.isnan(m["auc"]) and math.isnan(m["eer"]) and math.isnan(m["far_at_frr"]["0.01"])
    assert "one class" in m["note"]
    assert m["acc"] == pytest.approx(2 / 3)
    json.dumps(metrics.to_jsonable(m), allow_nan=False)


def test_bootstrap_ci_contains_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    s = rng.normal(size=400) + y
    a = metrics.bootstrap_ci(y, s, n_boot=300, seed=1)
    b = metrics.bootstrap_ci(y, s, n_boot=300, seed=1)
    assert a == b
    auc = roc_auc_score(y, s)
    assert a["auc"][0] < auc < a["auc"][1]
    e = metrics.eer(y, s)
    assert a["eer"][0] <= e <= a["eer"][1]
    assert 0 <= a["far_at_frr_0.01"][0] <= a["far_at_frr_0.01"][1] <= 1


def test_bad_input_raises():
    with pytest.raises(ValueError, match="same length"):
        metrics.eer([0, 1], [0.1])
    with pytest.raises(ValueError, match="0 \\(real\\) or 1"):
        metrics.eer([0, 2], [0.1, 0.2])


def _clustered(n_videos=6, frames=40, seed=0):
    """Scores dominated by a per-video offset: frames of a video are far from independent."""
    rng = np.random.default_rng(seed)
    labels, scores, videos = [], [], []
    for v in range(2 * n_videos):
        y = v % 2
        offset = rng.normal() + 0.8 * y
        labels += [y] * frames
        scores += list(offset + 0.05 * rng.normal(size=frames))
        videos += [f"v{v}"] * frames
    return np.array(labels), np.array(scores), np.array(videos)


def test_cluster_bootstrap_resamples_whole_videos_per_class():
    labels, _, videos = _clustered(n_videos=4, frames=3)
    resamples, stratified = metrics._cluster_resamples(labels, videos, 50, np.random.default_rng(0))
    assert stratified and len(resamples) == 50
    for r in resamples:
        drawn = pd.Series(videos[r]).value_counts()
        assert (drawn % 3 == 0).all()  # every drawn video comes with all 3 of its frames
        assert drawn.sum() == labels.size  # 4 real + 4 fake videos drawn per resample


def test_cluster_ci_is_wider_than_the_frame_ci_when_frames_are_correlated():
    labels, scores, videos = _clustered()
    frame = metrics.bootstrap_ci(labels, scores, n_boot=300, seed=1)
    video = metrics.compute_metrics(labels, scores, video_ids=videos, n_boot=300, seed=1)["ci"]
    assert frame["cluster"] == "sample" and video["cluster"] == "video"
    assert video["n_clusters"] == {"real": 6, "fake": 6}
    width = lambda ci: ci["auc"][1] - ci["auc"][0]  # noqa: E731
    assert width(video) > 2 * width(frame)


def test_single_video_per_class_gives_no_interval_and_warnings():
    labels = np.array([0] * 8 + [1] * 8)
    scores = np.r_[np.linspace(0, 1, 8), np.linspace(0.5, 1.5, 8)]
    m = metrics.compute_metrics(labels, scores, ["real"] * 8 + ["FaceSwap"] * 8,
                                ["634"] * 8 + ["634_660"] * 8, n_boot=100)
    assert m["ci"]["auc"] == [None, None] or np.isnan(m["ci"]["auc"]).all()
    assert "fewer than 2 videos" in m["ci"]["note"]
    text = " | ".join(m["warnings"])
    assert "1 real and 1 fake videos (< 5 per class)" in text
    assert "FAR@FRR target(s) 0.001, 0.01, 0.05, 0.1 below 1/n_real = 1/8" in text
    assert "video-level AUC from 1 real and 1 fake" in text
    assert "per-method AUC of 'FaceSwap'" in text


def test_enough_videos_and_samples_give_no_warning():
    labels, scores, videos = _clustered(n_videos=6, frames=1000)
    m = metrics.compute_metrics(labels, scores, video_ids=videos, n_boot=0)
    assert m["warnings"] == []


def test_identity_clusters_with_both_classes():
    labels, scores, videos = _clustered(n_videos=6, frames=5)
    identity = np.array([f"id{int(v[1:]) // 2}" for v in videos])  # a real and a fake video per person
    ci = metrics.compute_metrics(labels, scores, video_ids=videos, identities=identity, n_boot=100)["ci"]
    assert ci["cluster"] == "identity" and ci["stratified"] is False
    assert ci["n_clusters"] == {"real": 6, "fake": 6} and 0 < ci["n_boot_used"] <= 100
    assert ci["auc"][0] <= ci["auc"][1]
