"""The known zoos: name -> family, summary, and where the hub copy lives (if published).

This module is data only (no torch, no network), so that ``import weightzoo`` stays cheap.
The generating specs themselves live in :mod:`weightzoo.generate` and are looked up by the same
names; a zoo is *published* once its ``hub_repo`` and pinned ``revision`` are filled in here.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from weightzoo.errors import UnknownZooError

MODELZOO_DATASETS = (
    "mnist",
    "fashion-mnist",
    "svhn",
    "usps",
    "cifar10",
    "stl10",
    "cifar100",
    "tiny-imagenet",
)


@dataclass(frozen=True)
class CatalogEntry:
    """One known zoo.

    Attributes:
        name: the zoo's name (also its spec name and default directory name).
        family: ``mlds``, ``modelzoo`` or ``trajectory``.
        summary: one line for ``weightzoo list``.
        hub_repo: Hugging Face dataset repo id, or ``None`` while unpublished.
        revision: pinned commit of ``hub_repo`` (``None`` while unpublished).
    """

    name: str
    family: str
    summary: str
    hub_repo: str | None = None
    revision: str | None = None

    @property
    def published(self) -> bool:
        """Whether a hub copy is known."""
        return self.hub_repo is not None


def _entries() -> list[CatalogEntry]:
    entries = [
        CatalogEntry("mlds-ds1", "mlds", "MLDS DS1: GRUs mimicking 5 simple machines"),
        CatalogEntry("mlds-ds2", "mlds", "MLDS DS2: the DS1 machines with a backdoor trigger"),
        CatalogEntry("mlds-ds3", "mlds", "MLDS DS3: LSTMs mimicking 100 random automata"),
    ]
    return entries


def _known() -> dict[str, CatalogEntry]:
    return {entry.name: entry for entry in _entries()}


def entries() -> list[CatalogEntry]:
    """Every catalog entry, in listing order."""
    return list(_known().values())


def get_entry(name: str) -> CatalogEntry:
    """The entry called ``name``.

    Raises:
        UnknownZooError: with the closest names when ``name`` is unknown.
    """
    known = _known()
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownZooError(f"no known zoo named {name!r}.{hint} Run `weightzoo list` for all zoos.")
