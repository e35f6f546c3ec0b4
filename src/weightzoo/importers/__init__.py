"""Convert existing model zoos into the weightzoo format.

``import_zoo(kind, src, dest)`` dispatches to one module per source format:

* ``cnn-zoo``: the Small CNN Zoo of Unterthiner et al. (:mod:`.cnn_zoo`);
* a family's name: the importer of that family's published zoos
  (:meth:`~weightzoo.generate.base.Family.importer`; ``mlds``: MLDS per-network PyTorch or JSON
  files, :mod:`weightzoo.families.mlds.importer`; ``modelzoo``: the Model Zoos paper's Ray Tune
  trial directories, :mod:`weightzoo.families.modelzoo.importer`).

Every importer treats what it reads as hostile data: it loads ``.pt`` files with
``torch.load(weights_only=True)`` only and refuses anything that would need unpickling
(:class:`~weightzoo.errors.UnsafeFileError`), reads no file that links out of SRC (or loops) and
writes no DEST inside SRC (:class:`~weightzoo.errors.SourcePathError`), and turns malformed
JSON, CSV, ``.npy`` headers and tensors into one-line named errors before allocating anything
they declare. The imported zoo's spec records ``source_sha256``, one digest of every file read,
so a changed source is another zoo; DEST must be absent, empty, or hold the same imported zoo
(then the import resumes). Models are split 70/15/15 with the generator's stratified rule and
written through the one block writer, :func:`weightzoo.blocks.write_block`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from weightzoo import families
from weightzoo.errors import InvalidOptionError
from weightzoo.storage.manifest import Manifest

Importer = Callable[[str | os.PathLike[str], str | os.PathLike[str]], Manifest]

_OWN_KINDS = ("cnn-zoo",)  # source formats of this package, not of a family


def kinds() -> tuple[str, ...]:
    """Every import kind: the source formats of this package, then each family's importer.

    Imports every registered family (to ask it for an importer).
    """
    offered = [
        name
        for name in families.names()
        if name not in _OWN_KINDS and _family_importer(name) is not None
    ]
    return (*_OWN_KINDS, *offered)


def _family_importer(kind: str) -> Importer | None:
    """The importer a registered family offers under its name, or ``None``."""
    hooks = families.family_hooks(kind)
    return None if hooks is None else hooks.importer()


def _importer(kind: str) -> Importer:
    if kind == "cnn-zoo":
        from weightzoo.importers.cnn_zoo import import_cnn_zoo

        return import_cnn_zoo
    found = _family_importer(kind)
    if found is not None:
        return found
    raise InvalidOptionError(f"unknown import kind {kind!r}; choose one of {', '.join(kinds())}")


def import_zoo(kind: str, src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Convert the zoo at ``src`` (a ``kind`` layout) into a weightzoo zoo at ``dest``.

    Rerunning into the same ``dest`` with unchanged source files resumes: shards already
    written are kept. A changed source, or a ``dest`` holding anything else, is refused.

    Args:
        kind: ``cnn-zoo`` or a family with an importer (``mlds``, ``modelzoo``): see
            :func:`kinds`.
        src: the source directory.
        dest: the zoo directory to write.

    Returns:
        ``dest`` as a path.

    Raises:
        InvalidOptionError: for an unknown kind.
        DataFilesMissingError: if ``src`` lacks the files of that layout.
        UnsafeFileError: if a file would need unpickling of arbitrary objects.
        UnreadableFileError: for an empty, truncated or malformed input file (JSON, CSV,
            ``.npy`` header, tensor, metric stored as text).
        LayoutError: for tensors whose names or shapes differ from the zoo's layout.
        SourcePathError: if ``dest`` lies inside ``src``, or an input file links out of it or
            is a link loop.
        InvalidOptionError: if ``dest`` is a file or a non-empty directory without a zoo.
        SpecMismatchError: if ``dest`` holds a zoo imported from other content.
    """
    _importer(kind)(src, dest)
    return Path(dest)


__all__ = ["Importer", "import_zoo", "kinds"]
