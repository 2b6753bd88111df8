"""The mask threshold chosen on a cascade run's own validation set (``fusion.cascade eval
--mask-threshold val``): the rule, the curves against per-sample scikit-learn scores, and
the eval that uses it (never the test split)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score, jaccard_score

from fusion.cascade.__main__ import main
from fusion.cascade.data import ArrayMaps, synthetic_faces_store
from fusion.cascade.inference import evaluate, threshold_curves
from fusion.cascade.mask_threshold import GRID, choose_threshold, parse_mask_threshold
from tests.cascade_fixtures import tiny_cascade_run

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def face_store(tmp_path_factory):
    return synthetic_faces_store(tmp_path_factory.mktemp("mt") / "faces.h5", n=60, size=48, seed=4)


@pytest.fixture(scope="module")
def run(face_store, tmp_path_factory):
    return tiny_cascade_run(tmp_path_factory.mktemp("mt_run") / "run", face_store, steps=2)


def _curves(real, iou, n_real=5, n_fake=5):
    t = np.array([0.3, 0.5, 0.7, 0.9])
    return {"threshold": t, "real_flagged_area": np.asarray(real, float),
            "fake_iou": np.asarray(iou, float), "fake_f1": np.asarray(iou, float) + 0.1,
            "n_real": n_real, "n_fake": n_fake}


def test_the_rule_best_val_iou_within_the_real_area_budget():
    c = choose_threshold(_curves([0.3, 0.02, 0.01, 0.0], [0.8, 0.5, 0.6, 0.2]), budget=0.02)
    assert c["value"] == 0.7 and c["met_budget"] and c["val_fake_iou"] == 0.6  # 0.3 is over
    # ties: the lowest threshold; a loose budget: the best IoU overall
    assert choose_threshold(_curves([0, 0, 0, 0], [0.5, 0.5, 0.4, 0.1]), 0.02)["value"] == 0.3
    assert choose_threshold(_curves([0.3, 0.02, 0.01, 0.0], [0.8, 0.5, 0.6, 0.2]), 1.0)["value"] == 0.3
    # no threshold meets it: the one that flags the least of the reals (the highest on ties)
    c = choose_threshold(_curves([0.5, 0.3, 0.2, 0.2], [0.8, 0.5, 0.6, 0.2]), budget=0.02)
    assert c["value"] == 0.9 and not c["met_budget"]
    # no reals in val: the budget cannot be checked, the best IoU wins
    assert choose_threshold(_curves([np.nan] * 4, [0.1, 0.5, 0.3, 0.2], n_real=0))["value"] == 0.5
    with pytest.raises(ValueError, match="no fake with a mask"):
        choose_threshold(_curves([0, 0, 0, 0], [np.nan] * 4, n_fake=0))
    with pytest.raises(ValueError, match="--real-area-budget"):
        choose_threshold(_curves([0, 0, 0, 0], [0, 0, 0, 0]), budget=1.5)


def test_parse_mask_threshold():
    assert parse_mask_threshold("val") == "val" and parse_mask_threshold(" VAL ") == "val"
    assert parse_mask_threshold("0.35") == 0.35
    for bad in ("0", "1", "-0.2", "half", None):
        with pytest.raises(ValueError, match="--mask-threshold"):
            parse_mask_threshold(bad)


class _MaskFromRed(torch.nn.Module):
    """A stand-in model whose mask probability is the red channel (0-1): known masks."""

    def forward(self, rgb):
        p = rgb[:, :1].clamp(1e-4, 1 - 1e-4)
        n = len(rgb)
        return {"mask_logits": torch.log(p / (1 - p)), "logits": torch.zeros(n, 2)}


def test_curves_equal_per_sample_scikit_learn_scores():
    rng = np.random.default_rng(0)
    n, size = 10, 16
    rgb = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    mask = (rng.random((n, size, size)) < 0.3).astype(np.uint8)
    label = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
    valid = np.array([True] * 9 + [False])
    mask[label == 0] = 0
    data = ArrayMaps({"rgb": rgb, "mask": mask, "label": label, "mask_valid": valid}, ["real"] * n)
    curves = threshold_curves(_MaskFromRed(), data, size, torch.device("cpu"), batch_size=4,
                              amp=False)
    prob = torch.from_numpy(rgb[..., 0]).float().div(255).clamp(1e-4, 1 - 1e-4)
    prob = torch.sigmoid(torch.log(prob / (1 - prob))).numpy()  # as the model's logits give it
    fakes = np.flatnonzero((label == 1) & valid)
    assert curves["n_real"] == 3 and curves["n_fake"] == len(fakes) == 6
    for k, t in enumerate(GRID):
        binary = prob >= t
        assert curves["real_flagged_area"][k] == pytest.approx(binary[label == 0].mean())
        iou = [jaccard_score(mask[i].ravel(), binary[i].ravel(), zero_division=1.0) for i in fakes]
        f1 = [f1_score(mask[i].ravel(), binary[i].ravel(), zero_division=1.0) for i in fakes]
        assert curves["fake_iou"][k] == pytest.approx(np.mean(iou))
        assert curves["fake_f1"][k] == pytest.approx(np.mean(f1))


def test_eval_chooses_on_the_runs_val_and_scores_test_at_it(run, face_store, tmp_path):
    metrics = evaluate(run, face_store, "test", tmp_path / "e", device="cpu", overlays=0,
                       n_boot=0, mask_threshold="val", real_area_budget=0.5)
    chosen, loc = metrics["mask_threshold"], metrics["localization"]
    assert chosen["chosen_on"] == "val" and chosen["value"] in GRID
    assert loc["threshold"] == chosen["value"]
    # the same val curves, recomputed here from the run's own val split, give the same pick
    from fusion.cascade.checkpoints import load_run
    from fusion.cascade.mask_threshold import run_val_set
    model, config, _ = load_run(run, torch.device("cpu"))
    val = run_val_set(config)
    assert chosen["n_real"] + chosen["n_fake"] <= len(val)
    again = choose_threshold(threshold_curves(model, val, config.size, torch.device("cpu")), 0.5)
    assert again["value"] == chosen["value"]
    # test scored at it: the flagged area of every test sample is at the chosen threshold
    predictions = pd.read_csv(tmp_path / "e" / "predictions.csv")
    fixed = evaluate(run, face_store, "test", tmp_path / "f", device="cpu", overlays=0, n_boot=0,
                     mask_threshold=chosen["value"])
    np.testing.assert_allclose(predictions["flagged_area"],
                               pd.read_csv(tmp_path / "f" / "predictions.csv")["flagged_area"])
    assert fixed["localization"]["all"]["iou"] == pytest.approx(loc["all"]["iou"])
    assert fixed["mask_threshold"] == {"value": chosen["value"], "chosen_on": "given"}
    # the prior keeps its own 0.5 whatever the model's threshold
    assert loc["prior"]["threshold"] == 0.5
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["mask_threshold"]["value"] \
        == chosen["value"]


def test_cli_flags_one_clear_error_and_the_summary_line(run, face_store, tmp_path, capsys):
    assert main(["eval", "--run", str(run), "--store", str(face_store), "--out",
                 str(tmp_path / "a"), "--mask-threshold", "2"]) == 2
    assert "--mask-threshold must be val or a number" in capsys.readouterr().err
    assert main(["eval", "--run", str(run), "--store", str(face_store), "--out",
                 str(tmp_path / "b"), "--mask-threshold", "val", "--real-area-budget", "-1"]) == 2
    assert "--real-area-budget must be in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert main(["eval", "--run", str(run), "--store", str(face_store), "--out", str(tmp_path / "c"),
                 "--mask-threshold", "val", "--n-boot", "0", "--overlays", "0", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "chosen on the run's val" in out and "IoU@" in out
    assert "The mask threshold was chosen on the" in (tmp_path / "c" / "report.html").read_text()


def test_val_needs_the_training_stores(run, face_store, tmp_path):
    import shutil
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    config = json.loads((moved / "config.json").read_text())
    config["config"]["store"] = [str(tmp_path / "gone.h5")]
    (moved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"gone\.h5.*not there"):
        evaluate(moved, face_store, "test", tmp_path / "e", device="cpu", overlays=0, n_boot=0,
                 mask_threshold="val")
