"""``--models`` / ``--epochs`` / ``--data-dir`` on the specs of fixed grids (GridOptions)."""

from __future__ import annotations

import pytest

from weightzoo.generate.base import GridOptions
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
    with pytest.raises(ValueError, match="--epochs must be at least 1"):
        spec.override(epochs=0)


def test_data_dir_only_where_the_spec_reads_files(tmp_path):
    assert get_spec("phase-digits-mlp-w4").override(data_dir=tmp_path).data_dir == str(tmp_path)
    with pytest.raises(ValueError, match="data_dir"):
        get_spec("phase-pinn-convection").override(data_dir=tmp_path)
