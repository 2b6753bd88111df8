"""A hostile tester's inputs to the fusion commands: each bad input gives one clear line
naming the flag or file and the real cause, and nothing passes silently.

A sibling of ``tests/pipelines/test_bad_inputs.py``; each section is one contiguous block.
"""
import json
import warnings

import numpy as np
import pandas as pd
import pytest

import stores


# --- non-finite features and warnings ---
def _tiny_meta():
    """12 train, 6 val and 4 test videos of 4 frames: 16 test rows (reals and fakes A, B)."""
    from tests.fusion.test_heads import synthetic_meta
    return synthetic_meta(n_videos_per_split=(12, 6, 4), frames=4)


def _nonfinite_store(path, bad=np.nan, marked_valid=True, split="test", rows=8, seed=0, flip=False,
                     reals_only=False):
    """A store with an informative feature ``a`` and a feature ``fft`` whose value is ``bad``
    in the first ``rows`` rows of ``split`` (marked valid or not); ``bad=None``: all finite.
    ``flip``: the labels are swapped after the features are drawn (a model scores it inverted);
    ``reals_only``: the fakes are left out."""
    meta = _tiny_meta()
    rng = np.random.default_rng(seed)
    y = meta["label"].to_numpy()
    if flip:
        meta["label"] = 1 - y
        meta["method"] = np.where(y == 1, "real", "A")
    if reals_only:
        keep = y == 0
        meta, y = meta[keep].reset_index(drop=True), y[keep]
    a = (rng.normal(size=(len(meta), 3)) + 1.5 * y[:, None]).astype(np.float32)
    fft = (rng.normal(size=(len(meta), 2)) + 0.5 * y[:, None]).astype(np.float32)
    valid = np.ones(len(meta), bool)
    if bad is not None:
        hit = np.flatnonzero(meta["split"].to_numpy() == split)[:rows]
        fft[hit] = bad
        valid[hit] = marked_valid
    attrs = {k: {"extractor": k, "version": "1", "params": {}} for k in ("a", "fft")}
    return stores.write_store(path, meta, vectors={"a": a, "fft": fft}, attrs=attrs,
                              valid={"fft": valid})


def _train_cli(store, out, *extra):
    from fusion.train import main
    return main(["--store", str(store), "--features", "a,fft", "--out", str(out), "--bootstrap", "0",
                 "--no-plots", *extra])


def _evaluate_cli(run, store, out, *extra, plots=False):
    from fusion.evaluate import main
    return main(["--model", str(run), "--store", str(store), "--out", str(out), "--bootstrap", "0",
                 *([] if plots else ["--no-plots"]), *extra])


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """A model trained on a store without a NaN, to score the damaged stores with."""
    root = tmp_path_factory.mktemp("clean")
    assert _train_cli(_nonfinite_store(root / "clean.h5", bad=None), root / "run") == 0
    return root / "run"


CASES = [(np.nan, True), (np.nan, False), (np.inf, True), (-np.inf, False)]
IDS = ["nan-valid", "nan-invalid", "inf-valid", "-inf-invalid"]


@pytest.mark.parametrize("bad, marked_valid", CASES, ids=IDS)
def test_evaluate_counts_and_prints_nonfinite_rows(bad, marked_valid, clean_run, tmp_path, capsys):
    store = _nonfinite_store(tmp_path / "bad.h5", bad, marked_valid)
    capsys.readouterr()
    assert _evaluate_cli(clean_run, store, tmp_path / "ev", "--split", "test") == 0
    printed = capsys.readouterr().out
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["nonfinite"] == {"fft": {"rows": 8, "of": 16, "marked_valid": 8 if marked_valid else 0}}
    line = [w for w in m["warnings"] if "'fft'" in w]
    assert len(line) == 1 and line[0].startswith("test: feature 'fft' is NaN or infinite in 8 of 16 rows")
    assert ("8 of them marked valid" in line[0]) == marked_valid
    printed_line = [x for x in printed.splitlines() if "'fft' is NaN or infinite in 8 of 16 rows" in x]
    assert len(printed_line) == 1 and printed_line[0].startswith("WARNING non-finite features: test:")


def test_nan_and_inf_are_scored_alike(clean_run, tmp_path):
    scores = []
    for name, bad in (("nan", np.nan), ("inf", np.inf), ("neg", -np.inf)):
        store = _nonfinite_store(tmp_path / f"{name}.h5", bad, True)
        assert _evaluate_cli(clean_run, store, tmp_path / name, "--split", "test") == 0
        scores.append(pd.read_csv(tmp_path / name / "scores.csv")["logit"].to_numpy())
    np.testing.assert_array_equal(scores[0], scores[1])
    np.testing.assert_array_equal(scores[0], scores[2])


@pytest.mark.parametrize("split", ["train", "test"])
def test_train_counts_nonfinite_rows_per_split(split, tmp_path, capsys):
    store = _nonfinite_store(tmp_path / "bad.h5", np.inf, True, split=split)
    assert _train_cli(store, tmp_path / "run") == 0
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    n = 48 if split == "train" else 16
    assert m["nonfinite"] == {split: {"fft": {"rows": 8, "of": n, "marked_valid": 8}}}
    assert f"{split}: feature 'fft' is NaN or infinite in 8 of {n} rows" in capsys.readouterr().out


def test_ablate_warns_of_nonfinite_rows_of_the_pick(tmp_path, capsys):
    from fusion.ablate import main
    store = _nonfinite_store(tmp_path / "bad.h5", np.nan, False)
    assert main(["--store", str(store), "--features", "a,fft", "--stages", "single,loo", "--out",
                 str(tmp_path / "abl"), "--bootstrap", "0"]) == 0
    saved = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    rows = {r["features"]: r for r in saved["rows"]}
    assert any("'fft' is NaN or infinite in 8 of 16" in w for w in rows["a,fft"]["warnings"])
    assert not any("'fft'" in w for w in rows["a"]["warnings"])


def test_info_check_reports_nonfinite_values_per_feature(tmp_path, capsys):
    from stores.info import main
    valid = _nonfinite_store(tmp_path / "valid.h5", np.nan, True)
    assert main([str(valid), "--check"]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1
    assert f"{valid}: feature 'fft' is NaN or infinite in 8 rows marked valid" in err
    assert "nonfinite fft: NaN or inf in 8 rows, 8 of them marked valid (a problem)" in captured.out
    invalid = _nonfinite_store(tmp_path / "invalid.h5", np.nan, False)
    assert main([str(invalid), "--check"]) == 0
    assert "nonfinite fft: NaN or inf in 8 rows, all marked invalid (not computed)" in capsys.readouterr().out
    clean = _nonfinite_store(tmp_path / "clean.h5", None)
    assert main([str(clean), "--check"]) == 0
    assert "nonfinite none" in capsys.readouterr().out


def test_fusion_classifier_takes_inf_as_it_takes_nan():
    from fusion.sklearn import FusionClassifier, NonFiniteFeatureWarning
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    X = np.column_stack([rng.normal(size=40) + 2 * y, rng.normal(size=40)])
    results = []
    for bad in (np.nan, np.inf, -np.inf):
        Xb = X.copy()
        Xb[:, 1] = bad  # an all-NaN / all-inf column
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            clf = FusionClassifier().fit(Xb, y)
            results.append(clf.decision_function(Xb))
        lines = [str(w.message) for w in caught if issubclass(w.category, NonFiniteFeatureWarning)]
        assert any("FusionClassifier.fit: feature 'x' is NaN or infinite in 40 of 40 rows" in s for s in lines)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_evaluate_prints_warnings_grouped_most_serious_first(clean_run, tmp_path, capsys):
    from fusion.warning_groups import KINDS, kind_of
    store = _nonfinite_store(tmp_path / "bad.h5", np.nan, False)
    capsys.readouterr()
    assert _evaluate_cli(clean_run, store, tmp_path / "ev", "--split", "test") == 0
    printed = [x for x in capsys.readouterr().out.splitlines() if x.startswith("WARNING ")]
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    kinds = [kind_of(w) for w in m["warnings"]]
    assert len(set(kinds)) >= 2 and len(m["warnings"]) > len(set(kinds))  # something to group
    assert len(printed) == len(set(kinds))  # one line per kind
    order = [name for name, _ in KINDS] + ["note"]
    shown = [x[len("WARNING "):].split(":")[0] for x in printed]
    assert shown == sorted(set(kinds), key=order.index)
    for w in m["warnings"]:  # every warning's set is still named
        assert any(w.split(":")[0] + ":" in x for x in printed)


def test_importance_warns_when_the_model_is_worse_than_chance(clean_run, tmp_path, capsys):
    from fusion.importance import main
    flipped = _nonfinite_store(tmp_path / "flipped.h5", None, flip=True)
    capsys.readouterr()
    assert main(["--store", str(flipped), "--run", str(clean_run), "--out", str(tmp_path / "imp"),
                 "--repeats", "2", "--no-plots"]) == 0
    printed = capsys.readouterr().out.splitlines()
    saved = json.loads((tmp_path / "imp" / "importance.json").read_text())
    assert saved["below_chance"] and saved["auc"] < 0.5 and saved["split"] == "val"
    assert saved["warnings"][0].startswith(f"val: AUC {saved['auc']:.3f} is below chance (0.5)")
    # prominent: the first line printed, and again after the table
    assert printed[0].startswith("WARNING worse than chance: val: AUC") and "mean the opposite" in printed[0]
    assert printed[-2] == printed[0] and printed[-1].startswith("next:")


def test_importance_of_a_sound_model_has_no_chance_warning(clean_run, tmp_path, capsys):
    from fusion.importance import main
    store = _nonfinite_store(tmp_path / "same.h5", None)
    assert main(["--store", str(store), "--run", str(clean_run), "--out", str(tmp_path / "imp"),
                 "--repeats", "2", "--no-plots"]) == 0
    assert "below chance" not in capsys.readouterr().out
    saved = json.loads((tmp_path / "imp" / "importance.json").read_text())
    assert saved["below_chance"] is False and saved["warnings"] == []


def test_evaluate_on_reals_only_shows_the_false_positives_and_why_no_auc(clean_run, tmp_path, capsys):
    store = _nonfinite_store(tmp_path / "reals.h5", None, reals_only=True, seed=3)
    capsys.readouterr()
    out = tmp_path / "ev"
    assert _evaluate_cli(clean_run, store, out, plots=True) == 0
    printed = capsys.readouterr().out
    scores = pd.read_csv(out / "scores.csv")
    m = json.loads((out / "metrics.json").read_text())
    called = int((scores["logit"] >= m["threshold"]).sum())  # the decision, counted independently
    n = len(scores)
    assert n == 8 and (scores["label"] == 0).all()  # 2 real test videos of 4 frames
    assert m["decisions"] == {"reals": n, "reals_called_fake": called, "fakes": 0, "fakes_called_real": 0,
                              "false_positive_rate": called / n, "false_negative_rate": None}
    assert f"{called} of {n} reals called fake (false-positive rate {called / n:.3f}" in printed
    assert "AUC, EER and ROC/DET are not defined: the store has reals only (one class)" in printed
    assert "next:" not in printed  # fusion.importance needs reals and fakes
    assert "plots: scores.png (ROC and DET need reals and fakes)" in printed
    assert (out / "scores.png").is_file() and not (out / "roc.png").exists()
    page = (out / "report.html").read_text()
    assert f"{called} of {n} reals called fake" in page and "scores.png" in page
