"""Stage functions end to end on CDNOW through the Engine: contract tables and published numbers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from crmlib.engine import Engine
from crmlib.params import complete_params
from crmlib.segmentation import stage

PARAMS = complete_params({
    "run": {"as_of": "1997-09-30", "currency": "USD"},
    "segmentation": {
        "clv": {"time_unit": "W", "holdout_end": "1998-06-30", "horizon": 39, "discount_rate": 0.10},
        "clusters": {"k": None, "k_min": 2, "k_max": 4, "seed": 0},
        "churn": {"thresholds": {"high": 0.3, "medium": 0.7}},
        "loyalty": {"tiers": [{"name": "Fan", "min_spend": 0}, {"name": "Collector", "min_spend": 200}]},
    },
})


@pytest.fixture(scope="module")
def engine(tmp_path_factory, cdnow_orders):
    run_dir = tmp_path_factory.mktemp("run")
    eng = Engine(run_dir)
    eng.write_table("orders", cdnow_orders)
    consent = pd.DataFrame({"customer_key": cdnow_orders["customer_key"].unique()})
    consent["consent_marketing"] = np.where(consent.index % 10 == 0, False, True)
    eng.write_table("customers", consent)
    yield eng
    eng.close()


def test_settings_defaults():
    cfg = stage.segmentation_settings(complete_params())
    assert cfg["time_unit"] == "W" and cfg["horizon"] == 52 and cfg["discount_rate"] == 0.10
    assert cfg["k"] is None and (cfg["k_min"], cfg["k_max"], cfg["seed"]) == (2, 8, 0)
    assert cfg["churn_thresholds"] == {"high": 0.3, "medium": 0.7}
    assert stage.segmentation_settings(complete_params({"segmentation": {"clv": {"time_unit": "M"}}}))["horizon"] == 12


def test_clv_stage_contract_and_cdnow_numbers(engine):
    result = stage.clv_stage(engine, PARAMS)
    table = pd.read_parquet(engine.table_path("clv"))
    assert list(table.columns[:8]) == stage.CLV_COLUMNS
    assert len(table) == 2357
    model = json.loads((engine.tables_dir / "clv_model.json").read_text())
    for key in ["r", "alpha", "a", "b", "log_likelihood", "n_customers", "fit_seconds"]:
        assert key in model["bgnbd"]
    for key in ["p", "q", "v", "n_customers", "fit_seconds"]:
        assert key in model["gamma_gamma"]
    assert model["time_unit"] == "W" and model["calibration_end"] == "1997-09-30"
    assert model["bgnbd"]["log_likelihood"] == pytest.approx(-9582.4, abs=0.1)
    assert model["bgnbd"]["r"] == pytest.approx(0.243, abs=0.001)
    assert model["gamma_gamma"]["q"] == pytest.approx(3.74, abs=0.005) and model["gamma_gamma"]["n_customers"] == 946
    assert model["holdout"]["actual_total"] == 1882
    assert result.evaluation.table.loc["total", "actual_total"] == 1882
    assert set(table["churn_risk"]) <= {"high", "medium", "low"}
    assert (table["clv"] >= 0).all()


def test_rfm_segments_clusters(engine):
    rfm = stage.rfm_stage(engine, PARAMS)
    written = pd.read_parquet(engine.table_path("rfm"))
    assert list(written.columns[:8]) == stage.RFM_COLUMNS and len(written) == 2357
    seg = stage.segments_stage(engine, PARAMS)
    assert seg["customers"].sum() == len(rfm)
    clusters = stage.clusters_stage(engine, PARAMS)
    assert 2 <= clusters.k <= 4 and len(clusters.labels) == len(rfm)
    assert engine.has_table("clusters")


def test_churn_loyalty_audiences(engine):
    stage.clv_stage(engine, PARAMS)
    stage.rfm_stage(engine, PARAMS)
    warn = stage.churn_stage(engine, PARAMS)
    assert set(warn["churn_risk"]) <= {"high", "medium"}
    assert warn["revenue"].is_monotonic_decreasing
    tiered, matrix = stage.loyalty_stage(engine, PARAMS)
    assert matrix.to_numpy().sum() == len(tiered)
    assert matrix.loc["new"].sum() == len(tiered)  # CDNOW cohort started in 1997: all new a year before
    summary = stage.audiences_stage(engine, PARAMS)
    assert (summary["excluded_no_consent"] > 0).any()
    assert summary.loc[summary["kind"] == "segment", "customers"].sum() == 2357
    files = sorted(p.name for p in (engine.run_dir / "audiences").glob("*.parquet"))
    assert "churn_risk__high.parquet" in files and "segment__champions.parquet" in files
    assert stage.surveys_stage(engine, PARAMS) is None


def test_clv_by_segment_and_surveys(engine):
    stage.clv_stage(engine, PARAMS)
    stage.rfm_stage(engine, PARAMS)
    merged = stage.clv_by_segment(engine, PARAMS)
    assert len(merged) == 2357 and merged["segment"].notna().all()
    assert merged.attrs["summary"]["customers"].sum() == 2357
    keys = pd.read_parquet(engine.table_path("rfm"))["customer_key"].head(300)
    rng = np.random.default_rng(0)
    engine.write_table(
        "surveys",
        pd.DataFrame(
            {
                "customer_key": keys,
                "response_ts": pd.Timestamp("1997-06-01"),
                "nps_score": rng.integers(0, 11, 300).astype(float),
                "csat": rng.integers(1, 6, 300).astype(float),
            }
        ),
    )
    out = stage.surveys_stage(engine, PARAMS)
    assert out["nps"].set_index("segment").loc["all", "n"] == 300
    assert out["csat"].set_index("segment").loc["all", "n"] == 300
    engine.table_path("surveys").unlink()


def test_as_of_defaults_to_latest_order_date(engine):
    assert stage.resolve_as_of(engine, complete_params()) == "1998-06-30"
    assert stage.resolve_as_of(engine, PARAMS) == "1997-09-30"
