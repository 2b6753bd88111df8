"""What every fusion head shares: the registry, the data and scaling, the base classes, saving.

* the registry: :func:`register_fusion`, :func:`create_fusion`, :func:`list_fusions` and
  :data:`FUSIONS` (how to add a head: see :mod:`fusion.heads`);
* :class:`FusionData` (one split as the heads see it) and :class:`BlockScaler` (imputation,
  standardisation, clipping to +-:data:`Z_CLIP`);
* :class:`FusionHead`, the base of every head, with ``save``; :func:`load_head` and
  :func:`head_from_state` rebuild a saved or pickled head;
* :class:`TorchFusion`, the base of the torch heads (Adam, BCE, early stopping), and the
  small torch helpers the family modules build their networks with.

This module imports no family module; the families import it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fusion import modelio

FUSIONS: dict[str, type["FusionHead"]] = {}
SKLEARN_HEADS = ("logreg", "linear-svm", "gbm")
FORMAT_VERSION = 1
#: Standardised feature values are clipped to [-Z_CLIP, Z_CLIP] (train standard deviations).
Z_CLIP = 10.0
#: A column whose train standard deviation is at most this share of its largest train
#: magnitude counts as constant (float32 rounding of a constant is ~1e-7 of it).
CONSTANT_RTOL = 1e-6

__all__ = ["FusionData", "FusionHead", "register_fusion", "create_fusion", "list_fusions",
           "load_head", "head_from_state", "FUSIONS", "SKLEARN_HEADS"]


def register_fusion(name: str):
    """Class decorator adding a :class:`FusionHead` subclass to the registry under ``name``."""
    def deco(cls):
        if name in FUSIONS:
            raise ValueError(f"fusion {name!r} is already registered")
        cls.name = name
        FUSIONS[name] = cls
        return cls
    return deco


def list_fusions() -> list[str]:
    return sorted(FUSIONS)


def create_fusion(name: str, features, **params) -> "FusionHead":
    """A fresh head of fusion ``name`` over ``features`` (vector or map names, in order)."""
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}; choose from {', '.join(list_fusions())}")
    return FUSIONS[name](list(features), **params)


# --------------------------------------------------------------------------------------------
# data
@dataclass
class FusionData:
    """One split as the heads see it.

    ``blocks`` maps feature name -> N x D float array (vector features) or N x H x W x C
    (map features, for early fusion); ``y`` is N int (0 real, 1 fake); ``meta`` the store's
    metadata rows (needed by ``sequence``: video_id, method, frame_index); ``valid`` (optional)
    maps feature name -> N bool, the store's ``valid`` flags of those rows.
    """
    blocks: dict
    y: np.ndarray
    meta: object = None
    valid: dict | None = None

    def __len__(self) -> int:
        return int(len(self.y))


# --------------------------------------------------------------------------------------------
# preprocessing
@dataclass
class BlockScaler:
    """Per-block NaN imputation (train mean), standardisation (train mean / std) and clipping.

    A column is *kept* when its train standard deviation exceeds :data:`CONSTANT_RTOL` times
    its largest train magnitude; other columns (constant on train: dead CNN units, an
    all-NaN column) carry no training information and are set to 0 on every split.
    Standardised values are clipped to ``[-Z_CLIP, Z_CLIP]``.

    >>> s = BlockScaler().fit({"f": np.array([[0., 1.], [0., 3.]])})
    >>> s.transform({"f": np.array([[5., 2.], [0., 1e9]])})["f"].tolist()
    [[0.0, 0.0], [0.0, 10.0]]
    """
    mean: dict = field(default_factory=dict)
    std: dict = field(default_factory=dict)
    keep: dict = field(default_factory=dict)

    def fit(self, blocks: dict) -> "BlockScaler":
        for name, x in blocks.items():
            x = np.asarray(x, dtype=np.float32)  # maps can be large: no float64 copy
            axes = tuple(range(x.ndim - 1))  # per column / per channel
            finite = np.isfinite(x)
            count = finite.sum(axis=axes)
            total = np.where(finite, x, 0).sum(axis=axes, dtype=np.float64)
            mean = np.where(count > 0, total / np.maximum(count, 1), 0.0)  # all-NaN column -> 0
            xi = np.where(finite, x, mean.astype(np.float32))
            std = xi.std(axis=axes, dtype=np.float64)
            scale = np.abs(xi).max(axis=axes) if xi.size else np.zeros_like(std)
            keep = (std > CONSTANT_RTOL * scale) & (std > 0)
            self.mean[name] = mean.astype(np.float32)
            self.std[name] = np.where(keep, std, 1.0).astype(np.float32)
            self.keep[name] = np.asarray(keep, bool)
        return self

    def constant_columns(self) -> dict:
        """``{block: number of columns neutralised as constant on train}``."""
        return {name: int((~k).sum()) for name, k in self.keep.items()}

    def transform(self, blocks: dict) -> dict:
        out = {}
        for name in self.mean:
            x = np.asarray(blocks[name], dtype=np.float32)
            x = np.where(np.isfinite(x), x, self.mean[name])
            z = (x - self.mean[name]) / self.std[name]
            keep = self.keep.get(name)
            if keep is not None:
                z = np.where(keep, z, 0.0)
            out[name] = np.clip(z, -Z_CLIP, Z_CLIP).astype(np.float32)
        return out

    def state(self) -> dict:
        s = {f"scaler.mean.{k}": v for k, v in self.mean.items()}
        s.update({f"scaler.std.{k}": v for k, v in self.std.items()})
        s.update({f"scaler.keep.{k}": v for k, v in self.keep.items()})
        return s

    @classmethod
    def from_state(cls, state: dict, names) -> "BlockScaler":
        # models saved before the keep mask existed keep every column
        return cls({n: np.asarray(state[f"scaler.mean.{n}"]) for n in names},
                   {n: np.asarray(state[f"scaler.std.{n}"]) for n in names},
                   {n: np.asarray(state[f"scaler.keep.{n}"], bool) for n in names
                    if f"scaler.keep.{n}" in state})


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


def _logit(p):
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


# --------------------------------------------------------------------------------------------
# base class
class FusionHead:
    """Base of all fusion strategies. See :mod:`fusion.heads` for how to add one."""

    name = "base"
    inputs = "vector"
    family = "feature"
    uses_head = False  # True where --head (logreg / linear-svm / gbm) matters
    accepted_params: dict = {}  # param name -> tuple of allowed values, or None for any value

    @classmethod
    def check_params(cls, features, params: dict):
        """Raise ValueError naming the first unknown or invalid hyper-parameter."""
        for k, v in params.items():
            if k not in cls.accepted_params:
                known = ", ".join(sorted(cls.accepted_params)) or "none"
                raise ValueError(f"fusion {cls.name!r} has no parameter {k!r} (it takes: {known})")
            allowed = cls.accepted_params[k]
            if allowed is not None and v not in allowed:
                raise ValueError(f"fusion {cls.name!r}: {k} must be one of {', '.join(map(str, allowed))}, got {v!r}")

    def __init__(self, features, head: str = "logreg", seed: int = 0, **params):
        if not features:
            raise ValueError("a fusion needs at least one feature")
        self.features = list(features)
        self.head = head
        self.seed = int(seed)
        self.params = dict(params)
        self.scaler: BlockScaler | None = None
        self.dims: dict = {}

    # public API -----------------------------------------------------------------------------
    def fit(self, train: FusionData, val: FusionData | None = None) -> "FusionHead":
        missing = [f for f in self.features if f not in train.blocks]
        if missing:
            raise ValueError(f"training data lacks feature(s) {missing}")
        if len(np.unique(train.y)) < 2:
            raise ValueError("training split has one class only; need both reals and fakes")
        raw = {f: train.blocks[f] for f in self.features}
        self.dims = {f: list(np.asarray(b).shape[1:]) for f, b in raw.items()}
        self.scaler = BlockScaler().fit(raw)
        self._fit(self._prep(train), self._prep(val) if val is not None and len(val) else None)
        return self

    def predict_proba(self, data: FusionData) -> np.ndarray:
        """Fake score per sample in [0, 1] (N floats, higher = more fake).

        A monotone map of :meth:`decision_function`; it saturates at 1.0 for large logits,
        so rank and threshold on the decision values.
        """
        return self.probability(self.decision_function(data))

    def decision_function(self, data: FusionData) -> np.ndarray:
        """Decision value per sample (N float64, higher = more fake; a logit for most heads)."""
        if self.scaler is None:
            raise RuntimeError(f"fusion {self.name!r} is not fitted")
        for f in self.features:
            if f not in data.blocks:
                raise ValueError(f"data lacks feature {f!r} the model was trained on")
            shape = list(np.shape(data.blocks[f])[1:])
            if shape != list(self.dims[f]):
                raise ValueError(f"feature {f!r} has shape {shape} per sample; the model expects {self.dims[f]}")
        return np.asarray(self._decision(self._prep(data)), dtype=np.float64).ravel()

    def probability(self, decision) -> np.ndarray:
        """The [0, 1] score of decision values (the sigmoid, for most heads)."""
        return _sigmoid(np.asarray(decision, np.float64))

    def decision_of(self, probability) -> np.ndarray:
        """Inverse of :meth:`probability`: for thresholds saved as probabilities by older runs."""
        return _logit(probability)

    def config(self) -> dict:
        return {"format_version": FORMAT_VERSION, "fusion": self.name, "features": self.features,
                "head": self.head, "seed": self.seed, "params": self.params, "dims": self.dims,
                "inputs": self.inputs}

    def save(self, directory, extra: dict | None = None) -> Path:
        """Write ``model.json`` (config + ``extra``) and the weights into ``directory``."""
        cfg = self.config()
        if extra:
            cfg["run"] = extra
        return modelio.save_model(directory, cfg, self._arrays(), self._tensor_state())

    def _arrays(self) -> dict:
        """The numpy state of a fitted head: scaler plus the head's own arrays."""
        return {**self.scaler.state(), **self._state()}

    def __reduce_ex__(self, protocol):
        # A fitted torch head holds a module of a class made inside a function, which pickle
        # cannot name; a fitted head is therefore pickled as what save() writes (config,
        # numpy state, torch tensors) and rebuilt by head_from_state, as load_head does.
        if self.scaler is None:
            return super().__reduce_ex__(protocol)
        tensors = {k: v.detach().cpu().clone() for k, v in self._tensor_state().items()}
        return head_from_state, (self.config(), self._arrays(), tensors)

    # for subclasses --------------------------------------------------------------------------
    def _prep(self, data: FusionData) -> FusionData:
        return FusionData(self.scaler.transform(data.blocks), np.asarray(data.y), data.meta)

    def _concat(self, data: FusionData) -> np.ndarray:
        return np.concatenate([data.blocks[f].reshape(len(data), -1) for f in self.features], axis=1)

    def _fit(self, train, val):
        raise NotImplementedError

    def _decision(self, data):
        raise NotImplementedError

    def _state(self) -> dict:
        raise NotImplementedError

    def _load_state(self, state: dict):
        raise NotImplementedError

    def _tensor_state(self) -> dict:
        return {}

    def _load_tensors(self, tensors: dict):
        pass


def load_head(directory) -> FusionHead:
    """Rebuild a saved head from ``model.json`` + weights (no pickle involved)."""
    cfg, arrays, tensors = modelio.load_model(directory)
    if cfg.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{directory}: model format {cfg.get('format_version')} != {FORMAT_VERSION}")
    return head_from_state(cfg, arrays, tensors)


def head_from_state(cfg: dict, arrays: dict, tensors: dict) -> FusionHead:
    """A fitted head from its :meth:`FusionHead.config`, numpy state and torch state: what
    :func:`load_head` reads from disk and what unpickling a fitted head calls."""
    head = create_fusion(cfg["fusion"], cfg["features"], head=cfg["head"], seed=cfg["seed"], **cfg["params"])
    head.dims = cfg["dims"]
    head.scaler = BlockScaler.from_state(arrays, head.features)
    head._load_state(arrays)
    head._load_tensors(tensors)
    return head


def _prefixed(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


# --------------------------------------------------------------------------------------------
# torch heads
def _torch():
    import torch  # imported lazily: sklearn-only runs never pay for it
    return torch


def torch_device():
    """CUDA when available, else CPU."""
    torch = _torch()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TorchFusion(FusionHead):
    """Base of the torch heads: Adam, BCE loss, early stopping on val loss, seeded.

    Hyper-parameters (``params``): ``epochs`` (100), ``patience`` (10), ``lr`` (3e-3),
    ``batch_size`` (64), ``weight_decay`` (1e-4), ``hidden`` (64), ``d`` (token size, 32).
    Without a val split, train loss drives the early stopping.
    """
    defaults = {"epochs": 100, "patience": 10, "lr": 3e-3, "batch_size": 64,
                "weight_decay": 1e-4, "hidden": 64, "d": 32}
    accepted_params = dict.fromkeys(defaults)

    def p(self, key):
        return self.params.get(key, self.defaults.get(key))

    # subclasses: the network and how a split becomes tensors -------------------------------
    def _build(self):
        raise NotImplementedError

    def _items(self, data) -> tuple[list, np.ndarray]:
        """Network inputs (arrays with one row per training item) and item labels."""
        return [data.blocks[f].reshape(len(data), -1) for f in self.features], data.y

    def _to_samples(self, data, item_scores: np.ndarray) -> np.ndarray:
        return item_scores

    # training --------------------------------------------------------------------------------
    def _fit(self, train, val):
        torch = _torch()
        torch.manual_seed(self.seed)
        dev = torch_device()
        self.net = self._build().to(dev)
        xs, y = self._items(train)
        xs = [torch.as_tensor(np.ascontiguousarray(x)).to(dev) for x in xs]
        y = torch.as_tensor(np.array(y, dtype=np.float32)).to(dev)
        if val is not None and len(np.unique(val.y)) == 2:
            vx, vy = self._items(val)
            vx = [torch.as_tensor(np.ascontiguousarray(x)).to(dev) for x in vx]
            vy = torch.as_tensor(np.array(vy, dtype=np.float32)).to(dev)
        else:
            vx, vy = xs, y
        opt = torch.optim.Adam(self.net.parameters(), lr=self.p("lr"), weight_decay=self.p("weight_decay"))
        loss_fn = torch.nn.BCEWithLogitsLoss()
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        n, bs = len(y), int(self.p("batch_size"))
        best, best_state, bad = math.inf, None, 0
        for _ in range(int(self.p("epochs"))):
            self.net.train()
            perm = torch.randperm(n, generator=gen).to(dev)
            for i in range(0, n, bs):
                idx = perm[i:i + bs]
                opt.zero_grad()
                loss = loss_fn(self.net(*[x[idx] for x in xs]), y[idx])
                loss.backward()
                opt.step()
            vloss = loss_fn(self._logits(vx), vy).item()
            if vloss < best - 1e-5:
                best, bad = vloss, 0
                best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            else:
                bad += 1
                if bad >= int(self.p("patience")):
                    break
        self.net.load_state_dict(best_state)
        self.net.eval()

    def _logits(self, xs):
        torch = _torch()
        self.net.eval()
        bs = 4096
        with torch.no_grad():
            return torch.cat([self.net(*[x[i:i + bs] for x in xs]) for i in range(0, len(xs[0]), bs)])

    def _decision(self, data):
        torch = _torch()
        dev = next(self.net.parameters()).device
        xs, _ = self._items(data)
        logits = self._logits([torch.as_tensor(np.ascontiguousarray(x)).to(dev) for x in xs])
        return self._to_samples(data, logits.cpu().numpy().astype(np.float64))

    def _state(self):
        return {}

    def _load_state(self, state):
        pass

    def _tensor_state(self):
        return dict(self.net.state_dict())

    def _load_tensors(self, tensors):
        self.net = self._build().to(torch_device())
        self.net.load_state_dict(tensors)
        self.net.eval()


def _vector_dims(head) -> list[int]:
    return [int(np.prod(head.dims[f])) for f in head.features]


def _nn():
    return _torch().nn


def _make_module(forward, **modules):
    """A tiny nn.Module from sub-modules and a ``forward(self, *xs)`` function."""
    nn = _nn()

    class _Net(nn.Module):
        def __init__(self):
            super().__init__()
            for k, v in modules.items():
                setattr(self, k, v)

        def forward(self, *xs):
            return forward(self, *xs)

    return _Net()
