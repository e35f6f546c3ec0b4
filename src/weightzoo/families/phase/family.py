"""The phase family: what the runner and the engines ask of phase-transition zoos.

Planning and sizing are torch-free (:mod:`.spec`); the module (:mod:`.model`) builds rows.
Blocks train, and rows are evaluated, on the zoo's image splits as the Model Zoos family's are
(:class:`~weightzoo.families.modelzoo.family.ImageSplitsFamily`). Training code
(:mod:`.train`) loads when a block trains and the landscape measurement (:mod:`.landscape`)
when a zoo is finalized, so that building or evaluating a row never imports the training
toolkit. No module of the package imports this one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weightzoo.families.modelzoo.family import ImageSplitsFamily
from weightzoo.families.phase import model
from weightzoo.families.phase.spec import FAMILY_NAME, METRICS, PhaseGridSpec, PhaseSpec
from weightzoo.generate.base import ModelPlan
from weightzoo.storage.layout import Layout

if TYPE_CHECKING:
    from torch import nn

    from weightzoo.blocks import ModelRecord

__all__ = ["FAMILY", "PhaseFamily"]


class PhaseFamily(ImageSplitsFamily[PhaseSpec]):
    """The :class:`~weightzoo.generate.base.Family` of phase specs.

    A :class:`~weightzoo.families.phase.spec.PhaseGridSpec` (a whole grid) is of the family
    too: the runner generates it width by width, and here it is only sized and overridden.
    """

    name = FAMILY_NAME
    spec_class = (PhaseSpec, PhaseGridSpec)
    metrics = METRICS

    def layout(self, spec: PhaseSpec) -> Layout:
        """Layout of one row: the network's parameters (and BatchNorm running statistics)."""
        return model.layout(spec)

    def checkpoint_epochs(self, spec: PhaseSpec) -> list[int]:
        """Epoch 0, every ``checkpoint_every`` epochs, and the last."""
        return spec.checkpoints()

    def plan(self, spec: PhaseSpec) -> list[ModelPlan]:
        """One plan per model: batch-size-major, seeds inner; stratum = the cell."""
        plans = []
        for model_id in range(spec.grid_models()):
            cell, k = divmod(model_id, spec.seeds)
            batch = spec.batch_sizes[cell]
            columns = {
                "width": spec.width,
                "batch_size": batch,
                "load": float(spec.width),
                "temperature": float(batch),
                "lr": float(spec.lr),
                "weight_decay": float(spec.weight_decay),
                "node": cell,
            }
            plans.append(ModelPlan(model_id, spec.seed_start + k, f"batch={batch}", columns))
        return spec.sampled(plans, ["batch_size"])

    def training(self) -> tuple[Callable[..., int], Callable[..., list[ModelRecord]]]:
        """One population per batch size (:mod:`.train`)."""
        from weightzoo.families.phase.train import block_steps, train_block  # training code

        return block_steps, train_block

    def finalize(self, spec: PhaseSpec, root: Path, device: str = "cpu") -> None:
        """Measure the landscape side file and the phases of a finished zoo (idempotent).

        Skips what is already there: a ``landscape`` side file that holds every metric of
        :data:`~weightzoo.families.phase.spec.LANDSCAPE_METRICS` is kept (only ``phase`` is
        added if missing).
        """
        from weightzoo.families.phase.landscape import finalize_zoo  # the landscape engine

        finalize_zoo(spec, Path(root), device=device)

    def build_model(self, spec: Mapping[str, Any], columns: Mapping[str, Any]) -> nn.Module | None:
        """The network of the spec's architecture and width (no column changes it).

        ``None`` for a spec without ``architecture`` and ``width``: it names no phase network.
        """
        return model.from_spec(spec) if {"architecture", "width"} <= spec.keys() else None


FAMILY = PhaseFamily()
"""The family object the registry hands out."""
