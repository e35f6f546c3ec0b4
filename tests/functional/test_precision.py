"""Full float32 on CUDA: the switch itself, and that evaluation and Hessians run inside it.

The numerical effect (TF32 convolutions flip accuracies and cost Hessian products digits) shows
only on a GPU: tests/functional/test_functional.py::test_cuda_matches_cpu checks it where CUDA
exists. These tests run anywhere: the backend flags can be set without a GPU.
"""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from torch import nn

import weightzoo
from weightzoo import functional
from weightzoo.architectures import build_model
from weightzoo.features import flatten, layout_of
from weightzoo.generate.specs import get_spec
from weightzoo.landscape import hessian
from weightzoo.precision import exact_cuda
from weightzoo.storage import Manifest

FLAGS = (
    ("cuda.matmul", "allow_tf32"),
    ("cudnn", "allow_tf32"),
    ("cudnn", "deterministic"),
    ("cudnn", "benchmark"),
)


def _flags() -> tuple[bool, ...]:
    out = []
    for path, name in FLAGS:
        owner = torch.backends
        for part in path.split("."):
            owner = getattr(owner, part)
        out.append(bool(getattr(owner, name)))
    return tuple(out)


@pytest.fixture
def tf32_on():
    """The flags as PyTorch ships them on Ampere+ for cuDNN, plus the autotuner, then restored."""
    saved = _flags()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.deterministic = False
    torch.backends.cudnn.benchmark = True
    yield
    (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    ) = saved


def test_cuda_runs_in_full_float32_and_the_flags_come_back(tf32_on):
    with exact_cuda("cuda:0"):
        assert _flags() == (False, False, True, False)
    assert _flags() == (True, True, False, True)


def test_the_flags_come_back_after_an_error(tf32_on):
    with pytest.raises(KeyError), exact_cuda("cuda"):
        raise KeyError("inside")
    assert _flags() == (True, True, False, True)


def test_other_devices_are_left_alone(tf32_on):
    with exact_cuda("cpu"), exact_cuda(torch.device("meta")):
        assert _flags() == (True, True, False, True)


def _recording(monkeypatch, module) -> list[str]:
    """Replace ``module.exact_cuda`` by one that records the device types it is given."""
    seen: list[str] = []

    @contextlib.contextmanager
    def record(device):
        seen.append(torch.device(device).type)
        with exact_cuda(device):
            yield

    monkeypatch.setattr(module, "exact_cuda", record)
    return seen


def _manifest_only_zoo(root, name: str) -> weightzoo.Zoo:
    """A zoo of ``name``'s architecture with no shards: all that evaluate needs."""
    spec = get_spec(name).to_dict()
    manifest = Manifest(
        name=spec["name"],
        family=spec["family"],
        spec=spec,
        spec_fingerprint="0" * 64,
        layout=layout_of(build_model(spec)),
        epochs=[0],
        metrics=[],
        columns={"model_id": "int64"},
        stats_preset="modelzoo",
        stats_names=[],
        num_models=2,
        split_counts={"train": 2},
    )
    (root / "zoo.json").write_text(json.dumps(manifest.to_dict()))
    return weightzoo.Zoo(root)


def test_evaluate_computes_inside_the_switch(monkeypatch, tmp_path):
    seen = _recording(monkeypatch, functional)
    zoo = _manifest_only_zoo(tmp_path, "trajectory-digits-mlp")
    rows = torch.randn(2, zoo.layout.num_params) * 0.1
    inputs = torch.rand(5, *functional.input_shape(zoo))
    result = functional.evaluate(zoo, rows, inputs, torch.arange(5) % 10, device="cpu")
    assert seen == ["cpu"] and result.loss.shape == (2,)


def test_hessian_products_run_inside_the_switch(monkeypatch):
    seen = _recording(monkeypatch, hessian)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    rows = torch.stack([flatten(net, layout_of(net)), flatten(net, layout_of(net)) * 0.5])
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    hessian.hessian_trace(net, rows, (x, y), nn.functional.cross_entropy, probes=2)
    assert seen and set(seen) == {"cpu"}
