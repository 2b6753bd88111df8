"""Every CLI reads and fails the same way (pipelines/cli.py): defaults shown once in --help,
one error line with the program's prefix and "see --help"."""
import importlib
import re

import pytest

from pipelines.cli import CLIParser, run_cli
from pipelines.errors import DamagedFileError, UsageError
from stores import StoreError

#: module -> how to call its parser with argv
CLIS = {
    "pipelines.extract": "main", "pipelines.benchmark": "main", "pipelines.bench_faces": "main",
    "stores.info": "main", "fusion.train": "main", "fusion.predict": "main", "fusion.audit": "main",
    "fusion.ablate": "main", "fusion.evaluate": "main", "extract.bench_deep": "main",
    "extract.bench": "parse_args",  # its main re-executes itself with thread limits set
}


def _call(module, argv):
    return getattr(importlib.import_module(module), CLIS[module])(argv)


@pytest.mark.parametrize("module", sorted(CLIS))
def test_a_mistyped_flag_is_one_line_with_the_prefix(module, capsys):
    with pytest.raises(SystemExit) as info:
        _call(module, ["--bogus-flag"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"python -m {module}: error: ") and err.endswith("; see --help")


@pytest.mark.parametrize("module", sorted(CLIS))
def test_help_shows_each_default_once(module, capsys):
    with pytest.raises(SystemExit):
        _call(module, ["--help"])
    text = capsys.readouterr().out
    options = text[text.index("options:"):]
    entries = re.split(r"\n  (?=-)", options)
    assert len(entries) > 2
    for entry in entries:
        assert entry.lower().count("(default") <= 1, entry
        assert "(default: None)" not in entry and "(default: False)" not in entry, entry


def test_help_adds_a_default_only_where_the_text_lacks_one():
    p = CLIParser(prog="python -m x")
    p.add_argument("--frames", type=int, default=32, help="frames per video")
    p.add_argument("--align", default=None, help="face or none (default: face)")
    p.add_argument("--fast", action="store_true", help="go fast")
    text = " ".join(p.format_help().split())
    assert "frames per video (default: 32)" in text
    assert "face or none (default: face)" in text and "(default: None)" not in text
    assert "go fast" in text and "(default: False)" not in text


@pytest.mark.parametrize("error, status", [(UsageError("--x: bad\nvalue"), 2),
                                           (StoreError("s.h5: damaged"), 1),
                                           (DamagedFileError("w.npz: damaged"), 1),
                                           (OSError(28, "No space left on device"), 1)])
def test_run_cli_prints_one_line_per_failure(error, status, capsys):
    def work():
        raise error
    assert run_cli("python -m x", work) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m x: error: ")


def test_run_cli_lets_bugs_through():
    def work():
        raise KeyError("a bug is a traceback, not a user's error")
    with pytest.raises(KeyError):
        run_cli("python -m x", work)
