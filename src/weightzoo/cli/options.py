"""What the commands' parsers share: the parser class, argument types, common options."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from weightzoo.cli.exit_codes import EXIT_USAGE
from weightzoo.storage.manifest import MAX_SLICES

__all__ = [
    "OneLineParser",
    "OwnedChoice",
    "add_command",
    "add_group",
    "add_train_epochs",
    "non_negative_float",
    "parse_epochs",
    "parse_slice",
    "positive_float",
    "positive_int",
    "verbose_parent",
]

GROUP_HELP = "grouped zoo: only this group (default: every group)"


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line that points to ``--help``."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see PROG --help)`` and exit with code 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class OwnedChoice:
    """An option's type: one of the choices that the module owning them offers.

    The owner is imported when a value is checked, never when the parser is built or its help
    printed (argparse lists ``choices=`` in every help), so ``weightzoo --help`` does not
    import an owner that imports torch. Give the option a ``metavar``.

    Args:
        module: the owner's module path, e.g. ``"weightzoo.generate.runner"``.
        name: the owner's sequence of choices in it (``"ENGINES"``), or a function of no
            arguments that returns them (``"kinds"``).
    """

    def __init__(self, module: str, name: str) -> None:
        self._owner = (module, name)
        self.__name__ = name  # argparse names a type by it in some errors

    def choices(self) -> tuple[str, ...]:
        """The owner's choices, in its order."""
        module, name = self._owner
        owned = getattr(importlib.import_module(module), name)
        return tuple(owned() if callable(owned) else owned)

    def __call__(self, text: str) -> str:
        """``text`` if the owner offers it.

        Raises:
            argparse.ArgumentTypeError: naming the choices, for any other value.
        """
        offered = self.choices()
        if text not in offered:
            raise argparse.ArgumentTypeError(
                f"invalid choice: {text!r} (choose from {', '.join(offered)})"
            )
        return text


def _number(text: str, kind: type[int] | type[float], ok: Any, expected: str) -> Any:
    """``text`` as a ``kind`` for which ``ok(value)`` holds (NaN never does)."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    return _number(text, int, lambda value: value >= 1, "a positive integer")


def positive_float(text: str) -> float:
    """A number above 0."""
    return _number(text, float, lambda value: value > 0, "a positive number")


def non_negative_float(text: str) -> float:
    """A number of at least 0."""
    return _number(text, float, lambda value: value >= 0, "a number >= 0")


def parse_slice(text: str) -> tuple[int, int]:
    """``"i/n"``: slice ``i`` of ``n``, numbered from 0."""
    index, _, count = text.partition("/")
    try:
        parsed = int(index), int(count)
    except ValueError:
        parsed = (-1, 0)
    if not 0 <= parsed[0] < parsed[1] <= MAX_SLICES:
        raise argparse.ArgumentTypeError(
            f"--slice takes I/N with 0 <= I < N <= {MAX_SLICES} (e.g. 0/4 ... 3/4), got {text!r}"
        )
    return parsed


def parse_epochs(text: str | None) -> Any:
    """``"all"``, ``"last"``, ``"50"`` or ``"0,10,50"``."""
    if text is None or text in ("all", "last"):
        return text
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--epochs takes 'all', 'last' or comma-separated integers, got {text!r}"
        ) from None
    return values[0] if len(values) == 1 else values


def add_command(
    sub: Any,
    name: str,
    parents: list[argparse.ArgumentParser],
    text: str,
    func: Callable[[argparse.Namespace], int] | None = None,
    *,
    resume_hint: str | None = None,
) -> argparse.ArgumentParser:
    """Add the subcommand ``name``, which runs ``func``.

    Args:
        sub: the subparsers to add it to.
        name: the subcommand's name.
        parents: the parsers whose options it shares (``--verbose``).
        text: its first line is the one-line help of the command list; the paragraphs after
            a blank line, if any, are the command's description in its own ``--help``.
        func: the ``cmd_*`` function; ``None`` for a command with subcommands of its own.
        resume_hint: what an interrupted run of the command keeps and how to go on, said
            after Ctrl-C or SIGTERM (``None``: the command keeps nothing worth a word).
    """
    summary, _, description = text.partition("\n\n")
    parser = sub.add_parser(
        name, parents=parents, help=summary, description=" ".join(description.split()) or None
    )
    if func is not None:
        parser.set_defaults(func=func, resume_hint=resume_hint)
    return parser


def verbose_parent() -> argparse.ArgumentParser:
    """``-v``/``--verbose`` after the subcommand, as a parent of every subcommand's parser."""
    verbose = OneLineParser(add_help=False)
    # SUPPRESS keeps it from resetting the same flag given before the subcommand.
    verbose.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log messages"
    )
    return verbose


def add_group(parser: argparse.ArgumentParser, text: str = GROUP_HELP) -> None:
    """``--group NAME``: the one group of a grouped zoo that the command reads."""
    parser.add_argument("--group", help=text)


class _DeprecatedEpochs(argparse.Action):
    """``--epochs`` of a training command: the old name of ``--train-epochs``, with a note."""

    def __call__(self, _parser: Any, namespace: Any, values: Any, _option: Any = None) -> None:
        print(
            "weightzoo: note: --epochs of this command is deprecated (it sets the training "
            "length); use --train-epochs (--epochs elsewhere selects checkpoints)",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_train_epochs(
    parser: argparse.ArgumentParser, text: str, *, default: int | None = None, checked: bool = True
) -> None:
    """``--train-epochs`` (the training length), and ``--epochs`` as its deprecated alias."""
    kind = positive_int if checked else int
    parser.add_argument("--train-epochs", dest="epochs", type=kind, default=default, help=text)
    parser.add_argument(
        "--epochs", dest="epochs", type=kind, action=_DeprecatedEpochs, help=argparse.SUPPRESS
    )
