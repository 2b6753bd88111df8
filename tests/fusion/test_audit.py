"""The confound audit: a metadata-only model trained and evaluated like a head."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import stores
from fusion import ablate, audit, train
from stores.schema import SOURCE_META_FIELDS
from tests.fusion.test_heads import synthetic_meta


def metadata_store(path, confound: float, seed=0, **meta_kw):
    """Feature ``a`` weakly informative; file size and face width shifted by ``confound`` for fakes.

    The metadata is also stored as the vector feature ``m``, so a head on ``m`` is the
    independent reference for the metadata baseline.
    """
    rng = np.random.default_rng(seed)
    meta = synthetic_meta(**meta_kw)
    y = meta["label"].to_numpy()
    n = len(meta)
    source = {f: np.full(n, np.nan) for f in SOURCE_META_FIELDS}
    source.update(image_width=np.full(n, 512.0), image_height=np.full(n, 512.0),
                  file_bytes=rng.normal(50_000, 5_000, n) + confound * 5_000 * y,
                  face_width=rng.normal(200, 20, n) + confound * 20 * y, is_jpeg=np.ones(n))
    a = rng.normal(size=(n, 3)) + 0.4 * y[:, None]
    m = np.stack([source[f] for f in SOURCE_META_FIELDS], axis=1)
    return stores.write_store(path, meta, vectors={"a": a, "m": m}, source_meta=source,
                              attrs={k: {"extractor": k, "version": "1"} for k in ("a", "m")})


@pytest.fixture(scope="module")
def confounded(tmp_path_factory):
    return metadata_store(tmp_path_factory.mktemp("audit") / "confounded.h5", confound=3.0)


def test_metadata_baseline_is_exactly_a_head_on_the_metadata(confounded, tmp_path):
    res = train.train_run(confounded, ["a"], out=tmp_path / "r", n_boot=0, plots_on=False, verbose=False)
    base = res["baselines"]["metadata"]
    assert base["known"] == ["image_width", "image_height", "file_bytes", "is_jpeg", "face_width"]
    reference = train.train_run(confounded, ["m"], out=tmp_path / "ref", n_boot=0, plots_on=False,
                                verbose=False, audit=False)
    for key in ("threshold", "threshold_from"):
        assert base[key] == reference[key]
    assert base["test"]["auc"] == pytest.approx(reference["test"]["auc"], abs=1e-12)
    scores = json.loads((tmp_path / "ref" / "metrics.json").read_text())["test"]
    assert scores["auc"] == pytest.approx(base["test"]["auc"], abs=1e-12)
    assert base["test"]["auc"] > 0.9 > res["test"]["auc"]
    text = " | ".join(res["warnings"])
    assert "metadata-only model reaches AUC" in text and "is above the detector" in text
    assert "within 0.05" not in text  # 1.0 against 0.6 is not "within"
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert saved["baselines"]["metadata"]["test"]["auc"] == pytest.approx(base["test"]["auc"])


def test_unconfounded_metadata_gives_no_confound_warning(tmp_path):
    path = metadata_store(tmp_path / "clean.h5", confound=0.0)
    res = train.train_run(path, ["a"], out=tmp_path / "r", n_boot=0, plots_on=False, verbose=False)
    assert res["baselines"]["metadata"]["test"]["auc"] < 0.75
    assert not [w for w in res["warnings"] if "metadata" in w]


def test_store_without_metadata_is_said_clearly(tmp_path, capsys):
    meta = synthetic_meta()
    y = meta["label"].to_numpy()
    path = stores.write_store(tmp_path / "old.h5", meta, vectors={"a": np.random.default_rng(0).normal(
        size=(len(meta), 2)) + y[:, None]})
    assert stores.open_store(path).source_meta is None
    res = train.train_run(path, ["a"], out=tmp_path / "r", n_boot=0, plots_on=False, verbose=True)
    assert "re-extract" in res["baselines"]["metadata"]["note"]
    assert any(w.startswith("no metadata baseline") for w in res["warnings"])
    assert "no metadata baseline" in capsys.readouterr().out
    assert audit.main(["--store", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no source metadata" in err


def test_audit_cli_writes_json_with_provenance(confounded, tmp_path, capsys):
    assert audit.main(["--store", str(confounded), "--out", str(tmp_path / "a"), "--bootstrap", "50",
                       "--test-store", str(confounded)]) == 0
    res = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert res["test"]["auc"] > 0.9 and "confounded" in res["cross"]
    assert res["provenance"]["stores"][0]["sha256"] == hashlib.sha256(confounded.read_bytes()).hexdigest()
    assert "WARNING" in capsys.readouterr().out


def test_audit_auc_matches_sklearn_on_its_own_scores(confounded):
    store = stores.open_store(confounded)
    res = audit.metadata_baseline(store, n_boot=0)
    data = audit.metadata_split(store, "test")
    from fusion import heads
    model = heads.create_fusion("concat", [audit.BLOCK])
    splits = {s: audit.metadata_split(store, s) for s in ("train", "val", "test")}
    model.fit(splits["train"], splits["val"])
    assert res["test"]["auc"] == pytest.approx(roc_auc_score(data.y, model.decision_function(data)), abs=1e-12)


def test_ablation_warns_when_metadata_rivals_its_pick(confounded, tmp_path, capsys):
    assert ablate.main(["--store", str(confounded), "--features", "a", "--stages", "single",
                        "--out", str(tmp_path / "abl"), "--bootstrap", "0"]) == 0
    saved = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert saved["baselines"]["metadata"]["test"]["auc"] > 0.9
    assert any("is above the detector" in w for w in saved["pick_warnings"])
    assert "Metadata-only baseline: test AUC" in (tmp_path / "abl" / "ablation.md").read_text()
    assert "metadata-only model reaches AUC" in capsys.readouterr().out


@pytest.mark.parametrize("meta_auc, head_auc, words, not_words", [
    (0.859, 0.500, "(AUC 0.859) is above the detector (AUC 0.500) by 0.359", "within"),
    (0.700, 0.600, "(AUC 0.700) is above the detector (AUC 0.600) by 0.100", "within"),
    (0.700, 0.720, "(AUC 0.700) is within 0.05 of the detector (AUC 0.720)", "above"),
    (0.740, 0.710, "(AUC 0.740) is within 0.05 of the detector (AUC 0.710)", "above the detector"),
])
def test_confound_warning_says_above_or_within_as_is_true(meta_auc, head_auc, words, not_words):
    out = audit.confound_warnings({"test": {"auc": head_auc}, "cross": {}},
                                  {"test": {"auc": meta_auc}, "cross": {}})
    rival = [w for w in out if "of the detector" in w or "above the detector" in w]
    assert len(rival) == 1 and words in rival[0] and not_words not in rival[0], out


def test_no_confound_warning_when_metadata_is_far_below():
    assert audit.confound_warnings({"test": {"auc": 0.95}, "cross": {}},
                                   {"test": {"auc": 0.70}, "cross": {}}) == []
