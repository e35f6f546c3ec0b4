"""Run a zoo spec: split models, train them block by block, write shards, resume.

One block of models is one population trained together and one shard (or several, one per
group of epochs). Blocks already on disk are skipped, so an interrupted run resumes where it
stopped and never duplicates a model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from weightzoo.blocks import STATS_PRESET, epoch_groups, stratified_splits, write_block
from weightzoo.features import statistics_names
from weightzoo.generate.base import ModelPlan, ModelRecord, ZooSpec
from weightzoo.generate.specs import family_for
from weightzoo.storage.manifest import SPLITS, Manifest
from weightzoo.storage.writer import ZooWriter, shard_file_name

log = logging.getLogger(__name__)
__all__ = ["STATS_PRESET", "assign_splits", "epoch_groups", "generate", "plan_blocks"]


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


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _train_block(spec: ZooSpec, plans: tuple[ModelPlan, ...], device: str) -> list[ModelRecord]:
    # Runs in a worker process: one thread each, so that workers share the cores.
    torch.set_num_threads(1)
    return family_for(spec).train(spec, plans, device=device, progress=False)


def generate(
    spec: ZooSpec,
    out: str | os.PathLike[str],
    *,
    device: str = "cpu",
    workers: int | None = 1,
    progress: bool = True,
) -> Manifest:
    """Generate (or finish generating) the zoo of ``spec`` into ``out``.

    Args:
        spec: what to generate.
        out: the zoo directory; an existing zoo of the same spec is resumed, one of another
            spec is refused.
        device: ``"cpu"`` or ``"cuda"`` (any torch device string).
        workers: processes training blocks in parallel (each with one thread); 1 trains in
            this process with all threads (the default). ``None``: one process per usable CPU
            core, at most one per pending block, on CPU; 1 on an accelerator (what the CLI
            does unless ``--workers`` is given).
        progress: show a tqdm bar over models.

    Returns:
        The manifest of the finished zoo.

    Raises:
        SpecMismatchError: if ``out`` holds a zoo of another spec.
    """
    family = family_for(spec)
    layout = family.layout(spec)
    epochs = family.checkpoint_epochs(spec)
    metric_names = family.metric_names(spec)
    plans = family.plan(spec)
    blocks = plan_blocks(plans, spec)
    split_counts = {s: sum(len(b.plans) for b in blocks if b.split == s) for s in SPLITS}
    writer = ZooWriter(
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
        extra={"generator": "weightzoo 0.1.0"},
    )
    groups = epoch_groups(epochs, spec.epochs_per_shard)

    def files_of(block: Block) -> list[str]:
        return [shard_file_name(block.split, block.first, g) for g in range(len(groups))]

    todo = [b for b in blocks if not all(writer.has_shard(f) for f in files_of(b))]
    done_models = len(plans) - sum(len(b.plans) for b in todo)
    if done_models:
        log.info("resuming %s: %d of %d models already written", out, done_models, len(plans))
    bar = tqdm(
        total=len(plans),
        initial=done_models,
        unit="model",
        desc=spec.name,
        disable=not progress,
    )

    def write(block: Block, records: list[ModelRecord]) -> None:
        known: dict[str, list] = {
            "model_id": [p.model_id for p in block.plans],
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
            order=known["model_id"],
            columns=known,
            defaults={"device": device},
            groups=groups,
        )
        bar.update(len(block.plans))

    if workers is None:
        workers = min(usable_cpus(), len(todo)) if str(device) == "cpu" else 1
    try:
        if workers <= 1:
            for block in todo:
                write(block, family.train(spec, block.plans, device=device, progress=progress))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                # Largest blocks first (better balance); each is written as soon as it is done,
                # so an interruption loses only blocks still training.
                largest_first = sorted(todo, key=lambda b: len(b.plans), reverse=True)
                futures = {
                    pool.submit(_train_block, spec, b.plans, device): b for b in largest_first
                }
                for future in as_completed(futures):
                    write(futures[future], future.result())
    finally:
        bar.close()
    return writer.finish()


def zoo_dir_default(spec: ZooSpec) -> Path:
    """Where ``weightzoo generate`` writes when ``--out`` is not given: ``zoos/<name>``."""
    return Path("zoos") / spec.name
