"""Phase-transition zoos on image grids: the family, finalize, the phase rule and the diagram."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from weightzoo.analysis import report
from weightzoo.analysis.phase_diagram import grid_zoos, phase_diagram
from weightzoo.architectures import UnbuildableSpecError, build_model
from weightzoo.architectures.image import ResNet18, num_params
from weightzoo.card import write_card
from weightzoo.cli import run
from weightzoo.errors import DataFilesMissingError, InvalidOptionError
from weightzoo.families import family as registered_family
from weightzoo.families.phase.model import ResNet50, VisionTransformer
from weightzoo.families.phase.spec import (
    ARCHITECTURES,
    PhaseGridError,
    PhaseGridSpec,
    PhaseSpec,
)
from weightzoo.features import layout_of, load_vector
from weightzoo.generate.base import BlockRun
from weightzoo.generate.runner import generate
from weightzoo.generate.specs import all_specs, get_spec
from weightzoo.imagesets import splits as image_splits
from weightzoo.landscape.taxonomy import PHASES, UNKNOWN, assign_phases, read_phases, write_phases
from weightzoo.landscape.zoo_metrics import ZOO_LANDSCAPE, compute_zoo_landscape
from weightzoo.storage.sidecar import read_sidecar, sidecar_records
from weightzoo.zoo import Zoo

GRID = "phase-tiny"


def family():
    """The phase family, as the registry hands it out."""
    return registered_family("phase")


def tiny(width: int, **changes) -> PhaseSpec:
    base = dict(
        name=f"{GRID}-w{width}",
        grid=GRID,
        architecture="mlp",
        width=width,
        widths=(2, 8),
        batch_sizes=(32, 256),
        seeds=2,
        epochs=2,
        checkpoint_every=1,
        shard_models=4,
        landscape_batches=1,
        landscape_batch_size=32,
        landscape_probes=2,
        landscape_steps=5,
    )
    return PhaseSpec(**(base | changes))


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    """A tiny MLP grid on digits as one grouped zoo: groups w2 and w8."""
    out = tmp_path_factory.mktemp("phase") / GRID
    generate(PhaseGridSpec(name=GRID, base=tiny(2)), out, progress=False)
    return out


@pytest.fixture(scope="module")
def grid(grouped, tmp_path_factory):
    """The same grid as separate version-1 zoos side by side (``<grid>-w<width>``)."""
    root = tmp_path_factory.mktemp("flat")
    for width in (2, 8):
        shutil.copytree(grouped / "groups" / f"w{width}", root / f"{GRID}-w{width}")
    return root


def test_the_family_trains_the_grid_and_stores_the_columns(grid):
    zoo = Zoo(grid / f"{GRID}-w8")
    reader = zoo.reader(None, epochs="all")
    assert zoo.epochs == [0, 1, 2] and len(zoo) == 4
    cols = reader.columns
    assert sorted(cols["batch_size"].tolist()) == [32, 32, 256, 256]
    assert set(cols["width"].tolist()) == {8} and set(cols["load"].tolist()) == {8.0}
    np.testing.assert_array_equal(cols["temperature"], cols["batch_size"].astype(float))
    assert sorted(cols["seed"].tolist()) == [0, 0, 1, 1]
    assert zoo.manifest.spec["load_factor"] == "width"
    assert zoo.manifest.spec["temperature_factor"] == "batch_size"
    loss, acc = reader.metrics["train_loss"], reader.metrics["test_acc"]
    assert loss.shape == acc.shape == (4, 3) and np.isfinite(loss).all()
    assert (loss[:, -1] < loss[:, 0]).all()  # training lowered every model's loss
    # a stored row is the model that scored the stored accuracy
    row = reader.read("weights", [0], [2])[0]
    net = load_vector(build_model(zoo.manifest.spec), torch.from_numpy(row), zoo.layout).eval()
    from weightzoo.imagesets.splits import load_splits

    test_x, test_y = load_splits("digits", None, 8, True, 0.15, 42)[2]
    with torch.no_grad():
        hits = (net(torch.from_numpy(test_x)).argmax(1).numpy() == test_y).mean()
    assert hits == pytest.approx(acc[0, 2], abs=1e-6)


def test_models_of_one_cell_differ_only_in_seed_and_cells_share_seeds():
    plans = family().plan(tiny(8))
    assert [(p.columns["batch_size"], p.seed) for p in plans] == [
        (32, 0),
        (32, 1),
        (256, 0),
        (256, 1),
    ]
    assert [p.columns["node"] for p in plans] == [0, 0, 1, 1]


def test_finalize_writes_the_landscape_side_file_with_phases(grid):
    zoo_dir = grid / f"{GRID}-w8"
    data = read_sidecar(zoo_dir, "landscape")
    for name in ("hessian_top", "hessian_trace", "cka", "mc", "phase"):
        assert data[name].shape == (4, 1), name
    assert data["epochs"].tolist() == [2]
    assert np.isfinite(data["cka"]).all()  # every model has a seed sibling
    labels, _models, epochs = read_phases(zoo_dir)
    assert labels.shape == (4, 1) and epochs == [2]
    assert set(labels.ravel()) <= {*PHASES, UNKNOWN}
    record = sidecar_records(zoo_dir)["landscape"]
    assert record.attrs["phase_labels"] == list(PHASES)


def test_generate_again_keeps_the_zoo_and_its_side_file(grid):
    zoo_dir = grid / f"{GRID}-w8"
    before = sidecar_records(zoo_dir)["landscape"].sha256
    generate(tiny(8), zoo_dir, progress=False)  # resumes: nothing to train or measure
    assert sidecar_records(zoo_dir)["landscape"].sha256 == before


def test_finalize_adds_only_the_missing_phases(grid, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(grid / f"{GRID}-w2", copy)
    data = read_sidecar(copy, "landscape")
    from weightzoo.storage.sidecar import write_sidecar

    metrics = {k: data[k] for k in ("hessian_top", "hessian_trace", "cka", "mc")}
    write_sidecar(copy, "landscape", metrics, {"kept": True}, models=data["models"], epochs=[2])
    family().finalize(tiny(2), copy)
    after = read_sidecar(copy, "landscape")
    np.testing.assert_array_equal(after["mc"], data["mc"])  # the metrics were not measured again
    np.testing.assert_array_equal(after["phase"], data["phase"])
    assert sidecar_records(copy)["landscape"].attrs["kept"] is True


def test_recomputing_the_landscape_relabels_the_phases(grid, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(grid / f"{GRID}-w8", copy)
    shutil.rmtree(copy / "sidecars")
    options = ZOO_LANDSCAPE.replace(batches=1, batch_size=32, steps=5)
    record = compute_zoo_landscape(copy, metrics=("cka", "mc"), options=options, progress=False)
    assert set(record.arrays) == {"cka", "mc", "phase"}
    assert read_phases(copy)[0].shape == (4, 1)
    # another side file name, or a zoo without the phase columns, gets no labels
    other = compute_zoo_landscape(
        copy, metrics=("cka", "mc"), options=options, progress=False, name="other"
    )
    assert "phase" not in other.arrays


def hand_made():
    """One model per phase, and one without a sibling (mc and cka NaN)."""
    train_loss = np.array([1.5, 1.2, 0.01, 0.02, 0.01, 0.01])
    metrics = {
        "mc": np.array([-0.6, 0.4, -0.5, 0.01, -0.02, np.nan]),
        "cka": np.array([0.2, 0.3, 0.5, 0.4, 0.97, np.nan]),
        "hessian_trace": np.array([900.0, 800.0, 5.0, 3.0, 2.0, 4.0]),
    }
    return metrics, train_loss


def test_assign_phases_gives_the_documented_labels():
    metrics, train_loss = hand_made()
    labels = assign_phases(metrics, train_loss)
    assert labels.tolist() == ["I", "II", "III", "IV-A", "IV-B", UNKNOWN]
    assert set(PHASES) <= set(labels.tolist())


def test_assign_phases_thresholds_are_keyword_arguments():
    metrics, train_loss = hand_made()
    # a Hessian threshold makes a well-trained but sharp model locally sharp
    sharp = assign_phases(metrics, train_loss, hessian_threshold=4.5)
    assert sharp[2] == "I"  # trained, hessian 5 > 4.5, barrier
    # a wider mc tolerance turns the small barrier of model 2 ... still a barrier at 0.5
    assert assign_phases(metrics, train_loss, mc_tolerance=0.6)[2] == "IV-A"
    assert assign_phases(metrics, train_loss, cka_threshold=0.3)[3] == "IV-B"
    grid = {k: v.reshape(2, 3) for k, v in metrics.items()}
    assert assign_phases(grid, train_loss.reshape(2, 3)).shape == (2, 3)


def test_assign_phases_rejects_missing_metrics_and_shapes():
    metrics, train_loss = hand_made()
    with pytest.raises(InvalidOptionError, match="mc"):
        assign_phases({"cka": metrics["cka"]}, train_loss)
    with pytest.raises(InvalidOptionError, match="shape"):
        assign_phases(metrics, train_loss[:3])
    with pytest.raises(InvalidOptionError, match="hessian_top"):
        assign_phases({"mc": metrics["mc"], "cka": metrics["cka"]}, train_loss,
                      hessian="hessian_top", hessian_threshold=1.0)  # fmt: skip


def test_write_phases_applies_other_thresholds(grid, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(grid / f"{GRID}-w8", copy)
    # everything sharp: a loss threshold below every training loss
    labels = write_phases(copy, loss_threshold=-1.0)
    assert set(labels.ravel()) <= {"I", "II"}
    assert read_phases(copy)[0].tolist() == labels.tolist()
    assert sidecar_records(copy)["landscape"].attrs["phase_thresholds"]["loss_threshold"] == -1
    with pytest.raises(InvalidOptionError, match="unknown phase threshold"):
        write_phases(copy, loss_limit=1.0)


def test_the_diagram_covers_every_zoo_of_the_grid(grid):
    zoos = grid_zoos(Zoo(grid / f"{GRID}-w2"))
    assert sorted(z.name for z in zoos) == [f"{GRID}-w2", f"{GRID}-w8"]
    diagram = phase_diagram(zoos)
    assert diagram.loads == [2.0, 8.0] and diagram.temperatures == [32.0, 256.0]
    assert diagram.models.tolist() == [[2, 2], [2, 2]]
    assert diagram.metric == "test_acc"
    acc = Zoo(grid / f"{GRID}-w8").reader(None, "last")
    cell = acc.columns["batch_size"] == 32
    assert diagram.value[1, 0] == pytest.approx(acc.metrics["test_acc"][cell, 0].mean())
    assert set(diagram.phase.ravel()) <= {*PHASES, ""}


def test_a_grouped_zoo_beside_the_grid_is_no_cell_of_it(grid, grouped_spec, tmp_path):
    from weightzoo.generate.runner import generate

    for width in ("w2", "w8"):
        shutil.copytree(grid / f"{GRID}-{width}", tmp_path / f"{GRID}-{width}")
    generate(grouped_spec, tmp_path / "a-grouped-zoo", progress=False)
    zoos = grid_zoos(Zoo(tmp_path / f"{GRID}-w2"))
    assert sorted(z.name for z in zoos) == [f"{GRID}-w2", f"{GRID}-w8"]


def test_report_prints_the_phase_diagram(grid, capsys):
    result = report(grid / f"{GRID}-w8", tables=["phase.diagram"])
    table = result.table("phase.diagram")
    assert table.columns == ["batch_size=32", "batch_size=256"]
    assert [r.label for r in table.rows] == ["width=2", "width=8"]
    assert run(["report", str(grid / f"{GRID}-w8")]) == 0
    text = capsys.readouterr().out
    assert "Phase diagram of phase-tiny" in text and "width=8" in text
    assert run(["report", str(grid / f"{GRID}-w2"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (diagram,) = [t for t in data["tables"] if t["id"] == "phase.diagram"]
    cell = diagram["rows"][0]["ours"]["batch_size=32"]
    assert set(cell) == {"test_acc", "phase"} and 0 <= cell["test_acc"] <= 1


def test_report_skips_the_diagram_without_the_side_file(grid, tmp_path, toy_zoo):
    copy = tmp_path / "bare"
    shutil.copytree(grid / f"{GRID}-w8", copy)
    shutil.rmtree(copy / "sidecars")
    result = report(copy, tables=["phase.diagram"])
    (skipped,) = result.skipped
    assert skipped.table == "phase.diagram" and "no phase labels" in skipped.reason
    other = report(toy_zoo, tables=["phase.diagram"])
    assert "not a phase-transition zoo" in other.skipped[0].reason


def test_info_and_card_work_on_a_phase_zoo(grid, tmp_path, capsys):
    zoo_dir = grid / f"{GRID}-w2"
    assert run(["info", str(zoo_dir)]) == 0
    assert f"{GRID}-w2" in capsys.readouterr().out
    card = write_card(zoo_dir, tmp_path / "card", plots=False)
    assert "phase" in card.read_text()


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (dict(widths=(2, 16)), "not on its grid"),
        (dict(batch_sizes=(32, 0)), "batch_sizes must be positive"),
        (dict(batch_sizes=(32, 32)), "repeat"),
        (dict(seeds=0), "seeds must be positive"),
        (dict(architecture="resnet34"), "unknown architecture"),
    ],
)
def test_a_bad_grid_value_is_a_named_error(changes, match):
    with pytest.raises(PhaseGridError, match=match) as info:
        tiny(8, **changes)
    assert isinstance(info.value, ValueError)


def test_missing_image_files_give_the_named_error(tmp_path, capsys):
    spec = get_spec("phase-cifar10-resnet18-w2").override(data_dir=str(tmp_path), models=1)
    with pytest.raises(DataFilesMissingError, match="cifar"):
        generate(spec, tmp_path / "zoo", progress=False)
    code = run(["generate", "phase-cifar10-resnet18-w2", "--data-dir", str(tmp_path),
                "--out", str(tmp_path / "z2"), "--models", "1"])  # fmt: skip
    assert code != 0
    err = capsys.readouterr().err
    message = err[err.index("weightzoo: error") :]  # after the progress bar
    assert "DataFilesMissingError" in message and "data_batch_1.bin" in message
    assert str(tmp_path) in message and "Traceback" not in err


def test_the_named_grids():
    names = set(all_specs())
    for dataset in ("svhn", "cifar10", "cifar100", "tiny-imagenet"):
        for arch in ("resnet18", "resnet50"):
            grid = [
                get_spec(f"phase-{dataset}-{arch}-w{w}") for w in (2, 4, 8, 16, 32, 64, 128, 256)
            ]
            assert sum(s.num_models() for s in grid) == 192
            assert {s.epochs for s in grid} == {150} and grid[0].lr == 0.1
            assert grid[0].batch_sizes == (1024, 512, 256, 128, 64, 32, 16, 8)
    for dataset in ("cifar10", "cifar100"):
        vit = [n for n in names if n.startswith(f"phase-{dataset}-vit-w")]
        assert sum(get_spec(n).num_models() for n in vit) == 147
    for arch in ("cnn", "mlp"):
        assert {f"phase-digits-{arch}-w{w}" for w in (2, 4, 8, 16, 32)} <= names


@pytest.mark.parametrize(
    ("net", "shape"),
    [
        (ResNet18(3, 10, width=2), (2, 3, 32, 32)),
        (ResNet50(3, 100, width=2), (2, 3, 32, 32)),
        (VisionTransformer(6, num_classes=10), (2, 3, 32, 32)),
    ],
)
def test_wide_networks_run_forward(net, shape):
    out = net.eval()(torch.zeros(shape))
    assert out.shape == (2, net.fc.out_features if hasattr(net, "fc") else 10)


def test_resnet50_at_width_64_is_the_standard_network():
    assert num_params(ResNet50(3, 10, width=64)) == 23_520_842
    assert num_params(ResNet18(3, 10)) == 11_173_962  # the default width is unchanged


def test_a_phase_spec_builds_the_module_of_its_layout():
    spec = get_spec("phase-digits-cnn-w4")
    assert layout_of(build_model(spec.to_dict())) == family().layout(spec)
    assert build_model(spec.to_dict())(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_the_grouped_grid_has_one_group_per_width(grouped):
    top = Zoo(grouped)
    assert [g.name for g in top.grouped.groups] == ["w2", "w8"]
    w8 = Zoo(grouped, group="w8")
    assert w8.manifest.spec["width"] == 8 and w8.name == f"{GRID}-w8"
    assert "phase" in sidecar_records(w8.path)["landscape"].arrays
    models = [sorted(Zoo(grouped, group=g).reader(None, "last").columns["model_id"].tolist())
              for g in ("w2", "w8")]  # fmt: skip
    assert models == [[0, 1, 2, 3], [4, 5, 6, 7]]  # model ids run on across groups


def test_report_on_the_grouped_zoo_prints_the_diagram_once(grouped, capsys):
    assert run(["report", str(grouped), "--all"]) == 0  # --all: the skipped tables' reasons
    text = capsys.readouterr().out
    assert text.count("Phase diagram of phase-tiny") == 1
    assert "reported once, with its first group (w2)" in " ".join(text.split())  # wrapped
    assert "width=2" in text and "width=8" in text


def test_the_named_grouped_grids():
    spec = get_spec("phase-digits-cnn")
    assert isinstance(spec, PhaseGridSpec)
    assert [name for name, _ in spec.groups()] == ["w2", "w4", "w8", "w16", "w32"]
    assert spec.groups()[2][1] == get_spec("phase-digits-cnn-w8")
    assert spec.estimate()["models"] == 90
    assert get_spec("phase-tiny-imagenet-resnet50").estimate()["models"] == 192
    assert spec.override(epochs=3).groups()[0][1].epochs == 3


@pytest.mark.parametrize(("architecture", "width"), [("resnet18", 2), ("resnet50", 2), ("vit", 6)])
def test_the_paper_networks_train_on_the_population_toolkit(architecture, width, monkeypatch):
    """The full-size grids' code path on random 32x32 images (the real files are not here)."""
    rng = np.random.default_rng(0)

    def fake(*_args):
        def part(n):
            return rng.random((n, 3, 32, 32), dtype=np.float32), rng.integers(0, 10, n)

        return part(32), part(8), part(8)

    monkeypatch.setattr(image_splits, "load_splits", fake)
    spec = get_spec(f"phase-cifar10-{architecture}-w{width}").replace(
        batch_sizes=(16,), seeds=2, epochs=1, checkpoint_every=1
    )
    records = family().train(spec, family().plan(spec), BlockRun(progress=False))
    assert len(records) == 2
    layout = family().layout(spec)
    for record in records:
        assert record.weights.shape == (2, layout.num_params)
        assert np.isfinite(record.metrics["train_loss"]).all()
        assert not np.array_equal(record.weights[0], record.weights[1])  # it trained
    if architecture != "vit":  # BatchNorm running statistics are part of the row
        assert any(name.endswith("running_mean") for name in layout.names)


def test_the_torch_free_size_of_every_named_zoo_is_its_layouts():
    widths = [s for s in all_specs().values() if isinstance(s, PhaseSpec)]
    assert {s.architecture for s in widths} == set(ARCHITECTURES)
    for spec in widths:
        assert spec.num_params() == family().layout(spec).num_params, spec.name
        assert spec.estimate() == family().estimate(spec), spec.name


@settings(max_examples=25, deadline=None)
@given(
    architecture=st.sampled_from(["cnn", "mlp", "vit"]),
    scale=st.integers(1, 6),
    channels=st.integers(1, 3),
    classes=st.integers(1, 12),
    size=st.sampled_from([4, 8, 12, 16]),
)
def test_the_torch_free_size_holds_for_any_small_network(
    architecture, scale, channels, classes, size
):
    width = 3 * scale  # the ViT's embedding dimension is a multiple of its 3 heads
    spec = tiny(width, architecture=architecture, widths=(width,), in_channels=channels,
                num_classes=classes, image_size=size)  # fmt: skip
    assert spec.num_params() == family().layout(spec).num_params


def test_listing_and_sizing_import_no_torch():
    code = (
        "import sys; from weightzoo import catalog, families; "
        "sizes = {s.name: s.estimate() for s in families.spec_module('phase').specs()}; "
        "names = [e.name for e in catalog.entries() if e.family == 'phase']; "
        "assert 'torch' not in sys.modules, 'torch'; "
        "print(len(names), sizes['phase-digits-cnn']['models'], "
        "sizes['phase-cifar10-resnet50-w64']['params'])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    resnet50 = family().layout(get_spec("phase-cifar10-resnet50-w64")).num_params
    assert result.stdout.split() == ["100", "90", str(resnet50)]  # 14 grids and 86 widths


def test_list_shows_every_phase_grid(capsys):
    assert run(["list", "--family", "phase", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert len(rows) == 100 and rows["phase-digits-cnn"]["groups"] == 5
    assert rows["phase-digits-mlp-w8"]["models"] == 18
    assert rows["phase-cifar100-vit"]["sources"][0]["data"] == ["cifar100"]


def test_model_never_imports_training_code():
    code = (
        "import sys; import weightzoo.families.phase.model; "
        "from weightzoo.architectures import build_model; "
        "from weightzoo.generate.specs import get_spec; "
        "build_model(get_spec('phase-digits-cnn-w2').to_dict()); "
        "bad = [m for m in sys.modules if m.endswith(('phase.train', 'generate.population'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_spec_of_no_phase_network_is_unbuildable():
    spec = tiny(8).to_dict()
    with pytest.raises(UnbuildableSpecError, match="unknown phase architecture 'resnet34'"):
        build_model(spec | {"architecture": "resnet34"})
    with pytest.raises(UnbuildableSpecError, match="names no weightzoo architecture"):
        build_model({k: v for k, v in spec.items() if k != "width"})
