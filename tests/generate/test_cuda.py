"""Population training on CUDA against CPU (runs only where CUDA is available).

Tolerance: initial weights are drawn on the CPU and must be equal bit for bit; after one epoch
the weights may differ by float32 rounding accumulated over the epoch's steps (different
reduction orders in CUDA kernels, TF32 switched off by the trainer), which is bounded here by
``atol=1e-4, rtol=1e-3`` on weights and ``rtol=1e-3, atol=1e-4`` on every metric.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weightzoo.generate.base import BlockRun
from weightzoo.generate.runner import generate
from weightzoo.generate.specs import family_for, get_spec
from weightzoo.generate.workers import train_block
from weightzoo.storage import Manifest, ZooReader

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TINY = {
    "mlds-ds1": dict(models=2, epochs=1),
    "modelzoo-digits-cnn-s-seed": dict(models=2, epochs=1),
}
WEIGHTS_TOL = dict(rtol=1e-3, atol=1e-4)
METRICS_TOL = dict(rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", TINY)
def test_a_cuda_block_matches_its_cpu_twin_up_to_float_rounding(name):
    spec = get_spec(name).override(models=2, epochs=1)
    family = family_for(spec)
    plans = family.plan(spec)
    on_cpu = train_block(family, spec, plans, BlockRun("cpu", progress=False))
    on_cuda = train_block(family, spec, plans, BlockRun("cuda", progress=False))
    assert [r.model_id for r in on_cuda] == [r.model_id for r in on_cpu]
    for cpu, cuda in zip(on_cpu, on_cuda, strict=True):
        np.testing.assert_array_equal(cuda.weights[0], cpu.weights[0])  # drawn on the CPU
        assert not np.array_equal(cuda.weights[-1], cuda.weights[0])  # it did train
        np.testing.assert_allclose(cuda.weights, cpu.weights, **WEIGHTS_TOL)
        assert set(cuda.metrics) == set(cpu.metrics)
        for metric, values in cpu.metrics.items():
            np.testing.assert_allclose(cuda.metrics[metric], values, **METRICS_TOL, err_msg=metric)


def test_two_cuda_runs_of_one_spec_write_the_same_bytes(tmp_path):
    spec = get_spec("modelzoo-digits-cnn-s-seed").override(models=2, epochs=1)
    first = generate(spec, tmp_path / "a", device="cuda", progress=False)
    second = generate(spec, tmp_path / "b", device="cuda", progress=False)
    assert [s.sha256 for s in first.shards] == [s.sha256 for s in second.shards]
    assert set(ZooReader(tmp_path / "a", split="all").column("device")) == {"cuda"}
    assert Manifest.load(tmp_path / "a").finished
