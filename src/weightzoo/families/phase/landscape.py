"""A phase zoo's ``finalize``: its landscape side file, then the phase of every checkpoint.

The metrics are measured by the generic zoo-level driver
(:func:`weightzoo.landscape.zoo_metrics.compute_zoo_landscape`) on the zoo's own image splits, each
pair metric against the seed sibling of the same cell (the ``node`` column).
"""

from __future__ import annotations

import logging
from pathlib import Path

from weightzoo.families.phase.spec import LANDSCAPE_METRICS, PhaseSpec
from weightzoo.landscape.driver import landscape_is_complete
from weightzoo.landscape.taxonomy import LANDSCAPE_SIDECAR, write_phases
from weightzoo.landscape.zoo_metrics import ZOO_LANDSCAPE, compute_zoo_landscape
from weightzoo.storage.sidecar import sidecar_records

__all__ = ["finalize_zoo"]

log = logging.getLogger(__name__)


def finalize_zoo(spec: PhaseSpec, root: Path, *, device: str = "cpu") -> None:
    """Compute what is missing of the ``landscape`` side file of ``root``, with its phases.

    The metrics are :data:`~weightzoo.families.phase.spec.LANDSCAPE_METRICS` of every model
    at the spec's ``landscape_epochs`` (pairs: seed siblings of the same cell), on
    ``landscape_batches`` training batches; an existing side file with all of them, for every
    model at those epochs, is kept.

    Raises:
        DataFilesMissingError: the dataset's files are not on disk.
    """
    epochs = spec.landscape_epochs
    if landscape_is_complete(root, LANDSCAPE_METRICS, LANDSCAPE_SIDECAR, epochs):
        if "phase" not in sidecar_records(root)[LANDSCAPE_SIDECAR].arrays:
            write_phases(root)  # the metrics are there, their labels are not
        return
    log.info("measuring the loss landscape of %s", root)
    options = ZOO_LANDSCAPE.replace(
        batches=spec.landscape_batches,
        batch_size=spec.landscape_batch_size,
        probes=spec.landscape_probes,
        steps=spec.landscape_steps,
    )
    compute_zoo_landscape(
        root, metrics=LANDSCAPE_METRICS, split="all", epochs=epochs,
        options=options, data_dir=spec.data_dir, device=device, progress=False,
    )  # fmt: skip
