"""Which held-out metric a phase diagram averages: test metrics first, then validation ones."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from weightzoo.analysis.phase_diagram import _metric
from weightzoo.analysis.tables import UnsupportedTableError


def _zoo(*metrics: str) -> SimpleNamespace:
    manifest = SimpleNamespace(metrics=list(metrics), name="z", spec={})
    return SimpleNamespace(manifest=manifest, name="z", path=Path("zoos/z"))


@pytest.mark.parametrize(
    ("metrics", "chosen"),
    [
        (("train_loss", "test_loss", "test_acc", "val_acc"), "test_acc"),
        (("train_loss", "val_acc", "test_loss"), "test_loss"),
        (("train_loss", "test_f1"), "test_f1"),
        (("train_loss", "val_loss", "val_acc"), "val_acc"),  # a tiny LM: no test split
        (("train_loss", "val_loss"), "val_loss"),
    ],
)
def test_the_held_out_metric_prefers_test_then_validation(metrics, chosen):
    assert _metric(_zoo(*metrics), None) == chosen


def test_a_zoo_with_training_metrics_only_has_no_diagram():
    with pytest.raises(UnsupportedTableError, match="no held-out test_\\* or val_\\* metric"):
        _metric(_zoo("train_loss", "train_acc"), None)
