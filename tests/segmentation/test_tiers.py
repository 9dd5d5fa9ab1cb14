"""Churn-risk tiers, loyalty tiers and migration, NPS/CSAT with CIs checked against independent code."""

from __future__ import annotations

import ibis
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from crmlib.segmentation.tiers import (
    assign_loyalty_tier,
    churn_risk_tier,
    churn_warning_list,
    csat_by_segment,
    loyalty_spend,
    loyalty_tiers,
    migration_matrix,
    nps_by_segment,
)

TIERS = [{"name": "Gold", "min_spend": 500}, {"name": "Member", "min_spend": 0}, {"name": "Silver", "min_spend": 100}]


def test_churn_risk_thresholds():
    tiers = churn_risk_tier([0.0, 0.29, 0.3, 0.69, 0.7, 1.0], {"high": 0.3, "medium": 0.7})
    assert tiers.tolist() == ["high", "high", "medium", "medium", "low", "low"]
    assert churn_risk_tier([0.5], {"high": 0.6, "medium": 0.9}).tolist() == ["high"]
    with pytest.raises(ValueError):
        churn_risk_tier([0.5], {"high": 0.8, "medium": 0.7})


def test_churn_warning_list_ranks_valuable_at_risk_customers():
    clv = pd.DataFrame(
        {
            "customer_key": list("abcd"),
            "p_alive": [0.1, 0.5, 0.9, 0.2],
            "churn_risk": ["high", "medium", "low", "high"],
            "revenue": [100.0, 900.0, 5000.0, 300.0],
            "clv": [1.0, 2.0, 3.0, 4.0],
            "frequency": [1, 2, 3, 4],
        }
    )
    warn = churn_warning_list(clv, top=2)
    assert warn["customer_key"].tolist() == ["b", "d"]


def test_assign_loyalty_tier():
    assert assign_loyalty_tier([-5, 0, 99.99, 100, 499, 500, 10_000], TIERS).tolist() == [
        "none",
        "Member",
        "Member",
        "Silver",
        "Silver",
        "Gold",
        "Gold",
    ]


def test_loyalty_spend_windows_and_migration():
    frame = pd.DataFrame(
        {
            "customer_key": ["a", "a", "a", "b", "b", "c"],
            "order_ts": pd.to_datetime(
                ["2023-03-01", "2023-06-30", "2024-06-30", "2022-12-31", "2024-01-01", "2024-05-01"]
            ),
            "amount": [600.0, 50.0, 150.0, 200.0, 20.0, 700.0],
        }
    )
    spend = loyalty_spend(ibis.memtable(frame), "2024-06-30").to_pandas().set_index("customer_key")
    # Now: 2023-07-01 .. 2024-06-30 ; a year before: 2022-07-01 .. 2023-06-30.
    assert spend.loc["a", "spend_12m"] == 150.0 and spend.loc["a", "spend_prev_12m"] == 650.0
    assert spend.loc["b", "spend_12m"] == 20.0 and spend.loc["b", "spend_prev_12m"] == 200.0
    tiered = loyalty_tiers(spend.reset_index(), "2024-06-30", TIERS).set_index("customer_key")
    assert (tiered.loc["a", "tier_year_before"], tiered.loc["a", "tier_now"]) == ("Gold", "Silver")
    assert (tiered.loc["b", "tier_year_before"], tiered.loc["b", "tier_now"]) == ("Silver", "Member")
    assert (tiered.loc["c", "tier_year_before"], tiered.loc["c", "tier_now"]) == ("new", "Gold")
    matrix = migration_matrix(tiered.reset_index(), TIERS)
    assert list(matrix.index) == ["new", "Gold", "Silver", "Member", "none"]
    assert matrix.loc["Gold", "Silver"] == 1 and matrix.loc["new", "Gold"] == 1 and matrix.to_numpy().sum() == 3


def _surveys(seed=0):
    rng = np.random.default_rng(seed)
    n = 400
    return pd.DataFrame(
        {
            "customer_key": [f"c{i}" for i in range(n)],
            "response_ts": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 100, n), unit="D"),
            "nps_score": rng.integers(0, 11, n).astype(float),
            "csat": rng.integers(1, 6, n).astype(float),
        }
    ), pd.DataFrame({"customer_key": [f"c{i}" for i in range(n)], "segment": np.where(np.arange(n) % 2, "A", "B")})


def test_nps_matches_score_variance_formula():
    surveys, segments = _surveys()
    out = nps_by_segment(surveys, segments).set_index("segment")
    for seg in ["A", "B"]:
        keys = segments.loc[segments["segment"] == seg, "customer_key"]
        s = surveys.set_index("customer_key").loc[keys, "nps_score"]
        coded = np.where(s >= 9, 1.0, np.where(s <= 6, -1.0, 0.0))  # promoter +1, detractor -1
        assert out.loc[seg, "nps"] == pytest.approx(coded.mean())
        assert out.loc[seg, "se"] == pytest.approx(np.sqrt(coded.var(ddof=0) / coded.size))
        assert out.loc[seg, "ci_low"] == pytest.approx(coded.mean() - 1.959963984540054 * out.loc[seg, "se"])
    assert out.loc["all", "n"] == 400
    assert "multinomial" in out.attrs["method"]


def test_nps_uses_latest_answer_up_to_as_of():
    surveys = pd.DataFrame(
        {
            "customer_key": ["a", "a", "a"],
            "response_ts": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]),
            "nps_score": [0.0, 10.0, 0.0],
        }
    )
    out = nps_by_segment(surveys, pd.DataFrame({"customer_key": ["a"], "segment": ["X"]}), as_of="2024-02-15")
    assert out.set_index("segment").loc["X", "nps"] == 1.0


def test_csat_against_scipy_and_statsmodels():
    surveys, segments = _surveys(1)
    out = csat_by_segment(surveys, segments).set_index("segment")
    keys = segments.loc[segments["segment"] == "A", "customer_key"]
    scores = surveys.set_index("customer_key").loc[keys, "csat"].to_numpy()
    ci = stats.ttest_1samp(scores, 0).confidence_interval(0.95)
    assert out.loc["A", "mean_ci_low"] == pytest.approx(ci.low) and out.loc["A", "mean_ci_high"] == pytest.approx(
        ci.high
    )
    low, high = proportion_confint((scores >= 4).sum(), scores.size, method="wilson")
    assert out.loc["A", "share_ci_low"] == pytest.approx(low) and out.loc["A", "share_ci_high"] == pytest.approx(high)
