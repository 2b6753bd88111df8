"""Training of the cascaded localization model on one or more stores.

:func:`train` reads its settings from a :class:`~fusion.cascade.config.TrainConfig`
(:mod:`fusion.cascade.config`), opens the training sources, and runs the loop; every epoch
it writes the checkpoints of :mod:`fusion.cascade.checkpoints` and scores the validation
draw with :func:`fusion.cascade.inference.run_inference`.

Training reads split ``train`` of every ``--store`` and selects the epoch on split ``val``
(score: the mean of the validation AUC and mean IoU, whichever are defined; minus the loss
when neither is); the test split is never read. With ``sbi="online"`` the training samples
are the real rows and a fresh self-blend of each per epoch, and validation is a fixed draw
of self-blends of the *validation* reals (other videos, or other folders with
``val_folders``), so the checkpoint is chosen on identities the model did not train on.
With ``select_store`` (``--select-store``) the score also counts stores of real fakes that
never train (:mod:`fusion.cascade.selection`); the end of training logs the chosen epoch's
numbers in one line (:func:`fusion.cascade.selection.recipe_line`).

The optimiser is AdamW with a lower learning rate for the pretrained backbone
(``lr * backbone_lr``), a linear warm-up over ``warmup_epochs`` and a cosine decay to 0
(``schedule="cosine"``), all a function of the global step, so a resumed run continues
exactly as an uninterrupted one (randomness is derived from ``seed`` and the epoch number
only). On CUDA, mixed precision (``torch.autocast`` fp16 + ``GradScaler``) is on unless
``amp`` is False; on CPU everything runs in float32. Under ``torchrun`` the loop runs on
every rank (:mod:`fusion.cascade.distributed`): each trains on its share of the epoch's
batches, and rank 0 alone scores val and writes the run folder.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from fusion.cascade.blend import parse_augment, parse_augment_p
from fusion.cascade.checkpoints import (LAST_JSON, PRIOR_MASK, load_checkpoint, save_best,
                                        save_checkpoint)
from fusion.cascade.config import (TrainConfig, build_model, resolve_device, resumed_config,
                                   write_json, write_run_config)
from fusion.cascade.data import EpochBatches, TrainingSet, default_workers, to_model_inputs
from fusion.cascade.distributed import SINGLE, Ranks, rank_device
from fusion.cascade.inference import autocast, run_inference
from fusion.cascade.losses import LOSS_TERMS, CascadeLoss
from fusion.cascade.model import CascadeModel
from fusion.cascade.selection import SelectionSet, recipe_line, select_text
from fusion.cascade.splits import open_training_sources, validation_set
from fusion.metrics import compute_metrics


def _selection_score(auc: float, iou: float, loss: float) -> float:
    finite = [v for v in (auc, iou) if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else -float(loss)


def learning_rate_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the base learning rate at global ``step`` (0-based): linear warm-up
    from 1/warmup to 1 over ``warmup_steps``, then cosine decay to 0 at ``total_steps``
    (``schedule="cosine"``) or constant."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(total_steps - warmup_steps, 1)
    t = min(max(step - warmup_steps, 0) / span, 1.0)
    return 0.5 * (1 + math.cos(math.pi * t))


def train(config: TrainConfig, resume: bool = False, progress: bool = True, log=print,
          flags: dict | None = None, ranks: Ranks = SINGLE) -> dict:
    """Train (or resume) a run; returns ``{"best": best.json content, "history": [...]}``.

    ``flags`` (``{"command", "flags"}`` of :func:`base.cli.flags_record`) is saved in
    ``config.json`` beside the settings, so that ``--config RUN/config.json`` reruns the run.
    ``ranks`` (:func:`fusion.cascade.distributed.from_env`): this process's place among
    torchrun's; every rank returns the same history and best epoch, rank 0 alone logs and
    writes ``config.out``.
    """
    from stores import open_store

    config = ranks.on_main(lambda: resumed_config(config) if resume else config.validate())
    if not ranks.is_main:
        log, progress = (lambda *a, **k: None), False
    out = Path(config.out)
    device = rank_device(ranks, resolve_device(config.device))
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    augment = parse_augment(config.augment_names())
    stores = [open_store(p) for p in config.stores]
    select = None
    try:
        train_sources, val_sources = open_training_sources(config, stores)
        if config.select_stores:  # rank 0 alone scores them (never a gradient: selection.py)
            select = ranks.on_main(lambda: SelectionSet(
                config.select_stores, config.select_split, config.cache_mb << 20,
                {Path(s.path).resolve(): s.rows for s in train_sources}), share=False)
        train_set = TrainingSet(train_sources, config.sbi, config.keep_fakes, augment,
                                config.size, config.seed, parse_augment_p(config.augment_p),
                                config.epoch_reals, part_blend=config.part_blend,
                                codec_simd=config.codec_simd)
        # val: the same mix of whole-face and part blends, one fixed draw for the run
        val_set = validation_set(config, val_sources)
        n_reals = sum(int((s.labels == 0).sum()) for s in train_sources)
        if config.sbi == "online" and n_reals == 0:
            n_fakes = sum(len(s.labels) for s in train_sources)
            raise ValueError(f"--store {','.join(config.stores)}: no real faces in split 'train' "
                             f"({n_fakes} fakes only); self-blended training (--sbi online) "
                             "makes its fakes from reals: add a store of real faces")
        if train_set.n_items == 0:
            what = "real samples with landmarks" if config.sbi == "online" else "samples"
            raise ValueError(f"--store {','.join(config.stores)}: no {what} in split 'train'"
                             + (" (extract with --align face so landmarks are stored)"
                                if config.sbi == "online" else ""))
        crop = train_sources[0].crop_size
        if config.size > crop:
            log(f"warning: --size {config.size} is larger than the stores' {crop} px crops "
                f"(upsampled); extract with --size {config.size} for this preset")
        if train_set.skipped_no_landmarks:
            log(f"note: {train_set.skipped_no_landmarks} training reals have no landmarks and "
                "are not blended (left out)")
        labels_seen = {int(train_set.sources[s].labels[p]) for s, p in train_set.items}
        if config.sbi == "off" and labels_seen != {0, 1}:
            raise ValueError("--sbi off trains on the store's labels, but split 'train' holds "
                             f"only label {sorted(labels_seen)}; use --sbi online for a store "
                             "of real faces")
        return _train_loop(config, resume, progress, log, device, augment, stores, train_set,
                           val_set, out, flags, ranks, select)
    finally:
        for store in stores:
            store.close()
        if select is not None:
            select.close()


def _sample_ids(data: TrainingSet) -> list[str]:
    """The store sample ids of the rows ``data`` draws from (a real and its blends: one id)."""
    return [str(data.sources[s].meta["sample_id"].iloc[p]) for s, p in data.items]


def _param_groups(model: CascadeModel, config: TrainConfig) -> list[dict]:
    backbone = {id(p) for p in model.backbone_parameters()}
    scale = config.backbone_lr if config.backbone != "tiny" else 1.0
    groups = [{"params": [p for p in model.parameters() if id(p) in backbone],
               "lr_scale": scale, "name": "backbone"},
              {"params": [p for p in model.parameters() if id(p) not in backbone],
               "lr_scale": 1.0, "name": "heads"}]
    for g in groups:
        g["lr"] = config.lr * g["lr_scale"]
    return [g for g in groups if g["params"]]


def _start_or_resume(out: Path, resume: bool, model, opt, scaler, device, log):
    """``(history, epochs finished, best)``: restored from ``out``'s checkpoint when resuming,
    else a fresh start (refused when ``out`` holds a run)."""
    if resume and (out / LAST_JSON).is_file():
        history, start_epoch, best = load_checkpoint(out, model, opt, scaler, device)
        log(f"resuming {out} after epoch {start_epoch}")
        return history, start_epoch, best
    if (out / LAST_JSON).is_file():
        raise ValueError(f"--out {out} already holds a run; pass --resume to continue it or "
                         "choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    return [], 0, None


def _to_cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _share_state(ranks: Ranks, model, opt, scaler):
    """Rank 0's weights, optimizer and AMP scaler state (a resumed run's) on every rank."""
    state = ranks.broadcast({"model": _to_cpu(model.state_dict()),
                             "opt": _to_cpu(opt.state_dict()),
                             "scaler": scaler.state_dict()} if ranks.is_main else None)
    if not ranks.is_main:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])  # moves the state to the parameters' device
        if state["scaler"]:
            scaler.load_state_dict(state["scaler"])


def _steps_per_epoch(config, train_set, ranks: Ranks) -> int:
    """Optimizer steps of one epoch on every rank (the learning-rate schedule's unit)."""
    per_step = config.batch_size * ranks.world_size
    steps = max(1, math.ceil(len(train_set) / per_step))
    if ranks.active:
        n_batches = len(train_set.batch_plan(config.batch_size, 0))
        if n_batches < ranks.world_size:
            raise ValueError(f"--batch-size {config.batch_size}: split train makes {n_batches} "
                             f"mini-batches, fewer than the {ranks.world_size} ranks; lower "
                             "--batch-size or --nproc_per_node")
    return min(steps, config.max_steps) if config.max_steps else steps


def _train_loop(config, resume, progress, log, device, augment, stores, train_set, val_set, out,
                flags=None, ranks: Ranks = SINGLE, select: SelectionSet | None = None):
    model = build_model(config).to(device)
    criterion = CascadeLoss(config.loss)
    opt = torch.optim.AdamW(_param_groups(model, config), lr=config.lr,
                            weight_decay=config.weight_decay)
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    steps_per_epoch = _steps_per_epoch(config, train_set, ranks)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    history, start_epoch, best = ranks.on_main(
        lambda: _start_or_resume(out, resume, model, opt, scaler, device, log))
    if ranks.active and start_epoch:
        _share_state(ranks, model, opt, scaler)
    net = model
    if ranks.active:
        # a loss weight of 0 leaves its head out of the graph, which DDP must be told
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=len(criterion.active) < len(LOSS_TERMS))
    val_data = val_set.fixed() if ranks.is_main else None
    if ranks.is_main:
        write_run_config(out, config, {"stride": model.stride,
                                       "store_runs": [s.run for s in stores],
                                       "train_items": train_set.n_items,
                                       "val_samples": len(val_data),
                                       # what a stacked fusion must never fit on (fusion.leakage)
                                       "samples": {"train": _sample_ids(train_set),
                                                   "val": _sample_ids(val_set),
                                                   **({"select": select.sample_ids()}
                                                      if select else {})},
                                       **(flags or {}),
                                       **({"select": select.describe()} if select else {}),
                                       **({"world_size": ranks.world_size} if ranks.active
                                          else {})})
        log(f"training on {device} ({'AMP fp16' if use_amp else 'float32'}): "
            f"{train_set.n_items} train crops -> {len(train_set)} samples per epoch "
            f"(sbi {config.sbi}), {len(val_data)} val samples, backbone {config.backbone}, "
            f"size {config.size}, augment {','.join(augment) or 'none'}"
            + (f"; choosing on {select.n_samples} select samples too" if select else "")
            + (f"; {ranks.world_size} ranks, {config.batch_size * ranks.world_size} samples "
               "per step" if ranks.active else ""))
    # the same --workers processes build every epoch's batches (started once)
    epoch_loader = EpochBatches(train_set, config.batch_size,
                                default_workers() if config.workers is None else config.workers,
                                shuffle=True, max_steps=steps_per_epoch, rank=ranks.rank,
                                world_size=ranks.world_size)
    for epoch in range(start_epoch, config.epochs):
        epoch_seed = config.seed * 100003 + epoch
        torch.manual_seed(epoch_seed)
        net.train()
        totals, n_seen, t0 = {}, 0, time.perf_counter()
        # The prior baseline is the mean fake mask of the first epoch's batches, summed
        # as they pass (no second draw of the blends).
        fake_sum, n_fake = np.zeros((config.size, config.size), np.float64), 0
        batches = epoch_loader(epoch)
        if progress:
            from tqdm import tqdm
            batches = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}",
                           leave=False)
        for step, b in enumerate(batches):
            factor = learning_rate_factor(epoch * steps_per_epoch + step, total_steps,
                                          warmup_steps, config.schedule)
            for g in opt.param_groups:
                g["lr"] = config.lr * g["lr_scale"] * factor
            x = to_model_inputs(b, config.size, device)
            with autocast(device, config.amp):
                outputs = net(x["rgb"])
            loss, terms = criterion(outputs, x)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch + 1} step {step}: loss is {float(loss)}; "
                                         "lower --lr or check the store's maps for NaN")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            n = len(b["label"])
            if epoch == 0:
                fakes = (b["label"] == 1) & b["mask_valid"]
                fake_sum += b["mask"][fakes].sum(0)
                n_fake += int(fakes.sum())
            totals["total"] = totals.get("total", 0.0) + float(loss.detach()) * n
            for k, v in terms.items():
                totals[k] = totals.get(k, 0.0) + v * n
            n_seen += n
        seconds = time.perf_counter() - t0
        if ranks.active:  # every rank's samples in the epoch's means and the prior mask
            keys = list(totals)
            summed = ranks.sum([n_seen, n_fake, *(totals[k] for k in keys)]
                               + (fake_sum.ravel().tolist() if epoch == 0 else []))
            n_seen, n_fake = int(summed[0]), int(summed[1])
            totals = dict(zip(keys, summed[2:2 + len(keys)]))
            if epoch == 0:
                fake_sum = np.asarray(summed[2 + len(keys):]).reshape(fake_sum.shape)
        row = {"epoch": epoch + 1, "train": {k: v / max(n_seen, 1) for k, v in totals.items()},
               "samples_per_s": n_seen / max(seconds, 1e-9), "seconds": seconds,
               "lr": config.lr * learning_rate_factor((epoch + 1) * steps_per_epoch - 1,
                                                      total_steps, warmup_steps, config.schedule)}
        if epoch == 0 and ranks.is_main:
            np.save(out / PRIOR_MASK, (fake_sum / max(n_fake, 1)).astype(np.float32))
        row, best = ranks.on_main(lambda: _select_and_save(
            config, model, criterion, opt, scaler if use_amp else None, device, val_data, out,
            row, history, best, log, select))
        history.append(row)
    epoch_loader.close()
    if ranks.is_main:
        plot_history(history, out / "training.png")
        log(recipe_line(best))
    return {"best": best, "history": history, "config": config}


def _select_and_save(config, model, criterion, opt, scaler, device, val_data, out, row: dict,
                     history: list, best: dict | None, log,
                     select: SelectionSet | None = None) -> tuple[dict, dict]:
    """Score ``val_data`` (and the ``select`` stores: the score becomes
    :func:`fusion.cascade.selection.selection_score`), keep the best epoch and write the
    checkpoints and history (rank 0's part of an epoch); returns ``(row with val and
    selection score, best)``."""
    epoch = row["epoch"] - 1
    if len(val_data):
        val = run_inference(model, val_data, config.size, device,
                            batch_size=max(config.batch_size, 32), amp=config.amp,
                            criterion=criterion)
        labels = val_data.labels
        auc = (compute_metrics(labels, val["scores"], n_boot=0)["auc"]
               if len(set(labels.tolist())) == 2 else float("nan"))
        loc = val["localization"]["all"]
        val_loss = sum(config.loss.of(k) * v for k, v in val["loss"].items())
        real_area = (float(val["area"][labels == 0].mean()) if (labels == 0).any()
                     else float("nan"))
        row["val"] = {"auc": auc, "iou": loc["iou"], "pixel_auc": loc["pixel_auc"],
                      "f1": loc["f1"], "real_mask_area": real_area, "loss": val_loss,
                      **{f"loss_{k}": v for k, v in val["loss"].items()}}
        score = _selection_score(auc, loc["iou"], val_loss)
    else:
        score = -row["train"]["total"]  # no val split: keep the lowest training loss
        log("warning: no validation samples; the checkpoint is the lowest training loss")
    if select is not None:
        score = select.record(row, score, model, config.size, device,
                              max(config.batch_size, 32), config.amp)
    row["selection_score"] = score
    improved = best is None or score > best["selection_score"]
    if improved:
        best = {"epoch": epoch + 1, "selection_score": score, "val": row.get("val"),
                **{k: row[k] for k in ("select", "selection") if k in row}}
        save_best(out, model, best)
    save_checkpoint(out, model, opt, scaler.state_dict() if scaler is not None else None,
                    epoch + 1, history + [row], best)
    write_json(out / "history.json", history + [row])
    val_txt = (f" val auc {row['val']['auc']:.3f} iou {row['val']['iou']:.3f}"
               if "val" in row else "")
    log(f"epoch {epoch + 1}/{config.epochs}: loss {row['train']['total']:.4f} "
        + " ".join(f"{k} {v:.4f}" for k, v in row["train"].items() if k != "total")
        + f"{val_txt}{select_text(row)} ({row['samples_per_s']:.1f} samples/s)"
        + f"{' *' if improved else ''}")
    return row, best


def plot_history(history: list, path: Path):
    """Draw :func:`history_figure` to ``path`` (nothing for an empty history)."""
    if not history:
        return
    import matplotlib.pyplot as plt
    fig = history_figure(history)
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def history_figure(history: list):
    """Loss terms (left) and validation AUC / IoU (right; with ``--select-store`` also the
    select stores' frame and video AUC and the selection score) per epoch, every epoch a marker
    (a one-epoch run is one point per line, which a line alone does not show)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key in history[0]["train"]:
        ax1.plot(epochs, [r["train"].get(key, np.nan) for r in history], marker="o", label=key)
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_title("training loss terms (unweighted)")
    ax1.legend(fontsize=7)
    if "val" in history[0]:
        for key in ("auc", "iou", "pixel_auc"):
            ax2.plot(epochs, [r["val"][key] if r["val"][key] is not None else np.nan
                              for r in history], marker="o", label=f"val {key}")
        ax2.set_ylim(0, 1)
        ax2.legend(fontsize=7)
    if any("select" in r for r in history):  # --select-store: its AUCs and the chosen score
        for key, style in (("frame_auc", "s--"), ("video_auc", "^--")):
            ax2.plot(epochs, [r.get("select", {}).get(key, np.nan) for r in history], style,
                     label=f"select {key.replace('_', ' ')}")
        ax2.plot(epochs, [r["selection_score"] if "select" in r else np.nan for r in history],
                 "k:", marker="o", label="selection score")
        ax2.set_ylim(0, 1)
        ax2.legend(fontsize=7)
    ax2.set_xlabel("epoch")
    ax2.set_title("validation" + (" and selection" if any("select" in r for r in history) else ""))
    from matplotlib.ticker import MaxNLocator
    for ax in (ax1, ax2):  # whole epochs, also for one (not 0.96 ... 1.04)
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    fig.tight_layout()
    return fig
