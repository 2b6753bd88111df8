"""Time face preprocessing per frame: a DeepfakeBench-like naive path against ours.

    python -m pipelines.bench_faces --root ../shared/data/ffpp --frames 32 [--json out.json]

(a) naive: decode every frame of the video up to the last sampled one (``cap.read()``),
    dlib HOG on the full-resolution RGB frame with upsample 1, 68 landmarks, similarity warp.
(b) ours: :func:`pipelines.frames.sample_frame_indices` + :func:`read_video_frames` (grab
    without retrieving skipped frames) + :class:`pipelines.faces.FaceAligner` (detection on a
    640 px grey downscale, tracking from the previous sampled frame's box).

Both run in this one process on one thread (``cv2.setNumThreads(1)``) with the landmark
model loaded once beforehand, so the difference is decoding and detection only
(DeepfakeBench also reloads the model for every video, which this does not count).
Reported: ms per processed frame (total time of a video / sampled frames), wall clock and
process CPU time, and faces found.

Measured on the 7 ../shared/data/ffpp videos, 32 frames, on a 2-core machine shared with
other jobs (so wall times vary with its load): naive median 425-729 ms/frame wall (720p
425-860, 1080p 948-2646), ours 35-79 ms/frame wall; CPU time naive 370-400, ours 39-45
(720p median), 224/224 faces found by both. At low load ours ran at 34 ms/frame on 720p
(31-56 per video); decoding the skipped frames is about half of it, then detection in
the tracked region (~4 ms), landmarks (~3 ms) and the warp (~1 ms).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from pipelines.cli import CLIParser, error_line
from pipelines.errors import SampleError, UsageError
from pipelines.faces import FaceAligner, align_face, create_detector, detect_landmarks
from pipelines.frames import read_video_frames, sample_frame_indices, video_frame_count


def naive_video(path: Path, n_frames: int, detector, size: int = 256):
    """(wall s, CPU s, frames processed, faces found) for the naive reference on one video."""
    start, cpu = time.perf_counter(), time.process_time()
    cap = cv2.VideoCapture(str(path))
    n_total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = set(np.linspace(0, n_total - 1, n_frames, dtype=int).tolist())
    last, i, processed, faces = max(wanted), 0, 0, 0
    while i <= last:
        ok, frame = cap.read()
        if not ok:
            break
        if i in wanted:
            processed += 1
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            boxes = detector.detect(rgb)
            if len(boxes):
                landmarks = detect_landmarks(rgb, boxes[0])
                align_face(rgb, landmarks, size)
                faces += 1
        i += 1
    cap.release()
    return time.perf_counter() - start, time.process_time() - cpu, processed, faces


def our_video(path: Path, n_frames: int, aligner: FaceAligner):
    """(wall s, CPU s, frames processed, faces found) for frames.py + FaceAligner with tracking."""
    start, cpu = time.perf_counter(), time.process_time()
    indices = sample_frame_indices(video_frame_count(path), n_frames)
    processed, faces, prev_box = 0, 0, None
    for index, rgb in read_video_frames(path, indices):
        processed += 1
        try:
            face = aligner.process(rgb, prev_box=prev_box, path=str(path), frame_index=index)
        except SampleError:
            prev_box = None
            continue
        prev_box = face.box
        faces += 1
    return time.perf_counter() - start, time.process_time() - cpu, processed, faces


def run_benchmark(root: Path, n_frames: int, limit: int | None = None) -> dict:
    cv2.setNumThreads(1)
    videos = sorted(root.rglob("*.mp4"))[:limit]
    if not videos:
        raise UsageError(f"--root {root}: no .mp4 videos found under it")
    aligner = FaceAligner()  # loads the landmark model once, before any timing
    reference = create_detector("dlib-hog-full")
    rows = []
    header = (f"{'video':<16} {'size':>9} | {'naive wall':>10} {'cpu':>7} {'faces':>6} | "
              f"{'ours wall':>10} {'cpu':>7} {'faces':>6} | {'speed-up':>8}")
    print("ms per sampled frame (wall clock and process CPU time)")
    print(header)
    print("-" * len(header))
    for video in videos:
        cap = cv2.VideoCapture(str(video))
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        cap.release()
        t_naive, c_naive, n_naive, f_naive = naive_video(video, n_frames, reference)
        t_ours, c_ours, n_ours, f_ours = our_video(video, n_frames, aligner)
        row = {"video": str(video.relative_to(root)), "width": w, "height": h,
               "naive_ms_per_frame": 1000 * t_naive / max(n_naive, 1),
               "naive_cpu_ms_per_frame": 1000 * c_naive / max(n_naive, 1),
               "naive_frames": n_naive, "naive_faces": f_naive,
               "ours_ms_per_frame": 1000 * t_ours / max(n_ours, 1),
               "ours_cpu_ms_per_frame": 1000 * c_ours / max(n_ours, 1),
               "ours_frames": n_ours, "ours_faces": f_ours}
        row["speedup"] = row["naive_ms_per_frame"] / row["ours_ms_per_frame"]
        rows.append(row)
        print(f"{video.name:<16} {w:>4}x{h:<4} | {row['naive_ms_per_frame']:>10.1f} "
              f"{row['naive_cpu_ms_per_frame']:>7.1f} {f_naive:>3}/{n_naive:<2} | "
              f"{row['ours_ms_per_frame']:>10.1f} {row['ours_cpu_ms_per_frame']:>7.1f} "
              f"{f_ours:>3}/{n_ours:<2} | {row['speedup']:>7.1f}x", flush=True)
    summary = {"frames_per_video": n_frames, "videos": len(rows),
               "naive_faces": int(sum(r["naive_faces"] for r in rows)),
               "ours_faces": int(sum(r["ours_faces"] for r in rows)),
               "frames": int(sum(r["ours_frames"] for r in rows))}
    for key in ("naive_ms_per_frame", "naive_cpu_ms_per_frame", "ours_ms_per_frame",
                "ours_cpu_ms_per_frame"):
        values = np.array([r[key] for r in rows])
        summary[f"{key}_median"] = float(np.median(values))
        summary[f"{key}_mean"] = float(values.mean())
        hd = [r[key] for r in rows if r["height"] == 720]
        if hd:
            summary[f"{key}_median_720p"] = float(np.median(hd))
    summary["speedup_median"] = (summary["naive_ms_per_frame_median"]
                                 / summary["ours_ms_per_frame_median"])
    print("-" * len(header))
    for stat in ("median", "mean", "median_720p"):
        if f"ours_ms_per_frame_{stat}" not in summary:
            continue
        v = [summary[f"{k}_{stat}"] for k in ("naive_ms_per_frame", "naive_cpu_ms_per_frame",
                                              "ours_ms_per_frame", "ours_cpu_ms_per_frame")]
        print(f"{stat:<26} | {v[0]:>10.1f} {v[1]:>7.1f} {'':>6} | {v[2]:>10.1f} {v[3]:>7.1f} "
              f"{'':>6} | {v[0] / v[2]:>7.1f}x")
    print(f"faces found: naive {summary['naive_faces']}, ours {summary['ours_faces']} "
          f"of {summary['frames']} sampled frames")
    return {"summary": summary, "videos": rows}


def main(argv=None) -> int:
    parser = CLIParser(prog="python -m pipelines.bench_faces",
                       description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("../shared/data/ffpp"),
                        help="folder searched recursively for .mp4 videos (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=32,
                        help="frames sampled per video (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None,
                        help="benchmark only the first LIMIT videos in sorted order (default: all)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the per-video rows and the summary to this JSON file")
    args = parser.parse_args(argv)
    try:
        if args.frames < 1:
            raise UsageError(f"--frames must be a positive integer, got {args.frames}")
        if args.limit is not None and args.limit < 1:
            raise UsageError(f"--limit must be a positive integer, got {args.limit}")
        if not args.root.is_dir():
            raise UsageError(f"--root {args.root}: no such folder")
        result = run_benchmark(args.root, args.frames, args.limit)
    except UsageError as exc:
        print(error_line(parser.prog, exc), file=sys.stderr)
        return 2
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
