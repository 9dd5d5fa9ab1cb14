"""Key findings of the segmentation page: a few plain sentences, each with its numbers and the decision it supports.

Findings only read what the stage wrote (``tables/segments.parquet``, ``churn_tiers.parquet``,
``clv.parquet``, ``clv_model.json``, ``nps_by_segment.parquet``, ``audiences/churn_warning.csv`` and
``warnings.jsonl``); they compute nothing the stage did not write beyond sums of its columns. Numbers go
through :mod:`crmlib.present`, sentences through :func:`crmlib.i18n._`. A table that is missing (a step
the data could not support) leaves its finding out; the reason comes from ``warnings.jsonl`` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crmlib.i18n import _
from crmlib.present import fmt_count, fmt_money, fmt_number, fmt_percent
from crmlib.report import key_findings as findings_list
from crmlib.report import read_run_json, read_run_table
from crmlib.segmentation.recommend import recommendation_findings
from crmlib.status import read_warnings

__all__ = ["key_findings", "findings_markdown", "STAGE"]

STAGE = "segmentation"
#: Most findings a page opens with: more would not be read.
MAX_FINDINGS = 6


def _unit_words(unit: str, n: float) -> str:
    words = {"D": (_("day"), _("days")), "W": (_("week"), _("weeks")), "M": (_("month"), _("months"))}
    one, many = words.get(unit, (unit, unit))
    return one if n == 1 else many


def segment_revenue_finding(run_dir: Path, currency: str | None) -> str | None:
    """Which segments hold how much revenue (the two largest by revenue)."""
    segments = read_run_table(run_dir, "segments")
    if segments is None or segments.empty or not (segments["revenue"] > 0).any():
        return None
    top = segments[segments["revenue"] > 0].sort_values("revenue", ascending=False).head(2)
    return _("{segments} hold {share_revenue} of net revenue ({revenue}) with {share_customers} of the "
             "customers ({customers}): keep them buying with service and early access rather than "
             "discounts.").format(
        segments=_(" and ").join(_(str(s)) for s in top["segment"]),
        share_revenue=fmt_percent(top["share_revenue"].sum()),
        revenue=fmt_money(top["revenue"].sum(), currency),
        share_customers=fmt_percent(top["share_customers"].sum()),
        customers=fmt_count(top["customers"].sum()))


def churn_finding(run_dir: Path, currency: str | None) -> str | None:
    """How many customers are at risk, what they brought, and the audience file that reaches them."""
    tiers = read_run_table(run_dir, "churn_tiers")
    if tiers is None or tiers.empty:
        return None
    at_risk = tiers[tiers["churn_risk"].isin(["high", "medium"])]
    n_risk = at_risk["customers"].sum()
    total_revenue = tiers["revenue"].sum()
    warning_file = run_dir / "audiences" / "churn_warning.csv"
    listed = int(tiers["warning_list_customers"].iloc[0]) if "warning_list_customers" in tiers.columns else 0
    sentence = _("{n} customers are at high or medium churn risk ({high} high); they brought {revenue} "
                 "({share} of revenue).").format(
        n=fmt_count(n_risk),
        high=fmt_count(at_risk.loc[at_risk["churn_risk"] == "high", "customers"].sum()),
        revenue=fmt_money(at_risk["revenue"].sum(), currency),
        share=fmt_percent(at_risk["revenue"].sum() / total_revenue if total_revenue else float("nan"), na=_("n/a")))
    if listed and warning_file.exists():
        follow = _("The {k} most valuable of them are in audiences/churn_warning.csv: send them a "
                   "win-back offer this week.").format(k=fmt_count(listed))
        sentence = _("{sentence} {next_sentence}").format(sentence=sentence, next_sentence=follow)
    return sentence


def clv_finding(run_dir: Path, currency: str | None) -> str | None:
    """Total and mean CLV over the model's horizon (with margin and discount rate)."""
    model = read_run_json(run_dir, "clv_model")
    clv = read_run_table(run_dir, "clv")
    if model is None or clv is None or not model.get("clv", {}).get("computed") or clv["clv"].isna().all():
        return None
    values = clv["clv"].dropna()
    horizon = float(model["horizon"])
    return _("Over the next {horizon} {unit}, today's {n} customers are expected to bring {total} "
             "({mean} per customer; {margin} margin, {rate} annual discount): the most that keeping them is "
             "worth.").format(
        horizon=fmt_number(horizon), unit=_unit_words(model["time_unit"], horizon), n=fmt_count(len(values)),
        total=fmt_money(values.sum(), currency), mean=fmt_money(values.mean(), currency),
        margin=fmt_percent(model["margin"]), rate=fmt_percent(model["discount_rate_annual"]))


def holdout_finding(run_dir: Path) -> str | None:
    """How well the purchase model predicted the holdout period (when one was set)."""
    model = read_run_json(run_dir, "clv_model")
    holdout = (model or {}).get("holdout")
    if not holdout or not holdout.get("actual_total"):
        return None
    actual, predicted = float(holdout["actual_total"]), float(holdout["predicted_total"])
    return _("Checked against the holdout period up to {end}: the model predicted {predicted} repeat purchases "
             "and {actual} happened ({error} off), so its forecasts can be planned with.").format(
        end=holdout["holdout_end"], predicted=fmt_count(predicted), actual=fmt_count(actual),
        error=fmt_percent(abs(predicted - actual) / actual))


def nps_finding(run_dir: Path) -> str | None:
    """NPS over all answers with its interval."""
    nps = read_run_table(run_dir, "nps_by_segment")
    if nps is None or "segment" not in nps.columns or not (nps["segment"] == "all").any():
        return None
    row = nps.loc[nps["segment"] == "all"].iloc[0]
    if row["ci_high"] < 0:
        message = _("NPS is {nps} (95% interval {low} to {high}) from {n} answers: detractors outnumber promoters, "
                    "so fix what they complain about before asking for referrals.")
    elif row["ci_low"] > 0:
        message = _("NPS is {nps} (95% interval {low} to {high}) from {n} answers: promoters outnumber detractors, "
                    "so ask them for referrals and reviews.")
    else:
        message = _("NPS is {nps} (95% interval {low} to {high}) from {n} answers: too few answers to tell whether "
                    "promoters outnumber detractors; collect more before acting on it.")
    return message.format(
        nps=fmt_number(row["nps"] * 100), low=fmt_number(row["ci_low"] * 100),
        high=fmt_number(row["ci_high"] * 100), n=fmt_count(row["n"]))


def unavailable_findings(run_dir: Path) -> list[str]:
    """What could not be computed and why, from the stage's warnings."""
    # the reason may end with its own full stop, English or Chinese; the message adds the sentence's own
    return [_("Not computed: {step}, because {reason}.").format(step=_(w.get("step", "")),
                                                              reason=str(w.get("message", "")).rstrip(".。"))
            for w in read_warnings(run_dir, STAGE)]


def feedback_finding(run_dir: Path) -> str | None:
    """The complaint to fix first and who makes it (the first of :func:`feedback.feedback_findings`)."""
    from crmlib.segmentation.feedback import feedback_findings

    table = read_run_table(run_dir, "feedback")
    if table is None or table.empty:
        return None
    found = feedback_findings(table)
    return found[0].text if found else None


def key_findings(run_dir: str | Path, *, currency: str | None = None) -> list[str]:
    """The page's 3 to 6 key findings as plain sentences (fewer when steps could not be computed).

    Parameters
    ----------
    run_dir : path
        The run directory (its ``tables/``, ``audiences/`` and ``warnings.jsonl`` are read).
    currency : str, optional
        The run's currency code, written before money.
    """
    run_dir = Path(run_dir)
    found = [f for f in (segment_revenue_finding(run_dir, currency), churn_finding(run_dir, currency),
                         *recommendation_findings(run_dir), feedback_finding(run_dir),
                         clv_finding(run_dir, currency), nps_finding(run_dir), holdout_finding(run_dir)) if f]
    missing = unavailable_findings(run_dir)
    room = max(MAX_FINDINGS - len(found), 1) if missing else 0
    if len(missing) > room:
        rest = len(missing) - room + 1
        missing = missing[:room - 1] + [_("{n} more steps could not be computed; each section below says why.").format(n=fmt_count(rest))]
    return (found[:MAX_FINDINGS - len(missing)] + missing)[:MAX_FINDINGS]


def findings_markdown(sentences: list[str]) -> Any:
    """The findings as the page's HTML list (:func:`crmlib.report.key_findings`)."""
    return findings_list(sentences, empty=_("Nothing could be computed from this run's data."))
