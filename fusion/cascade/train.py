"""Training, evaluation and prediction of the cascaded localization model on a store.

A run folder holds::

    config.json                   every setting (the model is rebuilt from it) and, from
                                  the CLI, every flag (``flags``: ``--config`` reruns it)
    prior_mask.npy                the mean fake mask of epoch 1's training batches (the
                                  "prior" localization baseline)
    best.safetensors, best.json   weights of the epoch with the best validation score
    checkpoints/last.safetensors  weights + optimizer tensors after the last finished epoch
    checkpoints/last.json         epoch, optimizer scalars, AMP scaler state, history
    history.json, training.png    per-epoch loss terms and validation metrics

Training reads split ``train`` of every ``--store`` and selects the epoch on split ``val``
(score: the mean of the validation AUC and mean IoU, whichever are defined; minus the loss
when neither is); the test split is never read. With ``sbi="online"`` the training samples
are the real rows and a fresh self-blend of each per epoch, and validation is a fixed draw
of self-blends of the *validation* reals (other videos, or other folders with
``val_folders``), so the checkpoint is chosen on identities the model did not train on.

The optimiser is AdamW with a lower learning rate for the pretrained backbone
(``lr * backbone_lr``), a linear warm-up over ``warmup_epochs`` and a cosine decay to 0
(``schedule="cosine"``), all a function of the global step, so a resumed run continues
exactly as an uninterrupted one (randomness is derived from ``seed`` and the epoch number
only). On CUDA, mixed precision (``torch.autocast`` fp16 + ``GradScaler``) is on unless
``amp`` is False; on CPU everything runs in float32.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fusion.cascade.data import (SBI_MODES, StoreMaps, TrainingSet, parse_augment, prefetch,
                                 to_model_inputs)
from fusion.cascade.localization import LocalizationAccumulator
from fusion.cascade.losses import CascadeLoss, LossWeights
from fusion.cascade.model import DECODERS, CascadeModel
from fusion.metrics import compute_metrics, to_jsonable

CONFIG_JSON, BEST_WEIGHTS, BEST_JSON = "config.json", "best.safetensors", "best.json"
PRIOR_MASK = "prior_mask.npy"
#: Version of the run folder's contents. 2: LBP/DCT computed inside the model from the RGB
#: input (version-1 runs read stored lbp/dct maps and cannot be evaluated the same way).
RUN_FORMAT = 2
#: Presets (``--preset``); flags given explicitly override them.
PRESETS = {
    # CPU-sized: small crops, few epochs. 405 real crops (810 samples an epoch) of
    # realfaces + FF++ trained in 18 min on 2 shared cores; val preferred 16 epochs to 8.
    "fast": {"size": 128, "epochs": 16, "batch_size": 32},
    # Shiohara & Yamasaki's SBI recipe: 380 px crops (384 here, a multiple of 16), 100
    # epochs, batch 32. For a GPU; extract the store with --size 384 or larger.
    "full": {"size": 384, "epochs": 100, "batch_size": 32},
}
LAST_WEIGHTS, LAST_JSON = "checkpoints/last.safetensors", "checkpoints/last.json"


@dataclass
class TrainConfig:
    """Settings of a training run (see ``python -m fusion.cascade train --help``)."""

    store: str | list
    out: str
    epochs: int = 16
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    size: int = 128
    backbone: str = "efficientnet-lite0"
    backbone_weights: str | None = None
    random_init: bool = False
    dim: int = 128
    heads: int = 4
    decoder: str = "unet"
    backbone_size: int | None = None  # None: size
    device: str = "auto"
    seed: int = 0
    augment: str | None = None  # None: "all" with sbi online, none otherwise
    sbi: str = "off"
    keep_fakes: bool = False
    val_folders: str = ""
    backbone_lr: float = 0.1
    warmup_epochs: float = 1.0
    schedule: str = "cosine"
    amp: bool = True
    max_steps: int | None = None  # per epoch; for smoke tests and benchmarks
    cache_mb: int = 1024
    loss: LossWeights = field(default_factory=LossWeights)

    def validate(self):
        """Raise ValueError naming the flag for any out-of-range setting."""
        checks = [(self.epochs >= 1, "--epochs must be >= 1"),
                  (self.batch_size >= 1, "--batch-size must be >= 1"),
                  (self.max_steps is None or self.max_steps >= 1, "--max-steps must be >= 1"),
                  (self.lr > 0, "--lr must be > 0"),
                  (self.size >= 16 and self.size % 16 == 0, "--size must be a multiple of 16, >= 16"),
                  (self.sbi in SBI_MODES, f"--sbi must be one of {', '.join(SBI_MODES)}"),
                  (not self.keep_fakes or self.sbi == "online", "--keep-fakes needs --sbi online"),
                  (self.backbone_lr > 0, "--backbone-lr must be > 0"),
                  (self.warmup_epochs >= 0, "--warmup-epochs must be >= 0"),
                  (self.schedule in ("cosine", "constant"), "--schedule must be cosine or constant"),
                  (bool(self.stores), "--store: give at least one store"),
                  (self.dim % self.heads == 0, "--dim must be divisible by --heads"),
                  (self.decoder in DECODERS, f"--decoder must be one of {', '.join(DECODERS)}"),
                  (self.backbone_size is None or (16 <= self.backbone_size <= self.size
                                                  and self.backbone_size % 16 == 0),
                   "--backbone-size must be a multiple of 16, >= 16 and at most --size"),
                  (self.device in ("auto", "cpu", "cuda"), "--device must be auto, cpu or cuda")]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        parse_augment(self.augment_names())
        if isinstance(self.loss, dict):
            self.loss = LossWeights(**self.loss)
        return self

    @property
    def stores(self) -> list[str]:
        """The training stores (``store`` may be one path, a comma list, or a list)."""
        if isinstance(self.store, (list, tuple)):
            return [str(p) for p in self.store]
        return [p.strip() for p in str(self.store).split(",") if p.strip()]

    def augment_names(self) -> str:
        if self.augment is None:
            return "all" if self.sbi == "online" else ""
        return self.augment

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["loss"] = LossWeights(**d.get("loss", {}))
        # runs saved before the U-Net decoder existed were trained with the plain one
        d.setdefault("decoder", "plain")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available on this machine (use --device cpu or auto)")
    return torch.device(name)


def build_model(config: TrainConfig, for_loading: bool = False) -> CascadeModel:
    """The model of ``config``. ``for_loading`` skips pretrained backbone weights (the run's
    own checkpoint is loaded over them right after)."""
    model = CascadeModel(config.backbone, dim=config.dim, heads=config.heads, decoder=config.decoder,
                         backbone_size=config.backbone_size,
                         backbone_weights=None if for_loading else config.backbone_weights,
                         random_init=True if for_loading else config.random_init)
    return model.to(memory_format=torch.channels_last)


# ------------------------------------------------------------------------------ checkpoints

def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    state = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in state["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value.reshape(-1) if value.dim() == 0 else value
                scalars[f"{idx}.{key}.scalar"] = value.dim() == 0
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "state_scalars": scalars}


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict, info: dict):
    state: dict = {}
    scalars = info["state_scalars"]
    for key, value in tensors.items():
        if not key.startswith("optim."):
            continue
        _, idx, name = key.split(".", 2)
        if scalars.get(f"{idx}.{name}.scalar"):
            value = value.reshape(())
        state.setdefault(int(idx), {})[name] = value
    for key, value in scalars.items():
        if not key.endswith(".scalar"):
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})


def save_weights(path: Path, model: torch.nn.Module, extra: dict | None = None):
    """``model``'s state (``model.*``) and the ``extra`` tensors, written whole at ``path``."""
    from fusion.modelio import save_tensors
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(path, {**{f"model.{k}": v for k, v in model.state_dict().items()}, **(extra or {})})


def load_weights(path: Path, model: torch.nn.Module) -> dict:
    """Load ``model.*`` tensors into ``model`` (strict); return the other tensors."""
    from safetensors.torch import load_file
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    return {k: v for k, v in tensors.items() if not k.startswith("model.")}


def _write_json(path: Path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=2))
    tmp.replace(path)


def load_run(run_dir, device="cpu", which: str = "best") -> tuple[CascadeModel, TrainConfig, dict]:
    """``(model in eval mode, config, info)`` of a run folder (``which``: best or last)."""
    from fusion.modelio import run_kind
    run_dir = Path(run_dir)
    if run_kind(run_dir) == "fusion.train":
        raise ValueError(f"--run {run_dir}: this is a fusion.train run, not a cascade run; use "
                         f"python -m fusion.evaluate or python -m fusion.predict --model {run_dir}")
    if not (run_dir / CONFIG_JSON).is_file():
        raise FileNotFoundError(f"{run_dir}: not a cascade run folder (no {CONFIG_JSON})")
    saved = json.loads((run_dir / CONFIG_JSON).read_text())
    if saved.get("run_format", 1) != RUN_FORMAT:
        raise ValueError(f"{run_dir}: a cascade run of format {saved.get('run_format', 1)} "
                         f"(this version reads format {RUN_FORMAT}: LBP/DCT computed inside the "
                         "model); retrain it with `python -m fusion.cascade train`")
    config = TrainConfig.from_json(saved["config"])
    model = build_model(config, for_loading=True)
    weights, info_file = ((BEST_WEIGHTS, BEST_JSON) if which == "best" else (LAST_WEIGHTS, LAST_JSON))
    if not (run_dir / weights).is_file():
        raise FileNotFoundError(f"{run_dir}: no {weights}; has training finished an epoch?")
    load_weights(run_dir / weights, model)
    info = json.loads((run_dir / info_file).read_text())
    prior = run_dir / PRIOR_MASK
    info["prior_mask"] = np.load(prior) if prior.is_file() else None
    return model.to(device).eval(), config, info


# ------------------------------------------------------------------------------- inference

def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device_type=device.type, dtype=torch.float16,
                          enabled=amp and device.type == "cuda")


@torch.no_grad()
def run_inference(model, data, size: int, device, batch_size: int = 64,
                  amp: bool = True, criterion: CascadeLoss | None = None, keep_masks: int = 0,
                  progress: bool = False, baselines: dict | None = None, keep_reals: int = 0):
    """Scores and localization metrics of ``model`` on every sample of ``data`` (a
    :class:`StoreMaps` or :class:`fusion.cascade.data.ArrayMaps`).

    Returns a dict: ``scores`` (N fake probabilities), ``area`` (N mean predicted mask
    probability), ``flagged_area`` (N fraction of pixels at or above the IoU threshold 0.5),
    ``localization`` (:class:`LocalizationAccumulator` result over fakes with valid masks),
    ``loss`` (mean unweighted terms when ``criterion`` is given) and ``examples`` (the first
    ``keep_masks`` samples' crops, predicted and true masks, for overlays; fakes with a
    mask first). ``baselines`` maps a name to a function ``positions -> K x size x size``
    mask probabilities that never look at the image; each is scored on the same fakes and
    masks as the model, under ``baselines`` in the result. ``keep_reals`` adds
    ``real_examples`` (same layout as ``examples``): the real samples with the largest
    flagged area (then mean mask probability), largest first -- the false-positive masks.
    """
    import heapq
    model.eval()
    scores, areas = np.zeros(len(data), np.float32), np.zeros(len(data), np.float32)
    flagged = np.zeros(len(data), np.float32)
    acc = LocalizationAccumulator()
    baselines = baselines or {}
    baseline_acc = {name: LocalizationAccumulator() for name in baselines}
    totals, seen = {}, 0
    examples = {"fakes": [], "others": []}
    top_reals = []  # min-heap of ((flagged, area), position, example)
    batches = data.batches(batch_size)
    if progress:
        from tqdm import tqdm
        batches = tqdm(batches, total=math.ceil(len(data) / batch_size), desc="inference", leave=False)
    for b in batches:
        x = to_model_inputs(b, size, device)
        with _autocast(device, amp):
            out = model(x["rgb"])
        prob = torch.sigmoid(out["mask_logits"].float())
        pos = b["positions"]
        scores[pos] = torch.softmax(out["logits"].float(), 1)[:, 1].cpu().numpy()
        areas[pos] = prob.mean((1, 2, 3)).cpu().numpy()
        flagged[pos] = (prob >= acc.threshold).float().mean((1, 2, 3)).cpu().numpy()
        if criterion is not None:
            _, terms = criterion(out, x)
            for k, v in terms.items():
                totals[k] = totals.get(k, 0.0) + v * len(pos)
        seen += len(pos)
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
    return {"scores": scores, "area": areas, "flagged_area": flagged, "localization": acc.result(),
            "real_examples": {key: [c[j] for c in reals] for j, key in enumerate(fields)},
            "baselines": {name: a.result() for name, a in baseline_acc.items()},
            "loss": {k: v / max(seen, 1) for k, v in totals.items()}, "examples": examples}


def _selection_score(auc: float, iou: float, loss: float) -> float:
    finite = [v for v in (auc, iou) if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else -float(loss)


# -------------------------------------------------------------------------------- training

def _split_rows(store, split: str, val_folders: list[str]) -> np.ndarray:
    """Sorted store rows of ``split``; with ``val_folders``, the rows whose source path lies
    under one of them go to val (from any split but test), and nowhere else."""
    meta = store.meta
    if not val_folders:
        return store.select(split=split)
    paths = meta["source_path"].astype(str).str.replace("\\", "/", regex=False)
    in_val = np.zeros(len(meta), bool)
    for folder in val_folders:
        in_val |= paths.str.contains(f"/{folder.strip('/')}/", regex=False).to_numpy()
    split_col = meta["split"].to_numpy()
    if split == "val":
        chosen = in_val & (split_col != "test")
    else:
        chosen = (split_col == split) & ~in_val
    return np.flatnonzero(chosen)


def open_training_sources(config: TrainConfig, stores: list):
    """``(train StoreMaps list, val StoreMaps list)`` of the opened ``stores``."""
    val_folders = [f for f in config.val_folders.split(",") if f.strip()]
    sizes, cache = {}, config.cache_mb << 20
    train_sources, val_sources = [], []
    for path, store in zip(config.stores, stores):
        train_sources.append(StoreMaps(store, rows=_split_rows(store, "train", val_folders),
                                       cache_bytes=cache))
        val_sources.append(StoreMaps(store, rows=_split_rows(store, "val", val_folders),
                                     cache_bytes=cache))
        sizes[path] = train_sources[-1].crop_size
    if len(set(sizes.values())) > 1:
        raise ValueError(f"--store: the stores hold crops of different sizes {sizes}; "
                         "extract them with the same --size")
    if val_folders and not any(len(v) for v in val_sources):
        raise ValueError(f"--val-folders {config.val_folders}: no sample's source path lies "
                         "under these folders")
    return train_sources, val_sources


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
          flags: dict | None = None) -> dict:
    """Train (or resume) a run; returns ``{"best": best.json content, "history": [...]}``.

    ``flags`` (``{"command", "flags"}`` of :func:`base.cli.flags_record`) is saved in
    ``config.json`` beside the settings, so that ``--config RUN/config.json`` reruns the run.
    """
    from stores import open_store

    config.validate()
    out = Path(config.out)
    if resume and (out / CONFIG_JSON).is_file():
        saved = TrainConfig.from_json(json.loads((out / CONFIG_JSON).read_text())["config"])
        # A resumed run keeps its settings; only the epoch count, device and paths may change.
        saved.epochs, saved.device, saved.store = config.epochs, config.device, config.store
        config = saved.validate()
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    augment = parse_augment(config.augment_names())
    stores = [open_store(p) for p in config.stores]
    try:
        train_sources, val_sources = open_training_sources(config, stores)
        train_set = TrainingSet(train_sources, config.sbi, config.keep_fakes, augment,
                                config.size, config.seed)
        val_set = TrainingSet(val_sources, config.sbi, config.keep_fakes, (), config.size,
                              config.seed)
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
                           val_set, out, flags)
    finally:
        for store in stores:
            store.close()


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


def _train_loop(config, resume, progress, log, device, augment, stores, train_set, val_set, out,
                flags=None):
    model = build_model(config).to(device)
    criterion = CascadeLoss(config.loss)
    opt = torch.optim.AdamW(_param_groups(model, config), lr=config.lr,
                            weight_decay=config.weight_decay)
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    steps_per_epoch = max(1, math.ceil(len(train_set) / config.batch_size))
    if config.max_steps:
        steps_per_epoch = min(steps_per_epoch, config.max_steps)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
    history, start_epoch, best = [], 0, None
    if resume and (out / LAST_JSON).is_file():
        extra = load_weights(out / LAST_WEIGHTS, model)
        info = json.loads((out / LAST_JSON).read_text())
        _load_optimizer(opt, {k: v.to(device) if not k.endswith(".step") else v
                              for k, v in extra.items()}, info["optimizer"])
        if info.get("scaler"):
            scaler.load_state_dict(info["scaler"])
        history, start_epoch, best = info["history"], info["epoch"], info.get("best")
        log(f"resuming {out} after epoch {start_epoch}")
    elif (out / LAST_JSON).is_file():
        raise ValueError(f"--out {out} already holds a run; pass --resume to continue it or "
                         "choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    val_data = val_set.fixed()
    _write_json(out / CONFIG_JSON, {"config": config.to_json(), "run_format": RUN_FORMAT,
                                    "stride": model.stride,
                                    "store_runs": [s.run for s in stores],
                                    "train_items": train_set.n_items,
                                    "val_samples": len(val_data), **(flags or {})})
    log(f"training on {device} ({'AMP fp16' if use_amp else 'float32'}): "
        f"{train_set.n_items} train crops -> {len(train_set)} samples per epoch "
        f"(sbi {config.sbi}), {len(val_data)} val samples, backbone {config.backbone}, "
        f"size {config.size}, augment {','.join(augment) or 'none'}")
    for epoch in range(start_epoch, config.epochs):
        epoch_seed = config.seed * 100003 + epoch
        torch.manual_seed(epoch_seed)
        model.train()
        totals, n_seen, t0 = {}, 0, time.perf_counter()
        # The prior baseline is the mean fake mask of the first epoch's batches, summed
        # as they pass (no second draw of the blends).
        fake_sum, n_fake = np.zeros((config.size, config.size), np.float64), 0
        batches = prefetch(train_set.batches(config.batch_size, epoch, shuffle=True,
                                             max_steps=steps_per_epoch))
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
            with _autocast(device, config.amp):
                outputs = model(x["rgb"])
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
        if epoch == 0:
            np.save(out / PRIOR_MASK, (fake_sum / max(n_fake, 1)).astype(np.float32))
        row = {"epoch": epoch + 1, "train": {k: v / max(n_seen, 1) for k, v in totals.items()},
               "samples_per_s": n_seen / max(seconds, 1e-9), "seconds": seconds,
               "lr": config.lr * learning_rate_factor((epoch + 1) * steps_per_epoch - 1,
                                                      total_steps, warmup_steps, config.schedule)}
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
        row["selection_score"] = score
        history.append(row)
        improved = best is None or score > best["selection_score"]
        if improved:
            best = {"epoch": epoch + 1, "selection_score": score, "val": row.get("val")}
            save_weights(out / BEST_WEIGHTS, model)
            _write_json(out / BEST_JSON, best)
        opt_tensors, opt_info = _optimizer_tensors(opt)
        save_weights(out / LAST_WEIGHTS, model, opt_tensors)
        _write_json(out / LAST_JSON, {"epoch": epoch + 1, "optimizer": opt_info,
                                      "scaler": scaler.state_dict() if use_amp else None,
                                      "history": history, "best": best})
        _write_json(out / "history.json", history)
        val_txt = (f" val auc {row['val']['auc']:.3f} iou {row['val']['iou']:.3f}"
                   if "val" in row else "")
        log(f"epoch {epoch + 1}/{config.epochs}: loss {row['train']['total']:.4f} "
            + " ".join(f"{k} {v:.4f}" for k, v in row["train"].items() if k != "total")
            + f"{val_txt} ({row['samples_per_s']:.1f} samples/s){' *' if improved else ''}")
    plot_history(history, out / "training.png")
    return {"best": best, "history": history, "config": config}


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
    """Loss terms (left) and validation AUC / IoU (right) per epoch, every epoch a marker
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
    ax2.set_xlabel("epoch")
    ax2.set_title("validation")
    from matplotlib.ticker import MaxNLocator
    for ax in (ax1, ax2):  # whole epochs, also for one (not 0.96 ... 1.04)
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- evaluate / predict

def _safe_name(text: str) -> str:
    """``text`` with every character but ASCII letters, digits, ``-``, ``_`` and ``.`` as ``_``."""
    return "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "_" for c in text)


def overlay_name(row, taken: set | None = None) -> str:
    """A readable, filesystem-safe PNG name for a sample's overlay.

    ``<video id with / as _>_f<frame, 6 digits>`` plus ``_face<k>`` for a face other than
    the largest: ``FaceSwap_634_660_f000000.png`` for ``ff++:FaceSwap/634_660:000000``.
    Names already in ``taken`` (which is updated) get ``_2``, ``_3``, ... so that two
    samples never share a file.
    """
    video = _safe_name(str(row["video_id"]).replace("\\", "/").strip("/").replace("/", "_"))
    stem = f"{video}_f{int(row['frame_index']):06d}"
    face = int(row.get("face_index", 0) or 0)
    if face:
        stem += f"_face{face}"
    name, k = f"{stem}.png", 1
    while taken is not None and name in taken:
        k += 1
        name = f"{stem}_{k}.png"
    if taken is not None:
        taken.add(name)
    return name


def mask_label(row) -> str:
    """What a sample's stored mask is: ``"difference mask"`` or ``"mask"``.

    Extraction takes an FF++ fake's mask from the method's mask video
    (``manipulated_sequences/<method>/masks/videos/<name>``) when there is one, else from the
    difference with the paired real frame (:func:`pipelines.ingest.difference_mask`). The
    store keeps the source path, so the mask video's presence next to it tells which; when
    the source folder is gone, or for any other data set (exact or provided masks), the
    label is ``"mask"``.
    """
    if row.get("dataset") != "ff++" or int(row["label"]) != 1:
        return "mask"
    source = Path(str(row.get("source_path", "")))
    videos = source.parent
    if not videos.is_dir():
        return "mask"
    mask_video = videos.parent.parent / "masks" / "videos" / source.name
    return "mask" if mask_video.is_file() else "difference mask"


def overlay_figure(rgb: np.ndarray, prob: np.ndarray, mask: np.ndarray | None,
                   title: str = "", truth_label: str = "mask"):
    """Figure: crop | predicted mask over the crop, with a colour bar | stored mask.

    ``prob`` is the per-pixel fake probability in [0, 1] (the colour bar's scale; the white
    contour is 0.5); ``truth_label`` names the third panel ("mask" or "difference mask",
    see :func:`mask_label`).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = 3 if mask is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(3 * panels + 0.8, 3.3))
    axes[0].imshow(rgb)
    axes[0].set_title(title, fontsize=8)
    axes[1].imshow(rgb)
    heat = axes[1].imshow(prob, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    axes[1].contour(prob, levels=[0.5], colors="w", linewidths=1)
    axes[1].set_title("predicted mask (white: 0.5)", fontsize=8)
    if mask is not None:
        axes[2].imshow(mask, cmap="gray", vmin=0, vmax=1)
        axes[2].set_title(truth_label, fontsize=8)
    for ax in axes:
        ax.axis("off")
    bar = fig.colorbar(heat, ax=axes[1], fraction=0.046, pad=0.03)
    bar.solids.set_alpha(1)
    bar.set_label("fake probability per pixel", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    return fig


def save_overlay(path: Path, rgb: np.ndarray, prob: np.ndarray, mask: np.ndarray | None,
                 title: str = "", truth_label: str = "mask"):
    """PNG of :func:`overlay_figure`: crop | predicted mask | stored mask (when known)."""
    import matplotlib.pyplot as plt
    fig = overlay_figure(rgb, prob, mask, title, truth_label)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


#: Folder (under ``overlays/``) of the real samples with the largest predicted masks.
REAL_OVERLAYS = "reals"


def _write_overlays(out_dir: Path, data: StoreMaps, result: dict, scores: np.ndarray,
                    which: str = "examples") -> list[str]:
    """Overlay PNGs of ``result[which]``: ``examples`` into ``overlays/``, ``real_examples``
    (the largest false-positive masks, their flagged area in the title) into
    ``overlays/reals/`` named ``<rank>_<sample>.png``."""
    ex, written, taken = result.get(which) or {"positions": []}, [], set()
    folder = out_dir / "overlays" / (REAL_OVERLAYS if which == "real_examples" else "")
    for rank, (rgb, prob, mask, valid, pos) in enumerate(zip(ex["rgb"], ex["prob"], ex["mask"],
                                                             ex["mask_valid"], ex["positions"])) \
            if ex["positions"] else ():
        row = data.meta.iloc[int(pos)]
        name = folder / overlay_name(row, taken)
        title = (f"{row['video_id']} frame {int(row['frame_index'])}\n"
                 f"{row['method']} (label {row['label']}) score {scores[int(pos)]:.3f}")
        if which == "real_examples":
            name = name.with_name(f"{rank + 1:02d}_{name.name}")
            title += f" flagged {result['flagged_area'][int(pos)]:.3f}"
        save_overlay(name, rgb, prob, mask if valid else None, title, mask_label(row))
        written.append(str(name))
    return written


def _predictions_frame(data: StoreMaps, result: dict) -> pd.DataFrame:
    frame = data.meta[["sample_id", "split", "method", "video_id", "frame_index", "label"]].copy()
    frame["score"] = result["scores"]
    frame["mask_area"] = result["area"]
    frame["flagged_area"] = result["flagged_area"]
    return frame


def hull_masks(landmarks: np.ndarray, crop_size: int, size: int) -> np.ndarray:
    """K x size x size float32: the whole-face convex hull of each sample's 68 landmarks
    (crop coordinates), drawn at the model's input size; all zero where landmarks are NaN."""
    from pipelines.edits_face import face_hull_mask
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
             command: str | None = None) -> dict:
    """Evaluate a run's best checkpoint on ``split`` of a store; write ``metrics.json``,
    ``predictions.csv``, ``roc.png``, ``det.png``, ``scores.png`` and overlay PNGs to
    ``out_dir``. Returns the metrics (the CLI adds ``report.html``, :mod:`fusion.report`).

    Localization is reported beside two baselines that never look at the image: ``prior``,
    the constant mean training fake mask, and ``hull``, the whole-face landmark hull; the
    headline is ``gain_over_prior``. ``real_mask_area`` is the mean predicted mask
    probability on the real samples (ideally 0), ``real_flagged_area`` the mean fraction of
    their pixels at or above the 0.5 threshold (the binary mask IoU scores).

    ``overlays`` reals with the largest flagged area also get an overlay, in
    ``overlays/reals/`` (false-positive masks to inspect). ``warnings`` holds the
    classification's warnings (and one when its AUC is below chance); ``provenance`` the
    command line (``command``), code version, git commit, store SHA-256 and the training
    run's configuration, as :func:`fusion.scoring.provenance` records them.
    """
    from fusion import scoring
    from stores import open_store

    dev = resolve_device(device)
    model, config, info = load_run(run_dir, dev)
    out_dir = Path(out_dir or Path(run_dir) / f"eval_{split}")
    with open_store(store_path) as store:
        data = StoreMaps(store, split, cache_bytes=0)
        if len(data) == 0:
            raise ValueError(f"{store_path}: no samples in split {split!r}")
        prior = info["prior_mask"]
        baselines = {"hull": lambda pos: hull_masks(data.landmarks[pos], data.crop_size,
                                                    config.size)}
        if prior is not None:
            baselines["prior"] = lambda pos: np.broadcast_to(prior, (len(pos),) + prior.shape)
        result = run_inference(model, data, config.size, dev, batch_size, config.amp,
                               keep_masks=overlays, progress=True, baselines=baselines,
                               keep_reals=overlays)
        meta = data.meta
        metrics = {
            "run": str(run_dir), "store": str(store_path), "split": split, "n": len(data),
            "checkpoint_epoch": info.get("epoch"),
            "classification": compute_metrics(meta["label"].to_numpy(), result["scores"],
                                              meta["method"].to_numpy(), meta["video_id"].to_numpy(),
                                              threshold=0.5, n_boot=n_boot),
            # masks are compared at the model's input size (crops resized to config.size)
            "localization": {**localization_report(result, data, prior), "size": config.size},
        }
        c = metrics["classification"]
        metrics["warnings"] = scoring.chance_warnings(split, c) + [f"{split}: {w}" for w in c.get("warnings", [])]
        metrics["provenance"] = scoring.provenance(
            [store_path], getattr(config, "seed", None),
            {"run": str(run_dir), "store": str(store_path), "split": split, "overlays": overlays,
             "n_boot": n_boot, "batch_size": batch_size, "device": device, "train": config.to_json()},
            command)
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_json(out_dir / "metrics.json", metrics)
        frame = _predictions_frame(data, result)
        frame.to_csv(out_dir / "predictions.csv", index=False)
        from fusion.scoring import write_plots  # ROC, DET and histograms as fusion.train draws them
        metrics["plots"] = [str(p) for p in write_plots(frame, out_dir, 0.5, title=split)]
        metrics["overlays"] = _write_overlays(out_dir, data, result, result["scores"])
        metrics["real_overlays"] = _write_overlays(out_dir, data, result, result["scores"], "real_examples")
    return metrics


def predict(run_dir, store_path, out_dir, split: str | None = None, device: str = "auto",
            batch_size: int = 64, overlays: int = 16) -> pd.DataFrame:
    """Scores (``predictions.csv``) and mask overlays of every sample (or of ``split``)."""
    from stores import open_store

    dev = resolve_device(device)
    model, config, info = load_run(run_dir, dev)
    out_dir = Path(out_dir)
    with open_store(store_path) as store:
        data = StoreMaps(store, split, cache_bytes=0)
        result = run_inference(model, data, config.size, dev, batch_size,
                               config.amp, keep_masks=overlays, progress=True)
        frame = _predictions_frame(data, result)
        out_dir.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out_dir / "predictions.csv", index=False)
        _write_overlays(out_dir, data, result, result["scores"])
    return frame
