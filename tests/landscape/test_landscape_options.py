"""``LandscapeOptions``: one owner of the knobs, checked once, handed on unchanged."""

from __future__ import annotations

import dataclasses
import inspect
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from weightzoo import landscape
from weightzoo.errors import InvalidOptionError
from weightzoo.families.pinn.landscape import PINN_LANDSCAPE, pinn_landscape
from weightzoo.families.tinylm.landscape import TINYLM_LANDSCAPE, compute_lm_landscape
from weightzoo.landscape import LandscapeOptions, hessian
from weightzoo.landscape import zoo_metrics as zoo_driver
from weightzoo.landscape.options import resolve_options
from weightzoo.landscape.zoo_metrics import ZOO_LANDSCAPE

pytestmark = pytest.mark.filterwarnings("ignore:power iteration did not converge")

COUNTS = ("batches", "batch_size", "chunk", "cka_samples")
ENGINES = (zoo_driver.compute_zoo_landscape, pinn_landscape, compute_lm_landscape)


def test_the_defaults_are_the_libraries_and_each_engine_names_its_own():
    base = LandscapeOptions()
    assert (base.iters, base.tol) == (hessian.DEFAULT_ITERS, hessian.DEFAULT_TOL)
    assert (base.chunk, base.probes, base.points, base.steps, base.lr) == (None, 100, 11, 200, 0.05)
    assert (ZOO_LANDSCAPE.chunk, ZOO_LANDSCAPE.probes, ZOO_LANDSCAPE.steps) == (16, 20, 100)
    assert (ZOO_LANDSCAPE.batches, ZOO_LANDSCAPE.batch_size) == (4, 64)
    assert PINN_LANDSCAPE.pick(["iters", "probes", "steps", "cka_samples"]) == {
        "iters": 20,
        "probes": 20,
        "steps": 100,
        "cka_samples": 2048,
    }
    lm = TINYLM_LANDSCAPE
    assert (lm.points, lm.batches, lm.batch_size, lm.chunk, lm.cka_samples) == (5, 2, 16, 4, 32)
    # each engine takes one options argument, and none of the knobs besides it
    knobs = {f.name for f in dataclasses.fields(LandscapeOptions)}
    for engine in (*ENGINES, landscape.landscape_metrics, landscape.mode_connectivity):
        params = set(inspect.signature(engine).parameters)
        assert "options" in params and not params & knobs, engine.__name__


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(COUNTS),
    value=st.one_of(st.integers(-3, 3), st.booleans(), st.floats(0, 3), st.text(max_size=2)),
)
def test_counts_are_checked_when_the_options_are_made(name, value):
    valid = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if valid:
        assert getattr(LandscapeOptions(**{name: value}), name) == value
        return
    with pytest.raises(InvalidOptionError) as info:
        LandscapeOptions(**{name: value})
    assert str(info.value) == f"{name} must be an int >= 1, got {value!r}"
    with pytest.raises(InvalidOptionError):  # replace checks again
        ZOO_LANDSCAPE.replace(**{name: value})


@pytest.mark.parametrize("name", ["chunk", "cka_samples"])
def test_none_means_all_models_or_the_engines_own_number(name):
    assert getattr(LandscapeOptions(**{name: None}), name) is None


def test_replace_keeps_the_other_knobs_and_the_original():
    changed = ZOO_LANDSCAPE.replace(iters=7, bn_update=False)
    assert (changed.iters, changed.bn_update) == (7, False)
    assert changed.pick(["chunk", "probes", "steps"]) == ZOO_LANDSCAPE.pick(
        ["chunk", "probes", "steps"]
    )
    assert ZOO_LANDSCAPE.iters == hessian.DEFAULT_ITERS and ZOO_LANDSCAPE.bn_update is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        ZOO_LANDSCAPE.iters = 3  # type: ignore[misc]
    with pytest.raises(InvalidOptionError, match="unknown landscape option.*'curve_lr'"):
        ZOO_LANDSCAPE.replace(curve_lr=0.1)  # not a knob


def test_the_zoo_driver_hands_a_family_engine_its_options_unchanged(toy_zoo, monkeypatch):
    seen = []
    record = SimpleNamespace()

    def engine(zoo, **kwargs):
        seen.append(kwargs)
        return record

    hooks = SimpleNamespace(landscape_plan=lambda zoo: engine)
    monkeypatch.setattr(zoo_driver, "family_hooks", lambda family: hooks)
    mine = ZOO_LANDSCAPE.replace(tol=1e-2, points=5)
    assert zoo_driver.compute_zoo_landscape(toy_zoo, options=mine, name="x") is record
    assert zoo_driver.compute_zoo_landscape(toy_zoo, name="x") is record
    assert zoo_driver.compute_zoo_landscape(toy_zoo, options={"iters": 7}, name="x") is record
    # not the generic defaults: the engine fills what is left out with its own
    assert [kwargs["options"] for kwargs in seen] == [mine, None, {"iters": 7}]


def test_a_mapping_changes_only_its_knobs_of_the_engines_defaults():
    own = LandscapeOptions(chunk=4, probes=10, steps=50, points=5)
    assert resolve_options(None, own) is own
    assert resolve_options(ZOO_LANDSCAPE, own) is ZOO_LANDSCAPE
    mixed = resolve_options({"iters": 7, "probes": 3}, own)
    assert (mixed.iters, mixed.probes, mixed.points, mixed.chunk) == (7, 3, 5, 4)
    with pytest.raises(InvalidOptionError, match="unknown landscape option.*'curve_lr'"):
        resolve_options({"curve_lr": 0.1}, own)
    with pytest.raises(InvalidOptionError, match="chunk"):
        resolve_options({"chunk": 0}, own)


def test_mode_connectivity_without_options_runs_on_the_defaults():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    rows = torch.randn(2, 26, dtype=torch.float64)
    data = (torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,)))
    fast = LandscapeOptions(steps=3)
    pair = (net, rows, rows.flip(0), data, F.cross_entropy)
    default = landscape.mode_connectivity(*pair)
    explicit = landscape.mode_connectivity(*pair, options=LandscapeOptions())
    short = landscape.mode_connectivity(*pair, options=fast)
    assert default.t.shape == (11,)
    np.testing.assert_array_equal(default.curve_loss, explicit.curve_loss)
    assert not np.allclose(short.curve_loss, default.curve_loss)
