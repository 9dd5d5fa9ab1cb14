"""Each segmentation step that the data cannot support says why (CannotCompute) instead of failing or
inventing numbers, and the stage records the reason and writes every table it can."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from crmlib.engine import Engine
from crmlib.params import complete_params
from crmlib.segmentation import stage
from crmlib.segmentation.bgnbd import BetaGeoFitter
from crmlib.segmentation.clusters import fit_clusters
from crmlib.segmentation.gamma_gamma import GammaGammaFitter
from crmlib.segmentation.tiers import csat_by_segment, migration_matrix, nps_by_segment
from crmlib.status import CannotCompute, Unavailable, read_warnings


# -- models ------------------------------------------------------------------------------------------
def test_bgnbd_without_customers():
    with pytest.raises(CannotCompute, match="this data has none"):
        BetaGeoFitter().fit([], [], [])


def test_bgnbd_when_everyone_bought_on_one_day():
    with pytest.raises(CannotCompute, match=r"the 10 customer\(s\) in this data all bought on one day only"):
        BetaGeoFitter().fit([0] * 10, [0.0] * 10, np.linspace(1, 30, 10))


def test_bgnbd_that_does_not_converge_on_one_customer():
    # one repeat buyer: the likelihood runs off to a boundary (a -> 0), P(alive) would be arbitrary
    with pytest.raises(CannotCompute, match=r"BG/NBD did not converge on this data \(1 customer"):
        BetaGeoFitter().fit([2], [13.0], [17.0])


def test_gamma_gamma_needs_three_repeat_buyers_with_positive_spend():
    # two repeat buyers with positive spend; zero spend and one-time buyers do not count
    with pytest.raises(CannotCompute, match="at least 3 customers who bought more than once with positive spend; "
                                            "this data has 2"):
        GammaGammaFitter().fit([1, 3, 0, 2], [20.0, 35.0, 50.0, 0.0])


def test_gamma_gamma_with_infinite_mean_spend_gives_no_order_value(cdnow_summary):
    fitted = GammaGammaFitter().fit(cdnow_summary["frequency"], cdnow_summary["monetary_value"])
    fitted.params_ = pd.Series({"p": 6.0, "q": 0.9, "v": 15.0})
    with pytest.raises(CannotCompute, match=r"q = 0.9 <= 1"):
        fitted.conditional_expected_average_profit([2], [30.0])


def _rfm(recency, frequency, monetary):
    return pd.DataFrame({"recency_days": recency, "frequency": frequency, "monetary": monetary})


def test_clusters_on_one_distinct_customer():
    with pytest.raises(CannotCompute, match=r"at least 2 customers who differ.*3 customer\(s\) with 1 distinct"):
        fit_clusters(_rfm([5, 5, 5], [1, 1, 1], [10.0, 10.0, 10.0]))


def test_clusters_asked_for_more_clusters_than_distinct_customers():
    features = _rfm([1, 20, 40], [1, 2, 3], [10.0, 20.0, 30.0])
    with pytest.raises(CannotCompute, match=r"k = 4 clusters need at least 4 customers"):
        fit_clusters(features, 4)
    # k chosen by silhouette from k_min = 3 needs 4 distinct customers too; k = 2 works
    with pytest.raises(CannotCompute, match=r"needs at least 4 customers .* 3 distinct"):
        fit_clusters(features, k_min=3)
    assert fit_clusters(features, 2).k == 2


def test_migration_without_customers_and_with_new_customers_only():
    tiered = pd.DataFrame({"customer_key": ["a", "b"], "tier_year_before": ["new", "new"],
                           "tier_now": ["Bronze", "Silver"]})
    with pytest.raises(CannotCompute, match="needs customers with purchases up to as_of; this data has none"):
        migration_matrix(tiered.iloc[:0])
    # everyone new is an answer: one row of the matrix
    matrix = migration_matrix(tiered)
    assert matrix.loc["new"].sum() == 2 and matrix.drop(index="new").to_numpy().sum() == 0


def test_nps_and_csat_without_answers():
    surveys = pd.DataFrame({"customer_key": ["a", "b"], "response_ts": pd.to_datetime(["2024-01-01", "2024-02-01"]),
                            "nps_score": [np.nan, np.nan], "csat": [np.nan, 4.0]})
    segments = pd.DataFrame({"customer_key": ["a", "b"], "segment": ["x", "y"]})
    with pytest.raises(CannotCompute, match=r"NPS \(nps_score\) needs survey answers .* \(2 rows\) have none"):
        nps_by_segment(surveys, segments)
    # one CSAT answer is enough for CSAT; an answer after as_of is not
    assert csat_by_segment(surveys, segments).set_index("segment").loc["all", "n"] == 1
    with pytest.raises(CannotCompute, match="CSAT"):
        csat_by_segment(surveys, segments, as_of="2024-01-15")


# -- the stage: warnings recorded, every table it can write written ------------------------------------
PARAMS = complete_params({"run": {"as_of": "1997-09-30", "currency": "USD"},
                          "segmentation": {"clusters": {"k_max": 3}}})


@pytest.fixture
def free_repeat_orders(cdnow_orders):
    """CDNOW with every repeat purchase day free (amount 0): BG/NBD fits as on CDNOW, Gamma-Gamma has no
    repeat buyer with positive spend."""
    orders = cdnow_orders.copy()
    day = orders["order_ts"].dt.normalize()
    first = day.groupby(orders["customer_key"]).transform("min")
    orders.loc[day > first, "amount"] = 0.0
    return orders


def test_clv_without_a_spend_model_keeps_the_purchase_model(tmp_path, free_repeat_orders):
    with Engine(tmp_path) as engine:
        engine.write_table("orders", free_repeat_orders)
        result = stage.clv_stage(engine, PARAMS)
        assert isinstance(result.gamma_gamma, Unavailable) and not result.clv_available
        warning = [w for w in read_warnings(tmp_path, "segmentation") if w["step"] == "Gamma-Gamma spend model"]
        assert len(warning) == 1 and "this data has 0" in warning[0]["message"]
        table = pd.read_parquet(engine.table_path("clv"))
        # the purchase model's columns are there (CDNOW's 2,357 customers), the value columns say "unknown"
        assert len(table) == 2357 and table["p_alive"].between(0, 1).all()
        assert (table["expected_purchases"] > 0).all() and set(table["churn_risk"]) <= {"high", "medium", "low"}
        assert table["clv"].isna().all() and table["expected_avg_value"].isna().all()
        model = json.loads((engine.tables_dir / "clv_model.json").read_text())
        assert model["bgnbd"]["r"] == pytest.approx(0.243, abs=1e-3) and model["bgnbd"]["converged"]
        assert model["gamma_gamma"] == {"fitted": False, "reason": warning[0]["message"]}
        assert model["clv"]["computed"] is False and "Gamma-Gamma" in model["clv"]["reason"]
        # churn tiers still come from P(alive); CLV totals are unknown rather than 0
        tiers = stage.churn_tiers(engine, PARAMS)
        assert tiers["customers"].sum() == 2357 and tiers["clv"].isna().all()
        by_segment = stage.clv_by_segment(engine, PARAMS)
        assert by_segment.attrs["summary"]["total_clv"].isna().all()
        assert isinstance(stage.clv_segment_chart(by_segment, result), Unavailable)


def test_stage_on_one_time_buyers_writes_what_it_can(tmp_path):
    orders = pd.DataFrame({"customer_key": [f"c{i}" for i in range(6)],
                           "order_ts": pd.to_datetime([f"1997-0{m}-10" for m in range(1, 7)]),
                           "amount": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]})
    with Engine(tmp_path) as engine:
        engine.write_table("orders", orders)
        # a stale CLV table (an --only run starts from a copy of the last good run's tables) must go
        engine.write_table("clv", pd.DataFrame({"customer_key": ["old"], "clv": [1.0], "churn_risk": ["low"]}))
        assert len(stage.rfm_stage(engine, PARAMS)) == 6
        assert stage.clusters_stage(engine, PARAMS).labels.size == 6
        clv = stage.clv_stage(engine, PARAMS)
        assert isinstance(clv, Unavailable) and "all bought on one day only" in clv.reason
        assert not engine.has_table("clv") and not (engine.tables_dir / "clv_model.json").exists()
        churn = stage.churn_tiers(engine, PARAMS)
        assert isinstance(churn, Unavailable) and "P(alive)" in churn.reason
        assert isinstance(stage.clv_by_segment(engine, PARAMS), Unavailable)
        assert isinstance(stage.clv_parameters(clv, "gamma_gamma"), Unavailable)
        tiered, migration = stage.loyalty_stage(engine, PARAMS)
        assert len(tiered) == 6 and migration.loc["new"].sum() == 6
        # segment audiences are written; churn-risk audiences need P(alive)
        assert set(stage.audiences_stage(engine, PARAMS)["kind"]) == {"segment"}
        steps = [w["step"] for w in read_warnings(tmp_path, "segmentation")]
        assert steps == ["BG/NBD purchase model", "churn risk tiers"]


def test_clusters_stage_on_one_customer(tmp_path):
    orders = pd.DataFrame({"customer_key": ["c1", "c1"], "order_ts": pd.to_datetime(["1997-01-10", "1997-03-10"]),
                           "amount": [10.0, 20.0]})
    with Engine(tmp_path) as engine:
        engine.write_table("orders", orders)
        engine.write_table("clusters", pd.DataFrame({"customer_key": ["old"], "cluster": [0]}))
        result = stage.clusters_stage(engine, PARAMS)
        assert isinstance(result, Unavailable) and "1 customer(s)" in result.reason
        assert not engine.has_table("clusters")
        assert stage.cluster_profiles(result) is result
        assert read_warnings(tmp_path)[0]["step"] == "clusters"


def test_reasons_are_written_in_the_report_language_and_steps_stay_codes(tmp_path, zh_cn):
    orders = pd.DataFrame({"customer_key": ["c1", "c1"], "order_ts": pd.to_datetime(["1997-01-10", "1997-03-10"]),
                           "amount": [10.0, 20.0]})
    with Engine(tmp_path) as engine:
        engine.write_table("orders", orders)
        result = stage.clusters_stage(engine, PARAMS)
    assert isinstance(result, Unavailable)
    assert result.reason == ("聚类至少需要 2 位在最近购买、频次或消费上有差异的客户；这份数据有 1 位客户，"
                             "只有 1 组不同的（最近购买、频次、消费）取值。")
    # the warning keeps the English step code (the run page and the findings translate it where shown)
    warning = read_warnings(tmp_path)[0]
    assert warning["step"] == "clusters" and warning["message"] == result.reason
    from crmlib.segmentation import findings

    assert findings.unavailable_findings(tmp_path) == [f"未计算：聚类簇，原因是{result.reason}"]
    with pytest.raises(CannotCompute, match="这份数据中的 10 位客户都只在一天内购买过"):
        BetaGeoFitter().fit([0] * 10, [0.0] * 10, np.linspace(1, 30, 10))
