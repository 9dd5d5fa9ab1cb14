import ibis
import numpy as np
import pandas as pd
import pytest

from crmlib.roi.journeys import build_journeys, by_channel
from crmlib.roi.paths import decay_weights

BASE = pd.Timestamp("2024-01-01")


def day(d, hour=9):
    return BASE + pd.Timedelta(days=d, hours=hour)


def _by_path(paths):
    """Path-table rows by path tuple."""
    return {row["path"]: row for _, row in paths.iterrows()}


@pytest.fixture
def tables():
    touches = pd.DataFrame(
        [
            # customer, anonymous id, day, channel, campaign
            ("c1", None, 1, "email", "e1"),
            ("c1", None, 10, "search", None),
            ("c1", "anon1", 18, "email", "e1"),  # a cookie touch ingest stitched to c1
            ("c1", None, 20, "search", None),
            ("c1", None, 25, "social", "s1"),
            ("c1", None, 50, "display", None),  # after c1's last order: non-converting
            ("c2", None, 1, "display", None),  # older than the 30-day lookback of c2's order
            ("c2", None, 30, "email", "e2"),
            ("c3", None, 5, "social", "s1"),
            ("c3", None, 8, "email", "e1"),
            ("c5", None, 14, "search", None),
            (None, "anon9", 14, "search", None),  # a cookie ingest could not stitch: unattributable
        ],
        columns=["customer_key", "anonymous_id", "d", "channel", "campaign_id"],
    )
    touches["touch_ts"] = [day(d) for d in touches.pop("d")]
    touches["cost"] = 1.0
    orders = pd.DataFrame(
        [
            ("c1", 21, 100.0, "o1"),
            ("c1", 40, 50.0, "o2"),
            ("c2", -100, 70.0, "o3"),  # before the period: makes c2 an existing customer
            ("c2", 45, 80.0, "o4"),
            ("c4", 12, 30.0, "o5"),  # no touches: untouched conversion
            ("c5", 15, -20.0, "o6"),  # refund: no conversion
        ],
        columns=["customer_key", "d", "amount", "order_id"],
    )
    orders["order_ts"] = [day(d, 10) for d in orders.pop("d")]
    con = ibis.duckdb.connect()
    return con.create_table("touchpoints", touches), con.create_table("orders", orders)


def test_hand_built_journeys(tables):
    touches, orders = tables
    res = build_journeys(touches, orders, period_start="2024-01-02", period_end="2024-03-31",
                         lookback_days=30, half_life_days=7)
    p = _by_path(res.paths)
    long = ("email", "search", "email", "search")
    assert sorted(p) == sorted([long, ("social",), ("email",), ("social", "email"), ("search",), ("display",)])
    assert p[long][["conversions", "value", "new_customers", "nulls"]].tolist() == [1, 100, 1, 0]
    assert p[("social",)][["conversions", "value", "new_customers"]].tolist() == [1, 50, 0]
    assert p[("email",)][["conversions", "value", "new_customers"]].tolist() == [1, 80, 0]
    for null_path in [("social", "email"), ("search",), ("display",)]:
        assert p[null_path][["conversions", "nulls"]].tolist() == [0, 1]
    s = res.summary
    assert (s["conversions"], s["touched_conversions"], s["untouched_conversions"]) == (4, 3, 1)
    assert s["untouched_value"] == pytest.approx(30.0)
    assert (s["touches_unattributable"], s["touches_attributed_by_cookie"]) == (1, 1)
    # ages at the day-21 10:00 order: touches at 09:00 on days 1, 10, 18, 20 -> 20, 11, 3, 1 days + 1 hour
    ages = np.array([20, 11, 3, 1]) + 1 / 24
    np.testing.assert_allclose(p[long]["decay_value"], 100 * decay_weights(ages, 7))
    assert res.lengths.set_index("touches").loc[1].tolist() == [2, 2]
    assert res.lengths.set_index("touches").loc[4].tolist() == [1, 0]
    assert res.lengths.set_index("touches").loc[2].tolist() == [0, 1]
    assert res.time_to_convert.set_index("days")["conversions"].to_dict() == {15: 2, 20: 1}


def test_period_and_lookback(tables):
    touches, orders = tables
    res = build_journeys(touches, orders, period_start="2024-01-31", period_end="2024-03-31", lookback_days=10)
    p = _by_path(res.paths)
    # conversions in period: c1 day 40 (social day 25 is 15 days old -> untouched), c2 day 45 (email day 30 -> too old)
    assert res.paths["conversions"].sum() == 0
    assert res.summary["conversions"] == 2 and res.summary["untouched_conversions"] == 2
    # null journeys only from touches in the period: c1's display (day 50)
    assert p[("display",)]["nulls"] == 1 and res.paths["nulls"].sum() == 1


def test_campaign_labels(tables):
    touches, orders = tables
    res = build_journeys(touches, orders, label="campaign", period_start="2024-01-02", period_end="2024-03-31")
    # a step is the (channel, campaign_id) pair; a touch without a campaign has campaign_id None
    assert (("email", "e2"),) in set(res.paths["path"])
    assert (("social", "s1"), ("email", "e1")) in set(res.paths["path"])
    assert (("search", None),) in set(res.paths["path"])


def test_clv_measure(tables):
    touches, orders = tables
    clv = touches.get_backend().create_table("clv", pd.DataFrame({"customer_key": ["c1", "c2"], "clv": [500.0, 900.0]}))
    res = build_journeys(touches, orders, clv=clv, period_start="2024-01-02", period_end="2024-03-31")
    # only c1's first order is a new customer
    assert res.paths["new_clv"].sum() == pytest.approx(500.0)


def test_orders_at_one_time_without_ids_are_ordered_by_amount():
    # Two first orders of c1 at the same time without order ids: the smaller amount is the first order
    # (new customer, gets the journey); the other follows it at the same time and so has no touches.
    touches = pd.DataFrame({"customer_key": ["c1", "c1"], "touch_ts": [day(1), day(3)],
                            "channel": ["email", "search"], "cost": 1.0})
    orders = pd.DataFrame({"customer_key": ["c1", "c1"], "order_ts": [day(5, 10), day(5, 10)],
                           "amount": [90.0, 40.0], "order_id": pd.Series([None, None], dtype="string")})
    con = ibis.duckdb.connect()
    for rows in (orders, orders.iloc[::-1]):
        res = build_journeys(con.create_table("touchpoints", touches, overwrite=True),
                             con.create_table("orders", rows, overwrite=True), period_end="2024-01-31")
        p = _by_path(res.paths)
        assert p[("email", "search")][["conversions", "value", "new_customers"]].tolist() == [1, 40, 1]
        assert (res.summary["untouched_conversions"], res.summary["untouched_value"]) == (1, 90.0)


def _assert_same_journeys(got, want):
    assert list(got.paths["path"]) == list(want.paths["path"])  # same paths, in the same (label) order
    for col in want.paths.columns.drop("path"):
        if col.startswith("decay_"):
            for a, b in zip(got.paths[col], want.paths[col]):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        else:
            np.testing.assert_allclose(got.paths[col].to_numpy(float), want.paths[col].to_numpy(float), rtol=1e-12)
    pd.testing.assert_frame_equal(got.lengths, want.lengths)
    pd.testing.assert_frame_equal(got.time_to_convert, want.time_to_convert)
    assert got.summary == want.summary
    assert got.conventions == want.conventions


def test_channel_journeys_read_off_campaign_ones_equal_a_channel_pass(tables):
    touches, orders = tables
    window = dict(period_start="2024-01-02", period_end="2024-03-31", lookback_days=30, half_life_days=7)
    campaign = build_journeys(touches, orders, label="campaign", **window)
    _assert_same_journeys(by_channel(campaign), build_journeys(touches, orders, label="channel", **window))
    with pytest.raises(ValueError, match="campaign-level"):
        by_channel(build_journeys(touches, orders, **window))


def test_channel_journeys_from_campaigns_on_random_ties():
    # many touches at the same time in several campaigns of one channel: campaign paths that differ only in
    # their campaigns merge into one channel path, and ties order the same way on both levels
    rng = np.random.default_rng(3)
    n = 4000
    touches = pd.DataFrame({
        "customer_key": rng.choice([f"c{i}" for i in range(150)], n),
        "touch_ts": BASE + pd.to_timedelta(rng.integers(0, 60, n), unit="D") + pd.to_timedelta(rng.choice([0, 9], n), unit="h"),
        "channel": rng.choice(["email", "search", "社交", "display"], n),
        "campaign_id": pd.Series(rng.choice(["a", "b", "Z", None], n), dtype="string"),
        "cost": 1.0,
    })
    orders = pd.DataFrame({
        "customer_key": rng.choice([f"c{i}" for i in range(170)], 600),
        "order_ts": BASE + pd.to_timedelta(rng.integers(0, 70 * 24, 600), unit="h"),
        "amount": rng.choice([-5.0, 20.0, 35.5, 80.0], 600),
        "order_id": [f"o{i}" for i in range(600)],
    })
    con = ibis.duckdb.connect()
    t, o = con.create_table("touchpoints", touches), con.create_table("orders", orders)
    window = dict(period_start="2024-01-15", period_end="2024-02-25", lookback_days=20, half_life_days=5)
    campaign = build_journeys(t, o, label="campaign", **window)
    channel = build_journeys(t, o, label="channel", **window)
    assert len(campaign.paths) > len(channel.paths) > 50  # the check merges paths, it is not trivially 1:1
    _assert_same_journeys(by_channel(campaign), channel)
