"""Evaluation and prediction of a trained cascade run on a store.

:func:`run_inference` scores every sample of a store split (classification scores, predicted
mask areas, localization metrics against the stored masks and mask-free baselines);
:func:`evaluate` writes ``metrics.json``, ``predictions.csv``, the ROC/DET/score plots and
overlays of a run's best checkpoint; :func:`predict` writes the scores and overlays alone.
Training calls :func:`run_inference` on its validation draw after every epoch.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fusion.cascade.checkpoints import load_run
from fusion.cascade.config import resolve_device, write_json
from fusion.cascade.data import StoreMaps, to_model_inputs
from fusion.cascade.edit_table import edit_localization
from fusion.cascade.localization import LocalizationAccumulator
from fusion.cascade.localization import iou_f1, prior_at_area
from fusion.cascade.mask_threshold import GRID as THRESHOLD_GRID
from fusion.cascade.mask_threshold import REAL_AREA_BUDGET, choose_threshold, run_val_set
from fusion.cascade.losses import CascadeLoss
from fusion.cascade.overlays import write_overlays
from fusion.cascade.video import has_video_head, video_head_metrics
from fusion.cascade.parts import PartVerdicts, add_part_columns, part_verdict_report
from fusion.metrics import compute_metrics, identity_clusters
from fusion.per_method import add_per_method


def autocast(device: torch.device, amp: bool):
    """fp16 autocast on CUDA when ``amp`` is on; a no-op context elsewhere."""
    return torch.autocast(device_type=device.type, dtype=torch.float16,
                          enabled=amp and device.type == "cuda")


@torch.no_grad()
def run_inference(model, data, size: int, device, batch_size: int = 64,
                  amp: bool = True, criterion: CascadeLoss | None = None, keep_masks: int = 0,
                  progress: bool = False, baselines: dict | None = None, keep_reals: int = 0,
                  parts: bool = False, pooled: bool = False, mask_threshold: float = 0.5):
    """Scores and localization metrics of ``model`` on every sample of ``data`` (a
    :class:`StoreMaps` or :class:`fusion.cascade.data.ArrayMaps`).

    Returns a dict: ``scores`` (N fake probabilities), ``logits`` (N fake-minus-real logits,
    float32: the same ranking without the softmax's saturation), ``area`` (N mean predicted mask
    probability), ``flagged_area`` (N fraction of pixels at or above ``mask_threshold``, the
    threshold of the model's IoU and F1; the baselines' masks keep 0.5),
    ``localization`` (:class:`LocalizationAccumulator` result over fakes with valid masks),
    ``loss`` (mean unweighted terms when ``criterion`` is given) and ``examples`` (the first
    ``keep_masks`` samples' crops, predicted and true masks, for overlays; fakes with a
    mask first). ``baselines`` maps a name to a function ``positions -> K x size x size``
    mask probabilities that never look at the image; each is scored on the same fakes and
    masks as the model, under ``baselines`` in the result. ``keep_reals`` adds
    ``real_examples`` (same layout as ``examples``): the real samples with the largest
    flagged area (then mean mask probability), largest first -- the false-positive masks.
    ``parts`` (a :class:`StoreMaps` with landmarks) adds ``parts``: the part verdicts of
    :class:`fusion.cascade.parts.PartVerdicts` (else ``parts`` is None). ``pooled`` adds
    ``pooled``: the model's N x 3 dim pooled embeddings (float32; the video head's input),
    else None.
    """
    import heapq
    model.eval()
    scores, areas = np.zeros(len(data), np.float32), np.zeros(len(data), np.float32)
    logits = np.zeros(len(data), np.float32)
    flagged = np.zeros(len(data), np.float32)
    acc = LocalizationAccumulator(mask_threshold)
    baselines = baselines or {}
    baseline_acc = {name: LocalizationAccumulator() for name in baselines}
    totals, seen = {}, 0
    examples = {"fakes": [], "others": []}
    top_reals = []  # min-heap of ((flagged, area), position, example)
    verdicts = PartVerdicts(len(data)) if parts else None
    embeddings = None
    batches = data.batches(batch_size)
    if progress:
        from tqdm import tqdm
        batches = tqdm(batches, total=math.ceil(len(data) / batch_size), desc="inference", leave=False)
    for b in batches:
        x = to_model_inputs(b, size, device)
        with autocast(device, amp):
            out = model(x["rgb"])
        prob = torch.sigmoid(out["mask_logits"].float())
        pos = b["positions"]
        scores[pos] = torch.softmax(out["logits"].float(), 1)[:, 1].cpu().numpy()
        logits[pos] = (out["logits"][:, 1].float() - out["logits"][:, 0].float()).cpu().numpy()
        areas[pos] = prob.mean((1, 2, 3)).cpu().numpy()
        flagged[pos] = (prob >= acc.threshold).float().mean((1, 2, 3)).cpu().numpy()
        if pooled:
            if embeddings is None:
                embeddings = np.zeros((len(data), out["pooled"].shape[1]), np.float32)
            embeddings[pos] = out["pooled"].float().cpu().numpy()
        if criterion is not None:
            _, terms = criterion(out, x)
            for k, v in terms.items():
                totals[k] = totals.get(k, 0.0) + v * len(pos)
        seen += len(pos)
        if verdicts is not None:
            verdicts.update_from_landmarks(pos, prob[:, 0].cpu().numpy(), x["mask"][:, 0].cpu().numpy(),
                                           b["mask_valid"], data.landmarks[pos], data.crop_size)
        sel = (b["label"] == 1) & b["mask_valid"]
        if sel.any():
            methods = data.meta["method"].to_numpy()[pos[sel]]
            truth = x["mask"][torch.from_numpy(sel).to(prob.device)].cpu().numpy()
            acc.update(prob[torch.from_numpy(sel).to(prob.device)].cpu().numpy(), truth, methods)
            for name, fn in baselines.items():
                baseline_acc[name].update(fn(pos[sel])[:, None], truth, methods)
        if keep_masks:
            # Overlays show fakes with a mask first (where a mask can be judged), then others.
            for i in range(len(pos)):
                pool = examples["fakes"] if sel[i] else examples["others"]
                if len(pool) < keep_masks:
                    pool.append((x["rgb"][i].permute(1, 2, 0).cpu().numpy(), prob[i, 0].cpu().numpy(),
                                 x["mask"][i, 0].cpu().numpy(), bool(b["mask_valid"][i]), int(pos[i])))
        for i in np.flatnonzero(b["label"] == 0) if keep_reals else ():
            key = (float(flagged[pos[i]]), float(areas[pos[i]]))
            if len(top_reals) == keep_reals and key <= top_reals[0][0]:
                continue
            item = (key, int(pos[i]), (x["rgb"][i].permute(1, 2, 0).cpu().numpy(), prob[i, 0].cpu().numpy(),
                                      x["mask"][i, 0].cpu().numpy(), bool(b["mask_valid"][i]), int(pos[i])))
            (heapq.heappush if len(top_reals) < keep_reals else heapq.heapreplace)(top_reals, item)
    fields = ("rgb", "prob", "mask", "mask_valid", "positions")
    chosen = (examples["fakes"] + examples["others"])[:keep_masks]
    examples = {key: [c[j] for c in chosen] for j, key in enumerate(fields)}
    reals = [item[2] for item in sorted(top_reals, key=lambda t: (t[0], -t[1]), reverse=True)]
    return {"scores": scores, "logits": logits, "area": areas, "flagged_area": flagged, "localization": acc.result(),
            "real_examples": {key: [c[j] for c in reals] for j, key in enumerate(fields)},
            "baselines": {name: a.result() for name, a in baseline_acc.items()},
            "loss": {k: v / max(seen, 1) for k, v in totals.items()}, "examples": examples,
            "parts": verdicts.result() if verdicts is not None else None, "pooled": embeddings}


def threshold_curves(model, data, size: int, device, batch_size: int = 64, amp: bool = True,
                     grid=THRESHOLD_GRID) -> dict:
    """For every threshold of ``grid``: the mean flagged area of ``data``'s reals and the
    mean IoU and F1 of its fakes with masks (one forward pass over ``data``, a
    :class:`~fusion.cascade.data.StoreMaps` or :class:`~fusion.cascade.data.ArrayMaps`)."""
    grid = np.asarray(grid, np.float64)
    flagged, iou, f1 = (np.zeros(len(grid)) for _ in range(3))
    n_real = n_fake = 0
    model.eval()
    with torch.no_grad():
        for b in data.batches(batch_size):
            x = to_model_inputs(b, size, device)
            with autocast(device, amp):
                out = model(x["rgb"])
            prob = torch.sigmoid(out["mask_logits"].float())[:, 0].cpu().numpy()
            truth = x["mask"][:, 0].cpu().numpy() > 0.5
            reals = np.asarray(b["label"]) == 0
            fakes = (np.asarray(b["label"]) == 1) & np.asarray(b["mask_valid"], bool)
            n_real, n_fake = n_real + int(reals.sum()), n_fake + int(fakes.sum())
            for k, t in enumerate(grid):
                binary = prob >= t
                if reals.any():
                    flagged[k] += binary[reals].mean((1, 2)).sum()
                if fakes.any():
                    i, f = iou_f1(binary[fakes], truth[fakes])
                    iou[k] += i.sum()
                    f1[k] += f.sum()
    nan = float("nan")
    return {"threshold": grid,
            "real_flagged_area": flagged / n_real if n_real else np.full(len(grid), nan),
            "fake_iou": iou / n_fake if n_fake else np.full(len(grid), nan),
            "fake_f1": f1 / n_fake if n_fake else np.full(len(grid), nan),
            "n_real": n_real, "n_fake": n_fake}


def _predictions_frame(data: StoreMaps, result: dict) -> pd.DataFrame:
    frame = data.meta[["sample_id", "split", "method", "video_id", "frame_index", "label"]].copy()
    frame["score"] = result["scores"]
    frame["mask_area"] = result["area"]
    frame["flagged_area"] = result["flagged_area"]
    return add_part_columns(frame, result.get("parts"))


def hull_masks(landmarks: np.ndarray, crop_size: int, size: int) -> np.ndarray:
    """K x size x size float32: the whole-face convex hull of each sample's 68 landmarks
    (crop coordinates), drawn at the model's input size; all zero where landmarks are NaN."""
    from pipelines.synthesis import face_hull_mask
    out = np.zeros((len(landmarks), size, size), np.float32)
    scale = size / crop_size
    for i, lm in enumerate(np.asarray(landmarks, np.float64)):
        if np.isfinite(lm).all():
            out[i] = face_hull_mask(lm * scale, (size, size))
    return out


def localization_report(result: dict, data: StoreMaps, prior: np.ndarray | None) -> dict:
    """The ``localization`` block of ``metrics.json``: the model's scores, the ``prior``
    and ``hull`` baselines, the predicted mask area on reals and the gains over the prior."""
    report = {**result["localization"]}
    report.update(result["baselines"])
    labels = data.labels
    reals = labels == 0
    report["real_mask_area"] = float(result["area"][reals].mean()) if reals.any() else None
    report["fake_mask_area"] = float(result["area"][~reals].mean()) if (~reals).any() else None
    # the area of the binary mask that IoU and F1 score (p >= threshold)
    flagged = result.get("flagged_area")
    if flagged is not None:
        report["real_flagged_area"] = float(flagged[reals].mean()) if reals.any() else None
        report["fake_flagged_area"] = float(flagged[~reals].mean()) if (~reals).any() else None
    if prior is not None:
        report["prior_mask_area"] = float(np.mean(prior >= 0.5))
    model_all, prior_all = report["all"], report.get("prior", {}).get("all")
    if prior_all and model_all["n"]:
        report["gain_over_prior"] = {k: model_all[k] - prior_all[k]
                                     for k in ("pixel_auc", "iou", "f1")
                                     if model_all[k] is not None and prior_all[k] is not None}
    return report


def evaluate(run_dir, store_path, split: str = "test", out_dir=None, device: str = "auto",
             batch_size: int = 64, overlays: int = 8, n_boot: int = 1000,
             command: str | None = None, mask_threshold: float | str = 0.5,
             real_area_budget: float = REAL_AREA_BUDGET) -> dict:
    """Evaluate a run's best checkpoint on ``split`` of a store; write ``metrics.json``,
    ``predictions.csv``, ``roc.png``, ``det.png``, ``scores.png`` and overlay PNGs to
    ``out_dir``. Returns the metrics (the CLI adds ``report.html``, :mod:`fusion.report`).

    Localization is reported beside three baselines that never look at the image: ``prior``,
    the constant mean training fake mask; ``prior_area``, its highest pixels, as many as the
    training masks' mean area (:func:`fusion.cascade.localization.prior_at_area`: not empty
    where the mean mask is diffuse); and ``hull``, the whole-face landmark hull; the
    headline is ``gain_over_prior``. ``real_mask_area`` is the mean predicted mask
    probability on the real samples (ideally 0), ``real_flagged_area`` the mean fraction of
    their pixels at or above the mask threshold (the binary mask IoU scores).

    ``mask_threshold``: that threshold, 0.5 by default; ``"val"`` chooses it on the run's
    own validation set with ``real_area_budget`` (:mod:`fusion.cascade.mask_threshold`),
    recorded under ``mask_threshold`` in the metrics.

    ``per_edit_localization`` and ``localization_headline``
    (:func:`fusion.cascade.edit_table.edit_localization`): per method, the model's pixel
    AUC, IoU and F1 beside the prior's and the hull's on the same fakes and the frame AUC;
    the headline is the IoU gain over the better baseline, for whole-face and local edits
    apart. ``part_verdicts`` (:func:`fusion.cascade.parts.part_verdict_report`): per face
    part, the AUC of its mean mask probability for "was this part changed?";
    ``predictions.csv`` gets the ``part_<name>`` means and a ``parts`` verdict text.

    ``overlays`` reals with the largest flagged area also get an overlay, in
    ``overlays/reals/`` (false-positive masks to inspect). ``warnings`` holds the
    classification's warnings (and one when its AUC is below chance, or a method has few
    videos); ``per_method`` the frame and video AUC of every kind of fake against all reals
    with CIs by video (:func:`fusion.per_method.per_method_table`); ``provenance`` the
    command line (``command``), code version, git commit, store SHA-256 and the training
    run's configuration, as :func:`fusion.scoring.provenance` records them.
    """
    from fusion import scoring
    from stores import open_store

    dev = resolve_device(device)
    model, config, info = load_run(run_dir, dev)
    out_dir = Path(out_dir or Path(run_dir) / f"eval_{split}")
    if mask_threshold == "val":
        curves = threshold_curves(model, run_val_set(config), config.size, dev, batch_size,
                                  config.amp)
        chosen = {**choose_threshold(curves, real_area_budget), "chosen_on": "val"}
    else:
        chosen = {"value": float(mask_threshold), "chosen_on": "given"}
    with open_store(store_path) as store:
        data = StoreMaps(store, split, cache_bytes=0)
        if len(data) == 0:
            raise ValueError(f"{store_path}: no samples in split {split!r}")
        prior = info["prior_mask"]
        baselines = {"hull": lambda pos: hull_masks(data.landmarks[pos], data.crop_size,
                                                    config.size)}
        if prior is not None:
            baselines["prior"] = lambda pos: np.broadcast_to(prior, (len(pos),) + prior.shape)
            at_area = prior_at_area(prior)
            baselines["prior_area"] = lambda pos: np.broadcast_to(at_area,
                                                                  (len(pos),) + at_area.shape)
        result = run_inference(model, data, config.size, dev, batch_size, config.amp,
                               keep_masks=overlays, progress=True, baselines=baselines,
                               keep_reals=overlays, parts=True, pooled=has_video_head(run_dir),
                               mask_threshold=chosen["value"])
        meta = data.meta
        metrics = {
            "run": str(run_dir), "store": str(store_path), "split": split, "n": len(data),
            "checkpoint_epoch": info.get("epoch"),
            "classification": compute_metrics(meta["label"].to_numpy(), result["scores"],
                                              meta["method"].to_numpy(), meta["video_id"].to_numpy(),
                                              threshold=0.5, n_boot=n_boot,
                                              identities=identity_clusters(meta["identity"],
                                                                           meta["video_id"])),
            # masks are compared at the model's input size (crops resized to config.size)
            "localization": {**localization_report(result, data, prior), "size": config.size},
            "mask_threshold": chosen,
        }
        metrics.update(video_head_metrics(run_dir, result["pooled"], result["logits"], data, dev,
                                          n_boot, out_dir))
        metrics["part_verdicts"] = part_verdict_report(result["parts"])
        metrics.update(edit_localization(metrics))
        c = metrics["classification"]
        metrics["warnings"] = scoring.set_warnings(split, c)
        add_per_method(metrics, meta, result["logits"], n_boot)  # per kind of fake, by video
        metrics["provenance"] = scoring.provenance(
            [store_path], getattr(config, "seed", None),
            {"run": str(run_dir), "store": str(store_path), "split": split, "overlays": overlays,
             "n_boot": n_boot, "batch_size": batch_size, "device": device, "train": config.to_json()},
            command)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "metrics.json", metrics)
        frame = _predictions_frame(data, result)
        frame.to_csv(out_dir / "predictions.csv", index=False)
        from fusion.scoring import write_plots  # ROC, DET and histograms as fusion.train draws them
        metrics["plots"] = [str(p) for p in write_plots(frame, out_dir, 0.5, title=split)]
        metrics["overlays"] = write_overlays(out_dir, data, result, result["scores"])
        metrics["real_overlays"] = write_overlays(out_dir, data, result, result["scores"], "real_examples")
    return metrics


def predict(run_dir, store_path, out_dir, split: str | None = None, device: str = "auto",
            batch_size: int = 64, overlays: int = 16) -> pd.DataFrame:
    """Scores (``predictions.csv``, with the part verdicts: ``part_<name>`` and ``parts``)
    and mask overlays of every sample (or of ``split``)."""
    from stores import open_store

    dev = resolve_device(device)
    model, config, info = load_run(run_dir, dev)
    out_dir = Path(out_dir)
    with open_store(store_path) as store:
        data = StoreMaps(store, split, cache_bytes=0)
        result = run_inference(model, data, config.size, dev, batch_size,
                               config.amp, keep_masks=overlays, progress=True, parts=True)
        frame = _predictions_frame(data, result)
        out_dir.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out_dir / "predictions.csv", index=False)
        write_overlays(out_dir, data, result, result["scores"])
    return frame
