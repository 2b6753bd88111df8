"""Confound audit: can a model that sees only file metadata tell the reals from the fakes?

::

    python -m fusion.audit --store S.h5 [--test-store OTHER.h5 ...] [--head logreg] [--out DIR]

Its inputs are the facts ``pipelines.extract`` records about every sample's source
(``stores.schema.SOURCE_META_FIELDS``): image width and height, file size, JPEG or not,
JPEG quality and quantisation-table mean, face-box width and height, video bitrate. The
metadata model is a ``concat`` head on that one block, trained and evaluated exactly like a
head in :mod:`fusion.train`: fitted on train, hyper-parameter and EER threshold on val,
reported on test and on each ``--test-store``. ``fusion.train`` runs it beside every model
and reports it under ``metrics.json["baselines"]["metadata"]``.

When the metadata model comes within :data:`MARGIN` AUC of the detector (the warning says
"within"), lies above it by more (it says "above the detector"), or exceeds
:data:`HIGH_AUC` on its own, the detector's number may measure the data set's file
history rather than manipulation artifacts, and a warning says so. A store extracted
before source metadata was recorded cannot be audited; the result says so instead.
"""
from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from base.cli import CLIParser, at_least, run_cli
from base.errors import UsageError
from base.outputs import add_overwrite_flag, claim_output_dir
from fusion import heads, metrics, scoring
from stores.info import next_command
from stores.schema import SOURCE_META_FIELDS

#: A metadata model within this AUC of the detector earns a warning.
MARGIN = 0.05
#: A metadata model above this AUC earns a warning on its own.
HIGH_AUC = 0.75
BLOCK = "metadata"
NO_METADATA = ("store {} has no source metadata (extracted before it was recorded): "
               "re-extract it with `python -m pipelines.extract` to audit it")


def metadata_split(store, split=None) -> heads.FusionData | None:
    """One split of the store's source metadata as a single block ``metadata`` (N x 9), or None."""
    table = store.source_meta
    if table is None:
        return None
    idx = store.select(split=split)
    meta = store.meta.iloc[idx].reset_index(drop=True)
    x = table.iloc[idx][list(SOURCE_META_FIELDS)].to_numpy(np.float32)
    return heads.FusionData({BLOCK: x}, meta["label"].to_numpy(np.int64), meta)


def metadata_baseline(store, others=(), other_paths=(), head: str = "logreg", seed: int = 0,
                      n_boot: int = 1000) -> dict:
    """Train and evaluate the metadata-only model on an opened store (and score ``others``).

    Returns ``{"inputs", "known", "head", "threshold", "threshold_from", "val", "test",
    "cross", "warnings"}`` like a :mod:`fusion.train` result, or ``{"note": ...}`` when the
    store has no metadata or train lacks a class. ``known`` lists the fields that are
    recorded (not all NaN) on train: the others carry nothing and are neutralised.
    """
    splits = {s: metadata_split(store, s) for s in ("train", "val", "test")}
    if splits["train"] is None:
        return {"note": NO_METADATA.format(scoring.store_path_of(store))}
    if len(splits["train"]) == 0 or len(np.unique(splits["train"].y)) < 2:
        return {"note": "split 'train' lacks reals or fakes: no metadata model"}
    x = splits["train"].blocks[BLOCK]
    model = heads.create_fusion("concat", [BLOCK], head=head, seed=seed)
    result, _ = scoring.fit_and_evaluate(model, splits, n_boot, seed)
    result = {"inputs": list(SOURCE_META_FIELDS),
              "known": [f for f, ok in zip(SOURCE_META_FIELDS, np.isfinite(x).any(axis=0)) if ok],
              "head": head, **result, "cross": {}}
    for path, other in zip(other_paths, others):
        data = metadata_split(other, scoring.cross_split(other))
        stem = Path(path).stem
        result["cross"][stem] = ({"note": NO_METADATA.format(path)} if data is None else
                                 scoring.evaluate_scores(scoring.model_scores(model, data),
                                                       result["threshold"], n_boot, seed))
    result["warnings"] = scoring.run_warnings(result)
    return result


def confound_warnings(result: dict, baseline: dict) -> list[str]:
    """Warnings where the metadata model rivals the detector (``result``: a train result)."""
    if baseline.get("note"):
        return [f"no metadata baseline: {baseline['note']}"]
    out = []
    sets = [("test", result.get("test", {}), baseline.get("test", {}))] + [
        (f"cross {k}", m, baseline.get("cross", {}).get(k, {})) for k, m in result.get("cross", {}).items()]
    for name, m, b in sets:
        head_auc, meta_auc = m.get("auc"), b.get("auc")
        if meta_auc is None or not np.isfinite(meta_auc):
            continue
        if meta_auc > HIGH_AUC:
            out.append(f"{name}: the metadata-only model reaches AUC {meta_auc:.3f} (> {HIGH_AUC}): "
                       "file size, resolution, encoding or face size alone separate the classes")
        if head_auc is None or not np.isfinite(head_auc) or meta_auc < head_auc - MARGIN:
            continue
        if meta_auc > head_auc + MARGIN:  # not "within": the metadata alone does better
            out.append(f"{name}: the metadata-only model (AUC {meta_auc:.3f}) is above the detector "
                       f"(AUC {head_auc:.3f}) by {meta_auc - head_auc:.3f}: file facts alone separate "
                       "the classes better than the detector does")
        else:
            out.append(f"{name}: the metadata-only model (AUC {meta_auc:.3f}) is within {MARGIN} of "
                       f"the detector (AUC {head_auc:.3f}): the detector may read the confound")
    return out


def audit_run(store_path, test_stores=(), head: str = "logreg", seed: int = 0, n_boot: int = 1000,
              out=None, verbose: bool = True) -> dict:
    """Open the stores, run :func:`metadata_baseline`, write ``out/audit.json``. Returns the result."""
    if head not in heads.SKLEARN_HEADS:
        raise UsageError(f"--head: unknown head {head!r}; choose from {', '.join(heads.SKLEARN_HEADS)}")
    store = scoring.open_store_or_usage(store_path)
    if store.source_meta is None:
        raise UsageError(f"--store: {NO_METADATA.format(store_path)}")
    others = [scoring.open_store_or_usage(p, "--test-store") for p in test_stores]
    result = metadata_baseline(store, others, test_stores, head, seed, n_boot)
    if not result.get("note"):
        result["warnings"] += confound_warnings({"test": {}, "cross": {k: {} for k in result["cross"]}}, result)
    result["store"] = str(store_path)
    result["provenance"] = scoring.provenance([store_path, *test_stores], seed,
                                            {"store": str(store_path), "test_stores": list(map(str, test_stores)),
                                             "head": head, "seed": seed, "bootstrap": n_boot})
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "audit.json").write_text(json.dumps(metrics.to_jsonable(result), indent=2))
    if verbose:
        print(summary(result))
        step = next_command(store)  # train a detector on the store's features
        if step:
            print(step)
    return result


def summary(result: dict) -> str:
    if result.get("note"):
        return f"metadata audit of {result.get('store')}: {result['note']}"
    lines = [f"metadata-only model ({result['head']}) on {', '.join(result['known']) or 'no known field'}; "
             f"threshold from {result['threshold_from']}",
             f"{'set':<16}{'n_real':>8}{'n_fake':>8}{'AUC':>8}{'EER':>8}"]
    for name, m in [("val", result["val"]), ("test", result["test"])] + list(result["cross"].items()):
        lines.append(f"{name:<16}{m.get('n_real', 0):>8}{m.get('n_fake', 0):>8}"
                     f"{scoring._fmt(m.get('auc')):>8}{scoring._fmt(m.get('eer')):>8}"
                     + (f"  {m['note']}" if m.get("note") else ""))
    lines += scoring.warning_lines(result["warnings"])
    return "\n".join(lines)


def build_parser():
    p = CLIParser(prog="python -m fusion.audit", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="feature store (.h5)")
    p.add_argument("--test-store", action="append", default=[], metavar="STORE",
                   help="another store to score with the metadata model (repeatable)")
    p.add_argument("--head", default="logreg", help=f"sklearn head: {', '.join(heads.SKLEARN_HEADS)} "
                   "(default logreg)")
    p.add_argument("--out", default=None,
                   help="folder for audit.json; one that holds files is refused unless "
                        "--overwrite (default: print only)")
    p.add_argument("--seed", type=at_least(0), default=0, help="random seed (default 0)")
    p.add_argument("--bootstrap", type=at_least(0), default=1000,
                   help="bootstrap resamples for CIs (0 = none)")
    add_overwrite_flag(p)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def work():
        claim = (nullcontext() if args.out is None else
                 claim_output_dir(args.out, overwrite=args.overwrite,
                                  inputs=[args.store, *args.test_store]))
        with claim:
            audit_run(args.store, args.test_store, args.head, args.seed, args.bootstrap, args.out)
    return run_cli(parser.prog, work)


if __name__ == "__main__":
    sys.exit(main())
