"""The README's quick start is a promise: CI must run exactly its test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_quick_start_has_two_commands_and_ci_runs_the_test_one():
    install_and_run, install_and_test = quick_start_commands()
    assert "torch==2.13.0" in install_and_run and "weightzoo generate" in install_and_run
    test_tail = install_and_test.split("&& ", 2)[-1]  # after creating/activating the venv
    assert "pytest" in test_tail
    assert test_tail in (ROOT / ".ci" / "run").read_text()
