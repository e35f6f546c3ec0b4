"""Random-batch read speed through DataLoader: weightzoo vs a raw memmap vs one .pt per checkpoint.

Builds, in a temporary directory, a zoo of 400 models x 50 checkpoints (20,000 rows) of 10,853
float32 parameters (CNN-m size), the same array as one ``.npy`` memmap (the practical limit),
and as 20,000 ``.pt`` files (how existing zoos ship). Then reads random batches of 256 with 0
and 2 workers and prints rows/s and the ratios, all in one run (compare ratios, not rows/s,
across machines and runs).

Workers: the baselines and weightzoo's per-item path use ``DataLoader(num_workers=2)`` (worker
processes); weightzoo's batched path with workers is ``ZooDataset.loader(num_workers=2)``, which
reads ahead in threads (the documented way), and the last line compares it with 0 workers and
with ``loader(num_workers=2, worker_type="process")``.

    python benchmarks/bench_loader.py [--models 400] [--checkpoints 50] [--batches 60] [--rounds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from weightzoo.datasets import SortedBatchSampler, ThreadedLoader, ZooDataset
from weightzoo.storage import Layout, ZooWriter, shard_file_name

PARAMS = 10_853
BATCH = 256


class MemmapDataset(Dataset):
    """Baseline: fancy-indexing one big .npy memmap (opened lazily per process)."""

    def __init__(self, path: Path, rows: int) -> None:
        self.path, self.rows, self.array = path, rows, None

    def __len__(self) -> int:
        return self.rows

    def __getitems__(self, indices):
        return [{"weights": row} for row in self[indices]["weights"]]

    def __getitem__(self, indices):
        """A whole batch for a list of indices (the batched protocol weightzoo also offers)."""
        if self.array is None:
            self.array = np.load(self.path, mmap_mode="r")
        return {"weights": torch.from_numpy(np.asarray(self.array[np.sort(indices)]))}

    def __getstate__(self):
        return {**self.__dict__, "array": None}


class PerFileDataset(Dataset):
    """Baseline: one torch.save file per checkpoint (loaded with weights_only=True)."""

    def __init__(self, root: Path, rows: int) -> None:
        self.root, self.rows = root, rows

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, index):
        return {"weights": torch.load(self.root / f"{index}.pt", weights_only=True)}


def build(root: Path, models: int, checkpoints: int) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    layout = Layout.from_shapes({"flat": (PARAMS,)})
    zoo = root / "zoo"
    writer = ZooWriter(
        zoo,
        name="bench",
        family="bench",
        spec={"models": models},
        layout=layout,
        epochs=list(range(checkpoints)),
        metrics=[],
        stats_names=["mean"],
        num_models=models,
    )
    npy = root / "weights.npy"
    array = np.lib.format.open_memmap(npy, "w+", np.float32, (models * checkpoints, PARAMS))
    files = root / "pt"
    files.mkdir()
    block = 50
    for first in range(0, models, block):
        last = min(first + block, models)
        weights = rng.standard_normal((last - first, checkpoints, PARAMS), dtype=np.float32)
        writer.write_shard(
            shard_file_name("train", first),
            split="train",
            models=(first, last),
            epochs=list(range(checkpoints)),
            weights=weights,
            stats=weights.mean(axis=2, keepdims=True),
            columns={"model_id": np.arange(first, last)},
        )
        array[first * checkpoints : last * checkpoints] = weights.reshape(-1, PARAMS)
        for i, row in enumerate(weights.reshape(-1, PARAMS)):
            torch.save(torch.from_numpy(row.copy()), files / f"{first * checkpoints + i}.pt")
    writer.finish()
    array.flush()
    return zoo, npy, files


def rows_per_second(
    dataset: Dataset, workers: int, batches: int, batched: bool, threads: bool = False
) -> float:
    """Rows/s over random batches; ``batched`` reads each batch with one ``dataset[list]``.

    ``threads``: read ahead with :class:`ThreadedLoader` (what ``ZooDataset.loader`` returns
    for ``num_workers > 0``) instead of DataLoader worker processes.
    """
    generator = torch.Generator().manual_seed(0)
    sampler = RandomSampler(dataset, num_samples=BATCH * batches, generator=generator)
    if batched and threads and workers:
        batch_sampler = SortedBatchSampler(sampler, BATCH, drop_last=False)
        loader = ThreadedLoader(dataset, batch_sampler, workers)
    elif batched:
        loader = DataLoader(
            dataset,
            batch_size=None,
            sampler=SortedBatchSampler(sampler, BATCH, drop_last=False),
            num_workers=workers,
        )
    else:
        loader = DataLoader(dataset, batch_size=BATCH, sampler=sampler, num_workers=workers)
    iterator = iter(loader)
    next(iterator)  # warm-up: worker start, first maps
    start = time.perf_counter()
    rows = 0
    for batch in iterator:
        rows += len(batch["weights"])
    return rows / (time.perf_counter() - start)


def best_of(rounds: int, contenders: dict[str, tuple[Dataset, dict]], batches: int) -> dict:
    """Best rows/s of each contender over ``rounds`` rounds, contenders interleaved in a round.

    The machine is shared and noisy: interleaving puts every contender under the same load,
    and the best round is the least disturbed one.
    """
    best = dict.fromkeys(contenders, 0.0)
    for _ in range(rounds):
        for name, (dataset, options) in contenders.items():
            best[name] = max(best[name], rows_per_second(dataset, batches=batches, **options))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=400)
    parser.add_argument("--checkpoints", type=int, default=50)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        zoo, npy, files = build(root, args.models, args.checkpoints)
        rows = args.models * args.checkpoints
        print(
            f"built {rows} rows x {PARAMS} params three ways in {time.perf_counter() - start:.0f} s"
        )
        # Read everything once so that every contender starts from a warm page cache.
        for path in [*zoo.rglob("*.h5"), npy]:
            path.read_bytes()
        weightzoo = ZooDataset(zoo, split="train", epochs="all", filter_viable=False)
        memmap = MemmapDataset(npy, rows)
        per_file = PerFileDataset(files, rows)
        print(f"\nrandom batches of {BATCH}, rows/s (higher is better), best of {args.rounds}")
        print("items: DataLoader(ds, batch_size=256) (per-item dicts + default collate)")
        print("batched: one ds[list of 256] per batch (weightzoo: ZooDataset.loader())")
        print("batched with workers: weightzoo reads ahead in threads (ZooDataset.loader)")
        header = ("path", "workers", "weightzoo", "memmap", "pt-files", "vs memmap", "vs pt")
        print("{:>8} {:>7} {:>10} {:>10} {:>10} {:>10} {:>8}".format(*header))
        batched_speed = {}
        for batched in (False, True):
            for workers in (0, 2):
                common = {"workers": workers, "batched": batched}
                speed = best_of(
                    args.rounds,
                    {
                        "weightzoo": (weightzoo, {**common, "threads": True}),
                        "memmap": (memmap, common),
                    },
                    args.batches,
                )
                # One file per row: the batched protocol does not apply; far slower anyway.
                speed["pt-files"] = rows_per_second(per_file, workers, 6, batched=False)
                if batched:
                    batched_speed[workers] = speed["weightzoo"]
                print(
                    f"{'batched' if batched else 'items':>8} {workers:>7} "
                    f"{speed['weightzoo']:>10.0f} {speed['memmap']:>10.0f} "
                    f"{speed['pt-files']:>10.0f} {speed['weightzoo'] / speed['memmap']:>9.2f}x "
                    f"{speed['weightzoo'] / speed['pt-files']:>7.1f}x"
                )
        loaders = best_of(
            args.rounds,
            {
                "0 workers": (weightzoo, {"workers": 0, "batched": True}),
                "2 threads": (weightzoo, {"workers": 2, "batched": True, "threads": True}),
                "2 processes": (weightzoo, {"workers": 2, "batched": True}),
            },
            args.batches,
        )
        print(
            "\nweightzoo loader(), interleaved: "
            + ", ".join(f"{k} {v:.0f}" for k, v in loaders.items())
            + f"; 2 threads / 0 workers = {loaders['2 threads'] / loaders['0 workers']:.2f}x"
            + f", 2 processes / 0 workers = {loaders['2 processes'] / loaders['0 workers']:.2f}x"
        )


if __name__ == "__main__":
    main()
