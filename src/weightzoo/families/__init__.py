"""The family registry: every zoo family's name and the module that holds its code.

A family is one package, ``weightzoo/families/<name>/``: ``spec.py`` (torch-free: its specs,
grid and catalog listings), ``family.py`` (its :class:`~weightzoo.generate.base.Family`,
``FAMILY``), and the modules those use (``model.py``, ``data.py``, ``train.py``,
``landscape.py``...). This module maps each name to its module path and imports a family only
when asked, so listing names imports nothing and listing specs imports no torch.

A family from outside weightzoo joins with :func:`register`; it may be such a package, or one
module holding ``specs()`` and ``FAMILY`` (or a ``family(name)`` factory). A manifest's
``family`` only ever picks among registered names, so a zoo cannot make weightzoo import a
module of its choosing.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from weightzoo.errors import InvalidOptionError, UnknownZooError

if TYPE_CHECKING:
    from weightzoo.generate.base import Family

__all__ = [
    "Listing",
    "family",
    "family_hooks",
    "listings",
    "names",
    "register",
    "spec_module",
    "unregister",
]

# family name -> the module (a package, or one module) that holds its code, in listing order
_MODULES: dict[str, str] = {
    "mlds": "weightzoo.families.mlds",
    "modelzoo": "weightzoo.families.modelzoo",
    "trajectory": "weightzoo.families.modelzoo",
    "property": "weightzoo.families.property",
    "vit": "weightzoo.families.vit",
    "vit-pretrain": "weightzoo.families.vit",
    "vit-finetune": "weightzoo.families.vit",
    "pinn": "weightzoo.families.pinn",
    "phase": "weightzoo.families.phase",
    "tinylm": "weightzoo.families.tinylm",
}
_BUILT_IN = frozenset(_MODULES)
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_MODULE_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


@dataclass(frozen=True)
class Listing:
    """A zoo that a family lists in the catalog (``weightzoo list``, ``weightzoo fetch``).

    Attributes:
        name: the zoo's name (its spec's name).
        summary: one line for ``weightzoo list``.
        data: the outside data sets generation reads (empty: generated offline).
        family: the family that trains it, where a package trains several (empty: the
            registry name the package is listed under).
    """

    name: str
    summary: str
    data: tuple[str, ...] = ()
    family: str = ""


def names() -> list[str]:
    """Every registered family name, in listing order (imports nothing)."""
    return list(_MODULES)


def register(name: str, module: str) -> None:
    """Make the family ``name`` known, its code in ``module`` (an importable module path).

    Registering the same module again is a no-op.

    Raises:
        InvalidOptionError: for a malformed name or module path, or a name already taken by
            another module.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidOptionError(
            f"family name {name!r} is not lower-case letters, digits, '-' and '_'; rename it"
        )
    if not isinstance(module, str) or not _MODULE_PATH.fullmatch(module):
        raise InvalidOptionError(
            f"family {name!r}: {module!r} is not a module path such as 'mypackage.myfamily'"
        )
    known = _MODULES.get(name)
    if known is not None and known != module:
        raise InvalidOptionError(
            f"family name {name!r} is taken by the module {known}; register {module} under "
            "another name"
        )
    _MODULES[name] = module


def unregister(name: str) -> None:
    """Forget a family that :func:`register` added (a no-op for an unknown name).

    Raises:
        InvalidOptionError: for one of weightzoo's own families.
    """
    if name in _BUILT_IN:
        raise InvalidOptionError(f"family {name!r} is one of weightzoo's own and stays registered")
    _MODULES.pop(name, None)


def _module(name: str) -> str:
    """The module path of a registered family.

    Raises:
        UnknownZooError: for a name that is not registered.
    """
    if not isinstance(name, str) or name not in _MODULES:
        raise UnknownZooError(f"unknown zoo family {name!r}; known: {sorted(_MODULES)}")
    return _MODULES[name]


def _part(name: str, part: str) -> ModuleType:
    """A family's ``part`` module (``spec``, ``family``): the package's, or the one module."""
    module = importlib.import_module(_module(name))
    if hasattr(module, "__path__"):  # a package
        return importlib.import_module(f"{module.__name__}.{part}")
    return module


def spec_module(name: str) -> ModuleType:
    """The module with the family's ``specs()`` (and ``listings()``): torch-free for a package.

    Raises:
        UnknownZooError: for a name that is not registered.
    """
    return _part(name, "spec")


def family(name: str) -> Any:
    """The family object of ``name``: a :class:`~weightzoo.generate.base.Family`.

    A package that trains several names keeps them in ``FAMILIES`` (name to family), one
    that trains one name in ``FAMILY``; a family from outside that keeps a ``family(name)``
    factory gives whatever it returns.

    Raises:
        UnknownZooError: for a name that is not registered.
    """
    module = _part(name, "family")
    found = getattr(module, "FAMILIES", {}).get(name, getattr(module, "FAMILY", None))
    return found if found is not None else module.family(name)


def family_hooks(name: Any) -> Family | None:
    """The family whose hooks an engine asks first, or ``None``.

    ``None`` for a name that is not registered (an imported zoo's), and for a family whose
    object is not a ``Family``.

    Args:
        name: a manifest's ``family`` (outside data: any value).
    """
    if not isinstance(name, str) or name not in _MODULES:
        return None
    # the base class is imported only here: the registry itself stays free of the generator
    from weightzoo.generate.base import Family

    found = family(name)
    return found if isinstance(found, Family) else None


def listings() -> list[tuple[str, Listing]]:
    """``(family name, listing)`` of every zoo the registered families list, in listing order.

    Reads only the ``spec.py`` modules (torch-free).
    """
    out: list[tuple[str, Listing]] = []
    seen: set[str] = set()  # a package that trains two names lists its zoos once
    for name, module in list(_MODULES.items()):
        if module in seen:
            continue
        seen.add(module)
        listed = getattr(spec_module(name), "listings", None)
        found = listed() if listed is not None else []
        out += [(listing.family or name, listing) for listing in found]
    return out
