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

import ibis
import numpy as np
import pandas as pd

from crmlib import progress
from crmlib.asof import resolve_as_of
from crmlib.i18n import N_, _
from crmlib.present import fmt_count
from crmlib.params import experiment_defaults

from . import holdout as _holdout
from crmlib.status import Unavailable, guard

from .analysis import (RESULT_COLUMNS, WINSORIZE_METHOD, ABAnalysis, analyze, cumulative_comparisons,
                       require_comparable)
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
    "TABLES",
    "key_findings",
    "verdict_view",
    "srm_view",
    "result_view",
    "guardrail_view",
    "power_view",
    "holdout_view",
    "method_notes",
    "forest_figure",
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
        checked = guard(engine, STAGE, _("experiment {experiment}").format(experiment=experiment_id),
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
                a.results.loc[capped, "method"] = (a.results.loc[capped, "method"] + "; "
                                                   + WINSORIZE_METHOD.format(q=f"{q:g}"))
            st[k] = a
        # an experiment that could not be analysed keeps its row in the verdicts, with the reason
        st[k].verdicts = _with_unavailable(st[k].verdicts, st["unavailable"])
    return st[k]


def _with_unavailable(verdicts: pd.DataFrame, unavailable: dict[str, Unavailable]) -> pd.DataFrame:
    """The verdict table plus one "not analysed" row (with the reason) per experiment that could not be."""
    missing = [e for e in unavailable if e not in set(verdicts["experiment_id"])]
    if not missing:
        return verdicts
    rows = pd.DataFrame({"experiment_id": missing, "verdict": N_("not analysed"),
                         "reason": [unavailable[e].reason for e in missing]})
    return pd.concat([verdicts, rows], ignore_index=True) if len(verdicts) else rows.reindex(
        columns=list(verdicts.columns) or list(rows.columns))


def unavailable_experiments(engine, params: dict) -> pd.DataFrame:
    """Experiments left out of the analysis, each with the plain-words reason (empty when none)."""
    unavailable = _state(engine, params)["unavailable"]
    return pd.DataFrame({"experiment_id": list(unavailable), "reason": [u.reason for u in unavailable.values()]})


#: The tables the stage call writes (``tables/<name>.parquet``); every view reads them and nothing else.
TABLES = ("ab_results", "ab_verdicts", "ab_guardrails", "ab_power", "ab_srm", "ab_cumulative", "ab_holdout")


def _traffic(engine, params: dict, verdicts: pd.DataFrame) -> pd.DataFrame:
    """The verdict table with the current traffic (units per arm per day of assignment, the smaller arm)
    and the days the users still needed would take at that traffic."""
    st = _state(engine, params)
    out = verdicts.copy()
    out["users_per_arm_per_day"] = float("nan")
    out["days_more"] = float("nan")
    o = st["outcomes"]
    if o is None or out.empty:
        return out
    span = o.group_by("experiment_id").aggregate(first=o.assigned_date.min(), last=o.assigned_date.max()).to_pandas()
    days = (pd.to_datetime(span["last"]) - pd.to_datetime(span["first"])).dt.days + 1
    days = dict(zip(span["experiment_id"], days))
    arm = out[["n_control", "n_treatment"]].astype(float).min(axis=1)
    rate = arm / out["experiment_id"].map(days).astype(float)
    out["users_per_arm_per_day"] = rate
    out["days_more"] = out["n_more_per_arm"].astype(float) / rate.where(rate > 0)
    return out


def ab_results(engine, params: dict) -> pd.DataFrame:
    """The stage call: analyse every experiment once and write the stage's tables; returns ``ab_results``.

    Writes ``ab_results`` (one row per experiment x metric x variant, contract columns first; extras:
    role, always-valid intervals, unadjusted/CUPED figures, guardrail status, Fieller CI...),
    ``ab_verdicts`` (one row per experiment, with the users per arm still needed and the current
    traffic), ``ab_guardrails``, ``ab_power``, ``ab_srm``, ``ab_cumulative`` (lift over time) and
    ``ab_holdout`` (incremental return of holdout campaigns). The report's views only read these.
    """
    progress.step("experiments")
    a = analysis(engine, params)
    res = a.results.reset_index(drop=True)
    engine.write_table("ab_results", res)
    engine.write_table("ab_verdicts", _traffic(engine, params, a.verdicts).reset_index(drop=True))
    engine.write_table("ab_guardrails", a.guardrails.reset_index(drop=True))
    engine.write_table("ab_power", a.power.reset_index(drop=True))
    engine.write_table("ab_srm", a.srm.reset_index(drop=True))
    progress.step("lift over time")
    engine.write_table("ab_cumulative", cumulative_lift(engine, params).reset_index(drop=True))
    progress.step("holdout campaigns")
    engine.write_table("ab_holdout", _holdout_table(engine, params).reset_index(drop=True))
    return res


def run_ab_tests(ctx) -> ABAnalysis:
    """Whole stage for a :class:`crmlib.context.RunContext`: writes the stage's tables and returns the analysis."""
    ab_results(ctx.engine, ctx.params)
    return analysis(ctx.engine, ctx.params)


def _read(engine, name: str) -> pd.DataFrame:
    """A table the stage call wrote; a clear error when the stage call has not run on this run directory."""
    if not engine.has_table(name):
        raise RuntimeError(f"tables/{name}.parquet is missing: run the A/B stage call "
                           "(crmlib.abtest.stage.ab_results) before the report cells.")
    return pd.read_parquet(engine.table_path(name))


def verdict_table(engine, params: dict) -> pd.DataFrame:
    """One row per experiment (``ab_verdicts``): ship / do not ship / inconclusive / blocked: SRM, the reason
    and the next step."""
    return _read(engine, "ab_verdicts")


def guardrail_table(engine, params: dict) -> pd.DataFrame:
    """Guardrail non-inferiority results (``ab_guardrails``; margin relative to the control mean)."""
    return _read(engine, "ab_guardrails")


def power_table(engine, params: dict) -> pd.DataFrame:
    """MDE for the traffic seen, fraction of the planned sample, power achieved (``ab_power``)."""
    return _read(engine, "ab_power")


def srm_table(engine, params: dict) -> pd.DataFrame:
    """Sample-ratio check per experiment (``ab_srm``: observed vs designed split)."""
    return _read(engine, "ab_srm")


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
    """Incremental conversions, revenue and ROI of holdout experiments, beside attributed ROI (``ab_holdout``)."""
    return _read(engine, "ab_holdout")


def _holdout_table(engine, params: dict) -> pd.DataFrame:
    """Incremental conversions, revenue and ROI of holdout experiments, beside attributed ROI."""
    st = _state(engine, params)
    holdouts = _holdout.holdout_experiments(st["ab"])
    res = analysis(engine, params).results
    if not holdouts or res.empty:
        return pd.DataFrame(columns=_holdout.COLUMNS)
    spend = engine.to_pandas(_holdout_spend(engine.table("spend"), holdouts)) if engine.has_table("spend") else None
    # one row per attribution model and channel or campaign: small whatever the number of customers
    roi = engine.to_pandas(engine.table("roi")) if engine.has_table("roi") else None
    periods = {}
    o = st["outcomes"]
    if o is not None:
        span = o.group_by("experiment_id").aggregate(first=o.assigned_date.min(), last=o.assigned_date.max())
        for _index, r in span.to_pandas().iterrows():
            periods[r["experiment_id"]] = (
                r["first"], pd.Timestamp(r["last"]) + pd.Timedelta(days=st["ab"]["window_days"] - 1))
    return _holdout.incrementality(res, holdouts, spend, periods, roi)


def _holdout_spend(spend, holdouts: dict[str, dict]):
    """The spend of the holdouts' channels as daily totals per channel and campaign (Ibis), all that
    :func:`crmlib.abtest.holdout.incrementality` reads: a few rows per day, never the whole table."""
    channels = sorted({h["channel"] for h in holdouts.values() if h.get("channel")})
    campaigns = sorted({str(h["campaign_id"]) for h in holdouts.values() if h.get("campaign_id")})
    campaign = spend.campaign_id.cast("string") if "campaign_id" in spend.columns else ibis.null("string")
    s = spend.mutate(campaign_id=campaign)
    wanted = ibis.literal(False)  # every holdout names a channel or a campaign (holdout_experiments)
    if channels:
        wanted |= s.channel.isin(channels)
    if campaigns:
        wanted |= s.campaign_id.isin(campaigns)
    s = s.filter(wanted)
    return s.group_by(["date", "channel", "campaign_id"]).agg(cost=s.cost.cast("float64").sum())


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


# -- report views: they read the tables the stage call wrote and format them (crmlib.present) ---------------
def key_findings(engine, params: dict):
    """The page's opening "Key findings" (an HTML list), from the stage's tables (:mod:`crmlib.abtest.findings`)."""
    from crmlib.i18n import _

    from .findings import ab_findings, findings_markdown

    found = ab_findings(engine.tables_dir, currency=params["run"]["currency"])
    return findings_markdown(found, empty=_("No experiment could be analysed in this run."))


def _interval(low, high) -> list[str]:
    from .findings import interval_text

    return [interval_text(a, b) for a, b in zip(low, high)]


def verdict_view(engine, params: dict, *, run_dir=None):
    """The verdicts as a manager reads them: one row per experiment, the lift with the interval the verdict
    uses, the fixed-horizon interval labelled as such, the guardrails in words and the next step."""
    from crmlib import report
    from crmlib.i18n import _
    from crmlib.present import fmt_percent

    v = verdict_table(engine, params)
    if v.empty:
        return report.show(v, caption=_("Verdicts"))
    checked = v["guardrails_checked"].fillna("").astype(str) if "guardrails_checked" in v else ""
    harmed = v["guardrails_harmed"].fillna("").astype(str) if "guardrails_harmed" in v else ""
    unclear = v["guardrails_unclear"].fillna("").astype(str) if "guardrails_unclear" in v else ""
    guard_words = []
    for c, h, u, verdict in zip(checked, harmed, unclear, v["verdict"]):
        if verdict in ("blocked: SRM", "not analysed"):
            guard_words.append("")
        elif h:
            guard_words.append(_("guardrail {names} harmed").format(names=h))
        elif u:
            guard_words.append(_("guardrail {names} not yet clear").format(names=u))
        elif c:
            guard_words.append(_("no guardrail harmed"))
        else:
            guard_words.append(_("no guardrail set"))
    view = pd.DataFrame({
        _("experiment"): v["experiment_id"],
        _("verdict"): v["verdict"],
        _("primary metric"): v["primary_metric"],
        _("lift"): [fmt_percent(x, signed=True) for x in v["rel_lift"]],
        _("always-valid interval (used for the verdict)"): _interval(v["seq_rel_ci_low"], v["seq_rel_ci_high"]),
        _("fixed-horizon interval (one planned look only)"): _interval(v["rel_ci_low_fixed_horizon"],
                                                                       v["rel_ci_high_fixed_horizon"]),
        _("guardrails"): guard_words,
        _("next step"): v["next_step"].fillna(""),
    })
    return report.show(view, kinds={_("verdict"): "label"}, caption=_("Verdicts"), max_rows=20)


def srm_view(engine, params: dict):
    """The sample-ratio check in words: users per arm, the designed split and the p-value."""
    from crmlib import report
    from crmlib.i18n import _
    from crmlib.present import fmt_count, fmt_percent

    srm = srm_table(engine, params)
    if srm.empty:
        return report.show(srm, caption=_("Sample-ratio check"))

    def arms(text, fmt) -> str:
        # the stage wrote {variant: value} as text; shown as "control 1,990 · treatment 2,243"
        import ast

        try:
            values = ast.literal_eval(str(text))
        except (ValueError, SyntaxError):
            return ""
        return " · ".join(f"{k} {fmt(x)}" for k, x in values.items()) if isinstance(values, dict) else ""

    view = pd.DataFrame({
        _("experiment"): srm["experiment_id"],
        _("control arm"): srm["control_variant"],
        _("users per arm"): [arms(t, fmt_count) for t in srm["observed_n"]],
        _("designed split"): [arms(t, fmt_percent) for t in srm["designed_weights"]],
        _("p-value"): srm["srm_p_value"],
        _("split as designed"): [_("no: blocked") if b else _("yes") for b in srm["blocked"].astype(bool)],
    })
    return report.show(view, kinds={_("p-value"): "pvalue"}, caption=_("Sample-ratio check"))


#: how the page names each multiple-testing correction (``ab_tests.correction``)
_CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg"}


def _interval_basis(rows: pd.DataFrame) -> list[str]:
    """Per treatment row of ``ab_results``: whether the always-valid interval shown is the test its result
    rests on, or an uncorrected interval beside a result corrected for several comparisons.

    The intervals are never corrected; the result of a metric in a family of more than one comparison
    (secondary or exploratory metrics, or several treatment arms) uses the Holm / BH adjusted p-value, so
    an interval clear of zero can sit beside an inconclusive result. Guardrails are not corrected.
    """
    tested = pd.Series(np.isfinite(rows["p_value"].astype(float)), index=rows.index)
    family_size = tested.groupby([rows["experiment_id"], rows["role"]]).transform("sum")
    correction = rows["correction"] if "correction" in rows else pd.Series("", index=rows.index)
    out = []
    for k, name, verdict in zip(family_size, correction.astype(str), rows["verdict"]):
        if verdict == "blocked: SRM":  # no result to compare the interval with
            out.append("")
        elif name in _CORRECTION_NAMES and k > 1:
            out.append(_("uncorrected; the result is {correction}-corrected over {k} comparisons").format(
                correction=_CORRECTION_NAMES[name], k=fmt_count(k)))
        else:
            out.append(_("the one the result uses"))
    return out


def result_view(engine, params: dict, *, run_dir=None):
    """Every treatment comparison: the few columns a decision needs; the full table is a download."""
    from crmlib import report
    from crmlib.i18n import _

    from crmlib.present import fmt_percent

    res = pd.read_parquet(engine.table_path("ab_results")) if engine.has_table("ab_results") else None
    if res is None or res.empty:
        return report.show(res, caption=_("Results"))
    t = res[~res["is_control"].astype(bool)].reset_index(drop=True)
    view = pd.DataFrame({
        _("experiment"): t["experiment_id"], _("metric"): t["metric"], _("role"): t["role"],
        _("users"): t["n"], _("lift"): [fmt_percent(x, signed=True) for x in t["rel_lift"]],
        _("always-valid interval"): _interval(t["seq_rel_ci_low"], t["seq_rel_ci_high"]),
        # both intervals relative to the control mean, so that they compare side by side
        _("fixed-horizon interval"): _interval(np.minimum(t["abs_ci_low"] / t["control_mean"],
                                                          t["abs_ci_high"] / t["control_mean"]),
                                               np.maximum(t["abs_ci_low"] / t["control_mean"],
                                                          t["abs_ci_high"] / t["control_mean"])),
        _("result"): t["verdict"],
        _("interval shown"): _interval_basis(t),
    })
    # the page shows the readable columns; the download holds them and every column of ab_results
    raw = t.drop(columns=["method", *[c for c in view.columns if c in t.columns]])
    full = pd.concat([view, raw], axis=1)
    return report.show(full, columns=list(view.columns),
                       kinds={_("users"): "count", _("role"): "label", _("result"): "label"},
                       max_rows=20, caption=_("Lift per experiment, metric and variant"),
                       download="ab_results" if run_dir is not None else None, run_dir=run_dir)


def guardrail_view(engine, params: dict):
    """Guardrails in words: harmed, unharmed or not yet clear, with the interval and the allowed harm."""
    from crmlib import report
    from crmlib.i18n import _

    g = guardrail_table(engine, params)
    if g.empty:
        from IPython.display import Markdown

        return Markdown(_("*No experiment in this run has a guardrail metric.*"))
    words = {"pass": _("unharmed"), "fail": _("harmed"), "inconclusive": _("not yet clear")}
    view = pd.DataFrame({
        _("experiment"): g["experiment_id"], _("guardrail"): g["metric"], _("variant"): g["variant"],
        _("change"): g["rel_lift"], _("allowed harm"): -g["margin_relative"].astype(float),
        _("status"): g["guardrail_status"].map(words).fillna(g["guardrail_status"]),
    })
    return report.show(view, kinds={_("change"): "percent", _("allowed harm"): "percent"},
                       caption=_("Guardrails"))


def power_view(engine, params: dict):
    """What each experiment can detect now, and the users per arm (and days) an inconclusive one still needs."""
    from crmlib import report
    from crmlib.i18n import _

    p = power_table(engine, params)
    if p.empty:
        return report.show(p, caption=_("Power"))
    v = verdict_table(engine, params).set_index("experiment_id")
    view = pd.DataFrame({
        _("experiment"): p["experiment_id"], _("variant"): p["variant"],
        _("users per arm now"): p[["n_control", "n_treatment"]].min(axis=1),
        _("smallest lift detectable now"): p["mde_rel"],
        _("share of planned sample"): p["fraction_of_plan"],
        _("more users per arm needed"): p["experiment_id"].map(v["n_more_per_arm"]),
        _("days at current traffic"): p["experiment_id"].map(v["days_more"]),
    })
    return report.show(view, kinds={_("users per arm now"): "count", _("smallest lift detectable now"): "percent",
                                    _("share of planned sample"): "percent", _("more users per arm needed"): "count",
                                    _("days at current traffic"): "count"}, caption=_("Power"))


def holdout_view(engine, params: dict):
    """Incremental return of holdout campaigns beside the ROI stage's attributed ROI."""
    from crmlib import report
    from crmlib.i18n import _
    from crmlib.present import fmt_count, fmt_money, fmt_ratio

    h = holdout_table(engine, params)
    if h.empty:
        from IPython.display import Markdown

        return Markdown(_("*No holdout campaign in this run.*"))
    cur = params["run"]["currency"]
    with_interval = _("{value} ({low} to {high})")
    view = pd.DataFrame({
        _("experiment"): h["experiment_id"], _("channel"): h["channel"], _("campaign"): h["campaign_id"],
        _("incremental conversions"): [with_interval.format(value=fmt_count(x), low=fmt_count(a), high=fmt_count(b))
                                       for x, a, b in zip(h["incremental_conversions"], h["incremental_conversions_low"],
                                                          h["incremental_conversions_high"])],
        _("incremental revenue"): [with_interval.format(value=fmt_money(x, cur), low=fmt_money(a, cur),
                                                        high=fmt_money(b, cur)) for x, a, b
                                   in zip(h["incremental_revenue"], h["incremental_revenue_low"],
                                          h["incremental_revenue_high"])],
        _("cost"): h["cost"],
        _("incremental ROI"): [with_interval.format(value=fmt_ratio(x), low=fmt_ratio(a), high=fmt_ratio(b))
                               for x, a, b in zip(h["incremental_roi"], h["incremental_roi_low"],
                                                  h["incremental_roi_high"])],
        # one row per attribution model of the ROI stage: the model names the row's attributed ROI
        _("attribution model"): h["attribution_model"] if "attribution_model" in h else "",
        _("attributed ROI"): h["attributed_roi"],
    })
    return report.show(view, kinds={_("cost"): "money", _("attributed ROI"): "ratio",
                                    _("attribution model"): "label"}, currency=cur,
                       caption=_("Holdout campaigns"))


def method_notes(engine, params: dict):
    """"How this was computed": one note per method (not per row), from the stage's tables."""
    from IPython.display import Markdown

    from crmlib.report import escape_markdown

    from .analysis import method_text

    lines = []
    if engine.has_table("ab_results"):
        res = pd.read_parquet(engine.table_path("ab_results"), columns=["metric", "method", "is_control"])
        res = res[~res["is_control"].astype(bool)]
        for metric, methods in res.groupby("metric", sort=False)["method"]:
            for m in dict.fromkeys(methods):
                lines.append(f"- **{escape_markdown(metric)}**: {escape_markdown(method_text(m))}")
    for name, column in (("ab_power", "convention"), ("ab_guardrails", "rule")):
        if engine.has_table(name):
            t = pd.read_parquet(engine.table_path(name))
            if len(t) and column in t:
                label = _("power") if name == "ab_power" else _("guardrails")
                lines.append(f"- **{escape_markdown(label)}**: {escape_markdown(method_text(t[column].iloc[0]))}")
    return Markdown("\n".join(lines) if lines else _("*No method notes: no experiment was analysed.*"))


def forest_plot(engine, params: dict, experiment_id: str | None = None, *, ax=None, sequential: bool = True):
    """Forest plot of relative lifts (see :func:`crmlib.abtest.plotting.plot_forest`), read from
    ``ab_results``: the interval drawn is the one the verdict uses; only significant rows are coloured."""
    results = pd.read_parquet(engine.table_path("ab_results")) if engine.has_table("ab_results") else None
    if results is None or results.empty:
        return None
    return plot_forest(results, experiment_id, sequential=sequential, ax=ax)


def forest_figure(engine, params: dict):
    """The forest plot of the decision metrics (primary, secondary, guardrail) as a captioned figure."""
    from IPython.display import Markdown, display

    from crmlib import report
    from crmlib.i18n import _
    from crmlib.present import fmt_percent

    results = pd.read_parquet(engine.table_path("ab_results")) if engine.has_table("ab_results") else None
    if results is None or results.empty:
        display(Markdown(_("*No experiment could be analysed in this run.*")))
        return
    decision = results[results["role"].isin(["primary", "secondary", "guardrail"])]
    shown = decision if len(decision[~decision["is_control"].astype(bool)]) else results
    ax = plot_forest(shown)
    treated = shown[~shown["is_control"].astype(bool)]
    coloured = treated[treated["verdict"].isin(["better", "worse", "guardrail fail"])]
    if len(coloured):
        title = _("{k} of {n} decision metrics moved beyond doubt: {names}").format(
            k=len(coloured), n=len(treated), names=", ".join(dict.fromkeys(coloured["experiment_id"])))
    else:
        title = _("No experiment moved a decision metric beyond doubt")
    report.figure(ax, title=title,
                  caption=_("Relative lift against control per experiment and decision metric (primary, secondary, "
                            "guardrail). Each line is the always-valid interval the verdict uses; green or red only "
                            "where it excludes zero, grey where the result is inconclusive or the split is broken. "
                            "Exploratory metrics are in the result table's download."),
                  alt=_("Forest plot: {rows}").format(rows="; ".join(
                      f"{e} {m} {v}: {fmt_percent(x, signed=True)}" for e, m, v, x in zip(treated["experiment_id"], treated["metric"],
                                                                     treated["variant"], treated["rel_lift"]))))


def cumulative_plot(engine, params: dict, experiment_id: str, *, ax=None):
    """Cumulative lift over time for one experiment (confidence sequence shaded), from ``ab_cumulative``."""
    return plot_cumulative_lift(_read(engine, "ab_cumulative"), experiment_id, ax=ax)


def cumulative_plot_grid(engine, params: dict, *, metric: str | None = None):
    """One cumulative-lift panel per experiment (primary metric, from ``ab_cumulative``), as a captioned
    figure; returns the axes array."""
    import matplotlib.pyplot as plt

    from crmlib import report
    from crmlib.i18n import _

    cumulative = _read(engine, "ab_cumulative")
    experiments = sorted(cumulative["experiment_id"].unique()) if len(cumulative) else []
    if not experiments:
        from IPython.display import Markdown, display

        display(Markdown(_("*No experiment has closed outcome windows yet.*")))
        return []
    fig, axes = plt.subplots(len(experiments), 1, figsize=(8, 3.0 * len(experiments)), squeeze=False)
    for ax, experiment_id in zip(axes[:, 0], experiments):
        plot_cumulative_lift(cumulative, experiment_id, ax=ax)
    fig.tight_layout()
    report.figure(fig, title=_("How each experiment's lift settled over time"),
                  caption=_("Cumulative relative lift of the primary metric by assignment date. The shaded band is the "
                            "always-valid interval the verdict uses (safe to read every day); the dashed lines are the "
                            "fixed-horizon interval, valid only at the planned end."),
                  alt=_("Cumulative lift over time for {names}").format(names=", ".join(experiments)))
    return axes[:, 0]
