"""Sparsified twins on a tiny digits zoo: format, metrics, resume, determinism and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import weightzoo
from helpers.small_splits import cut_image_splits
from weightzoo.architectures.image import cnn_small
from weightzoo.cli import run
from weightzoo.errors import WeightzooError
from weightzoo.families.modelzoo import sparsify as sp
from weightzoo.features import load_vector
from weightzoo.generate.runner import generate
from weightzoo.generate.specs import get_spec
from weightzoo.imagesets import splits as image_splits
from weightzoo.storage.manifest import Manifest

# a high learning rate and no KL warm-up, so that two epochs on 200 images already prune
FAST = sp.SparsifySettings(lr=0.03, kl_warmup=0, block_models=2)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A 3-model, 1-epoch digits CNN-s zoo on 200 training and 60 val/test images.

    The digits splits stay cut for the whole module, so the twins train on the same data.
    """
    with cut_image_splits(200, 60):
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        spec = get_spec("modelzoo-digits-cnn-s-seed").override(models=3, epochs=1)
        path = tmp_path_factory.mktemp("zoos") / spec.name
        generate(spec, path, progress=False)
        torch.set_num_threads(before)
        yield path


def test_twin_format_and_metrics(source, tmp_path):
    twin = sp.sparsify_zoo(source, tmp_path / "twin", epochs=2, progress=False, settings=FAST)
    src = Manifest.load(source)
    assert twin.name == "modelzoo-digits-cnn-s-seed-sparse"
    assert twin.layout == src.layout and twin.epochs == [0, 1, 2]
    assert "sparsity" in twin.metrics and "test_acc" in twin.metrics
    assert twin.num_models == 3 and twin.split_counts == src.split_counts
    assert [(s.split, s.models) for s in twin.shards] == [("train", (0, 2)), ("val", (2, 3))]

    a = weightzoo.Zoo(source).reader("all", "last")
    b = weightzoo.Zoo(tmp_path / "twin").reader("all", "all")
    assert np.array_equal(a.column("model_id"), b.column("model_id"))
    assert np.array_equal(a.column("seed"), b.column("seed"))
    models = np.arange(3)
    # checkpoint 0 is the source model itself
    src_rows = a.read("weights", models, np.zeros(3, dtype=np.int64))
    assert np.array_equal(b.read("weights", models, np.zeros(3, dtype=np.int64)), src_rows)
    sparsity = b.metrics["sparsity"]
    assert (sparsity[:, 0] == 0).all() and (sparsity[:, -1] > 0.05).all()
    assert ((sparsity >= 0) & (sparsity <= 1)).all()
    # the sparsity metric is the share of exactly-zero conv / linear weights in the stored rows
    last = b.read("weights", models, np.full(3, 2))
    weight_cols = np.concatenate(
        [np.arange(t.offset, t.stop) for t in twin.layout if t.name.endswith("weight")]
    )
    zeros = (last[:, weight_cols] == 0).mean(1)
    assert np.allclose(zeros, sparsity[:, -1], atol=1e-6)
    assert np.isfinite(b.metrics["test_acc"]).all()

    # a stored row is the masked network that was evaluated
    (_, _), (_, _), (tx, ty) = image_splits.load_splits("digits", None, 28, True, 0.15, 42)
    net = load_vector(cnn_small(1, activation="tanh").eval(), last[0], twin.layout)
    with torch.no_grad():
        acc = (net(torch.from_numpy(tx)).argmax(1) == torch.from_numpy(ty)).double().mean()
    assert abs(acc.item() - b.metrics["test_acc"][0, -1]) < 1e-6


def test_resume_is_atomic_and_deterministic(source, tmp_path, monkeypatch):
    out = tmp_path / "twin"
    first = sp.sparsify_zoo(source, out, epochs=1, progress=False, settings=FAST)
    hashes = {s.file: s.sha256 for s in first.shards}
    # drop one shard: the rerun trains only that block and writes the same bytes
    victim = first.shards[0].file
    (out / victim).unlink()
    calls = []
    real = sp.sparsify_population
    monkeypatch.setattr(sp, "sparsify_population", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = sp.sparsify_zoo(source, out, epochs=1, progress=False, settings=FAST)
    assert len(calls) == 1
    assert {s.file: s.sha256 for s in again.shards} == hashes
    # complete: nothing to do
    sp.sparsify_zoo(source, out, epochs=1, progress=False, settings=FAST)
    assert len(calls) == 1
    # other settings in the same directory are refused
    with pytest.raises(WeightzooError, match="different spec"):
        sp.sparsify_zoo(source, out, epochs=2, progress=False, settings=FAST)


def test_cli_sparsify(source, capsys):
    assert run(["sparsify", str(source), "--epochs", "1"]) == 0
    out = source.with_name(source.name + "-sparse")
    assert f"wrote modelzoo-digits-cnn-s-seed-sparse to {out}: 3 models" in capsys.readouterr().out
    zoo = weightzoo.ModelZoo(
        source.parent,
        dataset="digits",
        config="seed-sparse",
        split="all",
        epochs="all",
        targets="sparsity",
    )
    assert len(zoo) == 3 * 2
    assert run(["sparsify", str(source), "--train-epochs", "0"]) == 1
    assert "epochs must be at least 1" in capsys.readouterr().err


def test_kl_approximation_and_bad_sources(tmp_path):
    log_alpha = torch.linspace(-8, 8, 33)
    kl = sp.kl_approximation(log_alpha)
    assert (kl >= 0).all() and (kl[1:] <= kl[:-1]).all()  # more noise, less KL
    assert kl[-1] < 1e-3 and kl[0] > 3.0
    with pytest.raises(WeightzooError, match="Model Zoos and trajectory zoos"):
        sp.spec_from_manifest({"spec_class": "MLDSSpec", "family": "mlds"})


def test_a_failed_run_frees_the_twin_at_once(source, tmp_path, monkeypatch):
    out = tmp_path / "twin"
    real = sp.sparsify_population

    def crash(*args, **kwargs):
        raise RuntimeError("training failed")

    monkeypatch.setattr(sp, "sparsify_population", crash)
    try:
        sp.sparsify_zoo(source, out, epochs=1, progress=False, settings=FAST)
    except RuntimeError:
        # the traceback still holds sparsify_zoo's frame: the lock must be released anyway
        monkeypatch.setattr(sp, "sparsify_population", real)
        manifest = sp.sparsify_zoo(source, out, epochs=1, progress=False, settings=FAST)
    assert manifest.finished
