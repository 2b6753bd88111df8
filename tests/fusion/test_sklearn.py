"""fusion.sklearn.FusionClassifier: scikit-learn's estimator checks, the heads it wraps, the
store's DataFrame read, model selection by video, and the README example."""
from __future__ import annotations

import pickle
import re

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import stores
from fusion import heads
from fusion.scoring import load_split
from fusion.sklearn import FusionClassifier, feature_blocks
from tests.conftest import REPO_ROOT
from tests.fusion.test_heads import make_store

torch.set_num_threads(1)

TORCH_FAST = {"epochs": 20}
# check name -> why it cannot pass, for the estimators below that have the reason.
KEYWORD_PARAMS = ("check_no_attributes_set_in_init",
                  "the head's own hyper-parameters are **params keywords (FusionClassifier(fusion="
                  "'attention', epochs=20)), stored as attributes that the __init__ signature cannot "
                  "list; get_params/set_params/clone carry them (tested below)")
TORCH_SUBSETS = ("check_methods_subset_invariance",
                 "torch's float32 matrix products round differently for a batch of 20 rows and for "
                 "single rows (differences ~5e-7); the check allows 1e-7")


def expected_failures(estimator) -> dict:
    """The checks ``estimator`` cannot pass, with the reason. scikit-learn itself skips
    ``check_array_api_input`` unless SCIPY_ARRAY_API is set (the heads are numpy/torch)."""
    out = {}
    if estimator._head_param_names():
        out.update([KEYWORD_PARAMS])
    if issubclass(heads.FUSIONS[estimator.fusion], heads.TorchFusion):
        out.update([TORCH_SUBSETS])
    return out


@parametrize_with_checks([FusionClassifier(), FusionClassifier(fusion="soft-vote"),
                          FusionClassifier(fusion="stacking", head="linear-svm")],
                         expected_failed_checks=expected_failures, xfail_strict=True)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# Not strict: whether float32 rounding differs between batch sizes depends on the CPU's (or
# the GPU's) kernels, so the subset check may pass on another machine.
@pytest.mark.slow
@parametrize_with_checks([FusionClassifier(fusion="attention", **TORCH_FAST)],
                         expected_failed_checks=expected_failures, xfail_strict=False)
def test_sklearn_estimator_checks_torch_head(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------------------------
# a store read as a DataFrame, and the heads it wraps
@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("sk") / "synthetic.h5")


@pytest.fixture(scope="module")
def frames(store_path):
    with stores.open_store(store_path) as store:
        return {s: store.read(["a", "b", "c"], split=s, as_frame=True) for s in ("train", "val", "test")}


def test_feature_blocks_from_column_names():
    assert feature_blocks(["a__0", "b__x__1", "a__1"]) == {"a": [0, 2], "b": [1]}
    assert feature_blocks(["col0", "col1"]) == {"x": [0, 1]}
    with pytest.raises(ValueError, match="column 'loose' names no feature"):
        feature_blocks(["a__0", "loose"])


@pytest.mark.parametrize("fusion, params", [("concat", {}), ("stacking", {}), ("mlp", TORCH_FAST)])
def test_fit_on_the_frame_is_the_head_fitted_on_the_store_blocks(fusion, params, frames, store_path):
    X, y, _ = frames["train"]
    X_test, y_test, _ = frames["test"]
    clf = FusionClassifier(fusion=fusion, features=["b", "a"], **params).fit(X, y)
    assert clf.features_ == ["b", "a"] and clf.classes_.tolist() == [0, 1]
    with stores.open_store(store_path) as store:
        train, test = load_split(store, ["b", "a"], "train"), load_split(store, ["b", "a"], "test")
    head = heads.create_fusion(fusion, ["b", "a"], **params).fit(train)
    np.testing.assert_array_equal(clf.decision_function(X_test), head.decision_function(test))
    proba = clf.predict_proba(X_test)
    assert proba.shape == (len(X_test), 2)
    np.testing.assert_array_equal(proba[:, 1], head.predict_proba(test))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(X_test), (head.decision_function(test) > 0).astype(int))
    assert roc_auc_score(y_test, clf.decision_function(X_test)) > 0.8


def test_decision_zero_is_probability_one_half_for_a_vote_share():
    # majority-vote's decision value is the share of features voting fake, in [0, 1]
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 100)
    X = pd.DataFrame(rng.normal(size=(200, 3)) + y[:, None], columns=["a__0", "b__0", "c__0"])
    clf = FusionClassifier(fusion="majority-vote").fit(X, y)
    share = clf.predict_proba(X)[:, 1]
    assert set(np.round(share * 3).tolist()) <= {0, 1, 2, 3}
    np.testing.assert_allclose(clf.decision_function(X), share - 0.5)
    np.testing.assert_array_equal(clf.predict(X), (share > 0.5).astype(int))


def test_labels_other_than_0_1_and_feature_name_checks(frames):
    X, y, _ = frames["train"]
    named = np.where(y == 1, "fake", "real")
    clf = FusionClassifier().fit(X, named)
    assert clf.classes_.tolist() == ["fake", "real"]  # sorted, as scikit-learn: "real" is classes_[1]
    ref = FusionClassifier().fit(X, (named == "real").astype(int))
    np.testing.assert_array_equal(clf.decision_function(X), ref.decision_function(X))
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(X[X.columns[::-1]])


def test_keyword_params_survive_get_params_clone_and_set_params():
    clf = FusionClassifier(fusion="attention", epochs=7, mode="self")
    params = clf.get_params()
    assert params["epochs"] == 7 and params["mode"] == "self" and params["fusion"] == "attention"
    twin = clone(clf)
    assert twin.get_params() == params and twin is not clf
    twin.set_params(epochs=3, fusion="pooling", pool="max")
    assert twin.get_params()["epochs"] == 3 and twin.pool == "max"
    assert "epochs=7" in repr(clf)


def test_fit_rejects_what_the_fusion_does_not_take(frames):
    X, y, _ = frames["train"]
    with pytest.raises(ValueError, match="fusion 'concat' has no parameter 'epochs'"):
        FusionClassifier(epochs=5).fit(X, y)
    with pytest.raises(ValueError, match="mode must be one of"):
        FusionClassifier(fusion="attention", mode="sideways").fit(X, y)
    with pytest.raises(ValueError, match="no block 'lbp'; its blocks are a, b, c"):
        FusionClassifier(features=["lbp"]).fit(X, y)
    with pytest.raises(ValueError, match="reads maps"):
        FusionClassifier(fusion="early").fit(X, y)
    with pytest.raises(ValueError, match="whole videos"):
        FusionClassifier(fusion="sequence").fit(X, y)
    with pytest.raises(ValueError, match="unknown head 'svm'"):
        FusionClassifier(head="svm").fit(X, y)
    with pytest.raises(ValueError, match="val_size"):
        FusionClassifier(val_size=1.0).fit(X, y)
    with pytest.raises(ValueError, match="one class"):
        FusionClassifier().fit(X[y == 1], y[y == 1])


def test_val_size_holds_out_whole_groups_for_the_heads_val(frames):
    X, y, meta = frames["train"]
    videos = meta["video_id"].to_numpy()
    clf = FusionClassifier(val_size=0.25, seed=2)
    fit_rows, val_rows = clf._val_split(y, videos)
    assert not set(videos[fit_rows]) & set(videos[val_rows])
    assert set(fit_rows) | set(val_rows) == set(range(len(y)))
    clf.fit(X, y, groups=videos)
    blocks = {f: X.filter(like=f"{f}__").to_numpy() for f in "abc"}
    head = heads.create_fusion("concat", list("abc")).fit(
        heads.FusionData({f: b[fit_rows] for f, b in blocks.items()}, y[fit_rows]),
        heads.FusionData({f: b[val_rows] for f, b in blocks.items()}, y[val_rows]))
    np.testing.assert_array_equal(clf.head_.model["coef"], head.model["coef"])
    assert float(clf.head_.model["C"]) in (0.01, 0.1, 1.0, 10.0)  # val picked from the grid


def test_fitted_torch_head_pickles_through_its_saved_state(frames):
    X, y, _ = frames["train"]
    X_test = frames["test"][0]
    clf = FusionClassifier(fusion="gating", **TORCH_FAST).fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.decision_function(X_test), clf.decision_function(X_test))
    assert again.head_.net is not clf.head_.net


def test_cross_val_score_pipeline_and_grid_search_by_video(frames):
    X, y, meta = frames["train"]
    videos = meta["video_id"].to_numpy()
    cv = GroupKFold(n_splits=3)
    folds = list(cv.split(X, y, videos))
    assert all(not set(videos[a]) & set(videos[b]) for a, b in folds)
    aucs = cross_val_score(FusionClassifier(features=["a", "b"]), X, y, groups=videos, cv=cv, scoring="roc_auc")
    by_hand = [roc_auc_score(y[b], FusionClassifier(features=["a", "b"]).fit(X.iloc[a], y[a])
                             .decision_function(X.iloc[b])) for a, b in folds]
    np.testing.assert_allclose(aucs, by_hand)
    # a pandas-out transformer keeps the column names, so the blocks survive a Pipeline
    pipe = Pipeline([("scale", StandardScaler().set_output(transform="pandas")),
                     ("fuse", FusionClassifier(fusion="soft-vote"))]).fit(X, y)
    assert pipe.named_steps["fuse"].features_ == ["a", "b", "c"]
    search = GridSearchCV(FusionClassifier(), {"features": [["c"], ["a", "b"]]}, scoring="roc_auc", cv=cv)
    search.fit(X, y, groups=videos)
    assert search.best_params_ == {"features": ["a", "b"]}  # c is noise in make_store
    assert search.cv_results_["mean_test_score"][0] < 0.7 < search.cv_results_["mean_test_score"][1]


def _readme_example() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("### From scikit-learn"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_grid_search_example_runs(tmp_path, capsys, monkeypatch):
    code = _readme_example()
    assert "GroupKFold" in code and 'groups=meta["video_id"]' in code and "as_frame=True" in code
    # the README's store, with the features it names: lbp, dct informative, fft noise
    path = make_store(tmp_path / "ffpp.h5")
    with stores.open_store(path) as src:
        vectors = {new: src.read([old])[0] for new, old in (("lbp", "a"), ("dct", "b"), ("fft", "c"))}
        meta = src.meta
    stores.write_store(tmp_path / "renamed.h5", meta, vectors=vectors)
    (tmp_path / "renamed.h5").replace(tmp_path / "ffpp.h5")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    best, val = out[0], out[1]
    assert "'fusion'" in best and "'features'" in best
    assert float(val.split()[-1]) > 0.8
