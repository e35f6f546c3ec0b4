"""Loss-landscape metrics of PINN convection zoos, on the PINN loss itself.

The PINN loss contains input derivatives (``u_t + beta u_x``), so its Hessian with respect to
the weights differentiates through a derivative. :class:`PINNLossModule` makes that loss fit
:func:`weightzoo.landscape.landscape_metrics`'s ``loss_fn(module(inputs), targets)`` form: it
has the PINN's parameters under the same names (a subclass), and its forward takes every
training point tagged with its kind (collocation, initial, boundary) and returns the residual,
``u``, or ``u(0, t) - u(2 pi, t)`` there; :func:`pinn_loss_fn` weights the squared
differences so that the sum is exactly the PINN loss (the mean of each part, summed). The
residual is a :func:`torch.func.jvp` over the inputs, which composes with the landscape code's
``vmap`` over models, ``grad`` over weights and forward-over-reverse Hessian-vector products
(where forward mode fails, :mod:`weightzoo.landscape.hessian` falls back to
reverse-over-reverse by itself).

:func:`pinn_landscape` writes the zoo's ``landscape`` side file: ``hessian_top`` and
``hessian_trace`` of the PINN loss, ``cka`` between the last hidden layer's activations of a
model and of its seed sibling on the evaluation grid, and ``mc`` (and the barriers) along the
Bézier curve between them, trained on the PINN loss. The seed sibling is the next model, in
storage order and cyclically, with the same ``beta`` and ``lr``. Models are measured in groups
of one ``beta`` (the loss differs per ``beta``). The ``phase`` labels are added by the callers
(``weightzoo landscape`` and the family's ``finalize``), as for every phase-transition zoo.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from weightzoo._types import EpochSelection, SplitSelection
from weightzoo.families.pinn.data import ConvectionData, convection_data, residual
from weightzoo.families.pinn.model import PINN
from weightzoo.families.pinn.spec import FAMILY_NAME
from weightzoo.landscape._per_model import Data
from weightzoo.landscape.driver import (
    PairOptions,
    Part,
    Selection,
    check_family,
    measure,
    metric_list,
    write_landscape,
)
from weightzoo.landscape.metrics import landscape_metrics
from weightzoo.landscape.options import Knobs, LandscapeOptions, resolve_options
from weightzoo.landscape.zoo_metrics import siblings
from weightzoo.storage.sidecar import SidecarRecord
from weightzoo.zoo import Zoo

__all__ = [
    "PINN_LANDSCAPE",
    "PINN_METRICS",
    "PINNLossModule",
    "pinn_landscape",
    "pinn_loss_data",
    "pinn_loss_fn",
]

#: What ``finalize`` measures for every stored checkpoint.
PINN_METRICS = ("hessian_top", "hessian_trace", "cka", "mc")

#: :func:`pinn_landscape`'s knobs: 20 power-iteration steps and Hutchinson probes, 100 curve
#: steps of at most 0.05, ``cka`` on 2048 evaluation-grid points, 16 models per call.
PINN_LANDSCAPE = LandscapeOptions(
    chunk=16, iters=20, probes=20, steps=100, lr=0.05, cka_samples=2048
)

_COLLOCATION, _INITIAL, _BOUNDARY = 0.0, 1.0, 2.0


class PINNLossModule(PINN):
    """A :class:`PINN` whose forward gives the per-point terms of the convection loss.

    Args:
        beta: the convection coefficient.
        hidden: the PINN's hidden widths.
    """

    def __init__(self, beta: float, hidden: Sequence[int] = (50, 50, 50, 50)) -> None:
        super().__init__(hidden)
        self.beta = float(beta)

    def forward(self, inputs: Tensor) -> Tensor:
        """Terms ``[N]`` at tagged points ``inputs [N, 3]`` (``x``, ``t``, kind).

        Kind 0: the residual ``u_t + beta u_x``; kind 1: ``u``; kind 2:
        ``u(x, t) - u(x + 2 pi, t)``.
        """
        points, kind = inputs[:, :2], inputs[:, 2]
        u = PINN.forward(self, points)
        periodic = u - PINN.forward(self, points + points.new_tensor([2 * math.pi, 0.0]))
        f = residual(lambda p: PINN.forward(self, p), points, self.beta)
        return torch.where(kind == _COLLOCATION, f, torch.where(kind == _INITIAL, u, periodic))


def pinn_loss_data(data: ConvectionData) -> tuple[Tensor, Tensor]:
    """``(inputs [N, 3], targets [N, 2])`` for :class:`PINNLossModule` and :func:`pinn_loss_fn`.

    Targets hold each term's target value and weight (``1 / count`` of its part).
    """
    parts = (
        (data.collocation, np.zeros(len(data.collocation)), _COLLOCATION),
        (data.initial, data.initial_u, _INITIAL),
        (data.boundary_low, np.zeros(len(data.boundary_low)), _BOUNDARY),
    )
    inputs, targets = [], []
    for points, values, kind in parts:
        inputs.append(np.column_stack([points, np.full(len(points), kind)]))
        targets.append(np.column_stack([values, np.full(len(points), 1.0 / len(points))]))
    as_tensor = lambda a: torch.from_numpy(np.concatenate(a).astype(np.float32))  # noqa: E731
    return as_tensor(inputs), as_tensor(targets)


def pinn_loss_fn(outputs: Tensor, targets: Tensor) -> Tensor:
    """The PINN loss from :class:`PINNLossModule`'s terms: ``sum weight * (term - value)^2``."""
    return (targets[:, 1] * (outputs - targets[:, 0]).square()).sum()


def pinn_landscape(
    zoo: Zoo | str,
    *,
    metrics: Sequence[str] = PINN_METRICS,
    split: SplitSelection = "all",
    epochs: EpochSelection = "all",
    options: Knobs = None,
    device: str = "cpu",
    progress: bool = True,
    name: str = "landscape",
    data_dir: str | None = None,
) -> SidecarRecord:
    """Measure landscape metrics of a PINN zoo's checkpoints and write them to a side file.

    The curves of a ``beta`` group train with the step ``min(options.lr, 1 / |lambda|)``,
    ``lambda`` the group's largest Hessian top eigenvalue at that checkpoint (the PINN loss
    is far sharper than a classifier's, and a fixed step diverges at large ``beta``). ``cka``
    compares ``options.cka_samples`` evaluation-grid points (evenly strided; ``None``:
    :data:`PINN_LANDSCAPE`'s). The data knobs (``batches``, ``batch_size``) do not apply: a
    PINN makes its own points.

    Args:
        zoo: a PINN zoo (family ``"pinn"``).
        metrics: names from :data:`weightzoo.landscape.METRICS` (``mc_error`` is not
            defined for a PINN: there is no accuracy).
        split: the models to measure (all by default).
        epochs: checkpoints to measure (all by default, or ``"last"``, or labels).
        options: the knobs, or a mapping of some over :data:`PINN_LANDSCAPE` (the default).
        device: torch device.
        progress: show a progress bar over checkpoints.
        name: the side file's name.
        data_dir: unused (the landscape driver's data option; a PINN makes its own points).

    Returns:
        The side file's record.

    Raises:
        UnknownMetricError: for an unknown metric, or ``mc_error``.
        InvalidOptionError: for a zoo of another family, an unknown knob or a bad count.
    """
    zoo = zoo if isinstance(zoo, Zoo) else Zoo(zoo)
    check_family(zoo, FAMILY_NAME, "PINN")
    where = f"PINN zoo {zoo.name!r}"
    metrics = metric_list(metrics, unmeasurable=("mc_error",), where=where)
    options = resolve_options(options, PINN_LANDSCAPE)
    spec = zoo.manifest.spec
    target = torch.device(device)
    data = convection_data(
        spec["collocation"], spec["collocation_seed"], spec["x_grid"], spec["t_grid"]
    )
    loss_data = tuple(t.to(target) for t in pinn_loss_data(data))
    samples = options.cka_samples or PINN_LANDSCAPE.cka_samples
    stride = max(1, len(data.grid) // samples)
    grid = torch.from_numpy(data.grid[::stride]).to(target)
    hidden = tuple(int(h) for h in spec["hidden"])

    selection = Selection.open(zoo, split, epochs)
    beta = selection.columns["beta"].astype(np.float64)
    node = np.array([f"{b!r}|{r!r}" for b, r in zip(beta, selection.columns["lr"], strict=True)])
    inputs = {"layout": zoo.layout}
    on_loss = [m for m in metrics if m != "cka"]
    parts = []
    for value in dict.fromkeys(beta.tolist()) if on_loss else ():  # the loss differs per beta
        module = PINNLossModule(value, hidden).to(target)
        rate = _curve_rate(module, loss_data, options, inputs)
        members = np.flatnonzero(beta == value)
        parts.append(Part(members, module, loss_data, pinn_loss_fn, on_loss, options, inputs, rate))
    if "cka" in metrics:  # the plain network's last hidden layer on the evaluation grid
        cka = inputs | dict(cka_inputs=grid, cka_layer="act")
        plain = PINN(hidden).to(target)
        everyone = np.arange(selection.count)
        parts.append(Part(everyone, plain, (grid, grid[:, 0]), pinn_loss_fn, ["cka"], options, cka))
    partner = siblings({"node": node}, selection.count)
    out = measure(selection, parts, partner, metrics, device=target, progress=progress)
    attrs = {
        "curve_lr": f"min({options.lr}, 1 / largest |hessian_top| of the beta group)",
        "cka": f"last hidden layer on every {stride}th evaluation-grid point",
        "partner": "next model of the same beta and lr (another seed), cyclic",
    }
    what = "loss-landscape metrics on the PINN loss (residual + initial + boundary)"
    return write_landscape(selection, name, out, what, options, attrs)


def _curve_rate(
    module: PINNLossModule, data: Data, options: LandscapeOptions, inputs: Mapping[str, Any]
) -> PairOptions:
    """The curve-training step of a ``beta`` group, from its models' Hessian top eigenvalues.

    Returns:
        ``(rows, singles) -> options`` with ``lr = min(options.lr, 1 / max |hessian_top|)``,
        ``hessian_top`` from ``singles`` where measured, else measured here.
    """

    def rate(rows: Tensor, singles: Mapping[str, np.ndarray]) -> LandscapeOptions:
        top = singles.get("hessian_top")
        if top is None:  # not asked for: measured for the step alone
            found = landscape_metrics(
                module, rows, data, pinn_loss_fn, ["hessian_top"], options=options, **inputs
            )
            top = found["hessian_top"]
        # SGD on the curve is stable for a step below 2 (1 + momentum) / lambda_max
        largest = max(float(np.nanmax(np.abs(top))), 1e-12)
        return options.replace(lr=min(options.lr, 1.0 / largest))

    return rate
