"""The training and validation rows of a cascade run's stores (``--val-folders`` included)
and its validation set: one definition for training, its benchmark and the mask threshold
chosen on val."""
from __future__ import annotations

import numpy as np

from fusion.cascade.data import StoreMaps, TrainingSet


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


def open_training_sources(config, stores: list):
    """``(train StoreMaps list, val StoreMaps list)`` of the opened ``stores`` of a
    :class:`~fusion.cascade.config.TrainConfig` (its ``--val-folders`` and cache size)."""
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


def validation_set(config, val_sources) -> TrainingSet:
    """The run's validation samples: its val rows with the training mix of whole-face and
    part blends but no augmentation (``.fixed()`` is the one draw a run scores every epoch)."""
    return TrainingSet(val_sources, config.sbi, config.keep_fakes, (), config.size,
                       config.seed, part_blend=config.part_blend)
