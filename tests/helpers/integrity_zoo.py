"""The small zoo of the fault tests, importable by a bare child process (numpy + h5py only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from weightzoo.storage import Layout, ZooWriter, shard_file_name

LAYOUT = Layout.from_shapes({"w": (3, 4), "b": (3,)})
EPOCHS = [0, 5, 10]
GROUPS = ([0, 5], [10])
# Storage positions: train 0..3 in two blocks, val 4, test 5; two epoch groups each.
BLOCKS = (("train", 0, 2), ("train", 2, 4), ("val", 4, 5), ("test", 5, 6))


def zoo_weights(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(6, 3, LAYOUT.num_params)).astype(np.float32)


def open_writer(path: Path, spec: dict | None = None) -> ZooWriter:
    return ZooWriter(
        path,
        name="faults",
        family="test",
        spec=spec or {"a": 1},
        layout=LAYOUT,
        epochs=EPOCHS,
        metrics=["acc"],
        stats_names=["mean"],
        num_models=6,
    )


def write_all(writer: ZooWriter, weights: np.ndarray) -> None:
    """Write every block of the test zoo that is not there yet, then finish."""
    for split, first, last in BLOCKS:
        for group_index, group in enumerate(GROUPS):
            file = shard_file_name(split, first, group_index)
            if writer.has_shard(file):
                continue
            part = [EPOCHS.index(e) for e in group]
            block = weights[first:last][:, part]
            writer.write_shard(
                file,
                split=split,
                models=(first, last),
                epochs=group,
                weights=block,
                stats=block.mean(axis=2, keepdims=True),
                metrics={"acc": block[..., 0]},
                columns={"model_id": np.arange(first, last), "kind": ["a"] * (last - first)},
            )
    writer.finish()
