"""A tiny, fast family for testing the runner, storage and Datasets without real training.

"Training" is a seeded random walk of a linear layer's weights; metrics are functions of the
weights, so tests can check that what was stored is what was produced. A model "passes" at the
first epoch where its weight norm is below its initial norm; it is reported per epoch through
the run's optional ``on_epoch`` callback, and stored as the ``passed`` column. The
``torch_threads`` column records the torch thread count the block was trained with.

Hooks for tests that run the command line in a subprocess (environment variables):
``TOY_ANNOUNCE=1`` prints ``toy: block FIRST starts in pid PID`` to stderr when a block starts;
``TOY_HANG_MODEL=ID,ID,...`` makes the blocks that hold these models wait forever (until
killed).

``TOY_HOOK_DIR=DIR`` arms file-driven hooks that work in any process (worker processes, Ray
workers started before the test): every block appends ``FIRST_MODEL_ID PID`` to
``DIR/started``; a block holding model ``ID`` while ``DIR/exit-ID`` exists deletes that file
and ends its process at once (``os._exit``: a worker killed mid-block, once); while
``DIR/await`` exists, a block stops after its first epoch report until ``DIR/seen`` exists.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from weightzoo.generate.base import BlockRun, GroupedSpec, ModelPlan, ModelRecord, ZooSpec
from weightzoo.storage.layout import Layout

CALLS: list[int] = []  # block sizes trained, for resume tests


@dataclass(frozen=True)
class ToySpec(ZooSpec):
    """Spec of the toy family."""

    name: str = "toy"
    family: str = "toy"
    num_models: int = 12
    num_epochs: int = 3
    width: int = 5
    diverge_every: int = 0  # every k-th model gets an Inf at its last checkpoint (0: none)

    def override(self, *, models=None, epochs=None, **rest):
        spec = super().override(**rest)
        if models is not None:
            spec = spec.replace(num_models=models)
        if epochs is not None:
            spec = spec.replace(num_epochs=epochs)
        return spec


class ToyFamily:
    """Implements the Family protocol for :class:`ToySpec`."""

    def layout(self, spec: ToySpec) -> Layout:
        return Layout.from_shapes({"fc.weight": (2, spec.width), "fc.bias": (2,)})

    def checkpoint_epochs(self, spec: ToySpec) -> list[int]:
        return list(range(spec.num_epochs + 1))

    def metric_names(self, spec: ToySpec) -> list[str]:
        return ["train_loss", "test_acc"]

    def plan(self, spec: ToySpec) -> list[ModelPlan]:
        return [
            ModelPlan(
                model_id=i,
                seed=1000 + i,
                stratum=f"class{i % 3}",
                columns={"kind": f"class{i % 3}", "lr": 10.0 ** -(1 + i % 2)},
            )
            for i in range(spec.num_models)
        ]

    def train(self, spec: ToySpec, plans: Sequence[ModelPlan], run: BlockRun) -> list[ModelRecord]:
        CALLS.append(len(plans))
        if os.environ.get("TOY_ANNOUNCE"):
            print(f"toy: block {plans[0].model_id} starts in pid {os.getpid()}", file=sys.stderr)
            sys.stderr.flush()
        hang = {int(i) for i in os.environ.get("TOY_HANG_MODEL", "").split(",") if i}
        if hang & {plan.model_id for plan in plans}:
            threading.Event().wait()
        hooks = Path(os.environ["TOY_HOOK_DIR"]) if os.environ.get("TOY_HOOK_DIR") else None
        if hooks is not None:
            _file_hooks_at_start(hooks, plans)
        records = [self._train_one(spec, plan) for plan in plans]
        if run.on_epoch is not None:
            passed_at = [r.columns["passed_at"] for r in records]
            for epoch in range(1, spec.num_epochs + 1):
                active = sum(1 for at in passed_at if at < 0 or at >= epoch)
                run.on_epoch(active, sum(1 for at in passed_at if 0 < at <= epoch))
                if epoch == 1 and hooks is not None and (hooks / "await").exists():
                    _wait_for(hooks / "seen")
        return records

    def _train_one(self, spec: ToySpec, plan: ModelPlan) -> ModelRecord:
        params = self.layout(spec).num_params
        rng = np.random.default_rng(plan.seed)
        steps = rng.normal(size=(spec.num_epochs + 1, params)).astype(np.float32)
        weights = np.cumsum(steps, axis=0)
        if spec.diverge_every and plan.model_id % spec.diverge_every == 0:
            weights[-1, 0] = np.inf
        norm = np.linalg.norm(np.nan_to_num(weights, posinf=0), axis=1)
        below = np.flatnonzero(norm[1:] < norm[0])
        passed_at = int(below[0]) + 1 if below.size else -1
        return ModelRecord(
            model_id=plan.model_id,
            weights=weights,
            metrics={"train_loss": norm, "test_acc": 1.0 / (1.0 + norm)},
            columns={
                "final_norm": float(norm[-1]),
                "passed": passed_at > 0,
                "passed_at": passed_at,
                "torch_threads": torch.get_num_threads(),
            },
        )


def _file_hooks_at_start(hooks: Path, plans: Sequence[ModelPlan]) -> None:
    with open(hooks / "started", "a") as log:  # one short append: atomic between processes
        log.write(f"{plans[0].model_id} {os.getpid()}\n")
    for plan in plans:
        try:
            (hooks / f"exit-{plan.model_id}").unlink()
        except FileNotFoundError:
            continue
        os._exit(1)  # as if killed: no exception, no cleanup


def _wait_for(path: Path, timeout: float = 300.0) -> None:
    """Wait for another process to create ``path`` (the test fails if it never does).

    The timeout is a safety net against a hung run on a loaded machine, not a way to wait.
    """
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.01)


def started_blocks(hooks: Path) -> list[int]:
    """First model ids of the blocks started under ``TOY_HOOK_DIR=hooks``, in order."""
    path = hooks / "started"
    lines = path.read_text().split("\n") if path.exists() else []
    return [int(line.split()[0]) for line in lines if line]


class QuietToyFamily(ToyFamily):
    """The toy family that never calls the run's ``on_epoch``."""

    def train(self, spec: ToySpec, plans: Sequence[ModelPlan], run: BlockRun) -> list[ModelRecord]:
        return super().train(spec, plans, replace(run, on_epoch=None))


@dataclass(frozen=True)
class ToyGroupedSpec(GroupedSpec):
    """Two groups of toy zoos with different widths (so different layouts): ``narrow``, ``wide``."""

    name: str = "toy-grouped"
    family: str = "toy"
    widths: tuple[int, ...] = (3, 6)
    group_names: tuple[str, ...] = ("narrow", "wide")
    num_models: int = 6
    num_epochs: int = 2

    def groups(self) -> list[tuple[str, ZooSpec]]:
        return [
            (
                group,
                ToySpec(
                    name=f"{self.name}-{group}",
                    width=width,
                    num_models=self.num_models,
                    num_epochs=self.num_epochs,
                    shard_models=self.shard_models,
                ),
            )
            for group, width in zip(self.group_names, self.widths, strict=True)
        ]


class RootedToyFamily(ToyFamily):
    """The toy family taking ``root``: records the directory it was given in a column."""

    def train(self, spec, plans, run):
        records = super().train(spec, plans, run)
        for record in records:
            record.columns["root_name"] = run.root.name
        return records


def specs() -> list[ZooSpec]:
    # toy3: several blocks (of 3 models), for the command line tests of workers.
    return [
        ToySpec(),
        ToySpec(name="toy3", shard_models=3),
        ToyGroupedSpec(shard_models=3),
    ]


def family(name: str) -> ToyFamily:
    return ToyFamily()


class FinetuneToyFamily(ToyFamily):
    """A toy family whose second group reads the first one, as a fine-tuning stage would.

    The ``wide`` group's models store ``parent_models``: how many models the finished
    ``narrow`` group beside it holds, read at ``root.parent / "narrow"``.
    """

    def train(self, spec, plans, run):
        records = super().train(spec, plans, run)
        parent = run.root.parent / "narrow"
        if run.root.name == "wide":
            from weightzoo.zoo import Zoo

            count = len(Zoo(parent).metadata("all")["model_id"])
            for record in records:
                record.columns["parent_models"] = count
        return records
