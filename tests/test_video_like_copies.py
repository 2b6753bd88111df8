"""scripts/video_like_copies.py: mirrored tree, smaller H.264'd copies, deterministic, resumable."""
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("av")
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "video_like_copies.py"
spec = importlib.util.spec_from_file_location("video_like_copies", SCRIPT)
vlc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vlc)


def _images(root: Path):
    rng = np.random.default_rng(0)
    (root / "a" / "b").mkdir(parents=True)
    base = cv2.resize(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), (800, 600))
    cv2.imwrite(str(root / "a" / "b" / "one.jpg"), base)
    cv2.imwrite(str(root / "two.png"), base[:300, :200])
    (root / "notes.txt").write_text("not an image")
    (root / "broken.jpg").write_bytes(b"not a jpeg")


def test_copies_mirror_the_tree_smaller_and_changed(tmp_path, capsys):
    _images(tmp_path / "src")
    assert vlc.main([str(tmp_path / "src"), str(tmp_path / "out"), "--long-side", "160,200"]) == 0
    out = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert out == ["a/b/one.png", "two.png"]
    assert "broken.jpg: not a readable image, skipped" in capsys.readouterr().err
    one = cv2.imread(str(tmp_path / "out" / "a" / "b" / "one.png"))
    assert 160 <= max(one.shape[:2]) <= 200 and one.shape[1] > one.shape[0]  # aspect kept
    src = cv2.resize(cv2.imread(str(tmp_path / "src" / "a" / "b" / "one.jpg")), one.shape[1::-1],
                     interpolation=cv2.INTER_AREA)
    assert np.abs(src.astype(int) - one.astype(int)).mean() > 0.5  # the codec changed it


def test_copies_are_deterministic_by_seed_and_resume(tmp_path):
    _images(tmp_path / "src")
    for name, seed in (("x", 0), ("y", 0), ("z", 1)):
        assert vlc.main([str(tmp_path / "src"), str(tmp_path / name), "--seed", str(seed)]) == 0
    read = lambda d: (tmp_path / d / "a" / "b" / "one.png").read_bytes()
    assert read("x") == read("y") and read("x") != read("z")
    before = (tmp_path / "x" / "two.png").stat().st_mtime_ns
    (tmp_path / "x" / "a" / "b" / "one.png").unlink()  # as if killed before this file
    assert vlc.main([str(tmp_path / "src"), str(tmp_path / "x")]) == 0
    assert read("x") == read("y") and (tmp_path / "x" / "two.png").stat().st_mtime_ns == before


def test_video_like_draws_within_bounds():
    img = np.random.default_rng(1).integers(0, 256, (400, 300, 3), dtype=np.uint8)
    sides = {max(vlc.video_like(img, np.random.default_rng(s), (100, 120), (30, 30)).shape[:2])
             for s in range(6)}
    assert sides <= set(range(100, 121)) and len(sides) > 1
