"""stores.info: the one-screen summary and its ``next:`` line."""
from __future__ import annotations

import numpy as np
import pytest

import stores
from stores import info
from tests.fusion.test_heads import synthetic_meta


def _store(path, splits=("train", "val", "test"), labels=(0, 1), vectors=("lbp", "mask", "lbp@jpeg:50"),
           maps=(), labels_by_split=None):
    meta = synthetic_meta(n_videos_per_split=(6, 3, 3))
    keep = meta["split"].isin(splits) & meta["label"].isin(labels)
    for sp, wanted in (labels_by_split or {}).items():
        keep &= ~((meta["split"] == sp) & ~meta["label"].isin(wanted))
    meta = meta[keep].reset_index(drop=True)
    n = len(meta)
    return stores.write_store(path, meta, vectors={v: np.zeros((n, 2), np.float32) for v in vectors},
                              maps={m: np.zeros((n, 4, 4, 3), np.uint8) for m in maps})


@pytest.mark.parametrize("kw, expected", [
    ({}, "next: python -m fusion.train --store {p} --features lbp --out runs/s"),  # no mask, no @
    ({"labels": (0,), "maps": ("rgb",)}, "next: python -m fusion.cascade train --store {p} --sbi online "
                                         "--out runs/s_cascade"),
    ({"vectors": ("mask",), "maps": ("rgb",)}, "next: python -m fusion.cascade train --store {p} "
                                              "--out runs/s_cascade"),
    ({"splits": ("test",)}, None),  # a store to score: the run it needs is not the store's to name
    ({"splits": ("train", "test"), "labels_by_split": {"train": (0,)}}, None),  # no rgb, train has reals only
])
def test_next_command_suits_the_store(kw, expected, tmp_path):
    path = _store(tmp_path / "s.h5", **kw)
    with stores.open_store(path) as s:
        got = info.next_command(s)
    assert got == (expected.format(p=path) if expected else None)


def test_cli_prints_the_next_line_last_but_not_with_json(tmp_path, capsys):
    path = _store(tmp_path / "s.h5")
    assert info.main([str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("next: python -m fusion.train --store")
    assert info.main([str(path), "--json"]) == 0
    assert "next:" not in capsys.readouterr().out
