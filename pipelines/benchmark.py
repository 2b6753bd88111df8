"""Generate the image-editing benchmark: aligned real faces and their edited copies.

::

    python -m pipelines.benchmark --source DIR --out BENCH [--seed 0] [--edits all]
        [--difficulty easy,mid,hard] [--size 256] [--per-image 1] [--limit N]
    python -m pipelines.benchmark --from-store STORE.h5 --split train --edits sbi --out BENCH

Each real image of ``--source`` is detected, given 68 landmarks and aligned to ``--size``
pixels with :class:`pipelines.faces.FaceAligner`; images without a usable face are skipped
and listed in the summary. With ``--from-store`` the real (label 0) samples of the given
splits of a feature store are used instead: their ``rgb`` map (already aligned) and their
landmarks. For every face the benchmark writes the aligned real and, for every edit of
:data:`pipelines.edits_face.FACE_EDITS` selected, ``--per-image`` edited copies with
their exact masks:

``BENCH/images/<key>/real.png``, ``BENCH/images/<key>/<edit>_<difficulty>_<k>.png``
    Lossless PNG, RGB.
``BENCH/masks/<key>/<edit>_<difficulty>_<k>.png``
    PNG, 0/255; exactly the pixels where the edited image differs from the real.
``BENCH/manifest.jsonl``
    One JSON object per image: ``image``, ``mask`` (null for reals), ``label``, ``edit``
    (``"real"`` for reals), ``difficulty`` (null for reals), ``params`` (every random
    choice), ``seed`` (the integer seed of the image's ``numpy.random.default_rng``),
    ``source`` (file name or store sample id), ``identity`` (the person or source photo:
    the file name, or a store sample's own identity, so that the frames of one video are
    one cluster of the confidence intervals, not one each), ``donor`` (the other face's
    source, or null), ``split``, ``landmarks`` (68 x 2, crop pixels). Read it with
    ``python -m pipelines.extract --dataset editbench --root BENCH --align none``.
``BENCH/summary.json``
    Counts by edit, difficulty and split, the skipped sources and their causes, timings.

Determinism: the output depends only on the inputs and ``--seed``. Each image's seed comes
from ``numpy.random.SeedSequence([seed, crc32(source), crc32(edit), k])``, so selecting
fewer edits or sources leaves the others unchanged (donors excepted: a donor is one of the
five sources nearest in landmark space, among those present). The copies of one edit cycle
through the ``--difficulty`` levels from an offset fixed by the source and edit, so levels
are balanced over sources.

Splits: every image of a source lands in the same split, 70/15/15 train/val/test by a hash
of the source image's bytes (folder) or of its video id (store: all frames of a video
together). ``--bench-split keep`` keeps a store's own splits; ``--bench-split train`` (or
val, test) puts everything in one split.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from base.cli import CLIParser, error_line, next_line
from base.errors import SampleError, UsageError
from base.outputs import claim_output_dir
from pipelines.edits_face import FACE_EDITS, NEEDS_DONOR, apply_face_edit
from pipelines.samples import SPLITS
from pipelines.synthesis import DIFFICULTIES

__all__ = ["parse_edits", "parse_difficulties", "hash_split", "sample_seed", "BenchFace",
           "load_folder_faces", "load_store_faces", "nearest_donors", "generate", "main"]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MANIFEST = "manifest.jsonl"
#: How many nearest faces (landmark space) a donor is drawn from.
DONOR_POOL = 5


# ---------------------------------------------------------------------------- parsing

def parse_edits(spec: str) -> list[str]:
    """``"all"`` or a comma list of :data:`FACE_EDITS` names -> list in registry order."""
    if spec is None or spec.strip() == "all":
        return list(FACE_EDITS)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in FACE_EDITS]
    if unknown or not names:
        raise UsageError(f"--edits: unknown edit(s) {', '.join(unknown) or '(empty)'}; expected "
                         f"all or some of {', '.join(FACE_EDITS)}")
    return [n for n in FACE_EDITS if n in names]


def parse_difficulties(spec: str) -> list[str]:
    """Comma list of ``easy``, ``mid``, ``hard`` -> list in that order."""
    names = [s.strip() for s in (spec or "").split(",") if s.strip()]
    unknown = [n for n in names if n not in DIFFICULTIES]
    if unknown or not names:
        raise UsageError(f"--difficulty: unknown level(s) {', '.join(unknown) or '(empty)'}; "
                         f"expected some of {', '.join(DIFFICULTIES)}")
    return [n for n in DIFFICULTIES if n in names]


def hash_split(key: str) -> str:
    """70/15/15 train/val/test by ``sha1(key)``: stable across runs and machines."""
    percent = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "train" if percent < 70 else "val" if percent < 85 else "test"


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def sample_seed(seed: int, source: str, edit: str = "real", copy: int = 0) -> int:
    """The integer seed of one benchmark image (recorded in the manifest)."""
    sequence = np.random.SeedSequence([int(seed), _crc(source), _crc(edit), int(copy)])
    return int(sequence.generate_state(1, np.uint32)[0])


def _safe_key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "face"


# ---------------------------------------------------------------------------- sources

@dataclass
class BenchFace:
    """One aligned real face: ``key`` (folder name in the benchmark), ``source`` (file name
    or store sample id), ``group`` (faces of one group are never each other's donor: the
    same file or video), ``split``, ``crop`` (S x S x 3 uint8), ``landmarks`` (68 x 2) and
    ``identity`` (the person or source photo; None: ``source``)."""

    key: str
    source: str
    group: str
    split: str
    crop: np.ndarray
    landmarks: np.ndarray
    identity: str | None = None


def _unique_keys(names: list[str]) -> list[str]:
    keys, seen = [], Counter()
    for name in names:
        key = _safe_key(name)
        seen[key] += 1
        keys.append(key if seen[key] == 1 else f"{key}_{seen[key]}")
    return keys


def load_folder_faces(folder, size: int = 256, limit: int | None = None,
                      bench_split: str = "hash", progress: bool = False):
    """Detect and align the largest face of every image in ``folder`` (sorted by name).

    Returns ``(faces, skipped)``: a list of :class:`BenchFace` and a list of
    ``{"source", "cause", "message"}`` for the images without a usable face.
    """
    from pipelines.faces import FaceAligner
    from pipelines.frames import read_image

    folder = Path(folder)
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if limit:
        paths = paths[:limit]
    aligner = FaceAligner(size=size)
    faces, skipped = [], []
    stems = [p.stem for p in paths]
    names = [p.stem if stems.count(p.stem) == 1 else p.name for p in paths]
    bar = _progress(len(paths), "align", progress)
    for path, key in zip(paths, _unique_keys(names)):
        try:
            face = aligner.process(read_image(path), path=str(path))
        except SampleError as exc:
            skipped.append({"source": path.name, "cause": exc.cause, "message": exc.message})
        else:
            split = (bench_split if bench_split in SPLITS
                     else hash_split(hashlib.sha1(path.read_bytes()).hexdigest()))
            faces.append(BenchFace(key=key, source=path.name, group=path.name, split=split,
                                   crop=face.crop, landmarks=face.landmarks))
        bar.update(1)
    bar.close()
    return faces, skipped


def load_store_faces(store_path, splits=("train",), size: int = 256, limit: int | None = None,
                     bench_split: str = "hash"):
    """The real (label 0) samples of ``splits`` of a feature store: ``rgb`` map + landmarks.

    Samples without finite landmarks are skipped (cause ``no_face``). When the store's crops
    are not ``size`` pixels they are resized (landmarks scaled with them).
    """
    from stores import open_store

    faces, skipped = [], []
    with open_store(store_path) as store:
        if "rgb" not in store.maps:
            raise UsageError(f"--from-store: {store_path} has no 'rgb' map (maps: "
                             f"{', '.join(store.maps) or 'none'}); extract it with "
                             f"--features rgb,...")
        for split in splits:
            maps, meta = store.read_map("rgb", split=split, label=0)
            landmarks = store.landmarks(split=split, label=0)
            for crop, lm, row in zip(maps, landmarks, meta.itertuples()):
                if limit and len(faces) >= limit:
                    break
                sid = str(row.sample_id)
                if not np.isfinite(lm).all():
                    skipped.append({"source": sid, "cause": "no_face",
                                    "message": "no landmarks in the store"})
                    continue
                crop = np.ascontiguousarray(crop[..., :3]).astype(np.uint8)
                lm = np.asarray(lm, np.float64)
                if crop.shape[0] != size or crop.shape[1] != size:
                    s = size / crop.shape[0]
                    crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA
                                      if s < 1 else cv2.INTER_LINEAR)
                    lm = (lm + 0.5) * s - 0.5
                video = str(row.video_id)
                split_out = (split if bench_split == "keep" else bench_split
                             if bench_split in SPLITS else hash_split(video))
                # the store's identity (stores without one read identity = video id)
                person = str(getattr(row, "identity", None) or video)
                faces.append(BenchFace(key=sid, source=sid, group=video, split=split_out,
                                       crop=crop, landmarks=lm.astype(np.float32),
                                       identity=person))
    keys = _unique_keys([f.key for f in faces])
    for face, key in zip(faces, keys):
        face.key = key
    return faces, skipped


def nearest_donors(landmarks: np.ndarray, groups, pool: int = DONOR_POOL) -> list[list[int]]:
    """For each face, the indices of the ``pool`` faces of other groups with the nearest
    landmarks (RMS distance over the 68 points, aligned crops), nearest first."""
    lm = np.asarray(landmarks, np.float64).reshape(len(landmarks), -1)
    groups = np.asarray(groups)
    sq = (lm ** 2).sum(1)
    dist = sq[:, None] + sq[None, :] - 2 * lm @ lm.T
    dist[groups[:, None] == groups[None, :]] = np.inf
    order = np.argsort(dist, axis=1, kind="stable")
    return [[int(j) for j in order[i, :pool] if np.isfinite(dist[i, j])]
            for i in range(len(lm))]


# ---------------------------------------------------------------------------- generation

def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, unit="face", desc=desc, disable=not enabled, file=sys.stderr)


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = image[..., ::-1] if image.ndim == 3 else image
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr))
    if not ok:
        raise RuntimeError(f"cannot encode {path} as PNG")
    buf.tofile(str(path))


def _row(image, mask, label, edit, difficulty, params, seed, face, donor, landmarks):
    return {"image": image, "mask": mask, "label": label, "edit": edit,
            "difficulty": difficulty, "params": params, "seed": seed, "source": face.source,
            "identity": face.identity or face.source, "donor": donor, "split": face.split,
            "landmarks": np.round(np.asarray(landmarks, np.float64), 2).tolist()}


def generate(faces: list[BenchFace], out, edits, difficulties=("easy", "mid", "hard"),
             per_image: int = 1, seed: int = 0, progress: bool = False) -> dict:
    """Write the benchmark of ``faces`` under ``out`` (see the module docstring).

    Returns the summary dict (counts by edit, difficulty, split and label; images written;
    ``no_donor``: donor edits skipped because no face of another group exists).
    """
    out = Path(out)
    donors = nearest_donors(np.stack([f.landmarks for f in faces]) if faces else
                            np.zeros((0, 68, 2)), [f.group for f in faces])
    rows, counts, no_donor = [], Counter(), Counter()
    bar = _progress(len(faces), "edit", progress)
    for i, face in enumerate(faces):
        real_rel = f"images/{face.key}/real.png"
        _write_png(out / real_rel, face.crop)
        rows.append(_row(real_rel, None, 0, "real", None, {}, sample_seed(seed, face.source),
                         face, None, face.landmarks))
        counts[("real", "-", face.split)] += 1
        for edit in edits:
            offset = _crc(f"{face.source}|{edit}") % len(difficulties)
            for k in range(per_image):
                difficulty = difficulties[(offset + k) % len(difficulties)]
                image_seed = sample_seed(seed, face.source, edit, k)
                rng = np.random.default_rng(image_seed)
                donor = None
                if edit in NEEDS_DONOR:
                    if not donors[i]:
                        no_donor[edit] += 1
                        continue
                    donor = faces[donors[i][int(rng.integers(len(donors[i])))]]
                params: dict = {}
                edited, mask = apply_face_edit(
                    edit, face.crop, face.landmarks, rng, difficulty,
                    donor=None if donor is None else donor.crop,
                    donor_landmarks=None if donor is None else donor.landmarks, info=params)
                name = f"{edit}_{difficulty}_{k}.png"
                image_rel, mask_rel = f"images/{face.key}/{name}", f"masks/{face.key}/{name}"
                _write_png(out / image_rel, edited)
                _write_png(out / mask_rel, mask * np.uint8(255))
                rows.append(_row(image_rel, mask_rel, 1, edit, difficulty, params, image_seed,
                                 face, None if donor is None else donor.source, face.landmarks))
                counts[(edit, difficulty, face.split)] += 1
        bar.update(1)
    bar.close()
    with open(out / MANIFEST, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=False) + "\n")
    by_edit, by_split, by_level = Counter(), Counter(), Counter()
    for (edit, difficulty, split), n in counts.items():
        by_edit[edit] += n
        by_split[split] += n
        by_level[f"{edit}/{difficulty}"] += n
    return {"faces": len(faces), "images": len(rows), "by_edit": dict(by_edit),
            "by_split": dict(by_split), "by_edit_difficulty": dict(sorted(by_level.items())),
            "no_donor": dict(no_donor)}


# ---------------------------------------------------------------------------- CLI

def build_parser() -> CLIParser:
    p = CLIParser(prog="python -m pipelines.benchmark",
                description="Generate the face image-editing benchmark (aligned reals, "
                            "landmark-aware edits with exact masks, manifest.jsonl).")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--source", help="folder of real face images (jpg, png, bmp, webp)")
    src.add_argument("--from-store", metavar="STORE.h5",
                     help="feature store whose real samples (rgb map + landmarks) are used")
    p.add_argument("--split", default="train",
                   help="--from-store only: comma-separated store splits to read (default train)")
    p.add_argument("--bench-split", default="hash",
                   help="split of the benchmark images: hash (70/15/15 by source, default), "
                        "keep (the store's own split; --from-store only), or train, val, test")
    p.add_argument("--out", help="benchmark folder to write (required)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace what an earlier run left in --out (without it, an --out "
                        "that holds files is refused)")
    p.add_argument("--seed", type=int, default=0, help="global random seed (default 0)")
    p.add_argument("--edits", default="all",
                   help=f"all (default) or a comma list of: {', '.join(FACE_EDITS)}")
    p.add_argument("--difficulty", default="easy,mid,hard",
                   help="comma list of easy, mid, hard (default all three)")
    p.add_argument("--size", type=int, default=256, help="aligned crop side, pixels (default 256)")
    p.add_argument("--per-image", type=int, default=1,
                   help="edited copies per edit and source face (default 1); copies cycle "
                        "through the difficulty levels")
    p.add_argument("--limit", type=int, help="only the first N source images / samples")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def validate(args) -> dict:
    """Check every flag before any work; raise :class:`UsageError` with one line."""
    if not args.source and not args.from_store:
        raise UsageError("one of --source DIR or --from-store STORE.h5 is required")
    if not args.out:
        raise UsageError("--out BENCH is required")
    if args.source and not Path(args.source).is_dir():
        raise UsageError(f"--source: {args.source} is not a folder")
    if args.from_store and not Path(args.from_store).is_file():
        raise UsageError(f"--from-store: {args.from_store} does not exist")
    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    if not splits or any(s not in SPLITS for s in splits):
        raise UsageError(f"--split: expected a comma list of {', '.join(SPLITS)}, got "
                         f"{args.split!r}")
    accepted = ("hash", "keep") + SPLITS
    if args.bench_split not in accepted or (args.bench_split == "keep" and args.source):
        raise UsageError(f"--bench-split: expected one of {', '.join(accepted)} (keep only "
                         f"with --from-store), got {args.bench_split!r}")
    if args.size < 64:
        raise UsageError(f"--size: expected >= 64 pixels, got {args.size}")
    if args.per_image < 1:
        raise UsageError(f"--per-image: expected >= 1, got {args.per_image}")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit: expected >= 1, got {args.limit}")
    return {"edits": parse_edits(args.edits), "difficulties": parse_difficulties(args.difficulty),
            "splits": splits}


def run(args) -> dict:
    """Validate, load the faces, generate; returns the summary (also in summary.json)."""
    checked = validate(args)
    inputs = [args.source, args.from_store]
    with claim_output_dir(args.out, overwrite=args.overwrite, inputs=inputs) as out:
        return _generate(args, checked, out)


def _generate(args, checked: dict, out: Path) -> dict:
    """The work of :func:`run` once ``out`` is claimed."""
    progress = not args.no_progress
    t0 = time.perf_counter()
    if args.source:
        faces, skipped = load_folder_faces(args.source, args.size, args.limit, args.bench_split,
                                           progress)
    else:
        faces, skipped = load_store_faces(args.from_store, checked["splits"], args.size,
                                          args.limit, args.bench_split)
    t1 = time.perf_counter()
    summary = generate(faces, out, checked["edits"], checked["difficulties"], args.per_image,
                       args.seed, progress)
    t2 = time.perf_counter()
    summary.update({
        "source": str(args.source or args.from_store), "seed": args.seed,
        "edits": checked["edits"], "difficulties": checked["difficulties"],
        "per_image": args.per_image, "size": args.size,
        "skipped": skipped, "skipped_by_cause": dict(Counter(s["cause"] for s in skipped)),
        "seconds": {"align": round(t1 - t0, 2), "edit_and_write": round(t2 - t1, 2)},
        "images_per_second": round(summary["images"] / max(t2 - t0, 1e-9), 2),
    })
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def format_summary(s: dict, out) -> str:
    lines = [f"benchmark: {s['faces']} faces -> {s['images']} images in {out} "
             f"({s['images_per_second']} images/s; align {s['seconds']['align']} s, "
             f"edit+write {s['seconds']['edit_and_write']} s)",
             "by split: " + ", ".join(f"{k} {v}" for k, v in sorted(s["by_split"].items())),
             "by edit:  " + ", ".join(f"{k} {v}" for k, v in s["by_edit"].items())]
    if s["no_donor"]:
        lines.append("skipped donor edits (no face of another source): " +
                     ", ".join(f"{k} {v}" for k, v in s["no_donor"].items()))
    if s["skipped"]:
        lines.append(f"skipped {len(s['skipped'])} source(s): " +
                     ", ".join(f"{k} {v}" for k, v in s["skipped_by_cause"].items()))
        for item in s["skipped"][:20]:
            lines.append(f"  {item['source']}: {item['cause']}: {item['message']}")
        if len(s["skipped"]) > 20:
            lines.append(f"  ... and {len(s['skipped']) - 20} more (summary.json)")
    lines.append(f"manifest: {Path(out) / MANIFEST}")
    lines.append(next_line("python -m pipelines.extract", "--dataset", "editbench", "--root", out,
                           "--out", f"{Path(out)}.h5"))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except UsageError as exc:
        print(error_line("python -m pipelines.benchmark", exc), file=sys.stderr)
        return 2
    print(format_summary(summary, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
