"""One progress bar over model-epochs, fed by every block whether it trains here or elsewhere.

A family reports after each epoch how many models trained in it and how many of the block have
passed so far (see :meth:`weightzoo.generate.base.Family.train`). The bar counts model-epochs as
they happen and its total follows what is left: when models stop early (passed, or given up),
the epochs they will not train leave the total; when a block trains more than planned (retries
of networks that missed), the total grows. So its rate and ETA come from the work actually
done. A block that reports nothing counts in full when it is written.

Within an epoch, a trainer that calls :func:`epoch_steps` (the population toolkit's
:func:`~weightzoo.generate.population.train` does) also reports the fraction of the epoch's
optimizer steps done, at most once every :data:`REPORT_INTERVAL_S` seconds, so that a zoo
whose epochs take minutes shows a rate and an ETA before its first epoch ends. The bar shows
that fraction of the epoch's models as fractional model-epochs, and the epoch's own report
replaces it: after every epoch the count is the whole number of model-epochs trained.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

# What a family calls once per epoch: (models advanced this epoch, models passed so far or None).
EpochCallback = Callable[[int, "int | None"], None]
# What a trainer calls within an epoch: (models training in it, fraction of its steps done).
StepCallback = Callable[[int, float], None]

REPORT_INTERVAL_S = 0.5  # one block's reports within an epoch come at most this often
# Parts of an epoch are shown in whole 1/1024ths: integers plus such parts add up exactly in
# floats, so an epoch's report brings the count back to the very integer it would have been.
_GRAIN = 1024
_BAR_FORMAT = "{l_bar}{bar}| {n:.1f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


@dataclass(frozen=True)
class _Listener:
    report: StepCallback
    clock: Callable[[], float]
    interval: float | None  # None: REPORT_INTERVAL_S when the trainer starts


_listener: ContextVar[_Listener | None] = ContextVar("weightzoo_epoch_steps", default=None)


@contextlib.contextmanager
def reporting_steps(
    report: StepCallback | None,
    *,
    clock: Callable[[], float] = time.monotonic,
    interval: float | None = None,
) -> Iterator[None]:
    """Have the trainers run in this context report the steps done within each epoch.

    Args:
        report: called as ``report(models, fraction)`` (None: nothing is reported).
        clock: seconds, for the throttle (a test's own clock).
        interval: the least seconds between two reports (None: :data:`REPORT_INTERVAL_S`).
    """
    token = _listener.set(None if report is None else _Listener(report, clock, interval))
    try:
        yield
    finally:
        _listener.reset(token)


class EpochSteps:
    """Reports of the optimizer steps done within each epoch, at most one per ``interval``.

    A trainer calls :meth:`begin` before each epoch's first step and :meth:`step` after every
    step; a step costs one clock read unless a report is due. The first report of an epoch
    comes ``interval`` seconds after it began, so that short epochs report nothing but their
    end.

    Args:
        report: called as ``report(models, fraction)``.
        clock: seconds.
        interval: the least seconds between two reports.
    """

    def __init__(
        self, report: StepCallback, *, clock: Callable[[], float], interval: float
    ) -> None:
        self._report, self._clock, self._interval = report, clock, interval
        self._models, self._steps, self._next = 0, 1, math.inf

    def begin(self, models: int, steps: int) -> None:
        """An epoch of ``steps`` optimizer steps for ``models`` models begins."""
        self._models, self._steps = models, max(1, steps)
        self._next = self._clock() + self._interval

    def step(self, done: int) -> None:
        """``done`` steps of the epoch are done: report them if the interval has passed."""
        now = self._clock()
        if now >= self._next:
            self._next = now + self._interval
            self._report(self._models, done / self._steps)


def epoch_steps() -> EpochSteps | None:
    """The step reports of the block trained in this context (None: nobody listens)."""
    listener = _listener.get()
    if listener is None:
        return None
    interval = REPORT_INTERVAL_S if listener.interval is None else listener.interval
    return EpochSteps(listener.report, clock=listener.clock, interval=interval)


class ModelEpochBar:
    """A tqdm bar over model-epochs, safe to update from a thread that drains worker reports.

    Args:
        total: planned model-epochs of the whole zoo.
        initial: model-epochs of the blocks already on disk.
        desc: label of the bar.
        disable: no output at all (the counts are still kept).
        bar_factory: makes the bar (default: ``tqdm``).
    """

    def __init__(
        self,
        total: int,
        *,
        initial: int = 0,
        desc: str = "",
        disable: bool = False,
        bar_factory: Callable[..., Any] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._bar = (bar_factory or tqdm)(
            total=total,
            initial=initial,
            unit="model-epoch",
            desc=desc,
            disable=disable,
            bar_format=_BAR_FORMAT,
        )
        self._planned: dict[int, int] = {}  # what each block is now expected to train
        self._original: dict[int, int] = {}  # ... and what it was planned to train
        self._done: dict[int, int] = {}
        self._passed: dict[int, int] = {}
        self._budget: dict[int, int | None] = {}  # epochs per model
        self._last: dict[int, int | None] = {}  # models in the last reported epoch
        self._epochs: dict[int, int] = {}  # epochs reported
        self._within: dict[int, float] = {}  # model-epochs shown of the epoch in progress
        # written blocks: a report drained after the block's shard landed is already counted
        self._closed: set[int] = set()

    def plan(self, block: int, model_epochs: int, models: int | None = None) -> None:
        """Announce a block (by a key such as its first model) and its planned model-epochs.

        With ``models`` (the block's model count), models that stop early shrink the total by
        the epochs they had left.
        """
        with self._lock:
            self._closed.discard(block)
            self._planned[block] = model_epochs
            self._original[block] = model_epochs
            self._done[block] = 0
            self._budget[block] = model_epochs // models if models else None
            self._last[block] = models
            self._epochs[block] = 0

    def _grow(self, block: int, amount: int) -> None:
        """Change ``block``'s planned model-epochs, and the bar's total, by ``amount``."""
        self._planned[block] += amount
        self._bar.total += amount
        self._bar.refresh()

    def advance(self, block: int, models: int, passed: int | None) -> None:
        """Count ``models`` model-epochs of ``block`` and its running pass count."""
        with self._lock:
            if block in self._closed:
                return
            self._epochs[block] += 1
            budget, last = self._budget[block], self._last[block]
            if budget is not None and last is not None and models < last:
                # models that stopped after the previous epoch will not train what they had left
                left = max(0, budget - (self._epochs[block] - 1))
                room = self._planned[block] - self._done[block]
                self._grow(block, -min((last - models) * left, room))
            self._last[block] = models
            excess = self._done[block] + models - self._planned[block]
            if excess > 0:  # more work than planned: retries of networks that missed
                self._grow(block, excess)
            self._done[block] += models
            if passed is not None:
                self._passed[block] = passed
                self._bar.set_postfix(passed=sum(self._passed.values()), refresh=False)
            shown = models - self._within.pop(block, 0.0)  # the epoch replaces its parts
            if shown:
                self._bar.update(shown)

    def within(self, block: int, models: int, fraction: float) -> None:
        """Show ``fraction`` of an epoch of ``block`` in progress for ``models`` models.

        It replaces the epoch's previous part; the epoch's :meth:`advance` replaces the last.
        The part never exceeds one epoch of the models of the block's last reported epoch,
        nor what is left of the block's planned model-epochs.
        """
        if not math.isfinite(fraction):
            return  # nothing to show, and nothing to take back
        with self._lock:
            if block in self._closed:
                return
            last = self._last[block]
            share = models if last is None else min(models, last)
            room = self._planned[block] - self._done[block]
            part = min(share * min(max(fraction, 0.0), 1.0), max(room, 0))
            part = math.floor(part * _GRAIN) / _GRAIN
            shown = part - self._within.get(block, 0.0)
            self._within[block] = part
            if shown:
                self._bar.update(shown)

    def _take_back_within(self, block: int) -> None:
        """Remove the part of an epoch in progress that ``block`` showed."""
        part = self._within.pop(block, 0.0)
        if part:
            self._bar.update(-part)

    def restart(self, block: int) -> None:
        """Take back what ``block`` reported: it is being trained again from the start."""
        with self._lock:
            self._closed.discard(block)
            self._take_back_within(block)
            done = self._done[block]
            self._grow(block, self._original[block] - self._planned[block])
            self._done[block] = 0
            self._epochs[block] = 0
            budget = self._budget[block]
            self._last[block] = None if budget is None else self._original[block] // budget
            self._passed.pop(block, None)
            if done:
                self._bar.update(-done)

    def finish(self, block: int) -> None:
        """Close ``block``'s account: it is written.

        A block that reported nothing counts in full; one that reported takes what it did not
        train out of the total.
        """
        with self._lock:
            self._closed.add(block)
            self._take_back_within(block)
            left = self._planned[block] - self._done[block]
            if not self._done[block]:
                self._done[block] = self._planned[block]
                if left:
                    self._bar.update(left)
            elif left:
                self._grow(block, -left)

    def callback(self, block: int) -> EpochCallback:
        """The per-epoch callback of ``block`` for a family trained in this process."""

        def on_epoch(models: int, passed: int | None = None) -> None:
            self.advance(block, models, passed)

        return on_epoch

    def step_callback(self, block: int) -> StepCallback:
        """The within-epoch callback of ``block`` for a family trained in this process."""

        def on_step(models: int, fraction: float) -> None:
            self.within(block, models, fraction)

        return on_step

    @property
    def passed(self) -> int:
        """Models reported passed in this run, over all blocks."""
        with self._lock:
            return sum(self._passed.values())

    def close(self) -> None:
        """Close the bar."""
        self._bar.close()
