"""A block cut short (Ctrl-C, SIGKILL) goes on from its last saved epoch, to the same bytes.

Every run here saves at every epoch boundary (``resume_interval=0``). An interruption comes
from the resume module's fault hook, right after a chosen save: a ``KeyboardInterrupt`` in
this process, or a ``SIGKILL`` of a child process running ``generate`` (with its workers).
The resumed zoo's shards must hash as an uninterrupted run's, and the work must add up: the
optimizer steps of the cut run and of the resumed one together are those of one whole run.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from helpers.golden_specs import GOLDEN, HASHES, shard_hashes
from weightzoo.errors import InvalidOptionError, UnsafePathError
from weightzoo.families.mlds import train as mlds_train
from weightzoo.generate import population as toolkit
from weightzoo.generate import resume
from weightzoo.generate.runner import generate
from weightzoo.generate.specs import get_spec
from weightzoo.storage.writer import refuse_foreign_files


def mlds_spec():
    """Two MLDS blocks per split, each two ``train()`` calls: no network passes, so every one
    gets a second round of attempts (two side by side)."""
    return dataclasses.replace(
        get_spec("mlds-ds1"),
        machines=("ParityMachine", "SimpleXORMachine"),
        per_class=2,
        seq_len=16,
        train_size=32,
        val_size=16,
        eval_size=8,
        batch_size=8,
        max_epochs=3,
        threshold=1e-9,
        attempts=3,
        parallel_attempts=2,
        shard_models=2,
    )


def trajectory_spec():
    """A digits MLP trajectory zoo: a checkpoint per epoch, two models per block."""
    return dataclasses.replace(
        get_spec("trajectory-digits-mlp").override(models=4, epochs=3), shard_models=2
    )


SPECS: dict[str, Callable] = {"mlds": mlds_spec, "trajectory": trajectory_spec}


@contextmanager
def hooked(hook):
    """Run with ``hook`` as the resume module's fault hook (called after every save)."""
    previous, resume.fault_hook = resume.fault_hook, hook
    try:
        yield
    finally:
        resume.fault_hook = previous


@contextmanager
def counting_steps():
    """Count the optimizer steps of every population trained meanwhile."""
    count = [0]
    step = toolkit.PopulationOptimizer.step
    refilled_step = mlds_train.RefilledPopulation._adam_step

    def counted(self, params):
        count[0] += 1
        return step(self, params)

    def counted_refilled(self, lr):
        count[0] += 1
        return refilled_step(self, lr)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(toolkit.PopulationOptimizer, "step", counted)
        patch.setattr(mlds_train.RefilledPopulation, "_adam_step", counted_refilled)
        yield count


def interrupt_after(save: int):
    """A fault hook raising KeyboardInterrupt right after save number ``save`` (from 0)."""
    seen = [0]

    def hook(_kind: str, _call: int) -> None:
        seen[0] += 1
        if seen[0] == save + 1:
            raise KeyboardInterrupt

    return hook


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """Per spec: the shard hashes and optimizer steps of a run that saves nothing, and the
    saves (kind, call) a run saving at every epoch makes, with its hashes."""
    out = {}
    for name, make in SPECS.items():
        root = tmp_path_factory.mktemp(name)
        with counting_steps() as steps:
            generate(make(), root / "plain", progress=False, resume_interval=None)
        saves: list[tuple[str, int]] = []
        with hooked(lambda kind, call, saves=saves: saves.append((kind, call))):
            generate(make(), root / "saving", progress=False, resume_interval=0)
        out[name] = {
            "hashes": shard_hashes(root / "plain"),
            "steps": steps[0],
            "saves": saves,
            "saving": shard_hashes(root / "saving"),
            "left": (root / "saving" / resume.RESUME_DIR).exists(),
        }
    return out


def test_saving_at_every_epoch_changes_no_byte(baseline):
    for name, run in baseline.items():
        assert run["saving"] == run["hashes"], name
        assert not run["left"], f"{name}: the state folder outlived the zoo"
    # the MLDS spec trains each block as one refilled population: it saves at every epoch
    assert baseline["mlds"]["saves"].count(("epoch", 0)) >= 3
    assert ("call", 0) in baseline["mlds"]["saves"]


@pytest.mark.parametrize("name", ["property-synthetic", "trajectory-digits-mlp"])
def test_saving_leaves_the_golden_shards_as_recorded(name, tmp_path):
    import json

    recorded = json.loads(HASHES.read_text())[name]
    generate(get_spec(name).override(**GOLDEN[name]), tmp_path / name, progress=False,
             resume_interval=0)  # fmt: skip
    assert shard_hashes(tmp_path / name) == recorded


# (spec, save to interrupt after): the first epoch of the first block; MLDS: the end of the
# first round, an epoch inside the second round, the second block's second round; trajectory:
# a later epoch of the second block.
CUTS = [("mlds", 0), ("mlds", 2), ("mlds", 3), ("mlds", 9), ("trajectory", 0), ("trajectory", 3)]


@pytest.mark.parametrize(("name", "save"), CUTS)
def test_a_block_interrupted_after_a_save_resumes_to_the_same_bytes(baseline, tmp_path, name, save):
    run = baseline[name]
    kind, call = run["saves"][save]
    out = tmp_path / "zoo"
    with counting_steps() as before, hooked(interrupt_after(save)):
        with pytest.raises(KeyboardInterrupt):
            generate(SPECS[name](), out, progress=False, resume_interval=0)
    states = sorted(p.name for p in (out / resume.RESUME_DIR).iterdir())
    assert len(states) == 1, states
    with counting_steps() as after:
        generate(SPECS[name](), out, progress=False, resume_interval=0)
    assert shard_hashes(out) == run["hashes"]
    # nothing trained twice, nothing skipped: the cut came right after a save
    assert before[0] + after[0] == run["steps"], (kind, call)
    assert not (out / resume.RESUME_DIR).exists()


def _generate_then_die(spec, out: Path, save: int, workers: int) -> None:
    """In a child process: generate, and SIGKILL this process right after save ``save``
    of any block (the hook runs in the worker that saved; the workers die with us)."""
    me = os.getpid()
    seen = [0]

    def hook(_kind: str, _call: int) -> None:
        seen[0] += 1
        if seen[0] == save + 1:
            os.kill(me, signal.SIGKILL)

    resume.fault_hook = hook
    torch.set_num_threads(1)
    generate(spec, out, progress=False, resume_interval=0, workers=workers)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_generate_resumes_to_the_same_bytes(baseline, tmp_path, workers):
    out = tmp_path / "zoo"
    spec = trajectory_spec()
    child = multiprocessing.get_context("fork").Process(
        target=_generate_then_die, args=(spec, out, 1, workers)
    )
    child.start()
    child.join(timeout=120)
    assert child.exitcode == -signal.SIGKILL
    assert any((out / resume.RESUME_DIR).iterdir())  # a state to resume from
    generate(spec, out, progress=False, resume_interval=0, workers=workers)
    assert shard_hashes(out) == baseline["trajectory"]["hashes"]
    assert not (out / resume.RESUME_DIR).exists()


def _cut(name: str, out: Path, save: int) -> Path:
    """Interrupt ``name``'s spec after ``save`` into ``out``; its one state file."""
    with hooked(interrupt_after(save)), pytest.raises(KeyboardInterrupt):
        generate(SPECS[name](), out, progress=False, resume_interval=0)
    (state,) = (out / resume.RESUME_DIR).iterdir()
    return state


class _Payload:
    """Would create ``marker`` if unpickled: a state file is never unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_state_of_another_spec_or_block_or_unreadable_is_ignored_and_deleted(baseline, tmp_path):
    # another spec: the trajectory block's state in the place of the MLDS block's
    foreign = _cut("trajectory", tmp_path / "trajectory", 0)
    mlds = tmp_path / "mlds"
    own = _cut("mlds", mlds, 0)
    own.write_bytes(foreign.read_bytes())
    with pytest.warns(RuntimeWarning, match=r"ignored and deleted .*fingerprint"):
        generate(mlds_spec(), mlds, progress=False, resume_interval=0)
    assert shard_hashes(mlds) == baseline["mlds"]["hashes"]

    # another block: block 0's state under the name of a later block of the same zoo
    later = foreign.with_name("train-000002.pt")
    foreign.rename(later)
    with pytest.warns(RuntimeWarning, match=r"ignored and deleted .*train-000002.*block"):
        generate(trajectory_spec(), tmp_path / "trajectory", progress=False, resume_interval=0)
    assert shard_hashes(tmp_path / "trajectory") == baseline["trajectory"]["hashes"]

    # unreadable: garbage, and a pickle that would run code when unpickled
    marker = tmp_path / "unpickled"
    for content in (b"\x00not a state" * 7, _Payload(marker)):
        out = tmp_path / f"bad-{type(content).__name__}"
        state = _cut("trajectory", out, 0)
        if isinstance(content, bytes):
            state.write_bytes(content)
        else:
            torch.save(content, state)
        with pytest.warns(RuntimeWarning, match="cannot be read"):
            generate(trajectory_spec(), out, progress=False, resume_interval=0)
        assert shard_hashes(out) == baseline["trajectory"]["hashes"]
        assert not (out / resume.RESUME_DIR).exists()
    assert not marker.exists()


def test_a_zoo_with_a_leftover_state_folder_reads_verifies_and_resumes(baseline, tmp_path):
    from weightzoo import Zoo
    from weightzoo.cli import run
    from weightzoo.storage.verify import verify_zoo

    out = tmp_path / "zoo"
    state = _cut("trajectory", out, 0).read_bytes()
    generate(trajectory_spec(), out, progress=False, resume_interval=0)
    # a state left by a run killed between a block's shard and the state's deletion
    folder = out / resume.RESUME_DIR
    folder.mkdir()
    (folder / "train-000000.pt").write_bytes(state)
    assert verify_zoo(out) == []
    assert run(["verify", str(out)]) == 0
    assert run(["info", str(out)]) == 0
    zoo = Zoo(out)
    assert zoo.rows().shape[0] == len(zoo) == 4
    refuse_foreign_files(out)
    generate(trajectory_spec(), out, progress=False)  # complete: it only tidies up
    assert not folder.exists()
    assert shard_hashes(out) == baseline["trajectory"]["hashes"]


def test_the_state_folder_is_a_writers_own_entry_only_with_state_files(tmp_path):
    folder = tmp_path / resume.RESUME_DIR
    folder.mkdir()
    (folder / "train-000000.pt").write_bytes(b"")
    (folder / "val-000012.pt.0123456789abcdef.tmp").write_bytes(b"")
    (tmp_path / "zoo.slice-0-of-2.json").write_text("{}")  # a slice's zoo holds no zoo.json
    refuse_foreign_files(tmp_path)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(InvalidOptionError, match=r"\.resume"):
        refuse_foreign_files(tmp_path)


def test_a_state_folder_that_is_a_link_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # a new zoo: the link is not a writer's own entry
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / resume.RESUME_DIR).symlink_to(elsewhere)
    with pytest.raises(InvalidOptionError, match=r"holds \.resume"):
        generate(trajectory_spec(), fresh, progress=False, resume_interval=0)
    # a zoo being resumed: its state folder replaced by a link
    out = tmp_path / "zoo"
    state = _cut("trajectory", out, 0)
    state.unlink()
    state.parent.rmdir()
    (out / resume.RESUME_DIR).symlink_to(elsewhere)
    with pytest.raises(UnsafePathError, match=r"\.resume is not a folder"):
        generate(trajectory_spec(), out, progress=False, resume_interval=0)
    assert not any(elsewhere.iterdir())


@pytest.mark.parametrize("interval", [-1, float("nan"), "60", True])
def test_a_resume_interval_that_is_not_seconds_is_refused(tmp_path, interval):
    with pytest.raises(InvalidOptionError, match="resume_interval"):
        generate(trajectory_spec(), tmp_path / "zoo", progress=False, resume_interval=interval)
    assert not (tmp_path / "zoo").exists()


def test_push_uploads_no_state_file(baseline, tmp_path, monkeypatch):
    from helpers.hub_server import LoopbackHub, point_client_at
    from weightzoo import hub as wzhub

    out = tmp_path / "zoo"
    generate(trajectory_spec(), out, progress=False, resume_interval=0)
    (out / resume.RESUME_DIR).mkdir()
    (out / resume.RESUME_DIR / "train-000000.pt").write_bytes(b"state")
    with LoopbackHub() as hub:
        point_client_at(hub.url, monkeypatch, tmp_path / "hf_home")
        wzhub.push(out, "lab/resumed", plots=False)
        files = hub.files("lab/resumed")
    assert "zoo.json" in files and any(f.startswith("shards/") for f in files)
    assert not any(resume.RESUME_DIR in f for f in files), sorted(files)
