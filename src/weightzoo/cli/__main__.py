"""``python -m weightzoo.cli``: the ``weightzoo`` command."""

from weightzoo.cli import main

main()
