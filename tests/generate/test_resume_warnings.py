"""A block's saved training state that cannot serve warns at the training code that uses it.

Each warning is found deep inside the resume session (loading the state as the block starts,
matching a call, saving after one); every one must name the line that used the session, here
this test file, never the resume module or ``contextlib``.
"""

from __future__ import annotations

import errno
import warnings
from pathlib import Path

from weightzoo.generate import resume

CHECK = {"models": [0, 1], "seed": 7}


def _slot(zoo: Path) -> resume.ResumeSlot:
    resume.prepare_resume_dir(zoo)
    return resume.ResumeSlot(str(zoo), "train", 0, "f" * 16, (0, 1), interval=0.0)


def _only_warning(record: list[warnings.WarningMessage], match: str) -> warnings.WarningMessage:
    (found,) = [w for w in record if issubclass(w.category, RuntimeWarning)]
    assert match in str(found.message)
    return found


def test_an_unreadable_state_warns_where_the_block_starts(tmp_path):
    slot = _slot(tmp_path)
    slot.path.write_bytes(b"\x00not a state" * 5)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with slot.active() as session:
            assert session.call(CHECK).finished is None  # trains from the start
    found = _only_warning(record, "ignored and deleted")
    assert (found.filename, found.category) == (__file__, RuntimeWarning)
    assert not slot.path.exists()


def test_a_differing_call_warns_where_the_call_is_made(tmp_path):
    slot = _slot(tmp_path)
    with slot.active() as session:
        session.call(CHECK).finish({"loss": 0.5})  # interval 0: saved at once
    assert slot.path.is_file()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with slot.active() as session:
            call = session.call({**CHECK, "seed": 8})
    found = _only_warning(record, "differs from the one being made now")
    assert found.filename == __file__
    assert (call.finished, call.saved) == (None, None)


def test_a_failed_save_warns_where_the_call_finishes(tmp_path, monkeypatch):
    def full_disk(path, content):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(resume, "_write_atomically", full_disk)
    slot = _slot(tmp_path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with slot.active() as session:
            session.call(CHECK).finish({"loss": 0.5})
    found = _only_warning(record, "No space left on device")
    assert found.filename == __file__
    assert "could not save" in str(found.message) and str(slot.path) in str(found.message)
