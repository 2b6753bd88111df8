"""Face detection, 68-point landmarks and similarity alignment of face crops.

Every feature extractor sees the same aligned crop: a similarity transform (rotation,
uniform scale, translation) maps five landmarks (eye centres, nose tip, mouth corners) onto
the ArcFace reference points, shrunk so that ``margin`` of the face width is kept around
them, and the crop is ``size`` x ``size``. Masks go through the identical transform
(:func:`warp_mask`) so that they stay pixel-aligned with the crop.

Landmarks come from dlib's ``shape_predictor_68_face_landmarks.dat`` shipped by the PyPI
package ``face_recognition_models==0.3.0``. That model was trained on the iBUG 300-W data
set, whose license allows non-commercial use only.

How to add a detector
---------------------
Write a class with ``detect(image) -> K x 4 float array`` of ``(x0, y0, x1, y1)`` boxes in
the input's pixel coordinates, largest first (``image`` is H x W x 3 RGB or H x W grey
uint8), decorate it with ``@register_detector("name")`` and select it with
``FaceAligner(detector="name")``. Its constructor receives ``max_side`` as a keyword. A
detector that also has ``working_image`` and ``detect_working(small, upsample)`` (as
``dlib-hog``) gets the cascade's ``upsample`` and ``large`` stages and grid-snapped tracking.

The detection cascade
---------------------
:class:`FaceAligner` stops at the first of these searches that finds a face: the region
around the previous frame's face (videos), the whole frame at the fast working size
(``dlib-hog``: 640 px long side, upsample 0), then, with ``cascade=True`` (default), the
same image at upsample 1, a larger working size chosen from the face, and an optional slower
``fallback`` detector (``dlib-cnn``). Frames with a face the fast path finds cost what they
cost without the cascade; only frames it misses pay for the later stages.

Example
-------
>>> from skimage import data
>>> face = FaceAligner(size=256).process(data.astronaut())
>>> face.crop.shape, face.landmarks.shape
((256, 256, 3), (68, 2))
"""
from __future__ import annotations

import importlib.util
import os
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Protocol

import cv2
import numpy as np

from base.errors import SampleError

#: ArcFace's 112 x 112 reference points (left eye, right eye, nose tip, left and right mouth
#: corner, in image coordinates) normalised to [0, 1].
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]]) / 112.0


class FaceDetector(Protocol):
    """Finds faces: ``detect(image) -> K x 4 float (x0, y0, x1, y1)``, largest first."""

    def detect(self, image: np.ndarray) -> np.ndarray: ...


DETECTORS: dict[str, Callable[..., FaceDetector]] = {}


def register_detector(name: str):
    """Class decorator: make a detector available as ``create_detector(name)``."""
    def decorator(cls):
        if name in DETECTORS:
            raise ValueError(f"a face detector named {name!r} is already registered")
        DETECTORS[name] = cls
        return cls
    return decorator


def create_detector(name: str, **params) -> FaceDetector:
    """Instantiate the detector registered as ``name`` (see :data:`DETECTORS`)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; expected one of {sorted(DETECTORS)}")
    return DETECTORS[name](**params)


def _as_grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _largest_first(boxes: np.ndarray) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros((0, 4), np.float64)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[np.argsort(-area, kind="stable")]


_HOG = None


def _hog_detector():
    global _HOG
    if _HOG is None:
        import dlib
        _HOG = dlib.get_frontal_face_detector()
    return _HOG


def _dlib_boxes(image: np.ndarray, upsample: int) -> np.ndarray:
    rects = _hog_detector()(np.ascontiguousarray(image), upsample)
    return np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects],
                    np.float64).reshape(-1, 4)


@register_detector("dlib-hog")
class DlibHogDetector:
    """dlib's HOG frontal face detector on a grey copy downscaled to ``max_side``.

    Downscaling a 1280 x 720 frame to 640 x 360 makes detection about 4x faster and still
    finds the faces of FF++ videos (dlib's smallest face at upsample 0 is about 80 px).
    Boxes are returned in the input's full-resolution coordinates.
    """

    def __init__(self, max_side: int = 640, upsample: int = 0):
        if max_side < 64:
            raise ValueError(f"max_side must be >= 64 pixels, got {max_side}")
        self.max_side = int(max_side)
        self.upsample = int(upsample)
        _hog_detector()  # load once here, not inside the first (timed) detection

    def working_image(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """The grey, downscaled image the detector searches, and its scale (<= 1)."""
        grey = _as_grey(image)
        scale = min(1.0, self.max_side / max(grey.shape[:2]))
        if scale < 1.0:
            grey = cv2.resize(grey, (round(grey.shape[1] * scale), round(grey.shape[0] * scale)),
                              interpolation=cv2.INTER_AREA)
        return grey, scale

    def detect_working(self, small: np.ndarray, upsample: int | None = None) -> np.ndarray:
        """Boxes in the pixels of ``small``: an image from :meth:`working_image`, or a crop.

        ``upsample`` overrides the detector's own (each step doubles the image: dlib's
        smallest face, about 80 px at 0, becomes about 40 px at 1, at 3-4x the cost).
        """
        return _largest_first(_dlib_boxes(small, self.upsample if upsample is None else upsample))

    def detect(self, image: np.ndarray) -> np.ndarray:
        small, scale = self.working_image(image)
        return self.detect_working(small) / scale


@register_detector("dlib-hog-full")
class DlibHogFullDetector:
    """The naive reference: dlib HOG on the full-resolution input, upsample 1 (slow)."""

    def __init__(self, max_side: int | None = None, upsample: int = 1):
        self.upsample = int(upsample)
        _hog_detector()

    def detect(self, image: np.ndarray) -> np.ndarray:
        return _largest_first(_dlib_boxes(image, self.upsample))


def dlib_has_cuda() -> bool:
    """Whether dlib was built with CUDA and sees a GPU (``dlib-cnn`` then runs there)."""
    import dlib
    if not getattr(dlib, "DLIB_USE_CUDA", False):
        return False
    try:
        return dlib.cuda.get_num_devices() > 0
    except Exception:  # noqa: BLE001 - no driver: treat as no GPU
        return False


_CNN = None
_CNN_FILE = "mmod_human_face_detector.dat"


@register_detector("dlib-cnn")
class DlibCnnDetector:
    """dlib's CNN face detector (MMOD, ``mmod_human_face_detector.dat``) on an RGB downscale.

    It finds turned and partly hidden faces that HOG misses, from about 70 px at upsample 0
    on the working image of ``max_side`` long side (the astronaut's 95 px face is found at
    384 px, 71 px there, and missed at 320). It runs on CUDA when dlib was built with it; on
    the CPU it costs seconds per frame (2.1 s on a 512 x 512 image here, 2-4.5 s at 960 px),
    so it warns when built there. The model ships in ``face_recognition_models``.
    """

    def __init__(self, max_side: int = 960, upsample: int = 0):
        if max_side < 64:
            raise ValueError(f"max_side must be >= 64 pixels, got {max_side}")
        self.max_side, self.upsample = int(max_side), int(upsample)
        self.device = "cuda" if dlib_has_cuda() else "cpu"
        if self.device == "cpu":
            warnings.warn("dlib-cnn runs on the CPU (this dlib has no CUDA): it costs seconds "
                          "per frame (2-4.5 s at 960 px)", RuntimeWarning, stacklevel=2)
        global _CNN
        if _CNN is None:
            import dlib
            _CNN = dlib.cnn_face_detection_model_v1(model_path(_CNN_FILE))
        self._model = _CNN

    def detect(self, image: np.ndarray) -> np.ndarray:
        scale = min(1.0, self.max_side / max(image.shape[:2]))
        if scale < 1.0:
            image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                               interpolation=cv2.INTER_AREA)
        rects = [d.rect for d in self._model(np.ascontiguousarray(image), self.upsample)]
        boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects],
                         np.float64).reshape(-1, 4)
        return _largest_first(boxes) / scale


# ---------------------------------------------------------------------------- landmarks

_PREDICTOR = None
_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


def model_path(filename: str) -> str:
    """Path of one of dlib's models inside the ``face_recognition_models`` package.

    The package is located without importing it (its ``__init__`` needs ``pkg_resources``,
    which new setuptools no longer ship).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = os.path.join(locations[0], "models", filename) if locations else ""
    if not path or not os.path.isfile(path):
        raise RuntimeError(f"dlib's {filename} was not found: "
                           "pip install face_recognition_models==0.3.0")
    return path


def landmark_model_path() -> str:
    """Path of dlib's 68-point model (see :func:`model_path`)."""
    return model_path(_PREDICTOR_FILE)


def landmark_predictor():
    """The dlib 68-point shape predictor, loaded once per process (about 1 s, 100 MB)."""
    global _PREDICTOR
    if _PREDICTOR is None:
        import dlib
        _PREDICTOR = dlib.shape_predictor(landmark_model_path())
    return _PREDICTOR


def detect_landmarks(image: np.ndarray, box) -> np.ndarray:
    """68 iBUG landmarks (x, y) as a 68 x 2 float32 array for the face in ``box``.

    ``image`` is RGB or grey uint8, ``box`` is ``(x0, y0, x1, y1)`` in its pixels.
    """
    import dlib
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    rect = dlib.rectangle(x0, y0, x1 - 1, y1 - 1)
    shape = landmark_predictor()(np.ascontiguousarray(image), rect)
    return np.array([[p.x, p.y] for p in shape.parts()], np.float32)


# ---------------------------------------------------------------------------- alignment

def five_points(landmarks: np.ndarray) -> np.ndarray:
    """Eye centres (means of 36-41 and 42-47), nose tip (30), mouth corners (48, 54): 5 x 2."""
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must be 68 x 2, got {lm.shape}")
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def alignment_template(size: int = 256, margin: float = 0.3) -> np.ndarray:
    """The five target points (5 x 2, crop pixels) for a ``size`` crop with ``margin``.

    The ArcFace points are shrunk around the crop centre by ``1 / (1 + 2 * margin)``.
    """
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    shrink = 1.0 / (1.0 + 2.0 * margin)
    return (0.5 + (ARCFACE_TEMPLATE - 0.5) * shrink) * size


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama 1991, no reflection) mapping ``src`` onto ``dst``.

    Returns the 2 x 3 float64 matrix ``M`` with ``dst ~ M @ [x, y, 1]``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    flip = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ flip @ vt
    var = (s ** 2).sum() / len(src)
    scale = (sig * np.diag(flip)).sum() / var if var > 0 else 1.0
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int = 256,
               margin: float = 0.3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Warp the face with 68 ``landmarks`` (frame pixels) to a ``size`` x ``size`` crop.

    Returns
    -------
    crop : ndarray size x size x 3 uint8
        Bilinear warp; outside the frame the image is mirrored (a black border would be a
        strong, fake "artifact" for frequency features).
    M : ndarray 2 x 3 float64
        Frame -> crop transform (use it for masks: :func:`warp_mask`).
    landmarks_crop : ndarray 68 x 2 float32
        The landmarks in crop pixels.
    """
    m = similarity_transform(five_points(landmarks), alignment_template(size, margin))
    return warp_crop(rgb, m, size), m, transform_points(landmarks, m)


def warp_crop(rgb: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """Warp an image with the crop transform ``m`` exactly as :func:`align_face` does."""
    return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 2 x 3 affine ``m`` to N x 2 points; float32 result."""
    pts = np.asarray(points, np.float64)
    return (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)


def warp_mask(mask: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """Warp a H x W mask with the crop transform ``m``: size x size uint8 in {0, 1}.

    Nearest-neighbour, so the mask stays binary; outside the frame it is 0.
    """
    mask = (np.asarray(mask) > 0).astype(np.uint8)
    return cv2.warpAffine(mask, np.asarray(m, np.float64), (size, size), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def center_crop_matrix(h: int, w: int, size: int) -> np.ndarray:
    """2 x 3 transform of :func:`resize_or_center_crop` (centre square, then resize).

    Follows ``cv2.resize``'s pixel-centre convention, so ``warp_mask(mask, M, size)`` matches
    ``resize_or_center_crop`` to within one pixel.
    """
    side = min(h, w)
    x0, y0 = (w - side) // 2, (h - side) // 2
    s = size / side
    return np.array([[s, 0.0, 0.5 * s - 0.5 - s * x0], [0.0, s, 0.5 * s - 0.5 - s * y0]])


def resize_or_center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """The ``--align none`` crop: centre square of the image resized to ``size`` (INTER_AREA)."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    x0, y0 = (w - side) // 2, (h - side) // 2
    square = rgb[y0:y0 + side, x0:x0 + side]
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interp)


# ---------------------------------------------------------------------------- aligner

@dataclass
class AlignedFace:
    """One aligned face.

    Attributes
    ----------
    crop : size x size x 3 uint8 RGB
    landmarks : 68 x 2 float32, crop pixels
    box : 4 float64, ``(x0, y0, x1, y1)`` detection box in frame pixels
    M : 2 x 3 float64, frame -> crop transform
    frame_landmarks : 68 x 2 float32, frame pixels
    stage : str, the cascade search that found the face (see :attr:`FaceAligner.STAGES`)
    """

    crop: np.ndarray
    landmarks: np.ndarray
    box: np.ndarray
    M: np.ndarray
    frame_landmarks: np.ndarray
    stage: str = ""


class FaceAligner:
    """Detect the largest face (or every face), find its 68 landmarks and align it.

    Parameters
    ----------
    detector : str
        Registered detector name (``dlib-hog`` default, ``dlib-hog-full``, ``dlib-cnn``).
    size : int
        Crop side in pixels.
    margin : float
        Context kept around the five alignment points, as a fraction of the template width.
    min_face : int
        Faces whose box is shorter than this (frame pixels) raise ``face_too_small``.
    max_side : int
        The detector's working resolution (long side), see :class:`DlibHogDetector`.
    cascade : bool
        When the fast search finds nothing, retry at rising cost (:attr:`STAGES`) and stop at
        the first hit. False keeps the fast path alone.
    fallback : str or None
        A registered detector run on the whole frame as the cascade's last stage
        (``dlib-cnn``: seconds per frame on a CPU); None for none.
    face_fraction : float
        Without a previous face, the larger working size is chosen so that a face of this
        fraction of the frame's short side is :attr:`large_face_px` pixels.

    The cascade, for ``dlib-hog`` (detectors without a working size, such as ``dlib-hog-full``
    and ``dlib-cnn``, run ``track``, ``fast`` on the whole frame, and ``fallback``):

    ``track``
        Only with ``prev_box``: the square around the previous face, expanded
        :attr:`roi_expand` times. If that face is at least :attr:`track_face_px` pixels at
        the working scale, the region is cut from the working image (snapped to the HOG
        grid, so that boxes match the full-frame search); else it is cut from the frame and
        resized so the face is :attr:`roi_face_px` pixels (a 130 px face of a 1080 x 1920
        portrait frame is 43 px at the working scale, below HOG's 80 px window).
    ``fast``
        The whole working image (640 px long side), at the detector's upsample (0).
    ``upsample``
        The same image at upsample 1 (faces down to about 40 px at the working scale).
    ``large``
        The frame at a larger working size, upsample 0: at least twice the fast scale, and
        large enough that the previous face (or ``face_fraction`` of the short side) is
        :attr:`large_face_px` pixels, capped at full resolution. Skipped when that is not
        larger than the fast scale.
    ``fallback``
        ``fallback`` on the whole frame.

    On FF++ 720p, ``track`` finds the face in nearly every frame (about 5 ms instead of 22
    for the whole frame), and the crops agree with full-frame detection to about 1 px.
    :attr:`stage_seconds` and :attr:`stage_calls` count the time and the calls of every
    stage since construction (``pipelines.bench_faces`` reports them).
    """

    #: Cascade stages in the order they run.
    STAGES = ("track", "fast", "upsample", "large", "fallback")
    #: ROI around the previous box, as a multiple of its size; the face side the ROI is scaled
    #: to when the working image would make it smaller than ``track_face_px`` (HOG's 80 px
    #: detection window) or for detectors without a working image.
    roi_expand = 1.8
    roi_face_px = 110
    track_face_px = 80
    #: Face side, in pixels of the ``large`` stage's image, that sets its working size.
    large_face_px = 90

    def __init__(self, detector: str = "dlib-hog", size: int = 256, margin: float = 0.3,
                 min_face: int = 40, max_side: int = 640, cascade: bool = True,
                 fallback: str | None = None, face_fraction: float = 0.1):
        alignment_template(size, margin)  # validates size and margin
        if min_face < 0:
            raise ValueError(f"min_face must be >= 0 pixels, got {min_face}")
        if not 0 < face_fraction <= 1:
            raise ValueError(f"face_fraction must be in (0, 1], got {face_fraction}")
        self.detector_name = detector
        self.detector = create_detector(detector, max_side=max_side)
        self.fallback_name = fallback or ""
        self.fallback = create_detector(fallback) if fallback else None
        self.cascade, self.face_fraction = bool(cascade), float(face_fraction)
        self.size, self.margin, self.min_face = int(size), float(margin), int(min_face)
        self.stage_seconds: Counter = Counter()
        self.stage_calls: Counter = Counter()
        landmark_predictor()  # fail early (missing model) and load once

    def _roi_boxes(self, image: np.ndarray, box, scale: float, detect, grid: int = 1) -> np.ndarray:
        """Detect in the square around ``box`` (frame pixels) expanded :attr:`roi_expand`
        times, cut from ``image`` (the frame resized by ``scale``); frame-pixel boxes."""
        x0, y0, x1, y1 = np.asarray(box, np.float64) * scale
        side = max(x1 - x0, y1 - y0)
        if not side > 0:
            return np.zeros((0, 4))
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, side * self.roi_expand / 2
        h, w = image.shape[:2]
        rx0 = max(0, int(cx - half) // grid * grid)
        ry0 = max(0, int(cy - half) // grid * grid)
        rx1, ry1 = int(min(w, np.ceil(cx + half))), int(min(h, np.ceil(cy + half)))
        if rx1 - rx0 < 16 or ry1 - ry0 < 16:
            return np.zeros((0, 4))
        boxes = detect(np.ascontiguousarray(image[ry0:ry1, rx0:rx1]))
        return (boxes + np.array([rx0, ry0, rx0, ry0], np.float64)) / scale

    def _resized_roi_boxes(self, grey: np.ndarray, prev_box, detect) -> np.ndarray:
        """The ROI around ``prev_box`` cut from the frame and resized so that the face is
        :attr:`roi_face_px` pixels (at most 2x up); frame-pixel boxes."""
        side = max(prev_box[2] - prev_box[0], prev_box[3] - prev_box[1])
        scale = min(2.0, self.roi_face_px / side) if side > 0 else 1.0

        def detect_resized(crop):
            resized = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=(
                cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR))
            return detect(resized) / scale

        return self._roi_boxes(grey, prev_box, 1.0, detect_resized)

    def _large_scale(self, shape, prev_box, fast_scale: float) -> float:
        """Scale of the ``large`` stage: from the previous face, else ``face_fraction``."""
        if prev_box is not None:
            face = min(prev_box[2] - prev_box[0], prev_box[3] - prev_box[1])
        else:
            face = self.face_fraction * min(shape[:2])
        wanted = self.large_face_px / face if face > 0 else 1.0
        return min(1.0, max(2.0 * fast_scale, wanted))

    def _stages(self, rgb: np.ndarray, grey: np.ndarray, prev_box):
        """``(name, search)`` pairs in cascade order; each search returns frame-pixel boxes.

        A generator: the working image is made once, and the images of the later stages
        only when the cascade gets that far.
        """
        det = self.detector
        if not hasattr(det, "working_image"):
            if prev_box is not None:
                yield "track", lambda: self._resized_roi_boxes(grey, prev_box, det.detect)
            yield "fast", lambda: det.detect(rgb if isinstance(det, DlibCnnDetector) else grey)
        else:
            small, scale = det.working_image(grey)
            if prev_box is not None:
                face = min(prev_box[2] - prev_box[0], prev_box[3] - prev_box[1]) * scale
                if face >= self.track_face_px:
                    # Cut the region from the very image the full-frame search uses, with its
                    # origin on a multiple of 48 px (8 px HOG cells at pyramid levels 0 and 1,
                    # which scale by 5/6): its features then match the frame's, so both
                    # searches mostly pick the same pyramid level (dlib's box sizes step by
                    # 6/5). On 77 tracked FF++ frames the box differed by one step from the
                    # full-frame box in 15 cases with this snapping, in 31 without; the
                    # landmarks, and so the crops, agree to about 1 px either way.
                    yield "track", lambda: self._roi_boxes(small, prev_box, scale,
                                                           det.detect_working, grid=48)
                else:
                    yield "track", lambda: self._resized_roi_boxes(grey, prev_box,
                                                                   det.detect_working)
            yield "fast", lambda: det.detect_working(small) / scale
            if self.cascade and det.upsample == 0:
                yield "upsample", lambda: det.detect_working(small, upsample=1) / scale
            large = self._large_scale(grey.shape, prev_box, scale)
            if self.cascade and large > scale * 1.05:
                def search_large():
                    image = grey if large >= 1.0 else cv2.resize(
                        grey, (round(grey.shape[1] * large), round(grey.shape[0] * large)),
                        interpolation=cv2.INTER_AREA)
                    return det.detect_working(image, upsample=0) / large
                yield "large", search_large
        if self.cascade and self.fallback is not None:
            fb = self.fallback
            yield "fallback", lambda: fb.detect(rgb if isinstance(fb, DlibCnnDetector) else grey)

    def detect_faces(self, rgb: np.ndarray, grey: np.ndarray | None = None,
                     prev_box=None) -> tuple[np.ndarray, str]:
        """Run the cascade on ``rgb``: ``(boxes, stage)``, boxes largest first in frame pixels
        from the first stage that finds any, or an empty 0 x 4 array and ``""``."""
        grey = _as_grey(rgb) if grey is None else grey
        for name, search in self._stages(rgb, grey, prev_box):
            start = time.perf_counter()
            boxes = search()
            self.stage_seconds[name] += time.perf_counter() - start
            self.stage_calls[name] += 1
            if len(boxes):
                return boxes, name
        return np.zeros((0, 4)), ""

    def _checked_boxes(self, rgb, prev_box, path, frame_index):
        """``(grey, boxes at least min_face, stage)`` of the cascade; raises SampleError."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
        if min(rgb.shape[:2]) < self.min_face:
            raise SampleError("face_too_small", path, f"the {rgb.shape[1]}x{rgb.shape[0]} image "
                              f"is too small to hold a face of min_face={self.min_face} px",
                              frame_index)
        grey = _as_grey(rgb)
        boxes, stage = self.detect_faces(rgb, grey, prev_box)
        if len(boxes) == 0:
            searched = "fast path" if not self.cascade else "cascade"
            raise SampleError("no_face", path, f"{self.detector_name} {searched} found no face "
                              f"in the {rgb.shape[1]}x{rgb.shape[0]} image", frame_index)
        short = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        if short.max() < self.min_face:
            raise SampleError("face_too_small", path, f"largest face is {short.max():.0f} px, "
                              f"below min_face={self.min_face}", frame_index)
        return grey, boxes[short >= self.min_face], stage

    def _align(self, rgb, grey, box, stage) -> AlignedFace:
        frame_lm = detect_landmarks(grey, box)
        crop, m, lm = align_face(rgb, frame_lm, self.size, self.margin)
        return AlignedFace(crop=crop, landmarks=lm, box=box, M=m, frame_landmarks=frame_lm,
                           stage=stage)

    def process(self, rgb: np.ndarray, prev_box=None, path: str = "",
                frame_index: int = -1) -> AlignedFace:
        """Align the largest face of ``rgb`` (H x W x 3 uint8).

        ``path`` and ``frame_index`` only name the sample in errors. Raises
        ``SampleError("no_face")`` or ``SampleError("face_too_small")``.
        """
        grey, boxes, stage = self._checked_boxes(rgb, prev_box, path, frame_index)
        return self._align(rgb, grey, boxes[0], stage)

    def process_all(self, rgb: np.ndarray, path: str = "", frame_index: int = -1) -> list:
        """Align every face of ``rgb`` at least ``min_face`` pixels: a list of
        :class:`AlignedFace`, largest first.

        The faces are those of the first cascade stage that finds any (no tracking: a face
        index is a rank by size in its frame, not an identity across frames). Raises like
        :meth:`process`.
        """
        grey, boxes, stage = self._checked_boxes(rgb, None, path, frame_index)
        return [self._align(rgb, grey, box, stage) for box in boxes]
