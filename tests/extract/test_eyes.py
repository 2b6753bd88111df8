"""Tests of extract/eyes.py (eyes: corneal specular highlights)."""
from __future__ import annotations

import cv2
import numpy as np

from extract.eyes import CornealHighlightExtractor, eye_aspect_ratio
from extract.registry import FaceBatch
from tests.extract.test_basic import check_contract

SIZE = 256
CENTRES = ((90, 110), (166, 110))       # subject's right eye (image left), left eye
AXES = (22, 10)


def eye_contour(cx, cy, openness=1.0):
    """6 iBUG eye points on an ellipse: corner, two upper, corner, two lower."""
    a, b = AXES[0], AXES[1] * openness
    xs = [-a, -a / 3, a / 3, a, a / 3, -a / 3]
    ys = [0, -b, -b, 0, b, b]
    return np.array([[cx + x, cy + y * np.sqrt(8) / 3 * (1 if abs(x) < a else 0)]
                     for x, y in zip(xs, ys)], np.float32)


def synthetic_face(dots=((6, -3), (6, -3)), openness=1.0):
    """Grey skin with two dark elliptic eyes and a bright 3 px dot at ``dots`` (offsets
    from each eye's centre); landmarks: the 12 eye points, the rest on a coarse face."""
    image = np.full((SIZE, SIZE, 3), 150, np.uint8)
    lm = np.full((68, 2), 128, np.float32)
    lm[:, 0] += np.linspace(-60, 60, 68)
    for e, (cx, cy) in enumerate(CENTRES):
        cv2.ellipse(image, (cx, cy), (AXES[0], max(int(AXES[1] * openness), 1)), 0, 0, 360,
                    (40, 40, 40), -1)
        if openness > 0.5:
            cv2.circle(image, (cx + dots[e][0], cy + dots[e][1]), 3, (255, 255, 255), -1)
        lm[36 + 6 * e:42 + 6 * e] = eye_contour(cx, cy, openness)
    return image, lm


def run(*faces):
    images, lms = zip(*faces)
    return CornealHighlightExtractor().extract(FaceBatch(np.stack(images), np.stack(lms)))


def test_identical_highlights_give_iou_one():
    out = run(synthetic_face())
    assert out["valid"][0]
    iou, intensity, dx, dy, dist, area = out["vector"][0]
    assert iou == 1.0 and intensity == 0 and dist == 0 and area == 1.0


def test_moved_highlight_lowers_iou():
    out = run(synthetic_face(), synthetic_face(dots=((6, -3), (-6, 2))))
    assert out["valid"].all()
    assert out["vector"][1, 0] < 0.5 < out["vector"][0, 0]
    assert out["vector"][1, 2] < 0                   # right-eye highlight moved left
    assert out["vector"][1, 4] > 0.1


def test_closed_eyes_are_invalid():
    out = run(synthetic_face(), synthetic_face(openness=0.1))
    np.testing.assert_array_equal(out["valid"], [True, False])
    assert np.isnan(out["vector"][1]).all()


def test_no_highlight_or_nan_landmarks_are_invalid():
    image, lm = synthetic_face(dots=((0, 0), (0, 0)))
    dull = image.copy()
    dull[dull == 255] = 40                          # remove the dots
    lm_nan = lm.copy()
    lm_nan[44] = np.nan
    out = run((dull, lm), (image, lm_nan))
    np.testing.assert_array_equal(out["valid"], [False, False])
    assert np.isnan(out["vector"]).all()


def test_eye_leaving_the_crop_is_invalid():
    image, lm = synthetic_face()
    lm[36:42, 0] -= 85                               # left eye box now crosses x = 0
    assert not run((image, lm))["valid"][0]


def test_eye_aspect_ratio_hand_computed():
    eye = np.array([[0, 0], [1, -1], [3, -1], [4, 0], [3, 1], [1, 1]], float)
    assert eye_aspect_ratio(eye) == (2 + 2) / (2 * 4)


def test_eyes_contract(real_face_batch):
    out = check_contract(CornealHighlightExtractor(), real_face_batch)
    v = out["vector"][out["valid"]]
    assert ((v[:, 0] >= 0) & (v[:, 0] <= 1)).all()
