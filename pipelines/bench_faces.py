"""Face finding per sampled frame: the fast path, the cascade and a slow reference, in one run.

    python -m pipelines.bench_faces --dataset ff++ --root ../shared/data/ffpp --frames 32
    python -m pipelines.bench_faces --dataset folder --root ../shared/data/realfaces --frames 8
    python -m pipelines.bench_faces --dataset folder --root ../shared/data/realfaces --frames 8 \\
        --portrait --limit 6

Three paths run on every video of the data set, one after the other, in this one process
on one thread (``cv2.setNumThreads(1)``), with the landmark model loaded beforehand:

(a) fast: :func:`pipelines.frames.sample_frame_indices` + :func:`read_video_frames` +
    :class:`pipelines.faces.FaceAligner` with ``cascade=False`` (dlib HOG on a 640 px grey
    downscale, tracking from the previous sampled frame's box): the default before the
    cascade.
(b) cascade: the same with ``cascade=True`` (and ``--fallback`` as its last stage).
(c) reference: DeepfakeBench-like: decode every frame up to the last sampled one
    (``cap.read()``), dlib HOG on the full-resolution RGB frame with upsample 1.

(a) and (b) count a frame as found when it becomes a sample (a face of at least ``min_face``
px, 68 landmarks, aligned crop); (c) when its detector returns a box (then landmarks and the
warp are timed too). Recall is over the sampled frames in which (c) finds a face. Reported
per video and overall: frames found, recall, ms per sampled frame (wall clock and process
CPU time, decoding included), and the time the cascade spends in each stage.

``--portrait`` first turns each video into a portrait one: every frame scaled so the face
is about ``--face-px`` pixels (130) and pasted on a 1080 x 1920 textured canvas
(:func:`make_portrait_video`), written to a temporary folder that is deleted afterwards.
No neighbouring frames are tried here: recall is per sampled frame.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from base.cli import CLIParser, error_line
from base.errors import SampleError, UsageError
from pipelines.faces import DETECTORS, FaceAligner, align_face, create_detector, detect_landmarks
from pipelines.frames import read_video_frames, sample_frame_indices, video_frame_count

PORTRAIT_SIZE = (1080, 1920)  # width, height


# -------------------------------------------------------------------- portrait videos

def textured_canvas(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A H x W x 3 uint8 background of smooth colour noise at three scales (8, 32, 128 px).

    Texture, unlike a flat colour, gives the HOG detector edges to reject everywhere.
    """
    rng = np.random.default_rng(seed)
    canvas = np.zeros((height, width, 3), np.float32)
    for cell in (8, 32, 128):
        noise = rng.uniform(0, 1, (height // cell + 2, width // cell + 2, 3)).astype(np.float32)
        canvas += cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    canvas -= canvas.min()
    return (40 + 175 * canvas / max(float(canvas.max()), 1e-6)).astype(np.uint8)


def compose_portrait(rgb: np.ndarray, scale: float, canvas: np.ndarray,
                     centre: tuple[float, float] = (0.5, 0.4)) -> np.ndarray:
    """``rgb`` resized by ``scale`` and pasted on a copy of ``canvas``, its centre at
    ``centre`` (fractions of the canvas width and height); parts outside are cut off."""
    small = cv2.resize(rgb, None, fx=scale, fy=scale,
                       interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = canvas.copy()
    h, w = small.shape[:2]
    ch, cw = canvas.shape[:2]
    x0, y0 = int(round(centre[0] * cw - w / 2)), int(round(centre[1] * ch - h / 2))
    sx0, sy0 = max(0, -x0), max(0, -y0)
    dx0, dy0 = max(0, x0), max(0, y0)
    dx1, dy1 = min(cw, x0 + w), min(ch, y0 + h)
    out[dy0:dy1, dx0:dx1] = small[sy0:sy0 + dy1 - dy0, sx0:sx0 + dx1 - dx0]
    return out


def face_scale(rgb: np.ndarray, face_px: float) -> float:
    """The scale that makes the largest face of ``rgb`` ``face_px`` wide (full-resolution
    dlib HOG, upsample 1); raises ``ValueError`` if it finds none."""
    boxes = create_detector("dlib-hog-full").detect(rgb)
    if not len(boxes):
        raise ValueError("no face in the frame to scale from")
    return face_px / (boxes[0, 2] - boxes[0, 0])


def make_portrait_video(src: Path, out: Path, face_px: float = 130, max_frames: int = 96,
                        seed: int = 0) -> Path:
    """Write ``out`` (mp4v): the first ``max_frames`` frames of ``src``, each scaled so its
    face is about ``face_px`` wide (measured on the first frame that has one) and pasted
    on a 1080 x 1920 :func:`textured_canvas`. Returns ``out``."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while len(frames) < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise ValueError(f"{src}: no frames could be read")
    scale = None
    for frame in frames[::8]:
        try:
            scale = face_scale(frame, face_px)
            break
        except ValueError:
            continue
    if scale is None:
        raise ValueError(f"{src}: no face found to scale from")
    width, height = PORTRAIT_SIZE
    canvas = textured_canvas(height, width, seed)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(compose_portrait(frame, scale, canvas), cv2.COLOR_RGB2BGR))
    writer.release()
    return out


# -------------------------------------------------------------------- the three paths

def reference_video(path: Path, indices, detector, size: int = 256):
    """(wall s, CPU s, found frame indices) for the slow reference on one video."""
    start, cpu = time.perf_counter(), time.process_time()
    cap = cv2.VideoCapture(str(path))
    wanted = set(int(i) for i in indices)
    last, i, found = max(wanted), 0, []
    while i <= last:
        ok, frame = cap.read()
        if not ok:
            break
        if i in wanted:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            boxes = detector.detect(rgb)
            if len(boxes):
                landmarks = detect_landmarks(rgb, boxes[0])
                align_face(rgb, landmarks, size)
                found.append(i)
        i += 1
    cap.release()
    return time.perf_counter() - start, time.process_time() - cpu, found


def aligner_video(path: Path, indices, aligner: FaceAligner):
    """(wall s, CPU s, found frame indices) for frames.py + ``aligner`` with tracking."""
    start, cpu = time.perf_counter(), time.process_time()
    found, prev_box = [], None
    for index, rgb in read_video_frames(path, indices):
        try:
            face = aligner.process(rgb, prev_box=prev_box, path=str(path), frame_index=index)
        except SampleError:
            prev_box = None
            continue
        prev_box = face.box
        found.append(index)
    return time.perf_counter() - start, time.process_time() - cpu, found


PATHS = ("fast", "cascade", "reference")


def _recall(found, reference) -> float:
    ref = set(reference)
    return len(ref & set(found)) / len(ref) if ref else float("nan")


def bench_videos(videos, n_frames: int, fallback: str | None = None, names=None,
                 progress=print) -> dict:
    """Run the three paths on ``videos`` (paths); rows per video, summary, stage costs."""
    cv2.setNumThreads(1)
    fast = FaceAligner(cascade=False)  # loads the landmark model once, before any timing
    cascade = FaceAligner(cascade=True, fallback=fallback)
    reference = create_detector("dlib-hog-full")
    rows = []
    header = (f"{'video':<28} {'size':>9} | " + " | ".join(
        f"{p:>9} {'ms':>7} {'cpu':>6}" for p in PATHS))
    progress("frames found and ms per sampled frame (wall clock, process CPU time)")
    progress(header)
    progress("-" * len(header))
    for video, name in zip(videos, names or [v.name for v in videos]):
        cap = cv2.VideoCapture(str(video))
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        cap.release()
        indices = sample_frame_indices(video_frame_count(video), n_frames)
        Path(video).read_bytes()  # into the page cache, so the first path timed pays no disk read
        row = {"video": name, "width": w, "height": h, "frames": len(indices)}
        runs = {"fast": lambda: aligner_video(video, indices, fast),
                "cascade": lambda: aligner_video(video, indices, cascade),
                "reference": lambda: reference_video(video, indices, reference)}
        for key, run in runs.items():
            wall, cpu, found = run()
            row[f"{key}_found"] = [int(i) for i in found]
            row[f"{key}_ms"] = 1000 * wall / len(indices)
            row[f"{key}_cpu_ms"] = 1000 * cpu / len(indices)
        for key in ("fast", "cascade"):
            row[f"{key}_recall"] = _recall(row[f"{key}_found"], row["reference_found"])
        rows.append(row)
        progress(f"{name[-28:]:<28} {w:>4}x{h:<4} | " + " | ".join(
            f"{len(row[p + '_found']):>4}/{len(indices):<4} {row[p + '_ms']:>7.1f} "
            f"{row[p + '_cpu_ms']:>6.1f}" for p in PATHS))
    summary = summarise(rows)
    summary["stages"] = {name: {"calls": int(cascade.stage_calls[name]),
                                "ms_total": 1000 * cascade.stage_seconds[name]}
                         for name in FaceAligner.STAGES if cascade.stage_calls[name]}
    summary["fallback"] = fallback or "none"
    progress("-" * len(header))
    for stat in ("median", "median_720p"):
        if f"fast_ms_{stat}" in summary:
            progress(f"{stat:<38} | " + " | ".join(
                f"{'':>9} {summary[f'{p}_ms_{stat}']:>7.1f} {summary[f'{p}_cpu_ms_{stat}']:>6.1f}"
                for p in PATHS))
    progress(f"frames found of {summary['frames']}: " + ", ".join(
        f"{p} {summary[p + '_found']}" for p in PATHS))
    progress(f"recall of the reference's {summary['reference_found']} frames: "
             f"fast {summary['fast_recall']:.1%}, cascade {summary['cascade_recall']:.1%}")
    progress("cascade stages (calls, total ms, ms per call): " + "; ".join(
        f"{k} {v['calls']}, {v['ms_total']:.0f}, {v['ms_total'] / v['calls']:.1f}"
        for k, v in summary["stages"].items()))
    return {"summary": summary, "videos": rows}


def summarise(rows) -> dict:
    """Totals, recall against the reference and medians of the per-video rows."""
    summary = {"videos": len(rows), "frames": int(sum(r["frames"] for r in rows))}
    for p in PATHS:
        summary[f"{p}_found"] = int(sum(len(r[f"{p}_found"]) for r in rows))
        for key in (f"{p}_ms", f"{p}_cpu_ms"):
            summary[f"{key}_median"] = float(np.median([r[key] for r in rows]))
            hd = [r[key] for r in rows if r["height"] == 720]
            if hd:
                summary[f"{key}_median_720p"] = float(np.median(hd))
    ref = summary["reference_found"]
    for p in ("fast", "cascade"):
        hits = sum(len(set(r[f"{p}_found"]) & set(r["reference_found"])) for r in rows)
        summary[f"{p}_recall"] = hits / ref if ref else float("nan")
        summary[f"{p}_beyond_reference"] = int(sum(
            len(set(r[f"{p}_found"]) - set(r["reference_found"])) for r in rows))
    return summary


def plot_result(result: dict, path: Path) -> Path:
    """PNG of one run: frames found per video by each path (left) and ms per sampled frame,
    CPU time (right). Matplotlib's Agg backend; returns ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = result["videos"]
    y = np.arange(len(rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 1.5 + 0.28 * len(rows)), sharey=True)
    for k, p in enumerate(PATHS):
        left.barh(y + (k - 1) * 0.27, [len(r[f"{p}_found"]) / r["frames"] for r in rows],
                  height=0.27, label=p)
        right.barh(y + (k - 1) * 0.27, [r[f"{p}_cpu_ms"] for r in rows], height=0.27, label=p)
    left.set_yticks(y, [r["video"][-32:] for r in rows], fontsize=7)
    left.invert_yaxis()
    left.set_xlabel("fraction of sampled frames with a face")
    right.set_xscale("log")
    right.set_xlabel("ms per sampled frame (CPU, log scale)")
    s = result["summary"]
    left.set_title(f"recall of the reference: fast {s['fast_recall']:.1%}, "
                   f"cascade {s['cascade_recall']:.1%}", fontsize=9)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def dataset_videos(dataset: str, root: Path, limit: int | None) -> list[tuple[Path, str]]:
    """``(path, video id)`` of the data set's video sources, sorted, first ``limit``."""
    from pipelines.datasets import index_dataset
    sources = [s for s in index_dataset(dataset, root) if s.kind == "video"][:limit]
    if not sources:
        raise UsageError(f"--root {root}: no videos found for --dataset {dataset}")
    return [(Path(s.path), s.video_id) for s in sources]


def run_benchmark(dataset: str, root: Path, n_frames: int, limit: int | None = None,
                  fallback: str | None = None, portrait: bool = False,
                  face_px: float = 130) -> dict:
    videos = dataset_videos(dataset, root, limit)
    with tempfile.TemporaryDirectory(prefix="clmf-portrait-") as tmp:
        if portrait:
            made = []
            for i, (path, name) in enumerate(videos):
                out = Path(tmp) / f"{i:03d}.mp4"
                try:
                    make_portrait_video(path, out, face_px, max_frames=max(96, n_frames))
                except ValueError as exc:
                    print(f"skipped {name}: {exc}", file=sys.stderr)
                    continue
                made.append((out, f"portrait:{name}"))
            videos = made
        result = bench_videos([v for v, _ in videos], n_frames, fallback,
                              names=[n for _, n in videos])
    result["summary"].update(dataset=dataset, root=str(root), frames_per_video=n_frames,
                             portrait=portrait)
    return result


def main(argv=None) -> int:
    parser = CLIParser(prog="python -m pipelines.bench_faces",
                       description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ff++",
                        help="data set layout of --root: ff++ or folder (default: %(default)s)")
    parser.add_argument("--root", type=Path, default=Path("../shared/data/ffpp"),
                        help="data set folder (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=32,
                        help="frames sampled per video (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None,
                        help="benchmark only the first LIMIT videos in sorted order (default: all)")
    parser.add_argument("--fallback", default="none",
                        help="the cascade's last, slow detector: none or a registered detector "
                             "such as dlib-cnn (default: %(default)s)")
    parser.add_argument("--portrait", action="store_true",
                        help="bench portrait versions of the videos (face about --face-px on a "
                             "1080x1920 textured canvas), made in a temporary folder")
    parser.add_argument("--face-px", type=float, default=130,
                        help="face width in the portrait videos, pixels (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the per-video rows and the summary to this JSON file, "
                             "and a PNG plot of them beside it (same name, .png)")
    args = parser.parse_args(argv)
    try:
        if args.dataset not in ("ff++", "folder"):
            raise UsageError(f"--dataset must be ff++ or folder, got {args.dataset!r}")
        if args.frames < 1:
            raise UsageError(f"--frames must be a positive integer, got {args.frames}")
        if args.limit is not None and args.limit < 1:
            raise UsageError(f"--limit must be a positive integer, got {args.limit}")
        if args.fallback != "none" and args.fallback not in DETECTORS:
            raise UsageError(f"--fallback must be none or one of {', '.join(DETECTORS)}, "
                             f"got {args.fallback!r}")
        if not 40 <= args.face_px <= 1000:
            raise UsageError(f"--face-px must be between 40 and 1000, got {args.face_px}")
        if not args.root.is_dir():
            raise UsageError(f"--root {args.root}: no such folder")
        fallback = None if args.fallback == "none" else args.fallback
        result = run_benchmark(args.dataset, args.root, args.frames, args.limit, fallback,
                               args.portrait, args.face_px)
    except UsageError as exc:
        print(error_line(parser.prog, exc), file=sys.stderr)
        return 2
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        plot = plot_result(result, args.json.with_suffix(".png"))
        print(f"wrote {args.json} and {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
