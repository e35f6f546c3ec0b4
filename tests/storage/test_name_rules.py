"""Names that become file or directory names of a zoo: one rule each, one line when refused."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weightzoo.errors import InvalidOptionError, ManifestError
from weightzoo.storage import sidecar
from weightzoo.storage.groups import check_group_name, group_path
from weightzoo.storage.manifest import check_name

GROUP_RULE = (
    "is not allowed: use lower-case letters, digits, '_' and '-', starting with a letter or digit"
)
SIDE_FILE_RULE = "must be 1-100 letters, digits, '_', '.' or '-', not starting with '.', '_' or '-'"
# Names near every edge of both rules: case, leading punctuation, path parts, length.
NAMES = st.one_of(
    st.text(alphabet="aZ09_.-/\\ \x00é", max_size=6),
    st.text(alphabet="a", min_size=98, max_size=102),
    st.sampled_from(["", ".", "..", "a/b", "ok", "Ok", "-a", "_a", "a_b-c", "a.b"]),
)


@given(NAMES)
def test_a_group_name_passes_exactly_when_its_pattern_matches_whole(name):
    if re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
        assert check_group_name(name) == name
        assert group_path(name) == f"groups/{name}"
    else:
        with pytest.raises(ManifestError) as info:
            check_group_name(name)
        assert str(info.value) == f"group name {name!r} {GROUP_RULE}"


@given(NAMES)
def test_a_side_file_name_passes_exactly_when_its_pattern_matches_whole(name):
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        assert sidecar._check_name(name) == name
    else:
        with pytest.raises(InvalidOptionError) as info:
            sidecar._check_name(name)
        assert str(info.value) == f"side-file name {name!r} {SIDE_FILE_RULE}"
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", [None, 3, b"abc", ["abc"]])
def test_a_name_that_is_no_string_is_refused_with_its_repr(value):
    with pytest.raises(ManifestError, match=re.escape(f"group name {value!r} is not allowed")):
        check_group_name(value)
    with pytest.raises(KeyError, match="thing"):
        check_name(value, re.compile(r".*"), "thing", "is wrong", KeyError)


def test_a_match_of_part_of_the_name_is_not_enough():
    pattern = re.compile(r"[a-z]+")
    assert check_name("abc", pattern, "name", "is wrong", ValueError) == "abc"
    for name in ("abc1", "1abc", "ab c"):
        with pytest.raises(ValueError, match=re.escape(f"name {name!r} is wrong")):
            check_name(name, pattern, "name", "is wrong", ValueError)
