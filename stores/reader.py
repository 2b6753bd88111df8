"""Reading stores: :func:`open_store` and the :class:`FeatureStore` query API."""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from stores.schema import (ERROR_FIELDS, GROUPS, INT_FIELDS, OPTIONAL_INT_FIELDS, SCHEMA_VERSION,
                           SOURCE_META_FIELDS, STRING_FIELDS, StoreError, fill_optional_fields)


#: Separates the feature from the column in the column names of ``read(as_frame=True)``
#: (``lbp__lbp_P8R1_code0``), as in scikit-learn's ``ColumnTransformer`` output names.
COLUMN_SEP = "__"
#: The ``DataFrame.attrs`` key of ``read(as_frame=True)`` that holds, per stacked feature (a
#: trained model, such as ``cascade``), what it was trained and selected on.
STACKED_ATTR = "clmf_stacked"


def _damaged(ds, exc: Exception) -> StoreError:
    reason = (str(exc).splitlines() or [type(exc).__name__])[0]
    return StoreError(f"{ds.file.filename}: dataset {ds.name} cannot be read ({reason}); "
                      "the file is damaged: re-extract it")


def _read_rows(ds, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` (sorted, unique) of ``ds``, reading contiguous runs as slices.

    A damaged chunk raises StoreError naming the file and the dataset.
    """
    try:
        if len(idx) == ds.shape[0]:
            return ds[...]
        if len(idx) == 0:
            return np.zeros((0,) + ds.shape[1:], ds.dtype)
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        parts = [ds[int(run[0]):int(run[-1]) + 1] for run in np.split(idx, breaks)]
        return np.concatenate(parts)
    except (OSError, RuntimeError) as exc:
        raise _damaged(ds, exc) from None


def _read_column(ds) -> np.ndarray:
    """A whole metadata or error column (strings decoded); StoreError when damaged."""
    try:
        return ds.asstr()[:] if h5py.check_string_dtype(ds.dtype) else ds[:]
    except (OSError, RuntimeError, ValueError, UnicodeDecodeError) as exc:
        raise _damaged(ds, exc) from None


class FeatureStore:
    """A CLMF feature store opened for reading.

    Open with :func:`open_store`. Metadata is read once; feature arrays are read on demand
    and only for the selected rows. Use as a context manager or call :meth:`close`.

    Examples
    --------
    >>> store = open_store("ffpp.h5")                                # doctest: +SKIP
    >>> X, y, meta = store.read(features=["lbp", "dct"], split="test")  # doctest: +SKIP
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(f"{self.path}: no such store file")
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise StoreError(f"{self.path}: not a readable HDF5 store ({exc}); it may be "
                             "truncated or still being written") from None
        version = self._h5.attrs.get("schema_version")
        if version is None or int(version) != SCHEMA_VERSION:
            self._h5.close()
            raise StoreError(f"{self.path}: store schema version {version} is not supported by this "
                             f"CLMF (expects {SCHEMA_VERSION}); re-extract it with "
                             "`python -m pipelines.extract` from this version")
        try:
            self._check_layout()
        except StoreError:
            self._h5.close()
            raise

    def _check_layout(self):
        """Every dataset of the schema is there and has one row per sample (shapes only)."""
        def dataset(name):
            obj = self._h5.get(name)
            if not isinstance(obj, h5py.Dataset):
                raise StoreError(f"{self.path}: dataset /{name} is missing; the file is damaged "
                                 "or not a CLMF store: re-extract it")
            return obj

        n = dataset("meta/sample_id").shape[0]
        required = [f"meta/{f}" for f in STRING_FIELDS + INT_FIELDS
                    if f not in OPTIONAL_INT_FIELDS] + ["landmarks"]
        named = [f"{GROUPS[k]}/{name}" for k in GROUPS for name in self._h5.get(GROUPS[k], {})]
        named += [f"valid/{name.partition('/')[2]}" for name in named]
        for name in required + named:
            rows = dataset(name).shape[0] if dataset(name).shape else 0
            if rows != n:
                raise StoreError(f"{self.path}: dataset /{name} has {rows} rows for {n} samples; "
                                 "the file is damaged: re-extract it")
        counts = {f: dataset(f"errors/{f}").shape[0] for f in ERROR_FIELDS}
        if len(set(counts.values())) > 1:
            raise StoreError(f"{self.path}: the /errors columns have different lengths {counts}; "
                             "the file is damaged: re-extract it")

    def check(self) -> int:
        """Read every dataset in full, chunk by chunk; returns how many were read.

        Raises StoreError naming the first dataset that cannot be read (a damaged chunk).
        Row counts are checked when the store opens.
        """
        names = []
        self._h5.visititems(lambda name, obj: names.append(name)
                            if isinstance(obj, h5py.Dataset) else None)
        for name in names:
            ds = self._h5[name]
            rows = ds.shape[0] if ds.shape else 0
            step = ds.chunks[0] if ds.chunks else max(rows, 1)
            for start in range(0, rows, step):
                _read_rows(ds, np.arange(start, min(start + step, rows)))
        return len(names)

    # -- metadata -----------------------------------------------------------------------
    @cached_property
    def meta(self) -> pd.DataFrame:
        """One row per sample: the fields of ``pipelines.samples.SAMPLE_FIELDS``."""
        group = self._h5["meta"]
        cols = {f: _read_column(group[f])
                for f in STRING_FIELDS + INT_FIELDS if f in group or f not in OPTIONAL_INT_FIELDS}
        cols = fill_optional_fields(cols, cols)
        frame = pd.DataFrame(cols)
        return frame[["sample_id", "dataset", "split", "label", "method", "video_id",
                      "frame_index", "source_path", "requested_frame_index", "face_index",
                      "identity"]]

    @cached_property
    def source_meta(self) -> pd.DataFrame | None:
        """Per-sample source-file facts (``SOURCE_META_FIELDS``, NaN where unknown), in the row
        order of :attr:`meta`; None for a store extracted before they were recorded."""
        group = self._h5.get("source_meta")
        if group is None:
            return None
        return pd.DataFrame({f: group[f][:] if f in group else np.full(len(self), np.nan)
                             for f in SOURCE_META_FIELDS})

    @property
    def run(self) -> dict:
        """How the store was made (data set, root, frames, size, ...)."""
        return json.loads(self._h5.attrs.get("run", "{}"))

    @property
    def features(self) -> list[str]:
        """Names of the vector features."""
        return sorted(self._h5.get("features", {}))

    @property
    def maps(self) -> list[str]:
        """Names of the map features (crops, masks, LBP/DCT maps...)."""
        return sorted(self._h5.get("maps", {}))

    def __len__(self) -> int:
        return int(self._h5["meta/sample_id"].shape[0])

    @property
    def errors(self) -> pd.DataFrame:
        """The sources or frames that failed, with their cause."""
        group = self._h5["errors"]
        cols = {f: _read_column(group[f]) for f in ERROR_FIELDS}
        return pd.DataFrame(cols, columns=list(ERROR_FIELDS))

    def _dataset(self, name: str, kind: str):
        group = self._h5.get(GROUPS[kind], {})
        if name not in group:
            other = "map" if kind == "vector" else "vector"
            hint = (f"; it is a {other}: use "
                    f"{'read_map' if other == 'map' else 'read'}()") if name in self._h5.get(GROUPS[other], {}) else ""
            names = self.features if kind == "vector" else self.maps
            raise StoreError(f"{self.path}: no {kind} feature {name!r}{hint}; "
                             f"it has {', '.join(names) or 'none'}")
        return group[name]

    def attrs(self, name: str, kind: str | None = None) -> dict:
        """Extractor, version, parameters, columns and code version of feature ``name``.

        ``kind`` ("vector" or "map") picks between a vector and a map of the same name;
        by default the vector when there is one.
        """
        kind = kind or ("vector" if name in self.features else "map")
        a = self._dataset(name, kind).attrs
        standard = ("extractor", "version", "params", "columns", "code_version")
        extra = {k: str(v) for k, v in a.items() if k not in standard}
        return {**extra, "extractor": str(a.get("extractor", "")), "version": str(a.get("version", "")),
                "params": json.loads(a.get("params", "{}")),
                "columns": json.loads(a.get("columns", "[]")),
                "code_version": str(a.get("code_version", "")), "kind": kind,
                "shape": tuple(self._dataset(name, kind).shape[1:])}

    def select(self, split=None, method=None, label=None) -> np.ndarray:
        """Row indices (sorted) of the samples matching every given filter.

        Each filter is a value or a list of values; None means "any".
        """
        meta = self.meta
        keep = np.ones(len(meta), bool)
        for column, value in (("split", split), ("method", method), ("label", label)):
            if value is None:
                continue
            values = [value] if isinstance(value, (str, int, np.integer)) else list(value)
            keep &= meta[column].isin(values).to_numpy()
        return np.flatnonzero(keep)

    def valid(self, name: str, index=None) -> np.ndarray:
        """N bool: rows where feature ``name`` was computed."""
        ds = self._h5["valid"][name]
        return ds[...] if index is None else _read_rows(ds, np.asarray(index))

    def nonfinite(self) -> dict:
        """Rows holding a NaN or infinite value, per float feature (vector or map) that has any.

        Returns ``{name: {"kind", "rows", "marked_valid"}}``: ``rows`` samples have such a value
        somewhere in feature ``name``; ``marked_valid`` of them are flagged ``valid`` (a value
        the extractor claims to have computed: a damaged store or an extractor bug). Rows
        marked invalid hold NaN by design (not computed). Reads every feature in full.
        """
        out = {}
        for kind in ("vector", "map"):
            for name in (self.features if kind == "vector" else self.maps):
                ds = self._dataset(name, kind)
                if not np.issubdtype(ds.dtype, np.floating) or not ds.shape or not ds.shape[0]:
                    continue
                rows, step = ds.shape[0], ds.chunks[0] if ds.chunks else ds.shape[0]
                bad = np.zeros(rows, bool)
                for start in range(0, rows, step):
                    x = _read_rows(ds, np.arange(start, min(start + step, rows)))
                    bad[start:start + len(x)] = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
                if bad.any():
                    out[name] = {"kind": kind, "rows": int(bad.sum()),
                                 "marked_valid": int((bad & self.valid(name)).sum())}
        return out

    def column_names(self, features) -> list[str]:
        """Names of the columns :meth:`read` returns: ``<feature>__<column>``.

        ``<column>`` is the extractor's column name where the store records one per column
        (``lbp__lbp_P8R1_code0``), else the column's index (``lbp__0``). The feature is
        everything before the first :data:`COLUMN_SEP`; ``fusion.sklearn`` splits on it.
        """
        if isinstance(features, str):
            features = [features]
        out = []
        for name in features:
            width = self._dataset(name, "vector").shape[1]
            columns = [str(c) for c in self.attrs(name, "vector")["columns"]]
            if len(columns) != width or len(set(columns)) != width:
                columns = [str(i) for i in range(width)]
            out += [f"{name}{COLUMN_SEP}{c}" for c in columns]
        return out

    def read(self, features, split=None, method=None, label=None, as_frame: bool = False):
        """Concatenated vector features of the selected samples.

        Parameters
        ----------
        features : list of str
            Vector feature names, concatenated in this order.
        split, method, label : value or list, optional
            Filters on the sample metadata.
        as_frame : bool
            Return ``X`` as a DataFrame whose columns are :meth:`column_names` (the feature,
            ``__``, the column), the form ``fusion.sklearn.FusionClassifier`` reads its
            feature blocks from. The values are the same float32 array. Features that are
            trained models (``cascade``) put what they were trained on in
            ``X.attrs[STACKED_ATTR]``, for the classifier's leakage guard.

        Returns
        -------
        X : ndarray, N x sum(D), float32 (a DataFrame with ``as_frame``)
            Rows where a feature is invalid hold NaN in its columns.
        y : ndarray, N, int64
            0 real, 1 fake.
        meta : DataFrame
            The selected rows of :attr:`meta` (index reset).

        Examples
        --------
        >>> X, y, meta = store.read(["lbp", "dct"], split="train", as_frame=True)  # doctest: +SKIP
        >>> X.columns[:2].tolist()                                                # doctest: +SKIP
        ['lbp__lbp_P8R1_code0', 'lbp__lbp_P8R1_code1']
        """
        if isinstance(features, str):
            features = [features]
        if not features:
            raise StoreError("read() needs at least one feature name")
        datasets = [self._dataset(name, "vector") for name in features]
        idx = self.select(split, method, label)
        X = np.concatenate([_read_rows(ds, idx).astype(np.float32, copy=False)
                            for ds in datasets], axis=1) if len(idx) else \
            np.zeros((0, sum(ds.shape[1] for ds in datasets)), np.float32)
        meta = self.meta.iloc[idx].reset_index(drop=True)
        if as_frame:
            X = pd.DataFrame(X, columns=self.column_names(features), copy=False)
            stacked = {name: json.loads(a["trained_on"]) for name, a in
                       ((name, self.attrs(name, "vector")) for name in features) if a.get("trained_on")}
            if stacked:  # what the leakage guard of fusion.sklearn.FusionClassifier checks
                X.attrs[STACKED_ATTR] = stacked
        return X, meta["label"].to_numpy(np.int64), meta

    def read_map(self, name: str, split=None, method=None, label=None, index=None):
        """Maps of the selected samples: ``(N x H x W x C array, meta)``.

        ``index`` (sorted row indices) overrides the filters; it lets training code read
        maps in mini-batches without holding all of them in memory.
        """
        ds = self._dataset(name, "map")
        idx = np.asarray(index, np.int64) if index is not None else self.select(split, method, label)
        return _read_rows(ds, idx), self.meta.iloc[idx].reset_index(drop=True)

    def landmarks(self, split=None, method=None, label=None) -> np.ndarray:
        """N x 68 x 2 landmarks in crop coordinates (NaN where unknown)."""
        return _read_rows(self._h5["landmarks"], self.select(split, method, label))

    def summary(self) -> dict:
        """Counts by split, label and method; features with shapes; error causes."""
        meta = self.meta
        errors = self.errors
        return {
            "path": str(self.path), "samples": len(meta),
            "by_split": meta.groupby("split").size().to_dict(),
            "by_label": {("fake" if k else "real"): int(v)
                         for k, v in meta.groupby("label").size().items()},
            "by_method": meta.groupby("method").size().to_dict(),
            "videos": int(meta["video_id"].nunique()),
            "features": {n: {"shape": a["shape"], "valid": int(self.valid(n).sum()),
                             "version": a["version"]}
                         for n, a in ((n, self.attrs(n)) for n in self.features)},
            "maps": {n: {"shape": self.attrs(n, "map")["shape"], "valid": int(self.valid(n).sum())}
                     for n in self.maps},
            "errors": errors.groupby("cause").size().to_dict() if len(errors) else {},
            "run": self.run,
        }

    def close(self):
        self._h5.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"FeatureStore({str(self.path)!r}, samples={len(self)}, "
                f"features={self.features}, maps={self.maps})")


def open_store(path) -> FeatureStore:
    """Open the store at ``path`` for reading (see :class:`FeatureStore`)."""
    return FeatureStore(path)
