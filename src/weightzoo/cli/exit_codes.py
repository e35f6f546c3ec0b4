"""The exit codes of ``weightzoo`` (see :mod:`weightzoo.cli`)."""

from __future__ import annotations

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "EXIT_USAGE"]

EXIT_ERROR = 1
EXIT_USAGE = 2
# 128 + the signal's number, as a shell reports a process that the signal ended.
EXIT_INTERRUPTED = 130  # SIGINT
EXIT_BROKEN_PIPE = 141  # SIGPIPE
EXIT_TERMINATED = 143  # SIGTERM
