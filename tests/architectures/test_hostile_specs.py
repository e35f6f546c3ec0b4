"""A manifest's spec is outside data: its module is checked against the layout on ``meta`` first.

A spec that asks for a module of terabytes while the zoo's layout holds a few parameters must be
a one-line LayoutError (or UnbuildableSpecError) before anything is allocated, on every path that
builds from a spec: ``Zoo.build_model``, ``Zoo.module``, ``evaluate``, ``queries`` and the CLI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import weightzoo.architectures as architectures
from weightzoo import Zoo
from weightzoo.architectures import UnbuildableSpecError, build_model
from weightzoo.cli import run
from weightzoo.errors import LayoutError, WeightzooError
from weightzoo.features import layout_of
from weightzoo.functional import evaluate, input_shape, queries
from weightzoo.storage import ZooWriter

SPEC = {
    "name": "tiny-mlp",
    "family": "trajectory",
    "architecture": "mlp",
    "in_channels": 1,
    "image_size": 2,
    "hidden": 3,
    "num_classes": 2,
}
MODELS = 2


def write_zoo(path: Path, spec: dict) -> Path:
    """A one-shard zoo of ``MODELS`` trajectory MLPs of :data:`SPEC`, stored under ``spec``."""
    layout = layout_of(build_model(SPEC))
    weights = np.random.default_rng(0).normal(size=(MODELS, 1, layout.num_params))
    weights = weights.astype(np.float32)
    with ZooWriter(
        path,
        name="tiny",
        family="trajectory",
        spec=spec,
        layout=layout,
        epochs=[0],
        metrics=["test_acc"],
        stats_names=["mean"],
        num_models=MODELS,
        split_counts={"train": MODELS},
    ) as writer:
        writer.write_shard(
            "shards/train-000000-c000.h5",
            split="train",
            models=(0, MODELS),
            epochs=[0],
            weights=weights,
            stats=weights.mean(axis=2, keepdims=True),
            metrics={"test_acc": weights[..., 0]},
            columns={"model_id": np.arange(MODELS)},
        )
        writer.finish()
    return path


@pytest.fixture(scope="module")
def good_zoo(tmp_path_factory) -> Path:
    return write_zoo(tmp_path_factory.mktemp("specs") / "good", SPEC)


def with_spec(good: Path, target: Path, spec: dict) -> Path:
    """A copy of ``good`` whose manifest records ``spec`` (shards and their hashes untouched)."""
    shutil.copytree(good, target)
    manifest = json.loads((good / "zoo.json").read_text())
    manifest["spec"] = spec
    (target / "zoo.json").write_text(json.dumps(manifest))
    return target


@pytest.fixture
def builds(monkeypatch) -> list[str]:
    """The device each module of a spec is built on, in order."""
    devices: list[str] = []
    real = architectures._build

    def spy(spec, columns):
        devices.append(torch.get_default_device().type)
        return real(spec, columns)

    monkeypatch.setattr(architectures, "_build", spy)
    return devices


def test_a_valid_spec_builds_its_layout_after_a_meta_check(good_zoo, builds):
    zoo = Zoo(good_zoo)
    net = zoo.module((1, "last"))
    assert builds == ["meta", "cpu"]
    row = zoo.rows(1, "last")[0]
    np.testing.assert_array_equal(
        torch.cat([p.detach().reshape(-1) for p in net.state_dict().values()]).numpy(), row
    )
    result = evaluate(zoo, zoo.rows([0, 1]), torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 0, 1, 0]))
    assert result.outputs.shape == (2, 5, 2)
    assert "cpu" in builds[2:] and builds[2] == "meta"  # evaluate checks before it builds


HOSTILE = {
    # the layout's first weight is (3, 4); the spec's is 4.8 GB or 160 TB
    "huge image": (
        {**SPEC, "image_size": 20000},
        LayoutError,
        "'module_list.1.weight' is (3, 400000000) in the module and (3, 4) in the layout",
    ),
    "huge hidden": (
        {**SPEC, "image_size": 20000, "hidden": 100000},
        LayoutError,
        "'module_list.1.weight' is (100000, 400000000) in the module",
    ),
    "other shape": ({**SPEC, "hidden": 4}, LayoutError, "(3, 4) in the layout"),
    "overflow": ({**SPEC, "image_size": 10**12}, UnbuildableSpecError, "builds no module"),
    "negative": ({**SPEC, "hidden": -5}, UnbuildableSpecError, "builds no module"),
    "text": ({**SPEC, "hidden": "many"}, UnbuildableSpecError, "builds no module"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_spec_is_refused_on_meta_on_every_path(good_zoo, tmp_path, builds, case):
    spec, error, words = HOSTILE[case]
    zoo = Zoo(with_spec(good_zoo, tmp_path / "zoo", spec))
    calls = [
        zoo.build_model,
        lambda: zoo.module((0, "last")),
        lambda: zoo.module(zoo.rows(0, 0)[0]),
        lambda: evaluate(zoo, zoo.rows([0]), torch.rand(2, 1, 2, 2)),
        lambda: queries(zoo, n=64),
        lambda: input_shape(zoo),
    ]
    for call in calls:
        with pytest.raises(error) as info:
            call()
        message = str(info.value)
        assert words in message and "\n" not in message, message
        assert str(zoo.path / "zoo.json") in message
    assert builds and set(builds) == {"meta"}  # never built for real


def test_the_cli_reports_a_hostile_spec_in_one_line(good_zoo, tmp_path, capsys):
    zoo = with_spec(good_zoo, tmp_path / "zoo", HOSTILE["huge hidden"][0])
    assert run(["behaviour", str(zoo)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "LayoutError" in err and "zoo.json" in err, err


def test_a_spec_of_gigabytes_is_refused_under_a_small_memory_limit(good_zoo, tmp_path):
    """In a process that cannot allocate the 4.9 GB module, the error still comes cleanly."""
    zoo = with_spec(good_zoo, tmp_path / "zoo", HOSTILE["huge image"][0])
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
        "from weightzoo import Zoo\n"
        "from weightzoo.errors import LayoutError\n"
        "try:\n"
        f"    Zoo({str(zoo)!r}).module((0, 'last'))\n"
        "except LayoutError as exc:\n"
        "    print('refused', exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0 and result.stdout.startswith("refused"), result.stderr[-2000:]


def sizes(true: int) -> st.SearchStrategy[object]:
    """The true size half of the time, else small, huge, or not a number at all."""
    wrong = st.one_of(
        st.integers(-3, 6),
        st.integers(10**4, 10**15),
        st.sampled_from(["3", "x", None, 2.5, [3]]),
    )
    return st.one_of(st.just(true), wrong)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    image_size=sizes(SPEC["image_size"]),
    hidden=sizes(SPEC["hidden"]),
    in_channels=sizes(SPEC["in_channels"]),
    num_classes=sizes(SPEC["num_classes"]),
)
def test_any_spec_sizes_build_the_layout_or_are_refused_on_meta(
    good_zoo, image_size, hidden, in_channels, num_classes
):
    spec = {
        **SPEC,
        "image_size": image_size,
        "hidden": hidden,
        "in_channels": in_channels,
        "num_classes": num_classes,
    }
    layout = Zoo(good_zoo).layout
    devices: list[str] = []
    real = architectures._build

    def spy(spec, columns):
        devices.append(torch.get_default_device().type)
        return real(spec, columns)

    architectures._build = spy
    try:
        outcome: object = build_model(spec, layout=layout, source="zoo.json")
    except (LayoutError, UnbuildableSpecError) as exc:
        outcome = exc
    finally:
        architectures._build = real
    if isinstance(outcome, WeightzooError):
        event(type(outcome).__name__)
        assert spec != SPEC  # the true sizes always build
        assert devices == ["meta"] and "zoo.json" in str(outcome) and "\n" not in str(outcome)
        return
    event("built")
    assert devices == ["meta", "cpu"]
    assert layout_of(outcome) == layout


def test_a_spec_of_a_billion_layers_is_stopped_early():
    """Meta tensors cost nothing, but a billion modules would: the build counts its parts."""
    import time

    from weightzoo.generate.specs import get_spec

    spec = get_spec("phase-tinylm-d8").to_dict()
    layout = layout_of(build_model(spec))
    start = time.perf_counter()
    with pytest.raises(LayoutError, match="more than .* tensors and submodules") as info:
        build_model({**spec, "layers": 10**9}, layout=layout, source="zoo.json")
    assert time.perf_counter() - start < 5 and "\n" not in str(info.value)
    # the counting hooks are gone: a module of more parts than that bound builds unchecked
    deep = build_model({**spec, "layers": 200})
    assert len(list(deep.modules())) + len(deep.state_dict()) > 8 * len(layout.tensors) + 1024
