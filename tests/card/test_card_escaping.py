"""Publisher strings in zoo cards: rendered as text, never as HTML, links or Markdown blocks.

A zoo is written with hostile names (zoo, family, metrics, columns, categories, spec), its card
is written by ``write_card`` and by ``weightzoo card``, and the README.md is rendered with a real
Markdown renderer (Python-Markdown, with the tables and fenced-code extensions a hub uses); the
assertions are on the HTML and on the front matter read back by PyYAML.
"""

from __future__ import annotations

import ast
import json
import shlex
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightzoo.card import MAX_YAML_KEY, PROJECT_URL, front_matter, read_card_metadata, write_card
from weightzoo.cli import run
from weightzoo.errors import ManifestError, UnsafePathError
from weightzoo.escaping import (
    ELLIPSIS,
    MAX_CHARS,
    markdown_text,
    one_line,
    python_str,
    relative_link,
    shell_quote,
)
from weightzoo.storage import Layout, ZooWriter, shard_file_name

markdown = pytest.importorskip("markdown")
yaml = pytest.importorskip("yaml")

NAME = (
    "evil\n---\ninjected: true\n# Injected heading\n\n<script>alert(1)</script>"
    "<img src=x onerror=alert(2)> [click](javascript:alert(3)) ![i](https://evil.example/i.png)"
    " `code` | a | b | \u202eabc www.evil.example <https://evil.example> x@evil.example $x$ ~~s~~"
)
FAMILY = "<b onmouseover=alert(1)>fam</b>\n\n## family heading\n- item\n1. item"
# HDF5 names take no '/': the metrics and columns are hostile without one.
ACC = "test_acc<img src=x onerror=alert(4)>|x|y [l](javascript:alert(5)) $\\frac{1}{0$"
METRICS = [ACC, "train_acc **bold** _em_ <iframe src=javascript:alert(6)>", "test_loss"]
COLUMN = "lr<script>alert(7)<\\script> $\\alpha$ `c` |"
CATEGORIES = ["$\\frac{1}{0$", "<svg onload=alert(8)>", "_hidden", "a\nb\n---", "x" * 500]
SPEC = {
    "name": NAME,
    "k: v\n---\ninjected: 1": ["x\u2028y", "\x85", "\ufeff", "\U0001f600", 1e-05, 2e16],
    "nested": {"<script>": "a: b", "#": "- c"},
}
ALLOWED_TAGS = {"p", "h1", "h2", "h3", "a", "img", "table", "thead", "tbody", "tr", "th", "td"}
ALLOWED_TAGS |= {"pre", "code"}


class Page(HTMLParser):
    """The elements, attributes and text of an HTML fragment."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.texts: dict[str, list[str]] = {}
        self.top: list[str] = []
        self._open: list[tuple[str, list[str]]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if not self._open:
            self.top.append(tag)
        self._open.append((tag, []))

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if not self._open:
            self.top.append(tag)

    def handle_endtag(self, tag):
        opened, parts = self._open.pop()
        assert opened == tag, (opened, tag)
        self.texts.setdefault(tag, []).append("".join(parts))

    def handle_data(self, data):
        for _, parts in self._open:
            parts.append(data)
        if not self._open and data.strip():
            self.top.append("#text")


def render(text: str) -> str:
    return markdown.markdown(text, extensions=["tables", "fenced_code"])


def split_card(text: str) -> tuple[dict, str]:
    """The front matter as PyYAML reads it, and the Markdown body."""
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def write_hostile_zoo(path: Path) -> Path:
    """A complete 12-model zoo whose every publisher string is hostile."""
    rng = np.random.default_rng(0)
    layout = Layout.from_shapes({"fc.weight": (2, 3), "fc.bias": (2,)})
    epochs = [0, 1, 2]
    with ZooWriter(
        path,
        name=NAME,
        family=FAMILY,
        spec=SPEC,
        layout=layout,
        epochs=epochs,
        metrics=METRICS,
        stats_names=["mean"],
        num_models=12,
        split_counts={"train": 6, "test": 6},
    ) as writer:
        for split, first in (("train", 0), ("test", 6)):
            models = np.arange(first, first + 6)
            writer.write_shard(
                shard_file_name(split, first),
                split=split,
                models=(first, first + 6),
                epochs=epochs,
                weights=rng.standard_normal((6, 3, layout.num_params)),
                stats=rng.standard_normal((6, 3, 1)),
                metrics={m: rng.uniform(0.1, 0.9, (6, 3)) for m in METRICS},
                columns={
                    "model_id": models,
                    "machine": [CATEGORIES[i % len(CATEGORIES)] for i in models],
                    COLUMN: 10.0 ** -(1 + models % 2),
                    "passed": models % 2 == 0,
                },
            )
        writer.finish()
    return path


def check_safe_html(html: str, card_dir: Path) -> Page:
    """No script, handler, foreign element, or link out of the card: return the parsed page."""
    assert "<script" not in html.lower() and "<iframe" not in html.lower()
    page = Page(html)
    for tag, attrs in page.elements:
        assert tag in ALLOWED_TAGS, tag
        assert not [a for a in attrs if a.lower().startswith("on")], (tag, attrs)
        for key in ("href", "src"):
            if attrs.get(key) is None:
                continue
            target = attrs[key]
            if target == PROJECT_URL:
                continue
            parts = urlsplit(target)
            assert not (parts.scheme or parts.netloc or parts.query), target
            file = (card_dir / unquote(parts.path)).resolve()
            assert file.is_relative_to(card_dir.resolve()) and file.is_file(), target
    return page


def check_code_blocks(page: Page, repo_id: str) -> None:
    """The usage snippets name ``repo_id`` exactly, as one shell word and one Python literal."""
    bash, python = page.texts["pre"]
    words = shlex.split(bash.splitlines()[0])
    assert words[:3] == ["weightzoo", "fetch", one_line(repo_id, None)]
    calls = [
        node
        for node in ast.walk(ast.parse(python))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "fetch"
    ]
    assert [ast.literal_eval(call.args[0]) for call in calls] == [repo_id]


@pytest.fixture
def hostile_zoo(tmp_path):
    pytest.importorskip("matplotlib")
    return write_hostile_zoo(tmp_path / "zoo")


def test_a_card_of_hostile_names_renders_them_as_text(hostile_zoo, tmp_path):
    card_dir = tmp_path / "card"
    text = write_card(hostile_zoo, card_dir).read_text(encoding="utf-8")
    front, body = split_card(text)
    # The front matter holds the very values, for a YAML reader and for read_card_metadata.
    assert front == read_card_metadata(text)
    assert set(front) == {"license", "pretty_name", "tags", "size_categories", "weightzoo"}
    assert front["pretty_name"] == NAME and front["weightzoo"]["family"] == FAMILY
    assert front["weightzoo"]["metrics"] == METRICS
    assert front["weightzoo"]["spec"] == SPEC
    assert set(front["weightzoo"]["accuracy"]) == {m for m in METRICS if "acc" in m}
    assert front["tags"] == ["weightzoo", "model-zoo", "weight-space-learning"]  # no family

    page = check_safe_html(render(body), card_dir)
    assert page.texts["h1"] == [one_line(NAME)]
    assert page.texts["h2"] == ["Use", "Accuracy at the last checkpoint (viable models)", "Figures"]
    figures = sorted((card_dir / "figures").glob("*.png"))
    assert len(figures) == 6 and len(page.texts["h3"]) == 6  # the pass-rate figure too
    assert "onerror=alert(4)>|x|y" in page.texts["h3"][0]  # the main metric, as text
    assert one_line(FAMILY) in page.texts["p"][0]
    # One row per accuracy metric and split, seven cells each, the names shown whole.
    rows = page.texts["tr"][1:]
    assert len(rows) == 4 and len(page.texts["td"]) == 4 * 7
    assert {page.texts["td"][i] for i in range(0, 28, 7)} == {
        one_line(m) for m in METRICS if "acc" in m
    }
    check_code_blocks(page, f"OWNER/{NAME}")  # a name no catalog entry has
    # Nothing else of the body escaped into a block of its own.
    # (the "Use" section opens with one line: push it first, as OWNER/NAME)
    blocks = ["h1", "p", "h2", "p", "pre", "pre", "p", "h2", "table", "h2", *["h3", "p"] * 6, "p"]
    assert page.top == blocks


def test_the_card_command_colours_by_a_hostile_column(hostile_zoo, tmp_path, capsys):
    out = tmp_path / "card"
    argv = ["card", str(hostile_zoo), "--out", str(out), "--color-by", COLUMN]
    assert run([*argv, "--repo-id", "owner/zoo"]) == 0
    assert "6 figures" in capsys.readouterr().out
    text = (out / "README.md").read_text(encoding="utf-8")
    page = check_safe_html(render(split_card(text)[1]), out)
    check_code_blocks(page, "owner/zoo")
    assert "weightzoo fetch owner/zoo --split test" in text  # a plain id stays unquoted


def test_a_grouped_card_escapes_the_top_manifest(grouped_spec, tmp_path):
    pytest.importorskip("matplotlib")
    from weightzoo.generate.runner import generate

    zoo = tmp_path / "grouped"
    generate(replace(grouped_spec, group_names=("a__b__", "c_d-")), zoo, progress=False)
    manifest = json.loads((zoo / "zoo.json").read_text())
    manifest |= {"name": NAME, "family": FAMILY}
    (zoo / "zoo.json").write_text(json.dumps(manifest))
    card_dir = tmp_path / "card"
    text = write_card(zoo, card_dir).read_text(encoding="utf-8")
    front, body = split_card(text)
    assert front == read_card_metadata(text)
    assert front["pretty_name"] == NAME and front["weightzoo"]["family"] == FAMILY
    page = check_safe_html(render(body), card_dir)
    assert page.texts["h1"] == [one_line(NAME)]
    assert page.texts["td"][0:8:7] == ["a__b__", "c_d-"]  # the groups table's first column
    assert page.texts["h2"][1:] == [
        f"Group {g}: accuracy at the last checkpoint" for g in ("a__b__", "c_d-")
    ]
    images = [attrs["src"] for tag, attrs in page.elements if tag == "img"]
    assert len(images) == 10 and all(
        src.startswith(("figures/a__b__/", "figures/c_d-/")) for src in images
    )
    check_code_blocks(page, f"OWNER/{NAME}")


def test_a_hostile_group_name_never_reaches_a_card(grouped_zoo, tmp_path, capsys):
    manifest = json.loads((grouped_zoo / "zoo.json").read_text())
    manifest["groups"][0]["name"] = "<script>alert(1)</script>"
    (grouped_zoo / "zoo.json").write_text(json.dumps(manifest))
    out = tmp_path / "card"
    assert run(["card", str(grouped_zoo), "--out", str(out), "--no-plots"]) == 1
    err = capsys.readouterr().err
    assert "ManifestError" in err and len(err.strip().splitlines()) == 1
    assert not (out / "README.md").exists()


def test_a_plain_family_is_a_tag(toy_zoo, tmp_path):
    text = write_card(toy_zoo, tmp_path / "card", plots=False).read_text()
    assert read_card_metadata(text)["tags"] == [
        "weightzoo",
        "model-zoo",
        "weight-space-learning",
        "toy",
    ]


def test_links_stay_inside_the_card_folder():
    assert relative_link("figures", "a b", "x?.png") == "figures/a%20b/x%3F.png"
    assert relative_link("figures", "javascript:alert(1)") == "figures/javascript%3Aalert%281%29"
    for bad in ("..", ".", ""):
        with pytest.raises(UnsafePathError, match="card folder"):
            relative_link("figures", bad, "x.png")


def test_a_front_matter_key_longer_than_yaml_reads_is_refused():
    fits = "k" * (MAX_YAML_KEY - 2)  # with its two quotes
    front = front_matter({"spec": {fits: 1}}, source="zoo.json")
    assert yaml.safe_load(front.strip("-\n")) == {"spec": {fits: 1}}
    with pytest.raises(ManifestError, match=r"zoo.json: the key 'kkk.*shorten it"):
        front_matter({"spec": {fits + "k": 1}}, source="zoo.json")


# -- properties ---------------------------------------------------------------------------------

ANY_CHAR = st.characters(exclude_categories=())  # surrogates and controls included
MARKDOWN_CHARS = st.sampled_from(list("\\`*_[](){}#!.|~$:@&<>\"'-+=\n\t\r 0123456789ax"))
# Pieces of Markdown and HTML that open a block or an element, to be met often.
MARKUP = st.sampled_from(
    [
        *("- ", "+ ", "* ", "1. ", "2) ", "# ", "===", "---", "> ", "    ", "```", "~~~", "| a |"),
        *("<b>", "<script>", "</p>", "<!-- ", "<div>", "&amp;", "&#60;", "[a](b)", "![a](b)"),
        *("[a]: b", "`c`", "**b**", "_e_", "<http://x>", "  \n", "\n\n", "$x$", "~~s~~"),
        *("\\", "\\*", "\\_", "\\[", "\\`"),
    ]
)
TEXT = st.lists(
    MARKUP | st.text(MARKDOWN_CHARS | ANY_CHAR, max_size=6) | st.text(max_size=250), max_size=10
).map("".join)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_escaped_text_renders_as_its_one_line_form(text):
    line = one_line(text)
    assert len(line) <= MAX_CHARS and line == line.strip()
    assert not any(ch in line for ch in "\n\r\t\x0b\x0c\x85\u2028\u2029")
    # cut exactly when the whole line (control characters as spaces, not str.split's idea of
    # white space) is too long
    if len(one_line(text, limit=None)) > MAX_CHARS:
        assert line.endswith(ELLIPSIS)
    escaped = markdown_text(text)
    assert "\n" not in escaped
    # In a paragraph, at the start of a line, and in a table cell: one element, the text.
    page = Page(render(f"x {escaped} y"))
    assert page.top == ["p"] and len(page.elements) == 1
    assert page.texts["p"] == [f"x {line} y"]
    if line:
        page = Page(render(escaped))
        assert page.top == ["p"] and len(page.elements) == 1 and page.texts["p"] == [line]
    page = Page(render(f"| a | b |\n|---|---|\n| {escaped} | z |"))
    assert page.texts["td"] == [line, "z"]


@given(st.text(ANY_CHAR))
def test_code_snippet_quoting_is_exact(text):
    literal = python_str(text)
    assert literal.isascii() and "\n" not in literal
    assert ast.literal_eval(literal) == text
    word = shell_quote(text)
    assert "\n" not in word and shlex.split(word) == [one_line(text, None)]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(ANY_CHAR),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(ANY_CHAR, max_size=20), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES, st.text(ANY_CHAR))
def test_front_matter_reads_back_the_same_in_yaml_and_json(value, name):
    meta = {"pretty_name": name, "weightzoo": {"spec": value}}
    text = front_matter(meta, source="zoo.json") + "\n\n# body\n"
    assert text.count("\n") == 6  # "---", two keys, "---", blank line, body
    assert split_card(text)[0] == meta
    assert read_card_metadata(text) == meta


# -- the terminal: `info` and `verify` print publisher names as plain text ---------------------

ESC_NAME = "evil\x1b]0;TITLE\x07\x1b[31mRED\u202eRTL\x1b]8;;https://evil.example\x1b\\link"
ESC_METRIC = "acc\x1b[7m\u202e"
ESC_COLUMN = "kind\x1b[8m\x9b2J"
# ESC, BEL, CSI (8-bit), RLO: what makes a terminal act instead of print
CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e")


def write_terminal_zoo(path: Path) -> Path:
    """A 4-model zoo whose name, family, metric and column hold terminal controls."""
    layout = Layout.from_shapes({"fc.weight": (2, 3)})
    weights = np.random.default_rng(0).standard_normal((4, 2, layout.num_params))
    with ZooWriter(
        path,
        name=ESC_NAME,
        family="fam\x1b[2J",
        spec={"name": ESC_NAME},
        layout=layout,
        epochs=[0, 1],
        metrics=[ESC_METRIC],
        stats_names=["mean"],
        num_models=4,
        split_counts={"train": 4},
    ) as writer:
        writer.write_shard(
            shard_file_name("train", 0),
            split="train",
            models=(0, 4),
            epochs=[0, 1],
            weights=weights,
            stats=weights.mean(axis=2, keepdims=True),
            metrics={ESC_METRIC: weights[..., 0]},
            columns={"model_id": np.arange(4), ESC_COLUMN: ["a\x1b[9m"] * 4},
        )
        writer.finish()
    return path


def printed(capsys, argv: list[str]) -> tuple[int, str]:
    code = run(argv)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("command", ["info", "verify", "info-folder"])
def test_info_and_verify_print_no_terminal_controls(tmp_path, capsys, command):
    zoo = write_terminal_zoo(tmp_path / "zoos" / "evil")
    target = tmp_path / "zoos" if command == "info-folder" else zoo
    code, text = printed(capsys, [command.split("-")[0], str(target)])
    assert code == 0, text
    assert not [c for c in CONTROLS if c in text], ascii(text)
    assert one_line(ESC_NAME) in text  # the name itself is still shown, as text
    if command == "info":
        assert one_line(ESC_METRIC) in text and one_line(ESC_COLUMN) in text


def test_grouped_info_prints_no_terminal_controls(grouped_zoo, capsys):
    manifest = json.loads((grouped_zoo / "zoo.json").read_text())
    manifest["name"] = ESC_NAME
    (grouped_zoo / "zoo.json").write_text(json.dumps(manifest))
    code, text = printed(capsys, ["info", str(grouped_zoo)])
    assert code == 0, text
    assert not [c for c in CONTROLS if c in text], ascii(text)
    assert one_line(ESC_NAME) in text and "narrow" in text


@settings(max_examples=40, deadline=None)
@given(st.text(ANY_CHAR, min_size=1, max_size=40))
def test_any_name_in_info_output_is_one_line_of_printable_text(name):
    import contextlib
    import io
    import unicodedata

    from weightzoo.cli.inspect import _print_info

    info = {
        "name": name,
        "family": name,
        "path": "/zoo",
        "models": 1,
        "checkpoints": 1,
        "params": 6,
        "epochs": [0],
        "splits": {"train": 1},
        "complete": True,
        "shards_present": 1,
        "shards": 1,
        "bytes": 10,
        "stats": name,
        "metrics": [name],
        "columns": [name],
        "side_files": {name: [name]},
        f"range_{name}": (0.0, 1.0),
        "quality": None,
    }
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        _print_info(info)
    lines = buffer.getvalue().split("\n")
    assert len(lines) == 12 and lines[-1] == ""  # 11 lines, as for a plain name
    for line in lines:
        assert not [c for c in line if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]
