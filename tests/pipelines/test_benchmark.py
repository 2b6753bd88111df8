"""Tests of pipelines.benchmark, edits_face and synthesis: exact masks, determinism, manifest."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from base.errors import UsageError
from pipelines import benchmark
from pipelines.edits_face import FACE_EDITS, NEEDS_DONOR, apply_face_edit
from pipelines.frames import read_image, read_mask_image
from pipelines.synthesis import difficulty_value

MANIFEST_FIELDS = {"image", "mask", "label", "edit", "difficulty", "params", "seed", "source",
                   "identity", "donor", "split", "landmarks"}


def _astronaut_variants():
    from skimage import data
    image = data.astronaut()
    second = np.ascontiguousarray(image[20:450, 40:470][:, ::-1])  # flipped, shifted crop
    return image, second


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sources")
    first, second = _astronaut_variants()
    cv2.imwrite(str(folder / "astronaut.png"), first[..., ::-1])
    cv2.imwrite(str(folder / "astronaut_flipped.png"), second[..., ::-1])
    cv2.imwrite(str(folder / "grey.png"), np.full((120, 120, 3), 128, np.uint8))  # no face
    return folder


@pytest.fixture(scope="module")
def faces(source_dir):
    faces, skipped = benchmark.load_folder_faces(source_dir, size=256)
    assert [s["source"] for s in skipped] == ["grey.png"]
    assert skipped[0]["cause"] == "no_face"
    return faces


@pytest.fixture(scope="module")
def bench(source_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "b"
    assert benchmark.main(["--source", str(source_dir), "--out", str(out), "--seed", "0",
                           "--no-progress"]) == 0
    return out


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- edits

@pytest.mark.parametrize("name", list(FACE_EDITS))
@pytest.mark.parametrize("difficulty", ["easy", "mid", "hard"])
def test_edit_mask_is_exactly_the_changed_pixels(faces, name, difficulty):
    target, donor = faces
    info = {}
    edited, mask = apply_face_edit(name, target.crop, target.landmarks, np.random.default_rng(7),
                                   difficulty, donor=donor.crop, donor_landmarks=donor.landmarks,
                                   info=info)
    assert edited.shape == target.crop.shape and edited.dtype == np.uint8
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert mask.any()
    np.testing.assert_array_equal(mask, np.any(edited != target.crop, axis=-1))
    json.dumps(info)  # every recorded choice is JSON-serialisable


@pytest.mark.parametrize("name", list(FACE_EDITS))
def test_edit_is_deterministic_and_seed_dependent(faces, name):
    target, donor = faces
    run = lambda seed: apply_face_edit(name, target.crop, target.landmarks,  # noqa: E731
                                       np.random.default_rng(seed), "mid", donor=donor.crop,
                                       donor_landmarks=donor.landmarks)[0]
    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_donor_edits_need_a_donor(faces):
    for name in NEEDS_DONOR:
        with pytest.raises(ValueError, match="donor"):
            apply_face_edit(name, faces[0].crop, faces[0].landmarks, 0)
    with pytest.raises(ValueError, match="unknown face edit"):
        apply_face_edit("nope", faces[0].crop, faces[0].landmarks, 0)
    with pytest.raises(ValueError, match="difficulty"):
        difficulty_value("extreme")


def test_easy_edits_are_stronger_than_hard_ones(faces):
    target, donor = faces
    diffs = {}
    for level in ("easy", "hard"):
        total = 0.0
        for seed in range(4):
            edited, _ = apply_face_edit("color", target.crop, target.landmarks,
                                        np.random.default_rng(seed), level)
            total += np.abs(edited.astype(float) - target.crop).sum()
        diffs[level] = total
    assert diffs["easy"] > diffs["hard"]


# ----------------------------------------------------------------------------- benchmark

def test_outside_mask_unchanged_in_written_pngs(bench):
    rows = _manifest(bench)
    reals = {r["source"]: read_image(bench / r["image"]) for r in rows if r["label"] == 0}
    fakes = [r for r in rows if r["label"] == 1]
    assert {r["edit"] for r in fakes} == set(FACE_EDITS)
    for row in fakes:
        edited = read_image(bench / row["image"])
        mask = read_mask_image(bench / row["mask"]).astype(bool)
        real = reals[row["source"]]
        assert mask.any(), row["image"]
        np.testing.assert_array_equal(edited[~mask], real[~mask], err_msg=row["image"])
        np.testing.assert_array_equal(mask, np.any(edited != real, axis=-1), err_msg=row["image"])


def test_manifest_is_complete(bench):
    rows = _manifest(bench)
    assert len(rows) == 2 * (1 + len(FACE_EDITS))
    listed = set()
    for row in rows:
        assert set(row) == MANIFEST_FIELDS
        assert (bench / row["image"]).is_file()
        listed.add(row["image"])
        assert row["split"] in ("train", "val", "test")
        assert np.asarray(row["landmarks"]).shape == (68, 2)
        if row["label"] == 0:
            assert row["mask"] is None and row["edit"] == "real" and row["donor"] is None
        else:
            assert (bench / row["mask"]).is_file() and row["difficulty"] in ("easy", "mid", "hard")
            assert (row["donor"] is not None) == (row["edit"] in NEEDS_DONOR)
            assert row["donor"] != row["source"]
    on_disk = {p.relative_to(bench).as_posix() for p in (bench / "images").rglob("*.png")}
    assert on_disk == listed
    # all images of one source share its split
    by_source = {}
    for row in rows:
        by_source.setdefault(row["source"], set()).add(row["split"])
    assert all(len(s) == 1 for s in by_source.values())
    summary = json.loads((bench / "summary.json").read_text())
    assert summary["skipped"][0]["source"] == "grey.png" and summary["images"] == len(rows)


def test_editbench_reader_accepts_the_manifest(bench):
    from pipelines.datasets import index_dataset
    sources = index_dataset("editbench", bench)
    assert len(sources) == len(_manifest(bench))
    assert {s.method for s in sources if s.label == 1} == set(FACE_EDITS)
    assert all(s.mask_path for s in sources if s.label == 1)


def _tree(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name != "summary.json"}


def test_generation_is_deterministic(faces, tmp_path):
    edits = ["sbi", "xray", "copy-move"]
    benchmark.generate(faces, tmp_path / "a", edits, per_image=2, seed=5)
    benchmark.generate(faces, tmp_path / "b", edits, per_image=2, seed=5)
    benchmark.generate(faces, tmp_path / "c", edits, per_image=2, seed=6)
    a, b, c = (_tree(tmp_path / n) for n in "abc")
    assert a == b
    assert a.keys() == c.keys()  # layout fixed; the edits themselves depend on the seed
    changed = [k for k in a if k.endswith(".png") and "real" not in k and a[k] != c[k]]
    assert len(changed) == sum(1 for k in a if k.endswith(".png") and "real" not in k)


def test_selecting_fewer_edits_keeps_the_others(faces, tmp_path):
    benchmark.generate(faces, tmp_path / "all", ["sbi", "blur"], seed=1)
    benchmark.generate(faces, tmp_path / "one", ["sbi"], seed=1)
    everything, only = _tree(tmp_path / "all"), _tree(tmp_path / "one")
    for key, data in only.items():
        if key.endswith(".png"):
            assert everything[key] == data


def test_cli_rejects_bad_flags_before_work(tmp_path, source_dir, capsys):
    out = tmp_path / "never"
    for argv, word in [(["--source", str(source_dir), "--edits", "sbi,bogus"], "--edits"),
                       (["--source", str(source_dir), "--difficulty", "insane"], "--difficulty"),
                       (["--source", str(tmp_path / "missing")], "--source"),
                       (["--source", str(source_dir), "--size", "10"], "--size"),
                       (["--source", str(source_dir), "--bench-split", "keep"], "--bench-split")]:
        assert benchmark.main(argv + ["--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert word in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_summary_ends_with_the_extract_command_that_reads_the_benchmark(bench):
    import shlex
    from pipelines import extract
    last = benchmark.format_summary(json.loads((bench / "summary.json").read_text()), bench).splitlines()[-1]
    assert last == f"next: python -m pipelines.extract --dataset editbench --root {bench} --out {bench}.h5"
    args = extract.build_parser().parse_args(shlex.split(last)[4:])  # flags the extract CLI takes
    assert (args.dataset, args.root, args.out) == ("editbench", str(bench), f"{bench}.h5")


def test_cli_refuses_to_overwrite(bench, source_dir, capsys):
    assert benchmark.main(["--source", str(source_dir), "--out", str(bench)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_parse_helpers():
    assert benchmark.parse_edits("all") == list(FACE_EDITS)
    assert benchmark.parse_edits("xray,sbi") == ["sbi", "xray"]
    assert benchmark.parse_difficulties("hard,easy") == ["easy", "hard"]
    with pytest.raises(UsageError):
        benchmark.parse_edits("")
    assert benchmark.hash_split("x") == benchmark.hash_split("x")
    splits = [benchmark.hash_split(str(i)) for i in range(2000)]
    assert 0.65 < splits.count("train") / 2000 < 0.75


def test_from_store(faces, tmp_path):
    from stores import write_store
    n = len(faces)
    meta = {"sample_id": [f"demo:real/v{i}:000000" for i in range(n)], "dataset": ["demo"] * n,
            "split": ["train"] * n, "label": [0] * n, "method": ["real"] * n,
            "video_id": [f"real/v{i}" for i in range(n)], "frame_index": [0] * n,
            "source_path": [f.source for f in faces]}
    import pandas as pd
    store = tmp_path / "s.h5"
    try:
        write_store(store, pd.DataFrame(meta), maps={"rgb": np.stack([f.crop for f in faces])},
                    landmarks=np.stack([f.landmarks for f in faces]))
    except TypeError as exc:  # the writer's signature is owned by stores/
        pytest.skip(f"stores.write_store signature differs: {exc}")
    out = tmp_path / "bench"
    assert benchmark.main(["--from-store", str(store), "--split", "train", "--edits", "sbi",
                           "--bench-split", "keep", "--out", str(out), "--no-progress"]) == 0
    rows = _manifest(out)
    assert len(rows) == 2 * n and {r["split"] for r in rows} == {"train"}
    real = read_image(out / rows[0]["image"])
    np.testing.assert_array_equal(real, faces[0].crop)


def test_from_store_rows_carry_the_store_identity_so_frames_of_a_video_are_one_cluster(
        faces, tmp_path):
    # two frames of each video: one identity each in the manifest and in the indexed
    # benchmark (older manifests, without it, fall back to their per-frame source)
    import pandas as pd

    from pipelines.datasets import index_editbench
    from stores import write_store
    n = len(faces) - len(faces) % 2
    meta = {"sample_id": [f"demo:real/v{i // 2}:{i % 2:06d}" for i in range(n)],
            "dataset": ["demo"] * n, "split": ["train"] * n, "label": [0] * n,
            "method": ["real"] * n, "video_id": [f"real/v{i // 2}" for i in range(n)],
            "frame_index": [i % 2 for i in range(n)], "source_path": [f.source for f in faces[:n]]}
    store = tmp_path / "s.h5"
    write_store(store, pd.DataFrame(meta), maps={"rgb": np.stack([f.crop for f in faces[:n]])},
                landmarks=np.stack([f.landmarks for f in faces[:n]]))
    out = tmp_path / "bench"
    assert benchmark.main(["--from-store", str(store), "--split", "train", "--edits", "sbi",
                           "--bench-split", "keep", "--out", str(out), "--no-progress"]) == 0
    rows = _manifest(out)
    by_source = {r["source"]: r["identity"] for r in rows}
    assert by_source == {sid: video for sid, video in zip(meta["sample_id"], meta["video_id"])}
    identities = {s.identity for s in index_editbench(out)}
    assert identities == set(meta["video_id"]) and len(identities) == n // 2
    manifest = out / "manifest.jsonl"
    old = [{k: v for k, v in r.items() if k != "identity"} for r in rows]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in old))
    assert {s.identity for s in index_editbench(out)} == set(meta["sample_id"])
