"""Tests for the ablation CLI and the importance helpers."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import stores
from fusion import ablate, importance, train
from tests.fusion.test_heads import make_store

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("ablate") / "synthetic.h5", with_nan=False)


@pytest.fixture(scope="module")
def other_path(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("ablate_other") / "other.h5", seed=7, with_nan=False)


def rewrite_store(src, dst, keep=None, shuffle_split=None, seed=0):
    """A copy of store ``src``: rows where ``keep(meta)``, test labels permuted if asked."""
    with stores.open_store(src) as s:
        meta = s.meta.copy()
        vectors = {f: s.read([f])[0] for f in s.features}
        attrs = {f: {k: s.attrs(f)[k] for k in ("extractor", "version", "params")} for f in s.features}
    rows = np.ones(len(meta), bool) if keep is None else keep(meta).to_numpy()
    meta, vectors = meta[rows].reset_index(drop=True), {f: v[rows] for f, v in vectors.items()}
    if shuffle_split:
        idx = np.flatnonzero(meta["split"].to_numpy() == shuffle_split)
        meta.loc[idx, "label"] = np.random.default_rng(seed).permutation(meta["label"].to_numpy()[idx])
    return stores.write_store(dst, meta, vectors=vectors, attrs=attrs)


def test_ablate_cli_ranks_by_val_with_test_beside(store_path, tmp_path, capsys):
    out = tmp_path / "abl"
    rc = ablate.main(["--store", str(store_path), "--features", "a,b,c", "--fusions", "concat,soft-vote",
                      "--out", str(out), "--bootstrap", "50", "--min-gain", "0.02"])
    assert rc == 0
    table = pd.read_csv(out / "ablation.csv")
    assert list(table.columns) == ablate.COLUMNS
    assert "val_auc" in table and "test_auc" in table and "auc" not in table
    assert list(table["rank"]) == list(range(1, len(table) + 1))
    assert table["val_auc"].is_monotonic_decreasing  # val order, whatever test says
    assert list(table["pick"].fillna("")) == ["*"] + [""] * (len(table) - 1)
    assert not table.duplicated(["fusion", "features"]).any()  # each configuration once
    kinds = dict(zip(zip(table["fusion"], table["features"]), table["kind"]))
    assert kinds[("concat", "a,b,c")] == "all; fusion all"
    path = json.loads((out / "ablation.json").read_text())["greedy_path"]
    greedy = ",".join(f for f in "abc" if f in path[-1]["features"])  # listed in --features order
    assert greedy != "a,b,c" and "c" not in greedy  # c is noise; the min gain stops before it
    assert "greedy 1" in kinds[("concat", path[0]["added"])] and "single" in kinds[("concat", path[0]["added"])]
    assert kinds[("soft-vote", "a,b,c")] == "fusion all" and kinds[("soft-vote", greedy)] == "fusion greedy"
    single = table[table["kind"].str.contains("single")].set_index("features")
    assert single.loc["c", "val_auc"] < single.loc["a", "val_auc"]
    assert (table["test_auc_lo"] <= table["test_auc"]).all() and (table["test_auc"] <= table["test_auc_hi"]).all()
    md = (out / "ablation.md").read_text()
    assert md.startswith("| rank | pick |") and "| val AUC | test AUC [95% CI] |" in md
    assert "Warnings for the picked configuration" in md and "Metadata-only baseline" in md
    printed = capsys.readouterr().out
    top = table.iloc[0]
    assert f"val picks: {top['fusion']} [{top['features']}]" in printed and "WARNING" in printed
    assert (out / "ablation.png").is_file()


def test_progress_counts_each_fit_once(store_path, monkeypatch):
    bars, fits = [], []
    real, real_bar = ablate.evaluate_config, ablate._progress
    # the bar without tqdm counts updates and keeps the total the ablation sets
    monkeypatch.setattr(ablate, "_progress", lambda total, desc, enabled: bars.append(real_bar(total, desc, False))
                        or bars[-1])
    monkeypatch.setattr(ablate, "evaluate_config", lambda *a, **k: fits.append(a[1:3]) or real(*a, **k))
    with stores.open_store(store_path) as store:
        table, path = ablate.run_ablation(store, ["a", "b", "c"], ["concat", "soft-vote"], n_boot=0,
                                          min_gain=0.02, verbose=False)
    keys = [(f, tuple(feats)) for feats, f in fits]
    assert len(keys) == len(set(keys))  # no configuration fitted twice
    assert bars[0].n == bars[0].total == len(keys)
    assert set(zip(table["fusion"], table["features"])) <= {(f, ",".join(x)) for f, x in keys}


def test_shuffled_test_labels_change_no_choice_threshold_or_ranking(store_path, other_path, tmp_path):
    shuffled = rewrite_store(store_path, tmp_path / "shuffled.h5", shuffle_split="test", seed=3)
    other_shuffled = rewrite_store(other_path, tmp_path / "other.h5", shuffle_split="test", seed=4)
    results = []
    for own, other in ((store_path, other_path), (shuffled, other_shuffled)):
        with stores.open_store(own) as s, stores.open_store(other) as o:
            results.append(ablate.run_ablation(s, ["a", "b", "c"], ["concat", "soft-vote"], n_boot=0,
                                               verbose=False, test_stores={"other": o}))
    (t1, p1), (t2, p2) = results
    chosen = ["rank", "pick", "kind", "fusion", "head", "features", "val_auc", "val_from", "threshold"]
    pd.testing.assert_frame_equal(t1[chosen], t2[chosen])
    assert p1 == p2
    assert not np.allclose(t1["test_auc"], t2["test_auc"])
    assert not np.allclose(t1["other.test_auc"], t2["other.test_auc"])


def test_test_store_results_match_train_cross_evaluation(store_path, other_path, tmp_path):
    own = rewrite_store(store_path, tmp_path / "notest.h5", keep=lambda m: m["split"] != "test")
    with stores.open_store(own) as s, stores.open_store(other_path) as o:
        table, _ = ablate.run_ablation(s, ["a", "b"], ["concat"], stages=("single",), n_boot=0,
                                       verbose=False, test_stores={"other": o})
    assert table["test_auc"].isna().all()  # own test split is empty: the other store is the test
    row = table.set_index("features").loc["a"]
    res = train.train_run(own, ["a"], out=tmp_path / "r", test_stores=[other_path], n_boot=0,
                          plots_on=False, verbose=False, audit=False)
    assert row["other.test_auc"] == pytest.approx(res["cross"]["other"]["auc"], abs=1e-12)
    assert row["threshold"] == pytest.approx(res["threshold"], abs=1e-12)
    scores = pd.read_csv(tmp_path / "r" / "scores_other.csv")
    assert row["other.test_auc"] == pytest.approx(roc_auc_score(scores["label"], scores["logit"]), abs=1e-12)


def test_ablate_without_val_ranks_on_train_and_says_so(store_path, tmp_path, capsys):
    own = rewrite_store(store_path, tmp_path / "noval.h5", keep=lambda m: m["split"] != "val")
    assert ablate.main(["--store", str(own), "--features", "a,c", "--stages", "single", "--out",
                        str(tmp_path / "o"), "--bootstrap", "0"]) == 0
    table = pd.read_csv(tmp_path / "o" / "ablation.csv")
    assert (table["val_from"] == "train").all()
    assert "ranked by their TRAIN AUC" in capsys.readouterr().out


@pytest.mark.parametrize("flags, needle", [
    (["--features", "a,b", "--stages", "single,nope"], "--stages"),
    (["--features", "a,b", "--fusions", "early"], "maps"),
    (["--features", "a,zzz"], "zzz"),
    (["--features", "a,b", "--bootstrap", "-1"], "--bootstrap: expected an integer >= 0, got -1"),
    (["--features", "a,b", "--fusions", "mlp", "--head", "gbm"], "--head: fusion 'mlp' trains its own network"),
])
def test_ablate_wrong_flag_exits_2(flags, needle, store_path, tmp_path, capsys):
    try:
        rc = ablate.main(["--store", str(store_path), "--out", str(tmp_path / "x"), *flags])
    except SystemExit as exc:  # a count outside its range: argparse's one line
        rc = exc.code
    assert rc == 2
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
