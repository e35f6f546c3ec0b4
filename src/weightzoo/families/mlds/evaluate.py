"""The evaluation task of MLDS zoos for :func:`weightzoo.functional.evaluate`.

MLDS networks are recurrent: ``vmap`` has no batching rule for ``nn.GRU`` / ``nn.LSTM``, so rows
run through :func:`~weightzoo.families.mlds.model.population_forward`, the stacked-parameter
forward the generator trains with (batched matmuls over all rows at once). Each network is
measured on its own class's sequences (rebuilt from the manifest by
:func:`~weightzoo.families.mlds.data.class_sets`) with the generator's masked mean squared
error and rounded-output hits, so stored rows give back their stored metrics. Inputs are
sequences of any length; random queries are random bits, data queries fresh sequences drawn as
the zoo's data are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from weightzoo.errors import InputShapeError
from weightzoo.families.mlds.data import class_names, class_sets, sample_inputs
from weightzoo.families.mlds.model import (
    masked_bit_hits,
    masked_mse,
    network_inputs,
    population_forward,
)
from weightzoo.families.mlds.spec import MLDSData, NetConfig, net_config
from weightzoo.functional import ImageEvalTask, TaskData
from weightzoo.zoo import Zoo

__all__ = ["MLDSEvalTask"]


class MLDSEvalTask(ImageEvalTask):
    """Recurrent nets mimicking a machine or automaton: masked MSE on its own sequences.

    Args:
        zoo: the zoo.
        spec: its task spec (the manifest's).
    """

    default_split = "eval"

    def __init__(self, zoo: Zoo, spec: Mapping[str, Any]) -> None:
        self.zoo, self.spec = zoo, spec
        self.data = MLDSData.from_spec(spec)
        self.config: NetConfig = net_config(self.data.subset)
        self.input_shape = (self.data.seq_len, self.config.input_size)
        self.splits = tuple(self.data.set_names())
        self.accuracy = "symbol_accuracy" if self.data.subset == "ds3" else "bit_accuracy"
        self.row_column = self.data.class_column

    def needs_columns(self, given_inputs: bool) -> bool:
        """Rows need their class for the zoo's own data: each runs on its class's sequences."""
        return not given_inputs

    def group_keys(self, columns: Mapping[str, np.ndarray], count: int) -> np.ndarray:
        """One key: every row runs through the one stacked forward."""
        return np.full(count, self.config.cell, dtype=object)

    def module(self, key: str) -> NetConfig:
        """The network shape :meth:`forward` runs (no module: the forward is stacked)."""
        return self.config

    def default_data(
        self, split: str, data_dir: str | None, columns: Mapping[str, np.ndarray], count: int
    ) -> TaskData:
        """Set ``split`` of each row's class, stacked per class (``row_class`` picks it)."""
        names = class_names(columns[self.row_column])
        classes = list(dict.fromkeys(names))
        sets = [class_sets(self.data, name)[split] for name in classes]
        stack = lambda f: torch.from_numpy(np.stack([getattr(s, f) for s in sets]))  # noqa: E731
        row_class = np.asarray([classes.index(n) for n in names], dtype=np.int64)
        return TaskData(stack("inputs"), stack("outputs"), stack("mask"), row_class)

    def given_data(self, inputs: Any, targets: Any) -> TaskData:
        """Input lines (and target output lines) the caller gave, checked against the zoo's."""
        x = torch.as_tensor(inputs, dtype=torch.float32)
        self.check_inputs(x)
        y = None
        if targets is not None:
            y = torch.as_tensor(targets, dtype=torch.float32)
            want = (*x.shape[:2], self.config.output_size)
            if tuple(y.shape) != want:
                raise InputShapeError(
                    f"targets of zoo {self.zoo.name!r} are output lines {list(want)} for inputs "
                    f"{list(x.shape)}; got shape {tuple(y.shape)}"
                )
        return TaskData(x, y)

    def fits_inputs(self, shape: tuple[int, ...]) -> tuple[bool, str]:
        """Sequences of any length whose input lines are the networks'."""
        lines = self.input_shape[1]
        ok = len(shape) == 3 and shape[2] == lines and shape[1] >= 1
        return ok, f"[N, steps, {lines}] (steps: the spec's {self.input_shape[0]}, or any length)"

    def forward(self, config: NetConfig, params: dict[str, Tensor], x: Tensor) -> Tensor:
        """Outputs ``[rows, batch, steps, lines]`` of stacked ``params`` on input lines ``x``."""
        models = next(iter(params.values())).shape[0]
        if x.dim() == 3:  # shared by every row
            x = x.expand(models, *x.shape)
        x = network_inputs(x, self.data.signed_inputs)
        # bptt: rows are measured without gradients, where it is the plain wavefront kernel
        return population_forward(config, params, x, bptt=True)

    def sums(self, out: Tensor, y: Tensor, mask: Tensor | None) -> dict[str, Tensor]:
        """Per-row squared errors and rounded-output hits, with the counts each divides by."""
        y = y.float().expand_as(out)
        mask = out.new_ones(out.shape[:3]) if mask is None else mask.float().expand(out.shape[:3])
        err, _ = masked_mse(out, y, mask)
        hits = masked_bit_hits(out, y, mask)
        terms = mask.sum(dim=(1, 2)).double()
        lines = terms * out.shape[-1]
        return {
            "loss": err.double(),
            "bit_accuracy": hits["bit_accuracy"][0].double(),
            "symbol_accuracy": hits["symbol_accuracy"][0].double(),
            "count": terms,
            "loss:count": lines,
            "bit_accuracy:count": lines,
        }

    def per_input(self, config: NetConfig) -> int:
        """Gate activations of one sequence (sizes the passes)."""
        return self.input_shape[0] * config.gates * config.hidden * config.layers

    def random_inputs(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` sequences of random input bits at the spec's length."""
        return torch.randint(0, 2, (n, *self.input_shape), generator=generator).float()

    def data_queries(self, n: int, seed: int, data_dir: str | None) -> Tensor:
        """``n`` fresh sequences drawn as the zoo's data are (their own seed: held out)."""
        return torch.from_numpy(sample_inputs(self.data, n, seed)).float()
