"""MLDS on the population toolkit: the networks' data, loss and training settings.

All networks of a population share the architecture; each has its own data set (its machine's
or automaton's), its own initialisation and its own shuffling. Training runs through
:func:`weightzoo.generate.population.train`: parameters stacked ``[M, ...]`` and run by
:func:`~weightzoo.generate.mlds.networks.population_forward`, the loss is the sum of
per-network mean squared errors (so gradients stay per network) and one Adam updates every
network. A network whose validation loss falls below the threshold after an epoch is done: it
is dropped from the population (compaction) with its weights of that epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from weightzoo.architectures.mlds import network_inputs
from weightzoo.generate import population as toolkit
from weightzoo.generate.mlds.networks import NetConfig, init_population, layout, population_forward
from weightzoo.tasks.machines import SequenceSet


@dataclass(frozen=True)
class TrainSettings:
    """How to train.

    Attributes:
        lr: Adam learning rate.
        batch_size: sequences per step, per network.
        max_epochs: stop a network that has not passed after this many epochs.
        threshold: a network passes when its validation loss is below this.
        eval_chunk: sequences per forward pass when measuring a whole set (at most; see
            :meth:`MLDSTask.eval_chunk`). The default measures the small specs' sets in one
            pass: small networks are bound by the count of operations, not by arithmetic.
        schedule: ``"constant"`` learning rate, or ``"cosine"``: decayed per epoch from
            ``lr`` to ``lr * min_lr_ratio`` over ``max_epochs`` (half a cosine).
        min_lr_ratio: final learning rate of the cosine schedule, relative to ``lr``.
        init: initialisation scheme (:data:`~weightzoo.architectures.mlds.INITS`).
        clip_norm: each network's gradient is clipped to this L2 norm (None: no clipping).
        backdoor_warmup: DS2: for this many first epochs the training loss skips the outputs
            a trigger inverts, so a network learns its machine before the backdoor.
        give_up: ``(epoch, level)``: a network whose validation loss (``val_loss`` alone, also
            on DS2) is not below ``level`` after ``epoch`` epochs stops there, not passed
            (None: never).
    """

    lr: float = 1e-3
    batch_size: int = 32
    max_epochs: int = 100
    threshold: float = 1e-5
    eval_chunk: int = 1024
    schedule: str = "constant"
    min_lr_ratio: float = 0.1
    init: str = "default"
    clip_norm: float | None = None
    backdoor_warmup: int = 0
    give_up: tuple[int, float] | None = None

    def __post_init__(self) -> None:
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.backdoor_warmup < 0:
            raise ValueError(f"backdoor_warmup must be >= 0 epochs, got {self.backdoor_warmup}")

    def to_schedule(self) -> toolkit.Schedule:
        """The toolkit schedule of these settings."""
        return toolkit.Schedule(
            self.schedule, epochs=self.max_epochs, min_lr_ratio=self.min_lr_ratio
        )

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch ``epoch`` (0-based)."""
        rate = self.to_schedule().lr(torch.tensor([self.lr], dtype=torch.float64), epoch, 0)
        return float(rate[0])


class PopulationData:
    """The data sets of the classes (machines or automata) of a population, on one device.

    Args:
        sets: ``{set name: [one SequenceSet per class]}``; must include ``"train"`` and
            ``"val"``; all classes of a set have the same size.
        device: where to keep them (as uint8; converted to float per batch).
        signed_inputs: feed input lines as -1 (low) / +1 (high) instead of 0 / 1.
    """

    def __init__(
        self,
        sets: dict[str, Sequence[SequenceSet]],
        device: str = "cpu",
        *,
        signed_inputs: bool = False,
    ) -> None:
        self.signed_inputs = signed_inputs
        for required in ("train", "val"):
            if required not in sets:
                raise ValueError(f"population data needs a {required!r} set; got {sorted(sets)}")
        self.sets: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
        # DS2: per set, the steps whose outputs a trigger inverts (for the backdoor warm-up)
        self.inverted: dict[str, Tensor] = {}
        for name, parts in sets.items():
            self.sets[name] = tuple(  # type: ignore[assignment]
                torch.from_numpy(np.stack([getattr(p, field) for p in parts])).to(device)
                for field in ("inputs", "outputs", "mask")
            )
            if all(p.inverted is not None for p in parts):
                stacked = np.stack([p.inverted for p in parts])
                self.inverted[name] = torch.from_numpy(stacked).to(device)

    def size(self, name: str) -> int:
        """Sequences per class in set ``name``."""
        return self.sets[name][0].shape[1]

    def gather(
        self, name: str, classes: Tensor, rows: Tensor, *, skip_inverted: bool = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Float inputs, targets and mask of ``rows[m]`` of class ``classes[m]``, per network.

        ``skip_inverted``: the mask also leaves out the outputs a trigger inverts (DS2 sets).
        """
        inputs, outputs, mask = self.sets[name]
        index = (classes[:, None], rows)
        x = network_inputs(inputs[index], self.signed_inputs)
        mask = mask[index]
        if skip_inverted and name in self.inverted:
            mask = mask * (1 - self.inverted[name][index])
        return x, outputs[index].float(), mask.float()


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-network sum of masked squared errors and the count of terms, each ``[M]``."""
    err = ((pred - target) ** 2).sum(dim=-1) * mask
    return err.sum(dim=(1, 2)), mask.sum(dim=(1, 2)) * pred.shape[-1]


def masked_bit_hits(pred: Tensor, target: Tensor, mask: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
    """Per-network ``(hits, count)`` of the rounded outputs, each ``[M]``.

    ``bit_accuracy``: output lines that, rounded at 0.5, equal the target bit.
    ``symbol_accuracy``: steps whose rounded output vector equals the target vector whole (for
    DS3: the emitted symbol, or silence, is right).
    """
    right = (pred > 0.5) == (target > 0.5)
    lines = (right.float().sum(dim=-1) * mask).sum(dim=(1, 2))
    steps = (right.all(dim=-1).float() * mask).sum(dim=(1, 2))
    terms = mask.sum(dim=(1, 2))
    return {"bit_accuracy": (lines, terms * pred.shape[-1]), "symbol_accuracy": (steps, terms)}


class MLDSTask:
    """The MLDS :class:`~weightzoo.generate.population.Task`: masked MSE on each network's set.

    A population trained on it carries a buffer ``"class"`` ``[M]``: the index of each
    network's class in ``data``.

    Args:
        config: the networks' shape.
        data: data sets per class.
        chunk: sequences per evaluation pass, at most (see :meth:`eval_chunk`).
    """

    def __init__(
        self,
        config: NetConfig,
        data: PopulationData,
        chunk: int = 1024,
        *,
        backdoor_warmup: int = 0,
    ) -> None:
        self.config = config
        self.data = data
        self.chunk = chunk
        self.backdoor_warmup = backdoor_warmup
        self.warming_up = backdoor_warmup > 0
        self.train_size = data.size("train")
        self.splits = {name: data.size(name) for name in data.sets}

    def begin_epoch(self, epoch: int) -> None:
        """Skip the inverted outputs in the training loss during the backdoor warm-up."""
        self.warming_up = epoch < self.backdoor_warmup

    def _forward(self, pop: toolkit.Population, split: str, rows: Tensor, *, skip=False):
        x, y, mask = self.data.gather(split, pop.buffers["class"], rows, skip_inverted=skip)
        # the hand-written backward (GRU): training needs first derivatives only
        return population_forward(self.config, pop.params, x, bptt=True), y, mask

    def train_loss(self, pop: toolkit.Population, rows: Tensor, order) -> Tensor:
        """Mean squared error of each network on its batch ``rows [M, B]``."""
        # the warm-up shapes the training loss only; every measured metric counts all steps
        err, terms = masked_mse(*self._forward(pop, "train", rows, skip=self.warming_up))
        return err / terms.clamp(min=1)

    def eval_sums(self, pop, split: str, start: int, stop: int) -> dict[str, tuple[Tensor, Tensor]]:
        """Squared errors and rounded-output hits over sequences ``start:stop`` of ``split``."""
        rows = torch.arange(start, stop, device=pop.device).expand(pop.size, -1)
        out, y, mask = self._forward(pop, split, rows)
        return {"loss": masked_mse(out, y, mask)} | masked_bit_hits(out, y, mask)

    def eval_chunk(self, split: str, models: int) -> int:
        """Sequences per evaluation pass: ``chunk``, capped twice.

        The gate activations of one pass stay below 2**25 floats (128 MB, e.g. for DS3's
        LSTMs), and one pass holds at most 2**14 sequences over all networks: a small
        population measures a set in few passes (each pass costs about as much whatever its
        size), a large one in passes that stay within the CPU's caches (on DS1 networks,
        measured per sequence, larger passes cost up to 1.8x more).
        """
        steps = self.data.sets[split][0].shape[2]
        cap = 2**25 // (models * steps * self.config.gates * self.config.hidden)
        return max(1, min(self.chunk, cap, 2**14 // models))


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
    compact: bool = True,
    on_epoch: Callable[[int, int | None], None] | None = None,
    groups: Sequence[int] | None = None,
    ends_group: Callable[[Mapping[str, np.ndarray]], np.ndarray] | None = None,
) -> toolkit.PopulationResult:
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
        compact: drop passed networks from the population (False: keep them in, frozen).
        on_epoch: called after every epoch with (networks that trained in it, networks
            passed so far).
        groups: per-network labels: networks of one label are attempts at one network, and
            the others stop once one passes (see
            :class:`~weightzoo.generate.population.TrainConfig`); ``passed`` counts labels.
        ends_group: which passed networks end their group (the toolkit's ``ends_group``).

    Returns:
        The toolkit's result: checkpoints ``[0, max_epochs]`` (initialisation, and the weights
        when the network passed or ran out of epochs) with ``<set>_loss`` on every set;
        ``history`` holds ``train_loss`` and ``val_loss`` per epoch.
    """
    from tqdm.auto import tqdm

    if len(classes) != len(seeds):
        raise ValueError(f"{len(classes)} classes given for {len(seeds)} seeds; give one each")
    class_index = torch.as_tensor(list(classes), dtype=torch.long, device=device)
    pop = toolkit.Population(
        init_population(config, list(seeds), device, settings.init),
        {"class": class_index},
        device=device,
    )
    train_config = toolkit.TrainConfig(
        optimizer="adam",
        lr=settings.lr,
        epochs=settings.max_epochs,
        batch_size=settings.batch_size,
        schedule=settings.to_schedule(),
        checkpoints=(0, settings.max_epochs),
        checkpoint_splits=tuple(data.sets),
        # DS2: the trigger-only set too, so that a network stops only once its inverted
        # outputs are as sharp as the rest (on validation alone they stopped at 1.3e-3 there).
        watch=("val_loss", "trigger_loss") if "trigger" in data.sets else "val_loss",
        threshold=settings.threshold,
        compact=compact,
        order="numpy",
        clip_norm=settings.clip_norm,
        give_up=settings.give_up,
        give_up_watch="val_loss",
        groups=groups,
        ends_group=ends_group,
    )
    bar = tqdm(total=settings.max_epochs, desc=desc, unit="epoch", disable=not progress)

    training = [len(seeds)]  # networks in the population during the coming epoch
    labels = list(range(len(seeds))) if groups is None else list(groups)
    networks = len(set(labels))
    passed_labels: set[int] = set()
    passed = [0]

    def count(ids, did_pass: bool) -> None:
        if did_pass:  # attempts at one network passing together count once
            passed_labels.update(labels[i] for i in ids)
            passed[0] = len(passed_labels)

    def advance(_steps: int, remaining: int) -> None:
        bar.update(1)
        bar.set_postfix(passed=f"{passed[0]}/{networks}")
        if on_epoch is not None:
            on_epoch(training[0], passed[0])
        training[0] = remaining

    try:
        return toolkit.train(
            MLDSTask(config, data, settings.eval_chunk, backdoor_warmup=settings.backdoor_warmup),
            pop,
            seeds,
            layout(config).names,
            train_config,
            progress=advance,
            on_stop=count,
        )
    finally:
        bar.close()
