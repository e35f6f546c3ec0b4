"""`weightzoo report` as text: supported tables only, 100 columns, one number format a column."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from helpers import toy_family
from weightzoo.analysis import TABLE_IDS, report
from weightzoo.analysis.tables import Row, Table, number_format
from weightzoo.cli import run

LONG_NAME = "a-zoo-whose-name-is-long-" * 4
NUMBER = re.compile(r"-?\d+(?:\.(\d+))?(e[-+]\d+)?")


@pytest.fixture(scope="module")
def long_zoo(tmp_path_factory, _register_toy_family):
    """A toy zoo of 12 models with a 100-character name, deep in a long directory."""
    from weightzoo.generate.runner import generate

    out = tmp_path_factory.mktemp("zoos") / ("a-long-directory-name-" * 4) / LONG_NAME
    generate(toy_family.ToySpec(name=LONG_NAME, shard_models=3), out, progress=False)
    return out


@pytest.fixture(scope="module")
def long_report(long_zoo):
    return report(long_zoo)


def printed(capsys, *args: str) -> str:
    assert run(["report", *args]) == 0
    return capsys.readouterr().out


def test_the_report_prints_only_the_tables_the_zoo_supports(long_zoo, long_report, capsys):
    text = printed(capsys, str(long_zoo))
    assert long_report.tables and long_report.skipped  # the toy zoo has both
    assert not [line for line in text.splitlines() if "skipped" in line]
    for table in long_report.tables:
        assert table.title[:50] in text
    count = len(long_report.skipped)
    assert f"{count} tables this zoo does not support are left out" in text
    assert "--all" in text
    assert max(map(len, text.splitlines())) <= 100


def test_all_lists_every_skipped_table_with_its_reason(long_zoo, long_report, capsys):
    text = printed(capsys, str(long_zoo), "--all")
    assert max(map(len, text.splitlines())) <= 100
    # A skip line is wrapped: its continuation lines are indented; join them back.
    skips = re.findall(r"^skipped .*(?:\n  .*)*", text, flags=re.MULTILINE)
    assert len(skips) == len(long_report.skipped) and "does not support are left out" not in text
    for line, skipped in zip(skips, long_report.skipped, strict=True):
        assert line.startswith(f"skipped {skipped.table} for ")
        # Long words (the zoo's path) are broken across lines: compare without the spaces.
        assert "".join(line.split()) == "".join(skipped.line().split())
    assert {s.table for s in long_report.skipped} | {t.id for t in long_report.tables} == set(
        TABLE_IDS
    )


def test_help_says_what_all_does(capsys):
    with pytest.raises(SystemExit):
        run(["report", "--help"])
    assert re.search(
        r"--all\s+also list the tables the zoo cannot support", capsys.readouterr().out
    )


def test_every_printed_line_fits_100_columns(long_report):
    for show in (False, True):
        text = long_report.to_text(show_skipped=show)
        assert LONG_NAME in text.replace("\n  ", "").replace("\n", "")
        assert max(map(len, text.splitlines())) <= 100
    assert max(map(len, long_report.to_text(width=60).splitlines())) <= 60


def decimals(cell: str) -> set[str]:
    """The format of each number in a cell: its decimals, or ``e`` for scientific notation."""
    return {"e" if m[2] else str(len(m[1] or "")) for m in NUMBER.finditer(cell)}


def test_one_number_format_per_column_in_the_report(long_report):
    assert long_report.tables
    for table in long_report.tables:
        grid = table.grid()
        for i, column in enumerate(grid[0][1:], start=1):
            formats = set().union(*(decimals(line[i]) for line in grid[1:]))
            assert len(formats) <= 1, (table.id, column, [line[i] for line in grid[1:]])


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.floats(-1e5, 1e5, allow_nan=False),
            st.floats(-0.009, 0.009, allow_nan=False),
            st.integers(-1000, 1000),
            st.none(),
        ),
        min_size=1,
        max_size=12,
    ),
    paper=st.floats(0, 100),
)
def test_a_column_of_mixed_magnitudes_shares_one_format(values, paper):
    rows = [
        Row(f"r{i}", {"x": v}, paper={"x": paper} if i == 0 else None) for i, v in enumerate(values)
    ]
    rows.append(Row("q", {"x": {"p10": values[0] or 0.0, "p50": 0.5, "p90": 12.0}}))
    table = Table("t", "title", "weightzoo", "unit", ["x"], rows)
    cells = [line[1] for line in table.grid()[1:]]
    assert len(set().union(*map(decimals, cells))) == 1, cells
    assert None not in values or any(c.split()[0] == "-" for c in cells)  # missing: "-"


def test_counts_stay_integers_and_tiny_columns_go_scientific():
    assert number_format([3, 12, 1000]) == "d"
    assert number_format([0.004, 0.0001]) == ".2e"
    assert number_format([120.0, 0.004]) == ".3f"  # the small value keeps a digit
    assert number_format([98.5, 5.25]) == ".1f"
    assert number_format([float("nan")]) is None
    table = Table("t", "t", "weightzoo", "u", ["n", "acc"])
    table.rows = [Row("a", {"n": 12, "acc": 0.5}), Row("b", {"n": 3, "acc": 1.25})]
    assert [line[1:] for line in table.grid()[1:]] == [["12", "0.50"], ["3", "1.25"]]


@settings(max_examples=40, deadline=None)
@given(
    label=st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=90),
    columns=st.lists(
        st.text("abcdefgh_ ", min_size=1, max_size=60), min_size=1, max_size=15, unique=True
    ),
    note=st.text("abcdef /", max_size=400),
    width=st.integers(60, 120),
)
@example(label="L" * 90, columns=["c" * 60], note="", width=60)
def test_any_table_fits_its_width(label, columns, note, width):
    table = Table("t", "title " + note, "weightzoo " + note, "unit", columns, notes=[note])
    table.rows = [Row(label, {c: 1234.5678 * i for i, c in enumerate(columns)})]
    text = table.to_text(width)
    lines = text.splitlines()
    assert max(map(len, lines)) <= width
    # Each block of columns starts with a header line and repeats the row label.
    blocks = sum(line.startswith("  " + label[:10]) for line in lines)
    assert 1 <= blocks <= len(columns)
    for column in columns:
        assert column.strip()[:10] in text


def test_a_wide_table_is_split_into_even_blocks_that_repeat_the_labels():
    columns = [f"column {i:02d}" for i in range(10)]
    table = Table("t", "wide", "weightzoo", "u", columns)
    table.rows = [Row("first", dict.fromkeys(columns, 0.25)), Row("second", {})]
    lines = table.to_text(100).splitlines()[3:]
    headers = [line for line in lines if "column" in line]
    assert [h.count("column") for h in headers] == [5, 5]  # not 8 + 2
    assert sum(line.startswith("  first") for line in lines) == 2
    assert all(len(line) <= 100 for line in lines)
