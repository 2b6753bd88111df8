"""Pickle-free model files: ``model.json`` (config) + ``weights.npz`` + ``weights.safetensors``.

``weights.npz`` holds numpy arrays (scalers, sklearn coefficients, GBM tree arrays) and is
read with ``allow_pickle=False``; ``weights.safetensors`` holds torch state dicts. Nothing
here executes code from the files it reads.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MODEL_JSON, ARRAYS_FILE, TENSORS_FILE = "model.json", "weights.npz", "weights.safetensors"


def save_model(directory, config: dict, arrays: dict | None = None, tensors: dict | None = None) -> Path:
    """Write ``config`` as JSON plus the arrays (npz) and torch tensors (safetensors)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if arrays:
        np.savez(d / ARRAYS_FILE, **{k: np.asarray(v) for k, v in arrays.items()})
    if tensors:
        from safetensors.torch import save_file
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(d / TENSORS_FILE))
    (d / MODEL_JSON).write_text(json.dumps(config, indent=2, default=str))
    return d


def load_model(directory) -> tuple[dict, dict, dict]:
    """``(config, arrays, tensors)`` from a directory written by :func:`save_model`."""
    d = Path(directory)
    if not (d / MODEL_JSON).is_file():
        raise FileNotFoundError(f"no {MODEL_JSON} in {d}")
    config = json.loads((d / MODEL_JSON).read_text())
    arrays, tensors = {}, {}
    if (d / ARRAYS_FILE).is_file():
        with np.load(d / ARRAYS_FILE, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    if (d / TENSORS_FILE).is_file():
        from safetensors.torch import load_file
        tensors = load_file(str(d / TENSORS_FILE))
    return config, arrays, tensors
