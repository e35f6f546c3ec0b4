"""The data sets of an MLDS zoo, per class (machine or automaton), from the spec's fields.

Each class's sets are drawn from ``data_seed``, the subset, the class name and the set, so every
network of a class sees the same data; :func:`class_sets` is what the generator trains and
measures on and what :func:`weightzoo.evaluate` rebuilds from a manifest. The machines
(:mod:`.machines`) and automata (:mod:`.automata`) that label them are numpy only, as is this
module: no torch.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import numpy as np

from weightzoo.families.mlds.automata import ALPHABET, automaton_set, random_automaton
from weightzoo.families.mlds.machines import (
    SequenceSet,
    insert_triggers,
    machine_set,
    random_inputs,
)
from weightzoo.families.mlds.spec import SUBSETS, MLDSData, MLDSSpec

__all__ = ["SET_CODES", "class_data", "class_names", "class_seed", "class_sets", "sample_inputs"]

SET_CODES = {"train": 0, "val": 1, "eval": 2, "trigger": 3, "query": 4}


def class_seed(data: MLDSData, class_name: str, set_name: str) -> list[int]:
    """The numpy seed of one set of one class."""
    class_code = zlib.crc32(class_name.encode())
    return [data.data_seed, SUBSETS.index(data.subset), class_code, SET_CODES[set_name]]


@lru_cache(maxsize=8)  # DS3 paper sets are ~25 MB per automaton: keep few
def class_sets(data: MLDSData, class_name: str) -> dict[str, SequenceSet]:
    """The data sets of one class (a machine name, or a DS3 automaton seed as a string).

    Returns:
        ``{"train", "val", "eval"[, "trigger"]: SequenceSet}``.
    """
    sizes = {"train": data.train_size, "val": data.val_size, "eval": data.eval_size}
    if data.subset == "ds3":
        automaton = random_automaton(int(class_name))
        return {
            name: automaton_set(
                automaton, count=size, steps=data.seq_len, seed=class_seed(data, class_name, name)
            )
            for name, size in sizes.items()
        }
    out = {
        name: machine_set(
            class_name,
            count=size,
            steps=data.seq_len,
            seed=class_seed(data, class_name, name),
            backdoor=data.backdoor,
            trigger_every=data.trigger_every,
        )
        for name, size in sizes.items()
    }
    if data.backdoor:
        out["trigger"] = machine_set(
            class_name,
            count=data.eval_size,
            steps=data.seq_len,
            seed=class_seed(data, class_name, "trigger"),
            backdoor=True,
            trigger_every=data.trigger_eval_every,
            trigger_only=True,
        )
    return out


def class_data(spec: MLDSSpec, class_name: str) -> dict[str, SequenceSet]:
    """The data sets of one class of a spec: ``train``, ``val``, ``eval`` (and DS2's ``trigger``).

    See :func:`class_sets` (cached there).
    """
    return class_sets(spec.data, class_name)


def class_names(values: Iterable[Any]) -> list[str]:
    """The class names of a model column's values (machine names; DS3: automaton seeds).

    Text read back from a shard may be bytes; a DS3 seed is an integer.
    """
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def sample_inputs(data: MLDSData, count: int, seed: int) -> np.ndarray:
    """Fresh input sequences drawn as the zoo's data are (held out: their own seed).

    DS1/DS2: random data lines with commands at probability 1/4 (DS2 with triggers inserted as
    in training); DS3: uniformly random one-hot symbols. The same for every class, since the
    inputs of a class's sets do not depend on the machine.

    Returns:
        uint8 ``[count, seq_len, input lines]``.
    """
    subset = SUBSETS.index(data.subset)
    rng = np.random.default_rng([data.data_seed, subset, SET_CODES["query"], seed])
    if data.subset == "ds3":
        symbols = rng.integers(ALPHABET, size=(count, data.seq_len))
        return np.eye(ALPHABET, dtype=np.uint8)[symbols]
    inputs = random_inputs(rng, count, data.seq_len)
    if data.backdoor:
        inputs, _ = insert_triggers(rng, inputs, data.trigger_every)
    return inputs
