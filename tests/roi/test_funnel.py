"""crmlib.roi.funnel: counts against a direct pandas count, step order, orders as purchases, intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint as sm_confint

from crmlib.engine import Engine
from crmlib.params import complete_params
from crmlib.roi.funnel import ALL, COLUMNS, DEFAULT_STEPS, compute_funnel, funnel_entries
from crmlib.status import CannotCompute

STEPS = [name for name, _types in DEFAULT_STEPS]
TYPE_STEP = {t: i for i, (_n, types) in enumerate(DEFAULT_STEPS) for t in types}


@pytest.fixture
def engine(tmp_path):
    eng = Engine(tmp_path / "run")
    yield eng
    eng.close()


def _events(rows) -> pd.DataFrame:
    """Events from (customer_key, anonymous_id, timestamp, event_type, device, utm_medium) tuples."""
    df = pd.DataFrame(rows, columns=["customer_key", "anonymous_id", "event_ts", "event_type", "device", "utm_medium"])
    df["event_ts"] = pd.to_datetime(df["event_ts"])
    df["utm_source"] = df["utm_medium"].map({"cpc": "baidu", "email": "edm"})
    return df.astype({"customer_key": "string", "anonymous_id": "string", "event_type": "string",
                      "device": "string", "utm_medium": "string", "utm_source": "string"})


def _orders(rows) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["customer_key", "order_ts", "amount"])
    df["order_ts"] = pd.to_datetime(df["order_ts"])
    return df.astype({"customer_key": "string"})


def _funnel(engine, events: pd.DataFrame, orders: pd.DataFrame | None = None, **kw):
    ev = engine.con.create_table("ev", events, overwrite=True)
    od = engine.con.create_table("od", orders, overwrite=True) if orders is not None else None
    return compute_funnel(engine, ev, od, min_users=1, **kw)


def _direct_count(events: pd.DataFrame, orders: pd.DataFrame | None, *, window_days=7.0, order_window_days=3.0):
    """The funnel's definition counted the plain way: each user-week entry walks its events in time order."""
    ev = events.assign(user=events["customer_key"].fillna("anon:" + events["anonymous_id"]),
                       step=events["event_type"].map(TYPE_STEP)).dropna(subset=["step"])
    ev = ev.sort_values("event_ts", kind="stable")
    ev["step"] = ev["step"].astype(int)
    visits = ev[ev["step"] == 0]
    entries = visits.assign(week=visits["event_ts"].dt.to_period("W-SUN").dt.start_time).groupby(
        ["user", "week"], as_index=False).first()
    reached = []
    for entry in entries.itertuples():
        times = [entry.event_ts]
        mine = ev[ev["user"] == entry.user]
        for k in range(1, len(STEPS)):
            prev = times[-1]
            ts = mine.loc[(mine["step"] == k) & (mine["event_ts"] >= prev)
                          & (mine["event_ts"] <= entry.event_ts + pd.Timedelta(days=window_days)), "event_ts"]
            best = ts.min() if len(ts) else pd.NaT
            if k == len(STEPS) - 1 and orders is not None and pd.notna(prev) and pd.notna(entry.customer_key):
                own = orders[(orders["customer_key"] == entry.customer_key) & (orders["amount"] > 0)]
                o = own.loc[(own["order_ts"] >= prev) & (own["order_ts"] <= prev + pd.Timedelta(days=order_window_days)),
                            "order_ts"]
                if len(o) and (pd.isna(best) or o.min() < best):
                    best = o.min()
            if pd.isna(prev):
                best = pd.NaT
            times.append(best)
        reached.append({"user": entry.user, "week": entry.week, "device": entry.device,
                        **{f"t{k}": t for k, t in enumerate(times)}})
    reached = pd.DataFrame(reached)
    whole = [reached.loc[reached[f"t{k}"].notna(), "user"].nunique() for k in range(len(STEPS))]
    by_device = {dev: [g.loc[g[f"t{k}"].notna(), "user"].nunique() for k in range(len(STEPS))]
                 for dev, g in reached.groupby("device")}
    by_week = {wk.date(): [g.loc[g[f"t{k}"].notna(), "user"].nunique() for k in range(len(STEPS))]
               for wk, g in reached.groupby("week")}
    return whole, by_device, by_week


def _random_events(seed: int = 7, users: int = 150):
    """Users who walk part of the funnel, sometimes out of order, over four weeks and three devices."""
    rng = np.random.default_rng(seed)
    rows, order_rows = [], []
    start = pd.Timestamp("2026-03-02")
    types = ["page_view", "product_view", "add_to_cart", "checkout", "purchase", "login"]
    for u in range(users):
        key = f"C{u:03d}" if rng.random() < 0.7 else None
        anon = f"ck{u:03d}"
        device = rng.choice(["mobile_web", "desktop", "ios_app"])
        medium = rng.choice(["cpc", "email", None])
        for _visit in range(rng.integers(1, 4)):
            t = start + pd.Timedelta(minutes=int(rng.integers(0, 28 * 24 * 60)))
            depth = rng.integers(0, 5)
            for k in range(depth + 1):
                if rng.random() < 0.15:  # an event out of order, or one of no step
                    rows.append((key, anon, t - pd.Timedelta(minutes=int(rng.integers(1, 90))),
                                 rng.choice(types), device, medium))
                rows.append((key, anon, t, types[k], device, medium))
                t += pd.Timedelta(minutes=int(rng.integers(1, 60 * 24 * 3)))
            if key and depth >= 3 and rng.random() < 0.5:
                order_rows.append((key, t + pd.Timedelta(hours=int(rng.integers(0, 120))), float(rng.integers(-50, 200))))
    return _events(rows), _orders(order_rows)


# windows shorter than a week, a week, and over two weeks: a step or an order may fall in a later week than
# its entry, which the engine's join on (user, week) must still find
@pytest.mark.parametrize("window_days, order_window_days", [(7.0, 3.0), (2.0, 0.5), (10.0, 5.0)])
def test_counts_match_a_direct_count_whole_period_per_device_and_per_week(engine, window_days, order_window_days):
    events, orders = _random_events()
    windows = dict(window_days=window_days, order_window_days=order_window_days)
    whole, by_device, by_week = _direct_count(events, orders, **windows)
    result = _funnel(engine, events, orders, **windows)
    assert result.whole()["users"].tolist() == whole
    assert whole[-1] > 0 and whole[-1] < whole[0]
    for device, expected in by_device.items():
        assert result.whole("device", device)["users"].tolist() == expected, device
    weekly = result.table[(result.table["dimension"] == ALL) & result.table["week"].notna()]
    got = {wk: g.sort_values("step_index")["users"].tolist() for wk, g in weekly.groupby("week")}
    assert got == by_week
    assert list(result.table.columns) == list(COLUMNS)


def test_a_step_counts_only_after_the_previous_one(engine):
    events = _events([
        # u1: adds to cart before viewing the product and never again after: stops at the product view
        ("u1", "a1", "2026-03-02 10:00", "page_view", "desktop", None),
        ("u1", "a1", "2026-03-02 10:01", "add_to_cart", "desktop", None),
        ("u1", "a1", "2026-03-02 10:02", "product_view", "desktop", None),
        # u2: the whole funnel in order
        ("u2", "a2", "2026-03-02 11:00", "page_view", "desktop", None),
        ("u2", "a2", "2026-03-02 11:05", "product_view", "desktop", None),
        ("u2", "a2", "2026-03-02 11:09", "add_to_cart", "desktop", None),
        ("u2", "a2", "2026-03-02 11:10", "checkout", "desktop", None),
        ("u2", "a2", "2026-03-02 11:12", "purchase", "desktop", None),
        # u3: checkout with no cart, then a purchase: only the visit and the product view count
        ("u3", "a3", "2026-03-02 12:00", "page_view", "desktop", None),
        ("u3", "a3", "2026-03-02 12:01", "product_view", "desktop", None),
        ("u3", "a3", "2026-03-02 12:02", "checkout", "desktop", None),
        ("u3", "a3", "2026-03-02 12:03", "purchase", "desktop", None),
    ])
    result = _funnel(engine, events)
    assert result.whole()["users"].tolist() == [3, 3, 1, 1, 1]
    assert result.whole()["median_minutes"].tolist()[1:] == pytest.approx([2.0, 4.0, 1.0, 2.0])


def test_window_and_orders_decide_the_purchase(engine):
    events = _events([
        # c1 checks out and buys through an order 2 days later (no purchase event): a purchase
        ("c1", "a1", "2026-03-02 10:00", "page_view", "mobile_web", "cpc"),
        ("c1", "a1", "2026-03-02 10:01", "product_view", "mobile_web", "cpc"),
        ("c1", "a1", "2026-03-02 10:02", "add_to_cart", "mobile_web", "cpc"),
        ("c1", "a1", "2026-03-02 10:03", "checkout", "mobile_web", "cpc"),
        # c2 checks out; its order comes 5 days later, beyond the 3-day order window: no purchase
        ("c2", "a2", "2026-03-02 10:00", "page_view", "mobile_web", "cpc"),
        ("c2", "a2", "2026-03-02 10:01", "product_view", "mobile_web", "cpc"),
        ("c2", "a2", "2026-03-02 10:02", "add_to_cart", "mobile_web", "cpc"),
        ("c2", "a2", "2026-03-02 10:03", "checkout", "mobile_web", "cpc"),
        # an anonymous visitor views a product 8 days after the visit: beyond the 7-day window
        (None, "a3", "2026-03-02 10:00", "page_view", "mobile_web", None),
        (None, "a3", "2026-03-10 10:01", "product_view", "mobile_web", None),
    ])
    orders = _orders([("c1", "2026-03-04 09:00", 99.0), ("c2", "2026-03-07 10:04", 50.0),
                      ("c2", "2026-03-02 12:00", -50.0)])  # a refund is no purchase
    result = _funnel(engine, events, orders)
    assert result.whole()["users"].tolist() == [3, 2, 2, 2, 1]
    assert result.whole("channel", "direct")["users"].tolist() == [1, 0, 0, 0, 0]
    assert result.whole("utm_source", "baidu")["users"].tolist() == [2, 2, 2, 2, 1]
    # without orders only purchase events count: nobody bought
    assert _funnel(engine, events).whole()["users"].tolist() == [3, 2, 2, 2, 0]


def test_conversion_interval_is_wilsons(engine):
    events, orders = _random_events(seed=11, users=120)
    result = _funnel(engine, events, orders)
    rows = result.table.dropna(subset=["conversion"])
    rows = rows[rows["prev_users"] > 0]
    assert len(rows) > 20
    low, high = sm_confint(rows["users"].to_numpy(), rows["prev_users"].to_numpy().astype(int), alpha=0.05,
                           method="wilson")
    np.testing.assert_allclose(rows["conversion_low"], low, atol=1e-12)
    np.testing.assert_allclose(rows["conversion_high"], high, atol=1e-12)
    np.testing.assert_allclose(rows["drop_off"], 1 - rows["users"] / rows["prev_users"].astype(float))


def test_entries_are_one_per_user_and_week(engine):
    events, _orders_ = _random_events(seed=3, users=60)
    ev = engine.con.create_table("ev", events, overwrite=True)
    entries = funnel_entries(ev).to_pandas()
    assert not entries.duplicated(["user", "week"]).any()
    assert (pd.to_datetime(entries["week"]).dt.day_of_week == 0).all()  # weeks start on Monday


def test_steps_from_params_map_other_event_names(engine):
    events = _events([
        ("u1", "a1", "2026-03-02 10:00", "open_app", "ios_app", None),
        ("u1", "a1", "2026-03-02 10:05", "buy", "ios_app", None),
        ("u2", "a2", "2026-03-02 10:00", "landing", "ios_app", None),
    ])
    steps = [{"name": "arrive", "event_types": ["open_app", "landing"]}, {"name": "buy", "event_types": ["buy"]}]
    result = _funnel(engine, events, steps=steps, order_step="buy")
    assert result.steps == ["arrive", "buy"]
    assert result.whole()["users"].tolist() == [2, 1]


def test_no_mapped_event_or_too_few_users_cannot_compute(engine):
    events = _events([("u1", "a1", "2026-03-02 10:00", "login", "desktop", None)])
    ev = engine.con.create_table("ev", events, overwrite=True)
    with pytest.raises(CannotCompute, match="page_view"):
        compute_funnel(engine, ev)
    events = _events([("u1", "a1", "2026-03-02 10:00", "page_view", "desktop", None)])
    ev = engine.con.create_table("ev", events, overwrite=True)
    with pytest.raises(CannotCompute, match="at least 30 users"):
        compute_funnel(engine, ev, min_users=30)


def test_default_steps_come_from_the_schema_and_are_in_the_catalog():
    from crmlib.roi.funnel import STEP_NAMES

    assert [name for name, _types in DEFAULT_STEPS] == list(STEP_NAMES)
    assert complete_params()["roi"]["funnel"]["order_step"] == STEP_NAMES[-1]


def test_an_event_type_in_two_steps_is_refused(engine):
    events = _events([("u1", "a1", "2026-03-02 10:00", "page_view", "desktop", None)])
    with pytest.raises(ValueError, match="two funnel steps"):
        _funnel(engine, events, steps=[("a", ["page_view"]), ("b", ["page_view"])])


def _mobile_checkout_leak(n: int = 120) -> pd.DataFrame:
    """Desktop users all buy after checkout; four in five mobile users leave at checkout."""
    rows = []
    for device in ("desktop", "mobile_web"):
        for i in range(n):
            user = f"{device[:1]}{i:03d}"
            t = pd.Timestamp("2026-03-02 09:00") + pd.Timedelta(hours=i)
            steps = ["page_view", "product_view", "add_to_cart", "checkout"]
            if device == "desktop" or i % 5 == 0:
                steps.append("purchase")
            for k, event in enumerate(steps):
                rows.append((user, f"a{user}", t + pd.Timedelta(minutes=k), event, device, "cpc"))
    return _events(rows)


def test_stage_writes_the_table_and_findings_name_the_leaking_device(engine):
    from crmlib.roi.funnel import funnel_findings, funnel_stage

    engine.write_table("events", _mobile_checkout_leak())
    params = complete_params({"run": {"as_of": "2026-03-31"}})
    result = funnel_stage(engine, params)
    assert engine.has_table("funnel") and (engine.tables_dir / "funnel.json").exists()
    assert len(pd.read_parquet(engine.table_path("funnel"))) == len(result.table)
    found = funnel_findings(engine.tables_dir)
    assert found[0].decision == "Fix checkout for mobile_web"
    assert found[0].text.startswith("checkout loses 80.0% of mobile_web users: 96 of the 120 who reached it")
    assert "The biggest leak is from checkout to purchase: 40.0% of the 240 users" in found[1].text


def test_views_read_the_stage_table(engine, tmp_path):
    from crmlib.roi.funnel import (funnel_breakdown_view, funnel_chart, funnel_method, funnel_stage,
                                   funnel_weekly_chart)

    engine.write_table("events", _mobile_checkout_leak())
    params = complete_params({"run": {"as_of": "2026-03-31"}})
    funnel_stage(engine, params)
    left, right = funnel_chart(engine, params)
    assert [t.get_text() for t in right.get_yticklabels()] == ["mobile_web", "desktop"]
    table = funnel_breakdown_view(engine, params, "device", run_dir=engine.run_dir)
    by_device = table.shown.set_index(table.shown.columns[0])
    assert by_device.loc["mobile_web"].tolist()[-2:] == ["20.0%", "20.0%"]  # into purchase; visit to purchase
    assert by_device.loc["desktop"].tolist()[-2:] == ["100.0%", "100.0%"]
    download = pd.read_csv(engine.run_dir / "downloads" / "funnel_device.csv")
    assert sorted(download["device"]) == ["desktop", "mobile_web"]
    assert funnel_weekly_chart(engine, params) is not None
    assert "Wilson" in funnel_method(engine, params)


def test_stage_without_events_or_with_too_few_users(engine):
    from crmlib.roi.funnel import funnel_chart, funnel_stage
    from crmlib.status import Unavailable, read_warnings

    params = complete_params({"run": {"as_of": "2026-03-31"}, "roi": {"funnel": {"min_users": 500}}})
    engine.write_table("funnel", pd.DataFrame({"dimension": ["stale"]}))
    missing = funnel_stage(engine, params)
    assert isinstance(missing, Unavailable) and "no web or app events" in missing.reason
    assert not engine.has_table("funnel") and read_warnings(engine.run_dir) == []
    engine.write_table("events", _mobile_checkout_leak())
    few = funnel_stage(engine, params)
    assert isinstance(few, Unavailable) and "at least 500 users" in few.reason
    assert [w["step"] for w in read_warnings(engine.run_dir)] == ["conversion funnel"]
    shown = funnel_chart(engine, params)
    assert isinstance(shown, Unavailable) and "at least 500 users" in shown.reason


def test_roi_findings_carry_the_funnel_decision_even_without_attribution(engine):
    from crmlib.roi.findings import roi_findings
    from crmlib.roi.funnel import funnel_stage

    engine.write_table("events", _mobile_checkout_leak())
    funnel_stage(engine, complete_params({"run": {"as_of": "2026-03-31"}}))
    found = roi_findings(engine.tables_dir)
    assert [f.decision for f in found] == ["Fix checkout for mobile_web"]
