"""MLDS blocks as one refilled population: rows freed by attempts that end take the next round.

The oracle is the round scheme the refilled population replaces: one
:func:`~weightzoo.families.mlds.train.train_population` per round of attempts, every pending
network's attempts of the round side by side, each network keeping its best attempt by the
spec's rule. Every attempt must train to the same bits either way.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from weightzoo.families.mlds import train as mlds_train
from weightzoo.families.mlds.data import class_data
from weightzoo.families.mlds.family import FAMILY
from weightzoo.families.mlds.spec import MLDSSpec
from weightzoo.families.mlds.train import (
    PopulationData,
    RefilledPopulation,
    _best_of,
    _record,
    _seed,
    train_block,
    train_population,
)
from weightzoo.generate import resume
from weightzoo.generate.base import BlockRun
from weightzoo.generate.runner import generate


def ds2(**changes) -> MLDSSpec:
    """A small DS2 spec (backdoor warm-up, give-up, rounds of two attempts) whose networks
    pass at different epochs, give up or run out of epochs."""
    fields = dict(
        name="mlds-ds2",
        family="mlds",
        subset="ds2",
        machines=("EightBitMachine", "ParityMachine", "SingleDirectMachine"),
        per_class=2,
        seq_len=8,
        train_size=32,
        val_size=16,
        eval_size=8,
        trigger_every=8,
        trigger_eval_every=8,
        max_epochs=5,
        threshold=0.24,
        stop_margin=1.0,
        min_bit_accuracy=0.6,
        lr=3e-2,
        batch_size=8,
        backdoor_warmup=1,
        attempts=5,
        parallel_attempts=2,
        give_up=(3, 0.245),
        shard_models=8,
    )
    fields.update(changes)
    return MLDSSpec(**fields)


def _data(spec, plans):
    key = spec.data.class_column
    names = sorted({str(p.columns[key]) for p in plans}, key=spec.classes().index)
    per_class = [class_data(spec, name) for name in names]
    sets = {s: [d[s] for d in per_class] for s in spec.set_names()}
    data = PopulationData(sets, signed_inputs=spec.signed_inputs)
    return data, [names.index(str(p.columns[key])) for p in plans]


def rounds_oracle(spec, plans):
    """Records of the round scheme: one population per round, as the refill replaces."""
    data, classes = _data(spec, plans)
    pending, outcome, made = list(range(len(plans))), {}, []
    for attempts in spec.attempt_rounds():
        rows = [(i, a) for i in pending for a in attempts]
        seeds = [_seed(spec, plans[i], a) for i, a in rows]
        result = train_population(
            spec.net,
            data,
            [classes[i] for i, _ in rows],
            seeds,
            spec.settings(last_attempt=attempts[-1] == spec.attempts - 1),
            groups=[i for i, _ in rows] if len(attempts) > 1 else None,
            ends_group=lambda metrics: mlds_train.passes(spec, metrics)[1],
        )
        made += [(i, a, int(e)) for (i, a), e in zip(rows, result.epochs, strict=True)]
        pending = []
        for i in dict.fromkeys(i for i, _ in rows):
            mine = [r for r, (j, _) in enumerate(rows) if j == i]
            final = {k: v[mine] for k, v in result.final_metrics.items()}
            rank, best = _best_of(spec, final, result.passed[mine], [rows[r][1] for r in mine])
            row = mine[best]
            outcome[i] = (result, row, rows[row][1], seeds[row])
            if rank[0] == 1:
                pending.append(i)
        if not pending:
            break
    records = [_record(spec, p, *outcome[i], "cpu") for i, p in enumerate(plans)]
    return records, made


def assert_same_records(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a.model_id == b.model_id
        np.testing.assert_array_equal(a.weights, b.weights)
        assert a.metrics.keys() == b.metrics.keys()
        for name in a.metrics:
            np.testing.assert_array_equal(a.metrics[name], b.metrics[name])
        assert a.columns.keys() == b.columns.keys()
        for name, value in a.columns.items():
            np.testing.assert_array_equal(value, b.columns[name], err_msg=name)


@pytest.fixture(scope="module")
def block():
    """The spec, its plans, the oracle's records and the attempts it made."""
    torch.set_num_threads(1)
    spec = ds2()
    plans = FAMILY.plan(spec)
    records, made = rounds_oracle(spec, plans)
    return spec, plans, records, made


def test_the_spec_exercises_passing_giving_up_and_retrying(block):
    spec, plans, records, made = block
    epochs = {e for _, _, e in made}
    # attempts stop before the give-up epoch (3), at it, and after it, up to the last epoch
    assert epochs == {2, 3, 4, spec.max_epochs}, made
    assert any(r.columns["passed"] for r in records)
    assert any(r.columns["passed"] and r.columns["attempt"] > 0 for r in records)
    assert any(not r.columns["passed"] for r in records)  # every attempt made, none passed
    assert len(made) > len(plans)


def test_a_refilled_block_writes_the_round_schemes_records_bit_for_bit(block):
    spec, plans, records, _ = block
    assert_same_records(train_block(spec, plans, BlockRun(progress=False)), records)


@pytest.mark.parametrize("width", [2, 3, 7])
def test_any_width_trains_every_attempt_as_alone(block, width):
    spec, plans, records, made = block
    data, classes = _data(spec, plans)
    population = RefilledPopulation(spec, data, classes, plans, width=width)
    widths = []
    result, kept = population.run(lambda rows, _passed: widths.append(rows))
    ours = [
        _record(spec, p, result, row, *population.attempt_of(row), "cpu")
        for p, row in zip(plans, kept, strict=True)
    ]
    assert_same_records(ours, records)
    # the same attempts, each for the same epochs; never wider than asked
    started = sorted(
        (n, a, int(result.epochs[i])) for i, (n, a, _) in enumerate(population.attempts)
    )
    assert started == sorted(made)
    assert max(widths) <= max(width, spec.parallel_attempts)
    # the population ends when the queue is empty: every row trained in some epoch
    assert not population.queue and population.size == 0
    assert sum(widths) == sum(e for _, _, e in made)


class Watched(RefilledPopulation):
    """A refilled population that logs every epoch boundary."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.log: list[dict] = []

    def _head(self) -> int | None:
        return len(self.rounds[self.queue[0][1]]) if self.queue else None

    def _admit(self) -> None:
        entry = {"rows": self.size, "head": self._head(), "passed": int(self.tables.passed.sum())}
        super()._admit()
        self.log.append(entry | {"taken": self.size - entry["rows"], "next": self._head()})


def test_a_row_freed_by_a_passed_network_is_taken_at_the_next_epoch(block):
    spec, plans, _, made = block
    data, classes = _data(spec, plans)
    population = Watched(spec, data, classes, plans, width=len(plans))
    population.run()
    log = population.log
    width = population.width
    assert log[0] == {"rows": 0, "head": 1, "passed": 0, "taken": len(plans), "next": None}
    for entry in log:
        # rounds are taken in order while the next fits in the free rows, never more
        if entry["head"] is not None and entry["head"] <= width - entry["rows"]:
            assert entry["taken"] >= entry["head"], entry
        assert entry["rows"] + entry["taken"] <= width
        if entry["next"] is not None:
            assert entry["next"] > width - entry["rows"] - entry["taken"], entry
    # an attempt that passed left its row, and a pending round took it at that boundary
    refilled = [e for a, e in itertools.pairwise(log) if e["passed"] > a["passed"] and e["taken"]]
    assert refilled and all(e["rows"] < width for e in refilled)
    # the population ends when the queue is empty and the last rows are done
    assert log[-1]["head"] is None and log[-1]["rows"] + log[-1]["taken"] == 0
    assert sum(e["taken"] for e in log) == len(made)


def test_an_interrupted_block_resumes_to_the_same_records(block, tmp_path):
    spec, _, _, _ = block
    spec = dataclasses.replace(spec, shard_models=16)
    plain = tmp_path / "plain"
    generate(spec, plain, progress=False, resume_interval=None)
    saves = []

    def hook(kind: str, call: int) -> None:
        saves.append((kind, call))
        if len(saves) == 3:
            raise KeyboardInterrupt

    out = tmp_path / "cut"
    previous, resume.fault_hook = resume.fault_hook, hook
    try:
        with pytest.raises(KeyboardInterrupt):
            generate(spec, out, progress=False, resume_interval=0)
    finally:
        resume.fault_hook = previous
    assert saves == [("epoch", 0)] * 3  # one training call per block, saved per epoch
    assert len(list((out / resume.RESUME_DIR).iterdir())) == 1
    generate(spec, out, progress=False, resume_interval=0)
    from helpers.golden_specs import shard_hashes

    assert shard_hashes(out) == shard_hashes(plain)
    assert not (out / resume.RESUME_DIR).exists()


def test_by_default_no_round_waits_for_rows(block):
    spec, plans, records, made = block
    data, classes = _data(spec, plans)
    population = Watched(spec, data, classes, plans)
    result, kept = population.run()
    assert population.width == len(plans) * spec.parallel_attempts
    assert all(e["next"] is None for e in population.log)  # every pending round started
    ours = [
        _record(spec, p, result, row, *population.attempt_of(row), "cpu")
        for p, row in zip(plans, kept, strict=True)
    ]
    assert_same_records(ours, records)
    # a network's chain of rounds is as long as its own epochs: the population's epochs are
    # those of its longest chain
    ends: dict[tuple[int, int], int] = {}  # (network, round): its longest attempt
    for n, a, e in made:
        key = (n, 0 if a == 0 else 1 + (a - 1) // spec.parallel_attempts)
        ends[key] = max(ends.get(key, 0), e)
    chain = {n: sum(e for (m, _), e in ends.items() if m == n) for n, _ in ends}
    assert len(population.log) - 1 == max(chain.values())
