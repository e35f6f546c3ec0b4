"""The family registry: a family from outside weightzoo joins with one ``register`` call.

The family below lives in this test module, as a user's would live in their own package: one
module with ``specs()``, ``listings()`` and ``FAMILY``. Once registered it is generated, listed
and evaluated by weightzoo's own commands and engines, through its hooks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from weightzoo import cli, families, functional
from weightzoo.blocks import ModelRecord
from weightzoo.errors import InvalidOptionError, UnknownZooError
from weightzoo.features import flatten, layout_of
from weightzoo.generate.base import BlockRun, Family, GridOptions, GroupedSpec, ModelPlan, ZooSpec
from weightzoo.generate.specs import all_specs, family_for
from weightzoo.landscape.zoo_metrics import ZOO_LANDSCAPE, compute_zoo_landscape
from weightzoo.storage.layout import Layout
from weightzoo.storage.sidecar import read_sidecar
from weightzoo.zoo import Zoo

FAMILY_NAME = "outside"
SIDE, CLASSES = 2, 3  # 1 x 2 x 2 "images" of 3 classes
SPLIT_SEEDS = {"train": 0, "test": 1}


def synthetic_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels of a split: Gaussian images labelled by a fixed linear teacher."""
    generator = torch.Generator().manual_seed(SPLIT_SEEDS[split])
    x = torch.randn(48, 1, SIDE, SIDE, generator=generator)
    teacher = torch.arange(SIDE * SIDE * CLASSES, dtype=torch.float32).reshape(-1, CLASSES)
    return x, (x.flatten(1) @ teacher.sin()).argmax(1)


@dataclass(frozen=True)
class OutsideSpec(GridOptions, ZooSpec):
    """Linear classifiers, one per seed; ``image_size``... are what an image task reads."""

    name: str = "outside-tiny"
    family: str = FAMILY_NAME
    seeds: int = 4
    epochs: int = 3
    lr: float = 0.5
    models: int | None = None
    image_size: int = SIDE
    in_channels: int = 1
    num_classes: int = CLASSES
    loss: str = "ce"

    def grid_models(self) -> int:
        return self.seeds

    def estimate(self) -> dict[str, int]:
        return FAMILY.estimate(self)


class OutsideTask(functional.ImageEvalTask):
    """The family's evaluation data: the synthetic splits."""

    splits = ("train", "test")

    def default_data(self, split: str, data_dir: Any, columns: Any, count: int):
        return functional.TaskData(*synthetic_split(split))


def _measure(net: nn.Module) -> tuple[float, float]:
    x, y = synthetic_split("test")
    with torch.no_grad():
        out = net(x)
    return F.cross_entropy(out, y).item(), (out.argmax(1) == y).float().mean().item()


class OutsideFamily(Family[OutsideSpec]):
    """Full-batch gradient descent of linear classifiers on the synthetic train split."""

    name = FAMILY_NAME
    spec_class = OutsideSpec

    def layout(self, spec: OutsideSpec) -> Layout:
        return layout_of(self.build_model(spec.to_dict(), {}))

    def checkpoint_epochs(self, spec: OutsideSpec) -> list[int]:
        return list(range(spec.epochs + 1))

    def metric_names(self, spec: OutsideSpec) -> list[str]:
        return ["test_loss", "test_acc"]

    def plan(self, spec: OutsideSpec) -> list[ModelPlan]:
        return [ModelPlan(i, 100 + i, "all", {"lr": spec.lr}) for i in range(spec.num_models())]

    def progress_total(self, spec: OutsideSpec, plans: Sequence[ModelPlan]) -> int:
        return spec.epochs

    def train_block(self, spec, plans, device, report) -> list[ModelRecord]:
        layout, (x, y) = self.layout(spec), synthetic_split("train")
        nets = []
        for plan in plans:
            torch.manual_seed(plan.seed)
            nets.append(self.build_model(spec.to_dict(), {}))
        rows = [[flatten(net, layout)] for net in nets]
        measured = [[_measure(net)] for net in nets]
        for _ in range(spec.epochs):
            for net, row, metrics in zip(nets, rows, measured, strict=True):
                net.zero_grad()
                F.cross_entropy(net(x), y).backward()
                with torch.no_grad():
                    for param in net.parameters():
                        param -= spec.lr * param.grad
                row.append(flatten(net, layout))
                metrics.append(_measure(net))
            report(1)
        names = self.metric_names(spec)
        return [
            ModelRecord(
                plan.model_id,
                torch.stack(row).numpy(),
                {name: np.float32([m[k] for m in metrics]) for k, name in enumerate(names)},
            )
            for plan, row, metrics in zip(plans, rows, measured, strict=True)
        ]

    def build_model(self, spec: Mapping[str, Any], columns: Mapping[str, Any]) -> nn.Module:
        features = int(spec["in_channels"]) * int(spec["image_size"]) ** 2
        return nn.Sequential(nn.Flatten(), nn.Linear(features, int(spec["num_classes"])))

    def eval_task(self, zoo: Zoo, spec: Mapping[str, Any]) -> OutsideTask:
        return OutsideTask(zoo, spec)


FAMILY = OutsideFamily()


def specs() -> list[ZooSpec]:
    return [OutsideSpec()]


def listings() -> list[families.Listing]:
    return [families.Listing("outside-tiny", "Linear classifiers of a family from outside")]


@pytest.fixture(scope="module")
def outside():
    """The family above, registered under its name for this module's tests."""
    families.register(FAMILY_NAME, __name__)
    yield FAMILY_NAME
    families.unregister(FAMILY_NAME)


@pytest.fixture(scope="module")
def outside_zoo(outside, tmp_path_factory) -> Zoo:
    out = tmp_path_factory.mktemp("outside") / "zoo"
    assert cli.run(["generate", "outside-tiny", "--out", str(out), "--workers", "1"]) == 0
    return Zoo(out)


# ------------------------------------------------------------------------------- generated
def test_a_registered_family_is_generated_by_the_command_line(outside_zoo):
    assert outside_zoo.manifest.family == FAMILY_NAME
    assert len(outside_zoo) == 4 and list(outside_zoo.manifest.epochs) == [0, 1, 2, 3]
    stored = outside_zoo.metadata()
    assert stored["final_test_acc"].min() > 0.5  # chance is 1/3: it trained


def test_a_registered_family_is_listed_with_its_summary_and_size(outside, capsys):
    assert "outside-tiny" in all_specs() and family_for(OutsideSpec()) is FAMILY
    assert cli.run(["list", "--family", FAMILY_NAME, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["summary"] == "Linear classifiers of a family from outside"
    params = SIDE * SIDE * CLASSES + CLASSES
    assert (row["models"], row["checkpoints"], row["params"]) == (4, 4, params)
    assert row["bytes"] == 4 * 4 * params * 4


def test_a_registered_family_is_evaluated_through_its_hooks(outside_zoo):
    rows = outside_zoo.rows(None, "last")
    result = functional.evaluate(outside_zoo, rows)
    stored = outside_zoo.metadata()
    np.testing.assert_allclose(result.metrics["acc"], stored["final_test_acc"], atol=1e-6)
    np.testing.assert_allclose(result.metrics["loss"], stored["final_test_loss"], rtol=1e-5)
    assert isinstance(outside_zoo.module((0, "last"))[1], nn.Linear)  # the build_model hook
    options = ZOO_LANDSCAPE.replace(batches=1, batch_size=16, probes=2)
    compute_zoo_landscape(
        outside_zoo, metrics=["hessian_trace"], options=options, progress=False, name="trace"
    )
    trace = read_sidecar(outside_zoo.path, "trace")["hessian_trace"]  # the generic driver
    assert trace.shape == (4, 1) and np.isfinite(trace).all()


def test_a_family_after_unregister_is_unknown(outside):
    families.unregister("not-registered")  # a no-op
    with pytest.raises(UnknownZooError, match="unknown zoo family 'not-registered'"):
        families.family("not-registered")
    assert families.family_hooks("not-registered") is None
    assert families.family_hooks(["not", "a", "name"]) is None  # a manifest's value, any type


# ------------------------------------------------------------- what the base class shares
def test_the_default_train_reports_every_epoch_to_the_runner():
    spec = OutsideSpec(seeds=3, epochs=2)
    reports: list[tuple[int, int | None]] = []
    records = FAMILY.train(
        spec, FAMILY.plan(spec), BlockRun(progress=False, on_epoch=lambda *a: reports.append(a))
    )
    assert reports == [(3, None), (3, None)]
    assert [r.weights.shape for r in records] == [(3, SIDE * SIDE * CLASSES + CLASSES)] * 3


def outside_trainer(spec, plans, device, report) -> list[ModelRecord]:
    """The outside family's block training as a function: what a family's ``trainer`` names."""
    return OutsideFamily().train_block(spec, plans, device, report)


class NamedTrainerFamily(OutsideFamily):
    """The outside family, trained by the function it names (the base class's train_block)."""

    trainer = f"{__name__}:outside_trainer"
    train_block = Family.train_block


def test_the_default_train_block_calls_the_trainer_the_family_names():
    spec, named = OutsideSpec(seeds=2, epochs=3), NamedTrainerFamily()
    reports: list[tuple[int, int | None]] = []
    run = BlockRun(progress=False, on_epoch=lambda *a: reports.append(a))
    records = named.train(spec, named.plan(spec), run)
    assert reports == [(2, None)] * 3  # the trainer's report reaches the runner
    direct = FAMILY.train(spec, FAMILY.plan(spec), BlockRun(progress=False))
    for ours, theirs in zip(records, direct, strict=True):
        np.testing.assert_array_equal(ours.weights, theirs.weights)


@dataclass(frozen=True)
class OutsideGrid(GroupedSpec):
    name: str = "outside-grid"
    family: str = FAMILY_NAME

    def groups(self) -> list[tuple[str, ZooSpec]]:
        return [("few", OutsideSpec(seeds=2, epochs=1)), ("many", OutsideSpec(seeds=5))]


def test_estimate_counts_plans_checkpoints_and_layout_and_sums_groups():
    params = SIDE * SIDE * CLASSES + CLASSES
    assert FAMILY.estimate(OutsideSpec(seeds=2, epochs=1)) == {
        "models": 2, "checkpoints": 2, "params": params, "bytes": 2 * 2 * params * 4
    }  # fmt: skip
    grid = FAMILY.estimate(OutsideGrid())
    assert grid == {
        "models": 7, "checkpoints": 4, "params": params, "bytes": (2 * 2 + 5 * 4) * params * 4
    }  # fmt: skip


def test_override_answers_one_error_type_naming_the_zoo():
    assert FAMILY.override(OutsideSpec(), models=2).num_models() == 2
    with pytest.raises(
        InvalidOptionError, match=r"zoo 'outside-tiny': --models must be at least 1"
    ):
        FAMILY.override(OutsideSpec(), models=0)
    with pytest.raises(InvalidOptionError, match=r"zoo 'outside-tiny'.*\['per_class'\]"):
        FAMILY.override(OutsideSpec(), per_class=3)


def test_a_family_without_training_says_what_it_lacks():
    class Unfinished(Family[OutsideSpec]):
        name = "unfinished"
        spec_class = OutsideSpec

        def progress_total(self, spec, plans):
            return 1

    with pytest.raises(NotImplementedError, match="Unfinished must define train_block"):
        Unfinished().train(OutsideSpec(), [], BlockRun(progress=False))
    assert Unfinished().build_model({}, {}) is None and Unfinished().tables() is None


# --------------------------------------------------------------------------------- rules
@given(name=st.text(max_size=12))
def test_register_accepts_exactly_lower_case_names(name):
    valid = bool(name) and all(c in "abcdefghijklmnopqrstuvwxyz0123456789-_" for c in name)
    valid = valid and name[0] not in "-_"
    if name in families.names():
        return
    if valid:
        families.register(name, "some_package.family")
        assert name in families.names()
        families.unregister(name)
        assert name not in families.names()
    else:
        with pytest.raises(InvalidOptionError, match="lower-case"):
            families.register(name, "some_package.family")


@pytest.mark.parametrize("module", ["", "a..b", "1abc", "a.b-c", "../etc"])
def test_register_refuses_what_is_not_a_module_path(module):
    with pytest.raises(InvalidOptionError, match="not a module path"):
        families.register("fresh", module)


def test_a_taken_name_and_weightzoos_own_families_stay():
    families.register("pinn", "weightzoo.families.pinn")  # the same module: a no-op
    with pytest.raises(InvalidOptionError, match=r"taken by the module weightzoo\.families\.pinn"):
        families.register("pinn", "elsewhere.pinn")
    with pytest.raises(InvalidOptionError, match="stays registered"):
        families.unregister("pinn")
    assert families.spec_module("pinn").__name__ == "weightzoo.families.pinn.spec"


def test_names_import_nothing():
    code = (
        "import sys; from weightzoo import families; n = families.names(); "
        "bad = [m for m in sys.modules if m.startswith('weightzoo.generate') or m == 'torch']; "
        "assert not bad, bad; print(len(n))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 9
