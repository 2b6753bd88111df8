"""The HDF5 store: write, merge, add features, query, schema checks, atomicity."""
import h5py
import numpy as np
import pandas as pd
import pytest

from stores import SCHEMA_VERSION, StoreError, add_features, merge_shards, open_store, write_store
from stores.info import main as info_main


def _meta(ids, split="train", method="Deepfakes", label=1, video="Deepfakes/000_001"):
    n = len(ids)
    return pd.DataFrame({"sample_id": ids, "dataset": ["ff++"] * n, "split": [split] * n,
                         "label": [label] * n, "method": [method] * n, "video_id": [video] * n,
                         "frame_index": list(range(n)), "source_path": ["/v.mp4"] * n})


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(0)
    a = write_store(tmp_path / "a.h5", _meta(["a0", "a1"], "train", "real", 0, "real/youtube/000"),
                    vectors={"lbp": rng.random((2, 5))}, maps={"rgb": rng.integers(0, 255, (2, 8, 8, 3), np.uint8)},
                    attrs={"lbp": {"extractor": "lbp", "version": "2", "params": {"P": 8},
                                   "columns": [f"c{i}" for i in range(5)]}},
                    landmarks=np.ones((2, 68, 2)))
    empty = write_store(tmp_path / "e.h5", _meta([]),
                        errors=[{"source_path": "/bad.mp4", "video_id": "Deepfakes/9_9", "frame_index": -1,
                                 "cause": "corrupt_video", "message": "cannot open"}])
    b = write_store(tmp_path / "b.h5", _meta(["b0", "b1", "b2"], "test"),
                    vectors={"lbp": rng.random((3, 5))}, maps={"rgb": rng.integers(0, 255, (3, 8, 8, 3), np.uint8)},
                    valid={"lbp": np.array([True, False, True])})
    return [a, empty, b]


def test_merge_keeps_order_values_and_errors(shards, tmp_path):
    n = merge_shards(shards, tmp_path / "s.h5", run={"dataset": "ff++"})
    assert n == 5
    with open_store(tmp_path / "s.h5") as store, h5py.File(shards[2]) as b:
        assert store.features == ["lbp"] and store.maps == ["rgb"]
        assert store.meta["sample_id"].tolist() == ["a0", "a1", "b0", "b1", "b2"]
        X, y, meta = store.read(["lbp"], split="test")
        np.testing.assert_array_equal(X, b["features/lbp"][...].astype(np.float32))
        assert y.tolist() == [1, 1, 1] and meta["split"].unique().tolist() == ["test"]
        assert store.valid("lbp").tolist() == [True, True, True, False, True]
        maps, mmeta = store.read_map("rgb", label=1)
        np.testing.assert_array_equal(maps, b["maps/rgb"][...])
        assert store.errors["cause"].tolist() == ["corrupt_video"]
        assert store.attrs("lbp")["params"] == {"P": 8}
        assert store.attrs("lbp")["columns"][0] == "c0"
        assert store.run == {"dataset": "ff++"}
        np.testing.assert_array_equal(store.landmarks(split="train"), np.ones((2, 68, 2)))


def test_datasets_are_chunked_and_compressed(shards, tmp_path):
    merge_shards(shards, tmp_path / "s.h5")
    with h5py.File(tmp_path / "s.h5") as h5:
        assert h5.attrs["schema_version"] == SCHEMA_VERSION
        for name in ("features/lbp", "maps/rgb"):
            assert h5[name].chunks is not None and h5[name].compression == "gzip"
        assert h5["maps/rgb"].chunks[0] == 1  # one sample per chunk: random access by row


def test_filters_combine_and_accept_lists(shards, tmp_path):
    merge_shards(shards, tmp_path / "s.h5")
    with open_store(tmp_path / "s.h5") as store:
        assert len(store.read("lbp", split=["train", "test"], label=0)[0]) == 2
        assert len(store.read("lbp", method="Deepfakes", split="train")[0]) == 0
        assert store.read("lbp", method="Deepfakes", split="train")[0].shape == (0, 5)


def test_read_as_frame_is_the_array_read_with_feature_named_columns(tmp_path):
    rng = np.random.default_rng(1)
    n = 6
    meta = pd.concat([_meta([f"r{i}" for i in range(3)], "train", "real", 0, "real/000"),
                      _meta([f"f{i}" for i in range(3)], "test")], ignore_index=True)
    lbp, dct = rng.random((n, 3)), rng.random((n, 2))
    lbp[1] = np.nan
    path = write_store(tmp_path / "s.h5", meta, vectors={"lbp": lbp, "dct": dct},
                       attrs={"lbp": {"extractor": "lbp", "version": "1", "params": {},
                                      "columns": ["u0", "u1", "u2"]}},
                       valid={"lbp": np.arange(n) != 1})
    with open_store(path) as store:
        for split in (None, "test", ["train"]):
            X, y, m = store.read(["lbp", "dct"], split=split)
            F, y2, m2 = store.read(["lbp", "dct"], split=split, as_frame=True)
            assert isinstance(X, np.ndarray) and isinstance(F, pd.DataFrame)
            # stored names where the extractor recorded them, else the column index
            assert F.columns.tolist() == ["lbp__u0", "lbp__u1", "lbp__u2", "dct__0", "dct__1"]
            np.testing.assert_array_equal(F.to_numpy(), X)  # NaN rows included
            assert (F.dtypes == np.float32).all()
            np.testing.assert_array_equal(y2, y)
            pd.testing.assert_frame_equal(m2, m)
            assert F.index.tolist() == m.index.tolist()
        F, _, _ = store.read(["dct", "lbp"], as_frame=True)
        np.testing.assert_array_equal(F.filter(like="lbp__").to_numpy(), lbp.astype(np.float32))
        assert store.read("dct", split="val", as_frame=True)[0].shape == (0, 2)


def test_add_features_leaves_old_ones_untouched(shards, tmp_path):
    path = tmp_path / "s.h5"
    merge_shards(shards, path)
    with h5py.File(path) as h5:
        before = h5["features/lbp"][...]
    new = write_store(tmp_path / "n.h5", _meta(["b2", "a0"]), vectors={"dct": [[1.0, 2.0], [3.0, 4.0]]})
    assert add_features(path, [new]) == ["dct"]
    with open_store(path) as store:
        X, _, meta = store.read(["lbp", "dct"])
        np.testing.assert_array_equal(X[:, :5], before.astype(np.float32))
        np.testing.assert_array_equal(X[0, 5:], [3.0, 4.0])
        np.testing.assert_array_equal(X[4, 5:], [1.0, 2.0])
        assert np.isnan(X[1:4, 5:]).all()
        assert store.valid("dct").tolist() == [True, False, False, False, True]
    assert add_features(path, [new]) == []  # already there: nothing rewritten


def test_unknown_feature_and_wrong_kind_are_clear(shards, tmp_path):
    merge_shards(shards, tmp_path / "s.h5")
    with open_store(tmp_path / "s.h5") as store:
        with pytest.raises(StoreError, match="no vector feature 'clip'.*it has lbp"):
            store.read(["clip"])
        with pytest.raises(StoreError, match="it is a map: use read_map"):
            store.read(["rgb"])


def test_older_schema_is_refused_with_the_file_name(tmp_path):
    path = write_store(tmp_path / "old.h5", _meta(["x"]))
    with h5py.File(path, "a") as h5:
        h5.attrs["schema_version"] = 0
    with pytest.raises(StoreError, match=r"old\.h5.*schema version 0.*re-extract"):
        open_store(path)


def test_truncated_file_is_refused(tmp_path):
    path = write_store(tmp_path / "t.h5", _meta(["x"]), vectors={"f": [[1.0]]})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(StoreError, match="not a readable HDF5 store"):
        open_store(path)


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises(StoreError):
        write_store(tmp_path / "bad.h5", _meta(["x", "y"]), vectors={"f": np.ones((3, 2))})
    assert list(tmp_path.iterdir()) == []


def test_info_cli(shards, tmp_path, capsys):
    merge_shards(shards, tmp_path / "s.h5")
    assert info_main([str(tmp_path / "s.h5")]) == 0
    out = capsys.readouterr().out
    assert "samples  5" in out and "corrupt_video: 1" in out and "lbp" in out
    assert info_main([str(tmp_path / "missing.h5")]) == 2
    assert "no such store file" in capsys.readouterr().err
