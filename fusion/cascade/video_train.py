"""``python -m fusion.cascade train-video``: train a run's video head from real clips.

For every store, the real videos of split ``train`` are cut into clips of ``--clip-len``
consecutive frames (:func:`real_clips`: runs of consecutive frames in a store extracted
with ``--clip-len L > 1``, else consecutive sampled frames of a video); each clip gives
``--blends`` pairs (the real clip, a temporal self-blend of it,
:func:`pipelines.synthesis_temporal.temporal_sbi` with a random difficulty, drifting and
jittering parameters, and the lower face only with probability ``--lower-fraction``). The
trained cascade, frozen, turns every frame into its pooled embedding and frame logit
(:func:`fusion.cascade.video.frame_features`), once; the :class:`~fusion.cascade.video.VideoHead`
then trains on those for ``--epochs`` epochs (AdamW, binary cross-entropy), and the epoch
with the best AUC on the val clips (the stores' split ``val``, blended with a fixed seed;
ties: lower loss) is kept in ``RUN/video_head/``.

``clip_augment``, a callable ``(T x H x W x 3 uint8 clip, numpy Generator) -> clip``, is
applied to real and blended clips alike before the cascade sees them (the hook for a video
codec round trip); None leaves clips as they are.

Randomness: a clip's ``k``-th blend draws from ``default_rng([seed, store, clip, k])``
(val: ``seed + VAL_SEED_OFFSET``), its augmentation from ``[..., k, 1]`` (real) and
``[..., k, 2]`` (blend); the head's initial weights from ``seed`` and each epoch's order
from ``[seed, epoch]``. A resumed run continues exactly as an uninterrupted one.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from fusion.cascade.video import HEAD_DIR, HEAD_JSON, VideoHead, consecutive_runs, video_groups
from fusion.per_method import auc_or_nan

#: Offset added to ``--seed`` for the val blends (fixed for the whole run, never trained on).
VAL_SEED_OFFSET = 1_000_003

__all__ = ["real_clips", "clip_features", "train_video_head", "add_parser", "run_command"]


def real_clips(meta, landmarks: np.ndarray, clip_len: int, store_clip_len: int) -> list[np.ndarray]:
    """Row positions (into ``meta``) of every clip of ``clip_len`` frames of the real videos.

    Each real video (:func:`~fusion.cascade.video.video_groups`) is split into runs
    (:func:`~fusion.cascade.video.consecutive_runs`), and each run of at least ``clip_len``
    frames into non-overlapping clips (the last one ending at the run's end). Frames without
    landmarks cut a run (a blend needs them).
    """
    from fusion.cascade.video import clip_starts
    labels = meta["label"].to_numpy()
    ok = np.isfinite(np.asarray(landmarks, np.float64).reshape(len(meta), -1)).all(1)
    frames = meta["frame_index"].to_numpy()
    clips = []
    for _, pos in video_groups(meta):
        if labels[pos].max() != 0:
            continue
        for run in consecutive_runs(frames[pos], store_clip_len):
            run = pos[run]
            # landmark-less frames split the run further
            for piece in np.split(run, np.flatnonzero(~ok[run]) + 1):
                piece = piece[ok[piece]]
                if len(piece) >= clip_len:
                    clips += [piece[s:s + clip_len] for s in clip_starts(len(piece), clip_len)]
    return clips


def clip_features(model, size: int, device, sources, seed: int, blends: int, drift: float,
                  jitter: float, lower_fraction: float, clip_augment=None, amp: bool = True,
                  batch_size: int = 64, progress: bool = False) -> dict:
    """The cascade features of every clip and its blends.

    ``sources`` is a list of ``(StoreMaps, clips)``. Returns ``pooled`` (M x T x D),
    ``frame_logit`` (M x T), ``label`` (M: 0 real, 1 blend) and ``clip`` (M: the pair's
    clip number), with M = 2 x blends x clips; real copies are identical unless
    ``clip_augment`` changes them.
    """
    from fusion.cascade.video import frame_features
    from pipelines.synthesis_temporal import temporal_sbi
    total = sum(len(c) for _, c in sources)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, desc="clips", leave=False)
    pooled, logit, label, owner = [], [], [], []
    number = 0
    for s, (data, clips) in enumerate(sources):
        for c, rows in enumerate(clips):
            batch = data.batch(rows)
            real, lms = batch["rgb"], data.landmarks[rows]
            made = []
            for k in range(blends):
                rng = np.random.default_rng([seed, s, c, k])
                region = "lower" if rng.random() < lower_fraction else "face"
                fake, _, _ = temporal_sbi(real, lms, rng, float(rng.uniform(0, 1)), drift,
                                          jitter, region)
                pair = [real, fake]
                if clip_augment is not None:
                    pair = [clip_augment(x, np.random.default_rng([seed, s, c, k, j + 1]))
                            for j, x in enumerate(pair)]
                made += pair
            p, z = frame_features(model, np.concatenate(made), size, device, batch_size, amp)
            t = len(rows)
            pooled.append(p.reshape(len(made), t, -1))
            logit.append(z.reshape(len(made), t))
            label += [0, 1] * blends
            owner += [number] * len(made)
            number += 1
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    if not pooled:
        raise ValueError("no clips")
    return {"pooled": np.concatenate(pooled), "frame_logit": np.concatenate(logit),
            "label": np.asarray(label, np.float32), "clip": np.asarray(owner, np.int64)}


def _evaluate(head, feats) -> dict:
    from fusion.cascade.video import clip_logits
    z = clip_logits(head, feats["pooled"], feats["frame_logit"])
    y = torch.from_numpy(feats["label"])
    loss = torch.nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(z), y).item()
    return {"auc": auc_or_nan(feats["label"], z), "loss": loss}


def _open_sources(stores, split: str, clip_len: int, cache_mb: int):
    """``(open stores, [(StoreMaps, clips)])`` of ``split`` of every store."""
    from fusion.cascade.data import StoreMaps
    from stores import open_store
    opened, sources = [], []
    try:
        for path in stores:
            store = open_store(path)
            opened.append(store)
            data = StoreMaps(store, split, cache_bytes=cache_mb << 20)
            store_clip = int((store.run or {}).get("clip_len", 1) or 1)
            sources.append((data, real_clips(data.meta, data.landmarks, clip_len, store_clip)))
    except BaseException:
        for store in opened:
            store.close()
        raise
    return opened, sources


#: CRFs a clip is re-encoded at by ``--clip-codec`` (uniform integers; FF++ c23 is CRF 23,
#: c40 is CRF 40), the same range as the frame-level ``h264`` augmentation.
CLIP_CRF = (18, 45)


class ClipCodec:
    """The ``clip_augment`` of ``--clip-codec P``: with probability ``p`` a clip (real and
    blended alike) is re-encoded as one H.264 stream (an I frame, then P/B frames:
    :func:`fusion.cascade.codec.h264_roundtrip`) at a CRF drawn uniformly in
    :data:`CLIP_CRF`; the draws come from the clip's own generator only."""

    def __init__(self, p: float):
        self.p = float(p)

    def __call__(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from fusion.cascade.codec import h264_roundtrip
        fire, crf = rng.random() < self.p, int(rng.integers(CLIP_CRF[0], CLIP_CRF[1] + 1))
        return h264_roundtrip(clip, crf) if fire else clip


def train_video_head(run_dir, stores, clip_len: int = 4, epochs: int = 30, blends: int = 2,
                     seed: int = 0, hidden: int = 64, lr: float = 1e-3, batch_size: int = 32,
                     drift: float = 0.05, jitter: float = 0.02, lower_fraction: float = 0.3,
                     device: str = "auto", resume: bool = False, clip_augment=None,
                     cache_mb: int = 1024, progress: bool = True, log=print,
                     flags: dict | None = None) -> dict:
    """Train the video head of the cascade run ``run_dir`` into ``run_dir/video_head``.

    The caller claims that folder (:func:`base.outputs.claim_output_dir`). The cascade's
    weights are never changed (no gradient reaches them). Returns ``{"best", "history",
    "train_clips", "val_clips", "baseline"}``; ``baseline`` is the val AUC of the mean of
    the frame logits on the same clips.
    """
    from fusion.cascade.checkpoints import (LAST_JSON, load_checkpoint, load_run, save_best,
                                            save_checkpoint)
    from fusion.cascade.config import resolve_device, write_json
    dev = resolve_device(device)
    out = Path(run_dir) / HEAD_DIR
    model, config, _ = load_run(run_dir, dev)
    for p in model.parameters():
        p.requires_grad_(False)
    opened, train_sources = _open_sources(stores, "train", clip_len, cache_mb)
    try:
        val_opened, val_sources = _open_sources(stores, "val", clip_len, cache_mb)
        opened += val_opened
        n_train, n_val = (sum(len(c) for _, c in s) for s in (train_sources, val_sources))
        for name, n in (("train", n_train), ("val", n_val)):
            if not n:
                raise ValueError(f"--store: no real clips of {clip_len} frames with landmarks in "
                                 f"split {name} of {', '.join(map(str, stores))}; lower "
                                 "--clip-len or extract more frames per video")
        log(f"video head: {n_train} train and {n_val} val real clips of {clip_len} frames, "
            f"{blends} blend(s) each; cascade features on {dev}")
        common = dict(blends=blends, drift=drift, jitter=jitter, lower_fraction=lower_fraction,
                      clip_augment=clip_augment, amp=config.amp, progress=progress)
        train = clip_features(model, config.size, dev, train_sources, seed, **common)
        val = clip_features(model, config.size, dev, val_sources, seed + VAL_SEED_OFFSET, **common)
    finally:
        for store in opened:
            store.close()
    baseline = auc_or_nan(val["label"], val["frame_logit"].mean(1))
    torch.manual_seed(seed)
    head = VideoHead(train["pooled"].shape[2], hidden).to(dev)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    record = {"embed_dim": int(train["pooled"].shape[2]), "hidden": hidden, "clip_len": clip_len,
              "blends": blends, "drift": drift, "jitter": jitter, "lower_fraction": lower_fraction,
              "seed": seed, "epochs": epochs, "lr": lr, "batch_size": batch_size,
              "stores": [str(s) for s in stores], "train_clips": n_train, "val_clips": n_val,
              "head": "BiLSTM", "selection": "val AUC of the clip logits (ties: lower loss)",
              "val_mean_of_frames_auc": baseline, **(flags or {})}
    history, start, best = [], 0, None
    if resume and (out / LAST_JSON).is_file():
        history, start, best = load_checkpoint(out, head, opt, None, dev)
        log(f"resuming after epoch {start}")
    data = {k: torch.from_numpy(v).to(dev) for k, v in train.items() if k != "clip"}
    lengths = torch.full((len(train["label"]),), train["pooled"].shape[1], dtype=torch.int64)
    for epoch in range(start + 1, epochs + 1):
        t0 = time.perf_counter()
        head.train()
        order = np.random.default_rng([seed, epoch]).permutation(len(train["label"]))
        total = 0.0
        for s in range(0, len(order), batch_size):
            idx = torch.from_numpy(order[s:s + batch_size]).to(dev)
            z = head(data["pooled"][idx], data["frame_logit"][idx], lengths[idx.cpu()])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, data["label"][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        row = {"epoch": epoch, "train_loss": total / len(order), "val": _evaluate(head, val),
               "seconds": time.perf_counter() - t0}
        history.append(row)
        key = (row["val"]["auc"], -row["val"]["loss"])
        if best is None or not (key <= (best["val"]["auc"], -best["val"]["loss"])):
            best = {"epoch": epoch, "val": row["val"]}
            save_best(out, head, best)
        save_checkpoint(out, head, opt, None, epoch, history, best)
        log(f"epoch {epoch}/{epochs}: train loss {row['train_loss']:.4f}  val AUC "
            f"{row['val']['auc']:.4f}  loss {row['val']['loss']:.4f}")
    write_json(out / HEAD_JSON, {**record, "history": history, "best": best})
    return {"best": best, "history": history, "train_clips": n_train, "val_clips": n_val,
            "baseline": baseline}


# ------------------------------------------------------------------------------------ CLI

def add_parser(sub) -> None:
    """The ``train-video`` subcommand of ``python -m fusion.cascade``."""
    from base.cli import at_least
    from base.outputs import add_overwrite_flag
    v = sub.add_parser("train-video", help="train a video-level head over a trained run's "
                                           "per-frame embeddings, from real clips and their "
                                           "temporal self-blends")
    v.add_argument("--run", required=True,
                   help="cascade run folder written by train (its best weights stay frozen); "
                        "the head goes to RUN/video_head/")
    v.add_argument("--store", required=True, action="append",
                   help="feature store(s) with rgb and landmarks; repeat or give a comma list. "
                        "Real clips of split train train the head, of split val choose its "
                        "epoch; split test is never read")
    v.add_argument("--clip-len", type=at_least(1), default=4,
                   help="frames per clip: consecutive frames of a store extracted with "
                        "--clip-len > 1, else consecutive sampled frames (default 4)")
    v.add_argument("--epochs", type=at_least(1), default=30, help="head epochs (default 30)")
    v.add_argument("--blends", type=at_least(1), default=2,
                   help="temporal self-blends per real clip, each paired with the real clip "
                        "(default 2)")
    v.add_argument("--drift", type=at_least(0.0, float), default=0.05,
                   help="random-walk step of the blend parameters per frame, as a fraction of "
                        "each parameter's range (default 0.05)")
    v.add_argument("--jitter", type=at_least(0.0, float), default=0.02,
                   help="independent per-frame noise on the blend parameters, as a fraction "
                        "of the range (default 0.02)")
    v.add_argument("--lower-fraction", type=at_least(0.0, float), default=0.3,
                   help="probability that a blend covers the lower face only, as lip-sync "
                        "does (default 0.3)")
    v.add_argument("--hidden", type=at_least(2), default=64,
                   help="width of the head's BiLSTM output, even (default 64)")
    v.add_argument("--lr", type=at_least(0.0, float, strict=True), default=1e-3,
                   help="AdamW learning rate (default 1e-3)")
    v.add_argument("--batch-size", type=at_least(1), default=32, help="clips per step (default 32)")
    v.add_argument("--seed", type=at_least(0), default=0, help="random seed (default 0)")
    v.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: CUDA when available (default)")
    v.add_argument("--threads", type=at_least(0), default=0,
                   help="CPU threads for torch (default 0: torch's choice)")
    v.add_argument("--clip-codec", type=at_least(0.0, float), default=0.5,
                   help="probability that a clip, real and blended alike, is re-encoded as one "
                        f"H.264 stream at a CRF drawn uniformly in {CLIP_CRF[0]}-{CLIP_CRF[1]} "
                        "(FF++ c23 is CRF 23, c40 CRF 40); 0 switches it off (default 0.5)")
    v.add_argument("--resume", action="store_true",
                   help="continue the head in RUN/video_head from its last epoch")
    add_overwrite_flag(v, "RUN/video_head")


def run_command(args, prog: str) -> int:
    """Check the flags, claim ``RUN/video_head`` and train (``train-video``)."""
    from base.cli import flags_record, next_line, not_a_file
    from base.errors import UsageError
    from base.outputs import claim_output_dir
    from fusion.cascade.config import resolve_device
    stores = [p.strip() for flag in args.store for p in flag.split(",") if p.strip()]
    try:
        resolve_device(args.device)
        if not (Path(args.run) / "config.json").is_file():
            raise ValueError(f"--run {args.run}: not a run folder (no config.json)")
        if not stores:
            raise ValueError("--store: give at least one store")
        for path in stores:
            problem = not_a_file(path)
            if problem:
                raise ValueError(f"--store {path}: {problem}")
        if args.hidden % 2:
            raise ValueError(f"--hidden must be even, got {args.hidden}")
        if args.clip_codec > 1:
            raise ValueError(f"--clip-codec must be in [0, 1], got {args.clip_codec}")
        if args.clip_codec > 0:
            from fusion.cascade.codec import require_av
            try:
                require_av()
            except ImportError as exc:
                raise ValueError(f"--clip-codec {args.clip_codec}: {exc}") from None
        if args.lower_fraction > 1:
            raise ValueError(f"--lower-fraction must be in [0, 1], got {args.lower_fraction}")
        if args.resume and args.overwrite:
            raise ValueError("--resume continues the head in RUN/video_head, --overwrite "
                             "replaces it: give one")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out = Path(args.run) / HEAD_DIR
    with claim_output_dir(out, "--run", overwrite=args.overwrite, keep=args.resume,
                          inputs=stores, hint=", --resume to continue it"):
        result = train_video_head(
            args.run, stores, clip_len=args.clip_len, epochs=args.epochs, blends=args.blends,
            seed=args.seed, hidden=args.hidden, lr=args.lr, batch_size=args.batch_size,
            drift=args.drift, jitter=args.jitter, lower_fraction=args.lower_fraction,
            device=args.device, resume=args.resume,
            clip_augment=ClipCodec(args.clip_codec) if args.clip_codec > 0 else None,
            flags=flags_record(f"{prog} train-video", args, drop=("command", "overwrite")))
    best = result["best"]
    print(f"video head: best epoch {best['epoch']}, val clip AUC {best['val']['auc']:.4f} "
          f"(mean of frame logits on the same clips: {result['baseline']:.4f}); saved in {out}")
    print(next_line(f"{prog} eval", "--run", args.run, "--store", stores[0], "--split", "test"))
    return 0
