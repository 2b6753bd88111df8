"""A video-level head over a trained cascade's per-frame embeddings (the plan's
spatio-temporal feature).

The cascade scores frames one at a time; frame-by-frame face swaps and lip-sync also leave
traces *between* frames (a blend boundary and a colour that wobble). The video head reads,
for each frame of a clip of ``clip_len`` consecutive frames, the cascade's pooled fused
embedding ``[mean, inside, outside]`` (``pooled``, 3 x dim) and its frame logit, and gives
one logit per clip:

* the embedding is layer-normalised, and so is its change from the previous frame (zero for
  the first): the change is where flicker shows;
* both, with the frame logit, go through a linear layer and a one-layer **BiLSTM** (the
  project's ``sequence`` head family); its outputs are averaged over the frames and a
  linear layer gives the clip's logit, to which ``skip`` x the mean frame logit is added, so
  that the head starts from today's mean-of-frames score and learns the temporal part.

Why a BiLSTM rather than a temporal transformer: clips are short (4-8 frames), training
clips few (hundreds on a CPU), and the order of frames matters; a BiLSTM of 64 units has few
weights, needs no position encoding and reads clips of any length (a video shorter than a
clip is one shorter clip).

**A video's score** is the mean of its clips' logits (then a sigmoid): its frames, sorted by
frame index, are cut into clips of ``clip_len`` consecutive sampled frames (the last clip
ends at the last frame, overlapping the one before when the count does not divide). Without
a video head a run's video score stays the mean of its frame scores.

The head lives in the run folder, ``RUN/video_head/`` (:data:`HEAD_DIR`)::

    head.json                 its settings, the stores, the history and the chosen epoch
    best.safetensors, best.json   the weights of the epoch chosen on val
    checkpoints/last.*        the last epoch's weights and optimizer state (--resume)

Training: :mod:`fusion.cascade.video_train` (``python -m fusion.cascade train-video``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

HEAD_DIR, HEAD_JSON = "video_head", "head.json"

__all__ = ["VideoHead", "clip_starts", "video_groups", "consecutive_runs", "frame_features",
           "clip_logits", "video_logits", "has_video_head", "load_video_head",
           "video_head_metrics", "video_head_lines", "HEAD_DIR", "HEAD_JSON"]


class VideoHead(nn.Module):
    """BiLSTM over a clip's per-frame cascade features; see the module docstring.

    Parameters
    ----------
    embed_dim : int
        Width of the cascade's pooled embedding (3 x the run's ``dim``).
    hidden : int
        Width of the projection and of the BiLSTM output (even; half per direction).

    ``forward(pooled B x T x embed_dim, frame_logit B x T, lengths B)`` returns B clip
    logits (fake > 0); frames at or past a clip's length are padding and ignored.
    """

    def __init__(self, embed_dim: int, hidden: int = 64):
        super().__init__()
        if hidden < 2 or hidden % 2:
            raise ValueError(f"--hidden must be an even number >= 2, got {hidden}")
        self.norm = nn.LayerNorm(embed_dim)
        self.norm_change = nn.LayerNorm(embed_dim)
        self.project = nn.Sequential(nn.Linear(2 * embed_dim + 1, hidden), nn.GELU())
        self.lstm = nn.LSTM(hidden, hidden // 2, batch_first=True, bidirectional=True)
        self.out = nn.Linear(hidden, 1)
        self.skip = nn.Parameter(torch.ones(()))

    def forward(self, pooled, frame_logit, lengths):
        b, t, _ = pooled.shape
        valid = (torch.arange(t, device=pooled.device)[None, :] < lengths[:, None]).float()
        change = torch.zeros_like(pooled)
        change[:, 1:] = (pooled[:, 1:] - pooled[:, :-1]) * valid[:, 1:, None]
        x = torch.cat([self.norm(pooled), self.norm_change(change), frame_logit[..., None]], -1)
        x = self.project(x)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=t)
        n = valid.sum(1).clamp_min(1)
        pooled_out = (out * valid[..., None]).sum(1) / n[:, None]
        mean_logit = (frame_logit * valid).sum(1) / n
        return self.out(pooled_out)[:, 0] + self.skip * mean_logit


# ------------------------------------------------------------------------ clips of a video

def clip_starts(n_frames: int, clip_len: int) -> np.ndarray:
    """First frames of the clips that cover ``n_frames`` frames with clips of ``clip_len``:
    ``0, clip_len, 2 clip_len, ...`` and, when that leaves frames over, ``n_frames -
    clip_len`` (the last clip ends at the last frame). ``[0]`` when ``n_frames < clip_len``."""
    if clip_len < 1 or n_frames < 1:
        raise ValueError(f"need n_frames >= 1 and clip_len >= 1, got {n_frames}, {clip_len}")
    if n_frames <= clip_len:
        return np.zeros(1, np.int64)
    starts = np.arange(0, n_frames - clip_len + 1, clip_len)
    if starts[-1] + clip_len < n_frames:
        starts = np.append(starts, n_frames - clip_len)
    return starts.astype(np.int64)


def video_groups(meta: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """``[(key, positions)]``: the rows of each video (``method::video_id``, and ``::face
    N`` where a store keeps several faces per frame), ordered by ``frame_index``; positions
    index ``meta``'s rows. Videos in the order of their keys (the order
    :func:`fusion.metrics.video_scores` uses)."""
    keys = meta["method"].astype(str) + "::" + meta["video_id"].astype(str)
    if "face_index" in meta and meta["face_index"].nunique() > 1:
        keys = keys + "::face" + meta["face_index"].astype(str)
    frame = pd.DataFrame({"key": keys.to_numpy(), "frame": meta["frame_index"].to_numpy(),
                          "pos": np.arange(len(meta))})
    frame = frame.sort_values(["key", "frame", "pos"], kind="mergesort")
    return [(str(k), g["pos"].to_numpy()) for k, g in frame.groupby("key", sort=True)]


def consecutive_runs(frame_indices, store_clip_len: int) -> list[np.ndarray]:
    """Positions (into ``frame_indices``, sorted) of the runs of frames that form clips.

    A store extracted with ``--clip-len L > 1`` holds runs of consecutive frames: runs are
    cut where the frame index does not step by 1. With ``L == 1`` the sampled frames are
    spread over the video and the whole video is one run (consecutive *sampled* frames).
    """
    idx = np.asarray(frame_indices, np.int64)
    if store_clip_len <= 1 or len(idx) < 2:
        return [np.arange(len(idx))]
    cuts = np.flatnonzero(np.diff(idx) != 1) + 1
    return np.split(np.arange(len(idx)), cuts)


# ------------------------------------------------------------------- cascade frame features

@torch.no_grad()
def frame_features(model, crops: np.ndarray, size: int, device, batch_size: int = 64,
                   amp: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The frozen cascade's per-frame features of N uint8 RGB crops (any size).

    Returns ``(pooled N x 3 dim float32, frame_logit N float32)``: the model's ``pooled``
    output and its fake-vs-real logit (``logits[:, 1] - logits[:, 0]``, whose sigmoid is
    the frame's fake probability). Crops are resized to ``size`` as in training.
    """
    from fusion.cascade.data import to_model_inputs
    model.eval()
    device = torch.device(device)
    pooled, logit = [], []
    for start in range(0, len(crops), batch_size):
        rgb = np.asarray(crops[start:start + batch_size])
        batch = {"rgb": rgb, "mask": np.zeros(rgb.shape[:3], np.uint8),
                 "label": np.zeros(len(rgb), np.int64), "mask_valid": np.zeros(len(rgb), bool)}
        x = to_model_inputs(batch, size, device)
        # fp16 on CUDA with amp, as fusion.cascade.inference.autocast (which imports this module)
        with torch.autocast(device_type=device.type, dtype=torch.float16,
                            enabled=amp and device.type == "cuda"):
            out = model(x["rgb"])
        logits = out["logits"].float()
        pooled.append(out["pooled"].float().cpu().numpy())
        logit.append((logits[:, 1] - logits[:, 0]).cpu().numpy())
    if not pooled:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.float32)
    return np.concatenate(pooled).astype(np.float32), np.concatenate(logit).astype(np.float32)


@torch.no_grad()
def clip_logits(head: VideoHead, pooled: np.ndarray, frame_logit: np.ndarray,
                lengths=None, batch_size: int = 256) -> np.ndarray:
    """The head's logit of each clip: ``pooled`` C x T x D, ``frame_logit`` C x T,
    ``lengths`` C (default all T)."""
    head.eval()
    lengths = (np.full(len(pooled), pooled.shape[1], np.int64) if lengths is None
               else np.asarray(lengths, np.int64))
    device = next(head.parameters()).device
    out = []
    for s in range(0, len(pooled), batch_size):
        out.append(head(torch.from_numpy(np.ascontiguousarray(pooled[s:s + batch_size])).to(device),
                        torch.from_numpy(np.ascontiguousarray(frame_logit[s:s + batch_size])).to(device),
                        torch.from_numpy(lengths[s:s + batch_size]).to(device)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def video_logits(head: VideoHead, pooled: np.ndarray, frame_logit: np.ndarray,
                 groups: list[tuple[str, np.ndarray]], clip_len: int) -> np.ndarray:
    """One logit per video of ``groups`` (:func:`video_groups`): the mean of the head's
    logits over the video's clips (:func:`clip_starts`)."""
    items, owner = [], []
    for v, (_, pos) in enumerate(groups):
        for s in clip_starts(len(pos), clip_len):
            items.append(pos[s:s + clip_len])
            owner.append(v)
    t = max((len(i) for i in items), default=1)
    x = np.zeros((len(items), t, pooled.shape[1]), np.float32)
    z = np.zeros((len(items), t), np.float32)
    lengths = np.array([len(i) for i in items], np.int64)
    for c, rows in enumerate(items):
        x[c, :len(rows)], z[c, :len(rows)] = pooled[rows], frame_logit[rows]
    logits = clip_logits(head, x, z, lengths)
    sums = np.bincount(owner, weights=logits, minlength=len(groups))
    return (sums / np.bincount(owner, minlength=len(groups))).astype(np.float64)


# --------------------------------------------------------------------------- saved heads

def has_video_head(run_dir) -> bool:
    """Whether the run folder holds a trained video head."""
    folder = Path(run_dir) / HEAD_DIR
    return (folder / HEAD_JSON).is_file() and (folder / "best.safetensors").is_file()


def load_video_head(run_dir, device="cpu") -> tuple[VideoHead, dict] | None:
    """``(head in eval mode, head.json)`` of a run folder, or None when it has none."""
    from fusion.cascade.checkpoints import load_weights
    if not has_video_head(run_dir):
        return None
    folder = Path(run_dir) / HEAD_DIR
    record = json.loads((folder / HEAD_JSON).read_text())
    head = VideoHead(record["embed_dim"], record["hidden"])
    load_weights(folder / "best.safetensors", head)
    return head.to(device).eval(), record


# ------------------------------------------------------------------------ eval: metrics

def video_head_metrics(run_dir, pooled, frame_logit, data, device, n_boot: int,
                       out_dir=None) -> dict:
    """``{"video_head": ...}`` for ``metrics.json`` when the run has a video head, else ``{}``.

    ``pooled`` (N x 3 dim) and ``frame_logit`` (N) are the cascade's per-frame embeddings and
    fake-minus-real logits of every sample of ``data`` (a
    :class:`fusion.cascade.data.StoreMaps`), as :func:`fusion.cascade.inference.run_inference`
    gives them with ``pooled=True`` (its one pass over the store serves both). Scores every
    video with the head (:func:`video_logits`) and with the mean of its frame scores, on the
    same videos, both with :func:`fusion.metrics.compute_metrics` (per method too; CIs
    resample videos). ``out_dir`` also gets ``video_head_predictions.csv`` (one row per
    video).
    """
    from fusion.metrics import compute_metrics
    loaded = load_video_head(run_dir, device)
    if loaded is None:
        return {}
    head, record = loaded
    frame_logit = np.asarray(frame_logit, np.float32)
    groups = video_groups(data.meta)
    clip_len = int(record["clip_len"])
    head_logit = video_logits(head, pooled, frame_logit, groups, clip_len)
    frame_prob = 1 / (1 + np.exp(-frame_logit.astype(np.float64)))
    labels = data.labels
    first = np.array([pos[0] for _, pos in groups])
    v_labels = np.array([labels[pos].max() for _, pos in groups], np.int64)
    v_methods = data.meta["method"].astype(str).to_numpy()[first]
    keys = np.array([k for k, _ in groups])
    head_score = 1 / (1 + np.exp(-head_logit))
    mean_score = np.array([frame_prob[pos].mean() for _, pos in groups])

    def block(scores):
        m = compute_metrics(v_labels, scores, v_methods, video_ids=keys, threshold=0.5,
                            n_boot=n_boot)
        m.pop("video", None)  # one sample per video already
        return m

    section = {"clip_len": clip_len, "n_videos": len(groups),
               "n_clips": int(sum(len(clip_starts(len(p), clip_len)) for _, p in groups)),
               "score": "mean of the head's clip logits over a video's clips of clip_len "
                        "consecutive sampled frames, then sigmoid",
               "trained": {k: record.get(k) for k in ("stores", "seed", "blends", "best")},
               "head": block(head_score), "mean_of_frames": block(mean_score)}
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"video": keys, "method": v_methods, "label": v_labels,
                      "n_frames": [len(p) for _, p in groups], "video_head_logit": head_logit,
                      "video_head_score": head_score, "mean_frame_score": mean_score}
                     ).to_csv(Path(out_dir) / "video_head_predictions.csv", index=False)
    return {"video_head": section}


def video_head_lines(metrics: dict) -> list[str]:
    """The summary lines of the ``video_head`` section (none without it)."""
    section = metrics.get("video_head")
    if not section:
        return []
    fmt = lambda v: "n/a" if v is None or v != v else f"{v:.4f}"  # noqa: E731

    def auc(m):
        lo, hi = m["ci"]["auc"]
        ci = f" [{lo:.3f}, {hi:.3f}]" if lo == lo and hi == hi else ""
        return f"AUC {fmt(m.get('auc'))}{ci}"

    head, mean = section["head"], section["mean_of_frames"]
    lines = [f"  video head ({section['n_videos']} videos, clips of {section['clip_len']} "
             f"frames): {auc(head)}  AP {fmt(head.get('ap'))}  EER {fmt(head.get('eer'))}; "
             f"mean of frames {auc(mean)}"]
    for method, m in head["by_method"].items():
        lines.append(f"    {method}: video head AUC {fmt(m.get('auc'))}  mean of frames "
                     f"AUC {fmt(mean['by_method'][method].get('auc'))}")
    return lines
