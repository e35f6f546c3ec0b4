"""Training blocks: in this process or in worker processes that never outlive it.

A block is always trained with :data:`BLOCK_THREADS` torch threads, here or in a worker, so its
bytes do not depend on how many workers run (float reductions split over threads round
differently). Workers report progress (each epoch, and the steps done within one) through one
pipe; each report is one write of a few bytes, which POSIX makes atomic, so a worker killed
mid-run never leaves half a report.

Workers exit on their own when the parent dies, however it dies: on Linux the kernel sends
them ``SIGKILL`` (``PR_SET_PDEATHSIG``), and everywhere a thread watches a pipe that only the
parent holds open, which reads end-of-file when the parent is gone.

A forked worker starts with its parent's Python signal handlers (the command line's SIGTERM
handler raises an exception). A signal handled by them in a worker could raise inside the
fork's own bookkeeping, where it is swallowed (the worker then ignores the stop, and blocks
forever on a queue lock that a killed sibling held) or unwinds into the parent's frames (the
worker then runs on as a second copy of the parent). So SIGINT and SIGTERM stay blocked while
workers start, and a worker's entry resets every handler before it unblocks them: a signal sent
meanwhile waits, then acts with its default action.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import struct
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any

import torch

from weightzoo.generate.base import BlockRun, Family, ModelPlan, ModelRecord, ZooSpec
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
STOP_GRACE = 5.0  # seconds a stopped worker has to die of SIGTERM before it gets SIGKILL
_STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
# block key, models advanced (or training), models passed (-1: not reported; -2: a report
# within an epoch), fraction of the epoch's steps done (within an epoch)
_REPORT = struct.Struct("<qqqd")
_NO_PASS = -1
_WITHIN = -2
_END = (-1, 0, 0, 0.0)  # the parent's last report: no worker is left to write

_reports: Connection | None = None  # in a worker: where its progress reports go


def train_block(
    family: Family,
    spec: ZooSpec,
    plans: Sequence[ModelPlan],
    run: BlockRun,
    *,
    on_step: StepCallback | None = None,
    resume: ResumeSlot | None = None,
) -> list[ModelRecord]:
    """Train one block with :data:`BLOCK_THREADS` torch threads, then restore the count.

    Args:
        family: the family that trains ``spec``.
        spec: the zoo spec.
        plans: the block's models.
        run: the device and progress the family's ``train`` is given.
        on_step: told the steps done within each epoch by the population toolkit's trainer
            (:func:`weightzoo.generate.progress.epoch_steps`), where ``run.on_epoch`` is given.
        resume: where the block's training state is saved and resumed from (see
            :mod:`weightzoo.generate.resume`); None: nothing is saved.

    Returns:
        The family's records.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(BLOCK_THREADS)
    session = contextlib.nullcontext() if resume is None else resume.active()
    # Parts of epochs only where epochs are reported: each epoch completes its parts.
    steps = reporting_steps(on_step if run.on_epoch is not None else None)
    try:
        with exact_cuda(run.device), session, steps:
            return family.train(spec, plans, run=run)
    finally:
        torch.set_num_threads(threads)


def _init_worker(alive: Connection, alive_writer: Connection, reports: Connection) -> None:
    _reset_signals()
    # Only the parent may hold the write end open, so that end-of-file means it is gone.
    alive_writer.close()
    _set_parent_death_signal()
    threading.Thread(target=_exit_with_parent, args=(alive,), daemon=True).start()
    global _reports
    _reports = reports


def _reset_signals() -> None:
    """A worker's own signal handling, set before the signals held while it started act.

    Every Python handler inherited through fork goes (none of the parent's code may run here);
    the parent alone decides what a Ctrl-C means and stops its workers itself, so SIGINT is
    ignored; SIGTERM ends the worker at once (an inherited handler would turn it into an
    exception that the worker may swallow).
    """
    for signum in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError):
            if callable(signal.getsignal(signum)):
                signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


@contextlib.contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM in this thread meanwhile (workers forked now inherit the mask).

    In the parent a held signal still reaches its handler: the kernel hands it to another
    thread, or delivers it when the block is lifted.
    """
    if not hasattr(signal, "pthread_sigmask"):  # no POSIX signal masks: nothing is inherited
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


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
    run = BlockRun(device, progress=False, on_epoch=_report_to_parent(key))
    return train_block(
        family, spec, plans, run, on_step=_report_steps_to_parent(key), resume=resume
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
        with _stop_signals_held():  # the executor starts its workers within submit()
            future = self._executor.submit(
                _train_in_worker, family, spec, plans, device, key, resume
            )
        if not self._drain.is_alive():
            # Started only now: with fork, the workers exist after the first submit, and a
            # thread running while they were forked could have held a lock they inherit.
            self._drain.start()
        return future

    def stop(self) -> None:
        """Cancel the blocks not started yet and end every worker now; safe to call again.

        The workers are killed, whatever they hold: the pool's queues are not used again.
        """
        # End-of-file on the watched pipe reaches every worker, even one that the executor had
        # not listed yet when a signal cut its start short.
        self._alive_writer.close()
        # The executor has no public way to end running calls before Python 3.14, and 3.14's
        # does not wait for them: end the processes, then let shutdown() reap them.
        _end_processes(list((getattr(self._executor, "_processes", None) or {}).values()))
        # A worker killed while it sent a result leaves the executor's thread waiting for the
        # rest of the message, unless no writer is left (this process holds one, unused).
        results = getattr(self._executor, "_result_queue", None)
        writer = getattr(results, "_writer", None)
        if isinstance(writer, Connection):
            writer.close()
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
        if error is not None:
            # Cut short (e.g. Ctrl-C while blocks were queued): no running block is waited for.
            self.stop()
        self.close()


def _end_processes(processes: Sequence[BaseProcess]) -> None:
    """SIGTERM ``processes``, then SIGKILL those still alive after :data:`STOP_GRACE`.

    Waits on the processes' sentinels (readable once a process is gone), never on their
    exit status: the executor's own thread reaps them.
    """
    # A process the executor has already closed is gone.
    processes = [p for p in processes if getattr(p, "_popen", None) is not None]
    for process in processes:
        process.terminate()
    if not _wait_gone(processes, STOP_GRACE):
        for process in processes:
            if not _gone(process):
                log.warning("worker %s ignored SIGTERM; killing it", process.pid)
                process.kill()
        _wait_gone(processes, STOP_GRACE)


def _gone(process: BaseProcess) -> bool:
    return bool(wait([process.sentinel], 0))


def _wait_gone(processes: Sequence[BaseProcess], timeout: float) -> bool:
    """Wait until every process is gone, at most ``timeout`` seconds; whether they all are."""
    deadline = time.monotonic() + timeout
    pending = [p.sentinel for p in processes]
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        done = wait(pending, left)
        pending = [s for s in pending if s not in done]
    return True


def future_succeeded(future: Future[Any]) -> bool:
    """Whether ``future`` finished with a result (not cancelled, not failed)."""
    return future.done() and not future.cancelled() and future.exception() is None
