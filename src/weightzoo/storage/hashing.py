"""Streamed sha256 of files (never reads a whole file into memory)."""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO

_BLOCK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def sha256_stream(handle: BinaryIO) -> str:
    """Hex sha256 of what remains of an open binary file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    while block := handle.read(_BLOCK):
        digest.update(block)
    return digest.hexdigest()
