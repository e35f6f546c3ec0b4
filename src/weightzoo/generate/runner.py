"""Run a zoo spec: split models, train them block by block, write shards, resume.

One block of models is one population trained together and one shard (or several, one per
group of epochs). Blocks already on disk are skipped, so an interrupted run resumes where it
stopped and never duplicates a model; a block cut short goes on from its last saved epoch
(its state is kept in ``<zoo>/.resume`` while it trains, see
:mod:`weightzoo.generate.resume`).

Blocks train on an engine: ``local`` (this process, or worker processes on this machine) or
``ray`` (Ray tasks on a cluster, :mod:`weightzoo.generate.ray_engine`). Either way every block
comes back to the one writer in this process. A run may also train one *slice* of the blocks
(``slice=(i, n)``: the blocks whose index in storage order is ``i`` modulo ``n``) for a batch
job array; the slices' manifests are merged by :func:`weightzoo.storage.merge.merge_slices`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path

from weightzoo import __version__
from weightzoo.blocks import STATS_PRESET, epoch_groups, stratified_splits, write_block
from weightzoo.errors import InvalidOptionError
from weightzoo.features import statistics_names
from weightzoo.generate.base import (
    BlockRun,
    Family,
    GroupedSpec,
    ModelPlan,
    ModelRecord,
    RootedFamily,
    ZooSpec,
)
from weightzoo.generate.devices import check_device
from weightzoo.generate.progress import ModelEpochBar
from weightzoo.generate.ray_engine import RayOptions, import_ray, run_blocks
from weightzoo.generate.resume import (
    DEFAULT_INTERVAL,
    ResumeSlot,
    prepare_resume_dir,
    remove_resume_dir,
    remove_state_files,
    state_file_name,
)
from weightzoo.generate.specs import family_for
from weightzoo.generate.workers import BlockPool, future_succeeded, train_block
from weightzoo.storage.groups import GroupedManifest
from weightzoo.storage.manifest import SPLITS, Manifest, shard_file_name
from weightzoo.storage.writer import ZooWriter

log = logging.getLogger(__name__)
__all__ = [
    "ENGINES",
    "STATS_PRESET",
    "RunOptions",
    "assign_splits",
    "epoch_groups",
    "generate",
    "generate_zoo",
    "plan_blocks",
    "slice_blocks",
]
ENGINES = ("local", "ray")


def assign_splits(plans: Sequence[ModelPlan], spec: ZooSpec) -> dict[int, str]:
    """Split models by ``spec.split_fractions``, stratified by ``plan.stratum``.

    The rule is :func:`weightzoo.blocks.stratified_splits` (shared with the importers), seeded
    with ``spec.split_seed``.

    Returns:
        ``{model_id: split}``.
    """
    return stratified_splits(
        [p.model_id for p in plans],
        [p.stratum for p in plans],
        fractions=spec.split_fractions,
        seed=spec.split_seed,
    )


@dataclass(frozen=True)
class Block:
    """A block of models of one split: one population, one shard per epoch group."""

    split: str
    first: int  # storage position of the first model
    plans: tuple[ModelPlan, ...]

    @property
    def last(self) -> int:
        """One past the storage position of the last model."""
        return self.first + len(self.plans)


@dataclass(frozen=True)
class Pending:
    """The blocks left to train, and what the runner does around each: what an engine is given.

    Attributes:
        blocks: the blocks to train.
        bar: the run's bar, which every block's progress reports move.
        slot: a block's resume slot (None: nothing is saved).
        keep: writes a block's records, in this process, as soon as they are back.
    """

    blocks: Sequence[Block]
    bar: ModelEpochBar
    slot: Callable[[Block], ResumeSlot | None]
    keep: Callable[[Block, list[ModelRecord]], None]

    def largest_first(self) -> list[Block]:
        """The blocks, largest first: better balance at the end."""
        return sorted(self.blocks, key=lambda b: len(b.plans), reverse=True)


def plan_blocks(plans: Sequence[ModelPlan], spec: ZooSpec) -> list[Block]:
    """Storage order (by split, then model id) cut into blocks of ``spec.shard_models``."""
    splits = assign_splits(plans, spec)
    blocks: list[Block] = []
    position = 0
    for split in SPLITS:
        members = sorted(
            (p for p in plans if splits[p.model_id] == split), key=lambda p: p.model_id
        )
        for start in range(0, len(members), spec.shard_models):
            chunk = tuple(members[start : start + spec.shard_models])
            blocks.append(Block(split, position, chunk))
            position += len(chunk)
    return blocks


def slice_blocks(blocks: Sequence[Block], index: int, count: int) -> list[Block]:
    """The blocks of slice ``index`` of ``count``: those at positions ``index``, ``index + n``...

    Positions are in :func:`plan_blocks` order (storage order), so the assignment depends only
    on the spec, and round-robin keeps the slices within one block of each other in size.

    Raises:
        InvalidOptionError: unless ``0 <= index < count``.
    """
    if not 0 <= index < count:
        raise InvalidOptionError(
            f"--slice {index}/{count}: the index must be in 0..{count - 1} (slices are numbered "
            "from 0, as SLURM_ARRAY_TASK_ID is for --array=0-N)"
        )
    return [block for k, block in enumerate(blocks) if k % count == index]


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _train_in_workers(
    family: Family, spec: ZooSpec, pending: Pending, device: str, workers: int
) -> None:
    """Train the pending blocks in ``workers`` processes, keeping each as soon as it is done.

    On any exception (Ctrl-C, SIGTERM turned into an exception, a failing block) the blocks not
    started are cancelled, the running ones are stopped, and every block that had finished is
    still kept (written) before the exception goes on; the others keep their saved state.
    """
    keep = pending.keep
    with BlockPool(workers, pending.bar, device) as pool:
        futures = {
            pool.submit(family, spec, b.plans, device, b.first, pending.slot(b)): b
            for b in pending.largest_first()
        }
        kept = set()
        writing = None
        try:
            for writing in as_completed(futures):
                keep(futures[writing], writing.result())
                kept.add(writing)
        except BaseException as error:
            pool.stop()
            # A write cut short by Ctrl-C or SIGTERM is done again; one that failed is not.
            if isinstance(error, Exception):
                kept.add(writing)
            for future, block in futures.items():
                if future not in kept and future_succeeded(future):
                    keep(block, future.result())
            raise


@dataclass(frozen=True)
class RunOptions:
    """How :func:`generate` trains and shows a zoo, checked once when built.

    A grouped zoo's groups are all generated with the same options. See :func:`generate` for
    each attribute.

    Raises:
        DeviceError: if ``device`` is unknown or not usable here.
        InvalidOptionError: for an unknown engine, unusable Ray options or a negative
            ``resume_interval``.
        MissingExtraError: for ``engine="ray"`` without Ray installed.
    """

    device: str = "cpu"
    workers: int | None = 1
    progress: bool = True
    engine: str = "local"
    ray: RayOptions | None = None
    slice: tuple[int, int] | None = None
    resume_interval: float | None = DEFAULT_INTERVAL

    def __post_init__(self) -> None:
        # Before anything is written; the Ray engine's defaults are filled in.
        object.__setattr__(self, "ray", _check_engine(self.engine, self.ray, self.device))
        _check_resume_interval(self.resume_interval)


def generate(
    spec: ZooSpec,
    out: str | os.PathLike[str],
    *,
    device: str = "cpu",
    workers: int | None = 1,
    progress: bool = True,
    engine: str = "local",
    ray: RayOptions | None = None,
    slice: tuple[int, int] | None = None,
    first_model_id: int = 0,
    resume_interval: float | None = DEFAULT_INTERVAL,
) -> Manifest | GroupedManifest:
    """Generate (or finish generating) the zoo of ``spec`` into ``out``.

    A :class:`GroupedSpec` makes a grouped zoo (format version 2): each group is generated in
    order into ``out/groups/<name>`` by :func:`generate_zoo`, then the top manifest is finished
    (:func:`weightzoo.generate.grouped.generate_grouped`). A family's ``train`` gets ``out``
    (the group's directory, for a group) as :attr:`~weightzoo.generate.base.BlockRun.root`.

    Args:
        spec: what to generate.
        out: the zoo directory; an existing zoo of the same spec is resumed, one of another
            spec is refused.
        device: ``"cpu"`` or ``"cuda"`` (any torch device string), checked before anything
            is written (with the Ray engine, on the node that trains each block).
        workers: local engine: processes training blocks in parallel; 1 trains in this
            process (the default). ``None``: one process per usable CPU core, at most one per
            pending block, on CPU; 1 on an accelerator (what the CLI does unless ``--workers``
            is given). Every block trains with ``generate.workers.BLOCK_THREADS`` torch
            threads wherever it runs, so the zoo's bytes do not depend on this number.
        progress: show a tqdm bar over model-epochs, with the running count of models that
            passed where the family reports one.
        engine: ``"local"`` or ``"ray"`` (Ray tasks, see
            :mod:`weightzoo.generate.ray_engine`; needs ``pip install "weightzoo[ray]"``).
        ray: options of the Ray engine (default :class:`RayOptions()`).
        slice: ``(index, count)``: train only the blocks of this slice (see
            :func:`slice_blocks`) and keep them in the slice manifest
            ``zoo.slice-<index>-of-<count>.json``; other slices may run at the same time into
            the same ``out``. ``weightzoo merge`` joins them once all are done. Not for a
            grouped spec.
        first_model_id: added to every plan's ``model_id`` in the stored ``model_id`` column
            (a group of a grouped zoo starts where the previous group ended); the family still
            sees its own ids ``0..n-1``.
        resume_interval: while a block trains, its state is saved to
            ``<out>/.resume/<split>-<first model>.pt`` at an epoch boundary at most once every
            this many seconds (0: after every epoch), so that a block cut short (Ctrl-C,
            SIGTERM, SIGKILL) goes on from its last saved epoch when ``generate`` runs again,
            writing the same bytes as a run never stopped; the file goes once the block's
            shard is written. None: nothing is saved (a saved state is still deleted when
            its block is written). See :mod:`weightzoo.generate.resume`.

    Once every block is written (and not for a slice), a family that defines
    ``finalize(spec, root, device)`` completes the zoo with it (e.g. the phase family's
    landscape side file); the hook is idempotent, so a resumed run finishes it.

    Returns:
        The manifest of the finished zoo (of the slice, with ``slice``); the top
        :class:`GroupedManifest` for a grouped spec.

    Raises:
        SpecMismatchError: if ``out`` holds a zoo of another spec.
        DeviceError: if ``device`` is unknown or not usable here.
        InvalidOptionError: for an unknown engine, a bad slice, unusable Ray options or a
            negative ``resume_interval``.
        UnsafePathError: if ``<out>/.resume`` is a link or a file.
        MissingExtraError: for ``engine="ray"`` without Ray installed.
        KeyboardInterrupt: on Ctrl-C, after stopping the workers and keeping every finished
            block (any other exception is handled the same way).
    """
    options = RunOptions(device, workers, progress, engine, ray, slice, resume_interval)
    if isinstance(spec, GroupedSpec):
        from weightzoo.generate.grouped import generate_grouped

        return generate_grouped(spec, out, options)
    return generate_zoo(spec, out, options, first_model_id=first_model_id)


def generate_zoo(
    spec: ZooSpec, out: str | os.PathLike[str], options: RunOptions, *, first_model_id: int = 0
) -> Manifest:
    """:func:`generate` of a version-1 spec (a zoo, or one group of a grouped zoo).

    Args:
        spec: what to generate (not a :class:`GroupedSpec`).
        out: the zoo directory.
        options: how to train and show it.
        first_model_id: as for :func:`generate`.
    """
    family = RootedFamily(family_for(spec), Path(out))
    layout = family.layout(spec)
    epochs = family.checkpoint_epochs(spec)
    metric_names = family.metric_names(spec)
    plans = family.plan(spec)
    blocks = plan_blocks(plans, spec)
    split_counts = {s: sum(len(b.plans) for b in blocks if b.split == s) for s in SPLITS}
    extra = _manifest_extra(first_model_id)
    slice = options.slice
    if slice is not None:
        blocks = slice_blocks(blocks, *slice)
        extra["slice"] = {
            "index": slice[0],
            "count": slice[1],
            "models": [[b.first, b.last] for b in blocks],
        }
    with ZooWriter(
        out,
        name=spec.name,
        family=spec.family,
        spec=spec.to_dict(),
        spec_fingerprint=spec.fingerprint(),
        layout=layout,
        epochs=epochs,
        metrics=metric_names,
        stats_names=statistics_names(layout, STATS_PRESET),
        stats_preset=STATS_PRESET,
        num_models=len(plans),
        split_counts={k: v for k, v in split_counts.items() if v},
        diverge_threshold=spec.diverge_threshold,
        extra=extra,
        slice=slice,
    ) as writer:
        groups = epoch_groups(epochs, spec.epochs_per_shard)

        def files_of(block: Block) -> list[str]:
            return [shard_file_name(block.split, block.first, g) for g in range(len(groups))]

        todo = [b for b in blocks if not all(writer.has_shard(f) for f in files_of(b))]
        slots = _resume_slots(spec, out, blocks, todo, options.resume_interval)
        planned = sum(len(b.plans) for b in blocks)
        done_models = planned - sum(len(b.plans) for b in todo)
        if done_models:
            log.info("resuming %s: %d of %d models already written", out, done_models, planned)
        # A model's share of the bar is its training epochs: the last checkpoint's label.
        per_model = max(1, int(max(epochs, default=1)))
        bar = ModelEpochBar(
            planned * per_model,
            initial=done_models * per_model,
            desc=spec.name if slice is None else f"{spec.name} {slice[0]}/{slice[1]}",
            disable=not options.progress,
        )
        for block in todo:
            bar.plan(block.first, len(block.plans) * per_model, len(block.plans))

        def write(block: Block, records: list[ModelRecord]) -> None:
            known: dict[str, list] = {
                "model_id": [p.model_id + first_model_id for p in block.plans],
                "seed": [p.seed for p in block.plans],
            }
            for plan in block.plans:
                for key, value in plan.columns.items():
                    known.setdefault(key, []).append(value)
            write_block(
                writer,
                records,
                split=block.split,
                first=block.first,
                order=[p.model_id for p in block.plans],
                columns=known,
                defaults={"device": options.device},
                groups=groups,
            )

        def keep(block: Block, records: list[ModelRecord]) -> None:
            write(block, records)
            remove_state_files(out, [state_file_name(block.split, block.first)])
            bar.finish(block.first)
            log.info("wrote %s models %d..%d of %s", block.split, block.first, block.last - 1, out)

        try:
            pending = Pending(todo, bar, slots, keep)
            if options.engine == "ray" and todo:
                run_blocks(family, spec, pending, options)
            else:
                _train_locally(family, spec, pending, options)
        finally:
            bar.close()
        manifest = writer.finish()
        # A slice removes its own blocks' states only: the others may still be training.
        own = None if slice is None else [state_file_name(b.split, b.first) for b in blocks]
        remove_resume_dir(out, own)
    _finalize(family_for(spec), spec, Path(out), options.device, whole=slice is None)
    return manifest


def _finalize(family: Family, spec: ZooSpec, out: Path, device: str, *, whole: bool) -> None:
    """The family's ``finalize(spec, root, device)`` hook, once the zoo is complete.

    Optional: a family without it is skipped. It runs after the writer's lock is released (it
    may write side files) on every run, so it must be idempotent; an interrupted one is
    finished by running ``generate`` again. Slices skip it: ``merge`` completes the zoo.
    """
    hook = getattr(family, "finalize", None)
    if hook is None or not whole:
        return
    log.info("finalizing %s", out)
    hook(spec, out, device)


def _check_engine(engine: str, ray: RayOptions | None, device: str) -> RayOptions | None:
    """Check the engine and device before anything is written; the Ray options to use."""
    if engine not in ENGINES:
        raise InvalidOptionError(f"--engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "ray":
        ray = ray or RayOptions()
        ray.check(device)
        import_ray()  # fail before anything is written
    else:
        check_device(device)
    return ray


def _check_resume_interval(interval: float | None) -> None:
    """Refuse a ``resume_interval`` that is not a number of seconds, 0 or more."""
    if interval is None:
        return
    number = isinstance(interval, int | float) and not isinstance(interval, bool)
    if not number or not interval >= 0:  # NaN too
        raise InvalidOptionError(
            f"resume_interval {interval!r}: give the seconds between two saves of a block's "
            "state, 0 or more (0: every epoch), or None to save nothing"
        )


def _resume_slots(
    spec: ZooSpec,
    out: str | os.PathLike[str],
    blocks: Sequence[Block],
    todo: Sequence[Block],
    interval: float | None,
) -> Callable[[Block], ResumeSlot | None]:
    """Each pending block's resume slot (None: no saving); the states of done blocks go.

    A state left by a run killed between writing a block's shard and deleting its state is
    deleted here.

    Raises:
        UnsafePathError: if ``<out>/.resume`` is a link or a file.
    """
    pending = {(b.split, b.first) for b in todo}
    written = [(b.split, b.first) for b in blocks if (b.split, b.first) not in pending]
    remove_state_files(out, [state_file_name(*key) for key in written])
    if interval is None:
        return lambda _block: None
    prepare_resume_dir(out)
    zoo_dir = str(Path(out).resolve())  # workers and Ray tasks may run elsewhere
    fingerprint = spec.fingerprint()

    def slot(block: Block) -> ResumeSlot:
        ids = tuple(int(p.model_id) for p in block.plans)
        return ResumeSlot(zoo_dir, block.split, block.first, fingerprint, ids, float(interval))

    return slot


def _manifest_extra(first_model_id: int) -> dict[str, object]:
    """The ``extra`` of a generated zoo's manifest: generator, and a group's first model id."""
    extra: dict[str, object] = {"generator": f"weightzoo {__version__}"}
    if first_model_id:
        extra["first_model_id"] = first_model_id
    return extra


def _train_locally(family: Family, spec: ZooSpec, pending: Pending, options: RunOptions) -> None:
    """The local engine: this process for one worker, else a :class:`BlockPool`."""
    device, workers = options.device, options.workers
    if workers is None:
        workers = min(usable_cpus(), len(pending.blocks)) if str(device) == "cpu" else 1
    if workers > 1:
        _train_in_workers(family, spec, pending, device, workers)
        return
    bar = pending.bar
    for block in pending.blocks:
        # The runner's bar shows the block: the family's own stays hidden.
        run = BlockRun(device, progress=False, on_epoch=bar.callback(block.first))
        on_step, resume = bar.step_callback(block.first), pending.slot(block)
        records = train_block(family, spec, block.plans, run, on_step=on_step, resume=resume)
        pending.keep(block, records)


def zoo_dir_default(spec: ZooSpec) -> Path:
    """Where ``weightzoo generate`` writes when ``--out`` is not given: ``zoos/<name>``."""
    return Path("zoos") / spec.name
