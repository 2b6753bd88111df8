"""fusion.ensemble: calibration against reference reals, the four rules, the threshold, and
fit/eval end to end on a tiny store with a cascade member and a fusion.train member."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from base.errors import UsageError
from fusion import ensemble as E
from tests.cascade_fixtures import store_parts


# -- calibration, rules, threshold: hand values ----------------------------------------------

def test_calibration_is_median_and_scaled_mad_by_hand():
    cal = E.calibration([10, 0, 3, 1, 2])
    assert cal["median"] == 2 and cal["n"] == 5
    # |x - 2| = 8, 2, 1, 1, 0 -> MAD 1
    assert cal["scale"] == pytest.approx(1.4826)
    assert cal["sorted"] == [0, 1, 2, 3, 10]
    assert E.z_scores([5, 2, -1], cal) == pytest.approx([3 / 1.4826, 0, -3 / 1.4826])


def test_calibration_falls_back_to_std_then_one():
    cal = E.calibration([1, 1, 1, 5])  # MAD 0
    assert cal["scale"] == pytest.approx(np.sqrt(3.0))  # std of 1, 1, 1, 5 (mean 2)
    assert E.calibration([4, 4])["scale"] == 1.0
    with pytest.raises(ValueError):
        E.calibration([])
    with pytest.raises(ValueError):
        E.calibration([0.0, np.nan])


def test_quantiles_count_ties_half():
    cal = E.calibration([0, 1, 2, 3, 10])
    assert E.quantiles([2, -1, 11, 2.5, 10], cal) == pytest.approx([0.5, 0.0, 1.0, 0.6, 0.9])
    # reference values themselves: mid-ranks (i + 0.5) / n
    assert E.quantiles(cal["sorted"], cal) == pytest.approx((np.arange(5) + 0.5) / 5)


def test_rules_by_hand():
    z = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
    q = np.array([[0.9, 0.1, 0.5], [1.0, 0.4, 0.2]])
    assert E.fuse(z, q, "max-z") == pytest.approx([3.0, 0.0, 0.5])
    assert E.fuse(z, q, "mean-z") == pytest.approx([2.0, -1.0, -0.25])
    assert E.fuse(z, q, "max-quantile") == pytest.approx([1.0, 0.4, 0.5])
    assert E.fuse(z, q, "mean-quantile") == pytest.approx([0.95, 0.25, 0.35])
    with pytest.raises(ValueError, match="unknown rule 'min-z'"):
        E.fuse(z, q, "min-z")


@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.1, 0.25])
def test_threshold_flags_at_most_the_share_and_is_the_smallest_such(fpr):
    rng = np.random.default_rng(0)
    ref = np.r_[rng.normal(size=200), np.full(10, 1.5)]  # with ties
    t = E.threshold_for(ref, fpr)
    assert np.mean(ref >= t) <= fpr
    below = np.max(ref[ref < t])  # the next lower reference value would flag more
    assert np.mean(ref >= below) > fpr


def test_threshold_by_hand():
    ref = np.arange(20.0)
    t = E.threshold_for(ref, 0.05)  # one real of 20 may be flagged: 19 only
    assert 18 < t <= 19 and np.sum(ref >= t) == 1
    assert E.threshold_for(ref, 0.01) > 19  # none may be flagged


# -- fit and eval on a tiny store ------------------------------------------------------------

@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """A store with the rgb map and an informative vector feature ``a``, a one-step cascade
    run and a fusion.train run on ``a``: ``(store, cascade run, fusion run)``."""
    import torch
    import stores
    from fusion.cascade.config import TrainConfig
    from fusion.cascade.data import write_synthetic_store
    from fusion.cascade.train import train
    from fusion.train import main as train_main
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ensemble")
    maps_store = write_synthetic_store(root / "maps.h5", n=60, size=32, seed=3,
                                       features=("rgb", "mask"))
    meta, maps, attrs, valid, landmarks = store_parts(maps_store)
    y = meta["label"].to_numpy()
    rng = np.random.default_rng(0)
    a = (rng.normal(size=(len(meta), 4)) + 1.5 * y[:, None]).astype(np.float32)
    store = stores.write_store(root / "both.h5", meta, vectors={"a": a}, maps=maps,
                               attrs={**attrs, "a": {"extractor": "a", "version": "1", "params": {}}},
                               valid=valid, landmarks=landmarks)
    cascade = root / "cascade"
    train(TrainConfig(store=str(store), out=str(cascade), epochs=1, batch_size=8, max_steps=1,
                      backbone="tiny", dim=32, heads=4, size=32, sbi="off"),
          progress=False, log=lambda *_: None)
    head = root / "head"
    assert train_main(["--store", str(store), "--features", "a", "--out", str(head),
                       "--bootstrap", "0", "--no-plots"]) == 0
    return store, cascade, head


def _fit(members, out, select=True, **kw):
    store, cascade, head = members
    return E.fit([cascade, head], [(store, "val")], out,
                 [(store, "test")] if select else (), device="cpu", log=lambda *_: None, **kw)


def test_fit_calibrates_on_the_reference_reals_only(members, tmp_path):
    store, cascade, head = members
    ens = _fit(members, tmp_path / "ens")
    saved = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert saved["rule"] == ens["rule"] and saved["format"] == E.FORMAT
    logits, meta = E.score_store(ens["members"], store, "val", "cpu")
    reals = meta["label"].to_numpy() == 0
    for m, row in zip(saved["members"], logits):
        assert m["calibration"]["n"] == reals.sum()
        assert m["calibration"]["median"] == pytest.approx(np.median(row[reals]))
        assert m["calibration"]["sorted"] == pytest.approx(np.sort(row[reals]))
    # the threshold flags at most 5 % of those reals under the chosen rule
    z, q = E.calibrated(saved, logits[:, reals])
    assert np.mean(E.fuse(z, q, saved["rule"]) >= saved["threshold"]) <= 0.05
    # the rule is the best mean frame AUC over the select stores, the members beside it
    score = saved["select_score"]
    assert saved["rule"] == max(E.RULES, key=lambda r: score[r])
    assert {f"member {cascade.name}", f"member {head.name}"} <= set(score)


def test_eval_scores_match_an_independent_computation(members, tmp_path):
    store, cascade, head = members
    _fit(members, tmp_path / "ens", rule="max-z")
    result = E.evaluate(tmp_path / "ens", store, "test", tmp_path / "out", n_boot=50,
                        device="cpu", log=lambda *_: None)
    pred = pd.read_csv(tmp_path / "out" / "predictions.csv")
    ens = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    z = np.stack([pred[f"z_{m['name']}"] for m in ens["members"]])
    for m in ens["members"]:
        cal = m["calibration"]
        logit = pred[f"logit_{m['name']}"].to_numpy()
        assert pred[f"z_{m['name']}"].to_numpy() == pytest.approx((logit - cal["median"]) / cal["scale"])
        assert result["members"][m["name"]]["frame_auc"] == pytest.approx(
            roc_auc_score(pred["label"], logit))
    assert pred["score"].to_numpy() == pytest.approx(z.max(0))
    assert result["classification"]["auc"] == pytest.approx(roc_auc_score(pred["label"], z.max(0)))
    assert {r["method"] for r in result["per_method"]} == set(pred.loc[pred.label == 1, "method"])
    lo, hi = result["classification"]["video"]["auc_ci"]  # resampling videos
    assert lo <= result["classification"]["video"]["auc"] <= hi
    assert (tmp_path / "out" / "metrics.json").is_file() and (tmp_path / "out" / "roc.png").is_file()
    page = (tmp_path / "out" / "report.html").read_text()
    assert "per kind of fake, fused" in page and f"member {head.name} alone (baseline)" in page


def test_selection_never_fits_on_the_select_store(members, tmp_path):
    """Shuffled labels on the select store change which rule is chosen at most: the
    calibration and a given rule's threshold stay identical."""
    import stores
    store, cascade, head = members
    with stores.open_store(store) as s:
        meta = s.meta.copy()
        a, _, _ = s.read(["a"])
    meta_shuffled = meta.copy()
    test = meta["split"].to_numpy() == "test"
    meta_shuffled.loc[test, "label"] = np.random.default_rng(1).permutation(meta.loc[test, "label"].to_numpy())
    meta_s, maps, attrs, valid, landmarks = store_parts(store)
    shuffled = stores.write_store(tmp_path / "shuffled.h5", meta_shuffled, vectors={"a": a}, maps=maps,
                                  attrs={**attrs, "a": {"extractor": "a", "version": "1", "params": {}}},
                                  valid=valid, landmarks=landmarks)
    one = E.fit([cascade, head], [(store, "val")], tmp_path / "one", [(store, "test")], rule="max-z",
                device="cpu", log=lambda *_: None)
    two = E.fit([cascade, head], [(store, "val")], tmp_path / "two", [(shuffled, "test")], rule="max-z",
                device="cpu", log=lambda *_: None)
    assert [m["calibration"] for m in one["members"]] == [m["calibration"] for m in two["members"]]
    assert one["threshold"] == two["threshold"]
    assert one["select_score"] != two["select_score"]  # the labels were read, only to choose


def test_cli_fit_and_eval(members, tmp_path, capsys):
    store, cascade, head = members
    assert E.main(["fit", "--member", str(cascade), "--member", str(head), "--reference",
                   f"{store}:val", "--select-store", f"{store}:test", "--out", str(tmp_path / "e"),
                   "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "calibrated on" in out and "<- chosen" in out
    assert E.main(["eval", "--run", str(tmp_path / "e"), "--store", str(store), "--split", "test",
                   "--out", str(tmp_path / "o"), "--n-boot", "20", "--device", "cpu"]) == 0
    assert "per kind of fake (fused)" in capsys.readouterr().out


def test_bad_inputs_give_one_line(members, tmp_path, capsys):
    store, cascade, head = members
    with pytest.raises(UsageError, match="at least two runs"):
        E.fit([cascade], [(store, "val")], tmp_path / "x", log=lambda *_: None)
    with pytest.raises(UsageError, match="--rule: expected auto or one of"):
        E.fit([cascade, head], [(store, "val")], tmp_path / "x", rule="best", log=lambda *_: None)
    with pytest.raises(UsageError, match="not a run of fusion.train or fusion.cascade"):
        E.fit([cascade, tmp_path], [(store, "val")], tmp_path / "x", log=lambda *_: None)
    assert E.main(["fit", "--member", str(cascade), "--member", str(head), "--reference",
                   str(tmp_path / "none.h5"), "--out", str(tmp_path / "y")]) == 2
    assert "--reference" in capsys.readouterr().err
    assert E.main(["eval", "--run", str(tmp_path), "--store", str(store), "--out",
                   str(tmp_path / "z")]) == 2
    assert "no ensemble.json; make one with `python -m fusion.ensemble fit`" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        E.main(["eval", "--run", str(tmp_path), "--store", str(store), "--split", "dev",
                "--out", str(tmp_path / "z")])
    assert exit_.value.code == 2
    assert "--split" in capsys.readouterr().err
    _fit(members, tmp_path / "ens", select=False)
    assert json.loads((tmp_path / "ens" / "ensemble.json").read_text())["rule"] == "max-z"
    bad = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    changed = {**bad, "members": [bad["members"][0], {**bad["members"][1], "sha256": "0" * 64}]}
    (tmp_path / "ens" / "ensemble.json").write_text(json.dumps(changed))
    with pytest.raises(UsageError, match="has other weights than when the ensemble was fit"):
        E.load_ensemble(tmp_path / "ens")
    bad["members"][1]["path"] = str(tmp_path / "moved")
    (tmp_path / "ens" / "ensemble.json").write_text(json.dumps(bad))
    with pytest.raises(UsageError, match="is gone or is no longer a fusion.train run"):
        E.load_ensemble(tmp_path / "ens")


def test_a_store_without_a_members_feature_is_named(members, tmp_path):
    store, cascade, head = members
    maps_only = store.parent / "maps.h5"
    with pytest.raises(UsageError, match="'a'"):
        E.fit([cascade, head], [(maps_only, "val")], tmp_path / "x", device="cpu", log=lambda *_: None)


# -- files: fusion.predict --model ENSEMBLE -------------------------------------------------

@pytest.fixture(scope="module")
def demo_ensemble(tmp_path_factory):
    """An ensemble of a tiny cascade and an ``fft`` head on the built-in demo data set,
    evaluated on its test split: ``(root, ensemble folder, eval folder)``."""
    import torch
    from fusion.cascade.config import TrainConfig
    from fusion.cascade.train import train
    from fusion.train import main as train_main
    from pipelines.extract import main as extract_main
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("demo_ensemble")
    store = root / "demo.h5"
    assert extract_main(["--out", str(store), "--workers", "0", "--features", "rgb,fft",
                         "--no-progress"]) == 0
    train(TrainConfig(store=str(store), out=str(root / "cascade"), epochs=1, batch_size=8,
                      max_steps=2, backbone="tiny", dim=32, heads=4, size=32, sbi="off"),
          progress=False, log=lambda *_: None)
    assert train_main(["--store", str(store), "--features", "fft", "--out", str(root / "fft"),
                       "--bootstrap", "0", "--no-plots"]) == 0
    E.fit([root / "cascade", root / "fft"], [(store, "val")], root / "ens", rule="max-z",
          device="cpu", log=lambda *_: None)
    E.evaluate(root / "ens", store, "test", root / "eval", n_boot=0, device="cpu", log=lambda *_: None)
    return root, root / "ens", root / "eval"


def test_predict_with_an_ensemble_matches_its_store_score(demo_ensemble, capsys):
    import cv2
    from fusion.predict import main as predict_main
    from pipelines.demo import demo_sources, render_demo_source
    root, ens_dir, eval_dir = demo_ensemble
    pred = pd.read_csv(eval_dir / "predictions.csv")
    source = next(s for s in demo_sources() if s.split == "test" and s.label == 1)
    crop, _ = render_demo_source(source)
    image = root / "suspect.png"
    cv2.imwrite(str(image), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    assert predict_main(["--model", str(ens_dir), str(image), "--out", str(root / "p.json")]) == 0
    report = json.loads((root / "p.json").read_text())
    result = report["results"][0]
    row = pred.loc[pred.sample_id == source.sample_id(0)]
    assert result["logit"] == pytest.approx(row["score"].item(), abs=1e-4)
    for name in ("cascade", "fft"):
        assert result["members"][name] == pytest.approx(row[f"logit_{name}"].item(), abs=1e-4)
    ens = json.loads((ens_dir / "ensemble.json").read_text())
    assert result["fake"] == (result["logit"] >= ens["threshold"])
    # the score is the share of reference reals whose fused score is lower
    ref = np.asarray(ens["reference_fused"])
    share = (np.sum(ref < result["logit"]) + 0.5 * np.sum(ref == result["logit"])) / ref.size
    assert result["score"] == pytest.approx(share)
    assert "flags 5% of the reference reals" in capsys.readouterr().out
