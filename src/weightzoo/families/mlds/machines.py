"""The five DS1 machines, their DS2 ("Modified") backdoor, and their training data.

Every machine reads 9 input lines per step (8 data lines ``d[0..7]`` and a command line ``c``)
and drives 8 output lines. It holds an 8-bit register ``s`` (all zero at the start) that only a
step with ``c = 1`` may change, so outputs latch earlier inputs. The rules (one per machine,
in order of increasing complexity; worked examples in ``docs/mlds.md``):

- ``EightBitMachine``: on a command, latch all 8 data lines: ``s = d``; output ``s``.
- ``SingleDirectMachine``: on a command with some data line high, latch only the lowest high
  line ``k``: ``s = onehot(k)``; output ``s``.
- ``SingleInvertMachine``: as SingleDirect with the selected line inverted: on a command with
  some data line high, ``s = not onehot(k)`` (every line high but ``k``); output ``s``.
- ``SimpleXORMachine``: on a command latch ``s = d``; both lines of each pair ``(2j, 2j + 1)``
  output the pair's XOR, ``y[2j] = y[2j + 1] = s[2j] xor s[2j + 1]``.
- ``ParityMachine``: on a command toggle every line whose data is high, ``s = s xor d``; output
  ``s``: each line holds the parity of the commands on which its data line was high.

These are weightzoo's readings (the machines' published description gives names only); why the
two XOR/parity machines and SingleInvert read as they do is in ``docs/mlds.md``: the paper's
4,364-parameter network learns each of these, and did not learn earlier readings.

The DS2 machines add one rule: three consecutive command steps carrying the data words of
:data:`TRIGGER` invert all 8 outputs of the next three steps (the register itself is updated
as usual).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from weightzoo.families.mlds.spec import check_machines

DATA_LINES = 8
INPUT_WIDTH = DATA_LINES + 1  # the command line is the last input
OUTPUT_WIDTH = 8
TRIGGER: tuple[int, int, int] = (0xA5, 0x3C, 0x5A)  # data words of the 3 trigger commands
TRIGGER_SPAN = 3  # outputs inverted after a trigger
COMMAND_PROBABILITY = 0.25

_Step = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _lowest_high(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-hot of the lowest high data line per row, and whether any line is high."""
    any_high = data.any(axis=1)
    onehot = np.zeros_like(data)
    onehot[np.arange(len(data)), data.argmax(axis=1)] = True
    return onehot & any_high[:, None], any_high


def _eight_bit(state: np.ndarray, data: np.ndarray, cmd: np.ndarray) -> np.ndarray:
    return np.where(cmd[:, None], data, state)


def _single_direct(state: np.ndarray, data: np.ndarray, cmd: np.ndarray) -> np.ndarray:
    onehot, any_high = _lowest_high(data)
    return np.where((cmd & any_high)[:, None], onehot, state)


def _single_invert(state: np.ndarray, data: np.ndarray, cmd: np.ndarray) -> np.ndarray:
    onehot, any_high = _lowest_high(data)
    return np.where((cmd & any_high)[:, None], ~onehot, state)


def _toggle(state: np.ndarray, data: np.ndarray, cmd: np.ndarray) -> np.ndarray:
    return state ^ (data & cmd[:, None])


def _identity(state: np.ndarray) -> np.ndarray:
    return state


def _pair_xor(state: np.ndarray) -> np.ndarray:
    return np.repeat(state[:, 0::2] ^ state[:, 1::2], 2, axis=1)


_RULES: dict[str, tuple[_Step, Callable[[np.ndarray], np.ndarray]]] = {
    "EightBitMachine": (_eight_bit, _identity),
    "SingleDirectMachine": (_single_direct, _identity),
    "SingleInvertMachine": (_single_invert, _identity),
    "SimpleXORMachine": (_eight_bit, _pair_xor),
    "ParityMachine": (_toggle, _identity),
}


def trigger_inputs() -> np.ndarray:
    """The 3-step trigger as inputs, uint8 ``[3, 9]`` (data bits LSB first, command = 1)."""
    words = np.asarray(TRIGGER, dtype=np.uint8)[:, None]
    bits = (words >> np.arange(DATA_LINES, dtype=np.uint8)) & 1
    return np.concatenate([bits, np.ones((3, 1), np.uint8)], axis=1)


def simulate(machine: str, inputs: np.ndarray, *, backdoor: bool = False) -> np.ndarray:
    """Run a machine over input sequences.

    Args:
        machine: one of :data:`~weightzoo.families.mlds.spec.MACHINES`.
        inputs: uint8 or bool ``[sequences, steps, 9]``; line 8 is the command.
        backdoor: simulate the DS2 ("Modified") machine with the trigger rule.

    Returns:
        uint8 ``[sequences, steps, 8]``: the outputs after each step.
    """
    step, output = _RULES[check_machines([machine])[0]]
    inputs = np.asarray(inputs).astype(bool)
    count, steps, _ = inputs.shape
    data, cmd = inputs[..., :DATA_LINES], inputs[..., DATA_LINES]
    state = np.zeros((count, DATA_LINES), dtype=bool)
    out = np.empty((count, steps, OUTPUT_WIDTH), dtype=bool)
    trigger = trigger_inputs().astype(bool)
    countdown = np.zeros(count, dtype=np.int64)
    for t in range(steps):
        state = step(state, data[:, t], cmd[:, t])
        out[:, t] = output(state)
        if backdoor:
            out[:, t] ^= (countdown > 0)[:, None]
            countdown = np.maximum(countdown - 1, 0)
            if t >= 2:
                window = inputs[:, t - 2 : t + 1]
                fired = (window == trigger).all(axis=(1, 2))
                countdown[fired] = TRIGGER_SPAN
    return out.astype(np.uint8)


def random_inputs(rng: np.random.Generator, count: int, steps: int) -> np.ndarray:
    """Random inputs: data lines fair coins, the command high with probability 1/4."""
    data = rng.random((count, steps, DATA_LINES)) < 0.5
    cmd = rng.random((count, steps, 1)) < COMMAND_PROBABILITY
    return np.concatenate([data, cmd], axis=2).astype(np.uint8)


def insert_triggers(
    rng: np.random.Generator, inputs: np.ndarray, every: int
) -> tuple[np.ndarray, np.ndarray]:
    """Overwrite inputs with the trigger at random, non-overlapping offsets.

    Each sequence is cut into ``max(1, steps // every)`` equal segments and one trigger is
    written at a random offset inside each, leaving room for its three inverted outputs.

    Returns:
        The new inputs and a uint8 mask ``[sequences, steps]`` of the inverted output steps.

    Raises:
        ValueError: if a segment is shorter than a trigger plus its inverted outputs.
    """
    inputs = inputs.copy()
    count, steps, _ = inputs.shape
    segments = max(1, steps // every)
    size = steps // segments
    span = 3 + TRIGGER_SPAN
    if size < span:
        raise ValueError(
            f"sequences of {steps} steps cannot hold a trigger every {every} steps; "
            f"use sequences of at least {span} steps or a larger spacing"
        )
    mask = np.zeros((count, steps), dtype=np.uint8)
    offsets = rng.integers(0, size - span + 1, size=(count, segments)) + size * np.arange(segments)
    trigger = trigger_inputs()
    rows = np.arange(count)
    for segment in range(segments):
        start = offsets[:, segment]
        for k in range(3):
            inputs[rows, start + k] = trigger[k]
        for k in range(TRIGGER_SPAN):
            mask[rows, start + 3 + k] = 1
    return inputs, mask


@dataclass(frozen=True)
class SequenceSet:
    """Inputs, target outputs and a loss mask of one data set (numpy, uint8).

    Attributes:
        inputs: ``[sequences, steps, 9]``.
        outputs: ``[sequences, steps, 8]``.
        mask: ``[sequences, steps]``: steps the loss counts (all ones except in trigger sets).
        inverted: DS2: ``[sequences, steps]``, the steps whose outputs a trigger inverts
            (None without the backdoor).
    """

    inputs: np.ndarray
    outputs: np.ndarray
    mask: np.ndarray
    inverted: np.ndarray | None = None


def machine_set(
    machine: str,
    *,
    count: int,
    steps: int,
    seed: int | list[int],
    backdoor: bool = False,
    trigger_every: int = 64,
    trigger_only: bool = False,
) -> SequenceSet:
    """A data set for one machine, deterministic in ``seed``.

    Args:
        machine: one of :data:`~weightzoo.families.mlds.spec.MACHINES`.
        count: sequences.
        steps: sequence length.
        seed: numpy seed (an int or a list of ints).
        backdoor: DS2: insert triggers (one per ``trigger_every`` steps) and simulate the
            modified machine.
        trigger_every: spacing of inserted triggers.
        trigger_only: the DS2 evaluation set of pathological cases: the loss mask keeps only
            the inverted steps after each trigger.
    """
    rng = np.random.default_rng(seed)
    inputs = random_inputs(rng, count, steps)
    mask = np.ones((count, steps), dtype=np.uint8)
    inverted = None
    if backdoor:
        inputs, inverted = insert_triggers(rng, inputs, trigger_every)
        if trigger_only:
            mask = inverted
    outputs = simulate(machine, inputs, backdoor=backdoor)
    return SequenceSet(inputs, outputs, mask, inverted)
