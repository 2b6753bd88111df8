"""fusion.report: one self-contained report.html per run, checked as text and as a person sees it."""
from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest
import torch

from fusion import ablate, metrics, report, train
from fusion.cascade.overlays import save_overlay
from tests.fusion.test_heads import make_store

torch.set_num_threads(1)

IMG_SRC = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    store, other = make_store(root / "synthetic.h5"), make_store(root / "other.h5", seed=5)
    out = root / "run"
    assert train.main(["--store", str(store), "--features", "a,b", "--out", str(out),
                       "--test-store", str(other), "--bootstrap", "50"]) == 0
    return out


@pytest.fixture(scope="module")
def ablation_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_ablate")
    store = make_store(root / "synthetic.h5")
    out = root / "abl"
    assert ablate.main(["--store", str(store), "--features", "a,b,c", "--stages", "single,loo",
                        "--out", str(out), "--bootstrap", "20"]) == 0
    return out


def _inline_pngs(text: str) -> list[bytes]:
    return [base64.b64decode(b) for b in IMG_SRC.findall(text)]


def _assert_self_contained(text: str):
    assert "<script" not in text.lower() and "<link" not in text.lower()
    assert "url(" not in text and not re.search(r'(src|href)="(?!data:image/png;base64,)', text)
    assert text.count("<img ") == len(IMG_SRC.findall(text))  # every image is an inline PNG


def test_train_writes_a_self_contained_report_with_every_plot(train_run):
    text = (train_run / report.REPORT_NAME).read_text()
    _assert_self_contained(text)
    pngs = sorted(p.read_bytes() for p in train_run.glob("*.png"))
    assert len(pngs) == 8  # roc, det, scores for test and for the test store; roc, scores for val
    assert sorted(_inline_pngs(text)) == pngs


def test_train_report_shows_metrics_with_cis_warnings_and_command(train_run):
    text = (train_run / report.REPORT_NAME).read_text()
    m = json.loads((train_run / "metrics.json").read_text())
    auc, (lo, hi) = m["test"]["auc"], m["test"]["ci"]["auc"]
    assert f"{auc:.4f} [{lo:.4f}, {hi:.4f}]" in text
    eer, (lo, hi) = m["cross"]["other"]["eer"], m["cross"]["other"]["ci"]["eer"]
    assert f"{eer:.4f} [{lo:.4f}, {hi:.4f}]" in text
    assert m["warnings"] and all(html.escape(w) in text for w in m["warnings"])
    assert html.escape(m["provenance"]["command"]) in text
    assert m["provenance"]["stores"][0]["sha256"] in text
    for method in m["test"]["by_method"]:
        assert f"<td class=\"l\">{method}</td>" in text


def test_ablation_report_marks_vals_pick(ablation_run):
    text = (ablation_run / report.REPORT_NAME).read_text()
    _assert_self_contained(text)
    a = json.loads((ablation_run / "ablation.json").read_text())
    top = a["rows"][0]
    picked = re.findall(r"<tr class=pick>(.*?)</tr>", text)
    assert len(picked) == 1 and f"<td class=\"l\">{top['features']}</td>" in picked[0]
    assert f"{top['val_auc']:.4f}" in picked[0]
    assert _inline_pngs(text) == [(ablation_run / "ablation.png").read_bytes()]
    assert html.escape(a["provenance"]["command"]) in text
    assert all(html.escape(w) in text for w in a["pick_warnings"])


def test_cascade_eval_report_shows_localization_overlays_and_training(tmp_path):
    rng = np.random.default_rng(0)
    run, out = tmp_path / "run", tmp_path / "run" / "eval_test"
    (out / "overlays").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"config": {"size": 32, "sbi": "online"}}))
    y = np.r_[np.zeros(20), np.ones(20)].astype(int)
    scores = np.clip(0.5 + 0.3 * (y - 0.5) + 0.2 * rng.normal(size=40), 0, 1)
    methods = np.where(y == 1, "sbi", "real")
    c = metrics.compute_metrics(y, scores, methods, [f"v{i // 4}" for i in range(40)], n_boot=30)
    loc = {"threshold": 0.5, "size": 32, "all": {"n": 20, "pixel_auc": 0.8125, "iou": 0.4375, "f1": 0.5},
           "by_method": {"sbi": {"n": 20, "pixel_auc": 0.8125, "iou": 0.4375, "f1": 0.5}},
           "prior": {"all": {"n": 20, "pixel_auc": 0.75, "iou": 0.3, "f1": 0.45}},
           "hull": {"all": {"n": 20, "pixel_auc": 0.7, "iou": 0.35, "f1": 0.5}},
           "real_mask_area": 0.0625, "fake_mask_area": 0.25, "prior_mask_area": 0.2,
           "gain_over_prior": {"pixel_auc": 0.0625, "iou": 0.1375, "f1": 0.05}}
    (out / "metrics.json").write_text(json.dumps(metrics.to_jsonable(
        {"run": str(run), "store": "s.h5", "split": "test", "n": 40, "checkpoint_epoch": 3,
         "classification": c, "localization": loc})))
    for k in range(2):
        save_overlay(out / "overlays" / f"sbi_v{k}_f000000.png", rng.random((32, 32, 3)),
                     rng.random((32, 32)), None)
    path = report.write_report(out, command="python -m fusion.cascade eval --run R --store s.h5")
    text = path.read_text()
    _assert_self_contained(text)
    assert "python -m fusion.cascade eval --run R --store s.h5" in text
    for row in (("model", "0.8125", "0.4375", "0.5000"), ("prior", "0.7500", "0.3000", "0.4500"),
                ("hull", "0.7000", "0.3500", "0.5000")):
        assert ("<td class=\"l\">{}</td><td>20</td><td>{}</td><td>{}</td><td>{}</td>".format(*row)) in text
    assert "+0.1375" in text and "0.0625 (ideally 0)" in text
    assert f"{c['auc']:.4f} [{c['ci']['auc'][0]:.4f}, {c['ci']['auc'][1]:.4f}]" in text
    assert sorted(_inline_pngs(text)) == sorted(p.read_bytes() for p in (out / "overlays").glob("*.png"))
    assert "&quot;online&quot;" in text  # the training run's configuration


def test_a_folder_without_a_run_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no metrics.json or ablation.json"):
        report.write_report(tmp_path)


# ------------------------------------------------------------------- as a person sees it

def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = ("chromium not found: the report's screenshot test needs the Debian package "
                   "`chromium` (apt-get install chromium; .ci/run installs it)")
        if os.environ.get("CI"):
            pytest.fail(message + "; CI is set, so this is a failure, not a skip")
        pytest.skip(message)
    return found


def _screenshot(chromium, page, png, width, height) -> np.ndarray:
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--force-device-scale-factor=1", f"--window-size={width},{height}",
                    f"--screenshot={png}", page.resolve().as_uri()],
                   capture_output=True, timeout=120, check=True)
    shot = cv2.imread(str(png), cv2.IMREAD_COLOR)
    assert shot is not None, f"chromium wrote no screenshot to {png}"
    return shot


def _find(shot: np.ndarray, image: np.ndarray) -> float:
    """Share of the image's ink (non-white pixels) that the best-matching region of the
    screenshot does not show: about 0 where the page shows the image pixel for pixel."""
    if image.shape[0] > shot.shape[0] or image.shape[1] > shot.shape[1]:
        return 1.0
    small = lambda a: cv2.resize(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), None, fx=0.5, fy=0.5,  # noqa: E731
                                 interpolation=cv2.INTER_AREA)
    hit = cv2.matchTemplate(small(shot), small(image), cv2.TM_SQDIFF_NORMED)
    ink = (image < 245).any(axis=2)
    best = 1.0
    x0, y0 = (2 * v for v in cv2.minMaxLoc(hit)[2])
    for dy in (-1, 0, 1):  # the half-size search is off by at most one pixel
        for dx in (-1, 0, 1):
            y, x = max(y0 + dy, 0), max(x0 + dx, 0)
            region = shot[y:y + image.shape[0], x:x + image.shape[1]]
            if region.shape == image.shape:
                wrong = (np.abs(region.astype(int) - image.astype(int)).max(axis=2) > 40) & ink
                best = min(best, float(wrong.sum() / max(ink.sum(), 1)))
    return best


def test_report_renders_every_plot_in_headless_chromium(train_run, tmp_path):
    chromium = _chromium()
    width, height = 1400, 5200
    page = train_run / report.REPORT_NAME
    shot = _screenshot(chromium, page, tmp_path / "page.png", width, height)
    assert shot.shape == (height, width, 3)
    ink = (shot < 200).any(axis=2)
    assert ink.mean() > 0.03, "the page looks blank"
    assert ink[:60].any(axis=1).sum() > 10, "no title at the top of the page"
    images = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in _inline_pngs(page.read_text())]
    assert len(images) == 8
    diffs = [_find(shot, im) for im in images]
    assert max(diffs) < 0.01, f"plots not shown pixel for pixel (share of ink missing: {diffs})"
    # the same check sees a broken image: the DET plot's data cut short
    text = page.read_text()
    det = base64.b64encode((train_run / "det.png").read_bytes()).decode()
    broken = tmp_path / "broken.html"
    broken.write_text(text.replace(det, det[: len(det) // 3]))
    shot = _screenshot(chromium, broken, tmp_path / "broken.png", width, height)
    det_image = cv2.imdecode(np.frombuffer((train_run / "det.png").read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert _find(shot, det_image) > 0.05


def test_report_holds_robustness_rows_and_curves(tmp_path):
    from tests.fusion.test_robustness import make_perturbed_store
    store = make_perturbed_store(tmp_path / "perturbed.h5")
    out = tmp_path / "run"
    assert train.main(["--store", str(store), "--features", "f", "--out", str(out), "--bootstrap", "0",
                       "--perturb", "all"]) == 0
    text = (out / report.REPORT_NAME).read_text()
    m = json.loads((out / "metrics.json").read_text())
    for spec, r in m["robustness"].items():
        assert f"<td class=\"l\">test@{spec}</td><td>{r['n_real']}</td><td>{r['n_fake']}</td>" \
               f"<td>{r['auc']:.4f} [no CI]</td>" in text
    assert (out / "robustness.png").read_bytes() in _inline_pngs(text)


def test_evaluate_writes_a_report_of_the_scored_store(train_run, tmp_path):
    from fusion import evaluate
    store = tmp_path / "third.h5"
    make_store(store, seed=9)
    out = tmp_path / "ev"
    assert evaluate.main(["--model", str(train_run), "--store", str(store), "--out", str(out),
                          "--bootstrap", "20"]) == 0
    assert report.report_kind(out) == "evaluate"
    text = (out / report.REPORT_NAME).read_text()
    _assert_self_contained(text)
    assert sorted(_inline_pngs(text)) == sorted(p.read_bytes() for p in out.glob("*.png"))
    m = json.loads((out / "metrics.json").read_text())
    assert f"{m['metrics']['auc']:.4f}" in text and "third.h5" in text
    assert "python -m fusion.evaluate --model" in html.unescape(text)


def test_report_cli_rewrites_a_runs_page_and_refuses_a_folder_without_a_run(train_run, tmp_path, capsys):
    page = train_run / report.REPORT_NAME
    before = page.read_text()
    page.unlink()
    assert report.main([str(train_run)]) == 0
    assert page.read_text().replace(str(train_run.resolve()), "") == \
        before.replace(str(train_run.resolve()), "")
    assert f"wrote {page}" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report.main([str(train_run), str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m fusion.report: error:") and "empty" in err[0]
    with pytest.raises(SystemExit) as info:
        report.main(["--bogus-flag", str(train_run)])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("python -m fusion.report: error: ") and "\n" not in err


def test_train_report_shows_train_metrics_and_a_val_roc_beside_test(train_run):
    m = json.loads((train_run / "metrics.json").read_text())
    text = (train_run / report.REPORT_NAME).read_text()
    t = m["train"]
    assert t["n_real"] + t["n_fake"] == 48 * 4  # every train row (make_store: 48 videos of 4 frames)
    assert (f'<td class="l">train (fitted on)</td><td>{t["n_real"]}</td><td>{t["n_fake"]}</td>'
            f'<td>{t["auc"]:.4f} [{t["ci"]["auc"][0]:.4f}, {t["ci"]["auc"][1]:.4f}]</td>') in text
    pngs = _inline_pngs(text)
    for name in ("roc.png", "val_roc.png", "val_scores.png"):
        assert (train_run / name).read_bytes() in pngs, name
    # the val ROC stands right after the test ROC
    assert pngs.index((train_run / "val_roc.png").read_bytes()) == pngs.index((train_run / "roc.png").read_bytes()) + 1


def _rewritten(train_run, tmp_path, **changes):
    folder = tmp_path / "copy"
    shutil.copytree(train_run, folder)
    m = json.loads((folder / "metrics.json").read_text())
    for key, value in changes.items():
        m[key] = value
    (folder / "metrics.json").write_text(json.dumps(m))
    return report.write_report(folder).read_text(), m


def test_a_val_auc_below_chance_is_red_and_its_warning_comes_first(train_run, tmp_path):
    m = json.loads((train_run / "metrics.json").read_text())
    val = {**m["val"], "auc": 0.016}
    warnings = [f"val: {i} real and 2 fake videos (< 5 per class): too few" for i in range(6)] \
        + ["test: FAR@FRR target(s) 0.001 below 1/n_real = 1/40: not resolvable with this many samples",
           "val: AUC 0.016 is below chance (0.5): the model ranks reals above fakes here"]
    text, _ = _rewritten(train_run, tmp_path, val=val, warnings=warnings)
    items = re.findall(r"<li( class=\"serious\")?><b>([^<]+)</b>", text)
    assert [k for _, k in items] == ["worse than chance", "too few videos", "unresolvable rate targets"]
    assert items[0][0] and not items[1][0]  # the serious one in the warning style
    # six warnings, one line: the set named once, the shared clause after the colon once
    assert "<b>too few videos</b> (6): val: 0 real and 2 fake videos (&lt; 5 per class); 1 real" in text
    assert "5 real and 2 fake videos (&lt; 5 per class) -- too few" in text
    assert '<tr class=bad><td class="l">val</td>' in text and "0.0160" in text
    assert "AUC below chance" in text
    assert '<tr class=bad><td class="l">test</td>' not in text


def test_cascade_report_uses_its_recorded_provenance_and_shows_real_overlays(tmp_path):
    rng = np.random.default_rng(1)
    out = tmp_path / "eval_test"
    (out / "overlays" / "reals").mkdir(parents=True)
    y = np.r_[np.zeros(10), np.ones(10)].astype(int)
    c = metrics.compute_metrics(y, rng.random(20), np.where(y == 1, "sbi", "real"), n_boot=0)
    loc = {"threshold": 0.5, "size": 32, "all": {"n": 10, "pixel_auc": 0.8, "iou": 0.4, "f1": 0.5}}
    prov = {"command": "python -m fusion.cascade eval --run R --store s.h5 --split test",
            "code_version": "9.9", "stores": [{"path": "/x/s.h5", "sha256": "ab" * 32}],
            "config": {"split": "test"}}
    (out / "metrics.json").write_text(json.dumps(metrics.to_jsonable(
        {"run": str(tmp_path / "run"), "store": "s.h5", "split": "test", "n": 20, "checkpoint_epoch": 1,
         "classification": c, "localization": loc, "provenance": prov,
         "warnings": ["test: AUC 0.400 is below chance (0.5): inverted"]})))
    save_overlay(out / "overlays" / "reals" / "01_real_v0_f000000.png", rng.random((32, 32, 3)),
                 rng.random((32, 32)), None)
    text = report.write_report(out).read_text()  # as python -m fusion.report does: no command given
    assert "(command line not recorded)" not in text
    assert "python -m fusion.cascade eval --run R --store s.h5 --split test" in text and "ab" * 32 in text
    assert "Reals with the largest predicted masks" in text
    assert (out / "overlays" / "reals" / "01_real_v0_f000000.png").read_bytes() in _inline_pngs(text)
    assert '<li class="serious"><b>worse than chance</b>' in text
