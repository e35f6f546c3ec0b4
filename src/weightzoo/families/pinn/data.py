"""The 1-D convection problem of physics-informed neural networks (PINNs).

``u_t + beta * u_x = 0`` on ``x in [0, 2 pi)``, ``t in [0, 1]``, with ``u(x, 0) = sin(x)`` and
periodic boundaries ``u(0, t) = u(2 pi, t)``; the exact solution is ``sin(x - beta t)``. It is
the benchmark of Krishnapriyan, Gholami, Zhe, Kirby, Mahoney, "Characterizing possible failure
modes in physics-informed neural networks" (arXiv:2109.01050): a plain PINN learns it for small
``beta`` and fails for large ``beta`` (around 30 and above in that paper).

The point sets follow that paper's setup: an evaluation grid of ``x_grid`` points in
``[0, 2 pi)`` (endpoint excluded) times ``t_grid`` points in ``[0, 1]``; the initial points
are the grid's ``t = 0`` row; the boundary points are the grid's ``t`` values at ``x = 0`` and
``x = 2 pi``; the collocation points are drawn without replacement from the grid's interior
(``t > 0``, ``x > 0``) by a seeded generator. Nothing is read from disk.

The PDE residual needs the derivatives of the network's output with respect to its inputs.
:func:`residual` takes them as one forward-mode directional derivative
(:func:`torch.func.jvp` along ``(beta, 1)`` in ``(x, t)``), which is ``beta u_x + u_t``
directly, and composes with :func:`torch.func.vmap` over models and with reverse-mode
gradients over the parameters (training) or Hessian-vector products (loss-landscape metrics).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "LOSS_PARTS",
    "ConvectionData",
    "convection_data",
    "exact_solution",
    "loss_parts",
    "relative_l2_error",
    "residual",
]

#: The three terms of the PINN loss, in the order :func:`loss_parts` returns them.
LOSS_PARTS = ("residual", "initial", "boundary")


@dataclass(frozen=True)
class ConvectionData:
    """The point sets of one convection problem (float32 numpy, ``(x, t)`` in the last axis).

    Attributes:
        collocation: ``[n_f, 2]`` interior points where the residual is enforced.
        initial: ``[x_grid, 2]`` points at ``t = 0``.
        initial_u: ``[x_grid]`` the initial condition ``sin(x)`` there.
        boundary_low: ``[t_grid, 2]`` points at ``x = 0``.
        boundary_high: ``[t_grid, 2]`` the same times at ``x = 2 pi``.
        grid: ``[t_grid * x_grid, 2]`` the evaluation grid, ``t``-major.
        x_grid / t_grid: the grid's size.
    """

    collocation: np.ndarray
    initial: np.ndarray
    initial_u: np.ndarray
    boundary_low: np.ndarray
    boundary_high: np.ndarray
    grid: np.ndarray
    x_grid: int
    t_grid: int

    def tensors(self, device: str | torch.device = "cpu") -> dict[str, Tensor]:
        """The point sets as float32 tensors on ``device``, by field name."""
        names = ("collocation", "initial", "initial_u", "boundary_low", "boundary_high", "grid")
        return {n: torch.from_numpy(getattr(self, n)).to(device) for n in names}


def convection_data(
    collocation: int = 100, seed: int = 0, x_grid: int = 256, t_grid: int = 100
) -> ConvectionData:
    """The point sets of the convection problem (deterministic in the arguments).

    Args:
        collocation: interior points drawn for the residual (``N_f``).
        seed: seeds the draw of the collocation points.
        x_grid: grid points along ``x`` (``[0, 2 pi)``, endpoint excluded).
        t_grid: grid points along ``t`` (``[0, 1]``, both ends included).

    Returns:
        A :class:`ConvectionData` (cached: the same arguments give the same object).

    Raises:
        ValueError: for a grid smaller than 2 x 2, or more collocation points than the
            grid's interior holds.
    """
    return _convection_data(int(collocation), int(seed), int(x_grid), int(t_grid))


@lru_cache(maxsize=8)
def _convection_data(collocation: int, seed: int, x_grid: int, t_grid: int) -> ConvectionData:
    if x_grid < 2 or t_grid < 2:
        raise ValueError(f"the grid needs at least 2 x 2 points, got {x_grid} x {t_grid}")
    interior = (x_grid - 1) * (t_grid - 1)
    if not 1 <= collocation <= interior:
        raise ValueError(
            f"collocation points must be 1..{interior} (the grid's interior), got {collocation}"
        )
    x = np.linspace(0.0, 2 * math.pi, x_grid, endpoint=False)
    t = np.linspace(0.0, 1.0, t_grid)
    xx, tt = np.meshgrid(x, t)  # [t_grid, x_grid]
    grid = np.stack([xx.ravel(), tt.ravel()], axis=1)
    inner = np.stack([xx[1:, 1:].ravel(), tt[1:, 1:].ravel()], axis=1)
    pick = np.random.default_rng(seed).choice(len(inner), size=collocation, replace=False)
    initial = np.stack([x, np.zeros_like(x)], axis=1)
    low = np.stack([np.zeros_like(t), t], axis=1)
    high = np.stack([np.full_like(t, 2 * math.pi), t], axis=1)
    f32 = np.float32
    return ConvectionData(
        collocation=inner[np.sort(pick)].astype(f32),
        initial=initial.astype(f32),
        initial_u=np.sin(x).astype(f32),
        boundary_low=low.astype(f32),
        boundary_high=high.astype(f32),
        grid=grid.astype(f32),
        x_grid=x_grid,
        t_grid=t_grid,
    )


def exact_solution(points: np.ndarray | Tensor, beta: float) -> np.ndarray | Tensor:
    """``sin(x - beta t)`` at ``points [..., 2]`` (numpy or torch, as given)."""
    if isinstance(points, Tensor):
        return torch.sin(points[..., 0] - beta * points[..., 1])
    points = np.asarray(points)
    return np.sin(points[..., 0] - beta * points[..., 1])


def residual(fn: Callable[[Tensor], Tensor], points: Tensor, beta: Tensor | float) -> Tensor:
    """The PDE residual ``u_t + beta u_x`` of ``u = fn(points)`` at every point.

    ``fn`` maps points ``[..., 2]`` to values ``[...]``, each value depending only on its own
    point (an MLP applied pointwise), so the directional derivative of ``fn`` along
    ``(beta, 1)`` is the residual at every point at once.

    Args:
        fn: the solution network, pointwise.
        points: ``[..., 2]`` points ``(x, t)``.
        beta: the convection coefficient (a float or a 0-d tensor, e.g. inside ``vmap``).

    Returns:
        ``[...]`` residuals, differentiable with respect to ``fn``'s parameters.
    """
    beta = torch.as_tensor(beta, dtype=points.dtype, device=points.device)
    direction = torch.stack([beta.expand(points.shape[:-1]), torch.ones_like(points[..., 1])], -1)
    return torch.func.jvp(fn, (points,), (direction,))[1]


def loss_parts(
    fn: Callable[[Tensor], Tensor], data: dict[str, Tensor], beta: Tensor | float
) -> Tensor:
    """The three mean-squared terms of the PINN loss, ``[3]`` in :data:`LOSS_PARTS` order.

    ``residual``: mean of ``(u_t + beta u_x)^2`` over the collocation points; ``initial``: mean
    of ``(u(x, 0) - sin x)^2``; ``boundary``: mean of ``(u(0, t) - u(2 pi, t))^2``. The PINN
    loss is their sum (all weights 1, as in arXiv:2109.01050).

    Args:
        fn: the solution network, pointwise.
        data: :meth:`ConvectionData.tensors`.
        beta: the convection coefficient.
    """
    f = residual(fn, data["collocation"], beta)
    initial = fn(data["initial"]) - data["initial_u"]
    boundary = fn(data["boundary_low"]) - fn(data["boundary_high"])
    return torch.stack([f.square().mean(), initial.square().mean(), boundary.square().mean()])


def relative_l2_error(predicted: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """``||predicted - exact||_2 / ||exact||_2`` over the last axis."""
    predicted, exact = np.asarray(predicted, np.float64), np.asarray(exact, np.float64)
    return np.linalg.norm(predicted - exact, axis=-1) / np.linalg.norm(exact, axis=-1)
