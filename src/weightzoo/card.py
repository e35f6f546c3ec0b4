"""The zoo card (``README.md`` and figures) that ``weightzoo card`` writes and ``push`` uploads.

The card is generated from the manifest alone plus the final-checkpoint accuracy metrics of the
shards, so that it always says what the repo holds. Its YAML front matter is written with JSON
flow values (valid YAML), which needs no YAML library and round-trips exactly
(:func:`front_matter`). With the ``plots`` extra (matplotlib), :func:`write_card` adds the
figures of :mod:`weightzoo.figures` (:func:`write_card_figures`), the 2-D embedding drawn by
:func:`embedding_figure`: a continuous colour column gets a colour bar, a categorical one a
legend, and the view is fitted to the bulk of the points, not to a few outliers.

Every name and value in the card's Markdown comes from a publisher (the manifest and shards of
a zoo anyone may push), so it goes in through :mod:`weightzoo.escaping`: as one bounded line of
escaped text, as a quoted word in a code block, or as a percent-encoded path segment of a link
inside the card folder. The card's only other link is to weightzoo's own page.
"""

from __future__ import annotations

import contextlib
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

from weightzoo import figures as zoo_figures
from weightzoo.errors import (
    InvalidOptionError,
    ManifestError,
    StorageWriteError,
    WeightzooError,
    require,
)
from weightzoo.escaping import markdown_text, python_str, relative_link, shell_quote
from weightzoo.figures import CardData, Embedding
from weightzoo.storage.manifest import MANIFEST_NAME, SPLITS, Manifest
from weightzoo.storage.reader import ZooReader

FIGURE_DIR = "figures"  # beside README.md, locally and in the hub repo
CARD_FILE = "README.md"
PROJECT_URL = "https://pypi.org/project/weightzoo/"  # the one absolute link of a card
#: YAML reads a mapping key on one line only up to this many characters (quotes included).
MAX_YAML_KEY = 1024
# A hub turns each tag into a link of its own: a family becomes a tag only in this plain form.
_TAG = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
#: An integer colour column with at most this many values is drawn as classes (a legend).
MAX_CLASSES = 12
#: The view of the embedding ends at Tukey's far-out fences: this many interquartile ranges
#: beyond the quartiles (J. W. Tukey, Exploratory Data Analysis, 1977).
FENCE_IQR = 3.0
VIEW_MARGIN = 0.05  # of the view's span, on each side, so that edge markers are not cut
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
    return {
        "license": license,
        "pretty_name": manifest.name,
        "tags": card_tags(manifest.family),
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


def card_tags(family: str) -> list[str]:
    """The card's tags: weightzoo's own, and the family's name where it is a plain tag."""
    tags = ["weightzoo", "model-zoo", "weight-space-learning"]
    return [*tags, family] if _TAG.fullmatch(family) else tags


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
    block = meta["weightzoo"]
    splits = ", ".join(f"{markdown_text(k)} {v}" for k, v in manifest.split_counts.items())
    lines = [
        front_matter(meta, source=str(Path(zoo_dir) / MANIFEST_NAME)),
        "",
        f"# {markdown_text(manifest.name)}",
        "",
        f"A model zoo in the [weightzoo]({PROJECT_URL}) format "
        f"(family {markdown_text(manifest.family)}): {manifest.num_models} models ({splits}), "
        f"{len(manifest.epochs)} checkpoints each (epochs {manifest.epochs[0]}..."
        f"{manifest.epochs[-1]}), {manifest.num_params} parameters per model, "
        f"{block['num_shards']} HDF5 shards ({block['bytes']} bytes).",
        "",
        "## Use",
        "",
        "```bash",
        f"weightzoo fetch {shell_quote(repo_id)} --split test --epochs last",
        "```",
        "",
        "```python",
        "import weightzoo",
        f'path = weightzoo.fetch({python_str(repo_id)}, split="train")',
        'data = weightzoo.ZooDataset(path, split="train")',
        "```",
        "",
        "Every shard's sha256 is listed in `zoo.json` and checked by `weightzoo fetch`.",
    ]
    if block["accuracy"]:
        lines += ["", "## Accuracy at the last checkpoint (viable models)", ""]
        lines += accuracy_table(block["accuracy"])
    if figures:
        lines += ["", "## Figures", ""]
        for title, name in figures:
            lines += [f"### {markdown_text(title)}", "", figure_image(name), ""]
    lines += [
        "",
        "The full generating spec is in the front matter (`weightzoo.spec`); card written by "
        f"weightzoo {_version()}.",
        "",
    ]
    return "\n".join(lines)


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
        InvalidOptionError: if ``out_dir`` is a file.
        StorageWriteError: if writing fails (a full disk); it names the file, and ``out_dir``
            is left as it was (see :func:`card_folder`).
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
    with card_folder(out_dir) as staged:
        figures = None
        if plots:
            figures = write_card_figures(
                zoo_dir, staged / FIGURE_DIR, color_by=color_by, embedding=embedding
            )
        text = render_card(
            zoo_dir, manifest, repo_id=repo_id or manifest.name, license=license, figures=figures
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


# -- figures ------------------------------------------------------------------------------------


def write_card_figures(
    zoo_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    color_by: str | None = None,
    embedding: str = "pca",
) -> list[tuple[str, str]]:
    """Draw every figure of a zoo's card into ``out_dir`` as PNGs.

    Args:
        zoo_dir: a complete zoo directory.
        out_dir: where the PNGs go (created if needed).
        color_by: the column the embedding is coloured by (see
            :func:`weightzoo.figures.load_card_data`).
        embedding: ``"pca"`` or ``"umap"``.

    Returns:
        ``(title, file name)`` of each figure written, in card order.

    Raises:
        MissingExtraError: if matplotlib (the ``plots`` extra) is not installed.
        UnknownColumnError: for an unknown ``color_by``.
        StorageWriteError: if a PNG (or ``out_dir``) cannot be written (a full disk); its
            ``filename`` is the file.
    """
    matplotlib: Any = require("matplotlib", "plots", "zoo card figures")
    require("matplotlib.figure", "plots", "zoo card figures")
    # A user's matplotlibrc may turn LaTeX on: publisher text must never reach it.
    with matplotlib.rc_context({"text.usetex": False}):
        data = zoo_figures.load_card_data(zoo_dir, color_by=color_by)
        fitted = zoo_figures.embed(data.final, embedding)
        drawn = _card_figures(data, fitted)
        out = Path(out_dir)
        with zoo_figures._writing(out):
            out.mkdir(parents=True, exist_ok=True)
        for _, name, fig in drawn:
            with zoo_figures._writing(out / name):
                fig.savefig(out / name)
    return [(title, name) for title, name, _ in drawn]


def _card_figures(data: CardData, fitted: Embedding) -> list[tuple[str, str, Any]]:
    """``(title, file name, Figure)`` of every figure the data supports, in card order."""
    figures = [
        (
            # Raw: the card escapes and bounds its headings itself.
            f"{data.metric.replace('_', ' ').capitalize()} over training",
            "metric-over-epochs.png",
            zoo_figures.metric_over_epochs(data),
        ),
        ("Weight mean vs std", "weight-mean-std.png", zoo_figures.mean_vs_std(data)),
        (f"{fitted.method} of the final weights", "embedding.png", embedding_figure(data, fitted)),
        ("Trajectories", "trajectories.png", zoo_figures.trajectories_figure(data, fitted)),
        ("Pairwise distances", "pairwise-distances.png", zoo_figures.distance_histogram(data)),
    ]
    if data.passed:
        figures.append(("Pass rate per class", "pass-rate.png", zoo_figures.pass_rate_figure(data)))
    return figures


def is_continuous(values: np.ndarray) -> bool:
    """Whether a colour column is a quantity (a colour bar) rather than classes (a legend).

    Floats are quantities however few their values (a final accuracy of 12 models takes at most
    12); strings and booleans are classes; integers are classes up to :data:`MAX_CLASSES`
    values (a seed or a width), quantities beyond.
    """
    kind = np.asarray(values).dtype.kind
    if kind == "f":
        return True
    if kind in "iu":
        return len(np.unique(values)) > MAX_CLASSES
    return False


def view_limits(values: np.ndarray) -> tuple[float, float]:
    """The axis range that shows the bulk of ``values``, whatever a few outliers do.

    The range is the data's, cut at Tukey's far-out fences (:data:`FENCE_IQR` interquartile
    ranges beyond the quartiles; where half the points share one value, the 5-95 percentile
    range stands in for the IQR), then widened by :data:`VIEW_MARGIN` on each side. Percentiles
    near the ends (1st-99th) would not do: of 80 points, two outliers on one side are the 99th
    percentile.

    Args:
        values: one coordinate of the points (NaN and infinities are left out).

    Returns:
        ``(low, high)`` with ``low < high``.
    """
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return (-1.0, 1.0)
    q5, q25, q75, q95 = np.percentile(finite, [5, 25, 75, 95])
    spread = (q75 - q25) or (q95 - q5)
    low = max(float(finite.min()), q25 - FENCE_IQR * spread)
    high = min(float(finite.max()), q75 + FENCE_IQR * spread)
    # One value (or a bulk of one value): a range around it of its own scale.
    span = high - low or max(abs(low), 1.0) * 0.1
    return (low - VIEW_MARGIN * span, high + VIEW_MARGIN * span)


def embedding_figure(data: CardData, embedding: Embedding) -> Any:
    """The final weights in 2-D, coloured by :attr:`CardData.color_by`.

    A continuous column gets a colour bar, a categorical one a legend (:func:`is_continuous`).
    The view shows the bulk of the points (:func:`view_limits`); points beyond it are drawn
    as crosses at its edge, and the x-axis label says how many.

    Args:
        data: what the card's figures are drawn from.
        embedding: the 2-D embedding of ``data.final``.

    Returns:
        The matplotlib ``Figure``.
    """
    fig = zoo_figures._figure(7.2, 4.6)
    ax = fig.add_subplot()
    points = np.asarray(embedding.points, dtype=np.float64)
    limits = [view_limits(points[:, 0]), view_limits(points[:, 1])]
    shown, outside = _into_view(points, limits)
    values = data.columns[data.color_by]
    if is_continuous(values):
        _color_bar(fig, ax, shown, outside, values, data.color_by)
    else:
        _color_classes(ax, shown, outside, values, data.color_by)
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    zoo_figures._axis_labels(ax, embedding)
    count = int(outside.sum())
    if count:
        ax.set_xlabel(
            f"{ax.get_xlabel()}\n{count} {'point' if count == 1 else 'points'} outside the view, "
            "drawn as x at its edge"
        )
    zoo_figures._title(ax, data.name, f"{embedding.method} of the final weights")
    return fig


def _into_view(points: np.ndarray, limits: list[tuple[float, float]]) -> tuple[np.ndarray, ...]:
    """The points, those outside the view moved onto its edge; and which those are."""
    shown = points.copy()
    outside = np.zeros(len(points), dtype=bool)
    for axis, (low, high) in enumerate(limits):
        column = points[:, axis]
        beyond = (column < low) | (column > high)
        inner = (high - low) * VIEW_MARGIN / 2  # so that the edge marker is seen whole
        shown[beyond, axis] = np.clip(column[beyond], low + inner, high - inner)
        outside |= beyond
    return shown, outside


def _color_bar(
    fig: Any, ax: Any, shown: np.ndarray, outside: np.ndarray, values: np.ndarray, name: str
) -> None:
    """Points coloured on one scale for inside and outside, with a colour bar of ``name``."""
    numbers = np.asarray(values, dtype=np.float64)
    finite = numbers[np.isfinite(numbers)]
    scale = {
        # Bright is good either way: losses get the reversed colour map.
        "cmap": "viridis_r" if "loss" in name else "viridis",
        "vmin": float(finite.min()) if finite.size else None,
        "vmax": float(finite.max()) if finite.size else None,
    }
    inside = ~outside
    drawn = ax.scatter(shown[inside, 0], shown[inside, 1], c=numbers[inside], s=14, **scale)
    if outside.any():
        ax.scatter(
            shown[outside, 0], shown[outside, 1], c=numbers[outside], s=30, marker="X", **scale
        )
    fig.colorbar(drawn, ax=ax, label=zoo_figures._text(zoo_figures._label(name)))


def _color_classes(
    ax: Any, shown: np.ndarray, outside: np.ndarray, values: np.ndarray, name: str
) -> None:
    """One colour per class, with a legend of the classes."""
    labels = np.asarray(values).astype(str)
    classes = zoo_figures._ordered(labels, None)
    palette = "tab10" if len(classes) <= 10 else "tab20"
    matplotlib: Any = require("matplotlib", "plots", "zoo card figures")
    cmap = matplotlib.colormaps[palette]
    for i, label in enumerate(classes):
        rows = labels == label
        color = cmap(i % cmap.N)
        inside, beyond = rows & ~outside, rows & outside
        text = zoo_figures._legend_text(label)
        ax.scatter(shown[inside, 0], shown[inside, 1], s=14, color=color, label=text)
        if beyond.any():  # no legend entry of its own: "_" labels are left out
            ax.scatter(shown[beyond, 0], shown[beyond, 1], s=30, marker="X", color=color, label="_")
    ax.legend(
        title=zoo_figures._text(zoo_figures._label(name)),
        fontsize="small",
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
    )
