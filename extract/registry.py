"""The extractor registry: every feature family is one registered :class:`Extractor`.

How to add a new extractor
--------------------------
Write a subclass of :class:`Extractor` in the module of its family (``extract/texture.py``
for texture features, a new module for a new family), give it a ``name`` (its CLI name),
a ``version`` (bump it whenever its output changes), ``defaults`` for its parameters,
``needs`` (``"landmarks"``, ``"mask"``, ``"video"``), and implement ``outputs`` and
``extract``. Decorate the class with ``@register_extractor`` and import the module in
``extract/__init__.py``. The contract tests in ``tests/extract/test_contract.py`` then run
on it automatically: shapes and dtypes as declared, finite values, a batch equal to its
items one by one, determinism.

An extractor never opens files and knows nothing about HDF5: it maps a
:class:`FaceBatch` to arrays, and ``stores`` writes them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from base.errors import UsageError

_REGISTRY: dict[str, type["Extractor"]] = {}

#: Needs an extractor may declare.
NEEDS = ("landmarks", "mask", "video")


@dataclass
class FaceBatch:
    """A batch of aligned crops and what is known about them.

    Attributes
    ----------
    images : ndarray, N x H x W x 3, uint8
        Aligned RGB crops.
    landmarks : ndarray, N x 68 x 2, float32
        iBUG 68-point landmarks in crop pixel coordinates (x, y); NaN where unknown.
    masks : ndarray, N x H x W, uint8
        Manipulation masks in {0, 1}; rows with ``mask_valid`` False hold zeros.
    mask_valid : ndarray, N, bool
        Whether the sample has a mask at all (reals have an all-zero valid mask).
    video_ids : ndarray of str, N
        Video of each row; rows of one video are consecutive and in frame order.
    frame_indices : ndarray, N, int64
        Frame index of each row in its video.
    """

    images: np.ndarray
    landmarks: np.ndarray | None = None
    masks: np.ndarray | None = None
    mask_valid: np.ndarray | None = None
    video_ids: np.ndarray | None = None
    frame_indices: np.ndarray | None = None

    def __post_init__(self):
        images = np.asarray(self.images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be an N x H x W x 3 uint8 array, got {images.dtype} "
                             f"{images.shape}")
        n, h, w, _ = images.shape
        self.images = images
        if self.landmarks is None:
            self.landmarks = np.full((n, 68, 2), np.nan, np.float32)
        self.landmarks = np.asarray(self.landmarks, np.float32)
        if self.landmarks.shape != (n, 68, 2):
            raise ValueError(f"landmarks must be N x 68 x 2, got {self.landmarks.shape}")
        if self.masks is None:
            self.masks = np.zeros((n, h, w), np.uint8)
            self.mask_valid = np.zeros(n, bool) if self.mask_valid is None else self.mask_valid
        if self.mask_valid is None:
            self.mask_valid = np.ones(n, bool)
        self.mask_valid = np.asarray(self.mask_valid, bool)
        if self.video_ids is None:
            self.video_ids = np.array([f"item{i}" for i in range(n)])
        if self.frame_indices is None:
            self.frame_indices = np.zeros(n, np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index) -> "FaceBatch":
        """Rows ``index`` (a slice or an index array) as a new batch."""
        return FaceBatch(self.images[index], self.landmarks[index], self.masks[index],
                         self.mask_valid[index], self.video_ids[index], self.frame_indices[index])

    @property
    def gray(self) -> np.ndarray:
        """N x H x W float32 luma in [0, 255] (ITU-R BT.601, as OpenCV's RGB2GRAY)."""
        return self.images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class OutputSpec:
    """One array an extractor produces per sample: a ``vector`` or a ``map``.

    ``shape`` excludes the batch axis: ``(D,)`` for a vector, ``(H, W, C)`` for a map.
    ``columns`` names the vector's dimensions (optional, for importance reports).
    """

    kind: str
    shape: tuple
    dtype: str
    columns: tuple = ()


class Extractor:
    """Base class of every feature extractor. See the module docstring for the recipe."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    needs: ClassVar[tuple] = ()
    defaults: ClassVar[dict] = {}
    #: Deep extractors batch across samples and may use a GPU.
    batch_hint: ClassVar[int] = 64
    #: Parameters that change how, not what, is computed (device, batch size): they are
    #: left out of the stored attributes so stores made on a GPU and a CPU compare equal.
    runtime_params: ClassVar[tuple] = ()

    def __init__(self, **params):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise UsageError(f"extractor {self.name!r} has no parameter(s) {sorted(unknown)}; "
                             f"it takes {sorted(self.defaults)}")
        self.params = {**self.defaults, **params}

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        """The arrays produced for crops of ``size`` x ``size``: ``{"vector": ..., "map": ...}``."""
        raise NotImplementedError

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        """Compute the feature on a batch.

        Returns
        -------
        dict
            ``"vector"``: N x D float32, ``"map"``: N x H x W x C, as declared by
            :meth:`outputs`, and ``"valid"``: N bool, False where the feature could not be
            computed (those rows hold NaN).
        """
        raise NotImplementedError

    def attributes(self) -> dict:
        """What the store records about this extractor beside its arrays."""
        return {"extractor": self.name, "version": self.version,
                "params": {k: v for k, v in sorted(self.params.items())
                           if k not in self.runtime_params}}


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"extractor name {cls.name!r} is already registered by "
                         f"{_REGISTRY[cls.name].__name__}")
    bad = set(cls.needs) - set(NEEDS)
    if bad:
        raise ValueError(f"{cls.__name__}.needs has unknown entries {sorted(bad)}; allowed {NEEDS}")
    _REGISTRY[cls.name] = cls
    return cls


def list_extractors() -> list[str]:
    """Names of every registered extractor, sorted."""
    import extract  # noqa: F401  (registers the built-in families)
    return sorted(_REGISTRY)


def create_extractor(name: str, **params) -> Extractor:
    """Instantiate the extractor registered as ``name``."""
    names = list_extractors()
    if name not in _REGISTRY:
        raise UsageError(f"unknown feature {name!r}; available: {','.join(names)}")
    return _REGISTRY[name](**params)


def parse_feature_list(text: str) -> list[str]:
    """``"lbp,dct"`` -> ``["lbp", "dct"]``, checked against the registry (UsageError if not)."""
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    if not names:
        raise UsageError("--features is empty; give a comma-separated list such as lbp,dct")
    known = list_extractors()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"--features: unknown feature(s) {','.join(unknown)}; "
                         f"available: {','.join(known)}")
    return list(dict.fromkeys(names))
