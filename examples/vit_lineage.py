"""How far fine-tuning moves a ViT's backbone away from its parent, per optimizer and rate.

Reads every fine-tuned model of a grouped ViT zoo with its parent through
``weightzoo.LineagePairs`` (``shared=True``: the backbone tensors both hold) in a
``DataLoader``, and prints, per optimizer and learning rate, the median relative distance
``||child - parent|| / ||parent||`` at each fine-tuning checkpoint. At checkpoint 0 it is 0:
children start from their parent's backbone bit for bit.

Usage::

    weightzoo generate vit-digits --out zoos/vit-digits
    python examples/vit_lineage.py zoos/vit-digits
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
from torch.utils.data import DataLoader

from weightzoo import LineagePairs


def main() -> None:
    """Parse the arguments, read the pairs, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo", help="a grouped ViT zoo directory")
    parser.add_argument("--split", default="all", help="split(s) of the fine-tuned models")
    args = parser.parse_args()
    pairs = LineagePairs(args.zoo, split=args.split, epochs="all", shared=True)
    moved: dict[tuple[str, float], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for parents, children, info in DataLoader(pairs, batch_size=64):
        distance = (children - parents).norm(dim=1) / parents.norm(dim=1)
        for k, value in enumerate(distance.tolist()):
            cell = (info["optimizer"][k], float(info["lr"][k]))
            moved[cell][int(info["epoch"][k])].append(value)
    epochs = sorted({e for cell in moved.values() for e in cell})
    print("median ||child - parent|| / ||parent|| on the shared backbone, per checkpoint")
    print(f"{'optimizer':>9} {'lr':>7} " + " ".join(f"{e:>7}" for e in epochs))
    for (optimizer, lr), by_epoch in sorted(moved.items(), key=lambda c: (c[0][0], -c[0][1])):
        cells = " ".join(f"{np.median(by_epoch[e]):7.4f}" for e in epochs)
        print(f"{optimizer:>9} {lr:7.0e} {cells}")


if __name__ == "__main__":
    main()
