"""The settings of a cascade run: :class:`TrainConfig`, the presets, and ``config.json``.

Everything a run reads from its configuration is read here: the flags' ranges
(:meth:`TrainConfig.validate`), the settings a resumed run keeps (:func:`resumed_config`),
the device (:func:`resolve_device`), the model the settings describe (:func:`build_model`)
and the run folder's ``config.json`` (:func:`write_run_config`, :func:`read_run_config`)::

    config.json    every setting (the model is rebuilt from it), the run format, the
                   stores' runs and, from the CLI, every flag (``flags``: ``--config``
                   reruns it)

Example
-------
>>> config = TrainConfig(store="reals.h5", out="runs/cascade", sbi="online").validate()
>>> config.stores, config.augment_names()
(['reals.h5'], 'all')
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fusion.cascade.blend import (AUGMENTATIONS, CODEC_AUGMENTATIONS, parse_augment,
                                  parse_augment_p)
from fusion.cascade.codec import require_av
from fusion.cascade.data import SBI_MODES
from fusion.cascade.losses import LossWeights
from fusion.cascade.model import DECODERS, CascadeModel
from fusion.metrics import to_jsonable

CONFIG_JSON = "config.json"
#: Values of ``--select-split`` (:mod:`fusion.cascade.selection`).
SELECT_SPLITS = ("auto", "all", "train", "val", "test")
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
    augment_p: str = ""  # "name=p,..." overriding AUGMENTATIONS' probabilities
    epoch_reals: int | None = None  # reals drawn per epoch; None: all
    sbi: str = "off"
    keep_fakes: bool = False
    # share of self-blends over face parts instead of the whole face; to be chosen on val
    part_blend: float = 0.5
    # x264's SIMD code in the codec augmentations (twice as fast; False: as runs made before)
    codec_simd: bool = True
    val_folders: str = ""
    select_store: str = ""  # comma list; "" (and older config.json): choose on val alone
    select_split: str = "auto"
    backbone_lr: float = 0.1
    warmup_epochs: float = 1.0
    schedule: str = "cosine"
    amp: bool = True
    max_steps: int | None = None  # per epoch; for smoke tests and benchmarks
    cache_mb: int = 1024
    workers: int | None = None  # batch-building processes; None: the machine's cores
    loss: LossWeights = field(default_factory=LossWeights)

    def validate(self):
        """Raise ValueError naming the flag for any out-of-range setting."""
        checks = [(self.epochs >= 1, "--epochs must be >= 1"),
                  (self.batch_size >= 1, "--batch-size must be >= 1"),
                  (self.max_steps is None or self.max_steps >= 1, "--max-steps must be >= 1"),
                  (self.workers is None or self.workers >= 0, "--workers must be >= 0"),
                  (self.epoch_reals is None or self.epoch_reals >= 1, "--epoch-reals must be >= 1"),
                  (self.lr > 0, "--lr must be > 0"),
                  (self.size >= 16 and self.size % 16 == 0, "--size must be a multiple of 16, >= 16"),
                  (self.sbi in SBI_MODES, f"--sbi must be one of {', '.join(SBI_MODES)}"),
                  (not self.keep_fakes or self.sbi == "online", "--keep-fakes needs --sbi online"),
                  (0.0 <= self.part_blend <= 1.0, "--part-blend must be in [0, 1]"),
                  (self.backbone_lr > 0, "--backbone-lr must be > 0"),
                  (self.warmup_epochs >= 0, "--warmup-epochs must be >= 0"),
                  (self.schedule in ("cosine", "constant"), "--schedule must be cosine or constant"),
                  (bool(self.stores), "--store: give at least one store"),
                  (self.dim % self.heads == 0, "--dim must be divisible by --heads"),
                  (self.decoder in DECODERS, f"--decoder must be one of {', '.join(DECODERS)}"),
                  (self.backbone_size is None or (16 <= self.backbone_size <= self.size
                                                  and self.backbone_size % 16 == 0),
                   "--backbone-size must be a multiple of 16, >= 16 and at most --size"),
                  (self.device in ("auto", "cpu", "cuda"), "--device must be auto, cpu or cuda"),
                  (self.select_split in SELECT_SPLITS,
                   f"--select-split must be one of {', '.join(SELECT_SPLITS)}")]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        names = parse_augment(self.augment_names())
        parse_augment_p(self.augment_p)
        if set(names) & set(CODEC_AUGMENTATIONS):
            try:
                require_av()
            except ImportError as exc:
                raise ValueError(f"--augment {','.join(names)}: {exc}") from None
        if isinstance(self.loss, dict):
            self.loss = LossWeights(**self.loss)
        return self

    @property
    def stores(self) -> list[str]:
        """The training stores (``store`` may be one path, a comma list, or a list)."""
        if isinstance(self.store, (list, tuple)):
            return [str(p) for p in self.store]
        return [p.strip() for p in str(self.store).split(",") if p.strip()]

    @property
    def select_stores(self) -> list[str]:
        """The ``--select-store`` files (a comma list or a list; empty without the flag)."""
        if isinstance(self.select_store, (list, tuple)):
            return [str(p) for p in self.select_store]
        return [p.strip() for p in str(self.select_store or "").split(",") if p.strip()]

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
        # runs saved before part blends blended the whole face only
        d.setdefault("part_blend", 0.0)
        # runs saved before the codec augmentations used SIMD encoded without it
        d.setdefault("codec_simd", False)
        if "augment_p" not in d:  # saved before the codec augmentations: "all" meant the rest
            augment = d.get("augment")
            if augment is None:  # as augment_names() resolves it
                augment = "all" if d.get("sbi") == "online" else ""
            if augment.strip().lower() == "all":
                d["augment"] = ",".join(n for n in AUGMENTATIONS if n not in CODEC_AUGMENTATIONS)
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


def resumed_config(config: TrainConfig) -> TrainConfig:
    """The settings of the run in ``config.out`` when it has a ``config.json`` (a resumed
    run keeps its settings; only the epoch count, device, workers and store paths -- the
    select stores' too, when given -- may change), else ``config``; validated either way.
    The run goes on in ``config.out`` whatever folder its ``config.json`` was written in: a
    copied or moved run folder is resumed where it now is, and the original stays as it was."""
    config.validate()
    path = Path(config.out) / CONFIG_JSON
    if not path.is_file():
        return config
    saved = TrainConfig.from_json(json.loads(path.read_text())["config"])
    saved.epochs, saved.device, saved.store = config.epochs, config.device, config.store
    saved.workers, saved.out = config.workers, config.out
    if config.select_stores:  # moved files; omitted on resume: the run's own select stores
        saved.select_store = config.select_store
    return saved.validate()


def write_json(path: Path, obj):
    """Write ``obj`` (NumPy values made JSON-able) to ``path`` whole: a temporary file
    beside it, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=2))
    tmp.replace(path)


def write_run_config(out: Path, config: TrainConfig, record: dict):
    """``out/config.json``: ``config``, :data:`RUN_FORMAT` and the ``record`` entries (the
    model's stride, the stores' runs, sample counts, the command line and flags)."""
    write_json(Path(out) / CONFIG_JSON, {"config": config.to_json(), "run_format": RUN_FORMAT,
                                         **record})


def read_run_config(run_dir) -> TrainConfig:
    """The :class:`TrainConfig` of a finished or running cascade run folder.

    Raises ValueError for a ``fusion.train`` run or a run of another :data:`RUN_FORMAT`,
    FileNotFoundError for a folder without ``config.json``.
    """
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
    return TrainConfig.from_json(saved["config"])
