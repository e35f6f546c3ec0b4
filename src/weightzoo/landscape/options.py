"""``LandscapeOptions``: the knobs of a landscape measurement, each documented once.

:func:`weightzoo.landscape.landscape_metrics`, the zoo-level engines
(:func:`weightzoo.landscape.zoo_metrics.compute_zoo_landscape`,
:func:`weightzoo.families.pinn.landscape.pinn_landscape`,
:func:`weightzoo.families.tinylm.landscape.compute_lm_landscape`),
:func:`weightzoo.landscape.mode_connectivity` and
:func:`weightzoo.landscape.hessian_top_eigenvalue_details` take one :class:`LandscapeOptions`
(each the knobs it uses); each engine keeps its defaults in a module constant
(``ZOO_LANDSCAPE``, ``PINN_LANDSCAPE``, ``TINYLM_LANDSCAPE``). Change a few knobs from an
engine's defaults with :meth:`LandscapeOptions.replace`::

    compute_zoo_landscape(zoo, options=ZOO_LANDSCAPE.replace(iters=50, probes=10))

or pass only the knobs to change, over whichever engine measures the zoo (a PINN or tiny-LM
zoo's own): ``compute_zoo_landscape(zoo, options={"iters": 50})``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from weightzoo.errors import InvalidOptionError

__all__ = [
    "DEFAULT_ITERS",
    "DEFAULT_TOL",
    "Knobs",
    "LandscapeOptions",
    "check_counts",
    "resolve_options",
]

#: Power-iteration step budget and stopping tolerance of every caller's defaults. On the
#: digits trajectory MLPs ``lambda_2 / lambda_1`` reaches 0.97, where the estimate's error is
#: about 15 times its last relative change: ``tol=1e-3`` stopped up to 3.8% low (50 steps),
#: ``1e-4`` within 0.15% of the dense eigenvalue after at most 78 steps; the budget leaves room
#: above that (docs/landscape.md, Stop rule).
DEFAULT_ITERS = 200
DEFAULT_TOL = 1e-4


def check_counts(**counts: Any) -> None:
    """Raise :class:`InvalidOptionError` unless every value is an int of at least 1."""
    for what, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidOptionError(f"{what} must be an int >= 1, got {value!r}")


@dataclass(frozen=True)
class LandscapeOptions:
    """How the landscape metrics of a population are measured.

    The defaults are :func:`~weightzoo.landscape.landscape_metrics`'s; every zoo-level engine
    has its own (``ZOO_LANDSCAPE`` and the families' constants). Results do not depend on
    ``chunk`` or ``vectorize``.

    Attributes:
        chunk: models per vectorised call, to bound memory (``None``: all at once).
        seed: seeds every random draw (start vectors, probes, curve times), shared by all
            models.
        iters: most power-iteration steps (``hessian_top``).
        tol: relative change at which power iteration stops (``hessian_top``); one
            ``RuntimeWarning`` names the models that did not converge.
        probes: Hutchinson probes (``hessian_trace``).
        points: path times of the connectivity metrics (at least 3).
        steps: curve-training steps of the connectivity metrics (0: the linear path alone,
            no curve trained or evaluated).
        lr: curve-training learning rate (a PINN engine: the largest, see
            :func:`~weightzoo.families.pinn.landscape.pinn_landscape`).
        momentum: curve-training SGD momentum.
        weight_decay: curve-training L2 penalty on the control point.
        vectorize: ``vmap`` over models (``None``: yes, except for recurrent modules).
        bn_update: re-estimate BatchNorm statistics along the connectivity paths on the
            training data (see :func:`~weightzoo.landscape.mode_connectivity`; ``None``: when
            the module has BatchNorm).
        batches: training batches the loss is measured on (engines that read their data).
        batch_size: items per batch (images; a tiny-LM zoo's windows).
        cka_samples: inputs ``cka`` compares (``None``: the engine's own number: a PINN's
            2048 evaluation-grid points, evenly strided; a tiny-LM's 32 validation windows).

    Raises:
        InvalidOptionError: for a ``chunk``, ``batches``, ``batch_size`` or ``cka_samples``
            that is not an int >= 1 (``chunk`` and ``cka_samples`` may be ``None``).
    """

    chunk: int | None = None
    seed: int = 0
    iters: int = DEFAULT_ITERS
    tol: float = DEFAULT_TOL
    probes: int = 100
    points: int = 11
    steps: int = 200
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    vectorize: bool | None = None
    bn_update: bool | None = None
    batches: int = 4
    batch_size: int = 64
    cka_samples: int | None = None

    def __post_init__(self) -> None:
        optional = {"chunk": self.chunk, "cka_samples": self.cka_samples}
        check_counts(
            batches=self.batches,
            batch_size=self.batch_size,
            **{name: value for name, value in optional.items() if value is not None},
        )

    def replace(self, **changes: Any) -> LandscapeOptions:
        """These options with ``changes`` (knob names as keywords), checked again.

        Raises:
            InvalidOptionError: for a knob name that does not exist, or a bad count.
        """
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InvalidOptionError(
                f"unknown landscape option(s) {', '.join(map(repr, unknown))}; "
                f"use {', '.join(sorted(known))}"
            )
        return dataclasses.replace(self, **changes)

    def pick(self, names: Iterable[str]) -> dict[str, Any]:
        """``{name: value}`` of the knobs ``names``, as keywords of a function that takes them."""
        return {name: getattr(self, name) for name in names}


#: What an engine's ``options`` argument takes: all the knobs, some of them over the engine's
#: defaults (``{"iters": 50}``), or ``None`` for the defaults.
Knobs = LandscapeOptions | Mapping[str, Any] | None


def resolve_options(options: Knobs, defaults: LandscapeOptions) -> LandscapeOptions:
    """The knobs an engine measures with: ``options`` itself, else ``defaults`` changed by it.

    Raises:
        InvalidOptionError: for a knob name that does not exist, or a bad count.
    """
    if options is None:
        return defaults
    if isinstance(options, LandscapeOptions):
        return options
    return defaults.replace(**options)
