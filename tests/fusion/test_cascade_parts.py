"""Local self-blends in cascade training, the per-edit localization table beside the
baselines, and part verdicts (fusion/cascade/parts.py, edit_table.py)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from fusion.cascade.blend import online_blend
from fusion.cascade.checkpoints import PRIOR_MASK, load_run
from fusion.cascade.config import TrainConfig
from fusion.cascade.data import StoreMaps, TrainingSet, synthetic_faces_store, to_model_inputs
from fusion.cascade.edit_table import LOCAL_EDITS, WHOLE_FACE_EDITS, edit_localization
from fusion.cascade.inference import evaluate, hull_masks, run_inference
from fusion.cascade.localization import iou_f1, prior_at_area
from fusion.cascade.parts import PART_COLUMNS, add_part_columns, part_verdict_report
from fusion.cascade.train import train
from pipelines.face_parts import VERDICT_PARTS, part_mask
from pipelines.synthesis import sbi
from stores import open_store, write_store
from tests.cascade_fixtures import store_parts
from tests.face_fixtures import load_aligned_faces

torch.set_num_threads(1)

TINY = dict(backbone="tiny", dim=32, heads=4, size=32, lr=3e-3)
QUIET = dict(progress=False, log=lambda *_: None)


@pytest.fixture(scope="module")
def face_store(tmp_path_factory):
    return synthetic_faces_store(tmp_path_factory.mktemp("parts") / "faces.h5", n=160, size=64,
                                 seed=0)


# ------------------------------------------------------------------ blends in training

def test_part_probability_zero_draws_the_whole_face_blend_as_before():
    faces = load_aligned_faces(1, 128)
    crop, lm = faces.images[0], faces.landmarks[0]
    for seed in range(3):
        rng = np.random.default_rng(seed)
        reference = sbi(crop, lm, rng, difficulty=float(rng.uniform(0.0, 1.0)))
        got = online_blend(crop, lm, np.random.default_rng(seed))
        np.testing.assert_array_equal(got[0], reference[0])
        np.testing.assert_array_equal(got[1], reference[1])


def test_part_blend_share_follows_the_flag(face_store):
    with open_store(face_store) as store:
        data = StoreMaps(store, "train")
        hull_area = {}
        for p in (0.0, 0.5, 1.0):
            ts = TrainingSet([data], "online", size=64, seed=3, part_blend=p)
            areas = [ts.samples(int(s), int(q), epoch)[1][1].mean()
                     for s, q in ts.items[:20] for epoch in range(3)]
            hull_area[p] = np.mean(areas)
        # part blends cover much less of the crop than whole-face ones
        assert hull_area[1.0] < 0.6 * hull_area[0.0]
        assert hull_area[1.0] < hull_area[0.5] < hull_area[0.0]
        with pytest.raises(ValueError, match="--part-blend"):
            TrainingSet([data], "online", part_blend=1.5)


BENCH_EDITS = {"pipelines.edits_face": ("swap_eyes", "swap_nose", "swap_mouth", "swap_face",
                                        "copy_move", "inpaint", "resample", "local_color",
                                        "local_blur", "local_sharpen", "_swap"),
               "pipelines.synthesis": ("xray", "warp_donor", "color_transfer"),
               "pipelines.editing": ("splice", "blend", "local_color", "local_blur")}


def test_training_never_calls_the_benchmarks_donor_swaps_or_local_edits(face_store, tmp_path,
                                                                       monkeypatch):
    import importlib

    import cv2

    def forbidden(*_a, **_k):
        raise AssertionError("training called a benchmark edit")
    for module, names in BENCH_EDITS.items():
        mod = importlib.import_module(module)
        for name in names:
            monkeypatch.setattr(mod, name, forbidden)
    from pipelines import edits_face
    for name in list(edits_face.FACE_EDITS):
        if name != "sbi":  # the whole-face self-blend is the training blend itself
            monkeypatch.setitem(edits_face.FACE_EDITS, name, forbidden)
    monkeypatch.setattr(cv2, "inpaint", forbidden)
    monkeypatch.setattr(cv2, "seamlessClone", forbidden)
    import pipelines.face_parts as face_parts
    calls = []
    real_part_blend = face_parts.part_blend
    monkeypatch.setattr("fusion.cascade.blend.part_blend",
                        lambda *a, **k: calls.append(1) or real_part_blend(*a, **k))
    with open_store(face_store) as store:
        ts = TrainingSet([StoreMaps(store, "train")], "online", size=32, seed=0, part_blend=0.5)
        for epoch in range(3):
            for _ in ts.batches(32, epoch):
                pass
    # and a tiny training run in this process (workers 0), val blends included
    train(TrainConfig(store=str(face_store), out=str(tmp_path / "run"), epochs=1, batch_size=16,
                      max_steps=2, sbi="online", part_blend=0.5, workers=0, **TINY), **QUIET)
    assert len(calls) > 100  # part blends were drawn, and none of them reached an edit


def test_old_config_without_part_blend_reads_as_whole_face_blends(tmp_path):
    config = TrainConfig(store="a.h5", out=str(tmp_path)).to_json()
    assert config["part_blend"] == 0.5
    config.pop("part_blend")
    assert TrainConfig.from_json(config).part_blend == 0.0
    with pytest.raises(ValueError, match="--part-blend"):
        TrainConfig(store="a.h5", out=str(tmp_path), part_blend=-0.1).validate()


def test_cli_refuses_a_part_blend_out_of_range(face_store, tmp_path, capsys):
    from fusion.cascade.__main__ import main
    code = main(["train", "--store", str(face_store), "--out", str(tmp_path / "r"),
                 "--sbi", "online", "--part-blend", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "--part-blend must be in [0, 1]" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


@pytest.mark.slow
def test_tiny_run_with_part_blends_localizes_held_out_part_blends_better_than_the_prior(
        face_store, tmp_path):
    config = TrainConfig(store=str(face_store), out=str(tmp_path / "run"), epochs=6,
                         batch_size=16, sbi="online", augment="flip", seed=0, part_blend=1.0,
                         workers=0, **{**TINY, "size": 64})
    train(config, **QUIET)
    model, cfg, info = load_run(tmp_path / "run")
    prior = info["prior_mask"]
    with open_store(face_store) as store:
        held_out = TrainingSet([StoreMaps(store, "test")], "online", size=64, seed=99,
                               part_blend=1.0).fixed(0)
    out = run_inference(model, held_out, 64, torch.device("cpu"),
                        baselines={"prior": lambda pos: np.broadcast_to(prior, (len(pos),) + prior.shape)})
    model_loc, prior_loc = out["localization"]["all"], out["baselines"]["prior"]["all"]
    assert model_loc["n"] >= 15
    assert model_loc["iou"] - prior_loc["iou"] > 0, (model_loc, prior_loc)
    assert model_loc["pixel_auc"] > prior_loc["pixel_auc"], (model_loc, prior_loc)


# ------------------------------------------------------------- the per-edit localization

METHODS = ("sbi", "swap-face", "swap-mouth", "blur", "FaceSwap")


@pytest.fixture(scope="module")
def edit_store(face_store, tmp_path_factory):
    """The synthetic faces with their fakes renamed to benchmark edits (cycled)."""
    meta, maps, attrs, valid, landmarks = store_parts(face_store)
    fakes = np.flatnonzero(meta["label"].to_numpy() == 1)
    meta.loc[fakes, "method"] = [METHODS[i % len(METHODS)] for i in range(len(fakes))]
    return write_store(tmp_path_factory.mktemp("edits") / "edits.h5", meta, maps=maps,
                       attrs=attrs, valid=valid, landmarks=landmarks)


def test_per_edit_table_equals_a_hand_computation(edit_store, tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(store=str(edit_store), out=str(run), epochs=1, batch_size=16, max_steps=2,
                      sbi="online", workers=0, **TINY), **QUIET)
    metrics = evaluate(run, edit_store, "test", tmp_path / "eval", device="cpu", overlays=0,
                       n_boot=0)
    model, config, info = load_run(run)
    prior = np.load(run / PRIOR_MASK)
    # the prior at its mean area, by hand: as many pixels as round(mean * pixels), all of
    # them at least as high in the prior as every pixel left out
    k = int(round(prior.mean() * prior.size))
    at_area = np.zeros(prior.size)
    at_area[np.argsort(-prior.ravel(), kind="stable")[:k]] = 1
    at_area = at_area.reshape(prior.shape)
    assert at_area.sum() == k > 0
    assert prior[at_area == 1].min() >= prior[at_area == 0].max()
    with open_store(edit_store) as store:
        data = StoreMaps(store, "test")
        x = to_model_inputs(data.batch(np.arange(len(data))), 32)
        with torch.no_grad():
            out = model(x["rgb"])
        prob = torch.sigmoid(out["mask_logits"].float())[:, 0].numpy()
        score = torch.softmax(out["logits"].float(), 1)[:, 1].numpy()
        truth = x["mask"][:, 0].numpy() > 0.5
        hull = hull_masks(data.landmarks, data.crop_size, 32)
        methods = data.meta["method"].to_numpy()
        labels, valid = data.labels, data.mask_valid
    rows = {r["method"]: r for r in metrics["per_edit_localization"]}
    assert set(rows) == set(METHODS)
    for method in METHODS:
        sel = (methods == method) & (labels == 1) & valid
        r = rows[method]
        assert r["n"] == sel.sum() > 0
        assert r["group"] == ("whole-face" if method in WHOLE_FACE_EDITS else
                              "local" if method in LOCAL_EDITS else "other")
        for name, pred in (("", prob[sel]), ("prior_", np.broadcast_to(prior, truth[sel].shape)),
                           ("prior_area_", np.broadcast_to(at_area, truth[sel].shape)),
                           ("hull_", hull[sel])):
            iou, f1 = iou_f1(pred >= 0.5, truth[sel])
            assert r[f"{name}iou"] == pytest.approx(iou.mean(), abs=1e-9)
            assert r[f"{name}f1"] == pytest.approx(f1.mean(), abs=1e-9)
            if truth[sel].all() or not truth[sel].any():
                continue
            # the pixel AUC is documented as that of the probabilities in 1000 equal bins
            binned = np.clip(np.floor(np.asarray(pred, np.float64) * 1000), 0, 999)
            auc = roc_auc_score(truth[sel].ravel(), binned.ravel())
            assert r[f"{name}pixel_auc"] == pytest.approx(auc, abs=1e-9)
        pick = (labels == 0) | (methods == method)
        assert r["frame_auc"] == pytest.approx(roc_auc_score(labels[pick], score[pick]), abs=1e-9)
        best = max(("prior", "prior_area", "hull"), key=lambda b: r[f"{b}_iou"])
        assert r["best_baseline"] == best
        assert r["gain_iou"] == pytest.approx(r["iou"] - r[f"{best}_iou"])
        assert r["gain_f1"] == pytest.approx(r["f1"] - r[f"{best}_f1"])
    head = metrics["localization_headline"]
    assert set(head) == {"whole-face", "local"}  # FaceSwap (other) stays out
    for group, names in (("whole-face", ("sbi", "swap-face")), ("local", ("swap-mouth", "blur"))):
        assert head[group]["methods"] == sorted(names)
        assert head[group]["gain_iou"] == pytest.approx(np.mean([rows[m]["gain_iou"] for m in names]))
        assert head[group]["frame_auc"] == pytest.approx(np.mean([rows[m]["frame_auc"] for m in names]))
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["per_edit_localization"][0]["method"] == "sbi"
    assert "local" in saved["localization_headline"]
    # part verdicts: a column per part in predictions.csv, the AUCs in metrics.json
    frame = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert set(PART_COLUMNS) <= set(frame.columns) and "parts" in frame.columns
    assert set(saved["part_verdicts"]["by_part"]) == set(VERDICT_PARTS)
    from fusion.cascade.__main__ import _summary
    from fusion.report import write_report
    text = _summary(metrics)
    assert "localization per edit" in text and "headline, local edits" in text
    page = write_report(tmp_path / "eval").read_text()
    assert "Localization per edit, beside the baselines" in page and "swap-mouth" in page


# ------------------------------------------------------------------------ part verdicts

class _GreenIsFake(torch.nn.Module):
    """A stand-in model whose mask is 'this pixel is pure green' (and score its share)."""

    def forward(self, rgb):
        green = ((rgb[:, 1] > 0.95) & (rgb[:, 0] < 0.05) & (rgb[:, 2] < 0.05)).float()[:, None]
        logits = (green * 20 - 10)
        share = green.mean((1, 2, 3))
        return {"mask_logits": logits, "logits": torch.stack([-share, share], 1)}


def test_part_verdicts_rank_the_one_changed_part_first(tmp_path):
    faces = load_aligned_faces(2, 128)
    parts = ("eyes", "nose", "mouth", "jaw", "forehead", "cheek_left")
    images, masks, landmarks, names = [], [], [], []
    for k, part in enumerate(parts):
        i = k % len(faces.images)
        crop, lm = faces.images[i].copy(), faces.landmarks[i]
        region = part_mask(part, lm, crop.shape).astype(bool)
        crop[region] = (0, 255, 0)  # one known part changed, painted green
        images.append(crop)
        masks.append(region.astype(np.uint8)[..., None])
        landmarks.append(lm)
        names.append("cheeks" if part.startswith("cheek") else part)
    n = len(images)
    ids = [f"edit/{i}" for i in range(n)]
    meta = pd.DataFrame({"sample_id": [f"{v}:0" for v in ids], "dataset": "synthetic",
                         "split": "test", "label": 1, "method": "paint", "video_id": ids,
                         "frame_index": 0, "source_path": ids})
    attrs = {"rgb": {"shape": [128, 128, 3]}, "mask": {"shape": [128, 128, 1]}}
    path = write_store(tmp_path / "paint.h5", meta, maps={"rgb": np.stack(images),
                                                          "mask": np.stack(masks)},
                       attrs=attrs, valid={"mask": np.ones(n, bool)},
                       landmarks=np.stack(landmarks).astype(np.float32))
    with open_store(path) as store:
        data = StoreMaps(store, "test")
        result = run_inference(_GreenIsFake(), data, 128, torch.device("cpu"), parts=True)
        frame = add_part_columns(data.meta[["sample_id"]].copy(), result["parts"])
    means = result["parts"]["means"]
    for row, name in enumerate(names):
        assert VERDICT_PARTS[int(np.nanargmax(means[row]))] == name, (name, means[row])
        assert frame["parts"][row].startswith(name)
    report = part_verdict_report(result["parts"])["by_part"]
    for name in set(names) - {"forehead"}:  # a painted forehead may be cut by the crop
        assert report[name]["n_changed"] >= 1 and report[name]["auc"] == 1.0


def test_part_verdict_report_equals_sklearn_by_hand():
    rng = np.random.default_rng(0)
    means = rng.random((30, len(VERDICT_PARTS)))
    changed = (rng.random((30, len(VERDICT_PARTS))) < 0.4).astype(float)
    changed[:5] = np.nan   # no valid mask
    means[5, 2] = np.nan   # region off the crop
    changed[:, 7] = 0      # one class only: no AUC
    report = part_verdict_report({"parts": list(VERDICT_PARTS), "means": means,
                                  "changed": changed})["by_part"]
    for i, part in enumerate(VERDICT_PARTS[:7]):
        ok = np.isfinite(changed[:, i]) & np.isfinite(means[:, i])
        assert report[part]["auc"] == pytest.approx(roc_auc_score(changed[ok, i], means[ok, i]))
        assert report[part]["n_changed"] + report[part]["n_unchanged"] == ok.sum()
    assert report["outside"]["auc"] is None


def test_fusion_predict_scores_a_file_with_a_cascade_run_and_gives_part_verdicts(
        face_store, tmp_path, capsys):
    import cv2
    from skimage import data as skdata

    from fusion.cascade.data import to_model_inputs as inputs
    from fusion.predict import main as predict_main
    from fusion.predict import ingest_config, _source
    from pipelines.face_parts import part_means, verdict_regions_batch
    from pipelines.ingest import load_source
    run = tmp_path / "run"
    train(TrainConfig(store=str(face_store), out=str(run), epochs=1, batch_size=16, max_steps=1,
                      sbi="online", workers=0, **TINY), **QUIET)
    image = tmp_path / "astronaut.png"
    cv2.imwrite(str(image), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    code = predict_main(["--model", str(run), str(image), "--out", str(tmp_path / "out.json")])
    printed = capsys.readouterr().out
    assert code == 0 and "parts: " in printed and "fake probability 0.5" in printed
    result = json.loads((tmp_path / "out.json").read_text())["results"][0]
    face = result["faces"][0]
    assert set(face["parts"]) == set(VERDICT_PARTS)
    # by hand: the same crop through the model, its mask averaged over the part regions
    crops = load_source(_source(image), ingest_config({"run": {"ingest": {"size": 64}}}))
    model, config, _ = load_run(run)
    x = inputs({"rgb": np.stack(crops.crops), "mask": np.zeros((1, 64, 64), np.uint8),
                "label": np.zeros(1, np.int64), "mask_valid": np.zeros(1, bool)}, 32)
    with torch.no_grad():
        out = model(x["rgb"])
    prob = torch.sigmoid(out["mask_logits"])[:, 0].numpy()
    expected = part_means(prob, verdict_regions_batch(np.stack(crops.landmarks), 64, 32))[0]
    for part, value in zip(VERDICT_PARTS, expected):
        assert face["parts"][part] == pytest.approx(value, abs=1e-6)
    score = torch.softmax(out["logits"], 1)[0, 1].item()
    assert face["score"] == pytest.approx(score, abs=1e-5)
    assert face["verdict"].split(",")[0].split()[0] == VERDICT_PARTS[int(np.nanargmax(expected))]


def test_prior_at_area_keeps_the_mean_area_where_the_prior_is_highest():
    """A diffuse prior (part blends in varying places) is empty at 0.5; its area baseline is
    not: it has the prior's mean area, on the prior's highest pixels, ties in row order."""
    rng = np.random.default_rng(0)
    prior = rng.uniform(0, 0.3, (32, 32))
    assert not (prior >= 0.5).any()
    mask = prior_at_area(prior)
    k = int(round(prior.mean() * prior.size))
    assert mask.dtype == np.float32 and mask.shape == prior.shape and mask.sum() == k
    threshold = np.sort(prior.ravel())[::-1][k - 1]
    np.testing.assert_array_equal(mask, (prior >= threshold).astype(np.float32))
    ties = np.full((2, 3), 0.25)  # mean area 1.5 -> 2 pixels, the first two in row order
    assert prior_at_area(ties).tolist() == [[1, 1, 0], [0, 0, 0]]
    assert prior_at_area(np.zeros((4, 4))).sum() == 0


def test_an_evaluation_saved_before_prior_area_keeps_the_better_of_prior_and_hull():
    from fusion.cascade.edit_table import edit_table_lines
    loc = {"by_method": {"blur": {"n": 2, "pixel_auc": 0.9, "iou": 0.3, "f1": 0.4}},
           "prior": {"by_method": {"blur": {"n": 2, "pixel_auc": 0.6, "iou": 0.1, "f1": 0.2}}},
           "hull": {"by_method": {"blur": {"n": 2, "pixel_auc": 0.5, "iou": 0.2, "f1": 0.3}}}}
    metrics = {"localization": loc, "classification": {"by_method": {"blur": {"auc": 0.7}}}}
    row = edit_localization(metrics)["per_edit_localization"][0]
    assert row["prior_area_iou"] is None and row["best_baseline"] == "hull"
    assert row["gain_iou"] == pytest.approx(0.1)
    loc["prior_area"] = {"by_method": {"blur": {"n": 2, "pixel_auc": 0.7, "iou": 0.35, "f1": 0.5}}}
    out = edit_localization(metrics)
    row = out["per_edit_localization"][0]
    assert row["best_baseline"] == "prior_area" and row["gain_iou"] == pytest.approx(-0.05)
    assert out["localization_headline"]["local"]["best_baseline_iou"] == pytest.approx(0.35)
    assert any("0.350" in line for line in edit_table_lines({**metrics, **out}))
