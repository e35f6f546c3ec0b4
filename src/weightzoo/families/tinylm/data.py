"""The tiny-LM zoos' text: an offline byte-level corpus, its split, OpenWebText, windows.

The corpus is the English text of the documentation topics that every CPython installation
ships in the standard library (``pydoc_data.topics.topics``, the text behind ``help("if")``):
about 0.47 MB of prose and code examples, present on every machine without a download. Its
content is fixed per Python release, so a zoo records the corpus's sha256 and refuses to run
its rows on a different corpus (:class:`CorpusMismatchError`).

Tokens are bytes of the UTF-8 encoding (a vocabulary of 256, no tokenizer to ship or train).
Documents (topics) are taken in sorted key order, each as its key, a newline, its text and a
blank line. The documents differ a lot in length (79 topics, from a few hundred bytes to
tens of kilobytes), so the split is within each document: its last ``val_fraction`` (10%),
from the first line break after that point, is validation text, the rest training text;
every topic is on both sides and validation is a tenth of the bytes. A *window* is ``length + 1``
consecutive tokens: the first ``length`` are the input, the last ``length`` the next-byte
targets.

The paper-scale corpus, OpenWebText tokenized with GPT-2's byte-pair encoding, is read from
``train.bin`` / ``val.bin`` (flat ``uint16`` token ids) by :func:`load_openwebtext`.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from weightzoo.errors import DataFilesMissingError, WeightzooError

__all__ = [
    "BYTE_VOCAB",
    "OPENWEBTEXT_FILES",
    "CorpusMismatchError",
    "OpenWebTextMissingError",
    "TokenSplits",
    "check_corpus",
    "corpus_bytes",
    "corpus_for",
    "corpus_sha256",
    "load_openwebtext",
    "load_pydoc_corpus",
    "window_starts",
    "windows",
]

BYTE_VOCAB = 256
"""Vocabulary of byte-level tokens."""

OPENWEBTEXT_FILES = ("train.bin", "val.bin")
"""The files of a tokenized OpenWebText directory (flat ``uint16`` GPT-2 token ids)."""


class CorpusMismatchError(WeightzooError, ValueError):
    """The text corpus on this machine is not the one a spec or zoo was made with."""


class OpenWebTextMissingError(DataFilesMissingError):
    """The tokenized OpenWebText files of the GPT-2 zoos are not on disk."""


@dataclass(frozen=True)
class TokenSplits:
    """Token streams of a corpus.

    Attributes:
        train: 1-D integer tokens of the training documents, concatenated.
        val: 1-D integer tokens of the validation documents.
        vocab: vocabulary size.
        sha256: hex digest identifying the corpus.
    """

    train: np.ndarray
    val: np.ndarray
    vocab: int
    sha256: str


def _documents() -> list[tuple[str, str]]:
    from pydoc_data.topics import topics  # standard library; no download

    return [(key, topics[key]) for key in sorted(topics)]


@cache
def corpus_bytes(val_fraction: float = 0.1) -> tuple[bytes, bytes]:
    """The corpus as UTF-8 bytes: ``(train, val)``.

    Args:
        val_fraction: the share of each document, at its end, that is validation text.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    train, val = [], []
    for key, text in _documents():
        doc = f"{key}\n{text}\n\n".encode()
        cut = doc.find(b"\n", int(len(doc) * (1.0 - val_fraction)))
        cut = len(doc) if cut < 0 else cut + 1
        train.append(doc[:cut])
        val.append(doc[cut:])
    return b"".join(train), b"".join(val)


@cache
def corpus_sha256() -> str:
    """sha256 of the whole corpus (every document in order, before the split)."""
    digest = hashlib.sha256()
    for key, text in _documents():
        digest.update(f"{key}\n{text}\n\n".encode())
    return digest.hexdigest()


def check_corpus(expected: str | None, where: str) -> str:
    """The corpus's sha256, after checking it against ``expected``.

    Args:
        expected: the sha256 a spec or zoo recorded (``None``: not pinned, nothing to check).
        where: what recorded it, for the message (a spec name or a zoo path).

    Raises:
        CorpusMismatchError: if this Python's corpus has another hash.
    """
    actual = corpus_sha256()
    if expected is not None and expected != actual:
        raise CorpusMismatchError(
            f"{where} was made from a text corpus with sha256 {expected}, but this Python's "
            f"pydoc_data.topics (Python {sys.version.split()[0]}) has sha256 {actual}; the "
            "corpus is the documentation shipped with each Python release, so run with the "
            "Python version that made it (or generate the zoo again on this one)"
        )
    return actual


def load_pydoc_corpus(val_fraction: float = 0.1) -> TokenSplits:
    """The byte-level corpus: train and validation tokens as ``uint8`` arrays."""
    train, val = corpus_bytes(val_fraction)
    return TokenSplits(
        train=np.frombuffer(train, dtype=np.uint8),
        val=np.frombuffer(val, dtype=np.uint8),
        vocab=BYTE_VOCAB,
        sha256=corpus_sha256(),
    )


def load_openwebtext(data_dir: str | Path | None, spec_name: str) -> TokenSplits:
    """OpenWebText as GPT-2 tokens, memory-mapped from ``<data_dir>/openwebtext/``.

    Raises:
        OpenWebTextMissingError: naming the files, their layout and where to get them.
    """
    root = Path(data_dir or "data") / "openwebtext"
    missing = [root / name for name in OPENWEBTEXT_FILES if not (root / name).is_file()]
    if missing:
        raise OpenWebTextMissingError(
            f"{spec_name} trains on OpenWebText, which is not on disk: missing "
            f"{', '.join(str(p) for p in missing)} (flat uint16 arrays of GPT-2 BPE token ids, "
            "documents separated by token 50256, the layout nanoGPT's "
            "data/openwebtext/prepare.py writes from https://huggingface.co/datasets/"
            "Skylion007/openwebtext); put them there or pass --data-dir DIR with DIR/"
            "openwebtext/train.bin and val.bin"
        )
    train = np.memmap(root / "train.bin", dtype=np.uint16, mode="r")
    val = np.memmap(root / "val.bin", dtype=np.uint16, mode="r")
    digest = hashlib.sha256(f"openwebtext:{len(train)}:{len(val)}".encode()).hexdigest()
    return TokenSplits(train=train, val=val, vocab=50257, sha256=digest)


def corpus_for(
    spec: Mapping[str, Any], where: str, data_dir: str | Path | None = None
) -> TokenSplits:
    """The token streams a tiny-LM spec (as stored in a manifest) was trained on, checked.

    Args:
        spec: the spec's fields (``corpus``, ``corpus_sha256``, ``val_fraction``, ``name``).
        where: what recorded the spec, for messages (a spec name, a zoo path).
        data_dir: where ``openwebtext/`` is (the OpenWebText corpus only).

    Raises:
        CorpusMismatchError: the byte corpus here differs from the recorded one.
        OpenWebTextMissingError: the OpenWebText files are not on disk.
    """
    if spec.get("corpus") == "openwebtext":
        return load_openwebtext(data_dir, str(spec.get("name")))
    check_corpus(spec.get("corpus_sha256"), where)
    return load_pydoc_corpus(float(spec.get("val_fraction", 0.1)))


def window_starts(tokens: int, length: int, stride: int, limit: int | None = None) -> np.ndarray:
    """Start positions of windows of ``length + 1`` tokens, every ``stride`` tokens.

    Args:
        tokens: length of the token stream.
        length: window (context) length.
        stride: distance between starts (``length``: windows that share only one token).
        limit: if set, at most this many starts, spread evenly over the stream.

    Raises:
        ValueError: if the stream is shorter than one window.
    """
    if tokens < length + 1:
        raise ValueError(f"a stream of {tokens} tokens holds no window of {length + 1}")
    starts = np.arange(0, tokens - length, stride, dtype=np.int64)
    if limit is not None and len(starts) > limit:
        starts = starts[np.linspace(0, len(starts) - 1, limit).round().astype(np.int64)]
    return starts


def windows(tokens: np.ndarray, starts: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-token targets of the windows at ``starts`` (any shape ``S``).

    Returns:
        ``(inputs, targets)``, int64 arrays of shape ``[*S, length]``; ``targets`` is
        ``inputs`` shifted by one token.
    """
    index = np.asarray(starts, dtype=np.int64)[..., None] + np.arange(length + 1)
    chunk = np.asarray(tokens[index.reshape(-1)], dtype=np.int64).reshape(index.shape)
    return chunk[..., :-1], chunk[..., 1:]
