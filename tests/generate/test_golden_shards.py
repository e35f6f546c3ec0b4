"""The same spec writes byte-identical shards: each family's small spec against its hashes.

The hashes in tests/data/shard_hashes.json were recorded with
``python tests/helpers/golden_specs.py``; a change of the code's layout must leave every byte of
every shard as it was. A deliberate change of what a family writes records them again (and says so
in the changelog).
"""

from __future__ import annotations

import json

import pytest

from helpers.golden_specs import GOLDEN, HASHES, SLOW, generate_small

RECORDED = json.loads(HASHES.read_text())


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in GOLDEN]
)
def test_a_spec_writes_the_recorded_shards_byte_for_byte(name, tmp_path):
    assert generate_small(name, tmp_path / name) == RECORDED[name]


def _families(spec) -> set[str]:
    """A spec's family, and its groups' families for a grouped spec."""
    groups = spec.groups() if hasattr(spec, "groups") else []
    return {spec.family} | {family for _, group in groups for family in _families(group)}


def test_every_family_has_a_fingerprinted_spec():
    from weightzoo.generate.specs import _FAMILY_MODULES, get_spec

    covered = set().union(*(_families(get_spec(name)) for name in GOLDEN))
    missing = set(_FAMILY_MODULES) - covered - {"toy"}  # toy: the test suite's own family
    assert not missing, f"families without a fingerprinted spec: {sorted(missing)}"
