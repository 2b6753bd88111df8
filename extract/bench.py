"""Benchmark: the batched handcrafted extractors against naive per-image references.

``python -m extract.bench [--n 32] [--size 256] [--images DIR] [--json PATH]``

Both sides run single-threaded (OpenCV, OpenMP, MKL and OpenBLAS limited to one thread)
on the same aligned face crops, in one process. The naive side is what one would write
with scikit-image / scipy / OpenCV one image at a time (``hog``, ``local_binary_pattern``,
``graycomatrix`` + ``graycoprops``, ``skimage.color`` + ``scipy.stats`` moments,
``denoise_wavelet``, per-image ``dctn`` / ``fft2``, ``scipy.stats`` for NPR, and the same
OpenCV detectors), computing the same outputs with the same parameters where the library
allows it. Prints CPU ms per image (best of --repeat runs) on each side and their ratio
per feature and in total.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


FEATURES = ("lbp", "hog", "glcm", "dct", "fft", "npr", "color", "prnu", "keypoints")


def _single_threaded_or_reexec(argv):
    """Thread limits must be set before numpy loads; ``python -m extract.bench`` imports
    the ``extract`` package (and numpy) first, so re-run once with them set."""
    if all(os.environ.get(v) == "1" for v in _THREAD_VARS):
        return
    env = dict(os.environ, **{v: "1" for v in _THREAD_VARS})
    os.execve(sys.executable, [sys.executable, "-m", "extract.bench", *argv], env)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m extract.bench",
        description="Time the batched handcrafted extractors against naive per-image code.")
    parser.add_argument("--n", type=int, default=32, help="number of face crops (default 32)")
    parser.add_argument("--size", type=int, default=256, help="crop side in pixels (default 256)")
    parser.add_argument("--images", default=None,
                        help="folder of already aligned face crops to use (centre-cropped "
                             "square and resized); default: tests/face_fixtures' real faces, "
                             "else crops of skimage's astronaut")
    parser.add_argument("--features", default=None,
                        help="comma-separated subset of: " + ",".join(FEATURES))
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs per side and feature; the best counts (default 3)")
    parser.add_argument("--json", default=None, help="also write the table to this JSON file")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.exit(2, "--n must be >= 1\n")
    if args.repeat < 1:
        parser.exit(2, "--repeat must be >= 1\n")
    if args.size < 64:
        parser.exit(2, "--size must be >= 64 (the HOG blocks and PRNU levels need it)\n")
    if args.images and not os.path.isdir(args.images):
        parser.exit(2, f"--images: {args.images} is not a folder\n")
    if args.features:
        bad = [f for f in args.features.split(",") if f not in FEATURES]
        if bad:
            parser.exit(2, f"--features: unknown {','.join(bad)}; accepted {','.join(FEATURES)}\n")
    return args


# ------------------------------------------------------------------------------------- inputs

def _square_resize(image, size):
    import cv2
    h, w = image.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    return cv2.resize(image[y0:y0 + side, x0:x0 + side], (size, size),
                      interpolation=cv2.INTER_AREA)


def load_batch(n: int, size: int, folder: str | None):
    """(FaceBatch, description) of ``n`` crops of ``size`` px."""
    import numpy as np

    from extract.registry import FaceBatch
    if folder:
        from pipelines.frames import read_image
        paths = sorted(p for p in os.listdir(folder)
                       if p.lower().endswith((".jpg", ".jpeg", ".png", ".bmp", ".webp")))
        if not paths:
            raise SystemExit(f"--images: no images in {folder}")
        crops = [_square_resize(read_image(os.path.join(folder, p)), size)
                 for p in paths[:n]]
        crops = [crops[i % len(crops)] for i in range(n)]
        return FaceBatch(np.stack(crops)), f"{len(paths[:n])} images from {folder}"
    try:
        from tests.face_fixtures import load_aligned_faces
        batch = load_aligned_faces(n, size)
        return batch, "real aligned faces (tests/face_fixtures)"
    except Exception as exc:  # no dlib models or no tests package: fall back
        from skimage import data
        image = data.astronaut()
        crops = []
        for i in range(n):
            side = 260 + (i * 37) % 240
            x0, y0 = (i * 23) % (512 - side + 1), (i * 11) % (512 - side + 1)
            crop = _square_resize(image[y0:y0 + side, x0:x0 + side], size)
            crops.append(crop[:, ::-1] if i % 2 else crop)
        return FaceBatch(np.ascontiguousarray(np.stack(crops))), \
            f"astronaut crops (face fixtures unavailable: {exc.__class__.__name__})"


# ------------------------------------------------------------------------- naive references

def _naive_functions():
    """feature -> function(rgb uint8 H x W x 3, landmarks 68 x 2) for one image."""
    import cv2
    import numpy as np
    import scipy.fft
    import scipy.stats
    from skimage import color as skcolor
    from skimage.feature import graycomatrix, graycoprops, hog, local_binary_pattern
    from skimage.restoration import denoise_wavelet

    def gray_of(rgb):
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)

    def lbp(rgb, _):
        gray = gray_of(rgb)
        out = []
        for p, r in ((8, 1), (16, 2), (24, 3)):
            codes = local_binary_pattern(gray, p, r, method="uniform").astype(int)
            out.append(np.bincount(codes.ravel(), minlength=p + 2) / codes.size)
            if p == 8:
                h, w = codes.shape
                for gy in range(4):
                    for gx in range(4):
                        cell = codes[gy * h // 4:(gy + 1) * h // 4, gx * w // 4:(gx + 1) * w // 4]
                        out.append(np.bincount(cell.ravel(), minlength=10) / cell.size)
        return np.concatenate(out)

    def hog_(rgb, _):
        return hog(gray_of(rgb).astype(float), orientations=9, pixels_per_cell=(16, 16),
                   cells_per_block=(2, 2), block_norm="L2-Hys")

    def glcm(rgb, _):
        q = ((gray_of(rgb).astype(np.int32) * 32) >> 8).astype(np.uint8)
        P = graycomatrix(q, (1, 2, 4), (0, np.pi / 4, np.pi / 2, 3 * np.pi / 4), levels=32,
                         symmetric=True, normed=True)
        props = [graycoprops(P, p) for p in ("contrast", "dissimilarity", "homogeneity",
                                             "energy", "correlation", "ASM", "entropy")]
        return np.concatenate([p.ravel() for p in props])

    def dct(rgb, _):
        gray = gray_of(rgb).astype(np.float64)
        full = np.log1p(np.abs(scipy.fft.dctn(gray, norm="ortho")))
        h, w = gray.shape
        tiles = gray[:h // 8 * 8, :w // 8 * 8].reshape(h // 8, 8, w // 8, 8)
        ac = scipy.fft.dctn(tiles, axes=(1, 3), norm="ortho").transpose(0, 2, 1, 3)
        ac = ac.reshape(-1, 64)[:, 1:]
        hists = [np.histogram(np.clip(ac[:, f], -32, 31.999), bins=8, range=(-32, 32))[0]
                 for f in range(63)]
        return full, np.abs(ac).mean(0), ac.std(0), hists

    def fft(rgb, _):
        gray = gray_of(rgb).astype(np.float64)
        amp = np.abs(np.fft.fftshift(np.fft.fft2(gray)))
        h, w = gray.shape
        y, x = np.indices((h, w))
        r = np.hypot(y - h // 2, x - w // 2).astype(int)
        rings = np.bincount(r.ravel(), np.log1p(amp).ravel()) / np.bincount(r.ravel())
        energy = amp ** 2
        ratios = [energy[r > f * min(h, w) / 2].sum() / energy[r > 0].sum()
                  for f in (0.25, 0.5, 0.75)]
        return rings[:min(h, w) // 2], ratios

    def npr(rgb, _):
        x = rgb.astype(np.float32) / 255
        res = x - np.repeat(np.repeat(x[::2, ::2], 2, 0), 2, 1)[:x.shape[0], :x.shape[1]]
        keep = np.ones(res.shape[:2], bool)
        keep[::2, ::2] = False
        out = []
        for c in range(3):
            v = res[..., c][keep]
            out += [np.abs(v).mean(), v.std(), scipy.stats.skew(v), scipy.stats.kurtosis(v)]
        return out

    def color(rgb, _):
        out = []
        for space in (rgb / 255.0, skcolor.rgb2hsv(rgb), skcolor.rgb2ycbcr(rgb),
                      skcolor.rgb2lab(rgb)):
            for c in range(3):
                v = space[..., c].ravel()
                out += [v.mean(), v.std(), scipy.stats.skew(v), scipy.stats.kurtosis(v)]
        x = rgb / 255.0
        for c in range(3):
            for d in (np.diff(x[..., c], axis=1), np.diff(x[..., c], axis=0)):
                out += [np.abs(d).mean(), d.std()]
        return out

    def prnu(rgb, _):
        gray = gray_of(rgb).astype(np.float64) / 255
        residual = gray - denoise_wavelet(gray, wavelet="db4", wavelet_levels=4, mode="soft")
        return residual.std(), scipy.stats.kurtosis(residual.ravel())

    detectors = {}

    def keypoints(rgb, _):
        if not detectors:
            detectors.update(sift=cv2.SIFT_create(), orb=cv2.ORB_create(),
                             akaze=cv2.AKAZE_create())
        gray = gray_of(rgb)
        return [d.detectAndCompute(gray, None) for d in detectors.values()]

    return {"lbp": lbp, "hog": hog_, "glcm": glcm, "dct": dct, "fft": fft, "npr": npr,
            "color": color, "prnu": prnu, "keypoints": keypoints}


def _ours():
    from extract.color import ColorExtractor
    from extract.frequency import DCTExtractor, FFTExtractor, NPRExtractor
    from extract.keypoints import KeypointExtractor
    from extract.noise import PRNUExtractor
    from extract.texture import GLCMExtractor, HOGExtractor, LBPExtractor
    return {"lbp": LBPExtractor(), "hog": HOGExtractor(), "glcm": GLCMExtractor(),
            "dct": DCTExtractor(), "fft": FFTExtractor(), "npr": NPRExtractor(),
            "color": ColorExtractor(), "prnu": PRNUExtractor(), "keypoints": KeypointExtractor()}


# ---------------------------------------------------------------------------------- running

def _cpu_seconds(function, repeat: int) -> float:
    """Best of ``repeat`` runs, in process CPU seconds: with one thread that is the wall
    time of an idle machine, and it ignores time lost to other processes on a shared one."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        function()
        best = min(best, time.process_time() - start)
    return best


def run(batch, features, repeat: int = 3) -> list[dict]:
    """Time each feature on both sides; rows of feature, naive_ms, ours_ms, ratio."""
    import warnings

    naive, ours = _naive_functions(), _ours()
    n = len(batch)
    rows = []
    for name in features:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # warm up both sides (imports, OpenCV and FFT plans) on one image
            naive[name](batch.images[0], batch.landmarks[0])
            ours[name].extract(batch.subset(slice(0, 1)))
            naive_s = _cpu_seconds(lambda: [naive[name](batch.images[i], batch.landmarks[i])
                                            for i in range(n)], repeat)
            ours_s = _cpu_seconds(lambda: ours[name].extract(batch), repeat)
        rows.append({"feature": name, "naive_ms": 1e3 * naive_s / n, "ours_ms": 1e3 * ours_s / n,
                     "ratio": naive_s / ours_s})
        print(f"  {name:<10} naive {rows[-1]['naive_ms']:8.2f}  ours {rows[-1]['ours_ms']:7.2f}"
              f"  x{rows[-1]['ratio']:.1f}", file=sys.stderr, flush=True)
    return rows


def _total(rows, label, keep=lambda r: True) -> dict:
    naive = sum(r["naive_ms"] for r in rows if keep(r))
    ours = sum(r["ours_ms"] for r in rows if keep(r))
    return {"feature": label, "naive_ms": naive, "ours_ms": ours,
            "ratio": naive / ours if ours else float("nan")}


def format_table(rows) -> str:
    lines = [f"{'feature':<22} {'naive ms/img':>12} {'ours ms/img':>12} {'speed-up':>8}",
             "-" * 57]
    for r in rows:
        if r["feature"].startswith("TOTAL") and not lines[-1].startswith("-"):
            lines.append("-" * 57)
        lines.append(f"{r['feature']:<22} {r['naive_ms']:12.2f} {r['ours_ms']:12.2f} "
                     f"{r['ratio']:7.1f}x")
    return "\n".join(lines)


def main(argv=None, reexec: bool = False) -> int:
    """Run the benchmark; ``reexec`` (the command line) restarts the interpreter once with
    the thread limits set when numpy was already loaded without them."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if reexec:
        _single_threaded_or_reexec(argv)
    import json

    import cv2
    cv2.setNumThreads(1)
    features = args.features.split(",") if args.features else list(FEATURES)
    batch, source = load_batch(args.n, args.size, args.images)
    print(f"{len(batch)} crops of {args.size} px: {source}; 1 thread; best of {args.repeat} "
          "runs in CPU time", file=sys.stderr)
    rows = run(batch, features, args.repeat)
    rows.append(_total(rows, "TOTAL"))
    if "keypoints" in features and len(features) > 1:
        rows.append(_total(rows[:-1], "TOTAL w/o keypoints",
                           lambda r: r["feature"] != "keypoints"))
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"n": len(batch), "size": args.size, "source": source, "threads": 1,
                       "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(reexec=True))
