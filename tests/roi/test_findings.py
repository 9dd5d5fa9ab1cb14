"""The ROI page's key findings, from hand-built stage tables: which channels pay back, which cannot be ranked
and what would settle it, the media-mix model, blended ROAS and CAC, and that attribution is not incrementality."""

import json

import numpy as np
import pandas as pd
import pytest

from crmlib.roi.findings import MAX_FINDINGS, findings_markdown, roi_findings


def _roi(rows):
    return pd.DataFrame([{"model": m, "channel": c, "cost": cost, "roas": roas, "level": "channel"}
                         for m, c, cost, roas in rows])


@pytest.fixture
def tables(tmp_path):
    d = tmp_path / "tables"
    d.mkdir()
    _roi([
        ("linear", "affiliate", 97090.0, 4.12), ("markov", "affiliate", 97090.0, 4.19),
        ("linear", "paid_search", 299988.0, 1.63), ("markov", "paid_search", 299988.0, 1.77),
        ("linear", "display", 132198.0, 0.62), ("markov", "display", 132198.0, 0.81),
        ("linear", "social", 171751.0, 0.9), ("markov", "social", 171751.0, 1.4),
        ("linear", "email", 137.79, 5292.77), ("markov", "email", 137.79, 6203.99),
        ("linear", "push", 0.0, np.nan), ("markov", "push", 0.0, np.nan),
    ]).to_parquet(d / "roi.parquet")
    pd.DataFrame({"channel": ["affiliate", "paid_search", "display", "social", "email"],
                  "spend": [96923.7, 299108.9, 131815.2, 170855.3, 137.79],
                  "roas": [3.53, np.nan, np.nan, np.nan, np.nan], "roas_low": [2.1, 2.7, -16.9, 1.5, np.nan],
                  "roas_high": [4.9, 12.0, -3.1, 13.2, np.nan], "identified": [True, False, False, False, False],
                  "reason": ["identified", "interval wider than 0.5 x ROAS", "interval below 0",
                             "interval wider than 0.5 x ROAS", "not modelled: spend share below 1%"]}
                 ).to_parquet(d / "mmm.parquet")
    (d / "roi_summary.json").write_text(json.dumps({
        "reference_model": "linear", "total_cost": 701164.79, "credited_revenue": 3277570.0, "blended_roas": 4.674,
        "new_customers": 2348.0, "cac": 298.63, "conversion_value": 14339488.0, "touched_value": 3277570.0,
        "touched_share": 0.2286}))
    return d


def test_findings_state_the_decisions_with_their_numbers(tables):
    found = roi_findings(tables, currency="CNY")
    assert 3 <= len(found) <= MAX_FINDINGS
    text = {f.decision: f.text for f in found}
    assert text["Keep funding"] == (
        "paid_search, affiliate return more than they cost under every attribution model (2 of 4 channels with "
        "material spend, CNY 397,078 of cost); ROAS: paid_search 1.63 to 1.77; affiliate 4.12 to 4.19.")
    assert text["Cut or test"].startswith("display return less than they cost under every attribution model "
                                          "(ROAS: display 0.62 to 0.81; CNY 132,198 of cost)")
    assert "Whether social pay back depends on the attribution model (ROAS: social 0.90 to 1.40)" in text["Test"]
    assert "holdout test" in text["Test"]
    assert "Media-mix model" in text["Run a holdout"]
    assert "incremental ROAS of affiliate 3.53 (interval 2.10 to 4.90)" in text["Run a holdout"]
    assert "cannot rank paid_search, display, social" in text["Run a holdout"]
    assert text["Budget baseline"] == (
        "Blended ROAS 4.67: CNY 3,277,570 of revenue credited to marketing on CNY 701,165 of cost (push with no "
        "recorded cost); CAC CNY 298.63 per new customer (2,348 new customers).")
    # the caveat closes the list whatever else had to be cut
    assert found[-1].decision == "Read with care"
    assert found[-1].text.startswith("Marketing touched 22.9% of the period's order revenue (CNY 3,277,570 of "
                                     "CNY 14,339,488). Attribution divides")
    assert "holdout experiments (the A/B page)" in found[-1].text
    # seven findings for six places: the note on almost-free channels is the one left out
    assert "Record the full cost" not in text and len(found) == MAX_FINDINGS


def test_almost_free_channels_are_called_out_not_ranked(tables):
    roi = pd.read_parquet(tables / "roi.parquet")
    roi[roi["channel"] != "display"].to_parquet(tables / "roi.parquet")   # leaves room for the cost note
    found = roi_findings(tables, currency="CNY")
    cost = next(f for f in found if f.decision == "Record the full cost")
    assert cost.text.startswith("email cost almost nothing in the spend data (CNY 137.79; under 1.0% of all cost), "
                                "so their ROAS (email 5,292.77 to 6,203.99)")
    assert all("email" not in f.text for f in found if f.decision == "Keep funding")


def test_mmm_that_could_not_be_fitted_gives_its_reason(tables):
    (tables / "mmm.parquet").unlink()
    (tables.parent / "warnings.jsonl").write_text(json.dumps(
        {"stage": "roi", "step": "media-mix model", "message": "the media-mix model needs at least 26 complete weeks; "
         "this data has 12."}) + "\n")
    found = roi_findings(tables, currency="CNY")
    mmm = next(f for f in found if f.decision == "Run a holdout")
    assert "could not be fitted: the media-mix model needs at least 26 complete weeks; this data has 12." in mmm.text


def test_no_roi_table_means_no_findings_and_markdown_escapes(tmp_path, tables):
    assert roi_findings(tmp_path) == []
    page = findings_markdown(roi_findings(tables, currency="CNY"), empty="none").data
    assert page.count("<li") == len(roi_findings(tables)) and page.count("<b>") == page.count("<li")
    assert "paid_search" in page
