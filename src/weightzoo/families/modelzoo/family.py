"""The Model Zoos and trajectory families: what the runner and the engines ask of their zoos.

Two registry names, ``modelzoo`` and ``trajectory``, one implementation: planning is torch-free
(:mod:`.spec`), the module (:mod:`.model`) builds rows, and a zoo's rows are evaluated on its
image splits by :class:`weightzoo.functional.ImageEvalTask` as they are. Training code
(:mod:`.train`) loads when a block trains, and the report tables (scikit-learn) when their hook
is asked, so that building or evaluating a row never imports the training toolkit. No module
of the package imports this one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from weightzoo.families import family  # the registry's lookup, kept importable from here
from weightzoo.families.modelzoo import model
from weightzoo.families.modelzoo.data import device_splits
from weightzoo.families.modelzoo.importer import import_modelzoo
from weightzoo.families.modelzoo.spec import (
    FAMILY_NAME,
    METRICS,
    TRAJECTORY_NAME,
    ModelZooSpec,
    TrajectorySpec,
)
from weightzoo.functional import ImageEvalTask
from weightzoo.generate.base import BlockRun, Family, ModelPlan, ZooSpec
from weightzoo.storage.layout import Layout

if TYPE_CHECKING:
    from torch import nn

    from weightzoo.blocks import ModelRecord
    from weightzoo.zoo import Zoo

__all__ = ["FAMILIES", "ImageSplitsFamily", "ModelZooFamily", "TrajectoryFamily", "family"]

ImageSpecT = TypeVar("ImageSpecT", bound=ZooSpec)
SpecT = TypeVar("SpecT", ModelZooSpec, TrajectorySpec)


class ImageSplitsFamily(Family[ImageSpecT]):
    """A family whose blocks train on the spec's image splits and whose rows are evaluated there.

    Of the Model Zoos and trajectory families, and of the phase family: the spec has the image
    fields :func:`~weightzoo.families.modelzoo.data.device_splits` reads, and the family's
    training module a ``block_steps`` and a ``train_block`` of one signature (:meth:`training`).
    """

    def training(self) -> tuple[Callable[..., int], Callable[..., list[ModelRecord]]]:
        """The family's ``block_steps`` and ``train_block``, imported when a block trains."""
        raise NotImplementedError(f"{type(self).__name__} must define training()")

    def train(
        self, spec: ImageSpecT, plans: Sequence[ModelPlan], run: BlockRun
    ) -> list[ModelRecord]:
        """Train ``plans`` population by population, under a bar of optimizer steps.

        ``run.on_epoch(models, None)`` is called after every epoch of every population, with
        that population's size.
        """
        block_steps, train_block = self.training()
        splits = device_splits(spec, run.device)  # type: ignore[arg-type]  # a TypeVar bound to ZooSpec
        total = block_steps(spec, plans, splits[0].x.shape[0])
        with self.block_progress(spec, plans, total, run) as report:
            return train_block(spec, plans, splits, device=run.device, progress=report)

    def eval_task(self, zoo: Zoo, spec: Mapping[str, Any]) -> ImageEvalTask | None:
        """:class:`~weightzoo.functional.ImageEvalTask`: the zoo's own image splits.

        ``None`` for a spec without ``architecture`` (an imported zoo's).
        """
        return ImageEvalTask(zoo, spec) if "architecture" in spec else None


class _ImageFamily(ImageSplitsFamily[SpecT]):
    """What both families share: grid plans, image rows and their training code."""

    metrics = METRICS

    def layout(self, spec: SpecT) -> Layout:
        """Layout of one row: the network's parameters (and ResNet-18's BN running stats)."""
        return model.layout(spec.to_dict())

    def plan(self, spec: SpecT) -> list[ModelPlan]:
        """One plan per model: node-major grid order, seeds inner; stratum = node."""
        nodes = spec.nodes()
        seeds = spec.seed_table()
        seed_zoo = spec.is_seed_zoo
        plans: list[ModelPlan] = []
        for model_id in range(spec.grid_models()):
            node_id, k = divmod(model_id, spec.seeds_per_node)
            node = nodes[node_id]
            stratum = "" if seed_zoo else ",".join(f"{key}={value}" for key, value in node.items())
            columns = {**node, "node": node_id}
            plans.append(ModelPlan(model_id, int(seeds[node_id, k]), stratum, columns))
        return spec.sampled(plans, list(nodes[0]))

    def training(self) -> tuple[Callable[..., int], Callable[..., list[ModelRecord]]]:
        """Populations of equal activation and optimizer (:mod:`.train`)."""
        from weightzoo.families.modelzoo.train import block_steps, train_block  # training code

        return block_steps, train_block

    def build_model(self, spec: Mapping[str, Any], columns: Mapping[str, Any]) -> nn.Module | None:
        """The network of the spec's architecture with the row's activation and dropout.

        ``None`` for a spec without ``architecture`` (an imported zoo's): it names no
        weightzoo network.
        """
        return model.from_spec(spec, columns) if "architecture" in spec else None


class ModelZooFamily(_ImageFamily[ModelZooSpec]):
    """The zoos of the Model Zoos paper: CNN-s, CNN-m and ResNet-18 on image datasets."""

    name, spec_class = FAMILY_NAME, ModelZooSpec

    def tables(self) -> Mapping[str, Callable[..., Any]]:
        """The report's ``modelzoo.table3``: linear probes over a list of zoos."""
        # scikit-learn loads with the table, not with the family
        from weightzoo.analysis.probes import table3

        return {"modelzoo.table3": table3}

    def importer(self) -> Callable[..., Any]:
        """:func:`~weightzoo.families.modelzoo.importer.import_modelzoo`: the published zips."""
        return import_modelzoo


class TrajectoryFamily(_ImageFamily[TrajectorySpec]):
    """The zoos of the trajectory paper: every epoch of 250 seeds of one MLP or CNN."""

    name, spec_class = TRAJECTORY_NAME, TrajectorySpec

    def tables(self) -> Mapping[str, Callable[..., Any]]:
        """The report's ``trajectories.clustering``: single-linkage clusters of one zoo."""
        from weightzoo.analysis.trajectories import trajectory_table

        return {"trajectories.clustering": trajectory_table}


FAMILIES: dict[str, Family[Any]] = {
    FAMILY_NAME: ModelZooFamily(),
    TRAJECTORY_NAME: TrajectoryFamily(),
}
"""The family object of each registry name of the package."""
