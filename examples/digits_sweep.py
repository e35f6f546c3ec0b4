r"""Sweep the hyperparameters of a digits zoo spec and print final test-accuracy quantiles.

Trains a few models of a spec with the real generator code (nothing is written) once per
setting and prints, per setting and per reported epoch, the median, 10th and 90th percentile
and minimum test accuracy over the models. This is how the digits settings in
docs/modelzoo.md and docs/trajectories.md were chosen.

Usage:
    OMP_NUM_THREADS=1 python examples/digits_sweep.py trajectory-digits-cnn --models 8 \
        --epochs 10,20,50 --set "lrs=0.0003;0.003" --set "weight_decays=0.1;0.001"
    OMP_NUM_THREADS=1 python examples/digits_sweep.py modelzoo-digits-cnn-s-hyp-10-rand \
        --nodes 32 --epochs 10,20 --set "lrs=0.01|0.001" --per-node

``--set FIELD=A;B`` sweeps FIELD over the alternatives A and B (the product over several
``--set``); for the grid axes (``lrs``, ``weight_decays``, ``dropouts``, ...) an alternative is a
``|``-separated tuple. ``--nodes K`` trains the first seed of K grid nodes drawn at random
(seed 0) instead of a prefix of the model order, so that a Hyp zoo's whole grid is sampled.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import numpy as np
import torch

from weightzoo.families import family
from weightzoo.generate.base import BlockRun
from weightzoo.generate.specs import get_spec

GRID_AXES = ("activations", "dropouts", "inits", "optimizers", "lrs", "weight_decays")


def _value(text: str) -> Any:
    try:
        return float(text) if any(c in text for c in ".e") else int(text)
    except ValueError:
        return text


def settings(sets: list[str]) -> list[dict[str, Any]]:
    """The product of the ``--set`` alternatives, as spec field overrides."""
    out: list[dict[str, Any]] = [{}]
    for item in sets:
        key, _, values = item.partition("=")
        alternatives = []
        for alt in values.split(";"):
            if key in GRID_AXES:
                alternatives.append(tuple(_value(v) for v in alt.split("|")))
            else:
                alternatives.append(_value(alt))
        out = [{**st, key: alt} for st in out for alt in alternatives]
    return out


def main() -> None:
    """Parse the arguments, train each setting and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="a digits spec, e.g. trajectory-digits-cnn")
    parser.add_argument("--models", type=int, default=8, help="first N models of the order")
    parser.add_argument("--nodes", type=int, default=0, help="first seed of K random nodes")
    parser.add_argument("--epochs", default="10", help="comma-separated epochs to report")
    parser.add_argument("--set", action="append", default=[], help="FIELD=A;B (see above)")
    parser.add_argument("--per-node", action="store_true", help="print every model's node")
    args = parser.parse_args()
    torch.set_num_threads(1)

    base = get_spec(args.name)
    report = [int(e) for e in args.epochs.split(",")]
    print(f"# {args.name}, epochs {report}")
    for overrides in settings(args.set):
        spec = dataclasses.replace(base, epochs=max(report), models=None, **overrides)
        fam = family(spec.family)
        plans = fam.plan(spec)
        if args.nodes:
            firsts = [p for p in plans if p.model_id % spec.seeds_per_node == 0]
            rng = np.random.default_rng(0)
            plans = [firsts[i] for i in np.sort(rng.choice(len(firsts), args.nodes, False))]
        else:
            plans = plans[: args.models]
        start = time.perf_counter()
        records = fam.train(spec, plans, BlockRun(progress=False))
        seconds = time.perf_counter() - start
        acc = np.stack([r.metrics["test_acc"] for r in records])
        label = " ".join(f"{k}={v}" for k, v in overrides.items()) or "(spec as is)"
        for epoch in report:
            a = acc[:, epoch]
            print(
                f"{label:50s} epoch {epoch:3d}  n={len(a)}  median={np.median(a):.3f}  "
                f"p10={np.quantile(a, 0.1):.3f}  p90={np.quantile(a, 0.9):.3f}  "
                f"min={a.min():.3f}  ({seconds:.0f} s)"
            )
        if args.per_node:
            for plan, row in zip(plans, acc, strict=True):
                c = plan.columns
                print(
                    f"    {c['optimizer']:4s} lr={c['lr']:<7g} {c['activation']:8s} "
                    f"dropout={c['dropout']:<4g} {c['init']:16s} wd={c['weight_decay']:<7g} "
                    + " ".join(f"e{e}={row[e]:.3f}" for e in report)
                )


if __name__ == "__main__":
    main()
