"""Sine zoos as specs: the grid, the named specs and their catalog listings.

Models are ordered seed-major (every width and, inside it, every learning rate, for one seed
after another), so a prefix of the order is a balanced part of the grid. This module imports
no torch, so that listing and sizing the zoos is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from weightzoo.errors import InvalidOptionError
from weightzoo.families import Listing
from weightzoo.generate.base import GridOptions, ZooSpec, size_estimate

__all__ = ["FAMILY_NAME", "METRICS", "SineSpec", "listings", "specs"]

FAMILY_NAME = "sine"
"""The family's registry name, as every manifest of a sine zoo records it."""

METRICS = ("train_loss", "test_loss")
"""Per-checkpoint metrics: mean squared error on the training and the test points."""


@dataclass(frozen=True)
class SineSpec(GridOptions, ZooSpec):
    """A sine zoo: ``widths x lrs x seeds`` one-hidden-layer tanh MLPs fitting ``sin(x)``.

    Attributes:
        widths: hidden widths of the grid.
        lrs: Adam learning rates of the grid.
        seeds: models per (width, lr) cell.
        points: training points on ``[-pi, pi]`` (the test points lie between them).
        epochs: full-batch Adam steps.
        models: if set, only part of the grid (``--models``).
    """

    family: str = FAMILY_NAME
    widths: tuple[int, ...] = (4, 8)
    lrs: tuple[float, ...] = (1e-2, 3e-2)
    seeds: int = 4
    points: int = 32
    epochs: int = 200
    models: int | None = None

    kind: ClassVar[str] = "sine"

    def __post_init__(self) -> None:
        if not self.widths or min(self.widths) < 1 or not self.lrs or min(self.lrs) <= 0:
            raise InvalidOptionError(
                f"spec {self.name!r}: widths must be >= 1 and lrs > 0, at least one of each; "
                f"got widths={list(self.widths)}, lrs={list(self.lrs)}"
            )

    def cells(self) -> list[tuple[int, float]]:
        """The (width, lr) cells in model order within one seed."""
        return [(int(w), float(r)) for w in self.widths for r in self.lrs]

    def grid_models(self) -> int:
        """Models of the full grid (ignoring ``models``)."""
        return len(self.cells()) * self.seeds

    def checkpoint_epochs(self) -> list[int]:
        """Initialisation, half-way and the end."""
        return sorted({0, self.epochs // 2, self.epochs})

    def estimate(self) -> dict[str, int]:
        """Size of the zoo without torch; the widest model sizes every row."""
        width = max(self.widths)
        params = width * 2 + width + 1  # Linear(1, w) then Linear(w, 1)
        return size_estimate(self.num_models(), len(self.checkpoint_epochs()), params)


def specs() -> list[SineSpec]:
    """The named sine specs (one shared width, since one zoo holds one layout)."""
    return [SineSpec(name="sine-mlp", widths=(8,), lrs=(1e-2, 3e-2, 1e-1))]


def listings() -> list[Listing]:
    """The catalog's line for each named spec."""
    return [Listing("sine-mlp", "Sine zoo: tanh MLPs fitting sin(x), three learning rates")]
