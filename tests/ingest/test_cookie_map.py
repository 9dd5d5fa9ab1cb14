"""The one cookie-stitching rule (ingest writes the stitched customer_key; ROI and A/B read it)."""

from __future__ import annotations

import ibis
import pandas as pd

from crmlib.ingest.stage import _cookie_map


def _source_rows(rows):
    return pd.DataFrame(rows, columns=["anonymous_id", "source_customer_id"]).assign(_status="loaded")


def test_most_frequent_customer_wins_and_ties_go_to_the_smallest_key():
    con = ibis.duckdb.connect()
    id_map = con.create_table("id_map", pd.DataFrame({
        "source": ["shop"] * 4, "source_customer_id": ["S1", "S2", "S3", "S4"],
        "customer_key": ["k_b", "k_a", "k_d", "k_c"]}))
    events = con.create_table("events", _source_rows([
        ("A1", "S1"), ("A1", "S2"), ("A2", "S3"), ("A3", None), (None, "S1")]))
    touches = con.create_table("touches", _source_rows([("A1", "S1"), ("A2", "S4")]))
    quarantined = con.create_table("quarantined", _source_rows([("A4", "S1")]).assign(_status="quarantined"))
    params = {"sources": [{"name": "web", "kind": "events", "id_source": "shop"},
                          {"name": "tp", "kind": "touchpoints", "id_source": "shop"},
                          {"name": "bad", "kind": "events", "id_source": "shop"}]}
    decided = {"web": (None, events), "tp": (None, touches), "bad": (None, quarantined)}
    stitched = _cookie_map(decided, params, id_map).to_pandas()
    mapping = dict(zip(stitched["_anon"], stitched["_stitched"]))
    # A1: seen twice with S1 (k_b) across events and touches, once with S2 (k_a) -> k_b, not the smaller k_a
    # A2: once with S3 (k_d), once with S4 (k_c) -> a tie, the smallest key k_c (same on every run)
    # A3 never logged in; A4 only on a quarantined row: neither is stitched
    assert mapping == {"A1": "k_b", "A2": "k_c"}
