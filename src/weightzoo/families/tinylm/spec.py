"""Tiny-LM zoos as specs: the model_dim x batch size grids, the named specs, catalog listings.

The language zoo of "A Model Zoo on Phase Transitions in Neural Networks" (Schürholt,
Meynent, Zhou, Lu, Yang, Borth; arXiv:2504.18072) trains GPT-2 on OpenWebText over a grid of
model dimension (the load-like factor) and batch size (the temperature-like factor, in the
sense of Yang et al., "Taxonomizing local versus global structure in neural network loss
landscapes", arXiv:2107.11228), three seeds per cell. Offline, ``phase-tinylm-d<dim>`` trains
a small byte-level decoder on the documentation text shipped with Python
(:mod:`weightzoo.families.tinylm.data`); ``phase-gpt2-openwebtext-d<dim>`` are the paper's
grid, which need the tokenized OpenWebText on disk.

A version-1 zoo holds one layout, so each model dimension is its own spec (built by
:func:`tinylm_spec` / :func:`gpt2_openwebtext_spec`, named ``...-d<dim>``); the spec lists the
whole grid in ``model_dims`` and holds the one of them in ``model_dim``. The whole grid is the
grouped zoo (format version 2) ``phase-tinylm`` / ``phase-gpt2-openwebtext``
(:class:`TinyLMGridSpec`), one group ``d<dim>`` per model dimension. Models are ordered
replicate-major (for each seed, every batch size), so ``--models N`` keeps whole replicates
first. Every model of a spec takes the same number of optimizer steps (an epoch is one pass
of the largest batch over the training windows); a model of batch size ``b`` learns from the
first ``b`` windows of each step's draw, so a small batch sees less data with more gradient
noise, which is what makes batch size temperature-like.

This module imports no torch (the corpus hash it pins is numpy and the standard library), so
that listing and sizing the zoos is cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from weightzoo.errors import InvalidOptionError
from weightzoo.families import Listing
from weightzoo.families.tinylm.data import corpus_sha256
from weightzoo.generate.base import GridOptions, GroupedSpec, ZooSpec, size_estimate

__all__ = [
    "CORPORA",
    "FAMILY_NAME",
    "GPT2_BATCH_SIZES",
    "GPT2_MODEL_DIMS",
    "METRICS",
    "TINY_BATCH_SIZES",
    "TINY_MODEL_DIMS",
    "TinyLMGridSpec",
    "TinyLMSpec",
    "UnknownGridValueError",
    "gpt2_openwebtext_spec",
    "listings",
    "specs",
    "tinylm_spec",
]

FAMILY_NAME = "tinylm"
"""The family's registry name, as every manifest of a tiny-LM zoo records it."""

METRICS = ("train_loss", "train_acc", "val_loss", "val_acc")
"""Per-checkpoint metrics: mean next-token cross-entropy (nats per token: per byte for the
byte-level corpus) and next-token accuracy, on fixed windows of the training and the
validation text."""

TINY_MODEL_DIMS = (8, 16, 32, 64)
TINY_BATCH_SIZES = (4, 8, 16, 32, 64)
GPT2_MODEL_DIMS = (8, 16, 32, 64, 128, 256, 512, 1024)
GPT2_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CORPORA = ("pydoc-topics", "openwebtext")


class UnknownGridValueError(InvalidOptionError):
    """A model dimension or batch size that the zoo's grid does not have."""


class _PhaseFactors:
    """The phase factors of every tiny-LM spec: model dimension (load), batch size (temperature)."""

    load_factor: ClassVar[str] = "model_dim"
    temperature_factor: ClassVar[str] = "batch_size"


@dataclass(frozen=True)
class TinyLMSpec(_PhaseFactors, GridOptions, ZooSpec):
    """A grid of GPT-style language models of one model dimension.

    Attributes:
        corpus: ``"pydoc-topics"`` (offline, byte-level) or ``"openwebtext"`` (GPT-2 tokens).
        corpus_sha256: the corpus's sha256; ``None`` pins the running Python's corpus when
            the spec is written into a manifest (:meth:`to_dict`).
        val_fraction: the share at the end of each document that is validation text.
        vocab: vocabulary size (256 bytes; 50257 GPT-2 tokens).
        context: window length in tokens.
        model_dim: this spec's model dimension (one of ``model_dims``).
        model_dims: the grid's model dimensions (the load-like factor).
        layers: transformer blocks.
        head_dim: width per attention head.
        batch_sizes: the grid's batch sizes (the temperature-like factor).
        seeds: replicates per cell; replicate ``k`` has seed ``seed_start + k``.
        seed_start: the first seed.
        epochs: passes of the largest batch over the training windows; checkpoints are
            epochs 0 (initialisation) to ``epochs``.
        stride: tokens between training-window starts (default ``context``).
        train_windows: if set, at most this many training windows, spread over the text.
        eval_windows: windows of the training and the validation text the metrics use.
        optimizer: ``"adamw"``, ``"adam"`` or ``"sgd"``.
        lr: peak learning rate of the one-cycle schedule.
        weight_decay: weight decay.
        betas: Adam betas.
        clip_norm: per-model gradient-norm clipping.
        pct_start: share of the steps spent warming up.
        models: if set, only ``models`` models: the first, or a sample (``sample``).
        data_dir: where ``openwebtext/train.bin`` and ``val.bin`` are (not identity).
    """

    family: str = FAMILY_NAME
    corpus: str = "pydoc-topics"
    corpus_sha256: str | None = None
    val_fraction: float = 0.1
    vocab: int = 256
    context: int = 32
    model_dim: int = 32
    model_dims: tuple[int, ...] = TINY_MODEL_DIMS
    layers: int = 2
    head_dim: int = 16
    batch_sizes: tuple[int, ...] = TINY_BATCH_SIZES
    seeds: int = 3
    seed_start: int = 1
    epochs: int = 4
    stride: int | None = None
    train_windows: int | None = 512
    eval_windows: int = 256
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    clip_norm: float | None = 1.0
    pct_start: float = 0.1
    models: int | None = None
    data_dir: str | None = field(default=None, compare=False)

    kind: ClassVar[str] = "tinylm"

    def __post_init__(self) -> None:
        if self.corpus not in CORPORA:
            raise InvalidOptionError(
                f"spec {self.name!r}: unknown corpus {self.corpus!r}; known: {', '.join(CORPORA)}"
            )
        if self.model_dim not in self.model_dims:
            raise UnknownGridValueError(
                f"spec {self.name!r}: model_dim {self.model_dim} is not in the grid "
                f"{list(self.model_dims)}; pick one of those or add it to model_dims"
            )
        bad = [b for b in self.batch_sizes if isinstance(b, bool) or int(b) < 1]
        if bad or not self.batch_sizes:
            raise UnknownGridValueError(
                f"spec {self.name!r}: batch sizes must be positive integers, got "
                f"{list(self.batch_sizes)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON data (``data_dir`` left out), the corpus hash pinned."""
        data = super().to_dict()
        if data["corpus_sha256"] is None and self.corpus == "pydoc-topics":
            data["corpus_sha256"] = corpus_sha256()
        return data

    def grid_models(self) -> int:
        """Models of the full grid of this model dimension (ignoring ``models``)."""
        return len(self.batch_sizes) * self.seeds

    def num_params(self) -> int:
        """Parameters of one model (counted, not built: the paper's models are large)."""
        d, layers = self.model_dim, self.layers
        block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d)
        return self.vocab * d + self.context * d + layers * block + 2 * d

    def estimate(self) -> dict[str, int]:
        """Size of the zoo, without torch: models, checkpoints, params, bytes of ``weights``."""
        return size_estimate(self.num_models(), len(self.checkpoint_epochs()), self.num_params())

    def checkpoint_epochs(self) -> list[int]:
        """Every epoch, 0 (initialisation) to the last."""
        return list(range(self.epochs + 1))


def tinylm_spec(model_dim: int) -> TinyLMSpec:
    """``phase-tinylm-d<model_dim>``: the offline byte-level zoo of one model dimension.

    Raises:
        UnknownGridValueError: for a dimension outside :data:`TINY_MODEL_DIMS`.
    """
    return TinyLMSpec(name=f"phase-tinylm-d{model_dim}", model_dim=int(model_dim))


def gpt2_openwebtext_spec(model_dim: int) -> TinyLMSpec:
    """``phase-gpt2-openwebtext-d<model_dim>``: one model dimension of the paper's GPT-2 zoo.

    GPT-2's architecture (12 blocks, heads of width 64, context 1024, its BPE vocabulary,
    AdamW with betas 0.9/0.95, weight decay 0.1, clipping at 1.0) over the batch sizes
    :data:`GPT2_BATCH_SIZES`, three seeds; see ``docs/tinylm.md`` for how the grid was read.

    Raises:
        UnknownGridValueError: for a dimension outside :data:`GPT2_MODEL_DIMS`.
    """
    return TinyLMSpec(
        name=f"phase-gpt2-openwebtext-d{model_dim}",
        corpus="openwebtext",
        vocab=50257,
        context=1024,
        model_dim=int(model_dim),
        model_dims=GPT2_MODEL_DIMS,
        layers=12,
        head_dim=64,
        batch_sizes=GPT2_BATCH_SIZES,
        epochs=1,
        train_windows=None,
        eval_windows=512,
        lr=6e-4,
        weight_decay=0.1,
        betas=(0.9, 0.95),
        pct_start=0.01,
        shard_models=33,
    )


class _Grid(NamedTuple):
    """A named grid: its spec per model dimension, the dimensions, its catalog line's data."""

    build: Callable[[int], TinyLMSpec]
    dims: tuple[int, ...]
    summary: str
    data: tuple[str, ...]  # outside data sets generation reads (empty: offline)


_GRIDS: dict[str, _Grid] = {
    "phase-tinylm": _Grid(
        tinylm_spec,
        TINY_MODEL_DIMS,
        "Phase transitions: byte-level GPT-style LMs on Python's docs, model_dim x batch size",
        (),
    ),
    "phase-gpt2-openwebtext": _Grid(
        gpt2_openwebtext_spec,
        GPT2_MODEL_DIMS,
        "Phase transitions: GPT-2 on OpenWebText, model_dim x batch size (data not bundled)",
        ("openwebtext",),
    ),
}


@dataclass(frozen=True)
class TinyLMGridSpec(_PhaseFactors, GroupedSpec):
    """The whole model_dim x batch size grid as a grouped zoo (one group per model dimension).

    Group ``d<dim>`` is the version-1 spec of that dimension.

    Attributes:
        models / epochs: ``--models`` / ``--epochs``, applied to every group (N models of
            each model dimension: the first N, or the group's sample of ``sample``).
        sample / sample_seed: the groups' ``sample`` and ``sample_seed`` (see
            :class:`~weightzoo.generate.base.GridOptions`).
        data_dir: where ``openwebtext/`` is (not identity).
    """

    family: str = FAMILY_NAME
    models: int | None = None
    epochs: int | None = None
    sample: str = "first"
    sample_seed: int = 0
    data_dir: str | None = field(default=None, compare=False)

    kind: ClassVar[str] = "tinylm-grid"
    omitted_at_default: ClassVar[tuple[str, ...]] = ("sample", "sample_seed")

    def __post_init__(self) -> None:
        if self.name not in _GRIDS:
            raise UnknownGridValueError(
                f"no tiny-LM grid named {self.name!r}; known: {', '.join(_GRIDS)}"
            )

    def groups(self) -> list[tuple[str, ZooSpec]]:
        """``[("d<dim>", spec of that dimension), ...]`` in increasing model dimension."""
        grid = _GRIDS[self.name]
        options = {
            "models": self.models,
            "epochs": self.epochs,
            "data_dir": self.data_dir,
            "sample": self.sample,
            "sample_seed": self.sample_seed,
        }
        return [(f"d{d}", grid.build(d).override(**options)) for d in grid.dims]

    def to_dict(self) -> dict[str, Any]:
        """The grid's fields and every group's spec, without ``data_dir``.

        A stratified sample records its seed, even the default.
        """
        data = super().to_dict()
        if self.sample != "first":
            data["sample_seed"] = self.sample_seed
        return data

    def override(self, **options: Any) -> ZooSpec:
        """Apply ``--models``, ``--epochs``, ``--data-dir`` and the sample to every group.

        Options that are ``None`` leave the grid's value unchanged.

        Raises:
            ValueError: for another option, or a non-positive count.
        """
        keys = ("models", "epochs", "data_dir", "sample", "sample_seed")
        changes = {key: options.pop(key, None) for key in keys}
        ZooSpec.override(self, **options)  # refuses every other option
        spec = dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
        spec.groups()  # each group checks the values
        return spec


def specs() -> list[ZooSpec]:
    """The named specs: each grid whole (grouped) and one version-1 spec per model dimension."""
    out: list[ZooSpec] = []
    for name, grid in _GRIDS.items():
        out += [TinyLMGridSpec(name=name), *(grid.build(d) for d in grid.dims)]
    return out


def listings() -> list[Listing]:
    """The catalog's lines: each grid whole, then one line per model dimension."""
    out: list[Listing] = []
    for name, grid in _GRIDS.items():
        whole = f"{grid.summary}, all {len(grid.dims)} dimensions"
        out.append(Listing(name, whole, grid.data))
        out += [Listing(f"{name}-d{d}", f"{grid.summary}, d={d}", grid.data) for d in grid.dims]
    return out
