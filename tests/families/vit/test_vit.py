"""The ViT zoo: architecture, digits tasks, pre-training -> fine-tuning groups, lineage."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F
from torch.utils.data import DataLoader

from weightzoo.analysis import report
from weightzoo.analysis.lineage_recovery import lineage_recovery
from weightzoo.architectures import build_model
from weightzoo.errors import (
    DataFilesMissingError,
    GroupRequiredError,
    InvalidOptionError,
    UnknownColumnError,
    UnknownZooError,
)
from weightzoo.families import family as registered_family
from weightzoo.families import family_hooks
from weightzoo.families.vit.data import FINETUNE_DIGITS, augment, digit_task
from weightzoo.families.vit.family import FAMILIES
from weightzoo.families.vit.model import ViT, backbone_names
from weightzoo.families.vit.spec import HEADS, PRESETS, ViTZooSpec, num_params
from weightzoo.families.vit.train import nt_xent
from weightzoo.features import layout_of
from weightzoo.generate.base import BlockRun
from weightzoo.generate.runner import generate
from weightzoo.generate.specs import family_for, get_spec
from weightzoo.lineage import LineagePairs, columns_of
from weightzoo.zoo import Zoo

CHILD_GROUPS = ("finetune-linear", "finetune-mlp")


def tiny_spec(**changes) -> ViTZooSpec:
    base = dict(
        name="vit-tiny",
        pretrainings=("supervised", "simclr"),
        pretrain_epochs=1,
        finetune_epochs=1,
        lrs=(1e-3,),
        checkpoint_every=1,
    )
    return ViTZooSpec(**(base | changes))


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory) -> Zoo:
    out = tmp_path_factory.mktemp("vit") / "zoo"
    generate(tiny_spec(), out, progress=False)
    return Zoo(out)


def _backbone(rows: np.ndarray, zoo: Zoo) -> np.ndarray:
    return rows[:, columns_of(zoo.layout, backbone_names(zoo.layout.names))]


# ------------------------------------------------------------------------ architecture
@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_vit_heads_share_the_backbone(head):
    net = ViT(outputs=5, head=head)
    assert net(torch.zeros(3, 1, 8, 8)).shape == (3, 5)
    assert net(torch.zeros(3, 1, 8, 8), features_only=True).shape == (3, 32)
    names = layout_of(net).names
    assert all(not n.startswith("head.") for n in backbone_names(names))
    assert backbone_names(names) == backbone_names(layout_of(ViT(outputs=10)).names)


def test_paper_vit_s_has_the_published_size():
    net = ViT(**PRESETS["vit-s"], outputs=100)
    layout = layout_of(net)
    backbone = sum(layout[n].numel for n in backbone_names(layout.names))
    assert backbone == 21_665_664  # ViT-S/16: ~21.7M without the head
    assert layout.num_params - backbone == 384 * 100 + 100


# ------------------------------------------------------------------------------ the tasks
def test_digit_tasks_split_classes_and_scale():
    task = digit_task(FINETUNE_DIGITS)
    assert set(task.train_y.tolist()) == set(range(5))
    assert task.train_x.shape[1:] == (1, 8, 8)
    assert task.train_x.min() == -1.0 and task.train_x.max() <= 1.0
    with pytest.raises(ValueError, match="distinct digits"):
        digit_task((1, 1))


def test_augment_shifts_with_a_blank_border_and_is_seeded():
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    first = augment(x, torch.Generator().manual_seed(3), noise=0.0)
    again = augment(x, torch.Generator().manual_seed(3), noise=0.0)
    assert torch.equal(first, again)
    for k in range(6):  # each view is the image moved by at most one pixel
        matches = [
            torch.equal(first[k, 0, 1:-1, 1:-1], torch.roll(x[k, 0], (dy, dx), (0, 1))[1:-1, 1:-1])
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        ]
        assert any(matches)


def test_nt_xent_rewards_matching_views():
    z = torch.randn(2, 8, 16)
    same, hits = nt_xent(torch.cat([z, z], dim=1), 0.1)
    other, _ = nt_xent(torch.cat([z, torch.randn(2, 8, 16)], dim=1), 0.1)
    assert hits.all() and same.mean() < other.mean()


# ------------------------------------------------------------------------- generation
def test_groups_and_lineage_columns(tiny_zoo):
    assert tiny_zoo.groups == ["pretrain", *CHILD_GROUPS]
    pre = tiny_zoo.group("pretrain").metadata()
    assert pre["parent"].tolist() == [-1, -1]
    assert set(pre["stage"]) == {"pretrain"}
    assert pre["pretraining"].tolist() == ["supervised", "simclr"]
    ids = list(pre["model_id"])
    for group in CHILD_GROUPS:
        meta = tiny_zoo.group(group).metadata()
        ids += list(meta["model_id"])
        assert set(meta["stage"]) == {"finetune"}
        assert set(meta["head"]) == {group.split("-")[1]}
        assert sorted(meta["parent"].tolist()) == [0, 0, 1, 1]
        assert sorted(meta["optimizer"].tolist()) == ["adamw", "adamw", "sgd", "sgd"]
        assert set(meta["lr"].tolist()) == {1e-3} and set(meta["seed"].tolist()) == {1}
        kinds = dict(zip(pre["model_id"].tolist(), pre["pretraining"].tolist(), strict=True))
        assert [kinds[p] for p in meta["parent"]] == meta["pretraining"].tolist()
    assert sorted(ids) == list(range(10))  # unique across groups


def test_children_start_bitwise_from_their_parent_backbone(tiny_zoo):
    parents = tiny_zoo.group("pretrain")
    parent_rows = _backbone(parents.rows(None, "last"), parents)
    parent_ids = parents.metadata()["model_id"].tolist()
    for group in CHILD_GROUPS:
        child = tiny_zoo.group(group)
        start = _backbone(child.rows(None, 0), child)
        end = _backbone(child.rows(None, "last"), child)
        for k, parent in enumerate(child.metadata()["parent"].tolist()):
            assert np.array_equal(start[k], parent_rows[parent_ids.index(parent)])
            assert not np.array_equal(end[k], start[k])  # and fine-tuning moved it


def test_module_reproduces_the_stored_metric(tiny_zoo):
    task = digit_task(FINETUNE_DIGITS)
    x, y = torch.from_numpy(task.test_x), torch.from_numpy(task.test_y)
    for group in CHILD_GROUPS:
        zoo = tiny_zoo.group(group)
        meta = zoo.metadata()
        with torch.no_grad():
            out = zoo.module((0, "last"))(x)
        assert abs(F.cross_entropy(out, y).item() - meta["final_test_loss"][0]) < 1e-4
        accuracy = (out.argmax(1) == y).float().mean().item()
        assert abs(accuracy - meta["final_test_acc"][0]) <= 1.0 / len(y)
        assert isinstance(zoo.build_model(), ViT)


def test_evaluate_reproduces_every_childs_stored_test_metrics(tiny_zoo):
    from weightzoo.architectures import UnbuildableSpecError
    from weightzoo.functional import evaluate, queries

    for group in CHILD_GROUPS:
        zoo = tiny_zoo.group(group)
        reader = zoo.reader()
        models, checkpoints = reader.num_models, len(reader.epochs)
        pairs = np.indices((models, checkpoints)).reshape(2, -1)
        result = evaluate(zoo, reader.read("weights", pairs[0], pairs[1]))
        stored = reader.metrics
        np.testing.assert_allclose(result.loss, stored["test_loss"].reshape(-1), rtol=1e-4)
        np.testing.assert_allclose(result.accuracy, stored["test_acc"].reshape(-1), atol=1e-6)
        assert queries(zoo, "union", 6).shape == (6, 1, 8, 8)
    pretrain = tiny_zoo.group("pretrain")
    with pytest.raises(UnbuildableSpecError, match="'vit-pretrain' family"):
        evaluate(pretrain, pretrain.reader().read("weights", [0], [0]))


# ----------------------------------------------------------------------------- lineage
def test_parent_of(tiny_zoo):
    for group in CHILD_GROUPS:
        meta = tiny_zoo.group(group).metadata()
        for model, parent in zip(meta["model_id"], meta["parent"], strict=True):
            assert tiny_zoo.parent_of(int(model)) == int(parent)
    assert tiny_zoo.parent_of(0) is None
    with pytest.raises(UnknownColumnError, match="no model with id 99"):
        tiny_zoo.parent_of(99)


def test_lineage_pairs_with_a_dataloader(tiny_zoo):
    pairs = LineagePairs(tiny_zoo.root, group="finetune-mlp", split="all")
    assert len(pairs) == 4
    parents, children, info = next(iter(DataLoader(pairs, batch_size=3)))
    assert parents.shape == (3, tiny_zoo.group("pretrain").layout.num_params)
    assert children.shape == (3, tiny_zoo.group("finetune-mlp").layout.num_params)
    assert info["head"] == ["mlp"] * 3
    for model, parent in zip(info["model"].tolist(), info["parent"].tolist(), strict=True):
        assert tiny_zoo.parent_of(model) == parent
    workers = DataLoader(pairs, batch_size=3, num_workers=2)  # pickled into worker processes
    assert sorted(m for _, _, i in workers for m in i["model"].tolist()) == sorted(
        pairs[k][2]["model"] for k in range(len(pairs))
    )
    with pytest.raises(GroupRequiredError, match="finetune-linear, finetune-mlp"):
        LineagePairs(tiny_zoo.root, split="all")
    with pytest.raises(InvalidOptionError, match="no fine-tuned models"):
        LineagePairs(tiny_zoo.root, group="pretrain", split="all")


def test_shared_lineage_pairs_span_groups_and_match_at_checkpoint_0(tiny_zoo):
    pairs = LineagePairs(tiny_zoo.root, split="all", epochs=0, shared=True)
    assert len(pairs) == 8
    for parent, child, _ in pairs:
        assert torch.equal(parent, child)


def test_lineage_recovery(tiny_zoo):
    start = lineage_recovery(tiny_zoo, epoch=0)
    assert np.array_equal(start["cosine"], start["parent"])
    assert np.array_equal(start["l2"], start["parent"])
    table = report(tiny_zoo.root).table("vit.lineage")
    assert table.rows[-1].label == "all" and table.rows[-1].ours["models"] == 8
    # one short epoch of fine-tuning keeps every child nearest to its parent
    assert table.rows[-1].ours["cosine"] == 100.0
    finetune = report(tiny_zoo.root, tables=["vit.finetune"]).table("vit.finetune")
    assert {row.label for row in finetune.rows} == {
        f"{h} {o} lr=0.001" for h in ("linear", "mlp") for o in ("adamw", "sgd")
    }


# ------------------------------------------------------------------------ named errors
def test_paper_spec_names_the_missing_files(tmp_path):
    spec = get_spec("vit-zoo-paper").override(data_dir=str(tmp_path / "data"))
    assert spec.estimate()["models"] == 250
    with pytest.raises(DataFilesMissingError, match=r"imagenet[/\\]train") as caught:
        generate(spec, tmp_path / "zoo", progress=False)
    assert "train.bin" in str(caught.value)  # CIFAR-100's binary files
    assert not (tmp_path / "zoo" / "groups").exists()


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"optimizers": ("adamw", "adam")}, "adam"),
        ({"heads": ("linear", "conv")}, "conv"),
        ({"pretrainings": ("supervised", "byol")}, "byol"),
        ({"lrs": (1e-3, 0.0)}, "0.0"),
    ],
)
def test_unknown_grid_values_are_named_errors(changes, named):
    with pytest.raises(InvalidOptionError, match=named):
        tiny_spec(**changes)


def test_finetuning_outside_a_grouped_zoo_is_refused():
    spec = dict(tiny_spec().groups())["finetune-linear"]
    plans = registered_family("vit-finetune").plan(spec)
    with pytest.raises(InvalidOptionError, match="grouped ViT zoo"):
        registered_family("vit-finetune").train(spec, plans[:1], BlockRun(progress=False))


def test_named_specs_build():
    spec = get_spec("vit-digits")
    assert [name for name, _ in spec.groups()] == ["pretrain", *CHILD_GROUPS]
    assert spec.estimate()["models"] == 4 + 2 * 4 * 6
    for _, group in spec.groups():
        assert isinstance(build_model(group.to_dict()), ViT)


def test_report_cli_puts_the_lineage_tables_first(tiny_zoo, capsys):
    from weightzoo.cli import run

    assert run(["report", str(tiny_zoo.root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert next(iter(out)) == "*" and set(out) >= {"pretrain", *CHILD_GROUPS}
    assert [t["id"] for t in out["*"]["tables"]] == ["vit.finetune", "vit.lineage"]


def test_example_script_reads_the_pairs(tiny_zoo, monkeypatch, capsys):
    """examples/vit_lineage.py: the backbone has moved 0 at checkpoint 0, more after."""
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[3] / "examples" / "vit_lineage.py"
    monkeypatch.setattr("sys.argv", ["vit_lineage.py", str(tiny_zoo.root)])
    runpy.run_path(str(script), run_name="__main__")
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert {(r[0], r[1]) for r in rows} == {("adamw", "1e-03"), ("sgd", "1e-03")}
    assert all(float(r[2]) == 0.0 and float(r[3]) > 0.0 for r in rows)


def test_paper_spec_with_its_files_in_place_is_refused_not_run_on_digits(tmp_path):
    data = tmp_path / "data"
    for folder in ("train", "val"):
        (data / "imagenet" / folder / "n01440764").mkdir(parents=True)
    cifar = data / "cifar-100-binary"
    cifar.mkdir()
    record = np.zeros((2, 2 + 3 * 32 * 32), dtype=np.uint8)  # coarse, fine label, image
    for name in ("train.bin", "test.bin"):
        (cifar / name).write_bytes(record.tobytes())
    spec = get_spec("vit-zoo-paper").override(data_dir=str(data))
    with pytest.raises(InvalidOptionError, match="no streaming reader"):
        generate(spec, tmp_path / "zoo", progress=False)


# ------------------------------------------------------------------- the family's one home
def test_the_registry_hands_out_each_stage_and_binds_its_spec_class():
    pretrain, finetune = (dict(tiny_spec().groups())[g] for g in ("pretrain", "finetune-mlp"))
    assert family_for(pretrain) is registered_family("vit-pretrain") is FAMILIES["vit-pretrain"]
    assert family_for(finetune) is registered_family("vit-finetune") is FAMILIES["vit-finetune"]
    assert family_hooks("vit-finetune") is registered_family("vit-finetune")
    with pytest.raises(InvalidOptionError, match="is a ViTPretrainSpec but family 'vit-finetune'"):
        family_for(dataclasses.replace(pretrain, family="vit-finetune"))
    with pytest.raises(UnknownZooError, match="unknown zoo family 'vit-other'"):
        registered_family("vit-other")


def test_the_grouped_zoo_is_sized_as_its_groups_by_their_families():
    for spec in (tiny_spec(), get_spec("vit-digits")):  # the paper's plans need its data
        assert registered_family("vit").estimate(spec) == spec.estimate()
    assert registered_family("vit").estimate(tiny_spec())["models"] == 2 + 2 * (2 * 2 * 1)


@settings(max_examples=25, deadline=None)
@given(
    heads=st.integers(1, 4),
    head_dim=st.integers(1, 8),
    depth=st.integers(0, 3),
    patch=st.integers(1, 4),
    patches=st.integers(1, 4),
    channels=st.integers(1, 3),
    outputs=st.integers(1, 12),
    head=st.sampled_from(HEADS),
    head_hidden=st.integers(1, 16),
)
def test_the_torch_free_size_is_the_module_layouts(
    heads, head_dim, depth, patch, patches, channels, outputs, head, head_hidden
):
    sizes = dict(dim=heads * head_dim, heads=heads, depth=depth, mlp_dim=2 * head_dim + 1)
    sizes |= dict(patch_size=patch, image_size=patch * patches, in_channels=channels)
    spec = {"architecture": "vit-digits", "outputs": outputs, "head": head} | sizes
    spec["head_hidden"] = head_hidden
    assert num_params(spec) == layout_of(ViT(**sizes, outputs=outputs, head=head,
                                             head_hidden=head_hidden)).num_params  # fmt: skip
    assert num_params(spec) == layout_of(build_model(spec | {"family": "vit-pretrain"})).num_params


def test_each_stage_sizes_its_groups_as_its_layout():
    for _, group in get_spec("vit-digits").groups():
        stage = family_for(group)
        assert group.estimate() == stage.estimate(group)  # `weightzoo list` shows the family's
        assert group.estimate()["params"] == stage.layout(group).num_params


def test_listing_and_sizing_import_no_torch():
    code = (
        "import sys; from weightzoo import catalog, families; "
        "sizes = {s.name: s.estimate() for s in families.spec_module('vit').specs()}; "
        "names = [e.name for e in catalog.entries() if e.family == 'vit']; "
        "assert 'torch' not in sys.modules, 'torch'; "
        "print(*names, sizes['vit-digits']['models'], sizes['vit-zoo-paper']['params'])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["vit-digits", "vit-zoo-paper", "52", "22050664"]


def test_list_shows_the_vit_zoos_with_their_sizes_and_data(capsys):
    from weightzoo.cli import run

    assert run(["list", "--family", "vit", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert sorted(rows) == ["vit-digits", "vit-zoo-paper"]
    assert (rows["vit-digits"]["models"], rows["vit-digits"]["groups"]) == (52, 3)
    assert rows["vit-zoo-paper"]["models"] == 250
    assert rows["vit-digits"]["sources"][0]["data"] == []
    assert rows["vit-zoo-paper"]["sources"][0]["data"] == ["imagenet-1k", "cifar100"]


def test_model_and_data_never_import_training_code():
    code = (
        "import sys; import weightzoo.families.vit.model, weightzoo.families.vit.data; "
        "from weightzoo.architectures import build_model; "
        "from weightzoo.families.vit.spec import specs; "
        "[build_model(g.to_dict()) for _, g in specs()[0].groups()]; "
        "bad = [m for m in sys.modules if m.endswith(('vit.train', 'generate.population'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_tells_the_runner_each_populations_size_per_epoch():
    spec = dict(tiny_spec(pretrainings=("supervised", "simclr", "simclr")).groups())["pretrain"]
    spec = dataclasses.replace(spec, epochs=2, batch_size=256)
    plans = registered_family("vit-pretrain").plan(spec)
    heard: list[tuple[int, int | None]] = []
    records = registered_family("vit-pretrain").train(
        spec, plans, BlockRun(progress=False, on_epoch=lambda n, p: heard.append((n, p)))
    )
    assert [r.model_id for r in records] == [p.model_id for p in plans]
    assert sorted(heard) == [(1, None)] * 2 + [(2, None)] * 2  # per objective, per epoch
    assert sum(n for n, _ in heard) == len(plans) * spec.epochs
