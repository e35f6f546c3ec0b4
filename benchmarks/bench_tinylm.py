"""Tiny-LM population step vs one model at a time, per model_dim and batch size.

Each measurement times ``--steps`` optimizer steps (after one warm-up step) of ``--models``
byte-level decoders of the ``phase-tinylm`` architecture on random windows. The population
side is the generator's: stacked parameters, ``vmap`` over ``functional_call``
(:func:`weightzoo.families.tinylm.train.population_logits`) and the toolkit's
:class:`~weightzoo.generate.population.PopulationOptimizer` (AdamW). The loop side trains each
``nn.Module`` with ``torch.optim.AdamW`` on the same windows. The ratio is loop time over
population time (above 1: the population is faster).

Usage::

    python benchmarks/bench_tinylm.py [--models 15] [--steps 10] [--dims 8 64]
        [--batch 4 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

from weightzoo.architectures import build_model
from weightzoo.families.tinylm.spec import tinylm_spec
from weightzoo.families.tinylm.train import population_logits
from weightzoo.generate.population import Population, PopulationOptimizer


def models_of(dim: int, count: int) -> list[torch.nn.Module]:
    spec = tinylm_spec(dim).to_dict()
    out = []
    for seed in range(count):
        torch.manual_seed(seed)
        out.append(build_model(spec))
    return out


def bench_loop(models, x, y, steps: int) -> float:
    start = 0.0
    for i, model in enumerate(models):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        for s in range(steps + 1):
            if s == 1 and i == 0:
                start = time.perf_counter()
            logits = model(x[i])
            loss = F.cross_entropy(logits.flatten(0, 1), y[i].flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def bench_population(models, x, y, steps: int) -> float:
    pop = Population.from_modules(models)
    opt = PopulationOptimizer("adamw", 1e-3, 0.01, count=len(models))
    start = 0.0
    for s in range(steps + 1):
        if s == 1:
            start = time.perf_counter()
        logits = population_logits(models[0], pop.params, x)
        per = F.cross_entropy(logits.flatten(0, -2), y.flatten(), reduction="none")
        per.view(len(models), -1).mean(1).sum().backward()
        opt.step(pop.params)
        pop.zero_grad()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=15)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--batch", type=int, nargs="+", default=[4, 64])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| model_dim | batch | loop s | population s | loop / population |")
    print("| --- | --- | --- | --- | --- |")
    for dim in args.dims:
        for batch in args.batch:
            context = tinylm_spec(dim).context
            x = torch.randint(0, 256, (args.models, batch, context))
            y = torch.randint(0, 256, (args.models, batch, context))
            loop = bench_loop(models_of(dim, args.models), x, y, args.steps)
            pop = bench_population(models_of(dim, args.models), x, y, args.steps)
            print(f"| {dim} | {batch} | {loop:.2f} | {pop:.2f} | {loop / pop:.2f} |")


if __name__ == "__main__":
    main()
