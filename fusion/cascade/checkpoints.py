"""The weights and resume state of a cascade run folder.

A run folder holds, beside ``config.json`` (:mod:`fusion.cascade.config`)::

    prior_mask.npy                the mean fake mask of epoch 1's training batches (the
                                  "prior" localization baseline)
    best.safetensors, best.json   weights of the epoch with the best validation score
    checkpoints/last.safetensors  weights + optimizer tensors after the last finished epoch
    checkpoints/last.json         epoch, optimizer scalars, AMP scaler state, history
    history.json, training.png    per-epoch loss terms and validation metrics

:func:`save_checkpoint` and :func:`load_checkpoint` write and restore everything a resumed
run needs to continue exactly as an uninterrupted one; :func:`load_run` rebuilds a trained
model for evaluation and prediction.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from fusion.cascade.config import TrainConfig, build_model, read_run_config, write_json
from fusion.cascade.model import CascadeModel

BEST_WEIGHTS, BEST_JSON = "best.safetensors", "best.json"
PRIOR_MASK = "prior_mask.npy"
LAST_WEIGHTS, LAST_JSON = "checkpoints/last.safetensors", "checkpoints/last.json"


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


def save_best(out: Path, model: torch.nn.Module, best: dict):
    """``best.safetensors`` (``model``'s weights) and ``best.json`` (``best``)."""
    save_weights(out / BEST_WEIGHTS, model)
    write_json(out / BEST_JSON, best)


def save_checkpoint(out: Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
                    scaler_state: dict | None, epoch: int, history: list, best: dict | None):
    """``checkpoints/last.*`` after ``epoch`` (1-based) has finished: weights, optimizer
    tensors and scalars, the AMP scaler's state, the history and the best epoch so far."""
    opt_tensors, opt_info = _optimizer_tensors(opt)
    save_weights(out / LAST_WEIGHTS, model, opt_tensors)
    write_json(out / LAST_JSON, {"epoch": epoch, "optimizer": opt_info, "scaler": scaler_state,
                                 "history": history, "best": best})


def load_checkpoint(out: Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
                    scaler, device) -> tuple[list, int, dict | None]:
    """Restore ``checkpoints/last.*`` into ``model``, ``opt`` (its tensors on ``device``)
    and ``scaler``; returns ``(history, epochs finished, best)``."""
    extra = load_weights(out / LAST_WEIGHTS, model)
    info = json.loads((out / LAST_JSON).read_text())
    _load_optimizer(opt, {k: v.to(device) if not k.endswith(".step") else v
                          for k, v in extra.items()}, info["optimizer"])
    if info.get("scaler"):
        scaler.load_state_dict(info["scaler"])
    return info["history"], info["epoch"], info.get("best")


def load_run(run_dir, device="cpu", which: str = "best") -> tuple[CascadeModel, TrainConfig, dict]:
    """``(model in eval mode, config, info)`` of a run folder (``which``: best or last)."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    model = build_model(config, for_loading=True)
    weights, info_file = ((BEST_WEIGHTS, BEST_JSON) if which == "best" else (LAST_WEIGHTS, LAST_JSON))
    if not (run_dir / weights).is_file():
        raise FileNotFoundError(f"{run_dir}: no {weights}; has training finished an epoch?")
    load_weights(run_dir / weights, model)
    info = json.loads((run_dir / info_file).read_text())
    prior = run_dir / PRIOR_MASK
    info["prior_mask"] = np.load(prior) if prior.is_file() else None
    return model.to(device).eval(), config, info
