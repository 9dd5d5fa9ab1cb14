"""RFM: recency, frequency, monetary per customer (Ibis), tie-safe 1-5 scores, named segments.

Definitions (as of ``as_of``, inclusive; purchase days as in :mod:`crmlib.segmentation.summary`):

* ``recency_days`` = whole days from the last purchase day to ``as_of`` (0 = bought on ``as_of``);
* ``frequency`` = number of distinct purchase days;
* ``monetary`` = net revenue (sum of all amounts up to ``as_of``; refunds subtract).

Scores (1 = worst, 5 = best; recency is scored so that *recent* is 5) come from the **mid-rank
percentile**: each customer gets ``u = (average rank - 0.5) / n`` in (0, 1) and the score
``floor(5 u) + 1``. Identical values share an average rank, hence a score (no ``rank(method="first")``
tie-breaking, which would put identical customers in different scores by row order), and scores are
monotone in the value. When a tied block is larger than a quintile - e.g. half the customers bought
once - the whole block lands in the score of its mid-point (frequency 1 then scores 2 or 3, not 1) and
some score may be empty; the edges never collapse into an error and the result does not depend on row
order. Customers with no purchase day up to ``as_of`` (refunds only) are not scored.
"""

from __future__ import annotations

from datetime import date

import ibis
import numpy as np
import pandas as pd
from scipy.stats import rankdata

from crmlib.i18n import N_
from crmlib.segmentation.summary import _as_date, daily_purchases

__all__ = [
    "SEGMENTS",
    "SEGMENT_MAP",
    "rfm_features",
    "tie_safe_scores",
    "score_rfm",
    "segment_table",
    "rf_grid",
]

#: The segment names, stored in English in the tables; pages show them through ``_()`` (the ``label`` kind).
SEGMENTS: list[str] = [
    N_("Champions"),
    N_("Loyal"),
    N_("Potential Loyalists"),
    N_("New"),
    N_("Promising"),
    N_("Need Attention"),
    N_("About to Sleep"),
    N_("At Risk"),
    N_("Can't Lose"),
    N_("Hibernating"),
]


def _segment_for(r: int, f: int) -> str:
    if r <= 2:
        return "Hibernating" if f <= 2 else ("At Risk" if f <= 4 else "Can't Lose")
    if r == 3:
        return "About to Sleep" if f <= 2 else ("Need Attention" if f == 3 else "Loyal")
    if f == 1:
        return "Promising" if r == 4 else "New"
    if f <= 3:
        return "Potential Loyalists"
    return "Loyal" if r == 4 else "Champions"


#: (r_score, f_score) -> segment name, for all 25 cells.
SEGMENT_MAP: dict[tuple[int, int], str] = {(r, f): _segment_for(r, f) for r in range(1, 6) for f in range(1, 6)}


def rfm_features(
    orders: ibis.Table,
    as_of: str | date,
    *,
    customer_col: str = "customer_key",
    ts_col: str = "order_ts",
    amount_col: str = "amount",
) -> ibis.Table:
    """Per-customer ``customer_key, last_purchase, recency_days, frequency, monetary`` as an Ibis expression."""
    end = ibis.literal(_as_date(as_of), type="date")
    days = daily_purchases(orders, customer_col=customer_col, ts_col=ts_col, amount_col=amount_col)
    days = days.filter(days.day <= end)
    agg = days.group_by("customer_key").agg(
        last_purchase=days.day.max(where=days.is_purchase),
        frequency=days.count(where=days.is_purchase).cast("int64"),
        monetary=days.day_total.sum(),
    )
    agg = agg.filter(agg.frequency > 0)
    return agg.select(
        "customer_key",
        "last_purchase",
        recency_days=end.delta(agg.last_purchase, unit="day").cast("int64"),
        frequency="frequency",
        monetary="monetary",
    ).order_by("customer_key")


#: Decimals net revenue is compared at for the monetary score (no currency has more; float noise is far below).
MONEY_DECIMALS = 6


def tie_safe_scores(values, n_scores: int = 5, higher_is_better: bool = True) -> np.ndarray:
    """Scores 1..n_scores from the mid-rank percentile; equal values always get equal scores.

    Parameters
    ----------
    values : array-like
        One value per customer.
    higher_is_better : bool
        False for recency in days (fewer days = better = higher score).
    """
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return np.zeros(0, dtype=np.int64)
    ranks = rankdata(v if higher_is_better else -v, method="average")
    u = (ranks - 0.5) / v.size
    return np.clip(np.floor(u * n_scores).astype(np.int64) + 1, 1, n_scores)


def score_rfm(features: pd.DataFrame) -> pd.DataFrame:
    """Add ``r_score, f_score, m_score, rfm_score`` ("RFM" digits) and ``segment`` to the features frame."""
    out = features.copy()
    out["r_score"] = tie_safe_scores(out["recency_days"], higher_is_better=False)
    out["f_score"] = tie_safe_scores(out["frequency"])
    # net revenue is a float sum, and its last bits follow the order the engine added the orders in: rounded
    # to MONEY_DECIMALS, customers who spent the same are tied on every run, as a tie-safe score needs
    out["m_score"] = tie_safe_scores(np.round(out["monetary"].to_numpy(dtype=float), MONEY_DECIMALS))
    out["rfm_score"] = out["r_score"].astype(str) + out["f_score"].astype(str) + out["m_score"].astype(str)
    out["segment"] = [SEGMENT_MAP[(r, f)] for r, f in zip(out["r_score"], out["f_score"])]
    return out


def segment_table(scored: pd.DataFrame) -> pd.DataFrame:
    """Size, share of customers, share of (net) revenue, and mean recency/frequency/monetary per segment.

    All ten segments are listed (empty ones with size 0), in :data:`SEGMENTS` order.
    """
    total_customers = len(scored)
    total_revenue = float(scored["monetary"].sum())
    grouped = scored.groupby("segment").agg(
        customers=("customer_key", "size"),
        revenue=("monetary", "sum"),
        mean_recency_days=("recency_days", "mean"),
        mean_frequency=("frequency", "mean"),
        mean_monetary=("monetary", "mean"),
    )
    table = grouped.reindex(SEGMENTS)
    table["customers"] = table["customers"].fillna(0).astype(int)
    table["revenue"] = table["revenue"].fillna(0.0)
    table["share_customers"] = table["customers"] / total_customers if total_customers else np.nan
    table["share_revenue"] = table["revenue"] / total_revenue if total_revenue else np.nan
    table.index.name = "segment"
    cols = [
        "customers",
        "share_customers",
        "revenue",
        "share_revenue",
        "mean_recency_days",
        "mean_frequency",
        "mean_monetary",
    ]
    return table[cols].reset_index()


def rf_grid(scored: pd.DataFrame, value: str | None = None) -> pd.DataFrame:
    """5 x 5 table of R score (rows, 5 = most recent first) by F score (columns): customer counts, or
    the mean of ``value`` per cell."""
    if value is None:
        grid = pd.crosstab(scored["r_score"], scored["f_score"])
    else:
        grid = scored.pivot_table(index="r_score", columns="f_score", values=value, aggfunc="mean")
    return grid.reindex(index=[5, 4, 3, 2, 1], columns=[1, 2, 3, 4, 5]).fillna(0 if value is None else np.nan)
