"""Mini-batches of store crops for the cascade model: training sets, online self-blends.

The model reads one map from a store, the aligned ``rgb`` crop (plus ``mask`` where the
store has it, and the landmarks); its LBP and DCT streams are computed inside the model
from the RGB tensor it sees (:mod:`fusion.cascade.streams`), so the stored ``lbp``/``dct``
maps are not needed here (they stay in the store for early fusion).

* :class:`StoreMaps` reads the rows of one split of one store, one mini-batch at a time
  (or keeps them in memory when they are small); :func:`to_model_inputs` turns a batch into
  tensors at the model's input size (the same :func:`fusion.cascade.blend.resize_pair` as
  training, so training and evaluation see crops resized alike).
* :class:`TrainingSet` draws the training mini-batches from one or more stores. With
  ``sbi="online"`` it uses the real (label-0) rows only: every real crop gets a fresh
  self-blend each epoch (:mod:`fusion.cascade.blend`), and the real and its blend go into
  the same batch; ``keep_fakes`` mixes the store's own fakes in. With ``sbi="off"`` it
  trains on the store's labels as they are. Augmentations apply to every sample.
* :class:`EpochBatches` builds each epoch's mini-batches in worker processes kept for the
  run (``--workers N``, a :class:`torch.utils.data.DataLoader` over whole batches), or in this
  process with a background thread (:func:`prefetch`, ``--workers 0``). A batch is the same
  arrays whichever process builds it: its items are planned up front
  (:meth:`TrainingSet.batch_plan`), and every sample's randomness depends only on (seed, epoch,
  store, row).
"""
from __future__ import annotations

import concurrent.futures
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from fusion.cascade.blend import (augment_crop, has_landmarks, online_blend, parse_augment,
                                  resize_pair, sample_rng)

REQUIRED_MAPS = ("rgb",)
SBI_MODES = ("off", "online")
#: The epoch number under which validation blends are drawn (fixed for the whole run).
VAL_EPOCH = 1_000_000

__all__ = ["StoreMaps", "TrainingSet", "to_model_inputs", "parse_augment", "prefetch",
           "EpochBatches", "default_workers", "write_synthetic_store", "synthetic_faces_store",
           "REQUIRED_MAPS", "SBI_MODES"]


class StoreMaps:
    """The cascade inputs of some rows of an open store.

    Parameters
    ----------
    store : stores.FeatureStore
    split : str or None
        ``train``/``val``/``test``; None for every sample (ignored when ``rows`` is given).
    cache_bytes : int
        Keep the rows' maps in memory when they take at most this much (else read each
        mini-batch from the store).
    rows : array of int, optional
        Sorted store rows to use instead of a split.

    Reads in another process (an :class:`EpochBatches` worker, forked or spawned) go through
    a handle that process opens itself: an HDF5 handle must not cross processes.
    """

    def __init__(self, store, split: str | None = None, cache_bytes: int = 1 << 30, rows=None):
        missing = [m for m in REQUIRED_MAPS if m not in store.maps]
        if missing:
            raise ValueError(f"{store.path}: the cascade model needs the map 'rgb' (and "
                             "optionally 'mask'); extract it with "
                             "`python -m pipelines.extract --features rgb,mask,...`")
        self.store, self.path = store, store.path
        self._handle, self._pid = store, os.getpid()
        self.rows = (np.asarray(rows, np.int64) if rows is not None
                     else store.select(split=split))
        self.has_mask = "mask" in store.maps
        self.meta = store.meta.iloc[self.rows].reset_index(drop=True)
        self.labels = self.meta["label"].to_numpy(np.int64)
        self.mask_valid = (store.valid("mask", index=self.rows) if self.has_mask
                           else np.zeros(len(self.rows), bool))
        # Reals need no mask file: their mask is empty by definition.
        self.mask_valid = self.mask_valid | (self.labels == 0)
        self.landmarks = store.landmarks()[self.rows]
        self._crop_size = int(store.attrs("rgb")["shape"][0])
        per_row = sum(int(np.prod(store.attrs(m)["shape"])) for m in self._names())
        self._cache = None
        if per_row * len(self.rows) <= cache_bytes:
            self._cache = self._read_rows(self.rows)

    def _names(self):
        return REQUIRED_MAPS + (("mask",) if self.has_mask else ())

    @property
    def crop_size(self) -> int:
        return self._crop_size

    def __getstate__(self):
        # A worker gets everything but the handles (it opens its own); the in-memory maps
        # go as shared-memory tensors, so that starting a worker copies none of them.
        if (self._cache is not None and not isinstance(self._cache, _SharedMaps)
                and _fits_shared_memory(sum(v.nbytes for v in self._cache.values()))):
            self._cache = _SharedMaps(self._cache)
        return {**self.__dict__, "store": None, "_handle": None, "_pid": None}

    def _store_here(self):
        """The store handle of this process: opened here on first use in a worker."""
        if self._pid != os.getpid():
            from stores import open_store
            self._handle, self._pid = open_store(self.path), os.getpid()
        return self._handle

    def __len__(self) -> int:
        return len(self.rows)

    def _read_rows(self, rows: np.ndarray) -> dict:
        store = self._store_here()
        return {name: store.read_map(name, index=rows)[0] for name in self._names()}

    def batch(self, positions) -> dict:
        """Numpy batch of the samples at ``positions`` (0..len-1), in that order."""
        positions = np.asarray(positions, np.int64)
        if self._cache is not None:
            maps = {k: v[positions] for k, v in self._cache.items()}
        else:
            order = np.argsort(self.rows[positions], kind="stable")
            sorted_maps = self._read_rows(self.rows[positions][order])
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(order))
            maps = {k: v[inverse] for k, v in sorted_maps.items()}
        size = maps["rgb"].shape[1:3]
        if not self.has_mask:
            maps["mask"] = np.zeros((len(positions),) + size + (1,), np.uint8)
        return {"rgb": maps["rgb"], "mask": maps["mask"][..., 0],
                "label": self.labels[positions], "mask_valid": self.mask_valid[positions],
                "positions": positions}

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0):
        """Yield numpy batches; the order depends only on ``seed`` when shuffling."""
        order = (np.random.default_rng(seed).permutation(len(self)) if shuffle
                 else np.arange(len(self)))
        for start in range(0, len(order), batch_size):
            yield self.batch(order[start:start + batch_size])


def _fits_shared_memory(nbytes: int) -> bool:
    """Whether ``/dev/shm`` has room for ``nbytes`` twice over (a container's is often
    64 MB; the maps are then copied to each worker instead)."""
    try:
        return shutil.disk_usage("/dev/shm").free >= 2 * nbytes
    except OSError:
        return False


class _SharedMaps(dict):
    """Numpy maps whose memory is a shared-memory tensor's: pickled for a worker process,
    they pass as a handle to that memory (torch's multiprocessing reductions), not a copy."""

    def __init__(self, maps: dict):
        tensors = {k: torch.empty(v.shape, dtype=torch.from_numpy(v[:0]).dtype).share_memory_()
                   for k, v in maps.items()}
        for k, v in maps.items():
            tensors[k].numpy()[...] = v
        super().__init__({k: t.numpy() for k, t in tensors.items()})
        self._tensors = tensors

    def __reduce__(self):
        return _SharedMaps._from_tensors, (self._tensors,)

    @classmethod
    def _from_tensors(cls, tensors: dict) -> "_SharedMaps":
        maps = dict.__new__(cls)
        dict.__init__(maps, {k: t.numpy() for k, t in tensors.items()})
        maps._tensors = tensors
        return maps


def to_model_inputs(batch: dict, size: int, device="cpu") -> dict:
    """Tensors for the model from a numpy batch of crops (any size) and masks.

    ``rgb`` N x 3 x size x size float in [0, 1]; ``mask`` N x 1 x size x size {0, 1};
    ``label`` (N int64); ``mask_valid`` (N bool). Crops already at ``size`` pass unchanged.
    """
    pairs = [resize_pair(img, np.asarray(m, np.uint8), size)
             for img, m in zip(batch["rgb"], batch["mask"])]
    rgb = np.stack([p[0] for p in pairs]) if pairs else np.zeros((0, size, size, 3), np.uint8)
    mask = np.stack([p[1] for p in pairs]) if pairs else np.zeros((0, size, size), np.uint8)
    out = {"rgb": torch.from_numpy(rgb).permute(0, 3, 1, 2).float().div_(255),
           "mask": (torch.from_numpy(mask)[:, None] > 0).float(),
           "label": torch.from_numpy(np.asarray(batch["label"], np.int64)),
           "mask_valid": torch.from_numpy(np.asarray(batch["mask_valid"], bool))}
    return {k: v.to(device) for k, v in out.items()}


class ArrayMaps:
    """In-memory samples (a :meth:`TrainingSet.fixed` draw) with the interface of
    :class:`StoreMaps` that inference uses: ``len``, ``labels``, ``meta`` (``method``:
    ``sbi`` for self-blends, else the source's method) and ``batches``."""

    def __init__(self, arrays: dict, methods):
        self.arrays = arrays
        self.labels = np.asarray(arrays["label"], np.int64)
        self.meta = pd.DataFrame({"method": np.asarray(methods, object), "label": self.labels})

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int):
        for start in range(0, len(self), batch_size):
            pos = np.arange(start, min(start + batch_size, len(self)))
            yield {**{k: self.arrays[k][pos] for k in ("rgb", "mask", "label", "mask_valid")},
                   "positions": pos}


def prefetch(iterable, depth: int = 2):
    """Iterate ``iterable`` in a background thread, ``depth`` items ahead.

    OpenCV and most NumPy kernels release the GIL, so building the next mini-batch (reading,
    blending, augmenting) overlaps the model's forward/backward pass of the current one.
    """
    it = iter(iterable)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = [pool.submit(next, it, None) for _ in range(depth)]
        while True:
            item = pending.pop(0).result()
            if item is None:
                return
            pending.append(pool.submit(next, it, None))
            yield item


def default_workers() -> int:
    """Batch-building processes when ``--workers`` is not given: the cores this process may
    run on, shared among the ranks that torchrun starts on this machine
    (``LOCAL_WORLD_SIZE``), at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, cores // max(1, local_ranks))


class _PlannedBatches(torch.utils.data.Dataset):
    """Batch ``(epoch, i)``: the ``i``-th of that epoch's :meth:`TrainingSet.rank_plan` (a
    dataset of whole mini-batches; a worker computes an epoch's plan once, from the seed)."""

    def __init__(self, data: "TrainingSet", batch_size: int, shuffle: bool, max_steps,
                 rank: int, world_size: int):
        self.data, self.args = data, (batch_size, shuffle, max_steps, rank, world_size)
        self._plan = (None, [])

    def plan(self, epoch: int) -> list:
        if self._plan[0] != epoch:
            batch_size, shuffle, max_steps, rank, world_size = self.args
            self._plan = (epoch, self.data.rank_plan(batch_size, epoch, shuffle, max_steps,
                                                     rank, world_size))
        return self._plan[1]

    def __getitem__(self, key) -> dict:
        epoch, i = key
        # as tensors: the DataLoader hands them over in shared memory, where numpy arrays
        # would be pickled through a pipe (which the receiving process pays for)
        return {k: torch.from_numpy(v) for k, v in self.data.build(self.plan(epoch)[i],
                                                                   epoch).items()}


class _EpochSampler(torch.utils.data.Sampler):
    """The keys of the batches of epoch ``start`` and of every later epoch, in plan order
    (``counts(epoch)`` batches each; it stops at an epoch without batches). The workers
    thus go on into the next epoch while the last batches of one are still being built or
    trained on, instead of idling at every epoch's end. :class:`EpochBatches` sets
    ``start`` in this process before it (re)starts an iteration (a sampler runs in the main
    process)."""

    def __init__(self, counts):
        self.start, self.counts = 0, counts

    def __iter__(self):
        epoch = self.start
        while True:
            n = self.counts(epoch)
            if n == 0:
                return
            yield from ((epoch, i) for i in range(n))
            epoch += 1


class EpochBatches:
    """The mini-batches of every epoch of one run, built by the same ``workers`` processes
    from the first epoch to the last (started once, not once per epoch).

    ``EpochBatches(data, batch_size, workers)(epoch)`` iterates that epoch's batches, the
    same arrays as :meth:`TrainingSet.batches` (with ``world_size > 1``, this rank's share,
    :meth:`TrainingSet.rank_plan`), in plan order, each worker at most 2 batches ahead;
    ``workers=0`` builds them in this process in a background thread (:func:`prefetch`).
    When epoch ``e`` has been read to its end, the workers are already building epoch
    ``e + 1``'s first batches (a batch depends only on its epoch and place in the plan);
    asking for any other epoch, or after stopping part-way through one, restarts them there.
    """

    def __init__(self, data: "TrainingSet", batch_size: int, workers: int = 0,
                 shuffle: bool = True, max_steps=None, rank: int = 0, world_size: int = 1):
        if workers < 0:
            raise ValueError(f"--workers must be >= 0, got {workers}")
        self.data, self.workers = data, int(workers)
        self.args = (batch_size, shuffle, max_steps, rank, world_size)
        self._loader = None
        if self.workers:
            n_batches = self._count(0)
            self._sampler = _EpochSampler(self._count)
            self._iterator, self._next_epoch = None, None
            self._loader = torch.utils.data.DataLoader(
                _PlannedBatches(data, *self.args), batch_size=None, sampler=self._sampler,
                num_workers=min(self.workers, max(n_batches, 1)), collate_fn=_as_built,
                worker_init_fn=_one_thread, prefetch_factor=2, persistent_workers=True,
                multiprocessing_context=_worker_context())

    def close(self) -> None:
        """Stop the workers (dropping the loader ends its persistent worker processes)."""
        self._loader, self._iterator, self.workers = None, None, 0

    def _count(self, epoch: int) -> int:
        return len(self.data.rank_plan(*self.args[:1], epoch, *self.args[1:]))

    def __call__(self, epoch: int):
        batch_size, shuffle, max_steps, rank, world_size = self.args
        if self._loader is None:
            return prefetch(self.data.batches(batch_size, epoch, shuffle, max_steps, rank,
                                              world_size))
        return self._from_workers(epoch)

    def _from_workers(self, epoch: int):
        n = self._count(epoch)
        if not n:
            return
        if self._iterator is None or self._next_epoch != epoch:
            self._sampler.start = epoch  # (re)start there; batches in flight are dropped
            self._iterator = iter(self._loader)
        self._next_epoch = None  # until this epoch has been read to its end
        for _ in range(n):
            yield {k: v.numpy() for k, v in next(self._iterator).items()}
        self._next_epoch = epoch + 1


def _as_built(batch):
    return batch  # keep the numpy arrays (the DataLoader would make tensors of them)


def _one_thread(_worker_id):
    # N workers already use N cores; OpenCV's own thread pool would oversubscribe them
    import cv2
    cv2.setNumThreads(1)


def _worker_context():
    """Workers start from a fresh process, never by forking this one: a fork copies
    OpenCV's and OpenMP's thread pools in a state the child cannot use (it hangs) and
    this process's HDF5 handles. The fork server imports this module once, so a new
    worker starts in milliseconds; where there is none (Windows), spawn."""
    import multiprocessing
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


class TrainingSet:
    """Training or validation samples drawn from one or more stores.

    Parameters
    ----------
    sources : list of StoreMaps
        The rows to draw from (all stores must hold crops of the same size).
    sbi : ``"online"`` or ``"off"``
        ``online``: every real row with landmarks yields itself and a fresh self-blend per
        epoch; fakes are used only with ``keep_fakes``. ``off``: every row as stored.
    keep_fakes : bool
        With ``sbi="online"``, also use the sources' fake rows (their stored masks).
    augment : tuple of str
        Augmentations (:data:`fusion.cascade.blend.AUGMENTATIONS`) for every sample.
    size : int
        Model input size.
    seed : int
    part_blend : float
        Probability that a self-blend is a local one over face parts
        (:func:`fusion.cascade.blend.online_blend`); 0 (default) blends the whole face only.
    augment_p : dict, optional
        Per-crop probabilities replacing some of :data:`~fusion.cascade.blend.AUGMENTATIONS`
        (``--augment-p``).
    epoch_reals : int, optional
        Use only this many of the real (label-0) items per epoch (``--epoch-reals``): see
        :meth:`epoch_items`. None: every item, every epoch.
    codec_simd : bool
        x264's SIMD code in the ``h264``/``rescale`` augmentations (default True; False
        reproduces runs made before it was used: :data:`fusion.cascade.codec.SIMD_NOTE`).
    """

    def __init__(self, sources, sbi: str = "online", keep_fakes: bool = False, augment=(),
                 size: int = 128, seed: int = 0, augment_p: dict | None = None,
                 epoch_reals: int | None = None, part_blend: float = 0.0,
                 codec_simd: bool = True):
        if sbi not in SBI_MODES:
            raise ValueError(f"--sbi must be one of {', '.join(SBI_MODES)}, got {sbi!r}")
        if epoch_reals is not None and epoch_reals < 1:
            raise ValueError(f"--epoch-reals must be >= 1, got {epoch_reals}")
        if not 0.0 <= part_blend <= 1.0:
            raise ValueError(f"--part-blend must be in [0, 1], got {part_blend}")
        self.part_blend, self.codec_simd = float(part_blend), bool(codec_simd)
        self.sources, self.sbi, self.augment = list(sources), sbi, tuple(augment)
        self.size, self.seed = int(size), int(seed)
        self.augment_p, self.epoch_reals = dict(augment_p or {}), epoch_reals
        items, is_real, self.skipped_no_landmarks = [], [], 0
        for s, data in enumerate(self.sources):
            labels = data.labels
            if sbi == "online":
                real = labels == 0
                ok = has_landmarks(data.landmarks)
                self.skipped_no_landmarks += int((real & ~ok).sum())
                keep = (real & ok) | ((labels == 1) & keep_fakes)
            else:
                keep = np.ones(len(labels), bool)
            items += [(s, int(p)) for p in np.flatnonzero(keep)]
            is_real.append(labels[keep] == 0)
        self.items = np.array(items, np.int64).reshape(-1, 2)
        self._is_real = np.concatenate(is_real) if is_real else np.zeros(0, bool)

    def __len__(self) -> int:
        """Samples per epoch (a real and its blend count as two; with ``epoch_reals``, the
        drawn reals only)."""
        n_out = np.array([self._n_out(s, p) for s, p in self.items], np.int64)
        if self.epoch_reals is None or self.epoch_reals >= self._is_real.sum():
            return int(n_out.sum())
        real_out = 2 if self.sbi == "online" else 1
        return int(n_out[~self._is_real].sum()) + self.epoch_reals * real_out

    @property
    def n_items(self) -> int:
        return len(self.items)

    def _is_blended(self, s: int, p: int) -> bool:
        return self.sbi == "online" and self.sources[s].labels[p] == 0

    def _n_out(self, s: int, p: int) -> int:
        return 2 if self._is_blended(s, p) else 1

    def samples(self, s: int, p: int, epoch: int) -> list[tuple]:
        """The model-size samples of item (source ``s``, position ``p``) in ``epoch``:
        ``[(rgb uint8, mask uint8, label, mask_valid, blended)]``."""
        data = self.sources[s]
        b = data.batch([p])
        crop, mask = b["rgb"][0], b["mask"][0]
        label, valid = int(b["label"][0]), bool(b["mask_valid"][0])
        rng = sample_rng(self.seed, epoch, s, data.rows[p])
        out = [(crop, mask, label, valid, False)]
        if self._is_blended(s, p):
            blended, blend_mask = online_blend(crop, data.landmarks[p], rng, self.part_blend)
            out.append((blended, blend_mask, 1, True, True))
        result = []
        for img, m, lab, val, blended in out:
            img, m = augment_crop(img, m, self.augment, rng, self.augment_p, self.codec_simd)
            img, m = resize_pair(img, m, self.size)
            result.append((img, m, lab, val, blended))
        return result

    def _collate(self, samples: list) -> dict:
        return {"rgb": np.stack([x[0] for x in samples]),
                "mask": np.stack([x[1] for x in samples]),
                "label": np.array([x[2] for x in samples], np.int64),
                "mask_valid": np.array([x[3] for x in samples], bool),
                "sbi": np.array([x[4] for x in samples], bool)}

    def batch_plan(self, batch_size: int, epoch: int, shuffle: bool = True) -> list:
        """The epoch's mini-batches as arrays of item indices (into :attr:`items`): about
        ``batch_size`` samples each, a real and its blend never split, the order a function
        of ``seed`` and ``epoch`` only (:meth:`epoch_items`). Reads no data."""
        order = self.epoch_items(epoch, shuffle)
        plan, start, n = [], 0, 0
        for k, i in enumerate(order):
            n += self._n_out(*self.items[i])
            if n >= batch_size:
                plan.append(order[start:k + 1])
                start, n = k + 1, 0
        if start < len(order):
            plan.append(order[start:])
        return plan

    def epoch_items(self, epoch: int, shuffle: bool = True) -> np.ndarray:
        """The epoch's item indices (into :attr:`items`), in batch order.

        Every item, in a permutation drawn from ``(seed, epoch)`` (``shuffle``) or in store
        order. With ``epoch_reals = N``, only the first N real items of that permutation
        and every fake item: N reals drawn uniformly over the training reals' rows (so a
        store or a video contributes in proportion to its rows), without replacement, afresh
        each epoch, as a function of ``(seed, epoch)`` alone (not of the workers or the
        ranks, which split the plan made from it). N at or above the number of reals: every
        item, in the same order as without it.
        """
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.items))
        if self.epoch_reals is not None and self.epoch_reals < self._is_real.sum():
            real = self._is_real[perm]
            keep = ~real | (np.cumsum(real) <= self.epoch_reals)
            return perm[keep] if shuffle else np.sort(perm[keep])
        return perm if shuffle else np.arange(len(self.items))

    def build(self, items, epoch: int) -> dict:
        """The numpy mini-batch of ``items`` (indices into :attr:`items`) in ``epoch``."""
        return self._collate([x for i in items
                              for x in self.samples(int(self.items[i][0]), int(self.items[i][1]),
                                                    epoch)])

    def rank_plan(self, batch_size: int, epoch: int, shuffle: bool = True, max_steps=None,
                  rank: int = 0, world_size: int = 1) -> list:
        """The batches of :meth:`batch_plan` this rank builds, at most ``max_steps`` of them.

        With ``world_size > 1`` (one rank of :mod:`fusion.cascade.distributed`), only
        batches ``rank, rank + world_size, ...`` of the plan, and the plan's last
        ``len % world_size`` batches are left out so every rank yields as many.
        """
        plan = self.batch_plan(batch_size, epoch, shuffle)
        if world_size > 1:
            plan = plan[:len(plan) - len(plan) % world_size][rank::world_size]
        return plan[:max_steps or None]

    def batches(self, batch_size: int, epoch: int, shuffle: bool = True, max_steps=None,
                rank: int = 0, world_size: int = 1):
        """Numpy mini-batches of :meth:`rank_plan`, built one after another in this process."""
        for items in self.rank_plan(batch_size, epoch, shuffle, max_steps, rank, world_size):
            yield self.build(items, epoch)

    def fixed(self, epoch: int = VAL_EPOCH) -> ArrayMaps:
        """Every sample of one draw (validation: the same blends for the whole run)."""
        samples, methods = [], []
        for s, p in self.items:
            for x in self.samples(int(s), int(p), epoch):
                samples.append(x)
                methods.append("sbi" if x[4] else str(self.sources[s].meta["method"].iloc[p]))
        if not samples:
            empty = {"rgb": np.zeros((0, self.size, self.size, 3), np.uint8),
                     "mask": np.zeros((0, self.size, self.size), np.uint8),
                     "label": np.zeros(0, np.int64), "mask_valid": np.zeros(0, bool)}
            return ArrayMaps(empty, [])
        return ArrayMaps(self._collate(samples), methods)


# -------------------------------------------------------------------------- synthetic stores

def _smooth_noise(rng, size: int, cells: int, channels: int = 3) -> np.ndarray:
    coarse = rng.random((channels, cells, cells)).astype(np.float32)
    t = torch.from_numpy(coarse)[None]
    return F.interpolate(t, size=(size, size), mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()


def synthetic_images(n: int, size: int = 64, seed: int = 0, fake_fraction: float = 0.5):
    """Random textured crops; fakes carry a spliced square of another texture and colour.

    Returns ``(images N x size x size x 3 uint8, masks N x size x size uint8, labels N,
    methods N)``. Reals: smooth coloured noise. Fakes: the same kind of background with a
    square (a quarter to half of the side) filled with fine-grained noise of a shifted hue
    (method ``splice_color``) or a stripe texture (``splice_texture``); the mask is the square.
    """
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size, 3), np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    labels = (rng.random(n) < fake_fraction).astype(np.int64)
    labels[:2] = (0, 1)  # both classes in every split, however small
    methods = np.array(["real"] * n, dtype=object)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        base = 0.25 + 0.5 * _smooth_noise(rng, size, int(rng.integers(3, 6)))
        base += 0.05 * rng.standard_normal((size, size, 1)).astype(np.float32)
        img = base
        if labels[i]:
            side = int(rng.integers(size // 4, size // 2 + 1))
            y0, x0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
            patch = np.zeros((side, side, 3), np.float32)
            if rng.random() < 0.5:
                methods[i] = "splice_color"
                tint = rng.random(3).astype(np.float32)
                patch[:] = 0.2 + 0.6 * tint + 0.15 * rng.standard_normal((side, side, 3))
            else:
                methods[i] = "splice_texture"
                period = rng.uniform(2.5, 4.0)
                stripes = 0.5 + 0.4 * np.sin(2 * np.pi * (yy[:side, :side] + xx[:side, :side]) / period)
                patch[:] = stripes[..., None] * rng.uniform(0.6, 1.0, 3).astype(np.float32)
            img = base.copy()
            img[y0:y0 + side, x0:x0 + side] = patch
            masks[i, y0:y0 + side, x0:x0 + side] = 1
        images[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return images, masks, labels, methods


def synthetic_landmarks(n: int, size: int, rng) -> np.ndarray:
    """N x 68 x 2 face-like landmarks: the 68 iBUG points on and inside a random ellipse
    (jaw 0-16 along its lower half, left to right, so ``lm[16] - lm[0]`` is the face width;
    brows, nose, eyes and mouth inside)."""
    out = np.zeros((n, 68, 2), np.float32)
    for i in range(n):
        cx, cy = size * rng.uniform(0.42, 0.58, 2)
        rx, ry = size * rng.uniform(0.22, 0.3), size * rng.uniform(0.28, 0.36)
        jaw = np.linspace(np.pi, 0, 17)  # left -> chin -> right along the lower half
        pts = [np.stack([cx + rx * np.cos(jaw), cy + ry * np.sin(jaw)], 1)]
        brow = np.linspace(np.pi * 1.15, np.pi * 1.85, 10)
        pts.append(np.stack([cx + 0.8 * rx * np.cos(brow), cy + 0.8 * ry * np.sin(brow)], 1))
        inner = rng.uniform(-0.5, 0.5, (41, 2)) * [rx, ry] + [cx, cy]
        pts.append(inner)
        out[i] = np.concatenate(pts)
    return out


def synthetic_faces_store(path, n: int = 64, size: int = 64, seed: int = 0,
                          splits=(0.6, 0.2, 0.2)) -> Path:
    """A store of :func:`synthetic_images` crops *with landmarks* (:func:`synthetic_landmarks`),
    for online self-blending tests: ``rgb`` and ``mask`` maps, landmarks, each sample its own
    video. About half the samples are fakes (spliced squares, as in :func:`write_synthetic_store`)."""
    return write_synthetic_store(path, n=n, size=size, seed=seed, splits=splits,
                                 no_mask_fraction=0.0, with_landmarks=True,
                                 features=("rgb", "mask"))


def write_synthetic_store(path, n: int = 96, size: int = 64, seed: int = 0,
                          splits=(0.6, 0.2, 0.2), no_mask_fraction: float = 0.1,
                          with_landmarks: bool = False,
                          features=("rgb", "lbp", "dct", "mask")) -> Path:
    """Write a store of :func:`synthetic_images` with the maps of ``features`` (default
    ``rgb``, ``lbp``, ``dct`` and ``mask``).

    A test and benchmark fixture: the maps come from the project's registered extractors
    (``extract``), exactly as ``pipelines.extract`` would store them. About
    ``no_mask_fraction`` of the fakes get ``valid("mask")`` False. Splits are assigned per
    sample in the given proportions (train, val, test); each sample is its own video.
    ``with_landmarks`` stores :func:`synthetic_landmarks` (else NaN landmarks).
    """
    from extract import create_extractor
    from extract.registry import FaceBatch
    from stores import write_store

    images, masks, labels, methods = synthetic_images(n, size, seed)
    rng = np.random.default_rng(seed + 1)
    mask_valid = ~((labels == 1) & (rng.random(n) < no_mask_fraction))
    mask_valid[:2] = True
    bounds = np.cumsum(np.asarray(splits, float) / sum(splits)) * n
    split = np.array(["train"] * n, dtype=object)
    order = rng.permutation(n)
    split[order[int(round(bounds[0])):int(round(bounds[1]))]] = "val"
    split[order[int(round(bounds[1])):]] = "test"
    for s in ("train", "val", "test"):  # both classes everywhere
        for lab in (0, 1):
            if not np.any((split == s) & (labels == lab)):
                donor = np.flatnonzero((labels == lab) & (split == "train"))[0]
                split[donor] = s
    batch = FaceBatch(images=images, masks=np.where(mask_valid[:, None, None], masks, 0),
                      mask_valid=mask_valid,
                      video_ids=np.array([f"{m}/{i:04d}" for i, m in enumerate(methods)]),
                      frame_indices=np.zeros(n, np.int64))
    maps, attrs, valid = {}, {}, {}
    params_of = {"lbp": {"scales": ((8, 1),), "grid_scales": ((8, 1),)}}
    for name in features:
        ex = create_extractor(name, **params_of.get(name, {}))
        result = ex.extract(batch)
        maps[name] = result["map"]
        valid[name] = result["valid"]
        attrs[name] = ex.attributes()
    ids = [f"{m}/{i:04d}" for i, m in enumerate(methods)]
    meta = pd.DataFrame({"sample_id": [f"{v}:0" for v in ids], "dataset": "synthetic",
                         "split": split, "label": labels, "method": methods, "video_id": ids,
                         "frame_index": 0, "source_path": [f"synthetic://{v}" for v in ids]})
    landmarks = synthetic_landmarks(n, size, np.random.default_rng(seed + 2)) if with_landmarks else None
    return write_store(path, meta, maps=maps, attrs=attrs, valid=valid, landmarks=landmarks,
                       run={"dataset": "synthetic", "size": size, "seed": seed})
