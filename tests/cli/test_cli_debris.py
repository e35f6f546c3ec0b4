"""A failed `weightzoo generate` leaves nothing behind unless it stored work to resume from."""

from __future__ import annotations

import pytest

from helpers import toy_family
from weightzoo.cli import run
from weightzoo.errors import DataFilesMissingError
from weightzoo.zoo import Zoo


@pytest.fixture
def failing_block(monkeypatch):
    """Make the toy family's training fail for blocks whose first model is ``>= at``."""

    def arm(at: int, error: type[BaseException] = DataFilesMissingError) -> None:
        original = toy_family.ToyFamily.train

        def train(self, spec, plans, **kwargs):
            if plans[0].model_id >= at:
                raise error("the block failed")
            return original(self, spec, plans, **kwargs)

        monkeypatch.setattr(toy_family.ToyFamily, "train", train)

    return arm


def _generate(out, *extra: str) -> int:
    # one worker: the failure is raised in this process, where the patch is
    return run(["generate", "toy", "--out", str(out), "--models", "6", "--workers", "1", *extra])


def test_a_run_that_fails_before_its_first_shard_removes_its_new_directory(
    tmp_path, failing_block, capsys
):
    failing_block(at=0)
    out = tmp_path / "zoo"
    assert _generate(out) == 1
    assert "the block failed" in capsys.readouterr().err
    assert not out.exists()


def test_an_empty_directory_given_as_out_stays_and_stays_empty(tmp_path, failing_block):
    failing_block(at=0)
    out = tmp_path / "zoo"
    out.mkdir()
    assert _generate(out) == 1
    assert out.is_dir() and list(out.iterdir()) == []


def test_a_crash_before_the_first_shard_cleans_up_too(tmp_path, failing_block):
    failing_block(at=0, error=RuntimeError)
    out = tmp_path / "zoo"
    with pytest.raises(RuntimeError, match="the block failed"):
        _generate(out)
    assert not out.exists()


def test_an_interrupted_first_block_leaves_no_manifest_either(tmp_path, failing_block):
    failing_block(at=0, error=KeyboardInterrupt)
    out = tmp_path / "zoo"
    assert _generate(out) != 0
    assert not out.exists()


def test_a_run_that_stored_a_shard_keeps_it_and_resumes(tmp_path, failing_block, monkeypatch):
    failing_block(at=3)
    out = tmp_path / "zoo"
    assert _generate(out) == 1
    shards = sorted(p.name for p in (out / "shards").iterdir())
    assert shards, "the first block's shard must be kept"
    monkeypatch.undo()
    assert _generate(out) == 0
    assert Zoo(out).manifest.num_models == 6


def test_a_directory_that_held_a_zoo_is_never_cleared(tmp_path, failing_block):
    out = tmp_path / "zoo"
    assert _generate(out, "--train-epochs", "2") == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    failing_block(at=0)
    # another spec in the same folder is refused; the zoo there is untouched
    assert _generate(out, "--train-epochs", "3") == 1
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_a_grouped_run_that_fails_first_leaves_no_group_manifests(tmp_path, failing_block):
    failing_block(at=0)
    out = tmp_path / "grouped"
    assert run(["generate", "toy-grouped", "--out", str(out), "--workers", "1"]) == 1
    assert not out.exists()


def test_a_file_someone_else_put_there_is_never_removed(tmp_path, monkeypatch):
    from weightzoo.generate import runner

    real = runner.generate
    out = tmp_path / "zoo"

    def generate_after_a_note(spec, where, **kwargs):
        where.mkdir()
        (where / "notes.txt").write_text("mine")  # appears after the emptiness check
        return real(spec, where, **kwargs)

    monkeypatch.setattr(runner, "generate", generate_after_a_note)
    assert _generate(out) == 1  # the writer refuses a folder holding a foreign file
    assert (out / "notes.txt").read_text() == "mine"


def test_a_lock_file_removed_while_it_is_taken_is_refused(tmp_path, monkeypatch):
    import fcntl

    from weightzoo.errors import ZooLockedError
    from weightzoo.storage import writer

    real_flock = fcntl.flock

    def flock_after_a_cleanup(fd, operation):
        (tmp_path / writer.LOCK_NAME).unlink()  # a failed run removed it after our open
        return real_flock(fd, operation)

    monkeypatch.setattr(writer.fcntl, "flock", flock_after_a_cleanup)
    with pytest.raises(ZooLockedError, match="was removed while this writer took it"):
        writer.ZooLock(tmp_path)
