"""The MLDS family: what the runner and the engines ask of MLDS zoos.

Planning is torch-free (:mod:`.spec`); the network (:mod:`.model`) builds rows and
:mod:`.evaluate` measures them on their own sequences. Training code (:mod:`.train`), the
landscape parts (:mod:`.landscape`), the importer (:mod:`.importer`) and the paper's tables
(:mod:`weightzoo.analysis.mlds`) load when a hook that needs them runs, so that building or
evaluating a row never imports the training toolkit. No module of the package imports this one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from weightzoo.families.mlds import model
from weightzoo.families.mlds.evaluate import MLDSEvalTask
from weightzoo.families.mlds.spec import (
    FAMILY_NAME,
    MLDSSpec,
    model_seed,
    modified_name,
    net_config,
)
from weightzoo.functional import task_spec
from weightzoo.generate.base import BlockRun, Family, LandscapeParts, ModelPlan
from weightzoo.storage.layout import Layout

if TYPE_CHECKING:
    import torch
    from torch import nn

    from weightzoo.blocks import ModelRecord
    from weightzoo.landscape.driver import Selection
    from weightzoo.landscape.options import LandscapeOptions
    from weightzoo.zoo import Zoo

__all__ = ["FAMILY", "MLDSFamily"]


class MLDSFamily(Family[MLDSSpec]):
    """The :class:`~weightzoo.generate.base.Family` of MLDS specs (DS1, DS2, DS3)."""

    name = FAMILY_NAME
    spec_class = MLDSSpec

    def layout(self, spec: MLDSSpec) -> Layout:
        """Layout of one network (``rnn.*``, ``linears.*``, ``out.*``)."""
        return model.layout(spec.net)

    def checkpoint_epochs(self, spec: MLDSSpec) -> list[int]:
        """Initialisation and the final (frozen or last-epoch) weights."""
        return [0, spec.max_epochs]

    def metric_names(self, spec: MLDSSpec) -> list[str]:
        """``<set>_<metric>`` for every data set and metric (:meth:`MLDSSpec.metric_names`)."""
        return spec.metric_names()

    def plan(self, spec: MLDSSpec) -> list[ModelPlan]:
        """Replicate-major order of (class, replicate)."""
        plans = []
        for replicate in range(spec.per_class):
            for class_name in spec.classes():
                if len(plans) == spec.num_models():
                    return plans
                if spec.subset == "ds3":
                    columns: dict[str, Any] = {"automaton": int(class_name)}
                else:
                    variant = modified_name(class_name) if spec.backdoor else class_name
                    columns = {"machine": class_name, "variant": variant}
                columns |= {"backdoor": int(spec.backdoor), "replicate": replicate}
                plans.append(
                    ModelPlan(
                        model_id=len(plans),
                        seed=model_seed(spec.subset, class_name, replicate),
                        stratum=class_name,
                        columns=columns,
                    )
                )
        return plans

    def train(self, spec: MLDSSpec, plans: Sequence[ModelPlan], run: BlockRun) -> list[ModelRecord]:
        """Train one block as one refilled population of attempts (:func:`.train.train_block`).

        ``run.on_epoch(models trained that epoch, networks passed so far)`` after every epoch.
        """
        from weightzoo.families.mlds.train import train_block  # training code: here only

        return train_block(spec, plans, run)

    def build_model(self, spec: Mapping[str, Any], columns: Mapping[str, Any]) -> nn.Module:
        """The network of the spec's subset (DS1 for an imported zoo's spec without one)."""
        return model.MLDSNet(net_config(str(spec.get("subset", "ds1"))))

    def eval_task(self, zoo: Zoo, spec: Mapping[str, Any]) -> MLDSEvalTask:
        """:class:`~weightzoo.families.mlds.evaluate.MLDSEvalTask`: each row on its class."""
        return MLDSEvalTask(zoo, spec)

    def landscape_parts(
        self, selection: Selection, options: LandscapeOptions, device: torch.device
    ) -> LandscapeParts:
        """Each network on its own class's training sequences, through a vmappable twin."""
        from weightzoo.families.mlds.landscape import landscape_parts  # the engine: here only

        spec = task_spec(selection.zoo.manifest.spec)
        batches, batch_size = options.batches, options.batch_size
        return landscape_parts(spec, selection.columns, batches, batch_size, device)

    def tables(self) -> Mapping[str, Callable[..., Any]]:
        """The report's MLDS Tables 1 (class from weights) and 2 (backdoor from weights)."""
        # scikit-learn loads with the tables, not with the family
        from weightzoo.analysis.mlds import table1, table2

        return {"mlds.table1": table1, "mlds.table2": table2}

    def importer(self) -> Callable[..., Any]:
        """:func:`~weightzoo.families.mlds.importer.import_mlds`: MLC@Home network files."""
        from weightzoo.families.mlds.importer import import_mlds  # reads outside files: here only

        return import_mlds


FAMILY = MLDSFamily()
"""The family object the registry hands out."""
