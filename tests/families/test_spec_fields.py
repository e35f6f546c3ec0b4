"""Spec fields several families share: their part in a spec's identity, and how groups copy them."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightzoo import families
from weightzoo.families._fields import ImageSplitFields, LandscapeFields
from weightzoo.families.modelzoo.spec import ModelZooSpec, TrajectorySpec
from weightzoo.families.phase.spec import PhaseSpec
from weightzoo.families.pinn.spec import PINNSpec
from weightzoo.families.vit.spec import PRESETS, ViTZooSpec


def _named_specs() -> list:
    """Every version-1 and grouped spec the registered families name."""
    return [spec for name in families.names() for spec in families.spec_module(name).specs()]


def _first_of_each_class(mixin: type) -> list:
    """One named spec per spec class that mixes ``mixin`` in."""
    found: dict[type, object] = {}
    for spec in _named_specs():
        if isinstance(spec, mixin):
            found.setdefault(type(spec), spec)
    return list(found.values())


IMAGE_SPECS = _first_of_each_class(ImageSplitFields)
LANDSCAPE_SPECS = _first_of_each_class(LandscapeFields)


def _changed(value: object) -> object:
    """Another value of the same kind (a string, an integer, a float)."""
    if isinstance(value, str):
        return value + "-other"
    if isinstance(value, int):
        return value + 1
    return value / 2


def test_the_shared_fields_are_mixed_into_the_families_that_read_them():
    assert {type(s) for s in IMAGE_SPECS} == {ModelZooSpec, TrajectorySpec, PhaseSpec}
    assert {type(s) for s in LANDSCAPE_SPECS} == {PINNSpec, PhaseSpec}


@pytest.mark.parametrize("spec", IMAGE_SPECS, ids=lambda s: type(s).__name__)
def test_a_manifest_holds_every_image_field_a_reader_needs(spec):
    data = spec.to_dict()
    identity = [f.name for f in dataclasses.fields(ImageSplitFields) if f.compare]
    assert identity and all(data[name] == getattr(spec, name) for name in identity)
    assert "data_dir" not in data


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        (spec, f.name)
        for mixin, specs in ((ImageSplitFields, IMAGE_SPECS), (LandscapeFields, LANDSCAPE_SPECS))
        for spec in specs
        for f in dataclasses.fields(mixin)
        if f.compare
    ],
    ids=lambda value: value if isinstance(value, str) else type(value).__name__,
)
def test_every_shared_field_but_the_data_dir_is_part_of_the_identity(spec, name):
    other = dataclasses.replace(spec, **{name: _changed(getattr(spec, name))})
    assert other != spec
    assert other.fingerprint() != spec.fingerprint()
    assert other.to_dict()[name] == getattr(other, name)


DATA_DIR_SPECS = [s for s in _named_specs() if hasattr(s, "data_dir")]


@settings(max_examples=40, deadline=None)
@given(spec=st.sampled_from(DATA_DIR_SPECS), where=st.text(min_size=1, max_size=20))
def test_the_data_dir_is_never_identity(spec, where):
    moved = spec.override(data_dir=where)
    assert moved == spec and moved.fingerprint() == spec.fingerprint()
    assert moved.data_dir == where
    assert "data_dir" not in moved.to_dict()


@settings(max_examples=25, deadline=None)
@given(
    architecture=st.sampled_from(sorted(PRESETS)),
    checkpoint_every=st.integers(1, 10),
    split_seed=st.integers(0, 2**31 - 1),
    shard_models=st.integers(1, 64),
    diverge_threshold=st.floats(1.0, 1e6),
    data_dir=st.none() | st.text(min_size=1, max_size=12),
)
def test_every_group_of_a_vit_zoo_has_the_zoos_shared_fields(**shared):
    zoo = ViTZooSpec(name="vit-test", **shared)
    groups = zoo.groups()
    assert [name for name, _ in groups] == ["pretrain", "finetune-linear", "finetune-mlp"]
    for _, group in groups:
        assert {key: getattr(group, key) for key in shared} == shared


def test_a_change_of_a_shared_vit_field_changes_every_groups_print():
    zoo = ViTZooSpec(name="vit-test")
    other = dataclasses.replace(zoo, checkpoint_every=zoo.checkpoint_every + 1)
    before = [g.fingerprint() for _, g in zoo.groups()]
    after = [g.fingerprint() for _, g in other.groups()]
    assert all(a != b for a, b in zip(before, after, strict=True))
    assert other.fingerprint() != zoo.fingerprint()
