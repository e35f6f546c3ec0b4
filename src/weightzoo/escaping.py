"""Publisher text made safe for a card: Markdown and HTML, code snippets, link paths.

A zoo fetched from a hub was written by someone the user has never met, and its card is
rendered as a web page. Every string a card takes from a manifest or a shard (zoo, metric,
column, category, group and spec names and values) therefore goes through
:func:`markdown_text`, which makes it one bounded line of plain text that CommonMark,
GitHub-flavoured Markdown and Python-Markdown all render as that text: no HTML, no link, no
emphasis, no table cell and no new block. Links in a card are built by :func:`relative_link`
from fixed names only.

The module imports nothing heavy, so that the CLI, the cards and the figures share it.
"""

from __future__ import annotations

import shlex
import unicodedata
from urllib.parse import quote

from weightzoo.errors import UnsafePathError

#: Characters a card shows of one publisher string, ellipsis included.
MAX_CHARS = 200
ELLIPSIS = "\u2026"
# Line and paragraph breaks, control and format characters (bidi overrides, zero-width
# joiners, byte-order marks) and lone surrogates: none may reach a card as itself.
_INVISIBLE = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))
# Markdown punctuation that every renderer unescapes after a backslash; escaping every dot
# also breaks the ``www.`` and domain patterns of GFM's and linkify's bare-URL autolinks.
_BACKSLASHED = frozenset("\\`*_[](){}#!.")
# HTML specials, and Markdown punctuation that Python-Markdown does not unescape after a
# backslash (table pipes, strikethrough, math delimiters, and the ':' and '@' of bare-URL and
# e-mail autolinks): numeric character references.
_REFERENCES = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "'": "&#x27;",
    "|": "&#124;",
    "~": "&#126;",
    "$": "&#36;",
    ":": "&#58;",
    "@": "&#64;",
}
# What opens a block at the start of a line (a list item, a setext underline, a thematic
# break) and is harmless elsewhere; a number and a dot (an ordered list) is covered by the dot.
_LEADING = {"-": "\\-", "+": "\\+", "=": "&#61;"}


def one_line(text: object, limit: int | None = MAX_CHARS) -> str:
    """``text`` as one line of plain characters, at most ``limit`` long.

    Line breaks, tabs, control and format characters and lone surrogates become spaces, runs
    of white space become one space, the ends are stripped, and text longer than ``limit`` is
    cut to ``limit - 1`` characters and an ellipsis.

    Args:
        text: any value (``str()`` of it is taken).
        limit: the most characters returned (``None``: no bound).

    Returns:
        The line (empty for text of white space only).
    """
    chars = (" " if unicodedata.category(ch) in _INVISIBLE else ch for ch in str(text))
    line = " ".join("".join(chars).split())
    if limit is not None and len(line) > limit:
        line = line[: max(0, limit - 1)].rstrip() + ELLIPSIS
    return line


def exception_summary(exc: BaseException, limit: int) -> str:
    """``"<type>: <first line>"`` of an exception, for a one-line message that quotes it.

    Args:
        exc: the exception.
        limit: the most characters kept of its message's first line.

    Returns:
        The exception's type name and its stripped message's first line, cut to ``limit``.
    """
    reason = (str(exc).strip().splitlines() or [""])[0][:limit]
    return f"{type(exc).__name__}: {reason}"


def markdown_text(text: object, limit: int | None = MAX_CHARS) -> str:
    r"""Publisher text as Markdown that renders as exactly :func:`one_line` of it.

    HTML specials (``& < > " '``) and ``| ~ $ : @`` become character references, the other
    Markdown punctuation (``\ ` * _ [ ] ( ) { } # ! .``) is escaped with a backslash, and a
    leading ``-``, ``+`` or ``=``, which would open a list, a setext heading or a thematic
    break at the start of a line, is escaped too. So no raw HTML, link, autolink, image,
    emphasis, code span, table cell or new block can come of it. The result is safe anywhere
    in a card's Markdown except inside code spans and code blocks (see :func:`shell_quote`
    and :func:`python_str` for those).

    Args:
        text: any value (``str()`` of it is taken).
        limit: the most characters shown (``None``: no bound).

    Returns:
        Markdown source of one line.
    """
    line = one_line(text, limit)
    if not line:
        return ""
    return _LEADING.get(line[0], _escape_char(line[0])) + "".join(map(_escape_char, line[1:]))


def _escape_char(ch: str) -> str:
    if ch in _BACKSLASHED:
        return "\\" + ch
    return _REFERENCES.get(ch, ch)


def shell_quote(text: object) -> str:
    """One shell word for a command in a card's code block (one line, quoted where needed)."""
    return shlex.quote(one_line(text, limit=None))


def python_str(text: object) -> str:
    """A double-quoted Python string literal of ``text`` for a card's code block.

    Every character outside printable ASCII is written as an escape, so the literal is one
    line of ASCII that evaluates to ``str(text)`` exactly.
    """
    body = str(text).encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return f'"{body}"'


def relative_link(*parts: str) -> str:
    """A link target inside the card folder: each part one percent-encoded path segment.

    Args:
        parts: the path's segments (``"figures"``, a group name, a file name).

    Returns:
        ``part/part/...``, relative, with every character outside ``[A-Za-z0-9_.~-]``
        percent-encoded, so that no segment can name a scheme, a host, a query or a parent.

    Raises:
        UnsafePathError: for an empty, ``.`` or ``..`` segment.
    """
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePathError(
                f"link segment {part!r} of {'/'.join(parts)!r} would leave the card folder; "
                "a card links to files inside it only"
            )
    return "/".join(quote(part, safe="") for part in parts)
