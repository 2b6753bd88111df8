"""A trained cascade run folder, read without the training code: its model, its weights'
SHA-256 and what it was trained and selected on.

A run folder (written by ``python -m fusion.cascade train``, see
:mod:`fusion.cascade.checkpoints`) holds ``config.json`` (every setting, the run format,
the stores and, from this version on, the sample ids trained and selected on) and
``best.safetensors`` (the weights of the epoch chosen on val, as ``model.<name>`` tensors).
:func:`load_cascade_run` rebuilds the model from those two files alone; every way a run can
be missing or damaged is one :class:`~base.errors.UsageError` line naming the folder.

Example
-------
>>> run = load_cascade_run("runs/cascade")                 # doctest: +SKIP
>>> run.size, run.hidden, run.weights_sha256[:8]            # doctest: +SKIP
(128, 64, '3f2a...')
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from base.errors import UsageError

CONFIG_JSON = "config.json"
WEIGHTS = {"best": "best.safetensors", "last": "checkpoints/last.safetensors"}
#: The run folder format this code reads; equal to ``fusion.cascade.config.RUN_FORMAT``
#: (a test checks it): LBP/DCT computed inside the model from the RGB input.
RUN_FORMAT = 2


@dataclass
class CascadeRun:
    """A loaded run: ``model`` (eval mode, on ``device``), its input ``size`` (pixels), whether
    training used fp16 autocast (``amp``), the width of its embeddings (``hidden``),
    ``weights_sha256`` and ``trained_on`` (:func:`trained_on`)."""

    path: Path
    model: object
    size: int
    amp: bool
    hidden: int
    weights_sha256: str
    trained_on: dict = field(default_factory=dict)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_run_json(run_dir) -> dict:
    """The parsed ``config.json`` of a cascade run folder; UsageError (one line) when the
    folder or its file is missing, unreadable, or of another run format."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"cascade run {run_dir}: no such folder (give the folder written by "
                         "`python -m fusion.cascade train --out RUN`)")
    path = run_dir / CONFIG_JSON
    if not path.is_file():
        raise UsageError(f"cascade run {run_dir}: not a cascade run folder (no {CONFIG_JSON})")
    try:
        saved = json.loads(path.read_text())
        config = saved["config"]
        if not isinstance(config, dict):
            raise TypeError("'config' is not an object")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UsageError(f"cascade run {run_dir}: {CONFIG_JSON} is damaged "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if saved.get("run_format", 1) != RUN_FORMAT:
        raise UsageError(f"cascade run {run_dir}: run format {saved.get('run_format', 1)}, this "
                         f"version reads format {RUN_FORMAT}; retrain it with "
                         "`python -m fusion.cascade train`")
    return saved


def trained_on(saved: dict) -> dict:
    """What a run was fitted and selected on, from its parsed ``config.json``.

    Returns ``{"stores": [...], "train_split": "train", "select_split": "val",
    "val_folders": [...], "select_stores": [...], "sample_ids": {"train": [...], "val": [...],
    "select": [...]} or None}``. The sample ids are those of the rows training drew from
    (split ``train``) and chose its epoch on (split ``val``, and the ``--select-store`` rows
    as ``select``); runs trained before they were recorded give None, and the leakage guard
    (:mod:`fusion.leakage`) then reads those splits of the recorded stores.
    """
    config = saved.get("config", {})
    store = config.get("store", [])
    stores = [str(p) for p in store] if isinstance(store, (list, tuple)) else \
        [p.strip() for p in str(store).split(",") if p.strip()]
    folders = [f.strip() for f in str(config.get("val_folders", "") or "").split(",") if f.strip()]
    select = config.get("select_store", "") or ""
    select_stores = [str(p) for p in select] if isinstance(select, (list, tuple)) else \
        [p.strip() for p in str(select).split(",") if p.strip()]
    samples = saved.get("samples")
    ids = None
    if isinstance(samples, dict):  # train, val and (with --select-store) select
        ids = {k: [str(v) for v in rows] for k, rows in samples.items()}
    return {"stores": stores, "train_split": "train", "select_split": "val",
            "val_folders": folders, "select_stores": select_stores, "sample_ids": ids}


def load_cascade_run(run_dir, device: str = "cpu", which: str = "best") -> CascadeRun:
    """The model of a run folder in eval mode on ``device`` (``which``: best or last).

    Raises UsageError (one line, naming the folder) for a missing folder, a missing or
    damaged ``config.json``, a run of another format, missing weights, or weights that do not
    load into the model the configuration describes (a damaged or foreign file).
    """
    import torch

    from extract.cascade_net.model import CascadeModel

    if which not in WEIGHTS:
        raise UsageError(f"cascade run: which must be one of {', '.join(WEIGHTS)}, got {which!r}")
    run_dir = Path(run_dir)
    saved = read_run_json(run_dir)
    config = saved["config"]
    weights = run_dir / WEIGHTS[which]
    if not weights.is_file():
        raise UsageError(f"cascade run {run_dir}: no {WEIGHTS[which]}; has training finished an epoch?")
    try:
        dim = int(config.get("dim", 128))
        # random_init: the run's own weights replace the backbone's just below
        model = CascadeModel(str(config.get("backbone", "efficientnet-lite0")), dim=dim,
                             heads=int(config.get("heads", 4)),
                             decoder=config.get("decoder", "plain"),
                             backbone_size=config.get("backbone_size"), random_init=True)
    except (ValueError, TypeError, ImportError) as exc:
        raise UsageError(f"cascade run {run_dir}: {CONFIG_JSON} describes no buildable model "
                         f"({str(exc).splitlines()[0]})") from None
    try:
        from safetensors.torch import load_file
        tensors = load_file(str(weights))
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    except Exception as exc:  # noqa: BLE001 - a truncated file, a foreign one, wrong shapes
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise UsageError(f"cascade run {run_dir}: {WEIGHTS[which]} is damaged or does not match "
                         f"its {CONFIG_JSON} ({type(exc).__name__}: {reason})") from None
    model = model.to(memory_format=torch.channels_last).to(device).eval()
    return CascadeRun(path=run_dir, model=model, size=int(config.get("size", 128)),
                      amp=bool(config.get("amp", True)), hidden=max(dim // 2, 16),
                      weights_sha256=_sha256(weights), trained_on=trained_on(saved))
