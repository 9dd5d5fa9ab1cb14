"""Per-customer repeat-purchase summaries (x, t_x, T, monetary) computed in the engine (Ibis).

Conventions (stated on every output that uses them):

* **Purchase day.** All orders of a customer on one calendar day (of the naive local ``order_ts``) are
  one purchase whose value is the day's net total (refunds, i.e. negative amounts, subtract). A day
  with refunds only (every amount negative) is *not* a purchase: it does not count in x and its amount
  is not in the mean spend. A day with at least one non-negative order is a purchase even when its net
  total is <= 0 (Gamma-Gamma then skips customers whose mean repeat spend is not positive).
* **Times** are whole days between calendar dates, divided by the length of the time unit:
  D = 1 day, W = 7 days, M = 365.25/12 days. ``t_x = (last purchase day - first purchase day)`` and
  ``T = (calibration end - first purchase day)``. The calibration end (``as_of``) is inclusive: orders on
  that day belong to the calibration period, and a purchase day and the end of observation are placed
  at the same time of day, so a customer whose first purchase is on ``as_of`` has T = 0. This is the
  convention of the published CDNOW results (a customer first buying on 1997-01-01 has T = 272/7 =
  38.86 weeks at a 1997-09-30 calibration end).
* **frequency x** = number of purchase days after the first; **monetary_value** = mean net day-total of
  those repeat purchase days (first purchase excluded; 0 when x = 0, lifetimes' convention).
* **Holdout** (optional): purchase days in (as_of, holdout_end], counted for the calibration customers;
  its length is ``(holdout_end - as_of)`` days in the time unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import ibis
import numpy as np
import pandas as pd

from crmlib.params import schema_default

__all__ = [
    "TIME_UNIT_DAYS",
    "time_unit_days",
    "daily_purchases",
    "repeat_purchase_summary",
    "HoldoutEvaluation",
    "calibration_holdout_evaluation",
]

TIME_UNIT_DAYS: dict[str, float] = {"D": 1.0, "W": 7.0, "M": 365.25 / 12.0}


def time_unit_days(time_unit: str) -> float:
    """Length of a time unit in days (D = 1, W = 7, M = 365.25/12)."""
    try:
        return TIME_UNIT_DAYS[time_unit.upper()]
    except (KeyError, AttributeError):
        raise ValueError(f"time_unit must be one of D, W, M; got {time_unit!r}") from None


def _as_date(value: str | date | pd.Timestamp) -> date:
    return pd.Timestamp(value).date()


def daily_purchases(
    orders: ibis.Table,
    *,
    customer_col: str = "customer_key",
    ts_col: str = "order_ts",
    amount_col: str = "amount",
) -> ibis.Table:
    """One row per customer and calendar day: ``customer_key, day, day_total, n_orders, is_purchase``.

    ``day_total`` is the net sum of the day's amounts; ``is_purchase`` is true when the day has at least
    one order with a non-negative amount (a day of refunds only is not a purchase; zero-value orders,
    e.g. free items, are).
    Rows without a customer key, timestamp or amount are ignored.
    """
    clean = orders.filter(orders[customer_col].notnull() & orders[ts_col].notnull() & orders[amount_col].notnull())
    per_day = clean.group_by(
        customer_key=clean[customer_col].cast("string"), day=clean[ts_col].cast("timestamp").date()
    ).agg(
        day_total=clean[amount_col].cast("float64").sum(),
        n_orders=clean.count(),
        n_non_refund=clean.count(where=clean[amount_col] >= 0),
    )
    return per_day.mutate(is_purchase=per_day.n_non_refund > 0).drop("n_non_refund")


def _days_between(later, earlier):
    return later.delta(earlier, unit="day").cast("float64")


def repeat_purchase_summary(
    orders: ibis.Table,
    as_of: str | date,
    *,
    time_unit: str = schema_default("segmentation.clv.time_unit"),
    holdout_end: str | date | None = None,
    customer_col: str = "customer_key",
    ts_col: str = "order_ts",
    amount_col: str = "amount",
) -> ibis.Table:
    """Per-customer calibration summary as an Ibis expression (see the module docstring).

    Parameters
    ----------
    orders : ibis.Table
        Orders with a customer key, a naive timestamp and an amount (negative = refund).
    as_of : str or date
        Calibration end, inclusive.
    time_unit : {"D", "W", "M"}
    holdout_end : str or date, optional
        End (inclusive) of the holdout period that starts the day after ``as_of``.

    Returns
    -------
    ibis.Table
        ``customer_key, first_purchase, last_purchase, frequency, recency, T, monetary_value,
        calibration_revenue`` (net, refund-only days included)
        (+ ``frequency_holdout, monetary_value_holdout, duration_holdout`` when
        ``holdout_end`` is given). ``recency`` is t_x (lifetimes' naming).
    """
    unit = time_unit_days(time_unit)
    end = ibis.literal(_as_date(as_of), type="date")
    if holdout_end is not None and _as_date(holdout_end) <= _as_date(as_of):
        raise ValueError("holdout_end must be after as_of")
    days = daily_purchases(orders, customer_col=customer_col, ts_col=ts_col, amount_col=amount_col)
    # one pass over the customer-days: the first purchase day comes from a window, so that every sum below
    # is one aggregation of the same rows (no join of the days with themselves)
    is_cal_purchase = days.is_purchase & (days.day <= end)
    days = days.mutate(first_purchase=ibis.ifelse(is_cal_purchase, days.day, ibis.null("date")).min().over(
        ibis.window(group_by=days.customer_key)))
    days = days.filter(days.first_purchase.notnull())  # customers with a purchase up to as_of
    is_cal_purchase = days.is_purchase & (days.day <= end)
    aggregates = dict(
        first_purchase=days.first_purchase.min(),
        last_purchase=days.day.max(where=is_cal_purchase),
        purchase_days=days.count(where=is_cal_purchase),
        repeat_total=days.day_total.sum(where=is_cal_purchase & (days.day > days.first_purchase)),
        # net revenue includes refund-only days (they are not purchases but they do cost money)
        calibration_revenue=days.day_total.sum(where=days.day <= end),
    )
    if holdout_end is not None:
        is_hold = days.is_purchase & (days.day > end) & (days.day <= ibis.literal(_as_date(holdout_end), type="date"))
        aggregates.update(frequency_holdout=days.count(where=is_hold), holdout_revenue=days.day_total.sum(where=is_hold))
    per_customer = days.group_by("customer_key").agg(**aggregates)
    frequency = (per_customer.purchase_days - 1).cast("int64")
    out = per_customer.mutate(
        frequency=frequency,
        recency=_days_between(per_customer.last_purchase, per_customer.first_purchase) / unit,
        T=_days_between(end, per_customer.first_purchase) / unit,
        monetary_value=ibis.ifelse(frequency > 0, per_customer.repeat_total / frequency.cast("float64"), 0.0),
    )
    cols = [
        "customer_key",
        "first_purchase",
        "last_purchase",
        "frequency",
        "recency",
        "T",
        "monetary_value",
        "calibration_revenue",
    ]
    if holdout_end is None:
        out = out.select(*cols)
    else:
        fh = out.frequency_holdout.cast("int64")
        duration = (_as_date(holdout_end) - _as_date(as_of)).days / unit
        out = out.select(
            *cols,
            frequency_holdout=fh,
            monetary_value_holdout=ibis.ifelse(fh > 0, out.holdout_revenue / fh.cast("float64"), 0.0),
            duration_holdout=ibis.literal(duration, type="float64"),
        )
    return out.order_by("customer_key")


@dataclass
class HoldoutEvaluation:
    """Calibration/holdout comparison of actual vs predicted repeat purchases.

    ``table`` has one row per calibration frequency bucket (0, 1, ..., ``max_bucket - 1``,
    ``"max_bucket+"``) plus a ``total`` row: customers, actual and predicted totals and means.
    ``mae`` / ``rmse`` are per-customer errors of holdout repeat purchases.
    """

    table: pd.DataFrame
    actual_total: float
    predicted_total: float
    mae: float
    rmse: float
    n_customers: int
    time_unit: str
    duration_holdout: float
    calibration_end: str | None = None
    holdout_end: str | None = None
    extra: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"HoldoutEvaluation(n={self.n_customers:,}, actual={self.actual_total:,.0f}, "
            f"predicted={self.predicted_total:,.1f}, MAE={self.mae:.4f}, RMSE={self.rmse:.4f}, "
            f"holdout={self.duration_holdout:g} {self.time_unit} after {self.calibration_end})"
        )


def calibration_holdout_evaluation(
    model,
    summary: pd.DataFrame,
    *,
    time_unit: str = schema_default("segmentation.clv.time_unit"),
    max_bucket: int = 7,
    calibration_end: str | None = None,
    holdout_end: str | None = None,
) -> HoldoutEvaluation:
    """Actual vs predicted holdout repeat purchases by calibration frequency (0 .. max_bucket+).

    ``summary`` is the pandas result of :func:`repeat_purchase_summary` with a holdout; ``model`` a
    fitted :class:`~crmlib.segmentation.bgnbd.BetaGeoFitter`. Predictions are the conditional
    expectations E[Y(duration) | x, t_x, T].
    """
    duration = float(summary["duration_holdout"].iloc[0])
    predicted = model.conditional_expected_number_of_purchases_up_to_time(
        duration, summary["frequency"].to_numpy(), summary["recency"].to_numpy(), summary["T"].to_numpy()
    )
    actual = summary["frequency_holdout"].to_numpy(dtype=float)
    bucket = np.minimum(summary["frequency"].to_numpy(), max_bucket)
    frame = pd.DataFrame({"bucket": bucket, "actual": actual, "predicted": predicted})
    grouped = frame.groupby("bucket").agg(
        customers=("actual", "size"),
        actual_total=("actual", "sum"),
        predicted_total=("predicted", "sum"),
        actual_mean=("actual", "mean"),
        predicted_mean=("predicted", "mean"),
    )
    grouped.index = [f"{max_bucket}+" if b == max_bucket else str(int(b)) for b in grouped.index]
    grouped.index.name = "calibration_frequency"
    total = pd.DataFrame(
        {
            "customers": [len(frame)],
            "actual_total": [actual.sum()],
            "predicted_total": [predicted.sum()],
            "actual_mean": [actual.mean()],
            "predicted_mean": [predicted.mean()],
        },
        index=pd.Index(["total"], name="calibration_frequency"),
    )
    table = pd.concat([grouped, total])
    table.attrs.update({"time_unit": time_unit, "calibration_end": calibration_end, "holdout_end": holdout_end})
    err = predicted - actual
    return HoldoutEvaluation(
        table=table,
        actual_total=float(actual.sum()),
        predicted_total=float(predicted.sum()),
        mae=float(np.mean(np.abs(err))),
        rmse=float(np.sqrt(np.mean(err**2))),
        n_customers=len(frame),
        time_unit=time_unit,
        duration_holdout=duration,
        calibration_end=calibration_end,
        holdout_end=holdout_end,
    )
