"""Holdout incrementality on hand-computed numbers."""

import numpy as np
import pandas as pd
import pytest

from crmlib.abtest.holdout import holdout_experiments, incrementality


def _results():
    rows = []
    for metric, lift, lo, hi in (("conversion", 0.02, 0.01, 0.03), ("revenue", 3.0, 1.0, 5.0)):
        rows.append({"experiment_id": "h", "metric": metric, "variant": "exposed", "n": 1000, "is_control": False,
                     "abs_lift": lift, "abs_ci_low": lo, "abs_ci_high": hi})
        rows.append({"experiment_id": "h", "metric": metric, "variant": "holdout", "n": 250, "is_control": True,
                     "abs_lift": np.nan, "abs_ci_low": np.nan, "abs_ci_high": np.nan})
    return pd.DataFrame(rows)


def test_incrementality_by_hand():
    ab = {"experiments": [{"id": "h", "holdout": {"channel": "sms", "campaign_id": "c1"}},
                          {"id": "plain", "holdout": {"channel": None, "campaign_id": None}}]}
    holdouts = holdout_experiments(ab)
    assert holdouts == {"h": {"channel": "sms", "campaign_id": "c1"}}
    spend = pd.DataFrame({"date": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-02", "2026-03-01"]),
                          "channel": ["sms", "sms", "sms", "sms"], "campaign_id": ["c1", "c1", "c2", "c1"],
                          "cost": [1000.0, 1000.0, 50.0, 999.0]})
    roi = pd.DataFrame({"model": ["last_touch", "last_touch"], "channel": ["sms", "sms"],
                        "campaign_id": ["c1", "c2"], "roi": [2.0, 9.0]})
    out = incrementality(_results(), holdouts, spend, {"h": ("2026-01-01", "2026-01-31")}, roi).iloc[0]
    assert out["incremental_conversions"] == pytest.approx(20.0)
    assert (out["incremental_conversions_low"], out["incremental_conversions_high"]) == pytest.approx((10.0, 30.0))
    assert out["incremental_revenue"] == pytest.approx(3000.0)
    assert out["cost"] == pytest.approx(2000.0)                       # c2 and the March row excluded
    assert out["incremental_roi"] == pytest.approx(0.5)
    assert (out["incremental_roi_low"], out["incremental_roi_high"]) == pytest.approx((-0.5, 1.5))
    assert out["attributed_roi"] == 2.0 and out["attribution_match"] == "campaign_id"
    assert out["n_control"] == 250


def test_without_spend_or_roi():
    out = incrementality(_results(), {"h": {"channel": "sms", "campaign_id": None}}, None, None, None).iloc[0]
    assert np.isnan(out["cost"]) and np.isnan(out["incremental_roi"])
    assert out["attribution_match"] == "no roi table"
