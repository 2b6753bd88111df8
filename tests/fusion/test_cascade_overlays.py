"""The cascade's mask overlays: readable file names, a colour bar, the mask named for what it is."""
from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fusion.cascade.overlays import mask_label, overlay_figure, overlay_name, save_overlay  # noqa: E402


def _row(**kw):
    row = {"sample_id": "ff++:FaceSwap/634_660:000000", "dataset": "ff++", "label": 1,
           "method": "FaceSwap", "video_id": "FaceSwap/634_660", "frame_index": 0, "face_index": 0,
           "source_path": "/nowhere/manipulated_sequences/FaceSwap/c23/videos/634_660.mp4"}
    row.update(kw)
    return row


def test_overlay_names_are_readable_unique_and_safe():
    assert overlay_name(_row()) == "FaceSwap_634_660_f000000.png"
    assert overlay_name(_row(frame_index=45, face_index=1)) == "FaceSwap_634_660_f000045_face1.png"
    assert overlay_name(_row(video_id="real/youtube/519", frame_index=7)) == "real_youtube_519_f000007.png"
    taken = set()
    names = [overlay_name(_row(), taken) for _ in range(3)]
    assert names == ["FaceSwap_634_660_f000000.png", "FaceSwap_634_660_f000000_2.png",
                     "FaceSwap_634_660_f000000_3.png"]
    odd = overlay_name(_row(video_id="x/ä b:c*?<>|\\d", frame_index=3))
    assert re.fullmatch(r"[A-Za-z0-9._-]+", odd) and odd.endswith("_f000003.png")


def test_mask_label_follows_how_extraction_made_the_mask(tmp_path):
    videos = tmp_path / "manipulated_sequences" / "FaceSwap" / "c23" / "videos"
    videos.mkdir(parents=True)
    (videos / "634_660.mp4").write_bytes(b"")
    row = _row(source_path=str(videos / "634_660.mp4"))
    # no mask video beside it: extraction took the difference with the paired real frame
    assert mask_label(row) == "difference mask"
    masks = tmp_path / "manipulated_sequences" / "FaceSwap" / "masks" / "videos"
    masks.mkdir(parents=True)
    (masks / "634_660.mp4").write_bytes(b"")
    assert mask_label(row) == "mask"
    assert mask_label(_row()) == "mask"  # source folder gone: cannot tell, so no claim
    assert mask_label(_row(dataset="editbench")) == "mask"
    assert mask_label({**row, "label": 0, "method": "real"}) == "mask"
    (masks / "634_660.mp4").unlink()
    assert mask_label(row) == "difference mask"


def test_overlay_figure_has_a_colour_bar_and_names_its_mask():
    rng = np.random.default_rng(0)
    rgb, prob = rng.random((32, 32, 3)), rng.random((32, 32))
    fig = overlay_figure(rgb, prob, (prob > 0.5).astype(float), "t", "difference mask")
    titles = [ax.get_title() for ax in fig.axes]
    assert "difference mask" in titles and "ground truth" not in titles
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "fake probability per pixel"]
    assert len(bars) == 1 and bars[0].get_ylim() == (0.0, 1.0)
    plt.close(fig)
    fig = overlay_figure(rgb, prob, None)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == ["", "predicted mask (white: 0.5)"]  # no mask panel without a mask
    assert any(ax.get_ylabel() == "fake probability per pixel" for ax in fig.axes)
    plt.close(fig)


def test_save_overlay_writes_the_figure(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "o" / "x.png"
    open_before = plt.get_fignums()  # another test's leak is not this function's
    save_overlay(path, rng.random((16, 16, 3)), rng.random((16, 16)), None)
    assert path.read_bytes()[:4] == b"\x89PNG" and plt.get_fignums() == open_before


@pytest.mark.parametrize("face_index, expected", [(0, "A_v_f000012.png"), (2, "A_v_f000012_face2.png")])
def test_overlay_name_of_a_pandas_row(face_index, expected):
    import pandas as pd
    row = pd.DataFrame([_row(video_id="A/v", frame_index=12, face_index=face_index)]).iloc[0]
    assert overlay_name(row) == expected
