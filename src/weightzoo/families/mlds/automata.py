"""DS3: random automata by Algorithm 1 of the MLDS paper, and their data sets.

An automaton has ``states`` states, ``emitters`` of which emit a symbol of their own, and a
complete transition table over an input alphabet (every input is valid in every state).
Algorithm 1, as read here:

1. shuffle the states; the first ``emitters`` of the shuffled order emit (emitter ``j`` emits
   output symbol ``j``); the first state of the order is the start state;
2. link the shuffled states into a Hamiltonian cycle ``v0 -> v1 -> ... -> v0``, each edge with a
   random input symbol;
3. for each cycle edge ``(n1 -> n2, label)`` and every other symbol, add an edge from ``n1`` to a
   random state other than ``n2``.

Each automaton is identified by its seed. The network reads one-hot input symbols and predicts
the one-hot symbol emitted by the state reached (all zeros in a silent state).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from weightzoo.families.mlds.machines import SequenceSet

STATES = 16
EMITTERS = 14
ALPHABET = 4


@dataclass(frozen=True)
class Automaton:
    """A deterministic automaton with emitting states.

    Attributes:
        seed: the seed it was drawn from (its identity).
        transitions: int ``[states, alphabet]``: next state per (state, symbol).
        emits: int ``[states]``: output symbol of each state, ``-1`` for a silent state.
        start: the start state.
        cycle: the Hamiltonian cycle, in order.
    """

    seed: int
    transitions: np.ndarray
    emits: np.ndarray
    start: int
    cycle: tuple[int, ...]

    @property
    def num_outputs(self) -> int:
        """Number of output symbols (emitting states)."""
        return int(self.emits.max()) + 1

    def run(self, symbols: np.ndarray) -> np.ndarray:
        """States reached after each input symbol, int ``[sequences, steps]``."""
        symbols = np.asarray(symbols, dtype=np.int64)
        state = np.full(symbols.shape[0], self.start, dtype=np.int64)
        out = np.empty_like(symbols)
        for t in range(symbols.shape[1]):
            state = self.transitions[state, symbols[:, t]]
            out[:, t] = state
        return out


def random_automaton(
    seed: int, *, states: int = STATES, emitters: int = EMITTERS, alphabet: int = ALPHABET
) -> Automaton:
    """Draw an automaton by Algorithm 1 (see the module docstring).

    Raises:
        ValueError: for sizes that admit no such automaton.
    """
    if not 0 < emitters <= states or states < 3 or alphabet < 1:
        raise ValueError(
            f"need 0 < emitters <= states, states >= 3, alphabet >= 1; got states={states}, "
            f"emitters={emitters}, alphabet={alphabet}"
        )
    rng = np.random.default_rng([seed, states, emitters, alphabet])
    order = rng.permutation(states)
    emits = np.full(states, -1, dtype=np.int64)
    emits[order[:emitters]] = np.arange(emitters)
    transitions = np.full((states, alphabet), -1, dtype=np.int64)
    for position, node in enumerate(order):
        nxt = order[(position + 1) % states]
        label = rng.integers(alphabet)
        transitions[node, label] = nxt
        for other in range(alphabet):
            if other == label:
                continue
            choices = np.delete(np.arange(states), nxt)
            transitions[node, other] = rng.choice(choices)
    return Automaton(
        seed=int(seed),
        transitions=transitions,
        emits=emits,
        start=int(order[0]),
        cycle=tuple(int(v) for v in order),
    )


def automaton_set(automaton: Automaton, *, count: int, steps: int, seed: int | list[int]):
    """A data set for one automaton: uniform random symbols, one-hot inputs and outputs.

    Returns:
        A :class:`~weightzoo.families.mlds.machines.SequenceSet` with uint8 inputs
        ``[count, steps, alphabet]`` and outputs ``[count, steps, emitters]``.
    """
    rng = np.random.default_rng(seed)
    alphabet = automaton.transitions.shape[1]
    symbols = rng.integers(alphabet, size=(count, steps))
    emitted = automaton.emits[automaton.run(symbols)]
    inputs = np.eye(alphabet, dtype=np.uint8)[symbols]
    outputs = np.eye(automaton.num_outputs + 1, dtype=np.uint8)[emitted][..., :-1]
    return SequenceSet(inputs, outputs, np.ones((count, steps), dtype=np.uint8))
