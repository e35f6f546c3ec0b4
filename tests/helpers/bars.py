"""A stand-in for tqdm in progress tests: it keeps the count instead of drawing it."""

from __future__ import annotations

from typing import Any


class CountingBar:
    """The count, the total, the highest count reached and the postfix last set."""

    def __init__(self, total: float, initial: float = 0, **kwargs: Any) -> None:
        self.total, self.n, self.highest = total, initial, initial
        self.postfix: dict[str, Any] = {}

    def update(self, n: float) -> None:
        self.n += n
        self.highest = max(self.highest, self.n)

    def refresh(self) -> None:
        pass

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self.postfix.update(values)

    def close(self) -> None:
        pass
