"""MLDS on the population toolkit: the networks' data, their training, and the attempt rounds.

All networks of a population share the architecture; each has its own data set (its machine's
or automaton's), its own initialisation and its own shuffling. Training runs through
:func:`weightzoo.generate.population.train`: parameters stacked ``[M, ...]`` and run by
:func:`~weightzoo.families.mlds.model.population_forward`, the loss is the sum of
per-network mean squared errors (so gradients stay per network) and one Adam updates every
network. A network whose validation loss falls below the threshold after an epoch is done: it
is dropped from the population (compaction) with its weights of that epoch.

:func:`train_block` trains one block of a zoo: networks that miss are trained again from new
seeds, round after round (:meth:`~weightzoo.families.mlds.spec.MLDSSpec.attempt_rounds`), and
each keeps the attempt that passed. Only the family's ``train`` imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from weightzoo.blocks import ModelRecord
from weightzoo.families.mlds.data import class_data
from weightzoo.families.mlds.machines import SequenceSet
from weightzoo.families.mlds.model import (
    init_population,
    layout,
    masked_bit_hits,
    masked_mse,
    network_inputs,
    population_forward,
)
from weightzoo.families.mlds.spec import MLDSSpec, NetConfig, TrainSettings, model_seed
from weightzoo.generate import population as toolkit
from weightzoo.generate.base import ModelPlan
from weightzoo.generate.progress import EpochCallback

__all__ = [
    "MLDSTask",
    "PopulationData",
    "lr_at",
    "passes",
    "schedule",
    "train_block",
    "train_population",
]


def schedule(settings: TrainSettings) -> toolkit.Schedule:
    """The toolkit schedule of ``settings``."""
    return toolkit.Schedule(
        settings.schedule, epochs=settings.max_epochs, min_lr_ratio=settings.min_lr_ratio
    )


def lr_at(settings: TrainSettings, epoch: int) -> float:
    """Learning rate of epoch ``epoch`` (0-based) under ``settings``."""
    rate = schedule(settings).lr(torch.tensor([settings.lr], dtype=torch.float64), epoch, 0)
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


def _init_seeds(seeds: Sequence[int], settings: TrainSettings) -> list[int]:
    """Each network's initialisation seed: its own, or the one ``shared_init`` of all."""
    if settings.shared_init is None:
        return list(seeds)
    return [settings.shared_init] * len(seeds)


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
        init_population(config, _init_seeds(seeds, settings), device, settings.init),
        {"class": class_index},
        device=device,
    )
    train_config = toolkit.TrainConfig(
        optimizer="adam",
        lr=settings.lr,
        epochs=settings.max_epochs,
        batch_size=settings.batch_size,
        schedule=schedule(settings),
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


def train_block(
    spec: MLDSSpec,
    plans: Sequence[ModelPlan],
    device: str,
    progress: bool,
    on_epoch: EpochCallback | None,
) -> list[ModelRecord]:
    """Train one block as one population per round of attempts; one record per plan.

    Networks that have not passed are trained again from new initialisations, as one
    population per round (:meth:`~weightzoo.families.mlds.spec.MLDSSpec.attempt_rounds`), up
    to ``spec.attempts`` in all; each keeps the attempt that passed (see
    ``MLDSSpec.parallel_attempts``), else its last.

    Args:
        spec: the zoo spec.
        plans: the block's networks.
        device: torch device.
        progress: show a bar per round.
        on_epoch: ``on_epoch(models trained that epoch, networks passed so far)`` after every
            epoch.
    """
    key = spec.data.class_column
    names = sorted({str(plan.columns[key]) for plan in plans}, key=spec.classes().index)
    per_class = [class_data(spec, name) for name in names]
    sets = {s: [data[s] for data in per_class] for s in spec.set_names()}
    data = PopulationData(sets, device, signed_inputs=spec.signed_inputs)
    classes = [names.index(str(plan.columns[key])) for plan in plans]
    threads = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        # Tiny matmuls: extra threads only add synchronisation (and thrash on busy cores).
        torch.set_num_threads(1)
    outcome: dict[int, tuple[toolkit.PopulationResult, int, int, int]] = {}
    pending = list(range(len(plans)))
    passed_before = 0
    try:
        for attempts in spec.attempt_rounds():
            # one row per (network, attempt); a network's rows form one group
            rows = [(i, attempt) for i in pending for attempt in attempts]
            seeds = [_seed(spec, plans[i], attempt) for i, attempt in rows]
            report = None
            if on_epoch is not None:
                report = lambda models, done, before=passed_before: on_epoch(  # noqa: E731
                    models, before + (done or 0)
                )
            first = attempts[0]
            suffix = "" if first == 0 else f", attempts {first + 1}-{attempts[-1] + 1}"
            result = train_population(
                spec.net,
                data,
                [classes[i] for i, _ in rows],
                seeds,
                spec.settings(last_attempt=attempts[-1] == spec.attempts - 1),
                device=device,
                progress=progress,
                desc=f"{spec.name} block of {len(pending)}{suffix}",
                on_epoch=report,
                groups=[i for i, _ in rows] if len(attempts) > 1 else None,
                # an attempt that stopped but misses on evaluation leaves the others going
                ends_group=lambda metrics: passes(spec, metrics)[1],
            )
            best = _best_attempts(spec, result, rows)
            for index, (_, row) in best.items():
                outcome[index] = (result, row, rows[row][1], seeds[row])
            pending = [i for i, (rank, _) in best.items() if rank[0] == 1]
            passed_before = len(plans) - len(pending)
            if not pending:
                break
    finally:
        torch.set_num_threads(threads)
    return [_record(spec, plan, *outcome[i], device) for i, plan in enumerate(plans)]


def _best_attempts(
    spec: MLDSSpec, result: toolkit.PopulationResult, rows: Sequence[tuple[int, int]]
) -> dict[int, tuple[tuple[int, bool, int], int]]:
    """Each network's kept row of a round: ``{network: (rank, row)}`` (rank 1: none passed).

    A network keeps the attempt of the round that passed, preferring one that reached the
    stopping point (and so stopped the others) over one it stopped that was below the
    threshold too, then the lowest; else its last attempt.
    """
    passed = passes(spec, result.final_metrics)[1]
    best: dict[int, tuple[tuple[int, bool, int], int]] = {}
    for row, (index, attempt) in enumerate(rows):
        if passed[row]:
            rank = (0, not bool(result.passed[row]), attempt)
        else:
            rank = (1, False, -attempt)
        if index not in best or rank < best[index][0]:
            best[index] = (rank, row)
    return best


def _seed(spec: MLDSSpec, plan: ModelPlan, attempt: int) -> int:
    """The seed of one attempt at a network (attempt 0: the plan's)."""
    if attempt == 0:
        return plan.seed
    class_name = str(plan.columns[spec.data.class_column])
    return model_seed(spec.subset, class_name, int(plan.columns["replicate"]), attempt)


def passes(spec: MLDSSpec, metrics: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(passed on validation, passed on every evaluation set) per network.

    Stopping (validation below ``threshold * stop_margin``) is how training ends; passing
    is judged on the final weights against the threshold itself, as the paper does.

    Args:
        spec: the spec (threshold, bit accuracy).
        metrics: final ``<set>_loss`` / ``<set>_bit_accuracy``, one value per network.
    """

    def ok(name: str) -> np.ndarray:
        loss = np.asarray(metrics[f"{name}_loss"])
        bits = np.asarray(metrics[f"{name}_bit_accuracy"])
        return (loss < spec.threshold) & (bits >= spec.min_bit_accuracy)

    passed_val = ok("val")
    passed = passed_val.copy()
    for name in spec.set_names():
        if name not in ("train", "val"):
            passed &= ok(name)
    return passed_val, passed


def _record(
    spec: MLDSSpec,
    plan: ModelPlan,
    result: toolkit.PopulationResult,
    row: int,
    attempt: int,
    seed: int,
    device: str,
) -> ModelRecord:
    """The stored record of one network: the attempt it keeps."""
    sets = spec.set_names()
    metrics = {name: result.metrics[name][row].astype(np.float32) for name in spec.metric_names()}
    final = {name: float(result.final_metrics[f"{name}_loss"][row]) for name in sets}
    bits = {name: float(result.final_metrics[f"{name}_bit_accuracy"][row]) for name in sets}
    one = {name: values[row : row + 1] for name, values in result.final_metrics.items()}
    passed_val, passed = passes(spec, one)
    columns: dict[str, Any] = {
        "epochs": int(result.epochs[row]),
        "stopped": bool(result.passed[row]),
        "passed_val": bool(passed_val[0]),
        "passed": bool(passed[0]),
        "attempt": attempt,
        "init_seed": seed if spec.shared_init is None else spec.shared_init,
        "device": str(device),
    }
    # train_loss and every watched metric (val_loss; DS2 also trigger_loss), per epoch
    columns |= {f"{name}_history": values[row] for name, values in result.history.items()}
    columns |= {f"final_{name}_loss": value for name, value in final.items()}
    columns |= {f"final_{name}_bit_accuracy": value for name, value in bits.items()}
    return ModelRecord(plan.model_id, result.weights[row], metrics, columns)
