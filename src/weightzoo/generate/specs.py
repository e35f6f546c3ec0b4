"""Registry of named zoo specs and the family that trains each.

Each family module exposes ``specs() -> list[ZooSpec]`` and a ``Family`` implementation; this
module maps names to them lazily, so listing names does not import torch-heavy training code.
"""

from __future__ import annotations

import difflib
import importlib
from functools import cache
from typing import Any

from weightzoo.errors import UnknownZooError
from weightzoo.generate.base import Family, ZooSpec

# family name -> (module with specs() and FAMILY)
_FAMILY_MODULES: dict[str, str] = {
    "mlds": "weightzoo.generate.mlds.family",
    "modelzoo": "weightzoo.generate.modelzoo.family",
    "trajectory": "weightzoo.generate.modelzoo.family",
    "property": "weightzoo.generate.property.family",
    "vit-pretrain": "weightzoo.generate.vit.family",
    "vit-finetune": "weightzoo.generate.vit.family",
    "pinn": "weightzoo.generate.pinn.family",
    "phase": "weightzoo.generate.phase.family",
    "tinylm": "weightzoo.generate.tinylm.family",
}


def _import_optional(module: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Only a missing family module is tolerated, never a broken import inside one.
        if exc.name and module.startswith(exc.name):
            return None
        raise


@cache
def all_specs() -> dict[str, ZooSpec]:
    """Every named spec, by name, in registration order."""
    out: dict[str, ZooSpec] = {}
    for module_name in dict.fromkeys(_FAMILY_MODULES.values()):
        module = _import_optional(module_name)
        if module is None:
            continue
        for spec in module.specs():
            out[spec.name] = spec
    return out


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
    """The :class:`Family` that trains ``spec`` (a spec or its manifest dict)."""
    family = spec["family"] if isinstance(spec, dict) else spec.family
    if family not in _FAMILY_MODULES:
        raise UnknownZooError(f"unknown zoo family {family!r}; known: {sorted(_FAMILY_MODULES)}")
    module = importlib.import_module(_FAMILY_MODULES[family])
    return module.family(family)
