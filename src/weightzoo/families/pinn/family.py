"""The PINN family: what the runner and the engines ask of PINN convection zoos.

Planning is torch-free (:mod:`.spec`); the module (:mod:`.model`) builds rows. Training code
(:mod:`.train`) and the landscape measurement (:mod:`.landscape`) load when a hook that needs
them runs, so that building or evaluating a row never imports the training toolkit. No module
of the package imports this one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weightzoo.families.pinn import model
from weightzoo.families.pinn.spec import FAMILY_NAME, METRICS, PINNSpec
from weightzoo.generate.base import Family, ModelPlan

if TYPE_CHECKING:
    from torch import nn

    from weightzoo.storage.sidecar import SidecarRecord
    from weightzoo.zoo import Zoo

__all__ = ["FAMILY", "PINNFamily"]


def _columns(beta: float, lr: float) -> dict[str, float]:
    """A model's columns: its cell, and the cell again as the phase factors."""
    return {"beta": beta, "lr": lr, "load": beta, "temperature": lr}


class PINNFamily(Family[PINNSpec]):
    """The :class:`~weightzoo.generate.base.Family` of PINN specs."""

    name = FAMILY_NAME
    spec_class = PINNSpec
    metrics = METRICS
    trainer = "weightzoo.families.pinn.train:train_population"  # one population per block

    def plan(self, spec: PINNSpec) -> list[ModelPlan]:
        """One plan per model, seed-major; stratum = the (beta, lr) cell."""
        return spec.cell_plans(["beta", "lr"], _columns)

    def progress_total(self, spec: PINNSpec, plans: Sequence[ModelPlan]) -> int:
        """One full-batch step per epoch."""
        return spec.epochs

    def finalize(self, spec: PINNSpec, root: Path, device: str = "cpu") -> None:
        """Write the zoo's ``landscape`` side file and its phase labels (every checkpoint).

        :func:`weightzoo.families.pinn.landscape.pinn_landscape` measures ``hessian_top``,
        ``hessian_trace``, ``cka`` and ``mc``; :func:`weightzoo.landscape.taxonomy.write_phases`
        then adds the ``phase`` labels. Idempotent: the side file is rewritten whole from the
        stored checkpoints.
        """
        from weightzoo.families.pinn.landscape import (  # the landscape engine
            PINN_LANDSCAPE,
            pinn_landscape,
        )
        from weightzoo.landscape.taxonomy import write_phases

        options = PINN_LANDSCAPE.replace(
            iters=spec.landscape_iters,
            probes=spec.landscape_probes,
            steps=spec.landscape_steps,
        )
        pinn_landscape(root, device=device, options=options, progress=False)
        write_phases(root)

    def build_model(self, spec: Mapping[str, Any], columns: Mapping[str, Any]) -> nn.Module:
        """The PINN of the spec's ``hidden`` widths (no column changes it)."""
        return model.from_spec(spec)

    def landscape_plan(self, zoo: Zoo) -> Callable[..., SidecarRecord]:
        """:func:`~weightzoo.families.pinn.landscape.pinn_landscape`: on the PDE's own loss."""
        from weightzoo.families.pinn.landscape import pinn_landscape  # the landscape engine

        return pinn_landscape


FAMILY = PINNFamily()
"""The family object the registry hands out."""
