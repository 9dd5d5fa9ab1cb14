"""crmlib.segmentation.feedback: complaints by segment and month, NPS by category, comment terms, the stage call."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmlib.engine import Engine
from crmlib.params import complete_params
from crmlib.segmentation.feedback import (
    ALL,
    COLUMNS,
    analyse_feedback,
    complaint_trend_chart,
    complaints_view,
    feedback_findings,
    feedback_method,
    feedback_stage,
    nps_by_category_view,
    top_terms_view,
)
from crmlib.segmentation.tiers import nps_by_segment
from crmlib.status import CannotCompute, Unavailable
from crmlib.text import comment_terms

AS_OF = "2026-06-30"


@pytest.fixture
def engine(tmp_path):
    eng = Engine(tmp_path / "run")
    yield eng
    eng.close()


def _surveys(seed: int = 1, n: int = 400) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Answers over 18 months: At Risk customers complain about delivery far more than others."""
    rng = np.random.default_rng(seed)
    customers = pd.DataFrame({"customer_key": [f"k{i:03d}" for i in range(150)]})
    customers["segment"] = rng.choice(["Champions", "At Risk", "Loyal"], size=len(customers), p=[0.4, 0.3, 0.3])
    rows = []
    comments = {"delivery": ["物流太慢了，张伟很生气 13812345678", "快递太慢", "发货很快"],
                "price": ["价格偏贵", "性价比高"], "service": ["客服不回复，请联系 li.na@example.com", "客服态度好"]}
    for i in range(n):
        c = customers.iloc[rng.integers(len(customers))]
        at_risk = c["segment"] == "At Risk"
        category = rng.choice(["delivery", "price", "service"], p=[0.6, 0.2, 0.2] if at_risk else [0.2, 0.4, 0.4])
        score = int(rng.integers(0, 7)) if (at_risk and category == "delivery") else int(rng.integers(4, 11))
        ts = pd.Timestamp("2025-01-01") + pd.Timedelta(days=int(rng.integers(0, 546)))
        comment = rng.choice(comments[category]) if rng.random() < 0.8 else None
        rows.append({"customer_key": c["customer_key"] if rng.random() < 0.95 else None, "response_ts": ts,
                     "nps_score": float(score) if rng.random() < 0.9 else np.nan,
                     "csat": float(rng.integers(1, 6)), "category": category,
                     "comment_terms": comment_terms(comment) if comment else None, "_comment": comment})
    return pd.DataFrame(rows), customers


def _analyse(engine, surveys, segments, **kw):
    s = engine.con.create_table("s", surveys.drop(columns=["_comment"]), overwrite=True)
    g = engine.con.create_table("g", segments, overwrite=True) if segments is not None else None
    return analyse_feedback(s, g, as_of=AS_OF, **kw)


def _window(surveys: pd.DataFrame, months: int) -> pd.DataFrame:
    start = (pd.Timestamp(AS_OF).to_period("M") - (months - 1)).start_time
    return surveys[(surveys["response_ts"] >= start) & (surveys["response_ts"] < pd.Timestamp(AS_OF) + pd.Timedelta(days=1))]


def _direct(surveys, segments, months=12):
    w = _window(surveys, months).merge(segments, on="customer_key", how="left")
    w["segment"] = w["segment"].fillna("unsegmented")
    w["complaint"] = np.where(w["nps_score"].notna(), w["nps_score"] <= 6, w["csat"] <= 2)
    return w


def test_complaints_by_segment_and_month_match_a_direct_count(engine):
    surveys, segments = _surveys()
    t = _analyse(engine, surveys, segments).table
    w = _direct(surveys, segments)
    c = w[w["complaint"]]
    got = t[(t["kind"] == "complaints_by_segment") & (t["category"] != ALL)].set_index(["segment", "category"])["n"]
    expected = c.groupby(["segment", "category"]).size()
    assert {(str(a), str(b)): int(v) for (a, b), v in got.items()} == {(a, b): int(v) for (a, b), v in expected.items()}
    share = t[(t["kind"] == "complaints_by_segment") & (t["category"] == "delivery")].set_index("segment")["share"]
    share.index = share.index.astype(str)
    np.testing.assert_allclose(share.sort_index(), (expected.loc[:, "delivery"] / (c["category"] == "delivery").sum()).sort_index())
    month = t[(t["kind"] == "complaints_by_month") & (t["category"] == ALL)].set_index("period")
    rate = c.groupby(c["response_ts"].dt.strftime("%Y-%m")).size() / w.groupby(w["response_ts"].dt.strftime("%Y-%m")).size()
    month.index = month.index.astype(str)
    np.testing.assert_allclose(month["share"].sort_index(), rate.dropna().sort_index())
    assert set(month.index) <= {p.strftime("%Y-%m") for p in pd.period_range("2025-07", "2026-06", freq="M")}
    answers = t[t["kind"] == "answers_by_segment"].set_index("segment")["n"]
    assert answers.sum() == len(w)
    assert list(t.columns) == list(COLUMNS)


def test_nps_by_category_follows_the_segment_nps_convention(engine):
    surveys, segments = _surveys(seed=2)
    t = _analyse(engine, surveys, segments).table
    nps = t[t["kind"] == "nps_by_category"].set_index("category")
    # tiers.nps_by_segment on one answer per "customer" grouped by category is the same estimator
    w = _direct(surveys, segments).dropna(subset=["nps_score"]).reset_index(drop=True)
    one_each = w.assign(customer_key=[f"a{i}" for i in range(len(w))])
    ref = nps_by_segment(one_each.drop(columns=["category", "segment"]), one_each[["customer_key", "category"]],
                         segment_col="category").set_index("category")
    for category in ("delivery", "price", "service"):
        assert nps.loc[category, "n"] == ref.loc[category, "n"]
        assert nps.loc[category, "nps"] == pytest.approx(ref.loc[category, "nps"])
        assert nps.loc[category, "nps_low"] == pytest.approx(ref.loc[category, "ci_low"])
        assert nps.loc[category, "nps_high"] == pytest.approx(ref.loc[category, "ci_high"])
    detractors = (w["nps_score"] <= 6)
    assert nps.loc["delivery", "share"] == pytest.approx(detractors[w["category"] == "delivery"].sum() / detractors.sum())


def test_terms_are_counted_once_per_comment_and_hold_no_personal_data(engine):
    surveys, segments = _surveys(seed=3)
    surveys.loc[0, "comment_terms"] = ["物流", "物流", "太慢"]  # a term twice in one comment counts once
    surveys.loc[0, "response_ts"] = pd.Timestamp("2026-06-01")
    t = _analyse(engine, surveys, segments).table
    terms = t[(t["kind"] == "terms") & (t["category"] == ALL)].set_index("term")
    w = _window(surveys, 12)
    w = w[w["comment_terms"].map(lambda x: x is not None and len(x) > 0)]
    with_term = w["comment_terms"].map(lambda x: "物流" in x).sum()
    assert terms.loc["物流", "n"] == with_term
    assert terms.loc["物流", "share"] == pytest.approx(with_term / len(w))
    stored = " ".join(t["term"].dropna())
    for pii in ("张伟", "138", "li.na", "example"):
        assert pii not in stored


def test_too_few_answers_cannot_compute(engine):
    surveys, segments = _surveys(n=20)
    with pytest.raises(CannotCompute, match="at least 30 survey answers"):
        _analyse(engine, surveys, segments)


def test_findings_lead_with_the_segment_behind_the_top_complaint(engine):
    surveys, segments = _surveys(seed=4, n=600)
    found = feedback_findings(_analyse(engine, surveys, segments).table)
    assert found[0].decision == "Fix delivery first"
    assert "delivery complaints come mostly from At Risk customers" in found[0].text
    assert "Answers about delivery have the lowest NPS" in found[1].text


def _params(tmp_path, months=12):
    return complete_params({"run": {"as_of": AS_OF}, "segmentation": {"feedback": {"months": months}}})


def test_stage_writes_the_table_and_the_views_read_it(engine, tmp_path, monkeypatch):
    surveys, segments = _surveys(seed=5)
    engine.write_table("surveys", surveys.drop(columns=["_comment"]))
    engine.write_table("rfm", segments)
    result = feedback_stage(engine, _params(tmp_path))
    assert engine.has_table("feedback")
    stored = pd.read_parquet(engine.table_path("feedback"))
    assert len(stored) == len(result.table) and set(stored["kind"]) == {
        "answers_by_segment", "answers_by_month", "complaints_by_segment", "complaints_by_month", "nps_by_category",
        "terms"}
    assert "delivery" in complaints_view(engine, {}).to_html()
    shown = nps_by_category_view(engine, {}).to_html()
    assert "NPS" in shown and "delivery" in shown
    assert "物流" in top_terms_view(engine, {}).to_html()
    drawn = []
    monkeypatch.setattr("crmlib.report.figure", lambda fig, **words: drawn.append(words))
    assert complaint_trend_chart(engine, {}) is None  # the chart shows itself: the cell needs no ";"
    assert drawn and "of answers in the last 3 months were complaints" in drawn[0]["title"]
    assert "complaint" in feedback_method(engine, {})
    complaints_view(engine, {}, run_dir=tmp_path / "run")
    download = pd.read_csv(tmp_path / "run" / "downloads" / "feedback_complaints.csv")
    assert len(download) == stored.loc[stored["kind"] == "complaints_by_segment", "segment"].nunique()


def test_stage_without_surveys_or_with_too_few_answers(engine, tmp_path):
    assert feedback_stage(engine, _params(tmp_path)) is None
    surveys, segments = _surveys(seed=6, n=10)
    engine.write_table("surveys", surveys.drop(columns=["_comment"]))
    engine.write_table("feedback", pd.DataFrame({"kind": ["stale"]}))  # an earlier run's table goes
    result = feedback_stage(engine, _params(tmp_path))
    assert isinstance(result, Unavailable) and "at least 30" in result.reason
    assert not engine.has_table("feedback")
    notice = complaints_view(engine, {})
    assert isinstance(notice, Unavailable) and "at least 30" in notice.reason


def test_without_segments_the_top_complaint_is_named_without_a_segment(engine):
    surveys, _segments = _surveys(seed=7)
    found = feedback_findings(_analyse(engine, surveys, None).table)
    assert found[0].decision == "Fix delivery first"
    assert found[0].text.startswith("delivery is the most frequent complaint (")
    assert "unsegmented" not in found[0].text


def test_the_segmentation_page_key_findings_name_the_complaint_to_fix_first(engine, tmp_path):
    from crmlib.segmentation import findings

    surveys, segments = _surveys(seed=4, n=600)
    engine.write_table("surveys", surveys.drop(columns=["_comment"]))
    engine.write_table("rfm", segments)
    feedback_stage(engine, _params(tmp_path))
    page = findings.key_findings(engine.run_dir)
    assert any("delivery complaints come mostly from At Risk customers" in sentence for sentence in page)
