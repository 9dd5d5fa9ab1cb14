"""The A/B page's key findings (hand-built verdict tables, numbers checked in the sentences) and the verdict
texts analyze() writes: the interval quoted is the always-valid one, guardrails in words, a next step."""

import numpy as np
import pandas as pd
import pytest

from crmlib.abtest.analysis import analyze
from crmlib.abtest.findings import MAX_FINDINGS, ab_findings, findings_markdown
from crmlib.params import complete_params

NAN = np.nan


def _verdict(experiment_id, verdict, action, **kw):
    row = {"experiment_id": experiment_id, "verdict": verdict, "action": action, "variant": None, "reason": "",
           "next_step": "", "primary_metric": "conversion", "n_control": 2000.0, "n_treatment": 2000.0,
           "rel_lift": NAN, "seq_rel_ci_low": NAN, "seq_rel_ci_high": NAN, "guardrails_harmed": "",
           "n_needed_per_arm": NAN, "n_more_per_arm": NAN, "users_per_arm_per_day": NAN, "days_more": NAN}
    row.update(kw)
    return row


@pytest.fixture
def tables(tmp_path):
    d = tmp_path / "tables"
    d.mkdir()
    pd.DataFrame([
        _verdict("checkout", "inconclusive", "keep running", rel_lift=0.207, seq_rel_ci_low=-0.06,
                 seq_rel_ci_high=0.474, n_more_per_arm=534.0, users_per_arm_per_day=290.4, days_more=1.84),
        _verdict("banner", "inconclusive", "stop", rel_lift=-0.104, seq_rel_ci_low=-0.355, seq_rel_ci_high=0.147,
                 n_needed_per_arm=8174.0, n_control=1390.0, n_treatment=1391.0),
        _verdict("email", "ship", "ship", variant="treatment", rel_lift=0.744, seq_rel_ci_low=0.178,
                 seq_rel_ci_high=1.31),
        _verdict("price", "do not ship", "do not ship", rel_lift=0.05, seq_rel_ci_low=0.01, seq_rel_ci_high=0.09,
                 guardrails_harmed="revenue"),
        _verdict("shipping", "blocked: SRM", "fix the split",
                 reason="the split differs from the design (sample-ratio check p < 0.001)"),
    ]).to_parquet(d / "ab_verdicts.parquet")
    return d


def test_one_sentence_per_decision_with_its_numbers(tables):
    found = ab_findings(tables, currency="CNY")
    assert len(found) == MAX_FINDINGS
    text = {f.decision: f.text for f in found}
    assert text["Overview"] == ("5 experiments analysed: 1 to ship, 2 to stop or not ship, 1 to keep running, "
                                "1 to fix before reading.")
    assert text["Ship"] == ("Ship treatment of email: conversion +74.4% (always-valid interval +17.8% to +131.0%); "
                            "no guardrail harmed.")
    assert "guardrail revenue harmed" in text["Do not ship"] and text["Do not ship"].startswith("Do not ship price")
    assert text["Keep running"] == (
        "Keep checkout running: conversion +20.7% (always-valid interval -6.0% to +47.4%) is not yet conclusive; it "
        "needs about 534 more users per arm, about 2 days at the current 290 users per arm a day.")
    assert "about 8,174 users per arm against 1,390 now" in text["Stop"]
    assert "sample-ratio check p < 0.001" in text["Fix the split"]
    # ship and do-not-ship lead, after the overview
    assert [f.decision for f in found[:3]] == ["Overview", "Ship", "Do not ship"]


def test_holdout_sentence_and_markdown_escaping(tables):
    pd.DataFrame({"experiment_id": ["em_<b>"], "incremental_revenue": [88083.2], "incremental_revenue_low": [49645.0],
                  "incremental_revenue_high": [126521.0], "cost": [34.67], "incremental_roi": [2539.61],
                  "attributed_roi": [6737.85]}).to_parquet(tables / "ab_holdout.parquet")
    found = ab_findings(tables, currency="CNY")
    assert len(found) == MAX_FINDINGS and found[-1].decision == "Incremental return"
    assert ("CNY 88,083 incremental revenue (CNY 49,645 to CNY 126,521) for CNY 34.67 cost, incremental ROI "
            "2,539.61; attribution credits it with ROI 6,737.85") in found[-1].text
    page = findings_markdown(found, empty="none").data
    assert "em_<b>" not in page and "em_&lt;b&gt;" in page


def test_no_verdict_table_means_no_findings(tmp_path):
    assert ab_findings(tmp_path) == []
    assert findings_markdown([], empty="Nothing analysed").data == "<p><em>Nothing analysed</em></p>"


def _rows(exp, variant, metric, n, sy, sy2=None):
    return {"experiment_id": exp, "variant": variant, "metric": metric, "n": n, "is_control": None, "sum_y": sy,
            "sum_y2": sy if sy2 is None else sy2, "sum_x": 0.0, "sum_x2": 0.0, "sum_xy": 0.0, "sum_den": NAN,
            "sum_den2": NAN, "sum_yden": NAN, "metric_type": "binary" if metric == "conversion" else "mean"}


def _mean(exp, variant, metric, n, mean, sd):
    return _rows(exp, variant, metric, n, n * mean, (n - 1) * sd**2 + n * mean**2)


def test_verdict_texts_quote_the_interval_the_verdict_uses():
    stats = pd.DataFrame([
        _rows("win", "control", "conversion", 10000, 1000), _rows("win", "treatment", "conversion", 10000, 1250),
        _mean("win", "control", "revenue", 10000, 50.0, 30.0), _mean("win", "treatment", "revenue", 10000, 51.0, 30.0),
        _rows("near", "control", "conversion", 3000, 300), _rows("near", "treatment", "conversion", 3000, 345),
        _rows("null", "control", "conversion", 3000, 300), _rows("null", "treatment", "conversion", 3000, 301),
    ])
    ab = complete_params({"ab_tests": {"experiments": [
        {"id": "win", "guardrails": [{"metric": "revenue", "margin": 0.05}]}]}})["ab_tests"]
    a = analyze(stats, ab)
    v = a.verdicts.set_index("experiment_id")
    win = v.loc["win"]
    assert win["verdict"] == "ship" and win["action"] == "ship"
    # the interval printed is the always-valid one (wider than the fixed-horizon one, which is kept beside it, in
    # the same units: relative to the control mean)
    assert win["seq_rel_ci_low"] < win["rel_ci_low_fixed_horizon"] < win["rel_ci_high_fixed_horizon"] < win[
        "seq_rel_ci_high"]
    lo, hi = (f"{100 * x:+.1f}%" for x in (win["seq_rel_ci_low"], win["seq_rel_ci_high"]))
    assert f"(always-valid interval {lo} to {hi})" in win["reason"]
    row = a.results.set_index(["experiment_id", "metric", "variant"]).loc[("win", "conversion", "treatment")]
    assert win["seq_rel_ci_low"] == pytest.approx(row["seq_ci_low"] / row["control_mean"])
    assert win["rel_ci_low_fixed_horizon"] == pytest.approx(row["abs_ci_low"] / row["control_mean"])
    assert win["reason"].endswith("no guardrail harmed") and "none" not in win["reason"]
    # inconclusive says what to do: more users per arm (a number), or stop
    near, null = v.loc["near"], v.loc["null"]
    assert near["verdict"] == "inconclusive" and near["action"] == "keep running"
    assert near["n_more_per_arm"] > 0 and f"about {near['n_more_per_arm']:,.0f} more users per arm" in near["next_step"]
    assert null["verdict"] == "inconclusive" and null["action"] == "stop" and null["next_step"].startswith("stop")
    assert null["n_needed_per_arm"] > 4 * 3000
    # what is printed agrees with the verdict: the interval excludes zero for the shipped lift, not for the null one
    assert win["seq_rel_ci_low"] > 0 and null["seq_rel_ci_low"] < 0 < null["seq_rel_ci_high"]
    res = a.results.set_index(["experiment_id", "metric", "variant"])
    assert res.loc[("win", "conversion", "treatment"), "seq_rel_ci_low"] == pytest.approx(win["seq_rel_ci_low"])


def test_a_harmed_guardrail_is_named():
    stats = pd.DataFrame([
        _rows("e", "control", "conversion", 20000, 2000), _rows("e", "treatment", "conversion", 20000, 2400),
        _mean("e", "control", "revenue", 20000, 50.0, 60.0), _mean("e", "treatment", "revenue", 20000, 44.0, 60.0),
    ])
    ab = complete_params({"ab_tests": {"experiments": [
        {"id": "e", "guardrails": [{"metric": "revenue", "margin": 0.02}]}]}})["ab_tests"]
    v = analyze(stats, ab).verdicts.iloc[0]
    assert v["verdict"] == "do not ship" and v["reason"].startswith("guardrail revenue harmed")
    assert v["guardrails_harmed"] == "revenue"
