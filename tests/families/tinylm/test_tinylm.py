"""The tiny language-model zoos: corpus, model, training, landscape, errors, the family's home."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from weightzoo.architectures import build_model
from weightzoo.cli import run
from weightzoo.errors import DataFilesMissingError, InvalidOptionError
from weightzoo.families import family as registered_family
from weightzoo.families.tinylm import data as text
from weightzoo.families.tinylm.data import (
    CorpusMismatchError,
    OpenWebTextMissingError,
    check_corpus,
    load_pydoc_corpus,
    window_starts,
    windows,
)
from weightzoo.families.tinylm.family import FAMILY
from weightzoo.families.tinylm.landscape import compute_lm_landscape, seed_siblings
from weightzoo.families.tinylm.spec import (
    GPT2_BATCH_SIZES,
    GPT2_MODEL_DIMS,
    TinyLMGridSpec,
    TinyLMSpec,
    UnknownGridValueError,
    tinylm_spec,
)
from weightzoo.families.tinylm.train import (
    corpus_of,
    eval_starts,
    population_logits,
)
from weightzoo.generate.base import BlockRun, ZooSpec
from weightzoo.generate.runner import generate
from weightzoo.generate.specs import all_specs, family_for, get_spec
from weightzoo.landscape.taxonomy import read_phases
from weightzoo.landscape.zoo_metrics import ZOO_LANDSCAPE, compute_zoo_landscape
from weightzoo.storage.sidecar import read_sidecar
from weightzoo.zoo import Zoo


def tiny_spec(**changes) -> TinyLMSpec:
    base = dict(
        name="tinylm-tiny",
        model_dim=8,
        batch_sizes=(4, 8),
        seeds=2,
        epochs=1,
        context=8,
        layers=1,
        train_windows=64,
        eval_windows=16,
        shard_models=3,
    )
    return TinyLMSpec(**(base | changes))


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory) -> Zoo:
    out = tmp_path_factory.mktemp("tinylm") / "phase-tinylm-d8"  # the example's layout
    spec = tiny_spec()
    generate(spec, out, progress=False)  # ends with the family's finalize (landscape, phases)
    return Zoo(out)


# ------------------------------------------------------------------------------------ corpus
def test_corpus_is_the_python_documentation_split_within_documents():
    from pydoc_data.topics import topics

    data = load_pydoc_corpus()
    assert data.vocab == 256 and data.train.dtype == np.uint8
    docs = [f"{k}\n{topics[k]}\n\n".encode() for k in sorted(topics)]
    assert data.sha256 == hashlib.sha256(b"".join(docs)).hexdigest()
    assert len(data.train) + len(data.val) == sum(len(d) for d in docs)
    assert 0.09 < len(data.val) / (len(data.train) + len(data.val)) < 0.11
    # each document's head is training text and its tail validation text, cut at a line break
    first = docs[0]
    cut = first.index(b"\n", int(0.9 * len(first))) + 1
    assert bytes(data.train).startswith(first[:cut]) and bytes(data.val).startswith(first[cut:])
    assert first[cut - 1 : cut] == b"\n" and 0 < len(first) - cut < 0.2 * len(first)


def test_corpus_hash_is_checked(monkeypatch):
    assert check_corpus(text.corpus_sha256(), "here") == text.corpus_sha256()
    with pytest.raises(CorpusMismatchError, match="pydoc_data.topics") as info:
        check_corpus("0" * 64, "zoo 'x'")
    assert isinstance(info.value, ValueError)
    assert "0" * 64 in str(info.value) and text.corpus_sha256() in str(info.value)


def test_windows_are_inputs_and_next_tokens():
    tokens = np.arange(100, dtype=np.uint8)
    starts = window_starts(len(tokens), 8, 8)
    assert starts[0] == 0 and starts[-1] + 9 <= 100 and np.all(np.diff(starts) == 8)
    x, y = windows(tokens, starts[[2, 5]], 8)
    assert x.shape == y.shape == (2, 8) and x.dtype == np.int64
    np.testing.assert_array_equal(x[0], np.arange(16, 24))
    np.testing.assert_array_equal(y[0], np.arange(17, 25))
    assert len(window_starts(len(tokens), 8, 1, limit=5)) == 5


# ------------------------------------------------------------------------------------- model
def test_model_is_causal_and_deterministic():
    spec = tiny_spec(model_dim=16, layers=2, head_dim=8).to_dict()
    torch.manual_seed(3)
    a = build_model(spec).eval()
    torch.manual_seed(3)
    b = build_model(spec).eval()
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert a.blocks[0].attn.heads == 2
    x = torch.randint(0, 256, (2, 8))
    changed = x.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 256
    with torch.no_grad():
        out, out2 = a(x), a(changed)
    assert out.shape == (2, 8, 256)
    torch.testing.assert_close(out[:, :5], out2[:, :5])  # the future does not leak back
    assert not torch.allclose(out[:, 5:], out2[:, 5:])


def test_vectorised_population_equals_a_loop_over_models():
    spec = tiny_spec(model_dim=16, layers=2, head_dim=8).to_dict()
    models = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        models.append(build_model(spec).eval())
    params, _ = torch.func.stack_module_state(models)
    x = torch.randint(0, 256, (3, 4, 8))
    with torch.no_grad():
        stacked = population_logits(models[0], params, x)
        shared = population_logits(models[0], params, x[0])
        for i, model in enumerate(models):
            torch.testing.assert_close(stacked[i], model(x[i]), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(shared[i], model(x[0]), rtol=1e-5, atol=1e-5)


def test_population_of_two_lowers_its_loss():
    spec = tiny_spec(batch_sizes=(8,), epochs=2, train_windows=128, lr=1e-2)
    plans = FAMILY.plan(spec)
    assert len(plans) == 2
    records = FAMILY.train(spec, plans, BlockRun(progress=False))
    for record in records:
        loss = record.metrics["train_loss"]
        assert loss.shape == (3,) and loss[-1] < loss[0] - 0.3
        assert record.metrics["val_acc"][-1] > record.metrics["val_acc"][0]
    assert not np.array_equal(records[0].weights[-1], records[1].weights[-1])


# ------------------------------------------------------------------------------------- specs
def test_named_specs_cover_the_grids():
    specs = all_specs()
    assert ["phase-tinylm"] + [f"phase-tinylm-d{d}" for d in (8, 16, 32, 64)] == [
        n for n in specs if n.startswith("phase-tinylm")
    ]
    gpt2 = [specs[f"phase-gpt2-openwebtext-d{d}"] for d in GPT2_MODEL_DIMS]
    assert sum(s.estimate()["models"] for s in gpt2) == 264
    assert len(GPT2_BATCH_SIZES) * len(GPT2_MODEL_DIMS) * 3 == 264
    for spec in (gpt2[-1], specs["phase-tinylm-d64"]):
        assert spec.num_params() == FAMILY.layout(spec).num_params
    assert TinyLMSpec.load_factor == "model_dim" and TinyLMSpec.temperature_factor == "batch_size"


def test_unknown_grid_value_is_named():
    with pytest.raises(UnknownGridValueError, match="model_dim 12 is not in the grid"):
        tinylm_spec(12)
    with pytest.raises(UnknownGridValueError, match="batch sizes must be positive"):
        tiny_spec(batch_sizes=(4, 0))
    assert isinstance(UnknownGridValueError("x"), ValueError)


def test_spec_pins_the_corpus_hash():
    data = tinylm_spec(8).to_dict()
    assert data["corpus_sha256"] == text.corpus_sha256() and "data_dir" not in data
    json.dumps(data)


def test_pinned_corpus_mismatch_refuses_to_generate(tmp_path):
    spec = tiny_spec(corpus_sha256="0" * 64)
    with pytest.raises(CorpusMismatchError, match="tinylm-tiny"):
        generate(spec, tmp_path / "zoo", progress=False)
    assert not (tmp_path / "zoo" / "zoo.json").exists()


def test_missing_openwebtext_is_named(tmp_path, capsys):
    spec = get_spec("phase-gpt2-openwebtext-d64").override(data_dir=str(tmp_path))
    with pytest.raises(OpenWebTextMissingError, match="train.bin") as info:
        generate(spec, tmp_path / "zoo", progress=False)
    assert isinstance(info.value, DataFilesMissingError)
    assert "Skylion007/openwebtext" in str(info.value) and "uint16" in str(info.value)
    assert not (tmp_path / "zoo" / "zoo.json").exists()
    out = tmp_path / "cli"
    code = run(["generate", "phase-gpt2-openwebtext-d8", "--out", str(out), "--data-dir", "x"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "openwebtext" in err and len(err.splitlines()) == 1


# ------------------------------------------------------------------------------ zoo, landscape
def test_zoo_columns_and_metrics(tiny_zoo):
    meta = tiny_zoo.metadata()
    assert tiny_zoo.manifest.metrics == ["train_loss", "train_acc", "val_loss", "val_acc"]
    assert tiny_zoo.manifest.epochs == [0, 1]
    np.testing.assert_array_equal(meta["load"], meta["model_dim"].astype(float))
    np.testing.assert_array_equal(meta["temperature"], meta["batch_size"].astype(float))
    assert sorted(zip(meta["batch_size"].tolist(), meta["seed"].tolist(), strict=True)) == [
        (4, 1),
        (4, 2),
        (8, 1),
        (8, 2),
    ]
    assert tiny_zoo.manifest.spec["corpus_sha256"] == text.corpus_sha256()


def test_module_reproduces_the_stored_val_loss(tiny_zoo):
    spec = tiny_spec()
    data = corpus_of(spec)
    x, y = windows(data.val, eval_starts(spec, data)["val"], spec.context)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    meta = tiny_zoo.metadata()
    for position in range(len(tiny_zoo)):
        with torch.no_grad():
            logits = tiny_zoo.module((position, "last"))(x)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten()).item()
        assert loss == pytest.approx(float(meta["final_val_loss"][position]), abs=1e-5)
        acc = (logits.argmax(-1) == y).float().mean().item()
        assert acc == pytest.approx(float(meta["final_val_acc"][position]), abs=1e-6)


def test_seed_siblings_pair_the_same_cell():
    columns = {
        "load": np.array([8.0, 8.0, 8.0, 8.0, 8.0]),
        "temperature": np.array([4.0, 8.0, 4.0, 8.0, 16.0]),
        "seed": np.array([2, 1, 1, 2, 1]),
    }
    np.testing.assert_array_equal(seed_siblings(columns, 5), [2, 3, 0, 1, -1])


def test_finalize_writes_the_landscape_side_file(tiny_zoo):
    side = read_sidecar(tiny_zoo.path, "landscape")
    for metric in ("hessian_top", "hessian_trace", "cka", "mc"):
        assert side[metric].shape == (4, 2)
        assert np.isfinite(side[metric]).all(), metric
    assert ((side["cka"] > 0) & (side["cka"] <= 1 + 1e-9)).all()
    # CKA is symmetric: in a cell of two seeds, both models get the same value
    meta = tiny_zoo.metadata()
    partner = seed_siblings({k: meta[k] for k in ("load", "temperature", "seed")}, 4)
    np.testing.assert_allclose(side["cka"][:, 0], side["cka"][partner, 0])
    labels = read_phases(tiny_zoo.path)[0]
    assert labels.shape == side["hessian_top"].shape
    assert set(np.unique(labels)) <= {"I", "II", "III", "IV-A", "IV-B", "?"}
    # finalize again keeps the complete side file (idempotent)
    before = (tiny_zoo.path / "sidecars" / "landscape.h5").stat().st_mtime_ns
    FAMILY.finalize(tiny_spec(), tiny_zoo.path, "cpu")
    assert (tiny_zoo.path / "sidecars" / "landscape.h5").stat().st_mtime_ns == before


def test_landscape_command_recomputes_through_the_zoo_driver(tiny_zoo):
    options = ZOO_LANDSCAPE.replace(probes=4)
    record = compute_zoo_landscape(
        tiny_zoo, metrics=["hessian_trace"], epochs="last", options=options, progress=False,
        name="re",
    )  # fmt: skip
    assert record.epochs == [1] and list(record.arrays) == ["hessian_trace"]
    values = read_sidecar(tiny_zoo.path, "re")["hessian_trace"]
    assert values.shape == (4, 1) and np.isfinite(values).all()


def test_landscape_refuses_another_corpus(tiny_zoo, monkeypatch):
    monkeypatch.setattr(text, "corpus_sha256", lambda: "f" * 64)
    with pytest.raises(CorpusMismatchError, match=str(tiny_zoo.path)):
        compute_lm_landscape(tiny_zoo, metrics=["hessian_top"], progress=False, name="x")


# ------------------------------------------------------------------------------ grouped grids
def test_grid_specs_hold_one_group_per_model_dimension():
    grid = get_spec("phase-tinylm")
    assert isinstance(grid, TinyLMGridSpec)
    assert [(name, spec) for name, spec in grid.groups()] == [
        (f"d{d}", tinylm_spec(d)) for d in (8, 16, 32, 64)
    ]
    small = grid.override(models=2, epochs=1)
    assert all(s.num_models() == 2 and s.epochs == 1 for _, s in small.groups())
    gpt2 = get_spec("phase-gpt2-openwebtext")
    assert len(gpt2.groups()) == 8 and "data_dir" not in gpt2.override(data_dir="x").to_dict()
    with pytest.raises(UnknownGridValueError, match="no tiny-LM grid named"):
        TinyLMGridSpec(name="phase-tinylm-big")


@pytest.mark.slow
def test_grouped_tinylm_zoo_end_to_end(tmp_path):
    spec = get_spec("phase-tinylm").override(models=1, epochs=1)
    generate(spec, tmp_path / "zoo", progress=False)
    for name, group_spec in spec.groups():
        zoo = Zoo(tmp_path / "zoo" / "groups" / name)
        assert len(zoo) == 1 and zoo.manifest.spec == group_spec.to_dict()
        loss = zoo.metadata()["final_train_loss"]
        assert np.isfinite(loss).all() and (loss < np.log(256)).all()


def test_grouped_gpt2_zoo_without_openwebtext_writes_nothing(tmp_path):
    spec = get_spec("phase-gpt2-openwebtext").override(data_dir=str(tmp_path))
    with pytest.raises(OpenWebTextMissingError, match="phase-gpt2-openwebtext-d8"):
        generate(spec, tmp_path / "zoo", progress=False)
    assert not (tmp_path / "zoo" / "zoo.json").exists()


def test_grid_example_prints_the_tables(tiny_zoo, monkeypatch, capsys):
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[3] / "examples" / "tinylm_grid.py"
    monkeypatch.setattr("sys.argv", [script.name, str(tiny_zoo.path.parent), "--dims", "8"])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    meta = tiny_zoo.metadata()
    loss = meta["final_val_loss"][meta["batch_size"] == 4].mean()
    assert "| model_dim | batch 4 | batch 8 |" in out and "cka: mean" in out
    assert f"| 8 | {loss:.3f} |" in out


# ------------------------------------------------------------------- the family's one home
def test_the_registry_hands_out_the_family_and_binds_its_spec_class():
    assert registered_family("tinylm") is FAMILY and FAMILY.spec_class is TinyLMSpec
    assert family_for(tiny_spec()) is FAMILY
    with pytest.raises(InvalidOptionError, match="is a ZooSpec but family 'tinylm' trains"):
        family_for(ZooSpec(name="stray", family="tinylm"))  # another class under the name


@settings(max_examples=25, deadline=None)
@given(
    heads=st.integers(1, 4),
    head_dim=st.integers(1, 8),
    layers=st.integers(1, 3),
    vocab=st.integers(2, 300),
    context=st.integers(1, 40),
    epochs=st.integers(1, 6),
)
def test_the_torch_free_size_is_the_module_layouts(heads, head_dim, layers, vocab, context, epochs):
    dim = heads * head_dim
    spec = tiny_spec(
        model_dim=dim,
        model_dims=(dim,),
        head_dim=head_dim,
        layers=layers,
        vocab=vocab,
        context=context,
        epochs=epochs,
    )
    assert spec.num_params() == FAMILY.layout(spec).num_params
    assert spec.estimate() == FAMILY.estimate(spec)  # `weightzoo list` shows the family's
    assert spec.estimate()["checkpoints"] == len(FAMILY.checkpoint_epochs(spec)) == epochs + 1


def test_listing_and_sizing_import_no_torch():
    code = (
        "import sys; from weightzoo import catalog, families; "
        "sizes = {s.name: s.estimate() for s in families.spec_module('tinylm').specs() "
        "if hasattr(s, 'estimate')}; "
        "names = [e.name for e in catalog.entries() if e.family == 'tinylm']; "
        "assert 'torch' not in sys.modules, 'torch'; "
        "print(len(names), names[0], sizes['phase-tinylm-d8']['params'])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["14", "phase-tinylm", "4064"]


def test_list_shows_the_tinylm_zoos_with_their_sizes_and_data(capsys):
    assert run(["list", "--family", "tinylm", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    grids = {"phase-tinylm": (8, 16, 32, 64), "phase-gpt2-openwebtext": GPT2_MODEL_DIMS}
    assert sorted(rows) == sorted(
        [*grids, *(f"{name}-d{d}" for name, dims in grids.items() for d in dims)]
    )
    assert rows["phase-tinylm"]["models"] == 60 and rows["phase-gpt2-openwebtext"]["models"] == 264
    assert rows["phase-tinylm-d8"]["params"] == FAMILY.layout(tinylm_spec(8)).num_params
    assert rows["phase-tinylm-d8"]["sources"][0]["data"] == []
    assert rows["phase-gpt2-openwebtext-d64"]["sources"][0]["data"] == ["openwebtext"]


def test_model_and_data_never_import_training_code():
    code = (
        "import sys; import weightzoo.families.tinylm.model, weightzoo.families.tinylm.data; "
        "from weightzoo.architectures import build_model; "
        "from weightzoo.families.tinylm.spec import tinylm_spec; "
        "build_model(tinylm_spec(8).to_dict()); "
        "bad = [m for m in sys.modules if m.endswith(('tinylm.train', 'generate.population'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_tells_the_runner_each_populations_size_per_epoch():
    spec = tiny_spec(epochs=2, train_windows=32)  # batch sizes 4 and 8: two populations
    plans = FAMILY.plan(spec)
    heard: list[tuple[int, int | None]] = []
    records = FAMILY.train(
        spec, plans, BlockRun(progress=False, on_epoch=lambda n, p: heard.append((n, p)))
    )
    assert [r.model_id for r in records] == [p.model_id for p in plans]
    assert heard == [(2, None)] * 4  # 2 models x 2 epochs, per batch size
    assert sum(n for n, _ in heard) == len(plans) * spec.epochs


def test_the_zoo_driver_hands_its_data_options_to_the_lm_measure(tiny_zoo):
    options = ZOO_LANDSCAPE.replace(batches=1, batch_size=3, iters=2)
    record = compute_zoo_landscape(
        tiny_zoo, metrics=["hessian_top"], epochs="last", options=options, progress=False,
        name="options",
    )  # fmt: skip
    assert (record.attrs["windows"], record.attrs["batch_size"]) == (3, 3)


def test_the_lm_measure_refuses_a_zoo_of_another_family(toy_zoo):
    with pytest.raises(InvalidOptionError, match="'toy' zoo, not a tiny-LM zoo") as info:
        compute_lm_landscape(toy_zoo, metrics=["hessian_top"], progress=False)
    assert str(toy_zoo) in str(info.value) and "\n" not in str(info.value)
