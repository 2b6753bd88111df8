"""Tests for pipelines/datasets.py: every indexer on small trees with known answers."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from base.errors import UsageError
from pipelines.datasets import DATASETS, ffpp_splits, index_dataset
from pipelines.samples import SPLITS


def touch(root: Path, *rels: str) -> None:
    for rel in rels:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def by_id(sources):
    ids = [s.video_id for s in sources]
    assert len(ids) == len(set(ids)), "video ids must be unique"
    return {s.video_id: s for s in sources}


def summary(sources):
    return {s.video_id: (s.split, s.label, s.method) for s in sources}


def assert_sorted(sources):
    keys = [(SPLITS.index(s.split), s.label, s.video_id) for s in sources]
    assert keys == sorted(keys)


# ------------------------------------------------------------------ registry and errors

def test_registry_names():
    assert set(DATASETS) == {"ff++", "celebdf", "dfdc", "folder", "editbench", "demo"}


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UsageError, match="unknown dataset 'nope'.*ff\\+\\+.*celebdf"):
        index_dataset("nope", "/tmp")


@pytest.mark.parametrize("name", ["ff++", "celebdf", "dfdc", "folder", "editbench"])
def test_missing_root(name, tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        index_dataset(name, tmp_path / "absent")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        index_dataset(name, tmp_path / "file.txt")
    with pytest.raises(UsageError, match="required"):
        index_dataset(name)


@pytest.mark.parametrize("name", ["ff++", "celebdf", "dfdc", "folder", "editbench"])
def test_empty_root_is_usage_error(name, tmp_path):
    touch(tmp_path, "notes.txt", "other/a.mp4")
    with pytest.raises(UsageError):
        index_dataset(name, tmp_path)


def test_unknown_option(tmp_path):
    with pytest.raises(UsageError, match="unknown option.*quality.*compression, methods"):
        index_dataset("ff++", tmp_path, quality="c23")


def test_shipped_splits_are_disjoint_official_lists():
    splits = ffpp_splits()
    assert [len(splits[s]) for s in SPLITS] == [360, 70, 70]
    ids = {s: {v for pair in splits[s] for v in pair} for s in SPLITS}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"]
    assert not ids["val"] & ids["test"]


# ------------------------------------------------------------------ FF++ on real data

@pytest.mark.shared_data
def test_ffpp_shared_sample(ffpp_root):
    sources = index_dataset("ff++", ffpp_root)
    assert summary(sources) == {
        "real/youtube/519": ("train", 0, "real"),
        "Deepfakes/519_515": ("train", 1, "Deepfakes"),
        "Face2Face/750_743": ("train", 1, "Face2Face"),
        "real/youtube/004": ("val", 0, "real"),
        "NeuralTextures/004_982": ("val", 1, "NeuralTextures"),
        "real/youtube/634": ("test", 0, "real"),
        "FaceSwap/634_660": ("test", 1, "FaceSwap"),
    }
    assert_sorted(sources)
    ids = by_id(sources)
    real_dir = ffpp_root.resolve() / "original_sequences" / "youtube" / "c23" / "videos"
    assert ids["Deepfakes/519_515"].real_path == str(real_dir / "519.mp4")
    assert ids["NeuralTextures/004_982"].real_path == str(real_dir / "004.mp4")
    assert ids["Face2Face/750_743"].real_path is None  # its real 750 is not in the sample
    assert ids["real/youtube/519"].path == str(real_dir / "519.mp4")
    assert all(s.dataset == "ff++" and s.kind == "video" and s.mask_path is None
               for s in sources)


@pytest.mark.shared_data
def test_ffpp_shipped_splits_match_shared_copy(ffpp_root):
    for split in SPLITS:
        shipped = json.loads((ffpp_root / "splits" / f"{split}.json").read_text())
        assert [tuple(p) for p in shipped] == ffpp_splits()[split]


@pytest.mark.shared_data
def test_ffpp_method_filter(ffpp_root):
    sources = index_dataset("ff++", ffpp_root, methods=["faceswap", "Deepfakes"])
    assert {s.method for s in sources} == {"real", "FaceSwap", "Deepfakes"}
    assert {s.video_id for s in sources if s.label} == {"FaceSwap/634_660", "Deepfakes/519_515"}
    same = index_dataset("ff++", ffpp_root, methods="FaceSwap,Deepfakes")
    assert same == sources


@pytest.mark.shared_data
def test_ffpp_method_and_compression_errors(ffpp_root):
    with pytest.raises(UsageError, match="unknown method 'DeepFake'.*Deepfakes"):
        index_dataset("ff++", ffpp_root, methods=["DeepFake"])
    with pytest.raises(UsageError, match="FaceShifter not found"):
        index_dataset("ff++", ffpp_root, methods=["FaceShifter"])
    with pytest.raises(UsageError, match="unknown compression 'c99'.*c0, c23, c40"):
        index_dataset("ff++", ffpp_root, compression="c99")
    with pytest.raises(UsageError, match="no c40 videos"):
        index_dataset("ff++", ffpp_root, compression="c40")


# ------------------------------------------------------------------ FF++ on a fake tree

@pytest.fixture
def ffpp_tree(tmp_path):
    touch(tmp_path,
          "original_sequences/youtube/c40/videos/071.mp4",   # train pair [071, 054]
          "original_sequences/youtube/c40/videos/1000.mp4",  # in no split -> skipped
          "original_sequences/youtube/c40/videos/notes.txt",
          "original_sequences/youtube/c23/videos/054.mp4",   # other compression
          "original_sequences/actors/c40/videos/01__exit_phone_room.mp4",
          "manipulated_sequences/Deepfakes/c40/videos/071_054.mp4",
          "manipulated_sequences/Deepfakes/c40/videos/054_071.mp4",
          "manipulated_sequences/Deepfakes/masks/videos/071_054.mp4",
          "manipulated_sequences/FaceShifter/c40/videos/998_997.mp4",  # no split -> skipped
          "manipulated_sequences/DeepFakeDetection/c40/videos/01_02__exit_phone_room__ABCD1234.mp4",
          "manipulated_sequences/Unknown/c40/videos/071_054.mp4")
    return tmp_path


def test_ffpp_tree(ffpp_tree):
    with pytest.warns(UserWarning, match="skipped 2 file.*not in any official split"):
        sources = index_dataset("ff++", ffpp_tree, compression="c40")
    assert summary(sources) == {
        "real/youtube/071": ("train", 0, "real"),
        "Deepfakes/054_071": ("train", 1, "Deepfakes"),
        "Deepfakes/071_054": ("train", 1, "Deepfakes"),
        "real/actors/01__exit_phone_room": ("test", 0, "real"),
        "DeepFakeDetection/01_02__exit_phone_room__ABCD1234": ("test", 1, "DeepFakeDetection"),
    }
    assert_sorted(sources)
    ids = by_id(sources)
    root = ffpp_tree.resolve()
    assert ids["Deepfakes/071_054"].mask_path == str(
        root / "manipulated_sequences/Deepfakes/masks/videos/071_054.mp4")
    assert ids["Deepfakes/071_054"].real_path == str(
        root / "original_sequences/youtube/c40/videos/071.mp4")
    assert ids["Deepfakes/054_071"].mask_path is None
    assert ids["Deepfakes/054_071"].real_path is None  # 054 exists only in c23
    assert ids["DeepFakeDetection/01_02__exit_phone_room__ABCD1234"].real_path == str(
        root / "original_sequences/actors/c40/videos/01__exit_phone_room.mp4")


def test_ffpp_tree_default_compression(ffpp_tree):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sources = index_dataset("ff++", ffpp_tree)
    assert summary(sources) == {"real/youtube/054": ("train", 0, "real")}


def test_ffpp_tree_methods_exclude_actors(ffpp_tree):
    with pytest.warns(UserWarning):
        sources = index_dataset("ff++", ffpp_tree, compression="c40", methods=["Deepfakes"])
    assert {s.method for s in sources} == {"real", "Deepfakes"}
    assert not any("actors" in s.video_id for s in sources)


# ------------------------------------------------------------------ Celeb-DF

def test_celebdf(tmp_path):
    touch(tmp_path,
          "Celeb-real/id0_0000.mp4", "Celeb-real/id1_0001.mp4", "Celeb-real/id2_0002.mp4",
          "YouTube-real/00000.mp4", "YouTube-real/00001.mp4",
          "Celeb-synthesis/id0_id1_0000.mp4", "Celeb-synthesis/id1_id2_0001.mp4",
          "Celeb-synthesis/id2_id0_0002.mp4", "Celeb-synthesis/readme.txt", "notes.txt")
    (tmp_path / "List_of_testing_videos.txt").write_text(
        "1 Celeb-real/id2_0002.mp4\n1 YouTube-real/00001.mp4\n0 Celeb-synthesis/id2_id0_0002.mp4\n")
    sources = index_dataset("celebdf", tmp_path)
    # crc32("id0") % 10 == 0 -> val; id1 and youtube/00000 -> train.
    assert summary(sources) == {
        "real/Celeb-real/id1_0001": ("train", 0, "real"),
        "real/YouTube-real/00000": ("train", 0, "real"),
        "Celeb-synthesis/id1_id2_0001": ("train", 1, "Celeb-synthesis"),
        "real/Celeb-real/id0_0000": ("val", 0, "real"),
        "Celeb-synthesis/id0_id1_0000": ("val", 1, "Celeb-synthesis"),
        "real/Celeb-real/id2_0002": ("test", 0, "real"),
        "real/YouTube-real/00001": ("test", 0, "real"),
        "Celeb-synthesis/id2_id0_0002": ("test", 1, "Celeb-synthesis"),
    }
    assert_sorted(sources)
    ids = by_id(sources)
    assert ids["Celeb-synthesis/id1_id2_0001"].real_path == str(
        tmp_path.resolve() / "Celeb-real" / "id1_0001.mp4")


def test_celebdf_needs_test_list(tmp_path):
    touch(tmp_path, "Celeb-real/id0_0000.mp4")
    with pytest.raises(UsageError, match="List_of_testing_videos.txt"):
        index_dataset("celebdf", tmp_path)


# ------------------------------------------------------------------ DFDC

def test_dfdc(tmp_path):
    touch(tmp_path, "dfdc_train_part_0/a.mp4", "dfdc_train_part_0/b.mp4",
          "dfdc_train_part_46/c.mp4", "dfdc_train_part_49/d.mp4", "dfdc_train_part_3/x.mp4")
    (tmp_path / "dfdc_train_part_0/metadata.json").write_text(json.dumps({
        "a.mp4": {"label": "FAKE", "original": "b.mp4", "split": "train"},
        "b.mp4": {"label": "REAL", "split": "train"},
        "missing.mp4": {"label": "FAKE", "original": "b.mp4", "split": "train"}}))
    (tmp_path / "dfdc_train_part_46/metadata.json").write_text(json.dumps({
        "c.mp4": {"label": "REAL", "split": "train"}}))
    (tmp_path / "dfdc_train_part_49/metadata.json").write_text(json.dumps({
        "d.mp4": {"label": "FAKE", "original": "e.mp4", "split": "train"}}))
    with pytest.warns(UserWarning, match="skipped 1 file.*missing.mp4"):
        sources = index_dataset("dfdc", tmp_path)
    assert summary(sources) == {
        "real/dfdc/b": ("train", 0, "real"),
        "dfdc/a": ("train", 1, "dfdc"),
        "real/dfdc/c": ("val", 0, "real"),
        "dfdc/d": ("test", 1, "dfdc"),
    }
    ids = by_id(sources)
    assert ids["dfdc/a"].real_path == str(tmp_path.resolve() / "dfdc_train_part_0" / "b.mp4")
    assert ids["dfdc/d"].real_path is None


# ------------------------------------------------------------------ folder

def test_folder_flat(tmp_path):
    touch(tmp_path, "real/a.png", "real/b.jpg", "real/e.PNG", "real/readme.txt",
          "fake/a.png", "fake/Deepfakes/c.mp4", "fake/e.webp",
          "masks/a.png", "masks/fake/e.png")
    sources = index_dataset("folder", tmp_path)
    # crc32(stem) % 100: a 7, c 55 -> train; b 81 -> val; e 94 -> test.
    assert summary(sources) == {
        "real/a": ("train", 0, "real"),
        "Deepfakes/c": ("train", 1, "Deepfakes"),
        "fake/a": ("train", 1, "fake"),
        "real/b": ("val", 0, "real"),
        "real/e": ("test", 0, "real"),
        "fake/e": ("test", 1, "fake"),
    }
    assert_sorted(sources)
    ids = by_id(sources)
    root = tmp_path.resolve()
    assert ids["fake/a"].mask_path == str(root / "masks" / "a.png")
    assert ids["fake/e"].mask_path == str(root / "masks" / "fake" / "e.png")
    assert ids["Deepfakes/c"].mask_path is None and ids["Deepfakes/c"].kind == "video"
    assert ids["real/a"].kind == "image" and ids["real/a"].mask_path is None


def test_folder_split_layout(tmp_path):
    touch(tmp_path, "train/real/x.jpg", "train/fake/x.jpg", "train/masks/x.png",
          "val/real/z.bmp", "test/real/y.png", "test/fake/FaceSwap/y.png",
          "masks/FaceSwap/y.png", "real/ignored.png")
    with pytest.warns(UserWarning, match=r"skipped 1 file\(s\) in real/: not a folder name"):
        sources = index_dataset("folder", tmp_path)
    assert summary(sources) == {
        "real/train/x": ("train", 0, "real"),
        "fake/train/x": ("train", 1, "fake"),
        "real/val/z": ("val", 0, "real"),
        "real/test/y": ("test", 0, "real"),
        "FaceSwap/test/y": ("test", 1, "FaceSwap"),
    }
    ids = by_id(sources)
    root = tmp_path.resolve()
    assert ids["fake/train/x"].mask_path == str(root / "train" / "masks" / "x.png")
    assert ids["FaceSwap/test/y"].mask_path == str(root / "masks" / "FaceSwap" / "y.png")


def test_folder_reads_gan_as_fakes_of_that_method(tmp_path):
    touch(tmp_path, "real/a.png", "gan/b.jpg", "gan/style2/c.jpg", "masks/gan/b.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is skipped
        sources = index_dataset("folder", tmp_path)
    assert {s.video_id: (s.label, s.method) for s in sources} == {
        "real/a": (0, "real"), "gan/b": (1, "gan"), "gan/style2/c": (1, "gan")}
    assert by_id(sources)["gan/b"].mask_path == str(tmp_path.resolve() / "masks/gan/b.png")


@pytest.mark.parametrize("files, folder", [
    (("real/a.png", "fake/b.png", "other/c.png", "other/d.mp4"), "other/"),
    (("train/real/a.png", "train/extra/b.png"), "train/extra/"),
    (("train/real/a.png", "real/b.png"), "real/"),
])
def test_folder_warns_naming_a_folder_of_images_it_does_not_read(tmp_path, files, folder):
    touch(tmp_path, *files, "real/notes.txt", ".cache/x.png")
    with pytest.warns(UserWarning) as caught:
        sources = index_dataset("folder", tmp_path)
    [message] = [str(w.message) for w in caught]
    skipped = [f for f in files if f.startswith(folder)]
    assert message.startswith(f"folder: skipped {len(skipped)} file(s) in {folder}: not a "
                              "folder name this data set reads (real/ (reals); fake/"), message
    assert "gan/" in message and all(f in message for f in skipped)
    assert not any(s.path.endswith(tuple(skipped)) for s in sources)


# ------------------------------------------------------------------ editbench

def test_editbench(tmp_path):
    touch(tmp_path, "images/r0.png", "images/f0.png", "masks/f0.png")
    rows = [{"image": "images/r0.png", "mask": None, "label": 0, "edit": "", "split": "val"},
            {"image": "images/f0.png", "mask": "masks/f0.png", "label": 1, "edit": "splice",
             "split": "test"},
            {"image": "images/gone.png", "mask": None, "label": 1, "edit": "blur",
             "split": "train"}]
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.warns(UserWarning, match="skipped 1 file"):
        sources = index_dataset("editbench", tmp_path)
    assert summary(sources) == {"real/images/r0": ("val", 0, "real"),
                                "splice/images/f0": ("test", 1, "splice")}
    ids = by_id(sources)
    assert ids["splice/images/f0"].mask_path == str(tmp_path.resolve() / "masks" / "f0.png")
    assert all(s.kind == "image" for s in sources)


def test_editbench_bad_line(tmp_path):
    (tmp_path / "manifest.jsonl").write_text('{"image": "a.png", "label": 1}\n')
    with pytest.raises(UsageError, match="manifest.jsonl:1"):
        index_dataset("editbench", tmp_path)


# ------------------------------------------------------------------ demo

def test_demo_through_registry():
    sources = index_dataset("demo")
    assert len(sources) == 90 and {s.kind for s in sources} == {"demo"}
    assert_sorted(sources)
    by_id(sources)
