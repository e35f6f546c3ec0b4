"""Resuming a block: its training state saved at epoch boundaries, beside the zoo.

A block trains as one population and lands as one shard, so without more a block stopped
half-way (Ctrl-C, ``SIGTERM``, ``SIGKILL``, a preempted job) keeps nothing. While a block
trains, :func:`weightzoo.generate.population.train` therefore saves its state at epoch
boundaries, at most once every ``resume_interval`` seconds, to
``<zoo>/.resume/<split>-<first model>.pt``; running ``weightzoo generate`` again picks it up and
the block goes on from its last saved epoch, writing the same bytes as a run never stopped.

What a state file holds (``torch.save`` of tensors, dicts, lists, strings and numbers only, read
back with ``torch.load(weights_only=True)``):

- the spec's fingerprint, the block's name and its model ids, which must match the block
  being trained;
- every :func:`~weightzoo.generate.population.train` call of the block that finished (a
  family may call it several times per block, e.g. MLDS once per round of attempts): its
  result and the callbacks it made, returned and replayed without training;
- the call that was running: stacked parameters and buffers, optimizer state, step counter,
  the models' data-order generators, the RNG state, the task's own state (when it has
  ``state_dict``), the recorder's tables so far, the masks (active, frozen, groups,
  thresholds), and the callbacks made so far.

Calls are told apart by their position within the block. A file of another spec, of another
block, of another state format, or one that cannot be read, is ignored with a warning and
deleted: the block trains from its start and nothing is lost but time. A block's file is
deleted once its shard is written, and the folder once the zoo is complete. Files are
written to a temporary name, flushed, fsynced and renamed, through a descriptor of the
folder opened without following links, so a crash leaves the last complete state and a link
never leads a write out of the zoo.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import secrets
import stat
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weightzoo.errors import UnreadableFileError, UnsafePathError
from weightzoo.storage.writer import RESUME_DIR, is_state_file_name

log = logging.getLogger(__name__)
__all__ = [
    "DEFAULT_INTERVAL",
    "RESUME_DIR",
    "BlockSession",
    "ResumeSlot",
    "TrainCall",
    "current_session",
    "is_state_file_name",
    "prepare_resume_dir",
    "remove_resume_dir",
    "remove_state_files",
    "state_file_name",
]

DEFAULT_INTERVAL = 60.0  # seconds between two saves of one block, at least
STATE_FORMAT = 1
_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

# Tests: called after every state file written, with ("epoch" or "call", the call's position).
fault_hook: Callable[[str, int], None] | None = None

_session: ContextVar[BlockSession | None] = ContextVar("weightzoo_block_session", default=None)
# Where a warning of this module does not point: here, and the context manager of ``active``.
_INSIDE = frozenset({__file__, contextlib.__file__})


def state_file_name(split: str, first: int) -> str:
    """The state file of the block of ``split`` starting at storage position ``first``."""
    return f"{split}-{first:06d}.pt"


def current_session() -> BlockSession | None:
    """The resume session of the block being trained in this context (None: no block)."""
    return _session.get()


def prepare_resume_dir(zoo_dir: str | os.PathLike[str]) -> None:
    """Create ``<zoo>/.resume`` unless it is there; refuse one that is not a plain folder.

    Raises:
        UnsafePathError: if it is a link or a file.
    """
    folder = Path(zoo_dir) / RESUME_DIR
    with contextlib.suppress(FileExistsError):
        folder.mkdir()
    status = folder.lstat()
    if not stat.S_ISDIR(status.st_mode):
        raise UnsafePathError(
            f"{folder} is not a folder (a link or a file); weightzoo keeps a block's training "
            "state only in its own folder there. Delete it and run generate again."
        )


def remove_state_files(zoo_dir: str | os.PathLike[str], names: Sequence[str] | None) -> None:
    """Delete state files ``names`` and their temporaries (None: every state file).

    Only names a state file takes are deleted, never through a link.
    """
    folder = Path(zoo_dir) / RESUME_DIR
    try:
        fd = os.open(folder, _FOLDER_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:  # a link (ELOOP): not ours to empty
        log.warning("%s was left as it is: %s", folder, exc.strerror)
        return
    try:
        for name in os.listdir(fd):
            base = name.split(".pt", 1)[0] + ".pt"
            if is_state_file_name(name) and (names is None or base in names):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def remove_resume_dir(zoo_dir: str | os.PathLike[str], names: Sequence[str] | None = None) -> None:
    """Delete state files ``names`` (None: all of them), then the folder if that empties it.

    A folder that still holds anything (another slice's state) is kept; a slice still
    training makes it again when it next saves.
    """
    remove_state_files(zoo_dir, names)
    with contextlib.suppress(OSError):
        (Path(zoo_dir) / RESUME_DIR).rmdir()


@dataclass(frozen=True)
class ResumeSlot:
    """Where and for what one block's state is kept; picklable, sent to the block's worker.

    Attributes:
        zoo_dir: the zoo directory (absolute).
        split / first: the block (its split, the storage position of its first model).
        fingerprint: the spec's fingerprint.
        model_ids: the block's model ids, in order.
        interval: seconds between two saves, at least (0: at every epoch boundary).
    """

    zoo_dir: str
    split: str
    first: int
    fingerprint: str
    model_ids: tuple[int, ...]
    interval: float = DEFAULT_INTERVAL

    @property
    def file_name(self) -> str:
        """The state file's name inside the resume folder."""
        return state_file_name(self.split, self.first)

    @property
    def path(self) -> Path:
        """The state file."""
        return Path(self.zoo_dir) / RESUME_DIR / self.file_name

    @contextlib.contextmanager
    def active(self) -> Iterator[BlockSession]:
        """Make this block's session the current one while the block trains."""
        token = _session.set(BlockSession(self))
        try:
            yield _session.get()  # type: ignore[misc]
        finally:
            _session.reset(token)

    def clear(self) -> None:
        """Delete the block's state file (its shard is written); the folder stays."""
        remove_state_files(self.zoo_dir, [self.file_name])


class BlockSession:
    """The saved and the new state of one block, in the process that trains it.

    The state is read when the block starts; a file that does not belong to the block is
    ignored with a warning and deleted. Saving is off when the zoo directory is not there
    (a Ray node that does not share the zoo's file system) or its resume folder is not a
    plain folder.
    """

    def __init__(self, slot: ResumeSlot) -> None:
        self.slot = slot
        folder = Path(slot.zoo_dir) / RESUME_DIR
        self.enabled = _is_plain_folder(folder) or (
            _is_plain_folder(Path(slot.zoo_dir)) and not os.path.lexists(folder)
        )
        saved = self._load() if self.enabled else None
        self._saved_calls: list[dict[str, Any]] = list(saved["calls"]) if saved else []
        self._saved_current: dict[str, Any] | None = saved["current"] if saved else None
        self.finished: list[dict[str, Any]] = []  # calls done (replayed or trained)
        self._last_save = time.monotonic()

    def call(self, check: dict[str, Any]) -> TrainCall:
        """The next :func:`~weightzoo.generate.population.train` call of the block.

        Args:
            check: what identifies the call (models, seeds, configuration); a saved call
                with another one is not used, nor is anything saved after it.
        """
        index = len(self.finished)
        if index < len(self._saved_calls):
            stored = self._saved_calls[index]
            if stored.get("check") == check:
                return TrainCall(self, index, check, finished=stored)
            self._forget_from(index)
        elif index == len(self._saved_calls) and self._saved_current is not None:
            if self._saved_current.get("check") == check:
                return TrainCall(self, index, check, saved=self._saved_current)
            self._forget_from(index)
        return TrainCall(self, index, check)

    def _forget_from(self, index: int) -> None:
        _warn(
            f"{self.slot.path}: call {index} of the block's saved state differs from the one "
            "being made now; training it and what follows from the start"
        )
        del self._saved_calls[index:]
        self._saved_current = None

    def due(self) -> bool:
        """Whether ``interval`` seconds have passed since the block started or last saved."""
        return self.enabled and time.monotonic() - self._last_save >= self.slot.interval

    def save(self, current: dict[str, Any] | None, kind: str, index: int) -> None:
        """Write the finished calls and ``current`` (the running call's state) atomically.

        A failed write (a full disk) is reported and training goes on: the state is a
        convenience, the shard is what counts.
        """
        content = {**self._identity(), "calls": self.finished, "current": current}
        try:
            _write_atomically(self.slot.path, content)
        except OSError as exc:
            _warn(
                f"could not save the block's training state to {self.slot.path} "
                f"({exc.strerror or exc}); training goes on, an interruption would restart "
                "the block"
            )
            return
        self._last_save = time.monotonic()
        if fault_hook is not None:
            fault_hook(kind, index)

    def _identity(self) -> dict[str, Any]:
        """What a saved state must hold to be this block's: format, spec, block and models."""
        return {
            "format": STATE_FORMAT,
            "fingerprint": self.slot.fingerprint,
            "block": self.slot.file_name,
            "model_ids": list(self.slot.model_ids),
        }

    def _load(self) -> dict[str, Any] | None:
        path = self.slot.path
        try:
            content = _read(path)
        except FileNotFoundError:
            return None
        except Exception as exc:  # unreadable for any reason: only time is lost
            return self._discard(f"it cannot be read ({type(exc).__name__}: {exc})")
        if not isinstance(content, dict):
            return self._discard("it holds no state")
        for key, value in self._identity().items():
            if content.get(key) != value:
                return self._discard(f"its {key} is not this block's")
        if not isinstance(content.get("calls"), list):
            return self._discard("it holds no list of calls")
        log.info("resuming %s from %s", self.slot.file_name, path)
        return content

    def _discard(self, why: str) -> None:
        _warn(
            f"ignored and deleted {self.slot.path}: {why} (another spec, block or weightzoo "
            "version wrote it); the block trains from its start"
        )
        self.slot.clear()
        return None


class TrainCall:
    """One :func:`~weightzoo.generate.population.train` call of a block.

    Attributes:
        index: its position among the block's calls.
        finished: the stored call (``result`` and ``events``) when it finished before.
        saved: the state it had reached when it was interrupted, if it was.
        events: the callbacks made so far, as ``[kind, *arguments]`` (replayed on resume).
    """

    def __init__(
        self,
        session: BlockSession,
        index: int,
        check: dict[str, Any],
        *,
        finished: dict[str, Any] | None = None,
        saved: dict[str, Any] | None = None,
    ) -> None:
        self.session, self.index, self.check = session, index, check
        self.finished, self.saved = finished, saved
        source = finished or saved or {}
        self.events: list[list[Any]] = list(source.get("events", []))

    def recording(self, kind: str, callback: Callable[..., None] | None):
        """``callback`` wrapped to record each call (None stays None)."""
        if callback is None:
            return None

        def wrapped(*args: Any) -> None:
            self.events.append([kind, *(_plain(a) for a in args)])
            callback(*args)

        return wrapped

    def replay(self, callbacks: dict[str, Callable[..., None] | None]) -> None:
        """Make again, in order, the recorded callbacks of the steps not trained again."""
        for kind, *args in self.events:
            callback = callbacks.get(kind)
            if callback is not None:
                callback(*(_native(a) for a in args))

    def epoch_done(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        """After an epoch: save the call's state when the interval has passed."""
        if self.session.due():
            state = {"check": self.check, "events": list(self.events), "state": snapshot()}
            self.session.save(state, "epoch", self.index)

    def finish(self, result: dict[str, Any]) -> None:
        """The call is done: keep its result (saved with the next save, or now if due)."""
        stored = self.finished or {"check": self.check, "result": result, "events": self.events}
        self.session.finished.append(stored)
        if self.finished is None and self.session.due():
            self.session.save(None, "call", self.index)

    def corrupt(self, exc: Exception) -> UnreadableFileError:
        """The error for a saved state that does not fit the call it belongs to."""
        return UnreadableFileError(
            f"{self.session.slot.path} holds a training state that does not fit its block "
            f"({type(exc).__name__}: {exc}); delete it and run generate again"
        )


def _warn(message: str) -> None:
    """Warn (a ``RuntimeWarning``) at the first line outside this module and ``contextlib``.

    However deep inside the session the state's trouble is found (loading it when the block
    starts, matching a call, saving after an epoch), the warning names the training code that
    used it.
    """
    frame = inspect.currentframe()
    frame = frame.f_back if frame is not None else None
    level = 2  # warnings.warn's stacklevel of the frame ``frame``: the caller of _warn
    while frame is not None and frame.f_code.co_filename in _INSIDE:
        frame = frame.f_back
        level += 1
    warnings.warn(message, RuntimeWarning, stacklevel=level)


def _plain(value: Any) -> Any:
    """A callback argument in a form ``torch.load(weights_only=True)`` reads back."""
    import numpy as np
    import torch

    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _native(value: Any) -> Any:
    """A recorded argument as the callback first got it (arrays as numpy)."""
    import torch

    return value.numpy() if isinstance(value, torch.Tensor) else value


def _is_plain_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def _read(path: Path) -> Any:
    """Load a state file without unpickling objects and without following a link."""
    import torch

    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise UnreadableFileError(f"{path} is not a regular file")
        return torch.load(handle, map_location="cpu", weights_only=True)


def _write_atomically(path: Path, content: dict[str, Any]) -> None:
    """``torch.save`` to a temporary name in the folder, fsync, rename, fsync the folder.

    The folder is made again if it is gone (another slice finished and removed it).
    """
    import torch

    with contextlib.suppress(FileExistsError):
        path.parent.mkdir()
    folder = os.open(path.parent, _FOLDER_FLAGS)
    temp = f"{path.name}.{secrets.token_hex(8)}.tmp"  # a name is_state_file_name accepts
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644, dir_fd=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(content, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=folder)
            raise
        os.fsync(folder)
    finally:
        os.close(folder)
