"""Pickle-free model files: ``model.json`` (config) + ``weights.npz`` + ``weights.safetensors``.

``weights.npz`` holds numpy arrays (scalers, sklearn coefficients, GBM tree arrays) and is
read with ``allow_pickle=False``; ``weights.safetensors`` holds torch state dicts. Nothing
here executes code from the files it reads.
"""
from __future__ import annotations

import json
import os
import uuid
import zipfile
from pathlib import Path

import numpy as np

from base.errors import DamagedFileError

MODEL_JSON, ARRAYS_FILE, TENSORS_FILE = "model.json", "weights.npz", "weights.safetensors"


def run_kind(path) -> str | None:
    """Which command wrote the run folder ``path``: ``"fusion.train"`` (a ``model.json`` in
    it or in its ``model/``), ``"fusion.cascade"`` (a ``config.json`` with a ``run_format``,
    or a ``best.safetensors``), or None. Lets each command say "this is the other kind of run"
    instead of "not found" or "old format"."""
    p = Path(path)
    if (p / MODEL_JSON).is_file() or (p / "model" / MODEL_JSON).is_file():
        return "fusion.train"
    if (p / "best.safetensors").is_file():
        return "fusion.cascade"
    try:
        saved = json.loads((p / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return "fusion.cascade" if isinstance(saved, dict) and "run_format" in saved else None


def save_model(directory, config: dict, arrays: dict | None = None, tensors: dict | None = None) -> Path:
    """Write ``config`` as JSON plus the arrays (npz) and torch tensors (safetensors)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if arrays:
        np.savez(d / ARRAYS_FILE, **{k: np.asarray(v) for k, v in arrays.items()})
    if tensors:
        save_tensors(d / TENSORS_FILE, tensors)
    (d / MODEL_JSON).write_text(json.dumps(config, indent=2, default=str))
    return d


def save_tensors(path, tensors: dict) -> Path:
    """Write torch ``tensors`` as a safetensors file at ``path``; returns the path.

    Written whole: a temporary file beside ``path`` renamed into place, so a reader never
    sees half a file. It gets the mode of any new file (0644 under umask 022); safetensors'
    own ``save_file`` makes it 0600, readable by its owner alone.
    """
    from safetensors.torch import save
    path = Path(path)
    data = save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()})
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _damaged(path: Path, exc: Exception) -> DamagedFileError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    if "allow_pickle" in reason:
        reason = "it holds object arrays, which would need pickle to load"
    return DamagedFileError(f"{path}: damaged or unsafe model file ({reason}); retrain the "
                            "model or restore the file")


def load_model(directory) -> tuple[dict, dict, dict]:
    """``(config, arrays, tensors)`` from a directory written by :func:`save_model`.

    A file that cannot be read as what it should be (invalid JSON, an npz with object
    arrays or a broken zip, a tampered safetensors header) raises
    :class:`~base.errors.DamagedFileError` naming the file.
    """
    d = Path(directory)
    if not (d / MODEL_JSON).is_file():
        raise FileNotFoundError(f"no {MODEL_JSON} in {d}")
    try:
        config = json.loads((d / MODEL_JSON).read_text())
    except (ValueError, OSError) as exc:
        raise _damaged(d / MODEL_JSON, exc) from None
    arrays, tensors = {}, {}
    if (d / ARRAYS_FILE).is_file():
        try:
            with np.load(d / ARRAYS_FILE, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise _damaged(d / ARRAYS_FILE, exc) from None
    if (d / TENSORS_FILE).is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            tensors = load_file(str(d / TENSORS_FILE))
        except (SafetensorError, ValueError, OSError, RuntimeError) as exc:
            raise _damaged(d / TENSORS_FILE, exc) from None
    return config, arrays, tensors
