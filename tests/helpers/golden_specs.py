"""Small specs of every family whose shards are fingerprinted (tests/data/shard_hashes.json).

The same spec must write byte-identical shards whatever the code's layout: a refactoring that
changes one byte of a shard changes what users get. ``python tests/helpers/golden_specs.py`` records
the sha256 of every shard these specs write; ``tests/generate/test_golden_shards.py`` regenerates
and compares.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from weightzoo.generate.specs import get_spec
from weightzoo.storage.groups import GroupedManifest, group_dir, is_grouped
from weightzoo.storage.manifest import Manifest

HASHES = Path(__file__).parents[1] / "data" / "shard_hashes.json"

# name -> override options: one or more per family, each a few seconds on one CPU core.
GOLDEN: dict[str, dict[str, Any]] = {
    "mlds-ds1": {"per_class": 1, "epochs": 1, "machines": ["ParityMachine"]},
    "mlds-ds2": {"per_class": 1, "epochs": 1, "machines": ["SimpleXORMachine"]},
    "mlds-ds3": {"per_class": 1, "epochs": 1, "machines": ["0"]},
    "modelzoo-digits-cnn-s-seed": {"models": 3, "epochs": 1},
    "modelzoo-digits-cnn-s-hyp-10-rand": {"models": 3, "epochs": 1},
    "trajectory-digits-mlp": {"models": 3, "epochs": 2},
    "trajectory-digits-cnn": {"models": 2, "epochs": 1},
    "property-synthetic": {"models": 4, "epochs": 1},
    "phase-pinn-convection": {"models": 2, "epochs": 2},
    "phase-digits-mlp-w2": {"models": 2, "epochs": 1},
    "phase-digits-cnn-w2": {"models": 2, "epochs": 1},
    "phase-tinylm-d8": {"models": 2, "epochs": 1},
    "vit-digits": {"models": 4, "epochs": 1},
}
# The slowest (retries of MLDS DS3 automata, a grouped ViT zoo): run with `-m slow`.
SLOW = {"mlds-ds3", "vit-digits"}


def shard_hashes(zoo: Path) -> dict[str, str]:
    """``{relative shard path: sha256}`` of a zoo (every group's, for a grouped zoo)."""
    if is_grouped(zoo):
        out = {}
        for entry in GroupedManifest.load(zoo).groups:
            inner = shard_hashes(group_dir(zoo, entry))
            out.update({f"{entry.path}/{k}": v for k, v in inner.items()})
        return out
    return {s.file: s.sha256 for s in Manifest.load(zoo).shards}


def generate_small(name: str, out: Path) -> dict[str, str]:
    """Generate the small version of ``name`` into ``out`` and return its shard hashes."""
    from weightzoo.generate.runner import generate

    spec = get_spec(name).override(**GOLDEN[name])
    generate(spec, out, progress=False, workers=1)
    return shard_hashes(out)


def main() -> None:
    """Record the hashes (run on main before a refactoring; commit the JSON)."""
    import torch

    torch.set_num_threads(1)
    names = sys.argv[1:] or list(GOLDEN)
    recorded = json.loads(HASHES.read_text()) if HASHES.exists() else {}
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            recorded[name] = generate_small(name, Path(folder) / name)
            print(name, len(recorded[name]), "shards")
    HASHES.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
