"""Every CLI reads and fails the same way (base/cli.py): defaults shown once in --help,
one error line with the program's prefix and "see --help"."""
import importlib
import json
import re

import pytest

from base.cli import CLIParser, add_config_flag, read_config_file, run_cli, write_flags
from base.errors import DamagedFileError, UsageError
from stores import StoreError

#: module -> how to call its parser with argv
CLIS = {
    "pipelines.extract": "main", "pipelines.benchmark": "main", "pipelines.bench_faces": "main",
    "stores.info": "main", "fusion.train": "main", "fusion.predict": "main", "fusion.audit": "main",
    "fusion.ablate": "main", "fusion.evaluate": "main", "fusion.importance": "main",
    "extract.bench_deep": "main",
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


# ----------------------------------------------------------------------------- --config

def _config_parser():
    p = CLIParser(prog="python -m x")
    p.add_argument("--store", required=True, help="a store")
    p.add_argument("--batch-size", type=int, default=32, help="batch")
    p.add_argument("--lr", type=float, default=1e-3, help="rate")
    p.add_argument("--device", default="auto", choices=("auto", "cpu"), help="device")
    p.add_argument("--test-store", action="append", default=[], help="more stores")
    p.add_argument("--fast", action="store_true", help="go fast")
    p.add_argument("--cache-mb", type=int, default=1, help="cache")
    add_config_flag(p)
    return p


def test_config_file_gives_flags_and_the_command_line_overrides(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"store": "s.h5", "batch_size": 8, "lr": 0.5, "fast": True,
                               "test_store": ["a.h5", "b.h5"], "device": None}))
    args = _config_parser().parse_args(["--config", str(cfg)])
    assert (args.store, args.batch_size, args.lr, args.fast, args.device) == ("s.h5", 8, 0.5, True, "auto")
    assert args.test_store == ["a.h5", "b.h5"]
    args = _config_parser().parse_args(["--config", str(cfg), "--batch-size", "4",
                                        "--test-store", "c.h5", "--store", "t.h5"])
    assert (args.store, args.batch_size, args.lr) == ("t.h5", 4, 0.5)
    assert args.test_store == ["c.h5"]  # a repeatable flag on the command line replaces the file's
    args = _config_parser().parse_args(["--conf", str(cfg)])  # an abbreviation argparse accepts
    assert args.batch_size == 8


def test_yaml_config_and_a_saved_run_config_round_trip(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("store: s.h5\nbatch_size: 16\ntest_store: [a.h5]\n")
    assert read_config_file(cfg) == {"store": "s.h5", "batch_size": 16, "test_store": ["a.h5"]}
    parser = _config_parser()
    args = parser.parse_args(["--config", str(cfg), "--lr", "0.25"])
    record = write_flags(tmp_path / "run" / "config.json", parser.prog, args)
    assert record["command"] == "python -m x" and "config" not in record["flags"]
    again = _config_parser().parse_args(["--config", str(tmp_path / "run" / "config.json")])
    assert vars(again) == {**vars(args), "config": str(tmp_path / "run" / "config.json")}


@pytest.mark.parametrize("content, suffix, needle", [
    ({"store": "s.h5", "batch": 3}, ".json", "unknown key 'batch'"),
    ({"store": "s.h5", "batch-size": 3}, ".json", "did you mean 'batch_size'"),
    ({"store": "s.h5", "batch_size": "many"}, ".json", "batch_size (--batch-size): expected int, got 'many'"),
    ({"store": "s.h5", "device": "tpu"}, ".json", "'tpu' is not one of auto, cpu"),
    ({"store": "s.h5", "fast": "yes"}, ".json", "fast (--fast): expected true or false"),
    (["s.h5"], ".json", "expected a mapping"),
    ({"command": "python -m other", "flags": {"store": "s.h5"}}, ".json", "the flags of 'python -m other'"),
    ("store: [s.h5\n", ".yaml", "not valid YAML (line 2)"),
    ("store = 1", ".toml", "expected a .json, .yaml or .yml file"),
])
def test_a_bad_config_file_is_one_line_naming_file_and_key(content, suffix, needle, tmp_path, capsys):
    cfg = tmp_path / f"c{suffix}"
    cfg.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(SystemExit) as info:
        _config_parser().parse_args(["--config", str(cfg)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"python -m x: error: --config {cfg}") and needle in err, err


def test_missing_config_file_and_yaml_without_pyyaml(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit):
        _config_parser().parse_args(["--config", str(tmp_path / "none.json")])
    assert "--config: file not found" in capsys.readouterr().err
    cfg = tmp_path / "c.yml"
    cfg.write_text("store: s.h5\n")
    monkeypatch.setitem(__import__("sys").modules, "yaml", None)  # as if PyYAML were absent
    with pytest.raises(SystemExit):
        _config_parser().parse_args(["--config", str(cfg)])
    assert "pip install pyyaml" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["fusion.train", "fusion.ablate"])
def test_cli_config_key_unknown_to_that_command(module, tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"store": "s.h5", "features": "a", "epochs": 3}))
    with pytest.raises(SystemExit):
        _call(module, ["--config", str(cfg)])
    err = capsys.readouterr().err
    assert f"python -m {module}: error: --config {cfg}: unknown key 'epochs'" in err
