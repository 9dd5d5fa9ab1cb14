"""The presentation layer's conventions, value by value (the examples the reports issue names)."""

import math

import numpy as np
import pandas as pd
import pytest

from crmlib import present


@pytest.mark.parametrize("value, currency, expected", [
    (14339487.530000158, "CNY", "CNY 14,339,488"),
    (1000, "CNY", "CNY 1,000"),
    (999.994, "CNY", "CNY 999.99"),
    (12.5, "CNY", "CNY 12.50"),
    (-40, "CNY", "-CNY 40.00"),
    (-0.001, "CNY", "CNY 0.00"),
    (138, None, "138.00"),
    (float("nan"), "CNY", ""),
    (None, "CNY", ""),
    (float("inf"), "CNY", ""),
])
def test_money(value, currency, expected):
    assert present.fmt_money(value, currency) == expected


@pytest.mark.parametrize("value, expected", [(5005.0, "5,005"), (np.int64(47363), "47,363"), (2.6, "3"), (np.nan, "")])
def test_count(value, expected):
    assert present.fmt_count(value) == expected


@pytest.mark.parametrize("value, kw, expected", [
    (0.122, {}, "12.2%"), (0.0035, {}, "0.35%"), (-0.5, {}, "-50.0%"), (0.2069, {"signed": True}, "+20.7%"),
    (-0.033, {"signed": True}, "-3.3%"), (0, {"signed": True}, "0.0%"), (1.0, {"digits": 0}, "100%"),
])
def test_percent(value, kw, expected):
    assert present.fmt_percent(value, **kw) == expected


@pytest.mark.parametrize("p, expected", [
    (0.0004, "< 0.001"), (0.001, "0.001"), (0.012345, "0.012"), (0.049, "0.049"), (0.0999, "0.1"),
    (0.2345, "0.23"), (1.0, "1.00"), (None, ""),
])
def test_pvalue(p, expected):
    assert present.fmt_pvalue(p) == expected


def test_ratio_and_number():
    assert present.fmt_ratio(6202.986) == "6,202.99" and present.fmt_ratio(0.6) == "0.60"
    assert present.fmt_number(4.4136) == "4.41" and present.fmt_number(0.79291) == "0.793"
    assert present.fmt_number(12345.6) == "12,300" and present.fmt_number(0) == "0"


def test_format_frame_formats_only_named_columns_and_keeps_the_input():
    df = pd.DataFrame({"channel": ["email", "小程序"], "revenue": [14339487.53, 12.5], "share": [0.122, math.nan]})
    out = present.format_frame(df, {"revenue": "money", "share": "percent", "absent": "count"}, currency="CNY")
    assert out.to_dict("list") == {"channel": ["email", "小程序"], "revenue": ["CNY 14,339,488", "CNY 12.50"],
                                   "share": ["12.2%", ""]}
    assert df["revenue"].dtype == float


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown number kind"):
        present.fmt(1, "currency")
