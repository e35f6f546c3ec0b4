"""Convert existing model zoos into the weightzoo format.

``import_zoo(kind, src, dest)`` dispatches to one module per source format:

* ``modelzoo``: the Model Zoos paper's Ray Tune trial directories (:mod:`.modelzoo`);
* ``cnn-zoo``: the Small CNN Zoo of Unterthiner et al. (:mod:`.cnn_zoo`);
* ``mlds``: MLDS per-network PyTorch or JSON files (:mod:`.mlds`).

Every importer loads ``.pt`` files with ``torch.load(weights_only=True)`` only and refuses
anything that would need unpickling (:class:`~weightzoo.errors.UnsafeFileError`), reads no
file that links out of SRC and writes no DEST inside SRC
(:class:`~weightzoo.errors.SourcePathError`), splits models 70/15/15 with the generator's
stratified rule, and writes through the one block writer, :func:`weightzoo.blocks.write_block`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from weightzoo.errors import InvalidOptionError
from weightzoo.storage.manifest import Manifest

KINDS = ("modelzoo", "cnn-zoo", "mlds")


def _importer(kind: str) -> Callable[[str | os.PathLike[str], str | os.PathLike[str]], Manifest]:
    if kind == "modelzoo":
        from weightzoo.importers.modelzoo import import_modelzoo

        return import_modelzoo
    if kind == "cnn-zoo":
        from weightzoo.importers.cnn_zoo import import_cnn_zoo

        return import_cnn_zoo
    if kind == "mlds":
        from weightzoo.importers.mlds import import_mlds

        return import_mlds
    raise InvalidOptionError(f"unknown import kind {kind!r}; choose one of {', '.join(KINDS)}")


def import_zoo(kind: str, src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Convert the zoo at ``src`` (a ``kind`` layout) into a weightzoo zoo at ``dest``.

    Rerunning into the same ``dest`` resumes: shards already written are kept.

    Args:
        kind: ``modelzoo``, ``cnn-zoo`` or ``mlds``.
        src: the source directory.
        dest: the zoo directory to write.

    Returns:
        ``dest`` as a path.

    Raises:
        InvalidOptionError: for an unknown kind.
        DataFilesMissingError: if ``src`` lacks the files of that layout.
        UnsafeFileError: if a file would need unpickling of arbitrary objects.
        UnreadableFileError: for an empty or truncated input file.
        SourcePathError: if ``dest`` lies inside ``src``, or an input file links out of it.
    """
    _importer(kind)(src, dest)
    return Path(dest)


__all__ = ["KINDS", "import_zoo"]
