"""The zoo card (``README.md`` and figures) that ``weightzoo card`` writes and ``push`` uploads.

The card is generated from the manifest alone plus the final-checkpoint accuracy metrics of the
shards, so that it always says what the repo holds. Its YAML front matter is written with JSON
flow values (valid YAML), which needs no YAML library and round-trips exactly. With the
``plots`` extra (matplotlib), :func:`write_card` adds the figures of :mod:`weightzoo.figures`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from weightzoo.storage.manifest import SPLITS, Manifest

FIGURE_DIR = "figures"  # beside README.md, locally and in the hub repo


def accuracy_summary(zoo_dir: str | os.PathLike[str], manifest: Manifest) -> dict[str, Any]:
    """Statistics of every accuracy metric at the last checkpoint, per split, viable models only.

    Args:
        zoo_dir: the zoo directory.
        manifest: its manifest.

    Returns:
        ``{metric: {split: {"epoch", "models", "mean", "std", "min", "max"}}}`` for each metric
        whose name contains ``acc``; empty when the zoo has none.
    """
    names = [m for m in manifest.metrics if "acc" in m]
    if not names or not manifest.epochs:
        return {}
    last = manifest.epochs[-1]
    values: dict[str, dict[str, list[np.ndarray]]] = {m: {} for m in names}
    for entry in manifest.shards:
        if last not in entry.epochs:
            continue
        column = list(entry.epochs).index(last)
        with h5py.File(Path(zoo_dir) / entry.file, "r") as handle:
            viable = np.asarray(handle["models/viable"][:], dtype=bool)
            for name in names:
                data = np.asarray(handle[f"metrics/{name}"][:, column], dtype=np.float64)
                values[name].setdefault(entry.split, []).append(data[viable])
    summary: dict[str, Any] = {}
    for name, per_split in values.items():
        rows = {}
        for split in SPLITS:
            if split not in per_split:
                continue
            data = np.concatenate(per_split[split])
            data = data[np.isfinite(data)]
            if data.size == 0:
                continue
            rows[split] = {
                "epoch": last,
                "models": int(data.size),
                "mean": _round(data.mean()),
                "std": _round(data.std()),
                "min": _round(data.min()),
                "max": _round(data.max()),
            }
        if rows:
            summary[name] = rows
    return summary


def _round(value: float) -> float:
    return float(f"{float(value):.6g}") if math.isfinite(value) else float("nan")


def _size_category(models: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if models < bound:
            return label
    return "100K<n<1M"


def card_metadata(
    zoo_dir: str | os.PathLike[str], manifest: Manifest, *, license: str = "cc-by-4.0"
) -> dict[str, Any]:
    """The card's front matter as data (what :func:`render_card` writes as YAML).

    Args:
        zoo_dir: the zoo directory (shards are read for the accuracy summary).
        manifest: its manifest.
        license: license identifier.

    Returns:
        A JSON-serialisable mapping: license, tags, size category and a ``weightzoo`` block with
        format version, spec, counts, split sizes and accuracy summary.
    """
    return {
        "license": license,
        "pretty_name": manifest.name,
        "tags": ["weightzoo", "model-zoo", "weight-space-learning", manifest.family],
        "size_categories": [_size_category(manifest.num_models)],
        "weightzoo": {
            "version": _version(),
            "name": manifest.name,
            "family": manifest.family,
            "format_version": 1,
            "num_models": manifest.num_models,
            "num_params": manifest.num_params,
            "num_checkpoints": len(manifest.epochs),
            "epochs": manifest.epochs,
            "num_shards": len(manifest.shards),
            "bytes": sum(s.bytes for s in manifest.shards),
            "split_counts": manifest.split_counts,
            "metrics": manifest.metrics,
            "spec_fingerprint": manifest.spec_fingerprint,
            "spec": manifest.spec,
            "accuracy": accuracy_summary(zoo_dir, manifest),
        },
    }


def _version() -> str:
    from weightzoo import __version__

    return __version__


def render_card(
    zoo_dir: str | os.PathLike[str],
    manifest: Manifest,
    *,
    repo_id: str,
    license: str = "cc-by-4.0",
    figures: list[tuple[str, str]] | None = None,
) -> str:
    """The full ``README.md``: YAML front matter, then a human-readable summary.

    Args:
        zoo_dir: the zoo directory.
        manifest: its manifest.
        repo_id: the hub repo the card is for (used in the usage snippet).
        license: license identifier.
        figures: ``(title, file name)`` of PNGs in :data:`FIGURE_DIR` beside the card.

    Returns:
        The card text.
    """
    meta = card_metadata(zoo_dir, manifest, license=license)
    front = "\n".join(f"{key}: {json.dumps(value)}" for key, value in meta.items())
    block = meta["weightzoo"]
    splits = ", ".join(f"{k} {v}" for k, v in manifest.split_counts.items())
    lines = [
        "---",
        front,
        "---",
        "",
        f"# {manifest.name}",
        "",
        f"A model zoo in the [weightzoo](https://pypi.org/project/weightzoo/) format "
        f"(family `{manifest.family}`): {manifest.num_models} models ({splits}), "
        f"{len(manifest.epochs)} checkpoints each (epochs {manifest.epochs[0]}..."
        f"{manifest.epochs[-1]}), {manifest.num_params} parameters per model, "
        f"{block['num_shards']} HDF5 shards ({block['bytes']} bytes).",
        "",
        "## Use",
        "",
        "```bash",
        f"weightzoo fetch {repo_id} --split test --epochs last",
        "```",
        "",
        "```python",
        "import weightzoo",
        f'path = weightzoo.fetch("{repo_id}", split="train")',
        'data = weightzoo.ZooDataset(path, split="train")',
        "```",
        "",
        "Every shard's sha256 is listed in `zoo.json` and checked by `weightzoo fetch`.",
    ]
    if block["accuracy"]:
        lines += ["", "## Accuracy at the last checkpoint (viable models)", ""]
        lines += [
            "| metric | split | models | mean | std | min | max |",
            "|---|---|---|---|---|---|---|",
        ]
        for metric, rows in block["accuracy"].items():
            for split, row in rows.items():
                lines.append(
                    f"| {metric} | {split} | {row['models']} | {row['mean']} | {row['std']} "
                    f"| {row['min']} | {row['max']} |"
                )
    if figures:
        lines += ["", "## Figures", ""]
        for title, name in figures:
            lines += [f"### {title}", "", f"![{title}]({FIGURE_DIR}/{name})", ""]
    lines += [
        "",
        "The full generating spec is in the front matter (`weightzoo.spec`); card written by "
        f"weightzoo {_version()}.",
        "",
    ]
    return "\n".join(lines)


def write_card(
    zoo_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    repo_id: str | None = None,
    license: str = "cc-by-4.0",
    plots: bool = True,
    color_by: str | None = None,
    embedding: str = "pca",
) -> Path:
    """Write a zoo's card: ``out_dir/README.md`` and, with ``plots``, ``out_dir/figures/*.png``.

    Args:
        zoo_dir: the zoo directory.
        out_dir: where the card goes (created if needed).
        repo_id: the hub repo named in the usage snippet (default: the zoo's name).
        license: license identifier.
        plots: draw the figures (needs the ``plots`` extra).
        color_by: the column the weight embedding is coloured by (default: the class column,
            else the main metric).
        embedding: ``"pca"`` or ``"umap"`` (needs umap-learn).

    Returns:
        The path of the written ``README.md``.

    Raises:
        MissingExtraError: if ``plots`` and matplotlib is not installed.
        UnknownColumnError: for an unknown ``color_by``.
    """
    from weightzoo.storage.groups import is_grouped

    if is_grouped(zoo_dir):
        from weightzoo.grouped_card import write_grouped_card

        return write_grouped_card(
            zoo_dir,
            out_dir,
            repo_id=repo_id,
            license=license,
            plots=plots,
            color_by=color_by,
            embedding=embedding,
        )
    manifest = Manifest.load(zoo_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = None
    if plots:
        from weightzoo.figures import write_figures

        figures = write_figures(zoo_dir, out / FIGURE_DIR, color_by=color_by, embedding=embedding)
    text = render_card(
        zoo_dir, manifest, repo_id=repo_id or manifest.name, license=license, figures=figures
    )
    card = out / "README.md"
    card.write_text(text, encoding="utf-8")
    return card


def read_card_metadata(text: str) -> dict[str, Any]:
    """Parse the front matter that :func:`render_card` wrote (one ``key: json`` per line).

    Args:
        text: the card text.

    Returns:
        The metadata mapping.

    Raises:
        ValueError: if the text has no front matter in that form.
    """
    parts = text.split("---\n", 2)
    if len(parts) < 3 or parts[0]:
        raise ValueError("the card has no '---' front matter block at its start")
    meta = {}
    for line in parts[1].splitlines():
        key, sep, value = line.partition(": ")
        if not sep:
            raise ValueError(f"front matter line {line!r} is not 'key: value'")
        meta[key] = json.loads(value)
    return meta
