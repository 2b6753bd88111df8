"""Tests of extract/bench.py: each naive per-image reference computes our extractor's vector
(so the benchmark times the same work on both sides), and the benchmark runs end to end."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from extract import bench
from extract.registry import FaceBatch

#: Both sides compute the same numbers; ours are float32 (relative rounding 6e-8) and some
#: of its sums and moments run in float32, the references' in float64 (measured: at most
#: 4e-5 relative, on colour kurtoses). ATOL covers columns near 0 (centroid shifts, log
#: ratios, rotation-vector differences), where a relative tolerance means nothing.
RTOL, ATOL = 1e-4, 1e-6

#: Features whose vector depends on the landmarks: NaN where ours marks a row invalid.
LANDMARK_FEATURES = ("symmetry", "head_pose", "eyes", "warping", "blending")


@pytest.fixture(scope="module")
def batch(real_face_batch):
    """Three real faces, one with unknown (NaN) landmarks and one whose landmarks all sit
    on the crop centre (hull and inter-ocular distance of zero size, eyes "closed")."""
    images = real_face_batch.images[[0, 1, 2, 0, 1]]
    landmarks = real_face_batch.landmarks[[0, 1, 2, 0, 1]].copy()
    landmarks[3] = np.nan
    landmarks[4] = images.shape[1] / 2
    return FaceBatch(images, landmarks)


@pytest.fixture(scope="module")
def naive():
    return bench._naive_functions()


@pytest.fixture(scope="module")
def ours():
    return bench._ours()


def run_both(name, batch, naive, ours):
    """(our extract() output, list of the reference's raw outputs, one per image)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty regions: mean of empty slice, 0 / 0
        mine = ours[name].extract(batch)
        theirs = [naive[name](batch.images[i], batch.landmarks[i]) for i in range(len(batch))]
    return mine, theirs


# ----------------------------------------------- raw reference outputs -> our vector layout

def lbp_vector(raw):
    # the reference appends P8R1 whole, its 4 x 4 cells, then P16R2 and P24R3; ours puts the
    # three whole-crop histograms first, then the cells
    raw = np.asarray(raw)
    return np.concatenate([raw[:10], raw[170:], raw[10:170]])


def glcm_vector(raw):
    # the reference stops at the per-angle properties (7 x 3 distances x 4 angles); our
    # per-distance mean and range over the angles follow from them
    per_angle = np.asarray(raw).reshape(7, 3, 4)
    summary = np.stack([per_angle.mean(2), np.ptp(per_angle, 2)], axis=2)
    return np.concatenate([per_angle.ravel(), summary.ravel()])


def dct_vector(raw):
    _, beta, std, hists = raw
    hists = np.asarray(hists, np.float64)
    return np.concatenate([beta, std, (hists / hists.sum(1, keepdims=True)).ravel()])


def fft_vector(raw):
    rings, ratios = raw
    return np.concatenate([rings, ratios])


TO_VECTOR = {"lbp": lbp_vector, "glcm": glcm_vector, "dct": dct_vector, "fft": fft_vector}


@pytest.mark.parametrize("name", bench.FEATURES)
def test_naive_reference_computes_our_vector(name, batch, naive, ours):
    mine, theirs = run_both(name, batch, naive, ours)
    expected = mine["vector"].astype(np.float64)
    got = np.array([TO_VECTOR.get(name, np.asarray)(raw) for raw in theirs], np.float64)
    assert got.shape == expected.shape
    if name == "keypoints":
        # whole-crop columns are always computed; region columns are NaN, on both sides,
        # where the landmarks are unknown (row 3), and the row stays valid
        assert mine["valid"].all()
        assert np.isnan(expected[3, 5:20]).all() and np.isfinite(expected[3, :5]).all()
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, equal_nan=True)
        return
    invalid = ~mine["valid"]
    # invalid rows are all NaN on our side and must be NaN on the reference's too
    assert np.isnan(expected[invalid]).all()
    np.testing.assert_array_equal(np.isnan(got).any(1), invalid)
    assert np.isfinite(got[~invalid]).all()
    if name in LANDMARK_FEATURES:
        # row 3 (NaN landmarks) is invalid everywhere; row 4 (all points at one place) has
        # empty regions, closed eyes or no pose to fit
        assert invalid[3] and invalid[4]
        assert not invalid[:3].any()
    else:
        assert not invalid.any()
    if name == "dct":
        # beta and std: the same coefficients to ~1e-12; histograms: counts must agree to
        # the tile, except that a coefficient within rounding of a bin edge (+-8, 16, 24)
        # may fall on either side (none on these faces; allowed: one tile per bin)
        np.testing.assert_allclose(got[:, :126], expected[:, :126], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(got[:, 126:], expected[:, 126:], rtol=0, atol=1.01 / 1024)
    else:
        np.testing.assert_allclose(got[~invalid], expected[~invalid], rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------------- running

def test_run_format_table_and_totals(real_face_batch, capsys):
    two = real_face_batch.subset(slice(0, 2))
    rows = bench.run(two, bench.FEATURES, repeat=1)
    assert [r["feature"] for r in rows] == list(bench.FEATURES)
    for r in rows:
        for key in ("naive_ms", "ours_ms", "ratio"):
            assert math.isfinite(r[key]) and r[key] > 0, (r["feature"], key, r[key])
    total = bench._total(rows, "TOTAL")
    assert total["naive_ms"] == pytest.approx(sum(r["naive_ms"] for r in rows))
    assert total["ours_ms"] == pytest.approx(sum(r["ours_ms"] for r in rows))
    assert total["ratio"] == pytest.approx(total["naive_ms"] / total["ours_ms"])
    left_out = {"keypoints", "head_pose"}
    partial = bench._total(rows, "TOTAL w/o keypoints, head_pose",
                           lambda r: r["feature"] not in left_out)
    assert partial["ours_ms"] == pytest.approx(
        sum(r["ours_ms"] for r in rows if r["feature"] not in left_out))
    assert math.isnan(bench._total([], "empty")["ratio"])
    table = bench.format_table(rows + [total, partial])
    lines = table.splitlines()
    # header, rule, the feature rows, then a rule above each total
    assert len(lines) == 2 + len(rows) + 2 * 2
    assert lines[0].split()[0] == "feature"
    assert set(lines[1]) == set(lines[-4]) == set(lines[-2]) == {"-"}
    assert lines[-3].startswith("TOTAL ")
    for name, line in zip(bench.FEATURES, lines[2:]):
        assert line.split()[0] == name and line.endswith("x")
    assert lines[-1].startswith("TOTAL w/o keypoints, head_pose")
    assert "naive" in capsys.readouterr().err        # progress lines go to stderr


def test_feature_lists_agree():
    assert set(bench._naive_functions()) == set(bench._ours()) == set(bench.FEATURES)
    assert len(bench.FEATURES) == 14
