import numpy as np
import pytest
import torch
from torch import nn

from weightzoo.generate.mlds.machines import machine_set
from weightzoo.generate.mlds.networks import (
    DS1_NET,
    DS3_NET,
    MLDSNet,
    NetConfig,
    init_population,
    layout,
    num_params,
    population_forward,
)
from weightzoo.generate.mlds.population import PopulationData, TrainSettings, train_population


def test_parameter_counts():
    assert num_params(DS1_NET) == 4364  # the paper's count: input 9, output 8
    assert num_params(DS3_NET) == 126_990  # closest consistent reading of 136,846
    assert layout(DS1_NET).names == list(MLDSNet(DS1_NET).state_dict())
    assert "rnn.weight_ih_l0" in layout(DS1_NET).names


def test_population_cell_matches_nn_modules():
    small_lstm = NetConfig(cell="lstm", input_size=4, hidden=6, layers=2, linear_layers=1)
    for config in (DS1_NET, small_lstm):
        params = init_population(config, [3, 4])
        x = torch.rand(2, 3, 5, config.input_size)
        out = population_forward(config, params, x)
        for m, seed in enumerate([3, 4]):
            torch.manual_seed(seed)
            ref = MLDSNet(config)
            assert isinstance(ref.rnn, nn.GRU | nn.LSTM)
            torch.testing.assert_close(out[m], ref(x[m]), atol=1e-5, rtol=1e-5)


def test_frozen_networks_do_not_move_and_history_is_padded():
    sets = {
        name: [machine_set("SingleDirectMachine", count=8, steps=6, seed=i)]
        for i, name in enumerate(("train", "val"))
    }
    settings = TrainSettings(lr=1e-2, batch_size=8, max_epochs=3, threshold=10.0)
    result = train_population(DS1_NET, PopulationData(sets), [0, 0], [1, 2], settings)
    assert result.passed.all() and result.epochs.tolist() == [1, 1]
    assert np.isnan(result.history["train_loss"][:, 1:]).all()
    assert (result.weights[:, 1] == result.final).all()
    loss = np.asarray(result.final_metrics["val_loss"])
    assert np.isfinite(loss).all()


def test_cosine_schedule():
    settings = TrainSettings(lr=1e-2, max_epochs=5, schedule="cosine", min_lr_ratio=0.01)
    lrs = [settings.lr_at(epoch) for epoch in range(5)]
    assert lrs[0] == pytest.approx(1e-2) and lrs[-1] == pytest.approx(1e-4)
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))
    assert TrainSettings(lr=3e-3).lr_at(4) == 3e-3
    with pytest.raises(ValueError, match="schedule"):
        TrainSettings(schedule="step")
