"""Every named Dataset passes the shared contract (tests/helpers/contract.py)."""

from __future__ import annotations

import pytest

import weightzoo
from helpers.contract import DatasetContract


@pytest.fixture
def zoos(named_zoos):
    return named_zoos


class TestZooDataset(DatasetContract):
    target_names = ("test_acc", "kind")

    @pytest.fixture
    def make(self, zoos):
        return lambda **kw: weightzoo.ZooDataset(
            zoos / "toy",
            split="all",
            features=("weights", "stats"),
            targets=self.target_names,
            **kw,
        )


class TestZooDatasetTokens(DatasetContract):
    target_names = ("lr",)

    @pytest.fixture
    def make(self, zoos):
        return lambda **kw: weightzoo.ZooDataset(
            zoos / "toy", epochs="all", features="tokens:4", targets="lr", ids=True, **kw
        )


class TestModelZoo(DatasetContract):
    target_names = ("test_acc",)

    @pytest.fixture
    def make(self, zoos):
        return lambda **kw: weightzoo.ModelZoo(
            zoos, dataset="digits", targets="test_acc", split="train", **kw
        )


class TestTrajectories(DatasetContract):
    target_names = ("test_acc",)

    @pytest.fixture
    def make(self, zoos):
        return lambda **kw: weightzoo.Trajectories(zoos / "toy", targets="test_acc", **kw)


class TestTrajectoryZooWindows(DatasetContract):
    target_names = ("train_loss",)

    @pytest.fixture
    def make(self, zoos):
        return lambda **kw: weightzoo.TrajectoryZoo(
            zoos, dataset="digits", mode="windows", window=2, targets="train_loss", **kw
        )


class TestMLDS(DatasetContract):
    target_names = ("machine",)

    @pytest.fixture
    def make(self, zoos):
        return lambda **kw: weightzoo.MLDS(zoos, subset="ds1", filter_viable=False, **kw)


class TestMLDSDS3(DatasetContract):
    target_names = ("automaton",)

    @pytest.fixture
    def make(self, zoos):
        return lambda **kw: weightzoo.MLDS(zoos, subset="ds3", filter_viable=False, **kw)


class TestMLDSBackdoor(DatasetContract):
    target_names = ("backdoor", "machine")

    @pytest.fixture
    def make(self, zoos):
        return lambda **kw: weightzoo.MLDSBackdoor(zoos, filter_viable=False, **kw)
