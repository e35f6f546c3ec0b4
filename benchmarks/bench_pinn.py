"""PINN population step vs one model at a time, on the convection loss with input derivatives.

One step = the PINN loss of every model (residual by ``torch.func.jvp`` over the inputs,
initial and boundary terms), its backward, and an Adam update. The population side is
:func:`weightzoo.families.pinn.train.population_loss_parts` (``vmap`` over models) with
the toolkit's :class:`~weightzoo.generate.population.PopulationOptimizer`; the loop side runs
each model as a plain :class:`~weightzoo.families.pinn.model.PINN` with
:func:`weightzoo.families.pinn.data.loss_parts` and ``torch.optim.Adam``. Reported: seconds per
model-step of each, and their ratio (measured in one run, so the ratio holds on a busy
machine where the absolute times do not).

Usage::

    python benchmarks/bench_pinn.py [--models 18] [--steps 20] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from weightzoo.families.pinn.data import convection_data, loss_parts
from weightzoo.families.pinn.model import PINN
from weightzoo.families.pinn.train import population_loss_parts
from weightzoo.generate.population import PopulationOptimizer


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def population_seconds(models: list[PINN], betas: torch.Tensor, data, steps: int, device: str):
    """Seconds per model-step of the vmapped population."""
    params, _ = torch.func.stack_module_state(models)
    params = {k: v.detach().to(device).requires_grad_(True) for k, v in params.items()}
    optimizer = PopulationOptimizer("adam", 1e-3, count=len(models), device=device)
    net = PINN().to(device)
    for step in range(steps + 1):
        if step == 1:  # the first step pays for tracing
            _sync(device)
            start = time.perf_counter()
        population_loss_parts(net, params, betas, data).sum().backward()
        optimizer.step(params)
        for p in params.values():
            p.grad = None
    _sync(device)
    return (time.perf_counter() - start) / steps / len(models)


def loop_seconds(models: list[PINN], betas: torch.Tensor, data, steps: int, device: str):
    """Seconds per model-step of one model at a time."""
    total = 0.0
    for model, beta in zip(models, betas.tolist(), strict=True):
        model = model.to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for step in range(steps + 1):
            if step == 1:
                _sync(device)
                start = time.perf_counter()
            optimizer.zero_grad()
            loss_parts(model, data, beta).sum().backward()
            optimizer.step()
        _sync(device)
        total += time.perf_counter() - start
    return total / steps / len(models)


def main() -> None:
    """Run the comparison and print one line per side and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=18)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = [PINN() for _ in range(args.models)]
    betas = torch.linspace(1.0, 50.0, args.models, device=args.device)
    data = convection_data().tensors(args.device)
    pop = population_seconds(models, betas, data, args.steps, args.device)
    loop = loop_seconds(models, betas, data, args.steps, args.device)
    print(f"population ({args.models} models): {pop * 1e3:.3f} ms per model-step")
    print(f"one at a time:              {loop * 1e3:.3f} ms per model-step")
    print(f"population speedup: {loop / pop:.2f}x")


if __name__ == "__main__":
    main()
