"""Training blocks: in this process or in worker processes that never outlive it.

A block is always trained with :data:`BLOCK_THREADS` torch threads, here or in a worker, so its
bytes do not depend on how many workers run (float reductions split over threads round
differently). Workers report progress (each epoch, and the steps done within one) through one
pipe; each report is one write of a few bytes, which POSIX makes atomic, so a worker killed
mid-run never leaves half a report.

Workers exit on their own when the parent dies, however it dies: on Linux the kernel sends
them ``SIGKILL`` (``PR_SET_PDEATHSIG``), and everywhere a thread watches a pipe that only the
parent holds open, which reads end-of-file when the parent is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import logging
import multiprocessing
import os
import signal
import struct
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

import torch

from weightzoo.generate.base import Family, ModelPlan, ModelRecord, ZooSpec
from weightzoo.generate.progress import (
    EpochCallback,
    ModelEpochBar,
    StepCallback,
    reporting_steps,
)
from weightzoo.generate.resume import ResumeSlot
from weightzoo.precision import exact_cuda

log = logging.getLogger(__name__)
BLOCK_THREADS = 1  # torch threads per block, wherever it trains
EXIT_PARENT_GONE = 3  # a worker's exit status when it noticed that its parent died
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# block key, models advanced (or training), models passed (-1: not reported; -2: a report
# within an epoch), fraction of the epoch's steps done (within an epoch)
_REPORT = struct.Struct("<qqqd")
_NO_PASS = -1
_WITHIN = -2
_END = (-1, 0, 0, 0.0)  # the parent's last report: no worker is left to write

_reports: Connection | None = None  # in a worker: where its progress reports go


def accepts_on_epoch(family: Family) -> bool:
    """Whether ``family.train`` names the optional ``on_epoch`` progress callback.

    Only a named parameter counts: a wrapper taking ``**kwargs`` may forward them to a
    ``train`` that predates the callback.
    """
    return "on_epoch" in inspect.signature(family.train).parameters


def train_block(
    family: Family,
    spec: ZooSpec,
    plans: Sequence[ModelPlan],
    *,
    device: str,
    on_epoch: EpochCallback | None = None,
    on_step: StepCallback | None = None,
    progress: bool = False,
    resume: ResumeSlot | None = None,
) -> list[ModelRecord]:
    """Train one block with :data:`BLOCK_THREADS` torch threads, then restore the count.

    Args:
        family: the family that trains ``spec``.
        spec: the zoo spec.
        plans: the block's models.
        device: torch device.
        on_epoch: per-epoch progress callback, passed on when the family takes one.
        on_step: told the steps done within each epoch by the population toolkit's trainer
            (:func:`weightzoo.generate.progress.epoch_steps`), when ``on_epoch`` is passed on.
        progress: let the family show its own bar (only when it takes no ``on_epoch``).
        resume: where the block's training state is saved and resumed from (see
            :mod:`weightzoo.generate.resume`); None: nothing is saved.

    Returns:
        The family's records.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(BLOCK_THREADS)
    session = contextlib.nullcontext() if resume is None else resume.active()
    try:
        with exact_cuda(device), session:
            if on_epoch is not None and accepts_on_epoch(family):
                # Parts of epochs only where epochs are reported: each epoch completes its parts.
                with reporting_steps(on_step):
                    return family.train(
                        spec, plans, device=device, progress=False, on_epoch=on_epoch
                    )
            return family.train(spec, plans, device=device, progress=progress)
    finally:
        torch.set_num_threads(threads)


def _init_worker(alive: Connection, alive_writer: Connection, reports: Connection) -> None:
    # The parent alone decides what a Ctrl-C means and stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A SIGTERM handler inherited through fork would turn "stop" into an ignorable exception.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Only the parent may hold the write end open, so that end-of-file means it is gone.
    alive_writer.close()
    _set_parent_death_signal()
    threading.Thread(target=_exit_with_parent, args=(alive,), daemon=True).start()
    global _reports
    _reports = reports


def _set_parent_death_signal() -> None:
    """On Linux, have the kernel SIGKILL this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the pipe watch still notices


def _exit_with_parent(alive: Connection) -> None:
    try:
        while True:
            alive.recv_bytes()  # the parent never writes: this returns only at end-of-file
    except (EOFError, OSError):
        pass
    os._exit(EXIT_PARENT_GONE)  # no cleanup: nobody is left to receive the results


def _report_to_parent(key: int) -> EpochCallback:
    reports = _reports
    if reports is None:
        raise RuntimeError("a block worker was started without its initializer")

    def on_epoch(models: int, passed: int | None = None) -> None:
        reports.send_bytes(_REPORT.pack(key, models, _NO_PASS if passed is None else passed, 0))

    return on_epoch


def _report_steps_to_parent(key: int) -> StepCallback:
    reports = _reports
    if reports is None:
        raise RuntimeError("a block worker was started without its initializer")

    def on_step(models: int, fraction: float) -> None:
        reports.send_bytes(_REPORT.pack(key, models, _WITHIN, fraction))

    return on_step


def _train_in_worker(
    family: Family,
    spec: ZooSpec,
    plans: Sequence[ModelPlan],
    device: str,
    key: int,
    resume: ResumeSlot | None,
) -> list[ModelRecord]:
    on_epoch, on_step = _report_to_parent(key), _report_steps_to_parent(key)
    return train_block(
        family, spec, plans, device=device, on_epoch=on_epoch, on_step=on_step, resume=resume
    )


def start_method(device: str) -> str | None:
    """How block workers start for ``device``: ``"spawn"`` on an accelerator, else the default.

    A forked child cannot use CUDA once its parent has (torch refuses: "Cannot re-initialize
    CUDA in forked subprocess"), and the parent touches the device before any block starts,
    so accelerator workers are started fresh. On the CPU the platform's default is kept
    (``fork`` on Linux: the workers start in milliseconds).
    """
    return None if torch.device(device).type == "cpu" else "spawn"


class BlockPool:
    """Worker processes that train blocks and feed a :class:`ModelEpochBar`.

    Use as a context manager; leaving it waits for the workers. :meth:`stop` cancels the
    blocks not yet started and ends the workers at once.

    Args:
        workers: number of processes.
        bar: receives every worker's per-epoch reports.
        device: the device the blocks train on; it picks how the workers start
            (:func:`start_method`).
    """

    def __init__(self, workers: int, bar: ModelEpochBar, device: str = "cpu") -> None:
        context = multiprocessing.get_context(start_method(device))
        self._bar = bar
        self._alive, self._alive_writer = context.Pipe(duplex=False)
        self._reports, self._report_writer = context.Pipe(duplex=False)
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self._alive, self._alive_writer, self._report_writer),
        )
        self._drain = threading.Thread(target=self._drain_reports, daemon=True)

    def submit(
        self,
        family: Family,
        spec: ZooSpec,
        plans: Sequence[ModelPlan],
        device: str,
        key: int,
        resume: ResumeSlot | None = None,
    ) -> Future[list[ModelRecord]]:
        """Queue one block; ``key`` identifies it in the bar, ``resume`` keeps its state."""
        future = self._executor.submit(_train_in_worker, family, spec, plans, device, key, resume)
        if not self._drain.is_alive():
            # Started only now: with fork, the workers exist after the first submit, and a
            # thread running while they were forked could have held a lock they inherit.
            self._drain.start()
        return future

    def stop(self) -> None:
        """Cancel the blocks not started yet and end the running workers now."""
        # The executor has no public way to end running calls before Python 3.14, and 3.14's
        # does not wait for them: end the processes, then let shutdown() reap them.
        processes = list((getattr(self._executor, "_processes", None) or {}).values())
        for process in processes:
            process.terminate()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _drain_reports(self) -> None:
        while True:
            report = _REPORT.unpack(self._reports.recv_bytes())
            if report == _END:
                return
            key, models, passed, fraction = report
            try:
                if passed == _WITHIN:
                    self._bar.within(key, models, fraction)
                else:
                    self._bar.advance(key, models, None if passed == _NO_PASS else passed)
            except Exception:
                # Keep draining whatever happens: a full pipe would stall every worker.
                log.exception("progress report %s could not be shown", report)

    def close(self) -> None:
        """Wait for the workers, then for the last of their reports."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._drain.is_alive():
            # Every worker has exited, so their reports are all ahead of this one in the pipe.
            self._report_writer.send_bytes(_REPORT.pack(*_END))
            self._drain.join()
        for connection in (self._reports, self._report_writer, self._alive, self._alive_writer):
            connection.close()

    def __enter__(self) -> BlockPool:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def future_succeeded(future: Future[Any]) -> bool:
    """Whether ``future`` finished with a result (not cancelled, not failed)."""
    return future.done() and not future.cancelled() and future.exception() is None
