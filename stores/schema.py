"""The on-disk layout of a CLMF feature store (HDF5), in one place.

::

    /                       attrs: schema_version, code_version, created, run (JSON)
    /meta/<field>           N      one dataset per sample field (SAMPLE_FIELDS)
    /landmarks              N x 68 x 2 float32, crop pixel coordinates, NaN if unknown
    /features/<name>        N x D float32 vectors      attrs: extractor, version,
    /maps/<name>            N x H x W x C maps                params (JSON), code_version,
    /valid/<name>           N bool: False where the feature could not be computed
    /errors/<field>         M      one row per failed source or frame (ERROR_FIELDS)

Readers refuse a file whose ``schema_version`` differs from :data:`SCHEMA_VERSION`.
"""
from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path

SCHEMA_VERSION = 1
STRING_FIELDS = ("sample_id", "dataset", "split", "method", "video_id", "source_path")
INT_FIELDS = ("label", "frame_index", "requested_frame_index", "face_index")
#: Sample fields that stores written before them lack: readers and writers fill them in
#: (the requested frame is the frame itself, the face is the largest).
OPTIONAL_INT_FIELDS = ("requested_frame_index", "face_index")


def fill_optional_fields(columns: dict, present) -> dict:
    """``columns`` with the :data:`OPTIONAL_INT_FIELDS` that are not in ``present`` filled in
    from ``frame_index`` (requested) and 0 (face)."""
    n = len(columns["frame_index"])
    if "requested_frame_index" not in present:
        columns["requested_frame_index"] = list(columns["frame_index"])
    if "face_index" not in present:
        columns["face_index"] = [0] * n
    return columns
ERROR_FIELDS = ("source_path", "video_id", "frame_index", "cause", "message")
GROUPS = {"vector": "features", "map": "maps"}


def code_version() -> str:
    """The installed CLMF version (recorded with every feature)."""
    try:
        return metadata.version("clmf")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def last_store_file() -> Path:
    """Where ``pipelines.extract`` records its last store, for ``fusion.train``'s default.

    ``~/.cache/clmf/last_store``; the environment variable ``CLMF_LAST_STORE`` moves it.
    """
    return Path(os.environ.get("CLMF_LAST_STORE", Path.home() / ".cache" / "clmf" / "last_store"))


def dumps(obj) -> str:
    """Canonical JSON for attributes, so equal parameters compare equal as strings."""
    return json.dumps(obj, sort_keys=True, default=str)


class StoreError(Exception):
    """A store that cannot be opened or used: wrong version, missing feature, bad file."""
