"""The contract every weightzoo Dataset keeps, as a base class of tests.

A test class subclasses :class:`DatasetContract` and defines the fixture ``make``: a function
that builds its Dataset from keyword options (``transform=``, ``target_transform=``...). The
checks are those a training loop relies on: length, item types, batches equal to stacked
items, the fast loader, index errors, both transforms, and pickling for DataLoader workers.
"""

from __future__ import annotations

import pickle

import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from weightzoo.errors import InvalidOptionError


def assert_items_equal(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


class DatasetContract:
    """Generic checks; subclasses provide the ``make`` fixture (options -> Dataset)."""

    #: Names in every item that are targets (``target_transform`` must change exactly these).
    target_names: tuple[str, ...] = ()

    @pytest.fixture
    def make(self):  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def test_len_and_items_are_dicts_of_tensors(self, make):
        data = make()
        assert len(data) > 0
        item = data[0]
        assert isinstance(item, dict) and item
        assert all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in item.items())
        assert set(self.target_names) <= set(item)

    def test_batch_equals_stacked_items(self, make):
        data = make()
        indices = [len(data) - 1, 0, len(data) // 2, 0]
        expected = default_collate([data[i] for i in indices])
        assert_items_equal(data.batch(indices), expected)
        assert_items_equal(data[indices], expected)
        assert_items_equal(data[-1], data[len(data) - 1])

    def test_loader_serves_every_item_in_batches(self, make):
        data = make()
        batches = list(data.loader(batch_size=3))
        assert len(batches) == -(-len(data) // 3)
        for number, batch in enumerate(batches):
            chunk = list(range(number * 3, min(len(data), number * 3 + 3)))
            assert_items_equal(batch, data.batch(chunk))

    def test_bad_indices_raise_named_errors(self, make):
        data = make()
        for index in (len(data), -len(data) - 1):
            with pytest.raises(IndexError, match="out of range"):
                data[index]
        for index in ("0", 1.5, None):
            with pytest.raises(InvalidOptionError, match="index"):
                data[index]

    def test_transform_and_target_transform(self, make):
        plain = make()[0]
        marked = make(transform=lambda item: {**item, "marked": torch.ones(1)})[0]
        assert torch.equal(marked.pop("marked"), torch.ones(1))
        assert_items_equal(marked, plain)
        shifted = make(target_transform=lambda t: {k: v + 1 for k, v in t.items()})[0]
        for key in plain:
            expected = plain[key] + 1 if key in self.target_names else plain[key]
            assert torch.equal(shifted[key], expected), key

    def test_pickles_for_dataloader_workers(self, make):
        data = make()
        data[0]  # open files in this process first: they must not travel
        copy = pickle.loads(pickle.dumps(data))
        assert len(copy) == len(data)
        assert_items_equal(copy[len(data) - 1], data[len(data) - 1])
        loader = DataLoader(data, batch_size=4, num_workers=1, multiprocessing_context="fork")
        first = next(iter(loader))
        assert_items_equal(first, data.batch(list(range(min(4, len(data))))))
