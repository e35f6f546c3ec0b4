r"""Print the model_dim x batch size grid of generated ``phase-tinylm-d<dim>`` zoos.

For every cell, the mean over its seeds of the last checkpoint's ``val_loss``, ``train_loss``
and ``val_acc``, and, where the zoo has its ``landscape`` side file, of ``hessian_trace``,
``cka`` and ``mc``: Markdown tables, as in docs/tinylm.md.

Usage:
    weightzoo generate phase-tinylm-d8 --out zoos/phase-tinylm-d8    # ... d16, d32, d64
    python examples/tinylm_grid.py zoos
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import weightzoo
from weightzoo.errors import SidecarNotFoundError
from weightzoo.storage.sidecar import read_sidecar

METRICS = {"val_loss": "{:.3f}", "train_loss": "{:.3f}", "val_acc": "{:.3f}"}
LANDSCAPE = {"hessian_trace": "{:.1f}", "cka": "{:.3f}", "mc": "{:.3f}"}


def main() -> None:
    """Read the zoos under ROOT and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="directory holding phase-tinylm-d<dim>/")
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 16, 32, 64])
    args = parser.parse_args()
    cells: dict[tuple[int, int], dict[str, float]] = {}
    batches: list[int] = []
    dims = [dim for dim in args.dims if (args.root / f"phase-tinylm-d{dim}").is_dir()]
    missing = sorted(set(args.dims) - set(dims))
    if missing:  # a partial grid still prints what is there
        print(f"no zoo for model_dim {missing} under {args.root}: those rows are left out")
    if not dims:
        parser.error(f"{args.root} holds no phase-tinylm-d<dim> zoo; generate one first")
    for dim in dims:
        zoo = weightzoo.Zoo(args.root / f"phase-tinylm-d{dim}")
        meta = zoo.metadata()
        try:
            side = read_sidecar(zoo.path, "landscape")
        except SidecarNotFoundError:
            side = None
        batches = sorted({int(b) for b in meta["batch_size"]})
        for batch in batches:
            members = np.flatnonzero(meta["batch_size"] == batch)
            row = {name: float(meta[f"final_{name}"][members].mean()) for name in METRICS}
            if side is not None:  # side-file rows are storage positions, as the metadata's
                row |= {name: float(np.nanmean(side[name][members, -1])) for name in LANDSCAPE}
            cells[(dim, batch)] = row
    for name, fmt in (METRICS | LANDSCAPE).items():
        if not all(name in row for row in cells.values()):
            continue
        print(f"\n{name}: mean over the seeds, last checkpoint\n")
        print("| model_dim | " + " | ".join(f"batch {b}" for b in batches) + " |")
        print("| --- |" + " --- |" * len(batches))
        for dim in dims:
            values = " | ".join(fmt.format(cells[(dim, b)][name]) for b in batches)
            print(f"| {dim} | {values} |")


if __name__ == "__main__":
    main()
