"""Customer feedback: what customers complain about, who complains, and which problems make detractors.

Reads the run's ``surveys`` table (``customer_key, response_ts, nps_score, csat, category`` and, when
ingest wrote it, ``comment_terms``: the words of each comment from :func:`crmlib.text.comment_terms`,
never the comment itself) and the RFM segment of each customer (``tables/rfm.parquet``).

How to use it in a notebook (notebook 02)::

    feedback = feedback_stage(ctx.engine, ctx.params)   # the stage cell: computes, writes tables/feedback.parquet
    feedback_findings_view(ctx.engine, ctx.params)      # the decisions in sentences
    complaints_view(ctx.engine, ctx.params, run_dir=ctx.run_dir)
    complaint_trend_chart(ctx.engine, ctx.params)
    nps_by_category_view(ctx.engine, ctx.params)
    top_terms_view(ctx.engine, ctx.params)
    feedback_method(ctx.engine, ctx.params)             # for "How this was computed"

The views only read ``tables/feedback.parquet``; each shows the recorded reason when the stage could not
compute it, and says so plainly when the run has no surveys.

Conventions
-----------
* **Window**: answers in the ``months`` calendar months up to ``run.as_of`` (params
  ``segmentation.feedback.months``, default 12).
* **Complaint**: an answer from a detractor (NPS 0-6) or, when it has no NPS score, with CSAT 1-2. Its
  **category** is the survey's category (missing: ``uncategorised``).
* **Segment**: the customer's current RFM segment (``unsegmented`` for answers of unknown customers or
  customers without one).
* **NPS by category** = share of promoters (9-10) - share of detractors (0-6) among the category's answers
  with a score, as a fraction in [-1, 1], with the Wald interval of its multinomial variance
  ``sqrt((P + D - (P - D)^2) / n)`` (the convention of :func:`crmlib.segmentation.tiers.nps_by_segment`).
  Every answer counts (a customer who answered twice about two problems counts in both).
* **Terms**: each comment's terms counted once per comment; ``share`` = comments with the term / comments
  with at least one term, overall and per category; the ``top_terms`` most frequent are kept.

``tables/feedback.parquet`` (long format; a column that does not apply to a kind is missing):

===================== =========================== ===== =================================================
kind                  keys                        n     share
===================== =========================== ===== =================================================
answers_by_segment    segment                     answers  of all answers in the window
answers_by_month      period (YYYY-MM)            answers  of all answers in the window
complaints_by_segment segment, category (or all)  complaints  of the category's complaints (category
                                                           ``all``: of all complaints)
complaints_by_month   period (YYYY-MM), category  complaints  of the month's answers (the complaint rate;
                      (or all)                             category ``all``: every complaint)
nps_by_category       category (or all)           answers with a score  of all detractors; plus ``nps``,
                                                           ``nps_low``, ``nps_high``
terms                 category (or all), term     comments with the term  of the comments with terms
===================== =========================== ===== =================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
import numpy as np
import pandas as pd
from scipy import stats

from crmlib import progress
from crmlib.i18n import N_, _
from crmlib.params import schema_default
from crmlib.present import fmt_count, fmt_number, fmt_percent
from crmlib.segmentation.tiers import ALL_ANSWERS, UNSEGMENTED
from crmlib.status import CannotCompute, Unavailable, guard, recorded_reason, show_notice

__all__ = [
    "COLUMNS",
    "KINDS",
    "FeedbackResult",
    "survey_answers",
    "analyse_feedback",
    "feedback_settings",
    "feedback_stage",
    "feedback_findings",
    "feedback_findings_view",
    "complaints_view",
    "complaints_by_segment_view",
    "complaint_trend_chart",
    "nps_by_category_view",
    "top_terms_view",
    "feedback_method",
]

STAGE = "segmentation"
STEP = N_("customer feedback")
TABLE = "feedback"
COLUMNS = ("kind", "segment", "category", "period", "term", "n", "share", "nps", "nps_low", "nps_high")
KINDS = ("answers_by_segment", "answers_by_month", "complaints_by_segment", "complaints_by_month", "nps_by_category",
         "terms")
ALL = ALL_ANSWERS
UNCATEGORISED = N_("uncategorised")
#: Feedback categories common in survey exports, marked for the catalog: pages show categories through the
#: "label" kind, so these codes read in the report's language while any other category shows as loaded.
COMMON_CATEGORIES = (N_("delivery"), N_("price"), N_("product_quality"), N_("service"), N_("app"),
                     N_("refund"), N_("packaging"), N_("other"))
LEVEL = 0.95
#: The complaint trend's title compares the last this many months with as many before.
RECENT_MONTHS = 3
#: Fewer complaints than this in a category: the page does not name the segment they "mostly" come from.
MIN_CATEGORY_COMPLAINTS = 10


@dataclass
class FeedbackResult:
    """The long feedback table (:data:`COLUMNS`) and how it was computed; ``rows(kind)`` selects one kind."""

    table: pd.DataFrame
    method: str
    settings: dict = field(default_factory=dict)

    def rows(self, kind: str) -> pd.DataFrame:
        return self.table[self.table["kind"] == kind].reset_index(drop=True)


def survey_answers(surveys: ibis.Table, segments: ibis.Table | None, *, start, end) -> ibis.Table:
    """One row per survey answer in ``[start, end)`` with its segment, category, month and complaint flag.

    Parameters
    ----------
    surveys : ibis.Table
        ``customer_key, response_ts`` and any of ``nps_score, csat, category, comment_terms``.
    segments : ibis.Table or None
        ``customer_key, segment`` (the run's ``rfm`` table); None: every answer is ``unsegmented``.
    start, end : datetime-like
        The window: ``start <= response_ts < end``.

    Returns
    -------
    ibis.Table
        ``segment, category, month, nps, complaint, terms`` (``terms`` null without comment terms).
    """
    s = surveys.filter(surveys.response_ts >= pd.Timestamp(start).to_pydatetime(),
                       surveys.response_ts < pd.Timestamp(end).to_pydatetime())
    cols = s.columns
    nps = s.nps_score.cast("float64") if "nps_score" in cols else ibis.null("float64")
    csat = s.csat.cast("float64") if "csat" in cols else ibis.null("float64")
    category = s.category.cast("string") if "category" in cols else ibis.null("string")
    terms = s.comment_terms if "comment_terms" in cols else ibis.null("array<string>")
    s = s.mutate(_nps=nps, _csat=csat, _category=category, _terms=terms)
    if segments is not None:
        seg = segments.select(_seg_key=segments.customer_key, _segment=segments.segment.cast("string"))
        s = s.left_join(seg, s.customer_key == seg._seg_key)
        segment = s._segment.coalesce(ibis.literal(UNSEGMENTED))
    else:
        segment = ibis.literal(UNSEGMENTED)
    complaint = ibis.ifelse(s._nps.notnull(), s._nps <= 6, s._csat.notnull() & (s._csat <= 2))
    return s.select(segment=segment,
                    category=s._category.coalesce(ibis.literal(UNCATEGORISED)),
                    month=s.response_ts.strftime("%Y-%m"),
                    nps=s._nps,
                    complaint=complaint.fill_null(False),
                    terms=s._terms)


def _nps_interval(promoters: np.ndarray, detractors: np.ndarray, n: np.ndarray, level: float = LEVEL):
    """NPS as a fraction and its Wald interval with multinomial variance, clipped to [-1, 1]."""
    n = n.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p, d = promoters / n, detractors / n
        nps = p - d
        se = np.sqrt(np.maximum(p + d - nps**2, 0.0) / n)
    z = stats.norm.ppf(0.5 + level / 2)
    return nps, np.clip(nps - z * se, -1, 1), np.clip(nps + z * se, -1, 1)


def analyse_feedback(
    surveys: ibis.Table,
    segments: ibis.Table | None,
    *,
    as_of,
    months: int = schema_default("segmentation.feedback.months"),
    min_answers: int = schema_default("segmentation.feedback.min_answers"),
    top_terms: int = schema_default("segmentation.feedback.top_terms"),
) -> FeedbackResult:
    """Complaints by segment and month, NPS by category and the most frequent comment terms.

    Parameters
    ----------
    surveys, segments : ibis.Table
        See :func:`survey_answers`.
    as_of : date-like
        The window ends with this day.
    months : int
        The window's length in calendar months (the month of ``as_of`` is the last).
    min_answers : int
        Fewer answers in the window: :class:`~crmlib.status.CannotCompute`.
    top_terms : int
        Terms kept per category (and overall).

    Raises
    ------
    CannotCompute
        When the window holds fewer than ``min_answers`` answers.
    """
    end = pd.Timestamp(as_of).normalize() + pd.Timedelta(days=1)
    start = (pd.Timestamp(as_of).to_period("M") - (months - 1)).start_time
    a = survey_answers(surveys, segments, start=start, end=end)
    total = int(a.count().to_pandas())
    if total < min_answers:
        raise CannotCompute(_("the feedback analysis needs at least {needed} survey answers in the {months} months "
                              "up to {as_of}; there are {n}.").format(needed=min_answers, months=months,
                                                                      as_of=pd.Timestamp(as_of).date().isoformat(),
                                                                      n=fmt_count(total)))
    frames = []

    answers = a.group_by("segment").agg(n=a.count()).to_pandas()
    frames.append(answers.assign(kind="answers_by_segment", share=answers["n"] / total))

    c = a.filter(a.complaint)
    by_segment = c.group_by(["segment", "category"]).agg(n=c.count()).to_pandas()
    by_segment["share"] = by_segment["n"] / by_segment.groupby("category")["n"].transform("sum")
    seg_all = c.group_by("segment").agg(n=c.count()).to_pandas()
    seg_all = seg_all.assign(category=ALL, share=seg_all["n"] / max(int(seg_all["n"].sum()), 1))
    frames.append(pd.concat([by_segment, seg_all]).assign(kind="complaints_by_segment"))

    per_month = a.group_by("month").agg(answers=a.count()).to_pandas().set_index("month")["answers"]
    frames.append(pd.DataFrame({"kind": "answers_by_month", "period": per_month.index, "n": per_month.to_numpy(),
                                "share": per_month.to_numpy() / total}))
    by_month = c.group_by(["month", "category"]).agg(n=c.count()).to_pandas()
    month_all = c.group_by("month").agg(n=c.count()).to_pandas().assign(category=ALL)
    by_month = pd.concat([by_month, month_all], ignore_index=True)
    by_month["share"] = by_month["n"] / by_month["month"].map(per_month)
    frames.append(by_month.rename(columns={"month": "period"}).assign(kind="complaints_by_month"))

    scored = a.filter(a.nps.notnull())
    counts = {"n": scored.count(), "promoters": (scored.nps >= 9).sum(), "detractors": (scored.nps <= 6).sum()}
    nps = scored.group_by("category").agg(**counts).to_pandas()
    nps_all = scored.aggregate(**counts).to_pandas().assign(category=ALL)
    nps = pd.concat([nps, nps_all], ignore_index=True)
    nps = nps[nps["n"] > 0]
    if len(nps):
        value, low, high = _nps_interval(nps["promoters"].to_numpy(float), nps["detractors"].to_numpy(float),
                                         nps["n"].to_numpy(float))
        all_detractors = float(nps.loc[nps["category"] == ALL, "detractors"].sum())
        nps = nps.assign(nps=value, nps_low=low, nps_high=high,
                         share=nps["detractors"] / all_detractors if all_detractors else np.nan)
        frames.append(nps.drop(columns=["promoters", "detractors"]).assign(kind="nps_by_category"))

    if "comment_terms" in surveys.columns:
        with_terms = a.filter(a.terms.notnull() & (a.terms.length() > 0))
        commented = with_terms.group_by("category").agg(comments=with_terms.count()).to_pandas()
        commented = pd.concat([commented, pd.DataFrame({"category": [ALL], "comments": [int(commented["comments"].sum())]})])
        words = with_terms.select("category", term=with_terms.terms.unique().unnest())
        per_category = words.group_by(["category", "term"]).agg(n=words.count())
        overall = words.group_by("term").agg(n=words.count()).mutate(category=ibis.literal(ALL))
        terms = per_category.union(overall.select("category", "term", "n"))
        rank = ibis.row_number().over(group_by=terms.category, order_by=[ibis.desc(terms.n), terms.term])
        terms = terms.mutate(_rank=rank)
        terms = terms.filter(terms._rank < top_terms).drop("_rank").to_pandas()
        terms["share"] = terms["n"] / terms["category"].map(commented.set_index("category")["comments"])
        frames.append(terms.assign(kind="terms"))

    table = pd.concat(frames, ignore_index=True)
    for col in COLUMNS:
        if col not in table.columns:
            table[col] = None
    table = table.loc[:, list(COLUMNS)]
    table["n"] = table["n"].astype("int64")
    for col in ("share", "nps", "nps_low", "nps_high"):
        table[col] = table[col].astype("float64")
    for col in ("segment", "category", "period", "term"):
        table[col] = table[col].astype("string")
    table = table.sort_values(["kind", "category", "segment", "period", "n"], ascending=[True] * 4 + [False],
                              kind="stable").reset_index(drop=True)
    method = (f"answers in the {months} calendar months up to {pd.Timestamp(as_of).date().isoformat()}; a complaint "
              "is an answer with NPS 0-6 (or CSAT 1-2 without an NPS score); segment = the customer's current RFM "
              f"segment; NPS = P(9-10) - P(0-6) per category with a Wald {LEVEL:.0%} interval (multinomial "
              "variance), every answer counted; comment terms counted once per comment")
    settings = {"months": months, "min_answers": min_answers, "top_terms": top_terms,
                "as_of": pd.Timestamp(as_of).date().isoformat(), "answers": total}
    return FeedbackResult(table=table, method=method, settings=settings)


def feedback_settings(params: dict) -> dict:
    """``segmentation.feedback`` of validated params (``months``, ``min_answers``, ``top_terms``; see
    ``docs/PARAMS.md``)."""
    return dict(params["segmentation"]["feedback"])


def feedback_stage(engine, params: dict) -> FeedbackResult | Unavailable | None:
    """The stage call of the feedback analysis: computes it once and writes ``tables/feedback.parquet``
    (and ``feedback.json``: method and settings, for "How this was computed").

    Call it in the stage cell of notebook 02, after the RFM step (it reads ``tables/rfm.parquet`` for the
    segments; without it every answer is ``unsegmented``). Returns None when the run has no surveys, an
    :class:`~crmlib.status.Unavailable` with the reason (recorded in ``warnings.jsonl``) when the data
    cannot answer (too few answers), else the :class:`FeedbackResult`. A table of an earlier run is
    removed first, so a stale one never passes for this run's.
    """
    progress.step("survey comments")
    from crmlib.asof import resolve_as_of

    engine.remove_tables(TABLE)
    if not engine.has_table("surveys"):
        return None
    cfg = feedback_settings(params)
    segments = engine.table("rfm") if engine.has_table("rfm") else None

    def compute() -> FeedbackResult:
        return analyse_feedback(engine.table("surveys"), segments, as_of=resolve_as_of(engine, params),
                                months=int(cfg["months"]), min_answers=int(cfg["min_answers"]),
                                top_terms=int(cfg["top_terms"]))

    result = guard(engine, STAGE, STEP, compute)
    if isinstance(result, FeedbackResult):
        engine.write_table(TABLE, result.table)
        engine.write_json(TABLE, {"method": result.method, "settings": result.settings,
                                  "has_terms": bool((result.table["kind"] == "terms").any())})
    return result


# -- views: each reads tables/feedback.parquet ----------------------------------------------------------
def _read(engine) -> pd.DataFrame | None:
    path = engine.table_path(TABLE)
    return pd.read_parquet(path) if path.exists() else None


def _not_available(engine) -> object:
    """The notice shown in place of a feedback view: no surveys, or the reason the stage recorded."""
    from crmlib.report import note_markdown

    reason = recorded_reason(engine, STAGE, STEP)
    if reason is not None:
        return Unavailable(STEP, reason)
    if not engine.has_table("surveys"):
        return note_markdown(_("This run has no survey data."))
    return note_markdown(_("Customer feedback was not computed in this run."))


def _kind(table: pd.DataFrame, kind: str) -> pd.DataFrame:
    return table[table["kind"] == kind].reset_index(drop=True)


def _label(value) -> str:
    from crmlib.present import fmt_label

    return fmt_label(value)


def feedback_findings(table: pd.DataFrame) -> list:
    """The decisions the feedback supports, as :class:`crmlib.report.Finding` sentences (most important first).

    1. The category with the most complaints and the segment they mostly come from, set against that
       segment's share of all answers ("delivery complaints come mostly from At Risk customers").
    2. The category with the lowest NPS and its share of all detractors (what to fix first).
    3. The words detractors' comments use most in that category, when comments were analysed.
    """
    from crmlib.report import Finding

    found = []
    seg = _kind(table, "complaints_by_segment")
    answers = _kind(table, "answers_by_segment").set_index("segment")["share"]
    per_category = seg[seg["category"] != ALL].groupby("category")["n"].sum().sort_values(ascending=False)
    if len(per_category):
        top = per_category.index[0]
        rows = seg[seg["category"] == top].sort_values("n", ascending=False)
        lead = rows.iloc[0]
        all_complaints = float(seg.loc[seg["category"] == ALL, "n"].sum())
        if set(seg["segment"]) <= {UNSEGMENTED}:  # no RFM segments in this run: nothing to attribute
            text = _("{category} is the most frequent complaint ({n} complaints).").format(
                category=_label(top), n=fmt_count(per_category.iloc[0]))
        elif per_category.iloc[0] >= MIN_CATEGORY_COMPLAINTS:
            sentence = (_("{category} complaints come mostly from {segment} customers: {share} of the {n} {category} "
                          "complaints, while {segment} customers give {base} of all answers.") if lead["share"] > 0.5
                        else _("{category} complaints come most often from {segment} customers: {share} of the {n} "
                               "{category} complaints, while {segment} customers give {base} of all answers."))
            text = sentence.format(
                category=_label(top), segment=_label(lead["segment"]), share=fmt_percent(lead["share"]),
                n=fmt_count(per_category.iloc[0]), base=fmt_percent(answers.get(lead["segment"], np.nan)))
        else:
            text = _("{category} is the most frequent complaint ({n} complaints): too few to tell which segment "
                     "they come from.").format(category=_label(top), n=fmt_count(per_category.iloc[0]))
        found.append(Finding(_("Fix {category} first").format(category=_label(top)),
                             text + " " + _("{category} makes up {share} of all complaints.").format(
                                 category=_label(top), share=fmt_percent(per_category.iloc[0] / all_complaints))))
    nps = _kind(table, "nps_by_category")
    cats = nps[(nps["category"] != ALL) & (nps["n"] >= MIN_CATEGORY_COMPLAINTS)]
    if len(cats):
        worst = cats.sort_values("nps").iloc[0]
        overall = nps[nps["category"] == ALL]
        text = _("Answers about {category} have the lowest NPS, {nps} (95% interval {low} to {high}, {n} answers), "
                 "and hold {share} of all detractors.").format(
            category=_label(worst["category"]), nps=fmt_number(worst["nps"] * 100),
            low=fmt_number(worst["nps_low"] * 100), high=fmt_number(worst["nps_high"] * 100),
            n=fmt_count(worst["n"]), share=fmt_percent(worst["share"]))
        if len(overall) and worst["nps_high"] < float(overall["nps"].iloc[0]):
            text += " " + _("Its whole interval lies below the overall NPS of {nps}: this problem drives "
                            "detractors.").format(nps=fmt_number(float(overall["nps"].iloc[0]) * 100))
        found.append(Finding(_("Reduce detractors"), text))
        terms = _kind(table, "terms")
        words = terms[terms["category"] == worst["category"]].sort_values("n", ascending=False).head(3)
        if len(words):
            found.append(Finding("", _("Comments about {category} most often say: {terms}.").format(
                category=_label(worst["category"]),
                terms=_(", ").join(_("{term} ({share} of comments)").format(term=t, share=fmt_percent(s))
                                   for t, s in zip(words["term"], words["share"])))))
    return found


def feedback_findings_view(engine, params: dict):
    """The feedback's decisions as a "key findings" list (:func:`feedback_findings`), or why there are none."""
    from crmlib.report import key_findings

    table = _read(engine)
    if table is None:
        return _not_available(engine)
    return key_findings(feedback_findings(table), empty=_("The survey answers show no complaint to act on."))


def complaints_view(engine, params: dict, *, run_dir=None):
    """Complaints per category: how many, the share of all complaints, the segment they come from most and
    that segment's share of all answers; the full segment x category table is a download."""
    from crmlib import report

    table = _read(engine)
    if table is None:
        return _not_available(engine)
    seg = _kind(table, "complaints_by_segment")
    seg = seg[seg["category"] != ALL]
    if seg.empty:
        return report.note_markdown(_("No complaint in the window: no detractor and no CSAT of 1-2."))
    answers = _kind(table, "answers_by_segment").set_index("segment")["share"]
    totals = seg.groupby("category")["n"].sum().sort_values(ascending=False)
    lead = seg.sort_values("n", ascending=False).groupby("category").head(1).set_index("category")
    view = pd.DataFrame({
        _("feedback category"): totals.index,
        _("complaints"): totals.to_numpy(),
        _("share of all complaints"): (totals / totals.sum()).to_numpy(),
        _("segment with the most"): [lead.loc[c, "segment"] for c in totals.index],
        _("its share of the complaints"): [lead.loc[c, "share"] for c in totals.index],
        _("its share of all answers"): [answers.get(lead.loc[c, "segment"], np.nan) for c in totals.index],
    })
    shown = report.show(view, kinds={_("feedback category"): "label", _("complaints"): "count",
                                     _("share of all complaints"): "percent", _("segment with the most"): "label",
                                     _("its share of the complaints"): "percent",
                                     _("its share of all answers"): "percent"},
                        caption=_("Complaints by category and the segment they come from most"))
    if run_dir is None:
        return shown
    from IPython.display import display

    display(shown)
    return complaints_by_segment_view(engine, params, run_dir=run_dir)


def complaints_by_segment_view(engine, params: dict, *, run_dir=None):
    """Complaints per segment (rows) and category (columns), the segments with the most complaints first;
    with ``run_dir`` the whole table is a CSV / Excel download."""
    from crmlib import report

    table = _read(engine)
    if table is None:
        return _not_available(engine)
    seg = _kind(table, "complaints_by_segment")
    if seg.empty:
        return None
    pivot = seg.pivot_table(index="segment", columns="category", values="n", aggfunc="sum", fill_value=0)
    categories = [c for c in pivot.drop(columns=[ALL], errors="ignore").sum().sort_values(ascending=False).index]
    pivot = pivot.sort_values(ALL, ascending=False) if ALL in pivot else pivot
    view = pd.DataFrame({_("segment"): pivot.index, _("all complaints"): pivot.get(ALL, pivot[categories].sum(axis=1)).to_numpy()})
    for c in categories:  # column headers are category codes: shown in the report's language like the cells
        view[_label(c)] = pivot[c].to_numpy()
    kinds = {_("segment"): "label", _("all complaints"): "count", **{_label(c): "count" for c in categories}}
    return report.show(view, kinds=kinds, max_rows=20, caption=_("Complaints by segment and category"),
                       download="feedback_complaints" if run_dir is not None else None, run_dir=run_dir)


def complaint_trend_chart(engine, params: dict):
    """Complaint rate per month by category (complaints / answers of the month) as a stacked bar chart.

    Displays the chart (or the reason there is none) itself and returns None, so the cell needs no ";".
    """
    import matplotlib.pyplot as plt

    from crmlib import report
    from crmlib.plotting import FIGURE_SIZE, colors_for, use_report_style

    table = _read(engine)
    if table is None:
        show_notice(_not_available(engine))
        return None
    months = _kind(table, "complaints_by_month")
    per_cat = months[months["category"] != ALL]
    if per_cat.empty:
        show_notice(report.note_markdown(_("No complaint in the window.")))
        return None
    use_report_style()
    rate = per_cat.pivot_table(index="period", columns="category", values="share", aggfunc="sum").fillna(0.0)
    rate = rate[rate.sum().sort_values(ascending=False).index]
    colors = colors_for(rate.columns, family="category")
    fig, ax = plt.subplots(figsize=FIGURE_SIZE)
    bottom = np.zeros(len(rate))
    for cat in rate.columns:
        ax.bar(rate.index, rate[cat].to_numpy(), bottom=bottom, color=colors[cat], label=_label(cat))
        bottom += rate[cat].to_numpy()
    ax.set_ylabel(_("complaints per answer"))
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _pos: fmt_percent(v, digits=0)))
    ax.tick_params(axis="x", labelrotation=45)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    overall = months[months["category"] == ALL].sort_values("period")
    answers = _kind(table, "answers_by_month").set_index("period")["n"].sort_index()
    complaints = overall.set_index("period")["n"].reindex(answers.index, fill_value=0)
    recent = slice(-RECENT_MONTHS, None)
    if len(answers) >= 2 * RECENT_MONTHS:
        before = slice(-2 * RECENT_MONTHS, -RECENT_MONTHS)
        title = _("{share} of answers in the last {months} months were complaints, against {before} in the {months} "
                  "months before").format(share=fmt_percent(complaints.iloc[recent].sum() / answers.iloc[recent].sum()),
                                          before=fmt_percent(complaints.iloc[before].sum() / answers.iloc[before].sum()),
                                          months=RECENT_MONTHS)
    else:
        title = _("{share} of the answers from {first} to {last} were complaints").format(
            share=fmt_percent(complaints.sum() / answers.sum()), first=answers.index[0], last=answers.index[-1])
    report.figure(fig, title=title,
                  caption=_("Complaints (NPS 0-6, or CSAT 1-2 without an NPS score) as a share of each month's survey "
                            "answers, stacked by category."),
                  alt=_("Monthly complaint rate by category: {rows}").format(rows="; ".join(
                      _("{month} {share}").format(month=r["period"], share=fmt_percent(r["share"]))
                      for _i, r in overall.iterrows())))


def nps_by_category_view(engine, params: dict):
    """NPS per category with its 95 % interval and its share of all detractors, worst first."""
    from crmlib import report

    table = _read(engine)
    if table is None:
        return _not_available(engine)
    nps = _kind(table, "nps_by_category")
    if nps.empty:
        return report.note_markdown(_("No answer has an NPS score."))
    nps = pd.concat([nps[nps["category"] != ALL].sort_values("nps"), nps[nps["category"] == ALL]])
    view = pd.DataFrame({_("feedback category"): nps["category"].to_numpy(), _("answers"): nps["n"].to_numpy(),
                         _("NPS"): (nps["nps"] * 100).to_numpy(),
                         _("95% interval"): [_("{low} to {high}").format(low=fmt_number(lo * 100), high=fmt_number(hi * 100))
                                             for lo, hi in zip(nps["nps_low"], nps["nps_high"])],
                         _("share of all detractors"): nps["share"].to_numpy()})
    return report.show(view, kinds={_("feedback category"): "label", _("answers"): "count", _("NPS"): "number",
                                    _("share of all detractors"): "percent"},
                       caption=_("NPS by feedback category (-100 to 100), lowest first"))


def top_terms_view(engine, params: dict, *, per_category: int = 5):
    """The most frequent comment terms overall, and the top few of each category, with their share of comments."""
    from crmlib import report

    table = _read(engine)
    if table is None:
        return _not_available(engine)
    terms = _kind(table, "terms")
    if terms.empty:
        return report.note_markdown(_("The surveys of this run carry no comment terms."))
    overall = terms[terms["category"] == ALL].sort_values("n", ascending=False)
    view = pd.DataFrame({_("term"): overall["term"].to_numpy(), _("comments"): overall["n"].to_numpy(),
                         _("share of comments"): overall["share"].to_numpy()})
    by_cat = terms[terms["category"] != ALL].sort_values(["category", "n"], ascending=[True, False])
    rows = [(cat, _(", ").join(f"{t} ({fmt_percent(s)})" for t, s in zip(g["term"].head(per_category),
                                                                           g["share"].head(per_category))))
            for cat, g in by_cat.groupby("category", sort=True)]
    from IPython.display import display

    display(report.show(view, kinds={_("comments"): "count", _("share of comments"): "percent"}, max_rows=15,
                        caption=_("Words customers use most in their comments")))
    return report.show(pd.DataFrame(rows, columns=[_("feedback category"), _("most frequent words (share of comments)")]),
                       kinds={_("feedback category"): "label"}, caption=_("Most frequent words by category"))


def feedback_method(engine, params: dict) -> str:
    """One "How this was computed" line for the feedback analysis (Markdown), empty when it did not run."""
    import json

    from crmlib.report import escape_markdown

    path = engine.tables_dir / f"{TABLE}.json"
    if not path.exists():
        return ""
    cfg = json.loads(path.read_text(encoding="utf-8"))["settings"]
    text = _("{n} survey answers in the {months} calendar months up to {as_of}; a complaint is an answer with NPS "
             "0-6 (or CSAT 1-2 without an NPS score); segment = the customer's current RFM segment; NPS = share of "
             "9-10 minus share of 0-6 per category, with a 95% Wald interval (multinomial variance), every answer "
             "counted; comment words counted once per comment, names, numbers and addresses removed.").format(
        n=fmt_count(cfg["answers"]), months=cfg["months"], as_of=cfg["as_of"])
    return f"- **{escape_markdown(_(STEP))}**{escape_markdown(_(': '))}{escape_markdown(text)}"
