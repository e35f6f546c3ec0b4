"""`weightzoo fetch NAME`: a catalog zoo from its first source (hub, original release, generate).

The original releases are served by tests/helpers/source_server.py (Zenodo's records API on
127.0.0.1), the hub copy by tests/helpers/hub_server.py, both through the real clients. The
catalog's own record ids are used: the loopback server publishes them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import weightzoo
from helpers.hub_server import LoopbackHub, point_client_at
from helpers.importer_fixtures import cnn_zoo_tree, modelzoo_tree, one_line_error, read_back
from helpers.source_server import SourceServer
from weightzoo import catalog
from weightzoo.cli import run
from weightzoo.errors import HubError
from weightzoo.families.modelzoo.importer import import_modelzoo

NAME = "modelzoo-mnist-cnn-s-seed"
CONCEPT = "6632086"  # the Model Zoos' MNIST CNN-s concept record, as the catalog has it
VERSION = "6632099"  # a version the loopback server publishes under it


@pytest.fixture(scope="module")
def _zenodo_server():
    with SourceServer() as state:
        yield state


@pytest.fixture
def zenodo(_zenodo_server, monkeypatch, tmp_path):
    """The loopback Zenodo, emptied, as the endpoint; fetched zoos default under tmp_path."""
    _zenodo_server.reset()
    monkeypatch.setenv("WEIGHTZOO_ZENODO_ENDPOINT", _zenodo_server.url)
    monkeypatch.setenv("WEIGHTZOO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WEIGHTZOO_HTTP_MIRROR", raising=False)
    return _zenodo_server


@pytest.fixture(scope="module")
def published_zip(tmp_path_factory) -> tuple[bytes, dict]:
    """A Model Zoos zip (six trials, checkpoints 0-2) and the truth it was built from."""
    root = tmp_path_factory.mktemp("release")
    truth = modelzoo_tree(root / "mnist_seed", np.random.default_rng(7))
    base = shutil.make_archive(str(root / "zip"), "zip", root, "mnist_seed")
    return Path(base).read_bytes(), truth


def _publish(zenodo, files: dict[str, bytes]) -> None:
    zenodo.add_record("6632090", {"old_seed.zip": b"PK\x05\x06" + bytes(18)}, concept=CONCEPT)
    zenodo.add_record(VERSION, files, concept=CONCEPT)


def _file_gets(zenodo) -> list[str]:
    return [p for m, p, _, _ in zenodo.requests if m == "GET" and p.endswith("/content")]


def _expected(info: dict, epoch: int, keys: list[str]) -> np.ndarray:
    return np.concatenate([info["ckpts"][epoch][k].numpy().reshape(-1) for k in keys])


# -- the original release ---------------------------------------------------------------------


def test_a_catalog_name_converts_the_zip_its_listing_names_and_says_which_source(
    zenodo, published_zip, tmp_path, capsys
):
    data, truth = published_zip
    _publish(zenodo, {"mnist_seed.zip": data, "mnist_hyp_rand.zip": data, "README.md": b"x"})
    out = tmp_path / "zoos" / "mnist"
    assert run(["fetch", NAME, "--out", str(out), "--epochs", "2", "--split", "train"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    said = captured.err.strip()
    assert len(said.splitlines()) == 1 and said.startswith(f"{NAME}: 6 models x 1 checkpoints")
    assert f"from zenodo:{VERSION}/mnist_seed.zip" in said and "range requests" in said
    assert "every split kept: pass split='train' when reading" in said
    # only the file the catalog maps to was read, from the latest version
    assert {p.split("/")[-2] for p in _file_gets(zenodo)} == {"mnist_seed.zip"}

    manifest, models = read_back(out)
    assert manifest.name == NAME and manifest.epochs == [2] and manifest.num_models == 6
    for model in models.values():
        info = truth[model["columns"]["trial"]]
        keys = json.loads(model["columns"]["state_dict_keys"])
        np.testing.assert_array_equal(model["weights"][0], _expected(info, 2, keys))
        # matched by training_iteration: the whole result.json was read for one checkpoint
        assert model["metrics"]["test_acc"][0] == pytest.approx(0.2 + info["i"] / 100)
    source = json.loads((out / "source.json").read_text())
    assert (source["catalog"], source["record"], source["requested"]) == (NAME, VERSION, CONCEPT)
    assert source["partial"] and "arXiv:2209.14764" in source["cite"][0]


def test_the_default_folder_is_under_weightzoo_home_and_is_named(
    zenodo, published_zip, tmp_path, capsys
):
    _publish(zenodo, {"mnist_seed.zip": published_zip[0]})
    zenodo.ranges = False  # the whole zip, md5-verified
    assert run(["fetch", NAME, "--models", "2", "--epochs", "last"]) == 0
    captured = capsys.readouterr()
    home = tmp_path / "home" / "zoos" / NAME
    assert captured.out.strip() == str(home)
    assert "downloaded" in captured.err and "checksum verified" in captured.err
    assert f"into {home}, the default folder ($WEIGHTZOO_HOME/zoos; --out DIR)" in captured.err
    manifest, _ = read_back(home)
    assert manifest.num_models == 2 and manifest.epochs == [2]
    assert sorted(p.name for p in home.parent.iterdir()) == [NAME]  # no work folder left
    requests = len(zenodo.requests)
    one_line_error(capsys, ["fetch", NAME], "InvalidOptionError", f"{home} already holds a zoo")
    assert len(zenodo.requests) == requests  # refused before any request


@pytest.mark.parametrize(
    ("files", "words"),
    [
        (
            {"mnist_seed.zip": b"a", "mnist_seed_v2.zip": b"b"},
            ["several zips that may hold", "mnist_seed.zip, mnist_seed_v2.zip"],
        ),
        (
            {"mnist_hyp_rand.zip": b"a", "mnist_hyp_fix.zip": b"b", "index.json": b"{}"},
            ["no zip whose name marks it as", "its zips: mnist_hyp_rand.zip, mnist_hyp_fix.zip"],
        ),
        ({"mnist.pt": b"a", "index.json": b"{}"}, ["holds no zip", "mnist.pt, index.json"]),
    ],
    ids=["several", "none-fits", "no-zip"],
)
def test_an_uncertain_mapping_is_one_line_naming_each_candidate_and_its_command(
    zenodo, tmp_path, capsys, files, words
):
    _publish(zenodo, files)
    out = tmp_path / "z"
    err = one_line_error(capsys, ["fetch", NAME, "--out", str(out)], "SourceNotFoundError", *words)
    assert f"zenodo:{VERSION} (the latest version of {CONCEPT})" in err
    zips = [k for k in files if k.endswith(".zip")]
    for key in zips:
        assert f"`weightzoo fetch zenodo:{VERSION}/{key} --out {out}`" in err
    assert _file_gets(zenodo) == [] and not out.exists()  # nothing downloaded, nothing written


# -- the hub copy first -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def _hub_server():
    with LoopbackHub() as fake:
        yield fake


@pytest.fixture
def hub(_hub_server, monkeypatch, tmp_path):
    """The loopback hub, emptied, and the catalog's NAME given a hub copy there."""
    _hub_server.reset()
    point_client_at(_hub_server.url, monkeypatch, tmp_path / "hf_home")
    entries = catalog._entries

    def with_hub_copy() -> list[catalog.CatalogEntry]:
        return [
            dataclasses.replace(e, hub_repo="lab/mnist-seed") if e.name == NAME else e
            for e in entries()
        ]

    monkeypatch.setattr(catalog, "_entries", with_hub_copy)
    return _hub_server


def _tree(zoo: Path) -> dict[str, bytes]:
    return {p.relative_to(zoo).as_posix(): p.read_bytes() for p in zoo.rglob("*") if p.is_file()}


def test_the_hub_copy_is_tried_first_and_the_release_when_it_fails(
    hub, zenodo, toy_zoo, published_zip, tmp_path, capsys
):
    assert [s.kind for s in catalog.get_entry(NAME).sources] == ["hub", "zenodo", "generate"]
    hub.commit("lab/mnist-seed", _tree(toy_zoo))
    _publish(zenodo, {"mnist_seed.zip": published_zip[0]})
    local = tmp_path / "from-hub"
    assert run(["fetch", NAME, "--local-dir", str(local), "--split", "test"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(local)
    # the last line (after the hub's progress bars) names the source
    assert captured.err.strip().splitlines()[-1] == f"{NAME}: from the hub copy lab/mnist-seed"
    assert {p.name for p in (local / "shards").iterdir()} == {
        p.name for p in (toy_zoo / "shards").glob("test-*")
    }
    assert zenodo.requests == []  # the release was never asked

    # --models cannot cut a hub copy: the release is read instead, and a missing hub repo
    # gives way to the release too
    for argv, name in ((["--models", "2"], "cut"), ([], "missing")):
        if name == "missing":
            hub.reset()
        out = tmp_path / name
        assert run(["fetch", NAME, "--out", str(out), "--epochs", "last", *argv]) == 0
        assert f"from zenodo:{VERSION}/mnist_seed.zip" in capsys.readouterr().err
        assert read_back(out)[0].name == NAME


def test_python_hub_fetch_of_a_zoo_without_a_hub_copy_points_at_its_release():
    with pytest.raises(HubError) as raised:
        weightzoo.fetch(NAME)
    text = str(raised.value)
    assert f"`weightzoo fetch {NAME}` converts its original release (zenodo:{CONCEPT}" in text
    assert f"`weightzoo generate {NAME}` trains it (needs the mnist data files" in text


# -- generation only, options none of the sources takes ---------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["mlds-ds1"], ["`weightzoo generate mlds-ds1`", "(offline, from its spec)"]),
        (
            ["trajectory-mnist-mlp", "--out", "d"],
            ["`weightzoo generate trajectory-mnist-mlp --out d`", "needs the mnist data files"],
        ),
    ],
)
def test_a_zoo_only_generated_names_the_generate_command(zenodo, capsys, argv, words):
    one_line_error(capsys, ["fetch", *argv], "SourceNotFoundError", "no copy to download", *words)
    assert zenodo.requests == []


def test_options_no_source_of_the_zoo_takes_are_refused_before_any_request(zenodo, capsys):
    one_line_error(
        capsys,
        ["fetch", NAME, "--revision", "main"],
        "InvalidOptionError",
        "--revision apply to hub copies; modelzoo-mnist-cnn-s-seed has none (its sources: "
        "zenodo, generate)",
    )
    one_line_error(
        capsys, ["fetch", "smallcnnzoo-svhn", "--epochs", "5"], "InvalidOptionError", "--epochs 5"
    )
    one_line_error(capsys, ["fetch", "modelzoo-mnist-cnn-s-sed"], "UnknownZooError", NAME)
    assert zenodo.requests == []


# -- the Small CNN Zoo's bucket ---------------------------------------------------------------


def test_a_bucket_release_goes_to_the_small_cnn_zoo_converter(monkeypatch, tmp_path, capsys):
    """The converter may not be installed yet: a stand-in records how it is called."""
    calls = []

    def stand_in(url, out, *, split_csv_url, models, progress):
        calls.append((url, Path(out), split_csv_url, models, progress))
        Path(out).mkdir(parents=True)
        return Path(out)

    try:
        import weightzoo.sources.smallcnn as module
    except ImportError:
        module = types.ModuleType("weightzoo.sources.smallcnn")
        monkeypatch.setitem(sys.modules, "weightzoo.sources.smallcnn", module)
    monkeypatch.setattr(module, "fetch_small_cnn_zoo", stand_in, raising=False)

    out = tmp_path / "svhn"
    assert run(["fetch", "smallcnnzoo-svhn", "--out", str(out), "--models", "3"]) == 0
    bucket = "https://storage.googleapis.com/gresearch/smallcnnzoo-dataset/svhn_cropped.tar.xz"
    splits = (
        "https://raw.githubusercontent.com/AllanYangZhou/nfn/main/experiments/"
        "predict_gen_data_splits/svhn_split.csv"
    )
    assert calls == [(bucket, out, splits, 3, False)]
    err = capsys.readouterr().err
    assert f"smallcnnzoo-svhn: from the original release {bucket}, splits from {splits}" in err


def test_a_bucket_release_is_converted_through_the_mirror(zenodo, monkeypatch, tmp_path, capsys):
    pytest.importorskip("weightzoo.sources.smallcnn")
    weights = cnn_zoo_tree(tmp_path / "mnist", np.random.default_rng(3))
    archive = tmp_path / "mnist.tar.xz"
    with tarfile.open(archive, "w:xz", preset=0) as tar:
        tar.add(tmp_path / "mnist", arcname="mnist")
    zenodo.objects["/gresearch/smallcnnzoo-dataset/mnist.tar.xz"] = archive.read_bytes()
    monkeypatch.setenv("WEIGHTZOO_HTTP_MIRROR", zenodo.url)  # the bucket, served locally
    out = tmp_path / "zoo"
    assert run(["fetch", "smallcnnzoo-mnist", "--out", str(out)]) == 0
    assert "smallcnnzoo-mnist: from the original release https://storage" in capsys.readouterr().err
    manifest, models = read_back(out)
    assert manifest.num_models == 4 and manifest.epochs == [0, 100]
    assert sorted(float(m["weights"][0].sum()) for m in models.values()) == pytest.approx(
        sorted(float(weights[row].sum()) for row in range(4))  # the step-0 rows, any layout
    )


# -- weightzoo list ---------------------------------------------------------------------------


def test_list_shows_each_zoos_sources_within_100_columns(monkeypatch, capsys):
    # the widest row: the longest name with every kind of source
    longest = max(catalog.entries(), key=lambda e: len(e.name)).name
    entries = catalog._entries
    monkeypatch.setattr(
        catalog,
        "_entries",
        lambda: [
            dataclasses.replace(e, hub_repo="lab/x") if e.name == longest else e for e in entries()
        ],
    )
    assert run(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 100
    rows = {line.split()[0]: line for line in lines}
    assert rows[longest].endswith("  hub,zenodo,generate")
    assert rows[NAME].endswith("  zenodo,generate")
    assert rows["mlds-ds1"].endswith("  generate")
    assert rows["smallcnnzoo-cifar10"].split()[2:5] == ["30000", "9", "4970"]
    assert rows["smallcnnzoo-cifar10"].endswith("  bucket")

    assert run(["list", "--json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert {e.name for e in catalog.entries()} <= set(listed)
    zenodo_source = listed[NAME]["sources"][0]
    assert zenodo_source["record"] == CONCEPT and zenodo_source["license"] == "CC-BY-4.0"
    assert listed["smallcnnzoo-svhn"]["sources"][0]["split_csv_url"].endswith("svhn_split.csv")
    for family in sorted({row["family"] for row in listed.values()}):
        assert run(["list", "--family", family]) == 0, family
        shown = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
        assert shown >= {n for n, row in listed.items() if row["family"] == family}
    one_line_error(capsys, ["list", "--family", "nope"], "InvalidOptionError", "smallcnnzoo")


# -- ModelZoo(download=True) ------------------------------------------------------------------


def test_model_zoo_download_fetches_the_release_once(zenodo, published_zip, tmp_path):
    data, truth = published_zip
    _publish(zenodo, {"mnist_seed.zip": data})
    root = tmp_path / "zoos"
    train = weightzoo.ModelZoo(root, dataset="mnist", architecture="cnn-s", download=True)
    assert (root / NAME / "source.json").is_file()
    assert len(train) > 0 and train.zoo.manifest.epochs == [2]  # epochs="last" by default
    for index in range(len(train)):
        item = train[index]
        local = train.model_indices[index]
        trial = train.reader.column("trial")[local]
        keys = json.loads(train.reader.column("state_dict_keys")[local])
        expected = _expected(truth[str(trial)], 2, keys)
        np.testing.assert_array_equal(item["weights"].numpy(), expected)
    before = len(zenodo.requests)
    weightzoo.ModelZoo(root, dataset="mnist", architecture="cnn-s", download=True, split="test")
    assert len(zenodo.requests) == before  # already there: no request


# -- result lines matched by training_iteration ------------------------------------------------


def _trial_tree(root: Path, kept: list[int], order: list[int], key: str | None) -> None:
    """Two trials with checkpoints ``kept`` of 0-5 and result lines for 1-5 in ``order``."""
    root.mkdir()
    for t in range(2):
        trial = root / f"trial_{t}"
        trial.mkdir()
        (trial / "params.json").write_text(json.dumps({"seed": t}))
        for epoch in kept:
            (trial / f"checkpoint_{epoch:06d}").mkdir()
            sd = {"fc.weight": torch.full((2, 2), float(epoch)), "fc.bias": torch.zeros(2)}
            torch.save(sd, trial / f"checkpoint_{epoch:06d}" / "checkpoints")
        lines = [{**({key: e} if key else {}), "test_acc": e / 10 + t / 100} for e in range(1, 6)]
        text = "".join(json.dumps(lines[i]) + "\n" for i in order)
        (trial / "result.json").write_text(text)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kept=st.lists(st.integers(0, 5), min_size=1, max_size=6, unique=True).map(sorted),
    order=st.permutations(range(5)),
    key=st.sampled_from(["training_iteration", "epoch"]),
)
def test_result_lines_meet_their_checkpoints_by_iteration_whatever_is_kept(
    tmp_path_factory, kept, order, key
):
    work = tmp_path_factory.mktemp("iter")
    _trial_tree(work / "src", kept, list(order), key)
    import_modelzoo(work / "src", work / "zoo")
    manifest, models = read_back(work / "zoo")
    assert manifest.epochs == kept
    for model in models.values():
        t = int(model["columns"]["seed"])
        for position, epoch in enumerate(kept):
            expected = np.nan if epoch == 0 else epoch / 10 + t / 100  # no line for epoch 0
            np.testing.assert_allclose(model["metrics"]["test_acc"][position], expected)


def test_lines_without_an_iteration_are_still_matched_by_position(tmp_path):
    _trial_tree(tmp_path / "src", [0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4], None)
    import_modelzoo(tmp_path / "src", tmp_path / "zoo")
    _, models = read_back(tmp_path / "zoo")
    for model in models.values():
        t = int(model["columns"]["seed"])
        expected = [np.nan] + [e / 10 + t / 100 for e in range(1, 6)]  # shifted by one
        np.testing.assert_allclose(model["metrics"]["test_acc"], expected)
