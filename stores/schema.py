"""The on-disk layout of a CLMF feature store (HDF5), in one place.

::

    /                       attrs: schema_version, code_version, created, run (JSON)
    /meta/<field>           N      one dataset per sample field (SAMPLE_FIELDS)
    /landmarks              N x 68 x 2 float32, crop pixel coordinates, NaN if unknown
    /features/<name>        N x D float32 vectors      attrs: extractor, version,
    /maps/<name>            N x H x W x C maps                params (JSON), code_version,
    /valid/<name>           N bool: False where the feature could not be computed
    /errors/<field>         M      one row per failed source or frame (ERROR_FIELDS)
    /source_meta/<field>    N float64: what the source file was (SOURCE_META_FIELDS), NaN
                            where unknown; optional

Readers refuse a file whose ``schema_version`` differs from :data:`SCHEMA_VERSION`.
``/meta/identity`` (the person or source photo of a sample, the unit of the cluster
bootstrap) is an optional addition to version 1 like the other :data:`OPTIONAL_FIELDS`:
stores written before it read ``identity = video_id``.
``/source_meta`` is an optional addition to version 1: stores extracted before it existed
open as before, ``FeatureStore.source_meta`` is then None, and ``fusion.audit`` says that
the store has to be re-extracted to be audited.
"""
from __future__ import annotations

import json
from importlib import metadata

from base.errors import CommandError

SCHEMA_VERSION = 1
STRING_FIELDS = ("sample_id", "dataset", "split", "method", "video_id", "source_path", "identity")
INT_FIELDS = ("label", "frame_index", "requested_frame_index", "face_index")
#: Sample fields that stores written before them lack: readers and writers fill them in
#: (the requested frame is the frame itself, the face is the largest, the identity is the
#: video).
OPTIONAL_FIELDS = ("requested_frame_index", "face_index", "identity")
OPTIONAL_INT_FIELDS = OPTIONAL_FIELDS  # the name these had while all of them were integers


def fill_optional_fields(columns: dict, present) -> dict:
    """``columns`` with the :data:`OPTIONAL_FIELDS` that are not in ``present`` filled in
    from ``frame_index`` (requested), 0 (face) and ``video_id`` (identity)."""
    n = len(columns["frame_index"])
    if "requested_frame_index" not in present:
        columns["requested_frame_index"] = list(columns["frame_index"])
    if "face_index" not in present:
        columns["face_index"] = [0] * n
    if "identity" not in present:
        columns["identity"] = list(columns["video_id"])
    return columns


ERROR_FIELDS = ("source_path", "video_id", "frame_index", "cause", "message")
GROUPS = {"vector": "features", "map": "maps"}
#: Per-sample facts about the source file and the face, recorded at extraction for the
#: confound audit (``fusion.audit``): a detector should not be able to read its label from
#: them. Pixels and bytes of the source file, the JPEG quality estimated from the
#: luminance quantisation table (IJG scaling) and that table's mean, 1 for JPEG files, the
#: detected face box in source pixels, and the video bitrate in bit/s.
SOURCE_META_FIELDS = ("image_width", "image_height", "file_bytes", "is_jpeg", "jpeg_quality",
                      "jpeg_qtable_mean", "face_width", "face_height", "video_bitrate")


def code_version() -> str:
    """The installed CLMF version (recorded with every feature)."""
    try:
        return metadata.version("clmf")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def dumps(obj) -> str:
    """Canonical JSON for attributes, so equal parameters compare equal as strings."""
    return json.dumps(obj, sort_keys=True, default=str)


class StoreError(CommandError):
    """A store that cannot be opened or used: wrong version, missing feature, bad file.

    A :class:`~base.errors.CommandError`: a command prints it as one line and exits 1."""


class StoreWriteError(StoreError, OSError):
    """Writing a store or shard failed (disk full, quota, I/O error); no half file is left."""
