"""What training, evaluation, the audit and the robustness curves share: loading a split,
scoring it, its metrics, warnings and plots, and a run's provenance.

:mod:`fusion.train`, :mod:`fusion.evaluate`, :mod:`fusion.audit`, :mod:`fusion.robustness`,
:mod:`fusion.importance`, :mod:`fusion.predict` and :mod:`fusion.report` import it; it
imports none of them, so that no two of them import each other (issue 24).

* :func:`load_split` reads one split of a store as :class:`fusion.heads.FusionData`, and
  :func:`nonfinite_counts` / :func:`nonfinite_warnings` count and name its NaN / inf values;
* :func:`model_scores` and :func:`scores_frame` score it (``scores.csv``'s columns,
  :data:`SCORE_COLUMNS`; metrics rank :data:`RANK_COLUMN`, the decision value);
* :func:`evaluate_scores` and :func:`fit_and_evaluate` measure it (val chooses the threshold,
  test only reports), :func:`decision_counts` counts decisions at a threshold, and
  :func:`run_warnings` / :func:`chance_warnings` / :func:`warning_lines` say what to doubt;
* :func:`write_plots` draws ROC, DET and score histograms;
* :func:`provenance` records code version, command, the stores' SHA-256, seed and config.
"""
from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from base.cli import at_least, next_line, not_a_file
from base.errors import UsageError
from fusion import heads, metrics, plots
from stores.schema import code_version

SCORE_COLUMNS = ["sample_id", "split", "label", "method", "video_id", "identity", "score", "logit"]
#: The scores.csv column that metrics rank and thresholds cut: the decision value.
RANK_COLUMN = "logit"
COMPARED_ATTRS = ("extractor", "version", "params", "shape")


def load_split(store, features, split=None, inputs="vector") -> heads.FusionData:
    """One split of ``store`` as per-feature blocks (vectors N x D, or maps N x H x W x C),
    with the store's ``valid`` flags of those rows."""
    blocks, y, meta = {}, None, None
    rows = store.select(split=split)
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
    valid = {f: np.asarray(store.valid(f, rows), bool) for f in features}
    return heads.FusionData(blocks, y, meta, valid)


def nonfinite_counts(data: heads.FusionData) -> dict:
    """Rows holding a NaN or infinite value, per feature block of ``data`` (only those with any).

    Returns ``{feature: {"rows": k, "of": n, "marked_valid": j}}``: ``k`` of the ``n`` rows
    have a non-finite value somewhere in the feature's vector (or map); ``j`` of those ``k``
    are marked ``valid`` by the store (None when ``data`` carries no ``valid`` flags).

    >>> d = heads.FusionData({"f": np.array([[1., np.nan], [np.inf, 0.], [1., 2.]])}, np.zeros(3))
    >>> nonfinite_counts(d)
    {'f': {'rows': 2, 'of': 3, 'marked_valid': None}}
    """
    out = {}
    for f, x in data.blocks.items():
        x = np.asarray(x)
        if not len(x):
            continue
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            valid = (data.valid or {}).get(f)
            out[f] = {"rows": int(bad.sum()), "of": int(len(x)),
                      "marked_valid": None if valid is None else int((bad & np.asarray(valid, bool)).sum())}
    return out


def nonfinite_warnings(counts: dict, where: str) -> list[str]:
    """One warning per feature of :func:`nonfinite_counts` ``counts`` of split/store ``where``."""
    out = []
    for f, c in counts.items():
        marked = c.get("marked_valid")
        out.append(f"{where}: feature {f!r} is NaN or infinite in {c['rows']} of {c['of']} rows"
                   + (f" ({marked} of them marked valid: the store is damaged or its extractor "
                      "wrote a bad value)" if marked else "")
                   + ": the head puts the train-column mean in its place")
    return out


def feature_attrs(store, features) -> dict:
    """The store attributes worth comparing across stores, JSON-ready, per feature."""
    out = {}
    for f in features:
        a = store.attrs(f)
        out[f] = {"extractor": a.get("extractor"), "version": a.get("version"), "params": a.get("params"),
                  "shape": list(a.get("shape", ())), "code_version": a.get("code_version")}
        if a.get("trained_on"):  # a stacked model (cascade): predict checks it reloads these weights
            out[f]["weights_sha256"] = a.get("weights_sha256")
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
    problem = not_a_file(path)
    if problem == "no such file":
        raise UsageError(f"{flag}: store file not found: {path}")
    if problem:
        raise UsageError(f"{flag} {path}: {problem}")
    try:
        return stores.open_store(path)
    except (stores.StoreError, OSError) as e:  # a bad file is a bad flag value here
        raise UsageError(f"{flag}: cannot open {path}: {e}") from e


def scores_frame(data: heads.FusionData, scores, logits=None) -> pd.DataFrame:
    """One row per sample: :data:`SCORE_COLUMNS` (``logit`` defaults to ``scores``)."""
    meta = data.meta
    df = pd.DataFrame({
        "sample_id": meta["sample_id"].astype(str).to_numpy(),
        "split": meta["split"].astype(str).to_numpy(),
        "label": np.asarray(data.y, np.int64), "method": meta["method"].astype(str).to_numpy(),
        "video_id": meta["video_id"].astype(str).to_numpy(),
        "identity": (meta["identity"] if "identity" in meta else meta["video_id"]).astype(str).to_numpy(),
        "score": np.asarray(scores, np.float64),
        "logit": np.asarray(scores if logits is None else logits, np.float64)})
    return df[SCORE_COLUMNS]


def model_scores(model, data: heads.FusionData) -> pd.DataFrame:
    """:func:`scores_frame` of ``model`` on ``data``: probability and decision value (logit)."""
    if len(data) == 0:
        return scores_frame(data, [], [])
    z = model.decision_function(data)
    return scores_frame(data, model.probability(z), z)


def evaluate_scores(frame: pd.DataFrame, threshold: float, n_boot: int, seed: int) -> dict:
    """metrics.compute_metrics on the decision values of a scores frame; an empty one gives a note.

    The CI resamples videos, or identities when the frame's ``identity`` column groups
    several videos under one (:func:`fusion.metrics.identity_clusters`).
    """
    if frame.empty:
        return {"note": "no samples", "n_real": 0, "n_fake": 0}
    column = RANK_COLUMN if RANK_COLUMN in frame else "score"
    return metrics.compute_metrics(frame["label"], frame[column], frame["method"], frame["video_id"],
                                   threshold=threshold, n_boot=n_boot, seed=seed,
                                   identities=metrics.identity_clusters(frame["identity"], frame["video_id"])
                                   if "identity" in frame else None)


def fit_and_evaluate(model, splits: dict, n_boot: int, seed: int) -> tuple[dict, dict]:
    """Fit ``model`` on ``splits["train"]`` (val for its own choices), take the EER threshold on
    val (on train when val lacks a class), and evaluate val and test at that threshold.

    Returns ``(result, frames)``: ``result`` has ``threshold`` (decision-value units),
    ``threshold_units``, ``threshold_probability``, ``threshold_from``, ``val`` and ``test``;
    ``frames`` the val and test :func:`model_scores`.
    """
    val = splits["val"] if len(splits["val"]) else None
    model.fit(splits["train"], val)
    frames = {s: model_scores(model, d) for s, d in splits.items() if s != "train"}
    threshold_from = "val"
    if frames["val"].empty or frames["val"]["label"].nunique() < 2:
        threshold_from = "train"
        ref = model_scores(model, splits["train"])
    else:
        ref = frames["val"]
    threshold = metrics.threshold_at_eer(ref["label"], ref[RANK_COLUMN])
    result = {"threshold": threshold, "threshold_units": "logit",
              "threshold_probability": float(model.probability(np.array([threshold]))[0]),
              "threshold_from": threshold_from}
    for s in ("val", "test"):
        result[s] = evaluate_scores(frames[s], threshold, n_boot, seed)
    return result, frames


def run_warnings(result: dict) -> list[str]:
    """The warnings of a run: threshold source, then every evaluated set's, prefixed by its name."""
    out = []
    if result.get("threshold_from") == "train":
        out.append("threshold taken from train (val lacks reals or fakes): its error rates "
                   "elsewhere are optimistic and its decisions untested")
    sets = [("val", result.get("val", {})), ("test", result.get("test", {}))] \
        + [(f"test@{k}", v) for k, v in result.get("robustness", {}).items()] \
        + [(f"cross {k}", v) for k, v in result.get("cross", {}).items()]
    for name, m in sets:
        out += set_warnings(name, m)
    for where, counts in (result.get("nonfinite") or {}).items():
        out += nonfinite_warnings(counts, where)
    return out


def set_warnings(name: str, m: dict) -> list[str]:
    """The warnings of evaluated set ``name`` (metrics ``m``): below chance first, then the
    metrics' own, each prefixed by the set's name."""
    return chance_warnings(name, m) + [f"{name}: {w}" for w in m.get("warnings", [])]


def chance_warnings(name: str, m: dict) -> list[str]:
    """``["<name>: AUC 0.016 is below chance (0.5): ..."]`` when set ``name``'s AUC is below 0.5."""
    auc = m.get("auc") if isinstance(m, dict) else None
    if auc is None or not np.isfinite(auc) or auc >= 0.5:
        return []
    return [f"{name}: AUC {auc:.3f} is below chance (0.5): the model ranks reals above fakes "
            "here, so its scores (and any importance drop) mean the opposite of what they say"]


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_revision() -> str | None:
    """``<commit>`` (``+dirty`` with uncommitted changes to tracked files) of this code's checkout."""
    repo = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        if rev.returncode:
            return None
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev.stdout.strip() + ("+dirty" if dirty else "")


def provenance(store_paths, seed: int, config: dict, command: str | None = None) -> dict:
    """Code version, command line, store paths with SHA-256, seed and full config of a run."""
    return {"code_version": code_version(), "git": git_revision(),
            "command": command if command is not None else shlex.join([sys.executable, *sys.argv]),
            "stores": [{"path": str(Path(p).resolve()), "sha256": file_sha256(p)} for p in store_paths],
            "seed": seed, "config": config, "python": sys.version.split()[0],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def decision_counts(frame: pd.DataFrame, threshold: float) -> dict:
    """What the model decides at ``threshold`` (``logit >= threshold``: fake), in counts.

    The numbers that stay meaningful on one class (a reals-only store): how many reals are
    called fake, how many fakes real, and the two error rates (None without that class).

    >>> f = pd.DataFrame({"label": [0, 0, 0, 1], "logit": [2.0, -1.0, 0.5, 3.0]})
    >>> decision_counts(f, 0.0)["reals_called_fake"], decision_counts(f, 0.0)["false_positive_rate"]
    (2, 0.6666666666666666)
    """
    column = RANK_COLUMN if RANK_COLUMN in frame else "score"
    fake = frame[column].to_numpy() >= threshold
    y = frame["label"].to_numpy()
    reals, fakes = int((y == 0).sum()), int((y == 1).sum())
    fp, fn = int((fake & (y == 0)).sum()), int((~fake & (y == 1)).sum())
    return {"reals": reals, "reals_called_fake": fp, "fakes": fakes, "fakes_called_real": fn,
            "false_positive_rate": fp / reals if reals else None,
            "false_negative_rate": fn / fakes if fakes else None}


def decision_text(d: dict) -> str:
    """``13 of 14 reals called fake (false-positive rate 0.929); 0 fakes`` from :func:`decision_counts`."""
    parts = []
    for cls, wrong, called, rate, name in (("reals", "reals_called_fake", "fake", "false_positive_rate",
                                            "false-positive"),
                                           ("fakes", "fakes_called_real", "real", "false_negative_rate",
                                            "false-negative")):
        parts.append(f"{d[wrong]} of {d[cls]} {cls} called {called} ({name} rate {d[rate]:.3f})"
                     if d[cls] else f"0 {cls}")
    return "; ".join(parts)


def write_plots(frame: pd.DataFrame, out: Path, threshold: float, prefix="", title="test",
                which=("roc", "det", "scores")):
    """``<prefix>roc.png``, ``det.png``, ``scores.png`` (those in ``which``) of a scores frame.

    ROC and DET need both classes: with one class only the score histogram is drawn; an
    empty frame gives none."""
    if frame.empty:
        return []
    if frame["label"].nunique() < 2:
        which = [k for k in which if k == "scores"]
    y, m = frame["label"].to_numpy(), frame["method"].to_numpy()
    column = RANK_COLUMN if RANK_COLUMN in frame else "score"
    s = frame[column].to_numpy()
    draw = {"roc": lambda: plots.roc_plot(y, s, out / f"{prefix}roc.png", methods=m, title=f"ROC ({title})"),
            "det": lambda: plots.det_plot(y, s, out / f"{prefix}det.png", methods=m, title=f"DET ({title})"),
            "scores": lambda: plots.score_histograms(
                s, m, out / f"{prefix}scores.png", threshold=threshold, title=f"Scores by method ({title})",
                xlabel="decision value (logit; higher = more fake)" if column == RANK_COLUMN else "fake score")}
    return [draw[k]() for k in which]


def cross_split(store) -> str | None:
    """The split of a cross-evaluation store to score: "test" if it has one, else all rows."""
    return "test" if (store.meta["split"] == "test").any() else None


def cross_meta(store):
    """The meta rows of a cross-evaluation store that are scored (:func:`cross_split`)."""
    split = cross_split(store)
    meta = store.meta
    return meta if split is None else meta[meta["split"] == split]


def predict_line(model, meta) -> str | None:
    """``next: python -m fusion.predict --model MODEL FILE`` for the first fake of ``meta`` whose
    source file exists (None when none does): the end-to-end check on a real file."""
    if meta is None or "source_path" not in meta:
        return None
    for path in meta.loc[meta["label"] == 1, "source_path"].astype(str):
        if path and Path(path).is_file():
            return next_line("python -m fusion.predict", "--model", model, path)
    return None


def _fmt(x, digits=4):
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def warning_lines(warnings) -> list[str]:
    """``WARNING <kind>: ...`` lines: one per kind of warning, most serious first
    (:func:`fusion.warning_groups.grouped_lines`)."""
    from fusion.warning_groups import grouped_lines
    return [f"WARNING {line}" for line in grouped_lines(warnings)]


def add_report_flags(p):
    """--bootstrap and --no-plots, shared by the train and evaluate CLIs."""
    p.add_argument("--bootstrap", type=at_least(0), default=1000,
                   help="bootstrap resamples for CIs (0 = none)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def saved_threshold(model, run: dict) -> float:
    """A saved run's threshold in decision-value units (older runs saved a probability)."""
    threshold = float(run.get("threshold", 0.5))
    if run.get("threshold_units") == "logit":
        return threshold
    return float(model.decision_of(np.array([threshold]))[0])
