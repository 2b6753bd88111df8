"""One self-contained ``report.html`` per run folder: what a person reads after a run.

:func:`write_report` reads what a run already wrote -- ``metrics.json`` of ``fusion.train``
or of ``fusion.cascade eval``, ``ablation.json`` of ``fusion.ablate``, and the PNG plots
beside them -- and writes one HTML page into the same folder:

* the command line, the code version and git commit, and every store with its SHA-256
  (``provenance``; for a cascade evaluation the training run's ``config.json``);
* the warnings, before any number;
* the metrics with their 95% confidence intervals (per set, per method, the metadata-only
  baseline; for the cascade the localization beside its ``prior`` and ``hull`` baselines);
* every plot the run wrote (ROC, DET, score histograms, ablation bars, robustness curves,
  cascade training curves and mask overlays), inline as base64 PNG.

The page is plain HTML and CSS: no script, no font or image fetched from anywhere, so it
opens the same from a laptop, a mail attachment or an archive.

``python -m fusion.report RUN [RUN ...]`` writes (or rewrites) the page of run folders made
before this module existed, or after their files changed.

Example
-------
>>> from fusion.report import write_report                      # doctest: +SKIP
>>> write_report("runs/a")                                       # doctest: +SKIP
PosixPath('runs/a/report.html')
"""
from __future__ import annotations

import base64
import html
import json
import math
import sys
from pathlib import Path

__all__ = ["write_report", "REPORT_NAME", "report_kind"]

REPORT_NAME = "report.html"
#: Most overlays shown inline; the rest stay as files in ``overlays/``.
MAX_OVERLAYS = 16
#: Plots of a run folder in reading order, with the caption each gets.
PLOT_CAPTIONS = {
    "roc.png": "ROC: fakes caught against reals flagged; the dotted diagonal is chance.",
    "det.png": "DET: FAR (fakes accepted) against FRR (reals rejected), both in %.",
    "val_roc.png": "ROC on val, the split that chose the threshold, beside the test ROC.",
    "val_scores.png": "Scores per method on val, with the decision threshold chosen there.",
    "scores.png": "Scores per method, in sample counts, with the decision threshold.",
    "ablation.png": "Ablation: val AUC per configuration (what chose the pick); the dashed line is chance.",
    "robustness.png": "Robustness: test metrics under each stored perturbation; the star is the clean test set.",
    "training.png": ("Training: loss terms per epoch (left) and validation AUC / IoU (right; with "
                     "--select-store also its frame and video AUC and the selection score), which "
                     "chose the checkpoint."),
}

CSS = """
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; margin: 24px;
       color: #1b1b1b; background: #ffffff; max-width: 1400px; }
h1 { font-size: 22px; margin: 0 0 4px 0; } h2 { font-size: 17px; margin: 26px 0 8px 0;
       border-bottom: 1px solid #cccccc; padding-bottom: 3px; }
.sub { color: #555555; font-size: 13px; }
pre { background: #f3f3f3; border: 1px solid #dddddd; padding: 8px; font-size: 12px;
      white-space: pre-wrap; word-break: break-all; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { border: 1px solid #cfcfcf; padding: 3px 8px; text-align: right; }
th { background: #eeeeee; } td.l, th.l { text-align: left; }
tr.pick td { font-weight: bold; background: #fff7d6; }
.warn { background: #fff1f0; border: 1px solid #e0a8a3; padding: 6px 12px 6px 28px; }
.warn li { margin: 2px 0; font-size: 13px; }
.warn li.serious { font-weight: bold; color: #8b0000; }
tr.bad td { background: #ffd9d6; color: #8b0000; font-weight: bold; }
.ok { color: #2b6a2b; font-size: 13px; }
.plots { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
figure { margin: 0; } figcaption { font-size: 12px; color: #444444; max-width: 560px; }
img { display: block; max-width: 100%; height: auto; border: 1px solid #e4e4e4; }
"""


def _esc(x) -> str:
    return html.escape(str(x), quote=True)


def _num(x, digits=4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, (int, float)):
        return f"{x:.{digits}f}"
    return _esc(x)


def _with_ci(value, ci) -> str:
    """``0.9123 [0.8811, 0.9502]``, ``0.9123 [no CI]`` or ``n/a``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        return f"{value:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]"
    return f"{value:.4f} [no CI]"


def _image(path: Path, caption: str) -> str:
    """A ``<figure>`` with the PNG inline (base64), at its own pixel size."""
    data = path.read_bytes()
    width, height = _png_size(data)
    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (f'<figure><img src="{src}" alt="{_esc(path.name)}" width="{width}" height="{height}">'
            f"<figcaption><b>{_esc(path.name)}</b>: {_esc(caption)}</figcaption></figure>")


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _table(header, rows, left=1, pick_rows=(), bad_rows=()) -> str:
    """HTML table; the first ``left`` columns are left-aligned; ``pick_rows`` are highlighted,
    ``bad_rows`` (a result below chance) shown in the warning style."""
    cells = "".join(f'<th class="l">{_esc(h)}</th>' if i < left else f"<th>{_esc(h)}</th>"
                    for i, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        tds = "".join(f'<td class="l">{c}</td>' if i < left else f"<td>{c}</td>" for i, c in enumerate(row))
        cls = " class=bad" if r in bad_rows else " class=pick" if r in pick_rows else ""
        body.append(f"<tr{cls}>{tds}</tr>")
    return f"<table><tr>{cells}</tr>{''.join(body)}</table>"


#: Warning kinds up to this :data:`fusion.warning_groups.KINDS` rank are shown in bold red.
SERIOUS = 2


def _warnings(items) -> str:
    """One ``<li>`` per kind of warning, most serious first (:mod:`fusion.warning_groups`)."""
    from fusion.warning_groups import group_warnings
    groups = group_warnings([w for w in items if w])
    if not groups:
        return '<p class="ok">No warnings.</p>'
    lis = []
    for g in groups:
        rest = g["line"][len(g["kind"]) + 2:]
        cls = ' class="serious"' if g["severity"] <= SERIOUS else ""
        lis.append(f"<li{cls}><b>{_esc(g['kind'])}</b>"
                   + (f" ({len(g['items'])})" if len(g["items"]) > 1 else "") + f": {_esc(rest)}</li>")
    every = "".join(f"<li>{_esc(w)}</li>" for g in groups for w in g["items"])
    return ("<h2>Warnings, most serious first</h2><ul class=\"warn\">" + "".join(lis) + "</ul>"
            f"<details><summary class=\"sub\">every warning as recorded ({sum(len(g['items']) for g in groups)})"
            f"</summary><ul>{every}</ul></details>")


def _below_chance(m) -> bool:
    auc = m.get("auc") if isinstance(m, dict) else None
    return isinstance(auc, (int, float)) and math.isfinite(auc) and auc < 0.5


def _metric_row(name: str, m: dict) -> list[str]:
    """One evaluated set: counts, AUC / EER / FAR@FRR=1% with CIs, AP, ACC, video AUC."""
    ci = m.get("ci", {}) or {}
    return [_esc(name), str(m.get("n_real", 0)), str(m.get("n_fake", 0)),
            _with_ci(m.get("auc"), ci.get("auc")), _with_ci(m.get("eer"), ci.get("eer")),
            _with_ci((m.get("far_at_frr") or {}).get("0.01"), ci.get("far_at_frr_0.01")),
            _num(m.get("ap")), _num(m.get("acc")), _num((m.get("video") or {}).get("auc")),
            _esc(ci.get("note") or m.get("note") or "")]


METRIC_HEADER = ["set", "reals", "fakes", "AUC [95% CI]", "EER [95% CI]", "FAR@FRR=1% [95% CI]",
                 "AP", "ACC", "video AUC", "note"]


def _metrics_section(sets: list[tuple[str, dict]], threshold_text: str = "") -> str:
    sets = [(name, m) for name, m in sets if isinstance(m, dict)]
    rows = [_metric_row(name, m) for name, m in sets]
    bad = [i for i, (_, m) in enumerate(sets) if _below_chance(m)]
    cluster = next((m.get("ci", {}).get("cluster") for _, m in sets
                    if isinstance(m, dict) and m.get("ci")), None)
    lines = [threshold_text] if threshold_text else []
    if cluster:
        lines.append(f"Confidence intervals: cluster bootstrap over {_esc(cluster)}s.")
    if bad:
        lines.append("Rows in red: AUC below chance (0.5), the model ranks reals above fakes there.")
    return ("<h2>Metrics</h2>" + "".join(f'<p class="sub">{t}</p>' for t in lines)
            + _table(METRIC_HEADER, rows, bad_rows=bad))


def _by_method_section(m: dict, title: str) -> str:
    per = m.get("by_method") or {}
    if not per:
        return ""
    rows = [[_esc(k), str(v.get("n_real", 0)), str(v.get("n_fake", 0)), _num(v.get("auc")),
             _num(v.get("eer")), _num(v.get("ap"))] for k, v in per.items()]
    return (f"<h2>{_esc(title)}</h2>"
            + _table(["method (fakes vs all reals)", "reals", "fakes", "AUC", "EER", "AP"], rows))


def _per_method_section(rows, title: str) -> str:
    """The ``per_method`` table of a cascade evaluation: frame and video AUC of each kind of
    fake against all reals, CIs by video; rows with few videos flagged, below chance in red."""
    if not rows:
        return ""
    body, bad = [], []
    for i, r in enumerate(rows):
        if any(_below_chance({"auc": r.get(k)}) for k in ("frame_auc", "video_auc")):
            bad.append(i)
        body.append([_esc(r.get("method")), str(r.get("n_videos")), str(r.get("n_frames")),
                     str(r.get("n_real_videos")), _with_ci(r.get("frame_auc"), r.get("frame_auc_ci")),
                     _with_ci(r.get("video_auc"), r.get("video_auc_ci")), _esc(r.get("warning") or "")])
    return (f"<h2>{_esc(title)}</h2><p class=\"sub\">Each kind of fake against all reals. Video "
            "AUC: the mean frame logit per video. 95% CIs: bootstrap over videos, each class "
            "resampled on its own. Sorted by name.</p>"
            + _table(["method (fakes vs all reals)", "fake videos", "fake frames", "real videos",
                      "frame AUC [95% CI]", "video AUC [95% CI]", "warning"], body, bad_rows=bad))


def _video_head_section(section: dict | None, title: str) -> str:
    """The ``video_head`` of a cascade evaluation: one score per video from the video head,
    beside the mean of its frame logits, overall (CIs by video) and per kind of fake."""
    if not section:
        return ""
    head, mean = section.get("head") or {}, section.get("mean_of_frames") or {}
    rows = [["all videos", str(section.get("n_videos")),
             _with_ci(head.get("auc"), (head.get("ci") or {}).get("auc")),
             _with_ci(mean.get("auc"), (mean.get("ci") or {}).get("auc"))]]
    bad = [0] if _below_chance(head) else []
    for method, m in sorted((head.get("by_method") or {}).items()):
        other = (mean.get("by_method") or {}).get(method, {})
        if _below_chance(m):
            bad.append(len(rows))
        rows.append([_esc(method), f"{m.get('n_fake')} fake / {m.get('n_real')} real",
                     _with_ci(m.get("auc"), None), _with_ci(other.get("auc"), None)])
    return (f"<h2>{_esc(title)}</h2><p class=\"sub\">{_esc(section.get('score', ''))}; clips of "
            f"{_esc(section.get('clip_len'))} frames. 95% CIs: bootstrap over videos. Per kind of "
            "fake: its videos against all real videos.</p>"
            + _table(["videos", "n", "video head AUC", "mean of frame logits AUC"], rows, bad_rows=bad))


def _provenance_section(prov: dict | None, command: str | None, extra_config=None) -> str:
    prov = prov or {}
    command = prov.get("command") or command
    parts = ["<h2>Command and provenance</h2>"]
    parts.append(f"<pre>{_esc(command) if command else '(command line not recorded)'}</pre>")
    facts = [("code version", prov.get("code_version")), ("git", prov.get("git")),
             ("python", prov.get("python")), ("seed", prov.get("seed")),
             ("created", prov.get("created"))]
    facts = [(k, v) for k, v in facts if v is not None]
    if facts:
        parts.append(_table(["", "value"], [[_esc(k), _esc(v)] for k, v in facts], left=2))
    if prov.get("stores"):
        parts.append(_table(["store", "SHA-256"], [[_esc(s.get("path")), _esc(s.get("sha256"))]
                                                    for s in prov["stores"]], left=2))
    config = prov.get("config") if prov.get("config") is not None else extra_config
    if isinstance(config, dict) and config:
        parts.append("<p class=\"sub\">Configuration</p>" + _table(
            ["setting", "value"], [[_esc(k), _esc(json.dumps(v, default=str))]
                                   for k, v in sorted(config.items())], left=2))
    return "".join(parts)


def _plots_section(folder: Path, names, title="Plots") -> str:
    figs = []
    for name in names:
        path = folder / name
        if path.is_file():
            caption = PLOT_CAPTIONS.get(name) or next(
                (text for key, text in PLOT_CAPTIONS.items() if name.endswith(key)), "")
            figs.append(_image(path, caption))
    return f"<h2>{_esc(title)}</h2><div class=\"plots\">{''.join(figs)}</div>" if figs else ""


def _baseline_rows(baselines: dict | None) -> list[tuple[str, dict]]:
    base = (baselines or {}).get("metadata")
    if not base or base.get("note"):
        return []
    return [("metadata-only: test", base.get("test", {}))] + \
        [(f"metadata-only: {k}", v) for k, v in (base.get("cross") or {}).items()]


def _baseline_note(baselines: dict | None) -> str:
    base = (baselines or {}).get("metadata")
    if base and base.get("note"):
        return f'<p class="sub">Metadata-only baseline: {_esc(base["note"])}</p>'
    return ""


# ----------------------------------------------------------------------------- page kinds

def _train_page(folder: Path, m: dict, command):
    title = (f"fusion.train: {m.get('fusion')}" + (f" ({m['head']})" if m.get("head") else "")
             + f" on {', '.join(m.get('features', []))}")
    sets = ([("train (fitted on)", m["train"])] if isinstance(m.get("train"), dict) else []) \
        + [("val", m.get("val", {})), ("test", m.get("test", {}))] \
        + [(f"test@{k}", v) for k, v in (m.get("robustness") or {}).items()] \
        + [(f"cross {k}", v) for k, v in (m.get("cross") or {}).items()] \
        + _baseline_rows(m.get("baselines"))
    threshold = (f"Threshold: {_num(m.get('threshold'))} ({_esc(m.get('threshold_units', 'score'))}; "
                 f"probability {_num(m.get('threshold_probability'))}), the EER point on "
                 f"{_esc(m.get('threshold_from', 'val'))}. Test only reports"
                 + ("; train, which the head was fitted on, shows how far it overfits." if "train" in m
                    else "."))
    cross = sorted(m.get("cross") or {})
    plots = ["roc.png", "val_roc.png", "det.png", "scores.png", "val_scores.png", "robustness.png"] \
        + [f"{stem}_{p}" for stem in cross for p in ("roc.png", "det.png", "scores.png")]
    body = [_warnings(m.get("warnings", [])), _metrics_section(sets, threshold),
            _baseline_note(m.get("baselines")),
            _by_method_section(m.get("test", {}), "Test by method"),
            _plots_section(folder, plots), _provenance_section(m.get("provenance"), command)]
    return title, body


def _evaluate_page(folder: Path, m: dict, command):
    """A fusion.evaluate folder: one scored store at the run's own threshold."""
    store = Path(str(m.get("store", ""))).name
    title = (f"fusion.evaluate: {m.get('fusion')} on {', '.join(m.get('features', []))}, "
             f"{store} [{m.get('split')}]")
    scores = m.get("metrics", {})
    threshold = (f"Threshold: {_num(m.get('threshold'))}, chosen on the val split of the model's "
                 f"own training run ({_esc(m.get('model'))}); nothing is chosen on this store.")
    d = m.get("decisions")
    if d:
        from fusion.scoring import decision_text
        threshold += f" Decisions at it: {_esc(decision_text(d))}."
        if not (d.get("reals") and d.get("fakes")):
            threshold += (" AUC, EER and the ROC / DET plots are not defined on one class; the "
                          "error rate is the number to read.")
    body = [_warnings(m.get("warnings", scores.get("warnings", []))),
            _metrics_section([(f"{store} [{m.get('split')}]", scores)], threshold),
            _by_method_section(scores, "By method"),
            _plots_section(folder, ["roc.png", "det.png", "scores.png"]),
            _provenance_section(None, command)]
    return title, body


def _ablation_page(folder: Path, a: dict, command):
    rows = a.get("rows", [])
    title = f"fusion.ablate: {len(rows)} configurations on {Path(str(a.get('store', ''))).name}"
    stems = [c[: -len(".test_auc")] for c in (rows[0] if rows else {}) if c.endswith(".test_auc")]
    header = ["rank", "pick", "kind", "fusion", "features", "val AUC", "test AUC [95% CI]",
              "test EER [95% CI]"] + [f"{s} AUC [95% CI]" for s in stems] + ["warnings"]
    table_rows, picks = [], []
    for i, r in enumerate(rows):
        if r.get("pick"):
            picks.append(i)
        val = _num(r.get("val_auc")) + (" (train)" if r.get("val_from") == "train" else "")
        table_rows.append([str(r.get("rank")), _esc(r.get("pick") or ""), _esc(r.get("kind")),
                           _esc(r.get("fusion")) + (f" ({_esc(r['head'])})" if r.get("head") else ""),
                           _esc(r.get("features")), val,
                           _with_ci(r.get("test_auc"), [r.get("test_auc_lo"), r.get("test_auc_hi")]),
                           _with_ci(r.get("test_eer"), [r.get("test_eer_lo"), r.get("test_eer_hi")])]
                          + [_with_ci(r.get(f"{s}.test_auc"), [r.get(f"{s}.test_auc_lo"),
                                                                 r.get(f"{s}.test_auc_hi")]) for s in stems]
                          + [str(r.get("n_warnings", 0))])
    path = a.get("greedy_path") or []
    greedy = ("<p class=\"sub\">Greedy path (val AUC): " + " &rarr; ".join(
        f"+{_esc(p['added'])} ({_num(p['val_auc'])})" for p in path) + "</p>") if path else ""
    base = _baseline_rows(a.get("baselines"))
    body = [_warnings(a.get("pick_warnings", [])),
            "<h2>Configurations, ranked by val AUC</h2><p class=\"sub\">Val chooses; test stands "
            "beside it and chooses nothing. The highlighted row is val's pick.</p>"
            + _table(header, table_rows, left=5, pick_rows=picks) + greedy,
            (_table(METRIC_HEADER, [_metric_row(n, m) for n, m in base]) if base else "")
            + _baseline_note(a.get("baselines")),
            _plots_section(folder, ["ablation.png", "robustness.png"]),
            _provenance_section(a.get("provenance"), command)]
    return title, body


def _per_edit_section(m: dict) -> str:
    """The cascade's localization per edit beside the prior and the hull, its headline, and
    the part verdicts' AUCs (``per_edit_localization``, ``localization_headline``,
    ``part_verdicts`` of ``metrics.json``)."""
    rows = m.get("per_edit_localization") or []
    html_out = ""
    if rows:
        cells = [[_esc(r["method"]), _esc(r["group"]), str(r["n"]), _num(r["frame_auc"], 3),
                  _num(r["pixel_auc"], 3), _num(r["iou"], 3), _num(r["f1"], 3),
                  _num(r["prior_iou"], 3), _num(r["prior_f1"], 3),
                  _num(r.get("prior_area_iou"), 3), _num(r.get("prior_area_f1"), 3),
                  _num(r["hull_iou"], 3), _num(r["hull_f1"], 3), _esc(r["best_baseline"] or "n/a"),
                  "n/a" if r["gain_iou"] is None else f"{r['gain_iou']:+.3f}"] for r in rows]
        losing = [i for i, r in enumerate(rows) if r["gain_iou"] is not None and r["gain_iou"] < 0]
        heads = "".join(
            f"<li>{_esc(g)} edits ({_esc(', '.join(h['methods']))}): model IoU {_num(h['iou'], 3)}, "
            f"best baseline {_num(h['best_baseline_iou'], 3)}, gain "
            f"{'n/a' if h['gain_iou'] is None else format(h['gain_iou'], '+.3f')}; frame AUC "
            f"{_num(h['frame_auc'], 3)}</li>"
            for g, h in (m.get("localization_headline") or {}).items())
        html_out += ("<h2>Localization per edit, beside the baselines</h2><p class=\"sub\">Each "
                     "edit's fakes: the model's pixel AUC, IoU and F1; those of the prior (the "
                     "mean training mask at the mask threshold), of the prior at its mean area "
                     "(its highest pixels, as many as the training masks' mean area) and of the "
                     "hull on the same fakes; and the frame AUC of those fakes against all reals. "
                     "Gain: the model's IoU minus the best baseline's (rows where it loses are "
                     "marked).</p>"
                     + _table(["edit", "group", "fakes", "frame AUC", "pixel AUC", "IoU", "F1",
                               "prior IoU", "prior F1", "prior-area IoU", "prior-area F1",
                               "hull IoU", "hull F1", "best baseline", "IoU gain"],
                              rows=cells, left=2, bad_rows=losing)
                     + (f"<ul>{heads}</ul>" if heads else ""))
    parts = (m.get("part_verdicts") or {}).get("by_part") or {}
    if any(v.get("auc") is not None for v in parts.values()):
        cells = [[_esc(p), _num(v.get("auc"), 3), str(v.get("n_changed", 0)),
                  str(v.get("n_unchanged", 0)), _num(v.get("mean_changed"), 3),
                  _num(v.get("mean_unchanged"), 3)] for p, v in parts.items()]
        html_out += (f"<h2>Part verdicts</h2><p class=\"sub\">{_esc(m['part_verdicts']['rule'])}."
                     "</p>" + _table(["part", "AUC", "changed", "unchanged",
                                      "mean p (changed)", "mean p (unchanged)"], cells))
    return html_out


def _cascade_page(folder: Path, m: dict, command):
    c, loc = m.get("classification", {}), m.get("localization", {})
    title = f"fusion.cascade eval: {Path(str(m.get('store', ''))).name}, split {m.get('split')}"
    run = Path(str(m.get("run", "")))
    threshold = (f"{m.get('n')} samples; checkpoint epoch {m.get('checkpoint_epoch')}; "
                 "decisions at fake probability 0.5.")
    names = [("model", loc)] + [(k, loc[k]) for k in ("prior", "prior_area", "hull") if k in loc]
    rows = [[_esc(n), str(v.get("all", {}).get("n", 0)), _num(v.get("all", {}).get("pixel_auc")),
             _num(v.get("all", {}).get("iou")), _num(v.get("all", {}).get("f1"))] for n, v in names]
    for method, v in (loc.get("by_method") or {}).items():
        rows.append([_esc(f"model, {method}"), str(v.get("n", 0)), _num(v.get("pixel_auc")),
                     _num(v.get("iou")), _num(v.get("f1"))])
    gain = loc.get("gain_over_prior") or {}
    areas = (f"Mean predicted mask area: reals {_num(loc.get('real_mask_area'))} (ideally 0), fakes "
             f"{_num(loc.get('fake_mask_area'))}; prior mask area {_num(loc.get('prior_mask_area'))}. "
             + (f"Gain over the prior: pixel AUC {gain.get('pixel_auc', float('nan')):+.4f}, IoU "
                f"{gain.get('iou', float('nan')):+.4f}, F1 {gain.get('f1', float('nan')):+.4f}." if gain else ""))
    chosen = m.get("mask_threshold") or {}
    chosen_text = (f" The mask threshold was chosen on the run's validation set: best IoU on its "
                   f"{chosen.get('n_fake')} fakes ({_num(chosen.get('val_fake_iou'))}) among the "
                   f"thresholds that flag at most {_num(chosen.get('budget'))} of its "
                   f"{chosen.get('n_real')} reals ({_num(chosen.get('val_real_flagged_area'))}"
                   + ("" if chosen.get("met_budget") else "; no threshold met that budget")
                   + "). The prior keeps 0.5." if chosen.get("chosen_on") == "val" else "")
    localization = (f"<h2>Localization at {_esc(loc.get('size', '?'))} px, threshold "
                    f"{_esc(loc.get('threshold', 0.5))}</h2><p class=\"sub\">prior: the mean training "
                    "mask; hull: the whole-face landmark hull. Neither looks at the image."
                    f"{_esc(chosen_text)}</p>"
                    + _table(["masks of", "fakes", "pixel AUC", "IoU", "F1"], rows)
                    + f'<p class="sub">{areas}</p>')
    overlays = sorted((folder / "overlays").glob("*.png"))[:MAX_OVERLAYS] if (folder / "overlays").is_dir() else []
    overlay_html = ("<h2>Mask overlays</h2><div class=\"plots\">" + "".join(
        _image(p, "crop | predicted mask with its colour bar | stored mask") for p in overlays)
        + "</div>") if overlays else ""
    reals_dir = folder / "overlays" / "reals"
    reals = sorted(reals_dir.glob("*.png"))[:MAX_OVERLAYS] if reals_dir.is_dir() else []
    if reals:
        overlay_html += ("<h2>Reals with the largest predicted masks (false positives)</h2>"
                         "<p class=\"sub\">Real samples ranked by the share of their pixels at or above "
                         "the mask threshold (then mean mask probability), largest first: what the "
                         "model wrongly marks as manipulated.</p><div class=\"plots\">" + "".join(
                             _image(p, "a real: crop | predicted mask (ideally empty)") for p in reals)
                         + "</div>")
    training = _plots_section(run, ["training.png"], "Training run") if (run / "training.png").is_file() else ""
    config = None
    if (run / "config.json").is_file():
        config = json.loads((run / "config.json").read_text()).get("config")
    prov = m.get("provenance") or {"stores": [{"path": m.get("store"), "sha256": "not recorded"}]}
    body = [_warnings(m.get("warnings", c.get("warnings", []))),
            _metrics_section([(str(m.get("split")), c)], threshold),
            _by_method_section(c, f"{m.get('split')} by method"),
            _per_method_section(m.get("per_method"), f"{m.get('split')} per kind of fake"),
            _video_head_section(m.get("video_head"), f"{m.get('split')} video head"),
            localization, _per_edit_section(m),
            _plots_section(folder, ["roc.png", "det.png", "scores.png"]), overlay_html, training,
            _provenance_section(prov, command, config)]
    return title, body


def _ensemble_page(folder: Path, m: dict, command):
    """``fusion.ensemble eval``: the fused detector, then each member alone as its baseline."""
    c = m.get("classification", {})
    title = f"fusion.ensemble eval: {Path(str(m.get('store', ''))).name}, split {m.get('split')}"
    threshold = (f"{m.get('n')} samples; rule {m.get('rule')}; fake when the fused score is at "
                 f"least {_num(m.get('threshold'))}, which flags {_num(m.get('reference_flagged'))} "
                 "of the ensemble's reference reals.")
    members = [_per_method_section(v.get("per_method"), f"member {name} alone (baseline), "
                                   f"frame AUC {_num(v.get('frame_auc'))}")
               for name, v in (m.get("members") or {}).items()]
    prov = m.get("provenance") or {}
    return title, [_warnings(m.get("warnings", [])),
                   _metrics_section([(str(m.get("split")), c)], threshold),
                   _per_method_section(m.get("per_method"), f"{m.get('split')} per kind of fake, fused"),
                   *members, _plots_section(folder, ["roc.png", "det.png", "scores.png"]),
                   _provenance_section(prov, command)]


def report_kind(folder) -> str | None:
    """``"ablation"``, ``"cascade"``, ``"ensemble"``, ``"train"`` or ``"evaluate"`` for a run folder; None when
    it has neither ``ablation.json`` nor a ``metrics.json`` this module reads."""
    folder = Path(folder)
    if (folder / "ablation.json").is_file():
        return "ablation"
    path = folder / "metrics.json"
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    if "classification" in m and "localization" in m:
        return "cascade"
    if "classification" in m and "rule" in m and "threshold" in m:
        return "ensemble"
    if "test" in m and "val" in m:
        return "train"
    if "metrics" in m and "model" in m and "threshold" in m:
        return "evaluate"
    return None


def write_report(folder, command: str | None = None) -> Path:
    """Write ``<folder>/report.html`` from the run's JSON and PNG files; returns its path.

    ``command`` is the command line to show when the run's ``provenance`` does not record
    one (a cascade evaluation). Raises ValueError when the folder holds no run.
    """
    folder = Path(folder)
    kind = report_kind(folder)
    if kind is None:
        raise ValueError(f"{folder}: no metrics.json or ablation.json of a run to report")
    data = json.loads((folder / ("ablation.json" if kind == "ablation" else "metrics.json")).read_text())
    page = {"train": _train_page, "ablation": _ablation_page, "cascade": _cascade_page,
            "evaluate": _evaluate_page, "ensemble": _ensemble_page}[kind]
    title, body = page(folder, data, command)
    doc = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
           f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>"
           f"<h1>{_esc(title)}</h1><p class=\"sub\">{_esc(folder.resolve())}</p>"
           + "".join(b for b in body if b) + "</body></html>\n")
    out = folder / REPORT_NAME
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(out)
    return out


def build_parser():
    from base.cli import CLIParser
    p = CLIParser(prog="python -m fusion.report",
                  description="Write report.html into run folders of fusion.train, fusion.ablate, "
                              "fusion.evaluate, fusion.cascade eval or fusion.ensemble eval.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folder(s)")
    return p


def main(argv=None) -> int:
    from base.cli import run_cli
    from base.errors import UsageError
    parser = build_parser()
    args = parser.parse_args(argv)

    def work():
        for run in args.runs:  # every folder checked before any page is written
            if report_kind(run) is None:
                raise UsageError(f"{run}: no metrics.json or ablation.json of a run to report")
        for run in args.runs:
            print(f"wrote {write_report(run)}")
    return run_cli(parser.prog, work)


if __name__ == "__main__":
    sys.exit(main())
