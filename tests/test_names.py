"""Names are data: channel and campaign names with '>', ':', '/', spaces and Chinese keep their identity
through journeys, every attribution model and the ROI table (spend meets attributed revenue by name)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmlib.engine import Engine
from crmlib.params import complete_params
from crmlib.roi import stage
from crmlib.roi.roi_table import MODELS

# names that a '>'-joined path, a 'channel:campaign' label or a "+"-joined coalition would mangle
CHANNELS = ["Social > WeChat", "Paid:Baidu", "小程序", "a/b test", "Email"]
CAMPAIGNS = {
    "Social > WeChat": ["WeChat > Moments:春节", None],
    "Paid:Baidu": ["brand:搜索/SEM", "generic > 2026"],
    "小程序": ["小程序 / 秒杀"],
    "a/b test": ["variant:a/b"],
    "Email": ["Newsletter: May > June", None],
}
START = pd.Timestamp("2026-01-05")


def _write_run(tmp_path) -> Engine:
    """300 customers touched by every channel (and campaign), orders after touches, daily spend per campaign."""
    rng = np.random.default_rng(7)
    eng = Engine(tmp_path, database=":memory:")
    touches, orders = [], []
    for i in range(300):
        key = f"k{i}"
        for _ in range(int(rng.integers(1, 6))):
            channel = CHANNELS[int(rng.integers(len(CHANNELS)))]
            options = CAMPAIGNS[channel]
            campaign = options[int(rng.integers(len(options)))]
            touches.append((key, None, START + pd.Timedelta(days=int(rng.integers(0, 40)), hours=int(rng.integers(0, 24))),
                            channel, campaign, 0.5))
        if rng.random() < 0.6:
            orders.append((key, START + pd.Timedelta(days=45), float(rng.gamma(2, 50)), f"o{i}"))
    eng.write_table("orders", pd.DataFrame(orders, columns=["customer_key", "order_ts", "amount", "order_id"]))
    eng.write_table("touchpoints", pd.DataFrame(
        touches, columns=["customer_key", "anonymous_id", "touch_ts", "channel", "campaign_id", "cost"]))
    days = pd.date_range(START, periods=46, freq="D")
    pairs = [(c, k) for c in CHANNELS for k in CAMPAIGNS[c]]
    eng.write_table("spend", pd.DataFrame({
        "date": np.repeat(days.date, len(pairs)),
        "channel": [c for _ in days for c, _ in pairs],
        "campaign_id": [k for _ in days for _, k in pairs],
        "cost": rng.uniform(10, 50, len(days) * len(pairs))}))
    return eng


PARAMS = complete_params({"run": {"as_of": "2026-03-31"},
                          "roi": {"lookback_days": 60, "mmm": {"enabled": False}}})


@pytest.fixture
def run(tmp_path):
    eng = _write_run(tmp_path)
    yield eng
    eng.close()


def test_paths_carry_channel_names_unchanged(run):
    journeys = stage.journeys_stage(run, PARAMS)
    steps = {step for path in journeys.paths["path"] for step in path}
    assert steps == set(CHANNELS)
    campaign_journeys = stage.journeys_stage(run, PARAMS, label="campaign")
    pairs = {step for path in campaign_journeys.paths["path"] for step in path}
    assert pairs == {(c, k) for c in CHANNELS for k in CAMPAIGNS[c]}


def test_every_model_credits_the_spend_channels(run):
    journeys = stage.journeys_stage(run, PARAMS)
    converted = journeys.summary["touched_value"]
    assert journeys.summary["untouched_conversions"] == 0 and converted > 0
    roi = stage.roi_stage(run, PARAMS)
    channel_rows = roi[roi["level"] == "channel"]
    assert set(channel_rows["model"]) == set(MODELS)
    spend = run.to_pandas(run.table("spend")).groupby("channel")["cost"].sum()
    for model, rows in channel_rows.groupby("model"):
        rows = rows.set_index("channel")
        # spend and revenue land on the same five names: no renamed twin, no channel cut at ':'
        assert set(rows.index) == set(CHANNELS), model
        assert (rows["revenue"] > 0).all(), model
        np.testing.assert_allclose(rows.loc[CHANNELS, "cost"], spend.loc[CHANNELS], rtol=1e-9, err_msg=model)
        assert rows["revenue"].sum() == pytest.approx(converted, rel=1e-9), model
    # the contract table on disk holds the same names
    attribution = pd.read_parquet(run.table_path("attribution"))
    assert set(attribution["channel"]) == set(CHANNELS)


def test_campaign_rows_keep_channel_and_campaign_names(run):
    roi = stage.roi_stage(run, PARAMS)
    campaigns = roi[roi["level"] == "campaign"]
    expected = {(c, k) for c in CHANNELS for k in CAMPAIGNS[c]}
    pairs = {(c, None if pd.isna(k) else k) for c, k in zip(campaigns["channel"], campaigns["campaign_id"])}
    assert pairs == expected
    spend = run.to_pandas(run.table("spend"))
    spend_by_pair = {(c, None if pd.isna(k) else k): v
                     for (c, k), v in spend.groupby(["channel", "campaign_id"], dropna=False)["cost"].sum().items()}
    converted = stage.journeys_stage(run, PARAMS, label="campaign").summary["touched_value"]
    for model, rows in campaigns.groupby("model"):
        for c, k, cost in zip(rows["channel"], rows["campaign_id"], rows["cost"]):
            assert cost == pytest.approx(spend_by_pair[(c, None if pd.isna(k) else k)], rel=1e-9), (model, c, k)
        assert rows["revenue"].sum() == pytest.approx(converted, rel=1e-9), model
