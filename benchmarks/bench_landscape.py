"""Hessian metrics of a population, vectorized vs one model at a time, on scikit-learn's digits.

``--models`` networks of each architecture (each initialised from its own seed; the speed of
a Hessian-vector product does not depend on the weights) on ``--batches`` batches of
``--batch-size`` digits:

- ``mlp``: 64 -> 32 -> 10 with tanh on the flattened 8x8 images (2,410 parameters);
- ``cnn-s``: the Model Zoos CNN-s on the images upsampled to 28x28 (2,464 parameters).

For each, the top Hessian eigenvalue (``--iters`` power-iteration steps, no early stop, so both
sides do the same work) and the Hutchinson trace (``--probes`` probes):

- ``vmap``: :func:`weightzoo.landscape.hessian_top_eigenvalue` / ``hessian_trace``, all models
  at once under ``torch.func.vmap`` (forward-over-reverse products);
- ``loop``: the PyHessian way, one ``nn.Module`` at a time: per batch a forward pass,
  ``torch.autograd.grad(..., create_graph=True)``, then ``torch.autograd.grad`` of the
  gradient with the vector as ``grad_outputs``.

- ``func loop``: the same library functions with ``vectorize=False`` (one model at a time
  through the same ``torch.func`` code).

``models/s`` is ``models / seconds``; ``speedup`` is loop time over the path's time in the same
run. The loop starts from the same vector and draws the same probes, so vmap and loop agree to
``max rel diff``.

``--one-batch``: PyHessian's one-batch mode on CNN-s, top eigenvalue and trace together, on one
batch of ``--batch-size`` digits:

- ``reference``: written here from the algorithm, one ``nn.Module`` at a time: one forward
  pass, the gradient with ``create_graph=True``, then every Hessian-vector product as
  ``torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)`` on that graph;
- ``weightzoo``: the library's default on one batch (one graph for all models, reused; on
  CPU a convolutional network's models go one after another through it);
- ``weightzoo, vmap``: the same with ``vectorize=True`` (the models under ``vmap``);
- ``weightzoo, graph per product``: ``reuse_graph=False``, a forward and a double backward pass
  per product (what the library did on one batch before it reused the graph).

Usage::

    python benchmarks/bench_landscape.py [--models 32] [--batches 2] [--batch-size 64]
        [--iters 10] [--probes 10] [--threads 1] [--device cpu] [--archs mlp cnn-s]
    python benchmarks/bench_landscape.py --one-batch [--models 32] [--batch-size 64]
        [--iters 10] [--probes 10] [--repeats 3] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F

from weightzoo import landscape
from weightzoo.architectures.image import cnn_small
from weightzoo.features import flatten, layout_of, load_vector
from weightzoo.precision import exact_cuda

SEED = 0


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))


ARCHS = {"mlp": (mlp, 8), "cnn-s": (lambda: cnn_small(1, 10), 28)}


def digits(batches: int, batch_size: int, size: int, device: str) -> list:
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0
    y = torch.tensor(bunch.target)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    else:
        x = x.flatten(1)
    n = batches * batch_size
    return [
        (x[i : i + batch_size].to(device), y[i : i + batch_size].to(device))
        for i in range(0, n, batch_size)
    ]


def population(make, models: int) -> torch.Tensor:
    rows = []
    for seed in range(models):
        torch.manual_seed(seed)
        net = make()
        rows.append(flatten(net, layout_of(net)))
    return torch.stack(rows)


def loop_hvp(model: nn.Module, data: list, v: list[torch.Tensor]) -> list[torch.Tensor]:
    """PyHessian's data-loader product: the sample-weighted sum of per-batch products."""
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    count = sum(len(x) for x, _ in data)
    for x, y in data:
        loss = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        hv = torch.autograd.grad(grads, params, grad_outputs=v)
        total = [t + h.detach() * len(x) / count for t, h in zip(total, hv, strict=True)]
    return total


def loop_top(model: nn.Module, data: list, iters: int, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=gen).to(p.device) for p in model.parameters()]
    eigen = 0.0
    for _ in range(iters):
        norm = torch.sqrt(sum((t * t).sum() for t in v))
        v = [t / norm for t in v]
        hv = loop_hvp(model, data, v)
        eigen = float(sum((a * b).sum() for a, b in zip(v, hv, strict=True)))
        v = hv
    return eigen


def loop_trace(model: nn.Module, data: list, probes: int, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(probes):
        z = [
            (torch.randint(0, 2, p.shape, generator=gen) * 2 - 1).float().to(p.device)
            for p in model.parameters()
        ]
        hz = loop_hvp(model, data, z)
        total += float(sum((a * b).sum() for a, b in zip(z, hz, strict=True)))
    return total / probes


def graph_top(model: nn.Module, batch: tuple, iters: int, seed: int) -> float:
    """Power iteration on one batch: one gradient graph, every product from it."""
    params = list(model.parameters())
    x, y = batch
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
    gen = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=gen).to(p.device) for p in params]
    eigen = 0.0
    for _ in range(iters):
        norm = torch.sqrt(sum((t * t).sum() for t in v))
        v = [t / norm for t in v]
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        eigen = float(sum((a * b).sum() for a, b in zip(v, hv, strict=True)))
        v = [t.detach() for t in hv]
    return eigen


def graph_trace(model: nn.Module, batch: tuple, probes: int, seed: int) -> float:
    """Hutchinson's trace on one batch: one gradient graph, every product from it."""
    params = list(model.parameters())
    x, y = batch
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(probes):
        z = [
            (torch.randint(0, 2, p.shape, generator=gen) * 2 - 1).float().to(p.device)
            for p in params
        ]
        hz = torch.autograd.grad(grads, params, grad_outputs=z, retain_graph=True)
        total += float(sum((a * b).sum() for a, b in zip(z, hz, strict=True)))
    return total / probes


def one_batch(args: argparse.Namespace) -> None:
    """Top eigenvalue + trace on one batch: the reference against the library, one table."""
    make, size = ARCHS["cnn-s"]
    batch = digits(1, args.batch_size, size, args.device)[0]
    module = make().to(args.device)
    rows = population(make, args.models).to(args.device)
    layout = layout_of(module)
    nets = [load_vector(make(), row, layout).to(args.device).eval() for row in rows.cpu()]
    options = {"seed": SEED, "hvp": "forward"}
    # Warm-up: the first vmap call pays for tracing the functional transforms once.
    landscape.hessian_top_eigenvalue(module, rows[:2], batch, F.cross_entropy, iters=1)

    def library(reuse: bool, vectorize: bool | None):
        top = landscape.hessian_top_eigenvalue(
            module, rows, batch, F.cross_entropy, iters=args.iters, tol=0.0,
            reuse_graph=reuse, vectorize=vectorize, **options,
        )  # fmt: skip
        trace = landscape.hessian_trace(
            module, rows, batch, F.cross_entropy, probes=args.probes, reuse_graph=reuse,
            vectorize=vectorize, **options,
        )  # fmt: skip
        return torch.cat([top.cpu(), trace.cpu()])

    def reference():
        tops = [graph_top(n, batch, args.iters, SEED) for n in nets]
        traces = [graph_trace(n, batch, args.probes, SEED) for n in nets]
        return torch.tensor(tops + traces)

    paths = {
        "reference (one graph, per model)": reference,
        "weightzoo": lambda: library(True, None),
        "weightzoo, vmap": lambda: library(True, True),
        "weightzoo, graph per product": lambda: library(False, True),
    }
    # Every path once per round, the rounds in turn: a shared machine's load drifts, and the
    # fastest of the rounds is each path's time.
    seconds = {name: float("inf") for name in paths}
    results = {}
    for _ in range(args.repeats):
        for name, fn in paths.items():
            results[name], secs = timed(fn, args.device)
            seconds[name] = min(seconds[name], secs)
    want = results["reference (one graph, per model)"]
    ref_s = seconds["reference (one graph, per model)"]
    print(
        f"CNN-s, {args.models} model(s), one batch of {args.batch_size} digits, {args.iters} "
        f"power steps + {args.probes} probes, {args.threads} thread(s), device {args.device}, "
        f"fastest of {args.repeats} rounds"
    )
    print("| path | seconds | s per model | reference / path | max rel diff |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, secs in seconds.items():
        got = results[name]
        diff = float(((got - want).abs() / want.abs().clamp_min(1e-12)).max())
        shown = "" if got is want else f"{diff:.1e}"
        print(f"| {name} | {secs:.2f} | {secs / args.models:.3f} | {ref_s / secs:.2f}x | {shown} |")


def timed(fn, device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=32)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--probes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument(
        "--one-batch", action="store_true", help="PyHessian's one-batch mode on CNN-s"
    )
    parser.add_argument("--repeats", type=int, default=3, help="rounds of --one-batch (3)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # A fixed number of power steps rarely converges; the warning is beside the point.
    warnings.filterwarnings("ignore", "power iteration did not converge")
    if args.one_batch:
        with exact_cuda(args.device):
            one_batch(args)
        return
    # Every side in full float32 on CUDA (TF32 off, deterministic cuDNN), as weightzoo
    # computes and trains: the comparison is of the same arithmetic.
    with exact_cuda(args.device):
        print(
            f"{args.models} models, {args.batches} x {args.batch_size} digits, {args.iters} power "
            f"steps, {args.probes} probes, {args.threads} thread(s), device {args.device}"
        )
        print("| model | metric | path | seconds | models/s | speedup | max rel diff |")
        print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
        for name in args.archs:
            make, size = ARCHS[name]
            data = digits(args.batches, args.batch_size, size, args.device)
            module = make().to(args.device)
            layout = layout_of(module)
            rows = population(make, args.models).to(args.device)
            nets = [load_vector(make(), row, layout).to(args.device).eval() for row in rows.cpu()]
            # Warm-up: the first vmap call pays for tracing the functional transforms once.
            landscape.hessian_top_eigenvalue(module, rows[:2], data, F.cross_entropy, iters=1)

            def vec_top(r=rows, d=data, m=module, vectorize=True):
                return landscape.hessian_top_eigenvalue(
                    m,
                    r,
                    d,
                    F.cross_entropy,
                    iters=args.iters,
                    tol=0.0,
                    seed=SEED,
                    hvp="forward",
                    vectorize=vectorize,
                )

            def vec_trace(r=rows, d=data, m=module, vectorize=True):
                return landscape.hessian_trace(
                    m,
                    r,
                    d,
                    F.cross_entropy,
                    probes=args.probes,
                    seed=SEED,
                    hvp="forward",
                    vectorize=vectorize,
                )

            runs = {
                "top eigenvalue": (
                    vec_top,
                    lambda d=data, ns=nets: [loop_top(n, d, args.iters, SEED) for n in ns],
                ),
                "trace": (
                    vec_trace,
                    lambda d=data, ns=nets: [loop_trace(n, d, args.probes, SEED) for n in ns],
                ),
            }
            for metric, (vec, loop) in runs.items():
                want, loop_s = timed(loop, args.device)
                got, vec_s = timed(vec, args.device)
                _, func_s = timed(lambda v=vec: v(vectorize=False), args.device)
                want_t = torch.tensor(want, dtype=got.dtype)
                diff = float(((got.cpu() - want_t).abs() / want_t.abs().clamp_min(1e-12)).max())
                for path, secs in (("loop", loop_s), ("func loop", func_s), ("vmap", vec_s)):
                    speedup = f"{loop_s / secs:.1f}x" if path != "loop" else ""
                    shown = f"{diff:.1e}" if path == "vmap" else ""
                    print(
                        f"| {name} | {metric} | {path} | {secs:.2f} | {args.models / secs:.1f} | "
                        f"{speedup} | {shown} |"
                    )


if __name__ == "__main__":
    main()
