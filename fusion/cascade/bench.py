"""Training throughput of the cascade model: the whole data pipeline against the bare step.

``python -m fusion.cascade.bench --store REAL.h5 [--store FFPP.h5] [--steps 8]`` times, in
one run and on the same model and mini-batch size:

1. **bare**: forward + backward + optimiser step on one fixed, pre-built mini-batch (the
   model's own LBP/DCT streams included, since they are part of its forward pass);
2. **data**: building mini-batches alone (store read, online self-blend, augmentation,
   resize), one after another;
3. **pipeline**: what ``fusion.cascade train`` does -- mini-batches built in the background
   thread (:func:`fusion.cascade.data.prefetch`) while the model trains.

It prints samples/s of each and the pipeline's overhead over the bare step,
``bare / pipeline - 1`` (goal: at most 20 %), and writes them to ``--json`` when given.
"""
from __future__ import annotations

import json
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


def run(stores, steps: int = 8, batch_size: int = 32, size: int = 128,
        backbone: str = "efficientnet-lite0", seed: int = 0, threads: int = 0) -> dict:
    """Samples/s of the bare step, the data pipeline alone, and both together."""
    from fusion.cascade.data import TrainingSet, prefetch, to_model_inputs
    from fusion.cascade.blend import parse_augment
    from fusion.cascade.losses import CascadeLoss
    from fusion.cascade.config import TrainConfig, build_model
    from fusion.cascade.train import open_training_sources
    from stores import open_store

    if threads:
        torch.set_num_threads(threads)
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
        first = next(iter(data.batches(batch_size, epoch=0)))
        x = to_model_inputs(first, size)
        _step(model, criterion, opt, x)  # warm-up (allocations, kernels)
        t0 = time.perf_counter()
        for _ in range(steps):
            _step(model, criterion, opt, x)
        bare_s = time.perf_counter() - t0
        n_bare = steps * len(x["label"])

        t0, n_data = time.perf_counter(), 0
        for b in data.batches(batch_size, epoch=1, max_steps=steps):
            n_data += len(b["label"])
        data_s = time.perf_counter() - t0

        t0, n_pipe = time.perf_counter(), 0
        for b in prefetch(data.batches(batch_size, epoch=2, max_steps=steps)):
            _step(model, criterion, opt, to_model_inputs(b, size))
            n_pipe += len(b["label"])
        pipe_s = time.perf_counter() - t0
    finally:
        for s in opened:
            s.close()
    result = {"bare_samples_per_s": n_bare / bare_s, "data_samples_per_s": n_data / data_s,
              "pipeline_samples_per_s": n_pipe / pipe_s,
              "data_ms_per_sample": 1000 * data_s / n_data,
              "step_ms_per_sample": 1000 * bare_s / n_bare,
              "steps": steps, "batch_size": batch_size, "size": size, "backbone": backbone,
              "torch_threads": torch.get_num_threads()}
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
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args(argv)
    stores = [s.strip() for flag in args.store for s in flag.split(",") if s.strip()]
    r = run(stores, args.steps, args.batch_size, args.size, args.backbone, threads=args.threads)
    print(f"cascade training throughput ({r['backbone']}, {r['size']} px, batch {r['batch_size']}, "
          f"{r['torch_threads']} torch threads)")
    print(f"  bare forward/backward   {r['bare_samples_per_s']:8.1f} samples/s "
          f"({r['step_ms_per_sample']:.1f} ms/sample)")
    print(f"  data pipeline alone     {r['data_samples_per_s']:8.1f} samples/s "
          f"({r['data_ms_per_sample']:.1f} ms/sample: read, blend, augment, resize)")
    print(f"  pipeline + training     {r['pipeline_samples_per_s']:8.1f} samples/s")
    print(f"  overhead of the data pipeline: {100 * r['overhead']:+.1f} % (goal <= 20 %)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(r, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
