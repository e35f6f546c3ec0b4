"""The catalog (light, no generator import) names exactly the zoos the generator can build."""

import pytest

from weightzoo import catalog
from weightzoo.errors import UnknownZooError
from weightzoo.generate.specs import all_specs


def _real_specs():
    # conftest registers a toy family for the storage tests; it is not a published zoo
    return {name: spec for name, spec in all_specs().items() if spec.family != "toy"}


def test_catalog_and_specs_name_the_same_zoos():
    assert {e.name for e in catalog.entries()} == set(_real_specs())


def test_catalog_families_match_specs():
    families = {name: spec.family for name, spec in _real_specs().items()}
    assert all(entry.family == families[entry.name] for entry in catalog.entries())


def test_unknown_name_suggests_close_ones():
    with pytest.raises(UnknownZooError, match="modelzoo-mnist-cnn-s-seed"):
        catalog.get_entry("modelzoo-mnist-cnn-s-sed")
