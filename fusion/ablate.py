"""Feature ablation: which features, and which fusion, detect fakes best -- chosen on val.

::

    python -m fusion.ablate --store S.h5 --features a,b,c --fusions concat,mlp --out DIR \\
        [--test-store OTHER.h5 ...] [--perturb jpeg:50,blur:1.5 | --perturb all]

Stages (``--stages``, default all four):

* ``single``  - each feature alone;
* ``loo``     - all features, and all but one (leave-one-out);
* ``greedy``  - greedy forward selection: add the feature that raises **val** AUC most,
  stop when nothing raises it by more than ``--min-gain``;
* ``fusions`` - every ``--fusions`` strategy on the full feature set and on the greedy
  pick (the full set only when ``greedy`` is not run).

A stacked feature (``cascade``) trained or selected on rows of train or val is refused
(:mod:`fusion.leakage`) unless ``--allow-overlap``, whose warning ``ablation.json`` keeps.
The first three stages use the first of ``--fusions``. Every configuration is fitted on
train, its hyper-parameters and EER threshold chosen on val (on train, with a warning, when
val lacks a class), and reported on test and on each ``--test-store`` (its test split, or
all of it) -- at the decision values (logits), with video-cluster bootstrap 95% CIs. A
configuration reached by several stages (``single a`` and ``greedy 1``) is fitted once and
listed once, its ``kind`` naming every stage.

**Rows are ranked by val AUC**; test numbers stand beside them and never choose anything.
The row val picks is marked (``pick``). Writes ``ablation.csv`` (columns :data:`COLUMNS`,
then ``<store>.test_auc`` ... per ``--test-store`` and ``auc@spec`` per perturbation, rows
in val order), ``ablation.md``, ``ablation.json`` (with the greedy path, each row's
warnings and the metadata baseline of :mod:`fusion.audit`), ``ablation.png`` and
``report.html`` (:mod:`fusion.report`).
With ``--perturb`` every row also gets its test AUC under each perturbation (read from the
store's ``feature@spec`` variants, see :mod:`fusion.robustness`) and ``robustness.png``
plots them for the top rows. Only vector fusions are ablated (early fusions read maps).
``--config FILE.json|yaml`` reads the flags from a file (command-line flags override it);
the resolved flags are saved as ``DIR/config.json``, which ``--config`` reads back to rerun.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from base.cli import (CLIParser, add_config_flag, at_least, command_line, error_line, next_line,
                      write_flags)
from base.errors import UsageError
from base.outputs import add_overwrite_flag, claim_output_dir
from fusion import heads, metrics, plots, robustness, scoring, train
from stores.schema import StoreError

STAGES = ("single", "loo", "greedy", "fusions")
ROBUSTNESS_ROWS = 5  # ablation rows drawn in robustness.png
COLUMNS = ["rank", "pick", "kind", "fusion", "head", "features", "n_features", "val_auc", "val_from",
           "threshold", "test_auc", "test_auc_lo", "test_auc_hi", "test_eer", "test_eer_lo", "test_eer_hi",
           "test_far_at_frr_0.01", "test_far_lo", "test_far_hi", "n_warnings", "seconds"]
STORE_METRICS = ("test_auc", "test_auc_lo", "test_auc_hi", "test_eer")


def store_column(stem: str, metric: str) -> str:
    """Table column of a ``--test-store`` result: ``ffpp8.test_auc``."""
    return f"{stem}.{metric}"


def _test_columns(m: dict, prefix: str = "test_") -> dict:
    ci = m.get("ci", {})
    nan2 = [np.nan, np.nan]
    auc_ci, eer_ci, far_ci = ci.get("auc", nan2), ci.get("eer", nan2), ci.get("far_at_frr_0.01", nan2)
    return {f"{prefix}auc": m.get("auc", np.nan), f"{prefix}auc_lo": auc_ci[0], f"{prefix}auc_hi": auc_ci[1],
            f"{prefix}eer": m.get("eer", np.nan), f"{prefix}eer_lo": eer_ci[0], f"{prefix}eer_hi": eer_ci[1],
            f"{prefix}far_at_frr_0.01": m.get("far_at_frr", {}).get("0.01", np.nan),
            f"{prefix}far_lo": far_ci[0], f"{prefix}far_hi": far_ci[1]}


def evaluate_config(splits, features, fusion, head="logreg", seed=0, n_boot=200, params=None,
                    perturbed=None, others=None) -> dict:
    """Fit ``fusion`` on ``features`` of preloaded splits; val AUC, threshold, test metrics.

    Exactly :func:`fusion.scoring.fit_and_evaluate`: val chooses, test is only reported.
    ``val_auc`` is the AUC on val, or on train (``val_from`` "train") when val lacks a
    class. ``perturbed`` (``{spec: test FusionData}``, blocks under clean names) adds
    ``auc@spec``; ``others`` (``{stem: FusionData}``) adds ``<stem>.test_auc`` and friends.
    """
    t0 = time.time()
    uses_head = heads.FUSIONS[fusion].uses_head
    model = heads.create_fusion(fusion, features, head=head, seed=seed, **(params or {}))
    fitted, _ = scoring.fit_and_evaluate(model, splits, n_boot, seed)
    if fitted["threshold_from"] == "val":
        val_auc = fitted["val"]["auc"]
    else:
        ref = scoring.model_scores(model, splits["train"])
        val_auc = metrics.core_metrics(ref["label"], ref[scoring.RANK_COLUMN])["auc"]
    row = {"fusion": fusion, "head": head if uses_head else None, "features": ",".join(features),
           "n_features": len(features), "val_auc": val_auc, "val_from": fitted["threshold_from"],
           "threshold": fitted["threshold"], **_test_columns(fitted["test"])}
    nonfinite = {s: scoring.nonfinite_counts(_only(d, features)) for s, d in splits.items()}
    nonfinite.update({f"cross {stem}": scoring.nonfinite_counts(_only(d, features))
                      for stem, d in (others or {}).items()})
    warnings = scoring.run_warnings({**fitted, "cross": {}, "nonfinite": nonfinite})
    for stem, data in (others or {}).items():
        m = scoring.evaluate_scores(scoring.model_scores(model, data), fitted["threshold"], n_boot, seed)
        cols = _test_columns(m)
        row.update({store_column(stem, k): cols[k] for k in STORE_METRICS})
        warnings += [f"cross {stem}: {w}" for w in m.get("warnings", [])]
    for spec, data in (perturbed or {}).items():
        frame = scoring.model_scores(model, data)
        row[auc_column(spec)] = metrics.core_metrics(frame["label"], frame[scoring.RANK_COLUMN])["auc"]
    row.update(n_warnings=len(warnings), warnings=warnings, seconds=round(time.time() - t0, 3))
    return row


def _only(data, features):
    """``data`` restricted to the blocks of ``features`` (what one configuration reads)."""
    return heads.FusionData({f: data.blocks[f] for f in features if f in data.blocks}, data.y,
                            data.meta, data.valid)


def auc_column(spec: str) -> str:
    """Table column of the test AUC under perturbation ``spec``: ``auc@jpeg:50``."""
    return robustness.perturbed_name("auc", spec)


def _progress(total, desc, enabled=True):
    try:
        if not enabled:
            raise ImportError
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, leave=False)
    except ImportError:  # tqdm is optional here; no bar then
        class _Null:
            total = n = 0

            def update(self, n=1):
                self.n += n

            def refresh(self):
                pass

            def close(self):
                pass
        return _Null()


def run_ablation(store, features, fusions=("concat",), head="logreg", stages=STAGES, seed=0,
                 n_boot=200, min_gain=1e-3, params=None, verbose=True, specs=(),
                 test_stores=None) -> tuple[pd.DataFrame, list]:
    """Run the ablation stages on an opened store. Returns ``(table, greedy_path)``.

    ``table`` has one row per distinct configuration (columns :data:`COLUMNS`, then
    ``<stem>.test_auc`` ... per ``test_stores`` entry (``{stem: opened store}``), then
    ``auc@spec`` per perturbation spec, then ``warnings``), ranked by val AUC (ties: fewer
    features first, then stage order); ``greedy_path`` lists ``{"added", "features",
    "val_auc"}`` per greedy step. Every configuration is fitted once; the progress bar
    counts fits.
    """
    features, fusions = list(features), list(fusions)
    splits = {s: scoring.load_split(store, features, s) for s in ("train", "val", "test")}
    perturbed = {spec: robustness.perturbed_split(store, features, spec, "test") for spec in specs}
    others = {stem: scoring.load_split(other, features, scoring.cross_split(other))
              for stem, other in (test_stores or {}).items()}
    if len(splits["train"]) == 0 or len(np.unique(splits["train"].y)) < 2:
        raise UsageError(f"--store: split 'train' needs both reals and fakes (has {len(splits['train'])} samples)")
    scored = [len(splits["test"]) and len(np.unique(splits["test"].y)) == 2] + \
        [len(d) and len(np.unique(d.y)) == 2 for d in others.values()]
    if not any(scored):
        raise UsageError("--store: split 'test' needs both reals and fakes "
                         f"(has {len(splits['test'])} samples), or give a --test-store that has them")
    base = fusions[0]
    cache, kinds, order = {}, {}, []
    bar = _progress(0, "ablation", verbose)

    def plan(keys):
        new = {k for k in keys if k not in cache}
        bar.total = (bar.total or 0) + len(new - set(planned))
        planned.update(dict.fromkeys(new))
        bar.refresh()

    planned: dict = {}

    def canonical(feats):  # a feature set in --features order: {b, a} and {a, b} are one configuration
        return [f for f in features if f in set(feats)]

    def evaluate(fusion, feats):
        feats = canonical(feats)
        key = (fusion, tuple(feats))
        if key not in cache:
            plan([key])
            cache[key] = evaluate_config(splits, list(feats), fusion, head, seed, n_boot, params, perturbed, others)
            bar.update()
        return cache[key]

    def run(kind, feats, fusion=base):
        feats = canonical(feats)
        key = (fusion, tuple(feats))
        evaluate(fusion, feats)
        if key not in kinds:
            kinds[key] = []
            order.append(key)
        if kind not in kinds[key]:
            kinds[key].append(kind)

    n = len(features)
    early = []
    if "single" in stages:
        early += [(base, (f,)) for f in features]
    if "loo" in stages:
        early += [(base, tuple(features))] + ([(base, tuple(g for g in features if g != f)) for f in features]
                                              if n > 1 else [])
    if "fusions" in stages:
        early += [(fusion, tuple(features)) for fusion in fusions]
    plan(early)
    if "single" in stages:
        for f in features:
            run("single", [f])
    if "loo" in stages:
        run("all", features)
        if n > 1:
            for f in features:
                run(f"loo -{f}", [g for g in features if g != f])
    chosen, path = list(features), []
    if "greedy" in stages:
        chosen, best = [], -np.inf
        while len(chosen) < n:
            candidates = [f for f in features if f not in chosen]
            plan([(base, tuple(canonical(chosen + [f]))) for f in candidates])
            trial = {f: evaluate(base, chosen + [f]) for f in candidates}
            f_best = max(candidates, key=lambda f: _rank_value(trial[f]["val_auc"]))  # ties: first listed
            if _rank_value(trial[f_best]["val_auc"]) <= best + min_gain and chosen:
                break
            chosen.append(f_best)
            best = _rank_value(trial[f_best]["val_auc"])
            path.append({"added": f_best, "features": list(chosen), "val_auc": trial[f_best]["val_auc"]})
            run(f"greedy {len(chosen)}", chosen)
    if "fusions" in stages:
        plan([(fusion, tuple(canonical(chosen))) for fusion in fusions])
        for fusion in fusions:
            run("fusion all", features, fusion)
            if "greedy" in stages and set(chosen) != set(features):
                run("fusion greedy", chosen, fusion)
    bar.close()
    rows = [{"kind": "; ".join(kinds[key]), **cache[key], "_order": i} for i, key in enumerate(order)]
    table = pd.DataFrame(rows)
    table["_rank_value"] = [_rank_value(v) for v in table["val_auc"]]
    table = table.sort_values(["_rank_value", "n_features", "_order"], ascending=[False, True, True],
                              kind="mergesort", ignore_index=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    table.insert(1, "pick", np.where(table["rank"] == 1, "*", ""))
    extra = [store_column(stem, k) for stem in others for k in STORE_METRICS] + [auc_column(s) for s in specs]
    return table[COLUMNS + extra + ["warnings"]], path


def _rank_value(auc) -> float:
    """val AUC as a sort key: NaN (a val split without both classes) ranks last."""
    return -np.inf if auc is None or not np.isfinite(auc) else float(auc)


def perturbation_columns(table: pd.DataFrame) -> list[str]:
    """The ``auc@spec`` columns of an ablation table, in order."""
    return [c for c in table.columns if c.startswith(auc_column(""))]


def other_store_stems(table: pd.DataFrame) -> list[str]:
    """The ``--test-store`` stems of an ablation table, in column order."""
    return [c[: -len(".test_auc")] for c in table.columns if c.endswith(".test_auc")]


def _ci(v, lo, hi):
    if v is None or not np.isfinite(v):
        return "n/a"
    return f"{v:.4f} [{lo:.4f}, {hi:.4f}]" if lo is not None and np.isfinite(lo) else f"{v:.4f} [no CI]"


def markdown_table(table: pd.DataFrame) -> str:
    """The table in val order as Markdown: val AUC, then test AUC, EER and FAR@FRR=1% with
    their 95% CIs, AUC per ``--test-store`` and per perturbation; ``*`` marks val's pick."""
    extra, stems = perturbation_columns(table), other_store_stems(table)
    lines = ["| rank | pick | kind | fusion | features | val AUC | test AUC [95% CI] | test EER [95% CI] "
             "| test FAR@FRR=1% [95% CI] |" + "".join(f" {s} AUC [95% CI] |" for s in stems)
             + "".join(f" test AUC{c[len('auc'):]} |" for c in extra) + " warnings |",
             "|---:|:-:|---|---|---|---:|---|---|---|" + "---|" * len(stems) + "---:|" * len(extra) + "---:|"]
    for d in table.to_dict(orient="records"):
        fusion = d["fusion"] + (f" ({d['head']})" if isinstance(d.get("head"), str) and d["head"] else "")
        val = "n/a" if not np.isfinite(d["val_auc"]) else f"{d['val_auc']:.4f}" + \
            (" (train)" if d["val_from"] == "train" else "")
        lines.append(
            f"| {d['rank']} | {d['pick']} | {d['kind']} | {fusion} | {d['features']} | {val} | "
            f"{_ci(d['test_auc'], d['test_auc_lo'], d['test_auc_hi'])} | "
            f"{_ci(d['test_eer'], d['test_eer_lo'], d['test_eer_hi'])} | "
            f"{_ci(d['test_far_at_frr_0.01'], d['test_far_lo'], d['test_far_hi'])} |"
            + "".join(f" {_ci(d[store_column(s, 'test_auc')], d[store_column(s, 'test_auc_lo')], d[store_column(s, 'test_auc_hi')])} |"
                      for s in stems)
            + "".join(f" {d[c]:.4f} |" for c in extra) + f" {d['n_warnings']} |")
    return "\n".join(lines) + "\n"


def pick_warnings(table: pd.DataFrame, baseline: dict | None = None) -> list[str]:
    """The warnings of the configuration val picks, plus one when val could not rank, plus
    :func:`fusion.audit.confound_warnings` against the metadata ``baseline``."""
    from fusion import audit
    top = table.iloc[0]
    out = list(top["warnings"])
    if top["val_from"] == "train":
        out.insert(0, "val lacks reals or fakes: configurations are ranked by their TRAIN AUC, "
                      "which rewards overfitting; add a val split")
    if baseline is not None:
        picked = {"test": {"auc": top["test_auc"]},
                  "cross": {s: {"auc": top[store_column(s, "test_auc")]} for s in other_store_stems(table)}}
        out += audit.confound_warnings(picked, baseline)
    return out


def write_outputs(table, path, out, meta) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table.drop(columns=["warnings"]).to_csv(out / "ablation.csv", index=False)
    base = meta.get("baselines", {}).get("metadata")
    picked = pick_warnings(table, base)
    md = markdown_table(table)
    if picked:
        md += "\nWarnings for the picked configuration:\n\n" + "".join(f"- {w}\n" for w in picked)
    if base:
        md += "\nMetadata-only baseline: " + (base["note"] if base.get("note") else
                                              f"test AUC {scoring._fmt(base['test'].get('auc'))}"
                                              + "".join(f", {k} AUC {scoring._fmt(m.get('auc'))}"
                                                        for k, m in base.get("cross", {}).items())) + "\n"
    (out / "ablation.md").write_text(md)
    (out / "ablation.json").write_text(json.dumps(metrics.to_jsonable(
        {**meta, "greedy_path": path, "pick_warnings": picked,
         "rows": table.to_dict(orient="records")}), indent=2))
    bars = table.rename(columns={"val_auc": "auc"})[["kind", "fusion", "features", "auc"]].dropna()
    if len(bars):
        plots.ablation_bars(bars, out / "ablation.png", title=f"Ablation, val AUC ({meta.get('store', '')})")
    extra = perturbation_columns(table)
    if extra:
        top = table.head(ROBUSTNESS_ROWS)
        series = {f"{r['rank']}. {r['fusion']} [{r['features']}]": r for r in top.to_dict(orient="records")}
        plots.robustness_curves(
            {name: {c[len(auc_column("")):]: {"auc": r[c]} for c in extra} for name, r in series.items()},
            out / "robustness.png", clean={name: {"auc": r["test_auc"]} for name, r in series.items()},
            metric_names=("auc",), title=f"Test AUC under perturbations (top {len(top)} by val)")
    from fusion.report import write_report
    write_report(out)
    return out


def build_parser():
    p = CLIParser(prog="python -m fusion.ablate", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="feature store (.h5)")
    p.add_argument("--features", required=True, help="comma-separated vector feature names")
    p.add_argument("--fusions", default="concat", help="comma-separated vector fusions; the first one "
                   "runs the single / leave-one-out / greedy stages (default concat)")
    p.add_argument("--head", default=None, help=f"sklearn head of the fusions that use one: "
                   f"{', '.join(heads.SKLEARN_HEADS)} (default logreg; torch fusions train their own "
                   "network and their rows show no head; an error when no listed fusion uses one)")
    p.add_argument("--test-store", action="append", default=[], metavar="STORE",
                   help="another store to score every configuration on (its test split, or all of "
                        "it); repeatable. Results per store, beside the own test split's")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {', '.join(STAGES)}")
    p.add_argument("--out", default="runs/ablation",
                   help="output directory; one that holds files is refused unless --overwrite "
                        "(default runs/ablation)")
    p.add_argument("--seed", type=at_least(0), default=0, help="random seed (default 0)")
    p.add_argument("--bootstrap", type=at_least(0), default=200,
                   help="bootstrap resamples per row (default 200)")
    p.add_argument("--min-gain", type=float, default=1e-3, help="greedy stops below this val-AUC gain")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="fusion hyper-parameter")
    p.add_argument("--allow-overlap", action="store_true",
                   help="ablate even when a stacked feature (cascade) was trained or selected on "
                        "rows of train or val; ablation.json keeps the warning (default: refused)")
    p.add_argument("--perturb", default=None, metavar="SPECS|all",
                   help="add test AUC under perturbations stored by the extract CLI's --perturb, "
                        "e.g. jpeg:50,blur:1.5, or all of those in the store (default none)")
    add_config_flag(p)
    add_overwrite_flag(p)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with claim_output_dir(args.out, overwrite=args.overwrite,
                              inputs=[args.store, *args.test_store]):
            table, path, baseline, store_path, t0, out = _ablate(parser, args, argv)
    except (UsageError, StoreError) as e:
        print(error_line("python -m fusion.ablate", e), file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    return _report(table, path, baseline, store_path, t0, out, args)


def _ablate(parser, args, argv):
    """Check the flags, run the stages and write ``--out`` (claimed by :func:`main`)."""
    features = [f.strip() for f in args.features.split(",") if f.strip()]
    fusions = list(dict.fromkeys(f.strip() for f in args.fusions.split(",") if f.strip()))
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise UsageError(f"--stages: unknown {', '.join(bad) or '(empty)'}; choose from {', '.join(STAGES)}")
    if not fusions:
        raise UsageError("--fusions: give at least one fusion")
    known = [f for f in fusions if f in heads.FUSIONS]
    if args.head is not None and known and not any(heads.FUSIONS[f].uses_head for f in known):
        train.resolve_head(known[0], args.head)  # the same one-line usage error as fusion.train
    head = args.head or "logreg"
    params = train.parse_params(args.param)
    store_path = args.store
    store = scoring.open_store_or_usage(store_path)
    others = {Path(p).stem: scoring.open_store_or_usage(p, "--test-store") for p in args.test_store}
    if len(others) != len(args.test_store):
        raise UsageError("--test-store: two stores share a file name; rename one")
    vector = [f for f in heads.list_fusions() if heads.FUSIONS[f].inputs == "vector"]
    unknown = [f for f in fusions if f not in heads.FUSIONS]
    if unknown:  # named here: train.validate_run would name fusion.train's --fusion
        raise UsageError(f"--fusions: unknown fusion {unknown[0]!r}; choose from {', '.join(vector)}")
    for fusion in fusions:
        if heads.FUSIONS[fusion].inputs != "vector":
            raise UsageError(f"--fusions: {fusion!r} reads maps; ablation covers vector fusions only")
        train.validate_run(store, features, fusion, head if heads.FUSIONS.get(fusion) and
                           heads.FUSIONS[fusion].uses_head else None, list(others.values()), params=params)
    specs = robustness.resolve_perturbations(store, features, args.perturb)
    from fusion import leakage  # a stacked feature (cascade) never meets its own rows
    meta = store.meta
    cross_meta = {f"cross {stem}": scoring.cross_meta(other) for stem, other in others.items()}
    leaks = leakage.guard(store, features, {**{s: meta[meta["split"] == s] for s in ("train", "val", "test")},
                                            **cross_meta}, args.allow_overlap)
    write_flags(Path(args.out) / "config.json", parser.prog, args, drop=("overwrite",))
    t0 = time.time()
    table, path = run_ablation(store, features, fusions, head, stages, args.seed, args.bootstrap,
                               args.min_gain, params, specs=specs, test_stores=others)
    from fusion import audit
    baseline = audit.metadata_baseline(store, list(others.values()), args.test_store, head,
                                       args.seed, args.bootstrap)
    config = {"store": str(store_path), "features": features, "fusions": fusions, "head": head,
              "stages": stages, "test_stores": args.test_store, "perturbations": specs,
              "seed": args.seed, "bootstrap": args.bootstrap, "min_gain": args.min_gain, "params": params,
              "allow_overlap": args.allow_overlap}
    out = write_outputs(table, path, args.out, {
        **config, "baselines": {"metadata": baseline}, "leakage": leaks,
        "provenance": scoring.provenance([store_path, *args.test_store], args.seed, config,
                                       command_line("python -m fusion.ablate", argv)),
        "seconds": round(time.time() - t0, 2)})
    for line in scoring.warning_lines(leaks):
        print(line)
    return table, path, baseline, store_path, t0, out


def _report(table, path, baseline, store_path, t0, out, args) -> int:
    """Print the table, the val pick, the warnings and the ``next:`` line."""
    print(markdown_table(table.head(15)), end="")
    if path:
        print("greedy: " + " -> ".join(f"+{p['added']} ({p['val_auc']:.4f})" for p in path))
    top = table.iloc[0]
    print(f"val picks: {top['fusion']} [{top['features']}] (val AUC {scoring._fmt(top['val_auc'])}"
          f"{' on TRAIN' if top['val_from'] == 'train' else ''}; test AUC {scoring._fmt(top['test_auc'])})")
    if baseline.get("note"):
        print(f"metadata baseline: {baseline['note']}")
    else:
        print(f"metadata baseline: test AUC {scoring._fmt(baseline['test'].get('auc'))}"
              + "".join(f", {k} AUC {scoring._fmt(m.get('auc'))}" for k, m in baseline.get("cross", {}).items()))
    for line in scoring.warning_lines(pick_warnings(table, baseline)):
        print(line)
    print(f"{len(table)} configurations in {time.time() - t0:.1f} s -> {out}")
    print(pick_command(top, store_path, args, out))
    return 0


def pick_command(top, store_path, args, out) -> str:
    """The ``next:`` line: ``fusion.train`` of the row val picked, with the ablation's stores,
    head, seed and parameters, into ``OUT/pick``."""
    extra = [x for p in args.test_store for x in ("--test-store", p)]
    if args.head is not None and heads.FUSIONS[top["fusion"]].uses_head:
        extra += ["--head", args.head]
    extra += [x for p in args.param for x in ("--param", p)]
    if args.allow_overlap:
        extra += ["--allow-overlap"]
    if args.seed:
        extra += ["--seed", args.seed]
    return next_line("python -m fusion.train", "--store", store_path, "--features", top["features"],
                     "--fusion", top["fusion"], *extra, "--out", Path(out) / "pick")


if __name__ == "__main__":
    sys.exit(main())
