"""Tiny-LM populations on the toolkit: ``vmap`` over stacked decoders.

The models of a population share one architecture; their parameters are stacked
(``torch.func.stack_module_state``) and the forward is ``torch.func.vmap`` over
``torch.func.functional_call`` of one template module. Models of one batch size train as one
population (the toolkit's step loop takes one batch size); a block with several batch sizes
trains one population per batch size, each model in its own data order from its own seed, so
that a model's training never depends on which other models share its block. Every model
trains the same number of epochs over the same training windows, so a small batch takes more,
noisier steps. Training, the optimizer (per-model AdamW with one-cycle rates and gradient
clipping) and evaluation are :mod:`weightzoo.generate.population`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from weightzoo.blocks import ModelRecord
from weightzoo.families.tinylm.data import TokenSplits, corpus_for, window_starts, windows
from weightzoo.families.tinylm.model import from_spec
from weightzoo.families.tinylm.spec import METRICS, TinyLMSpec
from weightzoo.features import layout_of
from weightzoo.generate import population as toolkit
from weightzoo.generate.base import BlockReport, ModelPlan

__all__ = ["LMTask", "corpus_of", "eval_starts", "population_logits", "train_population"]


def corpus_of(spec: TinyLMSpec) -> TokenSplits:
    """The spec's token streams (after checking the corpus)."""
    return corpus_for(dataclasses.asdict(spec), f"spec {spec.name!r}", spec.data_dir)


def eval_starts(spec: TinyLMSpec, data: TokenSplits) -> dict[str, np.ndarray]:
    """The fixed windows the metrics are measured on: ``{"train": starts, "val": starts}``."""
    return {
        split: window_starts(len(tokens), spec.context, spec.context, limit=spec.eval_windows)
        for split, tokens in (("train", data.train), ("val", data.val))
    }


def population_logits(module: nn.Module, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """Logits ``[M, B, L, V]`` of stacked models on ``x [M, B, L]`` (or shared ``[B, L]``)."""

    def one(p: dict[str, Tensor], idx: Tensor) -> Tensor:
        return functional_call(module, p, (idx,))

    return vmap(one, in_dims=(0, 0 if x.dim() == 3 else None))(params, x)


class LMTask:
    """The :class:`~weightzoo.generate.population.TrainingTask` of a language-model population.

    Args:
        module: the template architecture (its own weights are never used).
        data: the token streams.
        train_starts: starts of the training windows (the items of an epoch).
        metric_starts: ``{"train": starts, "val": starts}`` of the metric windows.
        context: window length.
        device: where the batches go.
    """

    def __init__(
        self,
        module: nn.Module,
        data: TokenSplits,
        train_starts: np.ndarray,
        metric_starts: dict[str, np.ndarray],
        context: int,
        device: torch.device,
    ) -> None:
        self.module, self.data, self.context, self.device = module, data, context, device
        self.train_starts = train_starts
        self.metric_starts = metric_starts
        self.train_size = len(train_starts)
        self.splits = {name: len(starts) for name, starts in metric_starts.items()}

    def _batch(self, tokens: np.ndarray, starts: np.ndarray) -> tuple[Tensor, Tensor]:
        x, y = windows(tokens, starts, self.context)
        return torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)

    def train_loss(self, pop: toolkit.Population, rows: Tensor, order: toolkit.DataOrder) -> Tensor:
        """Per-model mean next-token loss over each model's windows ``rows [M, B]``."""
        x, y = self._batch(self.data.train, self.train_starts[rows.cpu().numpy()])
        logits = population_logits(self.module, pop.params, x)
        per = F.cross_entropy(logits.flatten(0, -2), y.flatten(), reduction="none")
        return per.view(y.shape).flatten(1).mean(1)

    def eval_sums(
        self, pop: toolkit.Population, split: str, start: int, stop: int
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """Summed loss and correct next tokens over metric windows ``start:stop``."""
        tokens = self.data.train if split == "train" else self.data.val
        x, y = self._batch(tokens, self.metric_starts[split][start:stop])
        logits = population_logits(self.module, pop.params, x)
        per = F.cross_entropy(
            logits.flatten(0, -2), y.expand(pop.size, *y.shape).flatten(), reduction="none"
        )
        count = torch.full((pop.size,), float(y.numel()), device=pop.device)
        right = (logits.argmax(-1) == y).flatten(1).sum(1)
        return {
            "loss": (per.view(pop.size, -1).double().sum(1), count),
            "acc": (right.double(), count),
        }

    def eval_chunk(self, split: str, models: int) -> int:
        """Windows per evaluation pass (about four million logits at a time)."""
        per_window = max(1, models * self.context * self.data.vocab)
        return max(1, 4_000_000 // per_window)


def train_population(
    spec: TinyLMSpec, plans: Sequence[ModelPlan], device: str, report: BlockReport
) -> list[ModelRecord]:
    """Train the models of ``plans``, one population per batch size; one record per plan.

    The family's ``train_block`` (:attr:`~weightzoo.generate.base.Family.trainer`): after
    every epoch of every population, ``report(models, models)`` moves the bar by that
    population's model-epochs and tells the runner its size, not the whole block's.

    Each model is initialised by :class:`~weightzoo.families.tinylm.model.TinyLM`'s GPT-2
    init under ``torch.manual_seed(seed)`` and shuffles the training windows by its own seed
    every epoch.
    """
    data = corpus_of(spec)
    starts = window_starts(
        len(data.train), spec.context, spec.stride or spec.context, limit=spec.train_windows
    )
    metric_starts = eval_starts(spec, data)
    names = layout_of(from_spec(spec.to_dict(), device="meta")).names
    records: dict[int, ModelRecord] = {}
    for batch in sorted({int(p.columns["batch_size"]) for p in plans}):
        group = [p for p in plans if int(p.columns["batch_size"]) == batch]
        models = toolkit.seeded_models(lambda: from_spec(spec.to_dict()), (p.seed for p in group))
        pop = toolkit.Population.from_modules(models, device=device)
        task = LMTask(
            models[0].to(pop.device), data, starts, metric_starts, spec.context, pop.device
        )
        config = toolkit.TrainConfig.from_spec(
            spec,
            batch_size=batch,
            betas=tuple(spec.betas),
            schedule=toolkit.Schedule("onecycle", pct_start=spec.pct_start),
            checkpoints=tuple(spec.checkpoint_epochs()),
            checkpoint_splits=("train", "val"),
            clip_norm=spec.clip_norm,
        )
        size = len(group)  # every model of the population trains every epoch
        result = toolkit.train_plans(
            task, pop, group, names, config, progress=lambda _s, _left, n=size: report(n, n)
        )
        for record in toolkit.plan_records(group, result.weights, result.metrics, device, METRICS):
            records[record.model_id] = record
    return [records[p.model_id] for p in plans]
