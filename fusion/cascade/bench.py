"""Training throughput of the cascade model: the whole data pipeline against the bare step.

``python -m fusion.cascade.bench --store REAL.h5 [--store FFPP.h5] [--steps 8] [--workers N]``
times, in one run and on the same model and mini-batch size:

1. **bare**: forward + backward + optimiser step on one fixed, pre-built mini-batch (the
   model's own LBP/DCT streams included, since they are part of its forward pass);
2. **data**: building mini-batches alone (store read, online self-blend, augmentation,
   resize): in this process, then in 1 and 2 worker processes (and in ``--workers`` when
   more), the same batches each time, read epoch after epoch as training reads them; the
   first 2 batches per worker are untimed, so the workers start (once per run, as in
   training) and fill their queue before the clock starts. The 1-worker rate is the
   samples/s one core makes (goal at 384 px: 16 cores feed at least 1,000 samples/s);
   2 workers should make at least 1.8x as many. ``--rounds R`` repeats these timings R
   times, the worker counts interleaved (0, 1, 2, 0, 1, 2, ...), and reports each count's
   median: on a shared or virtual machine the same code measures 10-20 % apart from one
   run to the next, and interleaving spreads such drift over all counts alike;
3. **pipeline**: what ``fusion.cascade train --workers N`` does -- mini-batches built by
   ``--workers`` processes (:class:`fusion.cascade.data.EpochBatches`; 0: a background
   thread) while the model trains.

It prints samples/s of each and the pipeline's overhead over the bare step,
``bare / pipeline - 1`` (goal: at most 20 %), and writes them to ``--json`` when given.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import torch

from base.cli import CLIParser, at_least


def _step(model, criterion, opt, x):
    out = model(x["rgb"])
    loss, _ = criterion(out, x)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _time_bare_steps(model, criterion, opt, data, batch_size, size, steps):
    """``(samples, seconds)`` of ``steps`` training steps on one pre-built mini-batch."""
    from fusion.cascade.data import to_model_inputs
    x = to_model_inputs(next(iter(data.batches(batch_size, epoch=0))), size)
    _step(model, criterion, opt, x)  # warm-up (allocations, kernels)
    t0 = time.perf_counter()
    for _ in range(steps):
        _step(model, criterion, opt, x)
    return steps * len(x["label"]), time.perf_counter() - t0


def _time_batches(loader, steps: int, use, rate: bool = True, warmup: int = 2):
    """Samples/s (or ``(samples, seconds)``) of ``steps`` batches of ``loader``, read as
    training reads them (epoch 0, 1, ... each to its end), after ``warmup`` untimed batches
    of the same stream: the workers start (once per run, as in training) and fill their
    queue, so the timing is the steady rate, without start-up or a restarted iteration."""
    t0, n, done, epoch = (time.perf_counter() if warmup <= 0 else None), 0, -max(warmup, 0), 0
    while done < steps:
        for b in loader(epoch):
            if done >= 0:
                use(b)
                n += len(b["label"])
            done += 1
            if done == 0:
                t0 = time.perf_counter()
            if done == steps:
                break
        epoch += 1
    seconds = time.perf_counter() - t0
    return n / seconds if rate else (n, seconds)


def run(stores, steps: int = 8, batch_size: int = 32, size: int = 128,
        backbone: str = "efficientnet-lite0", seed: int = 0, threads: int = 0,
        workers: int | None = None, data_only: bool = False, rounds: int = 1) -> dict:
    """Samples/s of the bare step, the data pipeline alone (in this process and with 1, 2
    and ``workers`` processes; None: the machine's cores; the median of ``rounds``
    interleaved timings of each), and both together (NaN for the model's rates with
    ``data_only``)."""
    if rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {rounds}")
    from fusion.cascade.data import EpochBatches, TrainingSet, default_workers, to_model_inputs
    from fusion.cascade.blend import parse_augment
    from fusion.cascade.losses import CascadeLoss
    from fusion.cascade.config import TrainConfig, build_model
    from fusion.cascade.splits import open_training_sources
    from stores import open_store

    if threads:
        torch.set_num_threads(threads)
    workers = default_workers() if workers is None else workers
    config = TrainConfig(store=list(stores), out="", sbi="online", size=size,
                         batch_size=batch_size, backbone=backbone, seed=seed).validate()
    opened = [open_store(p) for p in config.stores]
    try:
        train_sources, _ = open_training_sources(config, opened)
        data = TrainingSet(train_sources, "online", False, parse_augment("all"), size, seed)
        torch.manual_seed(seed)
        model = build_model(config).train()
        criterion = CascadeLoss(config.loss)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        n_bare = bare_s = n_pipe = pipe_s = float("nan")
        if not data_only:
            n_bare, bare_s = _time_bare_steps(model, criterion, opt, data, batch_size, size,
                                              steps)
        by_round = {n: [] for n in sorted({0, 1, 2, workers})}
        for _ in range(rounds):
            for n in by_round:
                loader = EpochBatches(data, batch_size, n)
                try:
                    by_round[n].append(_time_batches(loader, steps, lambda b: None,
                                                     warmup=2 * max(n, 1)))
                finally:
                    loader.close()
        by_workers = {n: float(np.median(rates)) for n, rates in by_round.items()}
        if not data_only:
            loader = EpochBatches(data, batch_size, workers)
            try:
                n_pipe, pipe_s = _time_batches(
                    loader, steps, lambda b: _step(model, criterion, opt, to_model_inputs(b, size)),
                    rate=False, warmup=2 * max(workers, 1))
            finally:
                loader.close()
    finally:
        for s in opened:
            s.close()
    result = {"bare_samples_per_s": n_bare / bare_s, "data_samples_per_s": by_workers[0],
              "data_samples_per_s_by_workers": by_workers,
              "data_samples_per_s_by_round": by_round, "rounds": rounds,
              "data_scaling_1_to_2_workers": by_workers[2] / by_workers[1],
              "data_scaling_by_round": [b / a for a, b in zip(by_round[1], by_round[2])],
              "data_samples_per_s_per_core": by_workers[1],
              "pipeline_samples_per_s": n_pipe / pipe_s,
              "data_ms_per_sample": 1000 / by_workers[0],
              "step_ms_per_sample": 1000 * bare_s / n_bare,
              "steps": steps, "batch_size": batch_size, "size": size, "backbone": backbone,
              "torch_threads": torch.get_num_threads(), "workers": workers,
              "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    result["overhead"] = result["bare_samples_per_s"] / result["pipeline_samples_per_s"] - 1
    return result


def main(argv=None) -> int:
    p = CLIParser(prog="python -m fusion.cascade.bench", description=__doc__)
    p.add_argument("--store", required=True, action="append", help="training store(s) with reals")
    p.add_argument("--steps", type=at_least(1), default=8, help="mini-batches per measurement (default 8)")
    p.add_argument("--batch-size", type=at_least(1), default=32, help="samples per batch (default 32)")
    p.add_argument("--size", type=at_least(16), default=128, help="model input size (default 128)")
    p.add_argument("--backbone", default="efficientnet-lite0", help="default efficientnet-lite0")
    p.add_argument("--threads", type=at_least(0), default=0, help="torch CPU threads (0: torch's choice)")
    p.add_argument("--workers", type=at_least(0), default=None,
                   help="batch-building processes of the pipeline measurement, also timed on "
                        "the data alone beside 1 and 2 (0: a background thread; default: the "
                        "machine's cores)")
    p.add_argument("--data-only", action="store_true",
                   help="time the data pipeline alone (no model steps: quick at 384 px on a CPU)")
    p.add_argument("--rounds", type=at_least(1), default=1,
                   help="time the data pipeline this many times per worker count, the counts "
                        "interleaved, and report medians (default 1)")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args(argv)
    stores = [s.strip() for flag in args.store for s in flag.split(",") if s.strip()]
    r = run(stores, args.steps, args.batch_size, args.size, args.backbone, threads=args.threads,
            workers=args.workers, data_only=args.data_only, rounds=args.rounds)
    print(f"cascade training throughput ({r['backbone']}, {r['size']} px, batch {r['batch_size']}, "
          f"{r['torch_threads']} torch threads, {r['workers']} workers)")
    timed_model = r["bare_samples_per_s"] == r["bare_samples_per_s"]  # not NaN (--data-only)
    if timed_model:
        print(f"  bare forward/backward   {r['bare_samples_per_s']:8.1f} samples/s "
              f"({r['step_ms_per_sample']:.1f} ms/sample)")
    print(f"  data pipeline alone     {r['data_samples_per_s']:8.1f} samples/s "
          f"({r['data_ms_per_sample']:.1f} ms/sample: read, blend, augment, resize)")
    for n, rate in r["data_samples_per_s_by_workers"].items():
        if n:
            rounds = ("" if r["rounds"] == 1 else "   rounds: " + ", ".join(
                f"{v:.1f}" for v in r["data_samples_per_s_by_round"][n]))
            print(f"    with {n:2d} worker{'s' if n > 1 else ' '}       {rate:8.1f} samples/s{rounds}")
    per_core = r["data_samples_per_s_per_core"]
    print(f"  1 -> 2 workers: {r['data_scaling_1_to_2_workers']:.2f}x (goal >= 1.8x); "
          f"{per_core:.1f} samples/s per core at {r['size']} px: 16 cores feed about "
          f"{16 * per_core:.0f} samples/s (goal >= 1,000 at 384 px)")
    if r["rounds"] > 1:
        print("  1 -> 2 workers by round: "
              + ", ".join(f"{v:.2f}x" for v in r["data_scaling_by_round"])
              + f" (medians of {r['rounds']} interleaved rounds above)")
    if timed_model:
        print(f"  pipeline + training     {r['pipeline_samples_per_s']:8.1f} samples/s "
              f"({r['workers']} workers)")
        print(f"  overhead of the data pipeline: {100 * r['overhead']:+.1f} % (goal <= 20 %)")
    if r["load_average"]:
        print("  load average (1, 5, 15 min): "
              + ", ".join(f"{v:.2f}" for v in r["load_average"]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(r, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
