"""End-to-end tests of the train and evaluate CLIs on small synthetic stores."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import stores
from fusion import evaluate, metrics, scoring, train
from tests.fusion.test_heads import make_store, synthetic_meta

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("train") / "synthetic.h5")


@pytest.fixture(scope="module")
def other_store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("other") / "other.h5", seed=5)


@pytest.fixture(scope="module")
def run_dir(store_path, other_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    rc = train.main(["--store", str(store_path), "--features", "a,b,c", "--fusion", "concat",
                     "--head", "logreg", "--out", str(out), "--test-store", str(other_store),
                     "--bootstrap", "100"])
    assert rc == 0
    return out


def test_train_cli_writes_metrics_scores_model_plots(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["features"] == ["a", "b", "c"] and m["fusion"] == "concat" and m["head"] == "logreg"
    assert {"val", "test", "cross", "threshold"} <= set(m)
    assert set(m["test"]["far_at_frr"]) == {"0.001", "0.01", "0.05", "0.1"}
    assert m["test"]["auc"] > 0.8
    assert "other" in m["cross"]
    assert set(m["test"]["by_method"]) == {"A", "B"}
    for f in ("roc.png", "det.png", "scores.png", "model/model.json", "model/weights.npz"):
        assert (run_dir / f).is_file(), f


def test_metrics_json_matches_scores_csv(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    scores = pd.read_csv(run_dir / "scores.csv")
    assert list(scores.columns) == scoring.SCORE_COLUMNS
    assert set(scores["split"]) == {"val", "test"}
    test = scores[scores["split"] == "test"]
    assert m["test"]["auc"] == pytest.approx(roc_auc_score(test["label"], test["logit"]), abs=1e-12)
    assert m["test"]["eer"] == pytest.approx(metrics.eer(test["label"], test["logit"]), abs=1e-12)
    np.testing.assert_allclose(scores["score"], 1 / (1 + np.exp(-scores["logit"])), rtol=1e-9)
    val = scores[scores["split"] == "val"]
    assert m["threshold"] == pytest.approx(metrics.threshold_at_eer(val["label"], val["logit"]))
    assert m["threshold_probability"] == pytest.approx(1 / (1 + np.exp(-m["threshold"])))


def test_evaluate_cli_reproduces_test_metrics(run_dir, store_path, tmp_path):
    rc = evaluate.main(["--model", str(run_dir), "--store", str(store_path), "--split", "test",
                        "--out", str(tmp_path / "ev"), "--bootstrap", "0"])
    assert rc == 0
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    m = json.loads((run_dir / "metrics.json").read_text())
    assert ev["metrics"]["auc"] == pytest.approx(m["test"]["auc"], abs=1e-12)
    assert ev["threshold"] == pytest.approx(m["threshold"])


def test_evaluate_refuses_store_with_other_params(run_dir, tmp_path, capsys):
    meta = synthetic_meta()
    rng = np.random.default_rng(0)
    vectors = {"a": rng.normal(size=(len(meta), 6)), "b": rng.normal(size=(len(meta), 4)),
               "c": rng.normal(size=(len(meta), 3))}
    attrs = {k: {"extractor": k, "version": "1", "params": {"size": 8}} for k in vectors}
    attrs["b"] = {"extractor": "b", "version": "1", "params": {"size": 16}}
    bad = stores.write_store(tmp_path / "bad.h5", meta, vectors=vectors, attrs=attrs)
    rc = evaluate.main(["--model", str(run_dir), "--store", str(bad), "--out", str(tmp_path / "ev")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "'b'" in err and "size 8 -> 16" in err
    del vectors["c"]
    missing = stores.write_store(tmp_path / "missing.h5", meta, vectors=vectors, attrs=attrs)
    assert evaluate.main(["--model", str(run_dir), "--store", str(missing), "--out", str(tmp_path / "ev")]) == 2
    assert "'c' is missing" in capsys.readouterr().err


@pytest.mark.parametrize("flags, needle", [
    (["--features", "a,zzz"], "zzz"),
    (["--features", "a", "--fusion", "nope"], "--fusion"),
    (["--features", "a", "--head", "forest"], "--head"),
    (["--features", "ma", "--fusion", "concat"], "ma"),
    (["--features", "a", "--param", "epochs"], "--param"),
    (["--features", "a", "--param", "epochs=3"], "no parameter 'epochs'"),
    (["--features", "a,b", "--fusion", "attention", "--param", "mode=both"], "self+cross"),
    (["--features", "a,b,c", "--fusion", "hierarchical", "--param", "groups=a;b"], "exactly once"),
    (["--features", "a,b", "--fusion", "mlp", "--head", "gbm"], "--head: fusion 'mlp' trains its own network"),
])
def test_wrong_flag_exits_2_with_one_line(flags, needle, store_path, tmp_path, capsys):
    rc = train.main(["--store", str(store_path), "--out", str(tmp_path / "r"), *flags])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err
    assert not (tmp_path / "r").exists()  # no work done


def test_missing_store_exits_2(tmp_path, capsys):
    assert train.main(["--store", str(tmp_path / "nope.h5"), "--features", "a", "--out", str(tmp_path / "r")]) == 2
    assert "not found" in capsys.readouterr().err


def test_store_is_required_no_hidden_default(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--features", "a", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "--store" in err and err.endswith("see --help")


def test_empty_train_split_is_a_clear_error(tmp_path, capsys):
    meta = synthetic_meta()
    meta = meta[meta["split"] != "train"].reset_index(drop=True)
    path = stores.write_store(tmp_path / "notrain.h5", meta, vectors={"a": np.zeros((len(meta), 2))})
    assert train.main(["--store", str(path), "--features", "a", "--out", str(tmp_path / "r")]) == 2
    assert "'train' has no samples" in capsys.readouterr().err


def test_empty_val_split_uses_train_threshold(tmp_path):
    meta = synthetic_meta()
    meta = meta[meta["split"] != "val"].reset_index(drop=True)
    y = meta["label"].to_numpy()
    x = np.random.default_rng(0).normal(size=(len(meta), 3)) + y[:, None]
    path = stores.write_store(tmp_path / "noval.h5", meta, vectors={"a": x})
    res = train.train_run(path, ["a"], out=tmp_path / "r", n_boot=0, plots_on=False, verbose=False)
    assert res["threshold_from"] == "train"
    assert res["warnings"][0].startswith("threshold taken from train")
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["warnings"] == res["warnings"]
    assert "no samples" in res["val"]["note"]
    assert res["test"]["auc"] > 0.8


@pytest.mark.parametrize("features, fusion, params", [
    ("a,b", "attention", ["epochs=20"]),
    ("ma,mb", "early", ["epochs=20", "size=16"]),
])
def test_torch_fusion_via_cli_then_evaluate(features, fusion, params, store_path, tmp_path):
    flags = [x for p in params for x in ("--param", p)]
    assert train.main(["--store", str(store_path), "--features", features, "--fusion", fusion, *flags,
                       "--out", str(tmp_path / "r"), "--bootstrap", "0", "--no-plots"]) == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["head"] is None and m["test"]["auc"] > 0.8
    assert (tmp_path / "r" / "model" / "weights.safetensors").is_file()
    ev = evaluate.evaluate_run(tmp_path / "r", store_path, tmp_path / "ev", split="test", n_boot=0,
                               plots_on=False, verbose=False)
    assert ev["metrics"]["auc"] == pytest.approx(m["test"]["auc"], abs=1e-12)


def test_small_splits_warn_in_summary_and_metrics_json(tmp_path, capsys):
    path = make_store(tmp_path / "small.h5", n_videos_per_split=(48, 3, 3), frames=4)
    assert train.main(["--store", str(path), "--features", "a", "--out", str(tmp_path / "r"),
                       "--bootstrap", "20", "--no-plots"]) == 0
    printed = capsys.readouterr().out
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    warnings = m["warnings"]
    assert "val: 1 real and 2 fake videos (< 5 per class)" in " | ".join(warnings)
    assert "test: FAR@FRR target(s) 0.001, 0.01, 0.05, 0.1 below 1/n_real = 1/4" in " | ".join(warnings)
    assert any(w.startswith("test: video-level AUC from 1 real") for w in warnings)
    assert any("per-method AUC of 'A' from 1 real and 1 fake" in w for w in warnings)
    from fusion.warning_groups import kind_of
    shown = [x for x in printed.splitlines() if x.startswith("WARNING ")]
    assert len(shown) == len({kind_of(w) for w in warnings}) < len(warnings)  # one line per kind
    assert shown[0].startswith("WARNING too few videos: val, test: 1 real and 2 fake videos")
    assert m["test"]["ci"]["cluster"] == "video" and "fewer than 2 videos" in m["test"]["ci"]["note"]
    assert m["val"]["warnings"] and m["val"]["ci"]["n_clusters"] == {"real": 1, "fake": 2}


def test_warnings_name_only_what_is_short(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["test"]["ci"]["cluster"] == "video" and m["test"]["ci"]["n_clusters"] == {"real": 4, "fake": 8}
    assert "test: 4 real and 8 fake videos (< 5 per class)" in " | ".join(m["warnings"])
    assert not [w for w in m["warnings"] if "video-level AUC" in w or "per-method" in w]
    assert m["test"]["ci"]["auc"][0] < m["test"]["auc"] <= m["test"]["ci"]["auc"][1] + 1e-12


def test_provenance_records_code_command_store_hash_seed_config(run_dir, store_path, other_store):
    import hashlib
    p = json.loads((run_dir / "metrics.json").read_text())["provenance"]
    assert p["code_version"] and p["command"].startswith("python -m fusion.train --store ")
    assert "--test-store" in p["command"] and p["seed"] == 0
    hashes = {s["path"]: s["sha256"] for s in p["stores"]}
    for path in (store_path, other_store):
        assert hashes[str(path.resolve())] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert p["config"]["features"] == ["a", "b", "c"] and p["config"]["bootstrap"] == 100
    assert p["config"]["head"] == "logreg" and p["config"]["fusion"] == "concat"


def test_torch_fusion_without_head_records_none(store_path, tmp_path):
    res = train.train_run(store_path, ["a", "b"], "mlp", out=tmp_path / "r", n_boot=0, plots_on=False,
                          verbose=False, params={"epochs": 5})
    assert res["head"] is None and res["provenance"]["config"]["head"] is None
