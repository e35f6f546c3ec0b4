import numpy as np
import pytest

from weightzoo.families.mlds.automata import automaton_set, random_automaton
from weightzoo.families.mlds.machines import TRIGGER_SPAN, machine_set, simulate, trigger_inputs
from weightzoo.families.mlds.spec import MACHINES, check_machines


def _step(data_bits, cmd):
    return [*list(data_bits), cmd]


def _run(machine, steps, backdoor=False):
    inputs = np.asarray([steps], dtype=np.uint8)
    return simulate(machine, inputs, backdoor=backdoor)[0].tolist()


D1 = [1, 0, 1, 1, 0, 0, 0, 0]
D2 = [0, 1, 1, 0, 0, 0, 0, 1]


def test_eight_bit_latches_on_command():
    out = _run("EightBitMachine", [_step(D1, 0), _step(D1, 1), _step(D2, 0), _step(D2, 1)])
    assert out == [[0] * 8, D1, D1, D2]


def test_single_direct_latches_lowest_high_line():
    out = _run("SingleDirectMachine", [_step(D1, 1), _step(D2, 0), _step(D2, 1), _step([0] * 8, 1)])
    assert out[0] == [1, 0, 0, 0, 0, 0, 0, 0]
    assert out[1] == out[0]
    assert out[2] == [0, 1, 0, 0, 0, 0, 0, 0]
    assert out[3] == out[2]  # no high line: nothing to latch


def test_single_invert_latches_inverted_lowest_high_line():
    out = _run("SingleInvertMachine", [_step(D1, 1), _step(D2, 0), _step(D2, 1), _step([0] * 8, 1)])
    assert out[0] == [0, 1, 1, 1, 1, 1, 1, 1]
    assert out[1] == out[0]
    assert out[2] == [1, 0, 1, 1, 1, 1, 1, 1]
    assert out[3] == out[2]  # no high line: nothing to latch


def test_simple_xor_outputs_pair_xor_on_both_lines():
    out = _run("SimpleXORMachine", [_step(D1, 1), _step(D2, 0), _step(D2, 1)])
    assert out[0] == [1, 1, 0, 0, 0, 0, 0, 0]  # pairs 10, 11, 00, 00
    assert out[1] == out[0]
    assert out[2] == [1, 1, 1, 1, 0, 0, 1, 1]  # pairs 01, 10, 00, 01


def test_parity_holds_per_line_parity_of_commands():
    out = _run("ParityMachine", [_step(D1, 1), _step(D2, 0), _step(D2, 1), _step(D1, 1)])
    assert out[0] == D1 and out[1] == D1
    assert out[2] == [a ^ b for a, b in zip(D1, D2, strict=True)]
    assert out[3] == D2  # D1 toggled in twice cancels


def test_docs_worked_example():
    steps = [
        _step([1, 0, 1, 1, 0, 0, 0, 0], 0),
        _step([1, 0, 1, 1, 0, 0, 0, 0], 1),
        _step([0, 1, 1, 0, 0, 0, 0, 1], 0),
        _step([0, 1, 1, 0, 0, 0, 0, 1], 1),
        _step([1, 0, 1, 1, 0, 0, 0, 0], 1),
    ]
    table = {
        "EightBitMachine": ["00000000", "10110000", "10110000", "01100001", "10110000"],
        "SingleDirectMachine": ["00000000", "10000000", "10000000", "01000000", "10000000"],
        "SingleInvertMachine": ["00000000", "01111111", "01111111", "10111111", "01111111"],
        "SimpleXORMachine": ["00000000", "11000000", "11000000", "11110011", "11000000"],
        "ParityMachine": ["00000000", "10110000", "10110000", "11010001", "01100001"],
    }
    for machine, rows in table.items():
        got = ["".join(map(str, row)) for row in _run(machine, steps)]
        assert got == rows, machine


def test_trigger_inverts_next_three_outputs_only_in_ds2():
    steps = [_step(D1, 1)] + trigger_inputs().tolist() + [_step(D2, 0)] * 5
    clean = np.asarray(_run("EightBitMachine", steps))
    modified = np.asarray(_run("EightBitMachine", steps, backdoor=True))
    diff = (clean != modified).all(axis=1)
    assert diff.tolist() == [False] * 4 + [True] * TRIGGER_SPAN + [False] * 2


def test_machine_set_deterministic_and_trigger_mask():
    a = machine_set("ParityMachine", count=4, steps=24, seed=[1, 2], backdoor=True, trigger_every=8)
    b = machine_set("ParityMachine", count=4, steps=24, seed=[1, 2], backdoor=True, trigger_every=8)
    assert np.array_equal(a.inputs, b.inputs) and np.array_equal(a.outputs, b.outputs)
    t = machine_set(
        "ParityMachine",
        count=4,
        steps=24,
        seed=3,
        backdoor=True,
        trigger_every=8,
        trigger_only=True,
    )
    assert t.mask.sum() == 4 * 3 * TRIGGER_SPAN
    assert a.inputs.shape == (4, 24, 9) and a.outputs.shape == (4, 24, 8)


def test_unknown_machine_lists_valid_ones():
    with pytest.raises(ValueError, match="ParityMachine"):
        check_machines(["Parity"])
    assert check_machines(list(MACHINES)) == MACHINES


def test_automaton_follows_algorithm_1():
    auto = random_automaton(7)
    assert auto.transitions.shape == (16, 4) and (auto.transitions >= 0).all()
    assert (auto.emits >= 0).sum() == 14 and sorted(auto.emits[auto.emits >= 0]) == list(range(14))
    cycle = auto.cycle
    assert sorted(cycle) == list(range(16)) and cycle[0] == auto.start
    for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True):
        assert b in auto.transitions[a]  # the Hamiltonian cycle is a path of edges
    assert np.array_equal(random_automaton(7).transitions, auto.transitions)
    assert not np.array_equal(random_automaton(8).transitions, auto.transitions)
    data = automaton_set(auto, count=3, steps=10, seed=0)
    assert data.inputs.shape == (3, 10, 4) and data.outputs.shape == (3, 10, 14)
    assert (data.outputs.sum(axis=2) <= 1).all()
