"""The conversion funnel from web/app events: who reaches each step, where they drop off, how long it takes.

Conventions (each stated again in the ``method`` of :class:`FunnelResult`):

* **User**: the event's ``customer_key`` (ingest already stitched cookies to customers), else its
  ``anonymous_id``: a visitor never identified is still a user of the funnel.
* **Steps** are ordered; each step is one or more event types (params ``roi.funnel.steps``; default
  visit = ``page_view``, product view = ``product_view``, add to cart = ``add_to_cart``, checkout =
  ``checkout``, purchase = ``purchase``).
* **Entry**: a user's first event of the first step in a calendar week (weeks start on Monday). A user
  active in several weeks enters once per week; the whole-period rows count each user once (a user
  reaches a step in the period when one of their weekly entries reaches it).
* **Order**: from an entry at time t1, step k is reached at the first event of step k at or after the
  time step k-1 was reached and within ``window_days`` of t1. A user reaches step k only after
  reaching step k-1: an add to cart with no product view before it does not count.
* **Purchase from orders**: the step named ``order_step`` (default the last) is also reached by an
  order of the same customer (``orders``, amount > 0, joined on ``customer_key``) placed within
  ``order_window_days`` after the previous step: a purchase the web tracking missed still counts.
  Anonymous users can reach it only through events.
* **Breakdowns**: channel (the entry's ``utm_medium``; no UTM = ``direct``), UTM source (no UTM =
  ``direct``) and device, all taken from the entry event, and the entry's week.
* **Conversion** of step k = users reaching k / users reaching k-1, with a 95 % Wilson score
  interval (:func:`crmlib.abtest.stats.proportion_confint`); drop-off = 1 - conversion; ``from_start``
  = users reaching k / users reaching the first step. **Time between steps**: the median, over the
  entries that reached step k, of the minutes from step k-1 to step k.

Row-level work (mapping, ordering, joining orders, counting) is one chain of Ibis expressions run by the
engine; only the per-group counts reach Python, where the intervals are computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import ibis
import numpy as np
import pandas as pd

from crmlib.abtest.stats import proportion_confint
from crmlib.engine import ScratchGroup
from crmlib.i18n import N_, _
from crmlib.params import schema_default
from crmlib.present import fmt_count, fmt_number, fmt_percent
from crmlib.status import CannotCompute, Unavailable, recorded_reason, show_notice

__all__ = [
    "DEFAULT_STEPS",
    "DIMENSIONS",
    "ALL",
    "DIRECT",
    "COLUMNS",
    "FunnelResult",
    "funnel_entries",
    "funnel_counts",
    "funnel_table",
    "compute_funnel",
    "STEP_NAMES",
    "funnel_settings",
    "funnel_stage",
    "funnel_findings",
    "funnel_chart",
    "funnel_breakdown_view",
    "funnel_weekly_chart",
    "funnel_method",
]

#: The default step names (the schema's ``roi.funnel.steps``), marked here for the catalog: pages show step
#: names through ``_()``, so a params file that keeps these names gets them translated.
STEP_NAMES = (N_("visit"), N_("product view"), N_("add to cart"), N_("checkout"), N_("purchase"))
#: The default steps: (step name, event types that reach it), from the params schema.
DEFAULT_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
    (step["name"], tuple(step["event_types"])) for step in schema_default("roi.funnel.steps"))
#: Breakdowns of the table, in the order the page shows them (``all`` is the whole funnel).
ALL, DIRECT = N_("all"), N_("direct")
DIMENSIONS = (ALL, N_("channel"), N_("utm_source"), N_("device"))
#: Columns of ``tables/funnel.parquet``.
COLUMNS = ("dimension", "value", "week", "step_index", "step", "users", "prev_users", "conversion",
           "conversion_low", "conversion_high", "drop_off", "from_start", "median_minutes")
LEVEL = 0.95


@dataclass
class FunnelResult:
    """The funnel table (one row per breakdown value, week and step; see :data:`COLUMNS`) and its method.

    ``week`` is the Monday of the entry week, or missing for the whole period.
    """

    table: pd.DataFrame
    steps: list[str]
    method: str
    settings: dict = field(default_factory=dict)

    def whole(self, dimension: str = ALL, value: str | None = None) -> pd.DataFrame:
        """The whole-period rows of one breakdown value (default: the whole funnel), in step order."""
        t = self.table
        rows = t[(t["dimension"] == dimension) & t["week"].isna()]
        if value is not None:
            rows = rows[rows["value"] == value]
        return rows.sort_values(["value", "step_index"]).reset_index(drop=True)


def _normalise_steps(steps: Iterable) -> list[tuple[str, tuple[str, ...]]]:
    """``[(name, (event types...)), ...]`` from tuples or ``{"name", "event_types"}`` mappings."""
    out = []
    for step in steps:
        if isinstance(step, dict):
            name, types = step["name"], step["event_types"]
        else:
            name, types = step
        types = (types,) if isinstance(types, str) else tuple(types)
        out.append((str(name), types))
    names = [n for n, _types in out]
    if len(out) < 2:
        raise ValueError("a funnel needs at least two steps")
    if len(set(names)) != len(names):
        raise ValueError(f"funnel step names must differ: {names}")
    seen: dict[str, str] = {}
    for name, types in out:
        if not types:
            raise ValueError(f"funnel step {name!r} has no event type")
        for t in types:
            if t in seen:
                raise ValueError(f"event type {t!r} belongs to two funnel steps ({seen[t]!r} and {name!r})")
            seen[t] = name
    return out


def funnel_entries(
    events: ibis.Table,
    orders: ibis.Table | None = None,
    *,
    steps: Sequence = DEFAULT_STEPS,
    window_days: float = schema_default("roi.funnel.window_days"),
    order_step: str | None = schema_default("roi.funnel.order_step"),
    order_window_days: float = schema_default("roi.funnel.order_window_days"),
    period_start=None,
    period_end=None,
    keep: Callable[[ibis.Table], ibis.Table] | None = None,
) -> ibis.Table:
    """One row per entry (user and week) with the time each step was reached, as an Ibis expression.

    Parameters
    ----------
    events : ibis.Table
        The run's ``events`` table: ``event_ts``, ``event_type``, ``customer_key``, ``anonymous_id``
        and, when present, ``utm_medium``, ``utm_source``, ``device``.
    orders : ibis.Table, optional
        The run's ``orders`` table (``customer_key``, ``order_ts``, ``amount``); None: events only.
    steps : sequence
        Ordered ``(name, event types)`` pairs or ``{"name", "event_types"}`` mappings.
    window_days : float
        A later step counts when reached within this many days of the entry.
    order_step : str or None
        The step an order also reaches (None or a name not among the steps: orders are not used).
    order_window_days : float
        An order counts for ``order_step`` when placed within this many days after the previous step.
    period_start, period_end : date-like, optional
        Entries from ``period_start`` (inclusive) to the end of the day ``period_end``.
    keep : callable, optional
        Stores an intermediate relation and returns it as a table (e.g. :meth:`crmlib.engine.ScratchGroup.store`):
        the entries, the later events and each step's reach are then computed once. Without it the
        result is one expression, which an engine may recompute part by part (several times slower at scale).

    Returns
    -------
    ibis.Table
        ``user, customer_key, week, channel, utm_source, device, t0 ... t{K-1}`` (``t{k}`` null when the
        entry did not reach step k; a step is only reached after the one before it).
    """
    keep = keep or (lambda expr: expr)
    steps = _normalise_steps(steps)
    e = events
    user = e.customer_key.coalesce(ibis.literal("anon:") + e.anonymous_id.cast("string"))
    step_index = ibis.cases(*[(e.event_type.isin(list(types)), i) for i, (_n, types) in enumerate(steps)],
                            else_=ibis.null("int64"))

    def text(column: str, missing: str):
        return e[column].cast("string").coalesce(ibis.literal(missing)) if column in e.columns \
            else ibis.literal(missing)

    e = e.mutate(_user=user, _step=step_index, _key=e.customer_key,
                 _channel=text("utm_medium", DIRECT), _source=text("utm_source", DIRECT),
                 _device=text("device", N_("unknown")))
    e = e.filter(e._step.notnull(), e._user.notnull(), e.event_ts.notnull())
    window = ibis.interval(seconds=int(round(window_days * 86400)))

    first = e.filter(e._step == 0)
    if period_start is not None:
        first = first.filter(first.event_ts >= pd.Timestamp(period_start).to_pydatetime())
    if period_end is not None:
        first = first.filter(first.event_ts < (pd.Timestamp(period_end) + pd.Timedelta(days=1)).to_pydatetime())
    first = first.mutate(week=_week(first.event_ts))
    # the first visit of each user-week: row_number breaks ties between events of the same second
    rank = ibis.row_number().over(group_by=[first._user, first.week], order_by=[first.event_ts, first._channel])
    entry = first.mutate(_rank=rank)
    entry = keep(entry.filter(entry._rank == 0).select(
        user=entry._user, customer_key=entry._key, week=entry.week, channel=entry._channel,
        utm_source=entry._source, device=entry._device, t0=entry.event_ts))

    # Step k counts when reached in [t{k-1}, t0 + window]. t0 lies in the entry's week, so such an event lies in
    # that week or in one of the next ceil(window / 7 days): the entry is offered to each of those weeks and
    # the join is an equality join on (user, week), not a join with every event of the user. Only the entries
    # that reached step k-1 (the frontier, fewer at each step) are joined with step k's events.
    later = e.filter(e._step > 0)
    later = keep(later.select(_cuser=later._user, _cstep=later._step, _cts=later.event_ts, _cweek=_week(later.event_ts)))
    use_orders = orders is not None and order_step in [n for n, _t in steps]
    if use_orders:
        paid = orders.filter(orders.amount > 0, orders.customer_key.notnull(), orders.order_ts.notnull())
        paid = paid.select(_okey=paid.customer_key, _ots=paid.order_ts, _oweek=_week(paid.order_ts))
        order_window = ibis.interval(seconds=int(round(order_window_days * 86400)))

    frontier = entry.select("user", "week", "customer_key", "t0", _at=entry.t0)  # _at: when step k-1 was reached
    out = entry
    for k in range(1, len(steps)):
        cand = later.filter(later._cstep == k)
        offered = _offered_to_later_weeks(frontier, window_days)
        hits = offered.join(cand, [offered.user == cand._cuser, offered._eweek == cand._cweek,
                                   cand._cts >= offered._at, cand._cts <= offered.t0 + window])
        hits = hits.select("user", "week", "customer_key", "t0", _hit=hits._cts)
        if use_orders and steps[k][0] == order_step:
            # an order counts up to order_window after the step before, itself at most window after t0
            offered = _offered_to_later_weeks(frontier, window_days + order_window_days)
            bought = offered.join(paid, [offered.customer_key == paid._okey, offered._eweek == paid._oweek,
                                         paid._ots >= offered._at, paid._ots <= offered._at + order_window])
            hits = hits.union(bought.select("user", "week", "customer_key", "t0", _hit=bought._ots), distinct=False)
        # one row per entry; customer_key and t0 have one value per entry
        frontier = keep(hits.group_by(["user", "week"]).agg(customer_key=hits.customer_key.max(),
                                                             t0=hits.t0.max(), _at=hits._hit.min()))
        step = frontier.select(_u=frontier.user, _w=frontier.week, **{f"t{k}": frontier._at})
        out = out.left_join(step, [out.user == step._u, out.week == step._w]).drop("_u", "_w")
    return out.select("user", "customer_key", "week", "channel", "utm_source", "device", "t0",
                      *[f"t{k}" for k in range(1, len(steps))])


def _week(ts: ibis.TimestampValue) -> ibis.DateValue:
    """The Monday of the time stamp's week."""
    return ts.truncate("W").cast("date")


def _offered_to_later_weeks(entries: ibis.Table, days_after: float) -> ibis.Table:
    """Each entry once for every week (``_eweek``) that can hold a time at most ``days_after`` days after a
    time in the entry's week: that week and the ``ceil(days_after / 7)`` weeks after it."""
    copies = [entries.mutate(_eweek=entries.week + ibis.interval(days=7 * j))
              for j in range(int(math.ceil(days_after / 7.0)) + 1)]
    return ibis.union(*copies, distinct=False)


def funnel_counts(entries: ibis.Table, n_steps: int) -> pd.DataFrame:
    """Users reaching each step and the median minutes from the previous step, per breakdown and week.

    Runs in the engine (three small aggregations per breakdown: the whole funnel, channel, UTM source and
    device) and returns the counts as a wide DataFrame: ``dimension, value, week, users_0 .. users_{K-1},
    minutes_1 .. minutes_{K-1}``.

    ``entries`` are :func:`funnel_entries`': one per user and week, and a step reached only after the one
    before it. So in one week a user is counted by counting entries, and over the whole period a user
    reached step k when the deepest of their entries did - no distinct counts needed.
    """
    t = entries
    depth = ibis.cases(*[(t[f"t{k}"].isnull(), k) for k in range(1, n_steps)], else_=n_steps)
    medians = {}
    for k in range(1, n_steps):
        # seconds cast to float first: Spark reads the literal 60.0 as a DECIMAL and would round
        seconds = (t[f"t{k}"].epoch_seconds() - t[f"t{k - 1}"].epoch_seconds()).cast("float64")
        minutes = seconds / 60.0
        # null where step k was not reached; no ``where=``: Spark needs a constant percentile, and Ibis
        # turns a filtered median into one that depends on the row
        medians[f"minutes_{k}"] = minutes.median()
    frames = []
    for dimension in DIMENSIONS:
        value = ibis.literal(ALL) if dimension == ALL else t[dimension].cast("string")
        base = t.mutate(_value=value, _depth=depth)
        per_user = base.group_by(["_value", "user"]).agg(_depth=base._depth.max())
        users = per_user.group_by("_value").agg(
            **{f"users_{k}": (per_user._depth > k).cast("int64").sum() for k in range(n_steps)}).to_pandas()
        whole = users.merge(base.group_by("_value").agg(**medians).to_pandas(), on="_value")
        whole["week"] = pd.NaT
        weekly = base.group_by(["_value", "week"]).agg(
            **{f"users_{k}": base[f"t{k}"].count() for k in range(n_steps)}, **medians).to_pandas()
        for agg in (whole, weekly):
            agg = agg.rename(columns={"_value": "value"})
            agg.insert(0, "dimension", dimension)
            frames.append(agg)
    out = pd.concat(frames, ignore_index=True)
    out["week"] = pd.to_datetime(out["week"])
    return out


def funnel_table(counts: pd.DataFrame, steps: Sequence[str], *, level: float = LEVEL) -> pd.DataFrame:
    """The long funnel table (:data:`COLUMNS`) from :func:`funnel_counts`: conversions with Wilson intervals."""
    rows = []
    for k, step in enumerate(steps):
        users = counts[f"users_{k}"].to_numpy(dtype=float)
        part = counts[["dimension", "value", "week"]].copy()
        part["step_index"], part["step"], part["users"] = k, step, users.astype("int64")
        first = counts["users_0"].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            part["from_start"] = np.where(first > 0, users / first, np.nan)
        if k == 0:
            for col in ("prev_users", "conversion", "conversion_low", "conversion_high", "drop_off",
                        "median_minutes"):
                part[col] = np.nan
        else:
            prev = counts[f"users_{k - 1}"].to_numpy(dtype=float)
            has = prev > 0
            conversion = np.where(has, users / np.where(has, prev, 1), np.nan)
            low, high = proportion_confint(users, np.where(has, prev, 1), alpha=1 - level, method="wilson")
            part["prev_users"] = prev
            part["conversion"] = conversion
            part["conversion_low"] = np.where(has, low, np.nan)
            part["conversion_high"] = np.where(has, high, np.nan)
            part["drop_off"] = 1 - conversion
            part["median_minutes"] = counts[f"minutes_{k}"].astype(float).to_numpy()
        rows.append(part)
    table = pd.concat(rows, ignore_index=True)
    table["prev_users"] = table["prev_users"].astype("Int64")
    table["_order"] = table["dimension"].map({d: i for i, d in enumerate(DIMENSIONS)})
    table = table.sort_values(["_order", "value", "week", "step_index"], na_position="first", kind="stable")
    table["week"] = pd.to_datetime(table["week"]).dt.date.astype(object).where(table["week"].notna(), None)
    return table.loc[:, list(COLUMNS)].reset_index(drop=True)


def compute_funnel(
    engine,
    events: ibis.Table,
    orders: ibis.Table | None = None,
    *,
    steps: Sequence = DEFAULT_STEPS,
    window_days: float = schema_default("roi.funnel.window_days"),
    order_step: str | None = schema_default("roi.funnel.order_step"),
    order_window_days: float = schema_default("roi.funnel.order_window_days"),
    period_start=None,
    period_end=None,
    min_users: int = schema_default("roi.funnel.min_users"),
) -> FunnelResult:
    """The funnel table of a run: :func:`funnel_entries` in the engine, then :func:`funnel_table`.

    Parameters
    ----------
    engine : crmlib.engine.Engine
        Keeps the entries and their intermediates as scratch relations while the aggregations read them.
    min_users : int
        Fewer users than this at the first step in the whole period: :class:`~crmlib.status.CannotCompute`.
    Other parameters are those of :func:`funnel_entries`.

    Raises
    ------
    CannotCompute
        When no event maps to a step, or fewer than ``min_users`` users entered the funnel.
    """
    steps = _normalise_steps(steps)
    names = [n for n, _t in steps]
    mapped = sorted({t for _n, types in steps for t in types})
    present = events.filter(events.event_type.isin(mapped)).count().to_pandas() if mapped else 0
    if not present:
        raise CannotCompute(_("the funnel maps event types {types} to its steps, and the events hold none of "
                              "them; roi.funnel.steps should name the event types of this data.").format(
            types=", ".join(mapped)))
    kept = ScratchGroup(engine, "funnel")
    entries = funnel_entries(events, orders, steps=steps, window_days=window_days, order_step=order_step,
                             order_window_days=order_window_days, period_start=period_start,
                             period_end=period_end, keep=kept.store)
    try:
        counts = funnel_counts(kept.store(entries), len(steps))
    finally:
        kept.drop()
    whole = counts[(counts["dimension"] == ALL) & counts["week"].isna()]
    entered = int(whole["users_0"].sum()) if len(whole) else 0
    if entered < min_users:
        raise CannotCompute(_("the funnel needs at least {needed} users at its first step ({step}) in the "
                              "period; this data has {n}.").format(needed=min_users, step=_(names[0]),
                                                                   n=entered))
    table = funnel_table(counts, names)
    uses_orders = orders is not None and order_step in names
    method = (f"users (customer_key, else anonymous_id) entering at their first '{names[0]}' of each week; "
              f"step k counts when reached after step k-1 and within {window_days:g} days of the entry"
              + (f"; '{order_step}' also reached by an order of the same customer within "
                 f"{order_window_days:g} days after the previous step" if uses_orders else "")
              + f"; conversion = users at k / users at k-1 with {LEVEL:.0%} Wilson intervals; breakdowns "
                "by the entry's utm_medium (channel), utm_source and device; median minutes between steps")
    settings = {"steps": [[n, list(t)] for n, t in steps], "window_days": window_days, "order_step": order_step,
                "order_window_days": order_window_days, "uses_orders": uses_orders}
    return FunnelResult(table=table, steps=names, method=method, settings=settings)


# -- the stage call and the report views -------------------------------------------------------------------
#: The step name warnings are recorded under (the page translates it).
STEP = N_("conversion funnel")
STAGE = "roi"
TABLE = "funnel"
def funnel_settings(params: dict) -> dict:
    """``roi.funnel`` of validated params (:func:`crmlib.params.load_params` or
    :func:`crmlib.params.complete_params`), plus the ROI period (``roi.period_start`` / ``roi.period_end``)."""
    cfg = dict(params["roi"]["funnel"])
    cfg["period_start"], cfg["period_end"] = params["roi"]["period_start"], params["roi"]["period_end"]
    return cfg


def funnel_stage(engine, params: dict) -> FunnelResult | Unavailable:
    """The funnel's stage call: computes it once and writes ``tables/funnel.parquet`` and ``funnel.json``
    (settings, for "How this was computed").

    Without an ``events`` table, or with ``roi.funnel.enabled`` false, it writes nothing and returns an
    :class:`~crmlib.status.Unavailable` saying so (not a warning: the run simply has no web/app events). When
    the events cannot support a funnel (no mapped event type, too few users) the reason is recorded in
    ``warnings.jsonl`` and returned. A table left by an earlier run is removed first.
    """
    from crmlib.asof import resolve_period_end
    from crmlib.status import guard

    engine.remove_tables(TABLE)
    cfg = funnel_settings(params)
    if not cfg["enabled"]:
        return Unavailable(STEP, _("switched off (roi.funnel.enabled is false)."))
    if not engine.has_table("events"):
        return Unavailable(STEP, _("this run has no web or app events, so there is no funnel."))
    period_end = resolve_period_end(engine, params, cfg["period_end"])
    orders = engine.table("orders") if engine.has_table("orders") else None

    def compute() -> FunnelResult:
        return compute_funnel(engine, engine.table("events"), orders, steps=cfg["steps"],
                              window_days=float(cfg["window_days"]), order_step=cfg["order_step"],
                              order_window_days=float(cfg["order_window_days"]),
                              period_start=cfg["period_start"], period_end=period_end,
                              min_users=int(cfg["min_users"]))

    result = guard(engine, STAGE, STEP, compute)
    if isinstance(result, FunnelResult):
        engine.write_table(TABLE, result.table)
        engine.write_json(TABLE, {**result.settings, "method": result.method, "min_users": int(cfg["min_users"]),
                                  "period_start": cfg["period_start"], "period_end": period_end})
    return result


def _read(engine_or_dir) -> tuple[pd.DataFrame | None, dict]:
    import json
    from pathlib import Path

    tables = getattr(engine_or_dir, "tables_dir", None) or Path(engine_or_dir)
    path = Path(tables) / f"{TABLE}.parquet"
    if not path.exists():
        return None, {}
    info_path = Path(tables) / f"{TABLE}.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    return pd.read_parquet(path), info


def _whole(table: pd.DataFrame, dimension: str = ALL) -> pd.DataFrame:
    rows = table[(table["dimension"] == dimension) & table["week"].isna()]
    return rows.sort_values(["value", "step_index"]).reset_index(drop=True)


def _step_name(step: str) -> str:
    return _(str(step))


def _leak(table: pd.DataFrame) -> pd.Series | None:
    """The whole funnel's step with the largest drop-off from the step before it (first such, on ties)."""
    whole = _whole(table)
    later = whole[whole["step_index"] > 0].dropna(subset=["drop_off"])
    if later.empty:
        return None
    return later.loc[later["drop_off"].idxmax()]


def funnel_findings(tables_dir, *, min_users: int | None = None) -> list:
    """The funnel's decisions as :class:`crmlib.report.Finding` sentences, from ``tables/funnel.parquet``.

    1. The device or channel that loses significantly more users than everyone at the biggest leak (its
       whole 95 % interval below the overall conversion): "checkout loses 45% of mobile_web users".
    2. The biggest leak of the whole funnel, and the share of first-step users who reach the last step.
    Breakdown values with fewer than ``min_users`` users at the leak are not named (default: the run's
    ``roi.funnel.min_users``).
    """
    from crmlib.report import Finding

    table, info = _read(tables_dir)
    if table is None or table.empty:
        return []
    min_users = int(min_users if min_users is not None else info.get("min_users", schema_default("roi.funnel.min_users")))
    leak = _leak(table)
    if leak is None:
        return []
    whole = _whole(table)
    prev_step = whole.loc[whole["step_index"] == leak["step_index"] - 1, "step"].iloc[0]
    found = []
    at_leak = table[table["week"].isna() & table["dimension"].isin(["device", "channel"])
                    & (table["step_index"] == leak["step_index"]) & (table["prev_users"] >= min_users)]
    worse = at_leak[at_leak["conversion_high"] < leak["conversion"]]
    if len(worse):
        w = worse.sort_values("conversion").iloc[0]
        found.append(Finding(
            _("Fix {step} for {value}").format(step=_step_name(prev_step), value=_(w["value"])),
            (_("{step} loses {share} of {value} users: {lost} of the {n} who reached it did not reach {next} "
               "(95% interval {low} to {high}), against {overall} of all users.") if w["dimension"] == "device" else
             _("{step} loses {share} of the users who came from {value}: {lost} of the {n} who reached it did not "
               "reach {next} (95% interval {low} to {high}), against {overall} of all users.")).format(
                step=_step_name(prev_step), share=fmt_percent(w["drop_off"]), value=_(w["value"]),
                lost=fmt_count(w["prev_users"] - w["users"]), n=fmt_count(w["prev_users"]),
                next=_step_name(w["step"]), low=fmt_percent(1 - w["conversion_high"]),
                high=fmt_percent(1 - w["conversion_low"]), overall=fmt_percent(leak["drop_off"]))))
    last = whole.iloc[-1]
    found.append(Finding(
        _("Fix {step} first").format(step=_step_name(prev_step)),
        _("The biggest leak is from {step} to {next}: {share} of the {n} users who reached {step} did not go on. "
          "{reach} of the {first} users who started ({first_step}) reached {last_step}.").format(
            step=_step_name(prev_step), next=_step_name(leak["step"]), share=fmt_percent(leak["drop_off"]),
            n=fmt_count(leak["prev_users"]), reach=fmt_percent(last["from_start"]),
            first=fmt_count(whole.iloc[0]["users"]), first_step=_step_name(whole.iloc[0]["step"]),
            last_step=_step_name(last["step"]))))
    return found


def _not_available(engine):
    from crmlib.report import note_markdown

    reason = recorded_reason(engine, STAGE, STEP)
    if reason is not None:
        return Unavailable(STEP, reason)
    if not engine.has_table("events"):
        return note_markdown(_("This run has no web or app events, so there is no funnel."))
    return note_markdown(_("The funnel was not computed in this run."))


def funnel_chart(engine, params: dict):
    """Users at each step (whole period) beside the conversion into the biggest leak's step by device, with
    95 % intervals; the title is the decision the chart supports."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from crmlib import report
    from crmlib.plotting import colors_for, use_report_style

    table, info = _read(engine)
    if table is None:
        return show_notice(_not_available(engine))
    use_report_style()
    whole = _whole(table)
    leak = _leak(table)
    if leak is None:  # nobody went past the first step: there is no leak to compare devices at
        leak = whole.iloc[min(1, len(whole) - 1)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.2, 1]})
    labels = [_step_name(s) for s in whole["step"]]
    y = np.arange(len(whole))[::-1]
    left.barh(y, whole["users"], color="#0072B2")
    left.set_yticks(y, labels)
    for yi, (_i, r) in zip(y, whole.iterrows()):
        note = fmt_count(r["users"]) + ("" if pd.isna(r["conversion"]) else f"  ({fmt_percent(r['conversion'])})")
        left.text(r["users"], yi, " " + note, va="center", fontsize=9)
    left.set_xlim(0, whole["users"].max() * 1.35)
    left.set_xlabel(_("users"))
    left.spines[["top", "right"]].set_visible(False)
    min_users = int(info.get("min_users", schema_default("roi.funnel.min_users")))
    devices = table[table["week"].isna() & (table["dimension"] == "device")
                    & (table["step_index"] == leak["step_index"]) & (table["prev_users"] >= min_users)]
    devices = devices.sort_values("conversion")
    prev_step = whole.loc[whole["step_index"] == leak["step_index"] - 1, "step"].iloc[0]
    if len(devices):
        colors = colors_for(devices["value"], family="device")
        yd = np.arange(len(devices))
        right.errorbar(devices["conversion"], yd,
                       xerr=[devices["conversion"] - devices["conversion_low"],
                             devices["conversion_high"] - devices["conversion"]],
                       fmt="none", ecolor="#333333", capsize=3)
        right.scatter(devices["conversion"], yd, c=[colors[v] for v in devices["value"]], zorder=3)
        right.set_yticks(yd, [_(v) for v in devices["value"]])
        right.axvline(leak["conversion"], color="#57606a", ls="--", lw=1)
        right.xaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10]))
        right.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _pos: fmt_percent(v, digits=0)))
        right.set_xlabel(_("{step} to {next}, by device").format(step=_step_name(prev_step),
                                                                 next=_step_name(leak["step"])))
        right.spines[["top", "right"]].set_visible(False)
    else:
        right.set_axis_off()
    fig.tight_layout()
    findings = funnel_findings(engine.tables_dir)
    title = findings[0].text if findings else _("The funnel")
    report.figure(fig, title=title,
                  caption=_("Left: users reaching each step in the period, in order, with the share of the step "
                            "before (in brackets). Right: the share of users going on from {step} to {next} on each "
                            "device with {users} or more users there, with its 95% interval; the dashed line is all "
                            "users.").format(step=_step_name(prev_step), next=_step_name(leak["step"]),
                                             users=fmt_count(min_users)),
                  alt=_("Funnel: {rows}").format(rows="; ".join(
                      _("{step} {users}").format(step=label, users=fmt_count(u))
                      for label, u in zip(labels, whole["users"]))))
    return left, right


def funnel_breakdown_view(engine, params: dict, dimension: str = "device", *, run_dir=None):
    """One row per device (or ``channel``, ``utm_source``): users at the first step, the conversion into each
    later step and from first to last; with ``run_dir`` the table is a CSV / Excel download."""
    from crmlib import report

    table, _info = _read(engine)
    if table is None:
        return _not_available(engine)
    rows = _whole(table, dimension)
    if rows.empty:
        return None
    steps = _whole(table)["step"].tolist()
    wide = rows.pivot(index="value", columns="step_index", values="conversion")
    users = rows[rows["step_index"] == 0].set_index("value")["users"]
    last = rows[rows["step_index"] == len(steps) - 1].set_index("value")["from_start"]
    order = users.sort_values(ascending=False).index
    view = pd.DataFrame({_(dimension): order, _("users at {step}").format(step=_step_name(steps[0])): users[order].to_numpy()})
    # "direct" and "unknown" are our words for a missing UTM or device: the label kind translates them
    kinds = {_(dimension): "label", _("users at {step}").format(step=_step_name(steps[0])): "count"}
    for k in range(1, len(steps)):
        col = _("to {step}").format(step=_step_name(steps[k]))
        view[col] = wide.loc[order, k].to_numpy()
        kinds[col] = "percent"
    overall = _("{first} to {last}").format(first=_step_name(steps[0]), last=_step_name(steps[-1]))
    view[overall] = last[order].to_numpy()
    kinds[overall] = "percent"
    return report.show(view, kinds=kinds, max_rows=15,
                       caption=_("Funnel by {dimension}: share of users going on from the step before").format(
                           dimension=_(dimension)),
                       download=f"funnel_{dimension}" if run_dir is not None else None, run_dir=run_dir)


def funnel_weekly_chart(engine, params: dict):
    """Share of each week's entering users who reach the last step, overall and per device (weeks with at
    least ``min_users`` entering users)."""
    import matplotlib.pyplot as plt

    from crmlib import report
    from crmlib.plotting import FIGURE_SIZE, colors_for, use_report_style

    table, info = _read(engine)
    if table is None:
        return show_notice(_not_available(engine))
    min_users = int(info.get("min_users", schema_default("roi.funnel.min_users")))
    weekly = table[table["week"].notna() & table["dimension"].isin([ALL, "device"])].copy()
    last_index = int(table["step_index"].max())
    first = weekly[weekly["step_index"] == 0].set_index(["dimension", "value", "week"])["users"]
    last = weekly[weekly["step_index"] == last_index].set_index(["dimension", "value", "week"])
    last = last.assign(entered=first.reindex(last.index).to_numpy())
    last = last[last["entered"] >= min_users].reset_index()
    if info.get("period_end"):
        # a week whose users had less than the whole window to go on would look like a drop
        cutoff = pd.Timestamp(info["period_end"]) + pd.Timedelta(days=1) - pd.Timedelta(days=7 + float(info["window_days"]))
        last = last[pd.to_datetime(last["week"]) <= cutoff]
    if last.empty:
        from crmlib.report import note_markdown

        words = _("No week has {n} or more users entering the funnel.").format(n=fmt_count(min_users))
        return show_notice(note_markdown(words))
    use_report_style()
    fig, ax = plt.subplots(figsize=FIGURE_SIZE)
    names = [v for v in last["value"].unique() if v != ALL]
    colors = colors_for(names, family="device")
    for value, g in last.groupby("value", sort=False):
        g = g.sort_values("week")
        is_all = value == ALL
        ax.plot(pd.to_datetime(g["week"]), g["from_start"], color="#222222" if is_all else colors[value],
                lw=2.4 if is_all else 1.2, label=_(ALL) if is_all else value)
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _pos: fmt_percent(v, digits=0)))
    ax.set_ylabel(_("reached {step}").format(step=_step_name(_whole(table)["step"].iloc[-1])))
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    fig.autofmt_xdate()
    overall = last[last["value"] == ALL].sort_values("week")
    steps = _whole(table)["step"].tolist()
    title = (_("{share} of the users who entered in the week of {week} reached {step}").format(
        share=fmt_percent(overall["from_start"].iloc[-1]), week=str(overall["week"].iloc[-1]),
        step=_step_name(steps[-1])) if len(overall) else _("Weekly funnel conversion"))
    report.figure(fig, title=title,
                  caption=_("Share of the users entering the funnel ({first}) in each week who reached {last}, all "
                            "users (thick) and per device; weeks with fewer than {n} users entering, and the last weeks, "
                            "whose users have not had {days} days to go on, are left out.").format(
                      first=_step_name(steps[0]), last=_step_name(steps[-1]), n=fmt_count(min_users),
                      days=fmt_number(info.get("window_days", schema_default("roi.funnel.window_days")))),
                  alt=_("Weekly share of entering users who reached {step}: {rows}").format(
                      step=_step_name(steps[-1]), rows="; ".join(
                          f"{w} {fmt_percent(s)}" for w, s in zip(overall["week"], overall["from_start"]))))
    return ax


def funnel_method(engine, params: dict) -> str:
    """One "How this was computed" line for the funnel (Markdown), empty when it was not computed."""
    from crmlib.report import escape_markdown

    table, info = _read(engine)
    if table is None or not info:
        return ""
    steps = _(" → ").join(_("{step} ({events})").format(step=_step_name(name), events=", ".join(types))
                          for name, types in info["steps"])
    text = _("Steps: {steps}. A user (customer, else anonymous visitor) enters at the first {first} of each week; "
             "a step counts when reached after the step before and within {days} days of entering. Conversion = "
             "users at a step / users at the step before, with 95% Wilson intervals; breakdowns by the entry's "
             "utm_medium (channel), utm_source and device.").format(
        steps=steps, first=_step_name(info["steps"][0][0]), days=fmt_number(info["window_days"]))
    if info.get("uses_orders"):
        text += " " + _("{step} also counts when the customer placed an order within {days} days after the step "
                        "before.").format(step=_step_name(info["order_step"]), days=fmt_number(info["order_window_days"]))
    return f"- **{escape_markdown(_(STEP))}**{escape_markdown(_(': '))}{escape_markdown(text)}"
