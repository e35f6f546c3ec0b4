"""How well a zoo's models trained, per class: counts, pass rate, accuracy and loss quantiles.

Works on any zoo: the metric names come from the manifest. Held-out metrics are preferred
(``test_*``, ``eval_*``, ``trigger_*``), accuracies before losses, read at the last checkpoint.
"""

from __future__ import annotations

import numpy as np

from weightzoo.analysis.data import zoo_label
from weightzoo.analysis.tables import Row, Table, UnsupportedTableError
from weightzoo.errors import WeightzooError
from weightzoo.zoo import Zoo

GROUP_COLUMNS = ("machine", "automaton", "activation")
HELD_OUT = ("test", "eval", "trigger")
QUANTILES = {"p10": 0.1, "p50": 0.5, "p90": 0.9}


def quality_metrics(metrics: list[str]) -> list[str]:
    """The metrics the quality table shows: held-out accuracies, then held-out losses.

    Falls back to every accuracy and loss metric when the zoo has no held-out one.
    """
    accuracy = [m for m in metrics if m.endswith(("_acc", "_accuracy"))]
    loss = [m for m in metrics if m.endswith("_loss")]
    chosen = [m for m in accuracy + loss if m.split("_", 1)[0] in HELD_OUT]
    return chosen or accuracy + loss


def group_column(zoo: Zoo, columns: dict[str, np.ndarray]) -> str | None:  # noqa: ARG001 - public signature
    """The column that names a model's class: machine, automaton, or a varied activation."""
    for name in GROUP_COLUMNS:
        if name in columns and len(np.unique(columns[name].astype(str))) > 1:
            return name
    return None


def quantiles(values: np.ndarray) -> dict[str, float] | None:
    """p10 / p50 / p90 of the finite values, or ``None`` if there are none."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    return {k: float(np.quantile(finite, q)) for k, q in QUANTILES.items()}


def quality_table(zoo: Zoo) -> Table:
    """Per-class training quality of ``zoo`` at its last checkpoint.

    Rows: one per class (machine, automaton, or activation where it varies) and ``all``.
    Columns: models, viable models, the share that passed the training threshold (where the
    zoo records ``passed``), the share that passed at their first attempt (where some network
    was trained again after a miss: column ``attempt``), and p50 [p10, p90] of each chosen
    metric over viable models.

    Raises:
        UnsupportedTableError: if the zoo's shards cannot be read, or it has no model yet.
    """
    try:
        reader = zoo.reader(epochs="last")
    except WeightzooError as exc:
        raise UnsupportedTableError(f"cannot read {zoo.path}: {exc}") from exc
    keep = reader.complete
    if not keep.any():
        raise UnsupportedTableError(f"{zoo.path} holds no complete model yet")
    columns = {k: v[keep] for k, v in reader.columns.items() if np.ndim(v) == 1}
    metrics = {k: v[keep, 0] for k, v in reader.metrics.items()}
    chosen = quality_metrics(list(metrics))
    viable = columns["viable"].astype(bool)
    group = group_column(zoo, columns)
    labels = columns[group].astype(str) if group else np.full(len(viable), "all")
    # The spec's order (the paper's machine order) where it lists the classes.
    listed = zoo.manifest.spec.get("machines") if group == "machine" else None
    present = set(labels.tolist())
    names = [str(n) for n in listed or [] if str(n) in present]
    names += sorted(present - set(names), key=_natural)
    if group:
        names.append("all")
    passing = ["passed %"] if "passed" in columns else []
    if passing and "attempt" in columns and (columns["attempt"] > 0).any():  # some retried
        passing.append("passed 1st attempt %")
    table = Table(
        id="quality",
        title=f"Training quality of {zoo_label(zoo)}"
        + (f" per {group}" if group else "")
        + f", at the last checkpoint (epoch {zoo.epochs[-1]})",
        source="weightzoo",
        unit="counts; passed as % of models; metrics as p50 [p10, p90] over viable models",
        columns=["models", "viable", *passing, *chosen],
        zoo=zoo_label(zoo),
    )
    for name in names:
        rows = np.ones(len(labels), bool) if name == "all" and group else labels == name
        ours: dict = {"models": int(rows.sum()), "viable": int((rows & viable).sum())}
        if passing:
            passed = columns["passed"][rows].astype(bool)
            ours["passed %"] = 100.0 * float(passed.mean())
        if "passed 1st attempt %" in passing:
            first = columns["attempt"][rows] == 0
            ours["passed 1st attempt %"] = 100.0 * float((passed & first).mean())
        for metric in chosen:
            ours[metric] = quantiles(metrics[metric][rows & viable])
        table.rows.append(Row(name, ours))
    return table


def _natural(text: str) -> tuple:
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)
