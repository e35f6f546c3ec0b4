"""Small specs of the real families that train in seconds, for tests that need a zoo of them."""

from __future__ import annotations

from typing import Any

from weightzoo.families.pinn.spec import PINNSpec
from weightzoo.families.property.spec import PropertySpec


def tiny_pinn_spec(**changes: Any) -> PINNSpec:
    """A 4-model PINN grid (2 betas x 1 rate x 2 seeds) on a coarse grid, with ``changes``.

    Its landscape takes two power-iteration steps, probes and curve steps: far from
    converged on purpose (speed).
    """
    base: dict[str, Any] = dict(
        name="pinn-tiny",
        betas=(1.0, 20.0),
        lrs=(1e-2,),
        seeds=2,
        collocation=40,
        x_grid=32,
        t_grid=12,
        epochs=6,
        checkpoints=2,
        landscape_iters=2,
        landscape_probes=2,
        landscape_steps=2,
    )
    return PINNSpec(**(base | changes))


def tiny_property_spec(**changes: Any) -> PropertySpec:
    """A property zoo of 3 models per ratio (0, 0.5, 1) on small pools, with ``changes``."""
    base: dict[str, Any] = dict(
        name="property-tiny",
        ratios=(0.0, 0.5, 1.0),
        models_per_ratio=3,
        train_size=200,
        pool_size=800,
        test_size=400,
        epochs=8,
        batch_size=25,
        lr=1e-2,
    )
    return PropertySpec(**(base | changes))
