"""Data set indexers: walk a data set's folder and list its :class:`Source` objects.

``index_dataset(name, root, **options)`` returns the sources of data set ``name`` sorted
by split, label and video id. Every failure a user can fix (unknown data set, missing
root, a root holding nothing the indexer recognises, an unknown option value) raises
:class:`~base.errors.UsageError` with one line naming the accepted values. Files the
indexer does not recognise are ignored; recognised videos that cannot be placed in a split
are skipped with one ``warnings.warn`` giving their count. Files whose ids would collide
(``x.jpg`` and ``x.png`` in one folder) keep their extension in the id; paths read from a
manifest or a ``metadata.json`` must stay inside the root.

Data sets and their split rules
-------------------------------
``ff++``
    Official FaceForensics++ layout. Options ``compression`` (c0, c23, c40; default c23)
    and ``methods`` (default: every method present). Splits come from the official pair
    lists shipped in ``pipelines/data/ffpp_splits``: a real ``XXX`` belongs to the split
    whose pairs contain it, a fake ``XXX_YYY`` to the split holding ``[XXX, YYY]`` or
    ``[YYY, XXX]``. DeepFakeDetection and its actor reals have no official split: they are
    all put in ``test`` (an out-of-distribution test set, as usual in the literature).
``celebdf``
    Celeb-DF (v1/v2). ``List_of_testing_videos.txt`` gives the test split; ``val`` is a
    deterministic ~10 % of the remaining videos chosen by identity (``crc32(identity) % 10
    == 0``; the identity of ``id0_0001`` and of the fake ``id0_id1_0000`` is ``id0``, a
    YouTube-real video is its own identity), the rest is ``train``.
``dfdc``
    DFDC training parts ``dfdc_train_part_<n>/metadata.json``. Split by part number:
    0-44 train, 45-47 val, 48 and above test.
``folder``
    ``<root>/{train,val,test}/{real,fake}`` or flat ``<root>/{real,fake}`` of images or
    videos; flat folders are split 70/15/15 by ``crc32(file stem) % 100`` (so a real and a
    fake that share a stem share a split). ``fake/<method>/...`` sets the method. A fake
    folder may also be named after its method, one of :data:`FAKE_METHOD_FOLDERS`
    (``gan/x.jpg`` reads as ``fake/gan/x.jpg``). Any other folder there that holds images or
    videos is skipped with a warning naming it and the accepted names. Masks are
    looked up in ``masks/`` (``masks/<rel>``, ``masks/fake/<rel>`` or ``masks/<stem>``, any
    image or video extension) next to ``real/``/``fake/`` and then at the root.
``editbench``
    ``<root>/manifest.jsonl``, one JSON object per line with ``image``, ``mask`` (or
    null), ``label``, ``edit`` and ``split``; paths are relative to the root. A line's
    ``source`` (the real photo or store sample an image was made from) is its identity.

Identities (the unit the confidence intervals resample): the target person for ``ff++``
(``youtube/000`` for ``000`` and every ``000_XXX``; ``actors/01`` for DeepFakeDetection),
the Celeb-DF identity for ``celebdf`` (``id0`` for ``id0_0001`` and ``id0_id1_0000``), the
source photo for ``editbench``, and the video for the others.
``demo``
    The built-in demo (:mod:`pipelines.demo`); ``root`` is ignored.

How to add a new data set
-------------------------
Write ``index_<name>(root: Path, <options with defaults>) -> list[Source]`` in this
module; raise :class:`UsageError` for anything the user can fix, ``warnings.warn`` once for
skipped files, and build every video id as ``"<method>/<...>"``. Add it to
:data:`DATASETS`; ``index_dataset`` then checks the root and the option names for it.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import warnings
import zlib
from collections import Counter
from dataclasses import replace
from functools import lru_cache
from importlib import resources
from pathlib import Path, PureWindowsPath

from base.errors import UsageError
from pipelines.samples import FAKE, REAL, REAL_METHOD, SPLITS, Source

__all__ = ["DATASETS", "index_dataset", "FFPP_METHODS", "FFPP_COMPRESSIONS",
           "IMAGE_EXTS", "VIDEO_EXTS", "ffpp_splits"]

FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter",
                "DeepFakeDetection")
FFPP_COMPRESSIONS = ("c0", "c23", "c40")
#: FF++ methods without an official split; indexed into ``test``.
FFPP_UNSPLIT = ("DeepFakeDetection",)
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv")
_SPLIT_ORDER = {s: i for i, s in enumerate(SPLITS)}


def _sorted(sources: list[Source]) -> list[Source]:
    return sorted(sources, key=lambda s: (_SPLIT_ORDER[s.split], s.label, s.video_id, s.path))


def _files(folder: Path, exts) -> list[Path]:
    """Files directly in ``folder`` whose suffix (lower case) is in ``exts``, sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)


def _warn_skipped(dataset: str, reason: str, skipped: list[str]) -> None:
    if skipped:
        examples = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        warnings.warn(f"{dataset}: skipped {len(skipped)} file(s) {reason} ({examples})",
                      stacklevel=4)


def _confined(root: Path, rel, where: str) -> Path:
    """``root / rel`` when it stays inside ``root``; a UsageError naming ``where`` otherwise.

    Paths from manifests are relative to the root: an absolute path or one whose ``..``
    climbs out of the root is refused (links inside the root are the user's own choice).
    """
    text = str(rel)
    if Path(text).is_absolute() or PureWindowsPath(text).drive:
        raise UsageError(f"{where}: path {text!r} is absolute; paths must be relative to "
                         f"--root {root}")
    path = Path(os.path.normpath(root / text))
    if path != root and root not in path.parents:
        raise UsageError(f"{where}: path {text!r} leads outside --root {root}")
    return path


def _unique_video_ids(sources: list[Source]) -> list[Source]:
    """Keep the extension in the video id of files whose ids collide (``x.jpg`` and
    ``x.png``); a UsageError naming both files if ids still collide."""
    count = Counter(s.video_id for s in sources)
    sources = [replace(s, video_id=s.video_id + Path(s.path).suffix) if count[s.video_id] > 1
               else s for s in sources]
    first = {}
    for source in sources:
        other = first.setdefault((source.dataset, source.video_id), source)
        if other is not source:
            raise UsageError(f"{source.dataset}: {other.path} and {source.path} get the same "
                             f"sample id {source.video_id!r}; rename one of them")
    return sources


def _hash_percent(text: str) -> int:
    return zlib.crc32(text.encode("utf-8")) % 100


# --------------------------------------------------------------------------- FF++

@lru_cache(maxsize=1)
def ffpp_splits() -> dict[str, list[tuple[str, str]]]:
    """The official FF++ pair lists: split -> [(target, source), ...]."""
    folder = resources.files("pipelines") / "data" / "ffpp_splits"
    return {split: [tuple(pair) for pair in json.loads((folder / f"{split}.json").read_text())]
            for split in SPLITS}


@lru_cache(maxsize=1)
def _ffpp_lookup() -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    video_split, pair_split = {}, {}
    for split, pairs in ffpp_splits().items():
        for a, b in pairs:
            video_split[a] = video_split[b] = split
            pair_split[(a, b)] = pair_split[(b, a)] = split
    return video_split, pair_split


def _parse_methods(methods, valid, dataset: str) -> list[str] | None:
    """None (all present) or the canonical names of ``methods`` (list or comma string)."""
    if methods is None:
        return None
    if isinstance(methods, str):
        methods = [m for m in methods.split(",") if m.strip()]
    canonical = {m.lower(): m for m in valid}
    out = []
    for method in methods:
        key = str(method).strip().lower()
        if key not in canonical:
            raise UsageError(f"{dataset}: unknown method {method!r}; expected some of "
                             f"{', '.join(valid)}")
        out.append(canonical[key])
    if not out:
        raise UsageError(f"{dataset}: empty methods list; expected some of {', '.join(valid)}")
    return list(dict.fromkeys(out))


def _ffpp_identity(stem: str, actors: bool) -> str:
    """The target person of an FF++ video: ``youtube/000`` for the real ``000`` and every fake
    ``000_XXX`` made on it; ``actors/01`` for the actor video ``01__scene`` and the
    DeepFakeDetection fakes ``01_02__scene__HASH`` made on it."""
    if actors:
        return f"actors/{stem.split('__')[0].split('_')[0]}"
    return f"youtube/{stem.split('_')[0]}"


def index_ffpp(root: Path, compression: str = "c23", methods=None) -> list[Source]:
    """FaceForensics++ sources of one compression (see the module docstring for splits)."""
    if compression not in FFPP_COMPRESSIONS:
        raise UsageError(f"ff++: unknown compression {compression!r}; expected one of "
                         f"{', '.join(FFPP_COMPRESSIONS)}")
    requested = _parse_methods(methods, FFPP_METHODS, "ff++")
    originals, manipulated = root / "original_sequences", root / "manipulated_sequences"
    if not originals.is_dir() and not manipulated.is_dir():
        raise UsageError(f"ff++: {root} holds neither original_sequences/ nor "
                         f"manipulated_sequences/ (expected the official FF++ layout)")
    present = [m for m in FFPP_METHODS if (manipulated / m).is_dir()]
    if requested is not None:
        absent = [m for m in requested if m not in present]
        if absent:
            raise UsageError(f"ff++: method(s) {', '.join(absent)} not found under {manipulated}; "
                             f"present: {', '.join(present) or 'none'}")
    chosen = present if requested is None else requested
    video_split, pair_split = _ffpp_lookup()
    sources, unsplit = [], []

    youtube = originals / "youtube" / compression / "videos"
    for path in _files(youtube, VIDEO_EXTS):
        split = video_split.get(path.stem)
        if split is None:
            unsplit.append(path.name)
            continue
        sources.append(Source(path=str(path), dataset="ff++", split=split, label=REAL,
                              method=REAL_METHOD, video_id=f"{REAL_METHOD}/youtube/{path.stem}",
                              identity=_ffpp_identity(path.stem, actors=False)))
    actors = originals / "actors" / compression / "videos"
    if requested is None or "DeepFakeDetection" in chosen:
        for path in _files(actors, VIDEO_EXTS):
            sources.append(Source(path=str(path), dataset="ff++", split="test", label=REAL,
                                  method=REAL_METHOD, video_id=f"{REAL_METHOD}/actors/{path.stem}",
                                  identity=_ffpp_identity(path.stem, actors=True)))

    for method in chosen:
        mask_dir = manipulated / method / "masks" / "videos"
        for path in _files(manipulated / method / compression / "videos", VIDEO_EXTS):
            if method in FFPP_UNSPLIT:
                split, real = "test", _dfd_real(actors, path.stem)
            else:
                parts = path.stem.split("_")
                split = pair_split.get(tuple(parts[:2])) if len(parts) == 2 else None
                if split is None:
                    unsplit.append(f"{method}/{path.name}")
                    continue
                real = youtube / f"{parts[0]}{path.suffix}"
            mask = mask_dir / path.name
            sources.append(Source(path=str(path), dataset="ff++", split=split, label=FAKE,
                                  method=method, video_id=f"{method}/{path.stem}",
                                  identity=_ffpp_identity(path.stem, method in FFPP_UNSPLIT),
                                  mask_path=str(mask) if mask.is_file() else None,
                                  real_path=str(real) if real is not None and real.is_file()
                                  else None))
    _warn_skipped("ff++", "not in any official split", unsplit)
    if not sources:
        raise UsageError(f"ff++: no {compression} videos under {root} (looked in "
                         f"original_sequences/*/{compression}/videos and "
                         f"manipulated_sequences/<method>/{compression}/videos)")
    return _sorted(sources)


def _dfd_real(actors: Path, stem: str) -> Path | None:
    """Actor video of a DeepFakeDetection fake ``01_02__scene__HASH`` -> ``01__scene``."""
    match = re.match(r"^(\d+)_\d+__(.+)__[^_]+$", stem)
    if not match:
        return None
    wanted = f"{match.group(1)}__{match.group(2)}"
    return next((actors / f"{wanted}{ext}" for ext in VIDEO_EXTS
                 if (actors / f"{wanted}{ext}").is_file()), None)


# --------------------------------------------------------------------------- Celeb-DF

CELEBDF_REAL_DIRS = ("Celeb-real", "YouTube-real")
CELEBDF_FAKE_DIR = "Celeb-synthesis"
CELEBDF_TEST_LIST = "List_of_testing_videos.txt"


def _celebdf_identity(folder: str, stem: str) -> str:
    if folder == "YouTube-real":
        return f"youtube/{stem}"
    return stem.split("_")[0]


def index_celebdf(root: Path) -> list[Source]:
    """Celeb-DF sources: official test list, ~10 % of identities of the rest as val."""
    folders = [d for d in (*CELEBDF_REAL_DIRS, CELEBDF_FAKE_DIR) if (root / d).is_dir()]
    if not folders:
        raise UsageError(f"celebdf: {root} holds none of {', '.join(CELEBDF_REAL_DIRS)}, "
                         f"{CELEBDF_FAKE_DIR} (expected the Celeb-DF layout)")
    test_list = root / CELEBDF_TEST_LIST
    if not test_list.is_file():
        raise UsageError(f"celebdf: {test_list} not found; it defines the official test split")
    test = set()
    for line in test_list.read_text().splitlines():
        fields = line.split()
        if len(fields) == 2:
            test.add(fields[1].replace("\\", "/"))

    sources = []
    for folder in folders:
        fake = folder == CELEBDF_FAKE_DIR
        for path in _files(root / folder, VIDEO_EXTS):
            rel = f"{folder}/{path.name}"
            if rel in test:
                split = "test"
            elif zlib.crc32(_celebdf_identity(folder, path.stem).encode()) % 10 == 0:
                split = "val"
            else:
                split = "train"
            if fake:
                # id0_id1_0000: identity 1's face on the Celeb-real video id0_0000.
                parts = path.stem.split("_")
                real = (root / "Celeb-real" / f"{parts[0]}_{parts[-1]}{path.suffix}"
                        if len(parts) == 3 else None)
                sources.append(Source(path=str(path), dataset="celebdf", split=split, label=FAKE,
                                      method=CELEBDF_FAKE_DIR,
                                      video_id=f"{CELEBDF_FAKE_DIR}/{path.stem}",
                                      identity=_celebdf_identity(folder, path.stem),
                                      real_path=str(real) if real and real.is_file() else None))
            else:
                sources.append(Source(path=str(path), dataset="celebdf", split=split, label=REAL,
                                      method=REAL_METHOD,
                                      video_id=f"{REAL_METHOD}/{folder}/{path.stem}",
                                      identity=_celebdf_identity(folder, path.stem)))
    if not sources:
        raise UsageError(f"celebdf: no videos in {', '.join(folders)} under {root}")
    return _sorted(sources)


# --------------------------------------------------------------------------- DFDC

DFDC_METHOD = "dfdc"


def _dfdc_split(part: int) -> str:
    return "train" if part <= 44 else "val" if part <= 47 else "test"


def index_dfdc(root: Path) -> list[Source]:
    """DFDC training parts; split by part number (0-44 train, 45-47 val, 48+ test)."""
    parts = []
    for folder in sorted(root.iterdir()):
        match = re.fullmatch(r"dfdc_train_part_(\d+)", folder.name)
        if match and (folder / "metadata.json").is_file():
            parts.append((int(match.group(1)), folder))
    if not parts:
        raise UsageError(f"dfdc: no dfdc_train_part_<n>/metadata.json under {root}")
    sources, missing = [], []
    for number, folder in sorted(parts):
        try:
            metadata = json.loads((folder / "metadata.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"dfdc: {folder / 'metadata.json'} is not valid JSON: {exc}") from None
        split = _dfdc_split(number)
        for name, info in sorted(metadata.items()):
            where = f"dfdc: {folder / 'metadata.json'}: entry {name!r}"
            path = _confined(root, Path(folder.name) / name, where)
            if not path.is_file():
                missing.append(f"{folder.name}/{name}")
                continue
            label = str(info.get("label", "")).upper()
            if label not in ("REAL", "FAKE"):
                missing.append(f"{folder.name}/{name}")
                continue
            stem = Path(name).stem
            if label == "REAL":
                sources.append(Source(path=str(path), dataset="dfdc", split=split, label=REAL,
                                      method=REAL_METHOD, video_id=f"{REAL_METHOD}/dfdc/{stem}"))
                continue
            original = info.get("original")
            real = _confined(root, Path(folder.name) / original, where) if original else None
            sources.append(Source(path=str(path), dataset="dfdc", split=split, label=FAKE,
                                  method=DFDC_METHOD, video_id=f"{DFDC_METHOD}/{stem}",
                                  real_path=str(real) if real and real.is_file() else None))
    _warn_skipped("dfdc", "listed in metadata.json but missing or without a REAL/FAKE label",
                  missing)
    if not sources:
        raise UsageError(f"dfdc: the metadata.json files under {root} list no existing video")
    return _sorted(sources)


# --------------------------------------------------------------------------- folder

def _flat_split(stem: str) -> str:
    percent = _hash_percent(stem)
    return "train" if percent < 70 else "val" if percent < 85 else "test"


def _media(folder: Path) -> list[Path]:
    """Media files under ``folder``; links that lead nowhere (a loop, a missing target) are
    kept so that reading them records why, instead of their vanishing without a word."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS + VIDEO_EXTS
                  and (p.is_file() or (p.is_symlink() and not p.exists())))


def _find_mask(mask_dirs: list[Path], rel: Path) -> Path | None:
    """Mask of fake file ``rel`` (relative to ``fake/``): same relative path or stem."""
    candidates = []
    for masks in mask_dirs:
        candidates += [masks / rel.parent / rel.stem, masks / "fake" / rel.parent / rel.stem,
                       masks / rel.stem]
    for base in candidates:
        for ext in IMAGE_EXTS + VIDEO_EXTS:
            for suffix in (ext, ext.upper()):
                path = base.with_name(base.name + suffix)
                if path.is_file():
                    return path
    return None


#: Folders a ``folder`` data set also reads as fakes of that method, beside ``fake/``:
#: ``gan/x.jpg`` is ``fake/gan/x.jpg`` (as in ../shared/data/faces: ``real/`` and ``gan/``).
FAKE_METHOD_FOLDERS = ("gan", "generated", "synthetic", "deepfake", "deepfakes")

#: The folder names ``index_folder`` reads, as a warning lists them.
_FOLDER_NAMES = ("real/ (reals); fake/, fake/<method>/ or " + ", ".join(
    f"{name}/" for name in FAKE_METHOD_FOLDERS) + " (fakes); masks/")


def _folder_groups(base: Path) -> list[tuple[int, Path, str | None]]:
    """``(label, folder, method folder)`` of the real and fake folders directly in ``base``."""
    groups = [(REAL, base / "real", None), (FAKE, base / "fake", None)]
    return groups + [(FAKE, base / name, name) for name in FAKE_METHOD_FOLDERS
                     if (base / name).is_dir()]


def _unread_folders(base: Path, known) -> dict[Path, list[Path]]:
    """``{folder: its media files}`` of the folders of ``base`` not named in ``known`` that
    hold images or videos (hidden folders aside)."""
    if not base.is_dir():
        return {}
    found = {d: _media(d) for d in sorted(base.iterdir())
             if d.is_dir() and d.name not in known and not d.name.startswith(".")}
    return {d: files for d, files in found.items() if files}


def index_folder(root: Path) -> list[Source]:
    """``real/`` and ``fake/`` folders of images or videos, with optional split folders."""
    class_names = ("real", "fake", *FAKE_METHOD_FOLDERS)
    split_layout = any((root / s / c).is_dir() for s in SPLITS for c in class_names)
    if split_layout:
        groups = [(root / s, s) for s in SPLITS]
        unread = _unread_folders(root, (*SPLITS, "masks"))
    elif any((root / c).is_dir() for c in class_names):
        groups = [(root, None)]
        unread = {}
    else:
        raise UsageError(f"folder: {root} holds neither real/ and fake/ (or "
                         f"{', '.join(f'{c}/' for c in FAKE_METHOD_FOLDERS)}) nor "
                         f"{{train,val,test}}/{{real,fake}}/ folders")
    sources = []
    for base, split in groups:
        unread.update(_unread_folders(base, (*class_names, "masks")))
        mask_dirs = [d for d in (base / "masks", root / "masks") if d.is_dir()]
        mask_dirs = list(dict.fromkeys(mask_dirs))
        for label, folder, method_folder in _folder_groups(base):
            for path in _media(folder):
                rel = path.relative_to(folder)
                if method_folder:
                    rel = Path(method_folder, rel)
                if label == FAKE and len(rel.parts) > 1:
                    method = rel.parts[0]
                    rel_id = Path(*rel.parts[1:]).with_suffix("").as_posix()
                else:
                    method = "fake" if label == FAKE else REAL_METHOD
                    rel_id = rel.with_suffix("").as_posix()
                mask = _find_mask(mask_dirs, rel) if label == FAKE else None
                this_split = split or _flat_split(path.stem)
                video_id = f"{method}/{split}/{rel_id}" if split else f"{method}/{rel_id}"
                kind = "video" if path.suffix.lower() in VIDEO_EXTS else "image"
                sources.append(Source(path=str(path), dataset="folder", split=this_split,
                                      label=label, method=method, video_id=video_id, kind=kind,
                                      mask_path=str(mask) if mask else None))
    if unread:  # a folder of images that is silently left out looks like a smaller data set
        names = ", ".join(f"{d.relative_to(root).as_posix()}/" for d in unread)
        _warn_skipped("folder", f"in {names}: not a folder name this data set reads "
                      f"({_FOLDER_NAMES})",
                      [p.relative_to(root).as_posix() for files in unread.values() for p in files])
    if not sources:
        raise UsageError(f"folder: no images ({', '.join(IMAGE_EXTS)}) or videos "
                         f"({', '.join(VIDEO_EXTS)}) in the real/ and fake/ folders under {root}")
    return _sorted(sources)


# --------------------------------------------------------------------------- editbench

EDITBENCH_MANIFEST = "manifest.jsonl"


def _editbench_identity(row: dict) -> str | None:
    """A manifest row's identity: its ``identity`` (benchmarks written since it was
    recorded), else its ``source`` (older ones: a file name, or a store sample id, one per
    frame), else None (the video id)."""
    for key in ("identity", "source"):
        if row.get(key):
            return str(row[key])
    return None


def index_editbench(root: Path) -> list[Source]:
    """Image-editing benchmark: one JSON line per image in ``<root>/manifest.jsonl``."""
    manifest = root / EDITBENCH_MANIFEST
    if not manifest.is_file():
        raise UsageError(f"editbench: {manifest} not found")
    sources, missing = [], []
    for number, line in enumerate(manifest.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"editbench: {manifest}:{number}"
        try:
            row = json.loads(line)
            image, label, split = row["image"], int(row["label"]), row["split"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{where}: expected a JSON object with image, mask, label, edit, "
                             f"split ({type(exc).__name__}: {exc})") from None
        if split not in SPLITS or label not in (REAL, FAKE):
            raise UsageError(f"{where}: split must be one of {', '.join(SPLITS)} and label 0 "
                             f"or 1, got split={split!r} label={label!r}")
        path = _confined(root, image, where)
        if not path.is_file():
            missing.append(str(image))
            continue
        method = REAL_METHOD if label == REAL else (row.get("edit") or "fake")
        mask = _confined(root, row["mask"], where) if row.get("mask") else None
        if mask is not None and not mask.is_file():
            missing.append(str(row["mask"]))
            continue
        # landmarks (image pixels) let landmark features run on the aligned benchmark
        landmarks = row.get("landmarks")
        params = (("landmarks", tuple(float(v) for pt in landmarks for v in pt)),) \
            if landmarks and len(landmarks) == 68 else ()
        sources.append(Source(path=str(path), dataset="editbench", split=split, label=label,
                              method=method,
                              video_id=f"{method}/{Path(image).with_suffix('').as_posix()}",
                              kind="image", mask_path=str(mask) if mask else None,
                              params=params, identity=_editbench_identity(row)))
    _warn_skipped("editbench", "listed in the manifest but missing", missing)
    if not sources:
        raise UsageError(f"editbench: {manifest} lists no existing image")
    return _sorted(sources)


# --------------------------------------------------------------------------- demo

def index_demo(root: Path | None = None) -> list[Source]:
    """The built-in demo data set (:func:`pipelines.demo.demo_sources`); ``root`` is ignored."""
    from pipelines.demo import demo_sources

    return _sorted(demo_sources())


#: Data set name -> indexer ``(root, **options) -> list[Source]``.
DATASETS = {
    "ff++": index_ffpp,
    "celebdf": index_celebdf,
    "dfdc": index_dfdc,
    "folder": index_folder,
    "editbench": index_editbench,
    "demo": index_demo,
}
#: Data sets that need no root folder.
ROOTLESS = frozenset({"demo"})


def index_dataset(name: str, root=None, **options) -> list[Source]:
    """List the sources of data set ``name`` under ``root``.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`.
    root : str or Path or None
        The data set's folder (ignored by ``demo``).
    **options
        Indexer options, e.g. ``compression="c40", methods=["Deepfakes"]`` for ``ff++``.

    Returns
    -------
    list of Source
        Sorted by split (train, val, test), label, video id.

    Raises
    ------
    UsageError
        Unknown data set or option, missing root, nothing recognisable under the root.

    Example
    -------
    >>> sources = index_dataset("demo")
    >>> sorted({s.split for s in sources})
    ['test', 'train', 'val']
    """
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    indexer = DATASETS[name]
    accepted = [p for p in inspect.signature(indexer).parameters if p != "root"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UsageError(f"{name}: unknown option(s) {', '.join(unknown)}; accepted: "
                         f"{', '.join(accepted) or 'none'}")
    if name in ROOTLESS:
        return indexer(None, **options)
    if root is None:
        raise UsageError(f"{name}: a root folder is required")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UsageError(f"{name}: root {root} does not exist or is not a folder")
    return _sorted(_unique_video_ids(indexer(root.resolve(), **options)))
