"""``--models`` / ``--epochs`` / ``--data-dir`` on the specs of fixed grids (GridOptions)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightzoo.generate.base import GridOptions, ZooSpec
from weightzoo.generate.sampling import SAMPLES
from weightzoo.generate.specs import get_spec

GRID_SPECS = [
    "property-synthetic",
    "phase-pinn-convection",
    "phase-digits-mlp-w4",
    "phase-tinylm-d8",
]


@pytest.mark.parametrize("name", GRID_SPECS)
def test_models_keep_the_first_of_the_grid_and_epochs_apply(name):
    spec = get_spec(name)
    assert isinstance(spec, GridOptions)
    assert spec.num_models() == spec.grid_models()
    three = spec.override(models=3, epochs=2)
    assert three.num_models() == 3 and three.epochs == 2
    assert spec.override(models=10**6).num_models() == spec.grid_models()  # clamped
    with pytest.raises(ValueError, match="--models must be at least 1"):
        spec.override(models=0)
    with pytest.raises(ValueError, match="--train-epochs must be at least 1"):
        spec.override(epochs=0)


def test_data_dir_only_where_the_spec_reads_files(tmp_path):
    assert get_spec("phase-digits-mlp-w4").override(data_dir=tmp_path).data_dir == str(tmp_path)
    with pytest.raises(ValueError, match="data_dir"):
        get_spec("phase-pinn-convection").override(data_dir=tmp_path)


@dataclass(frozen=True)
class CellSpec(GridOptions, ZooSpec):
    """A grid of (row, col) cells repeated ``replicates`` times, as the PINN and property grids."""

    family: str = "cells"
    rows: tuple[str, ...] = ("a", "b")
    cols: tuple[float, ...] = (0.5, 1.0, 2.0)
    replicates: int = 3
    seed_start: int = 5
    epochs: int = 1
    models: int | None = None
    data_dir: str | None = field(default=None, compare=False)

    def cells(self) -> list[tuple[str, float]]:
        return [(r, float(c)) for r in self.rows for c in self.cols]

    def grid_models(self) -> int:
        return len(self.cells()) * self.replicates


def _columns(row: str, col: float) -> dict[str, object]:
    return {"col": col, "row": row, "twice": 2 * col}


def test_cell_plans_walk_the_cells_once_per_replicate():
    spec = CellSpec(name="cells")
    plans = spec.cell_plans(["row", "col"], _columns)
    cells = spec.cells()
    assert [p.model_id for p in plans] == list(range(18))
    for plan in plans:
        row, col = cells[plan.model_id % len(cells)]
        assert plan.seed == 5 + plan.model_id
        assert plan.stratum == f"{row}:{col}"
        assert list(plan.columns.items()) == [("col", col), ("row", row), ("twice", 2 * col)]


@settings(max_examples=25, deadline=None)
@given(models=st.integers(1, 18), seed=st.integers(0, 2**31 - 1), sample=st.sampled_from(SAMPLES))
def test_cell_plans_keep_the_full_grids_models(models, seed, sample):
    full = {p.seed: p for p in CellSpec(name="cells").cell_plans(["row", "col"], _columns)}
    spec = CellSpec(name="cells").override(models=models, sample=sample, sample_seed=seed)
    kept = spec.cell_plans(["row", "col"], _columns)
    assert [p.model_id for p in kept] == list(range(models))
    for plan in kept:  # a kept model is the full grid's model of the same seed, renumbered
        same = full[plan.seed]
        assert (plan.stratum, plan.columns) == (same.stratum, same.columns)
    if sample == "first":
        assert [p.seed for p in kept] == [5 + i for i in range(models)]


@settings(max_examples=25, deadline=None)
@given(where=st.text(min_size=1, max_size=40))
def test_a_field_outside_the_identity_stays_out_of_the_spec_dict(where):
    spec = CellSpec(name="cells")
    moved = spec.override(data_dir=where)
    assert moved.data_dir == where and moved == spec  # compare=False: not identity
    assert "data_dir" not in moved.to_dict()
    assert moved.to_dict() == spec.to_dict() and moved.fingerprint() == spec.fingerprint()


@pytest.mark.parametrize("name", ["phase-digits-mlp-w4", "phase-tinylm-d8", "vit-digits"])
def test_a_named_specs_data_dir_changes_neither_its_dict_nor_its_print(name, tmp_path):
    spec = get_spec(name)
    moved = spec.override(data_dir=tmp_path)
    assert "data_dir" not in moved.to_dict()
    assert moved.to_dict() == spec.to_dict() and moved.fingerprint() == spec.fingerprint()
