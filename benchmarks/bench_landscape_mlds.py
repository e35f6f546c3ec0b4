"""Hessian metrics of MLDS GRU networks: vectorized twin vs ``nn.GRU`` one at a time.

``--models`` DS1 networks (4,364 parameters, each initialised from its own seed) on the first
``--batches`` batches of ``--batch-size`` training sequences of one machine, with the
generator's masked mean squared error (:mod:`weightzoo.families.mlds.landscape`):

- ``nn.GRU loop``: :func:`weightzoo.landscape.hessian_top_eigenvalue` / ``hessian_trace`` on
  the plain :class:`~weightzoo.families.mlds.model.MLDSNet`, which ``vmap`` cannot batch, so the
  library runs one network at a time (reverse-over-reverse products);
- ``twin vmap``: the same functions on :class:`weightzoo.families.mlds.landscape.VmapTwin`, every
  network at once under ``torch.func.vmap`` (what ``weightzoo landscape`` uses for MLDS zoos).

Both start from the same vector and draw the same probes, so they agree to ``max rel diff``;
``speedup`` is the loop's time over the twin's, in the same run.

Usage::

    python benchmarks/bench_landscape_mlds.py [--models 8] [--batches 1] [--batch-size 32]
        [--iters 3] [--probes 3] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import warnings

import torch

from bench_landscape import timed  # the same timer (this script's folder is on sys.path)
from weightzoo import landscape
from weightzoo.families.mlds.landscape import VmapTwin, class_batches, masked_mse
from weightzoo.families.mlds.model import MLDSNet
from weightzoo.families.mlds.spec import MLDSData, net_config
from weightzoo.features import flatten, layout_of
from weightzoo.precision import exact_cuda

MACHINE = "EightBitMachine"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--batches", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--probes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", "power iteration did not converge")
    config = net_config("ds1")
    device = torch.device(args.device)
    data = class_batches(MLDSData(subset="ds1"), MACHINE, args.batches, args.batch_size, device)
    rows = []
    for seed in range(args.models):
        torch.manual_seed(seed)
        net = MLDSNet(config)
        rows.append(flatten(net, layout_of(net)))
    rows = torch.stack(rows).to(device)
    plain, twin = MLDSNet(config).to(device), VmapTwin(config).to(device)
    with exact_cuda(args.device):
        print(
            f"{args.models} DS1 GRU networks, {args.batches} x {args.batch_size} {MACHINE} "
            f"sequences, {args.iters} power steps, {args.probes} probes, {args.threads} "
            f"thread(s), device {args.device}"
        )
        print("| metric | nn.GRU loop s | twin vmap s | speedup | max rel diff |")
        print("| --- | ---: | ---: | ---: | ---: |")
        landscape.hessian_trace(twin, rows[:2], data, masked_mse, probes=1)  # warm-up
        runs = {
            "top eigenvalue": lambda m: landscape.hessian_top_eigenvalue(
                m, rows, data, masked_mse, iters=args.iters, tol=0.0, seed=0
            ),
            "trace": lambda m: landscape.hessian_trace(
                m, rows, data, masked_mse, probes=args.probes, seed=0
            ),
        }
        for metric, run in runs.items():
            want, loop_s = timed(lambda r=run: r(plain), args.device)
            got, vec_s = timed(lambda r=run: r(twin), args.device)
            diff = float(((got - want).abs() / want.abs().clamp_min(1e-12)).max())
            print(f"| {metric} | {loop_s:.2f} | {vec_s:.2f} | {loop_s / vec_s:.1f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
