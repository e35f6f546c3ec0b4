"""The Model Zoos / trajectory family on sklearn digits: records, runner, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.small_splits import cut_image_splits
from weightzoo.families.modelzoo.train import initial_model
from weightzoo.generate.base import BlockRun
from weightzoo.generate.specs import family_for, get_spec


@pytest.fixture
def digits():
    """Real digits splits cut to 400 training and 120 val/test images (fast, still learnable)."""
    with cut_image_splits(400, 120):
        yield


def test_digits_records_shapes_and_learning(digits):
    spec = get_spec("modelzoo-digits-cnn-s-seed").override(models=3, epochs=4)
    family = family_for(spec)
    plans = family.plan(spec)
    assert [p.seed for p in plans] == [1, 2, 3]
    records = family.train(spec, plans, BlockRun(progress=False))
    layout = family.layout(spec)
    assert layout.num_params == 2464
    assert [r.model_id for r in records] == [0, 1, 2]
    for record in records:
        assert record.weights.shape == (5, 2464)
        assert record.weights.dtype == np.float32
        assert set(record.metrics) == set(family.metric_names(spec))
        assert all(v.shape == (5,) for v in record.metrics.values())
        assert record.metrics["test_acc"][-1] > 0.2  # chance is 0.1
        assert record.metrics["train_loss"][-1] < record.metrics["train_loss"][0]
    # the first checkpoint is the initialisation of the seeded model
    model = initial_model(spec, plans[0])
    init = torch.cat([model.state_dict()[n].reshape(-1) for n in layout.names]).numpy()
    assert np.array_equal(records[0].weights[0], init)


def test_hyp_block_is_grouped_and_deterministic(digits):
    spec = get_spec("modelzoo-digits-cnn-s-hyp-10-rand").override(epochs=1)
    family = family_for(spec)
    plans = family.plan(spec)
    # two tanh/adam models with dropout 0.1 and two relu/sgd models (two populations)
    block = [plans[320], plans[331], plans[1290], plans[1301]]
    assert block[0].columns["dropout"] == 0.1
    assert block[2].columns["activation"] != block[0].columns["activation"]
    first = family.train(spec, block, BlockRun(progress=False))
    second = family.train(spec, block, BlockRun(progress=False))
    assert [r.model_id for r in first] == [p.model_id for p in block]
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a.weights, b.weights)
        assert a.columns["population"] == 2


@pytest.mark.parametrize(("name", "params"), [("trajectory-digits-cnn", 1410)])
def test_trajectory_digits_shapes(digits, name, params):
    spec = get_spec(name).override(models=2, epochs=1)
    family = family_for(spec)
    records = family.train(spec, family.plan(spec), BlockRun(progress=False))
    assert records[0].weights.shape == (2, params)
    assert np.isfinite(records[0].metrics["test_loss"]).all()


def test_runner_generates_a_digits_zoo(digits, tmp_path):
    runner = pytest.importorskip("weightzoo.generate.runner")
    spec = get_spec("modelzoo-digits-cnn-s-seed").override(models=4, epochs=2)
    manifest = runner.generate(spec, tmp_path / "zoo", device="cpu", progress=False)
    assert manifest.num_models == 4


def test_trajectory_digits_mlp_learns(digits):
    spec = get_spec("trajectory-digits-mlp").override(models=2, epochs=3)
    family = family_for(spec)
    records = family.train(spec, family.plan(spec), BlockRun(progress=False))
    assert all(r.metrics["test_acc"][-1] > 0.2 for r in records)
