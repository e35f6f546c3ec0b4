"""A stopped multi-worker `generate` ends every worker at once and never hangs or runs on.

Workers are forked while the command line's SIGTERM handler (which raises an exception) is
installed: they must reset the parent's handlers before any signal acts in them, so that a
signal sent while they start neither is swallowed (the worker would ignore the stop) nor
unwinds into the parent's frames (the worker would run on as a second copy of the parent).
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import signal
import sys
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import psutil
import pytest

from helpers import toy_family
from weightzoo.cli import run
from weightzoo.errors import DataFilesMissingError
from weightzoo.generate.progress import ModelEpochBar
from weightzoo.generate.runner import generate, plan_blocks
from weightzoo.generate.workers import BlockPool

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or "fork" not in multiprocessing.get_all_start_methods(),
    reason="POSIX signals and the fork start method",
)
DEADLINE = 60.0  # seconds: a safety net against a hung run, not a way to wait


class Terminated(BaseException):
    """What the command line's SIGTERM handler raises."""


def _raise_terminated(_signum, _frame):
    raise Terminated


def children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.fixture
def patched_train(monkeypatch):
    """Wrap the toy family's training (forked workers inherit the wrapper)."""

    def arm(before) -> None:
        original = toy_family.ToyFamily.train

        def train(self, spec, plans, **kwargs):
            before(plans)
            return original(self, spec, plans, **kwargs)

        monkeypatch.setattr(toy_family.ToyFamily, "train", train)

    return arm


def test_a_block_failing_in_a_worker_ends_the_run_and_every_worker(tmp_path, patched_train, capsys):
    def fail_after_the_first_block(plans):
        if plans[0].model_id >= 3:
            raise DataFilesMissingError("the block failed")

    patched_train(fail_after_the_first_block)
    before = children()
    for attempt in range(4):  # the stop races the workers' start and their queue traffic
        out = tmp_path / f"zoo{attempt}"
        command = ["generate", "toy", "--out", str(out), "--models", "12", "--workers", "2"]
        assert run(command) == 1
        err = capsys.readouterr().err
        assert "the block failed" in err.splitlines()[-1]
        assert children() - before == set(), "a worker outlived the run"


def test_a_worker_drops_every_handler_of_its_parent(tmp_path, patched_train):
    def record(plans):
        held = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        handlers = {
            name: signal.getsignal(getattr(signal, name))
            for name in ("SIGINT", "SIGTERM", "SIGUSR1")
        }
        state = {k: int(v) if not callable(v) else "python" for k, v in handlers.items()}
        state["held"] = sorted(int(s) for s in held)
        (tmp_path / f"{os.getpid()}-{plans[0].model_id}.json").write_text(json.dumps(state))

    patched_train(record)
    spec = toy_family.ToySpec(shard_models=3)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    previous = {s: signal.signal(s, _raise_terminated) for s in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        generate(spec, tmp_path / "zoo", workers=2, progress=False)
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask  # the parent's is restored
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    states = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    workers = {p.name.split("-")[0] for p in tmp_path.glob("*.json")}
    blocks = plan_blocks(toy_family.ToyFamily().plan(spec), spec)
    assert len(states) == len(blocks) and str(os.getpid()) not in workers
    for state in states:
        assert state["SIGINT"] == signal.SIG_IGN
        assert state["SIGTERM"] == state["SIGUSR1"] == signal.SIG_DFL
        assert not {signal.SIGINT, signal.SIGTERM} & set(state["held"])


def _signalled_at_fork(folder: str) -> None:
    """As the command line: a raising SIGTERM handler; every worker is signalled as it forks."""
    me = os.getpid()
    signal.signal(signal.SIGTERM, _raise_terminated)
    # Runs in the child inside os.fork(), before any Python code of the child: the signal is
    # pending when the fork returns into multiprocessing's start code.
    os.register_at_fork(after_in_child=functools.partial(signal.raise_signal, signal.SIGTERM))
    spec = toy_family.ToySpec(shard_models=3)
    block = plan_blocks(toy_family.ToyFamily().plan(spec), spec)[0]
    bar = ModelEpochBar(len(block.plans), disable=True)
    bar.plan(block.first, len(block.plans), len(block.plans))
    outcome = "no outcome"
    try:
        with BlockPool(2, bar) as pool:
            future = pool.submit(toy_family.ToyFamily(), spec, block.plans, "cpu", block.first)
            error = future.exception(timeout=DEADLINE)
            outcome = type(error).__name__ if error is not None else "trained"
    except Terminated:
        outcome = "Terminated"
    if os.getpid() != me:  # a worker that unwound into these frames
        Path(folder, f"second-copy-{os.getpid()}").write_text(outcome)
        os._exit(0)
    Path(folder, "outcome").write_text(outcome)
    os._exit(0)


def test_a_signal_at_fork_time_kills_the_worker_and_never_runs_the_parents_code(tmp_path):
    scenario = multiprocessing.get_context("fork").Process(
        target=_signalled_at_fork, args=(str(tmp_path),)
    )
    scenario.start()
    scenario.join(DEADLINE)
    try:
        assert scenario.exitcode == 0, "the run hung or failed"
    finally:
        if scenario.exitcode is None:
            for process in psutil.Process(scenario.pid).children(recursive=True):
                process.kill()
            scenario.kill()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outcome"]  # no second copy
    # Each worker died of its SIGTERM as soon as it could act: nothing was trained.
    assert (tmp_path / "outcome").read_text() == BrokenProcessPool.__name__
