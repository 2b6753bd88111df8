"""Frequency-domain features: DCT spectra and block statistics, FFT spectra, NPR residuals.

GAN and diffusion up-samplers leave periodic traces that show in the spectrum (Durall et
al. 2020, Frank et al. 2020), in the statistics of 8 x 8 block-DCT coefficients (Giudice et
al. 2021) and in the residual between neighbouring pixels of a 2 x 2 cell (Tan et al. 2024).
All transforms run on the whole batch at once (``scipy.fft`` over the last axes).
"""
from __future__ import annotations

import functools

import numpy as np
import scipy.fft

from extract.color import moment_ratios
from extract.registry import Extractor, FaceBatch, OutputSpec, register_extractor
from extract.texture import invalid_result


# ----------------------------------------------------------------------------------------- DCT

def log_dct_map(gray: np.ndarray) -> np.ndarray:
    """``log(|DCT-II(gray)| + 1)`` over each whole image (orthonormal), N x H x W float32."""
    coefs = scipy.fft.dctn(np.asarray(gray, np.float64), axes=(-2, -1), norm="ortho")
    return np.log1p(np.abs(coefs)).astype(np.float32)


#: Block-DCT coefficients smaller than this (grey levels) are rounding noise around 0.
ZERO_COEFFICIENT = 1e-9


@functools.lru_cache(maxsize=4)
def _block_dct_matrix(block: int) -> np.ndarray:
    """(block^2 x block^2) matrix of the orthonormal 2-D DCT-II of a flattened tile:
    ``kron(D, D)`` with ``D`` the 1-D DCT matrix (``coefs = D @ tile @ D.T``)."""
    d = scipy.fft.dct(np.eye(block), axis=0, norm="ortho")
    return np.kron(d, d)


def block_dct(gray: np.ndarray, block: int = 8) -> np.ndarray:
    """Orthonormal 2-D DCT-II of each non-overlapping ``block`` x ``block`` tile.

    Rows and columns beyond the last whole tile are dropped (JPEG's grid starts at 0, 0).
    All tiles of the batch go through one matrix product with :func:`_block_dct_matrix`
    (equal to ``scipy.fft.dctn(tile, norm='ortho')`` per tile to ~1e-12).

    Returns
    -------
    ndarray, N x T x block*block float64
        T tiles in row-major order; coefficient ``u * block + v`` is vertical frequency u,
        horizontal frequency v (index 0 is DC).
    """
    gray = np.asarray(gray, np.float64)
    n, h, w = gray.shape
    th, tw = h // block, w // block
    tiles = gray[:, :th * block, :tw * block].reshape(n, th, block, tw, block)
    tiles = tiles.transpose(0, 1, 3, 2, 4).reshape(n, th * tw, block * block)
    return tiles @ _block_dct_matrix(block).T


@register_extractor
class DCTExtractor(Extractor):
    """Global log-DCT spectrum and 8 x 8 block-DCT AC statistics of the grey crop.

    Works on the float BT.601 luma ``batch.gray`` (0-255).

    Outputs
    -------
    map : float32, H x W x 1
        ``log(|dctn(gray, norm='ortho')| + 1)`` of the whole crop (natural log; DC top-left).
    vector : float32
        For each of the 63 AC frequencies of the 8 x 8 block DCT (JPEG's grid, orthonormal,
        coefficients in grey levels): ``beta`` = mean |AC| over the blocks, the maximum-
        likelihood scale of a zero-mean Laplacian; ``std`` = standard deviation of the
        coefficient (Giudice et al. [1]_ estimate the Laplacian scale as std / sqrt(2),
        which is this column up to a constant); then a normalised histogram of the
        coefficient over ``hist_bins`` equal bins spanning [-hist_range, hist_range]
        (values outside are counted in the end bins; |c| < :data:`ZERO_COEFFICIENT` counts
        as 0). Defaults: 63 x (2 + 8) = 630 values.
        An image smaller than one block gets NaN and ``valid`` False.

    References
    ----------
    .. [1] O. Giudice, L. Guarnera, S. Battiato, "Fighting deepfakes by detecting GAN DCT
           anomalies", Journal of Imaging 7(8), 2021.
    """

    name = "dct"
    version = "1"
    defaults = {"block": 8, "hist_bins": 8, "hist_range": 32.0}

    def _frequencies(self):
        block = int(self.params["block"])
        if block < 2:
            raise ValueError(f"dct: block must be >= 2, got {block}")
        return [(u, v) for u in range(block) for v in range(block)][1:]

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        freqs = self._frequencies()
        bins = int(self.params["hist_bins"])
        columns = [f"dct_u{u}v{v}_beta" for u, v in freqs]
        columns += [f"dct_u{u}v{v}_std" for u, v in freqs]
        columns += [f"dct_u{u}v{v}_hist{b}" for u, v in freqs for b in range(bins)]
        return {"vector": OutputSpec("vector", (len(columns),), "float32", tuple(columns)),
                "map": OutputSpec("map", (size, size, 1), "float32")}

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        block = int(self.params["block"])
        bins = int(self.params["hist_bins"])
        span = float(self.params["hist_range"])
        if bins < 1 or span <= 0:
            raise ValueError(f"dct: need hist_bins >= 1 and hist_range > 0, got {self.params}")
        gray = batch.gray
        n, h, w = gray.shape
        n_freq = block * block - 1
        if n == 0 or h < block or w < block:
            return invalid_result(self, batch)
        full = log_dct_map(gray)[..., None]
        ac = block_dct(gray, block)[:, :, 1:]  # N x T x 63
        magnitude = np.abs(ac)
        beta = magnitude.mean(axis=1)
        std = ac.std(axis=1)
        # a coefficient that is 0 up to rounding (flat tiles) counts as 0, in the bin above
        # 0, whatever the sign of its rounding error
        ac = np.where(magnitude < ZERO_COEFFICIENT, 0.0, ac)
        which = np.floor((ac + span) * (bins / (2 * span))).astype(np.int64)
        np.clip(which, 0, bins - 1, out=which)
        index = which + (np.arange(n_freq) * bins)[None, None, :]
        index += (np.arange(n) * n_freq * bins)[:, None, None]
        hist = np.bincount(index.ravel(), minlength=n * n_freq * bins).reshape(n, -1)
        hist = hist / ac.shape[1]
        vector = np.concatenate([beta, std, hist], axis=1).astype(np.float32)
        return {"vector": vector, "map": full, "valid": np.ones(n, bool)}


# ----------------------------------------------------------------------------------------- FFT

def radial_distance(h: int, w: int) -> np.ndarray:
    """H x W distance (pixels of frequency) from the centred DC term at (H//2, W//2)."""
    y = np.arange(h) - h // 2
    x = np.arange(w) - w // 2
    return np.hypot(y[:, None], x[None, :])


def azimuthal_average(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Mean of ``values`` (N x H x W, centred spectrum) over rings of unit width.

    Ring k holds the frequencies with ``k <= r < k + 1`` (r from :func:`radial_distance`);
    frequencies with r >= ``n_bins`` (the corners) are left out. Returns N x n_bins; a ring
    without any frequency (only for tiny images) is NaN.
    """
    n, h, w = values.shape
    ring = np.floor(radial_distance(h, w)).astype(np.int64)
    keep = ring < n_bins
    index = (np.arange(n)[:, None] * n_bins + ring[keep][None, :]).ravel()
    sums = np.bincount(index, weights=values[:, keep].ravel(), minlength=n * n_bins)
    counts = np.bincount(ring[keep], minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums.reshape(n, n_bins) / counts[None, :]


@register_extractor
class FFTExtractor(Extractor):
    """Fourier amplitude spectrum of the grey crop (Durall et al. [1]_, Frank et al. [2]_).

    Works on the float BT.601 luma ``batch.gray`` (0-255).

    Outputs
    -------
    map : float32, H x W x 1
        Centred log-amplitude spectrum ``log(|fft2(gray)| + 1)``, DC at (H//2, W//2).
    vector : float32
        ``fft_ring{k}``: the azimuthal average of that log-amplitude over rings
        ``k <= r < k + 1`` (r in frequency pixels from DC), k < ``radial_bins`` (default
        min(H, W) // 2, up to the Nyquist radius); then ``fft_hf{f}``: the fraction of the
        spectral energy |F|^2 (DC excluded) at radius > f * min(H, W) / 2, for each f of
        ``hf_fractions``. Default size 256: 128 + 3 values.

    References
    ----------
    .. [1] R. Durall, M. Keuper, J. Keuper, "Watch your up-convolution: CNN based generative
           deep neural networks are failing to reproduce spectral distributions", CVPR 2020.
    .. [2] J. Frank et al., "Leveraging frequency analysis for deep fake image recognition",
           ICML 2020.
    """

    name = "fft"
    version = "1"
    defaults = {"radial_bins": None, "hf_fractions": (0.25, 0.5, 0.75)}

    def _bins(self, h, w):
        bins = self.params["radial_bins"]
        bins = min(h, w) // 2 if bins is None else int(bins)
        if bins < 1:
            raise ValueError(f"fft: radial_bins must be >= 1, got {bins}")
        return bins

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        columns = [f"fft_ring{k}" for k in range(self._bins(size, size))]
        columns += [f"fft_hf{f:g}" for f in self.params["hf_fractions"]]
        return {"vector": OutputSpec("vector", (len(columns),), "float32", tuple(columns)),
                "map": OutputSpec("map", (size, size, 1), "float32")}

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        gray = batch.gray  # float32: single-precision FFT, twice as fast, ample for a log map
        n, h, w = gray.shape
        if n == 0 or min(h, w) < 2:
            return invalid_result(self, batch)
        bins = self._bins(h, w)
        amplitude = np.abs(scipy.fft.fftshift(scipy.fft.fft2(gray, axes=(-2, -1)),
                                              axes=(-2, -1)))
        log_amp = np.log1p(amplitude)
        rings = azimuthal_average(log_amp, bins)
        # zone of each frequency: 0 for DC, else 1 + the number of radius fractions exceeded
        radius = radial_distance(h, w)
        fractions = tuple(float(f) for f in self.params["hf_fractions"])
        if list(fractions) != sorted(fractions) or not all(0 <= f for f in fractions):
            raise ValueError(f"fft: hf_fractions must be ascending and >= 0, got {fractions}")
        nyquist = min(h, w) / 2
        zone = (radius > 0).astype(np.int64)
        for f in fractions:
            zone += radius > f * nyquist
        n_zones = len(fractions) + 2
        energy = np.bincount((np.arange(n)[:, None] * n_zones + zone.ravel()[None]).ravel(),
                             weights=(amplitude.astype(np.float64) ** 2).ravel(),
                             minlength=n * n_zones).reshape(n, n_zones)
        beyond = np.cumsum(energy[:, ::-1], axis=1)[:, ::-1]  # energy in zone >= k
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios = beyond[:, 2:] / beyond[:, 1:2]
        vector = np.concatenate([rings, ratios], axis=1).astype(np.float32)
        # a flat image has no energy outside DC: its ratios are undefined
        valid = np.isfinite(vector).all(axis=1)
        vector[~valid] = np.nan
        return {"vector": vector, "map": log_amp[..., None].astype(np.float32),
                "valid": valid}


# ----------------------------------------------------------------------------------------- NPR

def npr_residual(images: np.ndarray) -> np.ndarray:
    """Neighbouring-pixel residual ``x - up(down(x))`` of Tan et al. 2024.

    ``down`` is nearest-neighbour down-sampling by 2 (``x[::2, ::2]``, what
    ``F.interpolate(x, scale_factor=0.5, mode='nearest')`` picks) and ``up`` nearest
    up-sampling by 2 (each pixel repeated in a 2 x 2 cell): every pixel minus the top-left
    pixel of its 2 x 2 cell. With an odd size the last row/column is its own cell's top.

    Parameters
    ----------
    images : ndarray, N x H x W x C (any numeric dtype)

    Returns
    -------
    ndarray, N x H x W x C, in the units of ``images``: int16 for 8-bit input (exact),
    float32 otherwise
    """
    x = np.asarray(images)
    x = x.astype(np.int16 if x.dtype in (np.uint8, np.int8) else np.float32)
    n, h, w = x.shape[:3]
    anchor = x[:, ::2, ::2]
    up = np.repeat(np.repeat(anchor, 2, axis=1), 2, axis=2)[:, :h, :w]
    return x - up


def histogram_moments(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mean |x|, standard deviation, skewness and excess kurtosis from histograms.

    ``counts`` (... x K) counts how often each of the K ``values`` occurs; the statistics
    are those of the samples the histogram describes (biased estimators, as ``np.std`` and
    ``scipy.stats.skew`` / ``kurtosis`` defaults), exact in float64. Skewness and kurtosis
    of a constant sample are 0. Returns ... x 4.
    """
    counts = np.asarray(counts, np.float64)
    total = counts.sum(axis=-1)
    p = counts / np.maximum(total, 1)[..., None]
    mean = p @ values
    d = values - mean[..., None]
    d2 = d * d
    m2 = np.sum(p * d2, axis=-1)
    m3 = np.sum(p * d2 * d, axis=-1)
    m4 = np.sum(p * d2 * d2, axis=-1)
    return np.stack([p @ np.abs(values), *moment_ratios(mean, m2, m3, m4)], axis=-1)


@register_extractor
class NPRExtractor(Extractor):
    """Neighbouring pixel relationships (NPR) residual of the RGB crop (Tan et al. [1]_).

    The residual :func:`npr_residual` of the RGB crop scaled to [0, 1] (x / 255) exposes the
    local correlation left by up-sampling layers of generators.

    Outputs
    -------
    map : float32, H x W x 3
        The residual (RGB, in [−1, 1]).
    vector : float32
        Per channel R, G, B: mean |residual|, standard deviation, skewness and excess
        kurtosis (biased estimators, as scipy.stats.skew / kurtosis defaults) over the
        pixels that are not the anchor of their 2 x 2 cell (anchors are 0 by construction).
        Skewness and kurtosis of a constant residual are defined as 0. 12 values.

    References
    ----------
    .. [1] C. Tan, Y. Zhao, S. Wei, G. Gu, P. Liu, Y. Wei, "Rethinking the up-sampling
           operations in CNN-based generative network for generalizable deepfake
           detection", CVPR 2024.
    """

    name = "npr"
    version = "1"
    defaults = {}

    STATS = ("meanabs", "std", "skew", "kurtosis")

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        columns = tuple(f"npr_{c}_{s}" for c in "RGB" for s in self.STATS)
        return {"vector": OutputSpec("vector", (len(columns),), "float32", columns),
                "map": OutputSpec("map", (size, size, 3), "float32")}

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        n, h, w = batch.images.shape[:3]
        if n == 0 or max(h, w) < 2:
            return invalid_result(self, batch)
        images = batch.images
        if images.dtype != np.uint8:
            raise ValueError(f"npr: expected uint8 images, got {images.dtype}")
        residual = npr_residual(images)        # integer grey-level steps in [-255, 255]
        # The residual of 8-bit images takes 511 integer values, so each channel's moments
        # come exactly (float64) from its histogram: one bincount over the batch. Anchors
        # (the top-left pixel of each 2 x 2 cell) are 0 by construction and left out by
        # taking their count off the zero bin.
        index = residual.astype(np.int32)
        index += (np.arange(3, dtype=np.int32) * 511 + 255)[None, None, None, :]
        index += (np.arange(n, dtype=np.int32) * 3 * 511)[:, None, None, None]
        counts = np.bincount(index.ravel(), minlength=n * 3 * 511).reshape(n, 3, 511)
        counts[:, :, 255] -= ((h + 1) // 2) * ((w + 1) // 2)
        vector = histogram_moments(counts, np.arange(-255, 256) / 255.0)
        return {"vector": vector.reshape(n, -1).astype(np.float32),
                "map": residual / np.float32(255), "valid": np.ones(n, bool)}
