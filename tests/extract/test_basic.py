"""Tests of extract/basic.py (rgb, mask), and ``check_contract``, the per-extractor contract
check the geometry, eyes and artifacts tests share."""
from __future__ import annotations

import numpy as np

from extract.registry import FaceBatch


def check_contract(extractor, batch: FaceBatch, *, finite: bool = True) -> dict:
    """Shapes/dtypes as declared, finite valid rows, batch == per item, deterministic."""
    size = batch.images.shape[1]
    specs = extractor.outputs(size)
    out = extractor.extract(batch)
    n = len(batch)
    assert out["valid"].shape == (n,) and out["valid"].dtype == bool
    for key, spec in specs.items():
        arr = out[key]
        assert arr.shape == (n,) + tuple(spec.shape), key
        assert arr.dtype == np.dtype(spec.dtype), key
        if key == "vector":
            assert len(spec.columns) == spec.shape[0]
            if finite:
                assert np.isfinite(arr[out["valid"]]).all()
            assert np.isnan(arr[~out["valid"]]).all()
    again = extractor.extract(batch)
    for key in specs:
        np.testing.assert_array_equal(out[key], again[key])
    for i in range(n):
        item = extractor.extract(batch.subset(slice(i, i + 1)))
        assert item["valid"][0] == out["valid"][i]
        for key in specs:
            np.testing.assert_allclose(item[key][0], out[key][i], rtol=1e-5, atol=1e-5,
                                       equal_nan=True)
    return out


def test_rgb_returns_the_crop(real_face_batch):
    from extract.basic import RGBExtractor
    out = check_contract(RGBExtractor(), real_face_batch)
    np.testing.assert_array_equal(out["map"], real_face_batch.images)
    assert out["valid"].all()


def test_mask_area_and_validity():
    from extract.basic import MaskExtractor
    masks = np.zeros((3, 8, 8), np.uint8)
    masks[0, :4, :] = 1     # half the crop
    masks[1, 0, 0] = 1      # one pixel
    batch = FaceBatch(np.zeros((3, 8, 8, 3), np.uint8), masks=masks,
                      mask_valid=np.array([True, True, False]))
    out = check_contract(MaskExtractor(), batch)
    np.testing.assert_allclose(out["vector"][:2, 0], [0.5, 1 / 64])
    assert np.isnan(out["vector"][2, 0])
    np.testing.assert_array_equal(out["valid"], [True, True, False])
    np.testing.assert_array_equal(out["map"][..., 0], masks)
    assert out["map"].dtype == np.uint8


def test_mask_extractor_on_real_faces(real_face_batch):
    from extract.basic import MaskExtractor
    check_contract(MaskExtractor(), real_face_batch)
