"""Train a population of MLDS networks at once, each with its own seed and data order.

All networks of a population share the architecture; each has its own data set (its machine's
or automaton's), its own initialisation and its own shuffling. Parameters are stacked
``[M, ...]`` and run by :func:`~weightzoo.generate.mlds.networks.population_forward`. The loss
is the sum of per-network mean squared errors, so gradients stay per network, and Adam (an
elementwise rule) on stacked tensors equals one Adam per network. A network whose validation
loss falls below the threshold after an epoch is frozen: its parameters are kept as they were
at that epoch while the others go on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from weightzoo.generate.mlds.machines import SequenceSet
from weightzoo.generate.mlds.networks import NetConfig, init_population, population_forward


@dataclass(frozen=True)
class TrainSettings:
    """How to train.

    Attributes:
        lr: Adam learning rate.
        batch_size: sequences per step, per network.
        max_epochs: stop a network that has not passed after this many epochs.
        threshold: a network passes when its validation loss is below this.
        eval_chunk: sequences per forward pass when measuring a whole set.
        schedule: ``"constant"`` learning rate, or ``"cosine"``: decayed per epoch from
            ``lr`` to ``lr * min_lr_ratio`` over ``max_epochs`` (half a cosine).
        min_lr_ratio: final learning rate of the cosine schedule, relative to ``lr``.
    """

    lr: float = 1e-3
    batch_size: int = 32
    max_epochs: int = 100
    threshold: float = 1e-5
    eval_chunk: int = 64
    schedule: str = "constant"
    min_lr_ratio: float = 0.1

    def __post_init__(self) -> None:
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch ``epoch`` (0-based)."""
        if self.schedule == "constant" or self.max_epochs <= 1:
            return self.lr
        progress = epoch / (self.max_epochs - 1)
        low = self.lr * self.min_lr_ratio
        return low + 0.5 * (self.lr - low) * (1 + math.cos(math.pi * progress))


class PopulationData:
    """The data sets of the classes (machines or automata) of a population, on one device.

    Args:
        sets: ``{set name: [one SequenceSet per class]}``; must include ``"train"`` and
            ``"val"``; all classes of a set have the same size.
        device: where to keep them (as uint8; converted to float per batch).
    """

    def __init__(self, sets: dict[str, Sequence[SequenceSet]], device: str = "cpu") -> None:
        for required in ("train", "val"):
            if required not in sets:
                raise ValueError(f"population data needs a {required!r} set; got {sorted(sets)}")
        self.sets: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
        for name, parts in sets.items():
            self.sets[name] = tuple(  # type: ignore[assignment]
                torch.from_numpy(np.stack([getattr(p, field) for p in parts])).to(device)
                for field in ("inputs", "outputs", "mask")
            )

    def size(self, name: str) -> int:
        """Sequences per class in set ``name``."""
        return self.sets[name][0].shape[1]

    def gather(self, name: str, classes: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Float inputs, targets and mask of ``rows[m]`` of class ``classes[m]``, per network."""
        inputs, outputs, mask = self.sets[name]
        index = (classes[:, None], rows)
        return inputs[index].float(), outputs[index].float(), mask[index].float()


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-network sum of masked squared errors and the count of terms, each ``[M]``."""
    err = ((pred - target) ** 2).sum(dim=-1) * mask
    return err.sum(dim=(1, 2)), mask.sum(dim=(1, 2)) * pred.shape[-1]


@torch.no_grad()
def evaluate(
    config: NetConfig,
    params: dict[str, Tensor],
    data: PopulationData,
    name: str,
    classes: Tensor,
    chunk: int = 64,
) -> Tensor:
    """Mean squared error of every network on the whole set ``name`` of its class, ``[M]``."""
    total = torch.zeros(len(classes), dtype=torch.float64, device=classes.device)
    terms = torch.zeros_like(total)
    size = data.size(name)
    steps = data.sets[name][0].shape[2]
    # Cap the gate activations of one pass at 2**25 floats (128 MB), e.g. for DS3's LSTMs.
    chunk = max(1, min(chunk, 2**25 // (len(classes) * steps * config.gates * config.hidden)))
    for start in range(0, size, chunk):
        rows = torch.arange(start, min(start + chunk, size), device=classes.device)
        x, y, mask = data.gather(name, classes, rows.expand(len(classes), -1))
        err, count = masked_mse(population_forward(config, params, x), y, mask)
        total += err.double()
        terms += count.double()
    return (total / terms.clamp(min=1)).float()


@dataclass
class PopulationResult:
    """What training a population produced (tensors on the CPU, one row per network).

    Attributes:
        initial: parameters at initialisation ``{name: [M, ...]}``.
        final: parameters when the network passed (frozen) or at the last epoch.
        epochs: epochs each network trained.
        passed: whether its validation loss fell below the threshold.
        train_history: mean training loss of each epoch, ``[M, max_epochs]``, NaN after stop.
        val_history: validation loss after each epoch, same shape.
        initial_losses / final_losses: ``{set name: [M]}`` on every set of the data.
    """

    initial: dict[str, Tensor]
    final: dict[str, Tensor]
    epochs: np.ndarray
    passed: np.ndarray
    train_history: np.ndarray
    val_history: np.ndarray
    initial_losses: dict[str, np.ndarray]
    final_losses: dict[str, np.ndarray]


def train_population(
    config: NetConfig,
    data: PopulationData,
    classes: Sequence[int],
    seeds: Sequence[int],
    settings: TrainSettings,
    *,
    device: str = "cpu",
    progress: bool = False,
    desc: str = "population",
) -> PopulationResult:
    """Train ``len(seeds)`` networks together until each passes or ``max_epochs`` is reached.

    Args:
        config: the networks' shape.
        data: data sets per class (on ``device``).
        classes: index into the data's classes for each network.
        seeds: each network's seed: initialisation (as ``MLDSNet``) and data order.
        settings: learning rate, batch size, epochs, threshold.
        device: torch device.
        progress: show a tqdm bar over epochs.
        desc: label of the bar.

    Returns:
        A :class:`PopulationResult`.
    """
    if len(classes) != len(seeds):
        raise ValueError(f"{len(classes)} classes given for {len(seeds)} seeds; give one each")
    count = len(seeds)
    class_index = torch.as_tensor(list(classes), dtype=torch.long, device=device)
    params = init_population(config, list(seeds), device)
    initial = {k: v.detach().cpu().clone() for k, v in params.items()}
    for tensor in params.values():
        tensor.requires_grad_(True)
    frozen = {k: v.detach().clone() for k, v in params.items()}
    # foreach: one kernel per Adam operation over all stacks instead of one per tensor.
    optimizer = torch.optim.Adam(list(params.values()), lr=settings.lr, foreach=True)
    rngs = [np.random.default_rng([int(seed), 7]) for seed in seeds]

    def losses(current: dict[str, Tensor]) -> dict[str, np.ndarray]:
        return {
            name: evaluate(config, current, data, name, class_index, settings.eval_chunk)
            .cpu()
            .numpy()
            for name in data.sets
        }

    initial_losses = losses(params)
    size = data.size("train")
    batch = min(settings.batch_size, size)
    steps = math.ceil(size / batch)
    active = torch.ones(count, dtype=torch.bool, device=device)
    epochs = np.zeros(count, dtype=np.int64)
    train_history = np.full((count, settings.max_epochs), np.nan, dtype=np.float32)
    val_history = np.full_like(train_history, np.nan)
    bar = tqdm(range(settings.max_epochs), desc=desc, unit="epoch", disable=not progress)
    any_frozen = False
    for epoch in bar:
        for group in optimizer.param_groups:
            group["lr"] = settings.lr_at(epoch)
        order = torch.as_tensor(
            np.stack([rng.permutation(size) for rng in rngs]), dtype=torch.long, device=device
        )
        epoch_loss = torch.zeros(count, dtype=torch.float64, device=device)
        for step in range(steps):
            rows = order[:, step * batch : (step + 1) * batch]
            x, y, mask = data.gather("train", class_index, rows)
            err, terms = masked_mse(population_forward(config, params, x), y, mask)
            per_net = err / terms.clamp(min=1)
            optimizer.zero_grad(set_to_none=True)
            (per_net * active).sum().backward()
            optimizer.step()
            if any_frozen:
                # Adam's momentum would still move frozen networks: put them back.
                with torch.no_grad():
                    for name, tensor in params.items():
                        keep = active.view(-1, *[1] * (tensor.dim() - 1))
                        tensor.copy_(torch.where(keep, tensor, frozen[name]))
            epoch_loss += per_net.detach().double()
        val = evaluate(config, params, data, "val", class_index, settings.eval_chunk)
        was_active = active.cpu().numpy()
        train_history[was_active, epoch] = (epoch_loss / steps).cpu().numpy()[was_active]
        val_history[was_active, epoch] = val.cpu().numpy()[was_active]
        epochs[was_active] = epoch + 1
        newly = active & (val < settings.threshold)
        if newly.any():
            with torch.no_grad():
                for name, tensor in params.items():
                    frozen[name][newly] = tensor.detach()[newly]
            active &= ~newly
            any_frozen = True
        bar.set_postfix(passed=f"{count - int(active.sum())}/{count}")
        if not active.any():
            break
    bar.close()
    final = {k: v.detach().clone() for k, v in params.items()}
    return PopulationResult(
        initial=initial,
        final={k: v.cpu() for k, v in final.items()},
        epochs=epochs,
        passed=~active.cpu().numpy(),
        train_history=train_history,
        val_history=val_history,
        initial_losses=initial_losses,
        final_losses=losses(final),
    )
