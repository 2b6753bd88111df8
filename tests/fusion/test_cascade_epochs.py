"""``--epoch-reals N``: N training reals per epoch, drawn from (seed, epoch) alone
(fusion/cascade/data.py TrainingSet.epoch_items), and the settings' round trip."""
import json
from collections import Counter

import numpy as np
import pytest

from fusion.cascade.config import TrainConfig
from fusion.cascade.data import StoreMaps, TrainingSet, synthetic_faces_store
from stores import open_store


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("epochs")
    return [synthetic_faces_store(root / "a.h5", n=80, size=32, seed=0),
            synthetic_faces_store(root / "b.h5", n=50, size=32, seed=4)]


@pytest.fixture()
def sources(stores):
    handles = [open_store(p) for p in stores]
    yield [StoreMaps(h, "train") for h in handles]
    for h in handles:
        h.close()


def _old_batch_plan(data: TrainingSet, batch_size: int, epoch: int):
    """The plan as TrainingSet.batch_plan made it before --epoch-reals (written out again)."""
    order = np.random.default_rng([data.seed, epoch]).permutation(len(data.items))
    plan, start, n = [], 0, 0
    for k, i in enumerate(order):
        s, p = data.items[i]
        n += 2 if data.sbi == "online" and data.sources[s].labels[p] == 0 else 1
        if n >= batch_size:
            plan.append(order[start:k + 1])
            start, n = k + 1, 0
    if start < len(order):
        plan.append(order[start:])
    return plan


def _drawn(data: TrainingSet, epoch: int) -> np.ndarray:
    return np.concatenate(data.batch_plan(8, epoch))


def _is_real(data: TrainingSet, items) -> np.ndarray:
    return np.array([data.sources[s].labels[p] == 0 for s, p in data.items[items]])


def test_default_and_n_at_least_all_reals_keep_the_old_batches(sources):
    default = TrainingSet(sources, "online", size=32, seed=2)
    n_reals = default.n_items
    everything = TrainingSet(sources, "online", size=32, seed=2, epoch_reals=n_reals)
    for epoch in (0, 3):
        old = _old_batch_plan(default, 8, epoch)
        for data in (default, everything):
            plan = data.batch_plan(8, epoch)
            assert len(plan) == len(old) and all(np.array_equal(a, b) for a, b in zip(plan, old))
        first, again = default.build(old[0], epoch), everything.build(old[0], epoch)
        assert all(np.array_equal(first[k], again[k]) for k in first)
    assert len(everything) == len(default) == 2 * n_reals


@pytest.mark.parametrize("keep_fakes", [False, True])
def test_n_reals_per_epoch_without_replacement_and_every_fake(sources, keep_fakes):
    data = TrainingSet(sources, "online", keep_fakes=keep_fakes, size=32, seed=0, epoch_reals=10)
    n_fakes = int((~_is_real(data, np.arange(data.n_items))).sum())
    assert (n_fakes > 0) == keep_fakes
    for epoch in range(3):
        items = _drawn(data, epoch)
        real = _is_real(data, items)
        assert real.sum() == 10 and (~real).sum() == n_fakes
        assert len(set(items.tolist())) == len(items)  # without replacement
        samples = sum(len(data.build(b, epoch)["label"]) for b in data.batch_plan(8, epoch))
        assert samples == len(data) == 2 * 10 + n_fakes


def test_epochs_draw_other_reals_uniformly_over_both_stores(sources):
    data = TrainingSet(sources, "online", size=32, seed=0, epoch_reals=10)
    n = data.n_items
    draws = [frozenset(_drawn(data, e).tolist()) for e in range(200)]
    assert len(set(draws)) > 190  # different epochs, different reals
    counts = Counter(i for d in draws for i in d)
    assert sorted(counts) == list(range(n))  # every real is drawn in some epoch
    expected = 200 * 10 / n  # each real's count is binomial(200, 10 / n)
    sd = np.sqrt(200 * (10 / n) * (1 - 10 / n))
    assert all(abs(c - expected) < 5 * sd for c in counts.values()), (expected, counts)
    from_b = np.mean([np.mean(data.items[list(d), 0] == 1) for d in draws])
    assert from_b == pytest.approx(np.mean(data.items[:, 0] == 1), abs=0.03)  # by rows


def test_draw_is_deterministic_by_seed_and_shared_by_the_ranks(sources):
    a, b, c = (TrainingSet(sources, "online", size=32, seed=s, epoch_reals=12) for s in (5, 5, 6))
    plan = a.batch_plan(8, 4)
    assert all(np.array_equal(x, y) for x, y in zip(plan, b.batch_plan(8, 4)))
    assert set(_drawn(a, 4).tolist()) != set(_drawn(c, 4).tolist())
    # two ranks split the one plan: together they build its batches (less the remainder)
    ranks = [a.rank_plan(8, 4, rank=r, world_size=2) for r in (0, 1)]
    whole = plan[:len(plan) - len(plan) % 2]
    assert [x.tolist() for pair in zip(*ranks) for x in pair] == [x.tolist() for x in whole]
    # without shuffling, the same reals in store order
    assert np.array_equal(np.concatenate(a.batch_plan(8, 4, shuffle=False)), np.sort(_drawn(a, 4)))


def test_sbi_off_draws_n_reals_and_keeps_the_fakes(sources):
    data = TrainingSet(sources, "off", size=32, seed=1, epoch_reals=7)
    items = _drawn(data, 0)
    real = _is_real(data, items)
    assert real.sum() == 7 and (~real).sum() == int((~_is_real(data, np.arange(data.n_items))).sum())
    assert len(data) == len(items)


def test_epoch_reals_is_a_setting_that_old_configs_lack(tmp_path):
    with pytest.raises(ValueError, match="--epoch-reals"):
        TrainConfig(store="s.h5", out=str(tmp_path), epoch_reals=0).validate()
    with pytest.raises(ValueError, match="--epoch-reals"):
        TrainingSet([], "online", epoch_reals=0)
    config = TrainConfig(store="s.h5", out=str(tmp_path), sbi="online", epoch_reals=300,
                         augment_p="h264=0.7").validate()
    again = TrainConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert again.epoch_reals == 300 and again.augment_p == "h264=0.7"
    assert again.augment_names() == "all"
    # a config.json saved before these settings: every real, and "all" as it was then
    old = config.to_json()
    for key in ("epoch_reals", "augment_p"):
        del old[key]
    loaded = TrainConfig.from_json(old)
    assert loaded.epoch_reals is None and loaded.augment_p == ""
    assert loaded.augment_names() == "color,downup,blur,noise,jpeg,flip"
    old["augment"] = "jpeg,flip"
    assert TrainConfig.from_json(old).augment_names() == "jpeg,flip"
    old["augment"], old["sbi"] = None, "off"
    assert TrainConfig.from_json(old).augment_names() == ""


@pytest.mark.parametrize("argv, message", [
    (["--epoch-reals", "0"], "--epoch-reals"),
    (["--augment-p", "h264=2"], "--augment-p: 'h264=2': expected NAME=P with P in [0, 1]"),
    (["--augment-p", "rotate=0.5"], "--augment-p: unknown augmentation 'rotate'"),
])
def test_cli_refuses_bad_epoch_and_probability_flags_before_work(tmp_path, capsys, argv, message):
    from fusion.cascade.__main__ import main
    try:  # argparse's range checks exit, the settings' checks return 2
        code = main(["train", "--store", str(tmp_path / "none.h5"), "--out", str(tmp_path / "run"),
                     "--sbi", "online", *argv])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_a_run_trains_on_n_reals_per_epoch_with_the_codec_augmentations(stores, tmp_path):
    import torch

    from fusion.cascade.train import train
    torch.set_num_threads(1)
    lines = []
    config = TrainConfig(store=str(stores[0]), out=str(tmp_path / "run"), epochs=1, batch_size=4,
                         size=32, backbone="tiny", dim=16, heads=4, sbi="online", epoch_reals=6,
                         augment="h264,rescale,flip", augment_p="h264=0.9", workers=0,
                         device="cpu", seed=0)
    result = train(config, progress=False, log=lines.append)
    assert "-> 12 samples per epoch" in " ".join(lines)  # 6 reals and their 6 blends
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert saved["epoch_reals"] == 6 and saved["augment_p"] == "h264=0.9"
    assert np.isfinite(result["history"][0]["train"]["total"])
