"""Batch evaluation of many rows (``weightzoo.evaluate``) vs a loop over single models.

Both sides compute the same thing: every row's outputs, loss and accuracy on the same inputs.
The loop is what one writes without weightzoo's help: per row, ``load_state_dict`` of the
unflattened row into one module, a forward pass, the loss and the accuracy. ``evaluate`` runs
the rows as one population (``vmap`` over ``functional_call`` for image nets, the stacked
forward for MLDS GRUs) in chunks of rows and inputs.

Cases (rows are freshly initialised networks; speed does not depend on trained values):

- ``cnn-s test``: CNN-s (``modelzoo-digits-cnn-s-seed``) on the 359 digits test images;
- ``cnn-s queries``: the same rows on a query set of ``--queries`` inputs (what
  ``weightzoo behaviour`` and a behavioural loss run);
- ``mlp test`` / ``mlp queries``: the trajectory MLP (``trajectory-digits-mlp``, 196-10-10-10),
  the same two input sets;
- ``mlds gru``: DS1 GRUs (``mlds-ds1``) each on its machine's evaluation sequences (128 x 16
  steps), the loop through ``nn.GRU``.

Usage::

    python benchmarks/bench_evaluate.py [--rows 256] [--mlds-rows 64] [--queries 64]
        [--threads 1] [--device cpu] [--repeat 3]

Prints rows/s of each side (best of ``--repeat``) and the ratio, all from the same run. Times
are the process's CPU time (``time.process_time``): with one thread it is the compute each side
needs, and other processes on a shared machine do not inflate it (wall time is printed too).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

import weightzoo
from weightzoo.architectures import build_model
from weightzoo.architectures.image import init_weights
from weightzoo.families.mlds.data import class_sets
from weightzoo.families.mlds.model import initialise_, network_inputs
from weightzoo.families.mlds.spec import MLDSData
from weightzoo.features import flatten, layout_of, unflatten
from weightzoo.imagesets.splits import load_splits
from weightzoo.precision import exact_cuda
from weightzoo.storage import Manifest


def _zoo(root: Path, spec: dict, models: int, columns: dict[str, str]) -> weightzoo.Zoo:
    """A manifest-only zoo of ``spec``: enough for evaluate (no shards are read)."""
    manifest = Manifest(
        name=spec["name"],
        family=spec["family"],
        spec=spec,
        spec_fingerprint="0" * 64,
        layout=layout_of(build_model(spec, {"activation": "tanh"})),
        epochs=[0],
        metrics=[],
        columns=columns,
        stats_preset="modelzoo",
        stats_names=[],
        num_models=models,
        split_counts={"train": models},
    )
    path = root / spec["name"]
    path.mkdir()
    (path / "zoo.json").write_text(json.dumps(manifest.to_dict()))
    return weightzoo.Zoo(path)


def _best(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best CPU time and best wall time of ``repeat`` calls, after one warm-up call."""
    fn()
    cpu, wall = [], []
    for _ in range(repeat):
        start, start_wall = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - start)
        wall.append(time.perf_counter() - start_wall)
    return min(cpu), min(wall)


def _report(name: str, rows: int, batched: tuple[float, float], loop: tuple[float, float]) -> None:
    print(
        f"{name:14s} rows {rows:4d}  evaluate {rows / batched[0]:9.1f} rows/s  "
        f"loop {rows / loop[0]:8.1f} rows/s  ratio {loop[0] / batched[0]:5.1f}x  "
        f"(wall: ratio {loop[1] / batched[1]:5.1f}x)"
    )


def image_rows(root: Path, spec: dict, count: int) -> tuple[weightzoo.Zoo, torch.Tensor]:
    """A manifest-only zoo of an image spec and ``count`` freshly initialised rows ``[count, P]``
    (row ``i`` under ``torch.manual_seed(i)``, the spec's first initialisation)."""
    zoo = _zoo(root, spec, count, {"model_id": "int64"})
    rows = []
    for seed in range(count):
        torch.manual_seed(seed)
        net = build_model(spec)
        init_weights(net, spec["inits"][0])
        rows.append(flatten(net, zoo.layout))
    return zoo, torch.stack(rows)


def bench_image(root: Path, args: argparse.Namespace, name: str, label: str) -> None:
    from weightzoo.generate.specs import get_spec  # spec only: how the zoo was generated

    spec = get_spec(name).to_dict()
    zoo, rows = image_rows(root, spec, args.rows)
    size = spec["image_size"]
    _, _, (test_x, test_y) = load_splits("digits", None, size, True, 0.15, 42)
    x, y = torch.from_numpy(test_x).to(args.device), torch.from_numpy(test_y).to(args.device)
    net = build_model(spec).to(args.device).eval()

    def loop(inputs: torch.Tensor, labels: torch.Tensor) -> None:
        with torch.no_grad():
            for row in rows:
                net.load_state_dict(unflatten(row.to(args.device), zoo.layout))
                out = net(inputs)
                F.cross_entropy(out, labels).item()
                (out.argmax(1) == labels).double().mean().item()

    for case, inputs, labels in (
        (f"{label} test", x, y),
        (f"{label} queries", weightzoo.queries(zoo, "union", args.queries).to(args.device), None),
    ):
        labels = labels if labels is not None else torch.zeros(len(inputs), dtype=torch.long)
        labels = labels.to(args.device)
        batched = _best(
            lambda i=inputs, t=labels: weightzoo.evaluate(zoo, rows, i, t, device=args.device),
            args.repeat,
        )
        looped = _best(lambda i=inputs, t=labels: loop(i, t), args.repeat)
        check = weightzoo.evaluate(zoo, rows[:4], inputs, labels, device=args.device)
        with torch.no_grad():
            net.load_state_dict(unflatten(rows[3].to(args.device), zoo.layout))
            assert torch.allclose(check.outputs[3], net(inputs).cpu(), rtol=1e-4, atol=1e-5)
        _report(case, args.rows, batched, looped)


def bench_mlds(root: Path, args: argparse.Namespace) -> None:
    from weightzoo.generate.specs import get_spec

    spec = get_spec("mlds-ds1").to_dict()
    zoo = _zoo(root, spec, args.mlds_rows, {"model_id": "int64", "machine": "str"})
    machines = [spec["machines"][i % len(spec["machines"])] for i in range(args.mlds_rows)]
    nets = []
    for seed in range(args.mlds_rows):
        torch.manual_seed(seed)
        nets.append(flatten(initialise_(build_model(spec)), zoo.layout))
    rows = torch.stack(nets)
    data = MLDSData.from_spec(spec)
    net = build_model(spec).to(args.device).eval()

    def loop() -> None:
        with torch.no_grad():
            for row, machine in zip(rows, machines, strict=True):
                net.load_state_dict(unflatten(row.to(args.device), zoo.layout))
                test = class_sets(data, machine)["eval"]
                out = net(network_inputs(test.inputs, data.signed_inputs).to(args.device))
                target = torch.from_numpy(test.outputs).float().to(args.device)
                ((out - target) ** 2).mean().item()
                ((out > 0.5) == (target > 0.5)).double().mean().item()

    columns = {"machine": machines}
    batched = _best(
        lambda: weightzoo.evaluate(zoo, rows, model_columns=columns, device=args.device),
        args.repeat,
    )
    looped = _best(loop, args.repeat)
    _report("mlds gru", args.mlds_rows, batched, looped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--mlds-rows", type=int, default=64)
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Every side in full float32 on CUDA (TF32 off, deterministic cuDNN), as weightzoo
    # computes and trains: the comparison is of the same arithmetic.
    with exact_cuda(args.device):
        print(f"torch {torch.__version__}, {args.threads} thread(s), device {args.device}")
        with tempfile.TemporaryDirectory() as tmp:
            bench_image(Path(tmp), args, "modelzoo-digits-cnn-s-seed", "cnn-s")
            bench_image(Path(tmp), args, "trajectory-digits-mlp", "mlp")
            bench_mlds(Path(tmp), args)


if __name__ == "__main__":
    main()
