"""fusion.importance: permutation importance per feature block and column group, mutual
information, and its CLI, on a synthetic store whose informative columns are known."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import stores
from fusion import heads, importance, scoring, train
from tests.fusion.test_heads import synthetic_meta

torch.set_num_threads(1)

SIG_COLUMNS = [f"sig_good_{i}" for i in range(3)] + [f"sig_noise_{i}" for i in range(3)]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """``sig``: 3 named columns carrying the label, 3 named noise columns; ``wide``: 20 unnamed
    columns, the first 4 informative; ``noise``: 5 unnamed columns of pure noise."""
    rng = np.random.default_rng(0)
    meta = synthetic_meta(n_videos_per_split=(40, 20, 20))
    y = meta["label"].to_numpy()
    n = len(meta)
    sig = rng.normal(size=(n, 6))
    sig[:, :3] += 1.5 * y[:, None]
    wide = rng.normal(size=(n, 20))
    wide[:, :4] += 0.6 * y[:, None]
    vectors = {"sig": sig, "wide": wide, "noise": rng.normal(size=(n, 5))}
    attrs = {f: {"extractor": f, "version": "1", "params": {}} for f in vectors}
    attrs["sig"]["columns"] = SIG_COLUMNS
    path = tmp_path_factory.mktemp("importance") / "syn.h5"
    return stores.write_store(path, meta, vectors={k: v.astype(np.float32) for k, v in vectors.items()},
                              attrs=attrs)


@pytest.fixture(scope="module")
def run_dir(store_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("importance_run") / "run"
    assert train.main(["--store", str(store_path), "--features", "sig,wide,noise", "--out", str(out),
                       "--bootstrap", "0", "--no-plots"]) == 0
    return out


def test_column_groups_follow_names_then_numbers_then_chunks():
    groups = importance.column_groups("dct", ["dct_u0v1_beta", "dct_u0v1_std", "dct_u0v2_beta"], 3)
    assert [(g, i.tolist()) for g, i in groups] == [("dct_u0v1", [0, 1]), ("dct_u0v2", [2])]
    rings = [f"fft_ring{i}" for i in range(40)] + ["fft_hf0.25", "fft_hf0.5"]
    groups = importance.column_groups("fft", rings, 42, chunk=16)
    assert [g for g, _ in groups] == ["fft_ring[0:16]", "fft_ring[16:32]", "fft_ring[32:40]", "fft_hf"]
    assert np.array_equal(np.concatenate([i for _, i in groups]), np.arange(42))
    # names that do not match the width are ignored: the block is one group, chunked
    assert [g for g, _ in importance.column_groups("x", ["only_one"], 3, chunk=2)] == ["x[0:2]", "x[2:3]"]
    assert [g for g, _ in importance.column_groups("m", ["area"], 1)] == ["area"]
    with pytest.raises(ValueError, match="chunk"):
        importance.column_groups("x", None, 3, chunk=0)


class _Wrapped:
    """A fitted fusion head as a scikit-learn classifier of a few columns; the other columns
    of ``data`` stay as they are (so sklearn permutes only the columns under test)."""

    _estimator_type = "classifier"

    def __init__(self, model, data, cols):
        self.model, self.data, self.cols, self.classes_ = model, data, cols, np.array([0, 1])

    def fit(self, X, y):  # pragma: no cover - permutation_importance never refits
        return self

    def decision_function(self, X):
        blocks = {f: b.copy() for f, b in self.data.blocks.items()}
        for k, (f, j) in enumerate(self.cols):
            blocks[f][:, j] = X[:, k]
        return self.model.decision_function(heads.FusionData(blocks, self.data.y, self.data.meta))

    def predict(self, X):
        return (self.decision_function(X) > 0).astype(int)


def test_single_column_drops_match_sklearn_permutation_importance(store_path, run_dir):
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import roc_auc_score

    model = heads.load_head(run_dir / "model")
    store = stores.open_store(store_path)
    data = scoring.load_split(store, ["sig", "wide", "noise"], "val")
    cols = [("sig", 0), ("sig", 4), ("wide", 0), ("noise", 2)]
    X = np.column_stack([data.blocks[f][:, j] for f, j in cols])
    repeats = 150
    ours = importance.permutation_importance(model, data, [(f, f"{f}[{j}]", [j]) for f, j in cols],
                                             n_repeats=repeats, seed=1)
    ref = permutation_importance(_Wrapped(model, data, cols), X, data.y, n_repeats=repeats, random_state=0,
                                 scoring=lambda est, X_, y_: roc_auc_score(y_, est.decision_function(X_)))
    for k, (_, row) in enumerate(ours.iterrows()):
        se = np.hypot(row["auc_drop_std"], ref.importances_std[k]) / np.sqrt(repeats)
        assert abs(row["auc_drop"] - ref.importances_mean[k]) < 4 * se + 1e-3, cols[k]
        assert row["auc_drop_std"] == pytest.approx(ref.importances_std[k], rel=0.3, abs=2e-3)
    assert ours["auc"].iloc[0] == pytest.approx(roc_auc_score(data.y, model.decision_function(data)))
    assert ours["auc_drop"].iloc[0] > 0.01 > abs(ours["auc_drop"].iloc[3])  # sig_good_0 vs noise


def test_cli_label_block_high_noise_block_near_zero(store_path, run_dir, capsys):
    assert importance.main(["--store", str(store_path), "--run", str(run_dir), "--repeats", "8",
                            "--chunk", "8"]) == 0
    out = run_dir / "importance"
    table = pd.read_csv(out / "importance.csv")
    assert list(table.columns) == importance.TABLE_COLUMNS and set(table["split"]) == {"val"}
    assert set(table["mi_split"]) == {"train"}
    blocks = table[table["level"] == "block"].set_index("feature")
    assert list(blocks.index) == ["sig", "wide", "noise"]  # sorted by AUC drop
    assert blocks.loc["sig", "auc_drop"] > 0.1
    assert abs(blocks.loc["noise", "auc_drop"]) < 0.02
    groups = table[table["level"] == "group"].set_index("group")
    assert set(groups.index) == {"sig_good", "sig_noise", "wide[0:8]", "wide[8:16]", "wide[16:20]", "noise"}
    assert groups.loc["sig_good", "auc_drop"] > 0.1 and abs(groups.loc["sig_noise", "auc_drop"]) < 0.02
    assert groups.loc["wide[0:8]", "auc_drop"] > groups.loc["wide[8:16]", "auc_drop"]
    assert groups.loc["wide[0:8]", "n_columns"] == 8 and groups.loc["wide[16:20]", "n_columns"] == 4
    mi = pd.read_csv(out / "mi.csv")
    assert len(mi) == 6 + 20 + 5
    assert blocks.loc["sig", "mi_max"] == pytest.approx(mi.loc[mi["feature"] == "sig", "mi"].max())
    assert groups.loc["sig_good", "mi_mean"] == pytest.approx(mi.loc[mi["group"] == "sig_good", "mi"].mean())
    assert groups.loc["sig_good", "mi_mean"] > groups.loc["sig_noise", "mi_mean"]
    assert (out / "importance.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "permutation importance on val" in printed and "TEST" not in printed
    assert f"next: python -m fusion.ablate --store {store_path} --features sig,wide,noise" in printed


def test_cli_test_split_is_labelled(store_path, run_dir, tmp_path, capsys):
    assert importance.main(["--store", str(store_path), "--run", str(run_dir / "model"), "--split", "test",
                            "--repeats", "2", "--out", str(tmp_path / "t"), "--no-plots"]) == 0
    assert set(pd.read_csv(tmp_path / "t" / "importance.csv")["split"]) == {"test"}
    assert not (tmp_path / "t" / "importance.png").exists()
    printed = capsys.readouterr().out
    assert "TEST: report only" in printed and "importance.png" not in printed
    assert f"--out {run_dir.parent / 'run_ablation'}" in printed  # the run folder, though given run/model


def test_a_test_only_store_takes_its_mi_from_the_scored_split(store_path, run_dir, tmp_path, capsys):
    with stores.open_store(store_path) as s:
        meta = s.meta
        keep = (meta["split"] == "test").to_numpy()
        vectors = {f: s.read([f])[0][keep] for f in s.features}
        attrs = {f: {k: v for k, v in s.attrs(f).items() if k in ("extractor", "version", "params", "columns")}
                 for f in s.features}
    other = stores.write_store(tmp_path / "testonly.h5", meta[keep].reset_index(drop=True),
                               vectors=vectors, attrs=attrs)
    assert importance.main(["--store", str(other), "--run", str(run_dir), "--split", "test",
                            "--repeats", "2", "--no-plots", "--out", str(tmp_path / "o")]) == 0
    table = pd.read_csv(tmp_path / "o" / "importance.csv")
    assert set(table["mi_split"]) == {"test"} and set(table["split"]) == {"test"}
    assert "MI on test" in capsys.readouterr().out


@pytest.mark.parametrize("flags, needle", [
    (["--split", "train"], "--split: expected val or test"),
    (["--repeats", "0"], "--repeats: expected an integer >= 1, got 0"),
    (["--chunk", "0"], "--chunk: expected an integer >= 1, got 0"),
    (["--mi-samples", "3"], "--mi-samples: expected an integer >= 10, got 3"),
    (["--run", "/nonexistent/run"], "--run: no model.json"),
    (["--store", "/nonexistent.h5"], "--store: store file not found"),
])
def test_wrong_flag_exits_2_before_work(flags, needle, store_path, run_dir, tmp_path, capsys):
    argv = ["--store", str(store_path), "--run", str(run_dir), "--out", str(tmp_path / "x"), *flags]
    try:
        rc = importance.main(argv)
    except SystemExit as exc:  # a count outside its range: argparse's one line
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("python -m fusion.importance: error: ")
    assert needle in err, err
    assert not (tmp_path / "x").exists()


def test_store_with_other_features_is_refused(run_dir, tmp_path, capsys):
    meta = synthetic_meta(n_videos_per_split=(4, 4, 4))
    vectors = {f: np.zeros((len(meta), d), np.float32) for f, d in (("sig", 6), ("wide", 20))}
    other = stores.write_store(tmp_path / "o.h5", meta, vectors=vectors,
                               attrs={f: {"extractor": f, "version": "1", "params": {}} for f in vectors})
    assert importance.main(["--store", str(other), "--run", str(run_dir), "--out", str(tmp_path / "o")]) == 2
    assert "feature 'noise' is missing" in capsys.readouterr().err
