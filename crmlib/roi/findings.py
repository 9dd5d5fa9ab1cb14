"""Key findings of the ROI page: plain sentences, each with its numbers and the decision it supports.

Findings only read what the stage call (:func:`crmlib.roi.stage.run_roi`) wrote - ``roi.parquet``,
``mmm.parquet``, ``roi_summary.json`` and the run's ``warnings.jsonl`` - and format it through
:mod:`crmlib.present`; they compute no statistic (a ROAS range is the lowest and highest value the
attribution models gave).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmlib.i18n import _
from crmlib.report import Finding, key_findings
from crmlib.present import fmt_count, fmt_money, fmt_percent, fmt_ratio

__all__ = ["Finding", "roi_findings", "findings_markdown", "MAX_FINDINGS", "SMALL_COST_SHARE"]

#: At most this many sentences open the page.
MAX_FINDINGS = 6
#: A channel with less than this share of the total cost is "almost free" in the data: its ROAS says more
#: about cost that is not recorded than about return.
SMALL_COST_SHARE = 0.01



def _names(names) -> str:
    return _(", ").join(str(n) for n in names)


def _range(low: float, high: float) -> str:
    return fmt_ratio(low) if np.isclose(low, high) else _("{low} to {high}").format(low=fmt_ratio(low),
                                                                                  high=fmt_ratio(high))


def _ranges(channel_rows: pd.DataFrame) -> pd.DataFrame:
    from crmlib.roi.plotting import roas_ranges

    return roas_ranges(channel_rows)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _warning(run_dir: Path, step: str) -> str | None:
    from crmlib.status import recorded_reason

    return recorded_reason(run_dir, "roi", step)


def _channel_findings(ranges: pd.DataFrame, total_cost: float, currency: str | None) -> list[Finding]:
    out = []
    share = ranges["cost"] / total_cost if total_cost > 0 else ranges["cost"] * np.nan
    material = ranges[share >= SMALL_COST_SHARE]
    small = ranges[share < SMALL_COST_SHARE]

    def listing(rows: pd.DataFrame) -> str:
        return _("; ").join(_("{channel} {roas}").format(channel=r["channel"], roas=_range(r["roas_low"], r["roas_high"]))
                         for _i, r in rows.iterrows())

    pays = material[material["roas_low"] > 1]
    if len(pays):
        out.append(Finding(_("Keep funding"), _(
            "{names} return more than they cost under every attribution model ({k} of {n} channels with material "
            "spend, {cost} of cost); ROAS: {list}.").format(
            names=_names(pays["channel"]), k=fmt_count(len(pays)), n=fmt_count(len(material)),
            cost=fmt_money(pays["cost"].sum(), currency), list=listing(pays))))
    loses = material[material["roas_high"] < 1]
    if len(loses):
        out.append(Finding(_("Cut or test"), _(
            "{names} return less than they cost under every attribution model (ROAS: {list}; {cost} of cost): "
            "cut their budget or prove them with a holdout test.").format(
            names=_names(loses["channel"]), list=listing(loses), cost=fmt_money(loses["cost"].sum(), currency))))
    split = material[(material["roas_low"] <= 1) & (material["roas_high"] >= 1)]
    if len(split):
        out.append(Finding(_("Test"), _(
            "Whether {names} pay back depends on the attribution model (ROAS: {list}): this data cannot rank them; "
            "a holdout test (withhold the channel from a random part of the audience for 4 to 6 weeks) would "
            "settle it.").format(names=_names(split["channel"]), list=listing(split))))
    if len(small):
        out.append(Finding(_("Record the full cost"), _(
            "{names} cost almost nothing in the spend data ({costs}; under {share} of all cost), so their ROAS "
            "({list}) reflects unrecorded cost more than return: add their full cost (tools, staff, messages) "
            "before comparing them with paid channels.").format(
            names=_names(small["channel"]),
            costs=_names(fmt_money(c, currency) for c in small["cost"]),
            share=fmt_percent(SMALL_COST_SHARE), list=listing(small))))
    return out


def _mmm_finding(tables_dir: Path, currency: str | None) -> Finding | None:
    path = tables_dir / "mmm.parquet"
    if not path.exists():
        reason = _warning(tables_dir.parent, "media-mix model")
        if reason is None:
            return None
        return Finding(_("Run a holdout"), _(
            "The media-mix model, which estimates incremental return, could not be fitted: {reason} Until then, "
            "holdout tests are the only measure of what marketing causes.").format(reason=reason))
    mmm = pd.read_parquet(path)
    modelled = mmm[~mmm["reason"].astype(str).str.startswith("not modelled")] if "reason" in mmm else mmm
    identified = modelled[modelled["identified"].astype(bool)]
    parts = []
    if len(identified):
        parts.append(_("it measures the incremental ROAS of {list}").format(list=_("; ").join(
            _("{channel} {roas} (interval {low} to {high})").format(
                channel=r["channel"], roas=fmt_ratio(r["roas"]), low=fmt_ratio(r["roas_low"]),
                high=fmt_ratio(r["roas_high"])) for _i, r in identified.iterrows())))
    unclear = modelled[~modelled["identified"].astype(bool)]
    if len(unclear):
        parts.append(_("it cannot rank {names} from this data (their intervals are too wide or cross zero); a "
                       "holdout test per channel would measure what they cause").format(
            names=_names(unclear["channel"])))
    if not parts:
        return None
    decision = _("Run a holdout") if len(unclear) else _("Shift budget")
    return Finding(decision, _("Media-mix model ({weeks}): {parts}.").format(
        weeks=_("{cost} of modelled spend").format(cost=fmt_money(modelled["spend"].sum(), currency)),
        parts=_("; ").join(parts)))


def roi_findings(tables_dir: str | Path, *, currency: str | None = None) -> list[Finding]:
    """The page's key findings from the tables the ROI stage call wrote in ``tables_dir``.

    Which channels return more than they cost (ROAS range over the attribution models), which cannot be
    ranked and what test would settle it, what the media-mix model can and cannot measure, where the
    conversion funnel leaks most, the blended ROAS and CAC, and that attribution is not incrementality; at
    most :data:`MAX_FINDINGS` sentences. Only the funnel's finding when the stage wrote no ROI table.
    """
    from crmlib.roi.funnel import funnel_findings

    tables_dir = Path(tables_dir)
    path = tables_dir / "roi.parquet"
    funnel = funnel_findings(tables_dir)[:1]  # the funnel's leading decision ("checkout loses X% of mobile users")
    if not path.exists():
        return funnel
    roi = pd.read_parquet(path)
    channels = roi[roi["level"] == "channel"] if "level" in roi else roi
    summary = _read_json(tables_dir / "roi_summary.json")
    total_cost = float(summary.get("total_cost") or 0.0)
    found = _channel_findings(_ranges(channels), total_cost, currency)
    no_cost = sorted(set(channels.loc[channels["cost"].astype(float) <= 0, "channel"]))
    mmm = _mmm_finding(tables_dir, currency)
    if mmm is not None:
        found.append(mmm)
    found += funnel
    if summary.get("blended_roas") is not None:
        cac = (_("; CAC {cac} per new customer ({n} new customers)").format(
            cac=fmt_money(summary["cac"], currency), n=fmt_count(summary["new_customers"]))
            if summary.get("cac") is not None else "")
        free = (_(" ({names} with no recorded cost)").format(names=_names(no_cost)) if no_cost else "")
        found.append(Finding(_("Budget baseline"), _(
            "Blended ROAS {roas}: {revenue} of revenue credited to marketing on {cost} of cost{free}{cac}.").format(
            roas=fmt_ratio(summary["blended_roas"]), revenue=fmt_money(summary["credited_revenue"], currency),
            cost=fmt_money(total_cost, currency), free=free, cac=cac)))
    touched = (_("Marketing touched {share} of the period's order revenue ({touched} of {total}). ").format(
        share=fmt_percent(summary["touched_share"]), touched=fmt_money(summary["touched_value"], currency),
        total=fmt_money(summary["conversion_value"], currency)) if summary.get("touched_share") is not None else "")
    found.append(Finding(_("Read with care"), _(
        "{touched}Attribution divides the revenue of touched orders among the channels that touched them; it does "
        "not show which orders marketing caused. Incremental return is measured by holdout experiments (the A/B "
        "page) and by the media-mix model where it identifies a channel.").format(touched=touched)))
    if len(found) > MAX_FINDINGS:
        # the blended figures and the caveat stay whatever else is cut; the cost note goes first
        low = [f for f in found if f.decision == _("Record the full cost")]
        rest = [f for f in found if f not in low]
        keep = {id(f) for f in [*rest[:MAX_FINDINGS], *low][:MAX_FINDINGS]}
        if len(rest) > MAX_FINDINGS:
            keep = {id(f) for f in [*rest[:MAX_FINDINGS - 2], *rest[-2:]]}
        found = [f for f in found if id(f) in keep]
    return found


def findings_markdown(findings: list[Finding], *, empty: str) -> Any:
    """The findings as the page's HTML list (:func:`crmlib.report.key_findings`)."""
    return key_findings(findings, empty=empty)
