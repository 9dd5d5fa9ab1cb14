"""Customer journeys built in the engine (Ibis over DuckDB or Spark) and aggregated to a path table.

Definitions (also returned in ``JourneyResult.conventions``)
-----------------------------------------------------------
* **Conversion**: an order with ``amount > 0`` and a ``customer_key``, placed in the analysis period
  ``[period_start, period_end]`` (dates inclusive, naive local time as stored). Refunds (negative
  amounts) and zero-amount orders never convert. Conversion value = order amount.
* **Converting journey**: the customer's touches with
  ``order_ts - lookback_days <= touch_ts <= order_ts`` and ``touch_ts >`` the customer's previous
  positive order (at any date, also before the period). Touches are ordered by ``(touch_ts, label)``
  (labels in code-point order, a missing campaign first).
  A conversion without such touches is *untouched* (reported, not attributed).
* **New customer**: a conversion that is the customer's first positive order in the orders table (orders at
  one time are ordered by order_id, then amount, so that the first is the same on every run).
* **Non-converting journey**: for each customer with touches in the period after their last positive
  order up to ``period_end`` (or any touches, for never-converting people), those touches, limited to
  the ``lookback_days`` before the customer's last such touch (so null paths are as long as converting
  ones can be). Touches followed by a conversion after ``period_end`` count as non-converting (the
  period censors them).
* **Anonymous touches**: the ingest stage stitches cookies (one rule, in
  :mod:`crmlib.ingest.stage`: an ``anonymous_id`` takes the customer it is seen with most often on
  rows carrying both ids) and writes the result in ``touchpoints.customer_key``; journeys use that
  column as written. Touches still without ``customer_key`` are counted as unattributable and left
  out of journeys.
* **Labels are data**: a path is a tuple of step labels (:mod:`crmlib.roi.paths`); the engine
  numbers the distinct labels and collects each journey as an ordered array of those numbers, so a
  channel or campaign name is never joined into, or parsed out of, a string.
* **Time decay**: touch weight ``2 ** (-age_days / half_life_days)``, age = order_ts - touch_ts in
  days (fractional), normalised within each journey; stored per path position as ``decay_<measure>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa

from crmlib.engine import ScratchGroup
from crmlib.i18n import N_
from crmlib.params import schema_default


__all__ = ["JourneyResult", "build_journeys", "by_channel"]

#: how a path is written (by channel, by campaign), kept in English in ``roi_journeys.json``; the page
#: shows the translation
PATH_FORMAT = (N_("tuple of step labels in time order, repeats kept; a label is the channel name"),
               N_("tuple of step labels in time order, repeats kept; a label is the channel name and campaign "
                  "id (None: no campaign)"))
CONVERSION_RULE = N_("order with amount > 0 in the period; value = amount")


@dataclass
class JourneyResult:
    """Output of :func:`build_journeys`.

    Attributes
    ----------
    paths : pandas.DataFrame
        The path table (:mod:`crmlib.roi.paths`) with measures ``conversions``, ``value``,
        ``new_customers`` (+ ``new_clv`` when a CLV table is given) and ``decay_<measure>`` columns.
    lengths : pandas.DataFrame
        ``touches`` (journey length) -> ``converting``, ``non_converting`` journey counts.
    time_to_convert : pandas.DataFrame
        ``days`` (whole days from the journey's first touch to the order, floored) -> ``conversions``.
    summary : dict
        Counts: conversions, value, touched/untouched conversions, touches in the period, unattributable
        (no customer_key) and attributed through a cookie (``anonymous_id`` with a customer_key).
    conventions : dict
        The parameters and definitions used.
    """

    paths: pd.DataFrame
    lengths: pd.DataFrame
    time_to_convert: pd.DataFrame
    summary: dict
    conventions: dict = field(default_factory=dict)

    def time_to_convert_quantiles(self, q: tuple[float, ...] = (0.25, 0.5, 0.75, 0.9)) -> pd.Series:
        """Quantiles (in whole days) of the time-to-convert distribution."""
        t = self.time_to_convert.sort_values("days")
        if t.empty:
            return pd.Series(np.nan, index=list(q))
        cum = t["conversions"].cumsum() / t["conversions"].sum()
        return pd.Series([t["days"].to_numpy()[np.searchsorted(cum.to_numpy(), x)] for x in q], index=list(q))


def _to_ts(value: str | date | datetime | None, *, end: bool = False) -> datetime | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    if end and ts == ts.normalize() and not (isinstance(value, str) and len(value) > 10):
        ts = ts + timedelta(days=1)  # an end date is inclusive: everything before the next midnight
    return ts.to_pydatetime()


def build_journeys(
    touchpoints: ibis.Table,
    orders: ibis.Table,
    *,
    lookback_days: float = schema_default("roi.lookback_days"),
    half_life_days: float = schema_default("roi.half_life_days"),
    period_start: str | date | datetime | None = None,
    period_end: str | date | datetime | None = None,
    label: str = "channel",
    clv: ibis.Table | None = None,
) -> JourneyResult:
    """Build journeys in the engine and aggregate them to a path table.

    Parameters
    ----------
    touchpoints, orders : ibis.Table
        The run's ``touchpoints`` and ``orders`` tables (contract schema), with ``customer_key`` as
        ingest wrote it (cookies already stitched).
    lookback_days : float, default 30
        Touches older than this before a conversion are not part of its journey.
    half_life_days : float, default 7
        Half-life of the time-decay weights.
    period_start, period_end : date-like, optional
        Analysis period (inclusive dates). ``None``: unbounded.
    label : {"channel", "campaign"}
        What a path step is: the touch's channel name, or the pair ``(channel, campaign_id)``
        (``campaign_id`` ``None`` when the touch has no campaign) for campaign-level attribution.
    clv : ibis.Table, optional
        ``customer_key, clv``: adds the measure ``new_clv`` (CLV of new customers) for LTV:CAC.

    Returns
    -------
    JourneyResult
    """
    if lookback_days <= 0:
        raise ValueError("lookback_days must be positive")
    start, end_excl = _to_ts(period_start), _to_ts(period_end, end=True)
    lookback = ibis.interval(seconds=int(round(lookback_days * 86400)))
    ln2_per_day = math.log(2.0) / (half_life_days * 86400.0)

    # -- conversions ------------------------------------------------------------------------------
    o = orders.filter(orders.amount > 0, orders.customer_key.notnull())
    o = o.select(
        customer_key=o.customer_key.cast("string"),
        order_ts=o.order_ts.cast("timestamp"),
        amount=o.amount.cast("float64"),
        order_id=(o.order_id.cast("string") if "order_id" in o.columns else ibis.literal(None, "string")),
    )
    # the amount breaks ties of orders without an id at one time, so the first order (and is_new) is
    # the same on every run; rows equal in all three are interchangeable
    by_customer = ibis.window(group_by=o.customer_key, order_by=[o.order_ts, o.order_id, o.amount])
    o = o.mutate(prev_ts=o.order_ts.lag().over(by_customer), order_rank=ibis.row_number().over(by_customer))
    if end_excl is not None:
        o = o.filter(o.order_ts < end_excl)
    last_conv = o.group_by("customer_key").agg(last_order_ts=o.order_ts.max())
    conv = o if start is None else o.filter(o.order_ts >= start)
    conv = conv.mutate(
        conv_id=ibis.row_number().over(order_by=[conv.customer_key, conv.order_ts, conv.order_id, conv.amount]),
        is_new=(conv.order_rank == 0).cast("float64"),
    )
    if clv is not None:
        c = clv.select(ck=clv.customer_key.cast("string"), clv=clv.clv.cast("float64"))
        conv = conv.left_join(c, conv.customer_key == c.ck).drop("ck")
        conv = conv.mutate(new_clv=conv.is_new * conv.clv.fill_null(0.0)).drop("clv")
    cache = ScratchGroup(touchpoints, "_roi_journeys")
    conv = cache.store(conv)  # the journeys, their paths and the totals read it: its windows run once

    # -- touches ----------------------------------------------------------------------------------
    t = touchpoints
    if label == "channel":
        label_cols = {"channel": t.channel.cast("string")}
    elif label == "campaign":
        campaign = t.campaign_id.cast("string") if "campaign_id" in t.columns else ibis.literal(None, "string")
        label_cols = {"channel": t.channel.cast("string"), "campaign_id": campaign}
    else:
        raise ValueError("label must be 'channel' or 'campaign'")
    t = t.select(
        customer_key=t.customer_key.cast("string"),
        touch_ts=t.touch_ts.cast("timestamp"),
        has_cookie=(t.anonymous_id.notnull() if "anonymous_id" in t.columns else ibis.literal(False)),
        **label_cols,
    )
    if end_excl is not None:
        t = t.filter(t.touch_ts < end_excl)
    # every distinct label gets a number in label order (missing campaign first): journeys are arrays of
    # numbers, so names stay data, and ordering ties by number is ordering them by label
    names = list(label_cols)
    labels = t.select(*names).distinct()
    labels = cache.store(labels.mutate(step=ibis.row_number().over(
        order_by=[labels[n].asc(nulls_first=True) for n in names])))
    label_of = _label_lookup(labels.to_pandas(), names)
    # equality keys (a hash join); a missing campaign matches a missing campaign through the null flag
    on = [t.channel == labels.channel]
    for n in names[1:]:
        on += [t[n].fill_null("") == labels[n].fill_null(""), t[n].isnull() == labels[n].isnull()]
    t = cache.store(t.join(labels, on).select("customer_key", "touch_ts", "step", "has_cookie"))
    # stored above: the summary, the converting and the non-converting journeys all read these touches
    in_period = t if start is None else t.filter(t.touch_ts >= start)
    touch_summary = in_period.aggregate(
        touches=in_period.count(),
        unattributable=in_period.customer_key.isnull().cast("int64").sum(),
        cookie_attributed=(in_period.has_cookie & in_period.customer_key.notnull()).cast("int64").sum(),
    ).to_pandas().iloc[0]
    t = t.filter(t.customer_key.notnull()).select("customer_key", "touch_ts", "step")

    # -- converting journeys ----------------------------------------------------------------------
    j = conv.join(
        t,
        [
            conv.customer_key == t.customer_key,
            t.touch_ts <= conv.order_ts,
            t.touch_ts >= conv.order_ts - lookback,
            conv.prev_ts.isnull() | (t.touch_ts > conv.prev_ts),
        ],
    )
    age_s = j.order_ts.epoch_seconds() - j.touch_ts.epoch_seconds()
    per_conv = ibis.window(group_by=j.conv_id)
    j = j.mutate(raw_w=(-age_s.cast("float64") * ln2_per_day).exp())
    j = j.mutate(
        w=j.raw_w / j.raw_w.sum().over(per_conv),
        pos=ibis.row_number().over(ibis.window(group_by=j.conv_id, order_by=[j.touch_ts, j.step])),
    )
    j = cache.store(j)
    measures = ["conversions", "value", "new_customers"] + (["new_clv"] if clv is not None else [])
    conv_paths = j.group_by("conv_id").agg(
        path=_ordered_steps(j),
        n_touches=j.count(),
        first_touch_ts=j.touch_ts.min(),
    )
    conv_paths = conv_paths.join(conv, "conv_id")
    conv_paths = conv_paths.mutate(conversions=ibis.literal(1.0), value=conv_paths.amount, new_customers=conv_paths.is_new)
    conv_paths = cache.store(conv_paths)
    agg = {m: conv_paths[m].sum() for m in measures}
    paths_conv = _fetch(conv_paths.group_by("path").agg(**agg))

    jp = j.join(conv_paths.select("conv_id", "path"), "conv_id")
    jp = jp.mutate(conversions=ibis.literal(1.0), value=jp.amount, new_customers=jp.is_new)
    decay = jp.group_by(["path", "pos"]).agg(**{f"decay_{m}": (jp[m] * jp.w).sum() for m in measures})
    by_pos = decay.group_by("path").agg(
        cells=ibis.struct({"pos": decay.pos, **{m: decay[f"decay_{m}"] for m in measures}}).collect().sort())
    decay = _fetch(by_pos.select("path", **{f"decay_{m}": by_pos.cells.map(_field(m))
                                            for m in measures}))

    # -- non-converting journeys ------------------------------------------------------------------
    nt = in_period.filter(in_period.customer_key.notnull()).select("customer_key", "touch_ts", "step")
    nt = nt.left_join(last_conv, nt.customer_key == last_conv.customer_key).drop("customer_key_right")
    nt = nt.filter(nt.last_order_ts.isnull() | (nt.touch_ts > nt.last_order_ts))
    nt = nt.mutate(last_touch_ts=nt.touch_ts.max().over(ibis.window(group_by=nt.customer_key)))
    nt = nt.filter(nt.touch_ts >= nt.last_touch_ts - lookback)
    null_journeys = nt.group_by("customer_key").agg(path=_ordered_steps(nt), n_touches=nt.count())
    null_journeys = cache.store(null_journeys)
    paths_null = _fetch(null_journeys.group_by("path").agg(nulls=null_journeys.count()))

    # -- assemble the path table ------------------------------------------------------------------
    # every converting path has its decay sums; a path only non-converting journeys took has zeros
    paths = paths_conv.merge(decay, on="path", how="left").merge(paths_null, on="path", how="outer")
    for col in [*measures, "nulls"]:
        paths[col] = paths[col].fillna(0.0).astype(float) if col in paths else 0.0
    for m in measures:
        col = f"decay_{m}"
        paths[col] = [a if isinstance(a, np.ndarray) else np.zeros(len(p)) for p, a in zip(paths["path"], paths[col])]
    paths = paths[["path", *measures, "nulls", *(f"decay_{m}" for m in measures)]]
    # label numbers follow label order, so sorting the number tuples sorts the paths by their labels
    number_paths = paths["path"].tolist()
    paths = paths.iloc[sorted(range(len(paths)), key=number_paths.__getitem__)].reset_index(drop=True)
    paths["path"] = [tuple(label_of[c] for c in p) for p in paths["path"]]

    lengths = (
        conv_paths.group_by("n_touches").agg(converting=conv_paths.count()).to_pandas()
        .merge(null_journeys.group_by("n_touches").agg(non_converting=null_journeys.count()).to_pandas(),
               on="n_touches", how="outer")
        .fillna(0).rename(columns={"n_touches": "touches"}).sort_values("touches", ignore_index=True)
    )
    lengths[["converting", "non_converting"]] = lengths[["converting", "non_converting"]].astype("int64")
    seconds = (conv_paths.order_ts.epoch_seconds() - conv_paths.first_touch_ts.epoch_seconds()).cast("float64")
    days = (seconds / 86400.0).floor()  # a float first: Spark reads 86400.0 as a DECIMAL rounded to 6 places
    ttc = conv_paths.mutate(days=days.cast("int64"))
    time_to_convert = (
        ttc.group_by("days").agg(conversions=ttc.count()).to_pandas().sort_values("days", ignore_index=True)
    )
    totals = conv.aggregate(conversions=conv.count(), value=conv.amount.sum()).to_pandas().iloc[0]
    touched = float(paths["conversions"].sum())
    summary = {
        "conversions": int(totals["conversions"]),
        "conversion_value": float(totals["value"] or 0.0),
        "touched_conversions": int(touched),
        "touched_value": float(paths["value"].sum()),
        "untouched_conversions": int(totals["conversions"]) - int(touched),
        "untouched_value": float(totals["value"] or 0.0) - float(paths["value"].sum()),
        "non_converting_journeys": int(paths["nulls"].sum()),
        "distinct_paths": int(len(paths)),
        "touches_in_period": int(touch_summary["touches"]),
        "touches_unattributable": int(touch_summary["unattributable"] or 0),
        "touches_attributed_by_cookie": int(touch_summary["cookie_attributed"] or 0),
    }
    conventions = {
        "lookback_days": lookback_days,
        "half_life_days": half_life_days,
        "period_start": None if start is None else str(start),
        "period_end_exclusive": None if end_excl is None else str(end_excl),
        "label": label,
        "path_format": PATH_FORMAT[label == "campaign"],
        "conversion": CONVERSION_RULE,
    }
    cache.drop()
    return JourneyResult(paths, lengths, time_to_convert, summary, conventions)


def by_channel(campaign_journeys: JourneyResult) -> JourneyResult:
    """The channel-level journeys read off campaign-level ones, without a second pass over the touches.

    A campaign step is the pair ``(channel, campaign_id)``, and pairs sort by channel first, so the
    touches of a campaign journey, in their order, are exactly the channel journey's: dropping the
    campaign from each step gives its channel path. Paths that become equal are merged, summing their
    measures and, position by position, their time-decay sums; lengths, time to convert and the summary
    are the same journeys counted, so they carry over as they are.

    Parameters
    ----------
    campaign_journeys : JourneyResult
        :func:`build_journeys` with ``label="campaign"``.

    Returns
    -------
    JourneyResult
        Equal to :func:`build_journeys` with ``label="channel"`` on the same tables (sums to float
        rounding: they are added in another order).
    """
    if campaign_journeys.conventions.get("label") != "campaign":
        raise ValueError("by_channel reads campaign-level journeys (build_journeys(label='campaign'))")
    paths = campaign_journeys.paths
    sums = [c for c in paths.columns if c != "path" and not c.startswith("decay_")]
    decays = [c for c in paths.columns if c.startswith("decay_")]
    group_of: dict[tuple, int] = {}
    codes = np.array([group_of.setdefault(tuple(step[0] for step in p), len(group_of)) for p in paths["path"]],
                     dtype=np.int64)
    groups = list(group_of)
    # the decay sums of all paths laid end to end: a campaign path's position k adds to its channel path's k
    lengths = np.array([len(p) for p in paths["path"]], dtype=np.int64)
    group_length = np.array([len(g) for g in groups], dtype=np.int64)
    group_start = np.concatenate([[0], np.cumsum(group_length)[:-1]])
    row_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    target = np.repeat(group_start[codes] - row_start, lengths) + np.arange(int(lengths.sum()))
    columns = {c: np.bincount(codes, weights=paths[c].to_numpy(float), minlength=len(groups)) for c in sums}
    for c in decays:
        flat = np.concatenate(list(paths[c])) if len(paths) else np.zeros(0)
        merged = np.bincount(target, weights=flat, minlength=int(group_length.sum()))
        columns[c] = np.split(merged, np.cumsum(group_length)[:-1]) if len(groups) else []
    order = sorted(range(len(groups)), key=groups.__getitem__)  # channel names in code-point order: the engine's
    out = pd.DataFrame({"path": pd.Series([groups[i] for i in order], dtype=object),
                        **{c: [columns[c][i] for i in order] for c in sums + decays}})
    for c in sums:
        out[c] = out[c].astype(float)
    conventions = {**campaign_journeys.conventions, "label": "channel", "path_format": PATH_FORMAT[0]}
    return JourneyResult(out, campaign_journeys.lengths.copy(), campaign_journeys.time_to_convert.copy(),
                         dict(campaign_journeys.summary, distinct_paths=len(out)), conventions)


def _ordered_steps(touches: ibis.Table) -> ibis.ArrayValue:
    """Each group's ``step`` numbers ordered by ``(touch_ts, step)``, as an array.

    Spark has no ordered ``collect``: the pairs are collected as structs and the array sorted (structs
    sort field by field on both engines), then the steps read out of it. Two touches equal in both
    fields give the same step, so ties cannot change a path.
    """
    pairs = ibis.struct({"touch_ts": touches.touch_ts, "step": touches.step}).collect().sort()
    return pairs.map(lambda pair: pair.step)


def _field(name: str):
    """A function reading the field ``name`` of a struct (for ``ArrayValue.map``)."""
    return lambda cell: cell[name]


def _fetch(expr: ibis.Table) -> pd.DataFrame:
    """A query's result as pandas, with array columns as tuples (paths: hashable keys) or, for float arrays
    (decay sums), as numpy arrays: read through Arrow, which converts lists several times faster than pandas'
    own conversion."""
    table = expr.to_pyarrow()
    columns = {}
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            lists = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
            if pa.types.is_floating(lists.type.value_type) and lists.null_count == 0:
                # float arrays (the decay sums) split straight out of Arrow's flat values, no Python floats
                offsets = lists.offsets.to_numpy()
                values = lists.flatten().to_numpy(zero_copy_only=False).astype(float, copy=False)
                columns[name] = np.split(values, offsets[1:-1] - offsets[0]) if len(lists) else []
            else:
                columns[name] = [tuple(v) for v in lists.to_pylist()]
        else:
            columns[name] = column.to_numpy()
    return pd.DataFrame(columns)


def _label_lookup(labels: pd.DataFrame, names: list[str]) -> dict[int, object]:
    """Label number -> label: the channel name, or the ``(channel, campaign_id)`` pair (``None`` for no campaign)."""
    def clean(v):
        return None if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA else v

    columns = [labels[n].tolist() for n in names]
    steps = labels["step"].tolist()
    if len(names) == 1:
        return {int(k): clean(v) for k, v in zip(steps, columns[0])}
    return {int(k): tuple(clean(v) for v in vals) for k, *vals in zip(steps, *columns)}
