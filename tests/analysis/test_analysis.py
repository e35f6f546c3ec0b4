"""weightzoo.analysis and `weightzoo report` on small zoos written with the real writer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from weightzoo import Zoo
from weightzoo.analysis import (
    TABLE_IDS,
    UnsupportedTableError,
    mlds,
    probes,
    quality,
    report,
    trajectories,
)
from weightzoo.analysis.tables import Row, Table, format_value
from weightzoo.cli import run
from weightzoo.errors import InvalidOptionError
from weightzoo.storage import Layout, ZooWriter, shard_file_name

MACHINES = ("EightBitMachine", "SingleDirectMachine", "ParityMachine")


def write_zoo(
    path,
    *,
    weights,
    splits,
    columns,
    metrics=None,
    epochs=None,
    name="unit",
    family="test",
    spec=None,
):
    """Write ``weights [models, checkpoints, params]`` as a zoo, one shard per split."""
    models, checkpoints, params = weights.shape
    epochs = list(range(checkpoints)) if epochs is None else epochs
    metrics = metrics or {}
    splits = np.asarray(splits)
    order = np.concatenate([np.flatnonzero(splits == s) for s in ("train", "val", "test")])
    layout = Layout.from_shapes({"fc.weight": (params - 1,), "fc.bias": (1,)})
    writer = ZooWriter(
        path,
        name=name,
        family=family,
        spec=spec or {"name": name},
        layout=layout,
        epochs=epochs,
        metrics=list(metrics),
        stats_names=["mean", "std"],
        num_models=models,
    )
    first = 0
    for split in ("train", "val", "test"):
        rows = order[splits[order] == split]
        if not len(rows):
            continue
        w = weights[rows].astype(np.float32)
        writer.write_shard(
            shard_file_name(split, first),
            split=split,
            models=(first, first + len(rows)),
            epochs=epochs,
            weights=w,
            stats=np.stack([w.mean(-1), w.std(-1)], axis=-1),
            metrics={k: np.asarray(v)[rows] for k, v in metrics.items()},
            columns={"model_id": rows, **{k: np.asarray(v)[rows] for k, v in columns.items()}},
        )
        first += len(rows)
    writer.finish()
    return Zoo(path)


def split_per_class(labels):
    """70/15/15 within each class, as the generator does."""
    labels = np.asarray(labels)
    splits = np.empty(len(labels), dtype=object)
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        n = len(rows)
        cut = [round(0.7 * n), round(0.85 * n)]
        splits[rows[: cut[0]]] = "train"
        splits[rows[cut[0] : cut[1]]] = "val"
        splits[rows[cut[1] :]] = "test"
    return splits


def mlds_zoo(
    path, *, separable, per_class=40, backdoor=0, shift=None, params=41, seed=0, attempts=False
):
    """An MLDS-like zoo: 2 checkpoints, `machine`/`backdoor`/`passed` columns, losses."""
    rng = np.random.default_rng(seed)
    machine = np.repeat(MACHINES, per_class)
    # Machine centres are the same in every zoo (DS1 and DS2 pair up); the noise is per seed.
    centres = np.random.default_rng(100).normal(scale=3.0, size=(len(MACHINES), params))
    final = rng.normal(size=(len(machine), params))
    if separable:
        final += centres[np.repeat(np.arange(len(MACHINES)), per_class)]
    if shift is not None:
        final += shift(machine)
    weights = np.stack([rng.normal(size=final.shape), final], axis=1)
    loss = rng.uniform(0.001, 0.1, size=(len(machine), 2))
    subset = "ds2" if backdoor else "ds1"
    return write_zoo(
        path,
        weights=weights,
        splits=split_per_class(machine),
        columns={
            "machine": list(machine),
            "backdoor": np.full(len(machine), backdoor),
            "passed": np.arange(len(machine)) % 4 != 0,
        }
        | ({"attempt": np.arange(len(machine)) % 3} if attempts else {}),
        metrics={"train_loss": loss, "eval_loss": loss * 2},
        name=f"mlds-{subset}",
        family="mlds",
        spec={"name": f"mlds-{subset}", "subset": subset, "machines": list(MACHINES)},
    )


@pytest.fixture
def fast_classifiers(monkeypatch):
    """Smaller forests and MLPs for tests of plumbing, not of accuracy (same names and seeds)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neural_network import MLPClassifier

    cheap = {
        "MLP": lambda: MLPClassifier(max_iter=20, random_state=0),
        "RandForest": lambda: RandomForestClassifier(n_estimators=5, random_state=0),
        "RandomForest": lambda: RandomForestClassifier(n_estimators=5, random_state=0),
    }
    for name in ("TABLE1_CLASSIFIERS", "TABLE2_CLASSIFIERS"):
        table = getattr(mlds, name)
        monkeypatch.setattr(mlds, name, {k: cheap.get(k, v) for k, v in table.items()})


# -- tables ---------------------------------------------------------------------------------


def test_table1_high_when_machines_separate_near_chance_when_not(tmp_path):
    good = mlds.table1_row(mlds_zoo(tmp_path / "good", separable=True))
    bad = mlds.table1_row(mlds_zoo(tmp_path / "bad", separable=False))
    assert good.ours["classes"] == 3 and good.ours["networks"] == 3 * 40
    assert good.ours["folds"] == 5
    for name in mlds.TABLE1_CLASSIFIERS:
        assert good.ours[name] >= 90, (name, good.ours)
    chance = np.mean([bad.ours[name] for name in mlds.TABLE1_CLASSIFIERS])
    assert chance < 60  # three classes: chance is 33%
    assert good.paper_label == "MLDS-DS1-1000" and good.paper["MLP"] == 100


def test_cross_validation_is_deterministic():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 8)), np.repeat([0, 1, 2], 10)
    first = mlds.cv_accuracies(mlds.TABLE1_CLASSIFIERS, x, y, folds=3)
    assert first == mlds.cv_accuracies(mlds.TABLE1_CLASSIFIERS, x, y, folds=3)


def test_table2_finds_backdoor_only_where_weights_differ(tmp_path):
    def shift(machine):
        return np.where((machine == "EightBitMachine")[:, None], 4.0, 0.0)

    clean = mlds_zoo(tmp_path / "ds1", separable=True, seed=1)
    backdoor = mlds_zoo(tmp_path / "ds2", separable=True, backdoor=1, shift=shift, seed=2)
    table = mlds.table2(backdoor, clean)  # either order
    rows = {row.label: row for row in table.rows}
    assert list(rows) == list(MACHINES)
    found = [rows["EightBitMachine"].ours[name] for name in mlds.TABLE2_CLASSIFIERS]
    assert np.median(found) >= 90
    blind = [rows["ParityMachine"].ours[name] for name in mlds.TABLE2_CLASSIFIERS]
    assert np.mean(blind) < 75  # chance is 50%
    assert rows["ParityMachine"].paper["SVM"] == 63


def test_table2_refuses_two_clean_zoos(tmp_path, fast_classifiers):
    a = mlds_zoo(tmp_path / "a", separable=True)
    b = mlds_zoo(tmp_path / "b", separable=True, seed=3)
    with pytest.raises(UnsupportedTableError, match="both zoos hold clean networks"):
        mlds.table2(a, b)


def image_zoo(path, *, informative, models=40, checkpoints=6, params=31, seed=0, hyp=True):
    """A Model-Zoos-like zoo: test_acc and ggap per checkpoint, init/activation columns."""
    rng = np.random.default_rng(seed)
    init = np.array(["uniform", "normal"])[np.arange(models) % 2 if hyp else np.zeros(models, int)]
    activation = np.array(["tanh", "relu"])[(np.arange(models) // 2) % 2]
    direction = rng.normal(size=params)
    start = rng.normal(size=(models, params)) + np.where(init == "normal", 2.0, -2.0)[:, None]
    steps = np.linspace(0, 1, checkpoints)[None, :, None] * direction
    weights = start[:, None, :] + steps + 0.05 * rng.normal(size=(models, checkpoints, params))
    if informative:
        acc = weights @ direction / (direction @ direction)
    else:
        acc = rng.uniform(size=(models, checkpoints))
    metrics = {"test_acc": acc, "ggap": 0.1 * acc, "train_acc": 1.1 * acc}
    return write_zoo(
        path,
        weights=weights,
        splits=split_per_class(np.zeros(models)),
        columns={"init": list(init), "activation": list(activation)},
        metrics=metrics,
        name="modelzoo-digits-cnn-s-seed",
        family="modelzoo",
        spec={"dataset": "digits", "architecture": "cnn-s", "config": "seed"},
    )


def test_table3_probes_recover_an_encoded_accuracy_and_init(tmp_path):
    row, notes = probes.table3_row(image_zoo(tmp_path / "good", informative=True))
    assert row.ours["Accuracy w"] > 90 and row.ours["GGap w"] > 90
    assert row.ours["Init w"] == 100.0
    assert row.paper_label.startswith("MNIST CNN (s) Seed (nearest")
    assert row.paper["Accuracy s(w)"] == 98.7
    assert any("train / val / test models 28 / 6 / 6" in n for n in notes)
    noise, _ = probes.table3_row(image_zoo(tmp_path / "bad", informative=False))
    assert noise.ours["Accuracy w"] < 30 and noise.ours["Accuracy s(w)"] < 30


def test_table3_has_no_init_column_when_the_zoo_has_one_init(tmp_path):
    row, _ = probes.table3_row(image_zoo(tmp_path / "seed", informative=True, hyp=False))
    assert row.ours["Init w"] is None and row.ours["Act w"] is not None


def test_table3_matches_the_paper_row_by_spec():
    assert probes.PAPER_TABLE3[("mnist", "cnn-s", "hyp-10-rand")]["Act w"] == 45.5
    assert probes.PAPER_TABLE3[("stl10", "cnn-m", "seed")]["Accuracy w"] is None  # unreadable
    assert len(probes.PAPER_TABLE3) == 27


def trajectory_zoo(path, *, walks, models=8, checkpoints=10, params=20, seed=0):
    rng = np.random.default_rng(seed)
    if walks:  # far-apart starts, shrinking steps: the paper's "string of pearls"
        start = rng.normal(scale=20.0, size=(models, 1, params))
        sizes = 0.8 ** np.arange(checkpoints)[None, :, None]
        steps = rng.normal(size=(models, checkpoints, params)) * sizes
        steps[:, 0] = 0
        weights = start + np.cumsum(steps, axis=1)
    else:
        weights = rng.normal(size=(models, checkpoints, params))
    return write_zoo(
        path,
        weights=weights,
        splits=["train"] * (models - 2) + ["test"] * 2,
        columns={},
        name="trajectory-digits-mlp",
        family="trajectory",
        spec={"architecture": "mlp"},
    )


def test_recover_order_puts_a_shrinking_walk_in_order():
    rng = np.random.default_rng(0)
    direction = rng.normal(size=5)
    points = np.cumsum(0.7 ** np.arange(8))[:, None] * direction
    shuffled = rng.permutation(8)
    order = trajectories.recover_order(points[shuffled])
    assert list(shuffled[order]) == list(range(8))


def test_trajectory_clusters_are_pure_for_separate_walks(tmp_path):
    table = trajectories.trajectory_table(trajectory_zoo(tmp_path / "w", walks=True))
    rows = {row.label: row for row in table.rows}
    assert list(rows) == ["full (20)", "SVD 10", "SVD 5"]  # sizes >= the rank are left out
    assert rows["full (20)"].ours["purity"] == 1.0
    assert rows["full (20)"].paper == {
        "purity": 1.0,
        "ordered initial epochs": 4.512,
        "ordered epochs": 0.357,
    }
    assert rows["full (20)"].ours["ordered epochs"] > 0.5
    noise = trajectories.trajectory_table(trajectory_zoo(tmp_path / "n", walks=False))
    assert noise.rows[0].ours["purity"] < 0.5


def test_trajectory_table_skips_too_many_points(tmp_path):
    zoo = trajectory_zoo(tmp_path / "w", walks=True)
    with pytest.raises(UnsupportedTableError, match="more than the 50"):
        trajectories.trajectory_table(zoo, max_points=50)


def test_quality_counts_pass_rate_and_quantiles(tmp_path):
    zoo = mlds_zoo(tmp_path / "q", separable=True, per_class=4)
    table = quality.quality_table(zoo)
    assert table.columns == ["models", "viable", "passed %", "eval_loss"]
    assert [row.label for row in table.rows] == [*MACHINES, "all"]
    every = table.rows[-1].ours
    assert every["models"] == 12 and every["viable"] == 12
    assert every["passed %"] == pytest.approx(75.0)  # every fourth network failed
    final = Zoo(zoo.path).reader(epochs="last").metrics["eval_loss"][:, 0]
    assert every["eval_loss"]["p50"] == pytest.approx(float(np.median(final)))
    retried = quality.quality_table(
        mlds_zoo(tmp_path / "r", separable=True, per_class=4, attempts=True)
    )
    assert retried.columns == ["models", "viable", "passed %", "passed 1st attempt %", "eval_loss"]
    # networks 0..11: passed unless i % 4 == 0, first attempt when i % 3 == 0: 3, 6 and 9
    assert retried.rows[-1].ours["passed 1st attempt %"] == pytest.approx(100.0 * 3 / 12)
    assert retried.rows[-1].ours["passed %"] == pytest.approx(75.0)


def test_quality_prefers_held_out_metrics():
    names = ["train_loss", "eval_loss", "train_bit_accuracy", "eval_bit_accuracy", "ggap"]
    assert quality.quality_metrics(names) == ["eval_bit_accuracy", "eval_loss"]
    assert quality.quality_metrics(["train_loss"]) == ["train_loss"]


def test_format_value():
    assert format_value(None) == "-"
    assert format_value(87.0) == "87.0" and format_value(0.357) == "0.357"
    assert format_value({"p10": 0.1, "p50": 0.25, "p90": 0.5}) == "0.250 [0.100, 0.500]"
    table = Table("t", "T", "s", "u", ["a"], [Row("r", {"a": 1.0}, {"a": 2.0}, "p")])
    assert "1.00 (2.00)" in table.to_text() and "| r | 1.00 (2.00) | p |" in table.to_markdown()


# -- report and CLI -----------------------------------------------------------------------


def test_report_lists_every_table_as_computed_or_skipped(tmp_path, fast_classifiers):
    result = report(mlds_zoo(tmp_path / "ds1", separable=True))
    done = {t.id for t in result.tables}
    skipped = {s.table: s.reason for s in result.skipped}
    assert done == {"quality", "mlds.table1"}
    assert done | set(skipped) == set(TABLE_IDS)
    assert "needs a second zoo" in skipped["mlds.table2"]
    assert "no test_acc metric" in skipped["modelzoo.table3"]
    assert "needs at least 3" in skipped["trajectories.clustering"]


def test_report_skips_what_a_zoo_cannot_support(tmp_path, fast_classifiers):
    one_class = write_zoo(
        tmp_path / "one",
        weights=np.random.default_rng(0).normal(size=(6, 2, 5)),
        splits=["train"] * 4 + ["test"] * 2,
        columns={"machine": ["ParityMachine"] * 6},
    )
    no_test = write_zoo(
        tmp_path / "no-test",
        weights=np.random.default_rng(0).normal(size=(6, 2, 5)),
        splits=["train"] * 6,
        columns={"machine": ["ParityMachine"] * 5 + ["EightBitMachine"]},
    )
    reasons = {(s.table, s.zoo): s.reason for s in report(one_class, no_test).skipped}
    assert "only machine 'ParityMachine'" in reasons["mlds.table1", "unit (one)"]
    assert "EightBitMachine of" in reasons["mlds.table1", "unit (no-test)"]
    assert "fewer than 2 viable networks" in reasons["mlds.table1", "unit (no-test)"]
    assert "has no backdoor column" in reasons["mlds.table2", "unit (one) + unit (no-test)"]


def test_report_json_schema(tmp_path, fast_classifiers):
    result = report(
        mlds_zoo(tmp_path / "ds1", separable=True),
        mlds_zoo(tmp_path / "ds2", separable=True, backdoor=1, seed=1),
    )
    data = json.loads(result.to_json())
    assert data["report_format"] == 1
    assert [z["name"] for z in data["zoos"]] == ["mlds-ds1", "mlds-ds2"]
    ids = [t["id"] for t in data["tables"]]
    assert ids == ["quality", "quality", "mlds.table1", "mlds.table2"]
    for table in data["tables"]:
        assert set(table) == {"id", "zoo", "title", "source", "unit", "columns", "rows", "notes"}
        for row in table["rows"]:
            assert set(row) == {"label", "ours", "paper", "paper_label"}
            assert set(row["ours"]) == set(table["columns"])
    assert data["tables"][2]["rows"][1]["paper_label"] == "MLDS-DS2-1000"
    assert {s["table"] for s in data["skipped"]} == {
        "modelzoo.table3",
        "trajectories.clustering",
        "property.distinguish",
        "vit.finetune",
        "vit.lineage",
        "phase.diagram",
    }
    assert result.table("mlds.table2").rows[0].label == "EightBitMachine"
    with pytest.raises(KeyError, match="modelzoo.table3"):
        result.table("modelzoo.table3")


def test_report_rejects_unknown_table_ids(tmp_path, fast_classifiers):
    with pytest.raises(ValueError, match="unknown table") as info:
        report(mlds_zoo(tmp_path / "z", separable=True, per_class=4), tables=["table9"])
    assert isinstance(info.value, InvalidOptionError)  # a named error: one line in the CLI


def test_cli_report_text_json_markdown_and_exit_codes(tmp_path, fast_classifiers, capsys):
    zoo = mlds_zoo(tmp_path / "ds1", separable=True, per_class=10)
    assert run(["report", str(zoo.path)]) == 0
    text = capsys.readouterr().out
    assert "MLDS Table 1" in text and "skipped mlds.table2" not in text
    assert run(["report", str(zoo.path), "--all"]) == 0
    assert "skipped mlds.table2" in capsys.readouterr().out
    assert run(["report", str(zoo.path), "--json", "--out", str(tmp_path / "r.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / "r.json").read_text()) == printed
    assert run(["report", str(zoo.path), "--out", str(tmp_path / "r.md")]) == 0
    assert (tmp_path / "r.md").read_text().startswith("## weightzoo report: mlds-ds1")
    capsys.readouterr()
    assert run(["report", str(tmp_path / "missing")]) == 1
    assert "weightzoo: error:" in capsys.readouterr().err


def test_cli_report_exits_1_when_no_table_can_be_computed(tmp_path, capsys):
    ZooWriter(
        tmp_path / "empty",
        name="empty",
        family="test",
        spec={},
        layout=Layout.from_shapes({"w": (3,)}),
        epochs=[0],
        metrics=[],
        stats_names=[],
        num_models=4,
    )
    assert run(["report", str(tmp_path / "empty")]) == 1
    captured = capsys.readouterr()
    assert "skipped quality for empty: " in captured.out
    assert "no table could be computed" in captured.err


def test_report_on_a_generated_mlds_zoo(tmp_path, fast_classifiers, capsys):
    from weightzoo.families.mlds.spec import MLDSSpec
    from weightzoo.generate.runner import generate

    # `weightzoo generate mlds-ds1 --models 10 --train-epochs 1` with smaller data sets.
    sizes = dict(seq_len=8, train_size=16, val_size=8, eval_size=8, batch_size=8)
    spec = MLDSSpec(name="mlds-ds1", family="mlds", subset="ds1", models=10, max_epochs=1, **sizes)
    out = tmp_path / "mlds-ds1"
    generate(spec, out, progress=False)
    assert run(["report", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    quality_table = data["tables"][0]
    assert quality_table["rows"][-1]["ours"]["models"] == 10
    assert "eval_loss" in quality_table["columns"]
    table1 = data["tables"][1]
    assert table1["id"] == "mlds.table1" and table1["rows"][0]["ours"]["classes"] == 5


def test_table3_skips_a_zoo_without_test_split(tmp_path):
    zoo = write_zoo(
        tmp_path / "z",
        weights=np.random.default_rng(0).normal(size=(4, 3, 5)),
        splits=["train"] * 4,
        columns={},
        metrics={"test_acc": np.zeros((4, 3))},
    )
    table, skipped = probes.table3([zoo])
    assert table is None and "has no test split" in skipped[0].reason


def test_examples_are_thin_calls_that_run(tmp_path, fast_classifiers, monkeypatch, capsys):
    import runpy
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "examples"
    mlds_zoo(tmp_path / "mlds-ds1", separable=True, per_class=10)
    mlds_zoo(tmp_path / "mlds-ds2", separable=True, per_class=10, backdoor=1, seed=1)
    runs = {
        "mlds_classification.py": [str(tmp_path)],
        "modelzoo_probe.py": [str(image_zoo(tmp_path / "img", informative=True).path)],
        "trajectory_clustering.py": [str(trajectory_zoo(tmp_path / "t", walks=True).path)],
    }
    expected = {
        "mlds_classification.py": "MLDS Table 2",
        "modelzoo_probe.py": "Model Zoos Table 3",
        "trajectory_clustering.py": "purity",
    }
    for script, argv in runs.items():
        monkeypatch.setattr("sys.argv", [script, *argv])
        runpy.run_path(str(examples / script), run_name="__main__")
        assert expected[script] in capsys.readouterr().out
