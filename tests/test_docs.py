"""The documentation site: its tutorial code runs, and it builds with mkdocs --strict."""

from __future__ import annotations

import os
import re
import shlex
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


def _nav_section(title: str) -> list[str]:
    """The pages of one top-level section of mkdocs.yml's nav, read from its indentation."""
    lines = (ROOT / "mkdocs.yml").read_text().splitlines()
    head = next((i for i, line in enumerate(lines) if line.strip() == f"- {title}:"), None)
    if head is None:
        return []  # test_zoo_section_lists_family_pages then names what is missing
    indent = len(lines[head]) - len(lines[head].lstrip())
    pages = []
    for line in lines[head + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        if match := re.match(r"\s*- [^:]+:\s*(\S+\.md)\s*$", line):
            pages.append(match.group(1))
    return pages


def _h2_headings(text: str) -> list[str]:
    """The level-2 headings of a Markdown page, in order, outside fenced code."""
    headings, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("## "):
            headings.append(line[3:].strip())
    return headings


ZOO_PAGES = _nav_section("Zoos")


def test_zoo_section_lists_family_pages():
    assert {"mlds.md", "modelzoo.md", "tinylm.md"} <= set(ZOO_PAGES)
    for page in ZOO_PAGES:
        assert (ROOT / "docs" / page).is_file(), page


@pytest.mark.parametrize("page", ZOO_PAGES)
def test_family_page_is_guide_first(page):
    """A family page opens with what the zoo is and how to use it; measurements come after.

    Its first level-2 heading is a guide section, and it has a "Measured" section further
    down, or links its own measurement page, docs/measured/<page>.
    """
    text = (ROOT / "docs" / page).read_text()
    headings = _h2_headings(text)
    assert headings, f"{page} has no level-2 heading"
    assert not headings[0].lower().startswith("measured"), f"{page} opens with measurements"
    has_section = any(h.lower().startswith("measured") for h in headings)
    own_page = f"measured/{page}"
    links_page = f"({own_page}" in text and (ROOT / "docs" / own_page).is_file()
    assert has_section or links_page, f"{page}: no '## Measured' section, no link to {own_page}"
    guide = re.split(r"^## Measured", text, maxsplit=1, flags=re.M)[0]
    commands = re.findall(r"```bash\n(.*?)```", guide, re.S)
    assert any("weightzoo " in block for block in commands), (
        f"{page}: no `weightzoo` command in a bash block before '## Measured'"
    )


def _guide_commands(text: str) -> list[str]:
    """The `weightzoo ...` commands in the bash blocks before a page's Measured section."""
    guide = re.split(r"^## Measured", text, maxsplit=1, flags=re.M)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", guide, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0]
            # a shell loop holds the command between `do` and `;`
            for part in re.split(r";|&&|\bdo\b", line):
                if part.strip().startswith("weightzoo "):
                    commands.append(part.strip())
    return commands


@pytest.mark.parametrize("page", ZOO_PAGES)
def test_family_page_commands_parse(page):
    """Every command a family page tells readers to run is one the CLI accepts, on a real spec."""
    from weightzoo.cli.parser import build_parser
    from weightzoo.generate.specs import get_spec

    parser = build_parser()
    commands = _guide_commands((ROOT / "docs" / page).read_text())
    assert commands, page
    for command in commands:
        argv = shlex.split(command)[1:]
        if "--help" in argv:
            continue
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{page}: `{command}` is not a valid weightzoo command")
        if args.command == "generate" and "$" not in args.name:
            get_spec(args.name)  # raises for a name the catalog does not know
