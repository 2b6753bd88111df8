"""Feature ablation: which features, and which fusion, detect fakes best.

::

    python -m fusion.ablate --store S.h5 --features a,b,c --fusions concat,mlp --out DIR \\
        [--perturb jpeg:50,blur:1.5 | --perturb all]

Stages (``--stages``, default all four):

* ``single``  - each feature alone;
* ``loo``     - all features, and all but one (leave-one-out);
* ``greedy``  - greedy forward selection: add the feature that raises **val** AUC most,
  stop when nothing raises it by more than ``--min-gain``;
* ``fusions`` - every ``--fusions`` strategy on the greedy choice (all features when
  ``greedy`` is not run).

The first three stages use the first of ``--fusions``. Every configuration is fitted on
train, thresholded at the val EER and reported on test: AUC, EER and FAR@FRR=1% with
bootstrap 95% CIs. Writes ``ablation.csv``, ``ablation.md`` (ranked by test AUC),
``ablation.json`` (with the greedy path) and ``ablation.png``.
With ``--perturb`` every row also gets its test AUC under each perturbation (columns
``auc@jpeg:50``, ..., read from the store's ``feature@spec`` variants, see
:mod:`fusion.robustness`) and ``robustness.png`` plots them for the top rows.
Only vector fusions are ablated (early fusions read maps, not the vector features).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fusion import heads, metrics, plots, robustness, train
from pipelines.cli import CLIParser, error_line
from pipelines.errors import UsageError
from stores.schema import StoreError

STAGES = ("single", "loo", "greedy", "fusions")
ROBUSTNESS_ROWS = 5  # ablation rows drawn in robustness.png
COLUMNS = ["rank", "kind", "fusion", "features", "n_features", "val_auc", "auc", "auc_lo", "auc_hi",
           "eer", "eer_lo", "eer_hi", "far_at_frr_0.01", "far_lo", "far_hi", "seconds"]


def evaluate_config(splits, features, fusion, head="logreg", seed=0, n_boot=200, params=None,
                    perturbed=None) -> dict:
    """Fit ``fusion`` on ``features`` of preloaded splits; val AUC plus test metrics with CIs.

    ``perturbed`` (``{spec: test FusionData}``, blocks under clean names) adds ``auc@spec``.
    """
    t0 = time.time()
    model = heads.create_fusion(fusion, features, head=head, seed=seed, **(params or {}))
    val = splits["val"] if len(splits["val"]) else None
    model.fit(splits["train"], val)
    ref = val if val is not None else splits["train"]
    ref_scores = model.predict_proba(ref)
    threshold = metrics.threshold_at_eer(ref.y, ref_scores)
    val_auc = metrics.core_metrics(ref.y, ref_scores)["auc"]
    test = splits["test"]
    s = model.predict_proba(test)
    core = metrics.core_metrics(test.y, s, threshold)
    ci = metrics.bootstrap_ci(test.y, s, n_boot=n_boot, seed=seed)
    return {"fusion": fusion, "features": ",".join(features), "n_features": len(features),
            "val_auc": val_auc, "auc": core["auc"], "auc_lo": ci["auc"][0], "auc_hi": ci["auc"][1],
            "eer": core["eer"], "eer_lo": ci["eer"][0], "eer_hi": ci["eer"][1],
            "far_at_frr_0.01": core["far_at_frr"]["0.01"], "far_lo": ci["far_at_frr_0.01"][0],
            "far_hi": ci["far_at_frr_0.01"][1], "seconds": round(time.time() - t0, 3),
            **{auc_column(spec): metrics.core_metrics(data.y, model.predict_proba(data))["auc"]
               for spec, data in (perturbed or {}).items()}}


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
            def update(self, n=1):
                pass

            def close(self):
                pass
        return _Null()


def run_ablation(store, features, fusions=("concat",), head="logreg", stages=STAGES, seed=0,
                 n_boot=200, min_gain=1e-3, params=None, verbose=True, specs=()) -> tuple[pd.DataFrame, list]:
    """Run the ablation stages on an opened store. Returns ``(table, greedy_path)``.

    ``table`` has one row per configuration (columns :data:`COLUMNS`, then ``auc@spec`` per
    perturbation spec in ``specs``), ranked by test AUC; ``greedy_path`` lists
    ``{"added", "features", "val_auc"}`` per greedy step.
    """
    features, fusions = list(features), list(fusions)
    splits = {s: train.load_split(store, features, s) for s in ("train", "val", "test")}
    perturbed = {spec: robustness.perturbed_split(store, features, spec, "test") for spec in specs}
    for s in ("train", "test"):
        if len(splits[s]) == 0 or len(np.unique(splits[s].y)) < 2:
            raise UsageError(f"--store: split {s!r} needs both reals and fakes (has {len(splits[s])} samples)")
    base = fusions[0]
    rows, cache = [], {}

    def run(kind, feats, fusion=base):
        key = (fusion, tuple(feats))
        if key not in cache:
            cache[key] = evaluate_config(splits, list(feats), fusion, head, seed, n_boot, params, perturbed)
        rows.append({"kind": kind, **cache[key]})
        bar.update()
        return cache[key]

    n = len(features)
    total = (n if "single" in stages else 0) + ((n + 1 if n > 1 else 1) if "loo" in stages else 0) \
        + (n * (n + 1) // 2 if "greedy" in stages else 0) + (len(fusions) if "fusions" in stages else 0)
    bar = _progress(total, "ablation", verbose)
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
            trial = {f: (cache.get((base, tuple(chosen + [f]))) or
                         evaluate_config(splits, chosen + [f], base, head, seed, n_boot, params, perturbed))
                     for f in features if f not in chosen}
            for f, r in trial.items():
                cache[(base, tuple(chosen + [f]))] = r
                bar.update()
            f_best = max(trial, key=lambda f: trial[f]["val_auc"])
            if trial[f_best]["val_auc"] <= best + min_gain and chosen:
                break
            chosen.append(f_best)
            best = trial[f_best]["val_auc"]
            path.append({"added": f_best, "features": list(chosen), "val_auc": best})
            rows.append({"kind": f"greedy {len(chosen)}", **trial[f_best]})
    if "fusions" in stages:
        for fusion in fusions:
            run("fusion", chosen, fusion)
    bar.close()
    table = pd.DataFrame(rows)
    table = table.sort_values(["auc", "val_auc"], ascending=False, ignore_index=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table[COLUMNS + [auc_column(s) for s in specs]], path


def perturbation_columns(table: pd.DataFrame) -> list[str]:
    """The ``auc@spec`` columns of an ablation table, in order."""
    return [c for c in table.columns if c.startswith(auc_column(""))]


def markdown_table(table: pd.DataFrame) -> str:
    """The ranked table as Markdown: AUC, EER and FAR@FRR=1% with their 95% CIs."""
    def ci(v, lo, hi):
        return "n/a" if not np.isfinite(v) else f"{v:.4f} [{lo:.4f}, {hi:.4f}]"
    extra = perturbation_columns(table)
    lines = ["| rank | kind | fusion | features | val AUC | AUC [95% CI] | EER [95% CI] | FAR@FRR=1% [95% CI] |"
             + "".join(f" AUC{c[len('auc'):]} |" for c in extra),
             "|---:|---|---|---|---:|---|---|---|" + "---:|" * len(extra)]
    for r in table.itertuples(index=False):
        d = r._asdict()
        lines.append(f"| {d['rank']} | {d['kind']} | {d['fusion']} | {d['features']} | {d['val_auc']:.4f} | "
                     f"{ci(d['auc'], d['auc_lo'], d['auc_hi'])} | {ci(d['eer'], d['eer_lo'], d['eer_hi'])} | "
                     f"{ci(r[COLUMNS.index('far_at_frr_0.01')], d['far_lo'], d['far_hi'])} |"
                     + "".join(f" {r[list(table.columns).index(c)]:.4f} |" for c in extra))
    return "\n".join(lines) + "\n"


def write_outputs(table, path, out, meta) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "ablation.csv", index=False)
    (out / "ablation.md").write_text(markdown_table(table))
    (out / "ablation.json").write_text(json.dumps(metrics.to_jsonable(
        {**meta, "greedy_path": path, "rows": table.to_dict(orient="records")}), indent=2))
    plots.ablation_bars(table, out / "ablation.png", title=f"Ablation ({meta.get('store', '')})")
    extra = perturbation_columns(table)
    if extra:
        top = table.head(ROBUSTNESS_ROWS)
        series = {f"{r['rank']}. {r['fusion']} [{r['features']}]": r for r in top.to_dict(orient="records")}
        plots.robustness_curves(
            {name: {c[len(auc_column("")):]: {"auc": r[c]} for c in extra} for name, r in series.items()},
            out / "robustness.png", clean={name: {"auc": r["auc"]} for name, r in series.items()},
            metric_names=("auc",), title=f"Test AUC under perturbations (top {len(top)})")
    return out


def build_parser():
    p = CLIParser(prog="python -m fusion.ablate", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="feature store (.h5)")
    p.add_argument("--features", required=True, help="comma-separated vector feature names")
    p.add_argument("--fusions", default="concat", help="comma-separated vector fusions; the first one "
                   "runs the single / leave-one-out / greedy stages (default concat)")
    p.add_argument("--head", default="logreg", help=f"sklearn head: {', '.join(heads.SKLEARN_HEADS)}")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {', '.join(STAGES)}")
    p.add_argument("--out", default="runs/ablation", help="output directory (default runs/ablation)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples per row (default 200)")
    p.add_argument("--min-gain", type=float, default=1e-3, help="greedy stops below this val-AUC gain")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="fusion hyper-parameter")
    p.add_argument("--perturb", default=None, metavar="SPECS|all",
                   help="add test AUC under perturbations stored by the extract CLI's --perturb, "
                        "e.g. jpeg:50,blur:1.5, or all of those in the store (default none)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        features = [f.strip() for f in args.features.split(",") if f.strip()]
        fusions = [f.strip() for f in args.fusions.split(",") if f.strip()]
        stages = [s.strip() for s in args.stages.split(",") if s.strip()]
        bad = [s for s in stages if s not in STAGES]
        if bad or not stages:
            raise UsageError(f"--stages: unknown {', '.join(bad) or '(empty)'}; choose from {', '.join(STAGES)}")
        if not fusions:
            raise UsageError("--fusions: give at least one fusion")
        params = train.parse_params(args.param)
        store_path = args.store
        store = train.open_store_or_usage(store_path)
        for fusion in fusions:
            if fusion in heads.FUSIONS and heads.FUSIONS[fusion].inputs != "vector":
                raise UsageError(f"--fusions: {fusion!r} reads maps; ablation covers vector fusions only")
            train.validate_run(store, features, fusion, args.head, params=params)
        specs = robustness.resolve_perturbations(store, features, args.perturb)
        t0 = time.time()
        table, path = run_ablation(store, features, fusions, args.head, stages, args.seed, args.bootstrap,
                                   args.min_gain, params, specs=specs)
        out = write_outputs(table, path, args.out, {"store": str(store_path), "features": features,
                                                    "fusions": fusions, "head": args.head, "stages": stages,
                                                    "perturbations": specs,
                                                    "seconds": round(time.time() - t0, 2)})
    except (UsageError, StoreError) as e:
        print(error_line("python -m fusion.ablate", e), file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    print(markdown_table(table.head(15)), end="")
    if path:
        print("greedy: " + " -> ".join(f"+{p['added']} ({p['val_auc']:.4f})" for p in path))
    print(f"{len(table)} configurations in {time.time() - t0:.1f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
