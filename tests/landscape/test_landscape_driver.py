"""The landscape engines' shared driver: checks, parts measured per checkpoint, the side file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from weightzoo.errors import InvalidOptionError
from weightzoo.landscape import driver
from weightzoo.landscape.metrics import METRICS, UnknownMetricError, landscape_metrics
from weightzoo.landscape.options import LandscapeOptions
from weightzoo.landscape.zoo_metrics import siblings
from weightzoo.storage.sidecar import read_sidecar, sidecar_records
from weightzoo.zoo import Zoo

# a few power-iteration steps only: far from converged on purpose (speed)
pytestmark = pytest.mark.filterwarnings("ignore:power iteration did not converge")

SINGLES = ["hessian_top", "hessian_trace"]
PAIRS = ["cka", "linear_barrier"]
OPTIONS = LandscapeOptions(iters=3, probes=2, steps=0, points=3, chunk=4)
CPU = torch.device("cpu")


class Toy(nn.Module):
    """The toy family's network: one linear layer under the name its layout uses."""

    def __init__(self, width: int = 5) -> None:
        super().__init__()
        self.fc = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(12, 5, generator=g), torch.randint(0, 2, (12,), generator=g)


@pytest.fixture
def toy(toy_zoo) -> tuple[Zoo, driver.Selection, np.ndarray]:
    """The toy zoo's selection (12 models, 4 checkpoints); a model of its own cell is alone."""
    zoo = Zoo(toy_zoo)
    selection = driver.Selection.open(zoo, "all", "all")
    node = selection.columns["kind"].copy()
    node[0] = "alone"
    return zoo, selection, siblings({"node": node}, selection.count)


def two_parts(zoo: Zoo, metrics: list[str], **extra) -> list[driver.Part]:
    """Even models on one batch, odd models on another."""
    inputs = {"layout": zoo.layout}
    halves = [(np.arange(start, 12, 2), Toy(), batch(start)) for start in (0, 1)]
    return [driver.Part(*h, F.cross_entropy, metrics, OPTIONS, inputs, **extra) for h in halves]


def measured(selection, parts, partner, metrics) -> dict[str, np.ndarray]:
    return driver.measure(selection, parts, partner, metrics, device=CPU, progress=False)


def test_each_part_is_measured_as_landscape_metrics_measures_its_models(toy):
    zoo, selection, partner = toy
    parts = two_parts(zoo, SINGLES + PAIRS)
    out = measured(selection, parts, partner, SINGLES + PAIRS)
    assert list(out) == SINGLES + PAIRS
    assert all(v.shape == (12, 4) and v.dtype == np.float64 for v in out.values())
    for column in range(4):
        rows = torch.from_numpy(
            zoo.reader("all", "all").read("weights", np.arange(12), np.full(12, column))
        )
        for part in parts:
            want = landscape_metrics(
                part.module, rows[part.members], part.data, part.loss, SINGLES,
                options=OPTIONS, **part.inputs,
            )  # fmt: skip
            for metric in SINGLES:
                np.testing.assert_array_equal(out[metric][part.members, column], want[metric])
            paired = part.members[partner[part.members] >= 0]
            want = landscape_metrics(
                part.module,
                rows[paired],
                part.data,
                part.loss,
                PAIRS,
                partners=rows[partner[paired]],
                options=OPTIONS,
                **part.inputs,
            )
            for metric in PAIRS:
                np.testing.assert_array_equal(out[metric][paired, column], want[metric])
    # the model without a partner has single-model metrics and NaN pair metrics
    assert partner[0] == -1 and np.isfinite(out["hessian_top"][0]).all()
    assert np.isnan(out["cka"][0]).all() and np.isfinite(out["cka"][1:]).all()


def test_pair_options_see_the_singles_and_reach_only_the_pair_call(toy, monkeypatch):
    zoo, selection, partner = toy
    calls, seen = [], []

    def spy(module, rows, data, loss, metrics, **kwargs):
        calls.append((list(metrics), kwargs))
        return landscape_metrics(module, rows, data, loss, metrics, **kwargs)

    def options(rows, singles):
        seen.append((rows.shape[0], dict(singles)))
        return OPTIONS.replace(lr=0.0)

    monkeypatch.setattr(driver, "landscape_metrics", spy)
    parts = two_parts(zoo, ["hessian_top", "cka"], pair_options=options)
    out = measured(selection, parts[:1], partner, ["hessian_top", "cka"])
    assert len(seen) == 4  # one part, four checkpoints
    members = parts[0].members
    for column, (count, singles) in enumerate(seen):
        assert count == len(members)
        np.testing.assert_array_equal(singles["hessian_top"], out["hessian_top"][members, column])
    assert [m for m, _ in calls] == [["hessian_top"], ["cka"]] * 4
    rates = [kwargs["options"].lr for _, kwargs in calls]
    assert rates == [OPTIONS.lr, 0.0] * 4 and OPTIONS.lr != 0.0
    assert all(("partners" in kwargs) == (m == ["cka"]) for m, kwargs in calls)
    # fixed options go to the pair call alone as well
    calls.clear()
    fixed = OPTIONS.replace(bn_update=False)
    parts = two_parts(zoo, ["hessian_top", "cka"], pair_options=fixed)
    measured(selection, parts[:1], partner, ["hessian_top", "cka"])
    assert [kwargs["options"] for _, kwargs in calls] == [OPTIONS, fixed] * 4


def test_models_without_partners_make_no_pair_call(toy, monkeypatch):
    zoo, selection, _ = toy
    calls = []
    monkeypatch.setattr(driver, "landscape_metrics", lambda *a, **k: calls.append(a[4]) or {})
    lonely = np.full(selection.count, -1)
    measured(selection, two_parts(zoo, ["cka"]), lonely, ["cka"])
    assert calls == []


def test_the_side_file_records_the_options_its_values_depend_on(toy):
    zoo, selection, _ = toy
    values = {"mc": np.arange(48.0).reshape(12, 4), "cka": np.ones((12, 4))}
    options = LandscapeOptions(chunk=4, seed=3, iters=7, steps=5, batches=9, vectorize=False)
    record = driver.write_landscape(
        selection, "side", values, "the toy loss", options, {"partner": "x"}
    )
    attrs = sidecar_records(zoo.path)["side"].attrs
    assert attrs == record.attrs
    knobs = ["seed", "iters", "tol", "probes", "steps", "points", "lr", "momentum", "weight_decay"]
    assert list(attrs) == ["what", "metrics", *knobs, "partner"]
    assert [attrs[k] for k in knobs] == [3, 7, options.tol, 100, 5, 11, 0.05, 0.9, 0.0]
    assert attrs["metrics"] == ["mc", "cka"] and attrs["what"] == "the toy loss"
    assert list(driver.RECORDED_OPTIONS) == knobs
    stored = read_sidecar(zoo.path, "side")
    np.testing.assert_array_equal(stored["mc"], values["mc"])
    assert stored["models"].tolist() == selection.reader.positions.tolist()
    assert stored["epochs"].tolist() == list(selection.reader.epochs)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(METRICS), min_size=1, max_size=4))
def test_known_metrics_are_kept_in_order(metrics):
    assert driver.metric_list(metrics) == metrics
    assert driver.metric_list(metrics[0]) == [metrics[0]]


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=12).filter(lambda name: name not in METRICS))
def test_an_unknown_metric_is_named_with_the_known_ones(name):
    with pytest.raises(UnknownMetricError) as info:
        driver.metric_list(["hessian_top", name])
    message = str(info.value)
    assert repr(name) in message and "known: " + ", ".join(METRICS) in message


def test_no_metric_and_unmeasurable_metrics_are_refused_in_one_line():
    with pytest.raises(InvalidOptionError, match="name at least one landscape metric") as info:
        driver.metric_list([])
    assert not isinstance(info.value, UnknownMetricError)
    with pytest.raises(UnknownMetricError) as info:
        driver.metric_list(["mc", "mc_error"], unmeasurable=("mc_error",), where="PINN zoo 'p'")
    message = str(info.value)
    assert "['mc_error'] not measurable on PINN zoo 'p'" in message
    assert "mc_error" not in message.split("choose from")[1] and "\n" not in message


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(st.integers(-3, 5), st.booleans(), st.floats(0, 4), st.none(), st.text(max_size=2))
)
def test_counts_are_ints_of_at_least_one(value):
    valid = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if valid:
        driver.check_counts(batches=value, chunk=1)
        return
    with pytest.raises(InvalidOptionError) as info:
        driver.check_counts(chunk=1, batches=value)
    assert str(info.value) == f"batches must be an int >= 1, got {value!r}"


def test_a_zoo_of_another_family_is_refused_naming_it(toy):
    zoo = toy[0]
    driver.check_family(zoo, "toy", "toy")
    with pytest.raises(InvalidOptionError) as info:
        driver.check_family(zoo, "pinn", "PINN")
    message = str(info.value)
    assert f"zoo 'toy' at {zoo.path} is a 'toy' zoo, not a PINN zoo" in message
    assert "compute_zoo_landscape" in message and "\n" not in message


# ------------------------------------------------------------------ what a PINN engine adds
def test_a_pinn_groups_curve_step_is_the_same_whether_or_not_hessian_top_is_asked_for():
    from weightzoo.families.pinn.data import convection_data
    from weightzoo.families.pinn.landscape import (
        PINNLossModule,
        _curve_rate,
        pinn_loss_data,
        pinn_loss_fn,
    )
    from weightzoo.features import layout_of

    module = PINNLossModule(5.0, (4, 4))
    data = pinn_loss_data(convection_data(16, 0, 8, 4))
    rows = torch.randn(3, layout_of(module).num_params, generator=torch.Generator().manual_seed(0))
    options = LandscapeOptions(iters=4, seed=0)
    top = landscape_metrics(module, rows, data, pinn_loss_fn, ["hessian_top"], options=options)
    largest = float(np.abs(top["hessian_top"]).max())
    for curve_lr in (1e-6, 10.0):
        rate = _curve_rate(module, data, options.replace(lr=curve_lr), {})
        measured_here, given = rate(rows, {}), rate(rows, top)
        assert measured_here == given == options.replace(lr=min(curve_lr, 1.0 / largest))


@pytest.mark.slow
def test_the_pinn_engine_measures_its_curves_alike_with_or_without_hessian_top(tmp_path):
    from helpers.tiny_specs import tiny_pinn_spec
    from weightzoo.families.pinn.landscape import PINN_LANDSCAPE, pinn_landscape
    from weightzoo.generate.runner import generate

    spec = tiny_pinn_spec(epochs=2, checkpoints=1)
    generate(spec, tmp_path / "zoo", progress=False)
    options = dict(epochs="last", options=PINN_LANDSCAPE.replace(iters=3, steps=3), progress=False)
    alone = pinn_landscape(tmp_path / "zoo", metrics=["mc"], name="alone", **options)
    both = pinn_landscape(tmp_path / "zoo", metrics=["hessian_top", "mc"], name="both", **options)
    assert alone.attrs["metrics"] == ["mc"] and both.attrs["metrics"] == ["hessian_top", "mc"]
    mc = [read_sidecar(tmp_path / "zoo", name)["mc"] for name in ("alone", "both")]
    assert np.isfinite(mc[0]).all()
    np.testing.assert_array_equal(mc[0], mc[1])


def test_a_side_file_is_complete_only_for_every_model_at_the_asked_epochs(toy):
    zoo, selection, _ = toy
    values = {"mc": np.zeros((12, 4)), "cka": np.ones((12, 4))}
    assert not driver.landscape_is_complete(zoo.path, ["mc"], "side")  # no side file yet
    driver.write_landscape(selection, "side", values, "toy", OPTIONS, {})
    assert driver.landscape_is_complete(zoo.path, ["mc", "cka"], "side")
    assert driver.landscape_is_complete(zoo, ["mc"], "side", epochs="all")
    assert not driver.landscape_is_complete(zoo.path, ["mc", "hessian_top"], "side")
    assert not driver.landscape_is_complete(zoo.path, ["mc"], "side", epochs="last")
    # a measurement of some models only: every metric, but not complete
    some = driver.Selection.open(zoo, "train", "all")
    part = {k: v[: some.count] for k, v in values.items()}
    driver.write_landscape(some, "side", part, "toy", OPTIONS, {})
    assert some.count < 12
    assert not driver.landscape_is_complete(zoo.path, ["mc", "cka"], "side")
    last = driver.Selection.open(zoo, "all", "last")
    driver.write_landscape(last, "side", {"mc": np.zeros((12, 1))}, "toy", OPTIONS, {})
    assert driver.landscape_is_complete(zoo.path, ["mc"], "side", epochs="last")
    assert not driver.landscape_is_complete(zoo.path, ["mc"], "side")
