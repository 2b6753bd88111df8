"""Train a fusion head on a feature store and report val / test / cross-store metrics.

::

    python -m fusion.train --store S.h5 --features lbp,dct --fusion concat --head logreg \\
        --out RUN_DIR [--test-store OTHER.h5 ...] [--seed 0] [--param epochs=50 ...] \\
        [--perturb jpeg:50,blur:1.5 | --perturb all]

* ``--store`` is required: there is no hidden default, so a run never trains on another
  job's store without saying so.
* The head is fitted on split ``train``; its hyper-parameters (C grid for the linear heads,
  learning rate for GBM, early stopping for torch heads) and the decision threshold (the
  EER threshold) are chosen on ``val``; ``test`` is only reported. Without val samples the
  threshold comes from train, and metrics.json says so.
* NaN feature values (rows an extractor could not compute, ``valid`` False) are imputed with
  the train-column mean inside the head, so the same imputation is saved with the model.
* Each ``--test-store`` is scored on its ``test`` split, or on all its samples when it has
  no test split (a cross-data-set store usually has one split only).
* ``--perturb`` also scores the test split of perturbed crops: each feature ``lbp`` is
  swapped for ``lbp@jpeg:50``, stored by ``python -m pipelines.extract ... --perturb jpeg:50``
  (see :mod:`fusion.robustness`); ``all`` takes every perturbation the store has for all
  the features. A spec the store lacks stops the run before any work.

Writes into ``RUN_DIR``: ``metrics.json`` (features, fusion, head, threshold, val, test,
cross, robustness), ``scores.csv`` (sample_id, split, label, method, video_id, score for val
and test rows), ``scores_<store stem>.csv`` per test store, ``model/`` (model.json + weights,
see :mod:`fusion.modelio`) and ``roc.png``, ``det.png``, ``scores.png`` for the test split;
with ``--perturb`` also ``robustness.png`` (AUC and EER against perturbation strength).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fusion import heads, metrics, plots
from pipelines.cli import CLIParser, run_cli
from pipelines.errors import UsageError

SCORE_COLUMNS = ["sample_id", "split", "label", "method", "video_id", "score"]
COMPARED_ATTRS = ("extractor", "version", "params", "shape")


def load_split(store, features, split=None, inputs="vector") -> heads.FusionData:
    """One split of ``store`` as per-feature blocks (vectors N x D, or maps N x H x W x C)."""
    blocks, y, meta = {}, None, None
    for f in features:
        if inputs == "map":
            x, meta_f = store.read_map(f, split=split)
            y_f = meta_f["label"].to_numpy(np.int64)
        else:
            x, y_f, meta_f = store.read([f], split=split)
        if meta is None:
            y, meta = y_f, meta_f
        elif not np.array_equal(meta["sample_id"].to_numpy(), meta_f["sample_id"].to_numpy()):
            raise RuntimeError(f"store returned differently ordered rows for feature {f!r}")
        blocks[f] = x
    return heads.FusionData(blocks, y, meta)


def feature_attrs(store, features) -> dict:
    """The store attributes worth comparing across stores, JSON-ready, per feature."""
    out = {}
    for f in features:
        a = store.attrs(f)
        out[f] = {"extractor": a.get("extractor"), "version": a.get("version"), "params": a.get("params"),
                  "shape": list(a.get("shape", ())), "code_version": a.get("code_version")}
    return out


def attr_mismatches(recorded: dict, store, inputs="vector") -> list[str]:
    """Why ``store`` cannot feed a model trained on features with ``recorded`` attributes.

    One message per problem, naming the feature and the difference ("lbp: params differ:
    radius 1 -> 2"). ``code_version`` differences are not errors.
    """
    available = store.maps if inputs == "map" else store.features
    problems = []
    for f, want in recorded.items():
        if f not in available:
            problems.append(f"feature {f!r} is missing from {store_path_of(store)} "
                            f"(it has {', '.join(available) or 'none'})")
            continue
        have = feature_attrs(store, [f])[f]
        for key in COMPARED_ATTRS:
            a, b = want.get(key), have.get(key)
            if key == "params" and isinstance(a, dict) and isinstance(b, dict) and a != b:
                diffs = [f"{k} {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}"
                         for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
                problems.append(f"feature {f!r}: params differ: {', '.join(diffs)}")
            elif json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
                problems.append(f"feature {f!r}: {key} differs: model {a!r}, store {b!r}")
    return problems


def store_path_of(store) -> str:
    return str(getattr(store, "path", "the store"))


def open_store_or_usage(path, flag="--store"):
    import stores
    if path is None:
        raise UsageError(f"{flag}: give the feature store (.h5) to read")
    if not Path(path).is_file():
        raise UsageError(f"{flag}: store file not found: {path}")
    try:
        return stores.open_store(path)
    except (stores.StoreError, OSError) as e:  # a bad file is a bad flag value here
        raise UsageError(f"{flag}: cannot open {path}: {e}") from e


def scores_frame(data: heads.FusionData, scores) -> pd.DataFrame:
    """One row per sample: :data:`SCORE_COLUMNS`."""
    meta = data.meta
    df = pd.DataFrame({
        "sample_id": meta["sample_id"].astype(str).to_numpy(),
        "split": meta["split"].astype(str).to_numpy(),
        "label": np.asarray(data.y, np.int64), "method": meta["method"].astype(str).to_numpy(),
        "video_id": meta["video_id"].astype(str).to_numpy(), "score": np.asarray(scores, np.float64)})
    return df[SCORE_COLUMNS]


def evaluate_scores(frame: pd.DataFrame, threshold: float, n_boot: int, seed: int) -> dict:
    """metrics.compute_metrics on a scores frame; an empty one gives a note."""
    if frame.empty:
        return {"note": "no samples", "n_real": 0, "n_fake": 0}
    return metrics.compute_metrics(frame["label"], frame["score"], frame["method"], frame["video_id"],
                                   threshold=threshold, n_boot=n_boot, seed=seed)


def write_plots(frame: pd.DataFrame, out: Path, threshold: float, prefix="", title="test"):
    if frame.empty or frame["label"].nunique() < 2:
        return []
    y, s, m = frame["label"].to_numpy(), frame["score"].to_numpy(), frame["method"].to_numpy()
    return [plots.roc_plot(y, s, out / f"{prefix}roc.png", methods=m, title=f"ROC ({title})"),
            plots.det_plot(y, s, out / f"{prefix}det.png", methods=m, title=f"DET ({title})"),
            plots.score_histograms(s, m, out / f"{prefix}scores.png", threshold=threshold,
                                   title=f"Scores by method ({title})")]


def parse_params(items) -> dict:
    """``["epochs=50", "mode=self"]`` -> ``{"epochs": 50, "mode": "self"}`` (JSON values or strings)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"--param: expected KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


#: Types of the hyper-parameters that have no default value in their head's class.
PARAM_TYPES = {"k": int, "size": int, "groups": str}


def check_param_types(fusion: str, params: dict):
    """Raise UsageError when a ``--param`` value has the wrong type for ``fusion``.

    A parameter's type is that of the head's default (``epochs=100``: a whole number), or
    :data:`PARAM_TYPES`; numbers must not be negative, whole numbers must be at least 1.
    """
    defaults = getattr(heads.FUSIONS.get(fusion), "defaults", {})
    for key, value in params.items():
        want = type(defaults[key]) if key in defaults else PARAM_TYPES.get(key)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if want is int:
            ok, expected = number and float(value).is_integer() and value >= 1, "a whole number >= 1"
        elif want is float:
            ok, expected = number and value >= 0, "a number >= 0"
        elif want is str:
            ok, expected = isinstance(value, str), "text"
        else:
            continue
        if not ok:
            raise UsageError(f"--param {key}: fusion {fusion!r} expects {expected}, got {value!r}")


def validate_run(store, features, fusion, head, test_stores=(), params=None):
    """Check every flag against the registry and the store; raise UsageError before any work."""
    if fusion not in heads.FUSIONS:
        raise UsageError(f"--fusion: unknown fusion {fusion!r}; choose from {', '.join(heads.list_fusions())}")
    if head not in heads.SKLEARN_HEADS:
        raise UsageError(f"--head: unknown head {head!r}; choose from {', '.join(heads.SKLEARN_HEADS)}")
    if not features:
        raise UsageError("--features: give at least one feature name")
    if len(set(features)) != len(features):
        raise UsageError(f"--features: duplicate names in {','.join(features)}")
    try:
        heads.FUSIONS[fusion].check_params(features, params or {})
    except ValueError as e:
        raise UsageError(f"--param: {e}") from None
    check_param_types(fusion, params or {})
    inputs = heads.FUSIONS[fusion].inputs
    available = store.maps if inputs == "map" else store.features
    missing = [f for f in features if f not in available]
    if missing:
        kind = "map" if inputs == "map" else "vector"
        raise UsageError(f"--features: {', '.join(missing)} not among the {kind} features of "
                         f"{store_path_of(store)} ({', '.join(available) or 'none'})")
    recorded = feature_attrs(store, features)
    for other in test_stores:
        problems = attr_mismatches(recorded, other, inputs)
        if problems:
            raise UsageError(f"--test-store {store_path_of(other)}: {problems[0]}"
                             + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
    return inputs


def cross_split(store) -> str | None:
    """The split of a cross-evaluation store to score: "test" if it has one, else all rows."""
    return "test" if (store.meta["split"] == "test").any() else None


def train_run(store_path, features, fusion="concat", head="logreg", out="run", test_stores=(),
              seed=0, params=None, n_boot=1000, plots_on=True, verbose=True, perturb=None) -> dict:
    """Fit, choose the threshold on val, evaluate, and write the run directory. Returns metrics.

    ``perturb`` is a ``--perturb`` value (None, "all" or "jpeg:50,blur:1.5").
    """
    from fusion import robustness  # it builds on this module's loaders
    t0 = time.time()
    store = open_store_or_usage(store_path)
    others = [open_store_or_usage(p, "--test-store") for p in test_stores]
    inputs = validate_run(store, features, fusion, head, others, params)
    specs = robustness.resolve_perturbations(store, features, perturb, inputs)
    out = Path(out)
    splits = {s: load_split(store, features, s, inputs) for s in ("train", "val", "test")}
    if len(splits["train"]) == 0:
        raise UsageError(f"--store {store_path}: split 'train' has no samples "
                         f"(splits present: {', '.join(sorted(store.meta['split'].unique())) or 'none'})")
    if splits["train"].y.min() == splits["train"].y.max():
        raise UsageError(f"--store {store_path}: split 'train' has one class only "
                         f"(label {int(splits['train'].y[0])}); need reals and fakes")
    model = heads.create_fusion(fusion, features, head=head, seed=seed, **(params or {}))
    val = splits["val"] if len(splits["val"]) else None
    model.fit(splits["train"], val)

    frames = {s: scores_frame(d, model.predict_proba(d) if len(d) else [])
              for s, d in splits.items() if s != "train"}
    threshold_from = "val"
    if frames["val"].empty or frames["val"]["label"].nunique() < 2:
        threshold_from = "train"
        ref = scores_frame(splits["train"], model.predict_proba(splits["train"]))
    else:
        ref = frames["val"]
    threshold = metrics.threshold_at_eer(ref["label"], ref["score"])
    result = {"features": list(features), "fusion": fusion,
              "head": head if heads.FUSIONS[fusion].uses_head else None,
              "threshold": threshold, "threshold_from": threshold_from, "seed": seed,
              "store": str(store_path), "params": params or {}}
    for s in ("val", "test"):
        result[s] = evaluate_scores(frames[s], threshold, n_boot, seed)
        if frames[s].empty:
            result[s]["note"] = f"split {s!r} has no samples in {store_path}"
    out.mkdir(parents=True, exist_ok=True)
    pd.concat([frames["val"], frames["test"]], ignore_index=True).to_csv(out / "scores.csv", index=False)
    result["cross"] = {}
    for path, other in zip(test_stores, others):
        data = load_split(other, features, cross_split(other), inputs)
        frame = scores_frame(data, model.predict_proba(data) if len(data) else [])
        stem = Path(path).stem
        frame.to_csv(out / f"scores_{stem}.csv", index=False)
        result["cross"][stem] = evaluate_scores(frame, threshold, n_boot, seed)
        if plots_on:
            write_plots(frame, out, threshold, prefix=f"{stem}_", title=stem)
    result["robustness"] = robustness.evaluate_under_perturbations(model, store, features, specs, "test",
                                                                   threshold, n_boot, seed)
    if plots_on and specs:
        plots.robustness_curves({"test": result["robustness"]}, out / "robustness.png",
                                clean={"test": result["test"]}, title=f"Robustness ({fusion})")
    model.save(out / "model", extra={"threshold": threshold, "store": str(store_path),
                                     "feature_attrs": feature_attrs(store, features),
                                     "ingest": store.run})
    if plots_on:
        write_plots(frames["test"], out, threshold)
    result["seconds"] = round(time.time() - t0, 2)
    (out / "metrics.json").write_text(json.dumps(metrics.to_jsonable(result), indent=2))
    if verbose:
        print(summary(result, out))
    return result


def _fmt(x, digits=4):
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def summary(result: dict, out) -> str:
    """A one-screen summary of a run."""
    lines = [f"fusion {result['fusion']}" + (f" ({result['head']})" if result.get("head") else "")
             + f" on {', '.join(result['features'])}; threshold {_fmt(result['threshold'])} "
             f"(EER on {result['threshold_from']})",
             f"{'set':<16}{'n_real':>8}{'n_fake':>8}{'AUC':>8}{'EER':>8}{'FAR@1%':>8}{'vidAUC':>8}"]
    rows = [("val", result["val"]), ("test", result["test"])] \
        + [(f"test@{spec}", m) for spec, m in result.get("robustness", {}).items()] \
        + list(result.get("cross", {}).items())
    for name, m in rows:
        lines.append(f"{name:<16}{m.get('n_real', 0):>8}{m.get('n_fake', 0):>8}{_fmt(m.get('auc')):>8}"
                     f"{_fmt(m.get('eer')):>8}{_fmt(m.get('far_at_frr', {}).get('0.01')):>8}"
                     f"{_fmt(m.get('video', {}).get('auc')):>8}")
    lines.append(f"written to {out} in {result.get('seconds', 0)} s")
    return "\n".join(lines)


def build_parser() -> CLIParser:
    p = CLIParser(prog="python -m fusion.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="feature store (.h5) to train on")
    p.add_argument("--features", required=True, help="comma-separated feature names, e.g. lbp,dct")
    p.add_argument("--fusion", default="concat", help=f"fusion strategy: {', '.join(heads.list_fusions())} "
                   "(default concat)")
    p.add_argument("--head", default="logreg", help=f"sklearn classifier for concat and late fusions: "
                   f"{', '.join(heads.SKLEARN_HEADS)} (default logreg)")
    p.add_argument("--out", default="runs/latest", help="run directory (default runs/latest)")
    p.add_argument("--test-store", action="append", default=[], metavar="STORE",
                   help="another store to score with the trained model (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="fusion hyper-parameter, e.g. epochs=50, mode=self, pool=max, k=2, "
                        "groups='a,b;c', size=64 (repeatable)")
    p.add_argument("--perturb", default=None, metavar="SPECS|all",
                   help="also score the test split under perturbations stored by the extract CLI's "
                        "--perturb, e.g. jpeg:50,blur:1.5, or all of those in the store (default none)")
    add_report_flags(p)
    return p


def add_report_flags(p):
    """--bootstrap and --no-plots, shared by the train and evaluate CLIs."""
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for CIs (0 = none)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def work():
        features = [f.strip() for f in args.features.split(",") if f.strip()]
        params = parse_params(args.param)
        if args.bootstrap < 0:
            raise UsageError(f"--bootstrap: must be >= 0, got {args.bootstrap}")
        train_run(args.store, features, args.fusion, args.head, args.out,
                  args.test_store, args.seed, params, args.bootstrap, plots_on=not args.no_plots,
                  perturb=args.perturb)
    return run_cli(parser.prog, work)


if __name__ == "__main__":
    sys.exit(main())
