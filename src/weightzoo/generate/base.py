"""The contract between the zoo runner and the families that train models.

A *family* (MLDS, Model Zoos, trajectories) knows how to plan and train a population. The runner
(:mod:`weightzoo.generate.runner`) knows how to split models, group them into shards, resume and
write. The two meet only through the types below, so a family never touches storage and the
runner never touches torch.

This module imports no torch (``ModelRecord`` is loaded on first use), so that a family's
``spec.py`` built on it stays cheap to list.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import pkgutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from weightzoo._lazy import lazy_getattr
from weightzoo.errors import InvalidOptionError
from weightzoo.generate.sampling import SAMPLES, stratified_positions
from weightzoo.storage.layout import Layout

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from weightzoo.blocks import ModelRecord
    from weightzoo.generate.progress import EpochCallback
    from weightzoo.landscape.driver import Selection
    from weightzoo.landscape.options import LandscapeOptions
    from weightzoo.storage.sidecar import SidecarRecord
    from weightzoo.zoo import Zoo

__all__ = [
    "BlockReport",
    "BlockRun",
    "Family",
    "GridOptions",
    "GroupedSpec",
    "LandscapeParts",
    "ModelPlan",
    "ModelRecord",
    "RootedFamily",
    "ZooSpec",
    "size_estimate",
]


# ModelRecord on first use: weightzoo.blocks imports torch
__getattr__ = lazy_getattr(__name__, {"ModelRecord": "weightzoo.blocks"})


@dataclass(frozen=True)
class ZooSpec:
    """Base of every zoo spec: the single source of truth for what a zoo contains.

    Families subclass this (as frozen dataclasses) and add their own fields. Everything in a spec
    must be JSON-serialisable (ints, floats, strings, bools, lists/tuples, dicts of those), since
    the spec is stored verbatim in the manifest and compared on resume. A field declared with
    ``compare=False`` (a machine's path, such as ``data_dir``) is no part of the spec's identity:
    :meth:`to_dict` leaves it out.

    Attributes:
        name: the zoo's name, e.g. ``"mlds-ds1"``; also the default directory name.
        family: the family that trains it (its name in :mod:`weightzoo.families`).
        split_fractions: train/val/test fractions, assigned by model (never by checkpoint).
        split_seed: seed of the stratified split permutation.
        shard_models: models per shard; one shard is also one population trained together.
        epochs_per_shard: if set, a block of models is written as several shards, each with
            this many consecutive checkpoints, so that a user can fetch only some epochs.
        diverge_threshold: a checkpoint with any ``abs(weight)`` above this is not viable.
    """

    name: str
    family: str
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 42
    shard_models: int = 64
    epochs_per_shard: int | None = None
    diverge_threshold: float = 1e3

    kind: ClassVar[str] = "base"

    # Fields added after zoos of the class were published: left out of to_dict while at their
    # default, so that those zoos keep their spec and fingerprint (and resume).
    omitted_at_default: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON data (tuples become lists), with its class name.

        Fields declared with ``compare=False`` are left out, and those of
        :attr:`omitted_at_default` while at their default.
        """
        data = json.loads(json.dumps(dataclasses.asdict(self)))
        fields = dataclasses.fields(self)
        for f in fields:
            if not f.compare:  # not identity: two machines' paths must not change the print
                del data[f.name]
        defaults = {f.name: f.default for f in fields}
        for name in self.omitted_at_default:
            if getattr(self, name) == defaults[name]:
                del data[name]
        data["spec_class"] = type(self).__name__
        return data

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of :meth:`to_dict`; equal specs have equal prints."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def replace(self, **changes: Any) -> ZooSpec:
        """A copy of the spec with some fields changed."""
        return dataclasses.replace(self, **changes)

    def build_model(self, columns: dict[str, Any] | None = None):
        """A freshly initialised module of this zoo's rows.

        Args:
            columns: the model's own columns where they change the module (``activation``).

        Returns:
            :func:`weightzoo.architectures.build_model` of :meth:`to_dict`.
        """
        from weightzoo.architectures import build_model  # torch only when asked

        return build_model(self.to_dict(), columns)

    def override(self, **options: Any) -> ZooSpec:
        """Apply command-line options such as ``models``, ``epochs``, ``per_class``.

        Options that are ``None`` are ignored. Families override this to accept the options
        that make sense for them (and must keep the result deterministic: ``models=N`` takes
        the first N models of the spec's order, a deterministic subset).

        Raises:
            ValueError: for an option this spec does not accept.
        """
        given = {k: v for k, v in options.items() if v is not None}
        if given:
            raise ValueError(
                f"zoo {self.name!r} does not accept the options {sorted(given)}; "
                "run `weightzoo generate --help` for the options each family takes"
            )
        return self


@dataclass(frozen=True)
class GroupedSpec(ZooSpec):
    """Base of the spec of a grouped zoo: an ordered list of named version-1 zoo specs.

    A grouped zoo (format version 2) holds models of different layouts (widths, heads) in
    groups; each group is generated from its own spec into ``<out>/groups/<name>`` as a complete
    version-1 zoo, in the order :meth:`groups` gives, and model ids run on across groups. A
    family's ``train`` receives the group's directory as :attr:`BlockRun.root`, so a later group
    can read an earlier one at ``root.parent / "<name>"`` (a fine-tuning group reading its
    pretraining group). Subclasses are frozen dataclasses with their own fields and implement
    :meth:`groups`; the manifest stores :meth:`to_dict`, which includes every group's spec, so a
    change to any group changes the fingerprint.
    """

    kind: ClassVar[str] = "grouped"

    def groups(self) -> list[tuple[str, ZooSpec]]:
        """The groups, in generation order: ``[(name, spec), ...]``.

        Names match ``[a-z0-9][a-z0-9_-]*`` and are unique; each spec is a version-1 spec
        (not a :class:`GroupedSpec`).
        """
        raise NotImplementedError(f"{type(self).__name__} must define groups()")

    def estimate(self) -> dict[str, int]:
        """Size without torch, counted as :meth:`Family.estimate` counts a grouped spec.

        Models and bytes are summed over the groups; checkpoints and params are the largest
        group's. Empty when a group's spec has no closed-form ``estimate``.
        """
        specs = [spec for _, spec in self.groups()]
        if not all(hasattr(spec, "estimate") for spec in specs):
            return {}  # a group's family sizes itself only through its layout, which needs torch
        return grouped_size([spec.estimate() for spec in specs])

    def to_dict(self) -> dict[str, Any]:
        """The spec's own fields, plus ``group_specs``: ``[[name, spec dict], ...]``."""
        data = super().to_dict()
        data["group_specs"] = [[name, spec.to_dict()] for name, spec in self.groups()]
        return data


class BlockReport(Protocol):
    """What a block's trainer calls after every epoch (:meth:`Family.block_progress` makes one).

    ``report(done)`` moves the block's bar by ``done`` units (optimizer steps, model-epochs)
    and tells the runner that every model of the block trained that epoch; ``report(done,
    models)`` tells it that ``models`` did (a block trained as several populations reports
    each population's epochs with that population's size).
    """

    def __call__(self, done: int, models: int | None = None, /) -> None:
        """Report one epoch."""


@dataclass(frozen=True)
class BlockRun:
    """How one block is trained: what the runner gives every family's :meth:`Family.train`.

    Attributes:
        device: torch device.
        progress: show the family's own progress bar (the runner shows its own, and passes
            ``False``).
        on_epoch: optional; a family calls ``on_epoch(advanced, passed)`` once after every
            epoch of every population it trains: ``advanced`` is the number of models that
            trained during that epoch (the whole population, or only those not yet stopped
            early), ``passed`` the number of models of this block that have passed the
            family's threshold so far (cumulative over the block's populations), or ``None``
            where the family has no such notion. The runner counts model-epochs against
            ``len(plans) * max(checkpoint epochs)`` for the block, so a model that stops early
            or a family that never calls ``on_epoch`` is still counted in full when the block
            is written. The callback may write to a pipe to the parent process: call it from
            the training thread. Where it is given, every
            :func:`weightzoo.generate.population.train` call with a ``progress`` callback also
            reports the steps done within each epoch (:mod:`weightzoo.generate.progress`), so a
            family that reports its toolkit epochs here moves the bar within them with nothing
            more to do; :meth:`Family.block_progress` calls it for the default :meth:`train`.
        root: the zoo's directory (a group's, in a grouped zoo), which the runner always
            gives, so that a later group can read an earlier one at ``root.parent / "<name>"``
            (a fine-tuning group reading its pretraining group). ``None`` where the family is
            called outside the runner: a family that reads it must then refuse in one line.
    """

    device: str = "cpu"
    progress: bool = True
    on_epoch: EpochCallback | None = None
    root: Path | None = None


@dataclass(frozen=True)
class RootedFamily:
    """A family with its zoo directory bound: its ``train`` gets ``run.root`` set to ``root``.

    The runner wraps every family so that engines and workers call ``train`` without knowing
    the zoo's directory; it pickles like the family it holds (for worker processes and Ray
    tasks).
    """

    family: Any
    root: Path

    def layout(self, spec: ZooSpec) -> Layout:
        """As the family's."""
        return self.family.layout(spec)

    def checkpoint_epochs(self, spec: ZooSpec) -> list[int]:
        """As the family's."""
        return self.family.checkpoint_epochs(spec)

    def metric_names(self, spec: ZooSpec) -> list[str]:
        """As the family's."""
        return self.family.metric_names(spec)

    def plan(self, spec: ZooSpec) -> list[ModelPlan]:
        """As the family's."""
        return self.family.plan(spec)

    def train(self, spec: ZooSpec, plans: Sequence[ModelPlan], run: BlockRun) -> list[ModelRecord]:
        """The family's ``train``, with ``run.root`` set to this zoo's directory."""
        return self.family.train(spec, plans, run=dataclasses.replace(run, root=self.root))


@dataclass(frozen=True)
class GridOptions:
    """``--models``, ``--train-epochs`` and ``--data-dir`` for a spec of a fixed grid of models.

    Mix in before :class:`ZooSpec` (``class MySpec(GridOptions, ZooSpec)``). The spec has the
    fields ``models`` (``None``: the whole grid) and ``epochs``, a method ``grid_models()``, and
    optionally a ``data_dir`` field. ``models=N`` keeps the first N models of the grid's order,
    or, with ``sample="stratified"``, a seeded sample that holds every value of every
    hyperparameter where N allows (:func:`weightzoo.generate.sampling.stratified_positions`).

    Attributes:
        sample: ``"first"`` (the first ``models`` of the grid) or ``"stratified"``.
        sample_seed: seed of the stratified sample.
    """

    sample: str = "first"
    sample_seed: int = 0

    # Added after grid zoos were published: a spec at the defaults keeps its fingerprint.
    omitted_at_default: ClassVar[tuple[str, ...]] = ("sample", "sample_seed")

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`ZooSpec.to_dict`; a stratified sample records its seed, even the default."""
        data = super().to_dict()  # type: ignore[misc]
        if self.sample != "first":
            data["sample_seed"] = self.sample_seed
        return data

    def override(
        self,
        models: int | None = None,
        epochs: int | None = None,
        sample: str | None = None,
        sample_seed: int | None = None,
        **rest: Any,
    ) -> ZooSpec:
        """Apply ``--models``, ``--train-epochs``, ``--data-dir`` and the sample's kind and seed.

        ``models=N`` alone keeps ``sample`` as it is (``"first"`` by default: the first N).

        Raises:
            ValueError: for another option, or a non-positive count.
        """
        changes: dict[str, Any] = {}
        data_dir = rest.pop("data_dir", None) if hasattr(self, "data_dir") else None
        ZooSpec.override(self, **rest)  # refuses options the spec does not take
        if models is not None:
            if int(models) < 1:
                raise ValueError(f"--models must be at least 1, got {models}")
            changes["models"] = min(int(models), self.grid_models())
        if epochs is not None:
            if int(epochs) < 1:
                raise ValueError(f"--train-epochs must be at least 1, got {epochs}")
            changes["epochs"] = int(epochs)
        if data_dir is not None:
            changes["data_dir"] = str(data_dir)
        if sample is not None:
            if sample not in SAMPLES:
                raise ValueError(f"sample must be one of {', '.join(SAMPLES)}, got {sample!r}")
            changes["sample"] = str(sample)
        if sample_seed is not None:
            changes["sample_seed"] = int(sample_seed)
        return dataclasses.replace(self, **changes) if changes else self  # type: ignore[type-var]

    def grid_models(self) -> int:
        """Models of the full grid (ignoring ``models``)."""
        raise NotImplementedError

    def num_models(self) -> int:
        """Models of this spec (``models`` if set)."""
        full = self.grid_models()
        models = self.models  # type: ignore[attr-defined]
        return full if models is None else min(models, full)

    def grid_positions(self, axes: Sequence[Mapping[str, Any]]) -> list[int]:
        """The full grid's positions this spec keeps, in grid order.

        Args:
            axes: per position of the full grid, its hyperparameters ``{axis: value}`` (not
                the seed: positions with equal values are seeds of one node).

        Returns:
            ``0 .. num_models()-1`` for ``sample="first"``, else the stratified sample.
        """
        count = self.num_models()
        if self.sample not in SAMPLES:
            raise InvalidOptionError(
                f"spec {getattr(self, 'name', '?')!r}: unknown sample {self.sample!r}; "
                f"use one of {', '.join(SAMPLES)}"
            )
        if self.sample == "first" or count == len(axes):
            return list(range(count))
        return stratified_positions(axes, count, self.sample_seed)

    def cell_plans(
        self, axes: Sequence[str], columns: Callable[..., dict[str, Any]]
    ) -> list[ModelPlan]:
        """The kept plans of a grid of cells repeated per replicate (replicate-major).

        For a spec with ``cells()`` (tuples of the ``axes`` values, in model order within one
        replicate) and ``seed_start``: model ``i`` of the full grid is cell ``i % len(cells)``,
        with seed ``seed_start + i`` and stratum the cell's values joined by ``:``; then
        :meth:`sampled` keeps this spec's models.

        Args:
            axes: the hyperparameter columns, in the order of a cell's values.
            columns: a cell's values (as arguments) to the model's columns.
        """
        cells = self.cells()  # type: ignore[attr-defined]
        plans = []
        for model_id in range(self.grid_models()):
            cell = cells[model_id % len(cells)]
            seed = self.seed_start + model_id  # type: ignore[attr-defined]
            stratum = ":".join(str(value) for value in cell)
            plans.append(ModelPlan(model_id, seed, stratum, columns(*cell)))
        return self.sampled(plans, axes)

    def sampled(self, plans: Sequence[ModelPlan], axes: Sequence[str]) -> list[ModelPlan]:
        """The kept plans of the full grid's ``plans``, renumbered ``0 .. N-1`` in grid order.

        Each kept plan keeps its seed, stratum and columns: a sampled model is the same model
        as in the full zoo. ``axes`` names the columns that are hyperparameters.
        """
        positions = self.grid_positions([{a: p.columns[a] for a in axes} for p in plans])
        return [dataclasses.replace(plans[p], model_id=i) for i, p in enumerate(positions)]


@dataclass(frozen=True)
class ModelPlan:
    """What is known about one model before it is trained.

    Attributes:
        model_id: global id, ``0 .. num_models-1`` in the spec's order; stable across runs.
        seed: the model's own seed (init, data order, dropout).
        stratum: models with the same stratum are split 70/15/15 among themselves, so that
            every split holds every class (e.g. the machine name, or the hyperparameter node).
        columns: per-model metadata known in advance (hyperparameters, machine, backdoor flag):
            ``{column: scalar}``; stored as ``models/<column>``.
    """

    model_id: int
    seed: int
    stratum: str = ""
    columns: dict[str, Any] = field(default_factory=dict)


def grouped_size(parts: Sequence[Mapping[str, int]]) -> dict[str, int]:
    """The size of a grouped zoo from its groups' sizes (:func:`size_estimate` each).

    Models and bytes add up; checkpoints and params are the largest group's.
    """
    return {
        "models": sum(p["models"] for p in parts),
        "checkpoints": max(p["checkpoints"] for p in parts),
        "params": max(p["params"] for p in parts),
        "bytes": sum(p["bytes"] for p in parts),
    }


@dataclass
class LandscapeParts:
    """What the zoo-level landscape driver measures a zoo's models with.

    The generic driver builds these from a zoo's evaluation task (one module per activation,
    the training split for every model); a family whose models each have their own data gives
    its own (:meth:`Family.landscape_parts`).

    Attributes:
        groups: each selected model's group key: a group's models share a module and data.
        module: the module of a group (its parameters replaced by each row's).
        data: the batches ``[(inputs, targets)]`` a group's models are measured on.
        loss: ``loss(outputs, targets)``, a scalar.
        accuracy: ``accuracy(outputs, targets)``, a scalar.
        sibling_columns: model columns that replace the zoo's where the driver pairs models
            (``node``: models of one node are siblings).
    """

    groups: np.ndarray
    module: Callable[[str], nn.Module]
    data: Callable[[str], list[tuple[torch.Tensor, torch.Tensor]]]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    accuracy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    sibling_columns: dict[str, np.ndarray] = field(default_factory=dict)


def size_estimate(models: int, checkpoints: int, params: int) -> dict[str, int]:
    """The size of a zoo as ``weightzoo list`` shows it: counts and bytes of float32 ``weights``."""
    return {
        "models": models,
        "checkpoints": checkpoints,
        "params": params,
        "bytes": models * checkpoints * params * 4,
    }


SpecT = TypeVar("SpecT", bound=ZooSpec)


class Family(Generic[SpecT]):
    """What the runner needs from a family, and what the engines ask it about the family's zoos.

    A family lives in ``weightzoo/families/<name>/`` (``family.py`` holds its subclass) and is
    found by name through :mod:`weightzoo.families`. Subclasses define the runner's contract
    (:meth:`layout`, :meth:`checkpoint_epochs`, :meth:`metric_names`, :meth:`plan`, and
    :attr:`trainer` or :meth:`train_block` with :meth:`progress_total`, or :meth:`train`) and
    bind their spec class, so that the registry refuses a spec of another class once and the
    methods need no checks; :meth:`layout` and :meth:`metric_names` have defaults (the layout of
    :meth:`build_model`'s module, and :attr:`metrics`). The optional hooks answer ``None`` where
    a family has nothing of its own, and the engine's generic code applies.

    Attributes:
        name: the family's registry name (a manifest's ``family``).
        spec_class: the spec class (or classes) the family trains.
        progress_unit: the unit of the default :meth:`train`'s bar.
        trainer: where the default :meth:`train_block` lives, as ``"package.module:function"``
            (a function of ``train_block``'s parameters, imported when a block trains, so that
            listing and evaluating never load the training code); ``None``: the family defines
            :meth:`train_block` or :meth:`train`.
        metrics: the default :meth:`metric_names`, for a family whose every spec stores the
            same metrics (empty: the family defines :meth:`metric_names`).
    """

    name: ClassVar[str]
    spec_class: ClassVar[type[ZooSpec] | tuple[type[ZooSpec], ...]]
    progress_unit: ClassVar[str] = "step"
    trainer: ClassVar[str | None] = None
    metrics: ClassVar[tuple[str, ...]] = ()

    # -- the runner's contract -------------------------------------------------------------
    def layout(self, spec: SpecT) -> Layout:
        """The layout of one model's flattened weights.

        The default lays out the module :meth:`build_model` builds for the spec (a row whose
        columns change nothing); a family whose rows differ from that defines its own.
        """
        module = self.build_model(spec.to_dict(), {})
        if module is None:
            raise NotImplementedError(f"{type(self).__name__} must define layout()")
        from weightzoo.features import layout_of  # torch only when asked

        return layout_of(module)

    def checkpoint_epochs(self, spec: SpecT) -> list[int]:
        """The label (epoch) of each checkpoint, in checkpoint-axis order.

        The default is the spec's own ``checkpoint_epochs()``, where its class defines one.
        """
        own = getattr(spec, "checkpoint_epochs", None)
        if own is None:
            raise NotImplementedError(f"{type(self).__name__} must define checkpoint_epochs()")
        return own()

    def metric_names(self, spec: SpecT) -> list[str]:
        """Names of the per-checkpoint metrics every record carries (default: :attr:`metrics`)."""
        if not self.metrics:
            raise NotImplementedError(f"{type(self).__name__} must define metric_names()")
        return list(self.metrics)

    def plan(self, spec: SpecT) -> list[ModelPlan]:
        """One plan per model, ordered by ``model_id``."""
        raise NotImplementedError(f"{type(self).__name__} must define plan()")

    def train(self, spec: SpecT, plans: Sequence[ModelPlan], run: BlockRun) -> list[ModelRecord]:
        """Train the models of ``plans`` (one shard's block) and return one record per plan.

        Must be deterministic: same spec, plans and device give the same records. Models that
        fail (diverge, never reach a threshold) are returned all the same, flagged in columns.
        The runner calls this with a fixed torch thread count (one thread per block, in a
        worker process or in its own), so a family must not raise the count itself; it may
        lower it and must then restore it.

        The default shows a bar of :meth:`progress_total` units and runs :meth:`train_block`
        with a report that moves it; a family that counts passed models overrides ``train``.

        Args:
            spec: the zoo spec.
            plans: the block's models.
            run: the device, the progress wanted (the family's bar, the runner's ``on_epoch``)
                and the zoo's directory.
        """
        with self.block_progress(spec, plans, self.progress_total(spec, plans), run) as report:
            return self.train_block(spec, plans, run.device, report)

    def progress_total(self, spec: SpecT, plans: Sequence[ModelPlan]) -> int:
        """Units of the default :meth:`train`'s bar over one block (optimizer steps...)."""
        raise NotImplementedError(f"{type(self).__name__} must define progress_total()")

    def train_block(
        self, spec: SpecT, plans: Sequence[ModelPlan], device: str, report: BlockReport
    ) -> list[ModelRecord]:
        """What the default :meth:`train` runs: the block's records, in plan order.

        The default calls the function that :attr:`trainer` names with these arguments,
        imported only when a block trains.

        Args:
            spec: the zoo spec.
            plans: the block's models.
            device: torch device.
            report: call after each epoch (see :class:`BlockReport`).
        """
        if self.trainer is None:
            raise NotImplementedError(
                f"{type(self).__name__} must define train_block() or train(), or name its trainer"
            )
        trainer: Callable[..., list[ModelRecord]] = pkgutil.resolve_name(self.trainer)
        return trainer(spec, plans, device, report)

    # -- what every family shares ----------------------------------------------------------
    def estimate(self, spec: SpecT) -> dict[str, int]:
        """Size of the zoo: models, checkpoints, params per row, and bytes of ``weights``.

        A grouped spec sums its groups' models and bytes; its checkpoints and params are the
        largest group's.
        """
        if isinstance(spec, GroupedSpec):
            return grouped_size([self.estimate(group) for _, group in spec.groups()])  # type: ignore[arg-type]
        models, checkpoints = len(self.plan(spec)), len(self.checkpoint_epochs(spec))
        return size_estimate(models, checkpoints, self.layout(spec).num_params)

    def override(self, spec: SpecT, **options: Any) -> ZooSpec:
        """``spec`` with command-line options applied (``spec.override``; :class:`GridOptions`).

        Raises:
            InvalidOptionError: for an option the spec does not take or a value it refuses,
                in one line naming the zoo.
        """
        try:
            return spec.override(**options)
        except InvalidOptionError:
            raise
        except ValueError as exc:  # what ZooSpec.override documents for an unusable option
            raise InvalidOptionError(f"zoo {spec.name!r}: {exc}") from None

    @contextlib.contextmanager
    def block_progress(
        self, spec: SpecT, plans: Sequence[ModelPlan], total: int, run: BlockRun
    ) -> Iterator[BlockReport]:
        """A progress bar of ``total`` units over one block, and the report that moves it.

        ``report(done, models=None)`` advances the bar by ``done`` units and tells the runner's
        ``run.on_epoch`` that ``models`` models trained that epoch (``None``: all of the
        block's; a family that trains a block as several populations passes the population's
        size). The family has no pass count.

        Args:
            spec: the zoo spec (the bar's label).
            plans: the block's models.
            total: units of the whole block (optimizer steps, model-epochs).
            run: ``train``'s run: the bar shows where ``run.progress`` asks.
        """
        from tqdm.auto import tqdm  # the bar only when a block trains: listing stays light

        hidden = not run.progress
        bar = tqdm(
            total=total, disable=hidden, desc=spec.name, unit=self.progress_unit, leave=False
        )

        def report(done: int, models: int | None = None, /) -> None:
            bar.update(done)
            if run.on_epoch is not None:
                run.on_epoch(len(plans) if models is None else models, None)

        try:
            yield report
        finally:
            bar.close()

    # -- optional hooks: None where the family has none ----------------------------------------
    def build_model(self, spec: Mapping[str, Any], columns: Mapping[str, Any]) -> nn.Module | None:
        """The freshly initialised module of a row of the zoo whose manifest spec is ``spec``.

        Called by :func:`weightzoo.architectures.build_model` (also on the ``meta`` device, to
        check a manifest's layout before anything is allocated), with the row's ``columns``.
        """
        return None

    def eval_task(self, zoo: Zoo, spec: Mapping[str, Any]) -> Any | None:
        """The evaluation task of :mod:`weightzoo.functional` for ``zoo`` (spec: its task spec).

        The task has the interface of :class:`weightzoo.functional.ImageEvalTask` (subclass it);
        ``None``: :func:`weightzoo.functional.evaluate` does not know the family's data.
        """
        return None

    def landscape_plan(self, zoo: Zoo) -> Callable[..., SidecarRecord] | None:
        """The family's own measurement of ``zoo``'s landscape side file, or ``None``.

        :func:`weightzoo.landscape.zoo_metrics.compute_zoo_landscape` calls it with ``metrics``,
        ``split``, ``epochs``, ``options`` (a
        :class:`~weightzoo.landscape.options.LandscapeOptions`; ``None``: the engine's own
        defaults), ``data_dir``, ``device``, ``progress`` and ``name`` (a measure whose data is
        its own making ignores the data knobs and ``data_dir``); ``None``: the generic driver
        measures the zoo on its :meth:`eval_task`'s training data.
        """
        return None

    def landscape_parts(
        self, selection: Selection, options: LandscapeOptions, device: torch.device
    ) -> LandscapeParts | None:
        """The modules, data and loss the generic landscape driver measures a zoo with.

        For a family whose models each have their own data (and so no :meth:`landscape_plan`
        of their own); ``None``: the driver measures every model on the training split of the
        :meth:`eval_task`.

        Args:
            selection: the checkpoints measured: the zoo (its spec checked against its
                layout) and the selected models' columns, one value per model.
            options: the knobs; ``batches`` training batches of ``batch_size`` items each is
                what a model is measured on.
            device: where the data go.
        """
        return None

    def finalize(self, spec: SpecT, root: Path, device: str = "cpu") -> None:
        """Called by the runner once the zoo at ``root`` is complete (on every run).

        Must be idempotent, e.g. write side files computed from the stored checkpoints. The
        default writes nothing.
        """
        return None

    def tables(self) -> Mapping[str, Callable[..., Any]] | None:
        """The family's own report tables by table id, or ``None``."""
        return None

    def importer(self) -> Callable[..., Any] | None:
        """The importer of the family's published zoos, or ``None``."""
        return None
