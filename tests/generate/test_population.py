"""The population toolkit: per-model optimizers, schedules, data order, evaluate, compaction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from weightzoo.generate import population as tk

D, N = 6, 40


class Regression:
    """Each model fits its own linear target on shared inputs (a Task for the toolkit)."""

    def __init__(self, models: int, seed: int = 0, chunk: int = 7) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(N, D, generator=g)
        self.targets = torch.randn(models, D, generator=g)  # indexed by buffer "target"
        self.train_size = N
        self.splits = {"train": N, "val": N}
        self.chunk = chunk

    def _pred(self, pop, x):
        return (x @ pop.params["w"].unsqueeze(-1)).squeeze(-1) + pop.params["b"][:, None]

    def _target(self, pop, x):
        return x @ self.targets[pop.buffers["target"]].T

    def train_loss(self, pop, rows, order):
        x = self.x[rows]  # [M, B, D]
        y = (x * self.targets[pop.buffers["target"]][:, None]).sum(-1)
        pred = (x * pop.params["w"][:, None]).sum(-1) + pop.params["b"][:, None]
        return ((pred - y) ** 2).mean(1)

    def eval_sums(self, pop, split, start, stop):
        x = self.x[start:stop]
        pred = x @ pop.params["w"].T + pop.params["b"]  # [B, M]
        err = ((pred - self._target(pop, x)) ** 2).sum(0)
        return {"loss": (err, torch.full_like(err, stop - start))}

    def eval_chunk(self, split, models):
        return self.chunk


def _pop(models: int, seed: int = 1, which=None) -> tk.Population:
    g = torch.Generator().manual_seed(seed)
    w, b = torch.randn(models, D, generator=g), torch.randn(models, generator=g)
    which = list(range(models)) if which is None else list(which)
    return tk.Population(
        {"w": w[which], "b": b[which]}, {"target": torch.as_tensor(which, dtype=torch.long)}
    )


def _config(**changes) -> tk.TrainConfig:
    base = dict(
        optimizer="adam",
        lr=[1e-2, 3e-2, 1e-1, 3e-3],
        epochs=4,
        batch_size=8,
        checkpoints=(0, 2, 4),
        checkpoint_splits=("train",),
    )
    return tk.TrainConfig(**(base | changes))


def _train(which=(0, 1, 2, 3), **changes):
    which = list(which)
    config = _config(**changes)
    per_model = ("lr", "threshold", "weight_decay")
    for key in per_model:
        value = getattr(config, key)
        if isinstance(value, list | tuple):
            config = tk.TrainConfig(**{**config.__dict__, key: [value[i] for i in which]})
    seeds = [10 + i for i in which]
    task = Regression(4)
    return tk.train(task, _pop(4, which=which), seeds, ["w", "b"], config)


# ------------------------------------------------------------------------------- optimizer
@pytest.mark.parametrize(
    ("kind", "momentum"), [("adam", 0.0), ("adamw", 0.0), ("sgd", 0.0), ("sgd", 0.9)]
)
def test_optimizer_equals_one_torch_optimizer_per_model(kind, momentum):
    torch.manual_seed(0)
    count = 4
    lr = [1e-3, 1e-2, 1e-1, 3e-2]
    wd = [0.0, 1e-2, 1e-3, 1e-1]
    stacked = {"w": torch.randn(count, 3, 5, requires_grad=True)}
    refs = [torch.nn.Parameter(stacked["w"][i].detach().clone()) for i in range(count)]
    opt = tk.PopulationOptimizer(kind, lr, wd, momentum)
    torch_opts = []
    for i, ref in enumerate(refs):
        if kind == "sgd":
            torch_opts.append(
                torch.optim.SGD([ref], lr=lr[i], momentum=momentum, weight_decay=wd[i])
            )
        else:
            cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
            torch_opts.append(cls([ref], lr=lr[i], weight_decay=wd[i]))
    for _ in range(5):
        target = torch.randn(count, 3, 5)
        ((stacked["w"] - target) ** 2).sum().backward()
        opt.step(stacked)
        stacked["w"].grad = None
        for i, (ref, ref_opt) in enumerate(zip(refs, torch_opts, strict=True)):
            ref_opt.zero_grad()
            ((ref - target[i]) ** 2).sum().backward()
            ref_opt.step()
    for i, ref in enumerate(refs):
        torch.testing.assert_close(stacked["w"][i], ref.detach(), rtol=1e-6, atol=1e-6)


def test_models_in_a_population_are_independent_optimizers():
    """A model's trajectory is bit-identical whether it trains alone or with others."""
    together = _train(lr=[1e-2, 3e-2, 1e-1, 3e-3])
    for i in range(4):
        alone = _train(which=[i], lr=[1e-2, 3e-2, 1e-1, 3e-3])
        np.testing.assert_allclose(alone.weights[0], together.weights[i], rtol=1e-6, atol=1e-7)


def test_optimizer_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown optimizer"):
        tk.PopulationOptimizer("rmsprop", [1e-3])
    with pytest.raises(ValueError, match="one value per model"):
        tk.PopulationOptimizer("adam", [1e-3, 1e-3], weight_decay=[0.0, 0.0, 0.0])


# -------------------------------------------------------------------------------- schedules
def test_onecycle_matches_torch_onecycle_lr_and_momentum():
    epochs, steps = 3, 7
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=epochs * steps)
    ours = tk.Schedule("onecycle", epochs=epochs, steps_per_epoch=steps)
    base = torch.tensor([0.1, 0.05], dtype=torch.float64)
    for step in range(epochs * steps):
        group = opt.param_groups[0]
        got = ours.lr(base, step // steps, step)
        assert got[0].item() == pytest.approx(group["lr"], rel=1e-12)
        assert got[1].item() == pytest.approx(group["lr"] / 2, rel=1e-12)
        momentum = ours.momentum(torch.tensor([0.9], dtype=torch.float64), step)
        assert momentum.item() == pytest.approx(group["momentum"], rel=1e-12)
        opt.step()
        sched.step()


def test_cosine_and_constant_schedules_are_per_model():
    base = torch.tensor([1e-2, 1e-3], dtype=torch.float64)
    cosine = tk.Schedule("cosine", epochs=5, min_lr_ratio=0.01)
    first, last = cosine.lr(base, 0, 0), cosine.lr(base, 4, 0)
    torch.testing.assert_close(first, base)
    torch.testing.assert_close(last, base * 0.01)
    middle = cosine.lr(base, 2, 0)
    assert (middle < first).all() and (middle > last).all()
    torch.testing.assert_close(tk.Schedule().lr(base, 3, 100), base)
    with pytest.raises(ValueError, match="schedule"):
        tk.Schedule("step")


# ---------------------------------------------------------------------- data order, evaluate
def test_data_order_is_per_model_and_survives_compaction():
    order = tk.DataOrder([1, 2, 3], 10, kind="numpy")
    first = order.epoch("cpu")
    assert first.shape == (3, 10) and (first.sort(1).values == torch.arange(10)).all()
    order.keep([0, 2])
    alone = tk.DataOrder([3], 10, kind="numpy")
    alone.epoch("cpu")
    assert (order.epoch("cpu")[1] == alone.epoch("cpu")[0]).all()


def test_evaluate_does_not_depend_on_the_chunk():
    pop = _pop(4)
    a = tk.evaluate(Regression(4, chunk=7), pop, ["train", "val"])
    b = tk.evaluate(Regression(4, chunk=N), pop, ["train", "val"])
    assert set(a) == {"train_loss", "val_loss"}
    torch.testing.assert_close(a["val_loss"], b["val_loss"])
    task = Regression(4)
    pred = task.x @ pop.params["w"].detach().T + pop.params["b"].detach()
    want = ((pred - task.x @ task.targets.T) ** 2).mean(0)
    torch.testing.assert_close(a["train_loss"], want)


# --------------------------------------------------------------------- training, compaction
def test_train_records_checkpoints_and_is_deterministic():
    a, b = _train(), _train()
    assert a.weights.shape == (4, 3, D + 1) and a.checkpoints == [0, 2, 4]
    assert a.metrics["train_loss"].shape == (4, 3)
    assert a.history["train_loss"].shape == (4, 4)
    assert (a.weights == b.weights).all() and (a.final == b.final).all()
    assert (a.weights[:, -1] == a.final).all()
    assert (a.metrics["train_loss"][:, -1] < a.metrics["train_loss"][:, 0]).all()
    assert not a.passed.any() and (a.epochs == 4).all()
    np.testing.assert_array_equal(a.initial, _pop(4).flat(["w", "b"]).numpy())


def test_compaction_keeps_passed_models_and_leaves_the_others_unchanged():
    inf = math.inf
    thresholds = [inf, -inf, inf, -inf]  # models 0 and 2 pass after their first epoch
    mixed = _train(watch="val_loss", threshold=thresholds)
    assert mixed.passed.tolist() == [True, False, True, False]
    assert mixed.epochs.tolist() == [1, 4, 1, 4]
    assert np.isnan(mixed.history["val_loss"][[0, 2], 1:]).all()
    # the others train exactly as without the passed ones (up to float rounding)
    others = _train(which=[1, 3], watch="val_loss", threshold=[-inf, -inf, -inf, -inf])
    np.testing.assert_allclose(mixed.final[[1, 3]], others.final, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(mixed.weights[[1, 3]], others.weights, rtol=1e-6, atol=1e-7)
    # the passed ones keep their weights of the epoch they passed, at every later checkpoint
    one_epoch = _train(which=[0, 2], epochs=1, checkpoints=(0, 1))
    np.testing.assert_allclose(mixed.final[[0, 2]], one_epoch.final, rtol=1e-6, atol=1e-7)
    assert (mixed.weights[[0, 2], 1] == mixed.final[[0, 2]]).all()
    assert (mixed.weights[[0, 2], 2] == mixed.final[[0, 2]]).all()
    loss = mixed.final_metrics["train_loss"][[0, 2]]
    assert (mixed.metrics["train_loss"][[0, 2], 2] == loss).all()
    # freezing them in place instead gives the same result
    frozen = _train(watch="val_loss", threshold=thresholds, compact=False)
    np.testing.assert_allclose(frozen.final, mixed.final, rtol=1e-6, atol=1e-7)
    assert frozen.epochs.tolist() == mixed.epochs.tolist()


def test_all_passing_stops_early():
    result = _train(watch="val_loss", threshold=math.inf)
    assert result.passed.all() and (result.epochs == 1).all()
    assert np.isfinite(result.final_metrics["val_loss"]).all()


def test_clip_per_model_matches_clip_grad_norm_on_each_model():
    from weightzoo.generate.population import clip_per_model_

    torch.manual_seed(0)
    grads = {"a": torch.randn(3, 4, 5) * torch.tensor([0.1, 3.0, 30.0]).view(3, 1, 1)}
    grads["b"] = torch.randn(3, 7)
    stacked = {k: torch.zeros_like(v, requires_grad=True) for k, v in grads.items()}
    for k, v in stacked.items():
        v.grad = grads[k].clone()
    clip_per_model_(stacked.values(), 1.0)
    for m in range(3):
        alone = [torch.zeros_like(grads[k][m], requires_grad=True) for k in grads]
        for tensor, k in zip(alone, grads, strict=True):
            tensor.grad = grads[k][m].clone()
        torch.nn.utils.clip_grad_norm_(alone, 1.0)
        for tensor, k in zip(alone, grads, strict=True):
            assert torch.allclose(stacked[k].grad[m], tensor.grad, atol=1e-6)
    assert float(stacked["b"].grad[0].norm()) != pytest.approx(float(grads["b"][0].norm()))


def test_several_watched_metrics_stop_a_model_only_when_all_are_below():
    class ValNeverPasses(Regression):
        def eval_sums(self, pop, split, start, stop):
            out = super().eval_sums(pop, split, start, stop)
            if split == "val":
                err, count = out["loss"]
                out["loss"] = (torch.full_like(err, math.inf), count)
            return out

    config = _config(lr=1e-2, threshold=1e9)
    one = tk.train(
        ValNeverPasses(4),
        _pop(4),
        [10, 11, 12, 13],
        ["w", "b"],
        tk.TrainConfig(**{**config.__dict__, "watch": "train_loss"}),
    )
    both = tk.train(
        ValNeverPasses(4),
        _pop(4),
        [10, 11, 12, 13],
        ["w", "b"],
        tk.TrainConfig(**{**config.__dict__, "watch": ("train_loss", "val_loss")}),
    )
    assert one.passed.all() and (one.epochs == 1).all()
    assert not both.passed.any() and (both.epochs == config.epochs).all()


def test_give_up_stops_models_above_the_level_at_that_epoch_and_keeps_the_others():
    inf = math.inf
    stops: list[tuple[list[int], bool]] = []
    # model 0 passes after epoch 1; at epoch 2, models 1 and 3 are above the level, model 2 not
    levels = _train(watch="val_loss", threshold=[-inf] * 4, epochs=4).history["val_loss"][:, 1]
    level = float(np.sort(levels[1:])[0]) * 1.0001  # model with the lowest loss among 1-3 stays
    keep = 1 + int(np.argmin(levels[1:]))
    which = [0, 1, 2, 3]
    config = _config(watch="val_loss", threshold=[inf, -inf, -inf, -inf], give_up=(2, level))
    result = tk.train(
        Regression(4),
        _pop(4, which=which),
        [10 + i for i in which],
        ["w", "b"],
        config,
        on_stop=lambda ids, passed: stops.append((sorted(ids.tolist()), passed)),
    )
    gave_up = sorted(set(range(1, 4)) - {keep})
    assert result.passed.tolist() == [True, False, False, False]
    assert stops == [([0], True), (gave_up, False)]
    expected = [1, 2, 2, 2]
    expected[keep] = 4
    assert result.epochs.tolist() == expected
    assert np.isnan(result.history["val_loss"][gave_up, 2:]).all()
    # the model that stayed trains exactly as it would alone
    alone = _train(which=[keep], watch="val_loss", threshold=[-inf] * 4)
    np.testing.assert_allclose(result.final[[keep]], alone.final, rtol=1e-6, atol=1e-7)
    # a model that gave up holds its epoch-2 weights at the later checkpoints
    np.testing.assert_array_equal(result.weights[gave_up, 2], result.final[gave_up])


def _train_with_stops(config: tk.TrainConfig):
    """Train the 4-model population; also return every ``on_stop`` call (ids, passed)."""
    stops: list[tuple[list[int], bool]] = []
    result = tk.train(
        Regression(4),
        _pop(4),
        [10, 11, 12, 13],
        ["w", "b"],
        config,
        on_stop=lambda ids, passed: stops.append((sorted(ids.tolist()), passed)),
    )
    return result, stops


@pytest.mark.parametrize("compact", [True, False])
def test_a_passing_model_stops_the_rest_of_its_group(compact):
    inf = math.inf
    # groups {0, 1} and {2, 3}: model 0 passes after epoch 1 and takes model 1 with it
    config = _config(
        watch="val_loss", threshold=[inf, -inf, -inf, -inf], groups=[5, 5, 9, 9], compact=compact
    )
    result, stops = _train_with_stops(config)
    assert result.passed.tolist() == [True, False, False, False]
    assert result.epochs.tolist() == [1, 1, 4, 4]
    assert stops == [([0], True), ([1], False)]
    # model 1 keeps its weights and metrics of the epoch it stopped
    one_epoch = _train(which=[1], epochs=1, checkpoints=(0, 1))
    np.testing.assert_allclose(result.final[[1]], one_epoch.final, rtol=1e-6, atol=1e-7)
    assert np.isfinite(result.final_metrics["val_loss"][1])
    # the other group trains as without any groups
    alone = _train(which=[2, 3], watch="val_loss", threshold=[-inf] * 4)
    np.testing.assert_allclose(result.final[[2, 3]], alone.final, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("compact", [True, False])
def test_groups_follow_their_models_through_compaction(compact):
    never = -math.inf
    # interleaved groups {0, 2} and {1, 3}; model 0 passes after epoch 1, model 1 after epoch 2
    level = float(_train(watch="val_loss", threshold=[never] * 4).history["val_loss"][1, 1])
    config = _config(
        watch="val_loss",
        threshold=[math.inf, level * 1.0001, never, never],
        groups=[5, 9, 5, 9],
        compact=compact,
    )
    result, stops = _train_with_stops(config)
    assert result.passed.tolist() == [True, True, False, False]
    assert result.epochs.tolist() == [1, 2, 1, 2]
    assert stops == [([0], True), ([2], False), ([1], True), ([3], False)]


def test_a_passed_model_the_caller_does_not_accept_leaves_its_group_training():
    seen = []

    def ends_group(metrics):
        seen.append(sorted(metrics))
        return np.zeros(len(metrics["val_loss"]), dtype=bool)

    inf = math.inf
    result = _train(
        watch="val_loss",
        threshold=[inf, -inf, -inf, -inf],
        groups=[5, 5, 9, 9],
        ends_group=ends_group,
    )
    assert result.passed.tolist() == [True, False, False, False]
    assert result.epochs.tolist() == [1, 4, 4, 4]
    assert seen == [["train_loss", "val_loss"]]  # every split's final metrics


def test_members_of_a_group_passing_together_all_pass_and_labels_are_checked():
    result = _train(watch="val_loss", threshold=math.inf, groups=[0, 0, 1, 1])
    assert result.passed.all() and (result.epochs == 1).all()
    with pytest.raises(ValueError, match="3 group labels given for 4 models"):
        _train(groups=[0, 0, 1])


def test_train_plans_shuffles_each_models_data_by_its_plans_seed():
    from weightzoo.generate.base import ModelPlan

    plans = [ModelPlan(model_id=i, seed=10 + i) for i in range(4)]
    by_plans = tk.train_plans(Regression(4), _pop(4), plans, ["w", "b"], _config())
    by_seeds = _train()  # tk.train with the seeds 10..13
    np.testing.assert_array_equal(by_plans.weights, by_seeds.weights)
    others = [ModelPlan(model_id=i, seed=20 + i) for i in range(4)]
    moved = tk.train_plans(Regression(4), _pop(4), others, ["w", "b"], _config())
    assert not np.array_equal(moved.weights[:, -1], by_seeds.weights[:, -1])
    np.testing.assert_array_equal(moved.weights[:, 0], by_seeds.weights[:, 0])  # same start
