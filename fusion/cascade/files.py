"""Score image and video files with a cascade run: ``python -m fusion.predict --model RUN``.

:func:`load_file_scorer` reads a cascade run folder (best checkpoint) and returns a
:class:`CascadeFileScorer`, which :mod:`fusion.predict` uses in place of a fusion head:
each file's faces are detected and aligned as the run's first training store's were (its
recorded ``run`` settings), resized to the model's input size as in training, and scored.
A face's result has the fake probability (``score``), its ``logit`` (``logit(fake) -
logit(real)`` of the classification head), ``fake`` (score >= 0.5, the threshold cascade
eval uses) and its part verdict (``parts``: the mean predicted mask probability per region
of :data:`pipelines.face_parts.VERDICT_PARTS`, and ``verdict``, e.g.
``"mouth 0.91, eyes 0.08, nose 0.05"``). A file's logit is the mean of its faces'; its parts
the mean of theirs. When the run has a video head (:mod:`fusion.cascade.video`), a video
also gets ``video_head_logit``, ``video_head_score`` (its probability), ``video_head_fake``
and ``video_head_clip_len``: the head's mean logit over the video's clips of ``clip_len``
consecutive scored frames.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.face_parts import VERDICT_PARTS, part_means, verdict_regions_batch, verdict_text

__all__ = ["CascadeFileScorer", "load_file_scorer", "INGEST_KEYS"]

#: Settings of the training store that say how a file becomes crops.
INGEST_KEYS = ("frames", "clip_len", "size", "margin", "align", "detector", "min_face")


class CascadeFileScorer:
    """A loaded cascade run with the interface :mod:`fusion.predict` needs of a head
    (``probability``, ``decision_of``) plus :meth:`score_file`."""

    def __init__(self, model, config, device, video_head=None):
        self.model, self.config, self.device = model, config, device
        self.video_head = video_head  # (VideoHead, head.json) or None

    @staticmethod
    def probability(logits) -> np.ndarray:
        """Fake probability of decision values (the sigmoid of the logit difference)."""
        return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))

    @staticmethod
    def decision_of(probabilities) -> np.ndarray:
        p = np.clip(np.asarray(probabilities, np.float64), 1e-12, 1 - 1e-12)
        return np.log(p / (1 - p))

    def score_crops(self, crops: np.ndarray, landmarks: np.ndarray) -> dict:
        """``{"logit": N, "score": N, "parts": N x P, "pooled": N x D}`` of aligned crops (N x S x S x 3
        uint8) and their landmarks (N x 68 x 2, crop pixels; NaN rows give NaN parts)."""
        import torch

        from fusion.cascade.data import to_model_inputs
        from fusion.cascade.inference import autocast
        n = len(crops)
        batch = {"rgb": crops, "mask": np.zeros(crops.shape[:3], np.uint8),
                 "label": np.zeros(n, np.int64), "mask_valid": np.zeros(n, bool)}
        x = to_model_inputs(batch, self.config.size, self.device)
        self.model.eval()
        with torch.no_grad(), autocast(self.device, self.config.amp):
            out = self.model(x["rgb"])
        logits = out["logits"].float()
        logit = (logits[:, 1] - logits[:, 0]).cpu().numpy().astype(np.float64)
        prob = torch.sigmoid(out["mask_logits"].float())[:, 0].cpu().numpy()
        regions = verdict_regions_batch(landmarks, crops.shape[1], self.config.size)
        return {"logit": logit, "score": self.probability(logit), "parts": part_means(prob, regions),
                "pooled": out["pooled"].float().cpu().numpy()}

    def score_file(self, path, source, ingest) -> dict:
        """The result of file ``path`` (its :class:`pipelines.samples.Source` ``source``,
        cropped by ``ingest``), laid out as :func:`fusion.predict.score_file`'s, with the
        part verdicts added (``parts`` and ``verdict`` per face and per file)."""
        from fusion.file_models import file_result
        from pipelines.ingest import load_source
        crops = load_source(source, ingest)
        result = {**file_result(path, crops), "warnings": []}
        if not crops.records:
            result["score"] = None
            return result
        images = np.stack(crops.crops)
        scored = self.score_crops(images, np.stack(crops.landmarks))
        for r, s, z, parts in zip(crops.records, scored["score"], scored["logit"], scored["parts"]):
            result["faces"].append({"frame_index": int(r["frame_index"]), "score": float(s),
                                    "logit": float(z), "fake": bool(z >= 0.0),
                                    "parts": _parts_dict(parts), "verdict": verdict_text(parts)})
        result["logit"] = float(np.mean(scored["logit"]))
        result["score"] = float(self.probability(result["logit"]))
        result["fake"] = bool(result["logit"] >= 0.0)
        with np.errstate(invalid="ignore"):
            mean_parts = np.nanmean(scored["parts"], axis=0) if np.isfinite(scored["parts"]).any() \
                else np.full(len(VERDICT_PARTS), np.nan)
        result["parts"] = _parts_dict(mean_parts)
        result["verdict"] = verdict_text(mean_parts)
        if self.video_head is not None and source.kind == "video":
            from fusion.cascade.video import video_logits
            head, record = self.video_head
            order = np.argsort([int(r["frame_index"]) for r in crops.records], kind="stable")
            z = float(video_logits(head, scored["pooled"], scored["logit"], [("video", order)],
                                   int(record["clip_len"]))[0])
            result.update(video_head_logit=z, video_head_score=float(self.probability(z)),
                          video_head_fake=bool(z >= 0.0),
                          video_head_clip_len=int(record["clip_len"]))
        result["_crops"] = images
        return result


def _parts_dict(row) -> dict:
    return {p: (float(v) if np.isfinite(v) else None) for p, v in zip(VERDICT_PARTS, row)}


def load_file_scorer(run_dir, device: str = "auto") -> tuple[CascadeFileScorer, dict]:
    """``(scorer, config)`` of a cascade run folder: ``config`` is laid out as a
    ``fusion.train`` model's (``run``: the face/frame settings under ``ingest``, the
    threshold 0 in logit units, i.e. probability 0.5). Raises ValueError for a run without
    a recorded training store."""
    import json

    from fusion.cascade.checkpoints import load_run
    from fusion.cascade.config import resolve_device
    from fusion.cascade.video import load_video_head
    dev = resolve_device(device)
    model, config, _ = load_run(run_dir, dev)
    saved = json.loads((Path(run_dir) / "config.json").read_text())
    stores = saved.get("store_runs") or []
    if not stores or not isinstance(stores[0], dict):
        raise ValueError(f"{run_dir}: the run records no training store settings (store_runs), "
                         "so a file's faces cannot be cropped as its training crops were")
    ingest = {k: stores[0][k] for k in INGEST_KEYS if k in stores[0]}
    record = {"features": [], "inputs": "cascade",
              "run": {"ingest": ingest, "threshold": 0.0, "threshold_units": "logit",
                      "threshold_note": "the cascade's fixed fake probability 0.5",
                      "warnings": []}}
    return CascadeFileScorer(model, config, dev, load_video_head(run_dir, dev)), record
