"""PINN convection zoos: the problem, input derivatives, training, landscape side file, rows."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.tiny_specs import tiny_pinn_spec as tiny_spec
from weightzoo import cli, functional
from weightzoo.architectures import UnbuildableSpecError
from weightzoo.errors import InvalidOptionError
from weightzoo.families import family as registered_family
from weightzoo.families.pinn.data import (
    convection_data,
    exact_solution,
    loss_parts,
    relative_l2_error,
    residual,
)
from weightzoo.families.pinn.family import FAMILY
from weightzoo.families.pinn.landscape import (
    PINNLossModule,
    pinn_loss_data,
    pinn_loss_fn,
)
from weightzoo.families.pinn.model import PINN
from weightzoo.families.pinn.spec import GridValueError, PINNSpec
from weightzoo.families.pinn.train import (
    initial_models,
    population_loss_parts,
)
from weightzoo.generate.base import BlockRun, ZooSpec
from weightzoo.generate.runner import generate
from weightzoo.generate.specs import all_specs, family_for, get_spec
from weightzoo.landscape.hessian import hessian_top_eigenvalue
from weightzoo.landscape.taxonomy import read_phases
from weightzoo.landscape.zoo_metrics import ZOO_LANDSCAPE, compute_zoo_landscape
from weightzoo.storage.sidecar import read_sidecar
from weightzoo.zoo import Zoo


def family():
    """The PINN family, as the registry hands it out."""
    return registered_family("pinn")


# the tiny landscape runs two power iterations, far from converged on purpose (speed)
pytestmark = pytest.mark.filterwarnings("ignore:power iteration did not converge")


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory) -> Zoo:
    out = tmp_path_factory.mktemp("pinn") / "zoo"
    spec = tiny_spec()
    generate(spec, out, progress=False)
    family().finalize(spec, out, "cpu")
    return Zoo(out)


def tensors(data) -> dict[str, torch.Tensor]:
    return {k: v.double() for k, v in data.tensors().items()}


# ------------------------------------------------------------------------------ the problem
def test_point_sets_follow_the_grid_and_the_seed():
    data = convection_data(collocation=50, seed=3, x_grid=16, t_grid=8)
    assert data.grid.shape == (16 * 8, 2) and data.initial.shape == (16, 2)
    assert np.all(data.initial[:, 1] == 0)
    np.testing.assert_allclose(data.initial_u, np.sin(data.initial[:, 0]), atol=1e-6)
    assert np.all(data.boundary_low[:, 0] == 0)
    assert np.allclose(data.boundary_high[:, 0], 2 * math.pi)
    # collocation points: distinct interior grid points (t > 0, x > 0)
    assert len(np.unique(data.collocation, axis=0)) == 50
    assert np.all(data.collocation[:, 0] > 0) and np.all(data.collocation[:, 1] > 0)
    grid = {tuple(p) for p in data.grid.tolist()}
    assert all(tuple(p) in grid for p in data.collocation.tolist())
    again = convection_data(collocation=50, seed=3, x_grid=16, t_grid=8)
    other = convection_data(collocation=50, seed=4, x_grid=16, t_grid=8)
    assert np.array_equal(again.collocation, data.collocation)
    assert not np.array_equal(other.collocation, data.collocation)
    with pytest.raises(ValueError, match="interior"):
        convection_data(collocation=16 * 8, x_grid=16, t_grid=8)


@pytest.mark.parametrize("beta", [1.0, 30.0])
def test_exact_solution_has_zero_residual_and_zero_loss(beta):
    data = tensors(convection_data(collocation=200))
    exact = lambda p: exact_solution(p, beta)  # noqa: E731
    assert residual(exact, data["grid"], beta).abs().max() < 1e-10
    assert loss_parts(exact, data, beta).max() < 1e-12  # the points are float32 values
    # a function that is not a solution: u = sin(x) has u_t + beta u_x = beta cos(x)
    f = residual(lambda p: torch.sin(p[..., 0]), data["grid"], beta)
    assert torch.allclose(f, beta * torch.cos(data["grid"][:, 0]))


def test_relative_error_is_zero_for_the_solution_and_one_for_zero():
    grid = convection_data().grid
    exact = exact_solution(grid, 5.0)
    assert relative_l2_error(exact, exact) == 0
    assert relative_l2_error(np.zeros_like(exact), exact) == pytest.approx(1.0)


# --------------------------------------------------------------------- vmapped derivatives
def _loop_parts(model: PINN, data: dict[str, torch.Tensor], beta: float) -> torch.Tensor:
    """The loss parts of one model with derivatives from torch.autograd.grad (another route)."""
    pts = data["collocation"].clone().requires_grad_(True)
    u = model(pts)
    (du,) = torch.autograd.grad(u.sum(), pts, create_graph=True)
    f = du[:, 1] + beta * du[:, 0]
    initial = model(data["initial"]) - data["initial_u"]
    boundary = model(data["boundary_low"]) - model(data["boundary_high"])
    return torch.stack([f.square().mean(), initial.square().mean(), boundary.square().mean()])


def test_vmapped_derivatives_and_gradients_equal_a_per_model_loop():
    spec = tiny_spec(betas=(1.0, 7.0, 40.0), seeds=1)
    plans = family().plan(spec)
    models = [m.double() for m in initial_models(spec, plans)]
    params, _ = torch.func.stack_module_state(models)
    params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    beta = torch.tensor([p.columns["beta"] for p in plans], dtype=torch.float64)
    data = tensors(convection_data(40, 0, 32, 12))
    parts = population_loss_parts(PINN().double(), params, beta, data)
    parts.sum().backward()
    for i, model in enumerate(models):
        expected = _loop_parts(model, data, float(beta[i]))
        torch.testing.assert_close(parts[i], expected.detach(), rtol=1e-10, atol=1e-12)
        expected.sum().backward()
        for name, param in model.named_parameters():
            torch.testing.assert_close(params[name].grad[i], param.grad, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------- training
def test_a_population_of_two_trains_and_lowers_the_loss():
    spec = tiny_spec(betas=(1.0,), seeds=2, epochs=120, checkpoints=1)
    records = family().train(spec, family().plan(spec), BlockRun(progress=False))
    assert len(records) == 2
    for record in records:
        assert set(record.metrics) == set(family().metric_names(spec))
        loss = record.metrics["train_loss"]
        assert loss.shape == (2,) and loss[-1] < 0.5 * loss[0]
        parts = sum(record.metrics[f"loss_{p}"] for p in ("residual", "initial", "boundary"))
        np.testing.assert_allclose(parts, loss, rtol=1e-5)
    assert not np.array_equal(records[0].weights, records[1].weights)  # own seeds


def test_training_is_deterministic():
    spec = tiny_spec(seeds=1, epochs=3, checkpoints=1)
    first, again = (
        family().train(spec, family().plan(spec), BlockRun(progress=False)) for _ in range(2)
    )
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.weights, b.weights)
        assert all(np.array_equal(a.metrics[m], b.metrics[m]) for m in a.metrics)


def test_plan_columns_and_contract_attributes():
    spec = tiny_spec(betas=(1.0, 5.0), lrs=(1e-3, 1e-2), seeds=3)
    plans = family().plan(spec)
    assert len(plans) == 12 and [p.seed for p in plans] == list(range(1, 13))
    for plan in plans:
        assert plan.columns["load"] == plan.columns["beta"]
        assert plan.columns["temperature"] == plan.columns["lr"]
    assert (PINNSpec.load_factor, PINNSpec.temperature_factor) == ("beta", "lr")
    stored = spec.to_dict()  # the manifest names them too
    assert (stored["load_factor"], stored["temperature_factor"]) == ("beta", "lr")
    # seed siblings: one model per seed in every cell, seed-major order
    assert spec.cell_models(5.0, 1e-3) == [2, 6, 10]
    assert {plans[i].columns["beta"] for i in spec.cell_models(5.0, 1e-3)} == {5.0}
    assert family().checkpoint_epochs(spec) == [0, 3, 6]


def test_unknown_or_bad_grid_values_raise_the_named_error():
    spec = tiny_spec()
    with pytest.raises(GridValueError, match=r"no beta 7\.0.*\[1\.0, 20\.0\]"):
        spec.cell_models(7.0, 1e-2)
    with pytest.raises(GridValueError, match="no lr"):
        spec.cell_models(1.0, 0.5)
    with pytest.raises(GridValueError, match="lrs finite and > 0"):
        tiny_spec(lrs=(0.0,))
    with pytest.raises(GridValueError, match="betas must be finite"):
        tiny_spec(betas=(math.inf,))
    assert issubclass(GridValueError, InvalidOptionError) and issubclass(GridValueError, ValueError)


def test_named_specs():
    specs = all_specs()
    small, paper = specs["phase-pinn-convection"], specs["phase-pinn-convection-paper"]
    assert paper.grid_models() == 700 and len(paper.betas) * len(paper.lrs) * paper.seeds == 700
    assert small.grid_models() == 18
    assert small.override(models=4, epochs=3).num_models() == 4
    with pytest.raises(ValueError, match="models"):
        small.override(models=0)


# ------------------------------------------------------------ landscape through derivatives
def test_landscape_loss_is_the_training_loss_and_its_hessian_products_agree():
    spec = tiny_spec(betas=(3.0,), seeds=2)
    models = initial_models(spec, family().plan(spec))
    rows = torch.stack([torch.cat([p.detach().flatten() for p in m.parameters()]) for m in models])
    data = convection_data(40, 0, 32, 12)
    inputs, targets = pinn_loss_data(data)
    module = PINNLossModule(3.0)
    for model in models:
        module.load_state_dict(model.state_dict())
        expected = loss_parts(model, data.tensors(), 3.0).sum()
        torch.testing.assert_close(pinn_loss_fn(module(inputs), targets), expected)
    # the Hessian of a loss with input derivatives: forward-over-reverse = reverse-over-reverse
    forward = hessian_top_eigenvalue(module, rows, (inputs, targets), pinn_loss_fn, hvp="forward")
    reverse = hessian_top_eigenvalue(module, rows, (inputs, targets), pinn_loss_fn, hvp="reverse")
    torch.testing.assert_close(forward, reverse, rtol=1e-4, atol=1e-4)
    assert bool((forward.abs() > 0).all())


def test_finalize_writes_the_landscape_side_file(tiny_zoo):
    arrays = read_sidecar(tiny_zoo.path, "landscape")
    count, checkpoints = len(tiny_zoo), len(tiny_zoo.manifest.epochs)
    for name in ("hessian_top", "hessian_trace", "cka", "mc"):
        assert arrays[name].shape == (count, checkpoints), name
        assert np.isfinite(arrays[name]).all(), name
    assert ((arrays["cka"] > 0) & (arrays["cka"] <= 1 + 1e-6)).all()
    labels = read_phases(tiny_zoo.path)[0]  # weightzoo.landscape.taxonomy's labels
    assert labels.shape == (count, checkpoints)
    assert set(np.unique(labels)) <= {"I", "II", "III", "IV-A", "IV-B", "?"}


def test_landscape_command_recomputes_a_pinn_zoo(tiny_zoo):
    options = ZOO_LANDSCAPE.replace(probes=2)
    record = compute_zoo_landscape(
        tiny_zoo.path, metrics=["hessian_trace"], options=options, progress=False, name="again"
    )
    assert list(record.arrays) == ["hessian_trace"]
    again = read_sidecar(tiny_zoo.path, "again")["hessian_trace"]
    first = read_sidecar(tiny_zoo.path, "landscape")["hessian_trace"][:, -1]
    np.testing.assert_allclose(again[:, 0], first, rtol=1e-5)  # same probes, last checkpoint


# ---------------------------------------------------------------------- rows back to modules
def test_zoo_module_reproduces_the_stored_test_error(tiny_zoo):
    spec = tiny_zoo.manifest.spec
    data = convection_data(spec["collocation"], spec["collocation_seed"], 32, 12)
    table = tiny_zoo.metadata()
    assert isinstance(tiny_zoo.build_model(), PINN)
    for position in range(len(tiny_zoo)):
        net = tiny_zoo.module((position, "last"))
        with torch.no_grad():
            u = net(torch.from_numpy(data.grid)).double().numpy()
        error = relative_l2_error(u, exact_solution(data.grid, float(table["beta"][position])))
        assert error == pytest.approx(float(table["final_test_error"][position]), rel=1e-5)


def test_evaluate_names_its_error_for_a_pinn_zoo(tiny_zoo):
    with pytest.raises(UnbuildableSpecError, match="zoo.module"):
        functional.evaluate(tiny_zoo, tiny_zoo.rows(0, "last"))


def test_generate_lists_the_family():
    assert get_spec("phase-pinn-convection").family == "pinn"


# ------------------------------------------------------------------- the family's one home
def test_the_registry_hands_out_the_family_and_binds_its_spec_class():
    assert family() is FAMILY and FAMILY.spec_class is PINNSpec
    assert family_for(tiny_spec()) is FAMILY
    stray = ZooSpec(name="stray", family="pinn")  # a spec of another class under the PINN name
    with pytest.raises(InvalidOptionError, match="is a ZooSpec but family 'pinn' trains PINNSpec"):
        family_for(stray)


@settings(max_examples=25, deadline=None)
@given(hidden=st.lists(st.integers(1, 40), min_size=1, max_size=5))
def test_the_torch_free_size_is_the_module_layouts(hidden):
    spec = tiny_spec(hidden=tuple(hidden), epochs=5, checkpoints=7)
    assert spec.num_params() == FAMILY.layout(spec).num_params
    assert spec.estimate() == FAMILY.estimate(spec)  # `weightzoo list` shows the family's
    assert spec.estimate()["checkpoints"] == len(FAMILY.checkpoint_epochs(spec)) == 6


def test_listing_and_sizing_import_no_torch():
    code = (
        "import sys; from weightzoo import catalog, families; "
        "sizes = [s.estimate() for s in families.spec_module('pinn').specs()]; "
        "names = {e.name: e.family for e in catalog.entries() if e.family == 'pinn'}; "
        "assert 'torch' not in sys.modules, 'torch'; print(sorted(names), sizes[0]['models'])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "['phase-pinn-convection',",
        "'phase-pinn-convection-paper']",
        "18",
    ]


def test_list_shows_the_pinn_zoos_with_their_sizes(capsys):
    assert cli.run(["list", "--family", "pinn", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert sorted(rows) == ["phase-pinn-convection", "phase-pinn-convection-paper"]
    paper = rows["phase-pinn-convection-paper"]
    assert (paper["models"], paper["checkpoints"], paper["params"]) == (700, 11, 7851)
    assert paper["sources"] == [
        {
            "kind": "generate",
            "command": "weightzoo generate phase-pinn-convection-paper",
            "data": [],
        }
    ]


def test_model_and_data_never_import_training_code():
    code = (
        "import sys; import weightzoo.families.pinn.model, weightzoo.families.pinn.data; "
        "from weightzoo.architectures import build_model; "
        "build_model({'family': 'pinn', 'hidden': [3]}); "
        "bad = [m for m in sys.modules if m.endswith(('pinn.train', 'generate.population'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
