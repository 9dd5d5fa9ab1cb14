"""Churn-risk tiers (from P(alive)), rule-based loyalty tiers with a migration matrix, NPS/CSAT by segment.

* **Churn risk**: ``p_alive < thresholds["high"]`` -> "high", ``< thresholds["medium"]`` -> "medium",
  else "low" (defaults 0.3 and 0.7). The churn-warning list is the high/medium-risk customers ranked
  by what they would take with them (historical net revenue, then CLV).
* **Loyalty tiers**: a customer's tier is the highest tier whose ``min_spend`` is <= their net spend in
  the 12 months ending on ``as_of`` (days ``as_of - 364 .. as_of`` inclusive, i.e. 365 days), else
  "none". The tier a year earlier uses the 365 days ending ``as_of - 365``. Customers whose first
  purchase is after that earlier window's end are "new" in the earlier column.
* **NPS** per segment: each customer's latest survey answer with an NPS score up to ``as_of``;
  NPS = share of promoters (9-10) - share of detractors (0-6), reported as a fraction in [-1, 1]. Its
  standard error is the multinomial one, ``sqrt((P + D - (P - D)^2) / n)``, and the CI is Wald
  ``NPS +/- z se`` clipped to [-1, 1]. **CSAT** per segment: mean score (1-5) with a t interval, and
  the share of 4-5 answers with a Wilson interval (:func:`crmlib.abtest.stats.proportion_confint`).

Steps the data cannot support raise :class:`~crmlib.status.CannotCompute`: a migration matrix without
customers, NPS or CSAT when no customer answered the question.
"""

from __future__ import annotations

from datetime import date, timedelta

import ibis
import numpy as np
import pandas as pd
from scipy import stats

from crmlib.abtest.stats import proportion_confint
from crmlib.i18n import N_, _
from crmlib.params import schema_default
from crmlib.present import fmt_count
from crmlib.segmentation.summary import _as_date, daily_purchases
from crmlib.status import CannotCompute

__all__ = [
    "churn_risk_tier",
    "churn_warning_list",
    "assign_loyalty_tier",
    "loyalty_spend",
    "loyalty_tiers",
    "migration_matrix",
    "nps_by_segment",
    "csat_by_segment",
    "latest_survey_answers",
]

#: Churn-risk tiers, most at risk first; stored in English, shown through ``_()`` (the ``label`` kind).
RISK_ORDER = [N_("high"), N_("medium"), N_("low")]
#: Loyalty tier words the pipeline adds to the params' tiers (below the lowest tier; no purchase a year before).
NO_TIER, NEW_CUSTOMER = N_("none"), N_("new")
#: Group names the survey tables add to the RFM segments.
UNSEGMENTED, ALL_ANSWERS = N_("unsegmented"), N_("all")


def churn_risk_tier(p_alive, thresholds: dict[str, float] | None = None) -> np.ndarray:
    """ "high" when p_alive < thresholds["high"], "medium" when < thresholds["medium"], else "low".

    A threshold not given is the schema's ``segmentation.churn.thresholds`` default (:mod:`crmlib.params`).
    """
    th = {**schema_default("segmentation.churn.thresholds"), **(thresholds or {})}
    if not 0 <= th["high"] <= th["medium"] <= 1:
        raise ValueError(f"churn thresholds must satisfy 0 <= high <= medium <= 1, got {th}")
    p = np.asarray(p_alive, float)
    return np.where(p < th["high"], "high", np.where(p < th["medium"], "medium", "low"))


def churn_warning_list(clv: pd.DataFrame, top: int = schema_default("segmentation.churn.warning_top"),
                       value_col: str = "revenue") -> pd.DataFrame:
    """High/medium-risk customers ranked by ``value_col`` (then CLV), most valuable first.

    ``clv`` needs ``customer_key, p_alive, churn_risk, clv`` and ``value_col``.
    """
    at_risk = clv[clv["churn_risk"].isin(["high", "medium"])]
    sort_cols = [c for c in (value_col, "clv") if c in at_risk.columns]
    out = at_risk.sort_values(sort_cols + ["customer_key"], ascending=[False] * len(sort_cols) + [True]).head(top)
    cols = [c for c in ["customer_key", "churn_risk", "p_alive", value_col, "frequency", "clv"] if c in out.columns]
    return out[cols].reset_index(drop=True)


def _sorted_tiers(tiers: list[dict] | None) -> list[dict]:
    # no tiers given: the schema's ``segmentation.loyalty.tiers`` default
    tiers = schema_default("segmentation.loyalty.tiers") if tiers is None else tiers
    out = sorted(
        ({"name": str(t["name"]), "min_spend": float(t["min_spend"])} for t in tiers), key=lambda t: t["min_spend"]
    )
    if len({t["name"] for t in out}) != len(out):
        raise ValueError("loyalty tier names must be unique")
    return out


def assign_loyalty_tier(spend, tiers: list[dict] | None = None) -> np.ndarray:
    """Highest tier whose min_spend <= spend; "none" below the lowest threshold (or for NaN spend)."""
    ordered = _sorted_tiers(tiers)
    s = np.asarray(spend, float)
    out = np.full(s.shape, NO_TIER, dtype=object)
    for tier in ordered:
        out[s >= tier["min_spend"]] = tier["name"]
    return out


def loyalty_spend(orders: ibis.Table, as_of: str | date) -> ibis.Table:
    """Per customer (Ibis): ``spend_12m`` (365 days to as_of), ``spend_prev_12m`` (the 365 days before),
    ``first_purchase``. Net of refunds."""
    end = _as_date(as_of)
    start_now = end - timedelta(days=364)
    start_prev = end - timedelta(days=729)
    end_prev = end - timedelta(days=365)
    days = daily_purchases(orders)
    days = days.filter(days.day <= ibis.literal(end, type="date"))
    in_now = days.day >= ibis.literal(start_now, type="date")
    in_prev = (days.day >= ibis.literal(start_prev, type="date")) & (days.day <= ibis.literal(end_prev, type="date"))
    agg = days.group_by("customer_key").agg(
        spend_12m=days.day_total.sum(where=in_now),
        spend_prev_12m=days.day_total.sum(where=in_prev),
        first_purchase=days.day.min(where=days.is_purchase),
    )
    return agg.mutate(spend_12m=agg.spend_12m.fill_null(0.0), spend_prev_12m=agg.spend_prev_12m.fill_null(0.0))


def loyalty_tiers(spend: pd.DataFrame, as_of: str | date, tiers: list[dict] | None = None) -> pd.DataFrame:
    """Add ``tier_now`` and ``tier_year_before`` to the :func:`loyalty_spend` frame."""
    out = spend.copy()
    end_prev = pd.Timestamp(_as_date(as_of) - timedelta(days=365))
    out["tier_now"] = assign_loyalty_tier(out["spend_12m"], tiers)
    before = assign_loyalty_tier(out["spend_prev_12m"], tiers)
    is_new = pd.to_datetime(out["first_purchase"]).isna() | (pd.to_datetime(out["first_purchase"]) > end_prev)
    out["tier_year_before"] = np.where(is_new, NEW_CUSTOMER, before)
    return out


def migration_matrix(tiered: pd.DataFrame, tiers: list[dict] | None = None, normalize: bool = False) -> pd.DataFrame:
    """Customers by tier a year before ``as_of`` (rows) and now (columns); ``normalize`` gives row shares.

    Every customer "new" (all first bought within the last 12 months) is an answer, not a failure: the
    matrix then has one row.

    Raises
    ------
    CannotCompute
        When there are no customers with purchases up to ``as_of``.
    """
    if tiered.empty:
        raise CannotCompute(_("loyalty migration needs customers with purchases up to as_of; this data has none."))
    names = [t["name"] for t in _sorted_tiers(tiers)][::-1]
    rows = [NEW_CUSTOMER] + names + [NO_TIER]
    cols = names + [NO_TIER]
    table = pd.crosstab(tiered["tier_year_before"], tiered["tier_now"]).reindex(index=rows, columns=cols, fill_value=0)
    table.index.name = N_("tier a year before")
    table.columns.name = N_("tier now")
    if normalize:
        table = table.div(table.sum(axis=1).replace(0, np.nan), axis=0)
    return table


def latest_survey_answers(surveys: ibis.Table, column: str, as_of: str | date) -> ibis.Table:
    """Each known customer's latest answer to ``column`` up to the end of ``as_of`` (Ibis): ``customer_key,
    response_ts, <column>``, at most one row per customer, so the NPS and CSAT estimators never need the
    whole surveys table in pandas.

    Of two answers at one time the one from the later source row counts, so the choice is the same on
    every engine. A table without ``column`` gives no rows.
    """
    if column not in surveys.columns:
        return surveys.select("customer_key", "response_ts", **{column: ibis.null("float64")}).limit(0)
    end = ibis.literal(_as_date(as_of) + timedelta(days=1), type="date").cast("timestamp")
    s = surveys.filter(surveys[column].notnull(), surveys.customer_key.notnull(), surveys.response_ts < end)
    newest_first = [ibis.desc(s.response_ts)] + [ibis.desc(s[c]) for c in ("source", "row_number") if c in s.columns]
    s = s.mutate(_newest=ibis.row_number().over(group_by=s.customer_key, order_by=newest_first))
    latest = s.filter(s._newest == 0)
    return latest.select("customer_key", "response_ts", **{column: latest[column].cast("float64")})


def _latest_answers(surveys: pd.DataFrame, column: str, as_of: str | date | None) -> pd.DataFrame:
    s = surveys.dropna(subset=[column, "customer_key"])
    if as_of is not None:
        s = s[pd.to_datetime(s["response_ts"]) < pd.Timestamp(_as_date(as_of)) + pd.Timedelta(days=1)]
    return s.sort_values(["customer_key", "response_ts"]).groupby("customer_key", as_index=False).tail(1)


def _per_segment(surveys: pd.DataFrame, segments: pd.DataFrame, column: str, as_of, segment_col: str,
                 one, survey_rows: int | None = None) -> pd.DataFrame:
    """``one(answers)`` for each segment's latest answers in ``column``, plus an "all" row.

    Customers without a segment are grouped as "unsegmented". ``survey_rows``: the size of the whole
    surveys table, for the message, when ``surveys`` holds only its latest answers.
    """
    latest = _latest_answers(surveys, column, as_of)
    if latest.empty:
        question = {"nps_score": "NPS (nps_score)", "csat": "CSAT (csat)"}.get(column, column)
        raise CannotCompute(_("{question} needs survey answers from known customers up to as_of; the surveys "
                              "({rows} rows) have none with a score.").format(question=question,
                                                                             rows=fmt_count(len(surveys) if survey_rows is None else survey_rows)))
    merged = latest.merge(segments[["customer_key", segment_col]], on="customer_key", how="left")
    merged[segment_col] = merged[segment_col].fillna(UNSEGMENTED)
    rows = [{segment_col: seg, **one(g)} for seg, g in merged.groupby(segment_col)]
    if len(merged):
        rows.append({segment_col: ALL_ANSWERS, **one(merged)})
    return pd.DataFrame(rows)


def nps_by_segment(
    surveys: pd.DataFrame,
    segments: pd.DataFrame,
    *,
    as_of: str | date | None = None,
    level: float = 0.95,
    segment_col: str = "segment",
    survey_rows: int | None = None,
) -> pd.DataFrame:
    """NPS per segment (fraction in [-1, 1]) with a multinomial-variance Wald CI; see the module docstring.

    ``surveys``: customer_key, response_ts, nps_score (all answers, or only the latest per customer from
    :func:`latest_survey_answers`). ``segments``: customer_key and ``segment_col``. Customers without a
    segment are grouped as "unsegmented". An "all" row is appended. ``survey_rows``: the whole surveys
    table's size, named when no answer counts (default ``len(surveys)``).
    """
    z = stats.norm.ppf(0.5 + level / 2)

    def one(group: pd.DataFrame) -> dict:
        score = group["nps_score"].astype(float)
        n = len(score)
        promoters = float((score >= 9).mean())
        detractors = float((score <= 6).mean())
        nps = promoters - detractors
        se = np.sqrt(max(promoters + detractors - nps**2, 0.0) / n)
        return {
            "n": n,
            "promoters": promoters,
            "passives": 1 - promoters - detractors,
            "detractors": detractors,
            "nps": nps,
            "se": se,
            "ci_low": max(-1.0, nps - z * se),
            "ci_high": min(1.0, nps + z * se),
        }

    out = _per_segment(surveys, segments, "nps_score", as_of, segment_col, one, survey_rows)
    out.attrs["method"] = (
        f"NPS = P(9-10) - P(0-6); Wald {level:.0%} CI with multinomial variance; latest answer per customer"
    )
    return out


def csat_by_segment(
    surveys: pd.DataFrame,
    segments: pd.DataFrame,
    *,
    as_of: str | date | None = None,
    level: float = 0.95,
    segment_col: str = "segment",
    survey_rows: int | None = None,
) -> pd.DataFrame:
    """Mean CSAT (1-5) with a t CI and the share of 4-5 answers with a Wilson CI, per segment (+ "all").

    ``surveys`` and ``survey_rows`` as in :func:`nps_by_segment`."""

    def one(group: pd.DataFrame) -> dict:
        score = group["csat"].astype(float).to_numpy()
        n = score.size
        mean = float(score.mean())
        sd = float(score.std(ddof=1)) if n > 1 else np.nan
        half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n) if n > 1 else np.nan
        satisfied = int((score >= 4).sum())
        share_low, share_high = proportion_confint(satisfied, n, alpha=1 - level, method="wilson")
        return {
            "n": n,
            "mean_csat": mean,
            "mean_ci_low": mean - half,
            "mean_ci_high": mean + half,
            "share_satisfied": satisfied / n,
            "share_ci_low": float(share_low),
            "share_ci_high": float(share_high),
        }

    out = _per_segment(surveys, segments, "csat", as_of, segment_col, one, survey_rows)
    out.attrs["method"] = f"mean with t {level:.0%} CI; share of 4-5 with Wilson CI; latest answer per customer"
    return out
