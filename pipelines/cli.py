"""One style for every command line: the parser, ``--help`` defaults, error lines, exit codes.

Every CLI builds its parser with :class:`CLIParser` and runs its work through
:func:`run_cli`, so that all of them read and fail the same way:

* ``--help`` shows a flag's default once: ``(default: X)`` is added unless the help text
  already speaks of the default, or there is none to show (None, False, an empty list);
* a mistyped flag or value is one line, ``<prog>: error: <what>; see --help``, exit 2;
* a :class:`~pipelines.errors.UsageError` is one line with the same prefix, exit 2;
* a damaged store or model file, or an operating-system failure (disk full, a file that
  cannot be read), is one line with the same prefix, exit 1;
* a run never replaces what an earlier run wrote unasked: :func:`claim_output_dir` refuses a
  folder that holds files unless ``--overwrite`` (:func:`add_overwrite_flag`) is given, and
  locks it so that two runs cannot write it at once;
* a parser given :func:`add_config_flag` reads every flag from ``--config FILE.json|yaml``
  (keys are the flags' dest names, ``batch_size`` for ``--batch-size``); flags on the
  command line override the file, and :func:`write_flags` saves the resolved set as
  ``RUN/config.json``, which ``--config`` reads back to rerun the run.

Example
-------
>>> p = CLIParser(prog="python -m demo")
>>> _ = p.add_argument("--frames", type=int, default=32, help="frames per video")
>>> "frames per video (default: 32)" in p.format_help()
True
"""
from __future__ import annotations

import argparse
import json
import os
import reprlib
import shlex
import shutil
import socket
import sys
import time
import uuid
from pathlib import Path

from pipelines.errors import DamagedFileError, UsageError


class DefaultsOnceFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions kept as written; each flag's default shown once."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or not action.option_strings or default is None
                or default is False or default == [] or default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


class CLIParser(argparse.ArgumentParser):
    """argparse with :class:`DefaultsOnceFormatter` and one-line errors (exit 2).

    With a ``--config`` flag (:func:`add_config_flag`), the file's values stand in for the
    flags the command line leaves out (a required flag may come from the file alone).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsOnceFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, error_line(self.prog, f"{message}; see --help") + "\n")

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        path = _config_path(self, args) if CONFIG_DEST in {a.dest for a in self._actions} else None
        if path is None:
            return super().parse_known_args(args, namespace)
        try:
            values = config_values(self, path)
        except UsageError as exc:
            self.error(str(exc))
        saved = [(a, a.default, a.required) for a in self._actions if a.dest in values]
        try:
            for action, _, _ in saved:
                action.default, action.required = values[action.dest], False
            parsed, extras = super().parse_known_args(args, namespace)
        finally:
            for action, default, required in saved:
                action.default, action.required = default, required
        for action, _, _ in saved:
            value = getattr(parsed, action.dest, None)
            # append copies the file's list and adds the command line's items: keep those alone
            if isinstance(action, argparse._AppendAction) and value is not values[action.dest]:
                if len(value) > len(values[action.dest]):
                    setattr(parsed, action.dest, value[len(values[action.dest]):])
        return parsed, extras


def at_least(minimum, kind=int, strict: bool = False):
    """An argparse ``type``: a ``kind`` (int or float) ``>= minimum`` (``> minimum`` when
    ``strict``), finite. A value outside reads ``expected an integer >= 1, got 0``, which
    argparse prefixes with the flag; so 0 is never silently taken for "not given".

    >>> at_least(1)("3"), at_least(0.0, float, strict=True).__name__
    (3, 'a number > 0')
    """
    accepted = f"{'an integer' if kind is int else 'a number'} {'>' if strict else '>='} {minimum:g}"

    def parse(text):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {accepted}, got {shown(text)}") from None
        if not (value > minimum if strict else value >= minimum):  # NaN fails both
            raise argparse.ArgumentTypeError(
                f"expected {accepted}, got {text if len(str(text)) <= 40 else shown(text)}")
        return value
    parse.__name__ = accepted
    return parse


#: The dest of the --config flag; never saved among a run's flags.
CONFIG_DEST = "config"


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE.json|yaml``: every other flag of ``parser`` may come from the file."""
    parser.add_argument("--config", dest=CONFIG_DEST, default=None, metavar="FILE.json|yaml",
                        help="read the flags from this file: keys are flag names with _ for - "
                             "(batch_size for --batch-size), flags on the command line override "
                             "it; a run's RUN/config.json reruns that run")


def _config_path(parser, args):
    """The value of the last ``--config`` in ``args`` (None when absent).

    An abbreviation argparse would accept (``--conf``) counts too, so that a file is never
    taken as a flag value and then ignored.
    """
    others = [o for o in parser._option_string_actions if o.startswith("--") and o != "--config"]
    path = None
    for i, a in enumerate(args):
        if a == "--":
            break
        opt, eq, value = a.partition("=")
        if len(opt) < 3 or not "--config".startswith(opt) or any(o.startswith(opt) for o in others):
            continue
        if eq:
            path = value
        elif i + 1 < len(args):
            path = args[i + 1]
    return path


def not_a_file(path) -> str | None:
    """Why ``path`` cannot be read as a file (``is a directory, expected a file``, ``no such
    file``), or None when it is one: the cause for an error line that names the path.

    >>> not_a_file("/")
    'is a directory, expected a file'
    """
    p = Path(path)
    if p.is_file():
        return None
    return "is a directory, expected a file" if p.is_dir() else "no such file"


def read_config_file(path) -> dict:
    """The mapping in a ``.json``, ``.yaml`` or ``.yml`` file; UsageError naming the file otherwise."""
    p = Path(path)
    problem = not_a_file(p)
    if problem == "no such file":
        raise UsageError(f"--config: file not found: {path}")
    if problem:
        raise UsageError(f"--config {path}: {problem}")
    suffix = p.suffix.lower()
    text = p.read_text()
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise UsageError(f"--config {path}: reading YAML needs PyYAML "
                             "(pip install pyyaml), or give the flags as JSON") from None
        try:
            data = yaml.load(text, Loader=_no_alias_loader(yaml))
        except _AliasRefused as exc:
            raise UsageError(f"--config {path}: YAML aliases are not accepted (*{exc.alias} on "
                             f"line {exc.line}); write each value out") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise UsageError(f"--config {path}: not valid YAML{where}: "
                             f"{getattr(exc, 'problem', None) or exc}") from None
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--config {path}: not valid JSON: {exc}") from None
    else:
        raise UsageError(f"--config {path}: expected a .json, .yaml or .yml file")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: expected a mapping of flag names to values, "
                         f"got {type(data).__name__}")
    return data


class _AliasRefused(Exception):
    def __init__(self, alias: str, line: int):
        super().__init__(alias, line)
        self.alias, self.line = alias, line


def _no_alias_loader(yaml):
    """yaml's SafeLoader that stops at the first alias (``*name``).

    Aliases are never needed to write flags, and a few nested ones under 1 KB (a "billion
    laughs") expand to hundreds of millions of items when the value is checked or echoed.
    """
    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise _AliasRefused(event.anchor, event.start_mark.line + 1)
            return super().compose_node(parent, index)
    return NoAliasLoader


#: A value of a config file as echoed in an error line: cut to about 60 characters, 8 items
#: and 3 levels, so that a huge value gives a short line (and costs no time to show).
_echo = reprlib.Repr()
_echo.maxstring = _echo.maxother = 60
_echo.maxlist = _echo.maxtuple = _echo.maxdict = _echo.maxset = 8
_echo.maxlevel = 3
shown = _echo.repr


def config_values(parser: argparse.ArgumentParser, path) -> dict:
    """``{dest: value}`` of the flags in config file ``path``, checked against ``parser``.

    A run's ``config.json`` (``{"command": ..., "flags": {...}}``, see :func:`write_flags`)
    gives its ``flags``, and must come from the same command; any other file is the mapping
    itself. A key that is no flag of ``parser``, or a value of the wrong type or outside the
    flag's choices, is a UsageError naming the key and the file. ``null`` means the flag's
    default.
    """
    data = read_config_file(path)
    if isinstance(data.get("flags"), dict):
        command = data.get("command")
        if command is not None and command != parser.prog:
            raise UsageError(f"--config {path}: the flags of {command!r}, not of {parser.prog!r}")
        data = data["flags"]
    actions = {a.dest: a for a in parser._actions
               if a.option_strings and a.dest not in (CONFIG_DEST, "help", argparse.SUPPRESS)
               and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))}
    unknown = [k for k in data if k not in actions]
    if unknown:
        close = [d for d in actions if d.replace("_", "") == str(unknown[0]).replace("-", "").replace("_", "")]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"--config {path}: unknown key {shown(unknown[0])}{hint}; {parser.prog} takes "
                         f"{', '.join(sorted(actions))}")
    return {k: _config_value(actions[k], v, path) for k, v in data.items() if v is not None}


def _config_value(action, value, path):
    """``value`` of ``action`` from a config file, converted as the command line would be."""
    flag = action.option_strings[-1]
    where = f"--config {path}: {action.dest} ({flag})"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise UsageError(f"{where}: expected true or false, got {shown(value)}")
        return value
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_convert(action, v, where) for v in items]
    if isinstance(value, list) and action.type is None:
        value = ",".join(str(v) for v in value)  # a comma list given as a list
    return _convert(action, value, where)


def _convert(action, value, where):
    if isinstance(value, (dict, list)) or isinstance(value, bool):
        raise UsageError(f"{where}: expected a single value, got {shown(value)}")
    if action.type is not None:
        try:
            converted = action.type(value if isinstance(value, str) else str(value))
        except argparse.ArgumentTypeError as exc:  # the type's own words (see at_least)
            raise UsageError(f"{where}: {exc}") from None
        except (TypeError, ValueError):
            name = getattr(action.type, "__name__", "value")
            raise UsageError(f"{where}: expected {name}, got {shown(value)}") from None
    else:
        if not isinstance(value, (str, int, float)):
            raise UsageError(f"{where}: expected text, got {shown(value)}")
        converted = value if isinstance(value, str) else str(value)
    if action.choices is not None and converted not in action.choices:
        raise UsageError(f"{where}: {shown(converted)} is not one of {', '.join(map(str, action.choices))}")
    return converted


def resolved_flags(args: argparse.Namespace, drop=()) -> dict:
    """Every flag of a parsed command, by dest name (``--config`` and ``drop`` left out)."""
    return {k: v for k, v in sorted(vars(args).items()) if k != CONFIG_DEST and k not in drop}


def write_flags(path, prog: str, args: argparse.Namespace, drop=()) -> dict:
    """Save the resolved flags of ``prog`` as JSON (a run's ``config.json``); returns the record.

    ``--config`` reads the file back: ``{prog} --config RUN/config.json`` reruns the run.
    """
    record = flags_record(prog, args, drop)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=2) + "\n")
    return record


def flags_record(prog: str, args: argparse.Namespace, drop=()) -> dict:
    """``{"command": prog, "flags": {...}}``: what :func:`write_flags` saves."""
    return {"command": prog, "flags": resolved_flags(args, drop)}


def command_line(prog: str, argv=None) -> str:
    """The command as a user would retype it: ``python -m fusion.train --store ...``."""
    return prog + " " + shlex.join(sys.argv[1:] if argv is None else list(argv))


def next_line(prog: str, *args) -> str:
    """``next: <prog> <args>``: the command that usually follows a run, its arguments quoted
    for a shell where needed. Every CLI prints one after its summary.

    >>> next_line("python -m stores.info", "runs/my store.h5")
    "next: python -m stores.info 'runs/my store.h5'"
    """
    return "next: " + " ".join([prog, *(shlex.quote(str(a)) for a in args)])


#: Longest message :func:`error_line` prints: a value echoed in full must not flood a terminal.
ERROR_LINE_MAX = 2000


def error_line(prog: str, error) -> str:
    """``<prog>: error: <message>`` on one line, whatever the message holds, cut after
    :data:`ERROR_LINE_MAX` characters."""
    text = " ".join(str(error).split())
    if len(text) > ERROR_LINE_MAX:
        text = f"{text[:ERROR_LINE_MAX]}... ({len(text) - ERROR_LINE_MAX} more characters)"
    return f"{prog}: error: {text}"


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit finds no closed pipe to complain of
    (``Exception ignored ... BrokenPipeError``)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # a stdout without a file descriptor (captured by a test)
        pass


def run_cli(prog: str, work) -> int:
    """Run ``work()`` and turn the failures a user can act on into one line on stderr.

    Returns ``work()``'s exit status when it returns an int (else 0), 2 for a UsageError,
    and 1 for a StoreError, a DamagedFileError or an OSError. When the reader of stdout
    leaves early (``python -m stores.info S.h5 | head``), the command stops quietly with
    status 1, as Python's documentation advises (a broken pipe is no error to report).
    """
    from stores.schema import StoreError  # here: the parser alone stays free of h5py and numpy
    try:
        status = work()
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except UsageError as exc:
        print(error_line(prog, exc), file=sys.stderr)
        return 2
    except (StoreError, DamagedFileError, OSError) as exc:
        print(error_line(prog, exc), file=sys.stderr)
        return 1
    return status if isinstance(status, int) else 0


# -- output folders: one run per folder, nothing replaced unasked ----------------------------
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
