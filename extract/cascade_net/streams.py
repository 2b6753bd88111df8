"""The texture and frequency inputs of the cascade model, computed in torch from its RGB input.

The model sees one tensor, the (augmented, possibly self-blended) RGB crop; its LBP and DCT
streams are derived from that same tensor here, batched and on the model's device, so every
augmentation and every blend reaches every stream. (Stored ``lbp``/``dct`` maps of an
unblended crop paired with a blended RGB crop would let a model learn "RGB disagrees with
LBP", a shortcut that no real deepfake offers.)

The functions reproduce the project's extractors on the same crop:

* :func:`gray_uint8` is OpenCV's ``cvtColor(RGB2GRAY)`` on 8-bit images (its fixed-point
  formula), exactly;
* :func:`lbp_uniform` equals :func:`extract.texture.lbp_uniform` (and so
  ``skimage.feature.local_binary_pattern(..., method="uniform")``): the same sample points,
  the same float64 bilinear interpolation with zeros outside, the same comparisons;
* :func:`log_dct` equals :func:`extract.frequency.log_dct_map` of the float BT.601 luma up
  to float32 rounding (largest difference measured on 256 px face crops: about 1e-4 on
  values of 0-10; the tests assert 2e-3).

Example
-------
>>> import torch
>>> rgb = torch.rand(2, 3, 32, 32)
>>> codes = lbp_uniform(gray_uint8(rgb))
>>> tuple(codes.shape), int(codes.max()) <= 9
((2, 32, 32), True)
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

#: Uniform LBP with P = 8 neighbours at radius 1: codes 0..9, as the ``lbp`` map stores.
LBP_P, LBP_R = 8, 1.0
LBP_CODES = LBP_P + 2

# OpenCV's RGB2GRAY for 8-bit images: (9798 R + 19235 G + 3735 B + 2^14) >> 15 (checked
# against cv2.cvtColor on every pixel of a random 2048 x 2048 image in the tests).
_GRAY_FIXED, _GRAY_SHIFT = (9798, 19235, 3735), 15
_BT601 = (0.299, 0.587, 0.114)


def _to_uint8_levels(rgb: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W in [0, 1] -> integer levels 0..255 (int32), as a uint8 image holds."""
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError(f"expected an N x 3 x H x W RGB tensor, got shape {tuple(rgb.shape)}")
    return torch.round(rgb.float().clamp(0, 1) * 255).to(torch.int32)


def gray_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """N x H x W int32 grey levels of an N x 3 x H x W RGB tensor in [0, 1].

    The RGB values are first rounded to 8-bit levels (what a stored crop holds), then
    converted with OpenCV's fixed-point BT.601 formula, so the result equals
    ``cv2.cvtColor(uint8_image, cv2.COLOR_RGB2GRAY)`` exactly.
    """
    q = _to_uint8_levels(rgb)
    r, g, b = _GRAY_FIXED
    return (q[:, 0] * r + q[:, 1] * g + q[:, 2] * b + (1 << (_GRAY_SHIFT - 1))) >> _GRAY_SHIFT


def gray_float(rgb: torch.Tensor) -> torch.Tensor:
    """N x H x W float32 luma in [0, 255] (BT.601 weights on 8-bit levels), as
    :attr:`extract.registry.FaceBatch.gray`."""
    q = _to_uint8_levels(rgb).float()
    w = torch.tensor(_BT601, dtype=torch.float32, device=rgb.device)
    return torch.einsum("nchw,c->nhw", q, w)


def lbp_uniform(gray: torch.Tensor, P: int = LBP_P, R: float = LBP_R) -> torch.Tensor:
    """Uniform rotation-invariant LBP codes (N x H x W int64, values 0..P+1) of grey images.

    Same algorithm and float64 operations as :func:`extract.texture.lbp_uniform`: sample
    point offsets ``round(-R sin a, 5)``, ``round(R cos a, 5)``; bilinear interpolation with
    zeros outside the image; bit = neighbour >= centre; code = number of ones when the
    pattern has at most two 0/1 transitions (not wrapping around), else P + 1.
    """
    if gray.dim() != 3:
        raise ValueError(f"expected N x H x W grey images, got shape {tuple(gray.shape)}")
    n, h, w = gray.shape
    image = gray.to(torch.float64)
    pad = int(math.ceil(R)) + 1
    padded = F.pad(image, (pad, pad, pad, pad))
    rows = torch.arange(h, dtype=torch.float64, device=gray.device)
    cols = torch.arange(w, dtype=torch.float64, device=gray.device)
    count = torch.zeros((n, h, w), dtype=torch.int64, device=gray.device)
    changes = torch.zeros_like(count)
    previous = None
    for i in range(P):
        angle = 2 * math.pi * i / P
        rp, cp = round(-R * math.sin(angle), 5), round(R * math.cos(angle), 5)
        r0, r1 = math.floor(rp), math.ceil(rp)
        c0, c1 = math.floor(cp), math.ceil(cp)
        if c0 == c1:
            horizontal = padded[:, :, pad + c0:pad + c0 + w]
        else:
            c_abs = cols + cp
            dc = (c_abs - torch.floor(c_abs)).view(1, 1, w)
            horizontal = ((1 - dc) * padded[:, :, pad + c0:pad + c0 + w]
                          + dc * padded[:, :, pad + c1:pad + c1 + w])
        top = horizontal[:, pad + r0:pad + r0 + h]
        if r0 == r1:
            texture = top
        else:
            r_abs = rows + rp
            dr = (r_abs - torch.floor(r_abs)).view(1, h, 1)
            texture = (1 - dr) * top + dr * horizontal[:, pad + r1:pad + r1 + h]
        bit = texture >= image
        count += bit
        if previous is not None:
            changes += bit != previous
        previous = bit
    return torch.where(changes <= 2, count, torch.full_like(count, P + 1))


@functools.lru_cache(maxsize=8)
def _dct_matrix_cpu(size: int) -> torch.Tensor:
    k = torch.arange(size, dtype=torch.float64)[:, None]
    x = torch.arange(size, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * x + 1) * k / (2 * size)) * math.sqrt(2.0 / size)
    d[0] /= math.sqrt(2.0)
    return d


def dct_matrix(size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``D`` (size x size): ``dct(x) = D @ x``."""
    return _dct_matrix_cpu(size).to(device=device, dtype=dtype)


def log_dct(gray: torch.Tensor) -> torch.Tensor:
    """``log(|DCT-II(gray)| + 1)`` of each whole image (orthonormal), N x H x W float32."""
    if gray.dim() != 3:
        raise ValueError(f"expected N x H x W grey images, got shape {tuple(gray.shape)}")
    g = gray.float()
    d_rows = dct_matrix(g.shape[1], g.device)
    d_cols = dct_matrix(g.shape[2], g.device)
    coefs = d_rows @ g @ d_cols.T
    return torch.log1p(coefs.abs())


@torch.no_grad()
def stream_inputs(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The texture and frequency inputs of the model from its RGB input.

    Returns ``(lbp, dct)``: ``lbp`` the one-hot P8R1 uniform codes (N x 10 x H x W, dtype of
    ``rgb``), ``dct`` the log-DCT map standardised per sample (N x 1 x H x W). No gradient
    flows back into ``rgb`` (both are fixed transforms of the input).
    """
    codes = lbp_uniform(gray_uint8(rgb))
    lbp = F.one_hot(codes, LBP_CODES).permute(0, 3, 1, 2).to(rgb.dtype)
    dct = log_dct(gray_float(rgb))[:, None]
    mean = dct.mean((1, 2, 3), keepdim=True)
    std = dct.std((1, 2, 3), keepdim=True).clamp_min(1e-6)
    return lbp, ((dct - mean) / std).to(rgb.dtype)
