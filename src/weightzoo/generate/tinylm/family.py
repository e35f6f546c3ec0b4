"""Tiny language-model phase-transition zoos: a model_dim x batch size grid of GPT-style LMs.

The language zoo of "A Model Zoo on Phase Transitions in Neural Networks" (Schürholt,
Meynent, Zhou, Lu, Yang, Borth; arXiv:2504.18072) trains GPT-2 on OpenWebText over a grid of
model dimension (the load-like factor) and batch size (the temperature-like factor, in the
sense of Yang et al., "Taxonomizing local versus global structure in neural network loss
landscapes", arXiv:2107.11228), three seeds per cell. Offline, ``phase-tinylm-d<dim>`` trains
a small byte-level decoder on the documentation text shipped with Python
(:mod:`weightzoo.tasks.text`); ``phase-gpt2-openwebtext-d<dim>`` are the paper's grid, which
need the tokenized OpenWebText on disk.

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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from weightzoo.errors import InvalidOptionError
from weightzoo.generate.base import GridOptions, GroupedSpec, ModelPlan, ModelRecord, ZooSpec
from weightzoo.storage.layout import Layout

__all__ = [
    "GPT2_BATCH_SIZES",
    "GPT2_MODEL_DIMS",
    "METRICS",
    "TINY_BATCH_SIZES",
    "TINY_MODEL_DIMS",
    "TinyLMFamily",
    "TinyLMGridSpec",
    "TinyLMSpec",
    "UnknownGridValueError",
    "family",
    "gpt2_openwebtext_spec",
    "specs",
    "tinylm_spec",
]

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


@dataclass(frozen=True)
class TinyLMSpec(GridOptions, ZooSpec):
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
        models: if set, only the first ``models`` models (``--models``).
        data_dir: where ``openwebtext/train.bin`` and ``val.bin`` are (not identity).
    """

    family: str = "tinylm"
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
    load_factor: ClassVar[str] = "model_dim"
    temperature_factor: ClassVar[str] = "batch_size"

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
        """The spec as JSON data: the corpus hash pinned, ``data_dir`` left out."""
        data = super().to_dict()
        data.pop("data_dir", None)
        if data["corpus_sha256"] is None and self.corpus == "pydoc-topics":
            from weightzoo.tasks.text import corpus_sha256

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
        """Size of the zoo: models, checkpoints, params per row, and bytes of ``weights``."""
        models, checkpoints, params = self.num_models(), self.epochs + 1, self.num_params()
        return {
            "models": models,
            "checkpoints": checkpoints,
            "params": params,
            "bytes": models * checkpoints * params * 4,
        }


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


_GRIDS: dict[str, tuple[Callable[[int], TinyLMSpec], tuple[int, ...]]] = {
    "phase-tinylm": (tinylm_spec, TINY_MODEL_DIMS),
    "phase-gpt2-openwebtext": (gpt2_openwebtext_spec, GPT2_MODEL_DIMS),
}


@dataclass(frozen=True)
class TinyLMGridSpec(GroupedSpec):
    """The whole model_dim x batch size grid as a grouped zoo (one group per model dimension).

    Group ``d<dim>`` is the version-1 spec of that dimension.

    Attributes:
        models / epochs: ``--models`` / ``--epochs``, applied to every group (the first N
            models of each model dimension).
        data_dir: where ``openwebtext/`` is (not identity).
    """

    family: str = "tinylm"
    models: int | None = None
    epochs: int | None = None
    data_dir: str | None = field(default=None, compare=False)

    kind: ClassVar[str] = "tinylm-grid"
    load_factor: ClassVar[str] = "model_dim"
    temperature_factor: ClassVar[str] = "batch_size"

    def __post_init__(self) -> None:
        if self.name not in _GRIDS:
            raise UnknownGridValueError(
                f"no tiny-LM grid named {self.name!r}; known: {', '.join(_GRIDS)}"
            )

    def groups(self) -> list[tuple[str, ZooSpec]]:
        """``[("d<dim>", spec of that dimension), ...]`` in increasing model dimension."""
        build, dims = _GRIDS[self.name]
        options = {"models": self.models, "epochs": self.epochs, "data_dir": self.data_dir}
        return [(f"d{d}", build(d).override(**options)) for d in dims]

    def to_dict(self) -> dict[str, Any]:
        """The grid's fields and every group's spec, without ``data_dir``."""
        data = super().to_dict()
        data.pop("data_dir", None)
        return data

    def override(
        self,
        models: int | None = None,
        epochs: int | None = None,
        data_dir: str | None = None,
        **rest: Any,
    ) -> ZooSpec:
        """Apply ``--models``, ``--epochs`` and ``--data-dir`` to every group.

        Raises:
            ValueError: for another option, or a non-positive count.
        """
        ZooSpec.override(self, **rest)
        changes = {"models": models, "epochs": epochs, "data_dir": data_dir}
        changes = {k: v for k, v in changes.items() if v is not None}
        spec = dataclasses.replace(self, **changes) if changes else self
        spec.groups()  # the groups check the values
        return spec


def specs() -> list[ZooSpec]:
    """The named specs: each grid whole (grouped) and one version-1 spec per model dimension."""
    out: list[ZooSpec] = []
    for name, (build, dims) in _GRIDS.items():
        out += [TinyLMGridSpec(name=name), *(build(d) for d in dims)]
    return out


class TinyLMFamily:
    """The :class:`~weightzoo.generate.base.Family` of tiny-LM specs."""

    name = "tinylm"

    def layout(self, spec: ZooSpec) -> Layout:
        """Layout of one row (built on the meta device: nothing is allocated or drawn)."""
        from weightzoo.architectures.tiny_lm import from_spec
        from weightzoo.features import layout_of

        return layout_of(from_spec(spec.to_dict(), device="meta"))

    def checkpoint_epochs(self, spec: ZooSpec) -> list[int]:
        """Every epoch, 0 (initialisation) to the last."""
        assert isinstance(spec, TinyLMSpec)
        return list(range(spec.epochs + 1))

    def metric_names(self, spec: ZooSpec) -> list[str]:
        """train/val loss and accuracy."""
        return list(METRICS)

    def plan(self, spec: ZooSpec) -> list[ModelPlan]:
        """One plan per model, replicate-major; stratum = batch size.

        Raises:
            CorpusMismatchError: if the spec pins another corpus than this Python's.
            OpenWebTextMissingError: for the GPT-2 specs without the data on disk.
        """
        assert isinstance(spec, TinyLMSpec)
        check_data(spec)
        plans = []
        for model_id in range(spec.num_models()):
            replicate, cell = divmod(model_id, len(spec.batch_sizes))
            batch = int(spec.batch_sizes[cell])
            columns = {
                "model_dim": spec.model_dim,
                "batch_size": batch,
                "load": float(spec.model_dim),
                "temperature": float(batch),
                "replicate": replicate,
            }
            plans.append(ModelPlan(model_id, spec.seed_start + replicate, f"b{batch}", columns))
        return plans

    def train(
        self,
        spec: ZooSpec,
        plans: Sequence[ModelPlan],
        *,
        device: str,
        progress: bool = True,
        on_epoch: Callable[[int, int | None], None] | None = None,
    ) -> list[ModelRecord]:
        """Train ``plans``: one population per batch size."""
        from tqdm.auto import tqdm

        from weightzoo.generate.tinylm.population import train_population

        assert isinstance(spec, TinyLMSpec)
        total = len(plans) * spec.epochs
        bar = tqdm(total=total, disable=not progress, desc=spec.name, unit="model-epoch")

        def report(advanced: int) -> None:
            bar.update(advanced)
            if on_epoch is not None:
                on_epoch(advanced, None)

        try:
            return train_population(spec, plans, device=device, progress=report)
        finally:
            bar.close()

    def finalize(self, spec: ZooSpec, root: Any, device: str = "cpu") -> None:
        """Landscape metrics of every stored checkpoint, then the phase labels.

        Idempotent: a ``landscape`` side file that already holds every metric of every
        model and checkpoint is kept.
        """
        from weightzoo.landscape.phase import write_phases
        from weightzoo.landscape.tinylm import compute_lm_landscape, landscape_is_complete
        from weightzoo.storage.sidecar import sidecar_records

        if not landscape_is_complete(root):
            compute_lm_landscape(root, epochs="all", device=device, progress=False)
        elif "phase" in sidecar_records(root)["landscape"].arrays:
            return  # a finished run: nothing to redo
        write_phases(root)


def check_data(spec: TinyLMSpec) -> None:
    """Fail early (before anything is written) when the spec's corpus is not usable here."""
    from weightzoo.tasks.text import check_corpus, load_openwebtext

    if spec.corpus == "openwebtext":
        load_openwebtext(spec.data_dir, spec.name)
    else:
        check_corpus(spec.corpus_sha256, f"spec {spec.name!r}")


def family(name: str = "tinylm") -> TinyLMFamily:
    """The family object for ``"tinylm"``.

    Raises:
        ValueError: for another name.
    """
    if name != "tinylm":
        raise ValueError(f"this module trains tiny-LM zoos, not {name!r}")
    return TinyLMFamily()
