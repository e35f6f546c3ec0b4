"""MLDS DS1 networks: 64 trained one by one (nn.GRU + Adam) vs as one population.

Both sides run the same fixed work, ``--steps`` Adam steps per network on batches of
``--batch`` machine sequences of ``--steps-len`` steps (not to convergence), after one warm-up
step. ``networks/hour`` is ``networks / seconds * 3600`` for such runs. The loop baseline is a
plain :class:`~weightzoo.generate.mlds.networks.MLDSNet` (``nn.GRU``, cuDNN-style fused kernel
on CPU) with ``torch.optim.Adam``; the population is the stacked ``baddbmm`` cell of
:func:`~weightzoo.generate.mlds.networks.population_forward` with one Adam over the stacks.

Usage::

    python benchmarks/bench_mlds.py [--networks 64] [--steps 20] [--steps-len 32] [--batch 16]
        [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from weightzoo.generate.mlds.machines import MACHINES, machine_set
from weightzoo.generate.mlds.networks import DS1_NET, MLDSNet, init_population, population_forward


def make_data(networks: int, batch: int, length: int, device: str):
    sets = [
        machine_set(MACHINES[i % 5], count=batch, steps=length, seed=i) for i in range(networks)
    ]
    x = torch.stack([torch.from_numpy(s.inputs) for s in sets]).float().to(device)
    y = torch.stack([torch.from_numpy(s.outputs) for s in sets]).float().to(device)
    return x, y


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _loop_steps(net, opt, x, y, steps: int) -> None:
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()


def bench_loop(x, y, steps: int, device: str) -> float:
    """Seconds per network, one network after another."""
    warm = MLDSNet(DS1_NET).to(device)
    _loop_steps(warm, torch.optim.Adam(warm.parameters(), lr=1e-3), x[0], y[0], 1)
    sync(device)
    start = time.perf_counter()
    for m in range(x.shape[0]):
        torch.manual_seed(m)
        net = MLDSNet(DS1_NET).to(device)
        _loop_steps(net, torch.optim.Adam(net.parameters(), lr=1e-3), x[m], y[m], steps)
    sync(device)
    return (time.perf_counter() - start) / x.shape[0]


def bench_population(x, y, steps: int, device: str) -> float:
    """Seconds per network, all networks as one population."""
    params = init_population(DS1_NET, list(range(x.shape[0])), device)
    for tensor in params.values():
        tensor.requires_grad_(True)
    opt = torch.optim.Adam(list(params.values()), lr=1e-3, foreach=True)  # as population.py
    for step in range(steps + 1):
        if step == 1:  # after one warm-up step
            sync(device)
            start = time.perf_counter()
        opt.zero_grad()
        err = ((population_forward(DS1_NET, params, x) - y) ** 2).mean(dim=(1, 2, 3))
        err.sum().backward()
        opt.step()
    sync(device)
    return (time.perf_counter() - start) / x.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--steps-len", type=int, default=32, help="sequence length")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y = make_data(args.networks, args.batch, args.steps_len, args.device)
    print(
        f"{args.networks} DS1 networks (4,364 params), {args.steps} steps each, batch "
        f"{args.batch} x {args.steps_len} steps, device {args.device}, threads {args.threads}"
    )
    loop = bench_loop(x, y, args.steps, args.device)
    population = bench_population(x, y, args.steps, args.device)
    for label, seconds in (("one by one", loop), ("population", population)):
        print(f"{label:>11}: {3600 / seconds:10.0f} networks/hour ({seconds:.3f} s per network)")
    print(f"ratio population / one by one: {loop / population:.2f}x")


if __name__ == "__main__":
    main()
