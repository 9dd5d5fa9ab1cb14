"""Stage 4 glue: functions a thin notebook calls one per cell, each taking ``(engine, params)``.

Params read (section ``ab_tests``; types, defaults and meanings: the schema, :mod:`crmlib.params` /
``docs/PARAMS.md``): ``window_days``, ``alpha``, ``correction``, ``sequential_tuning``, ``winsorize``,
``experiments[]``: ``id``, ``weights``, ``primary_metric``, ``secondary_metrics``,
``guardrails[{metric, margin}]``, ``planned_n_per_arm``, ``holdout{channel, campaign_id}``. Also
``run.as_of``. An experiment in the assignment log but not in the params gets the schema's defaults
(:func:`crmlib.params.experiment_defaults`).

Run tables read: ``experiments``, ``orders`` (required), ``events``, ``spend``, ``roi`` (optional).
Run table written: ``tables/ab_results.parquet`` (contract columns first, documented extras after).

Typical notebook::

    results = ab_results(engine, params)          # writes tables/ab_results.parquet
    verdict_table(engine, params)                 # ship / do not ship / inconclusive / blocked: SRM
    guardrail_table(engine, params); power_table(engine, params); srm_table(engine, params)
    plot_forest(results); plot_cumulative_lift(cumulative_lift(engine, params), "checkout_button")
    holdout_table(engine, params)

Every function computes from one cached analysis per (engine, params), so cells are cheap.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from crmlib.asof import resolve_as_of
from crmlib.params import experiment_defaults

from . import holdout as _holdout
from crmlib.status import Unavailable, guard

from .analysis import RESULT_COLUMNS, ABAnalysis, analyze, cumulative_comparisons, require_comparable
from .metrics import daily_cumulative_statistics, sufficient_statistics, unit_outcomes, winsorization_summary
from .plotting import plot_cumulative_lift, plot_forest

__all__ = [
    "run_ab_tests",
    "ab_settings",
    "analysis",
    "sufficient_stats",
    "unit_outcome_table",
    "ab_results",
    "verdict_table",
    "guardrail_table",
    "power_table",
    "srm_table",
    "cumulative_lift",
    "holdout_table",
    "forest_plot",
    "cumulative_plot",
    "segment_results",
    "winsorization_table",
    "cumulative_plot_grid",
    "unavailable_experiments",
]


#: The runner's name of this stage (warnings are recorded under it).
STAGE = "ab_tests"


def ab_settings(params: dict) -> dict:
    """A copy of the validated ``ab_tests`` section (:func:`crmlib.params.load_params` or
    :func:`crmlib.params.complete_params` fill every default; see ``docs/PARAMS.md``)."""
    ab = dict(params["ab_tests"])
    ab["experiments"] = list(ab["experiments"])
    return ab


def _state(engine, params) -> dict[str, Any]:
    """Unit outcomes and sufficient statistics, once per params for this engine (cells share them)."""
    return engine.memo(("abtest", json.dumps(params, sort_keys=True, default=str)), lambda: _build_state(engine, params))


def _build_state(engine, params) -> dict[str, Any]:
    ab = ab_settings(params)
    state: dict[str, Any] = {"ab": ab, "outcomes": None, "note": "", "unavailable": {}}
    if not (engine.has_table("experiments") and engine.has_table("orders")):
        state["note"] = "no experiments (or orders) table in this run: nothing to analyse"
        state["stats"] = pd.DataFrame()
        return state
    orders = engine.table("orders")
    as_of = resolve_as_of(engine, params)  # run.as_of, else the date ingest recorded / of the latest order
    events = engine.table("events") if engine.has_table("events") else None
    outcomes, session_def = unit_outcomes(
        engine.table("experiments"), orders, events, window_days=ab["window_days"], as_of=as_of)
    # one scratch table per (window, as_of), so cached analyses with other settings stay valid
    stamp = pd.Timestamp(as_of).strftime("%Y%m%d") if as_of is not None else "all"
    outcomes = engine.scratch(f"ab_unit_outcomes_w{ab['window_days']}_{stamp}", outcomes)
    state.update(outcomes=outcomes, as_of=as_of, session_definition=session_def,
                 note=f"units with complete {ab['window_days']}-day windows by {as_of}; {session_def}")
    stats = sufficient_statistics(outcomes, winsorize=ab["winsorize"])
    # each experiment on its own: one that cannot be compared is recorded and left out, the others go on
    unavailable = {}
    designs = {e["id"]: e["weights"] for e in ab["experiments"]}
    for experiment_id in dict.fromkeys([*sorted(set(stats["experiment_id"])), *designs]):
        checked = guard(engine, STAGE, f"experiment {experiment_id}",
                        lambda e=experiment_id: require_comparable(stats, e, window_days=ab["window_days"],
                                                                   as_of=as_of, weights=designs.get(e)))
        if isinstance(checked, Unavailable):
            unavailable[experiment_id] = checked
    state["unavailable"] = unavailable
    state["stats"] = stats[~stats["experiment_id"].isin(list(unavailable))].reset_index(drop=True)
    return state


def unit_outcome_table(engine, params: dict):
    """Per-unit outcomes and pre-period covariates (an Ibis table; ``None`` without experiments)."""
    return _state(engine, params)["outcomes"]


def sufficient_stats(engine, params: dict) -> pd.DataFrame:
    """Per experiment x variant x metric sufficient statistics (the input of every test)."""
    return _state(engine, params)["stats"]


def analysis(engine, params: dict, *, cuped: bool = True, test: str = "welch",
             relative_ci: str = "delta") -> ABAnalysis:
    """The full analysis (cached); see :func:`crmlib.abtest.analysis.analyze`."""
    st = _state(engine, params)
    k = ("analysis", cuped, test, relative_ci)
    if k not in st:
        if st["stats"].empty:
            empty = pd.DataFrame(columns=RESULT_COLUMNS + ["is_control", "role"])
            st[k] = ABAnalysis(empty, pd.DataFrame(columns=["experiment_id", "verdict", "reason"]),
                               pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
        else:
            a = analyze(st["stats"], st["ab"], cuped=cuped, test=test, relative_ci=relative_ci)
            q = st["ab"]["winsorize"]
            if q:
                capped = a.results["metric"].isin(["revenue", "orders", "revenue_per_session"])
                a.results.loc[capped, "method"] = (a.results.loc[capped, "method"] + f"; revenue/orders capped at "
                                                   f"the pooled {q:g} quantile (quantile_cont, both arms)")
            st[k] = a
            if k == ("analysis", True, "welch", "delta"):
                # the default analysis is the stage's contract table, whichever cell asks first
                engine.write_table("ab_results", a.results.reset_index(drop=True))
        # an experiment that could not be analysed keeps its row in the verdicts, with the reason
        st[k].verdicts = _with_unavailable(st[k].verdicts, st["unavailable"])
    return st[k]


def _with_unavailable(verdicts: pd.DataFrame, unavailable: dict[str, Unavailable]) -> pd.DataFrame:
    """The verdict table plus one "not analysed" row (with the reason) per experiment that could not be."""
    missing = [e for e in unavailable if e not in set(verdicts["experiment_id"])]
    if not missing:
        return verdicts
    rows = pd.DataFrame({"experiment_id": missing, "verdict": "not analysed",
                         "reason": [unavailable[e].reason for e in missing]})
    return pd.concat([verdicts, rows], ignore_index=True) if len(verdicts) else rows.reindex(
        columns=list(verdicts.columns) or list(rows.columns))


def unavailable_experiments(engine, params: dict) -> pd.DataFrame:
    """Experiments left out of the analysis, each with the plain-words reason (empty when none)."""
    unavailable = _state(engine, params)["unavailable"]
    return pd.DataFrame({"experiment_id": list(unavailable), "reason": [u.reason for u in unavailable.values()]})


def ab_results(engine, params: dict) -> pd.DataFrame:
    """Write ``tables/ab_results.parquet`` (one row per experiment x metric x variant) and return it.

    Contract columns first; extras (role, sequential CI, unadjusted/CUPED figures, guardrail
    status, Fieller CI...) after them.
    """
    res = analysis(engine, params).results
    if res.empty:
        engine.write_table("ab_results", res.reset_index(drop=True))
    return res


def run_ab_tests(ctx) -> ABAnalysis:
    """Whole stage for a :class:`crmlib.context.RunContext`: writes ``ab_results`` and returns the analysis."""
    ab_results(ctx.engine, ctx.params)
    return analysis(ctx.engine, ctx.params)


def verdict_table(engine, params: dict) -> pd.DataFrame:
    """One row per experiment: ship / do not ship / inconclusive / blocked: SRM, with the reason."""
    return analysis(engine, params).verdicts


def guardrail_table(engine, params: dict) -> pd.DataFrame:
    """Guardrail non-inferiority results (margin relative to the control mean)."""
    return analysis(engine, params).guardrails


def power_table(engine, params: dict) -> pd.DataFrame:
    """MDE for the traffic seen, fraction of the planned sample, power achieved (primary metric)."""
    return analysis(engine, params).power


def srm_table(engine, params: dict) -> pd.DataFrame:
    """Sample-ratio check per experiment (observed vs designed split)."""
    return analysis(engine, params).srm


def cumulative_lift(engine, params: dict, *, metric: str | None = None) -> pd.DataFrame:
    """Cumulative lift by assignment date (fixed CI and confidence sequence) per experiment."""
    st = _state(engine, params)
    if st["outcomes"] is None:
        return cumulative_comparisons(pd.DataFrame(), st["ab"])
    k = ("daily",)
    if k not in st:
        st[k] = daily_cumulative_statistics(st["outcomes"], winsorize=st["ab"]["winsorize"])
    return cumulative_comparisons(st[k], st["ab"], metric=metric)


def winsorization_table(engine, params: dict) -> pd.DataFrame:
    """Caps and units capped per experiment when ``ab_tests.winsorize`` is set (empty otherwise)."""
    st = _state(engine, params)
    q = st["ab"]["winsorize"]
    if not q or st["outcomes"] is None:
        return pd.DataFrame(columns=["experiment_id", "quantile", "cap_revenue", "n_capped_revenue", "cap_orders",
                                     "n_capped_orders", "n_units"])
    return winsorization_summary(st["outcomes"], q)


def holdout_table(engine, params: dict) -> pd.DataFrame:
    """Incremental conversions, revenue and ROI of holdout experiments, beside attributed ROI."""
    st = _state(engine, params)
    holdouts = _holdout.holdout_experiments(st["ab"])
    res = analysis(engine, params).results
    if not holdouts or res.empty:
        return pd.DataFrame(columns=_holdout.COLUMNS)
    spend = engine.to_pandas(engine.table("spend")) if engine.has_table("spend") else None
    roi = engine.to_pandas(engine.table("roi")) if engine.has_table("roi") else None
    periods = {}
    o = st["outcomes"]
    if o is not None:
        span = o.group_by("experiment_id").aggregate(first=o.assigned_date.min(), last=o.assigned_date.max())
        for _, r in span.to_pandas().iterrows():
            periods[r["experiment_id"]] = (
                r["first"], pd.Timestamp(r["last"]) + pd.Timedelta(days=st["ab"]["window_days"] - 1))
    return _holdout.incrementality(res, holdouts, spend, periods, roi)


def segment_results(engine, params: dict, segments, *, cuped: bool = True) -> pd.DataFrame:
    """Results per segment (exploratory; segment slices are never mixed into the verdict families).

    ``segments`` is an Ibis table ``customer_key, segment`` (e.g. the RFM segments). Each segment is
    analysed as its own experiment ``"<experiment_id> | <segment>"``.
    """
    st = _state(engine, params)
    if st["outcomes"] is None:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    seg = segments.select(g_key=segments.customer_key, segment=segments.segment.cast("string"))
    o = st["outcomes"]
    o = o.left_join(seg, o.customer_key == seg.g_key).drop("g_key")
    o = o.mutate(segment=o.segment.fill_null("(none)"))
    stats = sufficient_statistics(o, by_segment=True, winsorize=st["ab"]["winsorize"])
    stats["experiment_id"] = stats["experiment_id"] + " | " + stats["segment"]
    ab = dict(st["ab"])
    base = {e["id"]: e for e in ab["experiments"]}
    ab["experiments"] = [{**base.get(x.split(" | ")[0], experiment_defaults(x)), "id": x}
                         for x in stats["experiment_id"].unique()]
    res = analyze(stats.drop(columns=["segment"]), ab, cuped=cuped).results
    res["segment"] = res["experiment_id"].str.split(" | ", regex=False).str[-1]
    res["experiment_id"] = res["experiment_id"].str.split(" | ", regex=False).str[0]
    return res


def forest_plot(engine, params: dict, experiment_id: str | None = None, *, ax=None, sequential: bool = False):
    """Forest plot of relative lifts with CIs (see :func:`crmlib.abtest.plotting.plot_forest`)."""
    return plot_forest(analysis(engine, params).results, experiment_id, sequential=sequential, ax=ax)


def cumulative_plot(engine, params: dict, experiment_id: str, *, ax=None):
    """Cumulative lift over time for one experiment (confidence sequence shaded)."""
    return plot_cumulative_lift(cumulative_lift(engine, params), experiment_id, ax=ax)


def cumulative_plot_grid(engine, params: dict, *, metric: str | None = None):
    """One cumulative-lift panel per experiment (primary metric), stacked; returns the axes array."""
    import matplotlib.pyplot as plt

    cumulative = cumulative_lift(engine, params, metric=metric)
    experiments = sorted(cumulative["experiment_id"].unique()) if len(cumulative) else []
    if not experiments:
        _, ax = plt.subplots(figsize=(8, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no experiments with closed outcome windows", ha="center", va="center")
        return [ax]
    fig, axes = plt.subplots(len(experiments), 1, figsize=(8, 3.4 * len(experiments)), squeeze=False)
    for ax, experiment_id in zip(axes[:, 0], experiments):
        plot_cumulative_lift(cumulative, experiment_id, ax=ax)
    fig.tight_layout()
    return axes[:, 0]
