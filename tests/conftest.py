"""Shared fixtures: real test data from ../shared/data, skipped with a reason when absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$CLMF_SHARED_DATA`` or ``<repo>/../shared/data``."""
    return Path(os.environ.get("CLMF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real test data not found at {path} (set CLMF_SHARED_DATA to its folder)")
    return path


@pytest.fixture(scope="session")
def ffpp_root(shared_data) -> Path:
    path = shared_data / "ffpp"
    if not (path / "original_sequences").is_dir():
        pytest.skip(f"FaceForensics++ sample not found at {path}")
    return path


@pytest.fixture(scope="session")
def real_faces_dir(shared_data) -> Path:
    path = shared_data / "faces" / "real"
    if not path.is_dir():
        pytest.skip(f"real face photos not found at {path}")
    return path


@pytest.fixture(scope="session")
def real_face_batch():
    """8 real aligned 256 px faces with landmarks (``tests.face_fixtures.load_aligned_faces``):
    ../shared/data/faces/real when present, else the scikit-image astronaut and its variants."""
    from tests.face_fixtures import load_aligned_faces
    return load_aligned_faces(8)
