"""Convert existing model zoos into the weightzoo format.

``import_zoo(kind, src, dest)`` dispatches to one module per source format:

* ``modelzoo``: the Model Zoos paper's Ray Tune trial directories (:mod:`.modelzoo`);
* ``cnn-zoo``: the Small CNN Zoo of Unterthiner et al. (:mod:`.cnn_zoo`);
* ``mlds``: MLDS per-network PyTorch or JSON files (:mod:`.mlds`).

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

    Rerunning into the same ``dest`` with unchanged source files resumes: shards already
    written are kept. A changed source, or a ``dest`` holding anything else, is refused.

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


__all__ = ["KINDS", "import_zoo"]
