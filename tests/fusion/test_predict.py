"""fusion.predict scores a file exactly as the store-trained model scored the same crop."""
import json

import cv2
import numpy as np
import pandas as pd
import pytest

from fusion.predict import main as predict_main
from fusion.train import main as train_main
from pipelines.demo import demo_sources, render_demo_source
from pipelines.extract import main as extract_main


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    store = root / "demo.h5"
    assert extract_main(["--out", str(store), "--workers", "0", "--features", "lbp,fft",
                         "--no-progress"]) == 0
    run = root / "run"
    assert train_main(["--store", str(store), "--features", "lbp,fft", "--out", str(run),
                       "--bootstrap", "0", "--no-plots"]) == 0
    return root, run


def test_predict_matches_the_store_score_of_the_same_crop(demo_run, capsys):
    root, run = demo_run
    scores = pd.read_csv(run / "scores.csv")
    source = next(s for s in demo_sources() if s.split == "test" and s.label == 1)
    crop, _ = render_demo_source(source)
    image = root / "suspect.png"
    cv2.imwrite(str(image), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    out = root / "pred.json"
    assert predict_main(["--model", str(run), str(image), "--out", str(out),
                         "--overlay", str(root / "ov")]) == 0
    report = json.loads(out.read_text())
    expected = scores.loc[scores.sample_id == source.sample_id(0), "score"].item()
    result = report["results"][0]
    assert result["score"] == pytest.approx(expected, abs=1e-6)
    logit = scores.loc[scores.sample_id == source.sample_id(0), "logit"].item()
    assert result["logit"] == pytest.approx(logit, abs=1e-5) and report["threshold_units"] == "logit"
    assert result["fake"] == (logit >= report["threshold"])
    assert len(result["faces"]) == 1 and (root / "ov" / "suspect_scores.png").is_file()
    captured = capsys.readouterr()
    assert "suspect.png:" in captured.out
    # the training run's threshold and val warnings travel with the model to every verdict
    train_warnings = json.loads((run / "metrics.json").read_text())["warnings"]
    kept = [w for w in train_warnings if w.startswith(("threshold", "val:"))]
    assert kept  # the demo's val split is small
    assert report["warnings"] == kept
    assert all(f"warning: model {run}: {w}" in captured.err for w in kept)


def test_predict_refuses_bad_input_before_work(demo_run, tmp_path, capsys):
    root, run = demo_run
    assert predict_main(["--model", str(run), str(tmp_path / "missing.png")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "notes.txt"
    bad.write_text("x")
    assert predict_main(["--model", str(run), str(bad)]) == 2
    assert "unsupported file type" in capsys.readouterr().err
    assert predict_main(["--model", str(tmp_path), str(bad)]) == 2


def test_predict_reports_a_corrupt_video_without_crashing(demo_run, tmp_path, capsys):
    _, run = demo_run
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    assert predict_main(["--model", str(run), str(broken)]) == 1  # nothing was scored
    err = capsys.readouterr().err
    assert f"{broken}: not scored: " in err and "cannot open the file" in err


def test_predict_json_prints_json_alone_on_stdout(demo_run, capsys):
    root, run = demo_run
    source = next(s for s in demo_sources() if s.split == "test")
    crop, _ = render_demo_source(source)
    image = root / "piped.png"
    cv2.imwrite(str(image), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    assert predict_main(["--model", str(run), str(image), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # nothing but the JSON document
    assert report["results"][0]["file"] == str(image) and report["results"][0]["score"] is not None
    assert "piped.png:" in captured.err
    assert predict_main(["--model", str(run), str(image)]) == 0
    plain = capsys.readouterr().out
    assert plain.startswith(f"{image}: ") and "{" not in plain  # text only without --json


def _strip_result(frames=(3, 7), scores=(0.9, 0.2)):
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, size=(len(frames), 128, 128, 3), dtype=np.uint8)
    faces = [{"frame_index": f, "score": s, "logit": 0.0, "fake": s >= 0.5} for f, s in zip(frames, scores)]
    return {"file": "clip.mp4", "faces": faces, "_crops": crops}


def test_overlay_strip_shows_the_threshold_and_each_frame_index(tmp_path):
    from fusion.predict import STRIP_HEADER, TILE_CAPTION, overlay_strip, save_overlay, tile_caption
    strip = overlay_strip(_strip_result(), threshold=0.0, threshold_probability=0.5)
    assert strip.shape == (STRIP_HEADER + 128 + TILE_CAPTION, 256, 3)
    assert tile_caption(_strip_result()["faces"][0]) == ["0.900 FAKE", "frame 3"]
    # the faces are drawn unchanged inside their coloured frames
    np.testing.assert_array_equal(strip[STRIP_HEADER + 4:STRIP_HEADER + 124, 4:124],
                                  _strip_result()["_crops"][0][4:124, 4:124])
    assert tuple(strip[STRIP_HEADER, 0]) == (220, 0, 0) and tuple(strip[STRIP_HEADER, 128]) == (0, 150, 0)
    # another frame index changes that tile's caption and nothing else
    other = overlay_strip(_strip_result(frames=(8, 7)), 0.0, 0.5)
    changed = np.argwhere((other != strip).any(axis=2))
    assert len(changed) and changed[:, 0].min() >= STRIP_HEADER + 128 and changed[:, 1].max() < 128
    # another threshold changes the header and nothing else
    moved = overlay_strip(_strip_result(), 1.0, 0.731)
    changed = np.argwhere((moved != strip).any(axis=2))
    assert len(changed) and changed[:, 0].max() < STRIP_HEADER
    path = save_overlay(_strip_result(), tmp_path, 0.0, 0.5)
    assert path.name == "clip_scores.png"
    np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), strip)


def test_predict_warns_of_a_feature_it_could_not_compute(demo_run, monkeypatch, tmp_path, capsys):
    import fusion.predict as fp
    root, run = demo_run
    real_extractors = fp.extractors_for

    class InfFFT:  # an extractor that returns inf, as a broken one could
        def __init__(self, inner):
            self.inner = inner

        def extract(self, batch):
            out = dict(self.inner.extract(batch))
            out["vector"] = np.full_like(np.asarray(out["vector"], np.float32), np.inf)
            return out

    monkeypatch.setattr(fp, "extractors_for",
                        lambda config: {k: InfFFT(v) if k == "fft" else v
                                        for k, v in real_extractors(config).items()})
    source = next(s for s in demo_sources() if s.split == "test" and s.label == 1)
    image = tmp_path / "odd.png"
    cv2.imwrite(str(image), cv2.cvtColor(render_demo_source(source)[0], cv2.COLOR_RGB2BGR))
    assert predict_main(["--model", str(run), str(image), "--out", str(tmp_path / "p.json")]) == 0
    result = json.loads((tmp_path / "p.json").read_text())["results"][0]
    assert result["nonfinite"] == {"fft": {"rows": 1, "of": 1, "marked_valid": None}}
    assert f"warning: {image}: feature 'fft' is NaN or infinite in 1 of 1 rows" in capsys.readouterr().err
