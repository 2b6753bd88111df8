"""Tests of extract/temporal.py: temporal (patch-graph consistency) and sequence."""
from __future__ import annotations

import numpy as np
import pytest

from base.errors import UsageError
from extract.registry import FaceBatch
from extract.temporal import (SequenceExtractor, TemporalConsistencyExtractor, patch_features,
                              transition_inconsistency, video_groups)

T = 8
BAD = 4  # the frame that gets an injected inconsistency


@pytest.fixture(autouse=True)
def _one_thread():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)


def face_clip(edit=None, frames=None, video="v", seed=0):
    """A synthetic clip of the astronaut's face: a slow 1 px/frame pan plus sensor noise.

    ``edit="noise"`` replaces one 32 px patch of frame BAD by noise; ``edit="shift"`` pastes
    a displaced copy of the central face region into frame BAD (a misaligned blend).
    """
    from skimage import data
    image = data.astronaut()
    rng = np.random.default_rng(seed)
    frames = np.arange(10, 10 + T) if frames is None else np.asarray(frames)
    out = []
    for k in range(len(frames)):
        f = image[20 + k:276 + k, 120:376].astype(np.float32) + rng.normal(0, 2, (256, 256, 3))
        if k == BAD and edit == "noise":
            f[96:128, 96:128] = rng.uniform(0, 255, (32, 32, 3))
        if k == BAD and edit == "shift":
            f[64:192, 64:192] = image[32 + k:160 + k, 196:324]
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    n = len(frames)
    return FaceBatch(np.stack(out), video_ids=np.array([video] * n), frame_indices=frames)


def concat(*batches):
    return FaceBatch(np.concatenate([b.images for b in batches]),
                     video_ids=np.concatenate([b.video_ids for b in batches]),
                     frame_indices=np.concatenate([b.frame_indices for b in batches]))


def col(name):
    return TemporalConsistencyExtractor.COLUMNS.index(name)


# -- helpers --------------------------------------------------------------------------------
def test_video_groups_orders_by_frame():
    groups = video_groups(np.array(["b", "a", "b", "a", "b"]), np.array([5, 9, 1, 2, 3]))
    assert [g.tolist() for g in groups] == [[2, 4, 0], [3, 1]]


def test_patch_features_shape_and_validation():
    f = patch_features(np.zeros((3, 256, 256, 3), np.uint8), grid=8)
    assert f.shape == (3, 64, 25) and f.dtype == np.float32
    assert patch_features(np.zeros((1, 224, 230, 3), np.uint8), grid=8).shape == (1, 64, 25)
    with pytest.raises(ValueError, match="too small"):
        patch_features(np.zeros((1, 16, 16, 3), np.uint8), grid=8)


def test_transition_inconsistency_is_zero_for_identical_frames():
    f = patch_features(face_clip().images[:1], 8)
    d = transition_inconsistency(np.concatenate([f, f]))
    assert d.shape == (1, 64)
    np.testing.assert_allclose(d, 0, atol=1e-6)


# -- temporal -------------------------------------------------------------------------------
def test_temporal_shape_dtype_valid():
    ext = TemporalConsistencyExtractor()
    out = ext.extract(face_clip())
    assert out["vector"].shape == (T, 17) == (T,) + ext.outputs(256)["vector"].shape
    assert out["vector"].dtype == np.float32 and out["valid"].all()
    assert np.isfinite(out["vector"]).all()
    assert (out["vector"][:, col("gap")] == 1).all()
    # per-video aggregates are broadcast to every frame
    assert np.ptp(out["vector"][:, col("video_mean"):], axis=0).max() == 0


@pytest.mark.parametrize("edit", ["noise", "shift"])
def test_temporal_flags_an_injected_inconsistency(edit):
    ext = TemporalConsistencyExtractor()
    clean = ext.extract(face_clip())["vector"]
    fake = ext.extract(face_clip(edit))["vector"]
    for name in ("in_max", "out_max"):
        assert fake[BAD, col(name)] > 5 * clean[BAD, col(name)]
    assert fake[0, col("video_max")] > 5 * clean[0, col("video_max")]
    # the edited frame stands out from the untouched ones of its own video
    assert fake[BAD, col("in_max")] > 5 * fake[1, col("in_max")]


def test_temporal_single_frame_is_invalid_and_videos_are_independent():
    ext = TemporalConsistencyExtractor()
    a, b = face_clip(video="a"), face_clip("noise", video="b", seed=1)
    lone = face_clip(frames=[3], video="lone")
    mixed = concat(a, lone, b)
    out = ext.extract(mixed)
    assert out["valid"].tolist() == [True] * T + [False] + [True] * T
    assert np.isnan(out["vector"][T]).all()
    np.testing.assert_allclose(out["vector"][:T], ext.extract(a)["vector"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["vector"][T + 1:], ext.extract(b)["vector"], rtol=1e-5, atol=1e-6)
    # rows in any order give the same per-row result
    perm = np.random.default_rng(0).permutation(len(mixed))
    shuffled = ext.extract(mixed.subset(perm))
    np.testing.assert_allclose(shuffled["vector"], out["vector"][perm], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ext.extract(mixed)["vector"], out["vector"])  # determinism


def test_temporal_clips_and_jumps():
    ext = TemporalConsistencyExtractor()
    clips = ext.extract(face_clip(frames=[0, 1, 2, 3, 40, 41, 42, 43]))["vector"]
    # every frame of a 4-frame clip has a consecutive neighbour: jumps are not used
    assert (clips[:, col("gap")] == 1).all()
    assert clips[0, col("video_clip_fraction")] == pytest.approx(6 / 7)
    # first frame of the second clip: its "in" side (a jump) copies its "out" side
    np.testing.assert_array_equal(clips[4, 0:5], clips[4, 5:10])
    sampled = ext.extract(face_clip(frames=np.arange(8) * 10))["vector"]
    assert (sampled[:, col("gap")] == 10).all()
    assert sampled[0, col("video_clip_fraction")] == 0


def test_temporal_parameters_are_checked():
    with pytest.raises(UsageError, match="grid"):
        TemporalConsistencyExtractor(grid=1)
    with pytest.raises(UsageError, match="alpha"):
        TemporalConsistencyExtractor(alpha=2.0)
    assert TemporalConsistencyExtractor.needs == ("video",)


# -- sequence -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_videos():
    pytest.importorskip("efficientnet_lite_pytorch")
    a = face_clip(frames=[3, 7, 11], video="a")
    b = face_clip(frames=[0, 1], video="b", seed=2)
    return concat(a, b)


def test_sequence_rows_regroup_in_order(two_videos):
    ext = SequenceExtractor(device="cpu")
    perm = np.array([3, 1, 4, 0, 2])  # rows of both videos interleaved, frames out of order
    batch = two_videos.subset(perm)
    out = ext.extract(batch)
    vec = out["vector"]
    assert vec.shape == (5, 1281) == (5,) + ext.outputs(256)["vector"].shape
    assert vec.dtype == np.float32 and out["valid"].all()
    # what the BiLSTM head does: group on video_id, order by frame_index
    for video, frames in (("a", [3, 7, 11]), ("b", [0, 1])):
        rows = np.flatnonzero(batch.video_ids == video)
        rows = rows[np.argsort(batch.frame_indices[rows])]
        assert batch.frame_indices[rows].tolist() == frames
        np.testing.assert_allclose(vec[rows, -1], np.linspace(0, 1, len(frames)))
    # the embedding is the frame's own cnn head embedding
    from extract.deep import CnnExtractor
    cnn = CnnExtractor(device="cpu").extract(batch)["vector"]
    np.testing.assert_allclose(vec[:, :-1], cnn[:, -1280:], rtol=1e-5, atol=1e-5)
    items = np.stack([ext.extract(batch.subset(slice(i, i + 1)))["vector"][0, :-1] for i in range(5)])
    np.testing.assert_allclose(items, vec[:, :-1], rtol=1e-4, atol=1e-4)


def test_sequence_projection_and_clip_source(two_videos, monkeypatch):
    ext = SequenceExtractor(device="cpu", dim=16)
    assert ext.extract(two_videos)["vector"].shape == (5, 17)
    with pytest.raises(UsageError, match="source"):
        SequenceExtractor(source="vit")
    import extract.deep as deep
    monkeypatch.delenv(deep.CLIP_WEIGHTS_ENV, raising=False)
    with pytest.raises(UsageError, match="--clip-weights"):
        SequenceExtractor(source="clip")
    with deep._testing_random_clip(deep.TINY_CLIP_CFG):
        clip_seq = SequenceExtractor(source="clip", device="cpu")
    vec = clip_seq.extract(two_videos)["vector"]
    assert vec.shape == (5, 33)
    np.testing.assert_allclose(np.linalg.norm(vec[:, :-1], axis=1), 1, atol=1e-5)
