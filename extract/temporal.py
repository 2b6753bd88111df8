"""Video-level features: patch-graph temporal consistency (``temporal``) and per-frame
embeddings laid out for sequence models (``sequence``).

Both declare ``needs = ("video",)``: they read ``batch.video_ids`` and
``batch.frame_indices`` and relate the rows of one video to each other. The extract
pipeline gives them one video per partition; a batch holding several videos is split
by ``video_id`` and each video is ordered by ``frame_index`` (the rows are written back in
the batch's own order).

Clips versus sampled frames
---------------------------
``--clip-len K`` samples K consecutive frames at each position, so a video's rows form runs
whose frame indices differ by 1, separated by jumps. A transition between two rows of a
video is *consecutive* when their frame indices differ by exactly 1, a *jump* otherwise.
``temporal`` measures motion-free inconsistency only across consecutive transitions when
a frame has any; frames with none (``--clip-len 1``) fall back to their jump transitions
and say so through the ``gap`` column, and the per-video aggregates use only consecutive
transitions when the video has at least one.
"""
from __future__ import annotations

import numpy as np

from base.errors import UsageError
from extract.deep import TorchExtractor
from extract.registry import Extractor, FaceBatch, OutputSpec, register_extractor

_STATS = ("mean", "max", "std", "p50", "p90")
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def video_groups(video_ids, frame_indices) -> list[np.ndarray]:
    """Row indices of each video, each ordered by frame index (stable), videos in order of
    first appearance."""
    video_ids = np.asarray(video_ids)
    frame_indices = np.asarray(frame_indices)
    _, first, inverse = np.unique(video_ids, return_index=True, return_inverse=True)
    groups = []
    for g in np.argsort(first):
        rows = np.flatnonzero(inverse == g)
        groups.append(rows[np.argsort(frame_indices[rows], kind="stable")])
    return groups


def patch_features(images: np.ndarray, grid: int = 8) -> np.ndarray:
    """Cheap appearance descriptor of every cell of a ``grid`` x ``grid`` partition.

    Parameters
    ----------
    images : T x H x W x 3 uint8
    grid : int

    Returns
    -------
    T x grid**2 x 25 float32
        Per patch (row-major): RGB mean (3) and std (3) in [0, 1], mean absolute horizontal
        and vertical luma gradient (2), mean absolute Laplacian (1), and the patch's luma
        mean-pooled to 4 x 4 minus its mean (16, coarse structure). The central
        ``grid * cell`` square is used, ``cell`` the largest multiple of 4 that fits.

    Examples
    --------
    >>> patch_features(np.zeros((2, 64, 64, 3), np.uint8), grid=4).shape
    (2, 16, 25)
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be T x H x W x 3, got {images.shape}")
    t, h, w, _ = images.shape
    cell = (min(h, w) // (4 * grid)) * 4
    if cell < 4:
        raise ValueError(f"crops of {h}x{w} are too small for a {grid}x{grid} grid "
                         f"(need at least {4 * grid} px)")
    side = grid * cell
    y0, x0 = (h - side) // 2, (w - side) // 2
    x = images[:, y0:y0 + side, x0:x0 + side].astype(np.float32) / 255.0
    p = x.reshape(t, grid, cell, grid, cell, 3).transpose(0, 1, 3, 2, 4, 5)   # T g g c c 3
    mean = p.mean((3, 4))
    std = p.std((3, 4))
    luma = p @ _LUMA                                                           # T g g c c
    dx = np.abs(np.diff(luma, axis=4)).mean((3, 4))
    dy = np.abs(np.diff(luma, axis=3)).mean((3, 4))
    lap = np.abs(4 * luma[..., 1:-1, 1:-1] - luma[..., :-2, 1:-1] - luma[..., 2:, 1:-1]
                 - luma[..., 1:-1, :-2] - luma[..., 1:-1, 2:]).mean((3, 4))
    q = cell // 4
    coarse = luma.reshape(t, grid, grid, 4, q, 4, q).mean((4, 6))
    coarse = (coarse - coarse.mean((3, 4), keepdims=True)).reshape(t, grid, grid, 16)
    feats = np.concatenate([mean, std, dx[..., None], dy[..., None], lap[..., None], coarse], -1)
    return feats.reshape(t, grid * grid, -1).astype(np.float32)


def _unit_rows(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-8)


def transition_inconsistency(features: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Inconsistency ``1 - w`` of each co-located patch between consecutive rows.

    Parameters
    ----------
    features : T x P x F
        Patch features of the T ordered frames of one video (``patch_features``).
    alpha : float
        Weight of feature similarity against graph-structure similarity.

    Returns
    -------
    (T - 1) x P float32 in [0, 1]
        Features are z-scored per dimension over the whole video. Intra-frame graph:
        ``A_t = cos(z_t[i], z_t[j])`` (P x P). Temporal edge between patch p of frames t and
        t+1: ``w = alpha * (1 + cos(z_t[p], z_t+1[p])) / 2 + (1 - alpha) *
        (1 + cos(A_t[p], A_t+1[p])) / 2``; the output is ``1 - w``.
    """
    f = np.asarray(features, np.float64)
    flat = f.reshape(-1, f.shape[-1])
    z = (f - flat.mean(0)) / np.maximum(flat.std(0), 1e-6)
    zn = _unit_rows(z)
    adjacency = _unit_rows(zn @ zn.transpose(0, 2, 1))                   # T x P x P
    feat_sim = (zn[:-1] * zn[1:]).sum(-1)
    struct_sim = (adjacency[:-1] * adjacency[1:]).sum(-1)
    w = alpha * (1 + feat_sim) / 2 + (1 - alpha) * (1 + struct_sim) / 2
    return np.clip(1 - w, 0, 1).astype(np.float32)


def _stats(d: np.ndarray) -> np.ndarray:
    """mean, max, std, median, 90th percentile over the last axis."""
    p50, p90 = np.percentile(d, [50, 90], axis=-1)
    return np.stack([d.mean(-1), d.max(-1), d.std(-1), p50, p90], -1)


@register_extractor
class TemporalConsistencyExtractor(Extractor):
    """Patch-graph temporal consistency of a video (after Liu et al. 2025).

    Each aligned frame is cut into a ``grid`` x ``grid`` patch grid; every patch gets a
    25-d appearance descriptor (:func:`patch_features`). Within a frame the patches form a
    graph weighted by cosine similarity; co-located patches of neighbouring frames are
    joined by temporal edges weighted by both feature similarity and graph-structure
    similarity (:func:`transition_inconsistency`). Face swaps and reenactments flicker
    locally, so some temporal edges weaken while real videos stay coherent.

    Parameters
    ----------
    grid : int
        Patches per side (8 -> 64 patches, 32 px each on a 256 crop).
    alpha : float in [0, 1]
        Weight of feature similarity against structure similarity in an edge.

    Returns
    -------
    vector : (17,) float32
        ``in_*`` / ``out_*``: mean, max, std, p50, p90 of ``1 - w`` over the patches for the
        transition into / out of the frame. A frame uses its consecutive transitions (frame
        indices differing by 1); a missing side copies the other; a frame with no
        consecutive neighbour uses its jump transitions instead. ``gap``: mean frame-index
        difference of the transitions used (1 inside clips). ``video_*`` (same for every
        frame of the video, over its consecutive transitions, or all when it has none):
        mean, max and p90 of ``1 - w``, ``peak`` (largest per-transition mean),
        ``transition_std`` (std of per-transition means), ``clip_fraction`` (share of the
        video's transitions that are consecutive).
    valid : False (all NaN) for a video with a single frame.
    """

    name = "temporal"
    version = "1"
    needs = ("video",)
    defaults = {"grid": 8, "alpha": 0.5}

    COLUMNS = (tuple(f"in_{s}" for s in _STATS) + tuple(f"out_{s}" for s in _STATS)
               + ("gap", "video_mean", "video_max", "video_p90", "video_peak",
                  "video_transition_std", "video_clip_fraction"))

    def __init__(self, **params):
        super().__init__(**params)
        grid, alpha = self.params["grid"], self.params["alpha"]
        if not isinstance(grid, (int, np.integer)) or grid < 2:
            raise UsageError(f"temporal: grid must be an integer >= 2, got {grid!r}")
        if not 0 <= float(alpha) <= 1:
            raise UsageError(f"temporal: alpha must be in [0, 1], got {alpha!r}")

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        return {"vector": OutputSpec("vector", (len(self.COLUMNS),), "float32", self.COLUMNS)}

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        n = len(batch)
        out = np.full((n, len(self.COLUMNS)), np.nan, np.float32)
        valid = np.zeros(n, bool)
        for rows in video_groups(batch.video_ids, batch.frame_indices):
            if len(rows) < 2:
                continue
            out[rows] = self._video(batch.images[rows], np.asarray(batch.frame_indices)[rows])
            valid[rows] = True
        return {"vector": out, "valid": valid}

    def _video(self, images: np.ndarray, frames: np.ndarray) -> np.ndarray:
        d = transition_inconsistency(patch_features(images, self.params["grid"]),
                                     float(self.params["alpha"]))          # (T-1) x P
        gaps = np.diff(frames.astype(np.int64)).astype(np.float32)
        consecutive = gaps == 1
        stats = _stats(d)                                                  # (T-1) x 5
        t = len(images)
        rows = np.empty((t, len(self.COLUMNS)), np.float32)
        for k in range(t):
            has_in, has_out = k > 0, k < t - 1
            use_in = has_in and consecutive[k - 1]
            use_out = has_out and consecutive[k]
            if not (use_in or use_out):
                use_in, use_out = has_in, has_out
            s_in = stats[k - 1] if use_in else None
            s_out = stats[k] if use_out else None
            rows[k, 0:5] = s_in if s_in is not None else s_out
            rows[k, 5:10] = s_out if s_out is not None else s_in
            used = ([gaps[k - 1]] if use_in else []) + ([gaps[k]] if use_out else [])
            rows[k, 10] = np.mean(used)
        chosen = d[consecutive] if consecutive.any() else d
        per_transition = chosen.mean(1)
        rows[:, 11:] = [chosen.mean(), chosen.max(), np.percentile(chosen, 90),
                        per_transition.max(), per_transition.std(), consecutive.mean()]
        return rows


@register_extractor
class SequenceExtractor(TorchExtractor):
    """Per-frame embeddings laid out for sequence models (the fusion BiLSTM head).

    Layout: one row per frame, ``[embedding (D), position]``. The sequence of a video is
    not stored as one array: it is reconstructed by grouping the store's rows on
    ``video_id`` and ordering each group by ``frame_index`` (both in the store's meta
    table). ``position`` is the frame's rank within its video in this batch, normalised to
    [0, 1] (0 for the first, 1 for the last, 0 for a single-frame video), so a model can
    also read the order from the vector itself.

    Parameters
    ----------
    source : "cnn" | "clip"
        ``cnn``: the 1280-d EfficientNet-Lite0 head embedding (the last 1280 dims of
        ``cnn``, shared forward pass). ``clip``: the L2-normalised CLIP embedding, with
        ``clip_model`` / ``clip_weights`` as the ``clip`` feature's ``model`` / ``weights``.
    dim : int
        0 keeps the full embedding; otherwise a fixed seeded Gaussian projection to ``dim``
        dims (scaled by 1/sqrt(dim)), to keep stores small.
    seed : int
        Seed of the projection.
    device, batch_size
        As the ``cnn`` feature.

    Returns
    -------
    vector : (D + 1,) float32; valid always True.
    """

    name = "sequence"
    version = "1"
    needs = ("video",)
    defaults = {"source": "cnn", "dim": 0, "seed": 0, "device": "auto", "batch_size": 32,
                "clip_model": "ViT-B-32", "clip_weights": None}

    def __init__(self, **params):
        super().__init__(**params)
        from extract.deep import HEAD_CHANNELS, ClipExtractor
        source, dim = self.params["source"], self.params["dim"]
        if source == "cnn":
            self._clip, base = None, HEAD_CHANNELS
        elif source == "clip":
            self._clip = ClipExtractor(model=self.params["clip_model"],
                                       weights=self.params["clip_weights"],
                                       device=self.params["device"],
                                       batch_size=self.params["batch_size"])
            base = self._clip._dim
        else:
            raise UsageError(f"sequence: source must be 'cnn' or 'clip', got {source!r}")
        if not isinstance(dim, (int, np.integer)) or dim < 0:
            raise UsageError(f"sequence: dim must be an integer >= 0 (0 = full), got {dim!r}")
        self._projection = None
        if dim:
            rng = np.random.default_rng(self.params["seed"])
            self._projection = (rng.standard_normal((base, dim)) / np.sqrt(dim)).astype(np.float32)
        self._dim = int(dim or base)

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        cols = tuple(f"{self.params['source']}_{i}" for i in range(self._dim)) + ("position",)
        return {"vector": OutputSpec("vector", (len(cols),), "float32", cols)}

    def embed(self, images: np.ndarray) -> np.ndarray:
        """N x H x W x 3 uint8 -> N x D float32 frame embeddings (before the position)."""
        from extract.deep import HEAD_CHANNELS, lite0_forward
        if self._clip is not None:
            emb = self._clip.embed(images)
        else:
            emb = lite0_forward(images, self.device, self.params["batch_size"])["pooled"][:, -HEAD_CHANNELS:]
        if self._projection is not None:
            emb = emb @ self._projection
        return np.asarray(emb, np.float32)

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        n = len(batch)
        position = np.zeros(n, np.float32)
        for rows in video_groups(batch.video_ids, batch.frame_indices):
            if len(rows) > 1:
                position[rows] = np.arange(len(rows), dtype=np.float32) / (len(rows) - 1)
        vector = np.concatenate([self.embed(batch.images), position[:, None]], 1)
        return {"vector": np.ascontiguousarray(vector, np.float32), "valid": np.ones(n, bool)}

    def attributes(self) -> dict:
        from extract.deep import file_sha256, lite0_weights_path
        attrs = super().attributes()
        if self._clip is not None:
            clip_attrs = self._clip.attributes()
            attrs.update(model=clip_attrs["model"], weights_sha256=clip_attrs["weights_sha256"])
            attrs["params"] = {**attrs["params"], "clip_weights": clip_attrs["params"]["weights"]}
        else:
            attrs.update(model="efficientnet-lite0", weights_sha256=file_sha256(lite0_weights_path()))
        return attrs
