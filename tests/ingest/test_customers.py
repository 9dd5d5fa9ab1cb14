"""crmlib.ingest.customers: per-customer aggregates (hand-computed) and safely parsed tag rules."""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd
import pytest

from crmlib.ingest.customers import TagRuleError, build_customers, order_totals, parse_tag_rule, tag_array


@pytest.fixture(scope="module")
def con():
    c = ibis.duckdb.connect()
    yield c
    c.disconnect()


CUST = pd.DataFrame({
    "customer_key": ["a", "b", "c", "d"],
    "revenue": [6000.0, 4999.99, 5000.0, None],
    "orders": [3, 1, 0, 0],
    "last_order_ts": pd.to_datetime(["2026-06-01", "2025-01-01", None, None]),
    "loyalty_tier": ["gold", "silver", None, "gold"],
    "consent_marketing": [True, False, None, True],
})


def _keys(con, rule):
    t = ibis.memtable(CUST)
    return sorted(con.execute(t.filter(parse_tag_rule(rule, t).fill_null(False))).customer_key)


@pytest.mark.parametrize("rule, keys", [
    ("revenue >= 5000", ["a", "c"]),
    ("revenue < 5000", ["b"]),                                  # null revenue is never tagged
    ("5000 <= revenue", ["a", "c"]),                            # literal on the left
    ("orders >= 1 and revenue > 5000", ["a"]),
    ("orders == 0 or loyalty_tier == 'silver'", ["b", "c", "d"]),
    ("not (orders > 0)", ["c", "d"]),
    ("loyalty_tier in ['gold', 'platinum']", ["a", "d"]),
    ("loyalty_tier not in ['gold']", ["b"]),
    ("last_order_ts >= '2026-01-01'", ["a"]),
    ("loyalty_tier == null", ["c"]),
    ("consent_marketing == true", ["a", "d"]),
    ("1000 < revenue < 5000", ["b"]),
])
def test_tag_rules(con, rule, keys):
    assert _keys(con, rule) == keys


@pytest.mark.parametrize("rule, words", [
    ("__import__('os').system('echo hi')", "not a comparison"),
    ("revenue >= abs(-5)", "expected a literal"),
    ("spend >= 5", "'spend' is not a customers column"),
    ("revenue >=", "cannot parse"),
    ("revenue in 5", "column in [a, b]"),
])
def test_bad_rules_are_refused_with_a_reason(rule, words):
    t = ibis.memtable(CUST)
    with pytest.raises(TagRuleError) as err:
        parse_tag_rule(rule, t, tag="vip")
    assert words in str(err.value) and "vip" in str(err.value)


def test_tag_array_in_rule_order(con):
    t = ibis.memtable(CUST)
    got = con.execute(t.select("customer_key", tags=tag_array(t, {"high_value": "revenue >= 5000",
                                                                   "gold": "loyalty_tier == 'gold'"})))
    assert {k: list(v) for k, v in zip(got.customer_key, got.tags)} == {
        "a": ["high_value", "gold"], "b": [], "c": ["high_value"], "d": ["gold"]}


def test_build_customers_hand_computed(con):
    identity_map = ibis.memtable({"source": ["crm", "crm", "cards", "crm"],
                                  "source_customer_id": ["C1", "C2", "K1", "C3"],
                                  "customer_key": ["k1", "k2", "k1", "k3"]})
    orders = ibis.memtable(pd.DataFrame({
        "customer_key": ["k1", "k1", "k1", "k2"],
        "order_ts": pd.to_datetime(["2026-01-05", "2026-03-01", "2026-04-01", "2026-02-01"]),
        "amount": [100.0, 250.0, -50.0, -10.0],
    }))
    contacts = ibis.memtable(pd.DataFrame({
        "customer_key": ["k1", "k1", "k2"], "_priority": [0, 1, 2],
        "gender": [None, "F", "M"], "city": ["上海", "北京", None], "province": [None, None, None],
        "loyalty_tier": [None, "gold", None], "signup_ts": pd.to_datetime(["2025-05-01", "2024-01-01", None]),
        "consent_marketing": [True, False, True], "name": ["王伟", "Wang", "Li"],
        "email": ["w@x.com", None, "l@x.com"], "phone": [None, None, None]}))
    appearances = ibis.memtable({"customer_key": ["k1", "k1", "k1", "k2"],
                                 "source": ["orders", "crm", "cards", "crm"]})
    expr = build_customers(identity_map, orders, contacts, appearances, tags={"big": "revenue >= 300"})
    df = con.execute(expr).set_index("customer_key")
    assert sorted(df.index) == ["k1", "k2", "k3"]
    k1 = df.loc["k1"]
    assert k1.orders == 2 and k1.revenue == pytest.approx(300.0)        # refund subtracts, not an order
    assert k1.first_order_ts == pd.Timestamp("2026-01-05") and k1.last_order_ts == pd.Timestamp("2026-03-01")
    assert list(k1.sources) == ["cards", "crm", "orders"] and list(k1.tags) == ["big"]
    assert k1.gender == "F" and k1.city == "上海" and k1.loyalty_tier == "gold"  # first non-null by priority
    assert k1.signup_ts == pd.Timestamp("2024-01-01")
    assert k1.consent_marketing == False  # noqa: E712 - an opt-out anywhere wins
    k2 = df.loc["k2"]
    assert k2.orders == 0 and k2.revenue == pytest.approx(-10.0) and pd.isna(k2.first_order_ts)
    k3 = df.loc["k3"]
    assert k3.orders == 0 and k3.revenue == 0.0 and list(k3.sources) == [] and list(k3.tags) == []
    assert not {"name", "email", "phone"} & set(df.columns)
    with_pii = con.execute(build_customers(identity_map, orders, contacts, appearances, keep_pii=True))
    assert {"name", "email", "phone"} <= set(with_pii.columns)
    assert str(con.execute(expr.select("orders")).dtypes["orders"]) == "int64"
    # a person with two ids in one source appears twice there; listed once either way
    twice = appearances.union(ibis.memtable({"customer_key": ["k1"], "source": ["crm"]}))
    for names in (None, ["orders", "crm", "cards"]):
        got = con.execute(build_customers(identity_map, orders, None, twice, source_names=names))
        assert list(got.set_index("customer_key").loc["k1", "sources"]) == ["cards", "crm", "orders"]
    # the stage's way: order totals (here split so that k1 has two rows to combine) and known source names
    split = order_totals(orders.filter(orders.amount < 200)).union(order_totals(orders.filter(orders.amount >= 200)))
    for combined in (order_totals(orders), split):
        alt = con.execute(build_customers(identity_map, combined, contacts, appearances, tags={"big": "revenue >= 300"},
                                          orders_are_totals=True, source_names=["orders", "crm", "cards", "web"]))
        alt = alt.set_index("customer_key").loc[df.index]
        assert str(alt.orders.dtype) == "int64"
        pd.testing.assert_frame_equal(alt.drop(columns=["sources", "tags"]), df.drop(columns=["sources", "tags"]))
        assert [list(x) for x in alt.sources] == [list(x) for x in df.sources]
        assert [list(x) for x in alt.tags] == [list(x) for x in df.tags]
