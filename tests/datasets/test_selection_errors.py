"""Selections that fail loudly: empty selections, unknown columns, splits, metrics and epochs.

Every error is one line that names the value asked and lists what the zoo has; an empty
selection is an error unless ``allow_empty=True``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

import weightzoo
from helpers import toy_family
from weightzoo.datasets import GroupedBatches, Trajectories, ZooDataset
from weightzoo.errors import (
    EmptySelectionError,
    EpochError,
    InvalidOptionError,
    SidecarNotFoundError,
    UnknownColumnError,
    UnknownGroupError,
    UnknownSplitError,
)
from weightzoo.generate.runner import generate
from weightzoo.selection import did_you_mean, listing
from weightzoo.zoo import Zoo


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Zoo:
    """The 12-model toy zoo (train 8, val 2, test 2), shared by this module's tests."""
    out = tmp_path_factory.mktemp("selection") / "toy"
    generate(toy_family.ToySpec(shard_models=3), out, progress=False)
    return Zoo(out)


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message.strip() == message
    return message


# ---------------------------------------------------------------------------- where= dicts
def test_a_value_no_model_has_names_the_column_and_the_values_present(zoo):
    with pytest.raises(EmptySelectionError) as exc:
        ZooDataset(zoo, where={"kind": "relu"})
    message = one_line(exc)
    assert "kind='relu'" in message and str(zoo.path) in message
    assert "'class0', 'class1', 'class2'" in message and "allow_empty=True" in message
    assert isinstance(exc.value, InvalidOptionError) and isinstance(exc.value, ValueError)


def test_an_empty_combination_names_the_column_that_emptied_it(zoo):
    with pytest.raises(EmptySelectionError) as exc:
        ZooDataset(zoo, split="all", where={"kind": "class0", "lr": 1e-3})
    message = one_line(exc)
    assert "lr=0.001" in message and "among the 4 with kind='class0'" in message
    assert "lr holds 0.01, 0.1" in message


def test_a_long_list_of_values_is_cut_after_ten(zoo):
    with pytest.raises(EmptySelectionError) as exc:
        ZooDataset(zoo, split="all", where={"seed": 7})
    seeds = sorted(zoo.metadata()["seed"].tolist())
    message = one_line(exc)
    assert ", ".join(map(str, seeds[:10])) + " ... 2 more" in message
    assert str(seeds[10]) not in message


def test_text_asked_of_a_numeric_column_says_so(zoo):
    with pytest.raises(EmptySelectionError, match=r"numbers: '0\.1' is text"):
        ZooDataset(zoo, where={"lr": "0.1"})
    with pytest.raises(EmptySelectionError, match=r"holds False, True \(true/false: 'yes'"):
        ZooDataset(zoo, split="all", where={"passed": "yes"})


def test_an_unknown_column_lists_the_columns(zoo):
    with pytest.raises(UnknownColumnError) as exc:
        ZooDataset(zoo, where={"final_acc": 0.5})
    message = one_line(exc)
    assert "'final_acc'" in message and "final_test_acc" in message and "seed" in message
    assert "Did you mean 'final_test_acc'" in message


def test_values_collections_and_tests_of_one_value_select(zoo):
    table = zoo.metadata()
    kinds = table["kind"].astype(str)
    chosen = ZooDataset(zoo, split="all", where={"kind": lambda k: k.endswith("1")})
    assert len(chosen) == int((kinds == "class1").sum())
    assert set(kinds[chosen.reader.positions[chosen.model_indices]]) == {"class1"}
    for wanted in (["class0", "class2"], ("class0", "class2"), {"class0", "class2"}):
        assert len(ZooDataset(zoo, split="all", where={"kind": wanted})) == 8
    seeds = np.asarray(table["seed"][:3])
    assert len(ZooDataset(zoo, split="all", where={"seed": seeds})) == 3
    assert len(ZooDataset(zoo, split="all", where={"seed": range(1000, 1004)})) == 4
    assert len(ZooDataset(zoo, split="all", where={"lr": 0.1 * (1 + 1e-12)})) == 6
    with pytest.raises(EmptySelectionError, match="kind passing"):
        ZooDataset(zoo, where={"kind": lambda k: k == "relu"})


# ----------------------------------------------------------------------- where= functions
def test_a_function_reading_a_missing_column_names_it_and_the_columns(zoo):
    with pytest.raises(UnknownColumnError) as exc:
        ZooDataset(zoo, where=lambda m: m["acc"] > 0.9)
    message = one_line(exc)
    assert isinstance(exc.value, KeyError)
    assert "column 'acc'" in message and "final_test_acc" in message and "kind" in message
    assert "Did you mean 'final_test_acc'?" in message


def test_a_function_that_keeps_nothing_shows_the_columns_it_read(zoo):
    accuracies = zoo.metadata("train")["final_test_acc"]
    with pytest.raises(EmptySelectionError) as exc:
        ZooDataset(zoo, where=lambda m: m["final_test_acc"] > 2.0)
    message = one_line(exc)
    assert "none of the 8 models" in message and "final_test_acc:" in message
    assert f"{accuracies.min():.4g} to {accuracies.max():.4g}" in message
    with pytest.raises(InvalidOptionError, match="bool array"):
        ZooDataset(zoo, where=lambda m: 1)


# ------------------------------------------------------------------- splits and viability
@pytest.mark.parametrize(
    ("asked", "meant"), [("validation", "val"), ("training", "train"), ("tset", "test")]
)
def test_an_unknown_split_lists_the_splits_and_a_near_miss(zoo, asked, meant):
    for call in (lambda: ZooDataset(zoo, split=asked), lambda: zoo.metadata([asked])):
        with pytest.raises(UnknownSplitError) as exc:
            call()
        message = one_line(exc)
        assert f"unknown split {asked!r}" in message and f"Did you mean {meant!r}?" in message
        assert "train (8 models), val (2), test (2)" in message


def test_a_split_without_models_is_empty_and_names_the_splits(tmp_path):
    out = tmp_path / "trainonly"
    generate(toy_family.ToySpec(num_models=3, split_fractions=(1.0, 0.0, 0.0)), out, progress=False)
    with pytest.raises(EmptySelectionError) as exc:
        ZooDataset(out, split="val")
    message = one_line(exc)
    assert "split 'val'" in message and "its splits are train (3 models)" in message
    assert len(ZooDataset(out, split="val", allow_empty=True)) == 0
    # An empty split has the same columns, final metrics included, for where= to read.
    for where in ({"final_test_acc": 0.5}, lambda m: m["final_test_acc"] > 0.5):
        assert len(ZooDataset(out, split="val", where=where, allow_empty=True)) == 0
    with pytest.raises(UnknownColumnError, match="'final_acc'"):
        ZooDataset(out, split="val", where={"final_acc": 0.5}, allow_empty=True)


def test_no_viable_model_says_how_to_read_them(tmp_path):
    out = tmp_path / "diverged"
    generate(toy_family.ToySpec(num_models=3, diverge_every=1), out, progress=False)
    with pytest.raises(EmptySelectionError) as exc:
        ZooDataset(out, split="all")
    assert "filter_viable=False" in one_line(exc)
    assert len(ZooDataset(out, split="all", filter_viable=False)) == 3


# ----------------------------------------------------------------------------- allow_empty
def test_allow_empty_gives_a_dataset_a_dataloader_iterates(zoo):
    empty = ZooDataset(zoo, where={"kind": "relu"}, allow_empty=True)
    assert len(empty) == 0 and empty.num_models == 0
    assert list(DataLoader(empty, batch_size=4)) == []
    assert list(empty.loader(batch_size=4)) == []
    assert list(empty.loader(batch_size=4, num_workers=2)) == []
    trajectories = Trajectories(zoo, where={"kind": "relu"}, allow_empty=True)
    assert len(trajectories) == 0 and list(DataLoader(trajectories, batch_size=2)) == []


# ------------------------------------------------------------------ groups, metrics, epochs
def test_grouped_batches_accept_an_empty_group_but_not_all(tmp_path):
    out = tmp_path / "grouped"
    generate(toy_family.ToyGroupedSpec(shard_models=3), out, progress=False)
    zoo = Zoo(out)
    narrow = zoo.group("narrow").metadata("train")["model_id"]
    wide = zoo.group("wide").metadata("train")["model_id"]
    only = int(np.setdiff1d(narrow, wide)[0])
    batches = GroupedBatches(out, where={"model_id": only})
    assert [len(d) for d in batches.datasets] == [1, 0]
    assert [b["group"].tolist() for b in batches.loader()] == [[0]]
    with pytest.raises(EmptySelectionError) as exc:
        GroupedBatches(out, where={"model_id": -1})
    message = one_line(exc)
    assert "[narrow]" in message and "[wide]" in message and "model_id=-1" in message
    nothing = GroupedBatches(out, where={"model_id": -1}, allow_empty=True)
    assert len(nothing) == 0 and list(nothing.loader()) == []
    assert list(DataLoader(nothing, batch_size=None)) == []
    with pytest.raises(UnknownGroupError) as exc:
        ZooDataset(out, group="narow")
    assert "narrow, wide" in one_line(exc)


def test_unknown_metrics_and_epochs_list_what_exists(zoo):
    with pytest.raises(UnknownColumnError) as exc:
        ZooDataset(zoo, targets="accuracy")
    message = one_line(exc)
    assert "'accuracy'" in message and "test_acc" in message
    assert "Did you mean 'test_acc'" in message
    with pytest.raises(EpochError) as exc:
        ZooDataset(zoo, epochs=7)
    assert "[7]" in one_line(exc) and "[0, 1, 2, 3]" in str(exc.value)
    with pytest.raises(EpochError) as exc:
        ZooDataset(zoo, epochs="first")
    assert "'first'" in one_line(exc) and "epochs are 0, 1, 2, 3" in str(exc.value)
    with pytest.raises(EpochError) as exc:
        zoo.rows(0, epoch="first")
    assert "'first'" in one_line(exc) and "epochs 0, 1, 2, 3" in str(exc.value)


def test_a_missing_side_file_lists_those_there_are(zoo):
    with pytest.raises(SidecarNotFoundError) as exc:
        ZooDataset(zoo, features="outputs:probe")
    message = one_line(exc)
    assert "side file 'probe'" in message and "(side files: none)" in message
    assert f"`weightzoo behaviour {zoo.path} --name probe`" in message


def test_message_helpers():
    assert did_you_mean("validation", ["train", "val", "test"]) == " Did you mean 'val'?"
    assert did_you_mean("zzz", ["train", "val", "test"]) == ""
    assert listing(np.array([3.0, np.nan, 1.0, 3.0])) == "1.0, 3.0, nan"
    assert listing(["b", "a"]) == "'a', 'b'" and listing([]) == "nothing"
    assert listing(range(25), limit=3) == "0, 1, 2 ... 22 more"


# ----------------------------------------------------------------------------- property
def _column_values(zoo: Zoo) -> dict[str, list]:
    table = zoo.metadata()
    return {name: values.tolist() for name, values in table.items() if name != "split"}


def _wanted(values: list) -> st.SearchStrategy:
    """A present value, a list of present values, or a value no model has."""
    sample = values[0]
    if isinstance(sample, str):
        absent = st.just("absent")
    elif isinstance(sample, bool):
        absent = st.just(not sample) if len(set(values)) == 1 else st.nothing()
    else:
        absent = st.just(-12345)
    present = st.sampled_from(values)
    return st.one_of(present, st.lists(present, min_size=1, max_size=3), absent)


def _holds(value, wanted) -> bool:
    options = wanted if isinstance(wanted, list) else [wanted]
    if isinstance(value, float):
        return any(
            not isinstance(w, str) and math.isclose(value, w, rel_tol=1e-9, abs_tol=0.0)
            for w in options
        )
    return any(value == w for w in options)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_where_keeps_matching_models_or_raises_empty(zoo, data):
    columns = _column_values(zoo)
    names = data.draw(st.lists(st.sampled_from(sorted(columns)), min_size=1, max_size=3))
    where = {name: data.draw(_wanted(columns[name]), label=name) for name in names}
    table = zoo.metadata()
    expected = [
        all(_holds(columns[name][i], wanted) for name, wanted in where.items())
        for i in range(len(zoo))
    ]
    if not any(expected):
        with pytest.raises(EmptySelectionError) as exc:
            ZooDataset(zoo, split="all", where=where, filter_viable=False)
        assert f"zoo {zoo.name!r}" in one_line(exc)
        return
    dataset = ZooDataset(zoo, split="all", where=where, filter_viable=False)
    kept = dataset.reader.positions[dataset.model_indices]
    assert len(dataset) > 0
    assert sorted(kept.tolist()) == [int(table["position"][i]) for i in np.flatnonzero(expected)]


def test_weightzoo_exports_the_error(zoo):
    assert weightzoo.errors.EmptySelectionError is EmptySelectionError
