"""Late fusion of detectors trained apart, each calibrated on the same reference reals.

::

    python -m fusion.ensemble fit --member CASCADE_RUN --member FUSION_RUN \\
        --reference REALS.h5:val [--reference OTHER.h5:val] \\
        [--select-store WILD.h5:val --select-store VALBENCH.h5:all] [--rule auto] --out ENSEMBLE
    python -m fusion.ensemble eval --run ENSEMBLE --store TEST.h5 --split test --out DIR

Detectors trained on different data speak different scales: a cascade trained on
self-blends is unsure of everything outside them (logits near 0), a head trained on real
photos against GAN faces is certain of everything (logits of -6 on reals). Their scores
cannot be averaged as they are. Each member's score is therefore restated against one set
of **reference reals** that none of the members trained on (the val splits of the training
stores): its robust z-score ``(logit - median) / (1.4826 * MAD)`` over the reference reals,
and its quantile among them (the share of reference reals scoring lower; ties count half).
A high value means "atypical of reals for this detector". The rules:

=================  ==============================================================
``max-z``          the largest z over the members: a sample is as fake as the detector
                   that finds it most atypical (one detector per kind of fake)
``mean-z``         the mean z: every detector must agree a little
``max-quantile``   the largest quantile (saturates at 1 beyond the reference reals)
``mean-quantile``  the mean quantile
=================  ==============================================================

``--rule auto`` (the default) scores every rule on each selection store (real
manipulations none of the members trained on: ``wildval``; a val edit benchmark, so that
a gain on one kind of fake cannot hide a loss on the self-blends) and keeps the one with
the best mean frame AUC over them; every rule's frame and video AUC per store, and each
member's alone, are saved beside it, so the choice is visible. Without a selection store
``auto`` means ``max-z``. Nothing is fitted on a selection store: the members are trained
runs, the calibration reads only the reference reals, and the selection picks among four
fixed formulas.

The decision threshold is the fused score that flags ``--reference-fpr`` (5 %) of the
reference reals: chosen on reals alone, never on a test set.

Members are run folders of ``fusion.train`` (the store must hold their features, extracted
as at training; :func:`fusion.evaluate.require_matching_features`) or of ``fusion.cascade
train`` (the store must hold the ``rgb`` map). Every store an ensemble scores must hold what
every member needs: extract the features of the ``fusion.train`` members and ``rgb`` into
one store.

``eval`` writes ``metrics.json`` (the fused classification with CIs by video or identity,
the per-kind table of frame and video AUC with CIs, and the same table for each member
alone: the baselines the ensemble must beat), ``predictions.csv`` (every member's logit,
z and quantile, and the fused score per sample), the ROC/DET/score plots and
``report.html``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from base.cli import CLIParser, at_least, command_line, run_cli
from base.errors import UsageError
from base.outputs import add_overwrite_flag, claim_output_dir, write_output_file
from fusion import metrics as fm
from fusion.modelio import run_kind
from fusion.per_method import add_per_method, auc_or_nan, per_method_lines, per_method_table

ENSEMBLE_JSON = "ensemble.json"
FORMAT = 1
RULES = ("max-z", "mean-z", "max-quantile", "mean-quantile")
#: MAD to standard deviation for a normal distribution.
MAD_SCALE = 1.4826


# -- calibration and rules ------------------------------------------------------------------

def calibration(reference_logits) -> dict:
    """Median, robust scale and the sorted logits of one member on the reference reals.

    The scale is 1.4826 x the median absolute deviation; where that is 0 (half the reals
    share one logit) the standard deviation, and where that is 0 too, 1.
    """
    r = np.sort(np.asarray(reference_logits, np.float64).ravel())
    if r.size == 0 or not np.isfinite(r).all():
        raise ValueError("the reference logits must be finite and not empty")
    median = float(np.median(r))
    scale = MAD_SCALE * float(np.median(np.abs(r - median)))
    if scale <= 0:
        scale = float(r.std()) or 1.0
    return {"n": int(r.size), "median": median, "scale": scale, "sorted": r.tolist()}


def z_scores(logits, cal: dict) -> np.ndarray:
    """``(logit - median) / scale`` against a :func:`calibration`."""
    return (np.asarray(logits, np.float64) - cal["median"]) / cal["scale"]


def quantiles(logits, cal: dict) -> np.ndarray:
    """Share of the reference reals below each logit, ties counted half (mid-rank)."""
    r = np.asarray(cal["sorted"], np.float64)
    x = np.asarray(logits, np.float64)
    below = np.searchsorted(r, x, side="left")
    at_or_below = np.searchsorted(r, x, side="right")
    return (below + 0.5 * (at_or_below - below)) / r.size


def fuse(z: np.ndarray, q: np.ndarray, rule: str) -> np.ndarray:
    """The fused score of ``rule`` from M x N z-scores and quantiles (one row per member)."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; accepted: {', '.join(RULES)}")
    values = z if rule.endswith("-z") else q
    return values.max(0) if rule.startswith("max") else values.mean(0)


def threshold_for(reference_fused, fpr: float) -> float:
    """The smallest fused score that flags at most ``fpr`` of the reference reals
    (``score >= threshold`` is fake)."""
    r = np.sort(np.asarray(reference_fused, np.float64))
    n = r.size
    k = int(np.floor(fpr * n))  # reals allowed at or above the threshold
    if k == 0:
        return float(np.nextafter(r[-1], np.inf))
    v = r[n - k]
    if n - np.searchsorted(r, v, side="left") > k:  # ties at v: above v only
        return float(np.nextafter(v, np.inf))
    return float(np.nextafter(r[n - k - 1], np.inf))


# -- members ----------------------------------------------------------------------------------

def member_name(path) -> str:
    return Path(path).resolve().name


def check_member(path) -> str:
    """The member's kind (``fusion.train`` or ``fusion.cascade``), or a UsageError."""
    if not Path(path).is_dir():
        raise UsageError(f"--member {path}: no such run folder")
    kind = run_kind(path)
    if kind is None:
        raise UsageError(f"--member {path}: not a run of fusion.train or fusion.cascade train "
                         "(no model/model.json, best.safetensors or run config in it)")
    return kind


def member_fingerprint(path, kind: str) -> str:
    """SHA-256 over the files that make a member's scores (a cascade's best weights; a fusion
    head's model.json and weights): an ensemble's calibration holds for these bytes only."""
    import hashlib
    if kind == "fusion.cascade":
        files = [Path(path) / "best.safetensors"]
    else:
        from fusion.evaluate import model_dir
        files = sorted(f for f in model_dir(path).iterdir() if f.is_file())
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()


def load_member(member: dict, device: str = "cpu", batch_size: int = 64):
    """One member's model, loaded once, as ``score(store, store_path, split) -> (logits,
    metadata)`` on the rows of ``split`` (None: all) of an open store: the fake-minus-real
    logit of a cascade, the decision value of a fusion head."""
    path = member["path"]
    if member["kind"] == "fusion.cascade":
        from fusion.cascade.checkpoints import load_run
        from fusion.cascade.config import resolve_device
        from fusion.cascade.data import StoreMaps
        from fusion.cascade.inference import run_inference
        dev = resolve_device(device)
        model, config, _ = load_run(path, dev)

        def score(store, store_path, split):
            if "rgb" not in store.maps:
                raise UsageError(f"{store_path}: the cascade member {path} needs the map 'rgb'; "
                                 "extract it with `python -m pipelines.extract --features rgb,...`")
            data = StoreMaps(store, split, cache_bytes=0)
            if len(data) == 0:
                return np.zeros(0, np.float32), data.meta
            return (run_inference(model, data, config.size, dev, batch_size, config.amp)["logits"],
                    data.meta)
        return score
    from fusion import scoring
    from fusion.evaluate import require_matching_features
    from fusion.file_models import load_model_dir
    head, config = load_model_dir(path)

    def score(store, store_path, split):
        require_matching_features(config, store, store_path)
        data = scoring.load_split(store, config["features"], split, config.get("inputs", "vector"))
        if len(data) == 0:
            return np.zeros(0, np.float32), data.meta
        return np.asarray(head.decision_function(data), np.float64), data.meta
    return score


def score_store(members: list[dict], store_path, split, device: str = "cpu",
                reals_only: bool = False, loaded=None) -> tuple[np.ndarray, pd.DataFrame]:
    """M x N logits of every member on one store split, and the rows' metadata (the same
    rows in the same order for every member, checked by sample id). ``loaded``: the
    members' :func:`load_member` scorers, when a caller scores several stores (else loaded
    here)."""
    from fusion.scoring import open_store_or_usage
    loaded = loaded or [load_member(m, device) for m in members]
    store = open_store_or_usage(store_path)
    try:
        rows, meta = [], None
        for m, score in zip(members, loaded):
            logits, m_meta = score(store, store_path, split)
            if meta is None:
                meta = m_meta.reset_index(drop=True)
            elif not np.array_equal(meta["sample_id"].to_numpy(), m_meta["sample_id"].to_numpy()):
                raise RuntimeError(f"{store_path}: members {members[0]['path']} and {m['path']} "
                                   "read different rows")
            rows.append(np.asarray(logits, np.float64))
    finally:
        store.close()
    logits = np.stack(rows) if rows else np.zeros((0, 0))
    if not len(meta):
        raise UsageError(f"{store_path}: no samples in split {split or 'all'!r}")
    if reals_only:
        keep = meta["label"].to_numpy() == 0
        if not keep.any():
            raise UsageError(f"--reference {store_path}:{split or 'all'}: holds no reals")
        logits, meta = logits[:, keep], meta[keep].reset_index(drop=True)
    return logits, meta


def parse_store_split(text: str, flag: str) -> tuple[str, str | None]:
    """``STORE.h5[:SPLIT]`` -> (path, split or None for all rows)."""
    head, _, tail = text.rpartition(":")
    path, split = (head, tail) if head and tail in ("train", "val", "test", "all") else (text, "val")
    if not Path(path).is_file():
        raise UsageError(f"{flag} {text}: no such store file")
    return path, None if split == "all" else split


# -- the ensemble -----------------------------------------------------------------------------

def calibrated(ens: dict, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """M x N z-scores and quantiles of members' logits against the ensemble's calibration."""
    z = np.stack([z_scores(row, m["calibration"]) for row, m in zip(logits, ens["members"])])
    q = np.stack([quantiles(row, m["calibration"]) for row, m in zip(logits, ens["members"])])
    return z, q


def _auc_pair(meta: pd.DataFrame, score) -> dict:
    labels = meta["label"].to_numpy()
    out = {"frame_auc": auc_or_nan(labels, score)}
    v_labels, v_scores, _, _ = fm.video_scores(labels, score, meta["method"].to_numpy(),
                                               meta["video_id"].to_numpy())
    out["video_auc"] = auc_or_nan(v_labels, v_scores)
    return out


def fit(members, references, out, select=(), rule: str = "auto", reference_fpr: float = 0.05,
        device: str = "cpu", command: str | None = None, log=print) -> dict:
    """Calibrate ``members`` on the reals of ``references`` ((store, split) pairs), choose the
    rule by its mean frame AUC over ``select`` ((store, split) pairs; none: ``max-z``),
    write ``ensemble.json`` into ``out``."""
    if rule != "auto" and rule not in RULES:
        raise UsageError(f"--rule: expected auto or one of {', '.join(RULES)}, got {rule!r}")
    if not 0 < reference_fpr < 1:
        raise UsageError(f"--reference-fpr: expected a share in (0, 1), got {reference_fpr}")
    names = [member_name(p) for p in members]
    if len(set(names)) != len(names) or len(members) < 2:
        raise UsageError("--member: give at least two runs, with different folder names "
                         f"(got {', '.join(names) or 'none'})")
    ens = {"format": FORMAT, "members": [{"path": str(Path(p).resolve()), "name": n,
                                          "kind": check_member(p)} for p, n in zip(members, names)]}
    for m in ens["members"]:
        m["sha256"] = member_fingerprint(m["path"], m["kind"])
    loaded = [load_member(m, device) for m in ens["members"]]  # once for every store below
    parts = [score_store(ens["members"], path, split, reals_only=True, loaded=loaded)
             for path, split in references]
    ref = np.concatenate([p[0] for p in parts], axis=1)
    for m, row in zip(ens["members"], ref):
        try:
            m["calibration"] = calibration(row)
        except ValueError as exc:  # a member that gives NaN or inf on the reference reals
            raise UsageError(f"--member {m['path']}: {exc}; its scores of the --reference "
                             "reals cannot calibrate it") from None
    ens["reference"] = [{"store": str(Path(p).resolve()), "split": s or "all", "n_reals": int(len(meta))}
                        for (p, s), (_, meta) in zip(references, parts)]
    z, q = calibrated(ens, ref)
    table, ens["select"] = {}, []
    for path, split in select or ():
        s_logits, s_meta = score_store(ens["members"], path, split, loaded=loaded)
        if set(s_meta["label"]) != {0, 1}:
            raise UsageError(f"--select-store {path}: needs reals and fakes to choose on")
        sz, sq = calibrated(ens, s_logits)
        by_rule = {r: _auc_pair(s_meta, fuse(sz, sq, r)) for r in RULES}
        for m, row in zip(ens["members"], s_logits):
            by_rule[f"member {m['name']}"] = _auc_pair(s_meta, row)
        ens["select"].append({"store": str(Path(path).resolve()), "split": split or "all",
                              "n": int(len(s_meta)), "by_rule": by_rule})
        for name, row in by_rule.items():
            table.setdefault(name, []).append(row["frame_auc"])
    score = {name: float(np.mean(v)) for name, v in table.items()}  # mean over select stores
    ens["select_score"] = score
    if rule == "auto":
        rule = max(RULES, key=lambda r: score[r]) if score else "max-z"
        ens["rule_chosen_on"] = ("select stores, mean frame AUC" if score
                                 else "default (no select store)")
    else:
        ens["rule_chosen_on"] = "given"
    ens["rule"] = rule
    ens["reference_fpr"] = reference_fpr
    reference_fused = fuse(z, q, rule)
    ens["threshold"] = threshold_for(reference_fused, reference_fpr)
    ens["reference_fused"] = np.sort(reference_fused).tolist()  # a file's score: its rank among them
    ens["command"] = command
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # whole or not at all: a killed write leaves no half ensemble.json
    write_output_file(out / ENSEMBLE_JSON, json.dumps(fm.to_jsonable(ens), indent=1),
                      overwrite=True)
    log(f"ensemble of {', '.join(names)}: calibrated on {ref.shape[1]} reference reals; rule "
        f"{rule} ({ens['rule_chosen_on']}); threshold {ens['threshold']:.3f} flags "
        f"{reference_fpr:.0%} of them -> {out / ENSEMBLE_JSON}")
    for name in score:
        where = "; ".join(f"{Path(s['store']).name} frame {s['by_rule'][name]['frame_auc']:.3f} "
                          f"video {s['by_rule'][name]['video_auc']:.3f}" for s in ens["select"])
        log(f"  select: {name:28s} mean frame AUC {score[name]:.3f} ({where})"
            + ("  <- chosen" if name == rule else ""))
    return ens


def load_ensemble(path) -> dict:
    file = Path(path) / ENSEMBLE_JSON
    if not file.is_file():
        raise UsageError(f"--run {path}: no {ENSEMBLE_JSON}; make one with "
                         "`python -m fusion.ensemble fit`")
    try:
        ens = json.loads(file.read_text())
    except ValueError as exc:
        raise UsageError(f"{file}: not readable JSON ({exc}); fit the ensemble again") from None
    if ens.get("format") != FORMAT:
        raise UsageError(f"{file}: ensemble format {ens.get('format')!r}, this version reads "
                         f"{FORMAT}; fit the ensemble again")
    for m in ens["members"]:
        if run_kind(m["path"]) != m["kind"]:
            raise UsageError(f"{file}: member {m['path']} is gone or is no longer a "
                             f"{m['kind']} run; restore it or fit the ensemble again")
        if member_fingerprint(m["path"], m["kind"]) != m.get("sha256"):
            raise UsageError(f"{file}: member {m['path']} has other weights than when the "
                             "ensemble was fit (retrained?): its calibration no longer holds; "
                             "fit the ensemble again")
    return ens


def evaluate(run, store_path, split, out, n_boot: int = 1000, device: str = "cpu",
             command: str | None = None, log=print) -> dict:
    """Score ``split`` of a store with an ensemble; write metrics.json, predictions.csv, plots."""
    from fusion.scoring import provenance, write_plots
    ens = load_ensemble(run)
    logits, meta = score_store(ens["members"], store_path, split, device)
    z, q = calibrated(ens, logits)
    fused = fuse(z, q, ens["rule"])
    labels = meta["label"].to_numpy()
    identities = fm.identity_clusters(meta["identity"], meta["video_id"]) if "identity" in meta else None
    result = {"run": str(run), "store": str(store_path), "split": split or "all", "rule": ens["rule"],
              "threshold": ens["threshold"], "n": int(len(meta)),
              "classification": fm.compute_metrics(labels, fused, meta["method"].to_numpy(),
                                                   meta["video_id"].to_numpy(), ens["threshold"],
                                                   n_boot, identities=identities),
              "reference_flagged": ens["reference_fpr"]}
    result["warnings"] = [f"{result['split']}: {w}" for w in result["classification"]["warnings"]]
    has_both = set(labels) == {0, 1}
    if has_both and n_boot:  # the video AUC's CI, resampling videos (compute_metrics has the frame's)
        v_labels, v_scores, _, v_keys = fm.video_scores(labels, fused, meta["method"].to_numpy(),
                                                        meta["video_id"].to_numpy())
        result["classification"]["video"]["auc_ci"] = fm.bootstrap_ci(
            v_labels, v_scores, n_boot=n_boot, clusters=v_keys, cluster="video")["auc"]
    if has_both:
        add_per_method(result, meta, fused, n_boot)
        result["members"] = {m["name"]: {"frame_auc": auc_or_nan(labels, row),
                                         "per_method": per_method_table(
                                             labels, row, meta["method"].to_numpy(),
                                             meta["video_id"].to_numpy(), n_boot)}
                             for m, row in zip(ens["members"], logits)}
    result["provenance"] = provenance(
        [store_path], None, {"ensemble": str(run), "rule": ens["rule"], "split": split or "all",
                             "members": [m["path"] for m in ens["members"]],
                             "reference": ens["reference"], "n_boot": n_boot}, command)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame = meta[[c for c in ("sample_id", "video_id", "method", "label", "identity") if c in meta]].copy()
    for m, row, zr, qr in zip(ens["members"], logits, z, q):
        frame[f"logit_{m['name']}"], frame[f"z_{m['name']}"], frame[f"q_{m['name']}"] = row, zr, qr
    frame["score"] = frame["logit"] = fused
    frame.to_csv(out / "predictions.csv", index=False)
    (out / "metrics.json").write_text(json.dumps(fm.to_jsonable(result), indent=1))
    if has_both:
        write_plots(frame, out, ens["threshold"], title=Path(store_path).stem)
    from fusion.report import write_report
    write_report(out, command)
    c = result["classification"]
    def ci(values):
        ok = values and all(v is not None and v == v for v in values)  # None, NaN: no CI
        return f" [{values[0]:.3f}, {values[1]:.3f}]" if ok else ""
    log(f"ensemble ({ens['rule']}) on {Path(store_path).name} [{result['split']}]: n {len(meta)}"
        + (f"  frame AUC {c['auc']:.3f}{ci(c['ci'].get('auc'))}" if has_both else "")
        + (f"  video AUC {c['video']['auc']:.3f}{ci(c['video'].get('auc_ci'))}" if has_both else "")
        + f" -> {out}")
    if has_both:
        log("  per kind of fake (fused):")
        for line in per_method_lines(result["per_method"]):
            log(line)
        for name, mres in result["members"].items():
            kinds = " ".join(f"{r['method']} {r['frame_auc']:.3f}" for r in mres["per_method"])
            log(f"  member {name} alone: frame AUC {mres['frame_auc']:.3f}; {kinds}")
    else:
        log(f"  one class only: {np.mean(fused >= ens['threshold']):.3f} of the samples at or "
            "above the threshold")
    for w in result["warnings"]:
        log(f"warning: {w}")
    return result


# -- files (fusion.predict) -------------------------------------------------------------------

class EnsembleFileScorer:
    """An ensemble with the interface :mod:`fusion.predict` needs of a head (``probability``,
    ``decision_of``, ``score_file``).

    Every member scores the same crops, cut as the first member's training store's were.
    A face's ``logit`` is the fused score, its ``score`` the share of the reference reals
    whose fused score is lower (ties half), its ``fake`` whether the fused score reaches the
    ensemble's threshold; ``members`` holds each member's own logit. A file's fused score is
    the mean of its faces'.
    """

    def __init__(self, ens: dict, members: list, warnings: list):
        self.ens, self.members, self.warnings = ens, members, warnings
        self._reference = {"sorted": ens["reference_fused"]}

    def probability(self, fused) -> np.ndarray:
        return quantiles(np.atleast_1d(fused), self._reference)

    def decision_of(self, shares) -> np.ndarray:
        return np.quantile(np.asarray(self._reference["sorted"]), np.clip(shares, 0, 1))

    def score_file(self, path, source, ingest) -> dict:
        from fusion.file_models import file_result, head_logits
        from pipelines.ingest import load_source
        crops = load_source(source, ingest)
        result = {**file_result(path, crops), "warnings": list(self.warnings)}
        if not crops.records:
            result["score"] = None
            return result
        images, rows = np.stack(crops.crops), []
        for record, model, config, extractors in self.members:
            if record["kind"] == "fusion.cascade":
                rows.append(model.score_crops(images, np.stack(crops.landmarks))["logit"])
            else:
                from fusion.scoring import nonfinite_counts, nonfinite_warnings
                z_head, data, _ = head_logits(model, config, extractors, crops)
                rows.append(z_head)
                result["warnings"] += nonfinite_warnings(nonfinite_counts(data),
                                                         f"{path} (member {record['name']})")
        logits = np.stack(rows).astype(np.float64)
        z, q = calibrated(self.ens, logits)
        fused = fuse(z, q, self.ens["rule"])
        names = [m["name"] for m in self.ens["members"]]
        threshold = self.ens["threshold"]
        for i, (r, f, s) in enumerate(zip(crops.records, fused, self.probability(fused))):
            result["faces"].append({"frame_index": int(r["frame_index"]), "score": float(s),
                                    "logit": float(f), "fake": bool(f >= threshold),
                                    "members": {n: float(v) for n, v in zip(names, logits[:, i])}})
        result["logit"] = float(fused.mean())
        result["score"] = float(self.probability(result["logit"])[0])
        result["fake"] = bool(result["logit"] >= threshold)
        result["members"] = {n: float(v) for n, v in zip(names, logits.mean(1))}
        result["_crops"] = images
        return result


#: Crop settings that must agree between members for them to see the crops they trained on.
CROP_KEYS = ("size", "margin", "align")


def load_file_scorer(run, device: str = "auto") -> tuple[EnsembleFileScorer, dict]:
    """``(scorer, config)`` of an ensemble folder for :mod:`fusion.predict`; ``config`` is laid
    out as a ``fusion.train`` model's (``run``: the first member's face settings under
    ``ingest``, the threshold in fused units)."""
    from fusion.cascade.files import load_file_scorer as cascade_scorer
    from fusion.file_models import extractors_for, load_model_dir
    ens = load_ensemble(run)
    if "reference_fused" not in ens:
        raise UsageError(f"{run}: the ensemble records no reference scores; fit it again")
    members, ingests = [], []
    for m in ens["members"]:
        if m["kind"] == "fusion.cascade":
            try:
                model, config = cascade_scorer(m["path"], device)
            except ValueError as exc:
                raise UsageError(f"member {m['path']}: {exc}") from None
            members.append((m, model, config, None))
        else:
            head, config = load_model_dir(m["path"])
            if config.get("fusion") == "sequence" or config.get("inputs") not in (None, "vector", "map"):
                raise UsageError(f"member {m['path']}: a {config.get('fusion')} model scores whole "
                                 "videos from a store; use python -m fusion.ensemble eval")
            members.append((m, head, config, extractors_for(config)))
        ingests.append(config.get("run", {}).get("ingest", {}) or {})
    warnings = [f"member {m['name']} was trained on crops with {k} {ing.get(k)!r}, the "
                f"ensemble cuts them with {ingests[0].get(k)!r} (its first member's)"
                for m, ing in zip(ens["members"][1:], ingests[1:]) for k in CROP_KEYS
                if ing.get(k) != ingests[0].get(k)]
    record = {"features": [], "inputs": "ensemble",
              "run": {"ingest": ingests[0], "threshold": ens["threshold"], "threshold_units": "logit",
                      "threshold_note": f"the fused score that flags {ens['reference_fpr']:.0%} of "
                                        "the reference reals; a score is the share of reference "
                                        "reals scoring lower",
                      "warnings": []}}
    return EnsembleFileScorer(ens, members, warnings), record


# -- command line -----------------------------------------------------------------------------

def build_parser() -> CLIParser:
    p = CLIParser(prog="python -m fusion.ensemble", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="calibrate the members on reference reals, choose the rule")
    f.add_argument("--member", action="append", required=True,
                   help="run folder of fusion.train or fusion.cascade train (two or more)")
    f.add_argument("--reference", action="append", required=True, metavar="STORE[:SPLIT]",
                   help="store whose reals (of SPLIT: train, val, test or all; default val) "
                        "calibrate every member; none of the members may have trained on them")
    f.add_argument("--select-store", action="append", default=None, metavar="STORE[:SPLIT]",
                   help="store of real manipulations (SPLIT as for --reference) that chooses "
                        "the rule, never trained on; repeat it to choose by the mean frame AUC "
                        "over several (real deepfakes and a val edit benchmark, say)")
    f.add_argument("--rule", default="auto", help=f"auto or one of {', '.join(RULES)} (default auto)")
    f.add_argument("--reference-fpr", type=float, default=0.05,
                   help="share of reference reals the decision threshold flags (default 0.05)")
    f.add_argument("--out", required=True, help="folder for ensemble.json")
    e = sub.add_parser("eval", help="score a store split with an ensemble")
    e.add_argument("--run", required=True, help="folder written by fit")
    e.add_argument("--store", required=True, help="store holding every member's inputs")
    e.add_argument("--split", default="test", choices=("train", "val", "test", "all"),
                   help="train, val, test or all (default test)")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--n-boot", type=at_least(0), default=1000, help="bootstrap resamples (default 1000)")
    for s in (f, e):
        s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
        add_overwrite_flag(s)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = command_line(parser.prog, argv)

    def work():
        if args.command == "fit":
            refs = [parse_store_split(r, "--reference") for r in args.reference]
            select = [parse_store_split(t, "--select-store") for t in args.select_store or ()]
            with claim_output_dir(args.out, overwrite=args.overwrite,
                                  inputs=[*args.member, *(r[0] for r in refs)]):
                fit(args.member, refs, args.out, select, args.rule, args.reference_fpr,
                    args.device, command)
        else:
            split = None if args.split == "all" else args.split
            with claim_output_dir(args.out, overwrite=args.overwrite, inputs=[args.run, args.store]):
                evaluate(args.run, args.store, split, args.out, args.n_boot, args.device, command)
    return run_cli(parser.prog, work)


if __name__ == "__main__":
    sys.exit(main())
