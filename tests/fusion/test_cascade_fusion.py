"""The cascade as a feature of the fusion commands: the leakage guard (fusion.train,
fusion.ablate, FusionClassifier), late fusions and ablation with a handcrafted head,
importance, identity CIs, and ``fusion.predict`` end to end, on tiny synthetic stores and a
tiny trained cascade run."""
import json
import warnings

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from extract.registry import FaceBatch
from fusion.cascade.data import write_synthetic_store
from pipelines.extract import run_extractors
from stores import open_store, write_store
from tests.cascade_fixtures import tiny_cascade_run

torch.set_num_threads(1)
FEATURES = ("cascade", "color")
#: predict re-crops a file like this store's extraction (no face detection, 32 px)
INGEST = {"size": 32, "align": "none", "frames": 2, "margin": 0.3}


def _feature_store(path, images, meta, run, landmarks):
    batch = FaceBatch(images, landmarks)
    outputs, attrs, _ = run_extractors(batch, FEATURES, {"cascade": {"run": str(run), "device": "cpu"}})
    return write_store(path, meta, vectors={f: outputs[f]["vector"] for f in FEATURES}, attrs=attrs,
                       landmarks=landmarks, run={"dataset": str(meta["dataset"].iloc[0]), **INGEST})


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """``own``: the cascade's training store with the features; ``held``: other rows, two
    videos per identity; ``bench``: ``held`` as a benchmark made from the cascade's rows (its
    identities are their sample ids, as ``pipelines.benchmark --from-store`` sources)."""
    folder = tmp_path_factory.mktemp("cascade_fusion")
    source = write_synthetic_store(folder / "src.h5", n=48, size=32, seed=0, with_landmarks=True,
                                   features=("rgb", "mask"))
    run = tiny_cascade_run(folder / "run", source)
    with open_store(source) as s:
        rgb, meta = s.read_map("rgb")
        own = _feature_store(folder / "own.h5", rgb, meta, run, s.landmarks())
    held_src = write_synthetic_store(folder / "held_src.h5", n=64, size=32, seed=7, with_landmarks=True,
                                     features=("rgb",))
    with open_store(held_src) as s:
        rgb, meta = s.read_map("rgb")
        lm = s.landmarks()
    meta = meta.copy()
    meta["dataset"] = "held"
    meta["sample_id"] = "held:" + meta["sample_id"]
    meta["identity"] = [f"person{i // 2}" for i in range(len(meta))]
    held = _feature_store(folder / "held.h5", rgb, meta, run, lm)
    trained = json.loads((run / "config.json").read_text())["samples"]["train"]
    bench_meta = meta.copy()
    bench_meta["identity"] = [trained[i % len(trained)] for i in range(len(meta))]
    bench = _feature_store(folder / "bench.h5", rgb, bench_meta, run, lm)
    return {"own": own, "held": held, "bench": bench, "run": run, "folder": folder}


def _train(store, out, *extra):
    from fusion.train import main
    return main(["--store", str(store), "--features", ",".join(FEATURES), "--out", str(out),
                 "--bootstrap", "50", "--no-plots", *extra])


@pytest.mark.parametrize("which", ["own", "bench"])
def test_train_refuses_the_cascades_own_rows_in_one_line(stores, tmp_path, capsys, which):
    assert _train(stores[which], tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "feature 'cascade'" in err and "--allow-overlap" in err
    assert "leakage" in err and "rows this head is fitted or thresholded on" in err
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_train_override_keeps_the_warning_in_metrics(stores, tmp_path):
    assert _train(stores["own"], tmp_path / "r", "--allow-overlap") == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["leakage"] and any("leakage: feature 'cascade'" in w for w in m["warnings"])
    assert m["provenance"]["config"]["allow_overlap"] is True


def test_train_accepts_rows_the_cascade_never_saw_with_identity_cis(stores, tmp_path):
    assert _train(stores["held"], tmp_path / "r") == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["leakage"] == [] and not any("leakage" in w for w in m["warnings"])
    assert m["test"]["ci"]["cluster"] == "identity"
    with open_store(stores["held"]) as s:
        test = s.meta[s.meta["split"] == "test"]
    assert sum(m["test"]["ci"]["n_clusters"].values()) >= test["identity"].nunique()
    scores = pd.read_csv(tmp_path / "r" / "scores.csv")
    assert scores["identity"].str.startswith("person").all()


@pytest.mark.parametrize("fusion", ["soft-vote", "stacking", "max-confidence"])
def test_late_fusions_of_cascade_and_a_handcrafted_head(stores, tmp_path, fusion):
    assert _train(stores["held"], tmp_path / fusion, "--fusion", fusion) == 0
    m = json.loads((tmp_path / fusion / "metrics.json").read_text())
    assert m["features"] == list(FEATURES) and np.isfinite(m["test"]["auc"])


def test_ablate_ranks_cascade_as_any_feature_and_guards_its_rows(stores, tmp_path, capsys):
    from fusion.ablate import main
    argv = ["--features", ",".join(FEATURES), "--fusions", "concat,soft-vote,stacking,max-confidence",
            "--stages", "single,fusions", "--bootstrap", "0"]
    assert main(["--store", str(stores["own"]), "--out", str(tmp_path / "own"), *argv]) == 2
    assert "feature 'cascade'" in capsys.readouterr().err
    assert main(["--store", str(stores["held"]), "--out", str(tmp_path / "held"), *argv]) == 0
    table = pd.read_csv(tmp_path / "held" / "ablation.csv")
    assert {"cascade", "color", "cascade,color"} <= set(table["features"])
    assert {"concat", "soft-vote", "stacking", "max-confidence"} <= set(table["fusion"])
    assert (table["pick"] == "*").sum() == 1
    assert json.loads((tmp_path / "held" / "ablation.json").read_text())["leakage"] == []
    # a --test-store whose scored (test) rows the cascade saw is scored, with the warning
    # kept; the cascade's own store is not warned about: its test rows were never seen
    assert main(["--store", str(stores["held"]), "--out", str(tmp_path / "cross"), *argv,
                 "--test-store", str(stores["bench"]), "--test-store", str(stores["own"])]) == 0
    leaks = json.loads((tmp_path / "cross" / "ablation.json").read_text())["leakage"]
    assert len(leaks) == 1 and "cross bench: feature 'cascade' was trained or selected on" in leaks[0]


def test_a_select_store_counts_as_rows_the_cascade_chose_on(stores, tmp_path):
    from extract.cascade_net.run import trained_on
    from fusion.leakage import overlap, stacked_rows
    saved = json.loads((stores["run"] / "config.json").read_text())
    saved["config"]["select_store"] = str(stores["held"])
    with open_store(stores["held"]) as s:
        held = s.meta
    saved["samples"]["select"] = held["sample_id"].astype(str).tolist()
    record = trained_on(saved)
    assert record["select_stores"] == [str(stores["held"])]
    assert overlap(held, stacked_rows("cascade", record)).all()
    # a run that recorded no ids: every row of its select stores is excluded all the same
    record["sample_ids"] = None
    assert overlap(held, stacked_rows("cascade", record)).all()


def test_importance_shows_what_the_fused_head_leans_on(stores, tmp_path):
    from fusion.importance import main
    assert _train(stores["held"], tmp_path / "r") == 0
    assert main(["--store", str(stores["held"]), "--run", str(tmp_path / "r"), "--repeats", "2",
                 "--no-plots", "--out", str(tmp_path / "imp")]) == 0
    table = pd.read_csv(tmp_path / "imp" / "importance.csv")
    blocks = table[table["level"] == "block"]
    assert set(blocks["feature"]) == set(FEATURES) and np.isfinite(blocks["auc_drop"]).all()
    groups = set(table.loc[table["feature"] == "cascade", "group"])
    assert {"cascade_global", "cascade_in", "cascade_out", "cascade_mask"} <= groups


def test_fusion_classifier_refuses_the_cascades_rows(stores):
    from fusion.sklearn import FusionClassifier, LeakageWarning
    with open_store(stores["own"]) as s:
        X, y, meta = s.read(list(FEATURES), split="train", as_frame=True)
    with pytest.raises(ValueError, match="feature 'cascade'.*allow_overlap=True"):
        FusionClassifier().fit(X, y, meta=meta)
    with pytest.raises(ValueError, match="meta"):
        FusionClassifier().fit(X, y)
    FusionClassifier(features=["color"]).fit(X, y, meta=meta)  # no stacked block fused
    with pytest.warns(LeakageWarning, match="cascade"):
        FusionClassifier(allow_overlap=True).fit(X, y, meta=meta)
    with open_store(stores["held"]) as s:
        X, y, meta = s.read(list(FEATURES), split="train", as_frame=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LeakageWarning)
        clf = FusionClassifier().fit(X, y, meta=meta)
    assert clf.predict_proba(X).shape == (len(y), 2)


def test_predict_scores_a_video_with_a_fused_cascade_model(stores, tmp_path):
    from fusion.predict import main
    assert _train(stores["held"], tmp_path / "r") == 0
    frames = np.random.default_rng(0).integers(0, 256, (6, 48, 48, 3), np.uint8)
    video = tmp_path / "suspect.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (48, 48))
    for f in frames:
        writer.write(f)
    writer.release()
    out = tmp_path / "pred.json"
    assert main(["--model", str(tmp_path / "r"), str(video), "--out", str(out),
                 "--overlay", str(tmp_path / "ov")]) == 0
    result = json.loads(out.read_text())["results"][0]
    assert result["score"] is not None and len(result["faces"]) == 2
    assert (tmp_path / "ov" / "suspect_scores.png").is_file()
