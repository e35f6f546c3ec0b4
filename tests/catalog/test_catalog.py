"""The catalog (light, no generator import) names every generated zoo, and where each comes from."""

import subprocess
import sys

import pytest

from weightzoo import catalog
from weightzoo.errors import UnknownZooError
from weightzoo.generate.specs import all_specs


def _real_specs():
    # conftest registers a toy family for the storage tests; it is not a published zoo
    return {name: spec for name, spec in all_specs().items() if spec.family != "toy"}


def test_every_spec_is_in_the_catalog_and_generated_entries_have_a_spec():
    specs = _real_specs()
    names = {e.name for e in catalog.entries()}
    assert set(specs) <= names
    for entry in catalog.entries():
        # generation is a source exactly where weightzoo has the spec
        assert (entry.generation is not None) == (entry.name in specs), entry.name
        # a zoo weightzoo cannot generate must have something to download
        assert entry.sources, entry.name


def test_catalog_families_match_specs():
    families = {name: spec.family for name, spec in _real_specs().items()}
    assert all(
        entry.family == families[entry.name]
        for entry in catalog.entries()
        if entry.name in families
    )


def test_unknown_name_suggests_close_ones():
    with pytest.raises(UnknownZooError, match="modelzoo-mnist-cnn-s-seed"):
        catalog.get_entry("modelzoo-mnist-cnn-s-sed")


def test_sources_are_in_fetch_order_hub_release_generation():
    entry = catalog.get_entry("modelzoo-cifar10-cnn-m-seed")
    assert [s.kind for s in entry.sources] == ["zenodo", "generate"]
    assert entry.release.record == "6620868" and entry.generation.data == ("cifar10",)
    published = catalog.CatalogEntry(
        "x", "modelzoo", "x", hub_repo="lab/x", release=entry.release, generation=entry.generation
    )
    assert [s.kind for s in published.sources] == ["hub", "zenodo", "generate"]
    assert catalog.get_entry("mlds-ds1").generation.offline
    assert [s.kind for s in catalog.get_entry("smallcnnzoo-svhn").sources] == ["bucket"]


@pytest.mark.parametrize(
    ("name", "fits", "misfits"),
    [
        # one record holds CNN-s (small) and CNN-m (large) zips of every configuration
        (
            "modelzoo-cifar10-cnn-m-seed",
            ["cifar_large_seed.zip", "CIFAR10-CNN_M-Seed.zip"],
            ["cifar_small_seed.zip", "cifar_large_hyp_rand.zip", "cifar_large_hyp_fix.zip"],
        ),
        (
            "modelzoo-cifar10-cnn-s-hyp-10-rand",
            ["cifar_small_hyp_rand.zip", "cifar10_cnn_s_hyp-10-rand.zip"],
            ["cifar_large_hyp_rand.zip", "cifar_small_hyp_fix.zip", "cifar_small_seed.zip"],
        ),
        # a record of one architecture: the configuration decides
        (
            "modelzoo-mnist-cnn-s-hyp-10-fix",
            ["mnist_hyp_fix.zip", "cnn_mnist_hyp-10-fixed.zip"],
            ["mnist_seed.zip", "mnist_hyp_rand.zip"],
        ),
        ("modelzoo-cifar10-cnn-sample", ["cifar10_cnn_sample_ep21-25.zip"], ["cifar10.zip"]),
    ],
)
def test_file_names_map_to_zoos_by_their_tokens(name, fits, misfits):
    files = catalog.get_entry(name).release.files
    assert all(files.fits(key) for key in fits)
    assert not any(files.fits(key) for key in misfits)


def test_the_catalog_imports_neither_torch_nor_the_network_stack():
    code = (
        "import sys, weightzoo.catalog as c; c.entries(); "
        "assert not {'torch', 'httpx2', 'huggingface_hub'} & set(sys.modules), sys.modules.keys()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
