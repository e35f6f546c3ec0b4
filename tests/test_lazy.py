"""``lazy_getattr``: a module's attributes imported on first use, then kept."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import weightzoo
from weightzoo import landscape
from weightzoo._lazy import lazy_getattr


@pytest.fixture
def package(monkeypatch) -> types.ModuleType:
    """A module ``pkg`` whose ``dumps`` comes from :mod:`json` and ``sub`` is its submodule."""
    pkg = types.ModuleType("pkg")
    pkg.__path__ = []  # a package, so that ``pkg.sub`` can be imported
    sub = types.ModuleType("pkg.sub")
    monkeypatch.setitem(sys.modules, "pkg", pkg)
    monkeypatch.setitem(sys.modules, "pkg.sub", sub)
    pkg.__getattr__ = lazy_getattr("pkg", {"dumps": "json"}, submodules=("sub",))
    return pkg


def test_a_name_is_imported_once_and_kept_in_the_module(package):
    import json

    assert "dumps" not in vars(package)
    assert package.dumps is json.dumps
    assert vars(package)["dumps"] is json.dumps  # later lookups skip __getattr__
    assert package.sub is sys.modules["pkg.sub"]


@settings(max_examples=40, deadline=None)
@given(st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True))
def test_any_other_name_raises_the_usual_attribute_error(name):
    module = types.ModuleType("pkg")
    if name in ("dumps", "sub") or name in dir(module):
        return
    module.__getattr__ = lazy_getattr("pkg", {"dumps": "json"}, submodules=("sub",))
    with pytest.raises(AttributeError) as info:
        getattr(module, name)
    assert str(info.value) == f"module 'pkg' has no attribute {name!r}"
    assert not hasattr(module, name)


def test_the_packages_use_it_and_keep_their_listing():
    assert weightzoo.__getattr__.__qualname__ == landscape.__getattr__.__qualname__
    assert {"ZooDataset", "fetch", "features", "Zoo"} <= set(dir(weightzoo))
    assert landscape.training_batches.__module__ == "weightzoo.landscape.zoo_metrics"
    with pytest.raises(AttributeError, match="module 'weightzoo' has no attribute 'nothing'"):
        weightzoo.nothing  # noqa: B018
    with pytest.raises(AttributeError, match="'weightzoo.landscape' has no attribute 'nothing'"):
        landscape.nothing  # noqa: B018


def test_importing_weightzoo_imports_no_torch():
    code = "import sys, weightzoo; weightzoo.Zoo; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
