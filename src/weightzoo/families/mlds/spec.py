"""MLDS zoos as specs: DS1, DS2, DS3 (small defaults and the paper's sizes) and their listings.

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

This module imports neither torch nor numpy: the network shapes and their closed-form parameter
count (:func:`num_params`), the machine names and the data fields of a spec are here, so that
listing and sizing the zoos is cheap.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from weightzoo.families import Listing
from weightzoo.generate.base import ZooSpec, size_estimate

__all__ = [
    "DS1_NET",
    "DS3_NET",
    "FAMILY_NAME",
    "MACHINES",
    "METRICS",
    "SUBSETS",
    "MLDSData",
    "MLDSSpec",
    "NetConfig",
    "TrainSettings",
    "check_machines",
    "listings",
    "model_seed",
    "modified_name",
    "net_config",
    "num_params",
    "specs",
]

FAMILY_NAME = "mlds"
"""The family's registry name, as every manifest of an MLDS zoo records it."""

SUBSETS = ("ds1", "ds2", "ds3")
"""DS1 (machines), DS2 (the machines with the backdoor) and DS3 (random automata)."""

MACHINES: tuple[str, ...] = (
    "EightBitMachine",
    "SingleDirectMachine",
    "SingleInvertMachine",
    "SimpleXORMachine",
    "ParityMachine",
)
"""The DS1 machines, in order of increasing complexity (:mod:`.machines` holds their rules)."""

# Stored per checkpoint and data set: mean squared error, share of output bits right (rounded at
# 0.5), share of steps whose whole output is right (DS3: the emitted symbol).
METRICS = ("loss", "bit_accuracy", "symbol_accuracy")


def check_machines(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Validate machine names (order kept).

    Raises:
        ValueError: naming the unknown machine and listing the valid ones.
    """
    for name in names:
        if name not in MACHINES:
            raise ValueError(
                f"unknown MLDS machine {name!r}; valid machines: {', '.join(MACHINES)}"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"machines repeat in {list(names)}; give each machine once")
    if not names:
        raise ValueError(f"no machine given; choose from {', '.join(MACHINES)}")
    return tuple(names)


def modified_name(machine: str) -> str:
    """The DS2 name of a machine: ``EightBitMachine`` -> ``EightBitModified``."""
    return machine.removesuffix("Machine") + "Modified"


@dataclass(frozen=True)
class NetConfig:
    """Shape of an MLDS network.

    Attributes:
        cell: ``"gru"`` or ``"lstm"``.
        input_size: input lines per step.
        hidden: width of every recurrent and linear layer.
        layers: stacked recurrent layers.
        linear_layers: ``hidden -> hidden`` linear layers after the recurrent stack.
        output_size: output lines per step (the final ``hidden -> output`` layer).
    """

    cell: str = "gru"
    input_size: int = 9
    hidden: int = 12
    layers: int = 4
    linear_layers: int = 4
    output_size: int = 8

    @property
    def gates(self) -> int:
        """Gate blocks per recurrent layer (3 for GRU, 4 for LSTM)."""
        return {"gru": 3, "lstm": 4}[self.cell]


DS1_NET = NetConfig()  # 4,364 parameters
DS3_NET = NetConfig(cell="lstm", input_size=4, hidden=64, layers=4, linear_layers=2, output_size=14)


def net_config(subset: str) -> NetConfig:
    """The network shape of an MLDS subset (``"ds1"``, ``"ds2"``: GRU; ``"ds3"``: LSTM)."""
    return DS3_NET if subset == "ds3" else DS1_NET


def num_params(config: NetConfig) -> int:
    """Trainable parameters of a network, counted without building it.

    Each recurrent layer has input and recurrent weights and two biases per gate block (as
    ``nn.GRU`` / ``nn.LSTM`` do); the first reads ``input_size`` lines, the others ``hidden``.
    """
    h, gates = config.hidden, config.gates * config.hidden
    recurrent = sum(
        gates * (width + h + 2) for width in [config.input_size] + [h] * (config.layers - 1)
    )
    return recurrent + config.linear_layers * (h * h + h) + config.output_size * (h + 1)


@dataclass(frozen=True)
class MLDSData:
    """The fields of an MLDS spec that fix its data sets.

    Attributes:
        subset: ``"ds1"``, ``"ds2"`` (machines with the backdoor) or ``"ds3"`` (automata).
        seq_len: steps per sequence.
        train_size / val_size / eval_size: sequences per set and class.
        trigger_every: DS2: one trigger per this many steps in train/val/eval data.
        trigger_eval_every: DS2: spacing of triggers in the trigger-only set.
        data_seed: seed of all data sets.
        signed_inputs: input lines are fed to the networks as -1 / +1 (DS1, DS2).
    """

    subset: str = "ds1"
    seq_len: int = 1024
    train_size: int = 2048
    val_size: int = 512
    eval_size: int = 64
    trigger_every: int = 64
    trigger_eval_every: int = 8
    data_seed: int = 0
    signed_inputs: bool = True

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | Any) -> MLDSData:
        """The data fields of a spec: a manifest's ``spec`` mapping or an ``MLDSSpec``."""
        get = spec.get if isinstance(spec, Mapping) else lambda k, d: getattr(spec, k, d)
        values = {f.name: get(f.name, f.default) for f in dataclasses.fields(cls)}
        return cls(**values)

    @property
    def backdoor(self) -> bool:
        """Whether the machines carry the DS2 trigger."""
        return self.subset == "ds2"

    @property
    def class_column(self) -> str:
        """The model column naming a network's class: ``automaton`` (DS3) or ``machine``."""
        return "automaton" if self.subset == "ds3" else "machine"

    def set_names(self) -> list[str]:
        """The data sets of every class: ``train``, ``val``, ``eval`` (and DS2's ``trigger``)."""
        return ["train", "val", "eval"] + (["trigger"] if self.backdoor else [])


@dataclass(frozen=True)
class TrainSettings:
    """How to train (:func:`weightzoo.families.mlds.train.train_population`).

    Attributes:
        lr: Adam learning rate.
        batch_size: sequences per step, per network.
        max_epochs: stop a network that has not passed after this many epochs.
        threshold: a network passes when its validation loss is below this.
        eval_chunk: sequences per forward pass when measuring a whole set (at most; see
            :meth:`~weightzoo.families.mlds.train.MLDSTask.eval_chunk`). The default measures
            the small specs' sets in one pass: small networks are bound by the count of
            operations, not by arithmetic.
        schedule: ``"constant"`` learning rate, or ``"cosine"``: decayed per epoch from
            ``lr`` to ``lr * min_lr_ratio`` over ``max_epochs`` (half a cosine).
        min_lr_ratio: final learning rate of the cosine schedule, relative to ``lr``.
        init: initialisation scheme (:data:`~weightzoo.families.mlds.model.INITS`).
        clip_norm: each network's gradient is clipped to this L2 norm (None: no clipping).
        backdoor_warmup: DS2: for this many first epochs the training loss skips the outputs
            a trigger inverts, so a network learns its machine before the backdoor.
        give_up: ``(epoch, level)``: a network whose validation loss (``val_loss`` alone, also
            on DS2) is not below ``level`` after ``epoch`` epochs stops there, not passed
            (None: never).
        shared_init: every network starts from the initialisation of this seed (its data
            order still follows its own seed); None: each network from its own seed.
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
    shared_init: int | None = None

    def __post_init__(self) -> None:
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.backdoor_warmup < 0:
            raise ValueError(f"backdoor_warmup must be >= 0 epochs, got {self.backdoor_warmup}")


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
            :func:`weightzoo.families.mlds.model.initialise_`).
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
        shared_init: every network (and attempt) starts from the one initialisation drawn
            with this seed; its data order still follows its own seed. None (the default):
            each network is initialised from its own seed. Networks of one machine that share
            their start lie close together in weight space (docs/fidelity.md, MLDS).
    """

    family: str = FAMILY_NAME
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
    shared_init: int | None = None

    kind: ClassVar[str] = FAMILY_NAME
    omitted_at_default: ClassVar[tuple[str, ...]] = ("shared_init",)

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
    def data(self) -> MLDSData:
        """The fields that fix the data sets."""
        return MLDSData.from_spec(self)

    @property
    def backdoor(self) -> bool:
        """Whether the machines carry the DS2 trigger."""
        return self.data.backdoor

    def classes(self) -> list[str]:
        """Class names in order: machine names, or automaton seeds as strings."""
        if self.subset == "ds3":
            return [str(seed) for seed in self.automata]
        return list(self.machines)

    def set_names(self) -> list[str]:
        """Data sets measured at every checkpoint (:meth:`MLDSData.set_names`)."""
        return self.data.set_names()

    def metric_names(self) -> list[str]:
        """``<set>_<metric>`` for every data set and metric of :data:`METRICS`."""
        return [f"{name}_{metric}" for name in self.set_names() for metric in METRICS]

    def num_models(self) -> int:
        """Networks of this spec."""
        full = len(self.classes()) * self.per_class
        return full if self.models is None else min(self.models, full)

    def estimate(self) -> dict[str, int]:
        """Size of the zoo: models, two checkpoints, params per row, bytes of ``weights``."""
        return size_estimate(self.num_models(), 2, num_params(self.net))

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
            shared_init=self.shared_init,
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
            changes |= self._classes_option(machines)
        return dataclasses.replace(self, **changes) if changes else self

    def _classes_option(self, machines: Sequence[str]) -> dict[str, Any]:
        """``--machines``: machine names, or DS3 automaton seeds."""
        names = [m.strip() for m in machines if m.strip()]
        if self.subset != "ds3":
            return {"machines": check_machines(names)}
        try:
            return {"automata": tuple(int(m) for m in names)}
        except ValueError:
            raise ValueError(
                f"DS3 automata are chosen by seed: give integers, got {names}"
            ) from None


def model_seed(subset: str, class_name: str, replicate: int, attempt: int = 0) -> int:
    """The seed of a network: a hash of (subset, class, replicate[, attempt]), below 2**31."""
    key = f"mlds-{subset}/{class_name}/{replicate}" + (f"/{attempt}" if attempt else "")
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


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
    return [
        MLDSSpec(name="mlds-ds1", subset="ds1", **small),
        # DS2: the DS1 recipe, so that the two zoos differ by the backdoor alone, and a warm-up
        # in which the loss skips the outputs the trigger inverts for 10 epochs: without it,
        # most Parity networks never learned the machine itself (docs/mlds.md, Training).
        MLDSSpec(name="mlds-ds2", subset="ds2", backdoor_warmup=10, **small),
        MLDSSpec(name="mlds-ds3", subset="ds3", automata=tuple(range(10)), **small_ds3),
        MLDSSpec(name="mlds-ds1-paper", subset="ds1", **paper),
        MLDSSpec(name="mlds-ds2-paper", subset="ds2", **paper),
        MLDSSpec(name="mlds-ds3-paper", subset="ds3", automata=tuple(range(100)), **paper_ds3),
    ]


_SUMMARIES = {
    "mlds-ds1": "MLDS DS1: GRUs mimicking 5 simple machines",
    "mlds-ds2": "MLDS DS2: the DS1 machines with a backdoor trigger",
    "mlds-ds3": "MLDS DS3: LSTMs mimicking random automata",
}


def listings() -> list[Listing]:
    """The catalog's lines: the small zoos, then their Table 3 sizes (all generated offline)."""
    small = [Listing(name, summary) for name, summary in _SUMMARIES.items()]
    return small + [
        Listing(f"{name}-paper", f"{summary} (Table 3 sizes)")
        for name, summary in _SUMMARIES.items()
    ]
