"""The documentation site: its tutorial code runs, and it builds with mkdocs --strict."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- runnable -->"
PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if MARKER in p.read_text())


def runnable_blocks(text: str) -> list[str]:
    """The ```python blocks that directly follow a runnable marker, in page order."""
    return re.findall(re.escape(MARKER) + r"\s*```python\n(.*?)\n```", text, re.S)


def test_markers_are_found():
    assert {p.name for p in PAGES} >= {"getting-started.md", "tutorial.md"}
    for page in PAGES:
        text = page.read_text()
        assert len(runnable_blocks(text)) == text.count(MARKER), page.name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_tutorial_code_runs_on_small_zoos(page, named_zoos, monkeypatch, capsys):
    pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(named_zoos.parent)
    namespace: dict = {"__name__": "__docs__"}
    for number, block in enumerate(runnable_blocks(page.read_text()), 1):
        code = compile(block, f"{page.name} block {number}", "exec")
        exec(code, namespace)  # noqa: S102 - the documentation's own examples
    assert capsys.readouterr().out  # every page prints what it shows


def test_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "datasets" / "index.html").is_file()
