"""crmlib.ingest.findings: the page's key findings, read from hand-built stage tables."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from crmlib.ingest import findings
from crmlib.status import record_warning


@pytest.fixture
def run_dir(tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "data_quality.json").write_text(json.dumps({"salt_source": "env", "sources": {
        "contacts": {"rows_read": 1_000, "rows_loaded": 990, "rows_quarantined": 5, "duplicates_dropped": 5},
        "orders": {"rows_read": 9_000, "rows_loaded": 8_910, "rows_quarantined": 60, "duplicates_dropped": 30},
    }}))
    pd.DataFrame({"source": ["orders"] * 40 + ["orders"] * 20 + ["contacts"] * 5,
                  "reason": ["bad_number:amount"] * 40 + ["missing_value:order_ts"] * 20 + ["bad_date:x"] * 5,
                  "row_number": list(range(100, 140)) + list(range(20)) + list(range(5))}).to_parquet(
        tables / "quarantine.parquet")
    pd.DataFrame({"source": ["crm"] * 6 + ["shop"] * 4, "source_customer_id": list("abcdefghij")}).to_parquet(
        tables / "identity_map.parquet")
    pd.DataFrame({"orders": [3, 0, 2, 5], "revenue": [100.0, 0.0, 1_150.0, 250.0],
                  "sources": [["crm", "shop"], ["crm"], ["crm", "shop"], ["shop"]]}).to_parquet(
        tables / "customers.parquet")
    return tmp_path


def test_each_finding_states_the_numbers_of_its_table(run_dir):
    found = findings.key_findings(run_dir, currency="CNY", files={"orders": "shop_orders.csv"})
    text = "\n".join(found)
    assert 3 <= len(found) <= 6
    assert "9,900 of 10,000 input rows from 2 files were loaded (99.0%); 65 were set aside" in text
    assert "35 exact duplicates dropped" in text
    # the most frequent reason, its file and the first row to look at
    assert "most common problem: amount is not a number in 40 rows of shop_orders.csv (first at row 100)" in text
    assert "10 customer records from 2 systems were merged into 4 people; 2 of them (50.0%)" in text
    assert "3 of the 4 people bought: 10 orders and CNY 1,500 net revenue" in text
    assert "default salt" not in text  # the salt came from the environment


def test_default_salt_and_stage_warnings_are_findings(run_dir):
    quality = json.loads((run_dir / "tables" / "data_quality.json").read_text())
    quality["salt_source"] = "default"
    (run_dir / "tables" / "data_quality.json").write_text(json.dumps(quality))
    record_warning(run_dir, "ingest", "read orders", "2 title rows skipped")
    found = findings.key_findings(run_dir, currency="CNY")
    assert "Check read orders: 2 title rows skipped." in found
    assert found[-1].startswith("Customer keys use the public default salt")
    assert len(found) == 6


def test_no_quarantine_leaves_that_finding_out(run_dir):
    (run_dir / "tables" / "quarantine.parquet").unlink()
    found = findings.key_findings(run_dir, currency="CNY")
    assert len(found) == 3 and not any("most common problem" in f for f in found)


@pytest.mark.parametrize("reason, words", [
    ("missing_value:source_customer_id", "source_customer_id is empty"),
    ("bad_date:order_ts (order_ts is not a date in an accepted format)", "order_ts is not a date"),
    ("future_timestamp:order_ts", "order_ts is in the future"),
    ("something_new", "something_new"),
    ("zero_quantity:quantity (a line holds at least one unit)", "quantity is zero"),
    ("unknown_order:order_id (the line's order_id is not an order of source eshop)", "the line's order is not a loaded order"),
])
def test_reason_codes_in_plain_words(reason, words):
    assert findings.reason_words(reason) == words


def test_ingest_summary_displays_a_sentence_not_a_repr():
    from crmlib.ingest.stage import IngestSummary

    quality = {"sources": {"a": {"rows_read": 1_200, "rows_loaded": 1_100, "rows_quarantined": 60,
                                 "duplicates_dropped": 40, "checks": {}}}}
    summary = IngestSummary(quality=quality, n_customers=950, n_records=1_000, tables=[],
                            links_by_rule=pd.DataFrame(), salt_source="default")
    assert summary._repr_markdown_() == ("1,200 rows read from 1 sources: 1,100 loaded, 60 quarantined, 40 duplicates "
                                         "dropped; 950 customers.")


@pytest.mark.parametrize("reason, fix", [
    ("bad_number:amount (amount does not fit decimal '.': it looks like a decimal comma; set decimal: ',' on "
     "source shop)", "set decimal: ',' on source shop"),
    ("bad_date:order_ts (order_ts could be day/month or month/day and is never guessed; set date_format: ...)",
     "set date_format: on source shop (day or month first)"),
    ("unknown_order:order_id (the line's order_id is not an order of source eshop; fix the line, or load ...)",
     "fix the line, or load the orders file it belongs to"),
    ("missing_value:source_customer_id", "fill in the value in the file"),
])
def test_each_reason_says_what_to_do(reason, fix):
    assert findings.reason_fix(reason, "shop") == fix


def test_reasons_read_in_chinese_on_a_chinese_page():
    from crmlib import i18n

    i18n.set_language("zh-CN")
    try:
        words = findings.reason_words("bad_number:amount (amount does not fit decimal '.')")
        fix = findings.reason_fix("bad_number:amount (x: it looks like a decimal comma; set decimal: ',')", "shop")
    finally:
        i18n.set_language("en")
    assert words == "金额不是数字"
    assert "shop" in fix and "decimal: ','" in fix and "set" not in fix
