import pytest


@pytest.fixture(scope="module")
def faces(real_face_batch):
    """Real aligned faces with landmarks (see tests/conftest.py)."""
    return real_face_batch
