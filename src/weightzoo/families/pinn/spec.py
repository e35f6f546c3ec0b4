"""PINN convection zoos as specs: the grid, the named specs and their catalog listings.

A zoo is a grid of convection coefficient ``beta`` (the load-like factor: how hard the PDE is
for a fixed network) times Adam learning rate ``lr`` (the temperature-like factor) times seeds,
every model a :class:`~weightzoo.families.pinn.model.PINN` trained full batch on the convection
problem of :mod:`weightzoo.families.pinn.data`. Models are ordered seed-major (for each
replicate, every ``beta`` and, inside it, every ``lr``), so ``--models N`` keeps a balanced
part of the grid, and model ``i`` has seed ``seed_start + i``. All models share one
architecture, so one version-1 zoo holds the whole grid.

Columns per model: ``beta``, ``lr``, ``load`` (= ``beta``), ``temperature`` (= ``lr``),
``seed``. Metrics per checkpoint: ``train_loss`` (the PINN loss), its parts
``loss_residual``, ``loss_initial``, ``loss_boundary``, and ``test_error`` (relative L2
error against the exact solution on the evaluation grid).

The grid of the paper's zoo ("A Model Zoo on Phase Transitions in Neural Networks",
Schürholt, Meynent, Zhou, Lu, Yang, Borth, arXiv:2504.18072) is documented as a reading in
``docs/pinn.md``. This module imports no torch, so that listing and sizing the zoos is cheap.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from weightzoo.errors import InvalidOptionError
from weightzoo.families import Listing
from weightzoo.families._fields import LandscapeFields
from weightzoo.generate.base import GridOptions, ZooSpec, size_estimate

__all__ = [
    "FAMILY_NAME",
    "INPUTS",
    "METRICS",
    "GridValueError",
    "PINNSpec",
    "listings",
    "paper_betas",
    "paper_lrs",
    "specs",
]

FAMILY_NAME = "pinn"
"""The family's registry name, as every manifest of a PINN zoo records it."""

METRICS = ("train_loss", "loss_residual", "loss_initial", "loss_boundary", "test_error")
"""Per-checkpoint metrics (see the module docs)."""

INPUTS = 2
"""Coordinates a PINN reads: ``x`` and ``t``."""


class GridValueError(InvalidOptionError):
    """A grid value (``beta`` or ``lr``) that a PINN spec does not have or cannot train."""


@dataclass(frozen=True)
class PINNSpec(GridOptions, LandscapeFields, ZooSpec):
    """A PINN convection zoo.

    Attributes:
        betas: convection coefficients (load-like).
        lrs: Adam learning rates (temperature-like).
        seeds: models per (beta, lr) cell.
        hidden: hidden widths of the PINN.
        collocation: collocation points of the residual.
        collocation_seed: seeds the draw of the collocation points (shared by all models).
        x_grid / t_grid: the evaluation grid (``x_grid`` points in ``[0, 2 pi)``, ``t_grid`` in
            ``[0, 1]``).
        epochs: full-batch Adam steps.
        checkpoints: stored checkpoints after initialisation, evenly spaced to ``epochs``.
        optimizer: the toolkit optimizer.
        seed_start: model ``i`` has seed ``seed_start + i``.
        landscape_iters: power-iteration steps of ``hessian_top`` in the ``landscape`` side
            file (its probes and curve steps are the fields of :class:`LandscapeFields`).
        models: if set, only ``models`` models: the first, or a sample (``sample``).
    """

    family: str = FAMILY_NAME
    betas: tuple[float, ...] = (1.0, 10.0, 40.0)
    lrs: tuple[float, ...] = (1e-3, 1e-2)
    seeds: int = 3
    hidden: tuple[int, ...] = (50, 50, 50, 50)
    collocation: int = 100
    collocation_seed: int = 0
    x_grid: int = 256
    t_grid: int = 100
    epochs: int = 1000
    checkpoints: int = 2
    optimizer: str = "adam"
    seed_start: int = 1
    landscape_iters: int = 20
    models: int | None = None

    kind: ClassVar[str] = "pinn"
    load_factor: ClassVar[str] = "beta"
    temperature_factor: ClassVar[str] = "lr"

    def __post_init__(self) -> None:
        bad_beta = [b for b in self.betas if not (math.isfinite(b) and b >= 0)]
        bad_lr = [r for r in self.lrs if not (math.isfinite(r) and r > 0)]
        if bad_beta or bad_lr or not self.betas or not self.lrs:
            raise GridValueError(
                f"spec {self.name!r}: betas must be finite and >= 0 and lrs finite and > 0, "
                f"at least one of each; got betas={list(self.betas)}, lrs={list(self.lrs)}"
            )
        if self.seeds < 1 or self.epochs < 1 or self.checkpoints < 1:
            raise GridValueError(
                f"spec {self.name!r}: seeds, epochs and checkpoints must be >= 1; got "
                f"{self.seeds}, {self.epochs}, {self.checkpoints}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON data, with the natural names of its phase factors."""
        data = ZooSpec.to_dict(self)
        data["load_factor"], data["temperature_factor"] = self.load_factor, self.temperature_factor
        return data

    def cells(self) -> list[tuple[float, float]]:
        """The (beta, lr) cells in model order within one replicate."""
        return [(float(b), float(r)) for b in self.betas for r in self.lrs]

    def grid_models(self) -> int:
        """Models of the full grid (ignoring ``models``)."""
        return len(self.cells()) * self.seeds

    def cell_models(self, beta: float, lr: float) -> list[int]:
        """Model ids of the cell ``(beta, lr)``, one per seed, in seed order.

        Raises:
            GridValueError: for a ``beta`` or ``lr`` that is not on the grid.
        """
        for what, value, known in (("beta", beta, self.betas), ("lr", lr, self.lrs)):
            if not any(math.isclose(float(value), float(k), rel_tol=1e-9) for k in known):
                raise GridValueError(
                    f"spec {self.name!r} has no {what} {value!r}; its grid: {list(known)}"
                )
        cells = self.cells()
        index = next(
            i
            for i, (b, r) in enumerate(cells)
            if math.isclose(b, beta, rel_tol=1e-9) and math.isclose(r, lr, rel_tol=1e-9)
        )
        return [k * len(cells) + index for k in range(self.seeds)]

    def checkpoint_epochs(self) -> list[int]:
        """Epoch 0 and ``checkpoints`` evenly spaced epochs ending at the last."""
        count = min(self.checkpoints, self.epochs)
        return sorted({0, *(round(self.epochs * (k + 1) / count) for k in range(count))})

    def num_params(self) -> int:
        """Parameters of one PINN: a weight matrix and a bias per layer, ``INPUTS -> 1``."""
        widths = (INPUTS, *(int(h) for h in self.hidden), 1)
        return sum((a + 1) * b for a, b in itertools.pairwise(widths))

    def estimate(self) -> dict[str, int]:
        """Size of the zoo, without torch: models, checkpoints, params, bytes of ``weights``."""
        return size_estimate(self.num_models(), len(self.checkpoint_epochs()), self.num_params())


def paper_betas() -> tuple[float, ...]:
    """The convection coefficients of the paper-size grid (a reading, see docs/pinn.md)."""
    return (1.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 50.0)


def paper_lrs() -> tuple[float, ...]:
    """14 Adam learning rates, log-spaced from 1e-4 to 1e-1 (a reading, see docs/pinn.md)."""
    return tuple(float(f"{10 ** (-4 + 3 * k / 13):.3g}") for k in range(14))


def specs() -> list[ZooSpec]:
    """The named PINN specs: a small CPU zoo and the paper-size grid (10 x 14 x 5 = 700)."""
    return [
        PINNSpec(
            name="phase-pinn-convection",
            landscape_iters=10,
            landscape_probes=10,
            landscape_steps=50,
        ),
        PINNSpec(
            name="phase-pinn-convection-paper",
            betas=paper_betas(),
            lrs=paper_lrs(),
            seeds=5,
            epochs=10000,
            checkpoints=10,
            shard_models=256,  # on a GPU a step costs the same for 64 or 700 models
        ),
    ]


def listings() -> list[Listing]:
    """The catalog's lines for the named specs (both generated offline)."""
    return [
        Listing(
            "phase-pinn-convection",
            "Phase zoo: PINNs on 1-D convection, beta x learning rate, small",
        ),
        Listing(
            "phase-pinn-convection-paper",
            "Phase zoo: PINNs on 1-D convection, 10 beta x 14 lr x 5 seeds",
        ),
    ]
