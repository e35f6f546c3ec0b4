"""A card is written whole or not at all: a full disk is one named line and leaves nothing.

The card is staged in a hidden folder and put in place by renames; an existing card folder is
replaced only when the new card is complete, and files of the user's beside it stay.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from weightzoo.card import write_card
from weightzoo.cli import run
from weightzoo.errors import StorageWriteError

Figure = pytest.importorskip("matplotlib.figure").Figure

FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def fail_savefig_after(monkeypatch, good: int) -> None:
    """Let ``good`` figures be written, then fail as a full disk does (no file name)."""
    real, count = Figure.savefig, [0]

    def savefig(self, fname, *args, **kwargs):
        count[0] += 1
        if count[0] > good:
            with open(fname, "wb") as handle:  # part of it reaches the disk
                handle.write(b"\x89PNG")
            raise FULL
        return real(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)


def one_line(error: BaseException) -> str:
    message = str(error)
    assert message and "\n" not in message, message
    return message


def test_a_full_disk_mid_figures_names_the_file_and_leaves_nothing(toy_zoo, tmp_path, monkeypatch):
    fail_savefig_after(monkeypatch, 2)
    out = tmp_path / "cards" / "toy"
    with pytest.raises(StorageWriteError) as info:
        write_card(toy_zoo, out)
    message = one_line(info.value)
    assert f"{out / 'figures' / 'embedding.png'}: No space left on device" in message
    assert "was not created" in message and info.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path / "cards") == []  # no card, no hidden staging folder


def test_the_cli_reports_a_full_disk_in_one_line(toy_zoo, tmp_path, monkeypatch, capsys):
    fail_savefig_after(monkeypatch, 0)
    out = tmp_path / "card"
    assert run(["card", str(toy_zoo), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "StorageWriteError" in err, err
    assert str(out / "figures" / "metric-over-epochs.png") in err
    assert os.listdir(tmp_path) == [toy_zoo.name]


def test_an_existing_card_is_replaced_only_when_the_new_one_is_complete(
    toy_zoo, tmp_path, monkeypatch
):
    out = tmp_path / "card"
    write_card(toy_zoo, out, repo_id="me/first")
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    assert "figures/embedding.png" in before

    fail_savefig_after(monkeypatch, 4)  # a full disk: the old card stays whole
    with pytest.raises(StorageWriteError, match="is as it was"):
        write_card(toy_zoo, out, repo_id="me/second")
    assert snapshot(out) == before
    monkeypatch.undo()

    def full_readme(self, *args, **kwargs):
        raise FULL

    monkeypatch.setattr(Path, "write_text", full_readme)
    with pytest.raises(StorageWriteError) as info:
        write_card(toy_zoo, out, repo_id="me/second", plots=False)
    assert f"{out / 'README.md'}: No space left on device" in one_line(info.value)
    assert snapshot(out) == before
    monkeypatch.undo()

    write_card(toy_zoo, out, repo_id="me/second", plots=False)  # succeeds: replaces the card
    after = snapshot(out)
    assert sorted(after) == ["README.md", "notes.txt"]  # old figures went with the old card
    assert "me/second" in after["README.md"].decode() and after["notes.txt"] == b"mine"


def test_a_rename_failing_half_way_restores_the_old_figures(toy_zoo, tmp_path, monkeypatch):
    out = tmp_path / "card"
    write_card(toy_zoo, out, repo_id="me/first")
    before = snapshot(out)

    def replace(src, dst):
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(dst))

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(StorageWriteError, match="Input/output error"):
        write_card(toy_zoo, out, repo_id="me/second")
    assert snapshot(out) == before and sorted(os.listdir(tmp_path)) == ["card", toy_zoo.name]


def test_a_grouped_card_on_a_full_disk_leaves_nothing(grouped_zoo, tmp_path, monkeypatch):
    fail_savefig_after(monkeypatch, 6)  # the first group's figures, then the second's fail
    out = tmp_path / "card"
    with pytest.raises(StorageWriteError) as info:
        write_card(grouped_zoo, out)
    assert str(out / "figures" / "wide") in one_line(info.value)
    assert os.listdir(tmp_path) == [grouped_zoo.name]


def test_a_card_out_that_is_a_file_is_refused(toy_zoo, tmp_path, capsys):
    (tmp_path / "card").write_text("not a folder")
    assert run(["card", str(toy_zoo), "--out", str(tmp_path / "card"), "--no-plots"]) == 1
    assert "is a file" in capsys.readouterr().err
    assert (tmp_path / "card").read_text() == "not a folder"


def _tmpfs(path: Path, size: str) -> bool:
    """Mount a tmpfs of ``size`` at ``path`` (root only); whether it worked."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def test_a_real_full_tmpfs_is_one_line_and_leaves_it_empty(toy_zoo, tmp_path, capsys):
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "40k"):
        pytest.skip("needs root and a mountable tmpfs")
    try:
        assert run(["card", str(toy_zoo), "--out", str(disk / "card")]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "No space left on device" in err, err
        assert str(disk / "card" / "figures") in err and "StorageWriteError" in err
        assert os.listdir(disk) == []
        assert run(["card", str(toy_zoo), "--out", str(disk / "card"), "--no-plots"]) == 0
        assert os.listdir(disk / "card") == ["README.md"]
    finally:
        subprocess.run(["umount", str(disk)], check=False)
