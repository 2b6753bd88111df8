"""``python -m stores.info STORE``: what a store holds, on one screen."""
from __future__ import annotations

import argparse
import json
import sys

from stores.reader import open_store
from stores.schema import StoreError


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stores.info", description=__doc__)
    parser.add_argument("store", help="path of a CLMF .h5 store")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--errors", action="store_true", help="also list every error row")
    args = parser.parse_args(argv)
    try:
        with open_store(args.store) as store:
            summary = store.summary()
            errors = store.errors
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(format_summary(summary))
        if args.errors and len(errors):
            print(errors.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
