"""``python -m pipelines.extract``: data set -> aligned faces -> features -> HDF5 store.

Examples
--------
Built-in demo data, default features::

    python -m pipelines.extract

FaceForensics++ in its official layout, 8 frames per video, 2 worker processes::

    python -m pipelines.extract --dataset ff++ --root /data/ffpp --features rgb,lbp,dct \\
        --frames 8 --workers 2 --out ffpp.h5

How it runs: the sources (videos, images) are cut into partitions (one video, or a batch
of images); each partition is one Dask task that decodes, aligns and extracts, then
writes its own shard file. When every task is done the shards are merged into the store.
A killed run keeps its finished shards; rerunning the same command redoes only the rest.
Rerunning with more features on an existing store computes only the new ones. A run holds
a lock file in ``<out>.shards/``: a second run on the same ``--out`` stops with one line
naming the owner, and the lock of a killed run (its pid gone on this host) is taken over.
"""
from __future__ import annotations

import hashlib
import logging
import json
import os
import shutil
import sys
import time
import warnings
from collections import Counter
from dataclasses import asdict
from glob import escape as glob_escape
from pathlib import Path

import numpy as np

from base.cli import CLIParser, next_line, run_cli
from base.errors import UsageError
from base.outputs import release_lock
from base.outputs import take_lock as cli_take_lock
from pipelines.ingest import IngestConfig, SourceCrops, load_source
from pipelines.perturb import SEPARATOR

#: The fast handcrafted set extracted when --features is not given.
DEFAULT_FEATURES = "rgb,mask,lbp,dct,fft,npr,color"
#: Maps kept by default: what the cascaded model reads. Other maps (fft, npr, prnu...)
#: cost up to 0.8 MB a sample and are kept on request (--maps).
DEFAULT_MAPS = ("rgb", "mask", "lbp", "dct")
FACE_DATASETS = ("ff++", "celebdf", "dfdc")


# -- planning ------------------------------------------------------------------------------
def plan_partitions(sources, images_per_partition: int = 32) -> list[list]:
    """Group sources into partitions: one per video, consecutive images in batches."""
    parts, batch = [], []
    for source in sources:
        if source.kind == "video":
            if batch:
                parts.append(batch)
                batch = []
            parts.append([source])
        else:
            batch.append(source)
            if len(batch) >= images_per_partition:
                parts.append(batch)
                batch = []
    if batch:
        parts.append(batch)
    return parts


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def shard_name(index: int, sources) -> str:
    """Shard file of a partition: its position plus a digest of its sources."""
    return f"part-{index:06d}-{_digest([s.to_dict() for s in sources])}.h5"


#: What every failure to write says: nothing finished is lost.
RESUME_HINT = "finished shards are kept, free space and rerun the same command to resume"


# -- one run per --out: the lock lives in base.outputs, shared with the fusion commands ----
LOCK_NAME = "LOCK"


def take_lock(folder: Path, what: str) -> Path:
    """Claim ``folder`` (the shard folder of one ``--out``): :func:`base.outputs.take_lock`."""
    return cli_take_lock(folder, what, LOCK_NAME, by="another extraction")


# -- the per-partition task -----------------------------------------------------------------
_EXTRACTORS: dict = {}


def _extractor(name: str, params: dict | None = None):
    """One extractor per process and parameter set (deep models load once per worker)."""
    from extract.registry import create_extractor
    key = (name, json.dumps(params or {}, sort_keys=True, default=str))
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = create_extractor(name, **(params or {}))
    return _EXTRACTORS[key]


def feature_params(args, features) -> dict:
    """Per-feature parameters from the deep-feature flags (only those an extractor takes)."""
    from extract.registry import _REGISTRY
    wanted = {"device": args.device, "batch_size": args.deep_batch_size}
    by_feature = {"clip": {"model": args.clip_model, "weights": args.clip_weights},
                  "cnn": {"model": args.cnn_model, "weights": args.cnn_weights},
                  "cascade": {"run": args.cascade_run},
                  "sequence": {"clip_model": args.clip_model, "clip_weights": args.clip_weights}}
    out = {}
    for name in features:
        defaults = _REGISTRY[name].defaults
        params = {**wanted, **by_feature.get(name, {})}
        params = {k: v for k, v in params.items() if k in defaults and v is not None}
        if params:
            out[name] = params
    return out


def _limit_threads():
    """One worker = one core: keep OpenCV and torch from oversubscribing."""
    import cv2
    cv2.setNumThreads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def run_extractors(batch, names, params=None):
    """Run every extractor on ``batch``; a failing extractor marks its rows invalid.

    ``params`` maps a feature to its extractor parameters. Returns ``(outputs, attrs,
    errors)`` where outputs maps feature -> {vector/map/valid}.
    """
    outputs, attrs, errors = {}, {}, []
    size = batch.images.shape[1]
    for name in names:
        extractor = _extractor(name, (params or {}).get(name))
        specs = extractor.outputs(size)
        try:
            result = extractor.extract(batch)
        except Exception as exc:  # noqa: BLE001 - recorded per sample, the run goes on
            result = {"valid": np.zeros(len(batch), bool)}
            for kind, spec in specs.items():
                fill = np.nan if np.dtype(spec.dtype).kind == "f" else 0
                result[kind] = np.full((len(batch),) + tuple(spec.shape), fill, spec.dtype)
            errors.append({"source_path": "", "video_id": ",".join(sorted(set(batch.video_ids))),
                           "frame_index": -1, "cause": "extractor_failed",
                           "message": f"{name}: {type(exc).__name__}: {exc}"})
        outputs[name] = result
        attrs[name] = {**extractor.attributes(),
                       "columns": list(specs["vector"].columns) if "vector" in specs else []}
    return outputs, attrs, errors


def _feature_jobs(features, perturbations):
    """``[(store name, extractor name, (perturbation, value) or None)]`` to compute."""
    from pipelines.perturb import format_perturbation, perturbed_name
    jobs = [(f, f, None) for f in features]
    for name, value in perturbations:
        spec = format_perturbation(name, value)
        jobs += [(perturbed_name(f, spec), f, (name, value)) for f in features]
    return jobs


def process_partition(sources, features, config: IngestConfig, shard_path: str,
                      perturbations=(), params=None, keep_maps=None) -> dict:
    """Decode, align and extract one partition, and write its shard. Runs in a worker.

    Returns a small summary (samples, errors by cause). A shard that already exists is
    finished work from an earlier run: it is counted, not redone.
    """
    from extract.registry import FaceBatch
    from pipelines.perturb import format_perturbation, perturbed_name
    from stores import write_store
    shard_path = Path(shard_path)
    if shard_path.exists():
        return {"shard": str(shard_path), "resumed": True, **_shard_counts(shard_path)}
    _limit_threads()
    crops = SourceCrops()
    for source in sources:
        part = load_source(source, config)
        for key in ("records", "crops", "landmarks", "masks", "mask_valid", "errors", "source_meta"):
            getattr(crops, key).extend(getattr(part, key))
    n = len(crops.records)
    vectors, maps, valid, attrs = {}, {}, {}, {}
    errors = list(crops.errors)
    if n:
        batch = FaceBatch(np.stack(crops.crops), np.stack(crops.landmarks), np.stack(crops.masks),
                          np.asarray(crops.mask_valid, bool),
                          np.asarray([r["video_id"] for r in crops.records]),
                          np.asarray([r["frame_index"] for r in crops.records], np.int64))
        outputs, attrs, ext_errors = run_extractors(batch, features, params)
        errors += ext_errors
        for name, value in perturbations:
            perturbed = _perturbed(batch, name, value, shard_path)
            p_out, p_attrs, p_err = run_extractors(perturbed, features, params)
            errors += p_err
            spec = format_perturbation(name, value)
            for feature in features:
                key = perturbed_name(feature, spec)
                outputs[key] = p_out[feature]
                attrs[key] = {**p_attrs[feature],
                              "params": {**p_attrs[feature]["params"], "perturbation": spec}}
        for name, result in outputs.items():
            if "vector" in result:
                vectors[name] = result["vector"]
            base = name.partition(SEPARATOR)[0]
            if "map" in result and (keep_maps is None or base in keep_maps):
                maps[name] = result["map"]
            valid[name] = result["valid"]
    import pandas as pd
    from pipelines.samples import SAMPLE_FIELDS
    meta = pd.DataFrame(crops.records, columns=list(SAMPLE_FIELDS))
    landmarks = np.stack(crops.landmarks) if n else np.zeros((0, 68, 2), np.float32)
    try:  # a full disk reaches here as a StoreWriteError (h5py raises RuntimeError)
        write_store(shard_path, meta, vectors, maps, attrs, valid, landmarks, errors,
                    source_meta=pd.DataFrame(crops.source_meta, index=range(n)))
    except OSError as exc:
        raise OSError(f"{exc}; {RESUME_HINT}") from exc
    return {"shard": str(shard_path), "resumed": False, "samples": n,
            "errors": dict(Counter(e["cause"] for e in errors))}


def _perturbed(batch, name, value, shard_path):
    """``batch`` with its crops perturbed; the seed follows the shard so reruns agree."""
    from extract.registry import FaceBatch
    from pipelines.perturb import apply_perturbation
    seed = int(hashlib.sha1(f"{Path(shard_path).name}:{name}:{value}".encode()).hexdigest()[:8], 16)
    images = apply_perturbation(batch.images, name, value, seed=seed)
    return FaceBatch(images, batch.landmarks, batch.masks, batch.mask_valid, batch.video_ids,
                     batch.frame_indices)


def _shard_counts(path: Path) -> dict:
    from stores import open_store
    with open_store(path) as shard:
        errors = shard.errors
        return {"samples": len(shard), "errors": dict(Counter(errors["cause"]))}


# -- command line ---------------------------------------------------------------------------
def build_parser() -> CLIParser:
    from pipelines.datasets import DATASETS
    p = CLIParser(prog="python -m pipelines.extract",
                  description="Extract features from a data set into an HDF5 feature store.")
    p.add_argument("--dataset", default="demo",
                   help=f"data set layout: {', '.join(DATASETS)} (demo needs no --root)")
    p.add_argument("--root", help="data set folder (not needed for demo)")
    p.add_argument("--features", default=DEFAULT_FEATURES,
                   help="comma-separated extractor names; `--list-features` shows them")
    p.add_argument("--list-features", action="store_true", help="list extractors and exit")
    p.add_argument("--maps", default="default",
                   help="which features also store their map (N x H x W x C): default "
                        f"({','.join(DEFAULT_MAPS)}), all, none, or a comma list")
    p.add_argument("--perturb", default="",
                   help="also store every feature computed on perturbed crops, as "
                        "<feature>@<spec> (e.g. lbp@jpeg:50), for robustness reports; "
                        "specs: jpeg:Q, blur:SIGMA, noise:STD, resize:F, gamma:G")
    p.add_argument("--out", help="output store (.h5); default: <dataset>.h5 in the current folder")
    p.add_argument("--frames", type=int, default=32, help="frames sampled uniformly per video")
    p.add_argument("--clip-len", type=int, default=1,
                   help="consecutive frames taken at each sampled position (temporal features)")
    p.add_argument("--size", type=int, default=256, help="side of the aligned square crop, pixels")
    p.add_argument("--margin", type=float, default=0.3,
                   help="context around the face in the crop, as a fraction of the face size")
    p.add_argument("--align", choices=("face", "none"), default=None,
                   help="face: detect, landmark and align; none: centre-crop and resize "
                        "(default: face, except none for demo and editbench)")
    p.add_argument("--detector", default="dlib-hog", help="face detector (pipelines.faces)")
    p.add_argument("--fallback-detector", default="none",
                   help="slow detector the cascade tries last on frames where the others "
                        "find no face: none or dlib-cnn (seconds per frame on a CPU)")
    p.add_argument("--faces", default="largest",
                   help="largest: one sample per frame; all: one per face, its index in the "
                        "sample id")
    p.add_argument("--neighbours", type=int, default=2,
                   help="a sampled video frame without a face is replaced by the nearest of "
                        "its +-K neighbours with one (0: off; only with --clip-len 1)")
    p.add_argument("--min-face", type=int, default=40,
                   help="faces smaller than this (pixels, shorter box side) are recorded as errors")
    p.add_argument("--compression", default="c23", help="ff++ only: c0, c23 or c40")
    p.add_argument("--methods", help="ff++ only: comma-separated manipulation methods "
                                     "(default: every method present)")
    p.add_argument("--no-diff-masks", action="store_true",
                   help="do not derive masks from paired real videos for fakes without mask files")
    p.add_argument("--clip-model", default=None,
                   help="open_clip model of the clip feature (default ViT-B-32; ViT-L-14 works)")
    p.add_argument("--clip-weights", default=None,
                   help="local open_clip checkpoint for clip (or set CLMF_CLIP_WEIGHTS); "
                        "required by --features clip")
    p.add_argument("--cnn-model", default=None,
                   help="cnn backbone: efficientnet-lite0 (default, offline ImageNet weights) "
                        "or timm:NAME with --cnn-weights")
    p.add_argument("--cnn-weights", default=None, help="local checkpoint for --cnn-model timm:NAME")
    p.add_argument("--cascade-run", default=None, metavar="RUN",
                   help="trained cascade run folder (python -m fusion.cascade train --out RUN) "
                        "for the cascade feature (or set CLMF_CASCADE_RUN); required by "
                        "--features cascade")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="device of the deep features (auto: CUDA when available)")
    p.add_argument("--deep-batch-size", type=int, default=32,
                   help="images per forward pass of the deep features")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="Dask worker processes of the local cluster; 0 runs in this process")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler "
                                       "(tcp://host:8786); the store folder must be shared; "
                                       "GPU features go to workers started with "
                                       "--resources GPU=1")
    p.add_argument("--connect-timeout", type=float, default=10.0,
                   help="seconds to wait for --scheduler to answer before giving up")
    p.add_argument("--dashboard", nargs="?", const=":8787", default=None, metavar="ADDRESS",
                   help="serve the Dask dashboard of the local cluster (at ADDRESS, "
                        "default :8787) and print its link; off unless given (the pages "
                        "need the bokeh package)")
    p.add_argument("--limit", type=int, help="only the first N videos/images (for trials)")
    p.add_argument("--images-per-task", type=int, default=16,
                   help="images grouped into one Dask task (videos are one task each)")
    p.add_argument("--keep-shards", action="store_true",
                   help="keep the per-task shard files after the merge")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _check_writable(out: Path):
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder, not a store file")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"--out: folder {folder} does not exist")
    probe = folder / f".clmf-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--out: cannot write in {folder} ({exc.strerror})") from None


def validate(args) -> tuple:
    """Check every flag before any work; returns (sources, features, config, out)."""
    from extract.registry import parse_feature_list
    from pipelines.datasets import DATASETS, index_dataset
    if args.dataset not in DATASETS:
        raise UsageError(f"--dataset: unknown data set {args.dataset!r}; "
                         f"choose one of {', '.join(DATASETS)}")
    for flag, value, low in (("--frames", args.frames, 1), ("--clip-len", args.clip_len, 1),
                             ("--size", args.size, 32), ("--workers", args.workers, 0),
                             ("--images-per-task", args.images_per_task, 1)):
        if value < low:
            raise UsageError(f"{flag} must be at least {low}, got {value}")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    if not 0 <= args.margin <= 2:
        raise UsageError(f"--margin must be between 0 and 2, got {args.margin}")
    features = parse_feature_list(args.features)
    from pipelines.perturb import parse_perturbations
    try:
        perturbations = parse_perturbations(args.perturb) if args.perturb else []
    except ValueError as exc:
        raise UsageError(f"--perturb: {exc}") from None
    align = args.align or ("face" if args.dataset in FACE_DATASETS + ("folder",) else "none")
    if align == "face":
        from pipelines.faces import DETECTORS
        if args.detector not in DETECTORS:
            raise UsageError(f"--detector: unknown detector {args.detector!r}; "
                             f"choose one of {', '.join(DETECTORS)}")
        if args.fallback_detector != "none" and args.fallback_detector not in DETECTORS:
            raise UsageError(f"--fallback-detector: unknown detector {args.fallback_detector!r}; "
                             f"choose none or one of {', '.join(DETECTORS)}")
        if "dlib-cnn" in (args.detector, args.fallback_detector):
            from pipelines.faces import dlib_has_cuda
            if not dlib_has_cuda():
                print("warning: dlib-cnn runs on the CPU (this dlib has no CUDA): it costs "
                      "seconds per frame", file=sys.stderr)
    if args.neighbours < 0:
        raise UsageError(f"--neighbours must be at least 0, got {args.neighbours}")
    from pipelines.ingest import FACE_MODES
    if args.faces not in FACE_MODES:
        raise UsageError(f"--faces must be one of {', '.join(FACE_MODES)}, got {args.faces!r}")
    if args.scheduler and not args.connect_timeout > 0:
        raise UsageError(f"--connect-timeout must be above 0 seconds, got {args.connect_timeout}")
    if args.deep_batch_size < 1:
        raise UsageError(f"--deep-batch-size must be at least 1, got {args.deep_batch_size}")
    params = feature_params(args, features)
    keep_maps = parse_maps(args.maps, features, params)
    # building each extractor here makes missing weights stop the run before any work
    needs_landmarks = [f for f in features if "landmarks" in _extractor(f, params.get(f)).needs]
    if needs_landmarks and align != "face" and args.dataset != "editbench":
        raise UsageError(f"--features {','.join(needs_landmarks)} need facial landmarks, "
                         "which --align none does not produce; use --align face "
                         "(editbench manifests carry their own landmarks)")
    options = {}
    if args.dataset == "ff++":
        options["compression"] = args.compression
        if args.methods:
            options["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    with warnings.catch_warnings(record=True) as caught:  # skipped files: one line each
        warnings.simplefilter("always", UserWarning)
        sources = index_dataset(args.dataset, args.root, **options)
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if args.limit:
        sources = sources[:args.limit]
    if not sources:
        raise UsageError(f"--root {args.root}: no videos or images found for --dataset {args.dataset}")
    out = Path(args.out or f"{args.dataset.replace('+', 'p')}.h5")
    _check_writable(out)
    config = IngestConfig(frames=args.frames, clip_len=args.clip_len, size=args.size,
                          margin=args.margin, align=align, detector=args.detector,
                          min_face=args.min_face, diff_masks=not args.no_diff_masks,
                          faces=args.faces, neighbours=args.neighbours,
                          fallback_detector=None if args.fallback_detector == "none"
                          else args.fallback_detector)
    return sources, features, perturbations, params, keep_maps, config, out


def parse_maps(text: str, features, params) -> set | None:
    """``--maps`` -> the set of features whose maps are stored (None: all)."""
    from extract.registry import list_extractors
    text = text.strip()
    if text == "all":
        return None
    keep = set(DEFAULT_MAPS) if text == "default" else set() if text == "none" else \
        {t.strip() for t in text.split(",") if t.strip()}
    unknown = keep - set(list_extractors())
    if unknown:
        raise UsageError(f"--maps: unknown feature(s) {','.join(sorted(unknown))}; "
                         "give default, all, none or feature names")
    map_only = [f for f in features if f not in keep
                 and "vector" not in _extractor(f, params.get(f)).outputs(64)]
    if map_only:
        raise UsageError(f"--maps leaves out {','.join(map_only)}, which has only a map; "
                         f"add it to --maps")
    return keep


def _run_identity(args, config: IngestConfig) -> dict:
    """What makes two runs produce the same samples (compared before adding features)."""
    return {"dataset": args.dataset, "root": str(Path(args.root).resolve()) if args.root else None,
            "compression": args.compression if args.dataset == "ff++" else None,
            "methods": args.methods, "limit": args.limit, **asdict(config)}


def _existing_features(out: Path, identity: dict) -> set:
    """Features already in ``out`` (empty if it does not exist); refuses a mismatched store."""
    if not out.exists():
        return set()
    from stores import StoreError, open_store
    try:
        with open_store(out) as store:
            run = store.run
            have = set(store.features) | set(store.maps)
    except StoreError as exc:
        raise UsageError(f"--out: {exc}") from None
    differs = {k: (run.get(k), v) for k, v in identity.items() if run.get(k) != v}
    if differs:
        detail = "; ".join(f"{k}: store {a!r} vs now {b!r}" for k, (a, b) in differs.items())
        raise UsageError(f"--out {out} was extracted with other settings ({detail}); "
                         "choose another --out or delete it")
    return have


def uses_gpu(features, params) -> bool:
    """Whether any of ``features`` will run on CUDA (deep extractors resolve ``--device``)."""
    return any(getattr(_extractor(f, params.get(f)), "device", "cpu") == "cuda" for f in features)


def _client(args, workers: int):
    """A Dask client: on ``--scheduler`` (checked to answer within ``--connect-timeout``) or
    on a local cluster, which serves a dashboard only with ``--dashboard``."""
    from dask.distributed import Client, LocalCluster
    if args.scheduler:
        try:
            client = Client(args.scheduler, timeout=args.connect_timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageError(f"--scheduler {args.scheduler}: no Dask scheduler answered within "
                             f"{args.connect_timeout:g} s ({type(exc).__name__}); check the "
                             "address or raise --connect-timeout") from None
        cluster = None
    else:
        # the scheduler's HTTP server (health, metrics) binds any free port, not 8787, so
        # that no "port 8787 is already in use" warning is printed when nobody asked for it
        http = {"dashboard": True, "dashboard_address": args.dashboard} if args.dashboard else \
            {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
        # CRITICAL: a failed task (a full disk) is re-raised here as one line; the worker's
        # own "Compute Failed" log would repeat it with a traceback
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, scheduler_kwargs=http,
                               silence_logs=logging.CRITICAL)
        client = Client(cluster)
    if args.dashboard:
        print(f"dashboard: {client.dashboard_link}", file=sys.stderr)
    return client, cluster


def run_tasks(tasks, args, gpu: bool = False):
    """Run ``tasks`` (partition arguments) in this process or on Dask; yields results.

    With ``gpu``, one worker owns the GPU: the local cluster gets a single worker (models
    load once, batches stay on one device), and on an existing scheduler the tasks ask
    for the ``GPU`` resource, so only workers started with ``--resources GPU=1`` run them.
    """
    from tqdm import tqdm
    in_process = args.workers == 0 and not args.scheduler
    if not in_process:
        workers = args.workers
        if gpu and not args.scheduler and workers > 1:
            print("note: deep features run on the GPU, which one worker owns: 1 worker for "
                  "this run (extract CPU-only features in another run to use every core)",
                  file=sys.stderr)
            workers = 1
        client, cluster = _client(args, workers)  # before the bar: a dead scheduler fails here
    bar = tqdm(total=len(tasks), unit="task", desc="extract", disable=args.no_progress,
               file=sys.stderr)
    try:
        if in_process:
            for task in tasks:
                yield process_partition(*task)
                bar.update()
            return
        from dask.distributed import as_completed
        resources = {"GPU": 1} if gpu and args.scheduler else None
        try:
            futures = [client.submit(process_partition, *task, pure=False, resources=resources)
                       for task in tasks]
            for future in as_completed(futures):
                yield future.result()
                bar.update()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    finally:
        bar.close()


def extract(args) -> dict:
    """Run an extraction described by parsed ``args``; returns the summary.

    The run holds the lock of ``<out>.shards/`` from its first read of ``--out`` to the end.
    """
    t0 = time.perf_counter()
    validated = validate(args)
    out = validated[-1]
    shards_root = out.with_name(out.name + ".shards")
    lock = take_lock(shards_root, f"--out {out}")
    try:
        return _extract_locked(args, t0, *validated)
    finally:
        release_lock(lock)
        try:
            shards_root.rmdir()  # only when no shards are left in it
        except OSError:
            pass


def _extract_locked(args, t0, sources, features, perturbations, params, keep_maps, config,
                    out) -> dict:
    identity = _run_identity(args, config)
    have = _existing_features(out, identity)
    jobs = _feature_jobs(features, perturbations)
    todo = [f for f in features if any(store_name not in have and base == f
                                       for store_name, base, _ in jobs)]
    todo_perturb = [p for p in perturbations
                    if any(store_name not in have for store_name, _, q in jobs if q == p)]
    summary = {"store": str(out), "dataset": args.dataset, "sources": len(sources),
               "features_added": todo, "features_kept": sorted(set(features) & have - set(todo))}
    if not todo:
        summary.update(samples=None, errors={}, wall_s=round(time.perf_counter() - t0, 2),
                       note="every requested feature is already in the store")
        return summary
    parts = plan_partitions(sources, args.images_per_task)
    work = {**identity, "features": todo, "perturb": todo_perturb,
            "maps": sorted(keep_maps) if keep_maps is not None else "all",
            "params": {f: _extractor(f, params.get(f)).attributes()["params"] for f in todo}}
    shard_dir = out.with_name(out.name + ".shards") / _digest(work)
    shard_dir.mkdir(parents=True, exist_ok=True)
    (shard_dir / "run.json").write_text(json.dumps(work, indent=1))
    tasks = [(part, todo, config, str(shard_dir / shard_name(i, part)), todo_perturb, params,
              keep_maps) for i, part in enumerate(parts)]
    results = list(run_tasks(tasks, args, gpu=uses_gpu(todo, params)))
    shards = [t[3] for t in tasks]
    for stale in out.parent.glob(f"{glob_escape(out.name)}.*.tmp"):
        stale.unlink(missing_ok=True)  # a killed merge's; this run holds --out's lock
    try:
        if have:
            from stores import add_features
            add_features(out, shards)
        else:
            from stores import merge_shards
            merge_shards(shards, out, run=identity)
    except OSError as exc:
        raise OSError(f"{exc}; {RESUME_HINT}") from exc
    if not args.keep_shards:
        shutil.rmtree(shard_dir, ignore_errors=True)
    wall = time.perf_counter() - t0
    n = sum(r["samples"] for r in results)
    errors = Counter()
    for r in results:
        errors.update(r["errors"])
    summary.update(samples=n, errors=dict(errors), tasks=len(tasks),
                   resumed_tasks=sum(r["resumed"] for r in results),
                   wall_s=round(wall, 2), samples_per_s=round(n / wall, 2) if wall else None)
    return summary


def format_summary(s: dict) -> str:
    lines = [f"store        {s['store']}", f"dataset      {s['dataset']} ({s['sources']} sources)"]
    if s.get("note"):
        lines.append(f"note         {s['note']}")
    else:
        lines.append(f"features     {','.join(s['features_added'])} added"
                     + (f"; {','.join(s['features_kept'])} kept" if s["features_kept"] else ""))
        lines.append(f"samples      {s['samples']}  ({s['resumed_tasks']} of {s['tasks']} tasks "
                     "resumed from an earlier run)")
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(s["errors"].items())) or "none"
        lines.append(f"failures     {errors}")
        lines.append(f"wall time    {s['wall_s']} s, {s['samples_per_s']} samples/s")
        lines.append(next_line("python -m stores.info", s["store"]))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_features:
        from extract.registry import list_extractors
        print("\n".join(list_extractors()))
        return 0
    return run_cli(parser.prog, lambda: print(format_summary(extract(args))))


if __name__ == "__main__":
    sys.exit(main())
