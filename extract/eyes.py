"""Corneal specular highlights (``eyes``): both eyes of a real face reflect the same light
sources, so their highlights sit at the same place relative to each eye; GAN faces often
draw them independently.
"""
from __future__ import annotations

import cv2
import numpy as np

from extract.registry import Extractor, FaceBatch, OutputSpec, register_extractor

#: iBUG 68 contours of the subject's right eye (image left) and left eye (image right),
#: each ordered corner, two upper points, corner, two lower points.
EYE_INDEX = (np.arange(36, 42), np.arange(42, 48))

#: Fixed sub-pixel precision for cv2.fillPoly (coordinates in 1/16 pixel).
_SHIFT = 4

#: An eye patch spans this many corner-to-corner eye widths horizontally.
PATCH_SPAN = 1.2


def eye_aspect_ratio(eye: np.ndarray) -> np.ndarray:
    """Soukupova & Cech (2016) eye aspect ratio of ``... x 6 x 2`` eye contours.

    ``(|p1 - p5| + |p2 - p4|) / (2 |p0 - p3|)``: about 0.25-0.35 for an open eye, near 0
    when closed.
    """
    eye = np.asarray(eye, np.float64)
    dist = lambda a, b: np.linalg.norm(eye[..., a, :] - eye[..., b, :], axis=-1)  # noqa: E731
    with np.errstate(invalid="ignore", divide="ignore"):
        return (dist(1, 5) + dist(2, 4)) / (2 * dist(0, 3))


def eye_patch(gray: np.ndarray, eye: np.ndarray, width: int, height: int) -> tuple | None:
    """The eye resampled to a ``height x width`` patch, with its contour polygon mask.

    The patch is centred on the eye contour's bounding box and spans :data:`PATCH_SPAN` x
    the corner-to-corner distance horizontally (same scale vertically), so both eyes of a
    face map onto the same grid up to their shape. Returns ``(patch float32, mask bool)``,
    or None when the box leaves the crop or the eye has no width.
    """
    span = np.linalg.norm(eye[3] - eye[0])
    if not np.isfinite(span) or span < 2:
        return None
    scale = width / (PATCH_SPAN * span)
    centre = (eye.min(0) + eye.max(0)) / 2
    box_half = np.array([width, height]) / scale / 2
    h, w = gray.shape
    if (centre - box_half < 0).any() or centre[0] + box_half[0] > w - 1 \
            or centre[1] + box_half[1] > h - 1:
        return None
    affine = np.array([[scale, 0, width / 2 - scale * centre[0]],
                       [0, scale, height / 2 - scale * centre[1]]])
    patch = cv2.warpAffine(gray, affine, (width, height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    contour = eye @ affine[:, :2].T + affine[:, 2]
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(contour * (1 << _SHIFT)).astype(np.int32)], 1,
                 lineType=cv2.LINE_8, shift=_SHIFT)
    return patch, mask.astype(bool)


def cornea_disk(patch: np.ndarray, region: np.ndarray, radius: float,
                dark_quantile: float) -> np.ndarray:
    """The part of ``region`` within ``radius`` px of the centroid of its darkest pixels.

    The iris and pupil are the darkest part of an open eye; their centroid (of the pixels
    at or below the ``dark_quantile`` of the region's luma) locates the cornea, whose
    radius is a fixed fraction of the eye's width.
    """
    values = patch[region]
    if values.size == 0:
        return np.zeros_like(region)
    ys, xs = np.nonzero(region)
    dark = values <= np.quantile(values, dark_quantile)
    cy, cx = ys[dark].mean(), xs[dark].mean()
    yy, xx = np.indices(region.shape)
    return region & ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2)


def highlight_mask(patch: np.ndarray, cornea: np.ndarray, kernel: int,
                   min_contrast: float) -> np.ndarray:
    """Specular highlight pixels of ``cornea``: a white top-hat of ``kernel`` px keeps
    bright spots smaller than the kernel against their surroundings; highlight pixels
    reach at least half of the strongest top-hat response inside the cornea, and that
    response must be ``min_contrast`` luma levels or more (else the mask is empty). Only
    the cornea's interior (2 px in from its edge) counts, so the bright sclera next to the
    iris is not taken for a highlight."""
    interior = cv2.erode(cornea.astype(np.uint8), np.ones((5, 5), np.uint8),
                         borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    if not interior.any():
        return np.zeros_like(cornea)
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel, kernel))
    tophat = cv2.morphologyEx(patch, cv2.MORPH_TOPHAT, element,
                              borderType=cv2.BORDER_REPLICATE)
    peak = tophat[interior].max()
    if peak < min_contrast:
        return np.zeros_like(cornea)
    return interior & (tophat >= peak / 2)


def corneal_highlight(patch: np.ndarray, region: np.ndarray, cornea_radius: float,
                      dark_quantile: float, min_contrast: float) -> np.ndarray:
    """Highlight mask of one eye patch (:func:`eye_patch`): the cornea of ``cornea_radius``
    eye widths (:func:`cornea_disk`), then :func:`highlight_mask` with a top-hat as wide as
    the cornea (odd size), so only spots narrower than the cornea count."""
    radius = cornea_radius * patch.shape[1] / PATCH_SPAN
    kernel = 2 * int(round(radius)) + 1
    return highlight_mask(patch, cornea_disk(patch, region, radius, dark_quantile), kernel,
                          min_contrast)


@register_extractor
class CornealHighlightExtractor(Extractor):
    """Consistency of the corneal specular highlights of the two eyes (Hu, Li & Lyu 2021).

    Each eye (landmarks 36-41 and 42-47) is resampled to a common ``patch_width`` x
    ``patch_width/2`` grid (:func:`eye_patch`). Inside the eye contour the cornea is a
    disk of ``cornea_radius`` eye widths around the centroid of the darkest pixels
    (:func:`cornea_disk`); its highlight is what a white top-hat finds there
    (:func:`highlight_mask`), a contrast test rather than a fixed brightness, so dim and
    compressed frames keep their highlights. The two highlight masks are compared in place
    (no mirroring: one light source lands at the same relative spot in both eyes).

    Parameters
    ----------
    cornea_radius : float
        Cornea radius as a fraction of the eye's corner-to-corner width (the iris is about
        0.4 of the palpebral fissure's width).
    dark_quantile : float
        Luma quantile of the eye region below which pixels count as iris or pupil.
    min_contrast : float
        Smallest top-hat response (luma levels, 0-255) that counts as a highlight.
    min_ear : float
        Eyes with an eye aspect ratio below this are taken as closed.
    patch_width : int
        Width of the common eye grid in pixels (height = width / 2).

    Returns
    -------
    vector : (6,) float32
        ``iou`` (0-1) of the two highlight masks; ``intensity_diff``: |mean highlight luma
        left - right| / 255; ``centroid_dx``, ``centroid_dy``: right minus left highlight
        centroid in patch widths / heights; ``centroid_dist``: their distance in patch
        widths; ``area_ratio``: smaller / larger highlight area. NaN and ``valid`` False
        where an eye landmark is NaN, an eye is closed or leaves the crop, or an eye has no
        highlight of ``min_contrast``.

    Notes
    -----
    In a 256 px crop an eye is only ~20-25 px wide and its highlight a pixel or two, so
    the feature is noisy there (the paper works on 1024 px faces).

    References
    ----------
    S. Hu, Y. Li, S. Lyu, "Exposing GAN-generated faces using inconsistent corneal specular
    highlights", ICASSP 2021.
    """

    name = "eyes"
    version = "2"
    needs = ("landmarks",)
    defaults = {"cornea_radius": 0.2, "dark_quantile": 0.25, "min_contrast": 10.0,
                "min_ear": 0.15, "patch_width": 64}
    columns = ("iou", "intensity_diff", "centroid_dx", "centroid_dy", "centroid_dist",
               "area_ratio")

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        return {"vector": OutputSpec("vector", (len(self.columns),), "float32", self.columns)}

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        p = self.params
        width = int(p["patch_width"])
        height = max(width // 2, 1)
        n = len(batch)
        lm = np.asarray(batch.landmarks, np.float64)
        eyes = np.stack([lm[:, EYE_INDEX[0]], lm[:, EYE_INDEX[1]]], axis=1)   # N x 2 x 6 x 2
        ear = eye_aspect_ratio(eyes)
        candidates = np.isfinite(eyes).all(axis=(1, 2, 3)) & (ear >= p["min_ear"]).all(1)
        out = np.full((n, len(self.columns)), np.nan, np.float64)
        valid = np.zeros(n, bool)
        grid = np.stack(np.meshgrid(np.arange(width), np.arange(height)), -1)  # H x W x (x, y)
        gray = batch.gray
        for i in np.flatnonzero(candidates):
            found = [eye_patch(gray[i], eyes[i, e], width, height) for e in range(2)]
            if any(f is None for f in found):
                continue
            masks = [corneal_highlight(patch, region, p["cornea_radius"], p["dark_quantile"],
                                       p["min_contrast"]) for patch, region in found]
            areas = np.array([m.sum() for m in masks], np.float64)
            if (areas == 0).any():
                continue
            intensity = [found[e][0][masks[e]].mean() for e in range(2)]
            centroid = [grid[masks[e]].mean(0) / [width, height] for e in range(2)]
            shift = centroid[1] - centroid[0]
            out[i] = [(masks[0] & masks[1]).sum() / (masks[0] | masks[1]).sum(),
                      abs(intensity[0] - intensity[1]) / 255, shift[0], shift[1],
                      np.hypot(shift[0], shift[1] * height / width),
                      areas.min() / areas.max()]
            valid[i] = True
        return {"vector": out.astype(np.float32), "valid": valid}
