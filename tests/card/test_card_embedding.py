"""The card's embedding figure: a colour bar for quantities, a legend for classes, a robust view."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from weightzoo.figures import embed, embedding_figure, is_continuous, load_card_data, view_limits

pytest.importorskip("matplotlib")


def colour_bars(fig) -> list:
    """The colour bars drawn for the scatter plots of the figure's first axes."""
    return [c.colorbar for c in fig.axes[0].collections if getattr(c, "colorbar", None)]


def test_a_float_column_with_few_values_gets_a_colour_bar_not_a_legend(toy_zoo):
    data = load_card_data(toy_zoo)  # coloured by the final test accuracy of 12 models
    values = data.columns[data.color_by]
    assert data.color_by == "final_test_acc" and len(np.unique(values)) <= 12
    fig = embedding_figure(data, embed(data.final))
    ax = fig.axes[0]
    assert ax.get_legend() is None and fig.legends == []
    (bar,) = colour_bars(fig)
    assert bar.ax.get_ylabel() == "final test acc"
    low, high = bar.mappable.get_clim()
    assert low == pytest.approx(values.min()) and high == pytest.approx(values.max())
    assert len(fig.axes) == 2  # the plot and its colour bar


def test_a_class_column_gets_a_legend_of_its_classes(toy_zoo):
    data = load_card_data(toy_zoo, color_by="kind")
    fig = embedding_figure(data, embed(data.final))
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["class0", "class1", "class2"]
    assert legend.get_title().get_text() == "kind"
    assert colour_bars(fig) == [] and len(fig.axes) == 1


@pytest.mark.parametrize(
    ("values", "continuous"),
    [
        (np.array([0.5, 0.75, 0.5]), True),  # floats: a quantity however few values
        (np.array([1e-3, 1e-2]), True),
        (np.array(["relu", "tanh"], dtype=object), False),
        (np.array([True, False]), False),
        (np.arange(12), False),  # a dozen seeds or widths: classes
        (np.arange(13), True),
        (np.arange(40, dtype=np.uint8), True),
    ],
)
def test_which_columns_are_continuous(values, continuous):
    assert is_continuous(values) is continuous


def test_two_extreme_outliers_leave_the_view_on_the_bulk(toy_zoo):
    data = load_card_data(toy_zoo)
    data.final[0] += 500.0  # far out, on both sides of the bulk
    data.final[1] -= 500.0
    fitted = embed(data.final)
    fig = embedding_figure(data, fitted)
    ax = fig.axes[0]
    bulk, outliers = fitted.points[2:], fitted.points[:2]
    for axis, limits in enumerate((ax.get_xlim(), ax.get_ylim())):
        span = np.ptp(bulk[:, axis])
        # The bulk fills a good part of the view (with the outliers in it, it would be ~1%).
        assert span >= 0.2 * (limits[1] - limits[0])
        assert limits[0] <= bulk[:, axis].min() and bulk[:, axis].max() <= limits[1]
    xmin, xmax = ax.get_xlim()
    assert all(x < xmin or x > xmax for x in outliers[:, 0])
    assert "2 points outside the view" in ax.get_xlabel()
    # The two are drawn as crosses at the edge, inside the view.
    crosses = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets())])
    inside = (crosses[:, 0] >= xmin) & (crosses[:, 0] <= xmax)
    assert inside.all() and len(crosses) == 12


def test_a_view_without_outliers_shows_every_point(toy_zoo):
    data = load_card_data(toy_zoo)
    fitted = embed(data.final)
    ax = embedding_figure(data, fitted).axes[0]
    for axis, (low, high) in enumerate((ax.get_xlim(), ax.get_ylim())):
        assert low < fitted.points[:, axis].min() and fitted.points[:, axis].max() < high
    assert "outside the view" not in ax.get_xlabel()


@settings(max_examples=60, deadline=None)
@given(
    bulk=hnp.arrays(
        np.float64,
        st.integers(40, 120),
        elements=st.floats(-1, 1, allow_nan=False),
    ),
    far=st.tuples(st.floats(1e3, 1e12), st.sampled_from([1.0, -1.0]), st.sampled_from([1.0, -1.0])),
)
def test_two_outliers_among_40_or_more_points_never_move_the_view(bulk, far):
    distance, first, second = far
    values = np.concatenate([bulk, [first * distance, second * distance]])
    low, high = view_limits(values)
    assert np.isfinite([low, high]).all() and low < high
    # Quartiles and the 5-95 spread stay inside [-1, 1]: the fences are within 1 + 3 * 2.
    assert -7.7 <= low and high <= 7.7
    # The bulk's middle half is always in view.
    q25, q75 = np.percentile(bulk, [25, 75])
    assert low <= q25 and q75 <= high


@settings(max_examples=60, deadline=None)
@given(
    cents=hnp.arrays(np.int64, st.integers(1, 50), elements=st.integers(-(10**8), 10**8)),
    scale=st.floats(1e-3, 1e3),
    shift=st.floats(-1e3, 1e3),
)
def test_the_view_moves_and_scales_with_the_points(cents, scale, shift):
    values = cents / 100.0  # distinct values differ by more than rounding after the move
    low, high = view_limits(values)
    moved = view_limits(values * scale + shift)
    tolerance = 1e-6 * (abs(shift) + scale * (np.abs(values).max() + abs(high - low)) + 1)
    q5, q25, q75, q95 = np.percentile(values, [5, 25, 75, 95])
    if q95 > q5:  # else the bulk is one value, with a view of its own scale
        assert moved[0] == pytest.approx(low * scale + shift, abs=tolerance)
        assert moved[1] == pytest.approx(high * scale + shift, abs=tolerance)
    if np.ptp(values) <= 3 * (q75 - q25):
        assert low <= values.min() and values.max() <= high  # no far-out point: all in view


def test_a_view_of_nothing_finite_is_still_a_range():
    assert view_limits(np.array([np.nan, np.inf])) == (-1.0, 1.0)
    low, high = view_limits(np.array([5.0, 5.0, 5.0]))
    assert low < 5.0 < high
