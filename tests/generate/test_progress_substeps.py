"""The bar moves within an epoch: the toolkit's trainer reports the steps done so far.

A family here trains with :func:`weightzoo.generate.population.train` (a linear regression of
tiny random data, a few models passing a loss threshold early), so that runs take a fraction
of a second while every path of the real trainer is taken. Clocks are the tests' own
(``reporting_steps(clock=...)``), or the throttle is set to zero so that every step reports.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import toy_family
from helpers.bars import CountingBar
from helpers.golden_specs import shard_hashes
from weightzoo.generate import population as toolkit
from weightzoo.generate import progress, ray_engine, resume, runner
from weightzoo.generate.base import BlockRun, ModelRecord
from weightzoo.generate.runner import generate

STEPS = 8  # optimizer steps per epoch of the linear family (32 items, 4 per step)


class LinearTask:
    """Fit ``y = W x + b`` (``W`` 2 x width) to fixed random data, per model."""

    def __init__(self, width: int, size: int = 32) -> None:
        generator = torch.Generator().manual_seed(5)
        self.x = torch.randn(size, width, generator=generator)
        self.y = torch.randn(size, 2, generator=generator)
        self.train_size = size
        self.splits = {"train": size}

    def _out(self, pop: toolkit.Population, x: torch.Tensor) -> torch.Tensor:
        weight, bias = pop.params["fc.weight"], pop.params["fc.bias"]
        return torch.einsum("mbw,mow->mbo", x, weight) + bias[:, None]

    def train_loss(self, pop, rows, order):
        return ((self._out(pop, self.x[rows]) - self.y[rows]) ** 2).mean(dim=(1, 2))

    def eval_sums(self, pop, split, start, stop):
        x = self.x[start:stop].expand(pop.size, -1, -1)
        error = ((self._out(pop, x) - self.y[start:stop]) ** 2).mean(dim=2).sum(dim=1)
        return {"loss": (error, torch.full_like(error, stop - start))}

    def eval_chunk(self, split, models):
        return 16


class LinearFamily(toy_family.ToyFamily):
    """The toy family's zoo, trained by the population toolkit; every third model has a loss
    threshold it passes after its first epoch, so the population shrinks as it trains."""

    def metric_names(self, spec):
        return ["train_loss"]

    def train(self, spec, plans, run):
        task = LinearTask(spec.width)
        pop = toolkit.Population(
            {
                "fc.weight": torch.stack([_init(p.seed, (2, spec.width)) for p in plans]),
                "fc.bias": torch.zeros(len(plans), 2),
            }
        )
        config = toolkit.TrainConfig(
            optimizer="sgd",
            lr=0.05,
            epochs=spec.num_epochs,
            batch_size=4,
            checkpoints=tuple(range(spec.num_epochs + 1)),
            checkpoint_splits=("train",),
            watch="train_loss",
            threshold=[1e3 if p.model_id % 3 == 0 else -1.0 for p in plans],
        )
        training, passed = [len(plans)], [0]

        def count(ids, did_pass):
            passed[0] += len(ids) if did_pass else 0

        def report(_steps, left):
            if run.on_epoch is not None:
                run.on_epoch(training[0], passed[0])
            training[0] = left

        seeds = [p.seed for p in plans]
        names = ["fc.weight", "fc.bias"]
        result = toolkit.train(task, pop, seeds, names, config, progress=report, on_stop=count)
        return [
            ModelRecord(
                model_id=plan.model_id,
                weights=result.weights[i],
                metrics={"train_loss": result.metrics["train_loss"][i]},
                columns={"passed": bool(result.passed[i])},
            )
            for i, plan in enumerate(plans)
        ]


def _init(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def linear_spec(**fields) -> toy_family.ToySpec:
    return toy_family.ToySpec(num_models=6, num_epochs=3, shard_models=3, **fields)


class Ticking:
    """A clock that moves ``tick`` seconds each time it is read, and counts its reads."""

    def __init__(self, tick: float) -> None:
        self.tick, self.now, self.reads = tick, 0.0, 0

    def __call__(self) -> float:
        self.reads += 1
        self.now += self.tick
        return self.now


def train_reporting(clock: Callable[[], float], *, interval: float | None = None) -> list:
    """Train one block of the linear family; its epoch and step reports, in order."""
    spec, family, events = linear_spec(), LinearFamily(), []

    def on_epoch(models, passed=None):
        events.append(("epoch", models, passed))

    with progress.reporting_steps(
        lambda models, fraction: events.append(("step", models, fraction)),
        clock=clock,
        interval=interval,
    ):
        family.train(spec, family.plan(spec)[:3], BlockRun(progress=False, on_epoch=on_epoch))
    return events


def epochs_of(events: Sequence[tuple]) -> list[list[tuple]]:
    """The step reports between two epoch reports, one list per epoch (with the epoch's)."""
    out, current = [], []
    for event in events:
        current.append(event)
        if event[0] == "epoch":
            out.append(current)
            current = []
    assert current == []  # nothing reported after the last epoch
    return out


def test_a_long_epoch_reports_its_steps_before_it_ends():
    # every read of this clock is a second later: each step is due a report
    events = train_reporting(Ticking(1.0))
    epochs = epochs_of(events)
    assert len(epochs) == 3
    first = epochs[0]
    assert first[0][0] == "step"  # the bar moves before the first epoch ends
    steps = [e for e in first if e[0] == "step"]
    assert [fraction for _, _, fraction in steps] == [k / STEPS for k in range(1, STEPS + 1)]
    for epoch in epochs:
        (_, models, _) = epoch[-1]
        # the step reports count the models that train in the epoch, as its report does
        assert {m for kind, m, _ in epoch if kind == "step"} == {models}
    # the model of the three with a threshold passed after epoch 1: epochs 2, 3 train two
    assert [epoch[-1][1] for epoch in epochs] == [3, 2, 2]


def test_reports_are_throttled_and_cost_one_clock_read_a_step():
    clock = Ticking(0.01)
    events = train_reporting(clock, interval=0.05)
    # one read per step and one when each epoch begins
    assert clock.reads == 3 * STEPS + 3
    # an epoch lasts 0.08 s: one report at most, 0.05 s after it began
    for epoch in epochs_of(events):
        assert [kind for kind, *_ in epoch] == ["step", "epoch"]


def test_many_steps_make_few_reports():
    clock = Ticking(0.001)  # a step takes a millisecond: 100 s in all
    fractions: list[float] = []
    steps = progress.EpochSteps(lambda _m, f: fractions.append(f), clock=clock, interval=0.5)
    steps.begin(3, 100_000)
    for done in range(1, 100_001):
        steps.step(done)
    assert clock.reads == 100_001
    assert 190 <= len(fractions) <= 200  # one per half second
    assert fractions == sorted(set(fractions)) and fractions[-1] <= 1


@settings(max_examples=60, deadline=None)
@given(
    ticks=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=200),
    begins=st.sets(st.integers(1, 199), max_size=10),
    interval=st.floats(0.01, 1.0),
)
def test_the_throttle_keeps_an_interval_between_reports(ticks, begins, interval):
    times = itertools.accumulate(ticks)
    now = 0.0

    def read() -> float:
        nonlocal now
        now = next(times)
        return now

    starts: list[float] = []
    reports: list[tuple[float, float]] = []  # (when its epoch began, when it came)
    steps = progress.EpochSteps(
        lambda _m, _f: reports.append((starts[-1], now)), clock=read, interval=interval
    )
    for index in range(len(ticks)):  # each one reads the clock once
        if index == 0 or index in begins:
            steps.begin(4, 10)
            starts.append(now)
        else:
            steps.step(index)
    slack = 1e-9  # the clock's times are sums of floats
    assert all(at - began >= interval - slack for began, at in reports)
    assert all(b - a >= interval - slack for (_, a), (_, b) in itertools.pairwise(reports))


@dataclass
class Script:
    """What a hypothesis example feeds two blocks: epochs as (models, fractions) each."""

    models: int
    epochs: int
    trained: list[tuple[int, list[float]]]


@st.composite
def scripts(draw) -> Script:
    models = draw(st.integers(1, 6))
    epochs = draw(st.integers(1, 5))
    trained, active = [], models
    for _ in range(draw(st.integers(0, epochs + 2))):  # more epochs: retries beyond the plan
        active = draw(st.integers(0, active)) if active else 0
        fractions = draw(st.lists(st.floats(-0.5, 1.5), max_size=4))
        trained.append((active, fractions))
    return Script(models, epochs, trained)


@settings(max_examples=150, deadline=None)
@given(first=scripts(), second=scripts(), order=st.randoms(use_true_random=False))
def test_steps_move_the_bar_and_every_epoch_lands_on_todays_count(first, second, order):
    blocks = {0: first, 10: second}
    total = sum(s.models * s.epochs for s in blocks.values())
    bar = progress.ModelEpochBar(total + 3, initial=3, bar_factory=CountingBar)
    today = progress.ModelEpochBar(total + 3, initial=3, bar_factory=CountingBar)
    for key, script in blocks.items():
        for each in (bar, today):
            each.plan(key, script.models * script.epochs, script.models)
    # the two blocks' reports interleave as two workers' would
    queues = {key: _reports(script) for key, script in blocks.items()}
    while any(queues.values()):
        key = order.choice([k for k, q in queues.items() if q])
        kind, models, value = queues[key].pop(0)
        if kind == "within":
            last = bar._last[key]
            bar.within(key, models, value)
            part = bar._within[key]
            share = models if last is None else min(models, last)
            assert 0 <= part <= share * max(0.0, min(value, 1.0))  # never more than its share
            assert part * 1024 == int(part * 1024)
        else:
            bar.advance(key, models, None)
            today.advance(key, models, None)
            assert key not in bar._within
            # the count is today's, but for the other block's epoch in progress
            others = sum(bar._within.values())
            assert bar._bar.n - others == today._bar.n
            assert bar._bar.total == today._bar.total
        assert bar._bar.n <= bar._bar.total
    for key in blocks:
        bar.finish(key)
        today.finish(key)
    assert bar._bar.n == today._bar.n and bar._bar.total == today._bar.total
    assert isinstance(bar._bar.n, int) or bar._bar.n.is_integer()


def _reports(script: Script) -> list[tuple[str, int, float]]:
    out = []
    for models, fractions in script.trained:
        out += [("within", models, f) for f in fractions]
        out.append(("epoch", models, 0.0))
    return out


def test_a_restarted_block_takes_back_its_epoch_in_progress():
    bar = progress.ModelEpochBar(12, bar_factory=CountingBar)
    bar.plan(0, 12, models=4)
    bar.advance(0, 4, None)
    bar.within(0, 4, 0.5)
    assert bar._bar.n == 6
    bar.restart(0)
    assert bar._bar.n == 0
    bar.within(0, 4, 0.25)
    bar.finish(0)  # nothing reported but a part: the block counts in full
    assert bar._bar.n == bar._bar.total == 12


class RecordingBar(CountingBar):
    """The runner's bar, keeping the count after every report."""

    made: list[RecordingBar] = []

    def __init__(self, total, initial=0, **kwargs):
        super().__init__(total, initial, **kwargs)
        self.after: list[tuple[str, int, float]] = []
        RecordingBar.made.append(self)


@pytest.fixture
def recorded(monkeypatch):
    """Run the linear family; every report reaching the bar, with the count after it."""
    RecordingBar.made.clear()
    monkeypatch.setattr(progress, "tqdm", RecordingBar)
    monkeypatch.setattr(runner, "family_for", lambda spec: LinearFamily())
    reports: list[tuple[str, int, int, float]] = []
    advance, within = progress.ModelEpochBar.advance, progress.ModelEpochBar.within

    def advanced(self, block, models, passed):
        advance(self, block, models, passed)
        reports.append(("epoch", block, models, self._bar.n))

    def within_epoch(self, block, models, fraction):
        within(self, block, models, fraction)
        reports.append(("within", block, models, self._bar.n))

    monkeypatch.setattr(progress.ModelEpochBar, "advance", advanced)
    monkeypatch.setattr(progress.ModelEpochBar, "within", within_epoch)
    return reports


def expected_epochs(spec) -> dict[int, list[int]]:
    """Per block (its first model): the models that train in each of its epochs."""
    out = {}
    for block in runner.plan_blocks(LinearFamily().plan(spec), spec):
        models = len(block.plans)
        staying = sum(1 for p in block.plans if p.model_id % 3)
        out[block.first] = [models] + ([staying] * (spec.num_epochs - 1) if staying else [])
    return out


def epoch_reports(recorded) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for kind, block, models, _ in recorded:
        if kind == "epoch":
            out.setdefault(block, []).append(models)
    return out


def assert_todays_counts(recorded, start: int = 0) -> None:
    """After every epoch's report, the count is the whole model-epochs reported so far."""
    count = start
    for kind, _, models, shown in recorded:
        if kind == "epoch":
            count += models
            assert shown == count


@pytest.mark.parametrize("workers", [1, 2])
def test_the_runners_bar_moves_within_epochs_from_any_process(
    tmp_path, recorded, monkeypatch, workers
):
    spec = linear_spec()
    quiet = tmp_path / "quiet"
    generate(spec, quiet, progress=False)  # the default throttle: these epochs are too short
    assert all(kind == "epoch" for kind, *_ in recorded)
    recorded.clear()
    monkeypatch.setattr(progress, "REPORT_INTERVAL_S", 0.0)  # forked workers inherit it
    out = tmp_path / "zoo"
    generate(spec, out, workers=workers, progress=False)
    assert shard_hashes(out) == shard_hashes(quiet)  # reporting changes no byte
    expected = expected_epochs(spec)
    assert epoch_reports(recorded) == expected
    for block in expected:
        mine = [r for r in recorded if r[1] == block]
        assert mine[0][0] == "within"  # each block moved the bar before its first epoch ended
    trained = sum(map(sum, expected.values()))
    bar = RecordingBar.made[-1]
    assert bar.n == bar.total == trained
    assert bar.highest <= spec.num_models * spec.num_epochs
    if workers == 1:  # one block at a time: after each epoch, the count is today's integer
        assert_todays_counts(recorded)


def test_a_resumed_block_counts_each_epoch_once(tmp_path, recorded, monkeypatch):
    spec = linear_spec()
    whole = tmp_path / "whole"
    generate(spec, whole, progress=False, resume_interval=None)
    recorded.clear()
    monkeypatch.setattr(progress, "REPORT_INTERVAL_S", 0.0)
    out = tmp_path / "zoo"
    saves = [0]

    def interrupt(kind, call):
        saves[0] += 1
        if saves[0] == 2:  # the first block (the largest), after its second epoch
            raise KeyboardInterrupt

    monkeypatch.setattr(resume, "fault_hook", interrupt)
    with pytest.raises(KeyboardInterrupt):
        generate(spec, out, progress=False, resume_interval=0)
    monkeypatch.setattr(resume, "fault_hook", None)
    assert [kind for kind, block, *_ in recorded if block == 0].count("within") == 2 * STEPS
    recorded.clear()
    generate(spec, out, progress=False, resume_interval=0)
    assert shard_hashes(out) == shard_hashes(whole)
    expected = expected_epochs(spec)
    assert epoch_reports(recorded) == expected  # the replayed epochs count once
    first = [kind for kind, block, *_ in recorded if block == 0]
    # two epochs replayed, then the third trained step by step
    assert first == ["epoch", "epoch", *["within"] * STEPS, "epoch"]
    bar = RecordingBar.made[-1]
    assert bar.n == bar.total == sum(map(sum, expected.values()))
    assert_todays_counts(recorded)


class BoardBar:
    """Keeps the calls the Ray driver makes on the bar."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def restart(self, key):
        self.calls.append(("restart", key))

    def advance(self, key, models, passed):
        self.calls.append(("advance", key, models, passed))

    def within(self, key, models, fraction):
        self.calls.append(("within", key, models, fraction))


def test_the_ray_driver_shows_parts_of_epochs_and_takes_them_back_on_a_retry():
    board = ray_engine._ProgressBoard()
    board.report(7, ray_engine._RESTART, None)
    board.report(7, 4, None, 0.25)
    board.report(7, 4, 1)
    bar = BoardBar()
    ray_engine._apply(bar, board.take())
    assert bar.calls == [("restart", 7), ("within", 7, 4, 0.25), ("advance", 7, 4, 1)]
    assert board.take() == []


def test_a_family_with_its_own_loop_reports_no_steps(tmp_path, recorded, monkeypatch):
    monkeypatch.setattr(runner, "family_for", lambda spec: toy_family.ToyFamily())
    monkeypatch.setattr(progress, "REPORT_INTERVAL_S", 0.0)
    generate(linear_spec(), tmp_path / "zoo", progress=False)
    assert recorded and all(kind == "epoch" for kind, *_ in recorded)
    bar = RecordingBar.made[-1]
    assert bar.n == bar.total == sum(models for _, _, models, _ in recorded)


def test_reports_drained_after_a_block_is_written_count_nothing():
    bar = progress.ModelEpochBar(10, bar_factory=CountingBar)
    bar.plan(0, 10, 10)
    bar.within(0, 10, 0.5)
    bar.finish(0)  # the shard landed before its reports were drained
    bar.advance(0, 10, None)
    bar.within(0, 10, 0.5)
    assert bar._bar.n == 10 and bar._bar.total == 10
