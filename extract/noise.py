"""Sensor-noise (PRNU-style) residual of the grey crop and its statistics.

Camera images carry a photo-response non-uniformity pattern and demosaicing noise that
generated or blended faces lack or carry differently. The residual is the high-frequency
part a wavelet denoiser removes, as in Lukas, Fridrich & Goljan [1]_ (the Mihcak et al.
[2]_ denoiser), computed on the whole batch at once (``pywt.wavedec2`` over the last two
axes, local means by ``cv2.boxFilter`` with the batch as channels).
"""
from __future__ import annotations

import cv2
import numpy as np
import pywt

from extract.color import standardized_moments
from extract.registry import Extractor, FaceBatch, OutputSpec, register_extractor
from extract.texture import invalid_result

BANDS = ("H", "V", "D")


#: OpenCV's largest channel count (CV_CN_MAX): images per cv2.boxFilter call.
_MAX_CHANNELS = 512


def _min_local_mean(values: np.ndarray, windows) -> np.ndarray:
    """Minimum over ``windows`` of the w x w local mean of each image (N x h x w).

    ``min_w uniform_filter(values, size=(1, w, w), mode="reflect")`` to float32 precision:
    the N images become the channels of one h x w image, so each window size is one
    ``cv2.boxFilter`` (OpenCV's BORDER_REFLECT is scipy's "reflect", fedcba|abcdef) over
    the whole batch.
    """
    n, h, w = values.shape
    best = np.empty((n, h, w))
    for start in range(0, n, _MAX_CHANNELS):
        stop = min(n, start + _MAX_CHANNELS)
        # float32: a local variance estimate needs no more, and the filter runs twice as fast
        planes = np.ascontiguousarray(values[start:stop].transpose(1, 2, 0), np.float32)
        low = None
        for size in windows:
            box = cv2.boxFilter(planes, -1, (size, size), borderType=cv2.BORDER_REFLECT)
            low = box if low is None else np.minimum(low, box, out=low)
        best[start:stop] = low.reshape(h, w, stop - start).transpose(2, 0, 1)
    return best


def wavelet_noise_residual(gray: np.ndarray, wavelet: str = "db4", levels: int = 4,
                           sigma: float = 3.0, windows=(3, 5, 7, 9)):
    """Noise residual ``gray - denoise(gray)`` of a batch with the Mihcak wavelet denoiser.

    Each detail coefficient c of a ``levels``-level orthogonal wavelet decomposition
    (periodic extension) is split into signal and noise by a local Wiener rule: the signal
    variance is ``max(0, min_w mean_w(c^2) - sigma^2)`` over square windows of the sizes
    in ``windows`` (reflecting at the borders), and the noise part is
    ``c * sigma^2 / (var + sigma^2)``. The residual is the inverse transform of the noise
    parts with the approximation band set to zero, which equals ``gray - denoised`` for
    this orthogonal transform.

    Parameters
    ----------
    gray : ndarray, N x H x W, grey levels (0-255)
    wavelet : str
        A pywt orthogonal wavelet; "db4" is the 8-tap Daubechies QMF of [1]_.
    levels : int
    sigma : float
        Standard deviation of the noise the denoiser assumes, in grey levels ([1]_ uses 5
        for camera images; 3 keeps more of the fine detail of compressed video frames out).
    windows : tuple of int

    Returns
    -------
    residual : ndarray, N x H x W float64
    band_energy : ndarray, N x levels x 3 float64
        Mean squared noise coefficient per level (finest first) and band (H, V, D).

    Notes
    -----
    White noise of standard deviation s <= sigma passes into the residual almost whole
    (residual std ~ s), but shrinkage with a fixed ``sigma`` attenuates stronger noise:
    roughly s * sigma^2 / s^2 when s >> sigma (s = 10, sigma = 3 leaves ~1.2). It captures
    fine, low-amplitude noise; it is not a noise-level estimator.
    """
    gray = np.asarray(gray, np.float64)
    n, h, w = gray.shape
    coeffs = pywt.wavedec2(gray, wavelet, mode="periodization", level=levels, axes=(-2, -1))
    s2 = float(sigma) ** 2
    noise_coeffs = [np.zeros_like(coeffs[0])]
    energy = np.empty((n, levels, 3))
    for k, detail in enumerate(coeffs[1:]):  # coarsest level first
        bands = np.stack(detail)                                  # 3 x N x h x w
        squares = (bands * bands).reshape(3 * n, *bands.shape[2:])
        variance = np.maximum(_min_local_mean(squares, windows) - s2, 0)
        noise = bands * (s2 / (variance.reshape(bands.shape) + s2))
        energy[:, levels - 1 - k] = (noise * noise).mean(axis=(2, 3)).T
        noise_coeffs.append(tuple(noise))
    residual = pywt.waverec2(noise_coeffs, wavelet, mode="periodization", axes=(-2, -1))
    return residual[:, :h, :w], energy


def lag1_correlation(residual: np.ndarray, axis: int) -> np.ndarray:
    """Pearson correlation of each image (N x H x W) with itself shifted by one pixel."""
    n = residual.shape[0]
    cut = [slice(None)] * 3
    cut[axis] = slice(None, -1)
    a = residual[tuple(cut)]
    cut[axis] = slice(1, None)
    b = residual[tuple(cut)]
    count = a[0].size
    sa, sb = a.sum(axis=(1, 2)), b.sum(axis=(1, 2))
    cov = np.einsum("nij,nij->n", a, b) - sa * sb / count
    var_a = np.einsum("nij,nij->n", a, a) - sa * sa / count
    var_b = np.einsum("nij,nij->n", b, b) - sb * sb / count
    denom = np.sqrt(np.maximum(var_a, 0) * np.maximum(var_b, 0))
    return np.divide(cov, denom, out=np.zeros(n), where=denom > 0)


@register_extractor
class PRNUExtractor(Extractor):
    """Wavelet noise residual of the grey crop (PRNU-style; Lukas et al. [1]_, Mihcak [2]_).

    :func:`wavelet_noise_residual` of the float BT.601 luma ``batch.gray`` (0-255).

    Outputs
    -------
    map : float32, H x W x 1
        The residual, in grey levels.
    vector : float32
        ``prnu_std`` (grey levels), ``prnu_kurtosis`` (excess), ``prnu_corr_h`` and
        ``prnu_corr_v`` (lag-1 autocorrelation along rows / columns: demosaicing and
        up-sampling make it non-zero), then ``prnu_energy_L{l}{band}``: mean squared noise
        coefficient per level l (1 finest) and band H, V, D. Defaults: 4 + 12 = 16 values.
        A crop too small for ``levels`` levels of ``wavelet`` gets NaN and ``valid`` False.

    References
    ----------
    .. [1] J. Lukas, J. Fridrich, M. Goljan, "Digital camera identification from sensor
           pattern noise", IEEE TIFS 1(2), 2006.
    .. [2] M. K. Mihcak, I. Kozintsev, K. Ramchandran, "Spatially adaptive statistical
           modeling of wavelet image coefficients and its application to denoising",
           ICASSP 1999.
    """

    name = "prnu"
    version = "1"
    defaults = {"wavelet": "db4", "levels": 4, "sigma": 3.0, "windows": (3, 5, 7, 9)}

    def _levels(self):
        levels = int(self.params["levels"])
        if levels < 1 or float(self.params["sigma"]) <= 0:
            raise ValueError(f"prnu: need levels >= 1 and sigma > 0, got {self.params}")
        return levels

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        columns = ["prnu_std", "prnu_kurtosis", "prnu_corr_h", "prnu_corr_v"]
        columns += [f"prnu_energy_L{l + 1}{b}" for l in range(self._levels()) for b in BANDS]
        return {"vector": OutputSpec("vector", (len(columns),), "float32", tuple(columns)),
                "map": OutputSpec("map", (size, size, 1), "float32")}

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        levels = self._levels()
        gray = batch.gray
        n, h, w = gray.shape
        wavelet = pywt.Wavelet(self.params["wavelet"])
        if n == 0 or pywt.dwt_max_level(min(h, w), wavelet.dec_len) < levels:
            return invalid_result(self, batch)
        residual, energy = wavelet_noise_residual(gray, wavelet, levels,
                                                  float(self.params["sigma"]),
                                                  tuple(self.params["windows"]))
        _, std, _, kurt = standardized_moments(residual.reshape(n, -1), axis=1)
        vector = np.concatenate([np.stack([std, kurt, lag1_correlation(residual, 2),
                                           lag1_correlation(residual, 1)], axis=1),
                                 energy.reshape(n, -1)], axis=1)
        return {"vector": vector.astype(np.float32),
                "map": residual[..., None].astype(np.float32), "valid": np.ones(n, bool)}
