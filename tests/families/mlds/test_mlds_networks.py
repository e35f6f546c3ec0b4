import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from weightzoo.families.mlds.machines import machine_set
from weightzoo.families.mlds.model import (
    MLDSNet,
    init_population,
    initialise_,
    layout,
    masked_bit_hits,
    population_forward,
)
from weightzoo.families.mlds.spec import DS1_NET, DS3_NET, NetConfig, TrainSettings, num_params
from weightzoo.families.mlds.train import PopulationData, lr_at, train_population


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
    lrs = [lr_at(settings, epoch) for epoch in range(5)]
    assert lrs[0] == pytest.approx(1e-2) and lrs[-1] == pytest.approx(1e-4)
    assert all(a > b for a, b in itertools.pairwise(lrs))
    assert lr_at(TrainSettings(lr=3e-3), 4) == 3e-3
    with pytest.raises(ValueError, match="schedule"):
        TrainSettings(schedule="step")


def test_orthogonal_init_blocks_and_default_untouched():
    torch.manual_seed(0)
    default = MLDSNet().state_dict()
    torch.manual_seed(0)
    net = initialise_(MLDSNet(), "orthogonal")
    eye = torch.eye(12)
    for name, tensor in net.state_dict().items():
        if name.startswith("linears.") and name.endswith("weight"):
            assert torch.allclose(tensor @ tensor.T, eye, atol=1e-5), name
        elif name.startswith("linears.") and name.endswith("bias"):
            assert not tensor.any()
        elif "weight_hh" in name or ("weight_ih" in name and not name.endswith("l0")):
            for block in tensor.split(12):
                assert torch.allclose(block @ block.T, eye, atol=1e-5), name
        else:  # layer-0 input weights, biases, output layer: PyTorch's own draws
            assert torch.equal(tensor, default[name]), name
    with pytest.raises(ValueError, match="orthogonal"):
        initialise_(MLDSNet(), "xavier")


def test_bit_and_symbol_accuracy_count_rounded_outputs():
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])  # [M=1, B=1, T=2, lines=2]
    pred = torch.tensor([[[[0.9, 0.6], [0.1, 0.4]]]])  # step 0: one line wrong
    mask = torch.ones(1, 1, 2)
    hits = masked_bit_hits(pred, target, mask)
    assert [float(x) for x in hits["bit_accuracy"]] == [3.0, 4.0]
    assert [float(x) for x in hits["symbol_accuracy"]] == [1.0, 2.0]
    hits = masked_bit_hits(pred, target, torch.tensor([[[0.0, 1.0]]]))
    assert [float(x) for x in hits["symbol_accuracy"]] == [1.0, 1.0]


@settings(max_examples=25, deadline=None)
@given(
    cell=st.sampled_from(["gru", "lstm"]),
    sizes=st.tuples(*[st.integers(1, 9)] * 3),
    depth=st.tuples(st.integers(1, 4), st.integers(0, 3)),
)
def test_the_torch_free_count_is_the_modules(cell, sizes, depth):
    inputs, hidden, outputs = sizes
    config = NetConfig(cell, inputs, hidden, depth[0], depth[1], outputs)
    net = MLDSNet(config)
    assert num_params(config) == sum(p.numel() for p in net.parameters())
    assert num_params(config) == layout(config).num_params
