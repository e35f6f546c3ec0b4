"""Shared fixtures: small zoos written with the real writer and runner (never committed)."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import toy_family
from weightzoo import families


@pytest.fixture(autouse=True, scope="session")
def _register_toy_family():
    """Make the toy family known to the registry, as a family from outside weightzoo is."""
    families.register("toy", "helpers.toy_family")
    yield
    families.unregister("toy")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Test models are tiny: extra threads gain nothing and spin-wait on a shared machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def toy_spec() -> toy_family.ToySpec:
    return toy_family.ToySpec(shard_models=3)


@pytest.fixture
def toy_zoo(tmp_path, toy_spec):
    """A complete toy zoo of 12 models x 4 checkpoints, 3 models per shard."""
    from weightzoo.generate.runner import generate

    out = tmp_path / "toy"
    generate(toy_spec, out, progress=False)
    return out


@pytest.fixture
def grouped_spec() -> toy_family.ToyGroupedSpec:
    return toy_family.ToyGroupedSpec(shard_models=3)


@pytest.fixture
def grouped_zoo(tmp_path, grouped_spec):
    """A grouped toy zoo: groups ``narrow`` (width 3) and ``wide`` (width 6), 6 models each."""
    from weightzoo.generate.runner import generate

    out = tmp_path / "grouped"
    generate(grouped_spec, out, progress=False)
    return out


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def named_zoos(tmp_path_factory, _register_toy_family):
    """Small zoos under one root, by the names the named families look for.

    ``mlds-ds1``/``mlds-ds2``/``mlds-ds3`` are tiny real MLDS zoos; ``toy``,
    ``modelzoo-digits-cnn-s-seed`` and ``trajectory-digits-mlp`` are toy zoos under those names.
    """
    from families.mlds.test_mlds_family import tiny
    from weightzoo.generate.runner import generate

    root = tmp_path_factory.mktemp("zoos") / "zoos"
    for name in ("toy", "modelzoo-digits-cnn-s-seed", "trajectory-digits-mlp"):
        generate(toy_family.ToySpec(name=name, shard_models=3), root / name, progress=False)
    for subset in ("ds1", "ds2", "ds3"):
        generate(tiny(subset), root / f"mlds-{subset}", progress=False)
    return root
