"""Writing stores: one shard per partition, then one merge into the final file.

Every Dask task writes its own shard file (a small store with the same layout), so no two
processes ever share an HDF5 handle and a task needs nothing but a shared folder. A shard
is written to ``<name>.<pid>-<random>.tmp`` and renamed when complete: a killed task leaves no half shard
that a rerun would trust. The final store is built by :func:`merge_shards` in one process,
again under a temporary name of its own renamed at the end, so the store on disk is always
a complete file and two overlapping merges never write to the same temporary file. :func:`add_features` adds features to an existing store without recomputing or
re-encoding the old ones: it copies the file's bytes, adds datasets to the copy, and swaps
the copy in.
"""
from __future__ import annotations

import errno
import os
import shutil
import time
import uuid
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from stores.schema import (ERROR_FIELDS, GROUPS, INT_FIELDS, OPTIONAL_INT_FIELDS, SCHEMA_VERSION,
                           SOURCE_META_FIELDS, STRING_FIELDS, StoreError, StoreWriteError,
                           code_version, dumps, fill_optional_fields)

_STR = h5py.string_dtype("utf-8")
_COMPRESSION = {"compression": "gzip", "compression_opts": 1, "shuffle": True}


def _tmp_path(path: Path) -> Path:
    """A temporary name next to ``path`` that no other process or call uses."""
    return path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def _write_failed(path: Path, exc: BaseException) -> BaseException:
    """``exc`` as a one-line StoreWriteError when it is a failure to write ``path``.

    h5py reports a full disk as ``RuntimeError`` ("... errno = 28, error message = 'No space
    left on device' ...") as well as ``OSError``; both become "cannot write PATH: REASON".
    """
    if isinstance(exc, StoreError) or not (isinstance(exc, OSError) or type(exc) is RuntimeError):
        return exc  # RecursionError and other RuntimeError subclasses are bugs, not a disk
    text = str(exc)
    if getattr(exc, "errno", None) == errno.ENOSPC or "errno = 28" in text or "No space left" in text:
        reason = "no space left on device"
    else:
        reason = getattr(exc, "strerror", None) or (text.splitlines() or [type(exc).__name__])[0][:200]
    return StoreWriteError(f"cannot write {path}: {reason}")


def _vector_chunks(n: int, d: int) -> tuple:
    rows = max(1, min(n, (1 << 20) // max(4 * d, 1)))
    return (rows, max(d, 1))


def _map_chunks(shape: tuple) -> tuple:
    return (1,) + tuple(shape[1:])


def _create(group, name, shape, dtype, kind, fillvalue=None):
    n = shape[0]
    if n == 0:
        return group.create_dataset(name, shape=shape, dtype=dtype)
    chunks = _vector_chunks(n, shape[1]) if kind == "vector" else _map_chunks(shape)
    return group.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks,
                                fillvalue=fillvalue, **_COMPRESSION)


def _write_columns(group, columns: dict, string_fields):
    for key, values in columns.items():
        if key in string_fields:
            group.create_dataset(key, data=np.asarray([str(v) for v in values], dtype=object),
                                 dtype=_STR)
        else:
            group.create_dataset(key, data=np.asarray(values, dtype=np.int64))


def _meta_columns(meta) -> dict:
    frame = pd.DataFrame(meta)
    missing = [f for f in STRING_FIELDS + INT_FIELDS
               if f not in frame.columns and f not in OPTIONAL_INT_FIELDS]
    if missing:
        raise StoreError(f"sample metadata lacks column(s) {missing}")
    columns = {f: frame[f].tolist() for f in STRING_FIELDS + INT_FIELDS if f in frame.columns}
    return fill_optional_fields(columns, frame.columns)


def _source_meta_columns(source_meta, n: int) -> dict:
    """``SOURCE_META_FIELDS`` as float64 columns of length ``n`` (NaN where not given)."""
    frame = pd.DataFrame(source_meta) if source_meta is not None else pd.DataFrame(index=range(n))
    if len(frame) != n:
        raise StoreError(f"source metadata has {len(frame)} rows for {n} samples")
    return {f: pd.to_numeric(frame[f], errors="coerce").to_numpy(np.float64) if f in frame
            else np.full(n, np.nan) for f in SOURCE_META_FIELDS}


def _write_source_meta(h5, columns: dict):
    group = h5.create_group("source_meta")
    for f, values in columns.items():
        group.create_dataset(f, data=np.asarray(values, np.float64))


def _error_columns(errors) -> dict:
    frame = pd.DataFrame(list(errors), columns=list(ERROR_FIELDS))
    return {f: frame[f].tolist() for f in ERROR_FIELDS}


def _set_attrs(dataset, attrs: dict):
    dataset.attrs["extractor"] = attrs.get("extractor", "")
    dataset.attrs["version"] = str(attrs.get("version", ""))
    dataset.attrs["params"] = dumps(attrs.get("params", {}))
    dataset.attrs["columns"] = dumps(list(attrs.get("columns", [])))
    dataset.attrs["code_version"] = attrs.get("code_version", code_version())
    for key, value in attrs.items():  # extractor-specific facts: model name, weights hash...
        if key not in ("extractor", "version", "params", "columns", "code_version"):
            dataset.attrs[key] = value if isinstance(value, str) else dumps(value)


def _write_root_attrs(h5, run: dict | None):
    h5.attrs["schema_version"] = SCHEMA_VERSION
    h5.attrs["code_version"] = code_version()
    h5.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    h5.attrs["run"] = dumps(run or {})


def write_store(path, meta, vectors=None, maps=None, attrs=None, valid=None, landmarks=None,
                errors=(), run=None, source_meta=None) -> Path:
    """Write a complete store (or shard) in one go, atomically.

    Parameters
    ----------
    path : str or Path
        Output file. Written under a temporary name and renamed when complete.
    meta : DataFrame or dict of columns
        One row per sample with the fields of ``pipelines.samples.SAMPLE_FIELDS``.
    vectors, maps : dict of name -> ndarray
        ``N x D`` vectors (stored float32) and ``N x H x W x C`` maps (dtype kept).
    attrs : dict of name -> dict
        Per-feature attributes: ``extractor``, ``version``, ``params``, ``columns``.
    valid : dict of name -> N bool, optional
        Defaults to "all rows valid" for every feature.
    landmarks : N x 68 x 2 array, optional
        NaN when absent.
    errors : iterable of dict
        Rows with ``ERROR_FIELDS``.
    run : dict, optional
        How the store was made (data set, root, frames, size, ...), stored as JSON.
    source_meta : DataFrame or dict of columns, optional
        One row per sample with (some of) ``SOURCE_META_FIELDS``; missing ones are NaN.
        Without it the store has no ``/source_meta`` group (as stores before it existed).

    Examples
    --------
    >>> import pandas as pd, numpy as np, tempfile, os
    >>> meta = pd.DataFrame({"sample_id": ["a:0"], "dataset": ["x"], "split": ["train"],
    ...                      "label": [1], "method": ["m"], "video_id": ["m/0"],
    ...                      "frame_index": [0], "source_path": ["/x.png"]})
    >>> p = write_store(os.path.join(tempfile.mkdtemp(), "s.h5"), meta,
    ...                 vectors={"f": np.ones((1, 3))})
    >>> p.name
    's.h5'
    """
    path = Path(path)
    vectors, maps, attrs, valid = vectors or {}, maps or {}, attrs or {}, valid or {}
    columns = _meta_columns(meta)
    n = len(columns["sample_id"])
    tmp = _tmp_path(path)
    try:
        with h5py.File(tmp, "w") as h5:
            _write_root_attrs(h5, run)
            _write_columns(h5.create_group("meta"), columns, STRING_FIELDS)
            if source_meta is not None:
                _write_source_meta(h5, _source_meta_columns(source_meta, n))
            lm = np.full((n, 68, 2), np.nan, np.float32) if landmarks is None else landmarks
            h5.create_dataset("landmarks", data=np.asarray(lm, np.float32))
            for kind, arrays in (("vector", vectors), ("map", maps)):
                group = h5.require_group(GROUPS[kind])
                for name, array in arrays.items():
                    array = np.asarray(array, np.float32) if kind == "vector" else np.asarray(array)
                    if array.shape[0] != n:
                        raise StoreError(f"{kind} {name!r} has {array.shape[0]} rows for {n} samples")
                    ds = _create(group, name, array.shape, array.dtype, kind)
                    if n:
                        ds[...] = array
                    _set_attrs(ds, attrs.get(name, {}))
            vgroup = h5.require_group("valid")
            for name in set(vectors) | set(maps):
                vgroup.create_dataset(name, data=np.asarray(valid.get(name, np.ones(n, bool)), bool))
            _write_columns(h5.create_group("errors"), _error_columns(errors), ERROR_FIELDS[:2] + ERROR_FIELDS[3:])
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        failure = _write_failed(path, exc)
        if failure is exc:
            raise
        raise failure from exc
    return path


def _read_columns(group, fields) -> dict:
    out = {}
    for f in fields:
        ds = group[f]
        out[f] = ds.asstr()[:].tolist() if h5py.check_string_dtype(ds.dtype) else ds[:].tolist()
    return out


def _feature_layout(shards) -> dict:
    """``{(kind, name): (shape_tail, dtype, attrs)}`` over all shards (first one wins)."""
    layout = {}
    for shard in shards:
        with h5py.File(shard, "r") as h5:
            for kind, gname in GROUPS.items():
                for name, ds in h5.get(gname, {}).items():
                    if (kind, name) not in layout:
                        layout[(kind, name)] = (ds.shape[1:], ds.dtype, dict(ds.attrs))
    return layout


def _fill_value(dtype):
    return np.nan if np.issubdtype(dtype, np.floating) else 0


def _same_chunk_layout(src, dst) -> bool:
    """True when a chunk of ``src`` is byte for byte a valid chunk of ``dst``."""
    return (src.chunks is not None and src.chunks == dst.chunks and src.chunks[0] == 1
            and src.dtype == dst.dtype and src.compression == dst.compression
            and src.compression_opts == dst.compression_opts and src.shuffle == dst.shuffle)


def _copy_map_chunks(src, dst, rows, positions):
    """Copy one-sample chunks without decompressing and recompressing them."""
    zeros = (0,) * (src.ndim - 1)
    for row, pos in zip(rows, positions):
        mask, chunk = src.id.read_direct_chunk((int(row),) + zeros)
        dst.id.write_direct_chunk((int(pos),) + zeros, chunk, mask)


def _copy_feature_rows(out, shards, layout, positions_of):
    """Copy every feature of every shard into ``out`` at the rows ``positions_of(shard)``.

    Maps (one sample per chunk in shards and stores alike) are copied as compressed
    chunks: the merge costs disk bandwidth, not a second gzip pass.
    """
    for shard in shards:
        with h5py.File(shard, "r") as h5:
            pos = positions_of(h5)
            if len(pos) == 0:
                continue
            order = np.argsort(pos)
            pos_sorted = pos[order]
            contiguous = bool(np.all(np.diff(pos_sorted) == 1))
            for (kind, name) in layout:
                src = h5.get(f"{GROUPS[kind]}/{name}")
                if src is None:
                    continue
                valid = h5[f"valid/{name}"][...][order]
                dst, vdst = out[f"{GROUPS[kind]}/{name}"], out[f"valid/{name}"]
                if kind == "map" and _same_chunk_layout(src, dst):
                    _copy_map_chunks(src, dst, order, pos_sorted)
                    vdst[pos_sorted] = valid
                    continue
                data = src[...][order]
                if contiguous:
                    sl = slice(int(pos_sorted[0]), int(pos_sorted[-1]) + 1)
                    dst[sl], vdst[sl] = data, valid
                else:
                    dst[pos_sorted], vdst[pos_sorted] = data, valid


def _create_feature_datasets(out, layout, n):
    for (kind, name), (tail, dtype, attrs) in layout.items():
        # rows that no shard fills read as NaN (or 0) and stay marked invalid
        ds = _create(out.require_group(GROUPS[kind]), name, (n,) + tuple(tail), dtype, kind,
                     fillvalue=_fill_value(dtype))
        for key, value in attrs.items():
            ds.attrs[key] = value
        if name not in out.require_group("valid"):
            out["valid"].create_dataset(name, shape=(n,), dtype=bool, fillvalue=False)


def merge_shards(shards, out_path, run=None) -> int:
    """Merge shard files (in the given order) into a new store at ``out_path``.

    Streams one shard at a time, so memory holds one shard, never the whole data set.
    Returns the number of samples.
    """
    shards = [Path(s) for s in shards]
    out_path = Path(out_path)
    meta = {f: [] for f in STRING_FIELDS + INT_FIELDS}
    errors = {f: [] for f in ERROR_FIELDS}
    landmarks, counts, source_meta = [], [], []
    for shard in shards:
        with h5py.File(shard, "r") as h5:
            fields = [f for f in STRING_FIELDS + INT_FIELDS
                      if f in h5["meta"] or f not in OPTIONAL_INT_FIELDS]
            cols = fill_optional_fields(_read_columns(h5["meta"], fields), fields)
            n_shard = len(cols["sample_id"])
            source_meta.append({f: h5[f"source_meta/{f}"][...] if f"source_meta/{f}" in h5
                                else np.full(n_shard, np.nan) for f in SOURCE_META_FIELDS}
                               if "source_meta" in h5 else None)
            for f in meta:
                meta[f] += cols[f]
            ecols = _read_columns(h5["errors"], ERROR_FIELDS)
            for f in errors:
                errors[f] += ecols[f]
            landmarks.append(h5["landmarks"][...])
            counts.append(len(cols["sample_id"]))
    n = int(sum(counts))
    if len(set(meta["sample_id"])) != n:
        raise StoreError(f"duplicate sample ids while merging into {out_path}")
    layout = _feature_layout(shards)
    starts = dict(zip(map(str, shards), np.cumsum([0] + counts[:-1])))
    tmp = _tmp_path(out_path)
    try:
        with h5py.File(tmp, "w") as out:
            _write_root_attrs(out, run)
            _write_columns(out.create_group("meta"), meta, STRING_FIELDS)
            if any(s is not None for s in source_meta):  # shards without it give NaN rows
                _write_source_meta(out, {f: np.concatenate(
                    [s[f] if s is not None else np.full(c, np.nan) for s, c in zip(source_meta, counts)])
                    for f in SOURCE_META_FIELDS})
            out.create_dataset("landmarks", data=np.concatenate(landmarks).astype(np.float32)
                               if landmarks else np.zeros((0, 68, 2), np.float32))
            _write_columns(out.create_group("errors"), errors, ("source_path", "video_id", "cause", "message"))
            _create_feature_datasets(out, layout, n)

            def positions_of(h5):
                start = starts[str(Path(h5.filename))]
                return np.arange(start, start + h5["meta/sample_id"].shape[0])

            _copy_feature_rows(out, shards, layout, positions_of)
        os.replace(tmp, out_path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        failure = _write_failed(out_path, exc)
        if failure is exc:
            raise
        raise failure from exc
    return n


def add_features(store_path, shards, run_update=None) -> list[str]:
    """Add the features found in ``shards`` to the existing store ``store_path``.

    Rows are matched by sample id; store samples that no shard covers get NaN and
    ``valid`` False. Features already in the store are left untouched (the caller decides
    what to recompute). The store is copied byte for byte, extended, and swapped in
    atomically. Returns the names of the features added.
    """
    store_path = Path(store_path)
    shards = [Path(s) for s in shards]
    with h5py.File(store_path, "r") as h5:
        ids = h5["meta/sample_id"].asstr()[:]
        existing = {(k, name) for k, g in GROUPS.items() for name in h5.get(g, {})}
        run = h5.attrs.get("run", "{}")
    position = pd.Series(np.arange(len(ids)), index=pd.Index(ids))
    layout = {k: v for k, v in _feature_layout(shards).items() if k not in existing}
    if not layout:
        return []
    tmp = _tmp_path(store_path)
    try:
        shutil.copyfile(store_path, tmp)
        with h5py.File(tmp, "a") as out:
            _create_feature_datasets(out, layout, len(ids))

            def positions_of(h5):
                shard_ids = h5["meta/sample_id"].asstr()[:]
                known = position.reindex(shard_ids)
                if known.isna().any():
                    missing = list(shard_ids[known.isna().to_numpy()][:3])
                    raise StoreError(f"{store_path}: samples {missing} of {h5.filename} are not in "
                                     "the store; extract into a new store instead")
                return known.to_numpy().astype(np.int64)

            _copy_feature_rows(out, shards, layout, positions_of)
            if run_update:
                import json
                merged = {**json.loads(run), **run_update}
                out.attrs["run"] = dumps(merged)
        os.replace(tmp, store_path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        failure = _write_failed(store_path, exc)
        if failure is exc:
            raise
        raise failure from exc
    return sorted(name for _, name in layout)
