"""Tests of extract/keypoints.py: counts equal OpenCV's own, regions, missing landmarks."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from extract.keypoints import DETECTORS, KeypointExtractor, create_detector, region_boxes
from extract.registry import FaceBatch


@pytest.fixture(scope="module")
def few(faces) -> FaceBatch:
    return faces.subset(slice(0, 3))


@pytest.fixture(scope="module")
def extracted(few):
    ex = KeypointExtractor()
    return ex, ex.extract(few)


def _column(ex, name):
    return ex.outputs(256)["vector"].columns.index(name)


def test_counts_equal_opencv(few, extracted):
    ex, out = extracted
    for i in range(len(few)):
        gray = cv2.cvtColor(few.images[i], cv2.COLOR_RGB2GRAY)
        for d in DETECTORS:
            keypoints, descriptors = create_detector(d).detectAndCompute(gray, None)
            assert out["vector"][i, _column(ex, f"kp_{d}_face_count")] == len(keypoints)
            responses = np.mean([k.response for k in keypoints])
            assert out["vector"][i, _column(ex, f"kp_{d}_face_response")] == pytest.approx(
                responses, rel=1e-5)


def test_region_counts_are_within_face_count(extracted):
    ex, out = extracted
    assert out["valid"].all() and np.isfinite(out["vector"]).all()
    for d in DETECTORS:
        face = out["vector"][:, _column(ex, f"kp_{d}_face_count")]
        regions = [out["vector"][:, _column(ex, f"kp_{d}_{r}_count")]
                   for r in ("eyes", "nose", "mouth")]
        assert (np.max(regions, axis=0) <= face).all()
    # faces are textured: SIFT finds keypoints on the eyes of every face
    assert (out["vector"][:, _column(ex, "kp_sift_eyes_count")] > 0).all()


def test_region_boxes():
    lm = np.zeros((68, 2), np.float32)
    lm[36:48] = [[100, 80], [150, 90]] * 6
    lm[27:36] = [128, 120]
    lm[48:68] = [[110, 170], [150, 180]] * 10
    boxes = region_boxes(lm, 0.1, (256, 256))
    assert boxes["eyes"] == pytest.approx((95, 75, 155, 95))
    assert boxes["nose"] == pytest.approx((128, 120, 128, 120))
    lm[30] = np.nan
    assert region_boxes(lm, 0.1, (256, 256))["nose"] is None


def test_missing_landmarks_give_nan_regions_only(few, extracted):
    ex, out = extracted
    blind = FaceBatch(few.images[:1])  # landmarks NaN
    res = ex.extract(blind)
    columns = ex.outputs(256)["vector"].columns
    face = np.array(["_face_" in c for c in columns])
    assert res["valid"][0]
    np.testing.assert_array_equal(res["vector"][0, face], out["vector"][0, face])
    assert np.isnan(res["vector"][0, ~face]).all()


def test_blank_image_gives_zeros():
    res = KeypointExtractor().extract(FaceBatch(np.zeros((1, 64, 64, 3), np.uint8)))
    assert res["valid"][0]
    columns = KeypointExtractor().outputs(64)["vector"].columns
    face = np.array(["_face_" in c for c in columns])
    np.testing.assert_array_equal(res["vector"][0, face], 0)


def test_contract(few, extracted):
    ex, out = extracted
    spec = ex.outputs(few.images.shape[1])["vector"]
    assert out["vector"].shape == (len(few),) + spec.shape and out["vector"].dtype == np.float32
    assert len(set(spec.columns)) == spec.shape[0]
    np.testing.assert_array_equal(ex.extract(few)["vector"], out["vector"])
    np.testing.assert_array_equal(ex.extract(few.subset(slice(2, 3)))["vector"][0],
                                  out["vector"][2])
    with pytest.raises(ValueError):
        KeypointExtractor(detectors=("surf",)).outputs(256)
