"""crmlib.ingest.customers on Spark: the same customers as on DuckDB, first-by-priority included.

Spark has no ordered ``first()``; the attributes are the non-null value of the contact record with the
smallest priority (an argmin), which must pick the same value on both engines. Spark needs a Java
runtime: without one this test fails (it is never skipped).
"""

from __future__ import annotations

import pandas as pd

from crmlib.engine import Engine
from crmlib.ingest.customers import build_customers

IDENTITY = pd.DataFrame({"source": ["crm", "crm", "pos", "pos", "web"],
                         "source_customer_id": ["c1", "c2", "p1", "p2", "w1"],
                         "customer_key": ["A", "B", "A", "C", "C"]})
TOTALS = pd.DataFrame({"customer_key": ["A", "A", "C"],
                       "first_order_ts": pd.to_datetime(["2026-01-02", "2025-12-01", "2026-03-01"]),
                       "last_order_ts": pd.to_datetime(["2026-02-01", "2026-04-01", "2026-03-01"]),
                       "orders": [2, 1, 1], "revenue": [100.0, -20.0, 35.5]})
# A has two contact records: the crm one comes first (priority 5) but has no city and no tier; B has one
# record; C none. Priorities are deliberately not in row order.
CONTACTS = pd.DataFrame({
    "customer_key": ["A", "A", "A", "B"],
    "_priority": [10_000_000_007, 5, 20_000_000_001, 3],
    "gender": ["F", "M", None, None],
    "city": ["上海", None, "北京", "杭州"],
    "province": [None, None, "北京", "浙江"],
    "loyalty_tier": ["gold", None, "silver", None],
    "signup_ts": pd.to_datetime(["2024-05-01", "2023-01-01", None, "2025-01-01"]),
    "consent_marketing": pd.array([True, None, False, True], dtype="boolean"),
    "name": ["王芳", "Wang Fang", None, "李雷"], "email": [None, "a@x.cn", "b@x.cn", None],
    "phone": ["+8613800000001", None, None, None],
})
APPEARANCES = pd.DataFrame({"customer_key": ["A", "A", "B", "C", "C"],
                            "source": ["crm", "pos", "crm", "pos", "web"]})




def _customers(engine: Engine) -> pd.DataFrame:
    tables = {name: engine.scratch(f"cust_{name}", frame) for name, frame in
              (("identity", IDENTITY), ("totals", TOTALS), ("contacts", CONTACTS), ("appearances", APPEARANCES))}
    expr = build_customers(tables["identity"], tables["totals"], tables["contacts"], tables["appearances"],
                           tags={"big": "revenue >= 50", "north": "city == '北京'"}, keep_pii=True,
                           orders_are_totals=True, source_names=["crm", "pos", "web"])
    out = engine.to_pandas(expr.order_by("customer_key")).set_index("customer_key")
    for col in ("sources", "tags"):
        out[col] = out[col].map(list)
    for col in ("first_order_ts", "last_order_ts", "signup_ts"):  # Spark's are in microseconds
        out[col] = out[col].astype("datetime64[ns]")
    return out


def test_customers_are_equal_on_both_engines(engines):
    duck, spark = engines
    d, s = _customers(duck), _customers(spark)
    # the first non-null value by priority, worked out by hand
    assert d.loc["A", ["gender", "city", "province", "loyalty_tier", "name", "email", "phone"]].tolist() == [
        "M", "上海", "北京", "gold", "Wang Fang", "a@x.cn", "+8613800000001"]
    assert d.loc["B", "city"] == "杭州" and pd.isna(d.loc["B", "gender"]) and pd.isna(d.loc["C", "city"])
    assert bool(d.loc["A", "consent_marketing"]) is False  # an opt-out anywhere wins
    assert d.loc["A", "orders"] == 3 and d.loc["A", "revenue"] == 80.0
    assert d.loc["A", "sources"] == ["crm", "pos"] and d.loc["C", "sources"] == ["pos", "web"]
    assert d.loc["A", "tags"] == ["big"] and d.loc["B", "tags"] == []
    pd.testing.assert_frame_equal(s[d.columns], d, check_dtype=False)
