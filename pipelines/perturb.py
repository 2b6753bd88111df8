"""Robustness perturbations of image batches: JPEG, blur, noise, resize, gamma.

``parse_perturbations("jpeg:50,blur:1.5")`` turns a flag value into ``[("jpeg", 50.0),
("blur", 1.5)]`` and :func:`apply_perturbation` applies one of them to an N x H x W x 3
``uint8`` batch, returning a batch of the same shape and dtype. A perturbation at its
identity value (``resize:1``, ``gamma:1``, ``blur:0``, ``noise:0``) returns an unchanged
copy.

=========  =====================================  ===========================
name       value                                  accepted values
=========  =====================================  ===========================
``jpeg``   JPEG quality (``cv2.imencode``)        integer 1-100
``blur``   Gaussian blur sigma, pixels            >= 0
``noise``  Gaussian noise std, grey levels        >= 0
``resize`` scale factor, down then back up         0 < f <= 1
``gamma``  ``out = 255 * (in / 255) ** gamma``    > 0
=========  =====================================  ===========================

Example
-------
>>> import numpy as np
>>> images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
>>> [(n, v) for n, v in parse_perturbations("jpeg:50,gamma:1.2")]
[('jpeg', 50.0), ('gamma', 1.2)]
>>> apply_perturbation(images, "resize", 1.0, seed=0).tobytes() == images.tobytes()
True
"""
from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["PERTURBATIONS", "SEPARATOR", "parse_perturbations", "format_perturbation",
           "perturbed_name", "apply_perturbation", "psnr"]

#: Joins a feature and a perturbation spec in store names: ``lbp@jpeg:50``.
SEPARATOR = "@"

#: Perturbation name -> (description of accepted values, validity test).
PERTURBATIONS = {
    "jpeg": ("an integer quality 1-100", lambda v: v == int(v) and 1 <= v <= 100),
    "blur": ("a sigma >= 0 pixels", lambda v: v >= 0),
    "noise": ("a std >= 0 grey levels", lambda v: v >= 0),
    "resize": ("a factor in (0, 1]", lambda v: 0 < v <= 1),
    "gamma": ("a gamma > 0", lambda v: v > 0),
}


def _check_value(name: str, value) -> float:
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; expected one of "
                         f"{', '.join(PERTURBATIONS)}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"perturbation {name}: value {value!r} is not a number; expected "
                         f"{PERTURBATIONS[name][0]}") from None
    if not math.isfinite(value) or not PERTURBATIONS[name][1](value):
        raise ValueError(f"perturbation {name}: bad value {value:g}; expected "
                         f"{PERTURBATIONS[name][0]}")
    return value


def parse_perturbations(spec: str) -> list[tuple[str, float]]:
    """Parse ``"name:value,name:value"`` into a list of ``(name, value)``.

    Raises ``ValueError`` naming the accepted names and values for an unknown name, a
    missing or non-numeric value, or a value out of range. An empty string gives ``[]``.
    """
    out = []
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition(":")
        name = name.strip().lower()
        if not sep or not value.strip():
            raise ValueError(f"perturbation {item!r} has no value; write name:value with name "
                             f"one of {', '.join(PERTURBATIONS)} (e.g. jpeg:50)")
        out.append((name, _check_value(name, value.strip())))
    return out


def format_perturbation(name: str, value) -> str:
    """``("jpeg", 50.0)`` -> ``"jpeg:50"``: the spec string used in store feature names.

    >>> format_perturbation("blur", 1.5)
    'blur:1.5'
    """
    return f"{name}:{float(value):g}"


def perturbed_name(feature: str, spec: str) -> str:
    """The store name of ``feature`` computed on crops perturbed by ``spec``.

    >>> perturbed_name("lbp", format_perturbation("jpeg", 50))
    'lbp@jpeg:50'
    """
    return f"{feature}{SEPARATOR}{spec}"


def _check_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be an N x H x W x 3 uint8 array, got {images.dtype} "
                         f"{images.shape}")
    return images


def apply_perturbation(images, name: str, value, seed=0) -> np.ndarray:
    """Apply perturbation ``name`` with ``value`` to a batch of RGB images.

    Parameters
    ----------
    images : ndarray, N x H x W x 3, uint8
    name : str
        A key of :data:`PERTURBATIONS`.
    value : float
        Its strength (see the module table).
    seed : int or numpy.random.Generator
        Randomness of ``noise`` (the other perturbations are deterministic).

    Returns
    -------
    ndarray, N x H x W x 3, uint8
    """
    images = _check_images(images)
    value = _check_value(name, value)
    n, h, w, _ = images.shape
    if n == 0:
        return images.copy()
    if name == "jpeg":
        out = np.empty_like(images)
        params = [cv2.IMWRITE_JPEG_QUALITY, int(value)]
        for i, image in enumerate(images):
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), params)
            if not ok:
                raise RuntimeError("cv2.imencode failed to write a JPEG")
            out[i] = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        return out
    if name == "blur":
        if value == 0:
            return images.copy()
        # One call over the batch: images side by side as channels (H x W x 3N).
        stacked = np.ascontiguousarray(images.transpose(1, 2, 0, 3).reshape(h, w, n * 3))
        out = np.empty_like(stacked)
        # OpenCV filters at most 512 channels per call.
        for c in range(0, n * 3, 510):
            part = cv2.GaussianBlur(np.ascontiguousarray(stacked[..., c:c + 510]), (0, 0), value,
                                    borderType=cv2.BORDER_REFLECT_101)
            out[..., c:c + 510] = part.reshape(h, w, -1)
        return np.ascontiguousarray(out.reshape(h, w, n, 3).transpose(2, 0, 1, 3))
    if name == "noise":
        if value == 0:
            return images.copy()
        noise = np.random.default_rng(seed).normal(0.0, value, images.shape)
        return np.clip(np.rint(images + noise), 0, 255).astype(np.uint8)
    if name == "resize":
        if value == 1:
            return images.copy()
        sw, sh = max(1, round(w * value)), max(1, round(h * value))
        out = np.empty_like(images)
        for i, image in enumerate(images):
            small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
            out[i] = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        return out
    # gamma: a 256-entry lookup table applied to the whole batch at once.
    if value == 1:
        return images.copy()
    lut = np.clip(np.rint(255.0 * (np.arange(256) / 255.0) ** value), 0, 255).astype(np.uint8)
    return lut[images]


def psnr(a, b, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio of two same-shape arrays, in dB (``inf`` when equal)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr needs arrays of one shape, got {a.shape} and {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)
