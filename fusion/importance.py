"""Which features matter: permutation importance per feature block and per column group,
mutual information per column, for a model trained by ``fusion.train``.

::

    python -m fusion.importance --store S.h5 --run RUN [--split val] [--repeats 10] [--out DIR]

**Permutation importance** is the drop in AUC (at the model's decision values) on ``--split``
when the rows of one unit of columns are shuffled together -- a whole feature block
(``lbp``), or one column group inside it -- while every other column stays in place. The
model is the run's, never refitted. It is measured on **val** by default, so that features
can be chosen by it; ``--split test`` reports test instead, labelled as such in every output
(choose nothing on it). A drop near 0 means the model does not use the unit (or that other
columns carry the same information); a negative drop is noise.

**Column groups** come from the column names the extractor recorded (``columns`` in the
store's attributes), see :func:`column_groups`: the name without its last ``_`` part
(``dct_u0v1_beta`` -> ``dct_u0v1``, one DCT frequency; ``lbp_P8R1_cell33_code9`` ->
``lbp_P8R1_cell33``, one cell's histogram); when that leaves one group for the whole
feature, the name without its trailing number (``fft_ring7`` -> ``fft_ring``); unnamed
columns form one group per feature. Any group of more than ``--chunk`` columns is cut into
consecutive runs of ``--chunk`` (``fft_ring[0:16]``, ``fft_ring[16:32]``, ...).

**Mutual information** (nats, scikit-learn's k-NN estimator) between each column and the
label is computed on split ``train`` (on ``--split`` itself when the store's train split
lacks reals or fakes, as in a store made for testing; ``mi_split`` says which); per block
and per group the table gives its largest and its mean column MI. MI ignores the model: a high-MI group the model does not use
points at redundancy, a used group with low MI at an interaction.

A model whose AUC on ``--split`` is below chance (0.5) ranks the classes the wrong way round:
every drop then means the opposite. The run says so in a ``WARNING worse than chance`` line
before and after its table, in ``importance.json`` (``below_chance``, ``warnings``) and in
the title of ``importance.png``; rows with NaN or inf values are counted and warned about as
in :mod:`fusion.train`.

Writes into ``--out`` (default ``RUN/importance``): ``importance.json`` (split, unpermuted
AUC, warnings), ``importance.csv`` (one row per block
and per group: ``level, feature, group, n_columns, split, auc, auc_drop, auc_drop_std,
mi_max, mi_mean, mi_split``), ``mi.csv`` (one row per column) and ``importance.png`` (AUC
drop per block and for the top ``--top`` groups, with one standard deviation over the
repeats as error bars, and the groups' largest MI).

From Python::

    from fusion.importance import permutation_importance_by_group, mutual_information
    permutation_importance_by_group("ffpp.h5", ["lbp", "dct", "fft"])   # DataFrame, on val
    mutual_information("ffpp.h5", ["lbp", "dct"])                       # DataFrame
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from base.cli import CLIParser, at_least, next_line, run_cli
from base.errors import UsageError
from base.outputs import add_overwrite_flag, claim_output_dir
from fusion import heads

__all__ = ["permutation_importance_by_group", "mutual_information", "column_groups",
           "permutation_importance", "importance_run"]

SPLITS = ("val", "test")
TABLE_COLUMNS = ["level", "feature", "group", "n_columns", "split", "auc", "auc_drop",
                 "auc_drop_std", "mi_max", "mi_mean", "mi_split"]


def _store(store):
    if isinstance(store, (str, bytes)) or hasattr(store, "__fspath__"):
        import stores
        return stores.open_store(store)
    return store


def _auc(y, z) -> float:
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(y, z))


def column_groups(feature: str, columns, n_columns: int, chunk: int = 16) -> list[tuple[str, np.ndarray]]:
    """The column groups of one feature block: ``[(name, column indices), ...]`` in column order.

    ``columns`` are the names the extractor recorded (ignored unless there is one per
    column). Named columns are grouped by their name without its last ``_`` part, or, when
    that gives one group for several columns, without its trailing number; unnamed columns
    are one group named ``feature``. A group of more than ``chunk`` columns is cut into
    consecutive runs of ``chunk``, named ``group[a:b]`` (positions inside the group).

    Examples
    --------
    >>> [(g, i.tolist()) for g, i in column_groups("npr", ["npr_R_std", "npr_R_skew", "npr_G_std"], 3)]
    [('npr_R', [0, 1]), ('npr_G', [2])]
    >>> [g for g, _ in column_groups("fft", [f"fft_ring{i}" for i in range(5)] + ["fft_hf0.5"], 6, chunk=4)]
    ['fft_ring[0:4]', 'fft_ring[4:5]', 'fft_hf']
    >>> [g for g, _ in column_groups("x", None, 5, chunk=2)]
    ['x[0:2]', 'x[2:4]', 'x[4:5]']
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    names = list(columns or [])
    if len(names) != n_columns:
        keys = [feature] * n_columns
    else:
        keys = [n.rsplit("_", 1)[0] if "_" in n else n for n in names]
        if n_columns > 1 and len(set(keys)) == 1:
            keys = [re.sub(r"[0-9.]+$", "", n) or n for n in names]
    order = list(dict.fromkeys(keys))
    out = []
    for key in order:
        idx = np.flatnonzero(np.array(keys, dtype=object) == key)
        if len(idx) <= chunk:
            out.append((key, idx))
        else:
            out += [(f"{key}[{a}:{min(a + chunk, len(idx))}]", idx[a:a + chunk])
                    for a in range(0, len(idx), chunk)]
    return out


def permutation_importance(model, data: heads.FusionData, units, n_repeats: int = 10,
                           seed: int = 0) -> pd.DataFrame:
    """Drop in AUC when each unit's columns are shuffled across rows (together), model fixed.

    Parameters
    ----------
    model : fitted :class:`fusion.heads.FusionHead` (vector inputs)
    data : FusionData with reals and fakes
    units : list of ``(feature, group, column indices)``; ``group`` None for a whole block
    n_repeats : shuffles per unit; ``seed`` makes them reproducible (unit ``i`` draws from
        ``default_rng([seed, i])``, so a unit's result does not depend on the others)

    Returns a DataFrame (feature, group, n_columns, auc, auc_drop, auc_drop_std) in unit
    order; ``auc`` is the unpermuted AUC, ``auc_drop`` the mean over the repeats and
    ``auc_drop_std`` their standard deviation.
    """
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be >= 1, got {n_repeats}")
    y = np.asarray(data.y)
    if len(np.unique(y)) < 2:
        raise ValueError("permutation importance needs reals and fakes for an AUC")
    base = _auc(y, model.decision_function(data))
    rows = []
    for i, (feature, group, idx) in enumerate(units):
        rng = np.random.default_rng([seed, i])
        x = data.blocks[feature]
        idx = np.arange(x.shape[1]) if idx is None else np.asarray(idx)
        drops = []
        for _ in range(n_repeats):
            shuffled = x.copy()
            shuffled[:, idx] = x[rng.permutation(len(x))][:, idx]
            permuted = heads.FusionData({**data.blocks, feature: shuffled}, data.y, data.meta)
            drops.append(base - _auc(y, model.decision_function(permuted)))
        rows.append({"feature": feature, "group": group, "n_columns": len(idx), "auc": base,
                     "auc_drop": float(np.mean(drops)), "auc_drop_std": float(np.std(drops))})
    return pd.DataFrame(rows, columns=["feature", "group", "n_columns", "auc", "auc_drop", "auc_drop_std"])


def permutation_importance_by_group(store, features, fusion="concat", head="logreg", split="val",
                                    n_repeats=5, seed=0, model=None, **params) -> pd.DataFrame:
    """Drop in AUC on ``split`` (default val) when one feature's whole block is shuffled.

    A feature's dimensions are permuted together (same row permutation), so the importance is
    that of the feature group, not of single columns. ``model`` is a fitted
    :class:`fusion.heads.FusionHead`; without one, fusion ``fusion`` / ``head`` is fitted on
    train (val for model selection) first.

    Returns a DataFrame (feature, auc, auc_drop, auc_drop_std) sorted by ``auc_drop``, largest
    first; ``auc`` is the unpermuted AUC.
    """
    from fusion.scoring import load_split

    store = _store(store)
    features = list(features)
    if model is None:
        model = heads.create_fusion(fusion, features, head=head, seed=seed, **params)
        val = load_split(store, features, "val")
        model.fit(load_split(store, features, "train"), val if len(val) else None)
    data = load_split(store, features, split)
    if len(np.unique(data.y)) < 2:
        raise ValueError(f"split {split!r} needs reals and fakes for an AUC")
    table = permutation_importance(model, data, [(f, None, None) for f in features], n_repeats, seed)
    return (table[["feature", "auc", "auc_drop", "auc_drop_std"]]
            .sort_values("auc_drop", ascending=False, kind="stable", ignore_index=True))


def mutual_information(store, features, split="train", max_samples=20000, n_neighbors=3, seed=0) -> pd.DataFrame:
    """Mutual information (nats) between each feature dimension and the label.

    sklearn's ``mutual_info_classif`` (k-NN estimator) on at most ``max_samples`` rows of
    ``split`` (a seeded random subset); NaN values are replaced by the column mean.
    Returns a DataFrame (feature, dim, column, mi) sorted by ``mi``, largest first; ``column``
    is the store's column name for that dimension when the extractor recorded one.
    """
    from sklearn.feature_selection import mutual_info_classif

    store = _store(store)
    X, y, _ = store.read(list(features), split=split)
    if len(y) == 0:
        raise ValueError(f"split {split!r} has no samples")
    rng = np.random.default_rng(seed)
    if len(y) > max_samples:
        keep = np.sort(rng.choice(len(y), max_samples, replace=False))
        X, y = X[keep], y[keep]
    X = np.asarray(X, np.float64)
    col_mean = np.nanmean(np.where(np.isfinite(X), X, np.nan), axis=0) if np.isfinite(X).any() else np.zeros(X.shape[1])
    X = np.where(np.isfinite(X), X, np.nan_to_num(col_mean))
    mi = mutual_info_classif(X, y, n_neighbors=n_neighbors, random_state=seed)
    rows, start = [], 0
    for f in features:
        d = int(np.prod(store.attrs(f)["shape"]))
        cols = store.attrs(f).get("columns") or []
        for j in range(d):
            rows.append({"feature": f, "dim": j, "column": cols[j] if j < len(cols) else f"{f}[{j}]",
                         "mi": float(mi[start + j])})
        start += d
    return pd.DataFrame(rows).sort_values("mi", ascending=False, ignore_index=True)


def importance_table(model, data, store, features, split="val", n_repeats=10, seed=0, chunk=16,
                     mi_samples=20000, mi_split="train") -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(table, mi)``: permutation importance of every block and group, with their MI.

    ``table`` has :data:`TABLE_COLUMNS`, blocks first, each level sorted by ``auc_drop``
    (largest first); ``mi`` is :func:`mutual_information` on ``mi_split``, with a ``group``
    column.
    """
    groups = {f: column_groups(f, store.attrs(f).get("columns"), data.blocks[f].shape[1], chunk)
              for f in features}
    units = [(f, None, None) for f in features] + [(f, g, idx) for f in features for g, idx in groups[f]]
    table = permutation_importance(model, data, units, n_repeats, seed)
    table.insert(0, "level", np.where(table["group"].isna(), "block", "group"))
    table["group"] = table["group"].fillna(table["feature"])
    table["split"] = split
    mi = mutual_information(store, features, mi_split, max_samples=mi_samples, seed=seed)
    group_of = {(f, int(j)): g for f in features for g, idx in groups[f] for j in idx}
    mi["group"] = [group_of[(f, int(j))] for f, j in zip(mi["feature"], mi["dim"])]
    by_block = mi.groupby("feature")["mi"].agg(["max", "mean"])
    by_group = mi.groupby(["feature", "group"])["mi"].agg(["max", "mean"])
    block = table["level"] == "block"
    table["mi_max"] = [by_block.loc[f, "max"] if b else by_group.loc[(f, g), "max"]
                       for f, g, b in zip(table["feature"], table["group"], block)]
    table["mi_mean"] = [by_block.loc[f, "mean"] if b else by_group.loc[(f, g), "mean"]
                        for f, g, b in zip(table["feature"], table["group"], block)]
    table["mi_split"] = mi_split
    table = pd.concat([t.sort_values("auc_drop", ascending=False, kind="stable")
                       for _, t in table.groupby(~block, sort=True)], ignore_index=True)
    return table[TABLE_COLUMNS], mi[["feature", "dim", "column", "group", "mi"]]


def importance_plot(table: pd.DataFrame, path, top: int = 20, title: str = "") -> Path:
    """Bars of AUC drop per block and for the ``top`` groups (std over repeats as error bars),
    beside each group's largest column MI; a line at 0 marks "no effect"."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = table[table["level"] == "block"]
    groups = table[table["level"] == "group"].head(top)
    split = str(table["split"].iloc[0]) if len(table) else "val"
    split_mi = str(table["mi_split"].iloc[0]) if len(table) else "train"
    rows = len(blocks) + len(groups)
    fig, axes = plt.subplots(2, 2, figsize=(11, 2.2 + 0.28 * rows), squeeze=False,
                             gridspec_kw={"height_ratios": [max(len(blocks), 1), max(len(groups), 1)],
                                          "width_ratios": [2, 1]})
    for (ax, mi_ax), part, what in ((axes[0], blocks, "feature blocks"),
                                   (axes[1], groups, f"top {len(groups)} column groups")):
        labels = part["group"].tolist() if what != "feature blocks" else part["feature"].tolist()
        y = np.arange(len(part))
        ax.barh(y, part["auc_drop"], xerr=part["auc_drop_std"], color="tab:blue", alpha=0.85,
                error_kw={"ecolor": "black", "capsize": 2, "lw": 0.8})
        ax.axvline(0.0, color="grey", ls="--", lw=1, label="no effect (0)")
        ax.set_yticks(y, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"AUC drop when shuffled ({split} split; bars: mean, whiskers: 1 std)")
        ax.set_title(f"Permutation importance, {what}", fontsize=9)
        ax.legend(loc="lower right", fontsize=7)
        mi_ax.barh(y, part["mi_max"], color="tab:orange", alpha=0.85)
        mi_ax.set_yticks(y, [""] * len(part))
        mi_ax.invert_yaxis()
        mi_ax.set_xlabel(f"largest column MI with the label (nats, {split_mi})")
        mi_ax.set_title("Mutual information", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def importance_run(store_path, run, split="val", out=None, n_repeats=10, seed=0, chunk=16, top=20,
                   mi_samples=20000, plots_on=True, verbose=True) -> pd.DataFrame:
    """Check the flags, compute :func:`importance_table` and write ``out``. Returns the table."""
    from fusion import scoring

    if split not in SPLITS:
        raise UsageError(f"--split: expected {' or '.join(SPLITS)}, got {split!r} "
                         "(importance is measured on val; test only reports)")
    for flag, value, least in (("--repeats", n_repeats, 1), ("--chunk", chunk, 1), ("--top", top, 1),
                               ("--mi-samples", mi_samples, 10)):
        if value < least:
            raise UsageError(f"{flag}: must be >= {least}, got {value}")
    from fusion.evaluate import model_dir, require_matching_features
    mdir = model_dir(run, flag="--run")
    config = json.loads((mdir / "model.json").read_text())
    if config.get("inputs", "vector") != "vector":
        raise UsageError(f"--run {run}: fusion {config.get('fusion')!r} reads maps; importance "
                         "covers vector fusions only")
    store = scoring.open_store_or_usage(store_path)
    features = list(config["features"])
    require_matching_features(config, store, store_path)
    data = scoring.load_split(store, features, split)
    if len(data) == 0 or len(np.unique(data.y)) < 2:
        raise UsageError(f"--split {split}: needs reals and fakes in {store_path} (it has "
                         f"{int((data.y == 0).sum())} reals, {int((data.y == 1).sum())} fakes)")
    train_labels = set(store.meta.loc[store.meta["split"] == "train", "label"].astype(int))
    mi_split = "train" if train_labels == {0, 1} else split
    model = heads.load_head(mdir)
    run_dir = mdir.parent if mdir.name == "model" else mdir  # RUN, also when given RUN/model
    out = Path(out) if out is not None else run_dir / "importance"
    table, mi = importance_table(model, data, store, features, split, n_repeats, seed, chunk, mi_samples,
                                 mi_split)
    auc = float(table["auc"].iloc[0])
    warnings = scoring.chance_warnings(split, {"auc": auc}) \
        + scoring.nonfinite_warnings(scoring.nonfinite_counts(data), split)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "importance.csv", index=False)
    mi.to_csv(out / "mi.csv", index=False)
    (out / "importance.json").write_text(json.dumps(
        {"store": str(store_path), "run": str(run), "split": split, "auc": auc, "repeats": n_repeats,
         "below_chance": auc < 0.5, "warnings": warnings}, indent=2) + "\n")
    if plots_on:
        importance_plot(table, out / "importance.png", top,
                        title=("BELOW CHANCE: every drop means the opposite -- " if auc < 0.5 else "")
                        + f"{config['fusion']} on {', '.join(features)} -- {Path(store_path).name}, "
                          f"{split} split (AUC {auc:.3f})")
    if verbose:
        lines = scoring.warning_lines(warnings)
        print("\n".join(lines + [summary(table, split, n_repeats, out, plots_on=plots_on)] + lines))
        ranked = table.loc[table["level"] == "block", "feature"].tolist()
        fusion = config["fusion"]
        print(next_line("python -m fusion.ablate", "--store", store_path, "--features", ",".join(ranked),
                        "--fusions", fusion, "--out", run_dir.parent / f"{run_dir.name}_ablation"))
    return table


def summary(table: pd.DataFrame, split: str, n_repeats: int, out, top: int = 10, plots_on=True) -> str:
    """One screen: the unpermuted AUC, every block, the ``top`` groups, where the files went."""
    fmt = lambda v: f"{v:+.4f}"  # noqa: E731
    label = split + (" (TEST: report only, choose nothing on it)" if split == "test" else "")
    lines = [f"permutation importance on {label}: AUC {table['auc'].iloc[0]:.4f} unpermuted, "
             f"{n_repeats} shuffles per unit; MI on {table['mi_split'].iloc[0]}",
             f"{'block / group':<28}{'cols':>6}{'AUC drop':>10}{'std':>8}{'MI max':>8}"]
    blocks, groups = table[table["level"] == "block"], table[table["level"] == "group"]
    for _, r in blocks.iterrows():
        lines.append(f"{r['feature']:<28}{r['n_columns']:>6}{fmt(r['auc_drop']):>10}"
                     f"{r['auc_drop_std']:>8.4f}{r['mi_max']:>8.4f}")
    lines.append(f"top {min(top, len(groups))} of {len(groups)} column groups:")
    for _, r in groups.head(top).iterrows():
        lines.append(f"  {r['group']:<26}{r['n_columns']:>6}{fmt(r['auc_drop']):>10}"
                     f"{r['auc_drop_std']:>8.4f}{r['mi_max']:>8.4f}")
    lines.append(f"written to {out} (importance.json, importance.csv, mi.csv"
                 f"{', importance.png' if plots_on else ''})")
    return "\n".join(lines)


def build_parser() -> CLIParser:
    p = CLIParser(prog="python -m fusion.importance", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="feature store (.h5) the run was trained on, or "
                   "one with the same features")
    p.add_argument("--run", required=True, help="run directory of fusion.train (or its model/ folder)")
    p.add_argument("--split", default="val", help="split the AUC drops are measured on: val, or test "
                   "(reported as test; choose nothing on it) (default val)")
    p.add_argument("--out", default=None,
                   help="output folder; one that holds files is refused unless --overwrite "
                        "(default RUN/importance)")
    p.add_argument("--repeats", type=at_least(1), default=10, help="shuffles per block or group")
    p.add_argument("--chunk", type=at_least(1), default=16,
                   help="largest column group; bigger groups are cut into runs of this many columns")
    p.add_argument("--top", type=at_least(1), default=20, help="column groups drawn in importance.png")
    p.add_argument("--mi-samples", type=at_least(10), default=20000,
                   help="train rows (a seeded random subset) for the mutual information")
    p.add_argument("--seed", type=at_least(0), default=0, help="seed of the shuffles and the MI subset")
    p.add_argument("--no-plots", action="store_true", help="skip importance.png")
    add_overwrite_flag(p)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def work():
        from fusion.evaluate import model_dir
        mdir = model_dir(args.run, flag="--run")
        run_dir = mdir.parent if mdir.name == "model" else mdir  # RUN, also when given RUN/model
        out = Path(args.out) if args.out is not None else run_dir / "importance"
        with claim_output_dir(out, overwrite=args.overwrite, inputs=[args.store, mdir]):
            importance_run(args.store, args.run, args.split, out, args.repeats, args.seed,
                           args.chunk, args.top, args.mi_samples, plots_on=not args.no_plots)
    return run_cli(parser.prog, work)


if __name__ == "__main__":
    sys.exit(main())
