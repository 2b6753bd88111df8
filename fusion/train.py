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
* Metrics rank the heads' decision values (``logit`` in scores.csv), never the probability
  (``score``), which float64 rounds to exactly 1.0 above a logit of ~37; the threshold is on
  the logit too (``threshold_units``), with its probability beside it.
* ``--head`` picks the sklearn classifier of concat and the late fusions; giving it with a
  torch fusion (which trains its own network) is a usage error.
* Every set's warnings (too few videos per class, error-rate targets below 1/n, AUCs from
  one video, a threshold taken from train, a metadata-only baseline close to the head) are
  printed in the summary and kept in ``metrics.json["warnings"]``. ``baselines.metadata`` is
  the metadata-only model of :mod:`fusion.audit`, trained and evaluated like the head.
  ``provenance`` records the code version, the command line, the stores' SHA-256, the seed
  and the full configuration.
* Non-finite feature values: NaN and +-inf are treated alike, as missing (rows an extractor
  could not compute, ``valid`` False). They are imputed with the train-column mean inside
  the head, so the same imputation is saved with the model, and never pass silently: per
  split and feature, the rows holding one are counted (``metrics.json["nonfinite"]``) and a
  warning names the feature, the split and the count, and how many of those rows the store
  marks ``valid`` (a damaged store or an extractor bug; ``stores.info --check`` fails it).
  ``fusion.evaluate``, ``fusion.ablate``, ``fusion.predict`` and
  :class:`fusion.sklearn.FusionClassifier` follow the same policy
  (:func:`fusion.scoring.nonfinite_counts`).
* Each ``--test-store`` is scored on its ``test`` split, or on all its samples when it has
  no test split (a cross-data-set store usually has one split only).
* A stacked feature (``cascade``: a trained model) must not meet the rows it was trained
  or selected on in train or val: the run stops with one line naming the feature and the
  rows (:mod:`fusion.leakage`); ``--allow-overlap`` proceeds, with the warning kept in
  ``metrics.json`` (``leakage`` and ``warnings``). Overlap with test or a ``--test-store``
  is a warning.
* ``--perturb`` also scores the test split of perturbed crops: each feature ``lbp`` is
  swapped for ``lbp@jpeg:50``, stored by ``python -m pipelines.extract ... --perturb jpeg:50``
  (see :mod:`fusion.robustness`); ``all`` takes every perturbation the store has for all
  the features. A spec the store lacks stops the run before any work.

``--config FILE.json|yaml`` reads the flags from a file (command-line flags override it);
the resolved flags are saved as ``RUN_DIR/config.json``, and ``--config RUN_DIR/config.json``
reruns the run bit for bit on the CPU.

Writes into ``RUN_DIR``: ``config.json`` (every flag), ``metrics.json`` (features, fusion, head, threshold, train
(the fitted rows, to judge overfitting), val, test,
cross, robustness, warnings, baselines, provenance), ``scores.csv`` (sample_id, split,
label, method, video_id, score, logit for val and test rows), ``scores_<store stem>.csv``
per test store, ``model/`` (model.json + weights, see :mod:`fusion.modelio`) and ``roc.png``, ``det.png``, ``scores.png`` for the test split
(``val_roc.png`` and ``val_scores.png`` for val);
with ``--perturb`` also ``robustness.png`` (AUC and EER against perturbation strength);
and ``report.html``, all of it on one page (:mod:`fusion.report`).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

from base.cli import (CLIParser, add_config_flag, at_least, command_line, flags_record, next_line,
                      run_cli)
from base.errors import UsageError
from base.outputs import add_overwrite_flag, claim_output_dir
from fusion import heads, metrics, plots
from fusion.scoring import cross_meta as scored_cross_meta
from fusion.scoring import (_fmt, add_report_flags, attr_mismatches, cross_split, evaluate_scores,
                            feature_attrs, fit_and_evaluate, load_split, model_scores,
                            nonfinite_counts, open_store_or_usage, predict_line, provenance,
                            run_warnings, store_path_of, warning_lines, write_plots)


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


def resolve_head(fusion: str, head: str | None) -> str:
    """The sklearn head ``fusion`` will use: ``head`` (default logreg) for fusions that use one.

    A ``head`` given for a fusion that trains its own network is a UsageError, not ignored.
    """
    if head is not None and fusion in heads.FUSIONS and not heads.FUSIONS[fusion].uses_head:
        users = ", ".join(n for n in heads.list_fusions() if heads.FUSIONS[n].uses_head)
        raise UsageError(f"--head: fusion {fusion!r} trains its own network and takes no head; "
                         f"drop --head, or pick a fusion that uses one ({users})")
    return "logreg" if head is None else head


def validate_run(store, features, fusion, head, test_stores=(), params=None):
    """Check every flag against the registry and the store; raise UsageError before any work."""
    if fusion not in heads.FUSIONS:
        raise UsageError(f"--fusion: unknown fusion {fusion!r}; choose from {', '.join(heads.list_fusions())}")
    if head is not None and head not in heads.SKLEARN_HEADS:
        raise UsageError(f"--head: unknown head {head!r}; choose from {', '.join(heads.SKLEARN_HEADS)}")
    resolve_head(fusion, head)
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


def train_run(store_path, features, fusion="concat", head=None, out="run", test_stores=(),
              seed=0, params=None, n_boot=1000, plots_on=True, verbose=True, perturb=None,
              command=None, audit=True, flags=None, allow_overlap=False) -> dict:
    """Fit, choose the threshold on val, evaluate, and write the run directory. Returns metrics.

    ``head`` is None (logreg where the fusion uses a head) or a head name; ``perturb`` is a
    ``--perturb`` value (None, "all" or "jpeg:50,blur:1.5"); ``command`` the command line
    recorded in ``provenance`` (default ``sys.argv``); ``audit`` runs the metadata baseline;
    ``flags`` (:func:`base.cli.flags_record` of the command) is saved as ``config.json``;
    ``allow_overlap`` lets a stacked feature (``cascade``) meet its own training rows in train
    or val, with a warning (:func:`fusion.leakage.guard`; refused otherwise).
    """
    from fusion import leakage
    from fusion import audit as confound_audit
    from fusion import robustness
    t0 = time.time()
    config = {"store": str(store_path), "features": list(features), "fusion": fusion, "head": head,
              "out": str(out), "test_stores": [str(p) for p in test_stores], "seed": seed,
              "params": params or {}, "bootstrap": n_boot, "plots": plots_on, "perturb": perturb,
              "audit": audit, "allow_overlap": allow_overlap}
    store = open_store_or_usage(store_path)
    others = [open_store_or_usage(p, "--test-store") for p in test_stores]
    inputs = validate_run(store, features, fusion, head, others, params)
    head = resolve_head(fusion, head)
    specs = robustness.resolve_perturbations(store, features, perturb, inputs)
    out = Path(out)
    splits = {s: load_split(store, features, s, inputs) for s in ("train", "val", "test")}
    if len(splits["train"]) == 0:
        raise UsageError(f"--store {store_path}: split 'train' has no samples "
                         f"(splits present: {', '.join(sorted(store.meta['split'].unique())) or 'none'})")
    if splits["train"].y.min() == splits["train"].y.max():
        raise UsageError(f"--store {store_path}: split 'train' has one class only "
                         f"(label {int(splits['train'].y[0])}); need reals and fakes")
    cross_meta = {f"cross {Path(p).stem}": scored_cross_meta(other)  # the rows scored
                  for p, other in zip(test_stores, others)}
    leaks = leakage.guard(store, features, {**{s: d.meta for s, d in splits.items()}, **cross_meta},
                          allow_overlap)
    nonfinite = {s: nonfinite_counts(d) for s, d in splits.items()}
    model = heads.create_fusion(fusion, features, head=head, seed=seed, **(params or {}))
    fitted, frames = fit_and_evaluate(model, splits, n_boot, seed)
    threshold = fitted["threshold"]
    result = {"features": list(features), "fusion": fusion,
              "head": head if heads.FUSIONS[fusion].uses_head else None,
              **{k: fitted[k] for k in ("threshold", "threshold_units", "threshold_probability",
                                        "threshold_from")},
              "seed": seed, "store": str(store_path), "params": params or {},
              "constant_columns": model.scaler.constant_columns(), **{s: fitted[s] for s in ("val", "test")}}
    for s in ("val", "test"):
        if frames[s].empty:
            result[s]["note"] = f"split {s!r} has no samples in {store_path}"
    # train beside val and test shows how far the head overfits (it saw these rows)
    result["train"] = evaluate_scores(model_scores(model, splits["train"]), threshold, n_boot, seed)
    out.mkdir(parents=True, exist_ok=True)
    if flags is not None:
        (out / "config.json").write_text(json.dumps(flags, indent=2) + "\n")
    pd.concat([frames["val"], frames["test"]], ignore_index=True).to_csv(out / "scores.csv", index=False)
    result["cross"] = {}
    for path, other in zip(test_stores, others):
        data = load_split(other, features, cross_split(other), inputs)
        frame = model_scores(model, data)
        stem = Path(path).stem
        nonfinite[f"cross {stem}"] = nonfinite_counts(data)
        frame.to_csv(out / f"scores_{stem}.csv", index=False)
        result["cross"][stem] = evaluate_scores(frame, threshold, n_boot, seed)
        if plots_on:
            write_plots(frame, out, threshold, prefix=f"{stem}_", title=stem)
    result["robustness"] = robustness.evaluate_under_perturbations(model, store, features, specs, "test",
                                                                   threshold, n_boot, seed)
    if plots_on and specs:
        plots.robustness_curves({"test": result["robustness"]}, out / "robustness.png",
                                clean={"test": result["test"]}, title=f"Robustness ({fusion})")
    if audit:
        baseline = confound_audit.metadata_baseline(store, others, test_stores, head=head if
                                                    heads.FUSIONS[fusion].uses_head else "logreg",
                                                    seed=seed, n_boot=n_boot)
        result["baselines"] = {"metadata": baseline}
    result["nonfinite"] = {k: v for k, v in nonfinite.items() if v}
    result["leakage"] = leaks
    result["warnings"] = run_warnings(result) + leaks
    if audit:
        result["warnings"] += confound_audit.confound_warnings(result, baseline)
    model.save(out / "model", extra={"threshold": threshold, "threshold_units": "logit",
                                     "threshold_from": fitted["threshold_from"],
                                     "store": str(store_path),
                                     "feature_attrs": feature_attrs(store, features),
                                     "ingest": store.run,
                                     "warnings": [w for w in result["warnings"]
                                                  if w.startswith(("threshold", "val:"))]})
    if plots_on:
        write_plots(frames["test"], out, threshold)
        write_plots(frames["val"], out, threshold, prefix="val_", title="val", which=("roc", "scores"))
    result["provenance"] = provenance([store_path, *test_stores], seed, config, command)
    result["seconds"] = round(time.time() - t0, 2)
    (out / "metrics.json").write_text(json.dumps(metrics.to_jsonable(result), indent=2))
    from fusion.report import write_report
    write_report(out)
    if verbose:
        print(summary(result, out))
        if inputs == "vector":  # which features the model leans on, measured on val
            print(next_line("python -m fusion.importance", "--store", store_path, "--run", out))
        else:
            step = predict_line(out, splits["test"].meta)
            if step:
                print(step)
    return result


def summary(result: dict, out) -> str:
    """A one-screen summary of a run: one row per evaluated set, the metadata baseline, warnings."""
    lines = [f"fusion {result['fusion']}" + (f" ({result['head']})" if result.get("head") else "")
             + f" on {', '.join(result['features'])}; threshold logit {_fmt(result['threshold'])} "
             f"(EER on {result['threshold_from']})",
             f"{'set':<16}{'n_real':>8}{'n_fake':>8}{'AUC':>8}{'EER':>8}{'FAR@1%':>8}{'vidAUC':>8}"]
    rows = ([("train", result["train"])] if "train" in result else []) \
        + [("val", result["val"]), ("test", result["test"])] \
        + [(f"test@{spec}", m) for spec, m in result.get("robustness", {}).items()] \
        + list(result.get("cross", {}).items())
    for name, m in rows:
        lines.append(f"{name:<16}{m.get('n_real', 0):>8}{m.get('n_fake', 0):>8}{_fmt(m.get('auc')):>8}"
                     f"{_fmt(m.get('eer')):>8}{_fmt(m.get('far_at_frr', {}).get('0.01')):>8}"
                     f"{_fmt(m.get('video', {}).get('auc')):>8}")
    base = result.get("baselines", {}).get("metadata")
    if base:
        if base.get("note"):
            lines.append(f"metadata baseline: {base['note']}")
        else:
            for name, m in [("test", base.get("test", {}))] + list(base.get("cross", {}).items()):
                lines.append(f"{'meta ' + name:<16}{m.get('n_real', 0):>8}{m.get('n_fake', 0):>8}"
                             f"{_fmt(m.get('auc')):>8}{_fmt(m.get('eer')):>8}")
    lines += warning_lines(result.get("warnings", []))
    lines.append(f"written to {out} in {result.get('seconds', 0)} s")
    return "\n".join(lines)


def build_parser() -> CLIParser:
    p = CLIParser(prog="python -m fusion.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="feature store (.h5) to train on")
    p.add_argument("--features", required=True, help="comma-separated feature names, e.g. lbp,dct")
    p.add_argument("--fusion", default="concat", help=f"fusion strategy: {', '.join(heads.list_fusions())} "
                   "(default concat)")
    p.add_argument("--head", default=None, help=f"sklearn classifier for concat and late fusions: "
                   f"{', '.join(heads.SKLEARN_HEADS)} (default logreg; an error with torch fusions)")
    p.add_argument("--out", default="runs/latest",
                   help="run directory; one that holds files is refused unless --overwrite "
                        "(default runs/latest)")
    p.add_argument("--test-store", action="append", default=[], metavar="STORE",
                   help="another store to score with the trained model (repeatable)")
    p.add_argument("--seed", type=at_least(0), default=0, help="random seed (default 0)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="fusion hyper-parameter, e.g. epochs=50, mode=self, pool=max, k=2, "
                        "groups='a,b;c', size=64 (repeatable)")
    p.add_argument("--perturb", default=None, metavar="SPECS|all",
                   help="also score the test split under perturbations stored by the extract CLI's "
                        "--perturb, e.g. jpeg:50,blur:1.5, or all of those in the store (default none)")
    p.add_argument("--allow-overlap", action="store_true",
                   help="fit even when a stacked feature (cascade) was trained or selected on "
                        "rows of train or val; the run's warnings and metrics.json say so "
                        "(default: refused, see docs/cascade_fusion.md)")
    add_report_flags(p)
    add_overwrite_flag(p)
    add_config_flag(p)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def work():
        features = [f.strip() for f in args.features.split(",") if f.strip()]
        params = parse_params(args.param)
        with claim_output_dir(args.out, overwrite=args.overwrite,
                              inputs=[args.store, *args.test_store]):
            train_run(args.store, features, args.fusion, args.head, args.out,
                      args.test_store, args.seed, params, args.bootstrap, plots_on=not args.no_plots,
                      perturb=args.perturb, command=command_line(parser.prog, argv),
                      flags=flags_record(parser.prog, args, drop=("overwrite",)),
                      allow_overlap=args.allow_overlap)
    return run_cli(parser.prog, work)


if __name__ == "__main__":
    sys.exit(main())
