"""Source-file facts for the confound audit: read at extraction, kept by the store."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import stores
from pipelines import source_meta
from pipelines.samples import Source
from stores.schema import SOURCE_META_FIELDS
from tests.fusion.test_heads import synthetic_meta


@pytest.mark.parametrize("quality", [30, 50, 75, 95])
def test_jpeg_quality_is_recovered_from_the_quantisation_table(quality, tmp_path):
    path = tmp_path / f"q{quality}.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(path, quality=quality)
    facts = source_meta.file_metadata(Source(str(path), "x", "train", 0, "real", "v", kind="image"))
    assert facts["jpeg_quality"] == pytest.approx(quality, abs=1.0)
    assert (facts["image_width"], facts["image_height"], facts["is_jpeg"]) == (60, 40, 1.0)
    assert facts["file_bytes"] == path.stat().st_size


def test_png_has_no_jpeg_facts_and_video_has_a_bitrate(tmp_path):
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), np.zeros((20, 30, 3), np.uint8))
    facts = source_meta.file_metadata(Source(str(png), "x", "train", 0, "real", "v", kind="image"))
    assert facts["is_jpeg"] == 0.0 and "jpeg_quality" not in facts
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    for i in range(20):
        writer.write(np.full((24, 32, 3), i * 10, np.uint8))
    writer.release()
    facts = source_meta.file_metadata(Source(str(video), "x", "train", 0, "real", "v", kind="video"))
    assert (facts["image_width"], facts["image_height"]) == (32, 24)
    assert facts["video_bitrate"] == pytest.approx(video.stat().st_size * 8 / 2.0)  # 20 frames at 10 fps
    assert source_meta.face_box_size([10, 20, 110, 140]) == {"face_width": 100.0, "face_height": 120.0}
    assert source_meta.file_metadata(Source("skimage:astronaut", "demo", "train", 0, "real", "v",
                                            kind="demo")) == {}


def test_store_keeps_source_meta_through_shard_merge(tmp_path):
    meta = synthetic_meta((2, 0, 0), frames=1)
    half = len(meta) // 2
    a = stores.write_store(tmp_path / "a.h5", meta.iloc[:half], vectors={"f": np.zeros((half, 1))},
                           source_meta=pd.DataFrame({"file_bytes": [1.0] * half}))
    b = stores.write_store(tmp_path / "b.h5", meta.iloc[half:], vectors={"f": np.zeros((len(meta) - half, 1))})
    stores.merge_shards([a, b], tmp_path / "m.h5")
    with stores.open_store(tmp_path / "m.h5") as store:
        table = store.source_meta
        assert list(table.columns) == list(SOURCE_META_FIELDS) and len(table) == len(meta)
        assert table["file_bytes"].tolist()[:half] == [1.0] * half
        assert table["file_bytes"].iloc[half:].isna().all() and table["face_width"].isna().all()
    stores.merge_shards([b], tmp_path / "old.h5")  # no shard has it: a store as before
    with stores.open_store(tmp_path / "old.h5") as store:
        assert store.source_meta is None and len(store) == len(meta) - half
