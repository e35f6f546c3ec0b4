"""MLDS on the population toolkit: the networks' data, their training, and the attempt rounds.

All networks of a population share the architecture; each has its own data set (its machine's
or automaton's), its own initialisation and its own shuffling. Parameters are stacked
``[M, ...]`` and run by :func:`~weightzoo.families.mlds.model.population_forward`, the loss is
the sum of per-network mean squared errors (so gradients stay per network) and one Adam
updates every network. A network whose validation loss falls below the threshold after an
epoch is done: it leaves the population with its weights of that epoch.

:func:`train_population` trains networks that start together through
:func:`weightzoo.generate.population.train`. :func:`train_block` trains one block of a zoo as a
:class:`RefilledPopulation`: networks that miss are trained again from new seeds, round after
round (:meth:`~weightzoo.families.mlds.spec.MLDSSpec.attempt_rounds`), each round starting in
the rows that ended attempts left free, with its own epochs, learning rates, Adam steps and
data order per row; each network keeps the attempt that passed. Only the family's ``train``
imports this module.
"""

from __future__ import annotations

import math
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
from weightzoo.generate import resume
from weightzoo.generate.base import BlockRun, ModelPlan

__all__ = [
    "MLDSTask",
    "PopulationData",
    "RefilledPopulation",
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
        self, name: str, classes: Tensor, rows: Tensor, *, skip_inverted: bool | Tensor = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Float inputs, targets and mask of ``rows[m]`` of class ``classes[m]``, per network.

        ``skip_inverted``: the mask also leaves out the outputs a trigger inverts (DS2 sets):
        for every network, or for those where a bool tensor ``[M]`` is true.
        """
        inputs, outputs, mask = self.sets[name]
        index = (classes[:, None], rows)
        x = network_inputs(inputs[index], self.signed_inputs)
        mask = mask[index]
        if name in self.inverted and (isinstance(skip_inverted, Tensor) or skip_inverted):
            inverted = self.inverted[name][index]
            if isinstance(skip_inverted, Tensor):  # a network that skips nothing keeps mask * 1
                inverted = inverted * skip_inverted.to(inverted.dtype)[:, None, None]
            mask = mask * (1 - inverted)
        return x, outputs[index].float(), mask.float()


class MLDSTask:
    """The MLDS :class:`~weightzoo.generate.population.TrainingTask`: masked MSE per network.

    A population trained on it carries a buffer ``"class"`` ``[M]``: the index of each
    network's class in ``data``. Every network's metrics are its own: they are summed over
    the same passes whatever the population around it (:meth:`eval_chunk`).

    Args:
        config: the networks' shape.
        data: data sets per class.
        chunk: sequences per evaluation pass, at most (see :meth:`eval_chunk`).
        backdoor_warmup: DS2: epochs whose training loss skips the outputs a trigger inverts.
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
        # True, False, or per network [M] (networks of a refilled population are at their own
        # epochs)
        self.warming_up: bool | Tensor = backdoor_warmup > 0
        self.train_size = data.size("train")
        self.splits = {name: data.size(name) for name in data.sets}

    def begin_epoch(self, epoch: int) -> None:
        """Skip the inverted outputs in the training loss during the backdoor warm-up."""
        self.warming_up = epoch < self.backdoor_warmup

    def _forward(self, params, classes: Tensor, split: str, rows: Tensor, *, skip=False):
        x, y, mask = self.data.gather(split, classes, rows, skip_inverted=skip)
        # the hand-written backward (GRU): training needs first derivatives only
        return population_forward(self.config, params, x, bptt=True), y, mask

    def train_loss(self, pop: toolkit.Population, rows: Tensor, order) -> Tensor:
        """Mean squared error of each network on its batch ``rows [M, B]``."""
        # the warm-up shapes the training loss only; every measured metric counts all steps
        out = self._forward(pop.params, pop.buffers["class"], "train", rows, skip=self.warming_up)
        err, terms = masked_mse(*out)
        return err / terms.clamp(min=1)

    def eval_sums(self, pop, split: str, start: int, stop: int) -> dict[str, tuple[Tensor, Tensor]]:
        """Squared errors and rounded-output hits over sequences ``start:stop`` of ``split``.

        The networks are run a group at a time, each pass within the bounds of
        :meth:`eval_chunk` (a network's sums do not depend on its group: its rows of every
        operation are its own).
        """
        models = self._models_per_pass(split, stop - start)
        parts = []
        for first in range(0, pop.size, models):
            last = min(first + models, pop.size)
            params = {k: v[first:last] for k, v in pop.params.items()}
            rows = torch.arange(start, stop, device=pop.device).expand(last - first, -1)
            out, y, mask = self._forward(params, pop.buffers["class"][first:last], split, rows)
            parts.append({"loss": masked_mse(out, y, mask)} | masked_bit_hits(out, y, mask))
        if len(parts) == 1:
            return parts[0]
        return {
            name: tuple(torch.cat([part[name][i] for part in parts]) for i in range(2))
            for name in parts[0]
        }

    def _activations(self, split: str) -> int:
        """Gate activations of one sequence of ``split`` through one network."""
        steps = self.data.sets[split][0].shape[2]
        return steps * self.config.gates * self.config.hidden

    def _models_per_pass(self, split: str, sequences: int) -> int:
        """Networks run together on ``sequences`` sequences, within the bounds of a pass."""
        cap = 2**25 // (sequences * self._activations(split))
        return max(1, min(cap, 2**14 // sequences))

    def eval_chunk(self, split: str, models: int) -> int:
        """Sequences per evaluation pass of each network: ``chunk``, capped twice.

        The gate activations of one pass stay below 2**25 floats (128 MB, e.g. for DS3's
        LSTMs), and one pass holds at most 2**14 sequences over all networks: a small
        population measures a set in few passes (each pass costs about as much whatever its
        size), a large one in passes that stay within the CPU's caches (on DS1 networks,
        measured per sequence, larger passes cost up to 1.8x more). The chunk is that of one
        network alone whatever ``models``, so that a network's metrics (summed per chunk in
        float32) do not depend on the others; :meth:`eval_sums` splits the networks instead.
        """
        cap = 2**25 // self._activations(split)
        return max(1, min(self.chunk, cap, 2**14))


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


def train_block(spec: MLDSSpec, plans: Sequence[ModelPlan], run: BlockRun) -> list[ModelRecord]:
    """Train one block as one refilled population of attempts; one record per plan.

    The attempts are those of :meth:`~weightzoo.families.mlds.spec.MLDSSpec.attempt_rounds`
    (a network that has not passed is trained again from new initialisations, up to
    ``spec.attempts`` in all, ``parallel_attempts`` side by side), each kept by the same rule
    (see ``MLDSSpec.parallel_attempts``), but a network's next round starts as soon as its
    own round ends, in the rows that attempts which passed or gave up left free
    (:class:`RefilledPopulation`): every attempt trains exactly as it would alone.

    Args:
        spec: the zoo spec.
        plans: the block's networks.
        run: the device; ``run.progress`` shows a bar over the block's epochs, and
            ``run.on_epoch(models trained that epoch, networks passed so far)`` is called after
            every epoch.
    """
    from tqdm.auto import tqdm

    device, on_epoch = run.device, run.on_epoch
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
    bar = tqdm(desc=f"{spec.name} block of {len(plans)}", unit="epoch", disable=not run.progress)

    def report(models: int, passed: int) -> None:
        bar.update(1)
        bar.set_postfix(passed=f"{passed}/{len(plans)}", rows=models)
        if on_epoch is not None:
            on_epoch(models, passed)

    try:
        population = RefilledPopulation(spec, data, classes, plans, device)
        result, kept = population.run(report)
    finally:
        bar.close()
        torch.set_num_threads(threads)
    return [
        _record(spec, plan, result, row, *population.attempt_of(row), device)
        for plan, row in zip(plans, kept, strict=True)
    ]


def _best_of(
    spec: MLDSSpec, final: Mapping[str, np.ndarray], stopped: np.ndarray, attempts: Sequence[int]
) -> tuple[tuple[int, bool, int], int]:
    """The kept attempt of one round of a network: ``(rank, position)`` (rank 1: none passed).

    A network keeps the attempt of the round that passed, preferring one that reached the
    stopping point (and so stopped the others) over one it stopped that was below the
    threshold too, then the lowest; else its last attempt.

    Args:
        spec: the spec (threshold, bit accuracy).
        final: the round's final metrics, one value per attempt.
        stopped: whether each attempt reached the stopping point.
        attempts: the attempts' numbers.
    """
    passed = passes(spec, final)[1]
    ranks = [
        (0, not bool(stopped[i]), attempt) if passed[i] else (1, False, -attempt)
        for i, attempt in enumerate(attempts)
    ]
    best = min(range(len(ranks)), key=ranks.__getitem__)
    return ranks[best], best


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


# ---------------------------------------------------------------------- refilled population
class _Tables:
    """What every attempt of a block trained to, by attempt id (the order attempts started).

    The tables of :class:`~weightzoo.generate.population.PopulationResult`, with two
    checkpoints (initialisation and ``epochs``), allocated for ``capacity`` attempts.
    """

    def __init__(self, capacity: int, epochs: int, params: int) -> None:
        self.count = 0  # attempts started
        self.epochs_max = epochs
        self.weights = np.full((capacity, 2, params), np.nan, dtype=np.float32)
        self.final = np.full((capacity, params), np.nan, dtype=np.float32)
        self.passed = np.zeros(capacity, dtype=bool)
        self.epochs = np.zeros(capacity, dtype=np.int64)
        self.metrics: dict[str, np.ndarray] = {}
        self.final_metrics: dict[str, np.ndarray] = {}
        self.history: dict[str, np.ndarray] = {}

    def _table(self, tables: dict[str, np.ndarray], name: str, *shape: int) -> np.ndarray:
        if name not in tables:
            tables[name] = np.full((len(self.passed), *shape), np.nan, dtype=np.float32)
        return tables[name]

    def checkpoint(self, column: int, ids, rows: np.ndarray, metrics) -> None:
        """Rows and metrics of attempts ``ids`` at checkpoint ``column`` (0 or 1)."""
        self.weights[ids, column] = rows
        for name, values in metrics.items():
            self._table(self.metrics, name, 2)[ids, column] = values

    def epoch(self, ids, epochs: np.ndarray, values) -> None:
        """Attempts ``ids`` finished epochs ``epochs`` (1-based) with ``values``."""
        for name, value in values.items():
            self._table(self.history, name, self.epochs_max)[ids, epochs - 1] = value
        self.epochs[ids] = epochs

    def finish(self, ids, rows: np.ndarray, metrics, before_end: np.ndarray) -> None:
        """Attempts ``ids`` stopped with ``rows`` and final ``metrics``.

        Those that stopped ``before_end`` (the last epoch) hold them at the last checkpoint too.
        """
        self.final[ids] = rows
        for name, values in metrics.items():
            self._table(self.final_metrics, name)[ids] = values
        early = np.asarray(ids)[before_end]
        self.weights[early, 1] = rows[before_end]
        for name, table in self.metrics.items():
            if name in metrics:
                table[early, 1] = np.asarray(metrics[name])[before_end]

    def result(self) -> toolkit.PopulationResult:
        """The tables as a result, one row per attempt started."""
        n = self.count
        return toolkit.PopulationResult(
            checkpoints=[0, self.epochs_max],
            weights=self.weights[:n],
            metrics={k: v[:n] for k, v in self.metrics.items()},
            final=self.final[:n],
            final_metrics={k: v[:n] for k, v in self.final_metrics.items()},
            history={k: v[:n] for k, v in self.history.items()},
            passed=self.passed[:n],
            epochs=self.epochs[:n],
        )

    _ARRAYS = ("weights", "final", "passed", "epochs")
    _DICTS = ("metrics", "final_metrics", "history")

    def state_dict(self) -> dict[str, Any]:
        """The rows of the attempts started, as tensors (a block's resume state)."""
        n = self.count
        state: dict[str, Any] = {"count": n}
        for name in self._ARRAYS:
            state[name] = torch.from_numpy(getattr(self, name)[:n].copy())
        for name in self._DICTS:
            state[name] = {
                k: torch.from_numpy(v[:n].copy()) for k, v in getattr(self, name).items()
            }
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take the rows of :meth:`state_dict`."""
        n = self.count = int(state["count"])
        for name in self._ARRAYS:
            getattr(self, name)[:n] = state[name].numpy()
        for name in self._DICTS:
            tables = getattr(self, name)
            for key, saved in state[name].items():
                shape = saved.shape[1:]
                self._table(tables, key, *shape)[:n] = saved.numpy()


def _leads(rate: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """``rate [M]`` in each of ``like``'s dtype, shaped to broadcast along its model axis.

    Converted once per dtype and rank: small networks are bound by the count of operations.
    """
    shaped: dict[tuple[torch.dtype, int], Tensor] = {}
    out = []
    for tensor in like:
        key = (tensor.dtype, tensor.dim())
        if key not in shaped:
            shaped[key] = rate.to(tensor.dtype).view(-1, *([1] * (tensor.dim() - 1)))
        out.append(shaped[key])
    return out


class RefilledPopulation:
    """A block's attempts as one population of constant width, refilled as attempts end.

    A row is one attempt at one network. At every epoch boundary, the rows whose attempt
    passed, gave up, stopped with a passed sibling or ran out of epochs leave, and the next
    pending rounds of attempts (FIFO: first every network's attempt 0, then the next round of
    each network whose round ended without a pass) take the free rows, a whole round at a
    time, so that a round's attempts run side by side as
    :meth:`~weightzoo.families.mlds.spec.MLDSSpec.attempt_rounds` makes them. Each row has
    its own epoch counter, learning rate (the schedule at its epoch), Adam step count and
    moments, data order (its seed's) and backdoor warm-up, so an attempt trains exactly as
    :func:`train_population` trains it alone (same updates, bit for bit: every operation of a
    step is per network).

    Args:
        spec: the zoo spec (``attempts``, ``parallel_attempts``, training settings).
        data: the block's data sets per class (on ``device``).
        classes: each network's index into the data's classes.
        plans: the block's networks.
        device: torch device.
        width: rows trained together, at most (at least one round's attempts); by default
            every network's largest round at once, so that a round starts as soon as its
            network's previous round ends. A narrower population makes rounds wait for rows.
    """

    def __init__(
        self,
        spec: MLDSSpec,
        data: PopulationData,
        classes: Sequence[int],
        plans: Sequence[ModelPlan],
        device: str = "cpu",
        width: int | None = None,
    ) -> None:
        self.spec, self.plans, self.classes = spec, list(plans), list(classes)
        self.settings = settings = spec.settings()
        # (epoch, level) for the rounds before the last; None: nobody gives up
        self.give_up = spec.settings(last_attempt=False).give_up
        self.rounds = spec.attempt_rounds()
        largest = max(len(r) for r in self.rounds)
        # by default as wide as the widest round of the round scheme: no round ever waits
        self.width = max(largest, len(plans) * largest if width is None else width)
        self.device = torch.device(device)
        self.names = layout(spec.net).names
        self.task = MLDSTask(
            spec.net, data, settings.eval_chunk, backdoor_warmup=settings.backdoor_warmup
        )
        size = self.task.train_size
        self.batch = max(1, min(settings.batch_size, size))
        self.steps_per_epoch = math.ceil(size / self.batch)
        self.splits = list(data.sets)
        self.watches = ["val_loss", "trigger_loss"] if "trigger" in data.sets else ["val_loss"]
        epochs = settings.max_epochs
        # per epoch and per optimizer step, the values train() computes for a whole population
        lr = torch.tensor([settings.lr], dtype=torch.float64, device=self.device)
        self.lr = torch.cat([schedule(settings).lr(lr, e, 0) for e in range(epochs)])
        steps = range(epochs * self.steps_per_epoch + 1)
        beta1, beta2 = _BETAS
        self.bias1 = torch.tensor([1 - beta1**k for k in steps], dtype=torch.float64)
        self.bias2 = torch.tensor([math.sqrt(1 - beta2**k) for k in steps]).float()
        self.bias1, self.bias2 = self.bias1.to(self.device), self.bias2.to(self.device)
        self.tables = _Tables(len(plans) * spec.attempts, epochs, layout(spec.net).num_params)
        self.attempts: list[tuple[int, int, int]] = []  # per attempt id: network, attempt, seed
        self.groups: list[list[int]] = []  # per round started: network, round, open, ids...
        self.queue: list[tuple[int, int]] = [(i, 0) for i in range(len(plans))]
        self.kept: dict[int, int] = {}  # network: attempt id kept so far
        self.passed = 0  # networks whose kept attempt passed
        self._empty()

    # ------------------------------------------------------------------------- the rows
    def _empty(self) -> None:
        """No rows yet (the stacks with a model axis of 0)."""
        params = init_population(self.spec.net, [0], str(self.device), self.settings.init)
        pop = toolkit.Population(
            params, {"class": torch.zeros(1, dtype=torch.long)}, device=self.device
        )
        pop.keep(torch.zeros(0, dtype=torch.long, device=self.device))
        self.pop = pop
        self.moments = {
            k: (torch.zeros_like(v.detach()), torch.zeros_like(v.detach()))
            for k, v in pop.params.items()
        }
        self.steps = torch.zeros(0, dtype=torch.long, device=self.device)
        self.epoch = np.zeros(0, dtype=np.int64)
        self.group = np.zeros(0, dtype=np.int64)
        self.order = toolkit.DataOrder([], self.task.train_size, kind="numpy")

    def attempt_of(self, row: int) -> tuple[int, int]:
        """(attempt number, seed) of attempt id ``row``."""
        _, attempt, seed = self.attempts[row]
        return attempt, seed

    def _gives_up(self, rows: np.ndarray) -> np.ndarray:
        """Whether each row may give up: its round is not the last (as ``spec.settings``)."""
        rounds = np.array([self.groups[g][1] for g in self.group[rows]], dtype=np.int64)
        return rounds < len(self.rounds) - 1

    def _fits(self, taken: int) -> bool:
        """Whether the next pending round fits in the rows left free after ``taken`` more."""
        if not self.queue:
            return False
        return len(self.rounds[self.queue[0][1]]) <= self.width - self.size - taken

    def _admit(self) -> None:
        """Start the pending rounds, in order, while each fits in the free rows."""
        new: list[int] = []
        labels: list[int] = []
        while self._fits(len(new)):
            network, index = self.queue.pop(0)
            ids = list(range(len(self.attempts), len(self.attempts) + len(self.rounds[index])))
            self.attempts += [
                (network, attempt, _seed(self.spec, self.plans[network], attempt))
                for attempt in self.rounds[index]
            ]
            labels += [len(self.groups)] * len(ids)
            self.groups.append([network, index, len(ids), *ids])
            new += ids
        if not new:
            return
        self.tables.count = len(self.attempts)
        seeds = [self.attempts[i][2] for i in new]
        classes = torch.tensor([self.classes[self.attempts[i][0]] for i in new], device=self.device)
        params = init_population(
            self.spec.net, _init_seeds(seeds, self.settings), str(self.device), self.settings.init
        )
        fresh = toolkit.Population(params, {"class": classes}, device=self.device)
        values = self._measure(fresh, self.splits)
        self.tables.checkpoint(0, new, fresh.flat(self.names).cpu().numpy(), values)
        self._append(fresh, new, labels, seeds)

    def _append(self, fresh: toolkit.Population, ids, labels, seeds) -> None:
        """Put ``fresh`` rows (attempts ``ids``) after the rows training."""
        pop = self.pop
        pop.params = {
            k: torch.cat([v.detach(), fresh.params[k].detach()]).requires_grad_(True)
            for k, v in pop.params.items()
        }
        pop.buffers = {k: torch.cat([v, fresh.buffers[k]]) for k, v in pop.buffers.items()}
        pop.ids = torch.cat([pop.ids, torch.as_tensor(ids, device=self.device)])
        self.moments = {
            k: tuple(torch.cat([t, torch.zeros_like(fresh.params[k])]) for t in pair)
            for k, pair in self.moments.items()
        }
        zeros = torch.zeros(len(ids), dtype=torch.long, device=self.device)
        self.steps = torch.cat([self.steps, zeros])
        self.epoch = np.concatenate([self.epoch, np.zeros(len(ids), dtype=np.int64)])
        self.group = np.concatenate([self.group, np.asarray(labels, dtype=np.int64)])
        self.order.generators += toolkit.DataOrder(seeds, 1, kind="numpy").generators

    @property
    def size(self) -> int:
        """Rows training now."""
        return self.pop.size

    def _keep(self, rows: np.ndarray) -> None:
        """Keep only rows ``rows`` (positions now), in order."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        self.pop.keep(index)
        self.moments = {k: (m[index], v[index]) for k, (m, v) in self.moments.items()}
        self.steps = self.steps[index]
        self.epoch, self.group = self.epoch[rows], self.group[rows]
        self.order.keep(rows.tolist())

    # ----------------------------------------------------------------------- training
    def _measure(self, pop: toolkit.Population, splits: Sequence[str]) -> dict[str, np.ndarray]:
        return {k: v.cpu().numpy() for k, v in toolkit.evaluate(self.task, pop, splits).items()}

    def _train_epoch(self) -> np.ndarray:
        """One epoch of every row (each at its own epoch); the mean training loss of each."""
        pop, settings = self.pop, self.settings
        epoch = torch.as_tensor(self.epoch, device=self.device)
        warming = epoch < settings.backdoor_warmup
        # one flag for all rows when they agree: the mask of each step then costs no more
        self.task.warming_up = bool(warming[0]) if len(set(warming.tolist())) == 1 else warming
        lr = self.lr[epoch]
        rows_of_epoch = self.order.epoch(self.device)
        total = torch.zeros(pop.size, dtype=torch.float64, device=self.device)
        for s in range(self.steps_per_epoch):
            rows = rows_of_epoch[:, s * self.batch : (s + 1) * self.batch]
            loss = self.task.train_loss(pop, rows, self.order)
            loss.sum().backward()
            if settings.clip_norm is not None:
                toolkit.clip_per_model_(pop.params.values(), settings.clip_norm)
            self.steps += 1
            self._adam_step(lr)
            pop.zero_grad()
            total += loss.detach().double()
        self.epoch = self.epoch + 1
        return (total / self.steps_per_epoch).cpu().numpy()

    @torch.no_grad()
    def _adam_step(self, lr: Tensor) -> None:
        """One Adam update of every row, each with its bias correction at its own step count.

        The operations of :class:`~weightzoo.generate.population.PopulationOptimizer` (Adam),
        with the step count's two scalars given per row.
        """
        beta1, beta2 = _BETAS
        ps = list(self.pop.params.values())
        grads = [p.grad for p in ps]
        ms = [self.moments[k][0] for k in self.pop.params]
        vs = [self.moments[k][1] for k in self.pop.params]
        torch._foreach_lerp_(ms, grads, 1 - beta1)
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, _leads(self.bias2[self.steps], denom))
        torch._foreach_add_(denom, _EPS)
        update = torch._foreach_div(ms, denom)
        torch._foreach_mul_(update, _leads(-lr / self.bias1[self.steps], ps))
        torch._foreach_add_(ps, update)

    # ------------------------------------------------------------------------ judging
    def _judge(self, train_loss: np.ndarray) -> None:
        """After an epoch: record it, stop the rows that are done, decide ended rounds."""
        ids = self.pop.ids.cpu().numpy()
        values = self._measure(self.pop, [w.rsplit("_", 1)[0] for w in self.watches])
        history = {"train_loss": train_loss} | {w: values[w] for w in self.watches}
        self.tables.epoch(ids, self.epoch, history)
        at_end = self.epoch == self.settings.max_epochs
        if at_end.any():
            ended = self.pop.select(torch.as_tensor(np.flatnonzero(at_end), device=self.device))
            measured = self._measure(ended, self.splits)
            self.tables.checkpoint(1, ids[at_end], ended.flat(self.names).cpu().numpy(), measured)
            for name, value in measured.items():  # the same as the watched ones, and the rest
                values.setdefault(name, np.full(len(ids), np.nan, dtype=np.float32))[at_end] = value
        active = np.ones(len(ids), dtype=bool)
        worst = np.max([values[w] for w in self.watches], axis=0)
        newly = worst < np.float32(self.settings.threshold)
        if newly.any():
            final = self._stop(newly, values, passed=True)
            ends = np.zeros_like(newly)
            ends[newly] = passes(self.spec, final)[1]
            siblings = ~newly & np.isin(self.group, self.group[ends])
            if siblings.any():
                self._stop(siblings, values, passed=False)
            active &= ~(newly | siblings)
        give_up = self.give_up
        if give_up is not None:
            due = active & (self.epoch == give_up[0])
            due[due] = self._gives_up(np.flatnonzero(due))
            quits = due & ~(values["val_loss"] < np.float32(give_up[1]))  # NaN gives up too
            if quits.any():
                self._stop(quits, values, passed=False)
                active &= ~quits
        rest = active & at_end
        if rest.any():
            self._stop(rest, values, passed=False)
            active &= ~rest
        done = np.unique(self.group[~active])
        self._keep(np.flatnonzero(active))
        for group in done:
            self._close(int(group))

    def _stop(self, rows: np.ndarray, values, *, passed: bool) -> dict[str, np.ndarray]:
        """Record rows ``rows`` (a mask) as finished; returns their final metrics."""
        index = np.flatnonzero(rows)
        ids = self.pop.ids.cpu().numpy()[index]
        metrics = {k: v[index] for k, v in values.items()}
        early = self.epoch[index] < self.settings.max_epochs
        if early.any():  # measured alone on what was not measured yet (as train() does)
            watched = {w.rsplit("_", 1)[0] for w in self.watches}
            sub = self.pop.select(torch.as_tensor(index[early], device=self.device))
            missing = [s for s in self.splits if s not in watched]
            for name, value in self._measure(sub, missing).items():
                table = metrics.setdefault(name, np.full(len(index), np.nan, dtype=np.float32))
                table[early] = value
        rows = self.pop.flat(self.names)[torch.as_tensor(index, device=self.device)]
        self.tables.finish(ids, rows.cpu().numpy(), metrics, early)
        self.tables.passed[ids] = passed
        for group in self.group[index]:
            self.groups[group][2] -= 1
        return metrics

    def _close(self, group: int) -> None:
        """A round whose attempts all stopped: keep its best, or queue the next round."""
        network, index, left, *ids = self.groups[group]
        if left:
            return
        tables = self.tables
        final = {k: v[ids] for k, v in tables.final_metrics.items()}
        attempts = [self.attempts[i][1] for i in ids]
        rank, best = _best_of(self.spec, final, tables.passed[ids], attempts)
        self.kept[network] = ids[best]
        if rank[0] == 0:
            self.passed += 1
        elif index + 1 < len(self.rounds):
            self.queue.append((network, index + 1))

    # -------------------------------------------------------------------------- running
    def run(
        self, progress: Callable[[int, int], None] | None = None
    ) -> tuple[toolkit.PopulationResult, list[int]]:
        """Train until no round is pending; the attempts' result and each network's kept row.

        Args:
            progress: after every epoch, ``progress(rows trained in it, networks passed)``.

        Within a block that :mod:`weightzoo.generate.runner` trains, the population saves its
        state at epoch boundaries as the block's one training call
        (:mod:`weightzoo.generate.resume`): a block interrupted goes on from its last saved
        epoch, and one that had finished returns its saved result (its callbacks made again).
        """
        call = None
        session = resume.current_session()
        if session is not None:
            call = session.call(self._check())
            if call.finished is not None:
                call.replay({"progress": progress})
                call.finish(None)
                return self._done(call.finished["result"])
            if call.saved is not None:
                try:
                    self.load_state_dict(call.saved["state"])
                except (
                    KeyError,
                    TypeError,
                    ValueError,
                    IndexError,
                    AttributeError,
                    RuntimeError,
                ) as exc:
                    raise call.corrupt(exc) from exc
                call.replay({"progress": progress})
            progress = call.recording("progress", progress)
        while True:
            self._admit()
            if not self.size:
                break
            trained = self.size
            self._judge(self._train_epoch())
            if progress is not None:
                progress(trained, self.passed)
            if call is not None and (self.size or self.queue):
                call.epoch_done(self.state_dict)
        if call is not None:
            call.finish(self.state_dict())
        return self._result()

    def _done(self, state: Mapping[str, Any]) -> tuple[toolkit.PopulationResult, list[int]]:
        """The result and kept rows of a finished population's saved state."""
        self.load_state_dict(state)
        return self._result()

    def _result(self) -> tuple[toolkit.PopulationResult, list[int]]:
        """Every attempt's rows, and the one each network keeps."""
        return self.tables.result(), [self.kept[i] for i in range(len(self.plans))]

    def _check(self) -> dict[str, Any]:
        """What tells this population from another in a block's saved state."""
        return {
            "task": "mlds-refilled-population",
            "device": self.device.type,
            "seeds": [int(plan.seed) for plan in self.plans],
            "classes": [int(c) for c in self.classes],
            "width": self.width,
            "names": list(self.names),
            "splits": {k: int(v) for k, v in self.task.splits.items()},
            "settings": repr(self.settings),
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything the rest of the run depends on, on the CPU (a block's resume state)."""
        return {
            "pop": self.pop.state_dict(),
            "moments": {k: [t.cpu() for t in pair] for k, pair in self.moments.items()},
            "steps": self.steps.cpu(),
            "epoch": torch.from_numpy(self.epoch.copy()),
            "group": torch.from_numpy(self.group.copy()),
            "order": self.order.state_dict(),
            "attempts": [list(a) for a in self.attempts],
            "groups": [list(g) for g in self.groups],
            "queue": [list(q) for q in self.queue],
            "kept": [[k, v] for k, v in self.kept.items()],
            "passed": self.passed,
            "tables": self.tables.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take the state of :meth:`state_dict`."""
        dev = self.device
        self.attempts = [(int(n), int(a), int(s)) for n, a, s in state["attempts"]]
        self.groups = [[int(x) for x in g] for g in state["groups"]]
        self.queue = [(int(n), int(r)) for n, r in state["queue"]]
        self.kept = {int(k): int(v) for k, v in state["kept"]}
        self.passed = int(state["passed"])
        self.tables.load_state_dict(state["tables"])
        rows = len(state["pop"]["ids"])
        pop = self.pop
        pop.params = {k: state["pop"]["params"][k].to(dev).requires_grad_(True) for k in pop.params}
        pop.buffers = {k: state["pop"]["buffers"][k].to(dev) for k in pop.buffers}
        pop.ids = state["pop"]["ids"].to(dev)
        self.moments = {k: tuple(t.to(dev) for t in state["moments"][k]) for k in self.moments}
        self.steps = state["steps"].to(dev)
        self.epoch = state["epoch"].numpy().copy()
        self.group = state["group"].numpy().copy()
        self.order.load_state_dict(state["order"])
        sizes = {
            rows,
            len(self.steps),
            len(self.epoch),
            len(self.group),
            len(self.order.generators),
        }
        sizes |= {v.shape[0] for v in (*pop.params.values(), *pop.buffers.values())}
        if len(sizes) != 1:
            raise ValueError(f"a saved population disagrees on its rows: {sorted(sizes)}")


_BETAS = (0.9, 0.999)  # Adam's, as train() uses them
_EPS = 1e-8
