"""Grouped zoos on the command line: list, generate, info, verify, card, report, --group."""

from __future__ import annotations

import json

from weightzoo.cli import run


def test_list_shows_grouped_specs(capsys):
    assert run(["list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("toy-grouped"))
    assert "toy (2 groups)" in line


def test_generate_a_grouped_spec_then_info(tmp_path, capsys):
    out = tmp_path / "zoo"
    assert run(["generate", "toy-grouped", "--out", str(out)]) == 0
    assert "12 models in groups narrow 6, wide 6" in capsys.readouterr().out
    assert run(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "models 12 in 2 groups; finished" in text
    assert "group narrow (model ids 0..5)" in text and "group wide (model ids 6..11)" in text
    assert run(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [(g["group"], g["params"]) for g in info["groups"]] == [("narrow", 8), ("wide", 14)]
    assert info["format_version"] == 2 and info["complete"] and info["missing_shards"] == []


def test_info_of_a_folder_lists_a_grouped_zoo(grouped_zoo, capsys):
    assert run(["info", str(grouped_zoo.parent), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["zoos"]
    assert row["family"] == "toy (2 groups)" and row["models"] == 12 and row["complete"]


def test_info_names_a_missing_shard_of_a_group(grouped_zoo, capsys):
    shard = next((grouped_zoo / "groups" / "wide" / "shards").glob("val-*"))
    shard.unlink()
    assert run(["info", str(grouped_zoo)]) == 1
    assert f"groups/wide/shards/{shard.name}" in capsys.readouterr().err


def test_verify_recurses_and_checks_the_chain(grouped_zoo, capsys):
    assert run(["verify", str(grouped_zoo)]) == 0
    assert "2 group manifests" in capsys.readouterr().out
    shard = next((grouped_zoo / "groups" / "narrow" / "shards").glob("test-*"))
    data = bytearray(shard.read_bytes())
    data[-100] ^= 1
    shard.write_bytes(bytes(data))
    assert run(["verify", str(grouped_zoo)]) == 1
    err = capsys.readouterr().err
    assert f"groups/narrow/shards/{shard.name}" in err and "1 of 8 shards failed" in err
    manifest = grouped_zoo / "groups" / "wide" / "zoo.json"
    manifest.write_text(manifest.read_text().replace('"finished": true', '"finished": false'))
    assert run(["verify", str(grouped_zoo)]) == 1
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("weightzoo:")]
    assert "GroupManifestError" in line and "'wide'" in line


def test_version_1_commands_refuse_a_grouped_zoo_in_one_line(grouped_zoo, tmp_path, capsys):
    for command in (
        ["sparsify", str(grouped_zoo), "--out", str(tmp_path / "twin")],
        ["generate", "toy", "--out", str(grouped_zoo)],
    ):
        assert run(command) == 1
        err = capsys.readouterr().err
        assert "GroupedZooError" in err and "narrow, wide" in err and len(err.splitlines()) == 1


def test_slices_of_a_grouped_spec_are_refused(tmp_path, capsys):
    assert run(["generate", "toy-grouped", "--out", str(tmp_path / "z"), "--slice", "0/2"]) == 1
    assert "generated whole" in capsys.readouterr().err


def test_per_zoo_commands_take_group(grouped_zoo, capsys):
    for command in ("landscape", "behaviour", "report", "card"):
        assert run([command, str(grouped_zoo), "--group", "medium"]) == 1
        err = capsys.readouterr().err
        assert "UnknownGroupError" in err and "narrow, wide" in err, command


def test_report_runs_on_every_group(grouped_zoo, capsys):
    run(["report", str(grouped_zoo)])
    out = capsys.readouterr().out
    assert "== group narrow ==" in out and "== group wide ==" in out


def test_card_of_a_grouped_zoo_lists_every_group(grouped_zoo, tmp_path, capsys):
    from weightzoo.card import read_card_metadata

    assert run(["card", str(grouped_zoo), "--out", str(tmp_path / "card"), "--no-plots"]) == 0
    text = (tmp_path / "card" / "README.md").read_text()
    meta = read_card_metadata(text)["weightzoo"]
    assert meta["format_version"] == 2
    assert [(g["name"], g["num_params"]) for g in meta["groups"]] == [("narrow", 8), ("wide", 14)]
    assert "| wide | 6 | 6..11 | 14 |" in text
    one = tmp_path / "one"
    assert run(["card", str(grouped_zoo), "--group", "wide", "--out", str(one), "--no-plots"]) == 0
    assert read_card_metadata((one / "README.md").read_text())["weightzoo"]["num_params"] == 14
