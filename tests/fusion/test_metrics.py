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


def _brute_force_rates(y, s):
    """(FRR, FAR, threshold) of "score >= t is fake" at every distinct score and at +inf,
    counted sample by sample: an independent reference for the ROC / DET code."""
    y, s = np.asarray(y), np.asarray(s, dtype=float)
    n_real, n_fake = (y == 0).sum(), (y == 1).sum()
    rows = []
    for t in [np.inf, *sorted(set(s.tolist()), reverse=True)]:
        flagged = s >= t
        rows.append(((flagged & (y == 0)).sum() / n_real, (~flagged & (y == 1)).sum() / n_fake, t))
    return np.array(rows)


def _brute_force_eer(y, s):
    """EER by walking the brute-force points and interpolating FRR - FAR linearly."""
    r = _brute_force_rates(y, s)
    for (f0, a0, _), (f1, a1, _) in zip(r[:-1], r[1:]):
        d0, d1 = f0 - a0, f1 - a1
        if d0 < 0 <= d1:
            return f0 + d0 / (d0 - d1) * (f1 - f0)
    return r[0, 0]


def _random_set(seed, n=300):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = rng.normal(size=n) + 0.8 * y
    s[: n // 3] = np.round(s[: n // 3], 1)  # ties, real with fake
    return y, s


@pytest.mark.parametrize("seed", [3, 4])
def test_roc_points_are_sklearn_roc_curve_and_count_errors(seed):
    from sklearn.metrics import roc_curve
    y, s = _random_set(seed)
    fpr, tpr, thr = metrics.roc_points(y, s)
    fpr_sk, tpr_sk, thr_sk = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_array_equal(fpr, fpr_sk)
    np.testing.assert_array_equal(tpr, tpr_sk)
    np.testing.assert_array_equal(thr, thr_sk)
    ref = _brute_force_rates(y, s)
    np.testing.assert_allclose(fpr, ref[:, 0], atol=1e-12)
    np.testing.assert_allclose(1 - tpr, ref[:, 1], atol=1e-12)
    np.testing.assert_array_equal(thr, ref[:, 2])


def test_roc_points_of_one_class_are_zero_not_nan():
    fpr, tpr, thr = metrics.roc_points([1, 1, 1], [0.2, 0.5, 0.9])
    assert fpr.tolist() == [0, 0, 0, 0] and tpr.tolist() == [0, 1 / 3, 2 / 3, 1]
    assert np.isinf(thr[0])


@pytest.mark.parametrize("seed", [5, 6])
def test_det_points_are_sklearn_det_curve_and_the_undominated_brute_force_points(seed):
    from sklearn.metrics import det_curve
    y, s = _random_set(seed)
    frr, far, thr = metrics.det_points(y, s)
    ref = det_curve(y, s, drop_intermediate=False)
    for a, b in zip((frr, far, thr), ref):
        np.testing.assert_array_equal(a, b)
    bf = _brute_force_rates(y, s)
    # from the last point with FRR = 0 to the first with FAR = 0, FRR decreasing
    first = np.flatnonzero(bf[:, 0] == 0)[-1]
    last = np.flatnonzero(bf[:, 1] == 0)[0]
    np.testing.assert_allclose(np.c_[frr, far], bf[first:last + 1, :2][::-1], atol=1e-12)
    np.testing.assert_array_equal(thr, bf[first:last + 1, 2][::-1])


def test_det_points_hand_case_and_one_class():
    # reals 0.1 0.4, fakes 0.35 0.8: t = 0.8 -> FRR 0, FAR .5; t = 0.4 -> .5, .5; t = 0.35 -> .5, 0
    frr, far, thr = metrics.det_points([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert frr.tolist() == [0.5, 0.5, 0.0] and far.tolist() == [0.0, 0.5, 0.5]
    assert thr.tolist() == [0.35, 0.4, 0.8]
    with pytest.raises(ValueError, match="both classes"):
        metrics.det_points([0, 0], [0.1, 0.2])


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_eer_and_rate_targets_equal_brute_force(seed):
    y, s = _random_set(seed, n=120)
    assert metrics.eer(y, s) == pytest.approx(_brute_force_eer(y, s), abs=1e-12)
    bf = _brute_force_rates(y, s)
    targets = (0.01, 0.05, 0.1, 0.3)
    far = metrics.far_at_frr(y, s, targets)
    frr = metrics.frr_at_far(y, s, targets)
    for t in targets:
        assert far[str(t)] == pytest.approx(bf[bf[:, 0] <= t + 1e-12, 1].min(), abs=1e-12)
        assert frr[str(t)] == pytest.approx(bf[bf[:, 1] <= t + 1e-12, 0].min(), abs=1e-12)
    m = metrics.core_metrics(y, s)
    assert m["eer"] == metrics.eer(y, s)
    assert m["far_at_frr"]["0.01"] == far["0.01"] and m["frr_at_far"]["0.1"] == frr["0.1"]


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


def test_threshold_at_eer_breaks_an_exact_tie_towards_the_lenient_point():
    # reals -0.66 1.18, fakes -0.69 -0.15 -0.27. Around the crossing the points (FRR, FAR)
    # are (1/2, 2/3) at t = -0.15 and (1/2, 1/3) at t = -0.27: FRR - FAR = -1/6 and +1/6,
    # equally far from 0, so the lower threshold (more samples flagged) is taken.
    y, s = [0, 1, 0, 1, 1], [-0.66, -0.69, 1.18, -0.15, -0.27]
    assert metrics.threshold_at_eer(y, s) == -0.27
    assert metrics.eer(y, s) == pytest.approx(0.5)


# --- the weighted bootstrap: the same numbers as the reference, resample by resample ---

def _scored_set(kind, seed):
    """(labels, scores, videos) of one kind; videos have unequal numbers of frames."""
    rng = np.random.default_rng(seed)
    if kind == "tiny":  # 2 videos per class, 1-2 frames each
        return np.array([0, 0, 0, 1, 1, 1]), np.array([0.2, 0.5, 0.5, 0.5, 0.9, 0.1]), \
            np.array(["r0", "r0", "r1", "f0", "f1", "f1"])
    n_videos = 30
    sizes = rng.integers(1, 40, n_videos)
    video_label = np.arange(n_videos) % 2
    videos = np.repeat([f"v{k}" for k in range(n_videos)], sizes)
    labels = np.repeat(video_label, sizes)
    scores = np.repeat(rng.normal(size=n_videos) + 0.7 * video_label, sizes) + 0.3 * rng.normal(size=labels.size)
    if kind == "heavy_ties":  # three distinct scores, reals and fakes sharing them
        scores = np.digitize(scores, [0.0, 0.8]) / 2.0
    elif kind == "ties":
        scores = np.round(scores, 1)
    elif kind == "separable":
        scores = labels + 0.1 * rng.random(labels.size)
    return labels, scores, videos


KINDS = ["continuous", "ties", "heavy_ties", "separable", "tiny"]


def _assert_close(a, b, path=""):
    """Equal structure; numbers equal to 1e-9 (NaN equal to NaN)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple, np.ndarray)):
        assert len(a) == len(b), path
        for k, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{path}[{k}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9, (path, a, b)
    else:
        assert a == b, (path, a, b)


def _weighted_vs_repeated(labels, scores, weights):
    """weighted_metrics of rows of per-sample ``weights`` against core_metrics, threshold_at_eer
    and scikit-learn on the set with each sample repeated ``weight`` times."""
    order = metrics.ScoreOrder(labels, scores)
    got = metrics.weighted_metrics(weights[:, order.fake_order], weights[:, order.real_order], order)
    for b, w in enumerate(weights):
        y, s = np.repeat(labels, w), np.repeat(scores, w)
        want = metrics.core_metrics(y, s)
        assert got["auc"][b] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert got["ap"][b] == pytest.approx(average_precision_score(y, s), abs=1e-12)
        assert got["eer"][b] == want["eer"]  # the same DET points: bit for bit
        assert got["eer_threshold"][b] == metrics.threshold_at_eer(y, s)
        for key in ("far_at_frr", "frr_at_far", "tpr_at_fpr"):
            assert {k: v[b] for k, v in got[key].items()} == want[key], key


@pytest.mark.parametrize("kind", KINDS)
def test_weighted_metrics_equal_the_metrics_of_the_repeated_set(kind):
    labels, scores, _ = _scored_set(kind, seed=5)
    rng = np.random.default_rng(6)
    weights = rng.integers(0, 4, (25, labels.size))  # zeros: scores missing from a resample
    weights[:, np.flatnonzero(labels == 0)[0]] += 1  # both classes in every row
    weights[:, np.flatnonzero(labels == 1)[0]] += 1
    _weighted_vs_repeated(labels, scores, weights)


@pytest.mark.parametrize("kind", KINDS)
def test_weighted_metrics_of_the_drawn_video_resamples_equal_the_reference(kind):
    labels, scores, videos = _scored_set(kind, seed=7)
    picks, inverse, _ = metrics._cluster_draws(labels, videos, 20, np.random.default_rng(8))
    counts = np.stack([np.bincount(p, minlength=picks.shape[1]) for p in picks])
    resamples, _ = metrics._cluster_resamples(labels, videos, 20, np.random.default_rng(8))
    for w, r in zip(counts[:, inverse], resamples):  # a video drawn k times = its frames weighted by k
        assert sorted(np.repeat(np.arange(labels.size), w)) == sorted(r)
    _weighted_vs_repeated(labels, scores, counts[:, inverse])


def test_weighted_metrics_hand_case():
    # reals 0.1 (weight 2), 0.4; fakes 0.35, 0.8. Points (FRR, FAR) from +inf down:
    # (0, 1), (0, 1/2) at 0.8, (1/3, 1/2) at 0.4, (1/3, 0) at 0.35, (1, 0) at 0.1
    labels, scores = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    order = metrics.ScoreOrder(labels, scores)
    w = np.array([[2, 1, 1, 1], [2, 1, 0, 1]])
    m = metrics.weighted_metrics(w[:, order.fake_order], w[:, order.real_order], order, targets=(0.1,))
    assert m["auc"].tolist() == pytest.approx([5 / 6, 1.0])  # 5 of 6 pairs; the 0.35 fake not drawn
    assert m["ap"].tolist() == pytest.approx([(1 + 2 / 3) / 2, 1.0])
    # FRR - FAR goes -1/6 -> +1/3 between 0.4 and 0.35: a third of the way, FRR 1/3 throughout
    assert m["eer"].tolist() == pytest.approx([1 / 3, 0.0])
    # nearer 0.4; without the 0.35 fake the curve starts at 0.8 with FRR = FAR = 0
    assert m["eer_threshold"].tolist() == [0.4, 0.8]
    assert m["far_at_frr"]["0.1"].tolist() == [0.5, 0.0]
    assert m["frr_at_far"]["0.1"].tolist() == pytest.approx([1 / 3, 0.0])
    assert m["tpr_at_fpr"]["0.1"].tolist() == [0.5, 1.0]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("unit", ["video", "sample"])
def test_weighted_bootstrap_equals_the_reference(kind, unit, monkeypatch):
    labels, scores, videos = _scored_set(kind, seed=9)
    clusters = videos if unit == "video" else None
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", 7 * labels.size)  # blocks of 7 resamples, the last one short
    for seed in (0, 1):
        fast = metrics.bootstrap_ci(labels, scores, n_boot=100, seed=seed, clusters=clusters, cluster=unit)
        slow = metrics.bootstrap_ci(labels, scores, n_boot=100, seed=seed, clusters=clusters, cluster=unit,
                                    method="reference")
        _assert_close(fast, slow)
        assert not np.isnan(fast["auc"]).any()


def test_weighted_bootstrap_drops_the_same_one_class_resamples():
    # an identity with a real and a fake video, then identities with one class: drawn
    # together, so some resamples hold one class only and are dropped by both methods
    labels = np.array([0, 1, 0, 0, 1, 1, 0, 1])
    scores = np.array([0.3, 0.6, 0.2, 0.5, 0.4, 0.9, 0.5, 0.5])
    identity = np.array(["a", "a", "b", "b", "c", "c", "d", "e"])
    for seed in (0, 3):
        fast = metrics.bootstrap_ci(labels, scores, n_boot=200, seed=seed, clusters=identity, cluster="identity")
        slow = metrics.bootstrap_ci(labels, scores, n_boot=200, seed=seed, clusters=identity, cluster="identity",
                                    method="reference")
        _assert_close(fast, slow)
        assert fast["stratified"] is False and 150 < fast["n_boot_used"] < 200


def test_compute_metrics_is_the_same_with_either_bootstrap():
    labels, scores, videos = _scored_set("ties", seed=11)
    methods = np.where(labels == 1, np.where(np.arange(labels.size) % 2, "A", "B"), "real")
    fast = metrics.compute_metrics(labels, scores, methods, videos, n_boot=100)
    slow = metrics.compute_metrics(labels, scores, methods, videos, n_boot=100, ci_method="reference")
    _assert_close(fast, slow)
    with pytest.raises(ValueError, match="method must be one of weighted, reference"):
        metrics.bootstrap_ci(labels, scores, method="fast")
