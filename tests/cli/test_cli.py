"""The command line: commands, exit codes and the one-line error formatter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from weightzoo import cli
from weightzoo.cli import build_parser, run
from weightzoo.errors import ZooNotFoundError
from weightzoo.zoo import Zoo

SRC = Path(__file__).resolve().parents[2] / "src"


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
    assert run(["generate", "toy", "--out", str(out), "--models", "5", "--train-epochs", "2"]) == 0
    assert "wrote toy" in capsys.readouterr().out
    assert run(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["models"] == 5 and info["checkpoints"] == 3
    # Rerunning is a no-op resume; a different spec is refused with exit 1.
    assert run(["generate", "toy", "--out", str(out), "--models", "5", "--train-epochs", "2"]) == 0
    assert run(["generate", "toy", "--out", str(out), "--models", "6", "--train-epochs", "2"]) == 1
    assert "different spec" in capsys.readouterr().err


def test_generate_rejects_options_a_family_does_not_take(tmp_path, capsys):
    assert run(["generate", "toy", "--out", str(tmp_path / "z"), "--per-class", "3"]) == 1
    assert "per_class" in capsys.readouterr().err


def test_console_script_is_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "weightzoo")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    for command in ("list", "info", "verify", "generate", "fetch", "push", "import"):
        assert command in out.stdout


def test_usage_errors_are_one_line_with_a_pointer_to_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(["generate"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("weightzoo generate: error: ")
    assert err.rstrip().endswith("(see weightzoo generate --help)")
    with pytest.raises(SystemExit):
        run(["generate", "toy", "--workers", "0"])
    assert "--workers: expected a positive integer, got '0'" in capsys.readouterr().err


def test_verbose_works_before_and_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["-v", "list"]).verbose is True
    assert parser.parse_args(["list", "--verbose"]).verbose is True
    assert parser.parse_args(["list"]).verbose is False


@pytest.mark.parametrize("device", ["nosuchdev", "cuda", "meta"])
def test_unusable_devices_are_refused_before_anything_is_written(tmp_path, capsys, device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "zoo"
    assert run(["generate", "toy", "--out", str(out), "--device", device]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--device '{device}'" in err and "choose one of: cpu" in err
    assert not out.exists()


def test_info_names_missing_shards_and_fails(toy_zoo, capsys):
    lost = sorted((toy_zoo / "shards").glob("val-*"))[0]
    lost.unlink()
    assert run(["info", str(toy_zoo)]) == 1
    captured = capsys.readouterr()
    assert "INCOMPLETE" in captured.out and "complete" not in captured.out.replace("INCOMPLETE", "")
    assert f"shards/{lost.name}" in captured.err and "1 of 5 shards" in captured.err
    assert run(["info", str(toy_zoo), "--json"]) == 1
    info = json.loads(capsys.readouterr().out)
    assert info["missing_shards"] == [f"shards/{lost.name}"] and info["complete"] is False


def test_a_programming_error_shows_its_traceback(toy_zoo, monkeypatch):
    def broken(self):
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(Zoo, "info", broken)
    with pytest.raises(ValueError, match="a bug"):
        run(["info", str(toy_zoo)])


def test_sigterm_handler_is_installed_only_while_a_command_runs(toy_zoo):
    before = signal.getsignal(signal.SIGTERM)
    assert run(["info", str(toy_zoo)]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_closed_output_pipe_ends_quietly(tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `| head -1` does once it has its line
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("WEIGHTZOO_DEBUG", None)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "weightzoo.cli", "list"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert done.stderr == b""


def test_training_length_is_train_epochs_and_epochs_is_a_noted_alias(tmp_path, capsys):
    out = tmp_path / "toy"
    assert run(["generate", "toy", "--out", str(out), "--models", "3", "--epochs", "1"]) == 0
    assert "--epochs of this command is deprecated" in capsys.readouterr().err
    assert Zoo(out).epochs == [0, 1]
    parsed = build_parser().parse_args(["generate", "toy", "--train-epochs", "4"])
    assert parsed.epochs == 4 and "deprecated" not in capsys.readouterr().err
    assert build_parser().parse_args(["fetch", "x", "--epochs", "last"]).epochs == "last"


@pytest.mark.parametrize("command", [["list"], ["info", "x"], ["report", "x"], ["verify", "x"]])
def test_verbose_flag_works_after_every_subcommand(command):
    assert build_parser().parse_args([*command, "-v"]).verbose is True
    assert build_parser().parse_args(["-v", *command]).verbose is True


@pytest.mark.parametrize(
    ("epochs", "text"),
    [
        ([0, 1000], "0, 1000"),
        (list(range(51)), "0..50 every 1"),
        ([0, 5, 10, 15, 17], "0..15 every 5, 17"),
        ([3], "3"),
    ],
)
def test_checkpoint_epochs_are_written_unambiguously(epochs, text):
    from weightzoo.cli import epochs_text

    assert epochs_text(epochs) == text


def test_info_shows_quality_ranges_and_lists_a_folder_of_zoos(toy_zoo, capsys):
    assert run(["info", str(toy_zoo), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["missing_shards"] == [] and info["epochs"] == [0, 1, 2, 3]
    assert info["quality"]["rows"][0]["ours"]["models"] == 12
    assert info["range_train_loss"][0] <= info["range_train_loss"][1]
    assert run(["info", str(toy_zoo)]) == 0
    out = capsys.readouterr().out
    assert "checkpoint epochs: 0..3 every 1" in out and "Training quality" in out
    assert run(["info", str(toy_zoo.parent), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)["zoos"]
    assert [z["name"] for z in listing] == ["toy"] and listing[0]["complete"]
    next((toy_zoo / "shards").glob("val-*")).unlink()
    assert run(["info", str(toy_zoo.parent)]) == 1
    assert "1 shards missing" in capsys.readouterr().out


@pytest.mark.parametrize(("raised", "code"), [(KeyboardInterrupt, 130), (cli.Terminated, 143)])
def test_an_interrupted_command_speaks_of_shards_only_if_it_keeps_them(capsys, raised, code):
    parser = cli.build_parser()

    def stop(_args):
        raise raised

    for argv, keeps in ((["list"], False), (["generate", "mlds-ds1"], True)):
        args = parser.parse_args(argv)
        args.func = stop
        assert cli._call(stop, args) == code
        said = capsys.readouterr().err
        assert said.startswith("weightzoo: ") and said.count("\n") == 1
        assert ("completed shards are kept" in said) is keeps, said


def test_generate_passes_its_resume_interval_and_names_the_runners_default(monkeypatch, tmp_path):
    from weightzoo.generate import resume, runner

    seen = []

    def fake_generate(spec, out, **options):
        seen.append(options)
        raise KeyboardInterrupt  # stop before anything is written

    monkeypatch.setattr(runner, "generate", fake_generate)
    out = str(tmp_path / "z")
    assert run(["generate", "toy", "--out", out, "--resume-interval", "0"]) == 130
    assert run(["generate", "toy", "--out", out]) == 130
    assert seen[0]["resume_interval"] == 0.0 and "resume_interval" not in seen[1]
    help_text = " ".join(
        build_parser()._subparsers._group_actions[0].choices["generate"].format_help().split()
    )
    assert f"default {resume.DEFAULT_INTERVAL:g};" in help_text
    with pytest.raises(SystemExit) as stopped:
        run(["generate", "toy", "--out", out, "--resume-interval", "-1"])
    assert stopped.value.code == 2


def test_every_command_has_a_section_in_the_cli_docs():
    docs = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
    headings = [line for line in docs.read_text().splitlines() if line.startswith("## ")]
    commands = build_parser()._subparsers._group_actions[0].choices
    missing = [name for name in commands if not any(f"`{name}`" in h for h in headings)]
    assert not missing, f"docs/cli.md has no section for {missing}"
