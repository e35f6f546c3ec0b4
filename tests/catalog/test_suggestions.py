"""Every command weightzoo suggests for a missing zoo is one that can work."""

import dataclasses
import re
import shlex

import pytest

import weightzoo
from weightzoo import catalog
from weightzoo.cli import build_parser
from weightzoo.errors import ZooNotFoundError
from weightzoo.generate.specs import get_spec

COMMAND = re.compile(r"`(weightzoo [^`]+)`")


def commands(text: str) -> list[list[str]]:
    return [shlex.split(found)[1:] for found in COMMAND.findall(text)]


@pytest.mark.parametrize("entry", catalog.entries(), ids=lambda entry: entry.name)
def test_each_suggested_command_parses_and_names_a_source_the_zoo_has(entry):
    advice = catalog.how_to_get(entry.name, "zoos/here")
    suggested = commands(advice)
    assert suggested, advice
    parser = build_parser()
    for argv in suggested:
        args = parser.parse_args(argv)
        assert args.name == entry.name
        if argv[0] == "generate":
            assert entry.generation is not None
            assert get_spec(entry.name).name == entry.name  # the spec exists
            assert args.out == "zoos/here"
        else:
            assert argv[0] == "fetch" and (entry.hub_repo or entry.release), advice
            assert "zoos/here" in (args.out, args.local_dir)


def test_a_zoo_nothing_can_fetch_is_not_offered_for_fetching(tmp_path):
    with pytest.raises(ZooNotFoundError) as raised:
        weightzoo.MLDS(tmp_path, subset="ds1")
    message = str(raised.value)
    assert "weightzoo fetch" not in message and "download=True" not in message
    assert f"weightzoo generate mlds-ds1 --out {tmp_path / 'mlds-ds1'}" in message
    assert "own directory" in message  # a zoo generated with another --out can be passed


def test_a_misspelled_spec_gets_the_names_that_exist(tmp_path):
    with pytest.raises(ZooNotFoundError, match="did you mean modelzoo-digits-cnn-s-seed"):
        weightzoo.ModelZoo(tmp_path, dataset="digits", architecture="cnn_s")


def test_a_fetchable_zoo_is_offered_for_fetching_and_download(tmp_path):
    name = next(e.name for e in catalog.entries() if e.release is not None)
    advice = catalog.how_to_get(name, "d")
    assert f"`weightzoo fetch {name} --out d`" in advice


def test_the_suggested_generate_command_runs(tmp_path):
    out = tmp_path / "property-synthetic"
    advice = catalog.how_to_get("property-synthetic", str(out))
    (argv,) = [a for a in commands(advice) if a[0] == "generate"]
    # the suggestion as printed, made small: two models, one epoch
    assert weightzoo.cli.run([*argv, "--models", "2", "--train-epochs", "1"]) == 0
    assert weightzoo.Zoo(out).name == "property-synthetic"


def test_a_card_names_a_repo_that_fetch_can_read(toy_zoo, tmp_path, monkeypatch):
    from weightzoo.card import default_repo_id, write_card

    readme = write_card(toy_zoo, tmp_path / "card", plots=False).read_text()
    assert "weightzoo fetch OWNER/toy" in readme and "weightzoo push ZOO OWNER/NAME" in readme
    assert default_repo_id("mlds-ds1") == "OWNER/mlds-ds1"  # generated only: no hub copy
    entry = dataclasses.replace(catalog.find("mlds-ds1"), hub_repo="org/mlds-ds1", revision="a")
    monkeypatch.setattr(catalog, "find", lambda name: entry)
    assert default_repo_id("mlds-ds1") == "mlds-ds1"  # `weightzoo fetch mlds-ds1` reads it
