"""How fast can many CNN-s rows run on one CPU thread? A roofline for ``weightzoo.evaluate``.

Measures, on this machine and in one run:

- the peak float32 GEMM rate (``torch.mm`` on large square matrices, GFLOP/s);
- the multiply-adds of one CNN-s forward on one image, per layer (forward hooks);
- the rows/s of a per-model loop (``load_state_dict`` + forward + loss + accuracy) and of
  ``weightzoo.evaluate`` on the digits test split, and the GFLOP/s each achieves;
- the time of the kernels that any population run through torch must still run, at the shapes
  the stacked path uses (``--models`` rows, ``--images`` inputs per pass): the first
  convolution as one GEMM (its patches are shared), the grouped second convolution, and
  ``tanh`` on the first pooled layer.

Two bounds on the ratio loop / ``evaluate`` follow: the GEMM roofline (every multiply-add at the
peak rate, nothing else) and the kernel floor (the three kernels above at their measured
speed, everything else free).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/roofline_cnn_s.py [--rows 256] [--models 128]
        [--images 4] [--repeat 5] [--profile]

``--profile`` also prints where one ``evaluate`` call spends its time (``torch.profiler``,
operators by self CPU time).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

import weightzoo
from bench_evaluate import _best, image_rows
from weightzoo.architectures import build_model
from weightzoo.features import unflatten
from weightzoo.imagesets.splits import load_splits


def _seconds(fn: Callable[[], object], repeat: int) -> float:
    """Best CPU time of ``repeat`` calls after a warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def peak_gemm(repeat: int) -> float:
    """The best float32 ``torch.mm`` rate over a few large square sizes, GFLOP/s."""
    rates = []
    for n in (1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        rates.append(2 * n**3 / _seconds(lambda a=a, b=b: a @ b, repeat) / 1e9)
    return max(rates)


def layer_macs(net: nn.Module, shape: tuple[int, ...]) -> list[tuple[str, int]]:
    """Multiply-adds of each convolution and linear layer for one input of ``shape``."""
    out: list[tuple[str, int]] = []

    def hook(module: nn.Module, _args: object, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            out.append(
                (f"conv {tuple(module.weight.shape)}", output.numel() * module.weight[0].numel())
            )
        elif isinstance(module, nn.Linear):
            out.append(
                (f"linear {tuple(module.weight.shape)}", output.numel() * module.in_features)
            )

    hooks = [
        m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    with torch.no_grad():
        net(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    return out


def kernel_floor(models: int, images: int, repeat: int) -> dict[str, float]:
    """Seconds per (model, image) of the kernels a population still runs, at one pass's shape."""
    patches = torch.rand(images * 24 * 24, 25)
    filters = torch.randn(25, models * 8)
    pooled = torch.randn(images, models * 8, 12, 12).contiguous(memory_format=torch.channels_last)
    weight2 = torch.randn(models * 6, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    values = torch.randn(images * 12 * 12 * models * 8)
    per = models * images
    return {
        "first conv GEMM": _seconds(lambda: patches @ filters, repeat) / per,
        "grouped second conv": _seconds(lambda: F.conv2d(pooled, weight2, groups=models), repeat)
        / per,
        "tanh, first layer": _seconds(lambda: values.tanh_(), repeat) / per,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--models", type=int, default=128)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="profile one evaluate call")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from weightzoo.generate.specs import get_spec  # spec only: how the zoo was generated

    spec = get_spec("modelzoo-digits-cnn-s-seed").to_dict()
    size = spec["image_size"]
    _, _, (test_x, test_y) = load_splits("digits", None, size, True, 0.15, 42)
    x, y = torch.from_numpy(test_x), torch.from_numpy(test_y)
    net = build_model(spec).eval()

    peak = peak_gemm(args.repeat)
    macs = layer_macs(net, tuple(x.shape[1:]))
    total = sum(m for _, m in macs)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"peak float32 GEMM (torch.mm, 1024/2048 square): {peak:.1f} GFLOP/s")
    print(f"CNN-s multiply-adds per image ({'x'.join(map(str, x.shape[1:]))}):")
    for name, count in macs:
        print(f"  {name:26s} {count:8d}  ({count / total:5.1%})")
    flop_row = 2 * total * len(x)
    print(
        f"  {'total':26s} {total:8d}  -> {flop_row / 1e6:.1f} MFLOP per row on {len(x)} test images"
    )

    with tempfile.TemporaryDirectory() as tmp:
        zoo, stacked = image_rows(Path(tmp), spec, args.rows)

        def loop() -> None:
            with torch.no_grad():
                for row in stacked:
                    net.load_state_dict(unflatten(row, zoo.layout))
                    out = net(x)
                    F.cross_entropy(out, y).item()
                    (out.argmax(1) == y).double().mean().item()

        batched = _best(lambda: weightzoo.evaluate(zoo, stacked, x, y), args.repeat)[0]
        if args.profile:
            with torch.profiler.profile() as prof:
                weightzoo.evaluate(zoo, stacked, x, y)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
        looped = _best(loop, args.repeat)[0]
    per_image = {"loop": looped / (args.rows * len(x)), "evaluate": batched / (args.rows * len(x))}
    floor = kernel_floor(args.models, args.images, args.repeat)
    gemm_bound = 2 * total / (peak * 1e9)
    print(f"time per (row, image), {args.rows} rows:")
    for name, seconds in per_image.items():
        print(
            f"  {name:26s} {seconds * 1e6:6.2f} us  {2 * total / seconds / 1e9:5.1f} GFLOP/s  "
            f"{1 / (seconds * len(x)):7.1f} rows/s"
        )
    print(f"kernels at one pass of {args.models} rows x {args.images} images:")
    for name, seconds in floor.items():
        print(f"  {name:26s} {seconds * 1e6:6.2f} us")
    kernels = sum(floor.values())
    print(f"  {'sum (kernel floor)':26s} {kernels * 1e6:6.2f} us")
    print(f"GEMM roofline: {gemm_bound * 1e6:.2f} us per (row, image)")
    print(
        f"ratio loop/evaluate reached {per_image['loop'] / per_image['evaluate']:.1f}x; "
        f"ceiling {per_image['loop'] / gemm_bound:.1f}x (GEMM roofline), "
        f"{per_image['loop'] / kernels:.1f}x (kernel floor)"
    )


if __name__ == "__main__":
    main()
