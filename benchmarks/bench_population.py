"""Population training vs one model at a time: 64 CNN-s models, batch sizes 4, 12, 64.

Each measurement is a short fixed run: ``--steps`` optimizer steps (Adam, tanh, no dropout) per
model on synthetic 1x28x28 inputs with 10 classes, after one warm-up step. ``models/hour`` is
how many such ``--steps``-step runs finish per hour: ``models / seconds * 3600``. The loop
baseline trains each model with a plain ``nn.Module`` and ``torch.optim.Adam``; the population
runs every path of :mod:`weightzoo.families.modelzoo.train` with the toolkit's
:class:`~weightzoo.generate.population.PopulationOptimizer` and shows the one ``auto``
picks.

Time to quality: passed models per hour of wall time, the ``modelzoo-digits-cnn-s-seed``
spec's recipe (tanh, uniform init, Adam at its learning rate) with ``--ttq-models`` models,
trained ``--ttq-epochs`` epochs at each of the batch sizes ``--ttq-batch``. A model passes when
its test accuracy after the last epoch is at least ``--bar``. The population side is the
generator itself (:meth:`~weightzoo.families.modelzoo.family.ModelZooFamily.train`). The
one-at-a-time side is a plain loop over the first ``--loop-models`` of those models: the same
initialised ``nn.Module``, ``torch.optim.Adam``, the same batches in the same order (each
model's ``torch.Generator`` seeded with its seed), and, as the generator records for every
checkpoint, loss and accuracy on the train, validation and test splits before training and
after every epoch.

Usage::

    python benchmarks/bench_population.py [--models 64] [--steps 20] [--batch 4 12 64]
        [--threads N] [--ttq-models 8] [--loop-models 4] [--ttq-batch 4 32]
        [--ttq-epochs 5 15] [--bar 0.75] [--device cpu] [--parts step quality]

The default is one thread (``--threads 1``): with more OpenMP threads than idle cores, torch's
threads spin-wait on each other and the one-by-one loop (thousands of tiny ops) slows down by
an order of magnitude, which inflates the speedups (measured in docs/modelzoo.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from torch.nn import functional as F

from weightzoo.architectures.image import cnn_small, init_weights
from weightzoo.families.modelzoo.data import device_splits
from weightzoo.families.modelzoo.family import ModelZooFamily
from weightzoo.families.modelzoo.model import from_spec
from weightzoo.families.modelzoo.spec import ModelZooSpec
from weightzoo.families.modelzoo.train import (
    choose_path,
    population_forward,
    population_loss,
    stack_models,
)
from weightzoo.generate.base import BlockRun
from weightzoo.generate.population import PopulationOptimizer
from weightzoo.generate.specs import get_spec
from weightzoo.precision import exact_cuda

QUALITY_SPEC = "modelzoo-digits-cnn-s-seed"


def make_models(count: int) -> list[torch.nn.Module]:
    models = []
    for seed in range(count):
        torch.manual_seed(seed)
        models.append(cnn_small(1, activation="tanh"))
    return models


def bench_loop(models, x, y, steps: int) -> float:
    start = time.perf_counter()
    for i, model in enumerate(models):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for s in range(steps + 1):
            if s == 1 and i == 0:
                start = time.perf_counter()
            loss = F.cross_entropy(model(x[s % x.shape[0], i]), y[s % y.shape[0], i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def bench_population(models, x, y, steps: int, path: str) -> float:
    pop = stack_models(models)
    opt = PopulationOptimizer("adam", 1e-3, count=len(models))
    start = time.perf_counter()
    for s in range(steps + 1):
        if s == 1:
            start = time.perf_counter()
        out = population_forward(models[0], pop, x[s % x.shape[0]], path=path, training=True)
        population_loss(out, y[s % y.shape[0]], "ce").sum().backward()
        opt.step(pop.params)
        pop.zero_grad()
    return time.perf_counter() - start


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def quality_population(spec: ModelZooSpec, plans, device: str) -> tuple[float, list[float]]:
    """Train ``plans`` with the generator: seconds and each model's final test accuracy."""
    family = ModelZooFamily()
    sync(device)
    start = time.perf_counter()
    records = family.train(spec, plans, BlockRun(device, progress=False))
    sync(device)
    return time.perf_counter() - start, [float(r.metrics["test_acc"][-1]) for r in records]


@torch.no_grad()
def _measure(model: torch.nn.Module, x, y, chunk: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole split (eval mode)."""
    model.eval()
    loss = hits = 0.0
    for first in range(0, len(y), chunk):
        out = model(x[first : first + chunk])
        loss += float(F.cross_entropy(out, y[first : first + chunk], reduction="sum"))
        hits += float((out.argmax(1) == y[first : first + chunk]).sum())
    model.train()
    return loss / len(y), hits / len(y)


def quality_loop(spec: ModelZooSpec, plans, device: str) -> tuple[float, list[float]]:
    """Train ``plans`` one after another with plain PyTorch: seconds and final test accuracy."""
    splits = dict(zip(("train", "val", "test"), device_splits(spec, device), strict=True))
    train = splits["train"]
    accuracies = []
    sync(device)
    start = time.perf_counter()
    for plan in plans:
        node = plan.columns
        torch.manual_seed(plan.seed)
        model = from_spec(spec.to_dict(), node)
        init_weights(model, node["init"])
        model = model.to(device)
        opt = torch.optim.Adam(model.parameters(), lr=node["lr"], weight_decay=node["weight_decay"])
        order = torch.Generator().manual_seed(plan.seed)  # the generator's batches
        history = [{s: _measure(model, d.x, d.y) for s, d in splits.items()}]
        for _ in range(spec.epochs):
            rows = torch.randperm(len(train.y), generator=order).to(device)
            for first in range(0, len(rows), spec.batch_size):
                index = rows[first : first + spec.batch_size]
                loss = F.cross_entropy(model(train.x[index]), train.y[index])
                opt.zero_grad()
                loss.backward()
                opt.step()
            history.append({s: _measure(model, d.x, d.y) for s, d in splits.items()})
        accuracies.append(history[-1]["test"][1])
    sync(device)
    return time.perf_counter() - start, accuracies


def bench_quality(args) -> None:
    """Passed models per hour at each batch size: the generator vs a plain loop."""
    base = get_spec(QUALITY_SPEC).override(models=args.ttq_models)
    if len(args.ttq_epochs) != len(args.ttq_batch):
        raise SystemExit("give one --ttq-epochs value per --ttq-batch value")
    print(
        f"time to quality, {QUALITY_SPEC} recipe: passed = test accuracy >= {args.bar} after "
        f"the last epoch; device {args.device}, threads {torch.get_num_threads()}"
    )
    print("batch  epochs  method      passed  seconds  passed/hour  ratio")
    for batch, epochs in zip(args.ttq_batch, args.ttq_epochs, strict=True):
        spec = dataclasses.replace(base, batch_size=batch, epochs=epochs)
        plans = ModelZooFamily().plan(spec)
        device_splits(spec, args.device)  # load the images before either clock starts
        runs = {
            "population": quality_population(spec, plans, args.device),
            "one-by-one": quality_loop(spec, plans[: args.loop_models], args.device),
        }
        rates = {
            label: sum(acc >= args.bar for acc in accs) / seconds * 3600
            for label, (seconds, accs) in runs.items()
        }
        for label, (seconds, accuracies) in runs.items():
            passed = sum(acc >= args.bar for acc in accuracies)
            ratio = ""
            if label == "one-by-one":
                loop_rate = rates["one-by-one"]
                ratio = f"{rates['population'] / loop_rate:.2f}x" if loop_rate else "n/a"
            print(
                f"{batch:5d}  {epochs:6d}  {label:10s}  {passed:3d}/{len(accuracies):<3d}"
                f"  {seconds:7.1f}  {rates[label]:11.0f}  {ratio}"
            )
            print(f"{'':15s}test accuracy: {', '.join(f'{a:.3f}' for a in accuracies)}")
    print(
        f"(one-by-one: the first {args.loop_models} of the {args.ttq_models} models; "
        "ratio = population / one-by-one passed models per hour)"
    )


def bench_steps(args) -> None:
    """Fixed steps per model: the one-by-one loop vs every population path."""
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, models {args.models}")
    print("batch  method        seconds  models/hour  speedup")
    for batch in args.batch:
        x = torch.rand(4, args.models, batch, 1, 28, 28)
        y = torch.randint(0, 10, (4, args.models, batch))
        base = bench_loop(make_models(args.models), x, y, args.steps)
        rate = args.models / base * 3600
        print(f"{batch:5d}  {'one-by-one':12s}  {base:7.2f}  {rate:11.0f}  1.00x")
        auto = choose_path(cnn_small(1), batch)
        for path in args.paths:
            secs = bench_population(make_models(args.models), x, y, args.steps, path)
            mark = " (auto)" if path == auto else ""
            print(
                f"{batch:5d}  {'pop-' + path:12s}  {secs:7.2f}  {args.models / secs * 3600:11.0f}"
                f"  {base / secs:.2f}x{mark}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, nargs="+", default=[4, 12, 64])
    parser.add_argument("--paths", nargs="+", default=["vmap", "grouped", "loop"])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu", help="time to quality: torch device")
    parser.add_argument("--ttq-models", type=int, default=8, help="time to quality: models")
    parser.add_argument("--loop-models", type=int, default=4, help="of them, one by one")
    parser.add_argument("--ttq-batch", type=int, nargs="+", default=[4, 32])
    parser.add_argument("--ttq-epochs", type=int, nargs="+", default=[5, 15])
    parser.add_argument("--bar", type=float, default=0.75, help="test accuracy to pass")
    parser.add_argument(
        "--parts", nargs="+", choices=("step", "quality"), default=["step", "quality"]
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Every side in full float32 on CUDA (TF32 off, deterministic cuDNN), as weightzoo
    # computes and trains: the comparison is of the same arithmetic.
    with exact_cuda(args.device):
        if "step" in args.parts:
            bench_steps(args)
        if "quality" in args.parts:
            bench_quality(args)


if __name__ == "__main__":
    main()
