"""Discounted CLV: the documented periodic convention, checked against a naive loop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import hyp2f1

from crmlib.segmentation.bgnbd import BetaGeoFitter
from crmlib.segmentation.clv import customer_lifetime_value
from crmlib.segmentation.gamma_gamma import GammaGammaFitter


@pytest.fixture(scope="module")
def fitted(cdnow_summary):
    s = cdnow_summary
    bg = BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"])
    gg = GammaGammaFitter().fit(s["frequency"], s["monetary_value"])
    return bg, gg, s


def _naive_expected(params, t, x, t_x, big_t):
    r, alpha, a, b = params
    ratio = a / (b + x - 1) * ((alpha + big_t) / (alpha + t_x)) ** (r + x) if x > 0 else 0.0
    bracket = 1 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp2f1(
        r + x, b + x, a + b + x - 1, t / (alpha + big_t + t)
    )
    return (a + b + x - 1) / (a - 1) * bracket / (1 + ratio)


def test_zero_discount_equals_value_times_expected_purchases(fitted):
    bg, gg, s = fitted
    out = customer_lifetime_value(
        bg, gg, s["frequency"], s["recency"], s["T"], s["monetary_value"], horizon=52, discount_rate=0.0
    )
    expected = bg.conditional_expected_number_of_purchases_up_to_time(52, s["frequency"], s["recency"], s["T"])
    aov = gg.conditional_expected_average_profit(s["frequency"], s["monetary_value"])
    np.testing.assert_allclose(out["expected_purchases"], expected, rtol=1e-10)
    np.testing.assert_allclose(out["clv"], aov * expected, rtol=1e-10)
    np.testing.assert_allclose(out["p_alive"], bg.conditional_probability_alive(s["frequency"], s["recency"], s["T"]))


def test_discounting_matches_naive_weekly_loop(fitted):
    bg, gg, s = fitted
    rows = s.sample(25, random_state=0)
    out = customer_lifetime_value(
        bg,
        gg,
        rows["frequency"],
        rows["recency"],
        rows["T"],
        rows["monetary_value"],
        horizon=26.5,
        time_unit="W",
        discount_rate=0.10,
    )
    params = bg.params_.to_numpy()
    for i, (_, row) in enumerate(rows.iterrows()):
        value, prev = 0.0, 0.0
        for t_k in [*range(1, 27), 26.5]:
            cum = _naive_expected(params, t_k, row["frequency"], row["recency"], row["T"])
            value += (cum - prev) / 1.10 ** (t_k * 7 / 365.25)
            prev = cum
        aov = float(gg.conditional_expected_average_profit(row["frequency"], row["monetary_value"]))
        assert out["clv"].iloc[i] == pytest.approx(aov * value, rel=1e-9)


def test_discount_lowers_clv_and_margin_scales(fitted):
    bg, gg, s = fitted
    args = (bg, gg, s["frequency"], s["recency"], s["T"], s["monetary_value"])
    plain = customer_lifetime_value(*args, discount_rate=0.0)["clv"]
    disc = customer_lifetime_value(*args, discount_rate=0.2)["clv"]
    half = customer_lifetime_value(*args, discount_rate=0.2, margin=0.5)["clv"]
    assert (disc < plain).all()
    np.testing.assert_allclose(half, 0.5 * disc)
