"""``python -m extract.bench_deep``: throughput of the deep extractors (cnn, clip).

For each device (the CPU, and CUDA when available) and batch size it times

- ``extract``: ``Extractor.extract`` on 256 x 256 uint8 crops, i.e. everything a run pays
  per image: host->device copy, resize to the model input, normalisation, the forward
  pass, pooling / Gram / L2-normalisation, device->host copy;
- ``forward``: the bare model forward on pre-made, already resized and normalised
  tensors on the device;

interleaved, keeping the fastest of ``--repeats`` runs of each, and reports images/s for both and the pipeline overhead ``extract / forward - 1``
(goal: at most 20%).

CLIP is measured with RANDOM weights of the real architecture (the module's testing hook):
a throughput-only measurement, since no CLIP checkpoint ships offline. Speed does not
depend on the weights' values.

Examples
--------
::

    python -m extract.bench_deep --n 32
    python -m extract.bench_deep --n 256 --json bench_deep.json
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from base.cli import CLIParser

PROG = "python -m extract.bench_deep"


def _sync(device):
    import torch
    if device == "cuda":
        torch.cuda.synchronize()


def _time_pair(fn_a, fn_b, device, repeats):
    """Best (minimum) wall time of ``fn_a()`` and of ``fn_b()`` over ``repeats`` runs each,
    after one warm-up run. The two are interleaved and the minimum kept so that load from
    other processes on a shared machine biases neither side."""
    best = [float("inf"), float("inf")]
    for rep in range(repeats + 1):
        for k, fn in enumerate((fn_a, fn_b)):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if rep:  # rep 0 is the warm-up
                best[k] = min(best[k], time.perf_counter() - t0)
    return best


def _crops(n, size=256, seed=0):
    """``n`` distinct face-like crops (shifted windows of skimage's astronaut + noise)."""
    from skimage import data
    image = data.astronaut()
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        y, x = rng.integers(0, image.shape[0] - size, 2)
        noisy = image[y:y + size, x:x + size] + rng.normal(0, 3, (size, size, 3))
        out[i] = np.clip(noisy, 0, 255)
    return out


def bench_one(feature, device, batch_size, images, repeats, clip_model="ViT-B-32"):
    """Time ``extract`` and the raw forward of ``feature`` ("cnn" | "clip"); one result row."""
    import torch
    import extract.deep as deep
    from extract.registry import FaceBatch

    n = len(images)
    chunks = [images[i:i + batch_size] for i in range(0, n, batch_size)]
    batches = [FaceBatch(c) for c in chunks]
    if feature == "cnn":
        ext = deep.CnnExtractor(device=device, batch_size=batch_size)
        model = deep.load_lite0(device)
        size, mean, std, mode = deep.LITE0_SIZE, deep.LITE0_MEAN, deep.LITE0_STD, "bilinear"
        forward = model.extract_features
        label = "cnn (EfficientNet-Lite0, real weights)"
    else:
        with deep._testing_random_clip():
            ext = deep.ClipExtractor(model=clip_model, device=device, batch_size=batch_size)
        model = ext._visual()
        size = int(np.atleast_1d(model.image_size)[0])
        mean = getattr(model, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
        std = getattr(model, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)
        mode, forward = "bicubic", model
        label = f"clip ({clip_model}, RANDOM weights: throughput only)"

    def run_extract():
        for b in batches:
            deep._LAST_LITE0.clear()  # no cache hits across repeats: time real work
            ext.extract(b)

    tensors = [deep.images_to_tensor(c, size, mean, std, device, mode) for c in chunks]

    def run_forward():
        with torch.inference_mode(), deep._autocast(device):
            for x in tensors:
                forward(x)

    t_extract, t_forward = _time_pair(run_extract, run_forward, device, repeats)
    return {"feature": feature, "model": label, "device": device, "batch": batch_size, "n": n,
            "threads": torch.get_num_threads() if device == "cpu" else None,
            "extract_img_s": round(n / t_extract, 2), "forward_img_s": round(n / t_forward, 2),
            "overhead_pct": round(100 * (t_extract / t_forward - 1), 1)}


def format_table(rows) -> str:
    head = f"{'feature':<8}{'device':<7}{'batch':>6}{'extract img/s':>15}{'forward img/s':>15}{'overhead':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['feature']:<8}{r['device']:<7}{r['batch']:>6}{r['extract_img_s']:>15.1f}"
                     f"{r['forward_img_s']:>15.1f}{r['overhead_pct']:>9.1f}%")
    lines.append("")
    for model in dict.fromkeys(r["model"] for r in rows):
        lines.append(f"  {model}")
    lines.append("  extract = Extractor.extract on 256x256 uint8 crops (copy, resize, normalise, "
                 "forward, pooling); forward = model on pre-made normalised tensors; "
                 "overhead = extract/forward - 1 (goal <= 20%)")
    return "\n".join(lines)


def build_parser():
    p = CLIParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=64, help="images per measurement (default 64)")
    p.add_argument("--batch-sizes", default="1,32", help="comma-separated batch sizes (default 1,32)")
    p.add_argument("--features", default="cnn,clip", help="cnn, clip or both (default)")
    p.add_argument("--devices", default="auto",
                   help="auto (cpu, plus cuda when available), cpu or cuda")
    p.add_argument("--clip-model", default="ViT-B-32", help="open_clip architecture (default ViT-B-32)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per cell, the fastest reported (default 3)")
    p.add_argument("--json", help="also write the rows to this JSON file")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    try:
        sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    except ValueError:
        sizes = []
    features = [f.strip() for f in args.features.split(",") if f.strip()]
    if not sizes or min(sizes) < 1:
        print(f"{PROG}: error: --batch-sizes must be positive integers, got {args.batch_sizes!r}", file=sys.stderr)
        return 2
    if not features or set(features) - {"cnn", "clip"}:
        print(f"{PROG}: error: --features must be cnn, clip or cnn,clip, got {args.features!r}", file=sys.stderr)
        return 2
    if args.n < 1 or args.repeats < 1:
        print(f"{PROG}: error: --n and --repeats must be >= 1", file=sys.stderr)
        return 2
    if args.devices == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    elif args.devices in ("cpu", "cuda"):
        devices = [args.devices]
    else:
        print(f"{PROG}: error: --devices must be auto, cpu or cuda, got {args.devices!r}", file=sys.stderr)
        return 2
    if "cuda" in devices and not torch.cuda.is_available():
        print(f"{PROG}: error: --devices cuda but torch sees no CUDA GPU", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    images = _crops(args.n)
    rows = []
    for feature in features:
        for device in devices:
            for bs in sizes:
                row = bench_one(feature, device, bs, images, args.repeats, args.clip_model)
                rows.append(row)
                print(f"  {feature} {device} batch {bs}: {row['extract_img_s']} img/s", file=sys.stderr)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "torch": torch.__version__,
                       "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
                      fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
