"""fusion.cascade.selection: ``train --select-store`` chooses the checkpoint on real fakes and
never trains on them (the weights of every epoch are those of a run without it, whatever its
labels), its score is the stated mean, and it survives --resume, old config.json and DDP."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import fusion.cascade.train as train_module
from fusion.cascade.config import TrainConfig
from fusion.cascade.data import StoreMaps, synthetic_faces_store
from fusion.cascade.inference import run_inference
from fusion.cascade.selection import recipe_line, select_rows, selection_score
from fusion.cascade.train import train
from stores import open_store
from tests.fusion.test_per_method import video_store

torch.set_num_threads(1)
SAVE_CHECKPOINT = train_module.save_checkpoint

TINY = dict(backbone="tiny", random_init=True, dim=16, heads=4, size=32, lr=3e-3,
            batch_size=8, max_steps=2, epochs=3, sbi="online", workers=0, device="cpu")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    folder = tmp_path_factory.mktemp("select")
    return {"faces": synthetic_faces_store(folder / "faces.h5", n=48, size=32, seed=0),
            "select": video_store(folder / "wild.h5", seed=3),
            "shuffled": video_store(folder / "wild_shuffled.h5", seed=3, shuffle_labels=True)}


def _train_capturing(config, monkeypatch, **kwargs):
    """Train; return (result, every epoch's full state dict: weights and BatchNorm stats)."""
    states, save = [], SAVE_CHECKPOINT

    def capture(out, model, *args, **kw):
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return save(out, model, *args, **kw)
    monkeypatch.setattr(train_module, "save_checkpoint", capture)
    lines = []
    result = train(config, progress=False, log=lines.append, **kwargs)
    return result, states, lines


def test_select_store_changes_no_weight_only_the_choice(stores, tmp_path, monkeypatch):
    runs = {}
    for name, select in (("none", ""), ("select", stores["select"]),
                         ("shuffled", stores["shuffled"])):
        config = TrainConfig(store=str(stores["faces"]), out=str(tmp_path / name),
                             select_store=str(select), **TINY)
        runs[name] = _train_capturing(config, monkeypatch)
    plain, _, plain_lines = runs["none"]
    for name in ("select", "shuffled"):
        assert len(runs[name][1]) == len(runs["none"][1]) == 3
        for epoch, (a, b) in enumerate(zip(runs["none"][1], runs[name][1]), 1):
            for key in a:  # bit-identical, BatchNorm running statistics included
                assert torch.equal(a[key], b[key]), f"{name}: epoch {epoch} {key}"
    selected, shuffled = runs["select"][0], runs["shuffled"][0]
    # the labels reached the choice: the select AUCs differ with shuffled labels
    auc = lambda r: [row["select"]["frame_auc"] for row in r["history"]]  # noqa: E731
    assert auc(selected) != auc(shuffled)
    assert "select" not in plain["history"][0] and "select" not in plain["best"]
    for result in (selected, shuffled):
        for row, old in zip(result["history"], plain["history"]):
            # the val part is today's score, the whole the stated mean of the two parts
            assert row["selection"]["val_score"] == old["selection_score"]
            assert row["selection_score"] == pytest.approx(
                (row["selection"]["val_score"] + row["select"]["frame_auc"]) / 2, abs=1e-12)
            assert row["selection"]["select_frame_auc"] == row["select"]["frame_auc"]
            assert old["selection_score"] == pytest.approx(
                np.mean([v for v in (old["val"]["auc"], old["val"]["iou"])
                         if v is not None and np.isfinite(v)]))
        scores = [row["selection_score"] for row in result["history"]]
        assert result["best"]["epoch"] == int(np.argmax(scores)) + 1
        assert result["best"]["select"] == result["history"][result["best"]["epoch"] - 1]["select"]
    # the history's AUCs are sklearn's on the chosen weights' logits, frame and video level
    model = train_module.build_model(TrainConfig(store="x", out="y", **TINY), for_loading=True)
    model.load_state_dict(runs["select"][1][-1])
    with open_store(stores["select"]) as s:
        data = StoreMaps(s, "val")
        logits = run_inference(model, data, 32, torch.device("cpu"))["logits"]
        meta = data.meta.assign(logit=logits)
    last = selected["history"][-1]["select"]
    assert last["frame_auc"] == pytest.approx(roc_auc_score(meta["label"], meta["logit"]))
    videos = meta.groupby(["method", "video_id"]).agg(label=("label", "max"), logit=("logit", "mean"))
    assert last["video_auc"] == pytest.approx(roc_auc_score(videos["label"], videos["logit"]))
    store_record = last["stores"][str(stores["select"])]
    assert store_record["n_frames"] == 30 and store_record["n_videos"] == 10
    assert set(store_record["by_method"]) == {"lonely", "splice_color", "splice_texture"}
    # files: history.json, best.json and config.json record it; the recipe line is logged
    run = tmp_path / "select"
    history = json.loads((run / "history.json").read_text())
    assert history[0]["select"]["frame_auc"] == pytest.approx(selected["history"][0]["select"]["frame_auc"])
    assert json.loads((run / "best.json").read_text())["selection"]["val_score"] is not None
    saved = json.loads((run / "config.json").read_text())
    assert saved["config"]["select_store"] == str(stores["select"])
    assert saved["select"][0]["split"] == "val" and saved["select"][0]["fake_videos"] == 6
    b = selected["best"]
    assert runs["select"][2][-1] == recipe_line(b)
    assert recipe_line(b).startswith(f"best epoch {b['epoch']}: val ")
    assert f"select {b['select']['frame_auc']:.3f} (frame AUC" in recipe_line(b)
    assert plain_lines[-1] == recipe_line(plain["best"]) and "select" not in plain_lines[-1]
    plain_saved = json.loads((tmp_path / "none" / "config.json").read_text())
    assert "select" not in plain_saved and plain_saved["config"]["select_store"] == ""


def test_selection_score_rule():
    assert selection_score(0.8, 0.6) == pytest.approx(0.7)
    assert selection_score(None, 0.6) == 0.6 and selection_score(float("nan"), 0.55) == 0.55


def test_resume_keeps_the_select_history(stores, tmp_path):
    common = dict(TINY, store=str(stores["faces"]), select_store=str(stores["select"]))
    full = train(TrainConfig(out=str(tmp_path / "full"), **dict(common, epochs=2)),
                 progress=False, log=lambda *_: None)
    train(TrainConfig(out=str(tmp_path / "part"), **dict(common, epochs=1)), progress=False,
          log=lambda *_: None)
    # resumed without the flag: the run's own select store goes on choosing
    resumed = train(TrainConfig(out=str(tmp_path / "part"), **dict(common, epochs=2, select_store="")),
                    resume=True, progress=False, log=lambda *_: None)
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    for a, b in zip(full["history"], resumed["history"]):
        assert b["select"]["frame_auc"] == pytest.approx(a["select"]["frame_auc"], abs=1e-6)
        assert b["selection_score"] == pytest.approx(a["selection_score"], abs=1e-6)
    assert resumed["best"]["epoch"] == full["best"]["epoch"]


def test_old_config_json_loads_without_selection():
    config = TrainConfig(store="a.h5", out="r").validate()
    saved = config.to_json()
    del saved["select_store"], saved["select_split"]
    old = TrainConfig.from_json(saved)
    assert old.select_stores == [] and old.select_split == "auto"


def test_bad_select_stores_are_refused_with_the_flag_named(stores, tmp_path):
    reals_only = video_store(tmp_path / "reals.h5", fake_videos=())
    with pytest.raises(ValueError, match=r"--select-store .*reals.h5: split 'val' holds 12 reals "
                                         r"and 0 fakes"):
        train(TrainConfig(store=str(stores["faces"]), out=str(tmp_path / "r1"),
                          select_store=str(reals_only), **TINY), progress=False, log=lambda *_: None)
    # a training store as its own select store: its train rows may not choose
    with pytest.raises(ValueError, match="training samples of --store"):
        train(TrainConfig(store=str(stores["faces"]), out=str(tmp_path / "r2"),
                          select_store=str(stores["faces"]), select_split="all", **TINY),
              progress=False, log=lambda *_: None)
    with pytest.raises(ValueError, match="--select-split must be one of"):
        TrainConfig(store="a.h5", out="r", select_split="holdout").validate()
    test_only = video_store(tmp_path / "test_only.h5", split="test")
    with open_store(test_only) as s:
        with pytest.raises(ValueError, match="no val split but test samples"):
            select_rows(s, "auto")
        assert len(select_rows(s, "all")[0]) == 30
    with open_store(stores["faces"]) as s:  # auto: the val split when there is one
        rows, used = select_rows(s, "auto")
        assert used == "val" and set(s.meta["split"].iloc[rows]) == {"val"}


def test_cli_select_flags(stores, tmp_path, capsys):
    from fusion.cascade.__main__ import main
    code = main(["train", "--store", str(stores["faces"]), "--out", str(tmp_path / "r"),
                 "--select-store", str(tmp_path / "missing.h5")])
    err = capsys.readouterr().err
    assert code == 2 and "--select-store" in err and err.count("\n") == 1
    assert main(["train", "--store", str(stores["faces"]), "--out", str(tmp_path / "ok"),
                 "--select-store", str(stores["select"]), "--sbi", "online", "--backbone", "tiny",
                 "--random-init", "--dim", "16", "--size", "32", "--epochs", "1",
                 "--batch-size", "8", "--max-steps", "1", "--device", "cpu", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "best epoch 1: val " in out and "(frame AUC " in out
    saved = json.loads((tmp_path / "ok" / "config.json").read_text())
    assert saved["flags"]["select_store"] == [str(stores["select"])]  # --config reruns it
    assert saved["config"]["select_store"] == str(stores["select"])
    assert (tmp_path / "ok" / "training.png").is_file()


@pytest.mark.slow
def test_torchrun_two_ranks_choose_on_the_select_store(stores, tmp_path):
    """Under DDP rank 0 alone scores the select store; the run finishes with its record."""
    from tests.fusion.test_cascade_distributed import TINY as DDP_TINY
    from tests.fusion.test_cascade_distributed import _finish, _torchrun
    run = tmp_path / "ddp"
    proc = _torchrun(["--store", str(stores["faces"]), "--out", str(run), "--epochs", "2",
                      "--sbi", "online", "--random-init", "--select-store", str(stores["select"]),
                      *DDP_TINY], tmp_path / "ddp.log")
    text = _finish(proc, tmp_path / "ddp.log")
    assert proc.returncode == 0, text
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(r["selection_score"] == pytest.approx(
        (r["selection"]["val_score"] + r["select"]["frame_auc"]) / 2) for r in history)
    assert text.count("(frame AUC ") == 1  # the recipe line, from rank 0 only
