"""The bottom error module: every failure a command reports has one home and one exit status."""
from base.cli import run_cli
from base.errors import CommandError, DamagedFileError
from stores.schema import StoreError, StoreWriteError


def test_file_failures_are_command_errors():
    """run_cli reports a CommandError with status 1 without importing the layers above it:
    the store errors are CommandErrors, and still OSErrors where they were."""
    assert issubclass(DamagedFileError, CommandError)
    assert issubclass(StoreError, CommandError)
    assert issubclass(StoreWriteError, OSError)

    def fail():
        raise StoreWriteError("s.h5: disk full")
    assert run_cli("python -m demo", fail) == 1
