"""crmlib.segmentation.findings: the page's key findings, read from hand-built stage tables."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from crmlib.segmentation import findings
from crmlib.status import record_warning


@pytest.fixture
def run_dir(tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    pd.DataFrame({
        "segment": ["Champions", "Loyal", "Hibernating", "New"],
        "customers": [100, 200, 600, 100],
        "share_customers": [0.1, 0.2, 0.6, 0.1],
        "revenue": [50_000.0, 30_000.0, 15_000.0, 5_000.0],
        "share_revenue": [0.5, 0.3, 0.15, 0.05],
    }).to_parquet(tables / "segments.parquet")
    pd.DataFrame({
        "churn_risk": ["high", "medium", "low"], "customers": [300, 200, 500],
        "revenue": [20_000.0, 10_000.0, 70_000.0], "clv": [1_000.0, 4_000.0, 45_000.0],
        "mean_p_alive": [0.1, 0.5, 0.9], "rule": ["a", "b", "c"], "warning_list_customers": [150] * 3,
    }).to_parquet(tables / "churn_tiers.parquet")
    pd.DataFrame({"customer_key": ["a", "b", "c", "d"], "clv": [100.0, 300.0, 2_600.0, None]}).to_parquet(
        tables / "clv.parquet")
    (tables / "clv_model.json").write_text(json.dumps({
        "clv": {"computed": True}, "horizon": 52.0, "time_unit": "W", "margin": 0.4,
        "discount_rate_annual": 0.1, "holdout": {"holdout_end": "2026-09-30", "actual_total": 200,
                                                  "predicted_total": 210}}))
    pd.DataFrame({"segment": ["Champions", "all"], "n": [10, 40], "nps": [0.5, 0.25],
                  "ci_low": [0.1, 0.05], "ci_high": [0.9, 0.45]}).to_parquet(tables / "nps_by_segment.parquet")
    (tmp_path / "audiences").mkdir()
    (tmp_path / "audiences" / "churn_warning.csv").write_text("customer_key\n")
    return tmp_path


def test_each_finding_states_the_numbers_of_its_table(run_dir):
    found = findings.key_findings(run_dir, currency="CNY")
    assert 3 <= len(found) <= 6
    text = "\n".join(found)
    # the two segments with the most revenue: 50,000 + 30,000 of 100,000 with 300 of 1,000 customers
    assert "Champions and Loyal hold 80.0% of net revenue (CNY 80,000) with 30.0% of the customers (300)" in text
    # high + medium risk: 500 customers, 30,000 of 100,000 revenue; 150 on the warning list
    assert "500 customers are at high or medium churn risk (300 high); they brought CNY 30,000 (30.0% of revenue)" in text
    assert "150 most valuable" in text and "audiences/churn_warning.csv" in text
    # CLV: 3 customers with a value, 3,000 in total, 1,000 each, over 52 weeks
    assert "next 52 weeks" in text and "CNY 3,000" in text and "CNY 1,000 per customer" in text
    assert "40.0% margin" in text
    # holdout: predicted 210 vs 200 actual, 5.0% off
    assert "predicted 210 repeat purchases and 200 happened (5.0% off)" in text
    assert "NPS is 25 (95% interval 5 to 45) from 40 answers: promoters outnumber detractors" in text


def test_missing_tables_leave_their_findings_out_and_warnings_say_why(run_dir):
    for name in ("churn_tiers.parquet", "clv.parquet", "clv_model.json", "nps_by_segment.parquet"):
        (run_dir / "tables" / name).unlink()
    record_warning(run_dir, "segmentation", "BG/NBD purchase model", "every customer bought on one day only.")
    record_warning(run_dir, "roi", "MMM", "not this page's")
    found = findings.key_findings(run_dir, currency="CNY")
    assert len(found) == 2
    assert found[0].startswith("Champions and Loyal")
    assert found[1] == "Not computed: BG/NBD purchase model, because every customer bought on one day only."


def test_many_warnings_are_summed_up_within_six_findings(run_dir):
    for i in range(9):
        record_warning(run_dir, "segmentation", f"step {i}", f"reason {i}")
    found = findings.key_findings(run_dir, currency="CNY")
    assert len(found) == 6
    assert found[-1].startswith("9 more steps") or "more steps could not be computed" in found[-1]


def test_findings_html_escapes_names():
    page = findings.findings_markdown(["<script>x</script> hold 10%"]).data
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_nps_interval_across_zero_asks_for_more_answers(run_dir):
    pd.DataFrame({"segment": ["all"], "n": [30], "nps": [-0.05], "ci_low": [-0.146], "ci_high": [0.045]}).to_parquet(
        run_dir / "tables" / "nps_by_segment.parquet")
    assert findings.nps_finding(run_dir) == ("NPS is -5 (95% interval -14.6 to 4.5) from 30 answers: too few answers "
                                             "to tell whether promoters outnumber detractors; collect more before "
                                             "acting on it.")
