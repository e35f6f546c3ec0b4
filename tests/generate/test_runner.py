"""The generator runner: splits, shards, determinism, resume after interruption."""

from __future__ import annotations

import concurrent.futures
from collections import Counter

import numpy as np
import psutil
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import toy_family
from weightzoo.errors import DeviceError, InvalidOptionError, SpecMismatchError
from weightzoo.features import layer_statistics
from weightzoo.generate import progress, runner, workers
from weightzoo.generate.base import BlockRun
from weightzoo.generate.runner import RunOptions, assign_splits, generate, plan_blocks
from weightzoo.storage import Manifest, ZooReader
from weightzoo.storage.writer import ZooWriter


def shard_hashes(path):
    return {s.file: s.sha256 for s in Manifest.load(path).shards}


def test_splits_are_70_15_15_by_model_and_stratified(toy_spec):
    spec = toy_spec.replace(num_models=60)
    plans = toy_family.ToyFamily().plan(spec)
    splits = assign_splits(plans, spec)
    assert Counter(splits.values()) == {"train": 42, "val": 9, "test": 9}
    for split in ("train", "val", "test"):
        strata = Counter(p.stratum for p in plans if splits[p.model_id] == split)
        assert len(strata) == 3 and max(strata.values()) - min(strata.values()) <= 1
    assert assign_splits(plans, spec) == splits
    assert assign_splits(plans, spec.replace(split_seed=1)) != splits


def test_small_zoos_still_fill_every_split(toy_spec):
    spec = toy_spec.replace(num_models=7)
    splits = assign_splits(toy_family.ToyFamily().plan(spec), spec)
    assert set(splits.values()) == {"train", "val", "test"}


def test_blocks_follow_split_then_model_order(toy_spec):
    blocks = plan_blocks(toy_family.ToyFamily().plan(toy_spec), toy_spec)
    positions = [b.first for b in blocks]
    assert positions == sorted(positions) and all(len(b.plans) <= 3 for b in blocks)
    order = ["train", "val", "test"]
    assert [order.index(b.split) for b in blocks] == sorted(order.index(b.split) for b in blocks)


def test_generated_zoo_stores_what_the_family_produced(toy_zoo, toy_spec):
    manifest = Manifest.load(toy_zoo)
    assert manifest.complete and manifest.num_models == 12
    assert manifest.split_counts == {"train": 8, "val": 2, "test": 2}
    reader = ZooReader(toy_zoo, split="all")
    family = toy_family.ToyFamily()
    plans = {p.model_id: p for p in family.plan(toy_spec)}
    for local, model_id in enumerate(reader.column("model_id")):
        record = family.train(toy_spec, [plans[int(model_id)]], BlockRun(progress=False))[0]
        stored = reader.read("weights", [local] * 4, np.arange(4))
        np.testing.assert_array_equal(stored, record.weights)
        np.testing.assert_allclose(
            reader.metrics["train_loss"][local], record.metrics["train_loss"]
        )
        assert reader.column("seed")[local] == 1000 + model_id
        assert reader.column("kind")[local] == f"class{model_id % 3}"
    stats = reader.read("stats", [0], [3])
    expected = layer_statistics(reader.read("weights", [0], [3]), manifest.layout)
    np.testing.assert_allclose(stats, expected.numpy(), rtol=1e-6)


def test_same_spec_gives_the_same_zoo(tmp_path, toy_spec, toy_zoo):
    generate(toy_spec, tmp_path / "again", progress=False)
    assert shard_hashes(tmp_path / "again") == shard_hashes(toy_zoo)


def test_interrupted_run_resumes_without_loss_or_duplicates(
    tmp_path, toy_spec, toy_zoo, monkeypatch
):
    out = tmp_path / "interrupted"
    original = toy_family.ToyFamily.train
    calls = {"n": 0}

    def crash_on_third(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C half way
        return original(self, *args, **kwargs)

    monkeypatch.setattr(toy_family.ToyFamily, "train", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        generate(toy_spec, out, progress=False)
    assert len(Manifest.load(out).shards) == 2
    monkeypatch.setattr(toy_family.ToyFamily, "train", original)
    toy_family.CALLS.clear()
    generate(toy_spec, out, progress=False)
    assert sum(toy_family.CALLS) == 12 - 6  # only the missing blocks were trained
    assert shard_hashes(out) == shard_hashes(toy_zoo)


def test_other_spec_in_same_directory_is_refused(toy_zoo, toy_spec):
    with pytest.raises(SpecMismatchError, match="num_epochs"):
        generate(toy_spec.replace(num_epochs=5), toy_zoo, progress=False)


def test_epoch_groups_make_separate_shards(tmp_path, toy_spec):
    spec = toy_spec.replace(epochs_per_shard=2)
    out = tmp_path / "grouped"
    manifest = generate(spec, out, progress=False)
    assert {s.epochs for s in manifest.shards} == {(0, 1), (2, 3)}
    assert len(manifest.shards_for("test", [3])) == 1
    whole = ZooReader(out, split="all")
    assert whole.complete.all()
    np.testing.assert_array_equal(
        whole.read("weights", [0, 0], [0, 3]),
        np.stack(
            [
                ZooReader(out, epochs=[0]).read("weights", [0], [0])[0],
                ZooReader(out, epochs=[3]).read("weights", [0], [0])[0],
            ]
        ),
    )


def test_parallel_workers_write_the_same_zoo(tmp_path, toy_spec, toy_zoo):
    generate(toy_spec, tmp_path / "parallel", workers=2, progress=False)
    assert shard_hashes(tmp_path / "parallel") == shard_hashes(toy_zoo)


def test_accelerator_workers_are_spawned_not_forked():
    # A forked child cannot use CUDA once the parent has; CPU keeps the fast default.
    assert workers.start_method("cuda") == "spawn"
    assert workers.start_method("cuda:1") == "spawn"
    assert workers.start_method("cpu") is None


def test_spawned_workers_write_the_same_zoo(tmp_path, toy_spec, toy_zoo, monkeypatch):
    # What accelerator runs use, checked on the CPU: the family, spec and pipes reach fresh
    # interpreters and the blocks come back byte for byte.
    monkeypatch.setattr(workers, "start_method", lambda device: "spawn")
    generate(toy_spec, tmp_path / "spawned", workers=2, progress=True)
    assert shard_hashes(tmp_path / "spawned") == shard_hashes(toy_zoo)


def test_automatic_workers_write_the_same_zoo(tmp_path, toy_spec, toy_zoo, monkeypatch):
    monkeypatch.setattr(runner, "usable_cpus", lambda: 3)  # as on a 3-core machine
    generate(toy_spec, tmp_path / "auto", workers=None, progress=False)
    assert shard_hashes(tmp_path / "auto") == shard_hashes(toy_zoo)


@pytest.fixture
def no_leftover_processes():
    """Fail a test that leaves a process of its own behind.

    Processes that were there before (such as multiprocessing's resource tracker, started by
    an earlier test that used spawn) are not this test's.
    """
    before = set(psutil.Process().children(recursive=True))
    yield
    new = [p for p in psutil.Process().children(recursive=True) if p not in before]
    _, alive = psutil.wait_procs(new, timeout=30)
    assert not alive, f"left behind: {[(p, p.cmdline()) for p in alive]}"


@pytest.fixture
def two_threads():
    """The main process with 2 torch threads, as a 2-core machine gives it."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_same_bytes_whatever_the_workers_and_for_a_rebuilt_shard(
    tmp_path, toy_spec, two_threads, no_leftover_processes
):
    one = tmp_path / "one"
    generate(toy_spec, one, workers=1, progress=False)
    assert torch.get_num_threads() == 2  # restored after each block
    two = tmp_path / "two"
    generate(toy_spec, two, workers=2, progress=False)
    assert shard_hashes(two) == shard_hashes(one)
    lost = Manifest.load(two).shards[0].file
    (two / lost).unlink()
    generate(toy_spec, two, workers=None, progress=False)  # one block left: trained here
    assert shard_hashes(two) == shard_hashes(one)
    threads = ZooReader(two, split="all").column("torch_threads")
    assert set(np.asarray(threads).tolist()) == {workers.BLOCK_THREADS}


class RecordingBar:
    """Stands in for tqdm: keeps what the bar was told."""

    made: list[RecordingBar] = []

    def __init__(self, total, initial=0, **kwargs):
        self.total, self.n, self.postfix = total, initial, {}
        RecordingBar.made.append(self)

    def update(self, n):
        self.n += n

    def refresh(self):
        pass

    def set_postfix(self, refresh=True, **values):
        self.postfix.update(values)

    def close(self):
        pass


@pytest.fixture
def recorded(monkeypatch):
    """The bars made and every (block, models, passed) report, as the parent received them."""
    RecordingBar.made.clear()
    monkeypatch.setattr(progress, "tqdm", RecordingBar)
    reports = []
    original = progress.ModelEpochBar.advance

    def advance(self, block, models, passed):
        reports.append((block, models, passed))
        original(self, block, models, passed)

    monkeypatch.setattr(progress.ModelEpochBar, "advance", advance)
    return RecordingBar.made, reports


def expected_reports(path, spec):
    """What the toy family reports per block: active models per epoch, passed so far."""
    reader = ZooReader(path, split="all")
    out = {}
    for entry in Manifest.load(path).shards:
        rows = range(entry.models[0], entry.models[1])
        at = [int(reader.column("passed_at")[r]) for r in rows]
        out[entry.models[0]] = [
            (
                entry.models[0],
                sum(1 for a in at if a < 0 or a >= epoch),
                sum(1 for a in at if 0 < a <= epoch),
            )
            for epoch in range(1, spec.num_epochs + 1)
        ]
    return out


@pytest.mark.parametrize("count", [1, 2])
def test_progress_counts_model_epochs_as_they_happen(
    tmp_path, toy_spec, recorded, count, no_leftover_processes
):
    bars, reports = recorded
    out = tmp_path / "zoo"
    generate(toy_spec, out, workers=count, progress=True)
    expected = expected_reports(out, toy_spec)
    by_block = {}
    for report in reports:
        by_block.setdefault(report[0], []).append(report)
    assert by_block == expected  # every epoch of every block, in order, from every process
    (bar,) = bars
    # the total follows what was trained: models that passed left it with their epochs
    trained = sum(models for block in expected.values() for _, models, _ in block)
    assert bar.total == bar.n == trained < 12 * toy_spec.num_epochs
    passed = int(np.sum(ZooReader(out, split="all").column("passed")))
    assert 0 < passed < 12 and bar.postfix == {"passed": passed}


def test_families_that_never_report_an_epoch_still_fill_the_bar(
    tmp_path, toy_spec, recorded, monkeypatch, no_leftover_processes
):
    bars, reports = recorded
    monkeypatch.setattr(runner, "family_for", lambda spec: toy_family.QuietToyFamily())
    generate(toy_spec, tmp_path / "zoo", workers=2, progress=True)
    assert reports == []
    assert bars[0].n == bars[0].total == 12 * toy_spec.num_epochs


def test_the_bars_total_follows_what_is_left_and_what_is_retried():
    bar = progress.ModelEpochBar(2 + 40 + 40, initial=2, bar_factory=RecordingBar)
    bar.plan(0, 40, models=4)  # 4 models of 10 epochs
    bar.plan(4, 40, models=4)
    bar.advance(0, 4, 0)
    bar.advance(0, 4, 1)
    bar.advance(0, 3, 1)  # one model stopped after epoch 2: its 8 epochs leave the total
    assert (bar._bar.n, bar._bar.total) == (2 + 11, 82 - 8)
    bar.advance(0, 1, 3)  # two more stopped after epoch 3: 2 x 7 epochs leave
    assert bar._bar.total == 82 - 8 - 14 and bar.passed == 3
    bar.finish(0)  # the last stopped after epoch 4: the rest of its budget leaves
    assert bar._bar.total == 2 + 12 + 40 and bar._bar.n == 2 + 12
    for _ in range(12):  # block 4 trains 12 epochs of 4 models: retries, 8 more than planned
        bar.callback(4)(4, None)
    bar.finish(4)
    assert bar._bar.n == bar._bar.total == 2 + 12 + 48


def test_a_block_that_reports_nothing_counts_in_full_when_written():
    bar = progress.ModelEpochBar(10, initial=2, bar_factory=RecordingBar)
    bar.plan(5, 8, models=2)
    bar.finish(5)
    assert bar._bar.n == bar._bar.total == 10


def test_a_failing_write_is_not_retried_but_finished_blocks_are_kept(
    tmp_path, toy_spec, monkeypatch, no_leftover_processes
):
    original = ZooWriter.write_shard
    files = []

    def fail_first_write(self, file, **kwargs):
        files.append(file)
        if len(files) == 1:
            raise OSError(28, "No space left on device")
        return original(self, file, **kwargs)

    monkeypatch.setattr(ZooWriter, "write_shard", fail_first_write)
    with pytest.raises(OSError, match="No space left"):
        generate(toy_spec, tmp_path / "zoo", workers=2, progress=False)
    written = [s.file for s in Manifest.load(tmp_path / "zoo").shards]
    assert files.count(files[0]) == 1 and files[0] not in written
    assert sorted(written) == sorted(files[1:])


def test_an_interrupted_parent_stops_workers_and_keeps_finished_blocks(
    tmp_path, toy_spec, toy_zoo, monkeypatch, no_leftover_processes
):
    blocks = sorted(
        plan_blocks(toy_family.ToyFamily().plan(toy_spec), toy_spec),
        key=lambda b: len(b.plans),
        reverse=True,
    )
    hung = blocks[0]  # submitted first: one worker hangs in it until stopped
    monkeypatch.setenv("TOY_HANG_MODEL", str(hung.plans[0].model_id))
    futures = []
    submit = workers.BlockPool.submit

    def record(self, *args):
        futures.append(submit(self, *args))
        return futures[-1]

    monkeypatch.setattr(workers.BlockPool, "submit", record)
    original = ZooWriter.write_shard
    calls = {"n": 0}

    def interrupt_first_write(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            # The other worker finishes every other block while this one is being written.
            concurrent.futures.wait(futures[1:])
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ZooWriter, "write_shard", interrupt_first_write)
    out = tmp_path / "zoo"
    with pytest.raises(KeyboardInterrupt):
        generate(toy_spec, out, workers=2, progress=False)
    # The block being written when Ctrl-C came is written again, the three that finished
    # meanwhile are kept, the hung one was stopped.
    assert len(Manifest.load(out).shards) == 4
    assert hung.first not in {s.models[0] for s in Manifest.load(out).shards}
    assert futures[0].exception() is not None
    monkeypatch.delenv("TOY_HANG_MODEL")
    monkeypatch.setattr(ZooWriter, "write_shard", original)
    generate(toy_spec, out, progress=False)
    assert shard_hashes(out) == shard_hashes(toy_zoo)


def test_a_device_torch_cannot_use_is_refused_before_anything_is_written(tmp_path, toy_spec):
    with pytest.raises(DeviceError, match="choose one of: cpu"):
        generate(toy_spec, tmp_path / "zoo", device="nosuchdev", progress=False)
    assert not (tmp_path / "zoo").exists()


def test_a_failed_run_frees_the_zoo_at_once(tmp_path, toy_spec, monkeypatch):
    out = tmp_path / "zoo"
    original = toy_family.ToyFamily.train

    def crash(self, *args, **kwargs):
        raise RuntimeError("training failed")

    monkeypatch.setattr(toy_family.ToyFamily, "train", crash)
    try:
        generate(toy_spec, out, progress=False)
    except RuntimeError:
        # The traceback still holds the runner's frames; the writer's lock must be gone anyway,
        # so that a caller can retry (or open a writer) right here.
        monkeypatch.setattr(toy_family.ToyFamily, "train", original)
        generate(toy_spec, out, progress=False)
    assert Manifest.load(out).finished


# ------------------------------------------------------------------- the run's options
def test_run_options_are_checked_once_before_anything_is_written(tmp_path, grouped_spec):
    with pytest.raises(InvalidOptionError, match="--engine 'nope': choose one of local, ray"):
        RunOptions(engine="nope")
    with pytest.raises(DeviceError, match="choose one of: cpu"):
        RunOptions(device="nosuchdev")
    # a grouped zoo is checked before its top manifest, as a zoo is before its own
    with pytest.raises(InvalidOptionError, match="resume_interval -1"):
        generate(grouped_spec, tmp_path / "zoo", progress=False, resume_interval=-1)
    assert not (tmp_path / "zoo").exists()


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True)))
def test_run_options_take_seconds_between_saves_of_zero_or_more(interval):
    seconds = interval is None or (not isinstance(interval, bool) and interval >= 0)
    if seconds:
        assert RunOptions(resume_interval=interval).resume_interval == interval
    else:
        with pytest.raises(InvalidOptionError, match="0 or more"):
            RunOptions(resume_interval=interval)


def test_every_family_is_given_its_zoo_directory_even_in_workers(
    tmp_path, toy_spec, monkeypatch, no_leftover_processes
):
    monkeypatch.setattr(runner, "family_for", lambda spec: toy_family.RootedToyFamily())
    out = tmp_path / "plain-zoo"
    generate(toy_spec, out, workers=2, progress=False)
    assert set(ZooReader(out, split="all").column("root_name").tolist()) == {"plain-zoo"}
