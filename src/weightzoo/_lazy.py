"""Module attributes imported on first use (PEP 562), so that importing a package stays light."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(
    module: str, names: Mapping[str, str], submodules: Collection[str] = ()
) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``names`` (and ``submodules``) when first asked for.

    Use it as ``__getattr__ = lazy_getattr(__name__, {"Thing": "package.things"})``. A name
    found is kept in the module's namespace, so that later lookups skip the function.

    Args:
        module: the module's ``__name__``.
        names: ``{attribute: the module that defines it}``.
        submodules: submodules of ``module`` that an attribute lookup imports
            (``package.sub`` after a plain ``import package``).

    Returns:
        The function to assign to the module's ``__getattr__``; for any other name it raises
        the ``AttributeError`` Python raises for a missing module attribute.
    """

    def attribute(name: str) -> Any:
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            setattr(sys.modules[module], name, value)
            return value
        if name in submodules:
            return importlib.import_module(f"{module}.{name}")
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return attribute
