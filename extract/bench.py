"""Benchmark: the batched handcrafted extractors against naive per-image references.

``python -m extract.bench [--n 32] [--size 256] [--images DIR] [--json PATH]``

Both sides run single-threaded (OpenCV, OpenMP, MKL and OpenBLAS limited to one thread)
on the same aligned face crops (with their landmarks), in one process. The naive side is
what one would write with scikit-image / scipy / OpenCV one image at a time, computing the
same outputs with the same parameters (the extractors' defaults) where the library allows
it. Prints CPU ms per image (best of --repeat runs) on each side and their ratio per
feature and in total.

Naive references, per image (``luma`` is the float BT.601 luma of ``FaceBatch.gray``,
``gray`` OpenCV's 8-bit ``cvtColor(RGB2GRAY)``, as the extractors use them):

- ``lbp``: ``skimage.feature.local_binary_pattern`` (uniform; P, R = 8, 1 / 16, 2 / 24, 3)
  on ``gray`` and ``np.bincount`` histograms, whole crop and 4 x 4 cells (P8R1; returned
  in a different order than our vector: P8R1 whole, its 16 cells, then P16R2, P24R3).
- ``hog``: ``skimage.feature.hog`` on ``gray`` (9 orientations, 16 px cells, 2 x 2 blocks,
  L2-Hys): our vector.
- ``glcm``: ``graycomatrix`` + ``graycoprops`` on ``gray`` quantised to 32 levels: our
  per-angle columns (not the per-distance mean and range).
- ``dct``: ``scipy.fft.dctn`` of the whole ``luma`` and of its 8 x 8 tiles; the AC mean
  |c|, std and ``np.histogram`` counts (8 bins over [-32, 32]).
- ``fft``: ``np.fft.fft2`` of ``luma``, ``np.bincount`` ring means of the log amplitude
  and the energy fractions beyond 0.25, 0.5, 0.75 of the Nyquist radius.
- ``npr``: the 2 x 2 nearest-neighbour residual and ``scipy.stats`` moments: our vector.
- ``color``: ``skimage.color`` rgb2hsv / rgb2ycbcr / rgb2lab and ``scipy.stats``
  moments, ``np.diff`` gradient statistics: our vector.
- ``prnu``: the Mihcak local-Wiener wavelet denoiser of ``luma``: ``pywt.wavedec2`` (db4,
  4 levels, periodization), ``scipy.ndimage.uniform_filter`` local variances over 3-9 px
  windows per band, ``pywt.waverec2`` of the noise parts, then ``scipy.stats`` moments,
  ``np.corrcoef`` lag-1 correlations and band energies: our vector.
- ``keypoints``: the same OpenCV SIFT / ORB / AKAZE ``detectAndCompute`` on ``gray``, then
  per area (whole crop, and the eyes / nose / mouth boxes of
  ``extract.keypoints.region_boxes``) the count, mean response and size, and the mean and
  std of the descriptor values (``np.unpackbits`` for the binary ones): our vector.
- ``symmetry``: ``np.fliplr`` + ``scipy.ndimage.shift`` (linear) to mirror ``luma`` and its
  ``cv2.Sobel`` magnitude about the nose-bridge midline, the ``cv2.convexHull`` /
  ``cv2.fillConvexPoly`` landmark hull, a numpy 3 x 3 LBP (skimage's circular LBP samples
  the diagonals by interpolation, not the square neighbourhood) with ``np.bincount``
  histograms, and the landmark mirror distances: our vector.
- ``head_pose``: three ``cv2.solvePnP`` (iterative) fits per image, all 68 points, the
  whole face, the central face, each from the previous pose
  (``extract.geometry.solve_head_pose``, whose frontal start pose is part of the method),
  then ``cv2.Rodrigues`` and the Euler angles: our vector. Our extractor makes the very
  same OpenCV calls one image at a time, hence the "TOTAL w/o keypoints, head_pose" row.
- ``eyes``: eye aspect ratios, then per eye the shared per-image helpers of
  ``extract.eyes`` (``eye_patch``: ``cv2.warpAffine`` + ``cv2.fillPoly``;
  ``corneal_highlight``: the cornea disk, ``cv2.erode`` + ``cv2.morphologyEx`` top-hat)
  and the mask statistics: our vector. Ours also works one eye patch at a time, so the
  two sides differ only in how the luma and the eye aspect ratios are computed.
- ``warping``: the landmark hull, ``cv2.erode`` / ``cv2.dilate`` with discs,
  ``cv2.Laplacian`` (ksize 1), ``cv2.GaussianBlur`` (sigma 1 and 2, scipy's 4-sigma
  kernel) and masked means / variances: our vector.
- ``blending``: the landmark hull, ``cv2.erode`` / ``cv2.dilate`` with discs, ``cv2.Sobel``
  magnitude, ``cv2.cvtColor`` float RGB2LAB (ours uses OpenCV's Lab here, not
  ``skimage.color.rgb2lab``, which differs by up to ~0.4) and masked means: our vector.

``tests/extract/test_bench.py`` checks each reference against our vector.
"""
from __future__ import annotations

import os
import sys
import time

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


FEATURES = ("lbp", "hog", "glcm", "dct", "fft", "npr", "color", "prnu", "keypoints",
            "symmetry", "head_pose", "eyes", "warping", "blending")


def _single_threaded_or_reexec(argv):
    """Thread limits must be set before numpy loads; ``python -m extract.bench`` imports
    the ``extract`` package (and numpy) first, so re-run once with them set."""
    if all(os.environ.get(v) == "1" for v in _THREAD_VARS):
        return
    env = dict(os.environ, **{v: "1" for v in _THREAD_VARS})
    os.execve(sys.executable, [sys.executable, "-m", "extract.bench", *argv], env)


def parse_args(argv):
    from base.cli import CLIParser
    parser = CLIParser(
        prog="python -m extract.bench",
        description="Time the batched handcrafted extractors against naive per-image code.")
    parser.add_argument("--n", type=int, default=32, help="number of face crops (default 32)")
    parser.add_argument("--size", type=int, default=256, help="crop side in pixels (default 256)")
    parser.add_argument("--images", default=None,
                        help="folder of already aligned face crops to use (centre-cropped "
                             "square and resized); default: tests/face_fixtures' real faces, "
                             "else crops of skimage's astronaut")
    parser.add_argument("--features", default=None,
                        help="comma-separated subset of: " + ",".join(FEATURES))
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs per side and feature; the best counts (default 3)")
    parser.add_argument("--json", default=None, help="also write the table to this JSON file")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be >= 1")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.size < 64:
        parser.error("--size must be >= 64 (the HOG blocks and PRNU levels need it)")
    if args.images and not os.path.isdir(args.images):
        parser.error(f"--images: {args.images} is not a folder")
    if args.features:
        bad = [f for f in args.features.split(",") if f not in FEATURES]
        if bad:
            parser.error(f"--features: unknown {','.join(bad)}; accepted {','.join(FEATURES)}")
    return args


# ------------------------------------------------------------------------------------- inputs

def _square_resize(image, size):
    import cv2
    h, w = image.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    return cv2.resize(image[y0:y0 + side, x0:x0 + side], (size, size),
                      interpolation=cv2.INTER_AREA)


def _read_rgb(path: str):
    """An image file as H x W x 3 uint8 RGB, as ``pipelines.frames.read_image`` decodes it
    (here so that ``extract`` imports nothing above it); an undecodable file ends the run."""
    import cv2
    import numpy as np
    with open(path, "rb") as f:
        image = cv2.imdecode(np.frombuffer(f.read(), dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"--images: {path} is not a decodable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_batch(n: int, size: int, folder: str | None):
    """(FaceBatch, description) of ``n`` crops of ``size`` px."""
    import numpy as np

    from extract.registry import FaceBatch
    if folder:
        paths = sorted(p for p in os.listdir(folder)
                       if p.lower().endswith((".jpg", ".jpeg", ".png", ".bmp", ".webp")))
        if not paths:
            raise SystemExit(f"--images: no images in {folder}")
        crops = [_square_resize(_read_rgb(os.path.join(folder, p)), size)
                 for p in paths[:n]]
        crops = [crops[i % len(crops)] for i in range(n)]
        return FaceBatch(np.stack(crops)), f"{len(paths[:n])} images from {folder}"
    try:
        from tests.face_fixtures import load_aligned_faces
        batch = load_aligned_faces(n, size)
        return batch, "real aligned faces (tests/face_fixtures)"
    except Exception as exc:  # no dlib models or no tests package: fall back
        from skimage import data
        image = data.astronaut()
        crops = []
        for i in range(n):
            side = 260 + (i * 37) % 240
            x0, y0 = (i * 23) % (512 - side + 1), (i * 11) % (512 - side + 1)
            crop = _square_resize(image[y0:y0 + side, x0:x0 + side], size)
            crops.append(crop[:, ::-1] if i % 2 else crop)
        return FaceBatch(np.ascontiguousarray(np.stack(crops))), \
            f"astronaut crops (face fixtures unavailable: {exc.__class__.__name__})"


# ------------------------------------------------------------------------- naive references

def _naive_functions():
    """feature -> function(rgb uint8 H x W x 3, landmarks 68 x 2) for one image."""
    import cv2
    import numpy as np
    import pywt
    import scipy.fft
    import scipy.stats
    from scipy import ndimage
    from skimage import color as skcolor
    from skimage.feature import graycomatrix, graycoprops, hog, local_binary_pattern

    from extract.eyes import EYE_INDEX, corneal_highlight, eye_patch
    from extract.keypoints import REGIONS, region_boxes
    from extract.geometry import (IBUG68_MIRROR, YANG_CENTRAL_FACE, YANG_WHOLE_FACE,
                                  solve_head_pose)

    bt601 = np.array([0.299, 0.587, 0.114], np.float32)
    nan = float("nan")

    def gray_of(rgb):
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)

    def luma_of(rgb):
        """float32 BT.601 luma, the same per-pixel product as ``FaceBatch.gray``."""
        return rgb.astype(np.float32) @ bt601

    def lbp(rgb, _):
        gray = gray_of(rgb)
        out = []
        for p, r in ((8, 1), (16, 2), (24, 3)):
            codes = local_binary_pattern(gray, p, r, method="uniform").astype(int)
            out.append(np.bincount(codes.ravel(), minlength=p + 2) / codes.size)
            if p == 8:
                h, w = codes.shape
                for gy in range(4):
                    for gx in range(4):
                        cell = codes[gy * h // 4:(gy + 1) * h // 4, gx * w // 4:(gx + 1) * w // 4]
                        out.append(np.bincount(cell.ravel(), minlength=10) / cell.size)
        return np.concatenate(out)

    def hog_(rgb, _):
        return hog(gray_of(rgb).astype(float), orientations=9, pixels_per_cell=(16, 16),
                   cells_per_block=(2, 2), block_norm="L2-Hys")

    def glcm(rgb, _):
        q = ((gray_of(rgb).astype(np.int32) * 32) >> 8).astype(np.uint8)
        P = graycomatrix(q, (1, 2, 4), (0, np.pi / 4, np.pi / 2, 3 * np.pi / 4), levels=32,
                         symmetric=True, normed=True)
        props = [graycoprops(P, p) for p in ("contrast", "dissimilarity", "homogeneity",
                                             "energy", "correlation", "ASM", "entropy")]
        return np.concatenate([p.ravel() for p in props])

    def dct(rgb, _):
        gray = luma_of(rgb).astype(np.float64)
        full = np.log1p(np.abs(scipy.fft.dctn(gray, norm="ortho")))
        h, w = gray.shape
        tiles = gray[:h // 8 * 8, :w // 8 * 8].reshape(h // 8, 8, w // 8, 8)
        ac = scipy.fft.dctn(tiles, axes=(1, 3), norm="ortho").transpose(0, 2, 1, 3)
        ac = ac.reshape(-1, 64)[:, 1:]
        snapped = np.where(np.abs(ac) < 1e-9, 0.0, ac)   # rounding noise around 0 is 0
        hists = [np.histogram(np.clip(snapped[:, f], -32, 31.999), bins=8, range=(-32, 32))[0]
                 for f in range(63)]
        return full, np.abs(ac).mean(0), ac.std(0), hists

    def fft(rgb, _):
        gray = luma_of(rgb).astype(np.float64)
        amp = np.abs(np.fft.fftshift(np.fft.fft2(gray)))
        h, w = gray.shape
        y, x = np.indices((h, w))
        radius = np.hypot(y - h // 2, x - w // 2)
        r = radius.astype(int)
        rings = np.bincount(r.ravel(), np.log1p(amp).ravel()) / np.bincount(r.ravel())
        energy = amp ** 2
        ratios = [energy[radius > f * min(h, w) / 2].sum() / energy[radius > 0].sum()
                  for f in (0.25, 0.5, 0.75)]
        return rings[:min(h, w) // 2], ratios

    def npr(rgb, _):
        x = rgb.astype(np.float32) / 255
        res = x - np.repeat(np.repeat(x[::2, ::2], 2, 0), 2, 1)[:x.shape[0], :x.shape[1]]
        keep = np.ones(res.shape[:2], bool)
        keep[::2, ::2] = False
        out = []
        for c in range(3):
            v = res[..., c][keep]
            out += [np.abs(v).mean(), v.std(), scipy.stats.skew(v), scipy.stats.kurtosis(v)]
        return out

    def color(rgb, _):
        out = []
        for space in (rgb / 255.0, skcolor.rgb2hsv(rgb), skcolor.rgb2ycbcr(rgb),
                      skcolor.rgb2lab(rgb)):
            for c in range(3):
                v = space[..., c].ravel()
                out += [v.mean(), v.std(), scipy.stats.skew(v), scipy.stats.kurtosis(v)]
        x = rgb / 255.0
        for c in range(3):
            for d in (np.diff(x[..., c], axis=1), np.diff(x[..., c], axis=0)):
                out += [np.abs(d).mean(), d.std()]
        return out

    def prnu(rgb, _):
        gray = luma_of(rgb).astype(np.float64)
        coeffs = pywt.wavedec2(gray, "db4", mode="periodization", level=4)
        s2 = 3.0 ** 2
        noise, energy = [np.zeros_like(coeffs[0])], []
        for detail in coeffs[1:]:                       # coarsest level first
            bands = []
            for c in detail:                            # H, V, D
                local = np.min([ndimage.uniform_filter(c * c, size=s, mode="reflect")
                                for s in (3, 5, 7, 9)], axis=0)
                bands.append(c * (s2 / (np.maximum(local - s2, 0) + s2)))
            noise.append(tuple(bands))
            energy.insert(0, [np.mean(b * b) for b in bands])   # finest level first
        residual = pywt.waverec2(noise, "db4", mode="periodization")
        return [residual.std(), scipy.stats.kurtosis(residual.ravel()),
                np.corrcoef(residual[:, :-1].ravel(), residual[:, 1:].ravel())[0, 1],
                np.corrcoef(residual[:-1].ravel(), residual[1:].ravel())[0, 1],
                *np.ravel(energy)]

    detectors = {}

    def keypoints(rgb, landmarks):
        if not detectors:
            detectors.update(sift=cv2.SIFT_create(), orb=cv2.ORB_create(),
                             akaze=cv2.AKAZE_create())
        gray = gray_of(rgb)
        boxes = region_boxes(np.asarray(landmarks, np.float64), 0.15, gray.shape)
        out = []
        for name, detector in detectors.items():
            kps, desc = detector.detectAndCompute(gray, None)
            pts = np.array([k.pt for k in kps]).reshape(-1, 2)
            response = np.array([k.response for k in kps])
            size = np.array([k.size for k in kps])
            if desc is None:                                # no keypoints at all
                values = np.zeros((0, 1))
            else:
                values = (desc.astype(np.float64) if name == "sift"
                          else np.unpackbits(desc, axis=1).astype(np.float64))
            areas = [np.ones(len(kps), bool)]
            for region in REGIONS:
                box = boxes[region]
                areas.append(None if box is None else
                             (pts[:, 0] >= box[0]) & (pts[:, 0] < box[2])
                             & (pts[:, 1] >= box[1]) & (pts[:, 1] < box[3]))
            for inside in areas:
                if inside is None:
                    out += [nan] * 5
                elif not inside.any():
                    out += [0.0] * 5
                else:
                    out += [inside.sum(), response[inside].mean(), size[inside].mean(),
                            values[inside].mean(), values[inside].std()]
        return out

    # ------------------------------------------------- landmark-based: geometry, eyes, artifacts

    def hull_of(lm, shape):
        """uint8 H x W mask of the convex hull of the (rounded) landmarks."""
        mask = np.zeros(shape, np.uint8)
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(lm).astype(np.int32)), 1)
        return mask

    def morph(mask, radius, dilate):
        """Disc dilation / erosion; the image border counts as background, as ours."""
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        return (cv2.dilate if dilate else cv2.erode)(mask, disc, borderValue=0).astype(bool)

    def sobel_magnitude(gray):
        gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
        gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
        return cv2.magnitude(gx, gy)

    def log_ratio(a, b, eps=1e-6):
        return np.log((a + eps) / (b + eps))

    def lbp3x3(gray):
        """8-neighbour LBP, ``neighbour >= centre``, edges replicated, bit k clockwise from
        the top-left neighbour (skimage has no square-neighbourhood LBP)."""
        pad = np.pad(gray, 1, mode="edge")
        h, w = gray.shape
        codes = np.zeros((h, w), np.uint8)
        for bit, (dy, dx) in enumerate(((0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1),
                                        (2, 0), (1, 0))):
            codes |= (pad[dy:dy + h, dx:dx + w] >= gray).astype(np.uint8) << bit
        return codes

    def symmetry(rgb, landmarks):
        lm = np.asarray(landmarks, np.float64)
        if not np.isfinite(lm).all():
            return [nan] * 4
        h, w = rgb.shape[:2]
        midline = lm[27:31, 0].mean()

        def mirror(image):  # image[y, 2 m - x], linear interpolation, edges clamped
            return ndimage.shift(np.fliplr(image), (0, 2 * midline - (w - 1)), order=1,
                                 mode="nearest")

        gray = luma_of(rgb)
        mirrored = mirror(gray)
        source = 2 * midline - np.arange(w)
        region = hull_of(lm, (h, w)).astype(bool) & ((source >= 0) & (source <= w - 1))[None]
        pixel = np.abs(gray - mirrored)[region].mean(dtype=np.float64)
        grad = sobel_magnitude(gray)
        gradient = np.abs(grad - mirror(grad))[region].mean(dtype=np.float64)
        hist = np.bincount(lbp3x3(gray)[region], minlength=256) / region.sum()
        hist_m = np.bincount(lbp3x3(mirrored)[region], minlength=256) / region.sum()
        lateral = np.flatnonzero(IBUG68_MIRROR != np.arange(68))
        reflected = np.column_stack([2 * midline - lm[:, 0], lm[:, 1]])
        gaps = np.linalg.norm(lm[lateral] - reflected[IBUG68_MIRROR[lateral]], axis=1)
        interocular = np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))
        out = [pixel, gradient, 0.5 * np.abs(hist - hist_m).sum(), gaps.mean() / interocular]
        return out if np.isfinite(out).all() else [nan] * 4

    def head_pose(rgb, landmarks):
        pts = np.asarray(landmarks, np.float64)
        if not np.isfinite(pts).all() or np.ptp(pts, axis=0).min() < 2:   # min_span
            return [nan] * 7
        h, w = rgb.shape[:2]
        camera = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], np.float64)
        # cv2.solvePnP (iterative) from the same start pose as ours: the plain call without
        # an extrinsic guess lands on other poses (some behind the camera) for some faces
        full = solve_head_pose(pts, np.arange(68), camera)
        whole = full and solve_head_pose(pts, YANG_WHOLE_FACE, camera, full)
        central = whole and solve_head_pose(pts, YANG_CENTRAL_FACE, camera, whole)
        if not central:
            return [nan] * 7
        r = cv2.Rodrigues(full[0])[0]
        angles = np.degrees([np.arctan2(r[2, 1], r[2, 2]), np.arcsin(np.clip(-r[2, 0], -1, 1)),
                             np.arctan2(r[1, 0], r[0, 0])])
        relative = cv2.Rodrigues(cv2.Rodrigues(whole[0])[0] @ cv2.Rodrigues(central[0])[0].T)[0]
        return [*angles, *(whole[0] - central[0]), np.degrees(np.linalg.norm(relative))]

    eye_width, eye_height = 64, 32                     # CornealHighlightExtractor defaults

    def eyes(rgb, landmarks):
        lm = np.asarray(landmarks, np.float64)
        contours = [lm[EYE_INDEX[0]], lm[EYE_INDEX[1]]]
        if not np.isfinite(contours).all():
            return [nan] * 6
        for e in contours:   # eye aspect ratio: closed eyes are invalid
            d = lambda a, b: np.linalg.norm(e[a] - e[b])  # noqa: E731
            if not (d(1, 5) + d(2, 4)) / (2 * d(0, 3)) >= 0.15:   # NaN too, as ours
                return [nan] * 6
        gray = luma_of(rgb)
        found = [eye_patch(gray, e, eye_width, eye_height) for e in contours]
        if any(f is None for f in found):
            return [nan] * 6
        masks = [corneal_highlight(patch, region, 0.2, 0.25, 10.0) for patch, region in found]
        areas = np.array([m.sum() for m in masks], np.float64)
        if (areas == 0).any():
            return [nan] * 6
        intensity = [found[e][0][masks[e]].mean() for e in range(2)]
        centroid = [np.nonzero(m)[::-1] for m in masks]             # (xs, ys)
        centroid = [np.array([xs.mean() / eye_width, ys.mean() / eye_height])
                    for xs, ys in centroid]
        dx, dy = centroid[1] - centroid[0]
        return [(masks[0] & masks[1]).sum() / (masks[0] | masks[1]).sum(),
                abs(intensity[0] - intensity[1]) / 255, dx, dy,
                np.hypot(dx, dy * eye_height / eye_width), areas.min() / areas.max()]

    def warping(rgb, landmarks, margin=4, band=16, sigmas=(1.0, 2.0)):
        lm = np.asarray(landmarks, np.float64)
        if not np.isfinite(lm).all():
            return [nan] * (3 + len(sigmas))
        hull = hull_of(lm, rgb.shape[:2])
        inner = morph(hull, margin, False)
        context = morph(hull, margin + band, True) & ~morph(hull, margin, True)
        gray = luma_of(rgb)
        lap = cv2.Laplacian(gray, cv2.CV_32F, ksize=1, borderType=cv2.BORDER_REPLICATE)
        var_in = np.var(lap[inner], dtype=np.float64)
        var_ctx = np.var(lap[context], dtype=np.float64)
        out = [var_in, var_ctx, log_ratio(var_in, var_ctx)]
        for sigma in sigmas:
            k = 2 * int(4.0 * sigma + 0.5) + 1       # scipy's gaussian_filter truncate=4
            energy = (gray - cv2.GaussianBlur(gray, (k, k), sigma,
                                              borderType=cv2.BORDER_REPLICATE)) ** 2
            out.append(log_ratio(energy[inner].mean(dtype=np.float64),
                                 energy[context].mean(dtype=np.float64)))
        return out if np.isfinite(out).all() else [nan] * len(out)

    def blending(rgb, landmarks, band=6, ring=6):
        lm = np.asarray(landmarks, np.float64)
        if not np.isfinite(lm).all():
            return [nan] * 7
        hull = hull_of(lm, rgb.shape[:2])
        eroded, dilated = morph(hull, band, False), morph(hull, band, True)
        boundary = dilated & ~eroded
        outside = morph(hull, 2 * band, True) & ~dilated
        inner_ring = hull.astype(bool) & ~morph(hull, ring, False)
        outer_ring = morph(hull, ring, True) & ~hull.astype(bool)
        grad = sobel_magnitude(luma_of(rgb))
        g_band, g_in, g_out = (grad[m].mean(dtype=np.float64)
                               for m in (boundary, eroded, outside))
        lab = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)  # as ours
        diff = lab[inner_ring].mean(0, dtype=np.float64) - lab[outer_ring].mean(
            0, dtype=np.float64)
        out = [g_band, g_in, g_out, log_ratio(g_band, (g_in + g_out) / 2), diff[0],
               np.hypot(diff[1], diff[2]), np.linalg.norm(diff)]
        return out if np.isfinite(out).all() else [nan] * 7

    return {"lbp": lbp, "hog": hog_, "glcm": glcm, "dct": dct, "fft": fft, "npr": npr,
            "color": color, "prnu": prnu, "keypoints": keypoints, "symmetry": symmetry,
            "head_pose": head_pose, "eyes": eyes, "warping": warping, "blending": blending}


def _ours():
    """feature -> our registered extractor with its default parameters."""
    from extract.registry import create_extractor
    return {name: create_extractor(name) for name in FEATURES}


# ---------------------------------------------------------------------------------- running

def _cpu_seconds(function, repeat: int) -> float:
    """Best of ``repeat`` runs, in process CPU seconds: with one thread that is the wall
    time of an idle machine, and it ignores time lost to other processes on a shared one."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        function()
        best = min(best, time.process_time() - start)
    return best


def run(batch, features, repeat: int = 3) -> list[dict]:
    """Time each feature on both sides; rows of feature, naive_ms, ours_ms, ratio."""
    import warnings

    naive, ours = _naive_functions(), _ours()
    n = len(batch)
    rows = []
    for name in features:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # warm up both sides (imports, OpenCV and FFT plans) on one image
            naive[name](batch.images[0], batch.landmarks[0])
            ours[name].extract(batch.subset(slice(0, 1)))
            naive_s = _cpu_seconds(lambda: [naive[name](batch.images[i], batch.landmarks[i])
                                            for i in range(n)], repeat)
            ours_s = _cpu_seconds(lambda: ours[name].extract(batch), repeat)
        rows.append({"feature": name, "naive_ms": 1e3 * naive_s / n, "ours_ms": 1e3 * ours_s / n,
                     "ratio": naive_s / ours_s})
        print(f"  {name:<10} naive {rows[-1]['naive_ms']:8.2f}  ours {rows[-1]['ours_ms']:7.2f}"
              f"  x{rows[-1]['ratio']:.1f}", file=sys.stderr, flush=True)
    return rows


def _total(rows, label, keep=lambda r: True) -> dict:
    naive = sum(r["naive_ms"] for r in rows if keep(r))
    ours = sum(r["ours_ms"] for r in rows if keep(r))
    return {"feature": label, "naive_ms": naive, "ours_ms": ours,
            "ratio": naive / ours if ours else float("nan")}


def format_table(rows) -> str:
    width = max([22] + [len(r["feature"]) for r in rows])
    rule = "-" * (width + 35)
    lines = [f"{'feature':<{width}} {'naive ms/img':>12} {'ours ms/img':>12} {'speed-up':>8}",
             rule]
    for r in rows:
        if r["feature"].startswith("TOTAL") and not lines[-1].startswith("-"):
            lines.append(rule)
        lines.append(f"{r['feature']:<{width}} {r['naive_ms']:12.2f} {r['ours_ms']:12.2f} "
                     f"{r['ratio']:7.1f}x")
    return "\n".join(lines)


def main(argv=None, reexec: bool = False) -> int:
    """Run the benchmark; ``reexec`` (the command line) restarts the interpreter once with
    the thread limits set when numpy was already loaded without them."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if reexec:
        _single_threaded_or_reexec(argv)
    import json

    import cv2
    cv2.setNumThreads(1)
    features = args.features.split(",") if args.features else list(FEATURES)
    batch, source = load_batch(args.n, args.size, args.images)
    print(f"{len(batch)} crops of {args.size} px: {source}; 1 thread; best of {args.repeat} "
          "runs in CPU time", file=sys.stderr)
    rows = run(batch, features, args.repeat)
    per_feature = list(rows)
    rows.append(_total(per_feature, "TOTAL"))
    # keypoints and head_pose run the same OpenCV calls (detectAndCompute, solvePnP) one
    # image at a time on both sides: totals without them show what batching changes
    for label, left_out in (("TOTAL w/o keypoints", {"keypoints"}),
                            ("TOTAL w/o keypoints, head_pose", {"keypoints", "head_pose"})):
        if left_out <= set(features) and len(features) > len(left_out):
            rows.append(_total(per_feature, label, lambda r: r["feature"] not in left_out))
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"n": len(batch), "size": args.size, "source": source, "threads": 1,
                       "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(reexec=True))
