"""MLDS DS1 networks: one by one vs one population, and compaction vs freezing.

Part 1: both sides run the same fixed work, ``--steps`` Adam steps per network on batches of
``--batch`` machine sequences of ``--steps-len`` steps (not to convergence), after one warm-up
step. ``networks/hour`` is ``networks / seconds * 3600`` for such runs. The loop baseline is a
plain :class:`~weightzoo.families.mlds.model.MLDSNet` (``nn.GRU``, cuDNN-style fused kernel
on CPU) with ``torch.optim.Adam``; the population is
:func:`~weightzoo.families.mlds.model.population_forward` as the generator trains with it
(the wavefront GRU stack with its hand-written backward, ``bptt=True``) with the toolkit's
:class:`~weightzoo.generate.population.PopulationOptimizer` over the stacks.

Part 2: the same networks trained to a validation threshold with
:func:`weightzoo.families.mlds.train.train_population`, networks passing at different
epochs: passed networks dropped from the population (compaction, the default) vs kept in it,
frozen. Both must give the same networks the same epochs.

Part 3, time to quality: passed networks per hour, the ``mlds-ds1`` spec's recipe
end to end. The population side is
:func:`~weightzoo.families.mlds.train.train_population` with the spec's settings, seeds
and data (``get_spec("mlds-ds1")``, :func:`~weightzoo.families.mlds.data.class_data`) on the
spec's first ``--ttq-networks`` networks (replicate-major: every machine in turn). The
one-at-a-time side is what a researcher would write per network: a plain ``MLDSNet``
(``nn.GRU``) under ``torch.manual_seed(seed)`` and ``initialise_(net, "orthogonal")``,
``torch.optim.Adam``, ``clip_grad_norm_`` at the spec's norm, ``CosineAnnealingLR`` stepped per
epoch (the spec's half cosine), the same batches in the same order, the validation set measured
after every epoch, the same stop rule (validation MSE below ``threshold * stop_margin``) and
pass rule (validation and evaluation MSE below ``threshold`` and at least ``min_bit_accuracy``
of the output bits right). To keep the run short it trains only the first ``--loop-networks``
of those networks (one per machine, in the spec's order) and its rate is measured on them.
The population's rate grows with its size (its wall time is about that of its slowest
network, the loop's the sum over its networks): give ``--ttq-networks 160 --ttq-per-class 32
--loop-networks 3`` (five machines x 32) for a rate near that of a whole zoo; the default 10
shows the small-population end.

Times are wall-clock seconds, or with ``--clock cpu`` this process's CPU time: on a machine
shared with other jobs, CPU time is what one thread's work costs, while wall time also counts
the time other jobs held the core (both sides run one thread, ``--threads 1``).

Usage::

    python benchmarks/bench_mlds.py [--networks 64] [--steps 20] [--steps-len 32] [--batch 16]
        [--threads 1] [--device cpu] [--clock wall] [--epochs 6] [--threshold 0.2]
        [--ttq-networks 10] [--loop-networks 2] [--ttq-per-class 16]
        [--parts step threshold quality]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from weightzoo.families.mlds.data import class_data
from weightzoo.families.mlds.family import FAMILY
from weightzoo.families.mlds.machines import machine_set
from weightzoo.families.mlds.model import (
    MLDSNet,
    init_population,
    initialise_,
    network_inputs,
    population_forward,
)
from weightzoo.families.mlds.spec import DS1_NET, MACHINES, MLDSSpec, TrainSettings
from weightzoo.families.mlds.train import PopulationData, train_population
from weightzoo.generate.population import DataOrder, PopulationOptimizer
from weightzoo.generate.specs import get_spec
from weightzoo.precision import exact_cuda

QUALITY_SETS = ("val", "eval")  # the sets a network must pass on (its training set aside)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]  # set by --clock


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
    start = clock()
    for m in range(x.shape[0]):
        torch.manual_seed(m)
        net = MLDSNet(DS1_NET).to(device)
        _loop_steps(net, torch.optim.Adam(net.parameters(), lr=1e-3), x[m], y[m], steps)
    sync(device)
    return (clock() - start) / x.shape[0]


def bench_population(x, y, steps: int, device: str) -> float:
    """Seconds per network, all networks as one population."""
    params = init_population(DS1_NET, list(range(x.shape[0])), device)
    for tensor in params.values():
        tensor.requires_grad_(True)
    opt = PopulationOptimizer("adam", 1e-3, count=x.shape[0], device=device)
    for step in range(steps + 1):
        if step == 1:  # after one warm-up step
            sync(device)
            start = clock()
        out = population_forward(DS1_NET, params, x, bptt=True)  # as the generator trains
        err = ((out - y) ** 2).mean(dim=(1, 2, 3))
        err.sum().backward()
        opt.step(params)
        for tensor in params.values():
            tensor.grad = None
    sync(device)
    return (clock() - start) / x.shape[0]


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
        start = clock()
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
        results[compact] = (clock() - start, result)
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


def passes(spec: MLDSSpec, losses: dict[str, float], bits: dict[str, float]) -> bool:
    """The spec's pass rule: every quality set below the threshold, enough bits right."""
    return all(
        losses[name] < spec.threshold and bits[name] >= spec.min_bit_accuracy
        for name in QUALITY_SETS
    )


def quality_population(spec: MLDSSpec, plans, device: str) -> tuple[float, list[bool], list[int]]:
    """Train ``plans`` as one population as the generator does: seconds, passed, epochs."""
    names = spec.classes()
    per_class = [class_data(spec, name) for name in names]
    sets = {s: [data[s] for data in per_class] for s in spec.set_names()}
    data = PopulationData(sets, device, signed_inputs=spec.signed_inputs)
    classes = [names.index(plan.columns["machine"]) for plan in plans]
    sync(device)
    start = clock()
    result = train_population(
        spec.net, data, classes, [p.seed for p in plans], spec.settings(), device=device
    )
    sync(device)
    seconds = clock() - start
    final = result.final_metrics
    passed = [
        passes(
            spec,
            {s: float(final[f"{s}_loss"][i]) for s in QUALITY_SETS},
            {s: float(final[f"{s}_bit_accuracy"][i]) for s in QUALITY_SETS},
        )
        for i in range(len(plans))
    ]
    return seconds, passed, result.epochs.tolist()


def _masked_mse(out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (((out - y) ** 2).sum(-1) * mask).sum() / (mask.sum() * out.shape[-1])


@torch.no_grad()
def _measure(net: MLDSNet, x, y, mask) -> tuple[float, float]:
    """Masked MSE and share of output bits right (rounded at 0.5) on a whole set."""
    out = net(x)
    right = ((out > 0.5) == (y > 0.5)).float().sum(-1) * mask
    return float(_masked_mse(out, y, mask)), float(right.sum() / (mask.sum() * out.shape[-1]))


def quality_loop(spec: MLDSSpec, plans, device: str) -> tuple[float, list[bool], list[int]]:
    """Train ``plans`` one after another with plain PyTorch: seconds, passed, epochs."""
    settings = spec.settings()
    tensors = {}
    for name in spec.classes():
        tensors[name] = {
            s: (
                network_inputs(torch.from_numpy(part.inputs), spec.signed_inputs).to(device),
                torch.from_numpy(part.outputs).float().to(device),
                torch.from_numpy(part.mask).float().to(device),
            )
            for s, part in class_data(spec, name).items()
        }
    passed, epochs = [], []
    sync(device)
    start = clock()
    for plan in plans:
        sets = tensors[plan.columns["machine"]]
        x, y, mask = sets["train"]
        torch.manual_seed(plan.seed)
        net = initialise_(MLDSNet(spec.net), settings.init).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=settings.max_epochs - 1, eta_min=settings.lr * settings.min_lr_ratio
        )
        order = DataOrder([plan.seed], len(x), kind="numpy")  # the generator's batches
        batch = settings.batch_size
        trained = 0
        while trained < settings.max_epochs:
            trained += 1
            rows = order.epoch(device)[0]
            for first in range(0, len(x), batch):
                index = rows[first : first + batch]
                loss = _masked_mse(net(x[index]), y[index], mask[index])
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), settings.clip_norm)
                opt.step()
            cosine.step()
            if _measure(net, *sets["val"])[0] < settings.threshold:
                break
        final = {s: _measure(net, *sets[s]) for s in QUALITY_SETS}
        passed.append(
            passes(spec, {s: v[0] for s, v in final.items()}, {s: v[1] for s, v in final.items()})
        )
        epochs.append(trained)
    sync(device)
    return clock() - start, passed, epochs


def bench_quality(args) -> None:
    """Passed networks per hour: the mlds-ds1 recipe, population vs one at a time."""
    spec = get_spec("mlds-ds1").override(models=args.ttq_networks, per_class=args.ttq_per_class)
    plans = FAMILY.plan(spec)
    loop_plans = plans[: args.loop_networks]
    for name in spec.classes():
        class_data(spec, name)  # drawn once, before either clock starts
    print(
        f"time to quality, {spec.name} recipe: stop at val MSE < {spec.settings().threshold:g}, "
        f"pass at val and eval MSE < {spec.threshold:g} with >= {spec.min_bit_accuracy:.0%} "
        f"bits right; at most {spec.max_epochs} epochs"
    )
    pop_seconds, pop_passed, pop_epochs = quality_population(spec, plans, args.device)
    loop_seconds, loop_passed, loop_epochs = quality_loop(spec, loop_plans, args.device)
    rates = {}
    for label, seconds, passed, note in (
        ("population", pop_seconds, pop_passed, f"all {len(plans)} networks as one"),
        ("one by one", loop_seconds, loop_passed, f"the first {len(loop_plans)} of them"),
    ):
        rates[label] = sum(passed) / seconds * 3600
        print(
            f"{label:>11}: {sum(passed):3d}/{len(passed):<3d} passed in {seconds:7.1f} s: "
            f"{rates[label]:8.0f} passed networks/hour ({note})"
        )
    ratio = rates["population"] / rates["one by one"] if rates["one by one"] else float("inf")
    print(f"ratio population / one by one (passed networks per hour): {ratio:.2f}x")
    same = [
        f"{plan.columns['machine']} {pop_epochs[i]}/{loop_epochs[i]}"
        for i, plan in enumerate(loop_plans)
    ]
    print("  epochs trained, population / one by one, same networks: " + ", ".join(same))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--steps-len", type=int, default=32, help="sequence length")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall time, or this process's CPU time (on a CPU shared with other jobs)",
    )
    parser.add_argument("--epochs", type=int, default=6, help="part 2: most epochs")
    parser.add_argument("--threshold", type=float, default=0.2, help="part 2: val loss")
    parser.add_argument(
        "--ttq-networks", type=int, default=10, help="part 3: population size (mlds-ds1 order)"
    )
    parser.add_argument(
        "--loop-networks", type=int, default=2, help="part 3: networks trained one by one"
    )
    parser.add_argument(
        "--ttq-per-class",
        type=int,
        default=None,
        help="part 3: networks per machine (default: the spec's 16; more for a larger population)",
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=("step", "threshold", "quality"),
        default=["step", "threshold", "quality"],
    )
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    # Every side in full float32 on CUDA (TF32 off, deterministic cuDNN), as weightzoo
    # computes and trains: the comparison is of the same arithmetic.
    with exact_cuda(args.device):
        if "step" in args.parts:
            bench_steps(args)
        if "threshold" in args.parts:
            bench_threshold(args)
        if "quality" in args.parts:
            bench_quality(args)


def bench_steps(args) -> None:
    """Part 1: fixed steps per network, one by one vs one population."""
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
