"""One progress bar over model-epochs, fed by every block whether it trains here or elsewhere.

A family reports after each epoch how many models trained in it and how many of the block have
passed so far (see :meth:`weightzoo.generate.base.Family.train`). The bar counts model-epochs as
they happen and its total follows what is left: when models stop early (passed, or given up),
the epochs they will not train leave the total; when a block trains more than planned (retries
of networks that missed), the total grows. So its rate and ETA come from the work actually
done. A block that reports nothing counts in full when it is written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

# What a family calls once per epoch: (models advanced this epoch, models passed so far or None).
EpochCallback = Callable[[int, "int | None"], None]


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
            total=total, initial=initial, unit="model-epoch", desc=desc, disable=disable
        )
        self._planned: dict[int, int] = {}  # what each block is now expected to train
        self._original: dict[int, int] = {}  # ... and what it was planned to train
        self._done: dict[int, int] = {}
        self._passed: dict[int, int] = {}
        self._budget: dict[int, int | None] = {}  # epochs per model
        self._last: dict[int, int | None] = {}  # models in the last reported epoch
        self._epochs: dict[int, int] = {}  # epochs reported

    def plan(self, block: int, model_epochs: int, models: int | None = None) -> None:
        """Announce a block (by a key such as its first model) and its planned model-epochs.

        With ``models`` (the block's model count), models that stop early shrink the total by
        the epochs they had left.
        """
        with self._lock:
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
            if models:
                self._bar.update(models)

    def restart(self, block: int) -> None:
        """Take back what ``block`` reported: it is being trained again from the start."""
        with self._lock:
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

    @property
    def passed(self) -> int:
        """Models reported passed in this run, over all blocks."""
        with self._lock:
            return sum(self._passed.values())

    def close(self) -> None:
        """Close the bar."""
        self._bar.close()
