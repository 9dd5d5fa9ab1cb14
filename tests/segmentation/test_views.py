"""Compute once, present many: segmentation stage calls write the tables; the page views only read them."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from crmlib.engine import Engine
from crmlib.params import complete_params
from crmlib.segmentation import findings, stage

PARAMS = complete_params({
    "run": {"as_of": "1997-09-30", "currency": "USD"},
    "segmentation": {"clv": {"time_unit": "W", "horizon": 39}, "clusters": {"k": 3}},
})


@pytest.fixture(scope="module")
def staged(tmp_path_factory, cdnow_orders):
    run_dir = tmp_path_factory.mktemp("run")
    with Engine(run_dir) as engine:
        engine.write_table("orders", cdnow_orders)
        stage.rfm_stage(engine, PARAMS)
        segments = stage.segments_stage(engine, PARAMS)
        clv = stage.clv_stage(engine, PARAMS)
        clv_segments = stage.clv_by_segment(engine, PARAMS)
        churn = stage.churn_stage(engine, PARAMS)
        yield engine, segments, clv, clv_segments, churn


def _snapshot(run_dir) -> dict:
    return {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and "downloads" not in p.parts}


def test_stage_calls_write_the_tables_the_page_reads(staged):
    engine, segments, clv, clv_segments, churn = staged
    for name in ("segments", "clv_segments", "churn_tiers", "clv", "rfm"):
        assert engine.has_table(name), name
    tiers = pd.read_parquet(engine.table_path("churn_tiers"))
    assert tiers["customers"].sum() == len(clv.table)
    assert (tiers["warning_list_customers"] == len(churn)).all()
    assert len(pd.read_csv(engine.run_dir / "audiences" / "churn_warning.csv")) == len(churn)
    written = pd.read_parquet(engine.table_path("segments"))
    assert written["customers"].sum() == segments["customers"].sum() == len(clv.table)


def test_views_and_findings_write_nothing_but_downloads(staged):
    engine, segments, clv, clv_segments, churn = staged
    before = _snapshot(engine.run_dir)
    stage.churn_tiers_view(engine, PARAMS, run_dir=engine.run_dir)
    stage.segments_view(segments, currency="USD", run_dir=engine.run_dir)
    stage.clv_segments_view(clv_segments, currency="USD", run_dir=engine.run_dir)
    stage.clv_parameters_view(clv, "bgnbd")
    findings.key_findings(engine.run_dir, currency="USD")
    assert _snapshot(engine.run_dir) == before
    assert sorted(os.listdir(engine.run_dir / "downloads")) == [
        "churn_tiers.csv", "churn_tiers.xlsx", "clv_by_segment.csv", "clv_by_segment.xlsx", "segments.csv",
        "segments.xlsx"]


def test_views_show_plain_headers_and_formatted_numbers(staged):
    engine, segments, clv, clv_segments, churn = staged
    table = stage.churn_tiers_view(engine, PARAMS)
    shown = table.shown.set_index("churn risk")
    assert shown.loc["high", "past net revenue"].startswith("USD ")
    assert shown.loc["low", "still active (mean P(alive))"].endswith("%")
    html = stage.segments_view(segments, currency="USD").to_html()
    assert "share_revenue" not in html and "share of revenue" in html
    assert "<BetaGeoFitter" not in clv._repr_html_() and "converged" in clv._repr_html_()
