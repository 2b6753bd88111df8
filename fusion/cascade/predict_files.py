"""Scoring image and video files with a cascade run, for ``python -m fusion.predict``.

:class:`CascadeFileScorer` stands where :mod:`fusion.predict` puts a ``fusion.train`` head:
it decodes a file and detects and aligns its faces as the run's first training store did
(``store_runs[0]`` of the run's ``config.json``), scores every face with the run's best
checkpoint (``logit`` = the fake-minus-real logit, ``score`` = its sigmoid, the fake
probability) and gives the file the mean of its face logits, judged at probability 0.5
(logit 0; a cascade run saves no tuned threshold). When the run has a video head
(:mod:`fusion.cascade.video`), a video also gets ``video_head_logit``, ``video_head_score``
(its probability) and ``video_head_fake``: the head's mean logit over the video's clips of
``clip_len`` consecutive scored frames.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["CascadeFileScorer"]


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


class CascadeFileScorer:
    """A cascade run as :mod:`fusion.predict` uses a model; see the module docstring.

    Attributes
    ----------
    config : dict
        What :mod:`fusion.predict` reads of a model's ``model.json``: ``run`` (threshold 0
        in logit units, no warnings) and ``store_run`` (the face/frame settings).
    """

    def __init__(self, run_dir, device: str = "auto"):
        from fusion.cascade.checkpoints import load_run
        from fusion.cascade.config import resolve_device
        from fusion.cascade.video import load_video_head
        self.device = resolve_device(device)
        self.model, self.train_config, _ = load_run(run_dir, self.device)
        self.video_head = load_video_head(run_dir, self.device)
        saved = json.loads((Path(run_dir) / "config.json").read_text())
        store_runs = saved.get("store_runs") or [{}]
        self.config = {"run": {"threshold": 0.0, "threshold_units": "logit",
                               "threshold_from": None, "warnings": [],
                               "ingest": store_runs[0] or {}},
                       "inputs": "map"}

    @staticmethod
    def probability(logits) -> np.ndarray:
        """Fake probability of decision values (logits)."""
        return _sigmoid(logits)

    @staticmethod
    def decision_of(probability) -> np.ndarray:
        """Decision value (logit) of fake probabilities."""
        p = np.clip(np.asarray(probability, np.float64), 1e-12, 1 - 1e-12)
        return np.log(p / (1 - p))

    def score_file(self, path, source, ingest) -> dict:
        """Score the image or video ``path`` (``source``: its :class:`pipelines.samples.Source`,
        ``ingest``: a :class:`pipelines.ingest.IngestConfig`); the result has
        :func:`fusion.predict.score_file`'s layout, plus the video head's fields when the
        run has one and the file is a video."""
        from fusion.cascade.video import frame_features, video_logits
        from pipelines.ingest import load_source
        crops = load_source(source, ingest)
        result = {"file": str(path), "faces": [], "nonfinite": {}, "warnings": [], "errors": [
            {"frame_index": e["frame_index"], "cause": e["cause"], "message": e["message"]}
            for e in crops.errors]}
        if not crops.records:
            result["score"] = None
            return result
        images = np.stack(crops.crops)
        pooled, logits = frame_features(self.model, images, self.train_config.size, self.device,
                                        amp=self.train_config.amp)
        scores = _sigmoid(logits)
        frames = [int(r["frame_index"]) for r in crops.records]
        result["faces"] = [{"frame_index": f, "score": float(s), "logit": float(z),
                            "fake": bool(z >= 0.0)} for f, s, z in zip(frames, scores, logits)]
        result["logit"] = float(np.mean(logits))
        result["score"] = float(_sigmoid(result["logit"]))
        result["fake"] = bool(result["logit"] >= 0.0)
        if self.video_head is not None and source.kind == "video":
            head, record = self.video_head
            order = np.argsort(frames, kind="stable")
            z = float(video_logits(head, pooled, logits, [("video", order)],
                                   int(record["clip_len"]))[0])
            result.update(video_head_logit=z, video_head_score=float(_sigmoid(z)),
                          video_head_fake=bool(z >= 0.0),
                          video_head_clip_len=int(record["clip_len"]))
        result["_crops"] = images
        return result
