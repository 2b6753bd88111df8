"""Output folders and files: one run per folder, nothing an earlier run wrote replaced unasked.

Every command that writes a run claims its ``--out`` with :func:`claim_output_dir` (a folder)
or :func:`claim_output_file` (one file) before any work:

* a folder that holds files is refused unless ``--overwrite`` (:func:`add_overwrite_flag`)
  is given; then the old files are moved aside, deleted when the run succeeds and put back
  when it fails;
* the folder is locked (:func:`take_lock`, the file :data:`RUN_LOCK`) so that two runs
  cannot write it at once; a killed run's lock is taken over.

Refusals are :class:`~base.errors.UsageError` s: the command prints one line and exits 2.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from pathlib import Path

from base.errors import UsageError

#: The lock file a run holds in its output folder while it writes (removed when it ends).
RUN_LOCK = ".clmf-run.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def _read_lock(lock: Path) -> dict | None:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return None


def take_lock(folder: Path, what: str, name: str = RUN_LOCK, by: str = "another run") -> Path:
    """Claim ``folder`` for this process with the lock file ``folder/name``; returns its path.

    The lock holds pid, host and start time; it is written whole under a temporary name and
    hard-linked into place (which fails when the lock exists), so it is never seen half
    written and two processes never both hold it. A lock of a live process, or of one on
    another host, raises a UsageError naming ``what`` and its owner (``by``: who that is,
    e.g. "another run"); a lock whose pid is gone on this host (a killed run) is stale and
    is taken over.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / name
    host = socket.gethostname()
    mine = folder / f"{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
    mine.write_text(json.dumps({"pid": os.getpid(), "host": host,
                                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
    try:
        for _ in range(3):
            try:
                os.link(mine, lock)
                return lock
            except FileExistsError:
                pass
            owner = _read_lock(lock)
            if owner is None or owner.get("host") != host or _pid_alive(int(owner.get("pid", -1))):
                who = (f"pid {owner.get('pid')} on {owner.get('host')}, started "
                       f"{owner.get('started')}" if owner else "an unreadable lock")
                raise UsageError(f"{what} is in use by {by} ({who}); wait for it "
                                 f"to finish, or delete {lock} if that run is gone")
            # stale: move it aside, and put it back if another run took it over meanwhile
            grave = folder / f"{name}.stale-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(lock, grave)
            except FileNotFoundError:
                continue
            if _read_lock(grave) != owner:
                try:
                    os.link(grave, lock)
                except FileExistsError:
                    pass
            grave.unlink(missing_ok=True)
        raise UsageError(f"{what}: could not take {lock}; another run is starting on it")
    finally:
        mine.unlink(missing_ok=True)


def release_lock(lock: Path) -> None:
    """Remove ``lock`` if this process holds it."""
    owner = _read_lock(lock)
    if owner and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        lock.unlink(missing_ok=True)


def add_overwrite_flag(parser, what: str = "--out") -> None:
    """Add ``--overwrite``: replace what an earlier run wrote in ``what``."""
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace the files an earlier run left in {what} (without it, a "
                             f"{what} that holds files is refused)")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


class OutputClaim:
    """The output folder of one run, held with :func:`claim_output_dir`; a context manager.

    Leaving the ``with`` block removes the lock. On success the replaced files (moved aside
    by ``--overwrite``) are deleted; on an exception they are put back and the new ones
    removed, so a run that fails leaves the folder as it found it.
    """

    def __init__(self, path: Path, lock: Path, created: bool, aside: Path | None):
        self.path, self.lock, self.created, self.aside = path, lock, created, aside

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, exc_type, exc, tb):
        try:
            if self.aside is not None:
                if exc_type is None:
                    shutil.rmtree(self.aside, ignore_errors=True)
                else:
                    for entry in _entries(self.path, keep=(self.aside.name,)):
                        _remove(entry)
                    for entry in self.aside.iterdir():
                        os.rename(entry, self.path / entry.name)
                    self.aside.rmdir()
        finally:
            release_lock(self.lock)
            if self.created:
                try:
                    self.path.rmdir()  # only when the run left it empty
                except OSError:
                    pass
        return False


def _entries(folder: Path, keep=()) -> list:
    """What ``folder`` holds, less the lock files and ``keep``."""
    return sorted((p for p in folder.iterdir()
                   if not p.name.startswith(RUN_LOCK) and p.name not in keep), key=lambda p: p.name)


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()


def claim_output_dir(path, flag: str = "--out", overwrite: bool = False, keep: bool = False,
                     inputs=(), hint: str = "") -> OutputClaim:
    """Claim the output folder ``path`` for one run: ``with claim_output_dir(out, ...):``.

    * ``path`` naming a file is a UsageError (``--out X is a file, not a folder``);
    * the folder is created if needed and locked (:func:`take_lock`): a second run on it
      stops with one line naming the first one's pid; a killed run's lock is taken over;
    * a folder that holds files is refused, naming a few of them, unless ``overwrite``: then
      they are moved aside, deleted when the run succeeds and put back when it fails, so no
      stale file of the earlier run stays beside the new ones. ``keep`` (a resumed run)
      accepts the files as they are. ``hint`` is added to the refusal (", --resume to ...").
    * ``--overwrite`` never clears the current folder or one above it, nor one that holds
      any of ``inputs`` (the run's stores and models).

    Raises
    ------
    UsageError
        One line naming ``flag``, the folder and the cause.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{flag} {out} is a file, not a folder")
    created = not out.exists()
    lock = take_lock(out, f"{flag} {out}")
    try:
        held = _entries(out)
        # we hold the lock, so a folder of replaced files is a killed --overwrite run's
        replaced = sorted(out.glob(f"{RUN_LOCK}.replaced-*"))
        aside = None
        if (held or replaced) and not keep:
            if not overwrite:
                names = ", ".join(p.name for p in held[:3]) + (", ..." if len(held) > 3 else "")
                kept = (f"; the run that a killed --overwrite run was replacing is kept in "
                        f"{replaced[0]}: move its files back to restore it" if replaced else "")
                raise UsageError(f"{flag} {out} already holds a run ({names or 'nothing else'})"
                                 f"{kept}; pass --overwrite to replace it{hint} or choose another "
                                 "folder")
            if _inside(Path.cwd(), out) or out.resolve() == Path.home().resolve():
                raise UsageError(f"{flag} {out} holds the current folder; --overwrite clears "
                                 "only a run folder, choose another one")
            for item in inputs:
                if item is not None and _inside(Path(item), out):
                    raise UsageError(f"{flag} {out} holds {item}, an input of this run; "
                                     "--overwrite would delete it, choose another folder")
            aside = out / f"{RUN_LOCK}.replaced-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            aside.mkdir()
            for entry in held + replaced:
                os.rename(entry, aside / entry.name)
    except BaseException:
        release_lock(lock)
        if created:
            try:
                out.rmdir()
            except OSError:
                pass
        raise
    return OutputClaim(out, lock, created, aside)


def claim_output_file(path, flag: str = "--out", overwrite: bool = False) -> Path:
    """Check before any work that the run may write the file ``path``; returns it.

    A folder, a missing parent folder, or a file that exists without ``overwrite`` is a
    UsageError naming ``flag``. Write it with :func:`write_output_file`.
    """
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {p} is a folder, not a file")
    if not p.parent.is_dir():
        raise UsageError(f"{flag} {p}: folder {p.parent} does not exist")
    if p.exists() and not overwrite:
        raise UsageError(f"{flag} {p} already exists; pass --overwrite to replace it or "
                         "choose another file")
    return p


def write_output_file(path, text: str, flag: str = "--out", overwrite: bool = False) -> Path:
    """Write ``text`` to ``path`` whole (a temporary file renamed into place).

    Without ``overwrite`` the file is linked into place only if no other run created it
    meanwhile (UsageError otherwise), so two runs never silently replace each other.
    """
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    try:
        if overwrite:
            os.replace(tmp, p)
        else:
            try:
                os.link(tmp, p)
            except FileExistsError:
                raise UsageError(f"{flag} {p} was written by another run meanwhile; pass "
                                 "--overwrite to replace it or choose another file") from None
    finally:
        tmp.unlink(missing_ok=True)
    return p
