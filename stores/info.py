"""``python -m stores.info STORE``: what a store holds, on one screen.

``--check`` also reads every dataset in full, so a damaged chunk is found here rather than
in the middle of a training run, and counts per feature the rows holding NaN or inf: in
rows marked invalid (not computed) they are listed, in rows marked valid they are a problem
(exit 1, naming the feature and the count); row counts are checked whenever a store is opened. The
summary ends with a ``next:`` line, the command that usually follows (:func:`next_command`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from base.cli import CLIParser, next_line, not_a_file, run_cli
from base.errors import UsageError
from stores.reader import open_store


#: Vector features never offered to a fusion head by :func:`next_command`: ``mask`` is the
#: area of the ground-truth mask (the label itself), ``sequence`` is read by the sequence
#: fusion alone.
NOT_FOR_HEADS = ("mask", "sequence")


def next_command(store) -> str | None:
    """The command that usually follows a look at ``store`` (a ``next:`` line), or None.

    Reals and fakes in split train: ``fusion.train`` on the store's vector features (without
    :data:`NOT_FOR_HEADS` and perturbed ``feature@spec`` copies). Otherwise, with the ``rgb``
    map: ``fusion.cascade train`` (``--sbi online`` when train holds reals only). A store
    without a train split is for scoring (``fusion.evaluate``), which needs a run this store
    cannot name: None.
    """
    meta = store.meta
    labels = set(meta.loc[meta["split"] == "train", "label"].astype(int))
    if not labels:
        return None
    path, runs = str(store.path), Path("runs") / Path(store.path).stem
    features = [f for f in store.features if "@" not in f and f not in NOT_FOR_HEADS]
    if labels == {0, 1} and features:
        return next_line("python -m fusion.train", "--store", path, "--features", ",".join(features),
                    "--out", runs)
    if "rgb" in store.maps:
        return next_line("python -m fusion.cascade train", "--store", path,
                    *(["--sbi", "online"] if labels == {0} else []), "--out", f"{runs}_cascade")
    return None


def format_summary(summary: dict) -> str:
    lines = [f"store    {summary['path']}",
             f"samples  {summary['samples']} from {summary['videos']} videos/images"]
    for key in ("by_split", "by_label", "by_method"):
        parts = ", ".join(f"{k}: {v}" for k, v in summary[key].items())
        lines.append(f"{key[3:]:<8} {parts or '-'}")
    lines.append("features")
    for name, info in summary["features"].items():
        lines.append(f"  {name:<12} vector {str(info['shape']):<14} valid {info['valid']}"
                     f"  v{info['version']}")
    for name, info in summary["maps"].items():
        lines.append(f"  {name:<12} map    {str(info['shape']):<14} valid {info['valid']}")
    errors = summary["errors"]
    lines.append("errors   " + (", ".join(f"{k}: {v}" for k, v in errors.items()) or "none"))
    return "\n".join(lines)


def nonfinite_lines(counts: dict) -> list[str]:
    """``--check``'s lines on NaN / inf values: one per feature that holds any.

    >>> nonfinite_lines({"fft": {"kind": "vector", "rows": 8, "marked_valid": 8}})
    ['nonfinite fft: NaN or inf in 8 rows, 8 of them marked valid (a problem)']
    """
    if not counts:
        return ["nonfinite none: every value of every float feature is finite"]
    return [f"nonfinite {name}: NaN or inf in {c['rows']} rows, "
            + (f"{c['marked_valid']} of them marked valid (a problem)" if c["marked_valid"]
               else "all marked invalid (not computed)") for name, c in counts.items()]


def main(argv=None) -> int:
    parser = CLIParser(prog="python -m stores.info", description=__doc__)
    parser.add_argument("store", help="path of a CLMF .h5 store")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--errors", action="store_true", help="also list every error row")
    parser.add_argument("--check", action="store_true",
                        help="read every dataset in full and report the first damaged one, and "
                             "NaN / inf values per feature (a problem in rows marked valid)")
    args = parser.parse_args(argv)

    def work():
        from stores.schema import StoreError
        problem = not_a_file(args.store)
        if problem:
            raise UsageError(f"{args.store}: " + ("no such store file" if problem == "no such file"
                                                  else problem))
        with open_store(args.store) as store:  # a damaged store: StoreError, exit 1
            summary = store.summary()
            errors = store.errors
            step = next_command(store)
            if args.check:
                summary["check"] = f"{store.check()} datasets read in full, row counts agree"
                summary["nonfinite"] = store.nonfinite()
        damaged = {k: v for k, v in summary.get("nonfinite", {}).items() if v["marked_valid"]}
        if args.json:
            print(json.dumps(summary, indent=2, default=str))
        else:
            print(format_summary(summary))
            if args.check:
                print(f"check    {summary['check']}")
                for line in nonfinite_lines(summary["nonfinite"]):
                    print(line)
        if damaged:
            name, c = next(iter(damaged.items()))
            more = f" (+{len(damaged) - 1} more: {', '.join(list(damaged)[1:])})" if len(damaged) > 1 else ""
            raise StoreError(f"{args.store}: feature {name!r} is NaN or infinite in {c['marked_valid']} "
                             f"rows marked valid{more}: the store is damaged or its extractor wrote a "
                             "bad value; re-extract it")
        if args.json:
            return
        if args.errors and len(errors):
            print(errors.to_string(index=False))
        if step:
            print(step)
    return run_cli(parser.prog, work)


if __name__ == "__main__":
    sys.exit(main())
