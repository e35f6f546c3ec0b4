"""Importers read hostile data: every malformed source is a one-line named error, never a
traceback; an imported zoo's identity covers its source content; DEST is the importer's alone.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import itertools
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helpers.importer_fixtures import (
    cnn_zoo_tree,
    mlds_tree,
    modelzoo_tree,
    one_line_error,
    read_back,
)
from weightzoo.errors import (
    InvalidOptionError,
    LayoutError,
    SourcePathError,
    SpecMismatchError,
    UnreadableFileError,
    WeightzooError,
)
from weightzoo.importers import import_zoo
from weightzoo.storage.manifest import Manifest

TREES = {"modelzoo": modelzoo_tree, "cnn-zoo": cnn_zoo_tree, "mlds": mlds_tree}


def shard_times(zoo: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (zoo / "shards").iterdir()}


def fails_in_one_line(kind: str, src: Path, dest: Path, error: type[Exception]) -> str:
    """Import must raise ``error`` (a WeightzooError) whose message is one line; return it."""
    with pytest.raises(error) as info:
        import_zoo(kind, src, dest)
    assert isinstance(info.value, WeightzooError)
    message = str(info.value)
    assert "\n" not in message and message, message
    return message


def small_modelzoo(root: Path, trials: int = 2, epochs: int = 1) -> None:
    """A Model Zoos root with ``trials`` trials of a two-layer net, ``epochs`` checkpoints each."""
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model::type": "MLP"}))
    gen = torch.Generator().manual_seed(0)
    for t in range(trials):
        trial = root / f"NN_tune_trainable_{t}"
        trial.mkdir()
        (trial / "params.json").write_text(json.dumps({"optim::lr": 0.1, "seed": t}))
        lines = [{"test_acc": 0.5 + e / 10, "train_loss": 1.0 - e / 10} for e in range(epochs)]
        (trial / "result.json").write_text("\n".join(map(json.dumps, lines)) + "\n")
        for e in range(epochs):
            folder = trial / f"checkpoint_{e:06d}"
            folder.mkdir()
            sd = {
                "module_list.0.weight": torch.randn(3, 2, generator=gen),
                "module_list.0.bias": torch.randn(3, generator=gen),
                "module_list.2.weight": torch.randn(1, 3, generator=gen),
            }
            torch.save(sd, folder / "checkpoints")


def small_mlds(root: Path, networks: int = 3) -> None:
    """An MLDS directory of JSON networks ``{"state_dict": ..., metadata}``."""
    root.mkdir(parents=True)
    for i in range(networks):
        data = {
            "state_dict": {"fc.weight": [[i, 1.5], [2.0, -i]], "fc.bias": [0.25, i]},
            "machine": f"m{i % 2}",
            "seed": i,
            "final_loss": 0.5 / (i + 1),
            "epoch": 7,
        }
        (root / f"net{i}.json").write_text(json.dumps(data))


# -- 1. identity travels with content ---------------------------------------------------------


def change_one_weight(kind: str, src: Path) -> None:
    """Change one stored value of the source, keeping every shape and name."""
    if kind == "modelzoo":
        path = next(src.glob("*/checkpoint_000001/checkpoints"))
        sd = torch.load(path, weights_only=True)
        name = sorted(sd)[0]
        sd[name] = sd[name] + 1.0
        torch.save(sd, path)
    elif kind == "cnn-zoo":
        weights = np.load(src / "weights.npy")
        weights[0, 0] += 1.0
        np.save(src / "weights.npy", weights)
    else:
        path = src / "sub" / "net4.json"
        data = json.loads(path.read_text())
        data["state_dict"]["fc.weight"][0][0] += 1.0
        path.write_text(json.dumps(data))


@pytest.mark.parametrize("kind", sorted(TREES))
def test_a_changed_source_is_another_zoo(tmp_path, rng, capsys, kind):
    TREES[kind](tmp_path / "src", rng)
    dest = tmp_path / "zoo"
    import_zoo(kind, tmp_path / "src", dest)
    first = shard_times(dest)
    digest = Manifest.load(dest).spec["source_sha256"]
    import_zoo(kind, tmp_path / "src", dest)  # unchanged source: resumes, rewrites nothing
    assert shard_times(dest) == first
    change_one_weight(kind, tmp_path / "src")
    argv = ["import", kind, str(tmp_path / "src"), str(dest)]
    err = one_line_error(capsys, argv, "SpecMismatchError", str(dest), "source_sha256")
    assert "another DEST" in err
    assert shard_times(dest) == first and Manifest.load(dest).spec["source_sha256"] == digest
    # the changed source is a zoo of its own, with another digest and the new weights
    manifest, _ = read_back(import_zoo(kind, tmp_path / "src", tmp_path / "zoo2"))
    assert manifest.spec["source_sha256"] != digest


def test_source_digest_covers_exactly_the_files_read(tmp_path, rng):
    modelzoo_tree(tmp_path / "src", rng)
    src = tmp_path / "src"
    manifest = Manifest.load(import_zoo("modelzoo", src, tmp_path / "zoo"))
    read = [src / "config.json", *src.glob("*/params.json"), *src.glob("*/result.json")]
    read += src.glob("*/checkpoint_*/checkpoints")
    pairs = sorted(
        (p.relative_to(src).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest()) for p in read
    )
    assert manifest.spec["source_sha256"] == hashlib.sha256(json.dumps(pairs).encode()).hexdigest()
    # files the importer never opens (the pickled dataset, optimizer states) are not identity
    (src / "dataset.pt").write_bytes(b"another pickle")
    for optimizer in src.glob("*/checkpoint_*/optimizer"):
        optimizer.write_bytes(b"x")
    before = shard_times(tmp_path / "zoo")
    import_zoo("modelzoo", src, tmp_path / "zoo")
    assert shard_times(tmp_path / "zoo") == before


def test_mlds_sidecars_are_part_of_the_identity(tmp_path, rng):
    mlds_tree(tmp_path / "src", rng)
    import_zoo("mlds", tmp_path / "src", tmp_path / "zoo")
    sidecar = tmp_path / "src" / "net1.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "final_loss": 0.01}))
    fails_in_one_line("mlds", tmp_path / "src", tmp_path / "zoo", SpecMismatchError)


# -- 2. tensors mapped by name ------------------------------------------------------------------


def test_modelzoo_checkpoint_with_other_names_is_refused(tmp_path):
    src = tmp_path / "src"
    small_modelzoo(src, trials=3)
    path = src / "NN_tune_trainable_2" / "checkpoint_000000" / "checkpoints"
    sd = torch.load(path, weights_only=True)
    torch.save({k.replace("module_list", "features"): v for k, v in sd.items()}, path)
    message = fails_in_one_line("modelzoo", src, tmp_path / "zoo", LayoutError)
    assert str(path) in message and "'features.0.bias'" in message
    assert not (tmp_path / "zoo").exists()


def test_modelzoo_later_checkpoint_with_other_names_is_refused(tmp_path):
    src = tmp_path / "src"
    small_modelzoo(src, trials=2, epochs=2)
    path = src / "NN_tune_trainable_1" / "checkpoint_000001" / "checkpoints"
    sd = torch.load(path, weights_only=True)
    sd["module_list.3.weight"] = sd.pop("module_list.2.weight")  # same shape, another name
    torch.save(sd, path)
    message = fails_in_one_line("modelzoo", src, tmp_path / "zoo", LayoutError)
    assert str(path) in message and "'module_list.2.weight' is missing" in message


def test_modelzoo_tensors_are_placed_by_name_not_by_position(tmp_path):
    """Two tensors of one shape: a trial saved in another key order still lands by name."""
    src = tmp_path / "src"
    src.mkdir()
    stored = {}
    for t, order in enumerate((["a.weight", "b.weight"], ["b.weight", "a.weight"])):
        trial = src / f"trial_{t}"
        (trial / "checkpoint_000000").mkdir(parents=True)
        (trial / "params.json").write_text(json.dumps({"seed": t}))
        sd = {name: torch.full((4,), float(10 * t + order.index(name))) for name in order}
        torch.save(sd, trial / "checkpoint_000000" / "checkpoints")
        stored[f"trial_{t}"] = sd
    manifest, models = read_back(import_zoo("modelzoo", src, tmp_path / "zoo"))
    assert manifest.spec["renamed"] is False
    for model in models.values():
        sd = stored[model["columns"]["trial"]]
        for tensor in manifest.layout:
            got = model["weights"][0, tensor.offset : tensor.stop]
            np.testing.assert_array_equal(got, sd[tensor.name].numpy())


def test_modelzoo_shape_difference_names_the_tensor(tmp_path):
    src = tmp_path / "src"
    small_modelzoo(src, trials=2)
    path = src / "NN_tune_trainable_1" / "checkpoint_000000" / "checkpoints"
    sd = torch.load(path, weights_only=True)
    sd["module_list.0.bias"] = torch.zeros(4)
    torch.save(sd, path)
    message = fails_in_one_line("modelzoo", src, tmp_path / "zoo", LayoutError)
    assert "'module_list.0.bias' has shape (4,)" in message and "(3,)" in message


def test_mlds_network_with_other_names_is_refused(tmp_path):
    src = tmp_path / "src"
    small_mlds(src)
    path = src / "net2.json"
    data = json.loads(path.read_text())
    data["state_dict"] = {"fc2.weight": [[0.0, 0.0], [0.0, 0.0]], "fc.bias": [0.0, 0.0]}
    path.write_text(json.dumps(data))
    message = fails_in_one_line("mlds", src, tmp_path / "zoo", LayoutError)
    assert str(path) in message and "fc2.weight" in message


# -- 3. DEST is the importer's alone ------------------------------------------------------------


def test_a_user_directory_is_never_written(tmp_path, capsys):
    small_mlds(tmp_path / "src")
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    (dest / "shards").mkdir()
    (dest / "shards" / "photo.h5").write_bytes(b"mine too")
    argv = ["import", "mlds", str(tmp_path / "src"), str(dest)]
    err = one_line_error(capsys, argv, "InvalidOptionError", str(dest), "notes.txt", "shards")
    assert "not empty" in err
    assert sorted(p.name for p in dest.rglob("*")) == ["notes.txt", "photo.h5", "shards"]
    assert (dest / "notes.txt").read_text() == "keep me"


def test_dest_that_is_a_file_or_link_loop_is_refused(tmp_path):
    small_mlds(tmp_path / "src")
    (tmp_path / "file").write_text("x")
    message = fails_in_one_line("mlds", tmp_path / "src", tmp_path / "file", InvalidOptionError)
    assert "not a directory" in message and (tmp_path / "file").read_text() == "x"
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    message = fails_in_one_line("mlds", tmp_path / "src", tmp_path / "a", InvalidOptionError)
    assert "loop" in message


def test_dest_with_another_zoo_is_refused(tmp_path):
    small_mlds(tmp_path / "src")
    small_modelzoo(tmp_path / "other")
    import_zoo("modelzoo", tmp_path / "other", tmp_path / "zoo")
    before = shard_times(tmp_path / "zoo")
    message = fails_in_one_line("mlds", tmp_path / "src", tmp_path / "zoo", SpecMismatchError)
    assert "importer" in message and "'other'" in message
    assert shard_times(tmp_path / "zoo") == before and Manifest.load(tmp_path / "zoo").finished


def test_dest_of_the_same_zoo_resumes_and_keeps_other_files(tmp_path):
    small_mlds(tmp_path / "src")
    dest = tmp_path / "zoo"
    import_zoo("mlds", tmp_path / "src", dest)
    (dest / "README.md").write_text("my notes")
    import_zoo("mlds", tmp_path / "src", dest)
    assert (dest / "README.md").read_text() == "my notes"


def test_what_an_interrupted_writer_leaves_is_not_in_the_way(tmp_path):
    small_mlds(tmp_path / "src")
    dest = tmp_path / "zoo"
    (dest / "shards").mkdir(parents=True)
    (dest / ".lock").write_text("")
    manifest, _ = read_back(import_zoo("mlds", tmp_path / "src", dest))
    assert manifest.num_models == 3


def test_a_zoo_shard_folder_that_is_a_link_is_refused(tmp_path):
    small_mlds(tmp_path / "src")
    dest = tmp_path / "zoo"
    import_zoo("mlds", tmp_path / "src", dest)
    (dest / "shards").rename(tmp_path / "elsewhere")
    (dest / "shards").symlink_to(tmp_path / "elsewhere")
    message = fails_in_one_line("mlds", tmp_path / "src", dest, SourcePathError)
    assert "shards" in message and "link" in message


# -- 4. malformed input: one-line errors --------------------------------------------------------


def link_loop(path: Path) -> None:
    """Replace ``path`` with a link into a two-link loop."""
    if path.exists():
        path.unlink()
    partner = path.with_name(path.name + ".partner")
    path.symlink_to(partner)
    partner.symlink_to(path)


@pytest.mark.parametrize(
    ("kind", "victim"),
    [
        ("mlds", "net0.json"),
        ("mlds", "net1.pt"),
        ("cnn-zoo", "weights.npy"),
        ("modelzoo", "checkpoints"),
        ("modelzoo", "trial"),
    ],
)
def test_symlink_loops_among_sources_are_one_line_errors(tmp_path, rng, capsys, kind, victim):
    src = tmp_path / "src"
    TREES[kind](src, rng)
    if victim == "checkpoints":
        path = next(src.glob("*/checkpoint_000001/checkpoints"))
    elif victim == "trial":
        path = src / "NN_tune_trainable_0_loop"
    else:
        path = src / victim
    link_loop(path)
    argv = ["import", kind, str(src), str(tmp_path / "zoo")]
    one_line_error(capsys, argv, "SourcePathError", "symbolic link loop", path.name)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("fc.weight", [[1.0, 2.0], [3.0]], "not a regular array"),
        ("fc.weight", [["1.0", "2.0"], ["3.0", "4.0"]], "<U3 values"),
        ("fc.weight", [[True, False], [True, True]], "bool values"),
        ("fc.weight", [[1.0, None], [3.0, 4.0]], "object values"),
        ("fc.weight", [[1e39, 0.0], [0.0, 0.0]], "beyond float32"),
        ("fc.weight", [[2**70, 0], [0, 0]], "object values"),
        ("fc.weight", [], "is empty"),
        ("epoch", "last", "epoch 'last'"),
        ("epoch", 1.5, "epoch 1.5"),
        ("epoch", -3, "epoch -3"),
        ("epoch", 2**64, "is not a non-negative integer"),
        ("final_loss", "0.25", "metric 'final_loss' is the text '0.25'"),
        ("final_loss", [0.25], "a number in other networks"),
    ],
)
def test_malformed_mlds_json_values(tmp_path, capsys, field, value, words):
    src = tmp_path / "src"
    small_mlds(src)
    path = src / "net1.json"
    data = json.loads(path.read_text())
    if field == "fc.weight":
        data["state_dict"][field] = value
    else:
        data[field] = value
    path.write_text(json.dumps(data))
    argv = ["import", "mlds", str(src), str(tmp_path / "zoo")]
    one_line_error(capsys, argv, "UnreadableFileError", str(path), words)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize("where", ["weight", "metric", "seed"])
def test_non_finite_mlds_numbers_are_refused(tmp_path, capsys, number, where):
    src = tmp_path / "src"
    small_mlds(src)
    path = src / "net0.json"
    text = path.read_text()
    text = {
        "weight": text.replace("1.5", number, 1),
        "metric": text.replace('"final_loss": 0.5', f'"final_loss": {number}'),
        "seed": text.replace('"seed": 0', f'"seed": {number}'),
    }[where]
    path.write_text(text)
    argv = ["import", "mlds", str(src), str(tmp_path / "zoo")]
    one_line_error(capsys, argv, "UnreadableFileError", str(path), f"non-finite number {number}")


@pytest.mark.parametrize(
    ("file", "text", "words"),
    [
        ("params.json", "{not json", "not readable JSON"),
        ("params.json", "[1, 2]", "holds a JSON list, expected an object of hyperparameters"),
        ("params.json", '"lr=0.1"', "holds a JSON str"),
        ("params.json", '{"lr": NaN}', "non-finite number NaN"),
        ("params.json", "[" * 100_000, "not readable JSON"),
        ("params.json", '{"a\\u0000b": 1}', "holds a NUL"),
        ("params.json", '{"a": "\\ud800"}', "not UTF-8"),
        ("params.json", '{"a::b": 1, "a.b": 2}', "both become column 'param:a.b'"),
        ("params.json", b"\xff\xfe{}", "not a readable UTF-8"),
        ("config.json", "[]", "expected an object (the grid)"),
        ("config.json", "{", "not readable JSON"),
        ("result.json", '{"test_acc": 0.5}\n[1]\n', "line 2 holds a JSON list"),
        ("result.json", '{"test_acc": "0.5"}\n', "metric 'test_acc' is '0.5', not a number"),
        ("result.json", '{"test_acc": true}\n', "metric 'test_acc' is True"),
        ("result.json", '{"test_acc": 0.5}\n{oops\n', "line 2 is not readable JSON"),
    ],
)
def test_malformed_modelzoo_json(tmp_path, capsys, file, text, words):
    src = tmp_path / "src"
    small_modelzoo(src)
    path = src / file if file == "config.json" else src / "NN_tune_trainable_1" / file
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    argv = ["import", "modelzoo", str(src), str(tmp_path / "zoo")]
    one_line_error(capsys, argv, "UnreadableFileError", str(path), words)


def test_result_json_keeps_non_finite_metrics_as_nan(tmp_path):
    """Ray logs a diverged loss as NaN or Infinity: that is data, stored as NaN."""
    src = tmp_path / "src"
    small_modelzoo(src, epochs=2)
    for trial in src.glob("NN_*"):
        (trial / "result.json").write_text(
            '{"train_loss": NaN, "test_acc": 1e400}\n{"train_loss": 0.5, "test_acc": 2}\n'
        )
    _, models = read_back(import_zoo("modelzoo", src, tmp_path / "zoo"))
    for model in models.values():
        np.testing.assert_array_equal(model["metrics"]["train_loss"], [np.nan, 0.5])
        np.testing.assert_array_equal(model["metrics"]["test_acc"], [np.nan, 2.0])


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("list", "holds a list, not a state_dict"),
        ("ints", "no floating-point tensors"),
        ("nested", "no floating-point tensors"),
        ("text", "is not a torch.save file"),
        ("json", "is not a torch.save file"),
        ("truncated", "is not a readable torch.save file"),
    ],
)
def test_checkpoints_that_are_not_state_dicts(tmp_path, capsys, content, words):
    src = tmp_path / "src"
    small_modelzoo(src)
    path = src / "NN_tune_trainable_1" / "checkpoint_000000" / "checkpoints"
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buffer)
    if content == "list":
        torch.save([torch.ones(3)], path)
    elif content == "ints":
        torch.save({"w": torch.arange(3)}, path)
    elif content == "nested":
        torch.save({"model": {"w": torch.ones(3)}}, path)
    elif content == "text":
        path.write_text("these are not weights")
    elif content == "json":
        path.write_text(json.dumps({"module_list.0.weight": [[1.0]]}))
    else:
        path.write_bytes(buffer.getvalue()[:200])
    argv = ["import", "modelzoo", str(src), str(tmp_path / "zoo")]
    one_line_error(capsys, argv, "UnreadableFileError", str(path), words)


def test_checkpoints_load_only_with_weights_only(tmp_path, monkeypatch):
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    small_modelzoo(tmp_path / "mz", epochs=2)
    import_zoo("modelzoo", tmp_path / "mz", tmp_path / "zoo")
    mlds_tree(tmp_path / "ml", np.random.default_rng(1))
    import_zoo("mlds", tmp_path / "ml", tmp_path / "zoo2")
    assert len(calls) >= 4 + 3 and set(calls) == {True}


def test_bfloat16_checkpoints_import_as_float32(tmp_path):
    src = tmp_path / "src"
    small_modelzoo(src)
    for path in src.glob("*/checkpoint_*/checkpoints"):
        sd = torch.load(path, weights_only=True)
        torch.save({k: v.to(torch.bfloat16) for k, v in sd.items()}, path)
    manifest, models = read_back(import_zoo("modelzoo", src, tmp_path / "zoo"))
    sd = torch.load(src / "NN_tune_trainable_0" / "checkpoint_000000" / "checkpoints")
    row = models[0]["weights"][0]
    for tensor in manifest.layout:
        expected = sd[tensor.name].float().numpy().reshape(-1)
        np.testing.assert_array_equal(row[tensor.offset : tensor.stop], expected)


def view_of(storage_elements: int, shape, strides, offset: int = 0) -> torch.Tensor:
    """A float32 tensor of ``shape`` and ``strides`` over a storage of ``storage_elements``."""
    storage = torch.arange(storage_elements, dtype=torch.float32).untyped_storage()
    return torch.empty(0).set_(storage, offset, shape, strides)


def test_a_stride_zero_checkpoint_is_refused_before_it_is_copied(tmp_path, capsys):
    # 1.6 KB on disk, a (65536, 65536) view of one float: 16 GiB once copied
    src = tmp_path / "src"
    small_modelzoo(src)
    path = src / "NN_tune_trainable_1" / "checkpoint_000000" / "checkpoints"
    torch.save({"module_list.0.weight": view_of(1, (2**16, 2**16), (0, 0))}, path)
    assert path.stat().st_size < 4096
    argv = ["import", "modelzoo", str(src), str(tmp_path / "zoo")]
    err = one_line_error(capsys, argv, "UnreadableFileError", str(path), "'module_list.0.weight'")
    assert "needs 17179869184 bytes but its storage holds 4" in err
    assert not list((tmp_path / "zoo").rglob("*.h5"))


def test_transposed_checkpoint_tensors_import_by_value(tmp_path):
    src = tmp_path / "src"
    small_modelzoo(src)
    for path in src.glob("*/checkpoint_*/checkpoints"):
        sd = torch.load(path, weights_only=True)
        sd["module_list.0.weight"] = sd["module_list.0.weight"].T.contiguous().T  # a view
        assert not sd["module_list.0.weight"].is_contiguous()
        torch.save(sd, path)
    manifest, models = read_back(import_zoo("modelzoo", src, tmp_path / "zoo"))
    sd = torch.load(src / "NN_tune_trainable_0" / "checkpoint_000000" / "checkpoints")
    tensor = manifest.layout["module_list.0.weight"]
    row = models[0]["weights"][0, tensor.offset : tensor.stop]
    np.testing.assert_array_equal(row, sd["module_list.0.weight"].reshape(-1).numpy())


@settings(max_examples=60, deadline=None)
@given(
    storage=st.integers(1, 24),
    shape=st.lists(st.integers(0, 7), min_size=1, max_size=3),
    strides=st.lists(st.integers(0, 5), min_size=3, max_size=3),
    offset=st.integers(0, 4),
)
def test_a_view_imports_only_if_its_storage_holds_its_elements(
    tmp_path_factory, storage, shape, strides, offset
):
    from weightzoo.importers._common import load_state_dict

    value = view_of(storage, shape, strides[: len(shape)], offset)
    path = tmp_path_factory.mktemp("views") / "checkpoints"
    torch.save({"w": value}, path)
    if value.numel() * 4 <= value.untyped_storage().nbytes():  # set_ may have grown it
        event("imported")
        np.testing.assert_array_equal(load_state_dict(path)["w"], value.numpy())
        return
    event("refused")
    with pytest.raises(UnreadableFileError, match=r"tensor 'w' of shape .* needs \d+ bytes"):
        load_state_dict(path)


def rewrite_metrics(root: Path, edit) -> None:
    """Apply ``edit(rows)`` to ``metrics.csv.gz`` (a list of dict rows, header from row 0)."""
    with gzip.open(root / "metrics.csv.gz", "rt") as handle:
        rows = list(csv.DictReader(handle))
    rows = edit(rows)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    with gzip.open(root / "metrics.csv.gz", "wt") as handle:
        handle.write(text.getvalue())


def _set(rows, index, key, value):
    rows[index][key] = value
    return rows


@pytest.mark.parametrize(
    ("edit", "error", "words"),
    [
        (lambda r: _set(r, 3, "test_accuracy", "high"), UnreadableFileError, "'high', not a num"),
        (lambda r: _set(r, 2, "step", "last"), UnreadableFileError, "epoch 'last'"),
        (lambda r: _set(r, 2, "step", "1.5"), UnreadableFileError, "epoch 1.5"),
        (lambda r: _set(r, 4, "step", "0"), UnreadableFileError, "has step 0 twice"),
        (lambda r: [*r, r[0]], LayoutError, "has more than 8 rows"),
        (lambda r: r[:-1], LayoutError, "has 7 rows but weights.npy has 8"),
    ],
)
def test_malformed_cnn_zoo_metrics(tmp_path, rng, edit, error, words):
    src = tmp_path / "src"
    cnn_zoo_tree(src, rng)
    rewrite_metrics(src, edit)
    message = fails_in_one_line("cnn-zoo", src, tmp_path / "zoo", error)
    assert "metrics.csv.gz" in message and words in message


def test_an_empty_metric_cell_is_nan(tmp_path, rng):
    src = tmp_path / "src"
    cnn_zoo_tree(src, rng)
    rewrite_metrics(src, lambda r: _set(r, 1, "test_accuracy", ""))
    _, models = read_back(import_zoo("cnn-zoo", src, tmp_path / "zoo"))
    values = np.concatenate([m["metrics"]["test_accuracy"] for m in models.values()])
    assert np.isnan(values).sum() == 1


@pytest.mark.parametrize(
    "data",
    [b"not gzip at all", gzip.compress(b"modeldir,step\n")[:-9], gzip.compress(b"a,b\n1,\xff\n")],
    ids=["not-gzip", "truncated", "not-utf8"],
)
def test_unreadable_metrics_files(tmp_path, rng, data):
    src = tmp_path / "src"
    cnn_zoo_tree(src, rng)
    (src / "metrics.csv.gz").write_bytes(data)
    message = fails_in_one_line("cnn-zoo", src, tmp_path / "zoo", UnreadableFileError)
    assert "metrics.csv.gz" in message


# -- 5. sizes are checked before anything is allocated ------------------------------------------


def write_npy_header(path: Path, shape: tuple[int, ...], descr: str = "<f4") -> None:
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": descr, "fortran_order": False, "shape": shape}
        )
        handle.write(b"\0" * 64)


@pytest.mark.parametrize("shape", [(10**6, 10**6), (2**40, 2**40), (8, 29)])
def test_npy_headers_declaring_more_than_the_file_holds(tmp_path, rng, capsys, shape):
    src = tmp_path / "src"
    cnn_zoo_tree(src, rng)
    write_npy_header(src / "weights.npy", shape)
    tracemalloc.start()
    try:
        message = fails_in_one_line("cnn-zoo", src, tmp_path / "zoo", UnreadableFileError)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"declares shape {shape}" in message and peak < 20 * 2**20
    argv = ["import", "cnn-zoo", str(src), str(tmp_path / "zoo")]
    one_line_error(capsys, argv, "weights.npy", "declares shape")  # no numpy warning either


@pytest.mark.parametrize(("descr", "words"), [("<U4", "not numbers"), ("<c8", "not numbers")])
def test_npy_of_text_or_complex_is_refused(tmp_path, rng, descr, words):
    src = tmp_path / "src"
    cnn_zoo_tree(src, rng)
    np.save(src / "weights.npy", np.zeros((8, 29), dtype=descr))
    message = fails_in_one_line("cnn-zoo", src, tmp_path / "zoo", UnreadableFileError)
    assert "weights.npy" in message and words in message


def rewrite_layout(root: Path, rows: list[list[object]]) -> None:
    with open(root / "layout.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["varname", "start_idx", "end_idx", "shape"])
        writer.writerows(rows)


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        ([["v/k:0", 0, 10**15, "(1000000000000000,)"]], "needs rows of 1000000000000000"),
        ([["v/k:0", 0, 0, str((2**32, 2**32))]], "spans [0, 0) for shape"),
        ([["v/k:0", -4, 0, "(4,)"]], "spans [-4, 0)"),
        ([["v/k:0", 0, 0, "(0,)"]], "positive dimensions"),
        ([["v/k:0", 0, 4, "(2, 2)"], ["w/k:0", 2, 6, "(4,)"]], "must not overlap"),
        ([["v/k:0", 0, 4, "(" * 10_000]], "bad row"),
        ([["v/k:0", 0, 4, "'four'"]], "bad row"),
    ],
)
def test_absurd_layout_csv_is_refused_before_allocating(tmp_path, rng, rows, words):
    src = tmp_path / "src"
    cnn_zoo_tree(src, rng)
    rewrite_layout(src, rows)
    tracemalloc.start()
    try:
        message = fails_in_one_line("cnn-zoo", src, tmp_path / "zoo", LayoutError)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "layout.csv" in message or "weights.npy" in message
    assert words in message and peak < 20 * 2**20


# -- hypothesis: any JSON in place of a source file or field ------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=10,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_counter = itertools.count()


def import_or_named_error(kind: str, src: Path, dest: Path) -> Manifest | None:
    """The import's manifest, or ``None`` after a WeightzooError with a one-line message."""
    try:
        manifest = Manifest.load(import_zoo(kind, src, dest))
    except WeightzooError as exc:
        message = str(exc)
        event(f"refused: {type(exc).__name__}")
    else:
        event("imported")
        return manifest
    assert message and "\n" not in message, message
    return None


def expected_column(value: object) -> object:
    """How one value, the same in every model, reads back from its column."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)) or (isinstance(value, int) and abs(value) >= 2**63):
        return json.dumps(value)  # containers as JSON text, integers beyond int64 as digits
    return value


@FUZZ
@given(params=st.one_of(json_values, json_objects))
def test_any_params_json_imports_or_is_a_named_error(tmp_path, params):
    run_id = next(_counter)
    src, dest = tmp_path / f"src{run_id}", tmp_path / f"zoo{run_id}"
    small_modelzoo(src)
    for trial in src.glob("NN_*"):
        (trial / "params.json").write_text(json.dumps(params))
    if import_or_named_error("modelzoo", src, dest) is None:
        return
    assert isinstance(params, dict)  # anything else must have been refused
    _, models = read_back(dest)
    for key, value in params.items():
        column = ("param:" + key).replace("::", ".").replace("/", "_")  # the stored name
        for model in models.values():
            assert model["columns"][column] == expected_column(value)


@FUZZ
@given(
    field=st.sampled_from(["fc.weight", "epoch", "seed", "machine", "final_loss", "<file>"]),
    value=json_values,
)
def test_any_mlds_field_imports_or_is_a_named_error(tmp_path, field, value):
    run_id = next(_counter)
    src, dest = tmp_path / f"src{run_id}", tmp_path / f"zoo{run_id}"
    small_mlds(src)
    path = src / "net1.json"
    data = json.loads(path.read_text())
    if field == "<file>":
        data = value
    elif field == "fc.weight":
        data["state_dict"]["fc.weight"] = value
    else:
        data[field] = value
    path.write_text(json.dumps(data))
    manifest = import_or_named_error("mlds", src, dest)
    if manifest is None:
        return
    _, models = read_back(dest)
    assert manifest.num_models == 3
    net1 = next(m for m in models.values() if m["columns"]["file"] == "net1.json")
    if field == "fc.weight":
        tensor = manifest.layout["fc.weight"]
        got = net1["weights"][0, tensor.offset : tensor.stop]
        np.testing.assert_array_equal(got, np.asarray(value, dtype=np.float32).reshape(-1))
    elif field == "final_loss" and isinstance(value, (int, float)) and abs(value) < 1e38:
        assert net1["metrics"]["final_loss"][0] == np.float32(value)
    elif field == "epoch":
        assert manifest.epochs == [int(value)]


# -- the command line ---------------------------------------------------------------------------


def test_cli_process_reports_one_line_and_exit_1(tmp_path):
    src = tmp_path / "src"
    small_mlds(src)
    (src / "net1.json").write_text('{"state_dict": {"fc.weight": [[1, 2], [3]]}}')
    result = subprocess.run(
        [sys.executable, "-m", "weightzoo.cli", "import", "mlds", str(src), str(tmp_path / "z")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "UnreadableFileError" in lines[0] and "net1.json" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_metrics_line_that_inflates_without_bound_is_refused(tmp_path, rng):
    """A small gzip file whose one header line inflates to tens of MB is refused by its length."""
    src = tmp_path / "src"
    cnn_zoo_tree(src, rng)
    columns = 5_000_000  # 10 MB of header from a few kB of gzip
    with gzip.open(src / "metrics.csv.gz", "wb", compresslevel=9) as handle:
        handle.write(b"modeldir,step," + b"x," * columns + b"y\n")
    assert (src / "metrics.csv.gz").stat().st_size < 100_000
    tracemalloc.start()
    with pytest.raises(UnreadableFileError, match="line of more than"):
        import_zoo("cnn-zoo", src, tmp_path / "zoo")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 32 << 20
    assert not (tmp_path / "zoo" / "zoo.json").exists()
