"""The ``cascade`` feature: a trained cascade run's embeddings, logit and mask statistics.

Checked against ``fusion.cascade predict`` on the same crops (the same model, another code
path), against hand-computed mask statistics, and for every way a run can be missing or
damaged. Batch == items and determinism are in ``test_contract.py``.
"""
import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from base.errors import UsageError
from extract import create_extractor
from extract.cascade import CASCADE_RUN_ENV
from extract.registry import FaceBatch
from fusion.cascade.data import write_synthetic_store
from stores import open_store
from tests.cascade_fixtures import tiny_cascade_run

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cascade_feature")
    store = write_synthetic_store(folder / "s.h5", n=48, size=32, seed=0, with_landmarks=True,
                                  features=("rgb", "mask"))
    return store, tiny_cascade_run(folder / "run", store)


def _crops(store):
    with open_store(store) as s:
        rgb, meta = s.read_map("rgb")
        return FaceBatch(rgb, s.landmarks()), meta


def test_same_values_as_fusion_cascade_predict(trained, tmp_path):
    from fusion.cascade.inference import predict
    from pipelines.synthesis import face_hull_mask
    store, run = trained
    batch, meta = _crops(store)
    extractor = create_extractor("cascade", run=str(run), device="cpu", batch_size=7)
    out = extractor.extract(batch)
    cols = list(extractor.columns())
    v = out["vector"]
    frame = predict(run, store, tmp_path / "pred", device="cpu", overlays=0)
    assert frame["sample_id"].tolist() == meta["sample_id"].tolist()
    np.testing.assert_allclose(1 / (1 + np.exp(-v[:, cols.index("cascade_logit")].astype(np.float64))),
                               frame["score"], atol=1e-6)
    np.testing.assert_allclose(v[:, cols.index("cascade_mask_mean")], frame["mask_area"], atol=1e-6)
    np.testing.assert_allclose(v[:, cols.index("cascade_mask_flagged")], frame["flagged_area"], atol=1e-6)
    # by hand from the mask map (crops are at the run's 32 px: no resampling)
    prob = out["map"][..., 0]
    hull = np.stack([face_hull_mask(lm, (32, 32)) for lm in batch.landmarks]).astype(bool)
    np.testing.assert_allclose(v[:, cols.index("cascade_mask_max")], prob.max((1, 2)), atol=1e-6)
    np.testing.assert_allclose(v[:, cols.index("cascade_mask_hull_mean")],
                               [p[h].mean() for p, h in zip(prob, hull)], atol=1e-5)
    hidden = (len(cols) - 5) // 3
    assert hidden == 16 and cols[:2] == ["cascade_global_0", "cascade_global_1"] and cols[2 * hidden] == "cascade_out_0"


def test_unknown_landmarks_take_the_whole_crop(trained):
    store, run = trained
    batch, _ = _crops(store)
    extractor = create_extractor("cascade", run=str(run), device="cpu")
    out = extractor.extract(FaceBatch(batch.images[:4]))  # NaN landmarks
    cols = list(extractor.columns())
    np.testing.assert_allclose(out["vector"][:, cols.index("cascade_mask_hull_mean")],
                               out["vector"][:, cols.index("cascade_mask_mean")], atol=1e-6)


def test_records_the_run_identity(trained):
    store, run = trained
    attrs = create_extractor("cascade", run=str(run), device="cpu").attributes()
    assert attrs["weights_sha256"] == hashlib.sha256((run / "best.safetensors").read_bytes()).hexdigest()
    assert attrs["params"] == {"run": str(run.resolve()), "which": "best"}
    trained_on = attrs["trained_on"]
    saved = json.loads((run / "config.json").read_text())
    assert trained_on["stores"] == [str(store)] and trained_on["train_split"] == "train"
    assert trained_on["sample_ids"] == saved["samples"]
    with open_store(store) as s:
        meta = s.meta
    split_of = dict(zip(meta["sample_id"], meta["split"]))
    assert {split_of[i] for i in trained_on["sample_ids"]["train"]} == {"train"}
    assert {split_of[i] for i in trained_on["sample_ids"]["val"]} == {"val"}
    assert trained_on["sample_ids"]["train"]


def test_environment_variable_names_the_run(trained, monkeypatch):
    _, run = trained
    monkeypatch.setenv(CASCADE_RUN_ENV, str(run))
    assert create_extractor("cascade", device="cpu").params["run"] == str(run.resolve())
    monkeypatch.delenv(CASCADE_RUN_ENV)
    with pytest.raises(UsageError, match="--cascade-run"):
        create_extractor("cascade", device="cpu")


def _damage(run, tmp_path, how):
    bad = tmp_path / how
    shutil.copytree(run, bad)
    if how == "no_folder":
        shutil.rmtree(bad)
    elif how == "no_config":
        (bad / "config.json").unlink()
    elif how == "bad_json":
        (bad / "config.json").write_text("{not json")
    elif how == "no_weights":
        (bad / "best.safetensors").unlink()
    elif how == "truncated":
        data = (bad / "best.safetensors").read_bytes()
        (bad / "best.safetensors").write_bytes(data[: len(data) // 2])
    elif how == "other_model":
        saved = json.loads((bad / "config.json").read_text())
        saved["config"]["dim"] = 64
        (bad / "config.json").write_text(json.dumps(saved))
    elif how == "old_format":
        saved = json.loads((bad / "config.json").read_text())
        saved["run_format"] = 1
        (bad / "config.json").write_text(json.dumps(saved))
    return bad


@pytest.mark.parametrize("how, says", [
    ("no_folder", "no such folder"), ("no_config", "no config.json"), ("bad_json", "damaged"),
    ("no_weights", "no best.safetensors"), ("truncated", "damaged"),
    ("other_model", "does not match"), ("old_format", "run format 1"),
])
def test_refuses_a_missing_or_damaged_run_in_one_line(trained, tmp_path, how, says):
    _, run = trained
    bad = _damage(run, tmp_path, how)
    with pytest.raises(UsageError) as info:
        create_extractor("cascade", run=str(bad), device="cpu")
    assert says in str(info.value) and "\n" not in str(info.value) and str(bad) in str(info.value)


def test_run_format_matches_the_training_code():
    from extract.cascade_net.run import RUN_FORMAT
    from fusion.cascade.config import RUN_FORMAT as TRAINED
    assert RUN_FORMAT == TRAINED


def test_extract_cli_stores_the_feature_and_refuses_a_bad_run(trained, tmp_path, capsys):
    from pipelines.extract import main
    _, run = trained
    out = tmp_path / "demo.h5"
    assert main(["--features", "cascade", "--cascade-run", str(tmp_path / "nope"), "--workers", "0",
                 "--limit", "1", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cascade run" in err and "no such folder" in err and err.count("\n") == 1 and not out.exists()
    assert main(["--features", "cascade", "--cascade-run", str(run), "--workers", "0", "--limit", "1",
                 "--size", "32", "--out", str(out), "--no-progress"]) == 0
    with open_store(out) as store:
        attrs = store.attrs("cascade")
        assert store.features == ["cascade"] and "cascade" not in store.maps  # map only on request
        assert json.loads(attrs["trained_on"])["sample_ids"]["train"]
        assert len(attrs["weights_sha256"]) == 64 and store.valid("cascade").all()
