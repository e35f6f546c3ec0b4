"""The DS3 automata, re-exported from :mod:`weightzoo.tasks.automata` (their home)."""

from weightzoo.tasks.automata import (
    ALPHABET,
    EMITTERS,
    STATES,
    Automaton,
    automaton_set,
    random_automaton,
)

__all__ = ["ALPHABET", "EMITTERS", "STATES", "Automaton", "automaton_set", "random_automaton"]
