"""The figures of a zoo card: PNGs drawn with matplotlib (the ``plots`` extra).

Each figure is drawn from one :class:`CardData`, read once from the zoo: the main metric at
every checkpoint, the final weights of (a sample of) the models, and the trajectories of a
few of them. The 2-D embedding is PCA computed with numpy (UMAP when ``umap-learn`` is
installed and asked for), so that drawing a card needs neither scikit-learn nor torch. Its
figure (:func:`embedding_figure`) gives a continuous colour column a colour bar and a
categorical one a legend, and fits the view to the bulk of the points, not to a few outliers.

Names and values from the zoo (its name, metric and column names, category values) are a
publisher's: they are drawn as one bounded line of plain text (:func:`_text`), with matplotlib's
mathtext and LaTeX kept away from them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from weightzoo._types import PathLike
from weightzoo.errors import (
    InvalidOptionError,
    StorageWriteError,
    UnknownColumnError,
    WeightzooError,
    require,
)
from weightzoo.escaping import one_line
from weightzoo.storage.reader import ZooReader

#: Columns that name a model's class, in the order a card looks for one that varies.
CLASS_COLUMNS = ("machine", "automaton", "activation", "dataset", "optimizer")
HELD_OUT = ("test", "eval", "val", "trigger")
MAX_MODELS = 2000  # final weights read for the scatter plots (a seeded sample beyond this)
MAX_TRAJECTORIES = 40
MAX_PAIRS_MODELS = 500
# Bytes of weights read at most, so that a card of a ResNet zoo fits in memory too.
FINAL_BYTES = 128 << 20
TRAJECTORY_BYTES = 64 << 20
DPI = 110
TEXT_CHARS = 40  # of one publisher string in a figure (a title, a label, a legend entry)
#: An integer colour column with at most this many values is drawn as classes (a legend).
MAX_CLASSES = 12
#: The view of the embedding ends at Tukey's far-out fences: this many interquartile ranges
#: beyond the quartiles (J. W. Tukey, Exploratory Data Analysis, 1977).
FENCE_IQR = 3.0
VIEW_MARGIN = 0.05  # of the view's span, on each side, so that edge markers are not cut


@dataclass
class CardData:
    """What the figures of one zoo are drawn from.

    Attributes:
        name: the zoo's name.
        epochs: checkpoint labels.
        metric: the main metric (a held-out accuracy, else a held-out loss).
        values: ``[models, checkpoints]`` of ``metric``, viable models only.
        final: ``[n, params]`` final weights of a sample of viable models.
        columns: per-model columns of those ``n`` models (1-d arrays).
        color_by: the column the embedding is coloured by.
        trajectories: ``[k, checkpoints, params]`` weights of ``k`` of the ``n`` models.
        passed: ``{class: (passed, models)}`` where the zoo records ``passed`` per class.
        class_column: the column ``passed`` is grouped by (``None`` without classes).
    """

    name: str
    epochs: list[int]
    metric: str
    values: np.ndarray
    final: np.ndarray
    columns: dict[str, np.ndarray]
    color_by: str
    trajectories: np.ndarray
    passed: dict[str, tuple[int, int]] = field(default_factory=dict)
    class_column: str | None = None


def main_metric(metrics: list[str]) -> str:
    """The metric a card plots: a held-out accuracy, else any accuracy, else a held-out loss.

    Raises:
        UnknownColumnError: if the zoo records no metric.
    """
    if not metrics:
        raise UnknownColumnError("the zoo records no metric to plot")
    accuracy = [m for m in metrics if "acc" in m]
    # Held-out sets in order of preference: test, then eval, val, trigger.
    held_out = sorted(
        (m for m in metrics if m.split("_", 1)[0] in HELD_OUT),
        key=lambda m: HELD_OUT.index(m.split("_", 1)[0]),
    )
    for group in ([m for m in accuracy if m in held_out], accuracy, held_out, metrics):
        if group:
            return group[0]
    raise AssertionError("unreachable")


def class_column(columns: dict[str, np.ndarray]) -> str | None:
    """The first of :data:`CLASS_COLUMNS` that takes more than one value, if any."""
    for name in CLASS_COLUMNS:
        if name in columns and len(np.unique(columns[name].astype(str))) > 1:
            return name
    return None


def load_card_data(zoo_dir: PathLike, *, color_by: str | None = None, seed: int = 0) -> CardData:
    """Read what the figures need from a complete zoo (one read per selection).

    Args:
        zoo_dir: the zoo directory.
        color_by: a model column or ``final_<metric>`` to colour the embedding by (default:
            the class column, else the main metric at the last checkpoint).
        seed: seed of the model sample for zoos larger than :data:`MAX_MODELS`.

    Raises:
        UnknownColumnError: for a ``color_by`` the zoo does not have.
        InvalidOptionError: if the zoo has no viable model.
    """
    reader = ZooReader(zoo_dir, split=None, epochs=None)
    manifest = reader.manifest
    keep = reader.complete & reader.column("viable").astype(bool)
    models = np.flatnonzero(keep)
    if models.size == 0:
        raise InvalidOptionError(f"zoo {zoo_dir} has no complete viable model to plot")
    metric = main_metric(manifest.metrics)
    columns = {k: v[models] for k, v in reader.columns.items() if np.ndim(v) == 1}
    for name, values in reader.metrics.items():
        columns[f"final_{name}"] = values[models, -1]
    group = class_column(columns)
    color_by = color_by or group or f"final_{metric}"
    if color_by not in columns:
        raise UnknownColumnError(
            f"cannot colour by {color_by!r}: zoo {manifest.name!r} has the columns "
            f"{', '.join(map(repr, sorted(columns)))}"
        )
    passed = {}
    if group and "passed" in columns:
        labels = columns[group].astype(str)
        for label in _ordered(labels, manifest.spec.get("machines")):
            rows = labels == label
            passed[label] = (int(columns["passed"][rows].astype(bool).sum()), int(rows.sum()))
    row_bytes = 4 * max(1, manifest.num_params)
    steps = len(reader.epochs)
    limit = max(2, min(MAX_MODELS, FINAL_BYTES // row_bytes))
    rng = np.random.default_rng(seed)
    sample = np.arange(models.size)
    if models.size > limit:
        sample = np.sort(rng.choice(models.size, limit, replace=False))
    last = len(reader.epochs) - 1
    final = reader.read("weights", models[sample], np.full(sample.size, last))
    traced_count = max(1, min(MAX_TRAJECTORIES, TRAJECTORY_BYTES // (row_bytes * steps)))
    traced = sample[: min(traced_count, sample.size)]
    flat = reader.read(
        "weights", np.repeat(models[traced], steps), np.tile(np.arange(steps), traced.size)
    )
    return CardData(
        name=manifest.name,
        epochs=list(reader.epochs),
        metric=metric,
        values=reader.metrics[metric][models],
        final=final,
        columns={k: v[sample] for k, v in columns.items()},
        color_by=color_by,
        trajectories=flat.reshape(traced.size, steps, -1),
        passed=passed,
        class_column=group,
    )


def _ordered(labels: np.ndarray, listed: Any) -> list[str]:
    present = set(labels.tolist())
    names = [str(n) for n in listed or [] if str(n) in present]
    rest = sorted(
        present - set(names), key=lambda t: (not t.isdigit(), int(t) if t.isdigit() else t)
    )
    return names + rest


# -- embedding ----------------------------------------------------------------------------------


@dataclass
class Embedding:
    """A 2-D projection fitted on final weights; :meth:`transform` maps other rows into it."""

    method: str
    transform: Callable[[np.ndarray], np.ndarray]
    points: np.ndarray  # the fitted rows, embedded
    explained: tuple[float, float] | None = None


def embed(rows: np.ndarray, method: str = "pca") -> Embedding:
    """Fit a 2-D embedding of ``rows`` (``"pca"``, or ``"umap"`` with ``umap-learn``).

    Raises:
        MissingExtraError: for ``"umap"`` without umap-learn.
        InvalidOptionError: for an unknown method.
    """
    x = np.asarray(rows, dtype=np.float32)
    if method == "pca":
        # Through the [n, n] Gram matrix: rows are few and wide (up to ~10^7 parameters).
        mean = x.mean(axis=0)
        centered = x - mean
        gram = (centered @ centered.T).astype(np.float64)
        eigenvalues, vectors = np.linalg.eigh(gram)
        top = np.argsort(eigenvalues)[::-1][:2]
        basis = np.zeros((x.shape[1], 2), dtype=np.float64)
        for i, k in enumerate(top):
            if eigenvalues[k] > 1e-12 * max(float(eigenvalues.max()), 1e-300):
                basis[:, i] = centered.T @ vectors[:, k] / np.sqrt(eigenvalues[k])
        total = float(np.clip(eigenvalues, 0, None).sum()) or 1.0
        share = [float(max(eigenvalues[k], 0.0) / total) for k in top] + [0.0, 0.0]

        def project(r: np.ndarray) -> np.ndarray:
            return (np.asarray(r, np.float32) - mean).astype(np.float64) @ basis

        return Embedding("PCA", project, project(x), (share[0], share[1]))
    if method == "umap":
        umap: Any = require("umap", "plots", "a UMAP embedding (pip install umap-learn)")
        model = umap.UMAP(n_components=2, random_state=0).fit(x)
        return Embedding(
            "UMAP", lambda r: model.transform(np.asarray(r, np.float64)), model.embedding_
        )
    raise InvalidOptionError(f"embedding method must be 'pca' or 'umap', got {method!r}")


# -- figures -------------------------------------------------------------------------------------


def _figure(width: float = 6.4, height: float = 4.2) -> Any:
    """A figure that needs no display and no global pyplot state."""
    figure_module: Any = require("matplotlib.figure", "plots", "zoo card figures")
    return figure_module.Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _title(ax: Any, zoo: str, what: str) -> None:
    """Two lines, the zoo's name above what the figure shows, so that long names fit."""
    ax.set_title(_text(f"{one_line(zoo, TEXT_CHARS)}\n{what}"), fontsize="medium")


def _label(metric: str) -> str:
    """A metric or column name as one short line to show in a figure."""
    return one_line(metric.replace("_", " "), TEXT_CHARS)


def _text(text: str) -> str:
    """Text for matplotlib: every ``$`` escaped, so that no mathtext is parsed from it."""
    return text.replace("$", r"\$")


def _legend_text(label: str) -> str:
    """A legend entry; a leading space keeps matplotlib from hiding a label that starts ``_``."""
    text = _text(one_line(label, TEXT_CHARS))
    return f" {text}" if text.startswith("_") else text


def metric_over_epochs(data: CardData) -> Any:
    """The main metric's distribution over the models at every checkpoint.

    Few checkpoints: one violin each. Many: the median with 25-75 and 5-95 percentile bands.
    """
    fig = _figure()
    ax = fig.add_subplot()
    values = data.values
    epochs = np.asarray(data.epochs)
    columns = [v[np.isfinite(v)] for v in values.T]
    if len(epochs) <= 12:
        spots = np.arange(len(epochs))
        shown = [c if c.size else np.array([np.nan]) for c in columns]
        parts = ax.violinplot(shown, positions=spots, showmedians=True, widths=0.8)
        for body in parts["bodies"]:
            body.set_alpha(0.5)
        ax.set_xticks(spots, [str(e) for e in epochs])
    else:
        q = np.array(
            [np.nanpercentile(c, [5, 25, 50, 75, 95]) if c.size else [np.nan] * 5 for c in columns]
        )
        ax.fill_between(epochs, q[:, 0], q[:, 4], alpha=0.2, color="C0", label="5-95%")
        ax.fill_between(epochs, q[:, 1], q[:, 3], alpha=0.4, color="C0", label="25-75%")
        ax.plot(epochs, q[:, 2], color="C0", label="median")
        ax.legend(loc="best", fontsize="small")
    if "loss" in data.metric and np.nanmin(values) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("epoch (checkpoint)")
    ax.set_ylabel(_text(_label(data.metric)))
    _title(ax, data.name, f"{_label(data.metric)} over training ({len(values)} models)")
    ax.grid(alpha=0.3)
    return fig


def mean_vs_std(data: CardData) -> Any:
    """Each model's final weight mean against its standard deviation, coloured by the metric."""
    fig = _figure()
    ax = fig.add_subplot()
    color = data.columns[f"final_{data.metric}"]
    # Bright is good either way: losses get the reversed colour map.
    cmap = "viridis_r" if "loss" in data.metric else "viridis"
    points = ax.scatter(data.final.mean(axis=1), data.final.std(axis=1), c=color, s=14, cmap=cmap)
    fig.colorbar(points, ax=ax, label=_text(f"final {_label(data.metric)}"))
    ax.set_xlabel("mean of the weights")
    ax.set_ylabel("std of the weights")
    _title(ax, data.name, "final weights, one point per model")
    ax.grid(alpha=0.3)
    return fig


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
    fig = _figure(7.2, 4.6)
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
    _axis_labels(ax, embedding)
    count = int(outside.sum())
    if count:
        ax.set_xlabel(
            f"{ax.get_xlabel()}\n{count} {'point' if count == 1 else 'points'} outside the view, "
            "drawn as x at its edge"
        )
    _title(ax, data.name, f"{embedding.method} of the final weights")
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
    fig.colorbar(drawn, ax=ax, label=_text(_label(name)))


def _color_classes(
    ax: Any, shown: np.ndarray, outside: np.ndarray, values: np.ndarray, name: str
) -> None:
    """One colour per class, with a legend of the classes."""
    labels = np.asarray(values).astype(str)
    classes = _ordered(labels, None)
    palette = "tab10" if len(classes) <= 10 else "tab20"
    matplotlib: Any = require("matplotlib", "plots", "zoo card figures")
    cmap = matplotlib.colormaps[palette]
    for i, label in enumerate(classes):
        rows = labels == label
        color = cmap(i % cmap.N)
        inside, beyond = rows & ~outside, rows & outside
        text = _legend_text(label)
        ax.scatter(shown[inside, 0], shown[inside, 1], s=14, color=color, label=text)
        if beyond.any():  # no legend entry of its own: "_" labels are left out
            ax.scatter(shown[beyond, 0], shown[beyond, 1], s=30, marker="X", color=color, label="_")
    ax.legend(
        title=_text(_label(name)),
        fontsize="small",
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
    )


def _axis_labels(ax: Any, embedding: Embedding) -> None:
    shares = embedding.explained
    for i, setter in enumerate((ax.set_xlabel, ax.set_ylabel)):
        extra = f" ({shares[i]:.0%} of the variance)" if shares else ""
        setter(f"{embedding.method} {i + 1}{extra}")
    ax.grid(alpha=0.3)


def trajectories_figure(data: CardData, embedding: Embedding) -> Any:
    """A few models' checkpoints projected into the final-weight embedding, start to end."""
    fig = _figure(7.2, 4.6)
    ax = fig.add_subplot()
    k, steps, params = data.trajectories.shape
    path = embedding.transform(data.trajectories.reshape(k * steps, params)).reshape(k, steps, 2)
    ax.scatter(
        embedding.points[:, 0], embedding.points[:, 1], s=8, color="0.8", label="final (all)"
    )
    for i in range(k):
        ax.plot(path[i, :, 0], path[i, :, 1], color="C0", alpha=0.5, linewidth=1)
    ax.scatter(path[:, 0, 0], path[:, 0, 1], s=14, color="C1", label=f"epoch {data.epochs[0]}")
    ax.scatter(path[:, -1, 0], path[:, -1, 1], s=14, color="C2", label=f"epoch {data.epochs[-1]}")
    ax.legend(fontsize="small", loc="best")
    _axis_labels(ax, embedding)
    _title(ax, data.name, f"{k} trajectories in the {embedding.method} of the final weights")
    return fig


def distance_histogram(data: CardData) -> Any:
    """Euclidean distances between the final weights of every pair of (sampled) models."""
    fig = _figure()
    ax = fig.add_subplot()
    rows = data.final[:MAX_PAIRS_MODELS].astype(np.float64)
    squared = (rows**2).sum(axis=1)
    gram = squared[:, None] + squared[None, :] - 2.0 * rows @ rows.T
    upper = np.sqrt(np.clip(gram[np.triu_indices(len(rows), k=1)], 0.0, None))
    ax.hist(upper, bins=min(50, max(5, upper.size // 4)), color="C0", alpha=0.8)
    ax.set_xlabel("L2 distance between final weight vectors")
    ax.set_ylabel("pairs of models")
    _title(ax, data.name, f"pairwise distances ({len(rows)} models, {upper.size} pairs)")
    ax.grid(alpha=0.3)
    return fig


def pass_rate_figure(data: CardData) -> Any:
    """The share of models per class that passed the training threshold."""
    labels = [_text(one_line(label, TEXT_CHARS)) for label in data.passed]
    fig = _figure(max(6.4, 0.45 * len(labels) + 2), 4.2)
    ax = fig.add_subplot()
    rates = [100.0 * p / n for p, n in data.passed.values()]
    bars = ax.bar(range(len(labels)), rates, color="C0")
    for bar, (p, n) in zip(bars, data.passed.values(), strict=True):
        ax.annotate(
            f"{p}/{n}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize="x-small",
        )
    rotate = 45 if max(map(len, labels)) > 6 or len(labels) > 8 else 0
    ax.set_xticks(range(len(labels)), labels, rotation=rotate, ha="right" if rotate else "center")
    ax.set_ylim(0, 110)
    ax.set_ylabel("passed, % of models")
    ax.set_xlabel(_text(one_line(data.class_column or "", TEXT_CHARS)))
    _title(ax, data.name, f"networks that passed the threshold, per {data.class_column}")
    ax.grid(alpha=0.3, axis="y")
    return fig


def write_figures(
    zoo_dir: PathLike,
    out_dir: PathLike,
    *,
    color_by: str | None = None,
    embedding: str = "pca",
) -> list[tuple[str, str]]:
    """Draw every figure a zoo supports into ``out_dir`` as PNGs.

    Args:
        zoo_dir: a complete zoo directory.
        out_dir: where the PNGs go (created if needed).
        color_by: the column the embedding is coloured by (see :func:`load_card_data`).
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
    require("matplotlib.figure", "plots", "zoo card figures")  # fail early, and by name
    # A user's matplotlibrc may turn LaTeX on: publisher text must never reach it.
    with matplotlib.rc_context({"text.usetex": False}):
        return _draw_figures(zoo_dir, out_dir, color_by=color_by, embedding=embedding)


def _draw_figures(
    zoo_dir: PathLike, out_dir: PathLike, *, color_by: str | None, embedding: str
) -> list[tuple[str, str]]:
    data = load_card_data(zoo_dir, color_by=color_by)
    fitted = embed(data.final, embedding)
    out = Path(out_dir)
    with _writing(out):
        out.mkdir(parents=True, exist_ok=True)
    figures = [
        (
            # Raw: the card escapes and bounds its headings itself.
            f"{data.metric.replace('_', ' ').capitalize()} over training",
            "metric-over-epochs.png",
            metric_over_epochs(data),
        ),
        ("Weight mean vs std", "weight-mean-std.png", mean_vs_std(data)),
        (f"{fitted.method} of the final weights", "embedding.png", embedding_figure(data, fitted)),
        ("Trajectories", "trajectories.png", trajectories_figure(data, fitted)),
        ("Pairwise distances", "pairwise-distances.png", distance_histogram(data)),
    ]
    if data.passed:
        figures.append(("Pass rate per class", "pass-rate.png", pass_rate_figure(data)))
    written = []
    for title, name, fig in figures:
        with _writing(out / name):
            fig.savefig(out / name)
        written.append((title, name))
    return written


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn an OSError of writing ``path`` (matplotlib names no file) into one named line."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, WeightzooError):
            raise
        reason = os.strerror(exc.errno) if exc.errno else " ".join(str(exc).split())
        error = StorageWriteError(
            f"cannot write figure {path}: {reason}; free space there (or fix the cause) and "
            "draw the figures again"
        )
        error.errno, error.filename = exc.errno, str(path)  # kept for callers (ENOSPC)
        raise error from None
