"""The sample fields added with the face cascade: requested_frame_index and face_index."""
import h5py
import pandas as pd

from stores import merge_shards, open_store, write_store


def _meta(ids, **extra):
    n = len(ids)
    return pd.DataFrame({"sample_id": ids, "dataset": ["folder"] * n, "split": ["train"] * n,
                         "label": [0] * n, "method": ["real"] * n, "video_id": ["real/v"] * n,
                         "frame_index": [3 * i for i in range(n)], "source_path": ["/v.mp4"] * n,
                         **extra})


def test_new_fields_are_written_and_read(tmp_path):
    path = write_store(tmp_path / "s.h5", _meta(["a", "b"], requested_frame_index=[0, 2],
                                                face_index=[0, 1]))
    with open_store(path) as store:
        assert store.meta["frame_index"].tolist() == [0, 3]
        assert store.meta["requested_frame_index"].tolist() == [0, 2]
        assert store.meta["face_index"].tolist() == [0, 1]


def test_stores_and_tables_without_them_get_the_defaults(tmp_path):
    path = write_store(tmp_path / "old.h5", _meta(["a", "b"]))  # a table without the fields
    with h5py.File(path, "a") as h5:  # and a file written before they existed
        del h5["meta/requested_frame_index"], h5["meta/face_index"]
    with open_store(path) as store:
        assert store.meta["requested_frame_index"].tolist() == [0, 3]  # the frame itself
        assert store.meta["face_index"].tolist() == [0, 0]
    other = write_store(tmp_path / "new.h5", _meta(["c"], requested_frame_index=[1],
                                                   face_index=[2]))
    assert merge_shards([path, other], tmp_path / "merged.h5") == 3
    with open_store(tmp_path / "merged.h5") as store:
        assert store.meta["requested_frame_index"].tolist() == [0, 3, 1]
        assert store.meta["face_index"].tolist() == [0, 0, 2]
