"""Time the single-feature + leave-one-out ablation (logistic regression) on a big synthetic store.

::

    python scripts/bench_ablation.py [--n 100000] [--features 15] [--threads 2] [--bootstrap 200]

Builds a synthetic store (``--n`` samples, ``--features`` vector features of 8-64 dims,
70/15/15 train/val/test, weak label signal spread over the features), then runs
``fusion.ablate.run_ablation`` with stages single + loo: ``2 * features + 1`` fits, each
with the val C grid of 4 values. Goal: under 10 minutes on 2 cores. Prints the timings and
writes ``bench_ablation.json`` next to the store.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from base.cli import CLIParser


def parse_args(argv=None):
    p = CLIParser(prog="python scripts/bench_ablation.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="samples (default 100000)")
    p.add_argument("--features", type=int, default=15, help="vector features (default 15)")
    p.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP threads (default 2)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples per row (default 200)")
    p.add_argument("--dir", default=None, help="where to write the store (default: a temp dir)")
    return p.parse_args(argv)


def make_store(path, n, n_features, seed=0):
    import numpy as np
    import pandas as pd
    import stores

    rng = np.random.default_rng(seed)
    frames = 10
    n_videos = n // frames
    video = np.repeat(np.arange(n_videos), frames)[:n]
    methods = np.array(["real", "Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"])
    vmethod = methods[rng.integers(0, len(methods), n_videos)]
    vsplit = rng.choice(["train", "val", "test"], size=n_videos, p=[0.7, 0.15, 0.15])
    method, split = vmethod[video], vsplit[video]
    label = (method != "real").astype(np.int64)
    folder = np.char.add("v", np.char.zfill((video % 1000).astype(str), 3))  # folders repeat across methods
    meta = pd.DataFrame({
        "sample_id": [f"{m}/{f}/{i}:{k}" for i, (m, f, k) in enumerate(zip(method, folder, np.arange(n) % frames))],
        "dataset": "bench", "split": split, "label": label, "method": method,
        "video_id": np.char.add(np.char.add(method.astype(str), "/"), folder), "frame_index": np.arange(n) % frames,
        "source_path": "/bench/video.mp4"})
    dims = np.linspace(8, 64, n_features).astype(int)
    vectors, attrs = {}, {}
    for j, d in enumerate(dims):
        x = rng.normal(size=(n, d)).astype(np.float32)
        strength = 0.05 + 0.25 * rng.random()  # some features help more than others
        x[:, : max(1, d // 4)] += strength * label[:, None]
        vectors[f"f{j:02d}"] = x
        attrs[f"f{j:02d}"] = {"extractor": "synthetic", "version": "1", "params": {"dim": int(d)}}
    stores.write_store(path, meta, vectors=vectors, attrs=attrs)
    return list(vectors), int(dims.sum())


def main(argv=None):
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import json

    import stores
    from fusion import ablate

    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    except ImportError:
        pass
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="clmf-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "bench.h5"
    t0 = time.time()
    names, total_dim = make_store(path, args.n, args.features)
    t_store = time.time() - t0
    print(f"store: {args.n} samples x {len(names)} features ({total_dim} dims) in {t_store:.1f} s -> {path}")
    store = stores.open_store(path)
    t1 = time.time()
    table, _ = ablate.run_ablation(store, names, ["concat"], "logreg", stages=("single", "loo"),
                                   n_boot=args.bootstrap, verbose=False)
    t_ablate = time.time() - t1
    fit_s = float(table["seconds"].sum())
    print(f"single + leave-one-out: {len(table)} configurations in {t_ablate:.1f} s "
          f"({fit_s:.1f} s fitting + scoring + {args.bootstrap} bootstraps; rest is reading); "
          f"goal < 600 s on {args.threads} threads -> {'OK' if t_ablate < 600 else 'TOO SLOW'}")
    print(table[["kind", "n_features", "val_auc", "test_auc", "test_eer", "seconds"]].head(8).to_string(index=False))
    (workdir / "bench_ablation.json").write_text(json.dumps({
        "n": args.n, "features": len(names), "dims": total_dim, "threads": args.threads,
        "bootstrap": args.bootstrap, "store_seconds": t_store, "ablation_seconds": t_ablate,
        "configurations": len(table)}, indent=2))


if __name__ == "__main__":
    main()
