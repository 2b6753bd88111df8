"""Tiny trained cascade runs for the tests of the ``cascade`` feature and of the fusion
commands that stack it (seconds on one CPU core: a 32-px tiny backbone, one step)."""
from pathlib import Path


def tiny_cascade_run(folder, store, seed: int = 0, steps: int = 1) -> Path:
    """Train a tiny cascade run on ``store`` (split train, epoch chosen on val) into
    ``folder``; returns the folder."""
    from fusion.cascade.config import TrainConfig
    from fusion.cascade.train import train
    train(TrainConfig(store=str(store), out=str(folder), epochs=1, batch_size=16, max_steps=steps,
                      backbone="tiny", dim=32, heads=4, size=32, lr=3e-3, seed=seed, device="cpu",
                      workers=0), progress=False, log=lambda *_: None)
    return Path(folder)


def store_parts(path):
    """``(meta copy, {rgb, mask} maps, their attrs, {"mask": valid}, landmarks)`` of a
    synthetic faces store: what a test rewrites into a store with other labels."""
    from stores import open_store
    with open_store(path) as store:
        maps = {n: store.read_map(n)[0] for n in ("rgb", "mask")}
        return (store.meta.copy(), maps, {n: store.attrs(n) for n in maps},
                {"mask": store.valid("mask")}, store.landmarks())
