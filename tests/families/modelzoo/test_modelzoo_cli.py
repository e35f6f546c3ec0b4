"""End to end, offline: `weightzoo generate` on digits, `weightzoo list`, the Datasets, determinism.

The digits splits are cut to a few hundred images (the training code is the real one) so that
these tests stay fast; torch runs one thread, since tiny models gain nothing from more and a
shared machine makes extra threads spin.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import weightzoo
from helpers.small_splits import cut_image_splits
from weightzoo.architectures.image import cnn_small
from weightzoo.cli import run
from weightzoo.features import load_vector
from weightzoo.generate.runner import generate
from weightzoo.generate.specs import all_specs, get_spec
from weightzoo.imagesets import splits as image_splits

TRAIN, HELD_OUT = 200, 60


@pytest.fixture
def small_digits():
    """Cut the digits splits to TRAIN / HELD_OUT / HELD_OUT images."""
    with cut_image_splits(TRAIN, HELD_OUT):
        yield


def _manifest(path):
    return json.loads((path / "zoo.json").read_text())


def test_cli_generate_digits_and_read_it_back(small_digits, tmp_path, capsys):
    root = tmp_path / "zoos"
    out = root / "modelzoo-digits-cnn-s-seed"
    argv = ["generate", "modelzoo-digits-cnn-s-seed", "--models", "4", "--train-epochs", "2"]
    assert run([*argv, "--out", str(out)]) == 0
    assert f"wrote modelzoo-digits-cnn-s-seed to {out}: 4 models" in capsys.readouterr().out
    manifest = _manifest(out)
    assert manifest["epochs"] == [0, 1, 2]
    assert manifest["spec"]["models"] == 4 and manifest["spec"]["epochs"] == 2
    assert sum(manifest["split_counts"].values()) == 4

    zoo = weightzoo.ModelZoo(
        root,
        dataset="digits",
        architecture="cnn-s",
        config="seed",
        split="all",
        epochs="all",
        features=("weights", "stats"),
        targets=("test_acc", "seed"),
    )
    assert len(zoo) == 4 * 3
    batch = zoo.batch(list(range(len(zoo))))
    assert batch["weights"].shape == (12, 2464)
    assert batch["stats"].shape[0] == 12 and torch.isfinite(batch["stats"]).all()
    assert sorted(set(batch["seed"].tolist())) == [1, 2, 3, 4]
    assert ((batch["test_acc"] >= 0) & (batch["test_acc"] <= 1)).all()
    # a stored row is the real network: loaded into CNN-s it reproduces the stored test_acc
    last = weightzoo.ModelZoo(
        root,
        dataset="digits",
        config="seed",
        split="all",
        epochs="last",
        targets="test_acc",
        ids=True,
    )
    assert len(last) == 4
    item = last[0]
    assert item["epoch"].item() == 2
    net = load_vector(
        cnn_small(1, activation="tanh").eval(), item["weights"], last.zoo.manifest.layout
    )
    _, _, (test_x, test_y) = image_splits.load_splits("digits", None, 28, True, 0.15, 42)
    with torch.no_grad():
        acc = (net(torch.from_numpy(test_x)).argmax(1) == torch.from_numpy(test_y)).double().mean()
    assert abs(acc.item() - item["test_acc"].item()) < 1e-6

    # rerunning the same command resumes: nothing to train, same manifest
    assert run([*argv, "--out", str(out)]) == 0
    assert _manifest(out)["shards"] == manifest["shards"]


def test_same_spec_same_zoo(small_digits, tmp_path):
    spec = get_spec("modelzoo-digits-cnn-s-hyp-10-rand").override(models=3, epochs=1)
    first = generate(spec, tmp_path / "a", progress=False)
    second = generate(spec, tmp_path / "b", progress=False)
    assert [s.sha256 for s in first.shards] == [s.sha256 for s in second.shards]
    assert first.spec_fingerprint == second.spec_fingerprint
    a = weightzoo.ZooDataset(tmp_path / "a", split="all", epochs="all")
    b = weightzoo.ZooDataset(tmp_path / "b", split="all", epochs="all")
    idx = list(range(len(a)))
    assert torch.equal(a.batch(idx)["weights"], b.batch(idx)["weights"])


def test_trajectories_on_a_generated_trajectory_zoo(small_digits, tmp_path):
    spec = get_spec("trajectory-digits-cnn").override(models=4, epochs=2)
    generate(spec, tmp_path / spec.name, progress=False)
    seqs = weightzoo.Trajectories(tmp_path / spec.name, split="all", targets="test_acc")
    assert len(seqs) == 4
    item = seqs[0]
    assert item["weights"].shape == (3, 1410)
    assert item["epoch"].tolist() == [0, 1, 2] and item["test_acc"].shape == (3,)
    pairs = weightzoo.TrajectoryZoo(
        tmp_path, dataset="digits", architecture="cnn", split="all", mode="pairs"
    )
    assert len(pairs) == 4 * 2
    assert torch.equal(pairs[1]["weights"][0], item["weights"][1])
    # checkpoints move during training: consecutive rows differ
    assert not torch.equal(item["weights"][0], item["weights"][1])


def test_list_shows_every_spec_with_a_size(capsys):
    assert run(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    ours = [s for s in all_specs().values() if s.family in ("modelzoo", "trajectory")]
    assert len(ours) == 33  # 27 of Table 1 + 2 digits + 4 trajectory
    for spec in ours:
        row = rows[spec.name]
        estimate = spec.estimate()
        assert row[1] == spec.family
        assert row[2:5] == [
            str(estimate["models"]),
            str(estimate["checkpoints"]),
            str(estimate["params"]),
        ]
        assert row[6] in ("KB", "MB", "GB", "TB")
    assert rows["modelzoo-digits-cnn-s-seed"][2:5] == ["1000", "21", "2464"]
    assert rows["trajectory-digits-cnn"][2:5] == ["250", "51", "1410"]


def test_generate_unknown_option_and_name_fail_cleanly(capsys):
    assert run(["generate", "modelzoo-digits-cnn-s-seed", "--per-class", "3"]) == 1
    assert "does not accept the options ['per_class']" in capsys.readouterr().err
    assert run(["generate", "modelzoo-digits-cnn-s-sed"]) == 1
    assert "Did you mean modelzoo-digits-cnn-s-seed" in capsys.readouterr().err


def test_generate_missing_mnist_names_the_files(tmp_path, capsys):
    argv = ["generate", "modelzoo-mnist-cnn-s-seed", "--models", "1", "--train-epochs", "1"]
    assert run([*argv, "--out", str(tmp_path / "z"), "--data-dir", str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and "DataFilesMissingError" in err
    assert np.all([not p.suffix == ".h5" for p in (tmp_path / "z").rglob("*")])
