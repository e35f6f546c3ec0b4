"""Every example script starts and explains itself: its ``--help`` runs and names its options."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 5, EXAMPLES


@pytest.fixture(scope="module")
def helps():
    """Each example's ``--help``, all started at once (each imports torch: seconds apiece)."""
    runs = {
        path.name: subprocess.Popen(
            [sys.executable, str(path), "--help"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for path in EXAMPLES
    }
    return {name: (run.wait(timeout=120), *run.communicate()) for name, run in runs.items()}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_an_example_prints_its_usage(helps, path):
    code, out, err = helps[path.name]
    assert code == 0, err
    assert out.startswith("usage:") and "--help" in out, out


def test_the_package_ships_its_type_marker():
    assert (ROOT / "src" / "weightzoo" / "py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'weightzoo = ["py.typed"]' in pyproject
