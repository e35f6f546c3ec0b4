"""The zoo card (``README.md`` and figures) that ``weightzoo card`` writes and ``push`` uploads.

The card is generated from the manifest alone plus the final-checkpoint accuracy metrics of the
shards, so that it always says what the repo holds. Its YAML front matter is written with JSON
flow values (valid YAML), which needs no YAML library and round-trips exactly
(:func:`front_matter`). With the ``plots`` extra (matplotlib), :func:`write_card` adds the
figures of :func:`weightzoo.figures.write_figures`.

A grouped zoo (format version 2) gets one card over every group
(:func:`render_grouped_card`): the front matter's ``weightzoo`` block holds the grouped spec
and, per group, the counts and accuracy summary a version-1 card holds; the figures of each
group go to ``figures/<group>/`` beside the card.

Every name and value in the card's Markdown comes from a publisher (the manifest and shards of
a zoo anyone may push), so it goes in through :mod:`weightzoo.escaping`: as one bounded line of
escaped text, as a quoted word in a code block, or as a percent-encoded path segment of a link
inside the card folder. The card's only other link is to weightzoo's own page.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from weightzoo import __version__, catalog
from weightzoo.errors import InvalidOptionError, ManifestError, StorageWriteError, WeightzooError
from weightzoo.escaping import markdown_text, python_str, relative_link, shell_quote
from weightzoo.figures import write_figures
from weightzoo.storage.groups import GroupedManifest, check_group_manifest, is_grouped
from weightzoo.storage.manifest import MANIFEST_NAME, SPLITS, Manifest
from weightzoo.storage.reader import ZooReader

FIGURE_DIR = "figures"  # beside README.md, locally and in the hub repo
CARD_FILE = "README.md"
PROJECT_URL = "https://pypi.org/project/weightzoo/"  # the one absolute link of a card
_FOOTER = (
    "",
    "The full generating spec is in the front matter (`weightzoo.spec`); card written by "
    f"weightzoo {__version__}.",
    "",
)
#: YAML reads a mapping key on one line only up to this many characters (quotes included).
MAX_YAML_KEY = 1024
# A hub turns each tag into a link of its own: a family becomes a tag only in this plain form.
_TAG = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# A JSON string, or a number with an exponent and no fraction (1e-05), which a YAML 1.1 reader
# (PyYAML) takes for a string; written 1.0e-05, it is a float to JSON and to every YAML.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(?<![\w.])(-?\d+)([eE][-+]?\d+)')


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
    # Through the reader: every shard is checked (self-contained, sizes) before it is read.
    reader = ZooReader(zoo_dir, split=None, epochs=[last], manifest=manifest)
    keep = reader.column("viable").astype(bool) & reader.complete
    splits = reader.column("split")
    values: dict[str, dict[str, list[np.ndarray]]] = {m: {} for m in names}
    for name in names:
        data = reader.metrics[name][:, 0].astype(np.float64)
        for split in SPLITS:
            chosen = keep & (splits == split)
            if chosen.any():
                values[name][split] = [data[chosen]]
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
    block = {
        "format_version": 1,
        **_counts(manifest),
        "metrics": manifest.metrics,
        "spec_fingerprint": manifest.spec_fingerprint,
        "spec": manifest.spec,
        "accuracy": accuracy_summary(zoo_dir, manifest),
    }
    return _metadata(manifest.name, manifest.family, manifest.num_models, license, block)


def _metadata(
    name: str, family: str, models: int, license: str, block: dict[str, Any]
) -> dict[str, Any]:
    """The front matter of either card: the hub's keys, then the ``weightzoo`` block."""
    return {
        "license": license,
        "pretty_name": name,
        "tags": card_tags(family),
        "size_categories": [_size_category(models)],
        "weightzoo": {"version": __version__, "name": name, "family": family, **block},
    }


def _counts(manifest: Manifest) -> dict[str, Any]:
    """What the card says of one version-1 zoo (or group): models, checkpoints, shards."""
    return {
        "num_models": manifest.num_models,
        "num_params": manifest.num_params,
        "num_checkpoints": len(manifest.epochs),
        "epochs": manifest.epochs,
        "num_shards": len(manifest.shards),
        "bytes": sum(s.bytes for s in manifest.shards),
        "split_counts": manifest.split_counts,
    }


def card_tags(family: str) -> list[str]:
    """The card's tags: weightzoo's own, and the family's name where it is a plain tag."""
    tags = ["weightzoo", "model-zoo", "weight-space-learning"]
    return [*tags, family] if _TAG.fullmatch(family) else tags


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
    block = meta["weightzoo"]
    splits = ", ".join(f"{markdown_text(k)} {v}" for k, v in manifest.split_counts.items())
    intro = (
        f"A model zoo in the [weightzoo]({PROJECT_URL}) format "
        f"(family {markdown_text(manifest.family)}): {manifest.num_models} models ({splits}), "
        f"{len(manifest.epochs)} checkpoints each (epochs {manifest.epochs[0]}..."
        f"{manifest.epochs[-1]}), {manifest.num_params} parameters per model, "
        f"{block['num_shards']} HDF5 shards ({block['bytes']} bytes)."
    )
    lines = [
        *_heading(zoo_dir, meta, intro),
        "",
        *_usage(
            repo_id,
            "--split test --epochs last",
            ['data = weightzoo.ZooDataset(path, split="train")'],
        ),
        "Every shard's sha256 is listed in `zoo.json` and checked by `weightzoo fetch`.",
    ]
    if block["accuracy"]:
        lines += ["", "## Accuracy at the last checkpoint (viable models)", ""]
        lines += accuracy_table(block["accuracy"])
    if figures:
        lines += ["", "## Figures", ""]
        for title, name in figures:
            lines += [f"### {markdown_text(title)}", "", figure_image(name), ""]
    return "\n".join([*lines, *_FOOTER])


def _heading(zoo_dir: str | os.PathLike[str], meta: Mapping[str, Any], intro: str) -> list[str]:
    """The card's first lines: the front matter, the zoo's name, one paragraph about it."""
    return [
        front_matter(meta, source=str(Path(zoo_dir) / MANIFEST_NAME)),
        "",
        f"# {markdown_text(meta['weightzoo']['name'])}",
        "",
        intro,
    ]


def default_repo_id(name: str) -> str:
    """The repo a card's usage names when it is given none: one that ``weightzoo fetch`` can read.

    The zoo's name where the catalog has a hub copy of it; else ``OWNER/<name>``, the repo id a
    copy pushed with ``weightzoo push`` gets (the card then says to replace ``OWNER``).
    """
    entry = catalog.find(name)
    return name if entry is not None and entry.published else f"OWNER/{name}"


def _usage(repo_id: str, fetch_options: str, python_lines: list[str]) -> list[str]:
    """The card's "Use" section: the fetch command and a few lines of Python, then a blank."""
    owner = repo_id.startswith("OWNER/")
    return [
        "## Use",
        "",
        *(["Once pushed (`weightzoo push ZOO OWNER/NAME`), with OWNER your hub user:", ""] * owner),
        "```bash",
        f"weightzoo fetch {shell_quote(repo_id)} {fetch_options}",
        "```",
        "",
        "```python",
        "import weightzoo",
        f'path = weightzoo.fetch({python_str(repo_id)}, split="train")',
        *python_lines,
        "```",
        "",
    ]


def accuracy_table(accuracy: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """The Markdown table of an :func:`accuracy_summary`, one row per metric and split."""
    lines = [
        "| metric | split | models | mean | std | min | max |",
        "|---|---|---|---|---|---|---|",
    ]
    for metric, rows in accuracy.items():
        for split, row in rows.items():
            # The numbers are computed here; the names come from the publisher.
            cells = [markdown_text(metric), markdown_text(split)]
            cells += [str(row[k]) for k in ("models", "mean", "std", "min", "max")]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def figure_image(name: str, *folders: str) -> str:
    """The Markdown image of figure file ``name`` in ``figures/<folders...>/`` beside the card.

    The alternative text is the file name's (the figure's title is the heading above it).
    """
    alt = markdown_text(Path(name).stem.replace("-", " "))
    return f"![{alt}]({relative_link(FIGURE_DIR, *folders, name)})"


def front_matter(meta: Mapping[str, Any], *, source: str) -> str:
    r"""The card's YAML front matter, ``---`` lines included: one ``key: value`` line per key.

    Each value is written as JSON, which is a YAML flow value too (a float always with a
    fraction, as YAML 1.1 wants it: ``1.0e-05``). Characters that YAML does
    not read as themselves in a quoted string (C1 controls, line and paragraph separators,
    byte-order marks, non-characters, lone surrogates) and every other non-printable one of
    the Basic Multilingual Plane are written as ``\uXXXX``, which JSON and YAML read alike;
    so no value can break a line, and :func:`read_card_metadata` (JSON) and a YAML reader get
    the same values.

    Args:
        meta: the metadata (:func:`card_metadata`), JSON-serialisable, with plain keys.
        source: what the metadata was read from, for the error message.

    Returns:
        The block, from the opening to the closing ``---``.

    Raises:
        ManifestError: for a mapping key longer than YAML reads (:data:`MAX_YAML_KEY`).
    """
    _check_keys(meta, source)
    lines = [f"{key}: {_yaml_json(value)}" for key, value in meta.items()]
    return "\n".join(["---", *lines, "---"])


def _yaml_json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    text = _JSON_TOKEN.sub(lambda m: m[0] if m[1] is None else f"{m[1]}.0{m[2]}", text)
    # Outside the BMP, YAML takes every character as printable, and JSON has no escape short
    # of a surrogate pair, which YAML would read as two characters: those stay as they are.
    return "".join(
        ch if ch.isprintable() or ord(ch) > 0xFFFF else f"\\u{ord(ch):04x}" for ch in text
    )


def _check_keys(value: Any, source: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            length = len(_yaml_json(key))
            if length > MAX_YAML_KEY:
                raise ManifestError(
                    f"{source}: the key {key[:40]!r}... is {length} characters long in the "
                    f"card's YAML front matter, which reads keys of up to {MAX_YAML_KEY}; "
                    "shorten it in the zoo's manifest"
                )
            _check_keys(item, source)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_keys(item, source)


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

    A grouped zoo gets the grouped card (:func:`render_grouped_card`), with the figures of
    each group in ``out_dir/figures/<group>/``.

    Args:
        zoo_dir: the zoo directory.
        out_dir: where the card goes (created if needed).
        repo_id: the hub repo named in the usage snippet (default: :func:`default_repo_id`).
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
        InvalidOptionError: if ``out_dir`` is a file.
        StorageWriteError: if writing fails (a full disk); it names the file, and ``out_dir``
            is left as it was (see :func:`card_folder`).
    """
    # Read before anything is staged: a folder that holds no zoo leaves out_dir as it was.
    top = GroupedManifest.load(zoo_dir) if is_grouped(zoo_dir) else Manifest.load(zoo_dir)
    draw = functools.partial(write_figures, color_by=color_by, embedding=embedding)
    with card_folder(out_dir) as staged:
        if isinstance(top, GroupedManifest):
            per_group = {
                entry.name: draw(
                    check_group_manifest(zoo_dir, entry), staged / FIGURE_DIR / entry.name
                )
                for entry in (top.groups if plots else [])
            }
            text = render_grouped_card(
                zoo_dir,
                repo_id=repo_id or default_repo_id(top.name),
                license=license,
                figures=per_group,
            )
        else:
            figures = draw(zoo_dir, staged / FIGURE_DIR) if plots else None
            text = render_card(
                zoo_dir,
                top,
                repo_id=repo_id or default_repo_id(top.name),
                license=license,
                figures=figures,
            )
        write_text(staged / CARD_FILE, text)
    return Path(out_dir) / CARD_FILE


@contextlib.contextmanager
def card_folder(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """A hidden staging folder for a card, put in place of ``out_dir``'s card on success.

    Nothing half-written is ever visible: the card is written into a hidden folder, which is
    renamed to ``out_dir`` when that does not exist; in an existing folder, the new
    ``README.md`` and ``figures/`` replace the old ones (one rename each), and every other file
    there stays. On any error the staging folder is removed and ``out_dir`` is as it was.

    Args:
        out_dir: the card folder.

    Yields:
        The folder to write ``README.md`` and ``figures/`` into.

    Raises:
        InvalidOptionError: if ``out_dir`` is a file.
        StorageWriteError: for an OSError while writing (a full disk), naming the file.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidOptionError(
            f"card folder {out} is a file; choose a folder (absent, or a card folder to replace)"
        )
    fresh = not out.exists()
    # Inside an existing folder: it may be a mount point, which a rename cannot leave.
    staged = (out.parent if fresh else out) / f".weightzoo-card.{secrets.token_hex(8)}.partial"
    try:
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.mkdir()
        yield staged
        _put_in_place(staged, out, fresh)
    except OSError as exc:
        if isinstance(exc, WeightzooError) and not isinstance(exc, StorageWriteError):
            raise
        raise _card_write_failed(out, staged, exc, fresh) from None
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _put_in_place(staged: Path, out: Path, fresh: bool) -> None:
    """Rename the staged card into place; restore the old figures if that fails half way."""
    if fresh:
        os.rename(staged, out)
        return
    old, new, kept = out / FIGURE_DIR, staged / FIGURE_DIR, staged / f"old-{FIGURE_DIR}"
    moved = old.exists() or old.is_symlink()
    if moved:
        os.rename(old, kept)  # removed with the staging folder
    placed = False
    try:
        if new.exists():
            os.rename(new, old)
            placed = True
        os.replace(staged / CARD_FILE, out / CARD_FILE)
    except OSError:
        if placed:
            os.rename(old, new)
        if moved:
            os.rename(kept, old)
        raise


def _card_write_failed(out: Path, staged: Path, exc: OSError, fresh: bool) -> StorageWriteError:
    """One line naming the card file that failed (as it would be named in ``out``)."""
    name = Path(exc.filename) if isinstance(exc.filename, str) else out
    if name.is_relative_to(staged):
        name = out / name.relative_to(staged)
    reason = os.strerror(exc.errno) if exc.errno else " ".join(str(exc).split())
    state = "was not created" if fresh else "is as it was"
    error = StorageWriteError(
        f"cannot write card file {name}: {reason}; nothing of the new card was kept and {out} "
        f"{state}. Free space there (or fix the cause) and write the card again"
    )
    error.errno, error.filename = exc.errno, str(name)  # kept for callers (ENOSPC)
    return error


def write_text(path: Path, text: str) -> None:
    """Write a card's UTF-8 text; an OSError names ``path`` (a failed write() names none)."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        exc.filename = exc.filename or str(path)
        raise


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
    # "\n" only: str.splitlines() would also split at characters a JSON value may hold.
    for line in parts[1].rstrip("\n").split("\n"):
        key, sep, value = line.partition(": ")
        if not sep:
            raise ValueError(f"front matter line {line!r} is not 'key: value'")
        meta[key] = json.loads(value)
    return meta


# -- the card of a grouped zoo (format version 2) ----------------------------------------------


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
                **_counts(manifest),
                "accuracy": accuracy_summary(path, manifest),
            }
        )
    block = {
        "format_version": 2,
        "num_models": top.num_models,
        "spec_fingerprint": top.spec_fingerprint,
        "spec": top.spec,
        "groups": groups,
    }
    return _metadata(top.name, top.family, top.num_models, license, block)


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
    intro = (
        f"A grouped model zoo in the [weightzoo]({PROJECT_URL}) format "
        f"(format version 2, family {markdown_text(block['family'])}): {block['num_models']} "
        f"models in {len(block['groups'])} groups; each group is a complete zoo of its own "
        "layout under `groups/<name>/`, and model ids are unique across groups."
    )
    lines = [
        *_heading(zoo_dir, meta, intro),
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
    python = [
        f'one = weightzoo.ZooDataset(path, group={python_str(first)}, split="train")',
        'every = weightzoo.GroupedBatches(path, batch_size=64, shuffle=True, split="train")',
    ]
    lines += [
        "",
        *_usage(repo_id, f"--group {shell_quote(first)} --split test --epochs last", python),
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
    return "\n".join([*lines, *_FOOTER])
