"""One style for every command line: the parser, ``--help`` defaults, error lines, exit codes.

Every CLI builds its parser with :class:`CLIParser` and runs its work through
:func:`run_cli`, so that all of them read and fail the same way:

* ``--help`` shows a flag's default once: ``(default: X)`` is added unless the help text
  already speaks of the default, or there is none to show (None, False, an empty list);
* a mistyped flag or value is one line, ``<prog>: error: <what>; see --help``, exit 2;
* a :class:`~base.errors.UsageError` is one line with the same prefix, exit 2;
* a damaged store or model file (a :class:`~base.errors.CommandError`: ``StoreError``,
  ``DamagedFileError``), or an operating-system failure (disk full, a file that cannot be
  read), is one line with the same prefix, exit 1;
* a run never replaces what an earlier run wrote unasked: :mod:`base.outputs` claims and
  locks the output folder (``claim_output_dir``, ``--overwrite``);
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
import sys
from pathlib import Path

from base.errors import CommandError, UsageError


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
    and 1 for a :class:`~base.errors.CommandError` (a StoreError, a DamagedFileError) or an
    OSError. When the reader of stdout
    leaves early (``python -m stores.info S.h5 | head``), the command stops quietly with
    status 1, as Python's documentation advises (a broken pipe is no error to report).
    """
    try:
        status = work()
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except UsageError as exc:
        print(error_line(prog, exc), file=sys.stderr)
        return 2
    except (CommandError, OSError) as exc:
        print(error_line(prog, exc), file=sys.stderr)
        return 1
    return status if isinstance(status, int) else 0
