"""Loss-landscape metrics of an image zoo's models at one checkpoint (see docs/landscape.md).

Hessian top eigenvalue and trace of each model's training loss, and, against the next model
of the batch as its partner, output CKA and the signed mode connectivity ``mc`` of a trained
Bézier curve. The loss is the zoo's own (its spec's ``loss``: cross-entropy or MSE against
one-hot targets) on ``--batches`` batches of 64 training images; the zoo's stored
``train_loss`` is printed beside the metrics. For zoos with one activation (a grid zoo with
several needs ``build_model(spec, {"activation": ...})`` per group of rows).

Usage::

    weightzoo generate trajectory-digits-mlp --models 12 --train-epochs 3 --out zoos/traj-mlp
    python examples/landscape_metrics.py zoos/traj-mlp [--models 8] [--epoch last]
        [--split train] [--batches 10] [--data-dir DIR] [--iters 20] [--probes 100]
        [--steps 200]
"""

from __future__ import annotations

import argparse

import torch
from torch.nn import functional as F

from weightzoo import Zoo, ZooDataset, landscape
from weightzoo.architectures import build_model


def main() -> None:
    """Parse the arguments, compute, print one line per model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", help="an image or trajectory zoo directory")
    parser.add_argument("--models", type=int, default=8, help="models to measure")
    parser.add_argument("--epoch", default="last", help="checkpoint epoch (or 'last')")
    parser.add_argument("--split", default="train")
    parser.add_argument("--batches", type=int, default=10, help="batches of 64 images")
    parser.add_argument("--data-dir", default=None, help="raw dataset files (not for digits)")
    parser.add_argument("--iters", type=int, default=200, help="power-iteration steps, at most")
    parser.add_argument("--probes", type=int, default=100, help="Hutchinson probes")
    parser.add_argument("--steps", type=int, default=200, help="Bézier training steps")
    args = parser.parse_args()
    torch.set_num_threads(1)

    zoo = Zoo(args.zoo)
    spec = zoo.manifest.spec
    epoch = args.epoch if args.epoch == "last" else int(args.epoch)
    dataset = ZooDataset(zoo.path, split=args.split, epochs=epoch, targets=("train_loss",))
    batch = next(iter(dataset.loader(args.models)))
    rows = batch["weights"]
    module = build_model(spec)

    # the zoo's own training split, as `weightzoo landscape` measures on (no validation items)
    train = landscape.training_batches(zoo, batches=args.batches, data_dir=args.data_dir)
    classes = int(spec["num_classes"])

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if spec.get("loss", "ce") == "mse":
            return F.mse_loss(out, F.one_hot(y, classes).to(out.dtype))
        return F.cross_entropy(out, y)

    metrics = landscape.landscape_metrics(
        module,
        rows,
        train,
        loss,
        metrics=("hessian_top", "hessian_trace", "cka", "mc"),
        layout=zoo.layout,
        partners=rows.roll(-1, 0),
        options=landscape.LandscapeOptions(iters=args.iters, probes=args.probes, steps=args.steps),
    )
    print(f"{zoo.name}: {len(rows)} models of split {args.split!r} at epoch {args.epoch}")
    print("row  train_loss  hessian_top  hessian_trace  cka(next)  mc(next)")
    for i in range(len(rows)):
        print(
            f"{i:3d}  {float(batch['train_loss'][i]):10.4f}  {metrics['hessian_top'][i]:11.4f}  "
            f"{metrics['hessian_trace'][i]:13.4f}  {metrics['cka'][i]:9.4f}  "
            f"{metrics['mc'][i]:8.4f}"
        )


if __name__ == "__main__":
    main()
