"""Tests for the ablation CLI and the importance helpers."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from fusion import ablate, importance
from tests.fusion.test_heads import make_store

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("ablate") / "synthetic.h5", with_nan=False)


def test_ablate_cli_writes_ranked_table(store_path, tmp_path):
    out = tmp_path / "abl"
    rc = ablate.main(["--store", str(store_path), "--features", "a,b,c", "--fusions", "concat,soft-vote",
                      "--out", str(out), "--bootstrap", "50"])
    assert rc == 0
    table = pd.read_csv(out / "ablation.csv")
    assert list(table.columns) == ablate.COLUMNS
    assert list(table["rank"]) == list(range(1, len(table) + 1))
    assert table["auc"].is_monotonic_decreasing
    kinds = set(table["kind"])
    assert {"single", "all", "loo -a", "fusion"} <= kinds and any(k.startswith("greedy") for k in kinds)
    assert set(table.loc[table["kind"] == "fusion", "fusion"]) == {"concat", "soft-vote"}
    single = table[table["kind"] == "single"].set_index("features")
    assert single.loc["c", "auc"] < single.loc["a", "auc"]  # c is noise
    assert (table["auc_lo"] <= table["auc"]).all() and (table["auc"] <= table["auc_hi"]).all()
    md = (out / "ablation.md").read_text()
    assert md.startswith("| rank |") and "[" in md
    path = json.loads((out / "ablation.json").read_text())["greedy_path"]
    assert path[0]["added"] in ("a", "b") and "c" not in [p["added"] for p in path[:1]]
    assert (out / "ablation.png").is_file()


@pytest.mark.parametrize("flags, needle", [
    (["--features", "a,b", "--stages", "single,nope"], "--stages"),
    (["--features", "a,b", "--fusions", "early"], "maps"),
    (["--features", "a,zzz"], "zzz"),
])
def test_ablate_wrong_flag_exits_2(flags, needle, store_path, tmp_path, capsys):
    assert ablate.main(["--store", str(store_path), "--out", str(tmp_path / "x"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_permutation_importance_ranks_noise_last(store_path):
    imp = importance.permutation_importance_by_group(store_path, ["a", "b", "c"], n_repeats=3)
    assert list(imp.columns) == ["feature", "auc", "auc_drop", "auc_drop_std"]
    assert imp["feature"].iloc[-1] == "c"
    assert imp["auc_drop"].iloc[0] > 0.01


def test_mutual_information_per_dimension(store_path):
    mi = importance.mutual_information(store_path, ["a", "c"])
    assert len(mi) == 6 + 3
    top = mi.iloc[:3]
    assert (top["feature"] == "a").all()  # a's first 3 dims carry the label
    assert set(mi.loc[mi["feature"] == "a", "dim"]) == set(range(6))
