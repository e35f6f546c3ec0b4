"""The ``weightzoo`` package's light start and the option choices it reads from their owners."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightzoo import families, importers
from weightzoo.cli import EXIT_USAGE, build_parser, run
from weightzoo.functional import QUERY_KINDS
from weightzoo.generate.runner import ENGINES

SRC = Path(__file__).resolve().parents[2] / "src"

# Each subcommand's --help, then the top one, in one fresh interpreter: argparse exits after each.
_HELP_CHILD = """
import contextlib, io, sys
from weightzoo.cli import run
for argv in ({commands}):
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            run([*argv, "--help"])
    except SystemExit as stop:
        assert stop.code == 0, (argv, stop.code)
print("torch" in sys.modules, "weightzoo.generate.runner" in sys.modules)
"""

_LIST_CHILD = """
import contextlib, io, sys
from weightzoo.cli import run
with contextlib.redirect_stdout(io.StringIO()):
    code = run(["list"])
print(code, "torch" in sys.modules)
"""

# What `list` reads besides the CLI: every registered family's specs and the catalog.
_SPECS_CHILD = """
import sys
from weightzoo import catalog
from weightzoo.generate.specs import all_specs
all_specs(), catalog.entries()
print("torch" in sys.modules)
"""


def _child(code: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("WEIGHTZOO_DEBUG", None)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def _subcommands() -> list[list[str]]:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    out = [[]]
    for name, sub in commands.items():
        out.append([name])
        nested = [a for a in sub._actions if a.dest == "data_command"]
        out += [[name, inner] for a in nested for inner in a.choices]
    return out


def test_help_of_every_command_imports_no_torch():
    commands = _subcommands()
    assert ["data", "fetch"] in commands and ["generate"] in commands
    assert _child(_HELP_CHILD.format(commands=", ".join(map(repr, commands)))) == [
        "False",
        "False",
    ]


def test_list_and_the_family_specs_import_no_torch():
    assert _child(_SPECS_CHILD) == ["False"]
    assert _child(_LIST_CHILD) == ["0", "False"]


def test_list_accepts_every_registered_family(capsys):
    for name in families.names():
        assert run(["list", "--family", name, "--json"]) == 0, name
    capsys.readouterr()
    assert run(["list", "--family", "no-such-family"]) == 1
    assert "no-such-family" in capsys.readouterr().err


def test_import_kinds_are_the_importers_own():
    kinds = importers.kinds()
    assert "cnn-zoo" in kinds
    for kind in kinds:
        assert build_parser().parse_args(["import", kind, "src", "dest"]).kind == kind


_OWNED = (
    (["import"], ["src", "dest"], importers.kinds),
    (["generate", "toy3", "--engine"], [], lambda: ENGINES),
    (["behaviour", "zoo", "--queries"], [], lambda: QUERY_KINDS),
)


@settings(max_examples=30, deadline=None)
@given(st.text(st.characters(codec="ascii", categories=("L", "N", "Pd")), min_size=1, max_size=12))
def test_an_option_value_its_owner_does_not_offer_is_a_usage_error(value):
    for before, after, owned in _OWNED:
        choices = owned()
        argv = [*before, value, *after]
        if value in choices:
            build_parser().parse_args(argv)
            continue
        with pytest.raises(SystemExit) as stop:
            build_parser().parse_args(argv)
        assert stop.value.code == EXIT_USAGE
