"""Every CLI ends its summary with ``next: <command>``, the command that usually follows, with
the run's real paths: each printed line here is run (or parsed) as it stands."""
from __future__ import annotations

import shlex

import numpy as np
import pytest
import torch

from fusion import ablate, audit, evaluate, importance, scoring, train
from tests.fusion.test_audit import metadata_store
from tests.fusion.test_heads import make_store

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("next") / "my store.h5", with_nan=False)  # a space to quote


def next_argv(printed: str, prog: str) -> list[str]:
    """The arguments of the one ``next:`` line of ``printed``, which must run ``prog``."""
    lines = [line for line in printed.splitlines() if line.startswith("next: ")]
    assert len(lines) == 1, printed
    words = shlex.split(lines[0][len("next: "):])
    assert " ".join(words[:3]) == prog, lines[0]
    return words[3:]


def test_train_then_importance_then_ablate_then_train(store_path, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(["--store", str(store_path), "--features", "a,b,c", "--out", str(run),
                       "--bootstrap", "0", "--no-plots"]) == 0
    argv = next_argv(capsys.readouterr().out, "python -m fusion.importance")
    assert argv == ["--store", str(store_path), "--run", str(run)]
    assert importance.main([*argv, "--repeats", "2", "--no-plots"]) == 0
    argv = next_argv(capsys.readouterr().out, "python -m fusion.ablate")
    assert argv[:2] == ["--store", str(store_path)] and argv[-2:] == ["--out", str(tmp_path / "run_ablation")]
    assert sorted(argv[3].split(",")) == ["a", "b", "c"]
    assert ablate.main([*argv, "--stages", "single", "--bootstrap", "0"]) == 0
    argv = next_argv(capsys.readouterr().out, "python -m fusion.train")
    picked = ablate.pd.read_csv(tmp_path / "run_ablation" / "ablation.csv").iloc[0]
    assert argv[argv.index("--features") + 1] == picked["features"]
    assert argv[argv.index("--fusion") + 1] == picked["fusion"]
    assert argv[-2:] == ["--out", str(tmp_path / "run_ablation" / "pick")]
    assert train.main([*argv, "--bootstrap", "0", "--no-plots"]) == 0


def test_ablate_next_keeps_head_seed_params_and_test_stores(store_path, tmp_path, capsys):
    other = make_store(tmp_path / "other.h5", seed=4, with_nan=False)
    assert ablate.main(["--store", str(store_path), "--features", "a,c", "--stages", "single",
                        "--head", "linear-svm", "--seed", "2", "--test-store", str(other),
                        "--bootstrap", "0", "--out", str(tmp_path / "abl")]) == 0
    argv = next_argv(capsys.readouterr().out, "python -m fusion.train")
    for flag, value in (("--head", "linear-svm"), ("--seed", "2"), ("--test-store", str(other))):
        assert argv[argv.index(flag) + 1] == value, flag
    assert ablate.main(["--store", str(store_path), "--features", "a,c", "--stages", "single",
                        "--fusions", "mlp", "--param", "epochs=3", "--bootstrap", "0",
                        "--out", str(tmp_path / "abl2")]) == 0
    argv = next_argv(capsys.readouterr().out, "python -m fusion.train")
    assert argv[argv.index("--param") + 1] == "epochs=3" and "--head" not in argv and "--seed" not in argv


def test_evaluate_next_is_importance_on_the_scored_split(store_path, tmp_path, capsys):
    run = tmp_path / "run"
    train.train_run(store_path, ["a", "b"], out=run, n_boot=0, plots_on=False, verbose=False)
    assert evaluate.main(["--model", str(run), "--store", str(store_path), "--out", str(tmp_path / "ev"),
                          "--bootstrap", "0", "--no-plots"]) == 0
    argv = next_argv(capsys.readouterr().out, "python -m fusion.importance")
    assert argv == ["--store", str(store_path), "--run", str(run), "--split", "test",
                    "--out", str(tmp_path / "ev" / "importance")]
    assert importance.main([*argv, "--repeats", "1", "--no-plots"]) == 0


def test_map_fusion_next_is_predict_on_a_real_source_file(tmp_path, capsys):
    store = make_store(tmp_path / "s.h5", with_nan=False)
    source = tmp_path / "fake.png"
    source.write_bytes(b"\x89PNG")  # only its existence matters to the next line
    meta = scoring.load_split(scoring.open_store_or_usage(store), ["ma"], "test", "map").meta.copy()
    meta["source_path"] = np.where(meta["label"] == 1, str(source), str(tmp_path / "gone.png"))
    assert scoring.predict_line(tmp_path / "run", meta) == \
        f"next: python -m fusion.predict --model {tmp_path / 'run'} {source}"
    meta["source_path"] = str(tmp_path / "gone.png")
    assert scoring.predict_line(tmp_path / "run", meta) is None  # no line rather than a dead path


def test_audit_next_trains_on_the_store_features(tmp_path, capsys):
    store = metadata_store(tmp_path / "conf.h5", confound=0.0)
    assert audit.main(["--store", str(store), "--bootstrap", "0"]) == 0
    argv = next_argv(capsys.readouterr().out, "python -m fusion.train")
    assert argv == ["--store", str(store), "--features", "a,m", "--out", "runs/conf"]


def test_cascade_train_next_evaluates_its_own_store_on_test(tmp_path, capsys):
    from fusion.cascade.__main__ import main as cascade_main
    from fusion.cascade.data import write_synthetic_store
    store = write_synthetic_store(tmp_path / "syn store.h5", n=24, size=32, seed=0)
    run = tmp_path / "run"
    assert cascade_main(["train", "--store", str(store), "--out", str(run), "--backbone", "tiny",
                         "--dim", "32", "--size", "32", "--epochs", "1", "--max-steps", "1",
                         "--batch-size", "8", "--sbi", "off", "--device", "cpu"]) == 0
    argv = next_argv(capsys.readouterr().out, "python -m fusion.cascade")
    assert argv == ["eval", "--run", str(run), "--store", str(store), "--split", "test"]
    assert cascade_main([*argv, "--n-boot", "0", "--overlays", "0", "--device", "cpu"]) == 0
