"""Tests for pipelines/demo.py and the edits it uses (pipelines/editing.py)."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from pipelines.demo import (PHOTO_SPLITS, demo_sources, render_demo_crop,
                            render_demo_source)
from pipelines.editing import EDITS, NEEDS_DONOR, apply_edit
from pipelines.samples import SPLITS


def _images(size=96, seed=0):
    rng = np.random.default_rng(seed)
    # Smooth random content (not pure noise) so blurs and blends behave as on photos.
    base = rng.integers(0, 256, (size // 8, size // 8, 3)).astype(np.uint8)
    target = np.kron(base, np.ones((8, 8, 1), np.uint8))
    donor = rng.integers(0, 256, (size + 10, size - 6, 3), dtype=np.uint8)  # resized
    return target, donor


def _run(name, target, donor, seed, difficulty=0.5):
    return apply_edit(name, target, np.random.default_rng(seed), difficulty, donor=donor)


# ------------------------------------------------------------------ editing

@pytest.mark.parametrize("name", sorted(EDITS))
@pytest.mark.parametrize("difficulty", [0.0, 0.5, 1.0])
def test_edit_mask_is_exactly_the_changed_pixels(name, difficulty):
    target, donor = _images()
    for seed in range(4):
        edited, mask = _run(name, target, donor, seed, difficulty)
        assert edited.shape == target.shape and edited.dtype == np.uint8
        assert mask.shape == target.shape[:2] and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1}
        np.testing.assert_array_equal(mask, np.any(edited != target, axis=-1))
        assert mask.any()


@pytest.mark.parametrize("name", sorted(EDITS))
def test_edit_deterministic_and_seed_dependent(name):
    target, donor = _images()
    a, ma = _run(name, target, donor, 7)
    b, mb = _run(name, target, donor, 7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ma, mb)
    c, mc = _run(name, target, donor, 8)
    assert not np.array_equal(ma, mc)


@pytest.mark.parametrize("name", sorted(EDITS))
def test_edit_never_empty_on_flat_image(name):
    flat = np.full((32, 32, 3), 128, np.uint8)
    edited, mask = _run(name, flat, flat.copy(), 0)
    assert mask.any()
    np.testing.assert_array_equal(mask, np.any(edited != flat, axis=-1))


def test_edit_input_validation():
    target, donor = _images()
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        apply_edit("blur", target.astype(np.float32), 0)
    with pytest.raises(ValueError, match="difficulty"):
        apply_edit("blur", target, 0, difficulty=1.5)
    with pytest.raises(ValueError, match="needs a donor"):
        apply_edit("splice", target, 0)
    with pytest.raises(ValueError, match="unknown edit"):
        apply_edit("warp", target, 0)
    assert NEEDS_DONOR <= set(EDITS)


# ------------------------------------------------------------------ demo data set

def _photo(source):
    return source.path.split(":", 1)[1]


def test_demo_sources_shape():
    sources = demo_sources()
    counts = Counter(s.label for s in sources)
    assert 40 <= counts[0] <= 60 and 40 <= counts[1] <= 60
    assert all(s.kind == "demo" and s.dataset == "demo" for s in sources)
    assert len({s.video_id for s in sources}) == len(sources)
    assert {s.method for s in sources} == {"real", *EDITS}
    for s in sources:
        assert s.video_id.startswith(f"{s.method}/{_photo(s)}/crop")
        params = dict(s.params)
        assert (params["edit"] == "") == (s.label == 0)
        assert (params["donor"] != "") == (params["edit"] in NEEDS_DONOR)
    assert demo_sources() == sources


def test_demo_splits_disjoint_by_photo_with_both_labels():
    sources = demo_sources()
    photos = {split: {_photo(s) for s in sources if s.split == split} for split in SPLITS}
    assert all(photos.values())
    assert not photos["train"] & photos["val"] and not photos["train"] & photos["test"]
    assert not photos["val"] & photos["test"]
    for split in SPLITS:
        assert {s.label for s in sources if s.split == split} == {0, 1}
    # A donor never brings another split's pixels in.
    for s in sources:
        donor = dict(s.params)["donor"]
        if donor:
            assert PHOTO_SPLITS[donor] == s.split and donor != _photo(s)


def test_demo_render_all_fast_deterministic_and_masks_exact():
    sources = demo_sources()
    start = time.perf_counter()
    rendered = [render_demo_source(s) for s in sources]
    assert time.perf_counter() - start < 5.0
    for s, (rgb, mask) in zip(sources, rendered):
        assert rgb.shape == (256, 256, 3) and rgb.dtype == np.uint8
        assert mask.shape == (256, 256) and mask.dtype == np.uint8
        if s.label == 0:
            assert not mask.any()
            continue
        real = render_demo_crop(_photo(s), dict(s.params)["crop"], 256)
        np.testing.assert_array_equal(mask, np.any(rgb != real, axis=-1))
        assert mask.any()
    for i in (0, len(sources) // 2, len(sources) - 1):
        again = render_demo_source(sources[i])
        np.testing.assert_array_equal(again[0], rendered[i][0])
        np.testing.assert_array_equal(again[1], rendered[i][1])


def test_demo_render_size_and_unedited_fake_equals_crop():
    fake = next(s for s in demo_sources() if s.label == 1)
    rgb, mask = render_demo_source(fake, size=64)
    assert rgb.shape == (64, 64, 3) and mask.shape == (64, 64)
    params = dict(fake.params) | {"edit": "", "donor": ""}
    plain, plain_mask = render_demo_source(replace(fake, params=tuple(params.items()), label=0))
    np.testing.assert_array_equal(plain, render_demo_crop(_photo(fake), params["crop"], 256))
    assert not plain_mask.any()


def test_render_rejects_non_demo_source():
    s = replace(demo_sources()[0], path="/tmp/x.png", kind="image")
    with pytest.raises(ValueError, match="not a demo source"):
        render_demo_source(s)
