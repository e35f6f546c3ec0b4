"""Population-vectorised training agrees with training the models one by one."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

from weightzoo.architectures.image import (
    cnn_medium,
    cnn_small,
    trajectory_cnn,
    trajectory_mlp,
)
from weightzoo.families.modelzoo.data import Split
from weightzoo.families.modelzoo.train import (
    choose_path,
    population_forward,
    population_loss,
    stack_models,
    train_population,
)
from weightzoo.generate.population import PopulationOptimizer

PATHS = ("vmap", "grouped", "loop")


def _models(factory, count=4, seed=0):
    torch.manual_seed(seed)
    return [factory() for _ in range(count)]


@pytest.mark.parametrize(
    ("factory", "shape"),
    [
        (lambda: cnn_small(1, activation="gelu", dropout=0.5), (1, 28, 28)),
        (lambda: cnn_medium(3, activation="sigmoid"), (3, 32, 32)),
        (lambda: trajectory_mlp(), (1, 14, 14)),
        (lambda: trajectory_cnn(), (1, 14, 14)),
    ],
)
@pytest.mark.parametrize("path", PATHS)
def test_population_forward_equals_per_model_forward(factory, shape, path):
    models = _models(factory)
    pop = stack_models(models)
    x = torch.rand(len(models), 5, *shape)
    out = population_forward(models[0], pop, x, path=path, training=False)
    ref = torch.stack([m.eval()(x[i]) for i, m in enumerate(models)])
    assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("path", PATHS)
def test_dropout_is_per_model(path):
    models = _models(lambda: cnn_small(1))
    pop = stack_models(models, dropout=[0.0, 0.5, 0.0, 0.5])
    x = torch.rand(4, 6, 1, 28, 28)
    out = population_forward(models[0], pop, x, path=path, training=True)
    ref = torch.stack([m.eval()(x[i]) for i, m in enumerate(models)])
    assert torch.allclose(out[0], ref[0], atol=1e-5)
    assert torch.allclose(out[2], ref[2], atol=1e-5)
    assert not torch.allclose(out[1], ref[1], atol=1e-3)
    # models with dropout draw different masks
    assert not torch.allclose(out[1] - ref[1], out[3] - ref[3])


@pytest.mark.parametrize("kind", ["adam", "sgd"])
@pytest.mark.parametrize("path", PATHS)
def test_population_steps_equal_per_model_steps(kind, path):
    models = _models(lambda: cnn_small(1, activation="tanh"))
    refs = copy.deepcopy(models)
    pop = stack_models(models)
    lr = torch.tensor([1e-3, 1e-2, 1e-4, 3e-3])
    wd = torch.tensor([0.0, 1e-3, 1e-2, 1e-4])
    opt = PopulationOptimizer(kind, lr, wd, 0.9 if kind == "sgd" else 0.0)
    net = copy.deepcopy(models[0])
    ref_opts = [
        torch.optim.Adam(r.parameters(), lr=float(lr[i]), weight_decay=float(wd[i]))
        if kind == "adam"
        else torch.optim.SGD(
            r.parameters(), lr=float(lr[i]), momentum=0.9, weight_decay=float(wd[i])
        )
        for i, r in enumerate(refs)
    ]
    for _ in range(3):
        x = torch.rand(4, 7, 1, 28, 28)
        y = torch.randint(0, 10, (4, 7))
        out = population_forward(net, pop, x, path=path, training=True)
        population_loss(out, y, "ce").sum().backward()
        opt.step(pop.params)
        pop.zero_grad()
        for i, (r, o) in enumerate(zip(refs, ref_opts, strict=True)):
            loss = F.cross_entropy(r.train()(x[i]), y[i])
            o.zero_grad()
            loss.backward()
            o.step()
    names = [n for n, _ in refs[0].named_parameters()]
    flat = pop.flat(names)
    ref = torch.stack([torch.cat([p.detach().reshape(-1) for p in r.parameters()]) for r in refs])
    assert torch.allclose(flat, ref, atol=1e-5)


def test_mse_loss_matches_torch():
    out = torch.randn(3, 5, 10)
    y = torch.randint(0, 10, (3, 5))
    got = population_loss(out, y, "mse")
    for i in range(3):
        want = F.mse_loss(out[i], F.one_hot(y[i], 10).float())
        assert torch.allclose(got[i], want)


def test_choose_path():
    assert choose_path(cnn_small(1), 4) == "grouped"
    assert choose_path(cnn_small(1), 128) == "grouped"
    assert choose_path(cnn_small(1), 129) == "loop"
    with pytest.raises(ValueError, match="unknown population path 'fast'"):
        choose_path(cnn_small(1), 4, "fast")


def _toy_split(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.rand(n, 1, 28, 28, generator=g) * 0.3
    x[torch.arange(n), 0, y * 2, :] += 1.0  # one bright row per class: learnable
    return Split(x, y)


def _train(models, path="auto", dropout=(0.0, 0.5, 0.0), epochs=2):
    names = [n for n, _ in models[0].named_parameters()]
    return train_population(
        models,
        [1, 2, 3],
        train=_toy_split(),
        val=_toy_split(40, 1),
        test=_toy_split(40, 2),
        optimizer="adam",
        lr=[1e-2, 1e-2, 3e-3],
        weight_decay=[0.0, 1e-4, 0.0],
        dropout=list(dropout),
        batch_size=8,
        epochs=epochs,
        names=names,
        path=path,
        noise_seed=7,
    )


def test_train_population_shapes_determinism_and_learning():
    a = _train(_models(lambda: cnn_small(1), 3))
    b = _train(_models(lambda: cnn_small(1), 3))
    assert a.weights.shape == (3, 3, 2464)
    assert set(a.metrics) >= {"train_loss", "val_acc", "test_acc", "ggap"}
    assert all(v.shape == (3, 3) for v in a.metrics.values())
    assert (a.weights == b.weights).all()
    for k in a.metrics:
        assert (a.metrics[k] == b.metrics[k]).all()
    assert (a.metrics["train_acc"][:, -1] > 0.3).all()
    gap = a.metrics["train_acc"] - a.metrics["test_acc"]
    assert (a.metrics["ggap"] == gap).all()


def test_model_without_dropout_does_not_depend_on_its_population():
    together = _train(_models(lambda: cnn_small(1), 3), path="loop")
    models = _models(lambda: cnn_small(1), 3)
    alone = train_population(
        [models[0]],
        [1],
        train=_toy_split(),
        val=None,
        test=None,
        optimizer="adam",
        lr=[1e-2],
        weight_decay=[0.0],
        dropout=[0.0],
        batch_size=8,
        epochs=2,
        names=[n for n, _ in models[0].named_parameters()],
        path="loop",
    )
    assert abs(together.weights[0] - alone.weights[0]).max() < 1e-4


def test_batchnorm_net_on_the_toolkit_equals_torch_sgd_with_onecycle():
    """The ResNet-18 recipe (SGD, one-cycle, augmentation, BatchNorm) on a tiny BN net."""
    from weightzoo.families.modelzoo.train import _augment

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 10),
    )
    g = torch.Generator().manual_seed(3)
    train = Split(torch.rand(24, 3, 8, 8, generator=g), torch.randint(0, 10, (24,), generator=g))
    names = [n for n in net.state_dict() if not n.endswith("num_batches_tracked")]
    epochs, batch, lr = 2, 8, 0.1
    ours = train_population(
        [copy.deepcopy(net)],
        [5],
        train=train,
        val=None,
        test=None,
        optimizer="sgd",
        lr=[lr],
        weight_decay=[5e-4],
        batch_size=batch,
        epochs=epochs,
        names=names,
        schedule="onecycle",
        augment=True,
        path="loop",
    )
    ref = copy.deepcopy(net)
    gen = torch.Generator().manual_seed(5)
    opt = torch.optim.SGD(ref.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * 3)
    for _ in range(epochs):
        ref.train()
        order = torch.randperm(24, generator=gen)
        for start in range(0, 24, batch):
            idx = order[start : start + batch]
            loss = F.cross_entropy(ref(_augment(train.x[idx], gen)), train.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    state = ref.state_dict()
    want = torch.cat([state[n].reshape(-1) for n in names])
    assert "1.running_mean" in names and state["1.running_mean"].abs().sum() > 0
    torch.testing.assert_close(torch.from_numpy(ours.weights[0, -1]), want, atol=1e-5, rtol=1e-4)


def test_large_populations_evaluate_in_smaller_passes_with_the_same_metrics(monkeypatch):
    from weightzoo.families.modelzoo import train as module

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
    g = torch.Generator().manual_seed(4)
    data = Split(torch.rand(40, 3, 4, 4, generator=g), torch.randint(0, 10, (40,), generator=g))

    def run():
        return train_population(
            [copy.deepcopy(net) for _ in range(4)],
            [1, 2, 3, 4],
            train=data,
            val=None,
            test=data,
            optimizer="adam",
            lr=[1e-2] * 4,
            weight_decay=[0.0] * 4,
            batch_size=8,
            epochs=1,
            names=[n for n in net.state_dict()],
            path="vmap",
        )

    whole = run()  # 40 images x 4 models fit one pass
    monkeypatch.setattr(module, "_EVAL_PAIRS", 12)  # 3 images a pass
    chunked = run()
    for name in ("test_loss", "test_acc"):
        torch.testing.assert_close(
            torch.as_tensor(chunked.metrics[name]), torch.as_tensor(whole.metrics[name])
        )
