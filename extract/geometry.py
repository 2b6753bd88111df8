"""Geometric features from the 68 iBUG landmarks: head pose (``head_pose``) and bilateral
symmetry (``symmetry``).

Also holds the landmark helpers the other hand-crafted families share: the iBUG-68 mirror
index, the landmark convex-hull mask and the generic 3-D face model.
"""
from __future__ import annotations

import cv2
import numpy as np

from extract.registry import Extractor, FaceBatch, OutputSpec, register_extractor

#: iBUG 68 index of each point's left/right counterpart (midline points map to themselves):
#: ``landmarks[IBUG68_MIRROR]`` relabels the points of a horizontally mirrored face.
IBUG68_MIRROR = np.array(
    list(range(16, -1, -1))                       # jaw 0-16
    + list(range(26, 16, -1))                     # brows 17-26
    + [27, 28, 29, 30]                            # nose bridge
    + [35, 34, 33, 32, 31]                        # nostrils 31-35
    + [45, 44, 43, 42, 47, 46]                    # eye 36-41 <-> eye 42-47
    + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]   # outer lip 48-59
    + [64, 63, 62, 61, 60, 67, 66, 65])           # inner lip 60-67

#: Generic 3-D mean face for the 68 iBUG points, in model units (~mm), axes as the camera's
#: (x right, y down, z away from the camera), so a frontal upright face has rotation 0.
#: Numbers from the widely used ``assets/model.txt`` of yinguobing/head-pose-estimation
#: (MIT), itself derived from the dlib/OpenFace mean shape.
FACE_MODEL_3D = np.array([
    [-73.393524, -29.801432, 47.667534], [-72.775020, -10.949766, 45.909405],
    [-70.533640, 7.929818, 44.842580], [-66.850060, 26.074280, 43.141113],
    [-59.790188, 42.564390, 38.635300], [-48.368973, 56.481080, 30.750622],
    [-34.121100, 67.246994, 18.456453], [-17.875410, 75.056890, 3.609035],
    [0.098749, 77.061290, -0.881698], [17.477032, 74.758446, 5.181201],
    [32.648968, 66.929020, 19.176563], [46.372356, 56.311390, 30.770570],
    [57.343480, 42.419125, 37.628628], [64.388480, 25.455880, 40.886310],
    [68.212036, 6.990805, 42.281450], [70.486404, -11.666193, 44.142567],
    [71.375824, -30.365190, 47.140427], [-61.119408, -49.361603, 14.254422],
    [-51.287586, -58.769794, 7.268147], [-37.804800, -61.996155, 0.442051],
    [-24.022755, -61.033398, -6.606501], [-11.635713, -56.686760, -11.967398],
    [12.056636, -57.391033, -12.051204], [25.106256, -61.902187, -7.315098],
    [38.338590, -62.777714, -1.022953], [51.191006, -59.302345, 5.349435],
    [60.053852, -50.190254, 11.615746], [0.653940, -42.193790, -13.380835],
    [0.804809, -30.993721, -21.150852], [0.992204, -19.944595, -29.284037],
    [1.226783, -8.414541, -36.948060], [-14.772472, 2.598255, -20.132004],
    [-7.180239, 4.751589, -23.536684], [0.555920, 6.562900, -25.944448],
    [8.272499, 4.661005, -23.695742], [15.214351, 2.643046, -20.858156],
    [-46.047290, -37.471413, 7.037989], [-37.674686, -42.730510, 3.021217],
    [-27.883856, -42.711517, 1.353629], [-19.648268, -36.754740, -0.111088],
    [-28.272964, -35.134495, -0.147273], [-38.082417, -34.919044, 1.476612],
    [19.265867, -37.032307, -0.665746], [27.894192, -43.342445, 0.247660],
    [37.437530, -43.110820, 1.696435], [45.170807, -38.086514, 4.894163],
    [38.196453, -35.532024, 0.282961], [28.764990, -35.484287, -1.172675],
    [-28.916267, 28.612717, -2.240310], [-17.533194, 22.172188, -15.934335],
    [-6.684590, 19.029050, -22.611355], [0.381001, 20.721119, -23.748438],
    [8.375443, 19.035460, -22.721994], [18.876617, 22.394110, -15.610679],
    [28.794413, 28.079924, -3.217393], [19.057573, 36.298250, -14.987997],
    [8.956375, 39.634575, -22.554245], [0.381549, 40.395645, -23.591625],
    [-7.428895, 39.836407, -22.406107], [-18.160633, 36.677900, -15.121907],
    [-24.377490, 28.677770, -4.785684], [-6.897633, 25.475977, -20.893742],
    [0.340663, 26.014269, -22.220478], [8.444722, 25.326199, -21.025520],
    [24.474474, 28.323008, -5.712776], [8.449166, 30.596216, -20.671490],
    [0.205322, 31.408737, -21.903670], [-7.198266, 30.844875, -20.328022],
], np.float64)

#: Yang, Li & Lyu (2019), Sec. 3: the whole face uses points 1-36, 49, 55 (1-based: contour,
#: brows, nose, mouth corners) and the central region 18-36, 49, 55 (the contour dropped);
#: eyes and inner lips are left out of both because they move with expression.
YANG_WHOLE_FACE = np.r_[0:36, 48, 54]
YANG_CENTRAL_FACE = np.r_[17:36, 48, 54]


def camera_matrix(width: int, height: int) -> np.ndarray:
    """Pinhole camera with focal length ``width`` pixels and principal point at the centre."""
    return np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], np.float64)


def rotation_to_euler(rotation: np.ndarray) -> np.ndarray:
    """(pitch, yaw, roll) in degrees of ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``.

    Pitch turns about the camera x axis (nodding), yaw about y (shaking the head), roll
    about z (tilting in the image plane).
    """
    r = np.asarray(rotation, np.float64)
    yaw = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    pitch = np.arctan2(r[2, 1], r[2, 2])
    roll = np.arctan2(r[1, 0], r[0, 0])
    return np.degrees([pitch, yaw, roll])


def euler_to_rotation(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """Inverse of :func:`rotation_to_euler` (angles in degrees)."""
    p, y, r = np.radians([pitch, yaw, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def solve_head_pose(points_2d: np.ndarray, index: np.ndarray, camera: np.ndarray,
                    guess: tuple | None = None) -> tuple | None:
    """Rotation and translation vectors of :data:`FACE_MODEL_3D` seen at ``points_2d``.

    ``cv2.solvePnP`` (SOLVEPNP_ITERATIVE, Levenberg-Marquardt) on the model points
    ``index``, started from ``guess`` or from a frontal pose at the distance that matches
    the landmarks' spread. Returns ``(rvec, tvec)`` (3,) float64 each, or None if it fails.
    """
    image = np.ascontiguousarray(points_2d[index], np.float64)
    model = np.ascontiguousarray(FACE_MODEL_3D[index])
    if guess is None:
        spread = np.linalg.norm(image - image.mean(0), axis=1).mean()
        model_spread = np.linalg.norm(model[:, :2] - model[:, :2].mean(0), axis=1).mean()
        tz = camera[0, 0] * model_spread / max(spread, 1e-6)
        centre = (image.mean(0) - camera[:2, 2]) * tz / camera[0, 0]
        rvec, tvec = np.zeros(3), np.array([centre[0], centre[1], tz])
    else:
        rvec, tvec = (np.array(g, np.float64).ravel() for g in guess)
    ok, rvec, tvec = cv2.solvePnP(model, image, camera, None, rvec.reshape(3, 1).copy(),
                                  tvec.reshape(3, 1).copy(), useExtrinsicGuess=True,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or not (np.isfinite(rvec).all() and np.isfinite(tvec).all()) or tvec[2] <= 0:
        return None
    return rvec.ravel(), tvec.ravel()


def landmark_hull_masks(landmarks: np.ndarray, size: tuple) -> np.ndarray:
    """N x H x W bool: the convex hull of each face's 68 landmarks, all False where any
    landmark is NaN."""
    h, w = size
    masks = np.zeros((len(landmarks), h, w), np.uint8)
    for i, pts in enumerate(np.asarray(landmarks, np.float64)):
        if np.isfinite(pts).all():
            hull = cv2.convexHull(np.round(pts).astype(np.int32))
            cv2.fillConvexPoly(masks[i], hull, 1)
    return masks.astype(bool)


def landmarks_known(landmarks: np.ndarray, index=slice(None)) -> np.ndarray:
    """N bool: whether all landmarks ``index`` of each row are finite."""
    return np.isfinite(np.asarray(landmarks)[:, index]).all(axis=(1, 2))


@register_extractor
class HeadPoseExtractor(Extractor):
    """Head pose from the 68 landmarks and the pose inconsistency of Yang, Li & Lyu (2019).

    The pose is found by ``cv2.solvePnP`` (iterative) of a generic 3-D mean face
    (:data:`FACE_MODEL_3D`) onto the landmarks, with a pinhole camera of focal length =
    crop width and principal point at the crop centre. Following Yang et al., a face swap
    replaces the central face but keeps the outer contour, so the pose fitted to the
    central face (:data:`YANG_CENTRAL_FACE`) and to the whole face
    (:data:`YANG_WHOLE_FACE`) disagree more on fakes.

    Returns
    -------
    vector : (7,) float32
        ``pitch``, ``yaw``, ``roll`` (degrees, all 68 points; ``R = Rz(roll) Ry(yaw)
        Rx(pitch)``, 0 = frontal upright), ``drot_x``, ``drot_y``, ``drot_z`` (whole minus
        central rotation vector, radians) and ``pose_angle`` (degrees, angle of the
        rotation between the whole-face and central-face poses). NaN and ``valid`` False
        where a landmark is NaN, the landmarks span less than ``min_span`` px in x or y
        (collapsed: no pose to fit), or a fit fails.

    References
    ----------
    X. Yang, Y. Li, S. Lyu, "Exposing deep fakes using inconsistent head poses", ICASSP 2019.
    """

    name = "head_pose"
    version = "2"
    needs = ("landmarks",)
    defaults = {"min_span": 2.0}
    columns = ("pitch", "yaw", "roll", "drot_x", "drot_y", "drot_z", "pose_angle")

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        return {"vector": OutputSpec("vector", (len(self.columns),), "float32", self.columns)}

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        n, h, w, _ = batch.images.shape
        camera = camera_matrix(w, h)
        out = np.full((n, len(self.columns)), np.nan, np.float64)
        valid = landmarks_known(batch.landmarks)
        with np.errstate(invalid="ignore"):
            spread = np.ptp(np.asarray(batch.landmarks, np.float64), axis=1).min(axis=1)
        valid &= spread >= float(self.params["min_span"])
        every = np.arange(68)
        for i in np.flatnonzero(valid):
            pts = np.asarray(batch.landmarks[i], np.float64)
            full = solve_head_pose(pts, every, camera)
            whole = full and solve_head_pose(pts, YANG_WHOLE_FACE, camera, full)
            central = whole and solve_head_pose(pts, YANG_CENTRAL_FACE, camera, whole)
            if not (full and whole and central):
                valid[i] = False
                continue
            r_whole, r_central = cv2.Rodrigues(whole[0])[0], cv2.Rodrigues(central[0])[0]
            relative = cv2.Rodrigues(r_whole @ r_central.T)[0]
            out[i, :3] = rotation_to_euler(cv2.Rodrigues(full[0])[0])
            out[i, 3:6] = whole[0] - central[0]
            out[i, 6] = np.degrees(np.linalg.norm(relative))
        return {"vector": out.astype(np.float32), "valid": valid}


def mirror_about_columns(images: np.ndarray, midline: np.ndarray) -> tuple:
    """Mirror each image about the vertical line ``x = midline[i]`` (linear interpolation).

    Parameters
    ----------
    images : N x H x W [x C] float array
    midline : N float, the axis in pixel coordinates (columns are at 0, 1, ..., W-1).

    Returns
    -------
    mirrored : same shape as ``images``; ``mirrored[i, y, x] = images[i, y, 2 m_i - x]``.
    inside : N x W bool, whether ``2 m_i - x`` falls inside the image.
    """
    images = np.asarray(images, np.float32)
    w = images.shape[2]
    source = 2 * np.asarray(midline, np.float64)[:, None] - np.arange(w)[None, :]
    inside = (source >= 0) & (source <= w - 1)
    source = np.clip(source, 0, w - 1)
    left = np.minimum(np.floor(source).astype(np.intp), w - 2)
    frac = (source - left).astype(np.float32)
    mirrored = np.empty_like(images)
    for i, image in enumerate(images):  # per image: whole-column gathers, no index arrays
        f = frac[i].reshape((1, w) + (1,) * (images.ndim - 3))
        mirrored[i] = image.take(left[i], axis=1) * (1 - f) + image.take(left[i] + 1, axis=1) * f
    return mirrored, inside


#: (row, col) of each 3 x 3 neighbour in the padded image, clockwise from the top-left one.
_LBP_NEIGHBOURS = ((0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0))


def lbp_codes(gray: np.ndarray) -> np.ndarray:
    """N x H x W uint8 basic 8-neighbour LBP (3x3, ``neighbour >= centre``), edges replicated.

    Bit k is set for the k-th neighbour counted clockwise from the top-left one. OpenCV's
    8-bit compare / and / or, one image at a time (4x faster than numpy's bool arrays).
    """
    g = np.asarray(gray, np.float32)
    n, h, w = g.shape
    codes = np.zeros((n, h, w), np.uint8)
    for i in range(n):
        pad = cv2.copyMakeBorder(g[i], 1, 1, 1, 1, cv2.BORDER_REPLICATE)
        for bit, (dy, dx) in enumerate(_LBP_NEIGHBOURS):
            ge = cv2.compare(pad[dy:dy + h, dx:dx + w], g[i], cv2.CMP_GE)   # 255 or 0
            cv2.bitwise_or(codes[i], cv2.bitwise_and(ge, 1 << bit), dst=codes[i])
    return codes


def masked_histograms(codes: np.ndarray, mask: np.ndarray, bins: int = 256) -> np.ndarray:
    """N x bins normalised histograms of ``codes`` over ``mask`` (rows of an empty mask: NaN)."""
    n = len(codes)
    # pixels outside the mask go to one extra bin past the last image's, dropped after
    index = np.where(mask.reshape(n, -1),
                     codes.reshape(n, -1).astype(np.int32)
                     + (np.arange(n, dtype=np.int32) * bins)[:, None], n * bins)
    counts = np.bincount(index.ravel(), minlength=n * bins + 1)[:-1].reshape(n, bins)
    counts = counts.astype(np.float64)
    total = counts.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts / total


def gradient_magnitude(gray: np.ndarray) -> np.ndarray:
    """N x H x W Sobel gradient magnitude of each image (3 x 3 Sobel, edges replicated).

    ``cv2.Sobel`` one image at a time (a 2-D filter must not mix the images of a batch),
    then ``hypot`` of the two derivatives, in float32.
    """
    g = np.asarray(gray, np.float32)
    out = np.empty(g.shape, np.float32)
    for i, image in enumerate(g):
        dx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
        dy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
        out[i] = np.hypot(dx, dy)
    return out


@register_extractor
class SymmetryExtractor(Extractor):
    """Bilateral symmetry of the face: the face against its mirror about the facial midline.

    The midline is the vertical line through the mean x of landmarks 27-30 (nose bridge);
    the crop is aligned, so a vertical axis suffices and small rolls are not corrected.
    Each face pixel x inside the landmark hull (whose mirror also lies inside the crop) is
    compared with its mirror 2m - x. Manipulated faces often break the symmetry of
    lighting, texture and shape that a real face keeps.

    Returns
    -------
    vector : (4,) float32
        ``pixel_diff``: mean |luma(x) - luma(mirror x)| (grey levels, 0-255);
        ``gradient_diff``: the same for Sobel gradient magnitudes (grey levels / pixel);
        ``lbp_diff``: total-variation distance (0-1) between the 8-neighbour LBP histograms
        of the face and of the mirrored face over the same region;
        ``landmark_asymmetry``: mean distance between each lateral landmark and the mirror
        of its counterpart (:data:`IBUG68_MIRROR`), divided by the inter-ocular distance.
        NaN and ``valid`` False where a landmark is NaN.

    References
    ----------
    Y. Liu, K. L. Schmidt, J. F. Cohn, S. Mitra, "Facial asymmetry quantification for
    expression invariant human identification", CVIU 2003 (mirror-difference images).
    """

    name = "symmetry"
    version = "1"
    needs = ("landmarks",)
    defaults = {}
    columns = ("pixel_diff", "gradient_diff", "lbp_diff", "landmark_asymmetry")

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        return {"vector": OutputSpec("vector", (len(self.columns),), "float32", self.columns)}

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        n, h, w, _ = batch.images.shape
        lm = np.asarray(batch.landmarks, np.float64)
        valid = landmarks_known(lm)
        out = np.full((n, len(self.columns)), np.nan, np.float64)
        if not valid.any():
            return {"vector": out.astype(np.float32), "valid": valid}
        lm_v = lm[valid]
        midline = lm_v[:, 27:31, 0].mean(1)
        gray = batch.gray[valid]
        mirrored, inside = mirror_about_columns(gray, midline)
        region = landmark_hull_masks(lm_v, (h, w)) & inside[:, None, :]
        area = region.sum((1, 2))

        def region_mean(values):
            with np.errstate(invalid="ignore", divide="ignore"):
                return (values * region).sum((1, 2), dtype=np.float64) / area

        out_v = np.full((len(lm_v), len(self.columns)), np.nan, np.float64)
        out_v[:, 0] = region_mean(np.abs(gray - mirrored))
        grad = gradient_magnitude(gray)
        out_v[:, 1] = region_mean(np.abs(grad - mirror_about_columns(grad, midline)[0]))
        hist = masked_histograms(lbp_codes(gray), region)
        hist_m = masked_histograms(lbp_codes(mirrored), region)
        out_v[:, 2] = 0.5 * np.abs(hist - hist_m).sum(1)

        reflected = lm_v.copy()
        reflected[..., 0] = 2 * midline[:, None] - reflected[..., 0]
        lateral = np.flatnonzero(IBUG68_MIRROR != np.arange(68))
        gaps = np.linalg.norm(lm_v[:, lateral] - reflected[:, IBUG68_MIRROR[lateral]], axis=2)
        interocular = np.linalg.norm(lm_v[:, 36:42].mean(1) - lm_v[:, 42:48].mean(1), axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out_v[:, 3] = gaps.mean(1) / interocular
        out[valid] = out_v
        ok = np.isfinite(out).all(1)
        out[~ok] = np.nan
        return {"vector": out.astype(np.float32), "valid": valid & ok}
