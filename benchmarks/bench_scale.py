"""Generating across workers and machines: throughput per engine, cost per model-epoch.

Part ``engines``: one small MLDS DS1 spec (``--models`` GRU networks, at most ``--epochs``
epochs each, ``--block`` networks per block) generated from scratch with the local engine
(1 and 2 worker processes) and the Ray engine (a local Ray with 1 and 2 CPUs, one CPU per
block), ``--repeat`` rounds of all four interleaved, the best round of each counted (on a
shared machine the load of other processes changes from minute to minute).
``models/hour = models / seconds * 3600``; Ray's start-up is timed apart (a cluster starts
once for many zoos). Every run must write the same bytes; the script checks it.

Part ``cost``: seconds per model-epoch against parameter count, for every architecture of the
papers' zoos at the paper specs' batch size and input shape: a population of ``--population``
models (1 for ResNet-18, trained one at a time by the generator) takes ``--steps`` training
steps (forward, backward, Adam) on random data after one warm-up step. Seconds per model-step
are CPU time of the process on the CPU (so that other load on the machine does not count),
wall time on an accelerator. Times the steps of one epoch (MLDS: ``train_size / batch``
sequences of the network's own machine; images: 85% of the official training set, the rest
is the validation split, divided by the batch size) they give seconds per model-epoch.
Batches above ``--max-batch`` (ResNet-18's 128 and 256) are timed at ``--max-batch`` and
scaled linearly. Per-epoch evaluation of every split is not included. The projection
multiplies by each paper zoo's models and epochs (MLDS: the spec's ``max_epochs``, an upper
bound: networks stop when they pass).

Usage::

    python benchmarks/bench_scale.py [--parts engines cost] [--models 8] [--epochs 3]
        [--block 2] [--repeat 2] [--population 8] [--steps 3] [--max-batch 32] [--device cpu]

Run with ``OMP_NUM_THREADS=1`` on a shared machine: every block trains with one torch thread.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

from weightzoo.architectures import build_model
from weightzoo.families.mlds.model import init_population
from weightzoo.families.mlds.model import population_forward as rnn_forward
from weightzoo.families.modelzoo.train import choose_path, population_forward, stack_models
from weightzoo.generate.population import PopulationOptimizer
from weightzoo.generate.ray_engine import RayOptions
from weightzoo.generate.runner import generate
from weightzoo.generate.specs import all_specs, get_spec
from weightzoo.storage import Manifest

# Official training-set sizes; the generator keeps 85% for training (15% validation).
TRAIN_IMAGES = {
    "mnist": 60_000,
    "fashion-mnist": 60_000,
    "svhn": 73_257,
    "usps": 7_291,
    "cifar10": 50_000,
    "cifar100": 50_000,
    "stl10": 5_000,
    "tiny-imagenet": 100_000,
}
CURVE = {  # the architectures of the cost curve: one paper spec each
    "GRU (MLDS DS1/DS2)": "mlds-ds1-paper",
    "LSTM (MLDS DS3)": "mlds-ds3-paper",
    "CNN-s": "modelzoo-mnist-cnn-s-seed",
    "CNN-m": "modelzoo-cifar10-cnn-m-seed",
    "ResNet-18": "modelzoo-cifar10-resnet18-seed",
}


# -- engines ---------------------------------------------------------------------------------


def shard_hashes(path: Path) -> dict[str, str]:
    return {s.file: s.sha256 for s in Manifest.load(path).shards}


def timed_generate(spec, out: Path, **kwargs) -> float:
    start = time.perf_counter()
    generate(spec, out, progress=False, **kwargs)
    return time.perf_counter() - start


def bench_engines(args) -> None:
    spec = get_spec("mlds-ds1").override(models=args.models, epochs=args.epochs)
    spec = spec.replace(shard_models=args.block)
    blocks = math.ceil(args.models / args.block)
    print(
        f"engines: mlds-ds1, {args.models} GRU networks, at most {args.epochs} epochs, "
        f"{args.block} per block ({blocks} blocks); {os.cpu_count()} CPUs, 1 torch thread "
        f"per block; {args.repeat} rounds, each round every engine once (best of the rounds)"
    )
    try:
        import ray
    except ImportError:
        ray = None
        print('(Ray not installed: pip install "weightzoo[ray]")')
    runs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        reference = None
        for round_ in range(args.repeat):
            for engine, count in [("local", 1), ("local", 2), ("ray", 1), ("ray", 2)]:
                if engine == "ray" and ray is None:
                    continue
                out = root / f"{engine}{count}-{round_}"
                if engine == "local":
                    seconds = timed_generate(spec, out, workers=count)
                else:
                    start = time.perf_counter()
                    ray.init(num_cpus=count, include_dashboard=False, log_to_driver=False)
                    started = time.perf_counter() - start
                    try:
                        seconds = timed_generate(spec, out, engine="ray", ray=RayOptions())
                    finally:
                        ray.shutdown()
                    print(f"(round {round_}: Ray start with {count} CPU(s) {started:.1f} s)")
                runs.setdefault(f"{engine} x{count}", []).append(seconds)
                hashes = shard_hashes(out)
                reference = reference or hashes
                assert hashes == reference, f"{engine} x{count} wrote other bytes"
                shutil.rmtree(out)
    print("engine  workers  best s  models/hour  vs local x1  all rounds (s)")
    base = min(runs["local x1"])
    for name, times in runs.items():
        engine, workers = name.split(" x")
        best = min(times)
        rate = args.models / best * 3600
        every = ", ".join(f"{t:.1f}" for t in times)
        print(
            f"{engine:6s}  {workers:>7s}  {best:6.1f}  {rate:11.0f}  {base / best:10.2f}x  {every}"
        )
    print("(every run wrote the same shards, byte for byte)")


# -- cost ------------------------------------------------------------------------------------


def rnn_step_seconds(spec, models: int, steps: int, device: str) -> float:
    """Seconds per population step of MLDS networks (random sequences, MSE, Adam)."""
    config = spec.net
    params = init_population(config, list(range(models)), device=device)
    for tensor in params.values():
        tensor.requires_grad_(True)
    opt = torch.optim.Adam(params.values(), lr=1e-3)
    shape = (models, spec.batch_size, spec.seq_len)
    x = torch.rand(*shape, config.input_size, device=device) * 2 - 1
    y = torch.rand(*shape, config.output_size, device=device)

    def step() -> None:
        loss = ((rnn_forward(config, params, x) - y) ** 2).mean(dim=(1, 2, 3)).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()

    return _time_steps(step, steps, device)


def image_step_seconds(spec, models: int, steps: int, device: str, batch: int) -> float:
    """Seconds per population step of image models (random images, cross-entropy, Adam).

    ``batch`` images per model and step; the caller scales to the spec's batch size.
    """
    data = spec.to_dict()
    nets = []
    for seed in range(models):
        torch.manual_seed(seed)
        nets.append(build_model(data, {"activation": data["activations"][0], "dropout": 0.0}))
    pop = stack_models(nets, device=device)
    opt = PopulationOptimizer("adam", 1e-3, count=models, device=device)
    path = choose_path(nets[0], batch)
    shape = (models, batch, spec.in_channels, spec.image_size, spec.image_size)
    x = torch.rand(*shape, device=device)
    y = torch.randint(0, spec.num_classes, (models, batch), device=device)

    def step() -> None:
        out = population_forward(nets[0], pop, x, path=path, training=True, dropout=False)
        loss = F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none")
        loss.view(models, -1).mean(1).sum().backward()
        opt.step(pop.params)
        pop.zero_grad()

    return _time_steps(step, steps, device)


def _time_steps(step: Callable[[], None], steps: int, device: str) -> float:
    """Seconds per step: CPU time of this process on the CPU, wall time on an accelerator.

    With one torch thread, CPU time is the work itself, whatever else the machine runs (wall
    time on a shared machine would count the time other processes held the core).
    """
    clock = time.process_time if device == "cpu" else time.perf_counter
    step()  # warm-up: allocations, kernels, autotuning
    _sync(device)
    start = clock()
    for _ in range(steps):
        step()
    _sync(device)
    return (clock() - start) / steps


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def steps_per_epoch(spec) -> int:
    if spec.family == "mlds":
        return math.ceil(spec.train_size / spec.batch_size)
    return math.ceil(round(TRAIN_IMAGES[spec.dataset] * (1 - spec.val_fraction)) / spec.batch_size)


def shape_key(spec) -> tuple:
    """Specs with equal keys cost the same per step."""
    if spec.family == "mlds":
        return ("mlds", spec.net, spec.batch_size, spec.seq_len)
    data = spec.to_dict()
    return (
        spec.architecture,
        spec.image_size,
        spec.in_channels,
        spec.num_classes,
        spec.batch_size,
        tuple(data.get("conv_channels", ())),
        data.get("hidden"),
    )


def paper_specs() -> list:
    """The papers' zoos: MLDS ``*-paper``, Model Zoos and trajectory zoos on the real data."""
    specs = []
    for name, spec in all_specs().items():
        if spec.family == "mlds" and not name.endswith("-paper"):
            continue
        if spec.family != "mlds" and spec.dataset not in TRAIN_IMAGES:
            continue  # the offline digits zoos are this library's, not a paper's
        specs.append(spec)
    return specs


def bench_cost(args) -> None:
    print(
        f"cost per model-epoch: {args.steps} steps after a warm-up, population of "
        f"{args.population} (ResNet-18: 1), batches over {args.max_batch} timed at "
        f"{args.max_batch} and scaled, device {args.device}, "
        f"{torch.get_num_threads()} torch thread(s)"
    )
    measured: dict[tuple, float] = {}

    def per_model_step(spec) -> float:
        key = shape_key(spec)
        if key not in measured:
            models = 1 if spec.shard_models == 1 else min(args.population, spec.shard_models)
            if spec.family == "mlds":
                seconds = rnn_step_seconds(spec, models, args.steps, args.device)
            else:
                # Large batches (ResNet-18's 128-256) are timed smaller and scaled: a step's
                # cost grows linearly with the batch once the batch fills the convolutions.
                batch = min(spec.batch_size, args.max_batch)
                seconds = image_step_seconds(spec, models, args.steps, args.device, batch)
                seconds *= spec.batch_size / batch
            measured[key] = seconds / models
        return measured[key]

    print("architecture         params      batch  steps/epoch  s/model-step  s/model-epoch")
    for label, name in CURVE.items():
        spec = get_spec(name)
        params = spec.estimate()["params"]
        seconds = per_model_step(spec)
        per_epoch = seconds * steps_per_epoch(spec)
        print(
            f"{label:19s}  {params:>10,d}  {spec.batch_size:5d}  {steps_per_epoch(spec):11d}"
            f"  {seconds:12.4f}  {per_epoch:13.1f}"
        )
    print()
    print("projection (training steps only; MLDS at max_epochs, an upper bound)")
    print("zoo                                       models  epochs  s/model-epoch  CPU-hours")
    total = 0.0
    for spec in paper_specs():
        epochs = spec.max_epochs if spec.family == "mlds" else spec.epochs
        per_epoch = per_model_step(spec) * steps_per_epoch(spec)
        models = spec.estimate()["models"]
        hours = models * epochs * per_epoch / 3600
        total += hours
        print(f"{spec.name:40s}  {models:6d}  {epochs:6d}  {per_epoch:13.1f}  {hours:9.3g}")
    print(f"{'all of the above':40s}  {'':6s}  {'':6s}  {'':13s}  {total:9.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["engines", "cost"])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--block", type=int, default=2)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}")
    if "engines" in args.parts:
        bench_engines(args)
        print()
    if "cost" in args.parts:
        bench_cost(args)


if __name__ == "__main__":
    main()
