"""Property inference: white-box meta-classifiers that read a data property from weights.

The "0.5 vs X" distinguishing test of Suri & Evans, *Formalizing and Estimating Distribution
Inference Risks* (arXiv:2109.06024), also studied by Hartmann, Meynent, Peyrard, Dimitriadis,
Tople, West, *Distribution inference risks: identifying and mitigating sources of leakage*
(arXiv:2209.08541): for every ratio ``X != 0.5`` of a property zoo, a meta-classifier is fitted
on the *adversary* pool's models of ratios 0.5 and X (labels: which ratio) and scored on the
*victim* pool's models of the same ratios, which were trained on disjoint data. Both ratios
have as many models, so chance is 0.5.

Three meta-classifiers on each model's final weights:

- ``flat``: logistic regression on the standardised flattened weights;
- ``sorted``: the same on a permutation-invariant form: the hidden neurons of each layer are
  sorted by the norm of their incoming weights (with bias), the next layer's columns permuted
  to match, then flattened (:func:`sort_neurons`);
- ``deepsets``: a small DeepSets-style model over neurons, invariant to their order: per
  hidden layer, each neuron's incoming weights, bias and outgoing weights go through a shared
  MLP, are averaged over the layer's neurons, and the layer means are classified by a second
  MLP (:class:`NeuronSetClassifier`, torch).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from weightzoo.analysis.data import arrays, zoo_label
from weightzoo.analysis.tables import Row, Table, UnsupportedTableError
from weightzoo.storage.layout import Layout
from weightzoo.storage.manifest import SPLITS
from weightzoo.zoo import Zoo

SOURCE = (
    "Suri, Evans, Formalizing and Estimating Distribution Inference Risks (arXiv:2109.06024); "
    "Hartmann, Meynent, Peyrard, Dimitriadis, Tople, West, Distribution inference risks: "
    "identifying and mitigating sources of leakage (arXiv:2209.08541)"
)
BASE_RATIO = 0.5
METHODS = ("flat", "sorted", "deepsets")
SEED = 0


# --------------------------------------------------------------------------------- the layers
def dense_layers(layout: Layout) -> list[tuple[str, str | None]]:
    """``(weight, bias or None)`` tensor names of the layout's dense layers, in order.

    Raises:
        UnsupportedTableError: if a tensor is neither a 2-d weight nor its bias, or the
            layers do not chain (each layer's inputs are the previous layer's outputs).
    """
    names = set(layout.names)
    layers: list[tuple[str, str | None]] = []
    for entry in layout:
        if len(entry.shape) == 2:
            bias = entry.name[: -len("weight")] + "bias" if entry.name.endswith("weight") else ""
            layers.append((entry.name, bias if bias in names else None))
    used = {n for pair in layers for n in pair if n}
    if used != names:
        raise UnsupportedTableError(
            f"the rows hold tensors {sorted(names - used)} besides dense layers; the "
            "meta-classifiers read MLPs (Linear layers) only"
        )
    for (a, _), (b, _) in itertools.pairwise(layers):
        if layout[a].shape[0] != layout[b].shape[1]:
            raise UnsupportedTableError(
                f"layer {b} takes {layout[b].shape[1]} inputs but {a} gives "
                f"{layout[a].shape[0]}; the meta-classifiers read a chain of Linear layers"
            )
    return layers


def _tensor(rows: np.ndarray, layout: Layout, name: str) -> np.ndarray:
    entry = layout[name]
    return rows[:, entry.offset : entry.offset + entry.numel].reshape(len(rows), *entry.shape)


def _unpack(rows: np.ndarray, layout: Layout) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer: weights ``[n, out, in]`` and biases ``[n, out]`` (zeros without a bias)."""
    out = []
    for weight, bias in dense_layers(layout):
        w = _tensor(rows, layout, weight)
        b = _tensor(rows, layout, bias) if bias else np.zeros(w.shape[:2], dtype=rows.dtype)
        out.append((w, b))
    return out


def sort_neurons(rows: np.ndarray, layout: Layout) -> np.ndarray:
    """Rows ``[n, P]`` in a canonical neuron order, flattened ``[n, P']`` (weights, biases).

    The hidden neurons of each layer are sorted by the L2 norm of their incoming weights and
    bias (descending); the next layer's input columns follow the same permutation, so every
    model computes the same function as before. Two models that differ only by a permutation of
    hidden neurons map to the same vector (ties aside).
    """
    layers = [(w.copy(), b.copy()) for w, b in _unpack(rows, layout)]
    picks = np.arange(len(rows))[:, None]
    for k in range(len(layers) - 1):
        w, b = layers[k]
        key = np.sqrt((w**2).sum(2) + b**2)
        order = np.argsort(-key, axis=1, kind="stable")
        layers[k] = (w[picks, order], b[picks, order])
        nxt, nb = layers[k + 1]
        layers[k + 1] = (np.take_along_axis(nxt, order[:, None, :], axis=2), nb)
    return np.concatenate(
        [part.reshape(len(rows), -1) for w, b in layers for part in (w, b)], axis=1
    )


def neuron_sets(rows: np.ndarray, layout: Layout) -> list[np.ndarray]:
    """Per hidden layer: its neurons as a set ``[n, neurons, in + 1 + out]``.

    A neuron is described by its incoming weights, its bias and its outgoing weights (the
    next layer's column), so the set is the same under any permutation of the layer.

    Raises:
        UnsupportedTableError: for a network without hidden layers.
    """
    layers = _unpack(rows, layout)
    if len(layers) < 2:
        raise UnsupportedTableError("a network without hidden layers has no neurons to set")
    sets = []
    for k in range(len(layers) - 1):
        w, b = layers[k]
        outgoing = layers[k + 1][0].transpose(0, 2, 1)
        sets.append(np.concatenate([w, b[:, :, None], outgoing], axis=2).astype(np.float32))
    return sets


# ------------------------------------------------------------------------- meta-classifiers
def _logistic() -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    def fit_predict(x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x, y)
        return model.predict(x_test)

    return fit_predict


class NeuronSetClassifier:
    """A DeepSets classifier over the neuron sets of :func:`neuron_sets` (binary labels).

    Args:
        width: hidden width of the per-neuron and the final MLP.
        epochs: full-batch Adam steps.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        seed: torch seed of the initialisation.
    """

    def __init__(
        self,
        width: int = 32,
        epochs: int = 300,
        lr: float = 1e-2,
        weight_decay: float = 1e-3,
        seed: int = SEED,
    ) -> None:
        self.width, self.epochs, self.lr = width, epochs, lr
        self.weight_decay, self.seed = weight_decay, seed

    def fit(self, sets: Sequence[np.ndarray], y: np.ndarray) -> NeuronSetClassifier:
        """Fit on sets ``[n, neurons_l, d_l]`` per layer and 0/1 labels ``[n]``."""
        import torch
        from torch import nn

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.phis = nn.ModuleList(
                nn.Sequential(
                    nn.Linear(s.shape[2], self.width),
                    nn.ReLU(),
                    nn.Linear(self.width, self.width),
                )
                for s in sets
            )
            self.rho = nn.Sequential(
                nn.ReLU(), nn.Linear(self.width * len(sets), self.width), nn.ReLU(),
                nn.Linear(self.width, 1),
            )  # fmt: skip
        # per-feature standardisation over all neurons of the training models
        self.stats = [(s.mean((0, 1)), s.std((0, 1)) + 1e-6) for s in sets]
        params = [*self.phis.parameters(), *self.rho.parameters()]
        opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        inputs = self._inputs(sets)
        target = torch.as_tensor(y, dtype=torch.float32)
        for _ in range(self.epochs):
            opt.zero_grad()
            loss = nn.functional.binary_cross_entropy_with_logits(self._logits(inputs), target)
            loss.backward()
            opt.step()
        return self

    def _inputs(self, sets: Sequence[np.ndarray]):
        import torch

        return [
            torch.from_numpy(((s - m) / d).astype(np.float32))
            for s, (m, d) in zip(sets, self.stats, strict=True)
        ]

    def _logits(self, inputs):
        import torch

        pooled = [phi(x).mean(1) for phi, x in zip(self.phis, inputs, strict=True)]
        return self.rho(torch.cat(pooled, dim=1)).squeeze(1)

    def predict(self, sets: Sequence[np.ndarray]) -> np.ndarray:
        """0/1 predictions ``[n]``."""
        import torch

        with torch.no_grad():
            return (self._logits(self._inputs(sets)) > 0).numpy().astype(np.int64)


def meta_accuracy(
    method: str,
    train_rows: np.ndarray,
    train_y: np.ndarray,
    test_rows: np.ndarray,
    test_y: np.ndarray,
    layout: Layout,
) -> float:
    """Test accuracy of one meta-classifier fitted on ``train_rows`` (labels 0/1).

    Raises:
        ValueError: for an unknown method.
    """
    if method == "flat":
        pred = _logistic()(train_rows, train_y, test_rows)
    elif method == "sorted":
        pred = _logistic()(
            sort_neurons(train_rows, layout), train_y, sort_neurons(test_rows, layout)
        )
    elif method == "deepsets":
        model = NeuronSetClassifier().fit(neuron_sets(train_rows, layout), train_y)
        pred = model.predict(neuron_sets(test_rows, layout))
    else:
        raise ValueError(f"unknown meta-classifier {method!r}; known: {list(METHODS)}")
    return float((pred == test_y).mean())


# ---------------------------------------------------------------------------------- the table
def is_property_zoo(zoo: Zoo) -> bool:
    """Whether the zoo's models carry the ``ratio`` and ``pool`` columns of a property zoo."""
    return {"ratio", "pool"} <= set(zoo.manifest.columns)


def distinguish_table(
    zoo: Zoo, *, methods: Sequence[str] = METHODS, base: float = BASE_RATIO
) -> Table:
    """The "0.5 vs X" distinguishing accuracy of every method, one row per ratio ``X``.

    Every model of the zoo (all of its train/val/test splits) enters at its last checkpoint:
    the split that matters here is the pool, adversary models to fit and victim models to
    score.

    Raises:
        UnsupportedTableError: not a property zoo, no models at ratio ``base`` in both pools,
            or rows that are not an MLP.
    """
    label = zoo_label(zoo)
    if not is_property_zoo(zoo):
        raise UnsupportedTableError(
            f"{label} is not a property-inference zoo (it has no ratio and pool columns); "
            "generate one with `weightzoo generate property-synthetic`"
        )
    data = arrays(zoo, split=list(SPLITS), epochs="last", targets=("ratio", "pool"))
    rows, ratio, pool = data["weights"], data["ratio"].astype(float), data["pool"]
    layout = zoo.layout
    dense_layers(layout)

    def select(r: float, which: str) -> np.ndarray:
        return np.flatnonzero(np.isclose(ratio, r) & (pool == which))

    if not (len(select(base, "adversary")) and len(select(base, "victim"))):
        raise UnsupportedTableError(
            f"{label} has no models at ratio {base} in both the victim and the adversary pool"
        )
    table = Table(
        id="property.distinguish",
        title=f"Distinguishing ratio {base} from X: meta-classifier accuracy on victim models",
        source=SOURCE,
        unit="accuracy on victim-pool models (chance 0.5 with equal counts)",
        columns=[*methods, "adversary models", "victim models"],
        zoo=label,
        notes=[
            "fitted on adversary-pool models of ratios 0.5 and X, scored on victim-pool models "
            "of the same ratios (disjoint training data); last checkpoint of every model",
            "flat: logistic regression on standardised weights; sorted: the same after sorting "
            "each hidden layer's neurons by incoming-weight norm; deepsets: a set model over "
            "each hidden layer's neurons",
        ],
    )
    for x in sorted(set(np.round(ratio, 6)) - {round(base, 6)}):
        fit = [select(base, "adversary"), select(x, "adversary")]
        score = [select(base, "victim"), select(x, "victim")]
        if not all(len(i) for i in (*fit, *score)):
            continue
        train_idx, test_idx = np.concatenate(fit), np.concatenate(score)
        train_y = np.repeat([0, 1], [len(i) for i in fit])
        test_y = np.repeat([0, 1], [len(i) for i in score])
        ours: dict = {
            m: meta_accuracy(m, rows[train_idx], train_y, rows[test_idx], test_y, layout)
            for m in methods
        }
        ours |= {"adversary models": len(train_idx), "victim models": len(test_idx)}
        table.rows.append(Row(label=f"{_ratio(base)} vs {_ratio(x)}", ours=ours))
    if not table.rows:
        raise UnsupportedTableError(f"{label} has no ratio besides {base} in both pools")
    return table


def _ratio(value: float) -> str:
    """A ratio as a label: one decimal on the 0.1 grid (``0.0``), else as short as exact."""
    return f"{value:.1f}" if round(value, 1) == value else f"{value:g}"
