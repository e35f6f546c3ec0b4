"""The evaluation task of fine-tuned ViTs for :func:`weightzoo.functional.evaluate`.

A fine-tuning group's rows are classifiers of the fine-tuning digits, rebuilt from the
manifest (:func:`~weightzoo.families.vit.data.digit_task`). Pre-trained ViTs have no task
here: a group mixes supervised and SimCLR models, whose stored metrics measure different
things. Random queries are uniform in the pixels' range ``[-1, 1]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from weightzoo.architectures import UnbuildableSpecError
from weightzoo.families.vit.data import FINETUNE_DIGITS, digit_task
from weightzoo.functional import ImageEvalTask, TaskData
from weightzoo.zoo import Zoo

__all__ = ["ViTFinetuneEvalTask"]


class ViTFinetuneEvalTask(ImageEvalTask):
    """Fine-tuned ViTs of a ViT zoo's fine-tune groups, on the fine-tuning task's digits.

    Args:
        zoo: the zoo (one fine-tuning group).
        spec: its task spec (the manifest's).

    Raises:
        UnbuildableSpecError: for a group fine-tuned on the paper's data.
    """

    splits = ("train", "test")

    def __init__(self, zoo: Zoo, spec: Mapping[str, Any]) -> None:
        if spec.get("dataset", "digits") != "digits":
            raise UnbuildableSpecError(
                f"zoo {zoo.name!r}: weightzoo.evaluate rebuilds only the offline digits task of "
                f"a ViT zoo, not {spec.get('dataset')!r}; pass inputs= and targets="
            )
        self.zoo, self.spec = zoo, spec
        self.loss = "ce"
        self.input_shape = (1, 8, 8)
        self.activations = ["gelu"]  # one module for every row: no column changes it

    def default_data(self, split: str, data_dir: str | None, columns: Any, count: int) -> TaskData:
        """The fine-tuning digits of ``split``, as training had them."""
        task = digit_task(FINETUNE_DIGITS)
        x, y = (task.train_x, task.train_y) if split == "train" else (task.test_x, task.test_y)
        return TaskData(torch.from_numpy(x), torch.from_numpy(y))

    def random_inputs(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` noise images with pixels in ``[-1, 1]``."""
        return torch.rand((n, *self.input_shape), generator=generator) * 2 - 1
