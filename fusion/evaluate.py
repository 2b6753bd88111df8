"""Score another feature store with a trained fusion model.

::

    python -m fusion.evaluate --model RUN_DIR --store OTHER.h5 --out DIR [--split test]

The model's ``model.json`` records, per feature, the extractor, version, parameters and
vector shape of the store it was trained on. The other store must match on all of them; a
missing feature or any difference stops the run with one line naming the feature and the
difference (``feature 'lbp': params differ: radius 1 -> 2``), because scores of a model fed
features computed differently are meaningless. The threshold is the one chosen on the
training run's val split.

Writes ``metrics.json`` (``{"model", "store", "split", "threshold", "metrics", "decisions",
"nonfinite", "warnings"}``), ``scores.csv``, ``roc.png`` / ``det.png`` / ``scores.png`` and
``report.html`` (:mod:`fusion.report`) into ``--out``. The console shows the decisions at
the threshold in counts (``13 of 14 reals called fake``) and the warnings. A store with one
class only (reals only, say) has no AUC, EER, ROC or DET; the console says so, the error
rate at the threshold is the number to read, and only ``scores.png`` is drawn.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from base.cli import CLIParser, command_line, next_line, run_cli
from base.errors import UsageError
from base.outputs import add_overwrite_flag, claim_output_dir
from fusion import heads, metrics, scoring


def model_dir(path, flag: str = "--model") -> Path:
    """A run directory (with ``model/``) or a model directory (with ``model.json``);
    ``flag`` names the option that gave ``path`` in the error."""
    from fusion.modelio import run_kind
    p = Path(path)
    if (p / "model" / "model.json").is_file():
        return p / "model"
    if (p / "model.json").is_file():
        return p
    if run_kind(p) == "fusion.cascade":
        raise UsageError(f"{flag} {p}: this is a fusion.cascade run, not a fusion.train run; use "
                         f"python -m fusion.cascade eval --run {p} (or predict)")
    if p.is_file():
        raise UsageError(f"{flag} {p}: is a file, expected a run folder of fusion.train")
    raise UsageError(f"{flag}: no model.json in {p} or {p / 'model'}; give the folder written "
                     "by `python -m fusion.train --out`")


def require_matching_features(config: dict, store, store_path):
    """UsageError naming the first difference (and the others) between the features the
    model of ``config`` (its ``model.json``) was trained on and those of ``store``."""
    recorded = config.get("run", {}).get("feature_attrs") or {f: {} for f in config["features"]}
    problems = scoring.attr_mismatches(recorded, store, config.get("inputs", "vector"))
    if problems:
        raise UsageError(f"--store {store_path}: {problems[0]}"
                         + (f" (+{len(problems) - 1} more: {'; '.join(problems[1:])})" if len(problems) > 1 else ""))


def evaluate_run(model_path, store_path, out, split="auto", n_boot=1000, seed=0, plots_on=True,
                 verbose=True, command: str | None = None) -> dict:
    """Check compatibility, score ``store_path`` with the model, write ``out``. Returns the result.

    ``command`` (the command line) is shown in ``report.html``."""
    mdir = model_dir(model_path)
    config = json.loads((mdir / "model.json").read_text())
    store = scoring.open_store_or_usage(store_path)
    run = config.get("run", {})
    inputs = config.get("inputs", "vector")
    require_matching_features(config, store, store_path)
    if split not in ("auto", "all", "train", "val", "test"):
        raise UsageError(f"--split: expected auto, all, train, val or test, got {split!r}")
    chosen = scoring.cross_split(store) if split == "auto" else (None if split == "all" else split)
    model = heads.load_head(mdir)
    data = scoring.load_split(store, config["features"], chosen, inputs)
    if len(data) == 0:
        raise UsageError(f"--split: {chosen!r} has no samples in {store_path}")
    threshold = scoring.saved_threshold(model, run)
    frame = scoring.model_scores(model, data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "scores.csv", index=False)
    result = {"model": str(mdir), "store": str(store_path), "split": chosen or "all",
              "features": config["features"], "fusion": config["fusion"], "threshold": threshold,
              "metrics": scoring.evaluate_scores(frame, threshold, n_boot, seed),
              "nonfinite": scoring.nonfinite_counts(data),
              "decisions": scoring.decision_counts(frame, threshold)}
    result["warnings"] = scoring.chance_warnings(result["split"], result["metrics"]) \
        + scoring.nonfinite_warnings(result["nonfinite"], result["split"]) \
        + [f"{result['split']}: {w}" for w in result["metrics"].get("warnings", [])]
    (out / "metrics.json").write_text(json.dumps(metrics.to_jsonable(result), indent=2))
    plotted = scoring.write_plots(frame, out, threshold, title=Path(store_path).stem) if plots_on else []
    from fusion.report import write_report
    write_report(out, command)
    if verbose:
        m = result["metrics"]
        one_class = not (m.get("n_real") and m.get("n_fake"))
        print(f"{config['fusion']} on {Path(store_path).name} [{result['split']}]: "
              f"n_real {m.get('n_real')} n_fake {m.get('n_fake')} AUC {scoring._fmt(m.get('auc'))} "
              f"EER {scoring._fmt(m.get('eer'))} FAR@FRR=1% {scoring._fmt(m.get('far_at_frr', {}).get('0.01'))} "
              f"-> {out}")
        print(f"at threshold logit {scoring._fmt(threshold)}: {scoring.decision_text(result['decisions'])}; "
              f"accuracy {scoring._fmt(m.get('acc'), 3)}")
        if one_class:
            print("AUC, EER and ROC/DET are not defined: the store has "
                  f"{'reals' if m.get('n_real') else 'fakes'} only (one class); "
                  "the error rate above is the number to read")
        if plots_on:
            print(f"plots: {', '.join(p.name for p in plotted) or 'none'}"
                  + (" (ROC and DET need reals and fakes)" if one_class else ""))
        for line in scoring.warning_lines(result["warnings"]):
            print(line)
        if one_class:  # fusion.importance needs both classes; predict_line a fake's file
            step = scoring.predict_line(model_path, data.meta)
            if step:
                print(step)
        elif inputs == "vector" and result["split"] in ("val", "test"):  # which features carry over
            print(next_line("python -m fusion.importance", "--store", store_path, "--run", model_path,
                            "--split", result["split"], "--out", out / "importance"))
        elif scoring.predict_line(model_path, data.meta):
            print(scoring.predict_line(model_path, data.meta))
    return result


def build_parser():
    p = CLIParser(prog="python -m fusion.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="run directory of fusion.train (or its model/ folder)")
    p.add_argument("--store", required=True, help="feature store (.h5) to score")
    p.add_argument("--out", required=True,
                   help="output directory; one that holds files is refused unless --overwrite")
    p.add_argument("--split", default="auto", help="split to score: auto (test if present, else all), "
                   "all, train, val or test (default auto)")
    scoring.add_report_flags(p)
    add_overwrite_flag(p)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = command_line(parser.prog, argv)
    def work():
        with claim_output_dir(args.out, overwrite=args.overwrite, inputs=[args.model, args.store]):
            evaluate_run(args.model, args.store, args.out, args.split, args.bootstrap,
                         plots_on=not args.no_plots, command=command)
    return run_cli(parser.prog, work)


if __name__ == "__main__":
    sys.exit(main())
