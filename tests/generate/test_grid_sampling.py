"""``--models N`` as a seeded, stratified sample of a grid (and ``--first-models N``)."""

from __future__ import annotations

import itertools
import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weightzoo.cli import build_parser, run
from weightzoo.cli.generation import _generate_command, _spec
from weightzoo.generate.sampling import stratified_positions
from weightzoo.generate.specs import family_for, get_spec

HYP = "modelzoo-mnist-cnn-s-hyp-10-rand"
HYP_AXES = ("activation", "dropout", "init", "optimizer", "lr", "weight_decay")


def _pairs(axes, positions):
    return {pair for p in positions for pair in axes[p].items()}


@st.composite
def product_grids(draw):
    """A full Cartesian grid (nodes in product order, seeds inner) and its axis lengths."""
    lengths = draw(st.lists(st.integers(1, 5), min_size=1, max_size=4))
    seeds = draw(st.integers(1, 3))
    nodes = itertools.product(*(range(n) for n in lengths))
    axes = [{f"a{i}": v for i, v in enumerate(node)} for node in nodes for _ in range(seeds)]
    return axes, lengths, seeds


@st.composite
def any_grids(draw):
    """Any set of nodes (not a product), a few seeds each, in a drawn order."""
    width = draw(st.integers(1, 4))
    node = st.tuples(*[st.integers(0, 4)] * width)
    nodes = draw(st.lists(node, min_size=1, max_size=25, unique=True))
    seeds = draw(st.lists(st.integers(1, 3), min_size=len(nodes), max_size=len(nodes)))
    return [
        {f"a{i}": v for i, v in enumerate(n)}
        for n, k in zip(nodes, seeds, strict=True)
        for _ in range(k)
    ]


@settings(max_examples=150, deadline=None)
@given(product_grids(), st.data(), st.integers(0, 2**32 - 1))
def test_on_a_product_grid_the_longest_axis_is_enough(grid, data, seed):
    axes, lengths, _ = grid
    n = data.draw(st.integers(max(lengths), len(axes)))
    chosen = stratified_positions(axes, n, seed)
    assert len(set(chosen)) == n and chosen == sorted(chosen)
    assert _pairs(axes, chosen) == _pairs(axes, range(len(axes)))
    assert stratified_positions(axes, n, seed) == chosen


@settings(max_examples=150, deadline=None)
@given(any_grids(), st.data(), st.integers(0, 2**32 - 1))
def test_on_any_grid_pairs_minus_axes_plus_one_is_enough(axes, data, seed):
    everything = _pairs(axes, range(len(axes)))
    bound = len(everything) - len(axes[0]) + 1
    n = data.draw(st.integers(min(bound, len(axes)), len(axes)))
    chosen = stratified_positions(axes, n, seed)
    assert len(set(chosen)) == n and all(0 <= p < len(axes) for p in chosen)
    assert _pairs(axes, chosen) == everything
    assert chosen == stratified_positions(axes, n, seed)


@settings(max_examples=100, deadline=None)
@given(any_grids(), st.data(), st.integers(0, 2**32 - 1))
def test_every_node_has_a_model_before_any_has_two(axes, data, seed):
    nodes = {tuple(sorted(a.items())) for a in axes}
    n = data.draw(st.integers(1, len(axes)))
    per_node: dict[tuple, int] = {}
    for p in stratified_positions(axes, n, seed):
        key = tuple(sorted(axes[p].items()))
        per_node[key] = per_node.get(key, 0) + 1
    if n <= len(nodes):
        assert set(per_node.values()) == {1}
    else:
        assert set(per_node) == nodes


def test_the_seed_changes_the_sample_and_bad_counts_are_refused():
    axes = [{"a": i % 3, "b": i // 3} for i in range(12)]
    samples = {tuple(stratified_positions(axes, 4, seed)) for seed in range(20)}
    assert len(samples) > 1
    for n in (0, 13):
        with pytest.raises(ValueError, match="needs 1 .. 12"):
            stratified_positions(axes, n, 0)


def _generate_args(*options: str):
    return build_parser().parse_args(["generate", HYP, *options])


def test_cli_models_samples_every_value_of_hyp_10_rand():
    spec = _spec(_generate_args("--models", "64"))
    assert spec.to_dict()["sample"] == "stratified" and spec.to_dict()["sample_seed"] == 0
    plans = family_for(spec).plan(spec)
    assert [p.model_id for p in plans] == list(range(64))
    full = get_spec(HYP)
    for axis, values in zip(
        HYP_AXES,
        (
            full.activations,
            full.dropouts,
            full.inits,
            full.optimizers,
            full.lrs,
            full.weight_decays,
        ),
        strict=True,
    ):
        assert {p.columns[axis] for p in plans} == set(values), axis
    assert len({p.columns["node"] for p in plans}) == 64  # spread over nodes first


def test_a_sampled_model_is_the_same_model_as_in_the_full_zoo():
    spec = _spec(_generate_args("--models", "40", "--sample-seed", "7"))
    assert spec.sample_seed == 7
    full = get_spec(HYP)
    by_node_and_seed = {(p.columns["node"], p.seed): p for p in family_for(full).plan(full)}
    for p in family_for(spec).plan(spec):
        twin = by_node_and_seed[p.columns["node"], p.seed]
        assert (twin.columns, twin.stratum) == (p.columns, p.stratum)


def test_first_models_keeps_the_old_plan_and_default_fingerprint():
    spec = _spec(_generate_args("--first-models", "64"))
    old = get_spec(HYP).override(models=64)
    assert spec == old and spec.fingerprint() == old.fingerprint()
    assert "sample" not in spec.to_dict() and "sample_seed" not in spec.to_dict()
    plans = family_for(spec).plan(spec)
    assert {p.columns["activation"] for p in plans} == {"tanh"}  # the grid's first nodes
    assert get_spec(HYP).fingerprint() == get_spec(HYP).override().fingerprint()
    stratified = _spec(_generate_args("--models", "64"))
    assert stratified.fingerprint() != old.fingerprint()


@pytest.mark.parametrize(
    "name",
    ["phase-pinn-convection", "property-synthetic", "phase-digits-cnn-w2", "phase-tinylm-d8"],
)
def test_other_grid_families_spread_a_sample_over_their_nodes(name):
    spec = get_spec(name).override(models=4, sample="stratified", sample_seed=3)
    plans = family_for(spec).plan(spec)
    assert [p.model_id for p in plans] == list(range(4))
    assert len({p.stratum for p in plans}) == 4  # four nodes, not four seeds of one
    full = {(p.stratum, p.seed) for p in family_for(get_spec(name)).plan(get_spec(name))}
    assert {(p.stratum, p.seed) for p in plans} <= full


@pytest.mark.parametrize("name", ["phase-digits-cnn", "phase-tinylm"])
def test_grids_of_grids_pass_the_sample_to_every_group(name):
    spec = _spec(build_parser().parse_args(["generate", name, "--models", "3"]))
    assert spec.fingerprint() != get_spec(name).override(models=3).fingerprint()
    for _, group in spec.groups():
        assert (group.sample, group.num_models()) == ("stratified", 3)


def test_resume_command_repeats_the_sample_options():
    args = _generate_args("--models", "64", "--sample-seed", "5")
    again = build_parser().parse_args(shlex.split(_generate_command(args, "--download"))[1:])
    assert (again.models, again.sample_seed, again.first_models) == (64, 5, None)
    args = _generate_args("--first-models", "8")
    again = build_parser().parse_args(shlex.split(_generate_command(args))[1:])
    assert (again.models, again.first_models) == (None, 8)


def test_cli_refuses_models_with_first_models_and_a_lone_sample_seed(capsys):
    with pytest.raises(SystemExit):
        _generate_args("--models", "4", "--first-models", "4")
    assert "not allowed with" in capsys.readouterr().err
    assert run(["generate", HYP, "--sample-seed", "3", "--out", "/nonexistent/x"]) == 1
    assert "--sample-seed 3" in capsys.readouterr().err
    with pytest.raises(ValueError, match="sample must be one of"):
        get_spec(HYP).override(models=4, sample="random")
