"""The errors every layer raises, and that every command turns into one line.

* :class:`SampleError` (with its :data:`CAUSES`): a source that cannot become a sample;
  recorded in the store's errors table, never fatal to a run.
* :class:`UsageError`: a wrong flag or argument; exit 2.
* :class:`CommandError`: a file the run needs that cannot be used; exit 1. Its subclasses
  are :class:`DamagedFileError` here and ``stores.schema.StoreError``.

This module imports nothing, so that any module may import it (like scikit-learn's
``sklearn/exceptions.py``).
"""
from __future__ import annotations

#: Causes that the summary counts. Keep the list short and stable: users filter on it.
#: ``unreadable_file``: the file cannot be opened at all (permission, symbolic link loop);
#: ``wrong_format``: its content is another kind of file than its extension says.
CAUSES = ("corrupt_video", "unreadable_image", "unreadable_file", "wrong_format", "no_face",
          "face_too_small", "missing_mask", "extractor_failed")


class SampleError(Exception):
    """A source or one of its frames that cannot become a sample.

    Parameters
    ----------
    cause : str
        One of :data:`CAUSES`.
    path : str
        The file the failure is about.
    message : str
        One line a person can act on.
    frame_index : int
        The frame concerned, -1 for the whole source.
    """

    def __init__(self, cause: str, path: str, message: str, frame_index: int = -1):
        if cause not in CAUSES:
            raise ValueError(f"unknown failure cause {cause!r}; expected one of {CAUSES}")
        super().__init__(f"{path}: {cause}: {message}")
        self.cause = cause
        self.path = str(path)
        self.message = message
        self.frame_index = int(frame_index)


class UsageError(Exception):
    """A wrong flag or argument: the CLI prints it as one line and exits 2 before any work."""


class CommandError(Exception):
    """A failure a command reports as one line and exit status 1, before or during its work:
    a file it needs exists but cannot be used. :func:`base.cli.run_cli` catches it."""


class DamagedFileError(CommandError):
    """A file the run needs (a model's weights, its config) that exists but cannot be used.

    The message names the file and what is wrong with it; CLIs print it as one line.
    """
