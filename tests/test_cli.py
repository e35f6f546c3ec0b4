"""The command line: commands, exit codes and the one-line error formatter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from weightzoo.cli import run
from weightzoo.errors import ZooNotFoundError


def test_info_prints_counts_and_splits(toy_zoo, capsys):
    assert run(["info", str(toy_zoo)]) == 0
    out = capsys.readouterr().out
    assert "models 12, checkpoints 4" in out and "train 8, val 2, test 2" in out
    assert run(["info", str(toy_zoo), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == 12


def test_verify_ok_then_names_the_bad_shard(toy_zoo, capsys):
    assert run(["verify", str(toy_zoo)]) == 0
    assert "match their sha256" in capsys.readouterr().out
    shard = next((toy_zoo / "shards").glob("val-*"))
    data = bytearray(shard.read_bytes())
    data[-100] ^= 1
    shard.write_bytes(bytes(data))
    assert run(["verify", str(toy_zoo)]) == 1
    err = capsys.readouterr().err
    assert shard.name in err and "1 of 5 shards failed" in err


def test_errors_are_one_line_with_exit_1(tmp_path, capsys):
    assert run(["info", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("weightzoo: error: no zoo at")
    assert "WEIGHTZOO_DEBUG=1" in err


def test_debug_switch_shows_the_exception(tmp_path, monkeypatch):
    monkeypatch.setenv("WEIGHTZOO_DEBUG", "1")
    with pytest.raises(ZooNotFoundError):
        run(["info", str(tmp_path / "missing")])


def test_generate_unknown_name_suggests_close_ones(capsys):
    assert run(["generate", "toi"]) == 1
    assert "Did you mean toy" in capsys.readouterr().err


def test_generate_and_resume_via_cli(tmp_path, capsys):
    out = tmp_path / "zoo"
    assert run(["generate", "toy", "--out", str(out), "--models", "5", "--epochs", "2"]) == 0
    assert "wrote toy" in capsys.readouterr().out
    assert run(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["models"] == 5 and info["checkpoints"] == 3
    # Rerunning is a no-op resume; a different spec is refused with exit 1.
    assert run(["generate", "toy", "--out", str(out), "--models", "5", "--epochs", "2"]) == 0
    assert run(["generate", "toy", "--out", str(out), "--models", "6", "--epochs", "2"]) == 1
    assert "different spec" in capsys.readouterr().err


def test_generate_rejects_options_a_family_does_not_take(tmp_path, capsys):
    assert run(["generate", "toy", "--out", str(tmp_path / "z"), "--per-class", "3"]) == 1
    assert "per_class" in capsys.readouterr().err


def test_console_script_is_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "weightzoo")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    for command in ("list", "info", "verify", "generate", "fetch", "push", "import"):
        assert command in out.stdout
