"""The population toolkit: many models of one architecture trained as one.

Every family trains through this module. A population is a set of models whose parameters are
stacked into tensors with a leading model axis ``[M, ...]``; the family supplies only what is
its own (a :class:`TrainingTask`: the batched forward with its loss, and the per-chunk sums
behind its metrics), and this module does the rest:

- :class:`PopulationOptimizer`: Adam, AdamW or SGD (with momentum) over the stacks, with the
  learning rate, weight decay and momentum given per model as ``[M]`` tensors, so that ``M``
  models with different hyperparameters are exactly ``M`` independent optimizers (the update is
  elementwise; each model's slice sees only its own rates);
- :class:`Schedule`: constant, cosine or one-cycle learning rates, computed per model from its
  own base rate;
- :class:`DataOrder`: each model's own shuffling of its training set, from its own seed;
- :func:`evaluate`: per-model metrics over a whole data set, in chunks;
- :func:`train`: the loop, with checkpoints, per-model thresholds, and *compaction*: a model
  that passes its threshold is dropped from the stacks (parameters, optimizer state, rates,
  data order all shrink) and its final weights are kept, so it costs nothing afterwards; a
  model still far from its threshold at a given epoch can *give up* the same way, so that its
  caller restarts it from a new initialisation; models can form *groups* (several
  initialisations of one model trained side by side), whose other members stop as soon as one
  passes;
- :class:`PopulationResult`: initial, per-checkpoint and final weights, metrics, histories,
  passed flags and epochs trained.

Inside a block that :mod:`weightzoo.generate.runner` trains, :func:`train` also saves its state
at epoch boundaries and resumes from it (:mod:`weightzoo.generate.resume`), and a call with a
``progress`` callback reports the steps done within each epoch to the runner's bar
(:func:`weightzoo.generate.progress.epoch_steps`); the families do nothing for either.

The loss of a step is the sum of the per-model mean losses, so each model's gradient is its
own. Same inputs give the same bytes on the same device.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from weightzoo.blocks import ModelRecord
from weightzoo.generate import resume
from weightzoo.generate.base import ModelPlan
from weightzoo.generate.progress import epoch_steps

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")


def seeded_models(build: Callable[[], nn.Module], seeds: Iterable[int]) -> list[nn.Module]:
    """One freshly built module per seed, each initialised under ``torch.manual_seed(seed)``.

    The global random state is left as it was (each build runs in a forked RNG), so a model's
    initial weights depend on its own seed only, never on the models built before it.
    """
    models = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            models.append(build())
    return models


def _per_model(value: float | Sequence[float] | Tensor, count: int, device, name: str) -> Tensor:
    """A float64 ``[M]`` tensor from a scalar or one value per model."""
    tensor = torch.as_tensor(value, dtype=torch.float64, device=device)
    if tensor.dim() == 0:
        return tensor.expand(count).clone()
    if tensor.shape != (count,):
        raise ValueError(f"{name} needs one value per model ({count}), got {tuple(tensor.shape)}")
    return tensor.clone()


def _lead(rate: Tensor, like: Tensor) -> Tensor:
    """``rate [M]`` shaped to broadcast along ``like``'s leading model axis, in its dtype."""
    return rate.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def _leads(rate: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """:func:`_lead` for every tensor of ``like``, converted once per dtype and rank.

    Small models are bound by the count of tensor operations: one conversion per stacked
    tensor would be most of an optimizer step.
    """
    shaped: dict[tuple[torch.dtype, int], Tensor] = {}
    out = []
    for tensor in like:
        key = (tensor.dtype, tensor.dim())
        if key not in shaped:
            shaped[key] = _lead(rate, tensor)
        out.append(shaped[key])
    return out


# --------------------------------------------------------------------------------- population
class Population:
    """Stacked parameters and per-model state of ``M`` models of one architecture.

    Args:
        params: trained tensors ``{name: [M, ...]}``; copied into new leaves with gradients.
        buffers: per-model tensors that are not trained ``{name: [M, ...]}`` (BatchNorm
            running statistics, dropout rates, the index of a model's data set, ...).
        device: where the stacks live.
    """

    def __init__(
        self,
        params: Mapping[str, Tensor],
        buffers: Mapping[str, Tensor] | None = None,
        *,
        device: str | torch.device = "cpu",
    ) -> None:
        if not params:
            raise ValueError("a population needs at least one parameter tensor")
        self.device = torch.device(device)
        self.params = {
            k: v.detach().to(self.device).clone().requires_grad_(True) for k, v in params.items()
        }
        self.buffers = {k: v.detach().to(self.device).clone() for k, v in (buffers or {}).items()}
        sizes = {v.shape[0] for v in (*self.params.values(), *self.buffers.values())}
        if len(sizes) != 1:
            raise ValueError(f"stacked tensors disagree on the number of models: {sorted(sizes)}")
        self.ids = torch.arange(sizes.pop(), device=self.device)

    @classmethod
    def from_modules(
        cls, models: Sequence[nn.Module], *, device: str | torch.device = "cpu"
    ) -> Population:
        """Stack initialised modules (same architecture); the modules are not modified."""
        if not models:
            raise ValueError("a population needs at least one model")
        params, buffers = torch.func.stack_module_state(list(models))
        return cls(params, buffers, device=device)

    @property
    def size(self) -> int:
        """Models in the population now (after any compaction)."""
        return len(self.ids)

    def keep(self, index: Tensor) -> None:
        """Compaction: keep only models ``index`` (positions in the current stacks), in order."""
        self.params = {k: v.detach()[index].requires_grad_(True) for k, v in self.params.items()}
        self.buffers = {k: v[index] for k, v in self.buffers.items()}
        self.ids = self.ids[index]

    def select(self, index: Tensor) -> Population:
        """Models ``index`` as a new population without gradients (to measure them alone)."""
        sub = Population.__new__(Population)
        sub.device = self.device
        sub.params = {k: v.detach()[index] for k, v in self.params.items()}
        sub.buffers = {k: v[index] for k, v in self.buffers.items()}
        sub.ids = self.ids[index]
        return sub

    def flat(self, names: Sequence[str]) -> Tensor:
        """Rows ``[M, P]``: the tensors ``names`` (parameters or buffers) flattened in order."""
        tensors = {**self.params, **self.buffers}
        return torch.cat([tensors[n].detach().reshape(self.size, -1).float() for n in names], dim=1)

    def zero_grad(self) -> None:
        """Drop the gradients."""
        for param in self.params.values():
            param.grad = None

    def state_dict(self) -> dict[str, Any]:
        """The stacks and ids, on the CPU (a block's resume state)."""
        return {
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            "buffers": {k: v.cpu() for k, v in self.buffers.items()},
            "ids": self.ids.cpu(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take the stacks and ids of :meth:`state_dict` (the same tensors, maybe fewer models).

        Raises:
            ValueError: for other tensor names, shapes or dtypes.
        """
        ids = state["ids"]
        _check_stacks(state["params"], self.params, len(ids))
        _check_stacks(state["buffers"], self.buffers, len(ids))
        self.params = {
            k: state["params"][k].to(self.device).requires_grad_(True) for k in self.params
        }
        self.buffers = {k: state["buffers"][k].to(self.device) for k in self.buffers}
        self.ids = ids.to(self.device)


def _check_stacks(saved: Mapping[str, Tensor], like: Mapping[str, Tensor], models: int) -> None:
    """Refuse saved stacks that are not ``like``'s tensors for ``models`` models."""
    if list(saved) != list(like):
        raise ValueError(f"tensors {list(saved)} saved, {list(like)} expected")
    for name, tensor in saved.items():
        want = (models, *like[name].shape[1:])
        if tensor.dtype != like[name].dtype or tuple(tensor.shape) != want:
            raise ValueError(f"{name}: {tensor.dtype} {tuple(tensor.shape)} saved, {want} expected")


# ---------------------------------------------------------------------------------- optimizer
class PopulationOptimizer:
    """Adam, AdamW or SGD(+momentum) over stacked parameters, with rates per model.

    The update rules are PyTorch's (``torch.optim.Adam``: L2 weight decay added to the
    gradient; ``AdamW``: decoupled decay ``p -= lr * wd * p``; ``SGD``: L2 decay, momentum
    buffer started at the first gradient, no dampening, no Nesterov), with ``lr``,
    ``weight_decay`` and ``momentum`` given per model and broadcast along each parameter's
    leading model axis. Elementwise operations run as ``torch._foreach`` calls over all stacks.

    Args:
        kind: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        lr: learning rate, one per model ``[M]`` (or one for all).
        weight_decay: weight decay per model.
        momentum: SGD momentum per model (0 is plain SGD).
        betas: Adam betas (shared).
        eps: Adam epsilon.
        count: number of models (needed when every rate is a scalar).
        device: where the rate tensors live.

    Raises:
        ValueError: for an unknown optimizer or rates of the wrong length.
    """

    def __init__(
        self,
        kind: str,
        lr: float | Sequence[float] | Tensor,
        weight_decay: float | Sequence[float] | Tensor = 0.0,
        momentum: float | Sequence[float] | Tensor = 0.0,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        count: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if kind not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {kind!r}; known: {', '.join(OPTIMIZERS)}")
        if count is None:
            count = len(torch.as_tensor(lr).reshape(-1))
        self.kind = kind
        self.base_lr = _per_model(lr, count, device, "lr")
        self.lr = self.base_lr.clone()
        self.weight_decay = _per_model(weight_decay, count, device, "weight_decay")
        self.momentum = _per_model(momentum, count, device, "momentum")
        # known once here (one device sync), not per step; they stay true after compaction,
        # and a zero rate on those paths gives the same update as skipping them
        self._decay = bool((self.weight_decay != 0).any())
        self._uses_momentum = bool((self.momentum != 0).any())
        self.betas = betas
        self.eps = eps
        self.steps = 0
        self.state: dict[str, dict[str, Tensor]] = {}

    _RATES = ("base_lr", "lr", "weight_decay", "momentum")

    def state_dict(self) -> dict[str, Any]:
        """Rates, step count and moments, on the CPU (a block's resume state)."""
        return {
            "rates": {name: getattr(self, name).cpu() for name in self._RATES},
            "steps": self.steps,
            "flags": [self._decay, self._uses_momentum],
            "state": {n: {k: v.cpu() for k, v in s.items()} for n, s in self.state.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take the rates, step count and moments of :meth:`state_dict`."""
        device = self.base_lr.device
        for name in self._RATES:
            setattr(self, name, state["rates"][name].to(device))
        self.steps = int(state["steps"])
        self._decay, self._uses_momentum = (bool(flag) for flag in state["flags"])
        self.state = {n: {k: v.to(device) for k, v in s.items()} for n, s in state["state"].items()}

    def set_momentum(self, momentum: Tensor) -> None:
        """Set the SGD momentum ``[M]`` (a schedule's), e.g. cycled by ``"onecycle"``."""
        self.momentum = momentum
        self._uses_momentum = True

    def keep(self, index: Tensor) -> None:
        """Compaction: keep only models ``index`` (rates and optimizer state)."""
        for name in ("base_lr", "lr", "weight_decay", "momentum"):
            setattr(self, name, getattr(self, name)[index])
        for state in self.state.values():
            for key in state:
                state[key] = state[key][index]

    @torch.no_grad()
    def step(self, params: Mapping[str, Tensor]) -> None:
        """One update of every tensor of ``params`` that has a gradient."""
        names = [n for n, p in params.items() if p.grad is not None]
        if not names:
            return
        self.steps += 1
        ps = [params[n] for n in names]
        grads = [params[n].grad for n in names]
        decay = self._decay
        if decay and self.kind != "adamw":
            grads = torch._foreach_add(grads, torch._foreach_mul(ps, self._rates("wd", ps)))
        if self.kind == "sgd":
            self._sgd(names, ps, grads)
            return
        if decay and self.kind == "adamw":  # decoupled: p *= 1 - lr * wd
            torch._foreach_mul_(ps, _leads(1 - self.lr * self.weight_decay, ps))
        beta1, beta2 = self.betas
        for name, p in zip(names, ps, strict=True):
            if name not in self.state:
                self.state[name] = {"m": torch.zeros_like(p), "v": torch.zeros_like(p)}
        ms = [self.state[n]["m"] for n in names]
        vs = [self.state[n]["v"] for n in names]
        torch._foreach_lerp_(ms, grads, 1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
        bias1 = 1 - beta1**self.steps
        bias2_sqrt = math.sqrt(1 - beta2**self.steps)
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, bias2_sqrt)
        torch._foreach_add_(denom, self.eps)
        update = torch._foreach_div(ms, denom)
        torch._foreach_mul_(update, _leads(-self.lr / bias1, ps))
        torch._foreach_add_(ps, update)

    def _rates(self, which: str, like: Sequence[Tensor]) -> list[Tensor]:
        rate = {"wd": self.weight_decay, "lr": self.lr, "momentum": self.momentum}[which]
        return _leads(rate, like)

    def _sgd(self, names: list[str], ps: list[Tensor], grads: list[Tensor]) -> None:
        if self._uses_momentum:
            if names[0] not in self.state:
                for name, g in zip(names, grads, strict=True):
                    self.state[name] = {"buf": g.clone()}
            else:
                bufs = [self.state[n]["buf"] for n in names]
                torch._foreach_mul_(bufs, self._rates("momentum", bufs))
                torch._foreach_add_(bufs, grads)
            grads = [self.state[n]["buf"] for n in names]
        torch._foreach_add_(ps, torch._foreach_mul(grads, _leads(-self.lr, ps)))


# ----------------------------------------------------------------------------------- schedule
@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule, computed per model from its own base rate.

    - ``"constant"``: the base rate.
    - ``"cosine"``: per epoch, half a cosine from the base rate to ``base * min_lr_ratio`` over
      ``epochs`` epochs (epoch ``e`` is at ``e / (epochs - 1)``).
    - ``"onecycle"``: per step, PyTorch's ``OneCycleLR`` (two phases, cosine annealing):
      the base rate is the maximum, it starts at ``max / div_factor``, peaks after
      ``pct_start`` of the steps and ends at ``start / final_div_factor``; SGD momentum cycles
      the other way between ``max_momentum`` and ``base_momentum``.

    Attributes:
        kind: one of :data:`SCHEDULES`.
        epochs: epochs of the whole run.
        steps_per_epoch: optimizer steps per epoch (``"onecycle"``).
        min_lr_ratio: final rate of ``"cosine"``, relative to the base rate.
        pct_start, div_factor, final_div_factor, base_momentum, max_momentum: ``"onecycle"``.
    """

    kind: str = "constant"
    epochs: int = 1
    steps_per_epoch: int = 1
    min_lr_ratio: float = 0.1
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    base_momentum: float = 0.85
    max_momentum: float = 0.95

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {self.kind!r}")

    def _onecycle_phase(self, step: int) -> tuple[float, int]:
        """(fraction of the current phase done, phase 0 or 1) at optimizer step ``step``."""
        total = max(1, self.epochs * self.steps_per_epoch)
        end_warm = float(self.pct_start * total) - 1
        if step <= end_warm and end_warm > 0:
            return step / end_warm, 0
        return (step - end_warm) / ((total - 1) - end_warm), 1

    def lr(self, base: Tensor, epoch: int, step: int) -> Tensor:
        """Learning rates ``[M]`` at ``epoch`` (0-based) and global optimizer ``step``."""
        if self.kind == "constant":
            return base
        if self.kind == "cosine":
            if self.epochs <= 1:
                return base
            low = base * self.min_lr_ratio
            return low + 0.5 * (base - low) * (1 + math.cos(math.pi * epoch / (self.epochs - 1)))
        pct, phase = self._onecycle_phase(step)
        start = base / self.div_factor
        ends = (start, base) if phase == 0 else (base, start / self.final_div_factor)
        return _cos_anneal(ends[0], ends[1], pct)

    def momentum(self, base: Tensor, step: int) -> Tensor:
        """SGD momentum ``[M]`` at ``step``: cycled under ``"onecycle"``, else ``base``."""
        if self.kind != "onecycle":
            return base
        pct, phase = self._onecycle_phase(step)
        ends = (self.max_momentum, self.base_momentum)
        value = _cos_anneal(*(ends if phase == 0 else ends[::-1]), pct)
        return torch.full_like(base, value)


def _cos_anneal(start, end, pct: float):
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


# --------------------------------------------------------------------------------- data order
class DataOrder:
    """Each model's own shuffling of a training set of ``size`` items, one per epoch.

    Args:
        seeds: per-model seeds.
        size: items in the training set.
        kind: ``"torch"`` (``torch.randperm`` from ``torch.Generator().manual_seed(seed)``) or
            ``"numpy"`` (``np.random.default_rng([seed, salt]).permutation``).
        salt: second word of the numpy seed.
    """

    def __init__(self, seeds: Sequence[int], size: int, *, kind: str = "torch", salt: int = 7):
        if kind not in ("torch", "numpy"):
            raise ValueError(f"data order kind must be 'torch' or 'numpy', got {kind!r}")
        self.size = int(size)
        self.kind = kind
        if kind == "torch":
            self.generators: list = [torch.Generator().manual_seed(int(s)) for s in seeds]
        else:
            self.generators = [np.random.default_rng([int(s), salt]) for s in seeds]

    def epoch(self, device: str | torch.device) -> Tensor:
        """The next epoch's orders ``[M, size]`` (long), one permutation per model."""
        if self.kind == "torch":
            rows = torch.stack([torch.randperm(self.size, generator=g) for g in self.generators])
        else:
            rows = torch.as_tensor(np.stack([g.permutation(self.size) for g in self.generators]))
        return rows.to(device=device, dtype=torch.long)

    def keep(self, index: Sequence[int]) -> None:
        """Compaction: keep only the generators of models ``index``."""
        self.generators = [self.generators[int(i)] for i in index]

    def state_dict(self) -> list[Any]:
        """Each generator's state (a byte tensor, or numpy's state dict)."""
        if self.kind == "torch":
            return [g.get_state() for g in self.generators]
        return [g.bit_generator.state for g in self.generators]

    def load_state_dict(self, states: Sequence[Any]) -> None:
        """Generators in the states of :meth:`state_dict` (one per model still training)."""
        generators: list = []
        for state in states:
            if self.kind == "torch":
                generator = torch.Generator()
                generator.set_state(state)
            else:
                generator = np.random.Generator(np.random.PCG64())
                generator.bit_generator.state = state
            generators.append(generator)
        self.generators = generators


@torch.no_grad()
def clip_per_model_(params: Iterable[Tensor], max_norm: float) -> Tensor:
    """Scale each model's gradient down to L2 norm ``max_norm`` (in place); returns the norms.

    The norm of model ``m`` is taken over slice ``m`` of every stacked tensor's gradient, so a
    population clips exactly as ``clip_grad_norm_`` would on each model alone.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    squares = sum((g.reshape(g.shape[0], -1).double() ** 2).sum(dim=1) for g in grads)
    norms = squares.sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, _leads(scale, grads))
    return norms


# ----------------------------------------------------------------------------------- the task
class TrainingTask(Protocol):
    """What a family supplies to train and measure a population.

    A task may also define ``begin_epoch(epoch)``: :func:`train` calls it before each epoch's
    first step (0-based), e.g. for a curriculum. A task that keeps state from one epoch to the
    next that ``begin_epoch`` does not set again (its own random generator, a running
    statistic) defines ``state_dict()`` (tensors, numbers, strings, lists and dicts of them)
    and ``load_state_dict(state)``, so that a resumed block (:mod:`weightzoo.generate.resume`)
    continues it exactly.

    Attributes:
        train_size: items in each model's training set.
        splits: ``{split name: items}`` of every data set metrics are measured on.
    """

    train_size: int
    splits: Mapping[str, int]

    def train_loss(self, pop: Population, rows: Tensor, order: DataOrder) -> Tensor:
        """Per-model mean training loss ``[M]`` (with gradients) on items ``rows [M, B]``.

        ``order`` holds the models' generators, for families that draw augmentations.
        """
        ...

    def eval_sums(
        self, pop: Population, split: str, start: int, stop: int
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """``{metric: (sum [M], count [M])}`` over items ``start:stop`` of ``split``."""
        ...

    def eval_chunk(self, split: str, models: int) -> int:
        """Items per evaluation pass for a population of ``models``."""
        ...


@torch.no_grad()
def evaluate(task: TrainingTask, pop: Population, splits: Sequence[str]) -> dict[str, Tensor]:
    """Per-model metrics ``{"<split>_<metric>": [M]}``: sums over a whole split / counts.

    Sums accumulate in float64 over chunks of :meth:`TrainingTask.eval_chunk` items.
    """
    out: dict[str, Tensor] = {}
    for split in splits:
        size = task.splits[split]
        chunk = max(1, task.eval_chunk(split, pop.size))
        sums: dict[str, list[Tensor]] = {}
        for start in range(0, size, chunk):
            part = task.eval_sums(pop, split, start, min(start + chunk, size))
            for metric, (total, count) in part.items():
                if metric not in sums:
                    sums[metric] = [torch.zeros(pop.size, dtype=torch.float64, device=pop.device)]
                    sums[metric].append(torch.zeros_like(sums[metric][0]))
                sums[metric][0] += total.double()
                sums[metric][1] += torch.as_tensor(count, device=pop.device).double()
        for metric, (total, count) in sums.items():
            out[f"{split}_{metric}"] = (total / count.clamp(min=1)).float()
    return out


# ------------------------------------------------------------------------------------ results
@dataclass
class PopulationResult:
    """What :func:`train` produced, one row per model in the order given (numpy, CPU).

    Attributes:
        checkpoints: the checkpoint epochs (0 = initialisation).
        weights: float32 ``[M, checkpoints, P]`` rows (tensors ``names`` flattened); a model
            that stopped before a checkpoint holds its final weights there.
        metrics: ``{name: float32 [M, checkpoints]}`` on the checkpoint splits (a stopped
            model: its final values).
        final: float32 ``[M, P]``: weights when the model passed, or after the last epoch.
        final_metrics: ``{name: float32 [M]}`` of ``final``.
        history: ``{name: float32 [M, epochs]}``: the mean training loss of each epoch and the
            watched metric after it; NaN after a model stopped.
        passed: whether the watched metric fell below the model's threshold.
        epochs: epochs each model trained.
    """

    checkpoints: list[int]
    weights: np.ndarray
    metrics: dict[str, np.ndarray]
    final: np.ndarray
    final_metrics: dict[str, np.ndarray]
    history: dict[str, np.ndarray] = field(default_factory=dict)
    passed: np.ndarray | None = None
    epochs: np.ndarray | None = None

    @property
    def initial(self) -> np.ndarray:
        """Rows at initialisation ``[M, P]`` (when checkpoint 0 is stored)."""
        return self.weights[:, self.checkpoints.index(0)]


def plan_records(
    plans: Sequence[ModelPlan],
    weights: np.ndarray,
    metrics: Mapping[str, np.ndarray],
    device: str | torch.device,
    names: Sequence[str] | None = None,
) -> list[ModelRecord]:
    """One record per plan, in order: row ``i`` of the weights and metrics for ``plans[i]``.

    Each record's columns hold the ``device`` alone; a family adds its own columns to them.

    Args:
        plans: the trained models, in the order of the rows.
        weights: ``[M, checkpoints, P]`` (a :class:`PopulationResult`'s).
        metrics: ``{name: [M, checkpoints]}``.
        device: where the models trained.
        names: the metrics to store (``None``: all of ``metrics``).
    """
    stored = list(metrics) if names is None else names
    return [
        ModelRecord(
            model_id=plan.model_id,
            weights=weights[i],
            metrics={m: metrics[m][i] for m in stored},
            columns={"device": str(device)},
        )
        for i, plan in enumerate(plans)
    ]


def step_progress(progress: Callable[[int], None] | None) -> Callable[[int, int], None] | None:
    """:func:`train`'s ``progress`` for a callback that counts optimizer steps alone."""
    return None if progress is None else (lambda steps, _left: progress(steps))


def train_plans(
    task: TrainingTask,
    pop: Population,
    plans: Sequence[ModelPlan],
    names: Sequence[str],
    config: TrainConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> PopulationResult:
    """:func:`train` of the models of ``plans``, each shuffling its data by its plan's seed.

    Args:
        task: the family's forward, loss and metrics.
        pop: the plans' initialised models, in plan order.
        plans: the models.
        names: tensors of a stored row, in layout order.
        config: optimizer, rates, epochs, checkpoints, thresholds.
        progress: as :func:`train`'s.
    """
    return train(task, pop, [plan.seed for plan in plans], names, config, progress=progress)


@dataclass(frozen=True)
class TrainConfig:
    """How a population is trained (what is shared; per-model values are sequences).

    Attributes:
        optimizer: one of :data:`OPTIMIZERS`.
        lr / weight_decay / momentum: per model (or one for all).
        epochs: the most epochs a model trains.
        batch_size: items per step and model (capped at the training set).
        schedule: the learning-rate schedule (its ``epochs`` and ``steps_per_epoch`` are
            filled in by :func:`train`).
        checkpoints: epochs at which rows and metrics are stored (0 = before training).
        checkpoint_splits: the splits measured at every checkpoint.
        watch: a metric (``"<split>_<metric>"``), or several, measured after every epoch; a
            model passes when it (the largest of them) falls below its threshold. None: no
            thresholds.
        threshold: per-model thresholds of ``watch``.
        compact: drop passed models from the stacks (True), or keep them in, frozen.
        betas / eps: Adam's.
        order: ``"torch"`` or ``"numpy"`` data order (:class:`DataOrder`).
        clip_norm: if set, each model's gradient (all its tensors together) is scaled down to
            this L2 norm when larger, as ``torch.nn.utils.clip_grad_norm_`` per model.
        noise_seed: seed of the device's global generator while training (dropout masks).
        give_up: ``(epoch, level)``: after that epoch, a model whose ``give_up_watch`` metric
            is not below ``level`` stops there, not passed (and leaves the stacks under
            ``compact``), so that a caller can restart it from a new initialisation sooner.
        give_up_watch: the metric ``give_up`` reads (None: the largest of ``watch``).
        groups: per-model group labels (None: every model alone). Once a model passes (and
            ``ends_group`` accepts it), the other members of its group still training stop
            too, not passed (and leave the stacks under ``compact``): attempts at one model
            trained side by side, of which the first to pass is kept. Members passing at the
            same epoch all pass.
        ends_group: given the final metrics of models that just passed (every split, as in
            :attr:`PopulationResult.final_metrics`, one value per model), which of them end
            their group (None: all); e.g. a caller that judges a model on splits it does not
            watch keeps the other attempts going when a passed model fails that judgement.
    """

    optimizer: str = "adam"
    lr: float | Sequence[float] = 1e-3
    weight_decay: float | Sequence[float] = 0.0
    momentum: float | Sequence[float] = 0.0
    epochs: int = 1
    batch_size: int = 32
    schedule: Schedule = field(default_factory=Schedule)
    checkpoints: Sequence[int] = (0,)
    checkpoint_splits: Sequence[str] = ()
    watch: str | Sequence[str] | None = None
    threshold: float | Sequence[float] = -math.inf
    compact: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    order: str = "torch"
    clip_norm: float | None = None
    noise_seed: int | None = None
    give_up: tuple[int, float] | None = None
    give_up_watch: str | None = None
    groups: Sequence[int] | None = None
    ends_group: Callable[[Mapping[str, np.ndarray]], np.ndarray] | None = None

    @classmethod
    def from_spec(cls, spec: Any, **fields: Any) -> TrainConfig:
        """A spec's ``optimizer``, ``lr``, ``weight_decay``, ``epochs`` and ``batch_size``.

        Args:
            spec: a zoo spec with those fields (one that ``fields`` gives is not read).
            **fields: the other fields, and those where the population differs from the spec.
        """
        common = ("optimizer", "lr", "weight_decay", "epochs", "batch_size")
        return cls(**{name: getattr(spec, name) for name in common if name not in fields}, **fields)


def train(
    task: TrainingTask,
    pop: Population,
    seeds: Sequence[int],
    names: Sequence[str],
    config: TrainConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
    on_stop: Callable[[np.ndarray, bool], None] | None = None,
) -> PopulationResult:
    """Train a population; see the module docs.

    Args:
        task: the family's forward, loss and metrics.
        pop: the initialised population (trained in place; compaction shrinks it).
        seeds: per-model seeds of the data order.
        names: tensors of a stored row, in layout order (parameters, then stored buffers).
        config: optimizer, rates, epochs, checkpoints, thresholds.
        progress: called after every epoch with (optimizer steps taken, models still training).
            Where it is given and the runner listens, the steps done within each epoch are
            reported to the runner's bar too (see :mod:`weightzoo.generate.progress`).
        on_stop: called when models pass (at any epoch, the last included), give up (see
            ``give_up``) or stop with a passed member of their group (see ``groups``), with
            their indices in the order given and whether they passed; not for models that run
            out of epochs.

    Within a block trained by :mod:`weightzoo.generate.runner`, the call is the next of the
    block's resume session (:mod:`weightzoo.generate.resume`): its state is saved at epoch
    boundaries; a call that finished before the block was interrupted returns its saved
    result (its callbacks are made again, in order, and ``pop`` is left as given), and the
    interrupted one continues from its last saved epoch. The result's arrays are kept for the
    block's state: do not modify them in place.

    Returns:
        A :class:`PopulationResult` in the order of the models given.
    """
    count = pop.size
    if len(seeds) != count:
        raise ValueError(f"{len(seeds)} seeds given for {count} models; give one each")
    callbacks = {"progress": progress, "stop": on_stop}
    # Only a call that reports its epochs reports their steps: the epoch's report completes it.
    within = None if progress is None else epoch_steps()
    call = None
    session = resume.current_session()
    if session is not None:
        call = session.call(_call_check(task, pop, seeds, names, config))
        if call.finished is not None:
            call.replay(callbacks)
            call.finish(None)
            return _result_from_state(call.finished["result"])
        progress = call.recording("progress", progress)
        on_stop = call.recording("stop", on_stop)
    dev = pop.device
    batch = max(1, min(config.batch_size, task.train_size))
    steps_per_epoch = math.ceil(task.train_size / batch)
    schedule = dataclasses.replace(
        config.schedule, epochs=config.epochs, steps_per_epoch=steps_per_epoch
    )
    opt = PopulationOptimizer(
        config.optimizer,
        config.lr,
        config.weight_decay,
        config.momentum,
        betas=config.betas,
        eps=config.eps,
        count=count,
        device=dev,
    )
    threshold = _per_model(config.threshold, count, dev, "threshold")
    groups = None
    if config.groups is not None:
        if len(config.groups) != count:
            raise ValueError(f"{len(config.groups)} group labels given for {count} models")
        groups = torch.as_tensor(list(config.groups), dtype=torch.long, device=dev)
    order = DataOrder(seeds, task.train_size, kind=config.order)
    checkpoints = sorted({int(c) for c in config.checkpoints})
    if any(c < 0 or c > config.epochs for c in checkpoints):
        raise ValueError(f"checkpoints {checkpoints} must lie in 0..{config.epochs}")
    out = _Recorder(count, checkpoints, config.epochs, pop.flat(names).shape[1])

    def measure(splits: Sequence[str]) -> dict[str, np.ndarray]:
        return {k: v.cpu().numpy() for k, v in evaluate(task, pop, splits).items()}

    def stop(local: np.ndarray, epoch: int, known: Mapping[str, np.ndarray]) -> None:
        """Record models ``local`` (positions now) as finished after ``epoch`` epochs."""
        index = torch.as_tensor(local, device=dev, dtype=torch.long)
        ids = pop.ids[index].cpu().numpy()
        rows = pop.flat(names)[index].cpu().numpy()
        missing = [s for s in final_splits if not any(k.startswith(f"{s}_") for k in known)]
        metrics = {k: v[local] for k, v in known.items()}
        if missing:  # measure the finished models alone, on what was not measured yet
            sub = pop.select(index)
            metrics |= {k: v.cpu().numpy() for k, v in evaluate(task, sub, missing).items()}
        out.finish(ids, rows, metrics, epoch)

    final_splits = list(dict.fromkeys([*config.checkpoint_splits, *task.splits]))
    watches = [config.watch] if isinstance(config.watch, str) else list(config.watch or ())
    frozen: dict[str, Tensor] | None = None
    active = torch.ones(count, dtype=torch.bool, device=dev)
    devices = [dev.index or 0] if dev.type == "cuda" else []
    step = 0
    values: dict[str, np.ndarray] = {}

    def snapshot(done: int) -> dict[str, Any]:
        """Everything the rest of the run depends on, after ``done`` epochs (on the CPU)."""
        loop = {
            "epoch": done,
            "step": step,
            "values": {k: torch.from_numpy(np.array(v)) for k, v in values.items()},
            "threshold": threshold.cpu(),
            "active": active.cpu(),
            "groups": None if groups is None else groups.cpu(),
            "frozen": None if frozen is None else {k: v.cpu() for k, v in frozen.items()},
        }
        own = getattr(task, "state_dict", None)
        return {
            "loop": loop,
            "pop": pop.state_dict(),
            "opt": opt.state_dict(),
            "order": order.state_dict(),
            "recorder": out.state_dict(),
            "task": None if own is None else own(),
            "rng": _rng_state(devices),
        }

    start = 0
    with torch.random.fork_rng(devices=devices, device_type=dev.type):
        if config.noise_seed is not None:
            torch.manual_seed(config.noise_seed)
        if call is not None and call.saved is not None:
            start, step, values, threshold, active, groups, frozen = _restore(
                call, task, pop, opt, order, out, devices
            )
            call.replay(callbacks)
        elif 0 in checkpoints:
            out.checkpoint(0, pop.ids, pop.flat(names), measure(config.checkpoint_splits))
        begin_epoch = getattr(task, "begin_epoch", None)
        for epoch in range(start, config.epochs):
            if begin_epoch is not None:
                begin_epoch(epoch)
            opt.lr = schedule.lr(opt.base_lr, epoch, step)
            rows_of_epoch = order.epoch(dev)
            epoch_loss = torch.zeros(pop.size, dtype=torch.float64, device=dev)
            if within is not None:
                within.begin(int(active.sum()), steps_per_epoch)
            for s in range(steps_per_epoch):
                if schedule.kind == "onecycle":
                    opt.lr = schedule.lr(opt.base_lr, epoch, step)
                    opt.set_momentum(schedule.momentum(opt.momentum, step))
                rows = rows_of_epoch[:, s * batch : (s + 1) * batch]
                loss = task.train_loss(pop, rows, order)
                (loss if frozen is None else loss * active).sum().backward()
                if config.clip_norm is not None:
                    clip_per_model_(pop.params.values(), config.clip_norm)
                opt.step(pop.params)
                pop.zero_grad()
                if frozen is not None:  # Adam's momentum would still move frozen models
                    with torch.no_grad():
                        for name, tensor in pop.params.items():
                            keep = _lead(active.double(), tensor).bool()
                            tensor.copy_(torch.where(keep, tensor, frozen[name]))
                epoch_loss += loss.detach().double()
                step += 1
                if within is not None:
                    within.step(s + 1)
            done = epoch + 1
            values = measure(config.checkpoint_splits) if done in checkpoints else {}
            needed = [*watches, *([config.give_up_watch] if config.give_up_watch else [])]
            unmeasured = [w.rsplit("_", 1)[0] for w in needed if w not in values]
            if unmeasured:
                values |= measure(list(dict.fromkeys(unmeasured)))
            live = active.cpu().numpy()
            history = {"train_loss": (epoch_loss / steps_per_epoch).cpu().numpy()}
            for name in watches:
                history[name] = values[name]
            out.epoch(pop.ids.cpu().numpy()[live], epoch, {k: v[live] for k, v in history.items()})
            if done in checkpoints:
                rows = pop.flat(names)
                out.checkpoint(
                    done, pop.ids[active], rows[active], {k: v[live] for k, v in values.items()}
                )
            for passing in (True, False) if watches else ():
                if passing:
                    read = watches
                elif config.give_up is not None and done == config.give_up[0]:
                    read = [config.give_up_watch] if config.give_up_watch else watches
                else:
                    continue
                worst = torch.as_tensor(np.max([values[name] for name in read], axis=0), device=dev)
                if passing:
                    newly = active & (worst < threshold.to(worst.dtype))
                else:
                    newly = active & ~(worst < config.give_up[1])  # NaN gives up too
                if not bool(newly.any()):
                    continue
                ids = pop.ids[newly].cpu().numpy()
                stop(np.flatnonzero(newly.cpu().numpy()), done, values)
                # a passed model's group members stop with it (not passed)
                siblings = torch.zeros_like(newly)
                if passing and groups is not None:
                    ends = newly.clone()
                    if config.ends_group is not None:
                        final = {k: v[ids] for k, v in out.final_metrics.items()}
                        accepted = np.asarray(config.ends_group(final), dtype=bool)
                        ends[newly] = torch.as_tensor(accepted, device=dev)
                    siblings = active & ~newly & torch.isin(groups, groups[ends])
                    if bool(siblings.any()):
                        stop(np.flatnonzero(siblings.cpu().numpy()), done, values)
                retiring = newly | siblings
                out.passed[ids] = passing
                if on_stop is not None:
                    on_stop(ids, passing)
                    if bool(siblings.any()):
                        on_stop(pop.ids[siblings].cpu().numpy(), False)
                active &= ~retiring
                if config.compact:
                    keep = torch.nonzero(active).flatten()
                    pop.keep(keep)
                    opt.keep(keep)
                    order.keep(keep.cpu().tolist())
                    threshold, active = threshold[keep], active[keep]
                    groups = None if groups is None else groups[keep]
                    kept = keep.cpu().numpy()
                    values = {k: v[kept] for k, v in values.items()}
                elif frozen is None:
                    frozen = {k: v.detach().clone() for k, v in pop.params.items()}
                if frozen is not None:
                    with torch.no_grad():
                        for name, tensor in pop.params.items():
                            frozen[name][retiring] = tensor.detach()[retiring]
            if progress is not None:
                progress(steps_per_epoch, int(active.sum()))
            if not bool(active.any()):
                break
            if call is not None and done < config.epochs:
                call.epoch_done(functools.partial(snapshot, done))
        rest = np.flatnonzero(active.cpu().numpy())
        if len(rest):
            stop(rest, config.epochs, values)
    result = out.result()
    if call is not None:
        call.finish(_result_state(result))
    return result


def _call_check(
    task: TrainingTask,
    pop: Population,
    seeds: Sequence[int],
    names: Sequence[str],
    config: TrainConfig,
) -> dict[str, Any]:
    """What tells one :func:`train` call from another in a block's saved state."""
    settings = {}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if not callable(value):  # a function's repr names its address, which changes
            settings[item.name] = repr(value.tolist() if hasattr(value, "tolist") else value)
    return {
        "task": type(task).__qualname__,
        "device": pop.device.type,
        "models": pop.size,
        "seeds": [int(seed) for seed in seeds],
        "names": list(names),
        "shapes": {k: list(v.shape) for k, v in {**pop.params, **pop.buffers}.items()},
        "train_size": int(task.train_size),
        "splits": {k: int(v) for k, v in task.splits.items()},
        "config": settings,
    }


def _rng_state(devices: Sequence[int]) -> dict[str, Any]:
    """The random state of torch on the CPU and on ``devices`` (CUDA indices)."""
    return {
        "cpu": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(index) for index in devices],
    }


def _restore(
    call: resume.TrainCall,
    task: TrainingTask,
    pop: Population,
    opt: PopulationOptimizer,
    order: DataOrder,
    out: _Recorder,
    devices: Sequence[int],
) -> tuple[int, int, dict[str, np.ndarray], Tensor, Tensor, Tensor | None, dict | None]:
    """Put the interrupted call's saved state back; the loop's own variables are returned.

    Returns:
        (epochs done, optimizer steps, last measured values, thresholds, active mask, group
        labels, frozen weights).

    Raises:
        UnreadableFileError: for a state that does not fit the call (naming its file).
    """
    state = call.saved["state"] if call.saved is not None else {}
    dev = pop.device
    try:
        loop = state["loop"]
        pop.load_state_dict(state["pop"])
        opt.load_state_dict(state["opt"])
        order.load_state_dict(state["order"])
        out.load_state_dict(state["recorder"])
        if state["task"] is not None:
            task.load_state_dict(state["task"])  # type: ignore[attr-defined]
        torch.set_rng_state(state["rng"]["cpu"])
        for index, saved in zip(devices, state["rng"]["cuda"], strict=True):
            torch.cuda.set_rng_state(saved, index)
        frozen = loop["frozen"]
        return (
            int(loop["epoch"]),
            int(loop["step"]),
            {k: v.numpy() for k, v in loop["values"].items()},
            loop["threshold"].to(dev),
            loop["active"].to(dev),
            None if loop["groups"] is None else loop["groups"].to(dev),
            None if frozen is None else {k: v.to(dev) for k, v in frozen.items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise call.corrupt(exc) from exc


# What a result holds per model besides its checkpoints: arrays, and tables of named arrays.
_RESULT_TABLES = ("metrics", "final_metrics", "history")
_RESULT_ARRAYS = ("weights", "final", "passed", "epochs")


def _tensors(source: PopulationResult | _Recorder) -> dict[str, Any]:
    """The arrays and tables of a result (or of one being recorded) as tensors sharing memory."""
    state: dict[str, Any] = {
        name: torch.from_numpy(getattr(source, name)) for name in _RESULT_ARRAYS
    }
    for name in _RESULT_TABLES:
        state[name] = {k: torch.from_numpy(v) for k, v in getattr(source, name).items()}
    return state


def _result_state(result: PopulationResult) -> dict[str, Any]:
    """A result as tensors (sharing the arrays' memory), for a block's saved state."""
    return {"checkpoints": [int(c) for c in result.checkpoints], **_tensors(result)}


def _result_from_state(state: Mapping[str, Any]) -> PopulationResult:
    """The result that :func:`_result_state` saved."""
    tables = {name: {k: v.numpy() for k, v in state[name].items()} for name in _RESULT_TABLES}
    arrays = {name: state[name].numpy() for name in _RESULT_ARRAYS}
    return PopulationResult(checkpoints=list(state["checkpoints"]), **arrays, **tables)


class _Recorder:
    """Collects per-model rows and metrics by original model id."""

    def __init__(self, count: int, checkpoints: list[int], epochs: int, params: int) -> None:
        self.checkpoints = checkpoints
        self.weights = np.full((count, len(checkpoints), params), np.nan, dtype=np.float32)
        self.metrics: dict[str, np.ndarray] = {}
        self.final = np.full((count, params), np.nan, dtype=np.float32)
        self.final_metrics: dict[str, np.ndarray] = {}
        self.history: dict[str, np.ndarray] = {}
        self.passed = np.zeros(count, dtype=bool)
        self.epochs = np.zeros(count, dtype=np.int64)
        self.count, self.max_epochs = count, epochs

    def _table(self, table: dict[str, np.ndarray], name: str, shape: tuple[int, ...]):
        if name not in table:
            table[name] = np.full(shape, np.nan, dtype=np.float32)
        return table[name]

    def checkpoint(self, epoch: int, ids, rows, metrics: Mapping[str, np.ndarray]) -> None:
        ids = torch.as_tensor(ids).cpu().numpy()
        column = self.checkpoints.index(epoch)
        self.weights[ids, column] = torch.as_tensor(rows).cpu().numpy()
        for name, values in metrics.items():
            shape = (self.count, len(self.checkpoints))
            self._table(self.metrics, name, shape)[ids, column] = values

    def epoch(self, ids: np.ndarray, epoch: int, values: Mapping[str, np.ndarray]) -> None:
        for name, value in values.items():
            self._table(self.history, name, (self.count, self.max_epochs))[ids, epoch] = value
        self.epochs[ids] = epoch + 1

    def finish(self, ids: np.ndarray, rows: np.ndarray, metrics, epoch: int) -> None:
        self.final[ids] = rows
        for name, values in metrics.items():
            self._table(self.final_metrics, name, (self.count,))[ids] = values
        # checkpoints after the model stopped hold its final state
        for column, label in enumerate(self.checkpoints):
            if label > epoch:
                self.weights[ids, column] = rows
                for name, table in self.metrics.items():
                    if name in metrics:
                        table[ids, column] = metrics[name]

    def state_dict(self) -> dict[str, Any]:
        """The tables so far, as tensors sharing their memory."""
        return _tensors(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take the tables of :meth:`state_dict`.

        Raises:
            ValueError: for tables of another shape or type.
        """
        for name in _RESULT_ARRAYS:
            mine, saved = getattr(self, name), state[name].numpy()
            if saved.shape != mine.shape or saved.dtype != mine.dtype:
                raise ValueError(f"recorder {name}: {saved.shape} saved, {mine.shape} expected")
            setattr(self, name, saved)
        for name in _RESULT_TABLES:
            setattr(self, name, {k: v.numpy() for k, v in state[name].items()})

    def result(self) -> PopulationResult:
        held = {name: getattr(self, name) for name in (*_RESULT_ARRAYS, *_RESULT_TABLES)}
        return PopulationResult(checkpoints=list(self.checkpoints), **held)
