"""Contract tests over every registered fusion: trains, beats chance, saves, loads, predicts."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import stores
from fusion import heads
from fusion.scoring import load_split

torch.set_num_threads(1)

VECTOR_DIMS = {"a": 6, "b": 4, "c": 3}
MAP_SHAPES = {"ma": (8, 8, 1), "mb": (8, 8, 2)}
FAST = {"epochs": 40, "patience": 5, "size": 16}


def synthetic_meta(n_videos_per_split=(48, 12, 12), frames=4, seed=0):
    """Meta of a small FF++-like store: reals and two fake methods, ``frames`` per video.

    Folder names repeat across methods ("A/000" and "B/000" share "000") on purpose.
    """
    rows = []
    methods = ["real", "A", "B"]
    for split, n_videos in zip(("train", "val", "test"), n_videos_per_split):
        for v in range(n_videos):
            method = methods[v % 3]
            label = int(method != "real")
            folder = f"{split}{v // 3:03d}"
            for f in range(frames):
                rows.append({"sample_id": f"{method}/{folder}:{f}", "dataset": "synthetic", "split": split,
                             "label": label, "method": method, "video_id": f"{method}/{folder}",
                             "frame_index": (frames - f) * 10, "source_path": f"/synthetic/{method}/{folder}.mp4"})
    return pd.DataFrame(rows)


def make_store(path, seed=0, shift=1.2, with_nan=True, **meta_kw):
    """A separable synthetic store: features a, b (informative), c (noise), maps ma, mb."""
    rng = np.random.default_rng(seed)
    meta = synthetic_meta(**meta_kw)
    y = meta["label"].to_numpy()
    n = len(meta)
    codes, vid = np.unique(meta["video_id"] + meta["split"], return_inverse=True)
    video_offset = rng.normal(size=len(codes))[vid]  # shared by a video's frames
    vectors = {}
    for name, d in VECTOR_DIMS.items():
        x = rng.normal(size=(n, d)) + 0.3 * video_offset[:, None]
        if name != "c":
            x[:, : max(1, d // 2)] += shift * y[:, None]
        vectors[name] = x.astype(np.float32)
    if with_nan:
        vectors["b"][:3] = np.nan  # invalid rows
    maps = {}
    for name, shape in MAP_SHAPES.items():
        m = rng.normal(size=(n, *shape)).astype(np.float32)
        m[:, 2:6, 2:6, :] += shift * y[:, None, None, None]
        maps[name] = m
    attrs = {name: {"extractor": name, "version": "1", "params": {"size": 8}} for name in [*vectors, *maps]}
    valid = {"b": ~np.isnan(vectors["b"]).any(axis=1)}
    return stores.write_store(path, meta, vectors=vectors, maps=maps, attrs=attrs, valid=valid)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("store") / "synthetic.h5")


def features_for(name):
    return list(MAP_SHAPES) if heads.FUSIONS[name].inputs == "map" else list(VECTOR_DIMS)


@pytest.fixture(scope="module")
def splits(store_path):
    store = stores.open_store(store_path)
    cache = {}

    def get(feats):
        key = tuple(feats)
        if key not in cache:
            kind = "map" if feats[0] in MAP_SHAPES else "vector"
            cache[key] = {s: load_split(store, feats, s, kind) for s in ("train", "val", "test")}
        return cache[key]
    return get


@pytest.mark.parametrize("name", heads.list_fusions())
def test_every_fusion_trains_beats_chance_and_round_trips(name, splits, tmp_path):
    feats = features_for(name)
    data = splits(feats)
    head = heads.create_fusion(name, feats, seed=0, **(FAST if issubclass(heads.FUSIONS[name], heads.TorchFusion) else {}))
    head.fit(data["train"], data["val"])
    scores = head.predict_proba(data["test"])
    assert scores.shape == (len(data["test"]),)
    assert np.isfinite(scores).all()
    assert roc_auc_score(data["test"].y, scores) > 0.8
    head.save(tmp_path / "model")
    again = heads.load_head(tmp_path / "model")
    np.testing.assert_array_equal(again.predict_proba(data["test"]), scores)
    # pickled (joblib, fusion.sklearn) through the same state that save() writes
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(head)).predict_proba(data["test"]), scores)


@pytest.mark.parametrize("kind", heads.SKLEARN_HEADS)
def test_concat_heads_round_trip(kind, splits, tmp_path):
    data = splits(list(VECTOR_DIMS))
    head = heads.create_fusion("concat", list(VECTOR_DIMS), head=kind).fit(data["train"], data["val"])
    scores = head.predict_proba(data["test"])
    assert roc_auc_score(data["test"].y, scores) > 0.8
    head.save(tmp_path / kind)
    np.testing.assert_array_equal(heads.load_head(tmp_path / kind).predict_proba(data["test"]), scores)


def test_gbm_arrays_predict_like_sklearn():
    from sklearn.ensemble import GradientBoostingClassifier
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int)
    clf = GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0).fit(X, y)
    params = heads.gbm_to_arrays(clf)
    X_test = rng.normal(size=(200, 5)).astype(np.float32)
    np.testing.assert_allclose(heads.gbm_decision(params, X_test), clf.decision_function(X_test), rtol=1e-10, atol=1e-10)


def test_nan_rows_are_imputed_with_train_mean():
    x = np.array([[1.0, np.nan], [3.0, 4.0], [np.nan, 8.0]], np.float32)
    scaler = heads.BlockScaler().fit({"f": x})
    np.testing.assert_allclose(scaler.mean["f"], [2.0, 6.0])
    out = scaler.transform({"f": x})["f"]
    assert np.isfinite(out).all()
    assert out[0, 1] == 0.0 and out[2, 0] == 0.0


def test_threshold_fusion_k_of_n_rule():
    head = heads.create_fusion("threshold", ["a", "b"], k=2)
    head.thresholds = np.array([0.5, 0.5])
    s = head._combine(np.array([[0.9, 0.4], [0.9, 0.6], [0.1, 0.2]]))
    assert list(s >= 0) == [False, True, False]  # AND of two features
    head.params["k"] = 1
    assert list(head._combine(np.array([[0.9, 0.4], [0.1, 0.2]])) >= 0) == [True, False]  # OR


def test_unknown_fusion_and_bad_groups():
    with pytest.raises(ValueError, match="unknown fusion"):
        heads.create_fusion("nope", ["a"])
    with pytest.raises(ValueError, match="exactly once"):
        heads.parse_groups("a,b", ["a", "b", "c"])
    assert heads.parse_groups(None, ["a", "b", "c"]) == [["a", "b"], ["c"]]


def test_one_class_training_fails_clearly(splits):
    data = splits(list(VECTOR_DIMS))["train"]
    only_fakes = heads.FusionData({k: v[data.y == 1] for k, v in data.blocks.items()}, data.y[data.y == 1])
    with pytest.raises(ValueError, match="one class"):
        heads.create_fusion("concat", list(VECTOR_DIMS)).fit(only_fakes)


def test_sequence_scores_are_per_video_and_keep_methods_apart(splits):
    data = splits(list(VECTOR_DIMS))
    head = heads.create_fusion("sequence", list(VECTOR_DIMS), **FAST).fit(data["train"], data["val"])
    scores = head.predict_proba(data["test"])
    meta = data["test"].meta.assign(score=scores)
    per_video = meta.groupby(["method", "video_id"])["score"].nunique()
    assert (per_video == 1).all()
    # folder names repeat across methods (A/test000, B/test000): the key keeps them apart
    assert len(per_video) == meta[["method", "video_id"]].drop_duplicates().shape[0]
    assert len(groups := head._groups(data["test"])) == len(per_video)
    assert all(np.all(np.diff(meta["frame_index"].to_numpy()[g]) > 0) for g in groups)


@pytest.mark.parametrize("name, params", [("attention", {"mode": "self"}), ("attention", {"mode": "cross"}),
                                          ("pooling", {"pool": "max"}), ("hierarchical", {"groups": "a;b,c"}),
                                          ("threshold", {"k": 2})])
def test_fusion_variants_train(name, params, splits):
    data = splits(list(VECTOR_DIMS))
    head = heads.create_fusion(name, list(VECTOR_DIMS), **FAST, **params).fit(data["train"], data["val"])
    assert roc_auc_score(data["test"].y, head.predict_proba(data["test"])) > 0.8


def test_torch_heads_are_seeded(splits):
    data = splits(list(VECTOR_DIMS))
    runs = [heads.create_fusion("mlp", list(VECTOR_DIMS), seed=3, **FAST).fit(data["train"], data["val"])
            .predict_proba(data["test"]) for _ in range(2)]
    np.testing.assert_array_equal(*runs)


def _constant_column_data(n=200, seed=0):
    """Column 0 constant (0) on train and varying wildly on test; column 1 carries the label."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    train = np.stack([np.zeros(n), rng.normal(size=n) + 1.5 * y], axis=1).astype(np.float32)
    test = np.stack([rng.normal(scale=1e4, size=n), rng.normal(size=n) + 1.5 * y], axis=1).astype(np.float32)
    return heads.FusionData({"f": train}, y), heads.FusionData({"f": test}, y)


def test_column_constant_on_train_is_neutralised_and_scores_do_not_saturate():
    train, test = _constant_column_data()
    scaler = heads.BlockScaler().fit(train.blocks)
    assert scaler.constant_columns() == {"f": 1}
    assert (scaler.transform(test.blocks)["f"][:, 0] == 0).all()
    head = heads.create_fusion("concat", ["f"]).fit(train)
    z = head.decision_function(test)
    blank = heads.FusionData({"f": test.blocks["f"] * np.array([0, 1], np.float32)}, test.y)
    np.testing.assert_array_equal(z, head.decision_function(blank))  # column 0 has no say
    p = head.predict_proba(test)
    assert len(np.unique(p)) > len(p) // 2  # not all 1.0
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-z)))
    assert roc_auc_score(test.y, z) == pytest.approx(roc_auc_score(test.y, test.blocks["f"][:, 1]), abs=1e-12)


def test_relative_constant_threshold_and_stated_clip():
    x = np.array([[1000.0, 0.0], [1000.0, 1e-9], [1000.0, -1e-9]], np.float64)
    scaler = heads.BlockScaler().fit({"f": x})
    assert scaler.keep["f"].tolist() == [False, True]  # tiny but real variation is kept
    out = scaler.transform({"f": np.array([[5.0, 1.0], [0.0, -1.0]])})["f"]
    assert out[:, 0].tolist() == [0.0, 0.0]
    assert out[:, 1].tolist() == [heads.Z_CLIP, -heads.Z_CLIP]


def test_saved_scaler_keeps_the_constant_mask(tmp_path):
    train, test = _constant_column_data()
    head = heads.create_fusion("concat", ["f"]).fit(train)
    head.save(tmp_path / "m")
    np.testing.assert_array_equal(heads.load_head(tmp_path / "m").decision_function(test),
                                  head.decision_function(test))


@pytest.mark.parametrize("kind", ["linear-svm", "gbm"])
def test_stacking_meta_learner_sees_oof_scores_of_its_own_head_kind(kind, splits):
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.svm import LinearSVC

    data = splits(["a", "c"])
    head = heads.create_fusion("stacking", ["a", "c"], head=kind).fit(data["train"], data["val"])
    prepped = head._prep(data["train"])
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    expected = []
    for f in ["a", "c"]:
        setting = heads.sklearn_head_setting(head.models[f])
        clf = (LinearSVC(C=setting, dual="auto", max_iter=2000, tol=1e-3, random_state=0) if kind == "linear-svm"
               else GradientBoostingClassifier(n_estimators=100, max_depth=3, learning_rate=setting, random_state=0))
        expected.append(cross_val_predict(clf, prepped.blocks[f], prepped.y, cv=cv, method="decision_function"))
    expected = np.stack(expected, axis=1)
    np.testing.assert_allclose(head.oof_scores, expected, rtol=1e-6, atol=1e-6)
    meta = LogisticRegression(max_iter=500).fit(expected, prepped.y)
    np.testing.assert_allclose(head.meta_coef, meta.coef_.ravel(), rtol=1e-4, atol=1e-6)
    z = head.decision_function(data["test"])
    base = head._base_scores(head._prep(data["test"]))
    np.testing.assert_allclose(z, base @ meta.coef_.ravel() + meta.intercept_[0], rtol=1e-4, atol=1e-5)


def _two_block_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    return heads.FusionData({"a": rng.normal(size=(n, 3)) + y[:, None],
                             "b": rng.normal(size=(n, 2)) + y[:, None]}, y)


@pytest.mark.parametrize("name", ["concat", "soft-vote", "stacking", "weighted", "threshold", "data"])
def test_pickles_from_the_one_module_layout_still_load(name, tmp_path):
    """Before ``fusion.heads`` was a package, pickles named ``fusion.heads.<name>`` (a fitted head
    reduces to ``head_from_state``, an unfitted head or a FusionData names its class). Protocol 2
    writes each global as the text line ``c<module>\\n<name>\\n``, so such an old pickle is
    today's with ``fusion.heads.<module>`` rewritten to ``fusion.heads``."""
    import re
    data = _two_block_data()
    if name == "data":
        obj = data
    else:
        obj = heads.create_fusion(name, ["a", "b"], **({"epochs": 3} if name == "weighted" else {}))
        if name != "threshold":
            obj.fit(data)
    new = pickle.dumps(obj, protocol=2)
    old, n_globals = re.subn(rb"cfusion\.heads\.\w+\n", b"cfusion.heads\n", new)
    assert n_globals >= 1
    again = pickle.loads(old)
    assert type(again) is type(obj)
    if name == "data":
        np.testing.assert_array_equal(again.blocks["a"], data.blocks["a"])
    elif name != "threshold":
        np.testing.assert_array_equal(again.decision_function(data), obj.decision_function(data))
        # the saved format records the fusion's registered name, never a module path
        obj.save(tmp_path / "m")
        assert "fusion.heads" not in (tmp_path / "m" / "model.json").read_text()


def test_head_modules_import_downward_only():
    """base imports no family module; a family imports base (and classifiers), never another family."""
    import ast
    from pathlib import Path
    package = Path(heads.__file__).parent
    below = {"base": set(), "classifiers": {"base"}}
    for path in package.glob("*.py"):
        if path.stem == "__init__":
            continue
        imported = {node.module.rsplit(".", 1)[1] for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fusion.heads.")}
        assert imported <= below.get(path.stem, {"base", "classifiers"}), (path.name, imported)
