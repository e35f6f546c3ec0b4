"""Population training vs one model at a time: 64 CNN-s models, batch sizes 4, 12, 64.

Each measurement is a short fixed run: ``--steps`` optimizer steps (Adam, tanh, no dropout) per
model on synthetic 1x28x28 inputs with 10 classes, after one warm-up step. ``models/hour`` is
how many such ``--steps``-step runs finish per hour: ``models / seconds * 3600``. The loop
baseline trains each model with a plain ``nn.Module`` and ``torch.optim.Adam``; the population
runs every path of :mod:`weightzoo.generate.modelzoo.population` with the toolkit's
:class:`~weightzoo.generate.population.PopulationOptimizer` and shows the one ``auto``
picks.

Usage::

    python benchmarks/bench_population.py [--models 64] [--steps 20] [--batch 4 12 64]
        [--threads N]

On a shared machine give ``--threads 1``: with more OpenMP threads than idle cores, torch's
threads spin-wait on each other and the one-by-one loop (thousands of tiny ops) slows down by
an order of magnitude, which inflates the speedups (measured in docs/modelzoo.md).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

from weightzoo.architectures.image import cnn_small
from weightzoo.generate.modelzoo.population import (
    choose_path,
    population_forward,
    population_loss,
    stack_models,
)
from weightzoo.generate.population import PopulationOptimizer


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, nargs="+", default=[4, 12, 64])
    parser.add_argument("--paths", nargs="+", default=["vmap", "grouped", "loop"])
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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


if __name__ == "__main__":
    main()
