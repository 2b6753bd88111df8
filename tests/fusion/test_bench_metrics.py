"""Tests for fusion.bench_metrics: it runs, checks the two bootstraps agree, and rejects bad sizes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fusion import bench_metrics


def test_bench_runs_both_bootstraps_and_finds_them_equal(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench_metrics.main(["--sizes", "400:20,300:12", "--n-boot", "30", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["frames"], r["videos"]) for r in rows] == [(400, 20), (300, 12)]
    assert all(r["max_difference"] <= 1e-9 and r["ratio"] > 0 for r in rows)
    assert "equal to 1e-09" in capsys.readouterr().out
    assert bench_metrics.main(["--sizes", "300:12", "--n-boot", "20", "--full-precision", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["rows"][0]["distinct_scores"] == 300


def test_synthetic_set_has_the_asked_frames_and_videos():
    labels, scores, methods, videos = bench_metrics.synthetic_set(2000, 100)
    assert labels.size == scores.size == methods.size == videos.size == 2000
    assert np.unique(videos).size == 100
    assert (methods == "real").sum() == (labels == 0).sum() > 0
    assert np.unique(scores).size < scores.size  # 4 decimals: ties


def test_sizes_take_presets_and_frames_videos():
    assert bench_metrics.parse_sizes("2k,100k") == [(2000, 100), (100000, 3000)]
    assert bench_metrics.parse_sizes("500:20") == [(500, 20)]
    for bad in ("3k", "10:20", "500", ""):
        with pytest.raises(ValueError, match="--sizes"):
            bench_metrics.parse_sizes(bad)


def test_max_difference_flags_structure_and_value_changes():
    a = {"auc": 0.5, "ci": {"auc": [0.1, float("nan")], "cluster": "video"}}
    assert bench_metrics.max_difference(a, {"auc": 0.5 + 1e-12, "ci": {"auc": [0.1, float("nan")],
                                                                         "cluster": "video"}}) == pytest.approx(1e-12)
    with pytest.raises(AssertionError, match="cluster"):
        bench_metrics.max_difference(a, {"auc": 0.5, "ci": {"auc": [0.1, float("nan")], "cluster": "sample"}})
    with pytest.raises(AssertionError, match="keys"):
        bench_metrics.max_difference(a, {"auc": 0.5})
