"""The card of a grouped zoo (format version 2): one ``README.md`` over every group.

The front matter's ``weightzoo`` block holds the grouped spec and, per group, the counts and
accuracy summary a version-1 card holds; the figures of each group go to
``figures/<group>/`` beside the card. Publisher strings go in as :mod:`weightzoo.card` puts
them: escaped by :mod:`weightzoo.escaping`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from weightzoo.card import (
    CARD_FILE,
    FIGURE_DIR,
    PROJECT_URL,
    _size_category,
    _version,
    accuracy_summary,
    accuracy_table,
    card_folder,
    card_tags,
    figure_image,
    front_matter,
    write_card_figures,
    write_text,
)
from weightzoo.escaping import markdown_text, python_str, shell_quote
from weightzoo.storage.groups import GroupedManifest, check_group_manifest
from weightzoo.storage.manifest import MANIFEST_NAME, Manifest


def grouped_card_metadata(
    zoo_dir: str | os.PathLike[str], *, license: str = "cc-by-4.0"
) -> dict[str, Any]:
    """The grouped card's front matter as data.

    Args:
        zoo_dir: the grouped zoo's directory (every group's shards are read for accuracy).
        license: license identifier.

    Returns:
        A JSON-serialisable mapping; ``weightzoo.groups`` has one block per group.
    """
    top = GroupedManifest.load(zoo_dir)
    groups = []
    for entry in top.groups:
        path = check_group_manifest(zoo_dir, entry)
        manifest = Manifest.load(path)
        groups.append(
            {
                "name": entry.name,
                "path": entry.path,
                "first_model_id": entry.first_model_id,
                "num_models": manifest.num_models,
                "num_params": manifest.num_params,
                "num_checkpoints": len(manifest.epochs),
                "epochs": manifest.epochs,
                "num_shards": len(manifest.shards),
                "bytes": sum(s.bytes for s in manifest.shards),
                "split_counts": manifest.split_counts,
                "accuracy": accuracy_summary(path, manifest),
            }
        )
    return {
        "license": license,
        "pretty_name": top.name,
        "tags": card_tags(top.family),
        "size_categories": [_size_category(top.num_models)],
        "weightzoo": {
            "version": _version(),
            "name": top.name,
            "family": top.family,
            "format_version": 2,
            "num_models": top.num_models,
            "spec_fingerprint": top.spec_fingerprint,
            "spec": top.spec,
            "groups": groups,
        },
    }


def render_grouped_card(
    zoo_dir: str | os.PathLike[str],
    *,
    repo_id: str,
    license: str = "cc-by-4.0",
    figures: dict[str, list[tuple[str, str]]] | None = None,
) -> str:
    """The grouped zoo's ``README.md``: front matter, the groups table, usage, accuracy, figures.

    Args:
        zoo_dir: the grouped zoo's directory.
        repo_id: the hub repo the card is for (used in the usage snippet).
        license: license identifier.
        figures: per group, ``(title, file name)`` of PNGs in ``figures/<group>/``.
    """
    meta = grouped_card_metadata(zoo_dir, license=license)
    block = meta["weightzoo"]
    first = block["groups"][0]["name"] if block["groups"] else "NAME"
    lines = [
        front_matter(meta, source=str(Path(zoo_dir) / MANIFEST_NAME)),
        "",
        f"# {markdown_text(block['name'])}",
        "",
        f"A grouped model zoo in the [weightzoo]({PROJECT_URL}) format "
        f"(format version 2, family {markdown_text(block['family'])}): {block['num_models']} "
        f"models in {len(block['groups'])} groups; each group is a complete zoo of its own "
        "layout under `groups/<name>/`, and model ids are unique across groups.",
        "",
        "| group | models | model ids | params | checkpoints | shards | bytes |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in block["groups"]:
        last_id = group["first_model_id"] + group["num_models"] - 1
        lines.append(
            f"| {markdown_text(group['name'])} | {group['num_models']} "
            f"| {group['first_model_id']}..{last_id} | {group['num_params']} "
            f"| {group['num_checkpoints']} | {group['num_shards']} | {group['bytes']} |"
        )
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        f"weightzoo fetch {shell_quote(repo_id)} --group {shell_quote(first)} --split test "
        "--epochs last",
        "```",
        "",
        "```python",
        "import weightzoo",
        f'path = weightzoo.fetch({python_str(repo_id)}, split="train")',
        f'one = weightzoo.ZooDataset(path, group={python_str(first)}, split="train")',
        'every = weightzoo.GroupedBatches(path, batch_size=64, shuffle=True, split="train")',
        "```",
        "",
        "The top `zoo.json` records each group manifest's sha256, and each group manifest its "
        "shards' sha256; `weightzoo fetch` and `weightzoo verify` check the whole chain.",
    ]
    for group in block["groups"]:
        name = markdown_text(group["name"])
        if group["accuracy"]:
            lines += ["", f"## Group {name}: accuracy at the last checkpoint", ""]
            lines += accuracy_table(group["accuracy"])
        for title, file in (figures or {}).get(group["name"], []):
            lines += ["", f"### {name}: {markdown_text(title)}", ""]
            lines.append(figure_image(file, group["name"]))
    lines += [
        "",
        "The full generating spec is in the front matter (`weightzoo.spec`); card written by "
        f"weightzoo {_version()}.",
        "",
    ]
    return "\n".join(lines)


def write_grouped_card(
    zoo_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    repo_id: str | None = None,
    license: str = "cc-by-4.0",
    plots: bool = True,
    color_by: str | None = None,
    embedding: str = "pca",
) -> Path:
    """Write a grouped zoo's card: ``README.md`` and, with ``plots``, every group's figures.

    Args: as :func:`weightzoo.card.write_card`.

    Returns:
        The path of the written ``README.md``.

    Raises: as :func:`weightzoo.card.write_card`; nothing half-written is ever visible
        (:func:`weightzoo.card.card_folder`).
    """
    top = GroupedManifest.load(zoo_dir)
    with card_folder(out_dir) as staged:
        figures: dict[str, list[tuple[str, str]]] = {}
        if plots:
            for entry in top.groups:
                figures[entry.name] = write_card_figures(
                    check_group_manifest(zoo_dir, entry),
                    staged / FIGURE_DIR / entry.name,
                    color_by=color_by,
                    embedding=embedding,
                )
        text = render_grouped_card(
            zoo_dir, repo_id=repo_id or top.name, license=license, figures=figures
        )
        write_text(staged / CARD_FILE, text)
    return Path(out_dir) / CARD_FILE
