"""Experiment metrics as Ibis expressions: per-unit outcomes and per-arm sufficient statistics.

All row-level work (dedup of assignments, window joins against orders and events, capping,
aggregation) is an Ibis expression executed by the engine; only per experiment x variant (x segment,
x day) sums reach pandas.

Definitions (the randomization unit is ``customer_key``)
-------------------------------------------------------
* **Assignment**: a unit's earliest row per experiment (its variant at that time). Units seen in more
  than one variant keep their first assignment (intention to treat); their count is reported.
* **Window**: outcomes count orders with ``assigned_ts <= order_ts < assigned_ts + window_days``; the
  **pre-period** covariate counts ``assigned_ts - window_days <= order_ts < assigned_ts``.
* **Complete windows only**: with ``as_of`` given, only units whose window has closed by the end of
  that day are analysed, so a daily re-run never mixes partial windows with full ones.
* ``conversion``: 1 if the unit placed any order with ``amount > 0`` in the window.
  ``revenue``: net sum of ``amount`` (refunds are negative). ``orders``: orders with ``amount > 0``.
  ``revenue_per_session``: ratio metric Σrevenue / Σsessions over units (delta method later). Sessions
  are distinct ``session_id`` values when the events table has that column; else events of
  ``session_event_types``; else distinct (unit, calendar day) with any event ("visit days"). The
  returned ``session_definition`` says which.
* **Winsorization** (optional): revenue and orders are capped at the ``q`` quantile of all units of
  the experiment, both arms pooled (``quantile_cont`` = numpy ``linear`` = SQL PERCENTILE_CONT), so
  the cap cannot depend on the treatment. Pre-period values are capped by their own pooled cap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import ibis
import numpy as np
import pandas as pd

from crmlib.params import schema_default

__all__ = [
    "MEAN_METRICS",
    "RATIO_METRICS",
    "ALL_METRICS",
    "assigned_units",
    "unit_outcomes",
    "sufficient_statistics",
    "daily_cumulative_statistics",
    "winsorization_caps",
    "winsorization_summary",
]

MEAN_METRICS = ("conversion", "revenue", "orders")
RATIO_METRICS = {"revenue_per_session": ("revenue", "sessions")}
ALL_METRICS = MEAN_METRICS + tuple(RATIO_METRICS)
SUFFICIENT_COLUMNS = ["n", "sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy", "sum_den", "sum_den2", "sum_yden"]


def assigned_units(experiments: ibis.Table) -> ibis.Table:
    """One row per (experiment_id, customer_key): first assignment, its variant and is_control."""
    e = experiments.filter(experiments.customer_key.notnull())
    cols = e.columns
    aggs = {
        "assigned_ts": e.assigned_ts.min(),
        "variant": e.variant.argmin(e.assigned_ts),
        "n_variants_seen": e.variant.nunique(),
    }
    if "is_control" in cols:
        aggs["is_control"] = e.is_control.argmin(e.assigned_ts)
    else:
        aggs["is_control"] = ibis.null().cast("boolean")
    return e.group_by(["experiment_id", "customer_key"]).aggregate(**aggs)


def _as_of_end(as_of) -> dt.datetime | None:
    if as_of is None:
        return None
    d = pd.Timestamp(as_of).normalize() + pd.Timedelta(days=1)
    return d.to_pydatetime()


def unit_outcomes(
    experiments: ibis.Table,
    orders: ibis.Table,
    events: ibis.Table | None = None,
    *,
    window_days: int = schema_default("ab_tests.window_days"),
    as_of=None,
    session_event_types: Sequence[str] = ("session_start", "session"),
    segments: ibis.Table | None = None,
) -> tuple[ibis.Table, str]:
    """Per-unit outcomes and pre-period covariates (an Ibis expression).

    Parameters
    ----------
    experiments : ibis.Table
        ``experiment_id, customer_key, variant, assigned_ts[, is_control]``.
    orders : ibis.Table
        ``customer_key, order_ts, amount``.
    events : ibis.Table, optional
        ``customer_key, event_ts, event_type``; without it sessions are 0 and the ratio metric is
        unavailable.
    window_days : int
        Outcome window after assignment, and pre-period length before it.
    as_of : date-like, optional
        Analysis date (inclusive); units whose window ends after it are left out.
    session_event_types : sequence of str
        Event types that start a session.
    segments : ibis.Table, optional
        ``customer_key, segment``; units without a segment get ``"(none)"``.

    Returns
    -------
    table : ibis.Table
        ``experiment_id, customer_key, variant, is_control, assigned_ts, assigned_date, n_variants_seen,
        [segment], conversion, revenue, orders, sessions, pre_conversion, pre_revenue, pre_orders,
        pre_sessions``.
    session_definition : str
    """
    window = ibis.interval(days=int(window_days))
    units = assigned_units(experiments)
    end = _as_of_end(as_of)
    if end is not None:
        units = units.filter(units.assigned_ts + window <= ibis.literal(end))

    o = orders.filter(orders.customer_key.notnull()).select(
        o_key=orders.customer_key, order_ts=orders.order_ts, amount=orders.amount.cast("float64"))
    j = units.join(o, [units.customer_key == o.o_key, o.order_ts >= units.assigned_ts - window,
                       o.order_ts < units.assigned_ts + window])
    post = j.order_ts >= j.assigned_ts
    pre = ~post
    positive = j.amount > 0
    order_sums = j.group_by(["experiment_id", "customer_key"]).aggregate(
        revenue=j.amount.sum(where=post),
        orders=j.amount.count(where=post & positive),
        pre_revenue=j.amount.sum(where=pre),
        pre_orders=j.amount.count(where=pre & positive),
    ).rename(o_exp="experiment_id", o_ck="customer_key")

    out = units.left_join(order_sums, [units.experiment_id == order_sums.o_exp,
                                       units.customer_key == order_sums.o_ck]).drop("o_exp", "o_ck")

    session_definition = "no events table: sessions = 0"
    if events is not None:
        ev = events.filter(events.customer_key.notnull())
        types = list(session_event_types)
        if "session_id" in ev.columns:
            ev_s = ev.filter(ev.session_id.notnull()).select(
                e_key=ev.customer_key, event_ts=ev.event_ts, session=ev.session_id.cast("string"))
            session_definition = "sessions = distinct session_id"
        else:
            typed = ev.filter(ev.event_type.isin(types)) if types else ev.limit(0)
            if types and int(typed.count().to_pyarrow().as_py()) > 0:
                # every event its own session: numbered within its customer (sessions are counted per
                # customer), so Spark need not pull all events into one partition to number them
                number = ibis.row_number().over(group_by=typed.customer_key, order_by=typed.event_ts)
                ev_s = typed.select(e_key=typed.customer_key, event_ts=typed.event_ts, session=number.cast("string"))
                session_definition = f"sessions = events of type {types}"
            else:
                # one "visit day" per unit and calendar day with any event
                day = ev.event_ts.date()
                ev_s = ev.select(e_key=ev.customer_key, event_ts=day.cast("timestamp"), session=day.cast("string"))
                session_definition = "sessions = distinct visit days (no session ids or session events found)"
        js = units.join(ev_s, [units.customer_key == ev_s.e_key, ev_s.event_ts >= units.assigned_ts - window,
                               ev_s.event_ts < units.assigned_ts + window])
        spost = js.event_ts >= js.assigned_ts
        sess = js.group_by(["experiment_id", "customer_key"]).aggregate(
            sessions=js.session.nunique(where=spost), pre_sessions=js.session.nunique(where=~spost),
        ).rename(s_exp="experiment_id", s_ck="customer_key")
        out = out.left_join(sess, [out.experiment_id == sess.s_exp, out.customer_key == sess.s_ck]).drop(
            "s_exp", "s_ck")
    else:
        out = out.mutate(sessions=ibis.literal(0, "int64"), pre_sessions=ibis.literal(0, "int64"))

    out = out.mutate(
        revenue=out.revenue.fill_null(0.0), orders=out.orders.fill_null(0),
        pre_revenue=out.pre_revenue.fill_null(0.0), pre_orders=out.pre_orders.fill_null(0),
        sessions=out.sessions.fill_null(0), pre_sessions=out.pre_sessions.fill_null(0),
    )
    out = out.mutate(
        conversion=(out.orders > 0).cast("int64"), pre_conversion=(out.pre_orders > 0).cast("int64"),
        assigned_date=out.assigned_ts.date(),
    )
    if segments is not None:
        seg = segments.select(g_key=segments.customer_key, segment=segments.segment.cast("string"))
        out = out.left_join(seg, out.customer_key == seg.g_key).drop("g_key")
        out = out.mutate(segment=out.segment.fill_null("(none)"))
    return out, session_definition


def winsorization_caps(outcomes: ibis.Table, quantile: float) -> ibis.Table:
    """Per-experiment caps at the pooled ``quantile`` (``quantile_cont``; both arms together)."""
    return outcomes.group_by("experiment_id").aggregate(
        cap_revenue=outcomes.revenue.quantile(quantile),
        cap_orders=outcomes.orders.cast("float64").quantile(quantile),
        cap_pre_revenue=outcomes.pre_revenue.quantile(quantile),
        cap_pre_orders=outcomes.pre_orders.cast("float64").quantile(quantile),
    )


def winsorization_summary(outcomes: ibis.Table, quantile: float) -> pd.DataFrame:
    """Cap value and number of units capped per experiment (revenue and orders), for the report."""
    caps = winsorization_caps(outcomes, quantile).rename(c_exp="experiment_id")
    j = outcomes.join(caps, outcomes.experiment_id == caps.c_exp)
    agg = j.group_by("experiment_id").aggregate(
        quantile=ibis.literal(float(quantile)),
        cap_revenue=j.cap_revenue.max(), n_capped_revenue=(j.revenue > j.cap_revenue).sum(),
        cap_orders=j.cap_orders.max(), n_capped_orders=(j.orders > j.cap_orders).sum(),
        n_units=j.count(),
    )
    return agg.to_pandas().sort_values("experiment_id").reset_index(drop=True)


def _apply_caps(outcomes: ibis.Table, quantile: float) -> ibis.Table:
    caps = winsorization_caps(outcomes, quantile).rename(c_exp="experiment_id")
    j = outcomes.join(caps, outcomes.experiment_id == caps.c_exp)
    return j.mutate(
        revenue=ibis.least(j.revenue, j.cap_revenue),
        orders=ibis.least(j.orders.cast("float64"), j.cap_orders),
        pre_revenue=ibis.least(j.pre_revenue, j.cap_pre_revenue),
        pre_orders=ibis.least(j.pre_orders.cast("float64"), j.cap_pre_orders),
    ).drop("c_exp")


def _sum_aggs(t: ibis.Table) -> dict:
    aggs = {"n": t.count(), "is_control": t.is_control.any()}
    for m in MEAN_METRICS:
        y, x = t[m].cast("float64"), t[f"pre_{m}"].cast("float64")
        aggs |= {f"{m}__sum_y": y.sum(), f"{m}__sum_y2": (y * y).sum(), f"{m}__sum_x": x.sum(),
                 f"{m}__sum_x2": (x * x).sum(), f"{m}__sum_xy": (x * y).sum()}
    for m, (num, den) in RATIO_METRICS.items():
        y, d = t[num].cast("float64"), t[den].cast("float64")
        aggs |= {f"{m}__sum_y": y.sum(), f"{m}__sum_y2": (y * y).sum(), f"{m}__sum_den": d.sum(),
                 f"{m}__sum_den2": (d * d).sum(), f"{m}__sum_yden": (y * d).sum()}
    return aggs


def _to_long(wide: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    frames = []
    for m in ALL_METRICS:
        part = wide[keys + ["n", "is_control"]].copy()
        part.insert(len(keys), "metric", m)
        for c in SUFFICIENT_COLUMNS[1:]:
            col = f"{m}__{c}"
            part[c] = wide[col].astype(float) if col in wide else np.nan
        part["metric_type"] = "ratio" if m in RATIO_METRICS else (
            "binary" if m == "conversion" else "mean")
        frames.append(part)
    out = pd.concat(frames, ignore_index=True)
    out["n"] = out["n"].astype("int64")
    return out.sort_values(keys[:1] + ["metric"] + keys[1:], kind="mergesort").reset_index(drop=True)


def sufficient_statistics(
    outcomes: ibis.Table, *, by_segment: bool = False, winsorize: float | None = None
) -> pd.DataFrame:
    """Per experiment x variant (x segment) x metric sufficient statistics (long format).

    Parameters
    ----------
    outcomes : ibis.Table
        From :func:`unit_outcomes`.
    by_segment : bool
        Also group by ``segment``.
    winsorize : float, optional
        Pooled cap quantile for revenue and orders (e.g. 0.99).

    Returns
    -------
    DataFrame
        ``experiment_id, metric, variant, [segment], n, is_control, sum_y, sum_y2, sum_x, sum_x2,
        sum_xy, sum_den, sum_den2, sum_yden, metric_type``. For mean metrics ``y`` is the outcome and
        ``x`` its pre-period value; for ratio metrics ``y`` is the numerator and ``den`` the
        denominator per unit (``x`` columns are NaN).
    """
    t = _apply_caps(outcomes, winsorize) if winsorize else outcomes
    keys = ["experiment_id", "variant"] + (["segment"] if by_segment else [])
    wide = t.group_by(keys).aggregate(**_sum_aggs(t)).to_pandas()
    return _to_long(wide, keys)


def daily_cumulative_statistics(outcomes: ibis.Table, *, winsorize: float | None = None) -> pd.DataFrame:
    """Cumulative sufficient statistics by assignment date (for the cumulative-lift view).

    Row ``(experiment, metric, variant, date)`` holds the sums over all units assigned up to and
    including ``date``; days without assignments repeat the previous totals.
    """
    t = _apply_caps(outcomes, winsorize) if winsorize else outcomes
    keys = ["experiment_id", "variant", "assigned_date"]
    wide = t.group_by(keys).aggregate(**_sum_aggs(t)).to_pandas()
    if wide.empty:
        return _to_long(wide.rename(columns={"assigned_date": "date"}), ["experiment_id", "variant", "date"])
    wide["assigned_date"] = pd.to_datetime(wide["assigned_date"])
    value_cols = [c for c in wide.columns if c not in keys and c != "is_control"]
    parts = []
    for exp_id, g in wide.groupby("experiment_id", sort=True):
        days = pd.date_range(g["assigned_date"].min(), g["assigned_date"].max(), freq="D")
        for variant, gv in g.groupby("variant", sort=True):
            s = gv.set_index("assigned_date")[value_cols].reindex(days, fill_value=0).cumsum()
            s.index.name = "date"
            s = s.reset_index()
            s.insert(0, "variant", variant)
            s.insert(0, "experiment_id", exp_id)
            s["is_control"] = bool(gv["is_control"].fillna(False).any())
            parts.append(s)
    cum = pd.concat(parts, ignore_index=True)
    return _to_long(cum, ["experiment_id", "variant", "date"])
