"""Per-customer (x, t_x, T, monetary) in the engine: CDNOW counts, conventions, hand-computed cases."""

from __future__ import annotations

import ibis
import numpy as np
import pandas as pd
import pytest

from crmlib.segmentation.bgnbd import BetaGeoFitter
from crmlib.segmentation.summary import calibration_holdout_evaluation, repeat_purchase_summary, time_unit_days


def test_cdnow_published_counts(cdnow_summary):
    s = cdnow_summary
    assert len(s) == 2357
    assert s["frequency"].sum() == 2457  # repeat purchase days in the calibration period
    assert (s["frequency"] == 0).sum() == 1411
    assert s["frequency_holdout"].sum() == 1882  # 1997-10-01 .. 1998-06-30
    assert (s["frequency"] > 0).sum() == 946
    assert s["duration_holdout"].iloc[0] == pytest.approx(39.0)


def test_cdnow_matches_pandas_reimplementation(cdnow_orders, cdnow_summary):
    end = pd.Timestamp("1997-09-30")
    cal = cdnow_orders[cdnow_orders["order_ts"] <= end]
    per_day = cal.groupby(["customer_key", "order_ts"], as_index=False)["amount"].sum()
    g = per_day.groupby("customer_key")
    first, last, n_days = g["order_ts"].min(), g["order_ts"].max(), g.size()
    expected = pd.DataFrame(
        {
            "frequency": n_days - 1,
            "recency": (last - first).dt.days / 7,
            "T": (end - first).dt.days / 7,
        }
    )
    got = cdnow_summary.set_index("customer_key").loc[expected.index]
    np.testing.assert_array_equal(got["frequency"].to_numpy(), expected["frequency"].to_numpy())
    np.testing.assert_allclose(got["recency"].to_numpy(), expected["recency"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(got["T"].to_numpy(), expected["T"].to_numpy(), rtol=1e-12)
    # A customer who first bought on 1997-01-01 is observed for 272 days = 38.857 weeks.
    assert got.loc["1", "T"] == pytest.approx(272 / 7)


def _orders(rows):
    frame = pd.DataFrame(rows, columns=["customer_key", "order_ts", "amount"])
    frame["order_ts"] = pd.to_datetime(frame["order_ts"])
    return ibis.memtable(frame)


def test_hand_computed_conventions():
    orders = _orders(
        [
            ("a", "2024-01-01 09:00", 100.0),
            ("a", "2024-01-01 18:00", 50.0),  # same day: one purchase of 150
            ("a", "2024-01-08 10:00", 40.0),
            ("a", "2024-01-08 11:00", -10.0),  # refund on a purchase day subtracts: 30
            ("a", "2024-01-15 10:00", -20.0),  # refund-only day: not a purchase
            ("a", "2024-01-22 10:00", 90.0),
            ("a", "2024-02-10 10:00", 70.0),  # after as_of: holdout
            ("b", "2024-01-31 23:59", 25.0),  # first purchase on as_of: T = 0
            ("c", "2024-02-01 08:00", 60.0),  # only after as_of: not in the calibration
        ]
    )
    s = repeat_purchase_summary(orders, "2024-01-31", time_unit="D", holdout_end="2024-02-29").to_pandas()
    s = s.set_index("customer_key")
    assert list(s.index) == ["a", "b"]
    a = s.loc["a"]
    assert a["frequency"] == 2
    assert a["recency"] == 21.0 and a["T"] == 30.0
    assert a["monetary_value"] == pytest.approx((30.0 + 90.0) / 2)
    assert a["calibration_revenue"] == pytest.approx(150 + 30 - 20 + 90)
    assert a["frequency_holdout"] == 1 and a["duration_holdout"] == 29.0
    b = s.loc["b"]
    assert (b["frequency"], b["recency"], b["T"], b["monetary_value"]) == (0, 0.0, 0.0, 0.0)
    monthly = repeat_purchase_summary(orders, "2024-01-31", time_unit="M").to_pandas().set_index("customer_key")
    assert monthly.loc["a", "T"] == pytest.approx(30 / (365.25 / 12))
    assert "frequency_holdout" not in monthly.columns


def test_time_units():
    assert time_unit_days("W") == 7 and time_unit_days("d") == 1
    assert time_unit_days("M") == pytest.approx(30.4375)
    with pytest.raises(ValueError):
        time_unit_days("Y")
    with pytest.raises(ValueError):
        repeat_purchase_summary(_orders([("a", "2024-01-01", 1.0)]), "2024-01-31", holdout_end="2024-01-01")


def test_calibration_holdout_evaluation(cdnow_summary):
    s = cdnow_summary
    model = BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"])
    ev = calibration_holdout_evaluation(model, s, time_unit="W", calibration_end="1997-09-30", holdout_end="1998-06-30")
    table = ev.table
    assert list(table.index) == ["0", "1", "2", "3", "4", "5", "6", "7+", "total"]
    assert table.loc["total", "actual_total"] == 1882
    assert table.loc[["0", "1", "2", "3", "4", "5", "6", "7+"], "customers"].sum() == 2357
    assert table.loc["0", "customers"] == 1411
    predicted = model.conditional_expected_number_of_purchases_up_to_time(39.0, s["frequency"], s["recency"], s["T"])
    err = predicted - s["frequency_holdout"]
    assert ev.predicted_total == pytest.approx(predicted.sum())
    assert ev.mae == pytest.approx(np.abs(err).mean()) and ev.rmse == pytest.approx(np.sqrt((err**2).mean()))
    # Aggregate forecast within 15 % of the 1,882 observed (the paper's fit is in this range).
    assert abs(ev.predicted_total / 1882 - 1) < 0.15
    # Predicted means rise with calibration frequency, as the actual means do.
    assert np.all(np.diff(table["predicted_mean"].iloc[:8].to_numpy()) > 0)


@pytest.mark.parametrize("unit, days", [("D", 1.0), ("M", 365.25 / 12)])
def test_cdnow_other_time_units_scale_times_only(cdnow_orders, cdnow_summary, unit, days):
    other = repeat_purchase_summary(ibis.memtable(cdnow_orders), "1997-09-30", time_unit=unit).to_pandas()
    np.testing.assert_array_equal(other["frequency"], cdnow_summary["frequency"])
    np.testing.assert_allclose(other["T"] * days, cdnow_summary["T"] * 7, rtol=1e-12)
    np.testing.assert_allclose(other["recency"] * days, cdnow_summary["recency"] * 7, rtol=1e-12)
    # The BG/NBD likelihood is invariant to the time unit up to the Jacobian: alpha scales, r/a/b do not.
    weekly = BetaGeoFitter().fit(cdnow_summary["frequency"], cdnow_summary["recency"], cdnow_summary["T"])
    scaled = BetaGeoFitter().fit(other["frequency"], other["recency"], other["T"])
    assert scaled.params_["alpha"] == pytest.approx(weekly.params_["alpha"] * 7 / days, rel=1e-5)
    for name in ["r", "a", "b"]:
        assert scaled.params_[name] == pytest.approx(weekly.params_[name], rel=1e-5)
