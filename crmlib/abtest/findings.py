"""Key findings of the A/B page: plain sentences, each with its numbers and the decision it supports.

Findings only read what the stage call (:func:`crmlib.abtest.stage.ab_results`) wrote - the verdict
table ``ab_verdicts.parquet``, the holdout table ``ab_holdout.parquet`` and the run's
``warnings.jsonl`` - and format it through :mod:`crmlib.present`; they compute no statistic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmlib.i18n import _
from crmlib.report import Finding, key_findings
from crmlib.present import fmt_count, fmt_money, fmt_percent, fmt_ratio

__all__ = ["Finding", "ab_findings", "findings_markdown", "MAX_FINDINGS", "interval_text"]

#: At most this many sentences open the page (the rest is in the verdict table below them).
MAX_FINDINGS = 6



def _finite(x) -> bool:
    try:
        return x is not None and bool(np.isfinite(float(x)))
    except (TypeError, ValueError):
        return False


def interval_text(low, high) -> str:
    """``+3.5% to +37.9%``: a relative interval in words ("" when either end is missing)."""
    if not (_finite(low) and _finite(high)):
        return ""
    return _("{low} to {high}").format(low=fmt_percent(low, signed=True), high=fmt_percent(high, signed=True))


def _lift(row: pd.Series) -> str:
    return _("{metric} {lift} (always-valid interval {interval})").format(
        metric=row["primary_metric"], lift=fmt_percent(row["rel_lift"], signed=True),
        interval=interval_text(row["seq_rel_ci_low"], row["seq_rel_ci_high"]))


def _traffic(row: pd.Series) -> str:
    """``, about 12 days at the current 85 users per arm a day`` when the verdict table has the traffic."""
    days, rate = row.get("days_more"), row.get("users_per_arm_per_day")
    if not (_finite(days) and _finite(rate)) or float(rate) <= 0:
        return ""
    return _(", about {days} days at the current {rate} users per arm a day").format(
        days=fmt_count(np.ceil(float(days))), rate=fmt_count(rate))


def _one(row: pd.Series) -> Finding:
    e, action = row["experiment_id"], row.get("action")
    if row["verdict"] == "not analysed":
        action = "check the data"
    if action == "ship":
        return Finding(_("Ship"), _("Ship {variant} of {experiment}: {lift}; {guardrails}.").format(
            variant=row["variant"], experiment=e, lift=_lift(row), guardrails=_("no guardrail harmed")))
    if action == "do not ship":
        harmed = row.get("guardrails_harmed") or ""
        why = (_("guardrail {names} harmed").format(names=harmed) if harmed
               else _("the treatment is significantly worse"))
        return Finding(_("Do not ship"), _("Do not ship {experiment}: {why}; {lift}.").format(
            experiment=e, why=why, lift=_lift(row)))
    if action == "fix the split":
        return Finding(_("Fix the split"), _("Do not read {experiment} yet: {reason}. Fix the assignment, then "
                                             "restart it.").format(experiment=e, reason=row["reason"]))
    if action == "check the data":
        return Finding(_("Check the data"), _("{experiment} could not be analysed: {reason}").format(
            experiment=e, reason=row["reason"]))
    if action == "stop":
        needed, now = row.get("n_needed_per_arm"), min(float(row["n_control"]), float(row["n_treatment"]))
        if _finite(needed):
            return Finding(_("Stop"), _("Stop {experiment}: {lift} includes no change, and confirming a lift this "
                                        "small would take about {n} users per arm against {now} now; treat the "
                                        "change as having no detectable effect.").format(
                experiment=e, lift=_lift(row), n=fmt_count(needed), now=fmt_count(now)))
        return Finding(_("Stop"), _("Stop {experiment}: {lift} includes no change; treat the change as having no "
                                    "effect.").format(experiment=e, lift=_lift(row)))
    more = row.get("n_more_per_arm")
    if _finite(more):
        return Finding(_("Keep running"), _("Keep {experiment} running: {lift} is not yet conclusive; it needs "
                                            "about {n} more users per arm{traffic}.").format(
            experiment=e, lift=_lift(row), n=fmt_count(more), traffic=_traffic(row)))
    return Finding(_("Keep running"), _("Keep {experiment} running: {lift} is not yet conclusive; {step}.").format(
        experiment=e, lift=_lift(row), step=row.get("next_step") or ""))


_ORDER = {"ship": 0, "do not ship": 1, "blocked: SRM": 2, "inconclusive": 3, "not analysed": 4}


def _holdout(holdout: pd.DataFrame, currency: str | None) -> list[Finding]:
    out = []
    for _i, h in holdout.iterrows():
        if not _finite(h.get("incremental_roi")):
            continue
        attributed = (_("; attribution credits it with ROI {roi}").format(roi=fmt_ratio(h["attributed_roi"]))
                      if _finite(h.get("attributed_roi")) else "")
        out.append(Finding(_("Incremental return"), _(
            "Holdout test {experiment} measures what the campaign caused: {revenue} incremental revenue "
            "({low} to {high}) for {cost} cost, incremental ROI {roi}{attributed}.").format(
            experiment=h["experiment_id"], revenue=fmt_money(h["incremental_revenue"], currency),
            low=fmt_money(h["incremental_revenue_low"], currency), high=fmt_money(h["incremental_revenue_high"], currency),
            cost=fmt_money(h["cost"], currency), roi=fmt_ratio(h["incremental_roi"]), attributed=attributed)))
    return out


def ab_findings(tables_dir: str | Path, *, currency: str | None = None) -> list[Finding]:
    """The page's key findings from the tables the A/B stage call wrote in ``tables_dir``.

    One summary sentence (how many experiments to ship, stop, keep running or fix), then one per
    experiment (ship and do-not-ship first), then the holdouts' incremental return, at most
    :data:`MAX_FINDINGS` in all. Empty when the stage wrote no verdicts.
    """
    tables_dir = Path(tables_dir)
    path = tables_dir / "ab_verdicts.parquet"
    if not path.exists():
        return []
    verdicts = pd.read_parquet(path)
    if verdicts.empty:
        return []
    per = [_one(r) for _i, r in verdicts.assign(_o=verdicts["verdict"].map(_ORDER).fillna(9))
           .sort_values(["_o", "experiment_id"], kind="mergesort").iterrows()]
    counts = pd.Series([f.decision for f in per]).value_counts()
    parts = [_("{n} to ship").format(n=fmt_count(counts.get(_("Ship"), 0))),
             _("{n} to stop or not ship").format(n=fmt_count(counts.get(_("Do not ship"), 0) + counts.get(_("Stop"), 0))),
             _("{n} to keep running").format(n=fmt_count(counts.get(_("Keep running"), 0)))]
    broken = counts.get(_("Fix the split"), 0) + counts.get(_("Check the data"), 0)
    if broken:
        parts.append(_("{n} to fix before reading").format(n=fmt_count(broken)))
    summary = Finding(_("Overview"), _("{n} experiments analysed: {parts}.").format(
        n=fmt_count(len(verdicts)), parts=", ".join(parts)))
    holdout_path = tables_dir / "ab_holdout.parquet"
    holdouts = _holdout(pd.read_parquet(holdout_path), currency) if holdout_path.exists() else []
    room = MAX_FINDINGS - 1 - min(len(holdouts), 1)
    return [summary, *per[:room], *holdouts[:MAX_FINDINGS - 1 - len(per[:room])]]


def findings_markdown(findings: list[Finding], *, empty: str) -> Any:
    """The findings as the page's HTML list (:func:`crmlib.report.key_findings`)."""
    return key_findings(findings, empty=empty)
