"""Tests of fusion.robustness and the --perturb flag of the train and ablate CLIs."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import stores
from base.errors import UsageError
from fusion import ablate, heads, robustness, train
from tests.fusion.test_heads import synthetic_meta

torch.set_num_threads(1)

NOISE = {"noise:5": 1.0, "noise:20": 4.0}  # spec -> std of the extra feature noise


def make_perturbed_store(path, seed=0):
    """Feature ``f`` (separable) and ``f@noise:5``, ``f@noise:20``: progressively noisier copies."""
    rng = np.random.default_rng(seed)
    meta = synthetic_meta()
    y = meta["label"].to_numpy()
    f = rng.normal(size=(len(meta), 4)) + 1.5 * y[:, None]
    vectors = {"f": f.astype(np.float32)}
    attrs = {"f": {"extractor": "f", "version": "1", "params": {"size": 8}}}
    for spec, std in NOISE.items():
        name = robustness.perturbed_name("f", spec)
        vectors[name] = (f + rng.normal(scale=std, size=f.shape)).astype(np.float32)
        attrs[name] = {"extractor": "f", "version": "1", "params": {"size": 8, "perturbation": spec}}
    return stores.write_store(path, meta, vectors=vectors, attrs=attrs)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return make_perturbed_store(tmp_path_factory.mktemp("robust") / "perturbed.h5")


@pytest.fixture(scope="module")
def run_dir(store_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("robust_run") / "run"
    assert train.main(["--store", str(store_path), "--features", "f", "--out", str(out),
                       "--bootstrap", "20", "--perturb", "all"]) == 0
    return out


def test_available_perturbations_sorted_by_strength(store_path):
    store = stores.open_store(store_path)
    assert robustness.available_perturbations(store, ["f"]) == ["noise:5", "noise:20"]
    assert robustness.available_perturbations(store, ["f", "g"]) == []


def test_resolve_normalises_and_names_missing(store_path):
    store = stores.open_store(store_path)
    assert robustness.resolve_perturbations(store, ["f"], "NOISE:20.0, noise:5") == ["noise:20", "noise:5"]
    assert robustness.resolve_perturbations(store, ["f"], None) == []
    with pytest.raises(UsageError, match=r"f@jpeg:50 not in .*--perturb jpeg:50"):
        robustness.resolve_perturbations(store, ["f"], "noise:5,jpeg:50")
    with pytest.raises(UsageError, match="unknown perturbation"):
        robustness.resolve_perturbations(store, ["f"], "sepia:1")


def test_auc_falls_with_noise_strength(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    assert list(m["robustness"]) == ["noise:5", "noise:20"]
    aucs = [m["test"]["auc"], m["robustness"]["noise:5"]["auc"], m["robustness"]["noise:20"]["auc"]]
    assert aucs[0] > aucs[1] > aucs[2] > 0.4, aucs
    assert m["robustness"]["noise:20"]["eer"] > m["test"]["eer"]
    assert {"auc", "eer", "far_at_frr", "n_real", "n_fake"} <= set(m["robustness"]["noise:5"])
    assert (run_dir / "robustness.png").is_file()


def test_perturbed_scores_match_direct_prediction(store_path, run_dir):
    store = stores.open_store(store_path)
    model = heads.load_head(run_dir / "model")
    threshold = json.loads((run_dir / "metrics.json").read_text())["threshold"]
    got = robustness.evaluate_under_perturbations(model, store, ["f"], ["noise:20"], threshold=threshold)
    X, y, _ = store.read(["f@noise:20"], split="test")
    direct = model.predict_proba(heads.FusionData({"f": X}, y))
    assert got["noise:20"]["auc"] == pytest.approx(roc_auc_score(y, direct), abs=1e-12)


def test_train_missing_spec_exits_2_before_work(store_path, tmp_path, capsys):
    out = tmp_path / "never"
    rc = train.main(["--store", str(store_path), "--features", "f", "--out", str(out), "--perturb", "jpeg:50"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "f@jpeg:50" in err and "python -m pipelines.extract" in err and "--perturb jpeg:50" in err
    assert not out.exists()


def test_ablate_adds_perturbed_auc_columns(store_path, tmp_path):
    out = tmp_path / "abl"
    assert ablate.main(["--store", str(store_path), "--features", "f", "--stages", "single",
                        "--out", str(out), "--bootstrap", "10", "--perturb", "noise:5,noise:20"]) == 0
    table = pd.read_csv(out / "ablation.csv")
    assert list(table.columns) == ablate.COLUMNS + ["auc@noise:5", "auc@noise:20"]
    row = table.iloc[0]
    assert row["test_auc"] > row["auc@noise:5"] > row["auc@noise:20"]
    assert "AUC@noise:20" in (out / "ablation.md").read_text()
    assert (out / "robustness.png").is_file()
    assert ablate.main(["--store", str(store_path), "--features", "f", "--out", str(tmp_path / "x"),
                        "--perturb", "blur:2"]) == 2
