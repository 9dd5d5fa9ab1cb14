import ibis
import numpy as np
import pandas as pd
import pytest

from crmlib.roi.roi_table import MODELS, attribute_all, channel_costs, model_disagreement, roi_table


def test_attribute_all_sums(hand_paths):
    res = attribute_all(hand_paths)
    assert set(res.table["model"]) == set(MODELS)
    sums = res.table.groupby("model")[["conversions", "revenue"]].sum()
    np.testing.assert_allclose(sums["conversions"], 4.0)
    np.testing.assert_allclose(sums["revenue"], 100.0)
    assert res.wide("revenue").loc["a", "shapley"] == pytest.approx(60.0)


def test_channel_costs_period_and_campaign():
    con = ibis.duckdb.connect()
    spend = con.create_table("spend", pd.DataFrame({
        "date": pd.to_datetime(["2024-01-01", "2024-01-31", "2024-02-01", "2024-01-15"]).date,
        "channel": ["search", "search", "search", "email"],
        "campaign_id": ["s1", None, "s1", "e1"],
        "cost": [10.0, 20.0, 40.0, 5.0]}))
    touches = con.create_table("touchpoints2", pd.DataFrame({
        "touch_ts": pd.to_datetime(["2024-01-31 23:00", "2024-02-01 00:00", "2024-01-10 08:00"]),
        "channel": ["email", "email", "sms"], "campaign_id": ["e1", "e1", None], "cost": [0.5, 7.0, 0.25]}))
    added = channel_costs(spend, touches, period_start="2024-01-01", period_end="2024-01-31",
                          touch_cost="add").set_index("channel")
    # search: 10 + 20 (Feb 1 outside); email: 5 spend + 0.5 touch (the 00:00 Feb 1 touch is outside)
    assert added.loc["search", "cost"] == 30.0 and added.loc["email", "cost"] == 5.5
    assert added.loc["email", "touch_cost"] == 0.5
    # fallback (default): email has spend rows, so its touch cost is not added; sms has none
    c = channel_costs(spend, touches, period_start="2024-01-01", period_end="2024-01-31").set_index("channel")
    assert c.loc["email", "cost"] == 5.0 and c.loc["email", "cost_source"] == "spend"
    assert c.loc["sms", "cost"] == 0.25 and c.loc["sms", "cost_source"] == "touches"
    campaign = channel_costs(spend, touches, period_end="2024-01-31", level="campaign")
    cc = {label: row for label, (_, row) in zip(campaign["channel"], campaign.iterrows())}  # (channel, campaign_id)
    assert cc[("search", "s1")]["cost"] == 10.0 and cc[("search", None)]["cost"] == 20.0
    assert cc[("sms", None)]["cost"] == 0.25 and cc[("search", "s1")]["channel_name"] == "search"


def test_roi_table_formulas():
    attribution = pd.DataFrame({
        "model": ["m", "m"], "channel": ["a", "b"],
        "conversions": [4.0, 0.0], "revenue": [300.0, 0.0], "new_customers": [2.0, 0.0], "new_clv": [1000.0, 0.0]})
    costs = pd.DataFrame({"channel": ["a", "b", "c"], "cost": [100.0, 50.0, 0.0]})
    t = roi_table(attribution, costs).set_index("channel")
    assert t.loc["a", "roi"] == pytest.approx(2.0) and t.loc["a", "roas"] == pytest.approx(3.0)
    assert t.loc["a", "cpa"] == pytest.approx(25.0) and t.loc["a", "cac"] == pytest.approx(50.0)
    assert t.loc["a", "ltv"] == pytest.approx(500.0) and t.loc["a", "ltv_cac"] == pytest.approx(10.0)
    assert t.loc["b", "roi"] == pytest.approx(-1.0) and np.isnan(t.loc["b", "cpa"])
    assert np.isnan(t.loc["c", "roi"])  # no cost: ROI undefined, not infinite


def test_model_disagreement(hand_paths):
    res = attribute_all(hand_paths)
    d = model_disagreement(res.table, "conversions").set_index("channel")
    # first touch gives a 3/4 of conversions, last touch 1/4: spread 0.5
    assert d.loc["a", "share_first_touch"] == pytest.approx(0.75)
    assert d.loc["a", "share_spread"] == pytest.approx(0.5)
    assert d.loc["a", "rank_range"] == 1
