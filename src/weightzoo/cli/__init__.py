"""The ``weightzoo`` command line.

This is the one place that turns errors into a one-line message and an exit code; set
``WEIGHTZOO_DEBUG=1`` to see the traceback instead. Exit codes: 0 success, 1 an error of the
input or the system (a weightzoo error or an OS error), 2 a usage error, 130 Ctrl-C, 141 the
reader of the output went away (``weightzoo list | head -1``), 143 SIGTERM. Any other
exception is a bug and shows its traceback.

Each command group is one module (:mod:`.listing`, :mod:`.inspect`, :mod:`.generation`,
:mod:`.transfer`, :mod:`.documents`, :mod:`.measure`) with its parsers and ``cmd_*``
functions; :mod:`.parser` joins them. Building the parser imports no torch: a command that
runs models imports it when it runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn

from weightzoo.cli.exit_codes import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
)
from weightzoo.cli.formatting import epochs_text
from weightzoo.cli.parser import build_parser
from weightzoo.errors import WeightzooError
from weightzoo.escaping import one_line

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "Terminated",
    "build_parser",
    "epochs_text",
    "main",
    "run",
]


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that it unwinds (and cleans up) like Ctrl-C."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while a command runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: FrameType | None) -> NoReturn:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _silence_stdout() -> None:
    """Point stdout at the null device, so that its final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass  # stdout is not a file descriptor (captured): nothing to flush at exit


def _call(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; an interruption or an error of the input or the system is one line."""
    if os.environ.get("WEIGHTZOO_DEBUG") == "1":
        return func(args)
    # Only a command that keeps partial work says so (``list`` stopped by SIGTERM keeps none).
    hint = getattr(args, "resume_hint", None)
    after = f"; {hint}" if hint else ""
    try:
        return func(args)
    except KeyboardInterrupt:
        print(f"weightzoo: interrupted{after}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print(f"weightzoo: terminated (SIGTERM){after}", file=sys.stderr)
        return EXIT_TERMINATED
    except (WeightzooError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        name = type(exc).__name__
        # One line, whatever a file name or a publisher's string in the message holds.
        text = one_line(str(exc), limit=None)
        print(f"weightzoo: error: {text} [{name}; WEIGHTZOO_DEBUG=1 for details]", file=sys.stderr)
        return EXIT_ERROR


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; errors become one line on stderr.

    Returns:
        The exit code (see the module's documentation).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        with _sigterm_raises():
            return _call(args.func, args)
    except BrokenPipeError:
        # The reader of our output is gone (`weightzoo list | head -1`): stop quietly.
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def main() -> None:
    """Console-script entry point."""
    code = run()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        code = EXIT_BROKEN_PIPE
    sys.exit(code)
