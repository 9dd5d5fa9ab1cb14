"""Compute once, present many: segmentation stage calls write the tables; the page views only read them."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from crmlib import i18n
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


def test_views_show_codes_and_headers_in_the_report_language(staged, zh_cn):
    engine, segments, clv, clv_segments, churn = staged
    shown = stage.churn_tiers_view(engine, PARAMS).shown.set_index("流失风险")
    assert list(shown.index) == ["高", "中", "低"]
    assert shown.loc["高", "规则"] == "活跃概率 < 0.3" and shown.loc["中", "规则"] == "0.3 ≤ 活跃概率 < 0.7"
    assert shown.loc["高", "历史净收入"].startswith("USD ")
    # the table the view read keeps its English codes: findings, audiences and later runs rely on them
    stored = pd.read_parquet(engine.table_path("churn_tiers"))
    assert list(stored["churn_risk"]) == ["high", "medium", "low"] and stored["rule"][0] == "P(alive) < 0.3"
    html = stage.segments_view(segments, currency="USD").to_html()
    assert "冠军客户" in html and "收入占比" in html and "Champions" not in html
    html = stage.clv_segments_view(clv_segments, currency="USD").to_html()
    assert "沉睡客户" in html and "Hibernating" not in html
    assert "已收敛" in clv._repr_html_() and "converged" not in clv._repr_html_()


def test_findings_read_english_tables_and_speak_the_report_language(staged, zh_cn):
    engine = staged[0]
    found = findings.key_findings(engine.run_dir, currency="USD")
    top_two = pd.read_parquet(engine.table_path("segments")).nlargest(2, "revenue")["segment"]
    assert found[0].startswith("和".join(i18n._(s) for s in top_two))
    assert not any(word in found[0] for word in top_two)  # segment names are shown translated
    assert "位客户有中高流失风险" in found[1]
    assert "。其中价值最高的" in found[1]  # Chinese sentences follow each other without a space


def test_every_message_of_this_page_has_a_chinese_translation():
    """The page's code and notebook text is in the catalog, with the same {placeholders} (``i18n check``)."""
    problems = [p for p in i18n.catalog_problems("zh-CN") if "crmlib/segmentation/" in p
                or "02_segmentation.ipynb" in p]
    # new modules of other pages' work may live in this package; this page's files are listed here
    own = ("_mle", "audiences", "bgnbd", "clusters", "clv", "findings", "gamma_gamma", "plotting", "rfm",
           "simulate", "stage", "summary", "tiers")
    mine = [p for p in problems if any(f"crmlib/segmentation/{name}.py" in p for name in own)
            or "02_segmentation.ipynb" in p]
    assert not mine, "\n".join(mine)
