"""Local keypoint statistics: SIFT, ORB and AKAZE detections on the grey crop.

Generated and blended faces often have fewer or weaker corners and blobs (smoothed skin,
blurred blending seams) and differently distributed descriptors. OpenCV detects one image
at a time, so this is the one extractor that loops over the batch.
SURF is not offered: it is patented and absent from OpenCV's pip wheels.
"""
from __future__ import annotations

import cv2
import numpy as np

from extract.registry import Extractor, FaceBatch, OutputSpec, register_extractor
from extract.texture import gray_uint8, invalid_result

#: iBUG 68-point landmark indices of each facial region.
REGIONS = {"eyes": range(36, 48), "nose": range(27, 36), "mouth": range(48, 68)}
DETECTORS = ("sift", "orb", "akaze")
STATS = ("count", "response", "size", "desc_mean", "desc_std")


def create_detector(name: str):
    """An OpenCV feature detector with default parameters: "sift", "orb" or "akaze"."""
    if name == "sift":
        return cv2.SIFT_create()
    if name == "orb":
        return cv2.ORB_create()
    if name == "akaze":
        return cv2.AKAZE_create()
    raise ValueError(f"unknown detector {name!r}; expected one of {DETECTORS}")


def region_boxes(landmarks: np.ndarray, padding: float, size: tuple[int, int]):
    """(x0, y0, x1, y1) box of each region of :data:`REGIONS`, or None where unknown.

    The box of the region's landmarks grown by ``padding`` times its larger side on each
    side, clipped to the image (``size`` = (H, W)).
    """
    h, w = size
    boxes = {}
    for region, index in REGIONS.items():
        pts = landmarks[list(index)]
        if not np.isfinite(pts).all():
            boxes[region] = None
            continue
        (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
        pad = padding * max(x1 - x0, y1 - y0)
        boxes[region] = (max(x0 - pad, 0.0), max(y0 - pad, 0.0), min(x1 + pad, w),
                         min(y1 + pad, h))
    return boxes


def _descriptor_sums(name: str, descriptors: np.ndarray | None) -> tuple:
    """Per-keypoint sum and sum of squares of the descriptor values, and values per
    descriptor: SIFT's 128 floats; for the binary ORB / AKAZE descriptors the bits (whose
    squares are themselves), counted with ``np.bitwise_count``."""
    if descriptors is None:
        return np.zeros(0), np.zeros(0), 1
    if name == "sift":
        values = descriptors.astype(np.float64)
        return values.sum(axis=1), (values * values).sum(axis=1), values.shape[1]
    ones = np.bitwise_count(descriptors).sum(axis=1, dtype=np.float64)
    return ones, ones, descriptors.shape[1] * 8


def _stats(response, size, sums, squares, width: int) -> list[float]:
    """count, mean response, mean size, mean and std of all the descriptor values of the
    keypoints (0 if none), from the per-keypoint sums (:func:`_descriptor_sums`)."""
    count = len(response)
    if count == 0:
        return [0.0, 0.0, 0.0, 0.0, 0.0]
    total = count * width
    mean = sums.sum() / total
    std = np.sqrt(max(squares.sum() / total - mean * mean, 0.0))
    return [float(count), float(response.mean()), float(size.mean()), float(mean), float(std)]


@register_extractor
class KeypointExtractor(Extractor):
    """SIFT [1]_, ORB [2]_ and AKAZE [3]_ keypoint statistics, whole face and per region.

    OpenCV's detectors with default parameters run on the 8-bit grey crop
    (:func:`extract.texture.gray_uint8`, ``detectAndCompute``). For each detector and each
    area (the whole crop, then the eyes, nose and mouth: the box of their iBUG-68 landmarks,
    36-47, 27-35, 48-67, grown by ``padding`` of its larger side) the vector holds:

    - ``count``: keypoints whose centre lies in the area;
    - ``response``: their mean detector response (units of each detector);
    - ``size``: their mean diameter in pixels;
    - ``desc_mean``, ``desc_std``: mean and standard deviation of all their descriptor
      values (SIFT: the 128 floats; ORB and AKAZE: the descriptor bits, 0/1).

    An area without keypoints gets 0 for all five. Region columns are NaN where the
    landmarks are unknown (the whole-face columns and ``valid`` stay as they are);
    ``valid`` is False only when a detector fails on the image. 3 x 4 x 5 = 60 values.
    SURF is patented and absent from OpenCV's wheels, so it is not offered.

    References
    ----------
    .. [1] D. G. Lowe, "Distinctive image features from scale-invariant keypoints", IJCV
           60(2), 2004.
    .. [2] E. Rublee, V. Rabaud, K. Konolige, G. Bradski, "ORB: an efficient alternative to
           SIFT or SURF", ICCV 2011.
    .. [3] P. F. Alcantarilla, J. Nuevo, A. Bartoli, "Fast explicit diffusion for
           accelerated features in nonlinear scale spaces", BMVC 2013.
    """

    name = "keypoints"
    version = "1"
    needs = ("landmarks",)
    defaults = {"detectors": DETECTORS, "padding": 0.15}

    def _detectors(self):
        names = tuple(self.params["detectors"])
        unknown = [d for d in names if d not in DETECTORS]
        if unknown or not names:
            raise ValueError(f"keypoints: detectors must be a non-empty subset of {DETECTORS}, "
                             f"got {names}")
        return names

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        areas = ("face",) + tuple(REGIONS)
        columns = tuple(f"kp_{d}_{a}_{s}" for d in self._detectors() for a in areas
                        for s in STATS)
        return {"vector": OutputSpec("vector", (len(columns),), "float32", columns)}

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        names = self._detectors()
        if len(batch) == 0:
            return invalid_result(self, batch)
        detectors = {d: create_detector(d) for d in names}
        gray = gray_uint8(batch)
        n, h, w = gray.shape
        width = len(names) * (1 + len(REGIONS)) * len(STATS)
        vector = np.full((n, width), np.nan)
        valid = np.ones(n, bool)
        for i in range(n):
            boxes = region_boxes(batch.landmarks[i], float(self.params["padding"]), (h, w))
            row = []
            try:
                for d in names:
                    keypoints, descriptors = detectors[d].detectAndCompute(gray[i], None)
                    row += self._detector_stats(d, keypoints, descriptors, boxes)
            except cv2.error:
                valid[i] = False
                continue
            vector[i] = row
        return {"vector": vector.astype(np.float32), "valid": valid}

    @staticmethod
    def _detector_stats(name, keypoints, descriptors, boxes) -> list[float]:
        count = len(keypoints)
        pts = (cv2.KeyPoint_convert(keypoints).reshape(count, 2).astype(np.float64) if count
               else np.zeros((0, 2)))
        response = np.array([k.response for k in keypoints], np.float64)
        size = np.array([k.size for k in keypoints], np.float64)
        sums, squares, width = _descriptor_sums(name, descriptors)
        if len(sums) != count:  # descriptors are computed for every kept keypoint
            raise cv2.error(f"{name}: {len(sums)} descriptors for {count} keypoints")
        row = _stats(response, size, sums, squares, width)
        for region in REGIONS:
            box = boxes[region]
            if box is None:
                row += [np.nan] * len(STATS)
                continue
            x0, y0, x1, y1 = box
            inside = ((pts[:, 0] >= x0) & (pts[:, 0] < x1) & (pts[:, 1] >= y0)
                      & (pts[:, 1] < y1))
            row += _stats(response[inside], size[inside], sums[inside], squares[inside],
                          width)
        return row
