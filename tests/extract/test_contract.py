"""The contract every registered extractor keeps, checked on real aligned faces.

Parametrised over ``list_extractors()``, so a newly registered extractor is covered
without writing a test: outputs as declared, finite where valid, a batch equal to its
items (per video for extractors that need the video), deterministic.
"""
import contextlib

import numpy as np
import pytest

from extract import deep
from extract.registry import FaceBatch, create_extractor, list_extractors


_TINY_RUN = {}


def _tiny_run():
    """A tiny trained cascade run (one per test session), for the ``cascade`` feature."""
    if "run" not in _TINY_RUN:
        import tempfile
        from pathlib import Path

        from fusion.cascade.data import write_synthetic_store
        from tests.cascade_fixtures import tiny_cascade_run
        folder = Path(tempfile.mkdtemp(prefix="clmf-contract-cascade-"))
        store = write_synthetic_store(folder / "s.h5", n=32, size=32, features=("rgb", "mask"))
        _TINY_RUN["run"] = tiny_cascade_run(folder / "run", store)
    return _TINY_RUN["run"]


@contextlib.contextmanager
def _built(name):
    """The extractor ``name``; clip gets the explicit random-weights testing hook, cascade a
    tiny trained run."""
    if name == "clip":
        with deep._testing_random_clip(deep.TINY_CLIP_CFG):
            yield create_extractor(name, device="cpu")
    elif name == "cascade":
        yield create_extractor(name, run=str(_tiny_run()), device="cpu")
    else:
        yield create_extractor(name)


def _two_videos(batch: FaceBatch) -> FaceBatch:
    """The 8 faces as two 4-frame clips of consecutive frames (temporal features)."""
    n = len(batch)
    return FaceBatch(batch.images, batch.landmarks, batch.masks,
                     np.ones(n, bool),
                     np.array(["v/a"] * (n // 2) + ["v/b"] * (n - n // 2)),
                     np.concatenate([np.arange(n // 2), np.arange(n - n // 2)]).astype(np.int64))


def _check(result, specs, n):
    assert set(result) == set(specs) | {"valid"}
    assert result["valid"].shape == (n,) and result["valid"].dtype == bool
    for kind, spec in specs.items():
        out = result[kind]
        assert out.shape == (n,) + tuple(spec.shape), (kind, out.shape, spec.shape)
        assert out.dtype == np.dtype(spec.dtype), (kind, out.dtype, spec.dtype)
        if spec.columns:
            assert len(spec.columns) == spec.shape[0] == len(set(spec.columns))
        if np.issubdtype(out.dtype, np.floating):
            assert np.isfinite(out[result["valid"]]).all()


def _equal(a, b, name):
    if np.issubdtype(a.dtype, np.floating) and name in ("cnn", "gram", "clip", "sequence", "cascade"):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, equal_nan=True)
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", list_extractors())
def test_extractor_contract(name, real_face_batch):
    batch = _two_videos(real_face_batch)
    with _built(name) as extractor:
        size = batch.images.shape[1]
        specs = extractor.outputs(size)
        result = extractor.extract(batch)
        _check(result, specs, len(batch))
        if "video" not in extractor.needs:
            # every face is computable, except that corneal highlights need open eyes that
            # catch the light: a feature that is NaN everywhere is broken
            assert result["valid"].any() if name == "eyes" else result["valid"].all()
        parts = [np.arange(0, 4), np.arange(4, 8)] if "video" in extractor.needs else \
            [np.arange(i, i + 1) for i in range(len(batch))]
        pieces = [extractor.extract(batch.subset(idx)) for idx in parts]
        again = extractor.extract(batch)
    for kind in specs:
        _equal(np.concatenate([p[kind] for p in pieces]), result[kind], name)
        _equal(again[kind], result[kind], name)
    np.testing.assert_array_equal(np.concatenate([p["valid"] for p in pieces]), result["valid"])


@pytest.mark.parametrize("name", list_extractors())
def test_extractor_records_what_it_is(name):
    with _built(name) as extractor:
        attrs = extractor.attributes()
    assert attrs["extractor"] == name and attrs["version"]
    assert set(attrs["params"]) <= set(extractor.defaults)
    assert extractor.__doc__ and len(extractor.__doc__.strip()) > 40
