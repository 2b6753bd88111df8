"""The trained cascade model as a feature family (``cascade``): its embeddings, its logit and
statistics of its predicted mask, per face crop.

This is how the cascaded localization model (:mod:`fusion.cascade`) joins the feature
store: ``python -m pipelines.extract --features cascade --cascade-run RUN`` stores, beside
``lbp``, ``dct`` or ``cnn``, what a trained run makes of each crop, so that ``fusion.train``,
``fusion.ablate``, ``fusion.importance`` and the late fusions treat it as any other feature.

A stacked model scores its own training rows far too well: the store records what the run
was trained and selected on (:func:`extract.cascade_net.run.trained_on`), and the fusion
commands refuse to fit or threshold a head on those rows (:mod:`fusion.leakage`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from base.errors import UsageError
from extract.deep import TorchExtractor, _autocast, _full_precision
from extract.geometry import landmark_hull_masks, landmarks_known
from extract.registry import FaceBatch, OutputSpec, register_extractor

#: Environment variable read when no ``run`` / ``--cascade-run`` is given.
CASCADE_RUN_ENV = "CLMF_CASCADE_RUN"
#: Mask probability at or above which a pixel counts as flagged (the IoU threshold of
#: ``fusion.cascade eval``).
FLAG_THRESHOLD = 0.5
MASK_COLUMNS = ("cascade_logit", "cascade_mask_mean", "cascade_mask_flagged", "cascade_mask_max",
                "cascade_mask_hull_mean")

_RUNS: dict = {}


def _loaded(run_dir: Path, device: str, which: str):
    """The run's model, loaded once per process, folder, file state and device."""
    from extract.cascade_net.run import WEIGHTS, load_cascade_run
    weights = run_dir / WEIGHTS.get(which, "")
    stat = weights.stat() if weights.is_file() else None
    key = (str(run_dir.resolve()), which, device, stat and (stat.st_size, stat.st_mtime_ns))
    if key not in _RUNS:
        _RUNS[key] = load_cascade_run(run_dir, device, which)
    return _RUNS[key]


def resize_crop(image: np.ndarray, size: int) -> np.ndarray:
    """An aligned crop at the model's input size, as ``fusion.cascade`` evaluation feeds it:
    unchanged at ``size``, else ``cv2.resize`` with INTER_AREA when shrinking and
    INTER_LINEAR when enlarging (``fusion.cascade.blend.resize_pair`` calls it for training
    and evaluation crops)."""
    import cv2
    if image.shape[0] == size and image.shape[1] == size:
        return image
    interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def hull_masks(landmarks: np.ndarray, crop_size: int, size: int) -> np.ndarray:
    """N x size x size bool: the convex hull of each face's 68 landmarks (crop pixels, scaled
    to ``size``; :func:`extract.geometry.landmark_hull_masks`); the whole square where a
    face's landmarks are unknown (NaN)."""
    lm = np.asarray(landmarks, np.float64) * (size / crop_size)
    out = landmark_hull_masks(lm, (size, size))
    out[~landmarks_known(lm)] = True
    return out


@register_extractor
class CascadeExtractor(TorchExtractor):
    """What a trained cascade run makes of each crop: embeddings, logit, mask statistics.

    The crop is resized to the run's input size as ``python -m fusion.cascade predict`` does
    (:func:`resize_crop`), scaled to [0, 1] and passed through the run's model (fp16 autocast
    on CUDA when the run trained with it, as its evaluation does). The vector holds, in order:

    * ``cascade_global_<i>``, ``cascade_in_<i>``, ``cascade_out_<i>`` (``hidden`` each, half
      the run's ``dim``): the embeddings of its global head (pooled fused features: mean, inside and outside the
      predicted mask) and of its region head inside and outside the mask;
    * ``cascade_logit``: the fake log-odds, ``logits[1] - logits[0]``; ``sigmoid(logit)`` is the
      ``score`` of ``fusion.cascade predict``;
    * ``cascade_mask_mean`` (mean mask probability, ``mask_area`` there),
      ``cascade_mask_flagged`` (fraction of pixels at p >= 0.5, ``flagged_area`` there),
      ``cascade_mask_max`` and ``cascade_mask_hull_mean``
      (mean probability inside the convex hull of the landmarks; over the whole crop where
      they are unknown), all at the model's input size.

    The ``map`` output is the mask probability resized to the crop (bilinear), for overlays;
    ``pipelines.extract`` keeps it only when ``--maps`` names ``cascade``.

    Parameters
    ----------
    run : str or None
        The run folder (``python -m fusion.cascade train --out RUN``); None reads the
        ``CLMF_CASCADE_RUN`` environment variable. A missing or damaged run is a
        :class:`UsageError` at construction, before any work.
    which : "best" | "last"
        The checkpoint: the epoch chosen on val (default) or the last one.
    device : "auto" | "cpu" | "cuda"
    batch_size : int
        Crops per forward pass (32).

    Returns
    -------
    vector : (3 * hidden + 5,) float32; map : (H, W, 1) float32 in [0, 1]; valid always True.
    """

    name = "cascade"
    version = "1"
    needs = ()
    defaults = {"run": None, "which": "best", "device": "auto", "batch_size": 32}

    def __init__(self, **params):
        super().__init__(**params)
        run = self.params["run"] or os.environ.get(CASCADE_RUN_ENV) or None
        if run is None:
            raise UsageError(f"the cascade feature needs a trained cascade run: pass --cascade-run "
                             f"RUN (a folder of `python -m fusion.cascade train`) or set "
                             f"{CASCADE_RUN_ENV}=RUN")
        self.run_dir = Path(run).expanduser().resolve()
        self.params["run"] = str(self.run_dir)
        self._run = _loaded(self.run_dir, self.device, self.params["which"])

    def columns(self) -> tuple:
        h = self._run.hidden
        return tuple(f"cascade_{part}_{i}" for part in ("global", "in", "out") for i in range(h)) + MASK_COLUMNS

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        cols = self.columns()
        return {"vector": OutputSpec("vector", (len(cols),), "float32", cols),
                "map": OutputSpec("map", (size, size, 1), "float32")}

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        import cv2
        import torch
        run, n = self._run, len(batch)
        crop = batch.images.shape[1]
        hulls = hull_masks(batch.landmarks, crop, run.size)
        vectors = np.zeros((n, len(self.columns())), np.float32)
        maps = np.zeros((n, crop, crop, 1), np.float32)
        bs = self.params["batch_size"]
        with torch.inference_mode():
            for start in range(0, n, bs):
                stop = min(start + bs, n)
                rgb = np.stack([resize_crop(img, run.size) for img in batch.images[start:stop]])
                x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float().div_(255).to(self.device)
                with _autocast(self.device) if run.amp else _full_precision(self.device):
                    out = run.model(x)
                logits = out["logits"].float()
                prob = torch.sigmoid(out["mask_logits"].float())[:, 0]
                hull = torch.from_numpy(hulls[start:stop]).to(prob.device)
                stats = torch.stack([
                    logits[:, 1] - logits[:, 0], prob.mean((1, 2)),
                    (prob >= FLAG_THRESHOLD).float().mean((1, 2)), prob.amax((1, 2)),
                    (prob * hull).sum((1, 2)) / hull.sum((1, 2)).clamp_min(1)], 1)
                parts = [out["embed_global"], out["embed_in"], out["embed_out"], stats]
                vectors[start:stop] = torch.cat([p.float() for p in parts], 1).cpu().numpy()
                for k, p in enumerate(prob.cpu().numpy()):
                    resized = p if p.shape[0] == crop else cv2.resize(p, (crop, crop),
                                                                      interpolation=cv2.INTER_LINEAR)
                    maps[start + k, ..., 0] = np.clip(resized, 0.0, 1.0)
        return {"vector": vectors, "map": maps, "valid": np.ones(n, bool)}

    def attributes(self) -> dict:
        """Parameters (``run`` as an absolute path: ``fusion.predict`` reloads it), the weights'
        SHA-256, the run's input size, and ``trained_on``: the stores, splits and sample ids
        the run was trained and selected on (:func:`extract.cascade_net.run.trained_on`)."""
        return {**super().attributes(), "weights_sha256": self._run.weights_sha256,
                "run_size": self._run.size, "trained_on": self._run.trained_on}

