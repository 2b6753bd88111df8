"""Face-swap artifacts at the face region: resolution mismatch (``warping``) and boundary
discontinuities (``blending``).

A face swap renders the new face at its own resolution, warps it onto the target and
blends it in along a boundary close to the landmark hull; both steps leave traces that
these hand-made statistics compare inside, across and outside that hull.
"""
from __future__ import annotations

import cv2
import numpy as np

from extract.geometry import gradient_magnitude, landmark_hull_masks, landmarks_known
from extract.registry import Extractor, FaceBatch, OutputSpec, register_extractor


def laplacian(gray: np.ndarray) -> np.ndarray:
    """N x H x W 4-neighbour Laplacian of each image (edges replicated), vectorised."""
    g = np.asarray(gray, np.float32)
    p = np.pad(g, ((0, 0), (1, 1), (1, 1)), mode="edge")
    return p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:] - 4 * g


def gaussian_blur(gray: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of each N x H x W image with scipy's kernel (radius ``int(4 sigma +
    0.5)``) and its "nearest" edges, by ``cv2.GaussianBlur`` one image at a time."""
    g = np.asarray(gray, np.float32)
    size = 2 * int(4.0 * sigma + 0.5) + 1
    out = np.empty_like(g)
    for i, image in enumerate(g):
        out[i] = cv2.GaussianBlur(image, (size, size), sigmaX=sigma, sigmaY=sigma,
                                  borderType=cv2.BORDER_REPLICATE)
    return out


def morph(masks: np.ndarray, radius: int, dilate: bool) -> np.ndarray:
    """Dilate (or erode) each N x H x W bool mask with a disc of ``radius`` pixels."""
    if radius <= 0:
        return masks.copy()
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    op = cv2.dilate if dilate else cv2.erode
    return np.stack([op(m.astype(np.uint8), disc, borderValue=0) for m in masks]).astype(bool) \
        if len(masks) else masks.copy()


def masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-row mean of ``values`` (N x H x W [x C]) over ``mask`` (N x H x W); NaN if empty.

    The masked sums are one matrix-vector product per image (``np.matmul`` of the 0/1 mask
    row with the pixels), in the precision of ``values``.
    """
    n = len(mask)
    flat_mask = mask.reshape(n, 1, -1)
    work = np.float32 if values.dtype == np.float32 else np.float64
    pixels = np.asarray(values, work).reshape(n, flat_mask.shape[2], -1)
    sums = np.matmul(flat_mask.astype(work), pixels)[:, 0, :].astype(np.float64)
    count = flat_mask.sum(axis=2, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums / count
    return out if values.ndim > mask.ndim else out[:, 0]


def masked_var(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-row variance of ``values`` (N x H x W) over ``mask``; NaN if empty."""
    mean = masked_mean(values, mask).astype(values.dtype)
    return masked_mean((values - mean[:, None, None]) ** 2, mask)


def log_ratio(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> np.ndarray:
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
        if valid.any():
            hull = landmark_hull_masks(batch.landmarks[valid], (h, w))
            inner = morph(hull, margin, dilate=False)
            context = morph(hull, margin + band, dilate=True) & ~morph(hull, margin, dilate=True)
            gray = batch.gray[valid]
            lap = laplacian(gray)
            cols = [masked_var(lap, inner), masked_var(lap, context)]
            cols.append(log_ratio(cols[0], cols[1]))
            for sigma in self.params["sigmas"]:
                energy = (gray - gaussian_blur(gray, sigma)) ** 2
                cols.append(log_ratio(masked_mean(energy, inner), masked_mean(energy, context)))
            out[valid] = np.stack(cols, 1)
        ok = np.isfinite(out).all(1)
        out[~ok] = np.nan
        return {"vector": out.astype(np.float32), "valid": valid & ok}


def rgb_to_lab(images: np.ndarray) -> np.ndarray:
    """N x H x W x 3 uint8 RGB -> float32 CIE L*a*b* (L 0-100, D65), per image by OpenCV."""
    return np.stack([cv2.cvtColor(im.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
                     for im in images]) if len(images) else np.zeros(images.shape, np.float32)


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
        if valid.any():
            hull = landmark_hull_masks(batch.landmarks[valid], (h, w))
            eroded, dilated = morph(hull, band, False), morph(hull, band, True)
            boundary = dilated & ~eroded
            outside = morph(hull, 2 * band, True) & ~dilated
            inner_ring = hull & ~morph(hull, ring, False)
            outer_ring = morph(hull, ring, True) & ~hull
            grad = gradient_magnitude(batch.gray[valid])
            g_band, g_in, g_out = (masked_mean(grad, m) for m in (boundary, eroded, outside))
            lab = rgb_to_lab(batch.images[valid])
            diff = masked_mean(lab, inner_ring) - masked_mean(lab, outer_ring)   # M x 3
            out[valid] = np.column_stack([
                g_band, g_in, g_out, log_ratio(g_band, (g_in + g_out) / 2),
                diff[:, 0], np.hypot(diff[:, 1], diff[:, 2]), np.linalg.norm(diff, axis=1)])
        ok = np.isfinite(out).all(1)
        out[~ok] = np.nan
        return {"vector": out.astype(np.float32), "valid": valid & ok}
