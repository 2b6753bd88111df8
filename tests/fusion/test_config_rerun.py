"""``--config RUN/config.json`` reruns fusion.train, fusion.ablate and fusion.cascade train
bit for bit on the CPU: same scores, metrics and weights (base/cli.py reads the file)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fusion import ablate, train
from fusion.cascade.__main__ import main as cascade_main
from fusion.cascade.data import write_synthetic_store
from tests.fusion.test_heads import make_store

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("rerun") / "synthetic.h5")


def _npz(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _without_timing(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in ("seconds", "provenance")}


def test_train_reruns_from_its_config_json(store_path, tmp_path):
    first, second = tmp_path / "r1", tmp_path / "r2"
    cfg = tmp_path / "flags.yaml"
    cfg.write_text(f"store: {store_path}\nfeatures: [a, b, c]\nfusion: mlp\nparam: [epochs=5]\n"
                   "bootstrap: 20\nno_plots: true\nseed: 3\n")
    assert train.main(["--config", str(cfg), "--out", str(first)]) == 0
    saved = json.loads((first / "config.json").read_text())
    assert saved["command"] == "python -m fusion.train"
    assert saved["flags"] == {"store": str(store_path), "features": "a,b,c", "fusion": "mlp",
                              "head": None, "out": str(first), "test_store": [], "seed": 3,
                              "param": ["epochs=5"], "perturb": None, "bootstrap": 20,
                              "no_plots": True, "allow_overlap": False}
    assert train.main(["--config", str(first / "config.json"), "--out", str(second)]) == 0
    assert (first / "scores.csv").read_bytes() == (second / "scores.csv").read_bytes()
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (first, second))
    assert _without_timing(a) == _without_timing(b)
    assert a["params"] == {"epochs": 5} and a["seed"] == 3
    weights = sorted(p.name for p in (first / "model").iterdir() if p.suffix in (".npz", ".safetensors"))
    assert weights
    for name in weights:
        if name.endswith(".npz"):
            wa, wb = _npz(first / "model" / name), _npz(second / "model" / name)
            assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
        else:
            assert (first / "model" / name).read_bytes() == (second / "model" / name).read_bytes()
    # a flag on the command line overrides the file, and is what the new run saves
    assert train.main(["--config", str(first / "config.json"), "--out", str(tmp_path / "r3"),
                       "--seed", "4"]) == 0
    assert json.loads((tmp_path / "r3" / "config.json").read_text())["flags"]["seed"] == 4


def test_ablate_reruns_from_its_config_json(store_path, tmp_path):
    first, second = tmp_path / "a1", tmp_path / "a2"
    assert ablate.main(["--store", str(store_path), "--features", "a,c", "--stages", "single,loo",
                        "--bootstrap", "20", "--out", str(first)]) == 0
    flags = json.loads((first / "config.json").read_text())["flags"]
    assert flags["stages"] == "single,loo" and flags["bootstrap"] == 20 and flags["features"] == "a,c"
    assert ablate.main(["--config", str(first / "config.json"), "--out", str(second)]) == 0
    ta, tb = (pd.read_csv(d / "ablation.csv").drop(columns=["seconds"]) for d in (first, second))
    pd.testing.assert_frame_equal(ta, tb, check_exact=True)


def test_cascade_train_reruns_from_its_config_json(tmp_path):
    from safetensors.torch import load_file
    store = write_synthetic_store(tmp_path / "syn.h5", n=48, size=32, seed=0)
    first, second = tmp_path / "c1", tmp_path / "c2"
    assert cascade_main(["train", "--store", str(store), "--out", str(first), "--backbone", "tiny",
                         "--dim", "16", "--size", "32", "--epochs", "1", "--batch-size", "16",
                         "--max-steps", "2", "--device", "cpu", "--augment", "flip,noise",
                         "--threads", "1"]) == 0
    saved = json.loads((first / "config.json").read_text())
    assert saved["command"] == "python -m fusion.cascade train" and "config" in saved  # one file
    assert saved["flags"]["store"] == [str(store)] and saved["flags"]["max_steps"] == 2
    assert cascade_main(["train", "--config", str(first / "config.json"), "--out", str(second)]) == 0
    a, b = load_file(str(first / "best.safetensors")), load_file(str(second / "best.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ha, hb = (json.loads((d / "history.json").read_text()) for d in (first, second))
    strip = lambda h: [{k: v for k, v in e.items() if "second" not in k and "per_s" not in k} for e in h]  # noqa: E731
    assert strip(ha) == strip(hb)
