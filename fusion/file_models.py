"""The trained models that score files: a ``fusion.train`` run's head with the extractors
and face settings it was trained with (shared by :mod:`fusion.predict` and
:mod:`fusion.ensemble`)."""
from __future__ import annotations

import json

import numpy as np

from base.errors import UsageError
from pipelines.perturb import SEPARATOR

_INGEST_KEYS = ("frames", "clip_len", "size", "margin", "align", "detector", "min_face")


def load_model_dir(run_dir) -> tuple:
    """``(head, config)`` of a training run folder (or its ``model/`` folder)."""
    from fusion.evaluate import model_dir as find_model_dir
    from fusion.heads import load_head
    model_dir = find_model_dir(run_dir)
    config = json.loads((model_dir / "model.json").read_text())
    return load_head(model_dir), config


def ingest_config(config: dict, frames: int | None = None):
    """The face/frame settings of the training store, as recorded in the model."""
    from pipelines.ingest import IngestConfig
    recorded = config.get("run", {}).get("ingest", {}) or {}
    values = {k: recorded[k] for k in _INGEST_KEYS if k in recorded}
    if frames:
        values["frames"] = frames
    return IngestConfig(**values, diff_masks=False)


def _tuplify(value):
    """JSON lists back to the tuples extractors take as parameters."""
    return tuple(_tuplify(v) for v in value) if isinstance(value, list) else value


def extractors_for(config: dict) -> dict:
    """One extractor per model feature, built with the parameters recorded at training.

    Raises UsageError when this installation's extractor has another version than the
    one the model was trained on: its features would not mean the same thing.
    """
    from extract.registry import create_extractor
    recorded = config.get("run", {}).get("feature_attrs", {})
    out = {}
    for feature in config["features"]:
        attrs = recorded.get(feature, {})
        name = attrs.get("extractor") or feature.partition(SEPARATOR)[0]
        params = {k: _tuplify(v) for k, v in attrs.get("params", {}).items() if k != "perturbation"}
        extractor = create_extractor(name, **params)
        if attrs.get("version") and str(attrs["version"]) != str(extractor.version):
            raise UsageError(f"--model: feature {feature!r} was extracted with {name} version "
                             f"{attrs['version']}, this installation has version "
                             f"{extractor.version}; retrain the model")
        want = attrs.get("weights_sha256")
        if want and extractor.attributes().get("weights_sha256") != want:
            raise UsageError(f"--model: feature {feature!r} was extracted with weights of SHA-256 "
                             f"{want[:12]}..., but {params.get('run') or params.get('weights')} now "
                             "holds other weights; retrain the model or restore the run")
        out[feature] = extractor
    return out


def file_result(path, crops) -> dict:
    """The start of one file's result: ``file``, no ``faces`` yet, and an ``errors`` row per
    sampled frame that gave no face (``crops``: a :func:`pipelines.ingest.load_source` result)."""
    return {"file": str(path), "faces": [], "errors": [
        {"frame_index": e["frame_index"], "cause": e["cause"], "message": e["message"]}
        for e in crops.errors]}


def head_logits(head, config: dict, extractors: dict, crops):
    """``(decision values, FusionData, cascade masks or None)`` of a fusion head on the faces
    of ``crops`` (a :func:`pipelines.ingest.load_source` result with at least one record):
    every model feature extracted with its recorded extractor, then the head. The masks are
    the ``cascade`` feature's predicted masks, when the model has that feature (for
    overlays)."""
    import pandas as pd

    from extract.registry import FaceBatch
    from fusion.heads import FusionData
    batch = FaceBatch(np.stack(crops.crops), np.stack(crops.landmarks), np.stack(crops.masks),
                      np.zeros(len(crops.crops), bool),
                      np.asarray([r["video_id"] for r in crops.records]),
                      np.asarray([r["frame_index"] for r in crops.records], np.int64))
    blocks, masks = {}, None
    for feature, extractor in extractors.items():
        out = extractor.extract(batch)
        kind = "map" if config.get("inputs") == "map" else "vector"
        blocks[feature] = np.asarray(out[kind], np.float32)
        if getattr(extractor, "name", None) == "cascade" and "map" in out:  # its mask, for the overlay
            masks = np.asarray(out["map"], np.float32)[..., 0]
    meta = pd.DataFrame(crops.records)
    data = FusionData(blocks, np.zeros(len(meta), np.int64), meta)
    return np.asarray(head.decision_function(data), np.float64), data, masks
