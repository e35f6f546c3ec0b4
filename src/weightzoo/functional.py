"""Run zoo rows as models: batch evaluation of many rows at once, and query sets.

:func:`evaluate` takes weight rows ``[N, P]`` (from a zoo, or from anywhere: a generative
model's output, a reconstruction) and runs them all as one population: the rows are split into
stacked parameters ``{name: [m, ...]}`` by the zoo's layout and run with
:func:`torch.func.functional_call` under :func:`torch.func.vmap`, a chunk of rows and a chunk of
inputs at a time, without a Python loop over models. Without inputs it rebuilds the zoo's own
evaluation data from the manifest (the image test split, the MLDS evaluation sequences) and
measures loss and accuracy exactly as the generator does, so that a zoo's stored rows reproduce
its stored ``test_*`` / ``eval_*`` metrics.

A family whose networks ``vmap`` cannot run gives its own evaluation task
(:meth:`~weightzoo.generate.base.Family.eval_task`): MLDS rows, recurrent networks, run through
the stacked-parameter forward the generator trains with
(:class:`weightzoo.families.mlds.evaluate.MLDSEvalTask`).

:func:`queries` builds the fixed query sets on which behaviour is compared (noise, held-out data,
or half of each, as in "Structure is not enough: Leveraging Behavior for Neural Network Weight
Reconstruction", Meynent et al., arXiv:2503.17138), and :func:`behaviour` stores every
checkpoint's outputs on such a set in a side file (:mod:`weightzoo.storage.sidecar`).

This module never imports :mod:`weightzoo.generate`: the data builders live in
:mod:`weightzoo.imagesets`, the modules in :mod:`weightzoo.architectures`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from weightzoo import stacked
from weightzoo.architectures import UnbuildableSpecError, build_model, check_layout
from weightzoo.errors import (
    DataFilesMissingError,
    DeviceError,
    InputShapeError,
    InvalidOptionError,
    LayoutError,
)
from weightzoo.families import family_hooks
from weightzoo.features import unflatten
from weightzoo.precision import exact_cuda
from weightzoo.storage.manifest import SPLITS
from weightzoo.storage.sidecar import BEHAVIOUR_SIDECAR
from weightzoo.zoo import Zoo

__all__ = [
    "QUERY_KINDS",
    "Evaluation",
    "ImageEvalTask",
    "TaskData",
    "behaviour",
    "evaluate",
    "input_shape",
    "queries",
]

QUERY_KINDS = ("random", "data", "union")

# Working memory of one forward pass, in float32 values: bounds rows x inputs per pass. On CPU
# a pass that stays in cache (16 MB) ran fastest (benchmarks/bench_evaluate.py); a GPU wants
# big passes (256 MB).
_ACTIVATION_BUDGET = {"cpu": 2**22, "cuda": 2**26}
# Parameters of one chunk of rows, in float32 values (256 MB).
_PARAMETER_BUDGET = 2**26
_MAX_ROWS = {"cpu": 256, "cuda": 1024}
_MIN_BATCH = 32  # fewer rows per pass rather than batches smaller than this
_STACKED_MIN_BATCH = 4  # the same for weightzoo.stacked (measured with bench_evaluate.py)

ZooLike = Zoo | str | os.PathLike[str]


@dataclass
class Evaluation:
    """What :func:`evaluate` measured, one entry per row.

    Attributes:
        outputs: float32 ``[N, inputs, ...]``: each row's outputs (logits of an image net,
            ``[steps, lines]`` per sequence of an MLDS net); ``None`` with ``keep_outputs=False``.
        loss: float64 ``[N]``: the zoo's loss (cross-entropy or MSE on one-hot labels for image
            zoos, as the spec says; masked mean squared error for MLDS); ``None`` without targets.
        accuracy: float64 ``[N]``: top-1 accuracy (image), share of output bits right (DS1,
            DS2) or share of steps whose emitted symbol is right (DS3); ``None`` without targets.
        metrics: every metric measured, by the name it has in the zoo after the split prefix
            (``loss``, ``acc``; MLDS: ``loss``, ``bit_accuracy``, ``symbol_accuracy``).
        split: the zoo's data set that was used (``"test"``, ``"eval"``...), or ``None`` for
            inputs given by the caller.
    """

    outputs: Tensor | None
    loss: Tensor | None
    accuracy: Tensor | None
    metrics: dict[str, Tensor] = field(default_factory=dict)
    split: str | None = None

    def stored_name(self, metric: str) -> str:
        """The zoo's metric column this one matches, e.g. ``"test_acc"``.

        Raises:
            InvalidOptionError: for an evaluation on inputs the caller gave (no stored column).
        """
        if self.split is None:
            raise InvalidOptionError(
                "this evaluation ran on inputs you gave; only the zoo's own data sets have "
                "stored metrics"
            )
        return f"{self.split}_{metric}"


# ------------------------------------------------------------------------------ data and tasks
@dataclass
class TaskData:
    """Inputs and targets, shared by every row or one set per class.

    ``inputs`` is ``[B, ...]`` (shared) or ``[K, B, ...]`` with ``row_class [N]`` picking each
    row's set; ``targets`` and ``mask`` follow the same leading axes (or are None).
    """

    inputs: Tensor
    targets: Tensor | None = None
    mask: Tensor | None = None
    row_class: np.ndarray | None = None

    @property
    def size(self) -> int:
        """Items per row."""
        return self.inputs.shape[0 if self.row_class is None else 1]

    def batch(
        self, rows: np.ndarray, start: int, stop: int, device: torch.device
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Inputs, targets and mask of items ``start:stop`` for ``rows`` (on ``device``)."""
        index = None if self.row_class is None else torch.as_tensor(self.row_class[rows])

        def pick(tensor: Tensor | None) -> Tensor | None:
            if tensor is None:
                return None
            part = tensor[start:stop] if index is None else tensor[index, start:stop]
            return part.to(device)

        inputs = pick(self.inputs)
        assert inputs is not None
        return inputs, pick(self.targets), pick(self.mask)


def task_spec(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """The spec that fixes a zoo's architecture and data (a sparsified twin's source spec)."""
    if spec.get("spec_class") == "SparsifiedTwin" and isinstance(spec.get("source_spec"), Mapping):
        return task_spec(spec["source_spec"])
    return spec


class ImageEvalTask:
    """Image classification: CNN-s / CNN-m / ResNet-18 / trajectory nets on an image split.

    Also the base of a family's own evaluation task
    (:meth:`~weightzoo.generate.base.Family.eval_task`): a classifier family subclasses it and
    overrides :meth:`default_data` (and ``splits``, ``input_shape``, :meth:`random_inputs`
    where they differ).
    """

    splits = SPLITS
    default_split = "test"
    accuracy = "acc"
    row_column = "activation"
    """The model column the rows' modules or data depend on (named when rows lack it)."""

    def __init__(self, zoo: Zoo, spec: Mapping[str, Any]) -> None:
        self.zoo, self.spec = zoo, spec
        self.loss = str(spec.get("loss", "ce"))
        size = int(spec["image_size"])
        self.input_shape = (int(spec["in_channels"]), size, size)
        self.activations = list(spec.get("activations", ["relu"]))

    def needs_columns(self, given_inputs: bool) -> bool:
        """Whether rows need their model columns (a grid zoo's activation builds the module)."""
        return len(set(self.activations)) > 1

    def group_keys(self, columns: Mapping[str, np.ndarray], count: int) -> np.ndarray:
        """Each row's module key: rows of one key run through one module."""
        if len(set(self.activations)) == 1:
            return np.full(count, str(self.activations[0]), dtype=object)
        return np.asarray([_text(v) for v in columns["activation"]], dtype=object)

    def module(self, key: str) -> nn.Module:
        """The module of the rows of ``key`` (eval mode, checked against the layout)."""
        return _checked_module(self.zoo, {"activation": key})

    def default_data(self, split: str, data_dir: str | None, columns: Any, count: int) -> TaskData:
        """The zoo's own data set ``split`` (one of ``splits``), as the generator had it."""
        from weightzoo.imagesets.splits import load_splits

        spec = self.spec
        try:
            arrays = load_splits(
                str(spec["dataset"]),
                data_dir,
                int(spec["image_size"]),
                int(spec["in_channels"]) == 1,
                float(spec.get("val_fraction", 0.15)),
                int(spec.get("data_seed", 42)),
            )
        except DataFilesMissingError as exc:
            lines = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise DataFilesMissingError(
                f"zoo {self.zoo.name!r} is evaluated on the {spec['dataset']} {split} split, "
                f"whose files are not on disk: {lines} Then pass data_dir=DIR (or set "
                "WEIGHTZOO_DATA_DIR)."
            ) from None
        x, y = arrays[self.splits.index(split)]
        return TaskData(torch.from_numpy(x), torch.from_numpy(y))

    def random_inputs(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` noise inputs in the range of the zoo's data (images: uniform in [0, 1])."""
        return torch.rand((n, *self.input_shape), generator=generator)

    def data_queries(self, n: int, seed: int, data_dir: str | None) -> Tensor:
        """``n`` held-out data inputs, deterministic in ``seed`` (test items, drawn at random).

        Raises:
            InvalidOptionError: for more than the test split holds.
        """
        test = self.default_data("test", data_dir, {}, 0).inputs
        if n > len(test):
            raise InvalidOptionError(
                f"zoo {self.zoo.name!r} has {len(test)} test items; ask for at most that many "
                f"data queries, got n={n}"
            )
        pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n]
        return test[pick].float()

    def fits_inputs(self, shape: tuple[int, ...]) -> tuple[bool, str]:
        """Whether a batch of ``shape`` fits the networks, and the shape they take (for errors)."""
        ok = len(shape) == len(self.input_shape) + 1 and shape[1:] == self.input_shape
        return ok, f"[N, {', '.join(map(str, self.input_shape))}]"

    def check_inputs(self, inputs: Tensor) -> None:
        """Raise :class:`InputShapeError` unless ``inputs`` is a batch of the zoo's inputs."""
        got = tuple(inputs.shape)
        ok, want = self.fits_inputs(got)
        if not ok or got[0] < 1:
            raise InputShapeError(
                f"inputs for zoo {self.zoo.name!r} must be {want}; got {list(got)}"
            )

    def given_data(self, inputs: Any, targets: Any) -> TaskData:
        """Inputs (and class labels) the caller gave, checked against the zoo's input shape."""
        x = torch.as_tensor(inputs, dtype=torch.float32)
        self.check_inputs(x)
        y = None
        if targets is not None:
            y = torch.as_tensor(targets).long()
            if y.shape != (len(x),):
                raise InputShapeError(
                    f"targets of zoo {self.zoo.name!r} are class labels [{len(x)}] for "
                    f"{len(x)} inputs; got shape {tuple(y.shape)}"
                )
        return TaskData(x, y)

    def forward(self, net: nn.Module, params: dict[str, Tensor], x: Tensor) -> Tensor:
        """Outputs ``[rows, batch, classes]`` of stacked ``params`` on ``x``."""
        if stacked.supports(net):  # sequential CNNs / MLPs: a few large kernels
            return stacked.forward(net, params, x)

        def one(p: dict[str, Tensor], xi: Tensor) -> Tensor:
            return functional_call(net, p, (xi,))

        shared = x.dim() == len(self.input_shape) + 1
        return vmap(one, in_dims=(0, None if shared else 0))(params, x)

    def sums(self, out: Tensor, y: Tensor, mask: Tensor | None) -> dict[str, Tensor]:
        """Per-row sums of loss and hits over a batch, and its item ``count``."""
        models, batch, classes = out.shape
        ys = y.expand(models, batch) if y.dim() == 1 else y
        if self.loss == "ce":
            per = F.cross_entropy(out.reshape(-1, classes), ys.reshape(-1), reduction="none")
            loss = per.view(models, batch).mean(1)
        else:
            loss = ((out - F.one_hot(ys, classes).to(out.dtype)) ** 2).mean(dim=(1, 2))
        hits = (out.argmax(-1) == ys).sum(1).double()
        return {"loss": loss.double() * batch, "acc": hits, "count": out.new_full((models,), batch)}

    def per_input(self, net: nn.Module) -> int:
        """Activation values of one input (sizes the passes)."""
        return _activation_numel(net, torch.zeros(1, *self.input_shape, device=_on(net)))


def _stacked(net: Any) -> bool:
    return isinstance(net, nn.Module) and stacked.supports(net)


def _checked_module(zoo: Zoo, columns: Mapping[str, Any] | None = None) -> nn.Module:
    """The zoo's module (eval mode), its spec checked against the layout before it is built."""
    spec, layout = zoo.manifest.spec, zoo.layout
    return build_model(spec, columns, layout=layout, source=zoo.manifest_file).eval()


def _check_spec(zoo: Zoo, spec: Mapping[str, Any]) -> None:
    """Refuse a spec whose module is not the zoo's layout, before its sizes shape any data.

    Every evaluation path (vmapped, stacked, landscapes) starts with :func:`_task`, which
    calls this first: input shapes, query sets and data sets are all sized from the spec.
    """
    activations = spec.get("activations")
    # a grid zoo's activations change no tensor: any one of them builds the layout
    columns = (
        {"activation": activations[0]} if isinstance(activations, list) and activations else {}
    )
    check_layout(zoo.manifest.spec, zoo.layout, columns, source=zoo.manifest_file)


def _task(zoo: Zoo) -> ImageEvalTask:
    spec = task_spec(zoo.manifest.spec)
    _check_spec(zoo, spec)  # also raises the UnbuildableSpecError that says what to do
    hooks = family_hooks(spec.get("family"))
    task = None if hooks is None else hooks.eval_task(zoo, spec)
    if task is not None:
        return task
    raise UnbuildableSpecError(
        f"zoo {zoo.name!r}: weightzoo.evaluate does not know the evaluation data of the "
        f"{spec.get('family')!r} family; run its rows yourself with zoo.module(row) on your data"
    )


# ------------------------------------------------------------------------------- helpers
def _as_zoo(zoo: ZooLike) -> Zoo:
    return zoo if isinstance(zoo, Zoo) else Zoo(zoo)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"device {device!r} is not a torch device; use 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"device {device!r}: this torch build sees no CUDA device; use device='cpu'"
        )
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {device!r} is not supported; use 'cpu' or 'cuda'")
    return dev


def _on(net: nn.Module) -> torch.device:
    return next(iter(net.parameters())).device


def _activation_numel(net: nn.Module, x: Tensor) -> int:
    """Values the leaf modules of ``net`` produce for one input (a bound on working memory)."""
    total = [0]

    def count(_module: nn.Module, _args: Any, output: Any) -> None:
        if isinstance(output, Tensor):
            total[0] += output.numel()

    hooks = [m.register_forward_hook(count) for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for hook in hooks:
            hook.remove()
    return max(total[0], x.numel())


def _pass_size(
    per_input: int,
    budget: int,
    most: int,
    rows: int | None,
    batch: int | None,
    min_batch: int = _MIN_BATCH,
) -> tuple[int, int]:
    """Rows and inputs per pass: about ``budget`` activation values, ``min_batch``+ inputs."""
    per_input = max(1, per_input)
    rows = rows or max(1, min(most, budget // (per_input * min_batch)))
    return rows, batch or max(1, budget // (rows * per_input))


def _as_rows(weights: Any, zoo: Zoo) -> Tensor:
    rows = torch.as_tensor(weights)
    if rows.dim() == 1:
        rows = rows[None]
    width = zoo.layout.num_params
    if rows.dim() != 2 or rows.shape[1] != width:
        raise LayoutError(
            f"rows for zoo {zoo.name!r} must be [N, {width}] (its layout's parameters); got "
            f"shape {list(rows.shape)}"
        )
    if not rows.is_floating_point():
        raise LayoutError(f"rows for zoo {zoo.name!r} must be floating point, got {rows.dtype}")
    return rows.float()


def _row_columns(
    zoo: Zoo, model_columns: Any, count: int, needed: bool, what: str
) -> dict[str, np.ndarray]:
    """Per-row columns: from a mapping (scalars broadcast) or from model positions."""
    if model_columns is None:
        if needed:
            raise InvalidOptionError(
                f"zoo {zoo.name!r} needs each row's {what}: pass model_columns=POSITIONS (the "
                f"rows' model positions in the zoo) or model_columns={{{what!r}: [...]}}"
            )
        return {}
    if isinstance(model_columns, Mapping):
        out = {}
        for name, values in model_columns.items():
            array = np.asarray(values, dtype=object)
            if array.ndim == 0:
                array = np.full(count, array.item(), dtype=object)
            if len(array) != count:
                raise InvalidOptionError(
                    f"model_columns[{name!r}] has {len(array)} values for {count} rows"
                )
            out[str(name)] = array
        if needed and what not in out:
            raise InvalidOptionError(
                f"zoo {zoo.name!r} needs each row's {what}; model_columns has only {sorted(out)}"
            )
        return out
    positions = np.asarray(model_columns)
    if positions.ndim != 1 or len(positions) != count or positions.dtype.kind not in "iu":
        raise InvalidOptionError(
            f"model_columns must be a mapping of columns or {count} integer model positions "
            f"(one per row); got {type(model_columns).__name__} of shape {positions.shape}"
        )
    return zoo.model_columns(positions)


def input_shape(zoo: ZooLike) -> tuple[int, ...]:
    """The shape of one input of a zoo's networks.

    ``(channels, size, size)`` for image zoos; ``(steps, input lines)`` for MLDS zoos (the
    lines as the machine reads them, 0 or 1; :func:`evaluate` feeds them to the networks at
    -1/+1 where the zoo does).

    Raises:
        UnbuildableSpecError: for an imported zoo without a weightzoo architecture.
    """
    return _task(_as_zoo(zoo)).input_shape


def check_inputs(zoo: ZooLike, inputs: Tensor) -> None:
    """Raise :class:`InputShapeError` unless ``inputs`` is a batch of the zoo's inputs.

    MLDS networks run on sequences of any length; their input lines must match.
    """
    _task(_as_zoo(zoo)).check_inputs(inputs)


# ------------------------------------------------------------------------------- evaluate
def evaluate(
    zoo: ZooLike,
    weights: Any,
    inputs: Any = None,
    targets: Any = None,
    *,
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
    model_columns: Mapping[str, Any] | Sequence[int] | np.ndarray | None = None,
    split: str | None = None,
    rows_per_chunk: int | None = None,
    keep_outputs: bool = True,
    data_dir: str | os.PathLike[str] | None = None,
) -> Evaluation:
    """Run many weight rows of a zoo's architecture at once; outputs, loss and accuracy per row.

    Args:
        zoo: the zoo (or its directory) whose layout and architecture the rows have.
        weights: rows ``[N, P]`` (numpy or torch; one row ``[P]`` is taken as ``N = 1``).
        inputs: a batch of inputs at the zoo's input shape (:func:`input_shape`); ``None``:
            the zoo's own evaluation data (``split``), rebuilt from its manifest.
        targets: labels ``[B]`` (image zoos) or output lines ``[B, steps, lines]`` (MLDS) for
            ``inputs``; without them only outputs are returned.
        batch_size: inputs per forward pass; ``None``: a pass's activations stay near 16 MB
            on CPU (in cache), 256 MB on CUDA.
        device: ``"cpu"`` or ``"cuda"`` (rows and inputs are moved there chunk by chunk).
        model_columns: what the rows' modules or data depend on: the activation of a
            hyperparameter-grid zoo, the machine / automaton of an MLDS row (for its own data
            sets). Either the rows' model positions in the zoo (an int sequence, one per row),
            or a mapping ``{column: values}`` (a scalar applies to every row).
        split: the zoo's data set without ``inputs``: ``"test"`` (default), ``"val"`` or
            ``"train"`` for image zoos; ``"eval"`` (default), ``"val"``, ``"train"`` (DS2 also
            ``"trigger"``) for MLDS zoos; ``"test"`` (the shared test set) for property zoos.
        rows_per_chunk: rows run together; ``None``: as many as leave batches of 32 inputs
            within that memory, at most 256 on CPU, 1024 on CUDA and 256 MB of parameters.
        keep_outputs: keep every output (``Evaluation.outputs``); False saves the memory.
        data_dir: where an image zoo's dataset files are (default ``$WEIGHTZOO_DATA_DIR`` or
            ``~/.cache/weightzoo/data``; digits needs none).

    Returns:
        An :class:`Evaluation`. With the zoo's own data the metrics are the generator's: a
        zoo's stored rows give back its stored ``<split>_<metric>`` values.

    BatchNorm networks (ResNet-18) run in eval mode on the running statistics their rows hold
    (the layout stores them); dropout is off.

    Raises:
        LayoutError: rows of the wrong width.
        InputShapeError: inputs or targets of the wrong shape.
        InvalidOptionError: an unknown split, missing ``model_columns`` where the rows need
            them, targets without inputs.
        DataFilesMissingError: the zoo's dataset files are not on disk (the message names them
            and says where to get them).
        DeviceError: a device torch cannot use here.
        UnbuildableSpecError: an imported zoo whose architecture weightzoo does not know.
    """
    zoo = _as_zoo(zoo)
    task = _task(zoo)
    rows = _as_rows(weights, zoo)
    count = len(rows)
    dev = _device(device)
    given = inputs is not None
    if targets is not None and not given:
        raise InvalidOptionError("targets need inputs: pass both, or neither for the zoo's data")
    columns = _row_columns(zoo, model_columns, count, task.needs_columns(given), task.row_column)
    if given:
        if split is not None:
            raise InvalidOptionError("split picks the zoo's own data; leave it out with inputs")
        data = task.given_data(inputs, targets)
    else:
        split = split or task.default_split
        if split not in task.splits:
            raise InvalidOptionError(
                f"zoo {zoo.name!r} has no data set {split!r}; use one of {', '.join(task.splits)}"
            )
        data = task.default_data(split, None if data_dir is None else str(data_dir), columns, count)
    keys = task.group_keys(columns, count)
    budget, most = _ACTIVATION_BUDGET[dev.type], _MAX_ROWS[dev.type]
    most = max(1, min(most, _PARAMETER_BUDGET // zoo.layout.num_params))
    outputs: Tensor | None = None
    totals: dict[str, Tensor] = {}
    # Full float32 on CUDA, as the generator trained and measured: TF32 convolutions would
    # flip accuracies on near ties and move losses away from the stored ones.
    with torch.no_grad(), exact_cuda(dev):
        for key in dict.fromkeys(keys.tolist()):
            net = task.module(key)
            if isinstance(net, nn.Module):
                net = net.to(dev)
            members = np.flatnonzero(keys == key)
            # The stacked path runs best on many rows and few inputs per pass (its large
            # first-layer outputs then stay in cache); vmap needs batches of 32 or more.
            low = _STACKED_MIN_BATCH if _stacked(net) else _MIN_BATCH
            chunk, step = _pass_size(
                task.per_input(net), budget, most, rows_per_chunk, batch_size, low
            )
            for first in range(0, len(members), chunk):
                part = members[first : first + chunk]
                params = {k: v.to(dev) for k, v in unflatten(rows[part], zoo.layout).items()}
                for start in range(0, data.size, step):
                    stop = min(start + step, data.size)
                    x, y, mask = data.batch(part, start, stop, dev)
                    out = task.forward(net, params, x)
                    if keep_outputs:
                        if outputs is None:
                            outputs = torch.empty(count, data.size, *out.shape[2:])
                        outputs[part, start:stop] = out.float().cpu()
                    if y is not None:
                        for name, value in task.sums(out, y, mask).items():
                            if name not in totals:
                                totals[name] = torch.zeros(count, dtype=torch.float64)
                            totals[name][part] += value.double().cpu()
    metrics = {
        name: value / totals.get(f"{name}:count", totals["count"]).clamp(min=1)
        for name, value in totals.items()
        if name != "count" and not name.endswith(":count")
    }
    return Evaluation(
        outputs=outputs,
        loss=metrics.get("loss"),
        accuracy=metrics.get(task.accuracy),
        metrics=metrics,
        split=None if given else split,
    )


# -------------------------------------------------------------------------------- queries
def queries(
    zoo: ZooLike,
    kind: str = "random",
    n: int = 64,
    seed: int = 0,
    *,
    data_dir: str | os.PathLike[str] | None = None,
) -> Tensor:
    """A fixed set of ``n`` inputs at the zoo's input shape, deterministic in ``seed``.

    Args:
        zoo: the zoo (or its directory).
        kind: ``"random"``: noise (image zoos: uniform in [0, 1], the range of their images;
            MLDS: random bits at the spec's sequence length; property zoos: standard normal
            features for synthetic data, uniform in [0, 1] for digits); ``"data"``: held-out
            data (image and property zoos: test items; MLDS: fresh sequences drawn as the
            zoo's data are);
            ``"union"``: the first ``n // 2`` of the random set, then ``n - n // 2`` of the
            data set.
        n: number of inputs.
        seed: seed of the draw.
        data_dir: where an image zoo's dataset files are (digits needs none).

    Returns:
        float32 ``[n, *input_shape(zoo)]``.

    Raises:
        InvalidOptionError: for an unknown kind, ``n < 1``, or more data samples than the test
            split holds.
        DataFilesMissingError: for ``"data"`` / ``"union"`` when the dataset is not on disk.
    """
    if kind not in QUERY_KINDS:
        raise InvalidOptionError(
            f"unknown query kind {kind!r}; use one of {', '.join(QUERY_KINDS)}"
        )
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise InvalidOptionError(f"n must be a positive number of queries, got {n!r}")
    zoo = _as_zoo(zoo)
    task = _task(zoo)
    if kind == "union":
        half = n // 2
        parts = [queries(zoo, "random", half, seed)] if half else []
        parts.append(queries(zoo, "data", n - half, seed, data_dir=data_dir))
        return torch.cat(parts)
    if kind == "random":
        return task.random_inputs(n, torch.Generator().manual_seed(int(seed)))
    return task.data_queries(n, int(seed), None if data_dir is None else str(data_dir))


# ------------------------------------------------------------------------------ behaviour
def behaviour(
    zoo: ZooLike,
    *,
    kind: str = "random",
    n: int = 64,
    seed: int = 0,
    epochs: int | str | Sequence[int] | None = None,
    device: str | torch.device = "cpu",
    data_dir: str | os.PathLike[str] | None = None,
    name: str = BEHAVIOUR_SIDECAR,
    progress: bool = False,
) -> Any:
    """Every checkpoint's outputs on the zoo's fixed query set, stored in a side file.

    Writes ``<zoo>/sidecars/<name>.h5`` (see :mod:`weightzoo.storage.sidecar`) with
    ``outputs`` float32 ``[models, checkpoints, n, ...]`` for the models on disk and the chosen
    epochs, and the query set itself as ``queries`` ``[n, ...]``; the attributes record the
    kind, ``n`` and the seed. Read it back with :func:`weightzoo.storage.sidecar.open_sidecar`.

    Args:
        zoo: the zoo (or its directory); its shards must be on disk.
        kind: the query set's kind, as :func:`queries`.
        n: number of queries.
        seed: seed of the query set.
        data_dir: where an image zoo's dataset files are.
        epochs: checkpoint labels, ``"last"`` or ``None``/``"all"``.
        device: where the networks run.
        name: the side file's name.
        progress: show a progress bar over checkpoints.

    Returns:
        The written side file's :class:`~weightzoo.storage.sidecar.SidecarRecord`.

    Raises:
        OSError: the side file could not be written (a full disk, ...): one line naming it,
            with no temporary file left behind, so that a rerun starts afresh.
    """
    from tqdm.auto import tqdm

    from weightzoo.storage.sidecar import write_sidecar

    zoo = _as_zoo(zoo)
    _device(device)  # before any work
    inputs = queries(zoo, kind, n, seed, data_dir=data_dir)
    reader = zoo.reader(epochs=epochs)
    positions = reader.positions
    models = len(positions)
    columns = {k: v for k, v in reader.columns.items() if len(v) == models}
    outputs: np.ndarray | None = None
    for index in tqdm(range(len(reader.epochs)), disable=not progress, desc="checkpoints"):
        rows = reader.read("weights", np.arange(models), np.full(models, index))
        result = evaluate(zoo, rows, inputs, device=device, model_columns=columns)
        assert result.outputs is not None
        if outputs is None:
            outputs = np.empty((models, len(reader.epochs), *result.outputs.shape[1:]), np.float32)
        outputs[:, index] = result.outputs.numpy()
    assert outputs is not None
    return write_sidecar(
        zoo.path,
        name,
        {"outputs": outputs},
        {"kind": kind, "n": int(n), "seed": int(seed), "what": "outputs on the query set"},
        shared={"queries": inputs.numpy()},
        models=positions,
        epochs=reader.epochs,
    )
