"""The contract every registered family keeps, run over each one the registry knows.

A family added to the registry (or registered from outside, as in
``tests/families/test_sine_family.py``) is checked here without a line of its own: its ``spec.py``
lists and sizes its zoos without torch, its closed-form estimate is the size of the layout it
writes, and its plans and checkpoints are in the order the runner relies on.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from weightzoo import families
from weightzoo.generate.base import Family, GroupedSpec

# the registry's families, each package once (one package may train several names)
FAMILIES = list({families._MODULES[name]: name for name in reversed(families.names())}.values())[
    ::-1
]


def _offline_specs(name: str) -> list:
    """The family's named specs that generate without outside data (plans need no files)."""
    module = families.spec_module(name)
    offline = {listing.name for listing in module.listings() if not listing.data}
    return [spec for spec in module.specs() if spec.name in offline]


def test_every_spec_module_lists_and_sizes_its_zoos_without_torch():
    code = (
        "import json, sys; from weightzoo import families; out = {}\n"
        f"for name in {FAMILIES!r}:\n"
        "    module = families.spec_module(name)\n"
        "    out[name] = [[s.name, s.estimate()['models']] for s in module.specs()]\n"
        "    module.listings()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(json.dumps(out))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    sizes = json.loads(result.stdout)
    assert set(sizes) == set(FAMILIES)
    assert all(sizes[name] and all(models > 0 for _, models in sizes[name]) for name in sizes)


@pytest.mark.parametrize("name", FAMILIES)
def test_listings_name_specs_of_registered_families(name):
    module = families.spec_module(name)
    specs = {spec.name: spec for spec in module.specs()}
    listed = [listing.name for listing in module.listings()]
    assert listed and set(listed) <= set(specs), set(listed) - set(specs)
    assert all(spec.family in families.names() for spec in specs.values())


@pytest.mark.parametrize("name", FAMILIES)
def test_the_family_object_binds_its_spec_class(name):
    family = families.family(name)
    assert isinstance(family, Family)
    assert families.family_hooks(name) is family
    for spec in families.spec_module(name).specs():
        parts = spec.groups() if isinstance(spec, GroupedSpec) else [(None, spec)]
        for _, part in parts:
            assert isinstance(part, families.family(part.family).spec_class), part.name


@pytest.mark.parametrize("name", FAMILIES)
def test_the_closed_form_estimate_is_the_layouts_size(name):
    specs = _offline_specs(name)
    assert specs, f"family {name} lists no zoo that generates offline"
    for spec in specs:
        family = families.family(spec.family)
        assert spec.estimate() == family.estimate(spec), spec.name


@pytest.mark.parametrize("name", FAMILIES)
def test_plans_are_in_model_id_order_and_checkpoints_sorted(name):
    for spec in _offline_specs(name):
        parts = spec.groups() if isinstance(spec, GroupedSpec) else [(None, spec)]
        for _, part in parts:
            family = families.family(part.family)
            plans = family.plan(part)
            assert [p.model_id for p in plans] == list(range(len(plans))), part.name
            epochs = family.checkpoint_epochs(part)
            assert epochs == sorted(set(epochs)) and epochs[0] >= 0, part.name


def test_a_family_without_checkpoint_epochs_asks_its_spec():
    from dataclasses import dataclass

    from weightzoo.generate.base import ZooSpec

    @dataclass(frozen=True)
    class Plain(ZooSpec):
        family: str = "plain"

    @dataclass(frozen=True)
    class Epochs(Plain):
        epochs: int = 3

        def checkpoint_epochs(self) -> list[int]:
            return list(range(0, self.epochs + 1, 2))

    class Bare(Family):
        name = "plain"
        spec_class = Plain

    assert Bare().checkpoint_epochs(Epochs(name="e", epochs=5)) == [0, 2, 4]
    with pytest.raises(NotImplementedError, match="Bare must define checkpoint_epochs"):
        Bare().checkpoint_epochs(Plain(name="p"))
