"""Face-swap artifacts at the face region: resolution mismatch (``warping``) and boundary
discontinuities (``blending``).

A face swap renders the new face at its own resolution, warps it onto the target and
blends it in along a boundary close to the landmark hull; both steps leave traces that
these hand-made statistics compare inside, across and outside that hull.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from extract.geometry import gradient_magnitude, landmark_hull_masks, landmarks_known
from extract.registry import Extractor, FaceBatch, OutputSpec, register_extractor


def laplacian(image: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian of one H x W image (edges replicated), float32:
    ``cv2.Laplacian`` with ``ksize=1`` (kernel [[0, 1, 0], [1, -4, 1], [0, 1, 0]])."""
    return cv2.Laplacian(np.asarray(image, np.float32), cv2.CV_32F, ksize=1,
                         borderType=cv2.BORDER_REPLICATE)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of one H x W float32 image with scipy's kernel (radius ``int(4 sigma +
    0.5)``) and its "nearest" edges, by ``cv2.GaussianBlur``."""
    size = 2 * int(4.0 * sigma + 0.5) + 1
    return cv2.GaussianBlur(image, (size, size), sigmaX=sigma, sigmaY=sigma,
                            borderType=cv2.BORDER_REPLICATE)


@functools.lru_cache(maxsize=32)
def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


class HullMorphology:
    """Dilations and erosions of one uint8 (0/1) hull mask by discs, each radius computed
    once (``cv2.dilate`` / ``cv2.erode`` with OpenCV's elliptic element; the image border
    counts as background). Only the hull's bounding box, grown by the radius for a
    dilation, is filtered: everything outside it is 0 before and after, so the result is
    the same as filtering the whole crop."""

    def __init__(self, hull: np.ndarray):
        self.hull = np.ascontiguousarray(hull, np.uint8)
        self._box = cv2.boundingRect(self.hull)        # x, y, w, h; all 0 when empty
        self._cache = {}

    def __call__(self, radius: int, dilate: bool) -> np.ndarray:
        if radius <= 0:
            return self.hull
        key = (int(radius), bool(dilate))
        if key not in self._cache:
            out = np.zeros_like(self.hull)
            x, y, w, h = self._box
            if w and h:
                grow = key[0] + 1 if dilate else 0
                rows = slice(max(y - grow, 0), y + h + grow)
                cols = slice(max(x - grow, 0), x + w + grow)
                op = cv2.dilate if dilate else cv2.erode
                out[rows, cols] = op(self.hull[rows, cols], _disc(key[0]), borderValue=0)
            self._cache[key] = out
        return self._cache[key]


def masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of one image's ``values`` (H x W [x C], float32) over a uint8 ``mask``, per
    channel (``cv2.mean``, accumulated in double); NaN when the mask is empty."""
    channels = 1 if values.ndim == 2 else values.shape[2]
    if not cv2.countNonZero(mask):
        return np.full(channels, np.nan)
    return np.array(cv2.mean(values, mask=mask)[:channels])


def masked_var(values: np.ndarray, mask: np.ndarray) -> float:
    """Variance of one image's ``values`` (H x W float32) over a uint8 ``mask``
    (``cv2.meanStdDev``); NaN when the mask is empty."""
    if not cv2.countNonZero(mask):
        return np.nan
    return float(cv2.meanStdDev(values, mask=mask)[1][0, 0]) ** 2


def log_ratio(a, b, eps: float = 1e-6):
    """``log((a + eps) / (b + eps))``: 0 when equal, negative when ``a`` is smaller."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log((a + eps) / (b + eps))


@register_extractor
class WarpingArtifactExtractor(Extractor):
    """Sharpness of the inner face against its surroundings (Li & Lyu 2019).

    DeepFake faces are synthesised at low resolution and warped up, so the inner face is
    blurrier than the context around it. Inside = the convex hull of the 68 landmarks
    eroded by ``margin`` px; context = the band between the hull dilated by ``margin`` and
    by ``margin + band`` px (the boundary itself is left out).

    Parameters
    ----------
    margin : int
        Pixels left out on each side of the hull boundary.
    band : int
        Width in pixels of the context band.
    sigmas : tuple of float
        Gaussian scales (px) of the high-pass residuals ``g - G_sigma * g``.

    Returns
    -------
    vector : (3 + len(sigmas),) float32
        ``lap_var_inner``, ``lap_var_context``: variance of the Laplacian of the luma
        (grey levels^2) inside and in the context band; ``lap_log_ratio``: log(inner /
        context); ``hf<sigma>_log_ratio``: log of the inner / context mean energy of the
        high-pass residual at each scale. NaN and ``valid`` False where a landmark is NaN
        or a region is empty.

    References
    ----------
    Y. Li, S. Lyu, "Exposing DeepFake videos by detecting face warping artifacts", CVPR
    Workshops 2019.
    """

    name = "warping"
    version = "1"
    needs = ("landmarks",)
    defaults = {"margin": 4, "band": 16, "sigmas": (1.0, 2.0)}

    def columns(self) -> tuple:
        return ("lap_var_inner", "lap_var_context", "lap_log_ratio") + tuple(
            f"hf{s:g}_log_ratio" for s in self.params["sigmas"])

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        cols = self.columns()
        return {"vector": OutputSpec("vector", (len(cols),), "float32", cols)}

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        n, h, w, _ = batch.images.shape
        margin, band = int(self.params["margin"]), int(self.params["band"])
        out = np.full((n, len(self.columns())), np.nan, np.float64)
        valid = landmarks_known(batch.landmarks)
        hulls = landmark_hull_masks(batch.landmarks, (h, w))
        gray = batch.gray
        # one image at a time: the masks are per-image morphology (each radius once) and
        # the masked statistics are OpenCV's, with no boolean gathers
        for i in np.flatnonzero(valid):
            shapes = HullMorphology(hulls[i])
            inner = shapes(margin, False)
            context = cv2.subtract(shapes(margin + band, True), shapes(margin, True))
            lap = laplacian(gray[i])
            var_in, var_ctx = masked_var(lap, inner), masked_var(lap, context)
            row = [var_in, var_ctx, log_ratio(var_in, var_ctx)]
            for sigma in self.params["sigmas"]:
                energy = gray[i] - gaussian_blur(gray[i], sigma)
                energy *= energy
                row.append(log_ratio(masked_mean(energy, inner)[0],
                                     masked_mean(energy, context)[0]))
            out[i] = row
        ok = np.isfinite(out).all(1)
        out[~ok] = np.nan
        return {"vector": out.astype(np.float32), "valid": valid & ok}


@register_extractor
class BlendingBoundaryExtractor(Extractor):
    """Colour and gradient discontinuities along the face boundary (after Face X-ray).

    A swapped face is blended into the target along a boundary close to the landmark
    convex hull; colour mismatch and blending leave a step or a seam there. Boundary band
    = hull dilated by ``band`` minus hull eroded by ``band``; inside = the hull eroded by
    ``band``; outside = the hull dilated by ``2 band`` minus dilated by ``band``. The inner
    / outer rings for colour are ``ring`` px wide just inside / outside the hull.

    Parameters
    ----------
    band : int
        Half-width in pixels of the boundary band.
    ring : int
        Width in pixels of the rings just inside and just outside the hull.

    Returns
    -------
    vector : (7,) float32
        ``grad_band``, ``grad_inside``, ``grad_outside``: mean Sobel gradient magnitude of
        the luma (grey levels / pixel) in the band, inside and outside;
        ``grad_band_log_ratio``: log(band / mean(inside, outside));
        ``delta_L``, ``delta_ab``: mean L* difference (inner ring - outer ring) and the
        distance of their mean (a*, b*); ``delta_E``: CIE76 colour difference of the two
        ring means. NaN and ``valid`` False where a landmark is NaN or a region is empty.

    References
    ----------
    L. Li, J. Bao, T. Zhang, H. Yang, D. Chen, F. Wen, B. Guo, "Face X-ray for more general
    face forgery detection", CVPR 2020.
    """

    name = "blending"
    version = "1"
    needs = ("landmarks",)
    defaults = {"band": 6, "ring": 6}
    columns = ("grad_band", "grad_inside", "grad_outside", "grad_band_log_ratio",
               "delta_L", "delta_ab", "delta_E")

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        return {"vector": OutputSpec("vector", (len(self.columns),), "float32", self.columns)}

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        n, h, w, _ = batch.images.shape
        band, ring = int(self.params["band"]), int(self.params["ring"])
        out = np.full((n, len(self.columns)), np.nan, np.float64)
        valid = landmarks_known(batch.landmarks)
        hulls = landmark_hull_masks(batch.landmarks, (h, w))
        grads = gradient_magnitude(batch.gray[valid])
        for k, i in enumerate(np.flatnonzero(valid)):
            shapes = HullMorphology(hulls[i])          # ring == band shares its masks
            eroded, dilated = shapes(band, False), shapes(band, True)
            boundary = cv2.subtract(dilated, eroded)
            outside = cv2.subtract(shapes(2 * band, True), dilated)
            inner_ring = cv2.subtract(shapes.hull, shapes(ring, False))
            outer_ring = cv2.subtract(shapes(ring, True), shapes.hull)
            g_band, g_in, g_out = (masked_mean(grads[k], m)[0]
                                   for m in (boundary, eroded, outside))
            lab = cv2.cvtColor(batch.images[i].astype(np.float32) / np.float32(255),
                               cv2.COLOR_RGB2LAB)
            diff = masked_mean(lab, inner_ring) - masked_mean(lab, outer_ring)
            out[i] = [g_band, g_in, g_out, log_ratio(g_band, (g_in + g_out) / 2), diff[0],
                      np.hypot(diff[1], diff[2]), np.linalg.norm(diff)]
        ok = np.isfinite(out).all(1)
        out[~ok] = np.nan
        return {"vector": out.astype(np.float32), "valid": valid & ok}
