"""What the ingest stage produces: sources to read and the per-sample record.

A :class:`Source` is one video or image of a data set, before any decoding. Data set
indexers (``pipelines.datasets``) return lists of sources; the extraction pipeline turns
each source into one sample per sampled frame. Every field is a plain string or number so
that sources pickle cheaply to Dask workers.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

SPLITS = ("train", "val", "test")
REAL, FAKE = 0, 1
REAL_METHOD = "real"

#: The per-sample metadata columns, in store order. ``pipelines.extract`` writes them and
#: ``stores.FeatureStore.read`` returns them as a DataFrame. ``frame_index`` is the frame
#: the crop comes from; ``requested_frame_index`` the sampled frame it stands for (they
#: differ when a neighbouring frame replaced one without a face); ``face_index`` ranks the
#: faces of one frame by size (0 unless ``--faces all``); ``identity`` is what the cluster
#: bootstrap resamples whole (:attr:`Source.identity`).
SAMPLE_FIELDS = ("sample_id", "dataset", "split", "label", "method", "video_id",
                 "frame_index", "source_path", "requested_frame_index", "face_index", "identity")


@dataclass(frozen=True)
class Source:
    """One video or image of a data set.

    Parameters
    ----------
    path : str
        Absolute path of the video or image file. For ``kind="demo"`` a symbolic name
        (``skimage:astronaut``) that ``pipelines.demo`` renders.
    dataset : str
        Data set name (``ff++``, ``celebdf``, ``dfdc``, ``folder``, ``demo``, ...).
    split : str
        ``train``, ``val`` or ``test``.
    label : int
        0 real, 1 fake.
    method : str
        Manipulation method; ``"real"`` for real sources.
    video_id : str
        Identifier that includes the method (``Deepfakes/519_515``, ``real/youtube/519``)
        so that video-level aggregation never merges folders of different methods.
    kind : str
        ``video``, ``image`` or ``demo``.
    mask_path : str or None
        Mask video or mask image aligned frame by frame with ``path``.
    real_path : str or None
        The real source a fake was made from, when known (FF++ target videos).
    params : tuple
        Extra, hashable parameters (the demo's edit recipe and seed).
    identity : str or None
        The person (or source photo) the sample shows, where the data set says it: the
        target id for FF++, the Celeb-DF identity, the source photo of an editbench image.
        None: the video (``video_id``). Confidence intervals resample whole identities.
    """

    path: str
    dataset: str
    split: str
    label: int
    method: str
    video_id: str
    kind: str = "video"
    mask_path: str | None = None
    real_path: str | None = None
    params: tuple = field(default=())
    identity: str | None = None

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r} for {self.path}")
        if self.label not in (REAL, FAKE):
            raise ValueError(f"label must be 0 (real) or 1 (fake), got {self.label!r} for {self.path}")
        if self.kind not in ("video", "image", "demo"):
            raise ValueError(f"kind must be video, image or demo, got {self.kind!r} for {self.path}")

    def sample_id(self, frame_index: int, face_index: int | None = None) -> str:
        """Store-wide unique id of this source's frame ``frame_index`` (and, when given,
        its face ``face_index``: ``...:000012:f1``)."""
        face = "" if face_index is None else f":f{int(face_index)}"
        return f"{self.dataset}:{self.video_id}:{int(frame_index):06d}{face}"

    def sample_record(self, frame_index: int, requested_frame_index: int | None = None,
                      face_index: int | None = None) -> dict:
        """The metadata row (``SAMPLE_FIELDS``) of frame ``frame_index``, which stands for
        the sampled frame ``requested_frame_index`` (default: itself); ``face_index`` is
        given when every face of a frame is a sample (it then enters the id)."""
        requested = frame_index if requested_frame_index is None else requested_frame_index
        return {"sample_id": self.sample_id(frame_index, face_index), "dataset": self.dataset,
                "split": self.split, "label": int(self.label), "method": self.method,
                "video_id": self.video_id, "frame_index": int(frame_index),
                "source_path": self.path, "requested_frame_index": int(requested),
                "face_index": int(face_index or 0),
                "identity": self.identity or self.video_id}

    def to_dict(self) -> dict:
        return asdict(self)
