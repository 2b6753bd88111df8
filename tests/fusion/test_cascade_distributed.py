"""fusion.cascade.distributed: torchrun training on 2 CPU processes (gloo), its sharding of
the epoch's batches, and a plain process that never touches torch.distributed."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion.cascade.__main__ import main as cascade_main
from fusion.cascade.data import StoreMaps, TrainingSet, write_synthetic_store
from fusion.cascade.distributed import SINGLE, from_env, launched_by_torchrun

REPO = Path(__file__).resolve().parents[2]
#: A tiny run: every epoch 6 steps per rank (96 crops, 8 per batch, 2 ranks)
TINY = ["--backbone", "tiny", "--dim", "16", "--size", "32", "--batch-size", "8",
        "--device", "cpu", "--threads", "1", "--lr", "3e-3", "--warmup-epochs", "0"]
RUN_TIMEOUT_S = 240


def test_without_torchrun_no_group_is_joined():
    assert from_env("cpu", environ={}) is SINGLE
    assert not launched_by_torchrun({"RANK": "0"})
    one = from_env("cpu", environ={"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    assert not one.active and one.is_main
    assert not torch.distributed.is_initialized()
    assert SINGLE.sum([1.0, 2.0]) == [1.0, 2.0] and SINGLE.broadcast("x") == "x"


@pytest.mark.parametrize("sbi", ["off", "online"])
def test_ranks_share_the_one_process_batches(tmp_path, sbi):
    """Batch i of the one-process epoch is rank i % 2's; the tail that does not fill a round
    is left out, so both ranks take the same number of steps."""
    from fusion.cascade.data import synthetic_faces_store
    from stores import open_store
    path = (write_synthetic_store(tmp_path / "s.h5", n=40, size=32) if sbi == "off"
            else synthetic_faces_store(tmp_path / "f.h5", n=40, size=32))
    store = open_store(path)
    try:
        data = TrainingSet([StoreMaps(store, split="train")], sbi, size=32, seed=3)
        whole = list(data.batches(5, epoch=2))
        parts = [list(data.batches(5, epoch=2, rank=r, world_size=2)) for r in (0, 1)]
        assert len(whole) >= 4 and len(parts[0]) == len(parts[1]) == len(whole) // 2
        for i, batch in enumerate(whole[:len(whole) // 2 * 2]):
            mine = parts[i % 2][i // 2]
            assert all(np.array_equal(batch[k], mine[k]) for k in batch)
        assert [len(b) for b in data.batch_plan(5, 2)] == [
            len(b["label"]) // (2 if sbi == "online" else 1) for b in whole]
    finally:
        store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list, log: Path) -> subprocess.Popen:
    """``torchrun --nproc_per_node 2 -m fusion.cascade train ARGS`` in its own process group
    (so the test can kill all of it), stdout and stderr to ``log``."""
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "fusion.cascade", "train", *args]
    with open(log, "w") as f:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _kill(proc: subprocess.Popen):
    """Terminate ``proc``'s whole process group (torchrun and its ranks)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass


def _finish(proc: subprocess.Popen, log: Path) -> str:
    try:
        proc.wait(timeout=RUN_TIMEOUT_S)
    finally:
        _kill(proc)
    return log.read_text()


def _epochs_done(run: Path) -> int:
    try:
        return json.loads((run / "checkpoints" / "last.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_train_and_resume_after_a_kill(tmp_path):
    store = write_synthetic_store(tmp_path / "syn.h5", n=96, size=32, seed=0)
    run, epochs = tmp_path / "ddp", 6
    args = ["--store", str(store), "--out", str(run), "--epochs", str(epochs), *TINY]
    proc = _torchrun(args, tmp_path / "first.log")
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while _epochs_done(run) < 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        _kill(proc)  # mid-run, as a lost node or Ctrl-C would
    killed_after = _epochs_done(run)
    first_log = (tmp_path / "first.log").read_text()
    assert 1 <= killed_after < epochs, first_log
    assert "2 ranks, 16 samples per step" in first_log

    # a second start without --resume: rank 0 refuses --out, rank 1 stops with its message
    refused = _torchrun(args, tmp_path / "refused.log")
    text = _finish(refused, tmp_path / "refused.log")
    assert refused.returncode != 0
    assert "rank 0 (claiming --out) stopped: --out" in text and "--resume to continue it" in text

    resumed = _torchrun(args + ["--resume"], tmp_path / "resumed.log")
    text = _finish(resumed, tmp_path / "resumed.log")
    assert resumed.returncode == 0, text
    assert f"resuming {run} after epoch {killed_after}" in text
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history] == list(range(1, epochs + 1))
    assert history[-1]["train"]["total"] < history[0]["train"]["total"]
    saved = json.loads((run / "config.json").read_text())
    assert saved["world_size"] == 2 and saved["flags"]["resume"] is True
    assert not list(run.glob(".clmf-run.lock*"))

    # the same files as a one-process run (which records no world size)
    single = tmp_path / "single"
    assert cascade_main(["train", "--store", str(store), "--out", str(single), "--epochs", "1",
                         "--max-steps", "1", *TINY]) == 0
    assert "world_size" not in json.loads((single / "config.json").read_text())
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*"))  # noqa: E731
    assert files(run) == files(single)
