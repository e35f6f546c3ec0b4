"""MLDS DS1 networks: one by one vs one population, and compaction vs freezing.

Part 1: both sides run the same fixed work, ``--steps`` Adam steps per network on batches of
``--batch`` machine sequences of ``--steps-len`` steps (not to convergence), after one warm-up
step. ``networks/hour`` is ``networks / seconds * 3600`` for such runs. The loop baseline is a
plain :class:`~weightzoo.generate.mlds.networks.MLDSNet` (``nn.GRU``, cuDNN-style fused kernel
on CPU) with ``torch.optim.Adam``; the population is the stacked ``baddbmm`` cell of
:func:`~weightzoo.generate.mlds.networks.population_forward` with the toolkit's
:class:`~weightzoo.generate.population.PopulationOptimizer` over the stacks.

Part 2: the same networks trained to a validation threshold with
:func:`weightzoo.generate.mlds.population.train_population`, networks passing at different
epochs: passed networks dropped from the population (compaction, the default) vs kept in it,
frozen. Both must give the same networks the same epochs.

Usage::

    python benchmarks/bench_mlds.py [--networks 64] [--steps 20] [--steps-len 32] [--batch 16]
        [--threads 1] [--device cpu] [--epochs 6] [--threshold 0.2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from weightzoo.generate.mlds.machines import MACHINES, machine_set
from weightzoo.generate.mlds.networks import DS1_NET, MLDSNet, init_population, population_forward
from weightzoo.generate.mlds.population import PopulationData, TrainSettings, train_population
from weightzoo.generate.population import PopulationOptimizer


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
    opt = PopulationOptimizer("adam", 1e-3, count=x.shape[0], device=device)
    for step in range(steps + 1):
        if step == 1:  # after one warm-up step
            sync(device)
            start = time.perf_counter()
        err = ((population_forward(DS1_NET, params, x) - y) ** 2).mean(dim=(1, 2, 3))
        err.sum().backward()
        opt.step(params)
        for tensor in params.values():
            tensor.grad = None
    sync(device)
    return (time.perf_counter() - start) / x.shape[0]


def bench_threshold(args) -> None:
    """Train to a threshold with compaction and with freezing; print seconds and epochs."""
    sets = {
        name: [machine_set(m, count=size, steps=16, seed=[i, k]) for k, m in enumerate(MACHINES)]
        for i, (name, size) in enumerate((("train", 256), ("val", 64)))
    }
    data = PopulationData(sets, args.device)
    classes = [i % len(MACHINES) for i in range(args.networks)]
    settings = TrainSettings(
        lr=1e-2, batch_size=16, max_epochs=args.epochs, threshold=args.threshold
    )
    results = {}
    for compact in (True, False):
        sync(args.device)
        start = time.perf_counter()
        result = train_population(
            DS1_NET,
            data,
            classes,
            list(range(args.networks)),
            settings,
            device=args.device,
            compact=compact,
        )
        sync(args.device)
        results[compact] = (time.perf_counter() - start, result)
    (fast, kept), (slow, frozen) = results[True], results[False]
    counts = np.bincount(kept.epochs, minlength=args.epochs + 1)[1:]
    print(
        f"to threshold {args.threshold} in at most {args.epochs} epochs: "
        f"{int(kept.passed.sum())}/{args.networks} passed; networks stopping after epoch "
        f"1..{args.epochs}: {counts.tolist()}"
    )
    same = (kept.epochs == frozen.epochs).all() and (kept.passed == frozen.passed).all()
    print(f"  compaction: {fast:7.2f} s\n     freezing: {slow:7.2f} s")
    print(f"  ratio freezing / compaction: {slow / fast:.2f}x (same epochs and passes: {same})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--steps-len", type=int, default=32, help="sequence length")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=6, help="part 2: most epochs")
    parser.add_argument("--threshold", type=float, default=0.2, help="part 2: val loss")
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
    bench_threshold(args)


if __name__ == "__main__":
    main()
