"""MLDS zoo specs (DS1, DS2, DS3; small defaults and the paper's sizes) and their family.

Models are ordered replicate-major: replicate 0 of every class (machine or automaton), then
replicate 1, ... so that ``--models N`` keeps every class while it can. A model's seed is
derived from (subset, class, replicate) alone, so that a network keeps its seed when other
classes are added or removed; a network trained again after a miss (``attempts``) takes the
seed of (subset, class, replicate, attempt), stored as ``init_seed`` (``seed`` stays the
first). Each class's data sets are drawn from ``data_seed``, the subset and the class, so all
networks of a class see the same data, each in its own order.

Checkpoints: two per model, labelled ``0`` (initialisation) and ``max_epochs``; the second
holds the weights when the network passed (it is frozen from then on) or when ``max_epochs``
ran out. The ``epochs`` column says how many epochs it actually trained.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from weightzoo.architectures.mlds import NetConfig, layout, net_config
from weightzoo.generate import population as toolkit
from weightzoo.generate.base import ModelPlan, ModelRecord, ZooSpec
from weightzoo.generate.mlds.population import PopulationData, TrainSettings, train_population
from weightzoo.storage.layout import Layout
from weightzoo.tasks.machines import MACHINES, SequenceSet, check_machines, modified_name
from weightzoo.tasks.mlds import SUBSETS, MLDSData, class_sets

# Stored per checkpoint and data set: mean squared error, share of output bits right (rounded at
# 0.5), share of steps whose whole output is right (DS3: the emitted symbol).
METRICS = ("loss", "bit_accuracy", "symbol_accuracy")


@dataclass(frozen=True)
class MLDSSpec(ZooSpec):
    """Spec of an MLDS zoo.

    Attributes:
        subset: ``"ds1"`` (machines), ``"ds2"`` (machines with the backdoor) or ``"ds3"``
            (random automata).
        machines: DS1/DS2 machine names (``--machines``); unused for DS3.
        automata: DS3 automaton seeds (``--machines 3,17`` picks some); unused for DS1/DS2.
        per_class: networks per machine or automaton (``--per-class``).
        models: if set, only the first ``models`` networks of the order (``--models``).
        seq_len: steps per sequence.
        train_size / val_size / eval_size: sequences per set and class.
        trigger_every: DS2: one trigger per this many steps in train/val/eval data.
        trigger_eval_every: DS2: spacing of triggers in the trigger-only evaluation set.
        max_epochs: a network that has not passed stops after this many epochs (``--train-epochs``).
        threshold: a network passes when its validation loss (then its evaluation losses)
            is below this.
        lr: Adam learning rate.
        schedule: ``"constant"`` or ``"cosine"`` (per epoch, from ``lr`` to
            ``lr * min_lr_ratio`` over ``max_epochs``).
        min_lr_ratio: final learning rate of the cosine schedule, relative to ``lr``.
        batch_size: sequences per step and network.
        data_seed: seed of all data sets.
        init: the networks' initialisation (``"orthogonal"`` or PyTorch's ``"default"``; see
            :func:`weightzoo.architectures.mlds.initialise_`).
        signed_inputs: input lines are fed as -1 (low) / +1 (high), not 0 / 1.
        clip_norm: each network's gradient is clipped to this L2 norm (None: no clipping).
        min_bit_accuracy: a passed network also gets at least this share of output bits right
            (rounded at 0.5) on every evaluation set.
        stop_margin: a network stops training once its validation loss is below
            ``threshold * stop_margin``; it has ``passed`` when every evaluation set is below
            ``threshold``. The paper stops at the threshold itself (1.0); below 1 leaves room
            for the difference between validation and evaluation sets, so that a network
            stopped on validation does not then miss on evaluation by noise.
        backdoor_warmup: DS2: for this many first epochs the training loss skips the outputs
            a trigger inverts, so that a network learns its machine before the backdoor
            (ignored without the backdoor).
        attempts: a network that has not passed is trained again from a new initialisation,
            up to this many attempts in all; the zoo stores the attempt that passed, else the
            last (column ``attempt``, from 0; ``init_seed`` is that attempt's seed). The paper
            archives only networks that passed, so one that never does is not in its zoo either.
        parallel_attempts: attempts after the first are trained this many at a time, side by
            side in one population: once one reaches the stopping point and passes on every
            evaluation set, the others stop and the network keeps it (of several, the lowest
            ``attempt``); if none stopped so, the lowest attempt that passed on its final
            weights, else the last (1: one at a time).
        give_up: ``(epoch, level)``: an attempt of a round other than the last
            (:meth:`attempt_rounds`) whose validation loss is not below ``level`` after
            ``epoch`` epochs stops there (None, or an epoch not before ``max_epochs``: every
            attempt trains up to ``max_epochs``).
    """

    subset: str = "ds1"
    machines: tuple[str, ...] = MACHINES
    automata: tuple[int, ...] = ()
    per_class: int = 16
    models: int | None = None
    seq_len: int = 1024
    train_size: int = 2048
    val_size: int = 512
    eval_size: int = 64
    trigger_every: int = 64
    trigger_eval_every: int = 8
    max_epochs: int = 1000
    threshold: float = 1e-5
    lr: float = 1e-3
    schedule: str = "constant"
    min_lr_ratio: float = 0.1
    batch_size: int = 32
    data_seed: int = 0
    init: str = "orthogonal"
    signed_inputs: bool = True
    clip_norm: float | None = 1.0
    min_bit_accuracy: float = 0.99
    stop_margin: float = 1.0
    backdoor_warmup: int = 0
    attempts: int = 1
    parallel_attempts: int = 1
    give_up: tuple[int, float] | None = None

    kind: ClassVar[str] = "mlds"

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.parallel_attempts < 1:
            raise ValueError(f"parallel_attempts must be at least 1, got {self.parallel_attempts}")
        if self.give_up is not None and self.give_up[0] <= self.backdoor_warmup:
            raise ValueError(
                f"give_up's epoch must come after the backdoor warm-up "
                f"({self.backdoor_warmup} epochs) and be at least 1, got {self.give_up[0]}"
            )
        if self.subset not in SUBSETS:
            raise ValueError(f"subset must be one of {', '.join(SUBSETS)}; got {self.subset!r}")
        if self.subset != "ds3":
            check_machines(self.machines)
        elif not self.automata:
            raise ValueError("a DS3 spec needs at least one automaton seed in `automata`")

    @property
    def net(self) -> NetConfig:
        """The network shape of the subset."""
        return net_config(self.subset)

    @property
    def backdoor(self) -> bool:
        """Whether the machines carry the DS2 trigger."""
        return self.subset == "ds2"

    def classes(self) -> list[str]:
        """Class names in order: machine names, or automaton seeds as strings."""
        if self.subset == "ds3":
            return [str(seed) for seed in self.automata]
        return list(self.machines)

    def num_models(self) -> int:
        """Networks of this spec."""
        full = len(self.classes()) * self.per_class
        return full if self.models is None else min(self.models, full)

    def estimate(self) -> dict[str, int]:
        """Size of the zoo: models, checkpoints, params per row, and bytes of ``weights``."""
        models, params = self.num_models(), layout(self.net).num_params
        return {
            "models": models,
            "checkpoints": 2,
            "params": params,
            "bytes": models * 2 * params * 4,
        }

    def attempt_rounds(self) -> list[range]:
        """The attempts trained together: the first alone, then ``parallel_attempts`` at a time."""
        width = self.parallel_attempts
        return [range(0, 1)] + [
            range(start, min(start + width, self.attempts))
            for start in range(1, self.attempts, width)
        ]

    def _gives_up(self) -> bool:
        """Whether ``give_up`` applies: its epoch comes before the budget ends."""
        return self.give_up is not None and self.give_up[0] < self.max_epochs

    def settings(self, *, last_attempt: bool = True) -> TrainSettings:
        """Training settings of the spec (``give_up`` only for an attempt before the last)."""
        return TrainSettings(
            backdoor_warmup=self.backdoor_warmup if self.backdoor else 0,
            give_up=None if last_attempt or not self._gives_up() else self.give_up,
            lr=self.lr,
            batch_size=self.batch_size,
            max_epochs=self.max_epochs,
            threshold=self.threshold * self.stop_margin,
            schedule=self.schedule,
            min_lr_ratio=self.min_lr_ratio,
            init=self.init,
            clip_norm=self.clip_norm,
        )

    def override(
        self,
        models: int | None = None,
        epochs: int | None = None,
        per_class: int | None = None,
        machines: Sequence[str] | None = None,
        **rest: Any,
    ) -> ZooSpec:
        """Apply ``--models``, ``--train-epochs`` (max epochs), ``--per-class`` and ``--machines``.

        Raises:
            ValueError: for an option MLDS does not take (e.g. ``--data-dir``), a count below
                1, or an unknown machine / a non-integer automaton seed.
        """
        ZooSpec.override(self, **rest)
        changes: dict[str, Any] = {}
        for option, value in (("models", models), ("epochs", epochs), ("per-class", per_class)):
            if value is not None and int(value) < 1:
                raise ValueError(f"--{option} must be at least 1, got {value}")
        if models is not None:
            changes["models"] = int(models)
        if epochs is not None:
            changes["max_epochs"] = int(epochs)
        if per_class is not None:
            changes["per_class"] = int(per_class)
        if machines is not None:
            names = [m.strip() for m in machines if m.strip()]
            if self.subset == "ds3":
                try:
                    changes["automata"] = tuple(int(m) for m in names)
                except ValueError:
                    raise ValueError(
                        f"DS3 automata are chosen by seed: give integers, got {names}"
                    ) from None
            else:
                changes["machines"] = check_machines(names)
        return dataclasses.replace(self, **changes) if changes else self


def model_seed(subset: str, class_name: str, replicate: int, attempt: int = 0) -> int:
    """The seed of a network: a hash of (subset, class, replicate[, attempt]), below 2**31."""
    key = f"mlds-{subset}/{class_name}/{replicate}" + (f"/{attempt}" if attempt else "")
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


def class_data(spec: MLDSSpec, class_name: str) -> dict[str, SequenceSet]:
    """The data sets of one class: ``train``, ``val``, ``eval`` (and DS2's ``trigger``).

    See :func:`weightzoo.tasks.mlds.class_sets` (cached there).
    """
    return class_sets(MLDSData.from_spec(spec), class_name)


class MLDSFamily:
    """Implements the :class:`~weightzoo.generate.base.Family` protocol for :class:`MLDSSpec`."""

    def layout(self, spec: MLDSSpec) -> Layout:
        """Layout of one network (``rnn.*``, ``linears.*``, ``out.*``)."""
        return layout(spec.net)

    def checkpoint_epochs(self, spec: MLDSSpec) -> list[int]:
        """Initialisation and the final (frozen or last-epoch) weights."""
        return [0, spec.max_epochs]

    def set_names(self, spec: MLDSSpec) -> list[str]:
        """Data sets measured at every checkpoint."""
        return MLDSData.from_spec(spec).set_names()

    def metric_names(self, spec: MLDSSpec) -> list[str]:
        """``<set>_<metric>`` for every data set and metric of :data:`METRICS`."""
        return [f"{name}_{metric}" for name in self.set_names(spec) for metric in METRICS]

    def plan(self, spec: MLDSSpec) -> list[ModelPlan]:
        """Replicate-major order of (class, replicate)."""
        plans = []
        for replicate in range(spec.per_class):
            for class_name in spec.classes():
                if len(plans) == spec.num_models():
                    return plans
                if spec.subset == "ds3":
                    columns: dict[str, Any] = {"automaton": int(class_name)}
                else:
                    variant = modified_name(class_name) if spec.backdoor else class_name
                    columns = {"machine": class_name, "variant": variant}
                columns |= {"backdoor": int(spec.backdoor), "replicate": replicate}
                plans.append(
                    ModelPlan(
                        model_id=len(plans),
                        seed=model_seed(spec.subset, class_name, replicate),
                        stratum=class_name,
                        columns=columns,
                    )
                )
        return plans

    def train(
        self,
        spec: MLDSSpec,
        plans: Sequence[ModelPlan],
        *,
        device: str,
        progress: bool = True,
        on_epoch: Callable[[int, int | None], None] | None = None,
    ) -> list[ModelRecord]:
        """Train one block as one population; see :mod:`weightzoo.generate.mlds.population`.

        Networks that have not passed are trained again from new initialisations, as one
        population per round of attempts (:meth:`MLDSSpec.attempt_rounds`), up to
        ``spec.attempts`` in all; each keeps the attempt that passed (see
        ``MLDSSpec.parallel_attempts``), else its last.
        ``on_epoch(models trained that epoch, networks passed so far)`` after every epoch.
        """
        key = "automaton" if spec.subset == "ds3" else "machine"
        names = sorted({str(plan.columns[key]) for plan in plans}, key=spec.classes().index)
        per_class = [class_data(spec, name) for name in names]
        sets = {s: [data[s] for data in per_class] for s in self.set_names(spec)}
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
                seeds = [self._seed(spec, plans[i], attempt, key) for i, attempt in rows]
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
                    ends_group=lambda metrics: self._passes(spec, metrics)[1],
                )
                # Each network keeps the attempt of this round that passed, preferring one that
                # reached the stopping point (and so stopped the others) over one it stopped
                # that was below the threshold too, then the lowest; else its last attempt.
                passes = self._passes(spec, result.final_metrics)[1]
                best: dict[int, tuple[tuple[int, bool, int], int]] = {}
                for row, (index, attempt) in enumerate(rows):
                    if passes[row]:
                        rank = (0, not bool(result.passed[row]), attempt)
                    else:
                        rank = (1, False, -attempt)
                    if index not in best or rank < best[index][0]:
                        best[index] = (rank, row)
                for index, (_, row) in best.items():
                    outcome[index] = (result, row, rows[row][1], seeds[row])
                pending = [i for i, (rank, _) in best.items() if rank[0] == 1]
                passed_before = len(plans) - len(pending)
                if not pending:
                    break
        finally:
            torch.set_num_threads(threads)
        return [self._record(spec, plan, *outcome[i], device) for i, plan in enumerate(plans)]

    @staticmethod
    def _seed(spec: MLDSSpec, plan: ModelPlan, attempt: int, key: str) -> int:
        """The seed of one attempt at a network (attempt 0: the plan's)."""
        if attempt == 0:
            return plan.seed
        class_name = str(plan.columns[key])
        return model_seed(spec.subset, class_name, int(plan.columns["replicate"]), attempt)

    def _passes(
        self, spec: MLDSSpec, metrics: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
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
        for name in self.set_names(spec):
            if name not in ("train", "val"):
                passed &= ok(name)
        return passed_val, passed

    def _passed(
        self, spec: MLDSSpec, result: toolkit.PopulationResult, row: int
    ) -> tuple[bool, bool]:
        """:meth:`_passes` of network ``row`` of a result."""
        metrics = {name: values[row : row + 1] for name, values in result.final_metrics.items()}
        passed_val, passed = self._passes(spec, metrics)
        return bool(passed_val[0]), bool(passed[0])

    def _record(
        self,
        spec: MLDSSpec,
        plan: ModelPlan,
        result: toolkit.PopulationResult,
        row: int,
        attempt: int,
        seed: int,
        device: str,
    ) -> ModelRecord:
        """The stored record of one network: the attempt it keeps."""
        sets = self.set_names(spec)
        metrics = {
            name: result.metrics[name][row].astype(np.float32) for name in self.metric_names(spec)
        }
        final = {name: float(result.final_metrics[f"{name}_loss"][row]) for name in sets}
        bits = {name: float(result.final_metrics[f"{name}_bit_accuracy"][row]) for name in sets}
        passed_val, passed = self._passed(spec, result, row)
        columns: dict[str, Any] = {
            "epochs": int(result.epochs[row]),
            "stopped": bool(result.passed[row]),
            "passed_val": passed_val,
            "passed": passed,
            "attempt": attempt,
            "init_seed": seed,
            "device": str(device),
        }
        # train_loss and every watched metric (val_loss; DS2 also trigger_loss), per epoch
        columns |= {f"{name}_history": values[row] for name, values in result.history.items()}
        columns |= {f"final_{name}_loss": value for name, value in final.items()}
        columns |= {f"final_{name}_bit_accuracy": value for name, value in bits.items()}
        return ModelRecord(plan.model_id, result.weights[row], metrics, columns)


def specs() -> list[ZooSpec]:
    """The named MLDS specs: small defaults and the paper's sizes (Table 3)."""
    # Small DS1/DS2: short sequences, many steps, orthogonal blocks, inputs at -1/+1, a cosine
    # decay over a budget long enough for the slowest machine; networks leave the population
    # as soon as they pass (docs/mlds.md, "Specs").
    small = {
        "per_class": 16,
        "seq_len": 16,
        # 4,096: with 1,024, DS2's SingleDirect and SingleInvert networks fitted their training
        # set (training MSE half the validation MSE) and levelled off at 1-2e-3 on evaluation,
        # and DS3 automaton 0 missed once in four; with 4,096 both pass (docs/mlds.md).
        "train_size": 4096,
        # The stopping decision rests on it: with 128 sequences networks stopped at 4e-4 on
        # validation and scored 1.2-1.6e-3 on evaluation (rare inputs, e.g. a command with every
        # line low, weigh on the loss); 512 is the paper's validation size.
        "val_size": 512,
        "eval_size": 128,
        "trigger_every": 16,
        "max_epochs": 100,
        "threshold": 1e-3,
        "stop_margin": 0.5,
        "lr": 1e-2,
        "schedule": "cosine",
        "min_lr_ratio": 0.01,
        "batch_size": 16,
        # As the paper archives only networks that passed: a network that misses is trained
        # again from new seeds, six attempts side by side, up to 13 attempts in all (DS2 Parity
        # passes one attempt in four: 8 of 32); an attempt of a round other than the last still
        # at validation MSE >= 0.01 after 40 epochs is cut short (no network that later passed
        # was above 0.0034 there in DS1).
        "attempts": 13,
        "parallel_attempts": 6,
        "give_up": (40, 0.01),
    }
    # Small DS3 (LSTMs of 126,990 parameters): the DS1 recipe (cosine from 1e-2, stop at half
    # the threshold) with batches of 32 over 4,096 sequences and a 30-epoch cosine; inputs are
    # one-hot symbols (docs/mlds.md, "Specs").
    small_ds3 = small | {
        "per_class": 4,
        "val_size": 256,
        "max_epochs": 30,
        "batch_size": 32,
        "signed_inputs": False,
        "attempts": 3,
        "parallel_attempts": 1,
        "give_up": None,
    }
    paper = {"per_class": 1000}  # the field defaults are Table 3's sizes
    paper_ds3 = paper | {
        "seq_len": 256,
        "train_size": 4096,
        "eval_size": 512,
        "signed_inputs": False,
    }
    automata = tuple(range(100))
    return [
        MLDSSpec(name="mlds-ds1", family="mlds", subset="ds1", **small),
        # DS2: the DS1 recipe, so that the two zoos differ by the backdoor alone, and a warm-up
        # in which the loss skips the outputs the trigger inverts for 10 epochs: without it,
        # most Parity networks never learned the machine itself (docs/mlds.md, Training).
        MLDSSpec(name="mlds-ds2", family="mlds", subset="ds2", backdoor_warmup=10, **small),
        MLDSSpec(
            name="mlds-ds3",
            family="mlds",
            subset="ds3",
            automata=tuple(range(10)),
            **small_ds3,
        ),
        MLDSSpec(name="mlds-ds1-paper", family="mlds", subset="ds1", **paper),
        MLDSSpec(name="mlds-ds2-paper", family="mlds", subset="ds2", **paper),
        MLDSSpec(
            name="mlds-ds3-paper", family="mlds", subset="ds3", automata=automata, **paper_ds3
        ),
    ]


def family(name: str) -> MLDSFamily:
    """The MLDS family (``name`` is ``"mlds"``)."""
    return MLDSFamily()
