"""The evaluation task of property zoos for :func:`weightzoo.functional.evaluate`.

Every model of a property zoo is tested on the same items, the shared test set; its training
subset is its own, so only ``"test"`` is rebuilt from the manifest. Random queries are drawn as
the zoo's inputs are: standard normal features for synthetic data, uniform in ``[0, 1]`` for the
digits' pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from weightzoo.families.property.data import load_property_data
from weightzoo.functional import ImageEvalTask, TaskData
from weightzoo.zoo import Zoo

__all__ = ["PropertyEvalTask"]


class PropertyEvalTask(ImageEvalTask):
    """Property-inference MLPs: classification of feature vectors on the shared test set.

    Args:
        zoo: the zoo.
        spec: its task spec (the manifest's).
    """

    splits = ("test",)

    def __init__(self, zoo: Zoo, spec: Mapping[str, Any]) -> None:
        self.zoo, self.spec = zoo, spec
        self.loss = "ce"
        self.input_shape = (int(spec["features"]),)
        self.activations = ["relu"]  # one module for every row: no column changes it

    def default_data(self, split: str, data_dir: str | None, columns: Any, count: int) -> TaskData:
        """The shared test set, split from the spec's data seed as the generator split it."""
        spec = self.spec
        data = load_property_data(
            str(spec["dataset"]),
            int(spec["data_seed"]),
            int(spec["pool_size"]),
            int(spec["test_size"]),
            int(spec["features"]),
        )
        return TaskData(torch.from_numpy(data.test.x), torch.from_numpy(data.test.y))

    def random_inputs(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` noise inputs in the range of the zoo's data."""
        if self.spec.get("dataset") == "synthetic":  # standard normal features
            return torch.randn((n, *self.input_shape), generator=generator)
        return torch.rand((n, *self.input_shape), generator=generator)
