"""Mini-batches built in worker processes (``--workers N``): the same arrays and the same
trained weights for any N, each worker reading through its own store handle."""
import pickle

import numpy as np
import pytest
import torch

from fusion.cascade.__main__ import main
from fusion.cascade.blend import parse_augment
from fusion.cascade.checkpoints import LAST_WEIGHTS
from fusion.cascade.config import TrainConfig
from fusion.cascade.data import EpochBatches, StoreMaps, TrainingSet, synthetic_faces_store
from fusion.cascade.train import train
from stores import open_store

torch.set_num_threads(1)

TINY = dict(backbone="tiny", dim=32, heads=4, size=32, lr=3e-3)


@pytest.fixture(scope="module")
def face_store(tmp_path_factory):
    return synthetic_faces_store(tmp_path_factory.mktemp("workers") / "faces.h5", n=48, size=64,
                                 seed=0)


def _training_set(store, cache_bytes):
    source = StoreMaps(store, split="train", cache_bytes=cache_bytes)
    return TrainingSet([source], "online", True, parse_augment("all"), size=48, seed=5)


@pytest.mark.parametrize("cache_bytes", [0, 1 << 30], ids=["read-per-batch", "cached"])
def test_batches_are_the_same_arrays_for_0_1_and_2_workers(face_store, cache_bytes):
    with open_store(face_store) as store:
        data = _training_set(store, cache_bytes)
        runs = {}
        for n in (0, 1, 2):
            loader = EpochBatches(data, 6, workers=n, max_steps=5)
            try:
                runs[n] = list(loader(3))
            finally:
                loader.close()
        in_order = list(data.batches(6, epoch=3, max_steps=5))
    assert len(in_order) == 5
    for n, batches in runs.items():
        assert len(batches) == len(in_order), n
        for got, want in zip(batches, in_order):
            assert got.keys() == want.keys()
            for key in want:
                assert isinstance(got[key], np.ndarray)
                np.testing.assert_array_equal(got[key], want[key], err_msg=f"{n} workers: {key}")


def test_workers_kept_across_epochs_build_each_epochs_own_batches(face_store):
    # one EpochBatches for a run: the same worker processes serve every epoch (and an epoch
    # left half-read), and each epoch's batches are that epoch's, as built in-process
    with open_store(face_store) as store:
        data = _training_set(store, 1 << 30)
        loader = EpochBatches(data, 6, workers=2, max_steps=4)
        try:
            next(iter(loader(0)))  # epoch 0 left after one batch
            pids = {w.pid for w in loader._loader._iterator._workers}
            got = {e: list(loader(e)) for e in (1, 2, 1)}
            assert {w.pid for w in loader._loader._iterator._workers} == pids  # not restarted
        finally:
            loader.close()
        for epoch, batches in got.items():
            want = list(data.batches(6, epoch=epoch, max_steps=4))
            assert len(batches) == len(want) == 4
            for b, w in zip(batches, want):
                for key in w:
                    np.testing.assert_array_equal(b[key], w[key], err_msg=f"epoch {epoch}: {key}")
        assert not np.array_equal(got[1][0]["rgb"], got[2][0]["rgb"])  # fresh blends per epoch


def test_workers_run_on_into_the_next_epoch_without_waiting_for_it(face_store, monkeypatch):
    # at an epoch's end the workers already build the next epoch's first batches (no idle
    # workers at every epoch boundary); read in order, epochs come from one iteration, and
    # each epoch's batches are still exactly its own
    from fusion.cascade import data as data_module
    sent = []
    real_iter = data_module._EpochSampler.__iter__
    monkeypatch.setattr(data_module._EpochSampler, "__iter__",
                        lambda self: (sent.append(k) or k for k in real_iter(self)))
    with open_store(face_store) as store:
        data = _training_set(store, 1 << 30)
        loader = EpochBatches(data, 6, workers=2, max_steps=3)
        try:
            first = list(loader(0))
            assert (1, 0) in sent  # handed to a worker before epoch 1 was asked for
            got = [first] + [list(loader(e)) for e in (1, 2)]
        finally:
            loader.close()
    assert sent[:9] == [(e, i) for e in range(3) for i in range(3)]  # one pass, in order
    for epoch, batches in enumerate(got):
        want = list(data.batches(6, epoch=epoch, max_steps=3))
        assert len(batches) == len(want) == 3
        for b, w in zip(batches, want):
            for key in w:
                np.testing.assert_array_equal(b[key], w[key], err_msg=f"epoch {epoch}: {key}")


def test_an_epoch_without_batches_ends_the_keys(face_store):
    from fusion.cascade.data import _EpochSampler
    sampler = _EpochSampler(lambda epoch: 2 if epoch < 3 else 0)
    sampler.start = 1
    assert list(sampler) == [(1, 0), (1, 1), (2, 0), (2, 1)]


def test_plan_keeps_a_real_with_its_blend_and_fills_each_batch(face_store):
    with open_store(face_store) as store:
        data = _training_set(store, 0)
        plan = data.batch_plan(7, epoch=0)
        sizes = [len(b["label"]) for b in data.batches(7, epoch=0)]
        assert len(list(data.batches(7, epoch=0, max_steps=2))) == 2
    assert sorted(np.concatenate(plan).tolist()) == list(range(data.n_items))
    assert all(s >= 7 for s in sizes[:-1]) and sum(sizes) == len(data)


def test_a_spawned_copy_reads_through_its_own_store_handle(face_store):
    with open_store(face_store) as store:
        source = StoreMaps(store, split="train", cache_bytes=0)
        want = source.batch([3, 0, 5])
        copy = pickle.loads(pickle.dumps(source))  # what a spawned worker receives
        assert copy.store is None
        got = copy.batch([3, 0, 5])
        assert copy._store_here() is not store
    for key in ("rgb", "mask", "label", "mask_valid"):
        np.testing.assert_array_equal(got[key], want[key])
    copy._store_here().close()


def _weights(path):
    from safetensors.torch import load_file
    return {k: v for k, v in load_file(str(path)).items() if k.startswith("model.")}


def test_training_with_1_and_2_workers_gives_bit_identical_weights(face_store, tmp_path):
    common = dict(store=str(face_store), sbi="online", epochs=2, batch_size=8, max_steps=3,
                  seed=1, device="cpu", **TINY)
    for n in (1, 2):
        train(TrainConfig(out=str(tmp_path / f"w{n}"), workers=n, **common), progress=False,
              log=lambda *_: None)
    a, b = _weights(tmp_path / "w1" / LAST_WEIGHTS), _weights(tmp_path / "w2" / LAST_WEIGHTS)
    assert a.keys() == b.keys() and a
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_negative_workers_stop_before_work(face_store, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--store", str(face_store), "--out", str(tmp_path / "r"), "--workers", "-1"])
    assert "--workers" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="--workers"):
        TrainConfig(store=str(face_store), out=str(tmp_path / "r"), workers=-1).validate()


def test_benchmark_times_the_data_pipeline_with_1_and_2_workers(face_store, capsys):
    from fusion.cascade import bench
    r = bench.run([str(face_store)], steps=2, batch_size=8, size=32, backbone="tiny",
                  workers=3, data_only=True, rounds=3)
    assert sorted(r["data_samples_per_s_by_workers"]) == [0, 1, 2, 3]
    for n, rates in r["data_samples_per_s_by_round"].items():  # the median of 3 rounds
        assert len(rates) == 3 and r["data_samples_per_s_by_workers"][n] == sorted(rates)[1]
    assert r["data_scaling_1_to_2_workers"] == pytest.approx(
        r["data_samples_per_s_by_workers"][2] / r["data_samples_per_s_by_workers"][1])
    by_round = r["data_samples_per_s_by_round"]
    assert r["data_scaling_by_round"] == pytest.approx([b / a for a, b in zip(by_round[1], by_round[2])])
    with pytest.raises(ValueError, match="--rounds"):
        bench.run([str(face_store)], data_only=True, rounds=0)
    assert np.isnan(r["bare_samples_per_s"])
    assert bench.main(["--store", str(face_store), "--steps", "1", "--batch-size", "8",
                       "--size", "32", "--backbone", "tiny", "--workers", "1",
                       "--data-only", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert "1 -> 2 workers" in out and "per core" in out and "bare" not in out
    assert "by round" in out and "rounds:" in out


def test_default_workers_share_the_cores_among_the_local_ranks(monkeypatch):
    from fusion.cascade.data import default_workers
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers() == 16
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun --nproc_per_node 4
    assert default_workers() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert default_workers() == 1
