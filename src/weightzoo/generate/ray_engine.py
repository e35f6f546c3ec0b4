"""Training blocks as Ray tasks (``weightzoo generate --engine ray``).

Each pending block becomes one Ray task with its own resources (``num_cpus``, ``num_gpus``) and
``max_retries``: Ray retries a block whose worker process died (killed, out of memory, lost
node). A task only trains; it returns the block's records to this process, whose single
:class:`~weightzoo.storage.writer.ZooWriter` writes each shard atomically as soon as its block
is back. So the cluster's nodes need no shared file system, and resuming works exactly as
with the local engine (blocks whose shards are written are not submitted again). A task that
sees the zoo directory (on this machine, or through a shared file system) also saves its
block's training state there (:mod:`weightzoo.generate.resume`), so that a retry, or the next
run, goes on from the block's last saved epoch; elsewhere a retried block starts over.

Progress: every task reports each finished epoch, and the steps done within one, to a small
actor; this process collects the reports while it waits for blocks, so the bar moves by
model-epochs across the whole cluster.
A retried block's count starts again from zero (and a resumed one replays its saved epochs).

Ray is an optional dependency (``pip install "weightzoo[ray]"``), imported only here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from weightzoo.errors import InvalidOptionError, require
from weightzoo.generate.base import BlockRun, Family, ModelPlan, ModelRecord, ZooSpec
from weightzoo.generate.devices import check_device
from weightzoo.generate.progress import ModelEpochBar
from weightzoo.generate.resume import ResumeSlot
from weightzoo.generate.workers import BLOCK_THREADS, train_block

if TYPE_CHECKING:
    from weightzoo.generate.runner import Block, Pending, RunOptions

log = logging.getLogger(__name__)
_POLL_S = 0.25  # how often the bar is brought up to date while no block finishes
_RESTART = -1  # a report's ``models`` when a task (first try or retry) starts its block
# A report: block key, models, models passed (or None), fraction of an epoch's steps done (None:
# the epoch's own report).
_Report = tuple[int, int, int | None, float | None]


@dataclass(frozen=True)
class RayOptions:
    """How blocks run on Ray.

    Attributes:
        address: the cluster to join (``"auto"``, ``"ray://host:10001"``, ...). ``None``:
            ``RAY_ADDRESS`` if set, else a Ray started on this machine for this run. A Ray
            already initialised in this process is used as it is.
        cpus_per_block: CPUs Ray reserves for each block (``num_cpus`` of the task); the block
            still trains with :data:`~weightzoo.generate.workers.BLOCK_THREADS` torch threads,
            so that its bytes do not depend on this number.
        gpus_per_block: GPUs reserved for each block (``num_gpus``); needed with
            ``device="cuda"``, where Ray picks the GPU (``CUDA_VISIBLE_DEVICES``). Fractions
            share a GPU between blocks.
        max_retries: how often a block whose worker died is tried again.
    """

    address: str | None = None
    cpus_per_block: float = BLOCK_THREADS
    gpus_per_block: float = 0
    max_retries: int = 3

    def check(self, device: str) -> None:
        """Refuse options that cannot work with ``device``.

        Raises:
            InvalidOptionError: for negative resources or retries, or a CUDA device without
                GPUs per block.
        """
        if self.cpus_per_block <= 0 or self.gpus_per_block < 0 or self.max_retries < 0:
            raise InvalidOptionError(
                f"--cpus-per-block must be > 0 and --gpus-per-block, retries >= 0; got "
                f"{self.cpus_per_block}, {self.gpus_per_block}, {self.max_retries}"
            )
        if str(device).startswith("cuda") and self.gpus_per_block == 0:
            raise InvalidOptionError(
                f"--device {device} with --engine ray needs --gpus-per-block (e.g. 1, or 0.5 "
                "to share a GPU between two blocks): Ray gives a task a GPU only if it asks"
            )


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        MissingExtraError: if Ray is not installed, saying how to install it.
    """
    return require("ray", "ray", "--engine ray")


class _ProgressBoard:
    """A Ray actor that collects epoch reports until the driver takes them."""

    def __init__(self) -> None:
        self._reports: list[_Report] = []

    def report(
        self, key: int, models: int, passed: int | None, fraction: float | None = None
    ) -> None:
        self._reports.append((key, models, passed, fraction))

    def take(self) -> list[_Report]:
        reports, self._reports = self._reports, []
        return reports


def _train_task(
    family: Family,
    spec: ZooSpec,
    plans: Sequence[ModelPlan],
    device: str,
    key: int,
    board: Any,
    resume: ResumeSlot | None = None,
) -> list[ModelRecord]:
    """The body of one block's task, in a Ray worker.

    ``resume`` saves the block's state where the worker sees the zoo directory (this machine,
    or a shared file system); elsewhere nothing is saved (:mod:`weightzoo.generate.resume`).
    """
    check_device(device)  # the node's own torch and hardware
    board.report.remote(key, _RESTART, None)

    def on_epoch(models: int, passed: int | None = None) -> None:
        # Fire and forget: calls from one task reach the actor in order.
        board.report.remote(key, models, passed)

    def on_step(models: int, fraction: float) -> None:
        board.report.remote(key, models, None, fraction)

    run = BlockRun(device, progress=False, on_epoch=on_epoch)
    return train_block(family, spec, plans, run, on_step=on_step, resume=resume)


def _apply(bar: ModelEpochBar, reports: Sequence[_Report]) -> None:
    for key, models, passed, fraction in reports:
        if models == _RESTART:
            bar.restart(key)
        elif fraction is not None:
            bar.within(key, models, fraction)
        else:
            bar.advance(key, models, passed)


def _connect(ray: Any, options: RayOptions) -> bool:
    """Join or start Ray unless it is up; whether this call started the connection."""
    if ray.is_initialized():
        return False
    address = options.address or os.environ.get("RAY_ADDRESS")
    ray.init(address=address, include_dashboard=False if address is None else None)
    return True


def run_blocks(family: Family, spec: ZooSpec, pending: Pending, options: RunOptions) -> None:
    """Train the pending blocks as Ray tasks and keep each in this process as it comes back.

    ``options`` give the device and the Ray options (checked when they were built); each
    block's resume slot is saved as :func:`_train_task` says.

    On any exception (Ctrl-C, SIGTERM turned into an exception, a block that failed for good)
    the blocks still running are cancelled and every block that had come back is still kept
    before the exception goes on.

    Raises:
        MissingExtraError: without Ray.
        ray.exceptions.RayError: (or the task's own exception) for a block that failed after
            its retries.
    """
    device, ray_options = options.device, options.ray or RayOptions()
    ray = import_ray()
    started = _connect(ray, ray_options)
    try:
        board = ray.remote(num_cpus=0)(_ProgressBoard).remote()
        task = ray.remote(_train_task).options(
            num_cpus=ray_options.cpus_per_block,
            num_gpus=ray_options.gpus_per_block,
            max_retries=ray_options.max_retries,
            retry_exceptions=False,  # an error of the block itself would only repeat
        )
        refs = {
            task.remote(family, spec, b.plans, device, b.first, board, pending.slot(b)): b
            for b in pending.largest_first()
        }
        _collect(ray, refs, board, pending)
    finally:
        if started:
            ray.shutdown()


def _collect(ray: Any, refs: dict[Any, Block], board: Any, work: Pending) -> None:
    keep, bar = work.keep, work.bar
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=_POLL_S)
            _apply(bar, ray.get(board.take.remote()))
            if ready:
                # Popping the last reference lets Ray free the records once they are written.
                ref = ready.pop()
                keep(refs.pop(ref), ray.get(ref))
                del ref
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        # Blocks that came back in the meantime are kept; failed ones raise again: skip them.
        finished = ray.wait(pending, num_returns=len(pending), timeout=0)[0] if pending else []
        for ref in finished:
            try:
                records = ray.get(ref, timeout=0)
            except Exception:
                continue
            keep(refs[ref], records)
        raise
