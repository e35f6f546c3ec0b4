"""PINN populations on the toolkit: every model's residual needs its own input derivatives.

The stacked parameters ``{name: [M, ...]}`` run through :func:`torch.func.vmap` over models of
:func:`torch.func.functional_call` of one :class:`~weightzoo.families.pinn.model.PINN`; inside,
:func:`weightzoo.families.pinn.data.residual` takes ``u_t + beta u_x`` as one forward-mode
directional derivative (``torch.func.jvp``) with the model's own ``beta`` (a per-model buffer,
so compaction would keep it in step). Reverse mode through that gives each model's gradient.

Training is full batch: one optimizer step per epoch on all collocation, initial and boundary
points (the toolkit's data order is drawn but every step uses every point). Metrics at each
checkpoint: the loss and its three parts on the training points, and the relative L2 error
against the exact solution on the evaluation grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, vmap

from weightzoo.blocks import ModelRecord
from weightzoo.families.pinn.data import LOSS_PARTS, convection_data, loss_parts
from weightzoo.families.pinn.model import PINN
from weightzoo.families.pinn.spec import METRICS, PINNSpec
from weightzoo.features import layout_of
from weightzoo.generate import population as toolkit
from weightzoo.generate.base import BlockReport, ModelPlan

__all__ = [
    "ConvectionTask",
    "initial_models",
    "population_loss_parts",
    "population_predict",
    "stored_metrics",
    "train_population",
]


def population_loss_parts(
    net: PINN, params: dict[str, Tensor], beta: Tensor, data: dict[str, Tensor]
) -> Tensor:
    """The loss parts of every model, ``[M, 3]``, in :data:`.data.LOSS_PARTS` order.

    Args:
        net: the architecture (its own weights are not used).
        params: stacked parameters ``{name: [M, ...]}``.
        beta: ``[M]`` each model's convection coefficient.
        data: :meth:`~weightzoo.families.pinn.data.ConvectionData.tensors`.
    """

    def one(p: dict[str, Tensor], b: Tensor) -> Tensor:
        return loss_parts(lambda pts: functional_call(net, p, (pts,)), data, b)

    return vmap(one)(params, beta)


def population_predict(net: PINN, params: dict[str, Tensor], points: Tensor) -> Tensor:
    """``u`` of every model at shared ``points [n, 2]``: ``[M, n]``."""
    return vmap(lambda p: functional_call(net, p, (points,)))(params)


class ConvectionTask:
    """The :class:`~weightzoo.generate.population.TrainingTask` of a PINN population.

    Splits: ``train`` (the collocation points; its metrics cover the initial and boundary
    points too) and ``test`` (the evaluation grid).

    Args:
        net: the architecture.
        data: the point sets as tensors on the population's device.
        eval_items: grid points times models per evaluation pass (bounds memory).
    """

    def __init__(self, net: PINN, data: dict[str, Tensor], eval_items: int = 2_000_000) -> None:
        self.net, self.data, self.eval_items = net, data, eval_items
        self.train_size = len(data["collocation"])
        self.splits = {"train": self.train_size, "test": len(data["grid"])}

    def train_loss(self, pop: toolkit.Population, rows: Tensor, order: toolkit.DataOrder) -> Tensor:
        """Per-model PINN loss ``[M]`` on every training point (full batch)."""
        return population_loss_parts(self.net, pop.params, pop.buffers["beta"], self.data).sum(1)

    def eval_sums(
        self, pop: toolkit.Population, split: str, start: int, stop: int
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """``train``: the loss and its parts (one pass); ``test``: squared errors on the grid."""
        one = torch.ones(pop.size, dtype=torch.float64, device=pop.device)
        if split == "train":
            parts = population_loss_parts(
                self.net, pop.params, pop.buffers["beta"], self.data
            ).double()
            out = {"loss": (parts.sum(1), one)}
            out |= {name: (parts[:, k], one) for k, name in enumerate(LOSS_PARTS)}
            return out
        points = self.data["grid"][start:stop]
        u = population_predict(self.net, pop.params, points).double()
        beta = pop.buffers["beta"].double().unsqueeze(1)
        exact = torch.sin(points[:, 0].double() - beta * points[:, 1].double())
        count = one * (stop - start)
        return {
            "sqerr": ((u - exact).square().sum(1), count),
            "sqexact": (exact.square().sum(1), count),
        }

    def eval_chunk(self, split: str, models: int) -> int:
        """The whole training set in one pass; grid points in passes of ``eval_items``."""
        if split == "train":
            return self.train_size
        return max(256, self.eval_items // max(1, models))


def stored_metrics(metrics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The toolkit's ``<split>_<name>`` arrays as the zoo's metric columns.

    ``train_loss`` and ``loss_<part>`` as measured; ``test_error`` is
    ``sqrt(sum (u - u*)^2 / sum u*^2)`` on the grid (the relative L2 error).
    """
    out = {"train_loss": metrics["train_loss"]}
    out |= {f"loss_{name}": metrics[f"train_{name}"] for name in LOSS_PARTS}
    ratio = metrics["test_sqerr"].astype(np.float64) / metrics["test_sqexact"]
    out["test_error"] = np.sqrt(ratio).astype(np.float32)
    return out


def initial_models(spec: PINNSpec, plans: Sequence[ModelPlan]) -> list[PINN]:
    """Each plan's freshly initialised PINN, drawn under ``torch.manual_seed(plan.seed)``."""
    return toolkit.seeded_models(lambda: PINN(spec.hidden), (plan.seed for plan in plans))


def train_population(
    spec: PINNSpec, plans: Sequence[ModelPlan], device: str, report: BlockReport
) -> list[ModelRecord]:
    """Train the models of ``plans`` together; one record per plan, in order.

    The family's ``train_block`` (:attr:`~weightzoo.generate.base.Family.trainer`).

    Args:
        spec: the zoo's spec.
        plans: the models (their ``beta`` and ``lr`` columns).
        device: torch device.
        report: told the optimizer steps of each epoch.
    """
    data = convection_data(spec.collocation, spec.collocation_seed, spec.x_grid, spec.t_grid)
    params, _ = torch.func.stack_module_state(initial_models(spec, plans))
    beta = torch.tensor([float(p.columns["beta"]) for p in plans], dtype=torch.float32)
    pop = toolkit.Population(params, {"beta": beta}, device=device)
    net = PINN(spec.hidden).to(pop.device)
    task = ConvectionTask(net, data.tensors(pop.device))
    config = toolkit.TrainConfig(
        optimizer=spec.optimizer,
        lr=[float(p.columns["lr"]) for p in plans],
        epochs=spec.epochs,
        batch_size=spec.collocation,
        checkpoints=tuple(spec.checkpoint_epochs()),
        checkpoint_splits=("train", "test"),
    )
    # a freshly built module, as the family's layout is (its draws keep the random stream)
    names = layout_of(PINN(spec.hidden)).names
    progress_steps = toolkit.step_progress(report)
    result = toolkit.train_plans(task, pop, plans, names, config, progress=progress_steps)
    metrics = stored_metrics(result.metrics)
    return toolkit.plan_records(plans, result.weights, metrics, device, METRICS)
