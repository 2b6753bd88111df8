"""One style for every command line: the parser, ``--help`` defaults, error lines, exit codes.

Every CLI builds its parser with :class:`CLIParser` and runs its work through
:func:`run_cli`, so that all of them read and fail the same way:

* ``--help`` shows a flag's default once: ``(default: X)`` is added unless the help text
  already speaks of the default, or there is none to show (None, False, an empty list);
* a mistyped flag or value is one line, ``<prog>: error: <what>; see --help``, exit 2;
* a :class:`~pipelines.errors.UsageError` is one line with the same prefix, exit 2;
* a damaged store or model file, or an operating-system failure (disk full, a file that
  cannot be read), is one line with the same prefix, exit 1.

Example
-------
>>> p = CLIParser(prog="python -m demo")
>>> _ = p.add_argument("--frames", type=int, default=32, help="frames per video")
>>> "frames per video (default: 32)" in p.format_help()
True
"""
from __future__ import annotations

import argparse
import sys

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
    """argparse with :class:`DefaultsOnceFormatter` and one-line errors (exit 2)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsOnceFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, error_line(self.prog, f"{message}; see --help") + "\n")


def error_line(prog: str, error) -> str:
    """``<prog>: error: <message>`` on one line, whatever the message holds."""
    return f"{prog}: error: {' '.join(str(error).split())}"


def run_cli(prog: str, work) -> int:
    """Run ``work()`` and turn the failures a user can act on into one line on stderr.

    Returns ``work()``'s exit status when it returns an int (else 0), 2 for a UsageError,
    and 1 for a StoreError, a DamagedFileError or an OSError.
    """
    from stores.schema import StoreError  # here: the parser alone stays free of h5py and numpy
    try:
        status = work()
    except UsageError as exc:
        print(error_line(prog, exc), file=sys.stderr)
        return 2
    except (StoreError, DamagedFileError, OSError) as exc:
        print(error_line(prog, exc), file=sys.stderr)
        return 1
    return status if isinstance(status, int) else 0
