"""One progress bar over model-epochs, fed by every block whether it trains here or elsewhere.

A family reports after each epoch how many models it advanced and how many of the block have
passed so far (see :meth:`weightzoo.generate.base.Family.train`). The bar counts model-epochs,
so it moves during a block instead of jumping when the block ends. A block's count is capped
at its planned size, and topped up to it when the block is written (a model that stopped early,
or a family that reports nothing, still counts in full).
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
        self._planned: dict[int, int] = {}
        self._done: dict[int, int] = {}
        self._passed: dict[int, int] = {}

    def plan(self, block: int, model_epochs: int) -> None:
        """Announce a block (by a key such as its first model) and its planned model-epochs."""
        with self._lock:
            self._planned[block] = model_epochs
            self._done[block] = 0

    def advance(self, block: int, models: int, passed: int | None) -> None:
        """Count ``models`` model-epochs of ``block`` and its running pass count."""
        with self._lock:
            step = max(0, min(models, self._planned[block] - self._done[block]))
            self._done[block] += step
            if passed is not None:
                self._passed[block] = passed
                self._bar.set_postfix(passed=sum(self._passed.values()), refresh=False)
            if step:
                self._bar.update(step)

    def restart(self, block: int) -> None:
        """Take back what ``block`` reported: it is being trained again from the start."""
        with self._lock:
            done = self._done[block]
            self._done[block] = 0
            self._passed.pop(block, None)
            if done:
                self._bar.update(-done)

    def finish(self, block: int) -> None:
        """Count whatever ``block`` did not report: it is written."""
        with self._lock:
            step = self._planned[block] - self._done[block]
            self._done[block] = self._planned[block]
            if step:
                self._bar.update(step)

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
