"""Shape contracts and backbones of the cascade model."""
import pytest
import torch

from fusion.cascade.model import (BackboneWeightsError, CascadeModel, build_rgb_backbone,
                                  efficientnet_lite0_weights_file)

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
