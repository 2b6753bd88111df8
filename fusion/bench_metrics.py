"""Benchmark: ``compute_metrics`` with the weighted bootstrap against the reference one.

``python -m fusion.bench_metrics [--sizes 2k,20k,100k] [--n-boot 1000] [--seed 0] [--full-precision] [--json PATH]``

On synthetic FF++-like test sets (a fifth of the videos real, the fakes spread over four
methods, 10-54 frames per video, a per-video score offset plus frame noise, scores kept to 4
decimals as a scores CSV holds them, so that many tie; ``--full-precision`` keeps them
unrounded, all distinct, the slower case for the weighted side), times
:func:`fusion.metrics.compute_metrics` with its default video-cluster bootstrap, once with
``ci_method="reference"`` (each resample materialised and scored by scikit-learn, as
before) and once with ``"weighted"`` (one sort, per-resample cluster weights), in one
process with one thread (OpenMP, MKL and OpenBLAS limited to 1). Prints CPU seconds (and
wall seconds) on each side, their ratio and the largest difference between any two numbers
of the two results, and fails unless that difference is at most 1e-9.

Sizes: ``2k`` (2,000 frames, 100 videos), ``20k`` (20,000 frames, 700 videos: full FF++
test), ``100k`` (100,000 frames, 3,000 videos), or ``FRAMES:VIDEOS``. Goals (issue 23): at
least 10x at 20k, at most 5 s at 100k.
"""
from __future__ import annotations

import math
import os
import sys
import time

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
PRESETS = {"2k": (2_000, 100), "20k": (20_000, 700), "100k": (100_000, 3_000)}
METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
#: The two results may differ by float rounding only.
TOLERANCE = 1e-9


def _single_threaded_or_reexec(argv):
    """Thread limits must be set before numpy loads: set them, or restart once with them."""
    if all(os.environ.get(v) == "1" for v in _THREAD_VARS):
        return
    env = dict(os.environ, **{v: "1" for v in _THREAD_VARS})
    if "numpy" not in sys.modules:
        os.environ.update(env)
        return
    os.execve(sys.executable, [sys.executable, "-m", "fusion.bench_metrics", *argv], env)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"2k,20k"`` or ``"5000:200"`` -> ``[(frames, videos), ...]``; ValueError otherwise."""
    sizes = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if part in PRESETS:
            sizes.append(PRESETS[part])
            continue
        frames, _, videos = part.partition(":")
        if not (frames.isdigit() and videos.isdigit() and int(videos) >= 10 and int(frames) >= int(videos)):
            raise ValueError(f"--sizes takes {', '.join(PRESETS)} or FRAMES:VIDEOS (at least 10 videos, "
                             f"a frame each), comma-separated; got {part!r}")
        sizes.append((int(frames), int(videos)))
    if not sizes:
        raise ValueError(f"--sizes needs at least one of {', '.join(PRESETS)} or FRAMES:VIDEOS")
    return sizes


def synthetic_set(n_frames: int, n_videos: int, seed: int = 0, decimals: int | None = 4):
    """``(labels, scores, methods, video_ids)`` of an FF++-like test set, frames grouped by video.

    Scores are rounded to ``decimals`` (ties within and across classes; None: unrounded).
    Every fifth video is real; a video's frame count is proportional to a draw from 10-54,
    so the counts add up to ``n_frames``.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    video_label = (np.arange(n_videos) % 5 != 0).astype(np.int64)
    video_method = np.where(video_label == 1, np.array(METHODS)[np.arange(n_videos) % len(METHODS)], "real")
    weight = rng.integers(10, 55, n_videos).astype(np.float64)
    frames = np.maximum(1, np.floor(weight / weight.sum() * n_frames)).astype(np.int64)
    frames[: n_frames - frames.sum()] += 1  # the remainder, a frame each to the first videos
    video = np.repeat(np.arange(n_videos), frames)
    logit = (rng.normal(size=n_videos) + 1.2 * video_label)[video] + 0.6 * rng.normal(size=video.size)
    scores = 1.0 / (1.0 + np.exp(-logit))
    if decimals is not None:
        scores = np.round(scores, decimals)
    return video_label[video], scores, video_method[video], np.char.add("v", video.astype(str))


def max_difference(a, b, path: str = "") -> float:
    """Largest absolute difference between the numbers of two results of the same structure
    (NaN against NaN counts 0); raises AssertionError where the structures or any non-number differ."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys differ"
        return max((max_difference(a[k], b[k], f"{path}.{k}") for k in a), default=0.0)
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{path}: lengths differ"
        return max((max_difference(x, y, f"{path}[{k}]") for k, (x, y) in enumerate(zip(a, b))), default=0.0)
    if isinstance(a, float) and not isinstance(a, bool):
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), f"{path}: {a} vs {b}"
            return 0.0
        return abs(a - b)
    assert a == b, f"{path}: {a!r} vs {b!r}"
    return 0.0


def run(sizes, n_boot: int = 1000, seed: int = 0, decimals: int | None = 4) -> list[dict]:
    """Time both bootstraps on each size; one row per size. Raises AssertionError when the
    results differ by more than :data:`TOLERANCE`."""
    import numpy as np

    from fusion.metrics import compute_metrics

    rows = []
    for n_frames, n_videos in sizes:
        labels, scores, methods, videos = synthetic_set(n_frames, n_videos, seed, decimals)
        row = {"frames": n_frames, "videos": n_videos, "distinct_scores": int(np.unique(scores).size),
               "n_boot": n_boot}
        result = {}
        for method in ("reference", "weighted"):
            cpu, wall = time.process_time(), time.perf_counter()
            result[method] = compute_metrics(labels, scores, methods, videos, n_boot=n_boot, seed=seed,
                                             ci_method=method)
            row[f"{method}_cpu_s"] = time.process_time() - cpu
            row[f"{method}_wall_s"] = time.perf_counter() - wall
        row["ratio"] = row["reference_cpu_s"] / row["weighted_cpu_s"]
        row["max_difference"] = max_difference(result["reference"], result["weighted"])
        row["auc_ci"] = result["weighted"]["ci"]["auc"]
        rows.append(row)
        print(format_row(row), flush=True)
        assert row["max_difference"] <= TOLERANCE, \
            f"{n_frames} frames: the two bootstraps differ by {row['max_difference']:.3g} (> {TOLERANCE})"
    return rows


HEADER = ("  frames  videos   reference s    weighted s     ratio   max |diff|   (CPU s, wall s in brackets)")


def format_row(r: dict) -> str:
    return (f"{r['frames']:8d} {r['videos']:7d} {r['reference_cpu_s']:7.2f} [{r['reference_wall_s']:5.1f}]"
            f" {r['weighted_cpu_s']:7.2f} [{r['weighted_wall_s']:5.1f}] {r['ratio']:8.1f}x"
            f"   {r['max_difference']:.1e}")


def main(argv=None, reexec: bool = False) -> int:
    """Run the benchmark; ``reexec`` (the command line) restarts the interpreter once with
    the thread limits set when numpy was already loaded without them."""
    from base.cli import CLIParser

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = CLIParser(prog="python -m fusion.bench_metrics", description=__doc__)
    parser.add_argument("--sizes", default="2k,20k,100k",
                        help=f"comma-separated {', '.join(PRESETS)} or FRAMES:VIDEOS (default 2k,20k,100k)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of the bootstrap (default 0)")
    parser.add_argument("--full-precision", action="store_true",
                        help="keep the synthetic scores unrounded (all distinct) instead of at 4 decimals")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as exc:
        parser.error(str(exc))
    if args.n_boot < 1:
        parser.error(f"--n-boot must be at least 1, got {args.n_boot}")
    if reexec:
        _single_threaded_or_reexec(argv)
    print(f"compute_metrics with {args.n_boot} video-cluster bootstrap resamples, 1 thread, scores "
          f"{'unrounded' if args.full_precision else 'at 4 decimals'}: "
          "reference (per-resample scikit-learn) vs weighted (one sort, cluster weights)")
    print(HEADER, flush=True)
    rows = run(sizes, args.n_boot, args.seed, None if args.full_precision else 4)
    print(f"all numbers of the two results equal to {TOLERANCE:g}; goals: >= 10x at 20k frames / 700 videos, "
          "<= 5 s at 100k / 3000")
    if args.json:
        import json
        with open(args.json, "w") as fh:
            json.dump({"threads": 1, "full_precision": args.full_precision, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(reexec=True))
