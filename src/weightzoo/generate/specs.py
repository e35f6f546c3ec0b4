"""Named zoo specs, and the family that trains each, read from :mod:`weightzoo.families`.

Each family's spec module exposes ``specs() -> list[ZooSpec]``; the registry imports it only
when specs are listed, and a moved family's ``spec.py`` imports no torch.
"""

from __future__ import annotations

import difflib
from functools import cache
from typing import Any

from weightzoo import families
from weightzoo.errors import InvalidOptionError, UnknownZooError
from weightzoo.generate.base import Family, ZooSpec

# The registry's own table (not a copy), for code written before families.register existed.
_FAMILY_MODULES = families._MODULES


def _spec_module(name: str):
    try:
        return families.spec_module(name)
    except ModuleNotFoundError as exc:
        # Only a missing family module is tolerated, never a broken import inside one.
        module = _FAMILY_MODULES[name]
        if exc.name and module.startswith(exc.name):
            return None
        raise


@cache
def _specs(registered: tuple[tuple[str, str], ...]) -> dict[str, ZooSpec]:
    out: dict[str, ZooSpec] = {}
    seen: set[str] = set()  # a module that trains two families lists its specs once
    for name, path in registered:
        module = None if path in seen else _spec_module(name)
        seen.add(path)
        if module is None:
            continue
        for spec in module.specs():
            out[spec.name] = spec
    return out


def all_specs() -> dict[str, ZooSpec]:
    """Every named spec, by name, in registration order (families registered later included)."""
    return _specs(tuple(_FAMILY_MODULES.items()))


def get_spec(name: str) -> ZooSpec:
    """The named spec.

    Raises:
        UnknownZooError: with the closest known names.
    """
    specs = all_specs()
    if name in specs:
        return specs[name]
    close = difflib.get_close_matches(name, list(specs), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownZooError(
        f"no zoo spec named {name!r}.{hint} Run `weightzoo list` to see all {len(specs)} specs."
    )


def family_for(spec: ZooSpec | dict[str, Any]) -> Family:
    """The :class:`Family` that trains ``spec`` (a spec or its manifest dict).

    Raises:
        UnknownZooError: for a family that is not registered.
        InvalidOptionError: for a spec that is not of the class its family trains.
    """
    name = spec["family"] if isinstance(spec, dict) else spec.family
    family = families.family(name)
    bound = getattr(family, "spec_class", None) if isinstance(family, Family) else None
    if isinstance(spec, ZooSpec) and bound is not None and not isinstance(spec, bound):
        wanted = ", ".join(c.__name__ for c in (bound if isinstance(bound, tuple) else (bound,)))
        raise InvalidOptionError(
            f"spec {spec.name!r} is a {type(spec).__name__} but family {name!r} trains "
            f"{wanted}; build it as one of those, or give it the family of its own class"
        )
    return family
