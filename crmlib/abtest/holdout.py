"""Marketing holdouts: incremental conversions, revenue and ROI from a randomized holdout.

An experiment whose params carry ``holdout: {channel, campaign_id}`` compares units that received a
campaign (treatment) with a randomly held-out group (control: the variant flagged ``is_control`` or
named ``control``/``holdout``). Then, with the treatment arm's ``n_t`` units,

* incremental conversions = (conversion rate lift) x n_t,
* incremental revenue     = (revenue per unit lift) x n_t,
* incremental ROI         = (incremental revenue - cost) / cost,

where cost is that campaign's spend (``spend`` table rows matching the channel and, when given, the
campaign id, dated from the first assignment to the last assignment + window). CIs carry over
linearly from the lift CIs (the cost is treated as known). The ROI stage's *attributed* ROI for the
same campaign (``tables/roi.parquet``; matched on ``campaign_id`` when that column exists, otherwise
on ``channel``) is shown beside it: attribution credits conversions that would have happened anyway,
the holdout does not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["holdout_experiments", "incrementality"]

COLUMNS = [
    "experiment_id", "channel", "campaign_id", "n_treatment", "n_control", "incremental_conversions",
    "incremental_conversions_low", "incremental_conversions_high", "incremental_revenue",
    "incremental_revenue_low", "incremental_revenue_high", "cost", "incremental_roi", "incremental_roi_low",
    "incremental_roi_high", "attributed_roi", "attribution_model", "attribution_match", "method",
]


def holdout_experiments(ab_params: dict) -> dict[str, dict]:
    """``{experiment_id: {"channel", "campaign_id"}}`` for experiments marked as holdouts."""
    out = {}
    for e in ab_params["experiments"]:
        h = e["holdout"]
        if h["channel"] or h["campaign_id"]:
            out[e["id"]] = {"channel": h["channel"], "campaign_id": h["campaign_id"]}
    return out


def incrementality(
    results: pd.DataFrame,
    holdouts: dict[str, dict],
    spend: pd.DataFrame | None,
    periods: dict[str, tuple] | None = None,
    roi: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Incremental effect and ROI per holdout experiment (one row per attribution model, if any).

    Parameters
    ----------
    results : DataFrame
        ``ab_results`` rows (treatment rows for metrics ``conversion`` and ``revenue``).
    holdouts : dict
        From :func:`holdout_experiments`.
    spend : DataFrame, optional
        ``date, channel, campaign_id, cost`` (already filtered or not; filtered here).
    periods : dict, optional
        ``{experiment_id: (first_date, last_date)}`` to restrict the spend rows.
    roi : DataFrame, optional
        The ROI stage's ``roi`` table (``model, channel, roi`` [, ``campaign_id``]).
    """
    rows = []
    for exp_id, h in holdouts.items():
        r = results[(results["experiment_id"] == exp_id) & ~results["is_control"].astype(bool)]
        conv = r[r["metric"] == "conversion"]
        rev = r[r["metric"] == "revenue"]
        if conv.empty or rev.empty:
            continue
        c, v = conv.iloc[0], rev.iloc[0]
        nt = float(c["n"])
        ctrl = results[(results["experiment_id"] == exp_id) & results["is_control"].astype(bool)
                       & (results["metric"] == "conversion")]
        cost = np.nan
        if spend is not None and len(spend):
            s = spend
            if h.get("channel"):
                s = s[s["channel"] == h["channel"]]
            if h.get("campaign_id"):
                s = s[s["campaign_id"].astype(str) == str(h["campaign_id"])]
            if periods and exp_id in periods:
                lo, hi = (pd.Timestamp(x) for x in periods[exp_id])
                dates = pd.to_datetime(s["date"])
                s = s[(dates >= lo) & (dates <= hi)]
            cost = float(s["cost"].sum()) if len(s) else np.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            inc_rev = (v["abs_lift"] * nt, v["abs_ci_low"] * nt, v["abs_ci_high"] * nt)
            roi_inc = tuple((x - cost) / cost if cost and np.isfinite(cost) else np.nan for x in inc_rev)
        base = {
            "experiment_id": exp_id, "channel": h.get("channel"), "campaign_id": h.get("campaign_id"),
            "n_treatment": int(nt), "n_control": int(ctrl["n"].iloc[0]) if len(ctrl) else None,
            "incremental_conversions": c["abs_lift"] * nt, "incremental_conversions_low": c["abs_ci_low"] * nt,
            "incremental_conversions_high": c["abs_ci_high"] * nt, "incremental_revenue": inc_rev[0],
            "incremental_revenue_low": inc_rev[1], "incremental_revenue_high": inc_rev[2], "cost": cost,
            "incremental_roi": roi_inc[0], "incremental_roi_low": roi_inc[1], "incremental_roi_high": roi_inc[2],
            "method": "lift x treated units (holdout = control); ROI = (incremental revenue - cost) / cost; "
                      "CIs from the lift CIs (cost fixed)",
        }
        matched = []
        if roi is not None and len(roi):
            if "campaign_id" in roi.columns and h.get("campaign_id"):
                m = roi[roi["campaign_id"].astype(str) == str(h["campaign_id"])]
                how = "campaign_id"
            else:
                m = roi[roi["channel"] == h.get("channel")] if h.get("channel") else roi.iloc[0:0]
                how = "channel (roi table has no campaign rows)"
            matched = [(row["model"], row["roi"], how) for _, row in m.iterrows()]
        if matched:
            for model, aroi, how in matched:
                rows.append({**base, "attributed_roi": aroi, "attribution_model": model, "attribution_match": how})
        else:
            rows.append({**base, "attributed_roi": np.nan, "attribution_model": None,
                         "attribution_match": "no roi table" if roi is None else "no matching roi row"})
    return pd.DataFrame(rows, columns=COLUMNS)
