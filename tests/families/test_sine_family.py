"""The sine family of docs/adding-a-family.md, registered from outside weightzoo's package.

``examples/sine_family/`` is one folder; one ``register`` line makes weightzoo's command line,
runner, reader and module rebuilding know it. These tests run the walkthrough's own code.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from weightzoo import cli, families
from weightzoo.zoo import Zoo

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def sine():
    """The sine family registered under ``sine`` for this module's tests."""
    sys.path.insert(0, str(EXAMPLES))
    families.register("sine", "sine_family")
    yield "sine"
    families.unregister("sine")
    sys.path.remove(str(EXAMPLES))


@pytest.fixture(scope="module")
def sine_zoo(sine, tmp_path_factory) -> Zoo:
    out = tmp_path_factory.mktemp("sine") / "sine-mlp"
    assert cli.run(["generate", "sine-mlp", "--out", str(out), "--workers", "1"]) == 0
    return Zoo(out)


def test_the_sine_zoo_holds_its_whole_grid(sine_zoo):
    columns = sine_zoo.model_columns(range(len(sine_zoo)))
    assert len(sine_zoo) == 12  # 1 width x 3 learning rates x 4 seeds
    assert sorted(set(np.round(columns["lr"], 6))) == [0.01, 0.03, 0.1]
    assert sine_zoo.epochs == [0, 100, 200]
    assert sine_zoo.manifest.family == "sine"


def test_the_sine_models_learn_the_sine(sine_zoo):
    metrics = sine_zoo.reader().metrics["test_loss"]  # [models, checkpoints]
    first, last = metrics[:, 0], metrics[:, -1]
    assert np.median(last) < 0.1 * np.median(first)


def test_a_rebuilt_sine_model_gives_its_stored_test_loss(sine_zoo):
    stored = sine_zoo.reader().metrics["test_loss"][:, -1]
    points = torch.linspace(-math.pi, math.pi, 32)
    x = (points[:-1] + (points[1] - points[0]) / 2)[:, None]
    for position in (0, 5, 11):
        net = sine_zoo.module((position, "last"))
        with torch.no_grad():
            loss = ((net(x)[:, 0] - torch.sin(x[:, 0])) ** 2).mean().item()
        assert loss == pytest.approx(float(stored[position]), rel=1e-4, abs=1e-7)


def test_the_sine_family_is_listed_without_importing_torch():
    code = (
        f"import sys; sys.path.insert(0, {str(EXAMPLES)!r}); "
        "from weightzoo import families; families.register('sine', 'sine_family'); "
        "spec = families.spec_module('sine').specs()[0]; "
        "print(spec.estimate()['models']); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["12"]


def test_the_closed_form_size_is_the_layouts(sine):
    from weightzoo.generate.specs import family_for, get_spec

    spec = get_spec("sine-mlp")
    assert spec.estimate() == family_for(spec).estimate(spec)
