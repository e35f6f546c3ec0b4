"""The public API: lazy attributes, filters, metadata tables, tokens, the families' options."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import weightzoo
from weightzoo.errors import InvalidOptionError, MissingExtraError, UnknownColumnError
from weightzoo.features import tokenize

ROOT = Path(__file__).resolve().parents[1]


def test_submodules_and_fetch_are_attributes_without_a_heavy_import():
    code = (
        "import sys, weightzoo, inspect; f = weightzoo.features.tokenize; "
        "print('weightzoo.generate' in sys.modules, 'weightzoo.cli' in sys.modules, "
        "list(inspect.signature(weightzoo.fetch).parameters)[:3])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False ['name_or_repo', 'split', 'epochs']"
    assert weightzoo.fetch is weightzoo.hub.fetch
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        weightzoo.nope  # noqa: B018


def _resolve(dotted: str):
    """The object a dotted name means: the longest importable module, then attributes."""
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name, None)
        return obj
    return None


def test_every_weightzoo_name_in_the_docs_exists():
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    names = set()
    for path in texts:
        names |= set(re.findall(r"\bweightzoo(?:\.[A-Za-z_][A-Za-z_0-9]*)+", path.read_text()))
    names = {n.rstrip(".") for n in names}
    missing = sorted(n for n in names if _resolve(n) is None)
    assert not missing, missing


def test_where_dict_and_function_filter_models(toy_zoo):
    data = weightzoo.ZooDataset(toy_zoo, split="all", where={"kind": "class1", "lr": 1e-2})
    kinds = data.reader.column("kind")[data.model_indices].astype(str)
    lrs = data.reader.column("lr")[data.model_indices]
    assert set(kinds) == {"class1"} and np.allclose(lrs, 1e-2)
    assert len(data) == sum(1 for i in range(12) if i % 3 == 1 and i % 2 == 1)
    several = weightzoo.ZooDataset(toy_zoo, split="all", where={"kind": ["class0", "class2"]})
    assert len(several) == 8
    best = weightzoo.ZooDataset(
        toy_zoo, split="all", where=lambda m: m["final_test_acc"] >= np.median(m["final_test_acc"])
    )
    table = weightzoo.Zoo(toy_zoo).metadata()
    cut = np.median(table["final_test_acc"])
    assert len(best) == int((table["final_test_acc"] >= cut).sum())
    with pytest.raises(UnknownColumnError, match="no column 'colour'"):
        weightzoo.ZooDataset(toy_zoo, where={"colour": "red"})
    with pytest.raises(InvalidOptionError, match="bool array"):
        weightzoo.ZooDataset(toy_zoo, where=lambda m: 1)


def test_to_pandas_is_the_metadata_table(toy_zoo, monkeypatch):
    pytest.importorskip("pandas")
    zoo = weightzoo.Zoo(toy_zoo)
    frame = zoo.to_pandas()
    assert len(frame) == 12 and {"model_id", "kind", "final_test_acc"} <= set(frame.columns)
    assert list(frame["model_id"]) == list(zoo.metadata()["model_id"])
    assert isinstance(zoo.metadata(), dict)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingExtraError, match=r"weightzoo\[analysis\]"):
        zoo.to_pandas()


def test_tokens_feature_matches_tokenize(toy_zoo):
    data = weightzoo.ZooDataset(toy_zoo, features=("weights", "tokens:4"))
    item = data[1]
    expected = tokenize(item["weights"], data.zoo.layout, token_size=4, chunk=True)
    assert torch.equal(item["tokens"], expected["tokens"])
    assert torch.equal(item["tokens_mask"], expected["mask"])
    assert torch.equal(item["tokens_positions"], expected["positions"])
    whole = weightzoo.ZooDataset(toy_zoo, features="tokens")[1]
    assert whole["tokens"].shape == (2, 6)  # one token per output neuron: 5 weights + bias
    with pytest.raises(InvalidOptionError, match="token width"):
        weightzoo.ZooDataset(toy_zoo, features="tokens:0")


def test_defaults_agree_across_datasets(toy_zoo):
    for cls in (weightzoo.ZooDataset, weightzoo.MLDS, weightzoo.ModelZoo):
        params = inspect.signature(cls.__init__).parameters
        assert next(iter(params.values())).name == "self"
        assert list(params)[1] == "root"
    data = weightzoo.ZooDataset(toy_zoo)
    assert data.epochs == [3] and set(data.reader.column("split")) == {"train"}
    assert weightzoo.Trajectories(toy_zoo).epochs == [0, 1, 2, 3]
    assert isinstance(weightzoo.TrajectoryZoo, type)


def test_mlds_target_is_a_deprecated_alias(tmp_path):
    from families.mlds.test_mlds_family import tiny
    from weightzoo.generate.runner import generate

    generate(tiny("ds1", split_fractions=(1.0, 0.0, 0.0)), tmp_path / "mlds-ds1", progress=False)
    with pytest.warns(FutureWarning, match="targets="):
        old = weightzoo.MLDS(tmp_path, target="passed", filter_viable=False)
    new = weightzoo.MLDS(tmp_path, targets="passed", filter_viable=False)
    assert old.targets == new.targets == ("passed",)
    with pytest.raises(InvalidOptionError, match="targets= only"):
        weightzoo.MLDS(tmp_path, target="passed", targets="machine")
    parity = weightzoo.MLDS(tmp_path, where={"machine": "EightBitMachine"}, filter_viable=False)
    assert {int(parity[i]["machine"]) for i in range(len(parity))} == {
        parity.classes["machine"].index("EightBitMachine")
    }


def test_backdoor_pair_shares_machine_classes_and_reads_batches(tmp_path):
    from families.mlds.test_mlds_family import tiny
    from weightzoo.generate.runner import generate

    whole = (1.0, 0.0, 0.0)
    generate(tiny("ds1", split_fractions=whole), tmp_path / "mlds-ds1", progress=False)
    ds2 = tiny("ds2", machines=("SingleDirectMachine",), split_fractions=whole)
    generate(ds2, tmp_path / "mlds-ds2", progress=False)
    pair = weightzoo.MLDSBackdoor(tmp_path, filter_viable=False)
    assert pair.classes["machine"] == ["EightBitMachine", "SingleDirectMachine"]
    batch = pair.batch(range(len(pair)))
    assert batch["backdoor"].tolist() == [0] * 8 + [1] * 4
    assert set(batch["machine"][8:].tolist()) == {1}  # DS2's only machine, DS1's index
    only = weightzoo.MLDSBackdoor(tmp_path, machine="SingleDirectMachine", filter_viable=False)
    assert len(only) == 4 + 4 and set(only.batch(range(8))["machine"].tolist()) == {1}
    assert only.batch([])["weights"].shape == (0, 4364)
    with pytest.raises(UnknownColumnError, match="ParityMachine"):
        weightzoo.MLDSBackdoor(tmp_path, machine="ParityMachine", filter_viable=False)


def test_positions_map_model_ids_to_storage_positions(toy_zoo):
    zoo = weightzoo.Zoo(toy_zoo)
    table = zoo.metadata()
    ids, positions = table["model_id"], table["position"]
    assert not np.array_equal(ids, positions)  # splits interleave: the two orders differ
    for model_id in (0, 5, 11):
        (position,) = zoo.positions(model_id)
        assert position == positions[ids == model_id][0]
        assert zoo.model_columns(int(position))["model_id"][0] == model_id
    np.testing.assert_array_equal(zoo.positions([3, 1]), [positions[ids == i][0] for i in (3, 1)])
    with pytest.raises(UnknownColumnError, match="ids run 0..11"):
        zoo.positions(12)
    # with the test split's shards gone, the others still map; a test model asks for a fetch
    test_ids = ids[table["split"] == "test"]
    for shard in zoo.manifest.shards:
        if shard.split == "test":
            (toy_zoo / shard.file).unlink()
    other = int(ids[table["split"] == "train"][0])
    assert weightzoo.Zoo(toy_zoo).positions(other)[0] == positions[ids == other][0]
    with pytest.raises(UnknownColumnError, match="fetch the split"):
        weightzoo.Zoo(toy_zoo).positions(int(test_ids[0]))
