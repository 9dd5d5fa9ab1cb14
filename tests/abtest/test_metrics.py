"""Ibis metrics on a small hand-made assignment + orders + events set (sums computed by hand)."""

import ibis
import numpy as np
import pandas as pd
import pytest

from crmlib.abtest.metrics import (
    daily_cumulative_statistics,
    sufficient_statistics,
    unit_outcomes,
    winsorization_caps,
)

T = pd.Timestamp


@pytest.fixture(scope="module")
def tables():
    con = ibis.duckdb.connect()
    exp = pd.DataFrame({
        "experiment_id": ["e1"] * 6,
        "customer_key": ["a", "b", "c", "d", "e", "a"],
        "variant": ["control", "control", "treatment", "treatment", "treatment", "treatment"],
        "assigned_ts": [T("2026-01-10 10:00"), T("2026-01-10 12:00"), T("2026-01-11 09:00"), T("2026-01-12 08:00"),
                        T("2026-01-30"), T("2026-01-15")],     # a is re-assigned later: first assignment wins
        "is_control": [True, True, False, False, False, False],
    })
    orders = pd.DataFrame({
        "customer_key": ["a", "a", "a", "b", "c", "c", "d", "zz", None],
        "order_ts": [T("2026-01-05"), T("2026-01-12"), T("2026-01-24 09:59"), T("2026-01-24 12:00"),
                     T("2026-01-11 09:00"), T("2026-01-13"), T("2026-01-01"), T("2026-01-12"), T("2026-01-12")],
        "amount": [10.0, 20.0, 5.0, 7.0, 30.0, -30.0, 4.0, 1.0, 99.0],
    })
    events = pd.DataFrame({
        "customer_key": ["a", "a", "c", "c", "c", "d"],
        "event_ts": [T("2026-01-11"), T("2026-01-11 05:00"), T("2026-01-12"), T("2026-01-05"), T("2026-01-20"),
                     T("2026-01-13")],
        "event_type": ["session_start"] * 5 + ["page_view"],
    })
    return con, con.create_table("exp", exp), con.create_table("orders", orders), con.create_table("events", events)


def test_unit_outcomes_by_hand(tables):
    _, exp, orders, events = tables
    out, how = unit_outcomes(exp, orders, events, window_days=14, as_of="2026-02-01")
    df = out.to_pandas().set_index("customer_key").sort_index()
    # e (assigned 01-30) has no complete window by 02-01 -> excluded
    assert df.index.tolist() == ["a", "b", "c", "d"]
    assert df.loc["a", "variant"] == "control" and df.loc["a", "n_variants_seen"] == 2
    # a: 01-12 (20) and 01-24 09:59 (5) in window [01-10 10:00, 01-24 10:00); 01-05 (10) pre-period
    assert df.loc["a", ["revenue", "orders", "conversion", "pre_revenue", "pre_orders", "sessions"]].tolist() == [
        25.0, 2, 1, 10.0, 1, 2]
    # b: the order at 01-24 12:00 is exactly at the window end -> excluded
    assert df.loc["b", ["revenue", "orders", "conversion"]].tolist() == [0.0, 0, 0]
    # c: order at the assignment instant counts; the refund nets revenue to 0 but is not an order
    assert df.loc["c", ["revenue", "orders", "conversion", "sessions", "pre_sessions"]].tolist() == [0.0, 1, 1, 2, 1]
    # d: 01-01 is inside the 14-day pre-period of 01-12 08:00; page_view is not a session
    assert df.loc["d", ["pre_revenue", "pre_conversion", "revenue", "sessions"]].tolist() == [4.0, 1, 0.0, 0]
    assert "session_start" in how


def test_sufficient_statistics_by_hand(tables):
    _, exp, orders, events = tables
    out, _ = unit_outcomes(exp, orders, events, window_days=14, as_of="2026-02-01")
    s = sufficient_statistics(out).set_index(["metric", "variant"])
    rev_c = s.loc[("revenue", "control")]
    assert (rev_c["n"], rev_c["sum_y"], rev_c["sum_y2"], rev_c["sum_x"], rev_c["sum_x2"], rev_c["sum_xy"]) == (
        2, 25.0, 625.0, 10.0, 100.0, 250.0)
    rev_t = s.loc[("revenue", "treatment")]
    assert (rev_t["sum_y"], rev_t["sum_x"], rev_t["sum_x2"], rev_t["sum_xy"]) == (0.0, 4.0, 16.0, 0.0)
    conv_t = s.loc[("conversion", "treatment")]
    assert (conv_t["sum_y"], conv_t["sum_y2"], conv_t["sum_x"], conv_t["sum_xy"]) == (1.0, 1.0, 1.0, 0.0)
    ords_c = s.loc[("orders", "control")]
    assert (ords_c["sum_y"], ords_c["sum_y2"], ords_c["sum_xy"]) == (2.0, 4.0, 2.0)
    ratio_c = s.loc[("revenue_per_session", "control")]
    assert (ratio_c["sum_y"], ratio_c["sum_den"], ratio_c["sum_den2"], ratio_c["sum_yden"]) == (25.0, 2.0, 4.0, 50.0)
    assert np.isnan(ratio_c["sum_x"]) and ratio_c["metric_type"] == "ratio"
    assert bool(s.loc[("conversion", "control"), "is_control"]) is True
    assert s.loc[("conversion", "control"), "metric_type"] == "binary"


def test_without_as_of_all_units_and_visit_day_sessions(tables):
    con, exp, orders, _ = tables
    ev = con.create_table("ev2", pd.DataFrame({"customer_key": ["a", "a", "a"], "event_type": ["click"] * 3,
                                               "event_ts": [T("2026-01-11 01:00"), T("2026-01-11 02:00"),
                                                            T("2026-01-12")]}))
    out, how = unit_outcomes(exp, orders, ev, window_days=14)
    df = out.to_pandas().set_index("customer_key")
    assert len(df) == 5 and "visit days" in how
    assert df.loc["a", "sessions"] == 2          # two distinct days with events
    out2, how2 = unit_outcomes(exp, orders, None, window_days=14)
    assert "no events" in how2 and out2.to_pandas()["sessions"].sum() == 0


def test_winsorization_cap_is_pooled_percentile_cont(tables):
    con = tables[0]
    rng = np.random.default_rng(99)
    rev = np.round(rng.lognormal(2.0, 1.5, 600), 2)
    df = pd.DataFrame({"experiment_id": "w", "variant": np.repeat(["control", "treatment"], 300),
                       "revenue": rev, "orders": rng.integers(0, 5, 600), "pre_revenue": rev[::-1],
                       "pre_orders": rng.integers(0, 3, 600)})
    t = con.create_table("wins", df)
    caps = winsorization_caps(t, 0.99).to_pandas().iloc[0]
    assert caps["cap_revenue"] == pytest.approx(np.quantile(rev, 0.99, method="linear"), rel=1e-12)
    assert caps["cap_revenue"] != pytest.approx(np.quantile(rev, 0.99, method="inverted_cdf"), rel=1e-9)


def test_winsorized_sums(tables):
    _, exp, orders, events = tables
    out, _ = unit_outcomes(exp, orders, events, window_days=14, as_of="2026-02-01")
    s = sufficient_statistics(out, winsorize=0.5).set_index(["metric", "variant"])
    # pooled revenue values [25, 0, 0, 0]: the median cap is 0, so a's 25 becomes 0
    assert s.loc[("revenue", "control"), "sum_y"] == 0.0
    # pooled orders [2, 0, 1, 0] -> cap 0.5
    assert s.loc[("orders", "control"), "sum_y"] == 0.5 and s.loc[("orders", "treatment"), "sum_y"] == 0.5


def test_daily_cumulative(tables):
    _, exp, orders, events = tables
    out, _ = unit_outcomes(exp, orders, events, window_days=14, as_of="2026-02-01")
    d = daily_cumulative_statistics(out)
    rev = d[d["metric"] == "revenue"].set_index(["variant", "date"])
    assert rev.loc[("control", T("2026-01-10")), "n"] == 2
    assert rev.loc[("control", T("2026-01-12")), "sum_y"] == 25.0        # carried forward
    assert rev.loc[("treatment", T("2026-01-10")), "n"] == 0
    assert rev.loc[("treatment", T("2026-01-12")), ["n", "sum_x"]].tolist() == [2, 4.0]
    last = d.sort_values("date").groupby(["metric", "variant"]).tail(1).set_index(["metric", "variant"])
    full = sufficient_statistics(out).set_index(["metric", "variant"])
    for col in ("n", "sum_y", "sum_y2", "sum_xy"):
        assert np.allclose(last[col].sort_index(), full[col].sort_index(), equal_nan=True)


def test_segments(tables):
    con, exp, orders, events = tables
    seg = con.create_table("seg", pd.DataFrame({"customer_key": ["a", "c"], "segment": ["vip", "vip"]}))
    out, _ = unit_outcomes(exp, orders, events, window_days=14, as_of="2026-02-01", segments=seg)
    s = sufficient_statistics(out, by_segment=True)
    conv = s[s["metric"] == "conversion"].set_index(["variant", "segment"])["n"]
    assert conv.to_dict() == {("control", "(none)"): 1, ("control", "vip"): 1, ("treatment", "(none)"): 1,
                              ("treatment", "vip"): 1}


def test_sessions_from_session_id(tables):
    con, exp, orders, _ = tables
    ev = con.create_table("ev3", pd.DataFrame({
        "customer_key": ["a", "a", "a", "a", "c"], "event_type": ["page_view"] * 5,
        "session_id": ["s1", "s1", "s2", "s0", None],
        "event_ts": [T("2026-01-11 01:00"), T("2026-01-11 02:00"), T("2026-01-12"), T("2026-01-02"),
                     T("2026-01-12")]}))
    out, how = unit_outcomes(exp, orders, ev, window_days=14, as_of="2026-02-01")
    df = out.to_pandas().set_index("customer_key")
    assert how == "sessions = distinct session_id"
    assert df.loc["a", ["sessions", "pre_sessions"]].tolist() == [2, 1]   # s1 twice counts once; s0 before
    assert df.loc["c", "sessions"] == 0                                     # events without a session id
