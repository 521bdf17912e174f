"""The figure builders the notebooks added to kdlab.analysis.viz: the drawn numbers are the given numbers."""
import math

import pytest

from kdlab.analysis import viz


def test_series_lines_draws_each_series_over_x():
    fig = viz.series_lines([1, 2, 4], {"plain KL": [0.5, 0.125, 0.03125], "T^2 KL": [0.5, 0.5, 0.5]},
                           title="grad", xaxis="T", yaxis="norm", log_y=True)
    assert [t.name for t in fig.data] == ["plain KL", "T^2 KL"]
    assert list(fig.data[0].x) == [1.0, 2.0, 4.0]
    assert list(fig.data[0].y) == [0.5, 0.125, 0.03125]
    assert fig.layout.yaxis.type == "log" and fig.layout.xaxis.type != "log"
    assert fig.layout.xaxis.title.text == "T"


def test_series_lines_rejects_ragged_series():
    with pytest.raises(ValueError, match="2 values for 3 x positions"):
        viz.series_lines([1, 2, 3], {"a": [1, 2]})


def test_metric_bars_groups_categories_in_first_seen_order():
    fig = viz.metric_bars({"kd": {"s1-t2": 0.25, "s2-t4": 0.5}, "internal": {"s2-t4": 0.125, "s3-t6": 1.0}},
                          title="attention KL", yaxis="KL")
    assert [t.name for t in fig.data] == ["kd", "internal"]
    assert list(fig.data[0].x) == ["s1-t2", "s2-t4", "s3-t6"]
    assert list(fig.data[0].y)[:2] == [0.25, 0.5] and fig.data[0].y[2] is None
    assert list(fig.data[1].y)[1:] == [0.125, 1.0] and fig.data[1].y[0] is None
    assert list(fig.data[1].text) == ["", "0.125", "1.000"]
    assert fig.layout.barmode == "group" and not math.isnan(fig.data[0].y[0])
