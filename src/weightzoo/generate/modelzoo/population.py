"""Population-vectorised training: many models of one architecture trained as one.

The models' parameters are stacked with :func:`torch.func.stack_module_state` into tensors with
a leading model axis ``[M, ...]``. A training step gathers one batch per model (each model has
its own data order), runs the population forward, sums the per-model mean losses (so that each
model's gradient is its own) and updates every model with its own learning rate and weight
decay (:class:`PopulationOptimizer`). Dropout rates are per model too (a ``[M]`` buffer of
:class:`~.architectures.RateDropout`).

Three forward paths compute the same function (up to float rounding):

- ``"vmap"``: :func:`torch.func.vmap` over :func:`torch.func.functional_call` with
  ``randomness="different"`` (every model draws its own dropout masks);
- ``"grouped"``: for :class:`~.architectures.SeqNet` stacks only, the population's convs run as
  ONE grouped convolution (``groups=M``) over channel-stacked inputs and its linear layers as
  one batched matrix product (``baddbmm``); the fastest on CPU at every batch size measured;
- ``"loop"``: one ``functional_call`` per model on slices of the stacked tensors, for very
  large per-model batches, where each model's batch alone saturates the device.

``"auto"`` picks ``"grouped"`` for sequential nets when the batch is at most
:data:`GROUPED_MAX_BATCH` and ``"loop"`` otherwise (``"vmap"`` for other modules at small
batches); see ``benchmarks/bench_population.py`` for the measurements behind the rule.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F

from weightzoo.generate.modelzoo.architectures import RateDropout, SeqNet

GROUPED_MAX_BATCH = 128
"""Largest per-model batch for which ``path="auto"`` uses the grouped forward.

With channels-last tensors the grouped path beat both the vmap and the loop path at every
batch size measured on CPU (4, 12, 64, 128; docs/modelzoo.md); larger batches fall back to the
loop, which is what saturates a device once each model's batch is big.
"""

PATHS = ("auto", "vmap", "grouped", "loop")


class PopulationOptimizer:
    """Adam or SGD with momentum over stacked parameters, with a rate per model.

    The update is PyTorch's (``torch.optim.Adam`` / ``torch.optim.SGD``, L2 weight decay added
    to the gradient, no dampening, no Nesterov) with ``lr`` and ``weight_decay`` given as
    ``[M]`` tensors, broadcast along each parameter's leading model axis.

    Args:
        params: stacked parameters ``{name: [M, ...]}`` (leaf tensors with gradients).
        kind: ``"adam"`` or ``"sgd"``.
        lr: per-model learning rates ``[M]``.
        weight_decay: per-model L2 weight decay ``[M]``.
        momentum: SGD momentum.
        betas: Adam betas.
        eps: Adam epsilon.

    Raises:
        ValueError: for an unknown optimizer.
    """

    def __init__(
        self,
        params: dict[str, torch.Tensor],
        kind: str,
        lr: torch.Tensor,
        weight_decay: torch.Tensor,
        *,
        momentum: float = 0.9,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if kind not in ("adam", "sgd"):
            raise ValueError(f"unknown optimizer {kind!r}; known: adam, sgd")
        self.params = params
        self.kind = kind
        self.lr = lr
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.betas = betas
        self.eps = eps
        self.steps = 0
        self.state: dict[str, dict[str, torch.Tensor]] = {}

    @staticmethod
    def _expand(rate: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return rate.view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self) -> None:
        """Apply one update to every parameter that has a gradient."""
        self.steps += 1
        beta1, beta2 = self.betas
        for name, param in self.params.items():
            if param.grad is None:
                continue
            lr = self._expand(self.lr, param)
            grad = param.grad + self._expand(self.weight_decay, param) * param
            state = self.state.setdefault(name, {})
            if self.kind == "sgd":
                if "buf" not in state:
                    state["buf"] = grad.clone()
                else:
                    state["buf"].mul_(self.momentum).add_(grad)
                param.sub_(lr * state["buf"])
                continue
            if "m" not in state:
                state["m"] = torch.zeros_like(param)
                state["v"] = torch.zeros_like(param)
            m, v = state["m"], state["v"]
            m.lerp_(grad, 1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bias1 = 1 - beta1**self.steps
            bias2_sqrt = math.sqrt(1 - beta2**self.steps)
            denom = (v.sqrt() / bias2_sqrt).add_(self.eps)
            param.sub_((lr / bias1) * m / denom)

    def zero_grad(self) -> None:
        """Drop the gradients."""
        for param in self.params.values():
            param.grad = None


def _dropout_rate(rate: torch.Tensor, h: torch.Tensor, models: int) -> torch.Tensor:
    """Broadcast a ``[M]`` rate to ``h`` in grouped (``[B, M*C, ...]``) or flat layout."""
    if h.dim() == 3:  # flat: [M, B, F]
        return rate.view(models, 1, 1)
    channels = h.shape[1] // models
    return rate.repeat_interleave(channels).view(1, -1, *([1] * (h.dim() - 2)))


def grouped_forward(
    net: SeqNet,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    x: torch.Tensor,
    *,
    dropout: bool = True,
) -> torch.Tensor:
    """Population forward of a :class:`SeqNet` as grouped convs and batched matmuls.

    On CPU the image tensors are kept channels-last: oneDNN's grouped convolution and max-pool
    run 1.5-3x faster on that layout for these many-channel, tiny-kernel stacks (measured,
    ``benchmarks/bench_population.py``).

    Args:
        net: the architecture (its own parameters are not used).
        params: stacked parameters ``{name: [M, ...]}``.
        buffers: stacked buffers (dropout rates ``[M]``).
        x: inputs ``[M, B, ...]`` (one batch per model).
        dropout: False when every rate is 0, to skip drawing masks that would keep everything
            (the result is the same).

    Returns:
        outputs ``[M, B, classes]``.
    """
    models, batch = x.shape[0], x.shape[1]
    if x.dim() >= 4:
        h = x.transpose(0, 1).reshape(batch, models * x.shape[2], *x.shape[3:])
        if h.device.type == "cpu":
            h = h.contiguous(memory_format=torch.channels_last)
    else:
        h = x
    for index, layer in enumerate(net.module_list):
        key = f"module_list.{index}"
        if isinstance(layer, nn.Conv2d):
            weight = params[f"{key}.weight"]
            bias = params.get(f"{key}.bias")
            h = F.conv2d(
                h,
                weight.reshape(-1, *weight.shape[2:]),
                None if bias is None else bias.reshape(-1),
                layer.stride,
                layer.padding,
                layer.dilation,
                groups=models,
            )
        elif isinstance(layer, nn.Flatten):
            if h.dim() != 3:
                h = h.reshape(batch, models, -1).transpose(0, 1)
        elif isinstance(layer, nn.Linear):
            weight = params[f"{key}.weight"]
            bias = params.get(f"{key}.bias")
            if bias is None:
                h = torch.bmm(h, weight.transpose(1, 2))
            else:
                h = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
        elif isinstance(layer, RateDropout):
            if layer.training and dropout:
                keep = 1.0 - _dropout_rate(buffers[f"{key}.p"], h, models)
                h = h * (torch.rand_like(h) < keep).to(h.dtype) / keep
        else:  # pooling and activations act per channel / element
            h = layer(h)
    return h


def choose_path(net: nn.Module, batch_size: int, path: str = "auto") -> str:
    """The forward path ``path="auto"`` resolves to for ``net`` at ``batch_size``.

    Raises:
        ValueError: for an unknown path, or ``"grouped"`` on a non-sequential net.
    """
    if path not in PATHS:
        raise ValueError(f"unknown population path {path!r}; known: {list(PATHS)}")
    sequential = isinstance(net, SeqNet)
    if path == "grouped" and not sequential:
        raise ValueError("the grouped path needs a SeqNet (CNN-s, CNN-m, trajectory nets)")
    if path != "auto":
        return path
    if batch_size > GROUPED_MAX_BATCH:
        return "loop"
    return "grouped" if sequential else "vmap"


class Population:
    """A population of models of one architecture as stacked tensors.

    Args:
        models: the initialised models (same architecture); they are not modified.
        device: where the stacked tensors live.
        dropout: per-model dropout rates (default: the models' own).
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        *,
        device: str | torch.device = "cpu",
        dropout: Sequence[float] | None = None,
    ) -> None:
        if not models:
            raise ValueError("a population needs at least one model")
        params, buffers = stack_module_state(list(models))
        self.params = {k: v.detach().to(device).requires_grad_(True) for k, v in params.items()}
        self.buffers = {k: v.detach().to(device) for k, v in buffers.items()}
        if dropout is not None:
            rates = torch.tensor([float(p) for p in dropout], device=device)
            for name in self.buffers:
                if name.endswith(".p"):
                    self.buffers[name] = rates.clone()
        self.net = copy.deepcopy(models[0]).to(device)
        # known once here, so that the forward needs no device sync to skip all-zero dropout
        self.has_dropout = any(
            bool((v != 0).any()) for k, v in self.buffers.items() if k.endswith(".p")
        )
        self.size = len(models)
        self.device = torch.device(device)

    def forward(self, x: torch.Tensor, *, path: str, training: bool) -> torch.Tensor:
        """Outputs ``[M, B, classes]`` for per-model inputs ``x`` ``[M, B, ...]``."""
        self.net.train(training)
        if path == "grouped":
            return grouped_forward(self.net, self.params, self.buffers, x, dropout=self.has_dropout)
        if path == "vmap":

            def one(p: dict, b: dict, xi: torch.Tensor) -> torch.Tensor:
                return functional_call(self.net, (p, b), (xi,))

            return vmap(one, randomness="different")(self.params, self.buffers, x)
        outs = []
        for i in range(self.size):
            p = {k: v[i] for k, v in self.params.items()}
            b = {k: v[i] for k, v in self.buffers.items()}
            outs.append(functional_call(self.net, (p, b), (x[i],)))
        return torch.stack(outs)

    def flat(self, names: Sequence[str]) -> torch.Tensor:
        """The population's weights as ``[M, params]`` in the order of ``names``."""
        tensors = {**self.params, **self.buffers}
        return torch.cat([tensors[n].detach().reshape(self.size, -1) for n in names], dim=1)


def population_loss(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-model mean loss ``[M]`` for outputs ``[M, B, K]`` and labels ``[M, B]``.

    ``"ce"`` is cross-entropy on logits; ``"mse"`` is the mean squared error against one-hot
    targets (PyTorch's ``MSELoss`` mean over batch and classes).
    """
    models, batch, classes = out.shape
    if loss == "ce":
        per = F.cross_entropy(out.reshape(-1, classes), y.reshape(-1), reduction="none")
        return per.view(models, batch).mean(1)
    target = F.one_hot(y, classes).to(out.dtype)
    return ((out - target) ** 2).mean(dim=(1, 2))


@dataclass
class Split:
    """One split of an image dataset on the training device."""

    x: torch.Tensor
    y: torch.Tensor


@dataclass
class TrainResult:
    """What :func:`train_population` returns.

    Attributes:
        weights: float32 ``[M, checkpoints, params]``.
        metrics: ``{name: float32 [M, checkpoints]}``.
        path: the forward path used.
    """

    weights: np.ndarray
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    path: str = ""


METRICS = (
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "ggap",
)
"""Per-checkpoint metrics: losses, accuracies in [0, 1], ggap = train_acc - test_acc."""


@torch.no_grad()
def evaluate(
    pop: Population, split: Split, *, loss: str, path: str, batch_size: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and accuracy ``([M], [M])`` of every model on a whole split (eval mode)."""
    total = torch.zeros(pop.size, device=pop.device, dtype=torch.float64)
    correct = torch.zeros(pop.size, device=pop.device, dtype=torch.float64)
    n = split.x.shape[0]
    for start in range(0, n, batch_size):
        xb = split.x[start : start + batch_size]
        yb = split.y[start : start + batch_size]
        xs = xb.unsqueeze(0).expand(pop.size, *xb.shape)
        ys = yb.unsqueeze(0).expand(pop.size, -1)
        out = pop.forward(xs, path=path, training=False)
        total += population_loss(out, ys, loss).double() * xb.shape[0]
        correct += (out.argmax(-1) == ys).sum(1).double()
    return (total / n).float(), (correct / n).float()


def train_population(
    models: Sequence[nn.Module],
    seeds: Sequence[int],
    *,
    train: Split,
    val: Split | None,
    test: Split | None,
    optimizer: str,
    lr: Sequence[float],
    weight_decay: Sequence[float],
    dropout: Sequence[float] | None = None,
    batch_size: int,
    epochs: int,
    names: Sequence[str],
    loss: str = "ce",
    momentum: float = 0.9,
    device: str = "cpu",
    path: str = "auto",
    noise_seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train a population; checkpoint before training and after every epoch.

    Each model draws its data order from ``torch.Generator().manual_seed(seed)`` (a fresh
    permutation of the training split every epoch, the last batch may be short), so a model's
    batches do not depend on the other models. Dropout masks come from the device's global
    generator, seeded with ``noise_seed`` inside a forked RNG state.

    Args:
        models: initialised models of one architecture.
        seeds: per-model seeds (data order).
        train: training split (on ``device``).
        val: validation split, or None (metrics NaN).
        test: test split, or None.
        optimizer: ``"adam"`` or ``"sgd"``.
        lr: per-model learning rates.
        weight_decay: per-model weight decay.
        dropout: per-model dropout rates (default: the models' own).
        batch_size: per-model batch size.
        epochs: training epochs (``epochs + 1`` checkpoints).
        names: tensor names in layout order (parameters, then any buffers to store).
        loss: ``"ce"`` or ``"mse"``.
        momentum: SGD momentum.
        device: torch device.
        path: forward path (see module docs).
        noise_seed: seed of the dropout noise.
        progress: called with the number of steps after each epoch.

    Returns:
        the stacked checkpoints and metrics.
    """
    dev = torch.device(device)
    pop = Population(models, device=dev, dropout=dropout)
    path = choose_path(pop.net, batch_size, path)
    count = pop.size
    lr_t = torch.tensor([float(v) for v in lr], device=dev)
    wd_t = torch.tensor([float(v) for v in weight_decay], device=dev)
    opt = PopulationOptimizer(pop.params, optimizer, lr_t, wd_t, momentum=momentum)
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    n = train.x.shape[0]
    weights = np.zeros((count, epochs + 1, len(pop.flat(names)[0])), dtype=np.float32)
    metrics = {m: np.full((count, epochs + 1), np.nan, dtype=np.float32) for m in METRICS}

    def checkpoint(epoch: int) -> None:
        weights[:, epoch] = pop.flat(names).cpu().numpy()
        values: dict[str, torch.Tensor] = {}
        for split_name, split in (("train", train), ("val", val), ("test", test)):
            if split is None:
                continue
            lo, acc = evaluate(pop, split, loss=loss, path=path)
            values[f"{split_name}_loss"], values[f"{split_name}_acc"] = lo, acc
        if "test_acc" in values:
            values["ggap"] = values["train_acc"] - values["test_acc"]
        for key, value in values.items():
            metrics[key][:, epoch] = value.cpu().numpy()

    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=dev.type):
        torch.manual_seed(noise_seed)
        checkpoint(0)
        for epoch in range(1, epochs + 1):
            order = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(dev)
            steps = 0
            for start in range(0, n, batch_size):
                idx = order[:, start : start + batch_size]
                xb, yb = train.x[idx], train.y[idx]
                out = pop.forward(xb, path=path, training=True)
                population_loss(out, yb, loss).sum().backward()
                opt.step()
                opt.zero_grad()
                steps += 1
            checkpoint(epoch)
            if progress is not None:
                progress(steps)
    return TrainResult(weights=weights, metrics=metrics, path=path)


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding 4) and horizontal flip, drawn from ``generator`` (CPU)."""
    batch, _, height, width = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (batch,), generator=generator).tolist()
    dx = torch.randint(0, 9, (batch,), generator=generator).tolist()
    flip = (torch.rand(batch, generator=generator) < 0.5).tolist()
    out = torch.stack(
        [padded[i, :, dy[i] : dy[i] + height, dx[i] : dx[i] + width] for i in range(batch)]
    )
    flips = [i for i in range(batch) if flip[i]]
    if flips:
        out[flips] = out[flips].flip(-1)
    return out


def train_single(
    model: nn.Module,
    seed: int,
    *,
    train: Split,
    val: Split | None,
    test: Split | None,
    lr: float,
    weight_decay: float,
    momentum: float,
    batch_size: int,
    epochs: int,
    names: Sequence[str],
    onecycle: bool = True,
    augment: bool = True,
    device: str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train one (large) model with ``torch.optim.SGD``, optionally under ``OneCycleLR``.

    Used for ResNet-18, one model at a time. ``lr`` is the one-cycle maximum. The model's data
    order and augmentation come from ``torch.Generator().manual_seed(seed)``. BatchNorm running
    statistics are part of the stored rows (``names``).

    Returns:
        checkpoints ``[1, epochs + 1, params]`` and metrics ``[1, epochs + 1]``.
    """
    dev = torch.device(device)
    model = model.to(dev)
    generator = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    n = train.x.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    sched = None
    if onecycle:
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=max(1, epochs * steps_per_epoch)
        )
    state = model.state_dict()
    params = sum(state[k].numel() for k in names)
    weights = np.zeros((1, epochs + 1, params), dtype=np.float32)
    metrics = {m: np.full((1, epochs + 1), np.nan, dtype=np.float32) for m in METRICS}

    @torch.no_grad()
    def checkpoint(epoch: int) -> None:
        model.eval()
        sd = model.state_dict()
        weights[0, epoch] = torch.cat([sd[k].reshape(-1).float() for k in names]).cpu().numpy()
        for split_name, split in (("train", train), ("val", val), ("test", test)):
            if split is None:
                continue
            total, correct = 0.0, 0.0
            for start in range(0, split.x.shape[0], 500):
                out = model(split.x[start : start + 500])
                yb = split.y[start : start + 500]
                total += F.cross_entropy(out, yb, reduction="sum").item()
                correct += (out.argmax(1) == yb).sum().item()
            metrics[f"{split_name}_loss"][0, epoch] = total / split.x.shape[0]
            metrics[f"{split_name}_acc"][0, epoch] = correct / split.x.shape[0]
        metrics["ggap"][0, epoch] = metrics["train_acc"][0, epoch] - metrics["test_acc"][0, epoch]

    checkpoint(0)
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n, generator=generator).to(dev)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            xb = train.x[idx]
            if augment:
                xb = _augment(xb.cpu(), generator).to(dev)
            loss = F.cross_entropy(model(xb), train.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
        checkpoint(epoch)
        if progress is not None:
            progress(steps_per_epoch)
    return TrainResult(weights=weights, metrics=metrics, path="single")
