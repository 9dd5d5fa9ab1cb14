"""Stage functions for the ROI notebook: one call per cell, each ``(engine, params)``.

Reads ``tables/orders.parquet`` (required), ``touchpoints`` (customer_key as ingest wrote it, cookies
already stitched there), ``spend`` and ``clv`` (segmentation stage) when present.
Writes the contract tables ``attribution.parquet``, ``roi.parquet``, ``mmm.parquet`` and the stage's
own ``roi_disagreement.parquet``, ``roi_budget.parquet``, ``roi_journeys.json``, ``roi_markov.json``.
A function whose inputs are missing returns a :class:`MissingInput` saying so (and writes nothing)
instead of failing. A step the data cannot support - attribution without a converting journey, Markov or
Shapley with one channel, a media-mix model on too few weeks or without spend that varies, a budget
reallocation without a model - raises :class:`~crmlib.status.CannotCompute` inside, and the function
returns an :class:`~crmlib.status.Unavailable` (of which :class:`MissingInput` is one kind) with the
reason, recorded in the run's ``warnings.jsonl``; the other steps go on. ROI uses the segmentation
stage's CLV (LTV:CAC) when ``clv.parquet`` holds CLV values, and runs without it otherwise.

Params keys read (types, defaults and meanings: the schema, :mod:`crmlib.params` / ``docs/PARAMS.md``)::

    run.as_of                  default end of the analysis period
    roi.lookback_days          journey lookback window, days
    roi.half_life_days         time-decay half-life, days
    roi.position_weights       first / middle / last
    roi.period_start           analysis period start (inclusive date)
    roi.period_end             analysis period end (inclusive date)
    roi.budget_bounds          +/- fraction of current weekly spend
    roi.mmm.enabled, roi.mmm.bootstrap, roi.mmm.block_weeks, roi.mmm.seed
    roi.funnel.*               the conversion funnel (crmlib.roi.funnel)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crmlib import progress
from crmlib.asof import resolve_period_end
from crmlib.i18n import N_, _
from crmlib.roi.budget import BudgetResult, reallocate_budget
from crmlib.roi.funnel import funnel_method, funnel_stage
from crmlib.roi.journeys import JourneyResult, build_journeys, by_channel
from crmlib.roi.messages import NOTES, NOTHING_IDENTIFIED, NOT_IDENTIFIED, recorded_text
from crmlib.roi.mmm import MediaMixModel, weekly_totals
from crmlib.roi.roi_table import (
    MODELS,
    AttributionResult,
    attribute_all,
    channel_costs,
    model_disagreement,
    roi_table,
)
from crmlib.status import CannotCompute, Unavailable, guard, record_warning, recorded_reason, show_notice

__all__ = [
    "MissingInput",
    "roi_settings",
    "journeys_stage",
    "attribution_stage",
    "roi_stage",
    "disagreement_stage",
    "mmm_stage",
    "budget_stage",
    "response_curves_stage",
    "journey_summary",
    "journey_charts",
    "roi_chart",
    "campaign_roi",
    "markov_charts",
    "mmm_table",
    "response_curves_chart",
    "budget_table",
    "budget_caveats",
    "PARAM_KEYS",
    "TABLES",
    "run_roi",
    "key_findings",
    "roi_view",
    "disagreement_view",
    "mmm_view",
    "budget_view",
    "method_notes",
]

PARAM_KEYS = (
    "run.as_of",
    "roi.lookback_days",
    "roi.half_life_days",
    "roi.position_weights",
    "roi.period_start",
    "roi.period_end",
    "roi.budget_bounds",
    "roi.mmm.enabled",
    "roi.mmm.bootstrap",
    "roi.mmm.block_weeks",
    "roi.mmm.seed",
    "roi.funnel",
)

MIN_MMM_WEEKS = 26


#: The runner's name of this stage (warnings are recorded under it).
STAGE = "roi"
#: Models that compare channels with each other: they need touches from at least two channels.
CHANNEL_COMPARING_MODELS = ("markov", "shapley")
#: Exact Shapley values enumerate channel subsets as int64 bit masks.
MAX_SHAPLEY_CHANNELS = 62
#: What the attribution step writes (removed when it cannot be computed).
ATTRIBUTION_TABLES = ("attribution", "roi", "roi_disagreement", "roi_markov")
#: The step names of the channel-comparing models (warnings are recorded under them; pages translate them).
COMPARING_STEPS = {
    ("markov", "channel"): N_("Markov attribution"),
    ("shapley", "channel"): N_("Shapley attribution"),
    ("markov", "campaign"): N_("Markov attribution by campaign"),
    ("shapley", "campaign"): N_("Shapley attribution by campaign"),
}
#: how the journey conventions (``roi_journeys.json``) are named on the page
JOURNEY_CONVENTIONS = {
    "lookback_days": N_("lookback days"),
    "half_life_days": N_("half life days"),
    "period_start": N_("period start"),
    "period_end_exclusive": N_("period end exclusive"),
    "label": N_("label"),
    "path_format": N_("path format"),
    "conversion": N_("conversion"),
}


@dataclass(frozen=True)
class MissingInput(Unavailable):
    """An :class:`~crmlib.status.Unavailable` whose cause is an input the run does not have (a kind absent
    from the params, a step switched off): the step is skipped, with the reason in plain words."""

    @property
    def stage(self) -> str:
        return self.step

    @property
    def message(self) -> str:
        return self.reason

    def __repr__(self) -> str:
        return f"{self.step}: skipped - {self.reason}"

    def _repr_markdown_(self) -> str:
        from crmlib.report import escape_markdown

        # the step is our code (marked where the notice is made); the reason is written in the run's language
        head = _("{step}: skipped").format(step=_(self.step))
        return f"**{escape_markdown(head)}** - {escape_markdown(self.reason)}"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"stage": [self.step], "status": ["skipped"], "reason": [self.reason]})


def _warn_once(engine, step: str, reason: str) -> None:
    """Record a warning once per engine (every cell of the notebook asks for the same steps)."""
    engine.memo(("roi", "warned", step, reason), lambda: record_warning(engine, STAGE, step, reason))


def _missing(engine, step: str, reason: str) -> MissingInput:
    """A step skipped for want of an input: recorded, so the run page says what this run could not cover."""
    _warn_once(engine, step, reason)
    return MissingInput(step, reason)


def _passed_on(step: str, cause: Unavailable) -> Unavailable:
    """A step that needs an unavailable one: the same kind of notice, under this step's name."""
    return type(cause)(step, cause.reason)


def roi_settings(engine, params: dict) -> dict:
    """The stage's settings from validated params (:func:`crmlib.params.load_params` or
    :func:`crmlib.params.complete_params`, which fill every default; see ``docs/PARAMS.md``).

    ``period_end`` is ``roi.period_end``, else the run's analysis date (:func:`crmlib.asof.resolve_as_of`),
    else None when the run has neither a ``run.as_of`` nor orders (the stages then report the missing input).
    """
    roi, mmm = params["roi"], params["roi"]["mmm"]
    period_end = resolve_period_end(engine, params, roi["period_end"])
    return {
        "lookback_days": float(roi["lookback_days"]),
        "half_life_days": float(roi["half_life_days"]),
        "position_weights": tuple(float(w) for w in roi["position_weights"]),
        "period_start": roi["period_start"],
        "period_end": period_end,
        "budget_bounds": float(roi["budget_bounds"]),
        "mmm_enabled": bool(mmm["enabled"]),
        "mmm_bootstrap": int(mmm["bootstrap"]),
        "mmm_block_weeks": int(mmm["block_weeks"]),
        "mmm_seed": int(mmm["seed"]),
    }


def _optional(engine, name: str):
    return engine.table(name) if engine.has_table(name) else None


def _clv_for_ltv(engine):
    """The segmentation stage's CLV table when it holds CLV values (a purchase model without a spend model
    writes the table with ``clv`` null, and a null must not count as a CLV of 0)."""
    clv = _optional(engine, "clv")
    if clv is None or "clv" not in clv.columns or not engine.to_pandas(clv.clv.notnull().any()):
        return None
    return clv


def _cached(engine, key: str, settings: dict, make):
    """One result per (step, settings) for this engine: the notebook's cells share journeys and the MMM fit."""
    return engine.memo(("roi", key, tuple(sorted((s, str(v)) for s, v in settings.items()))), make)


def journeys_stage(engine, params: dict, *, label: str = "channel") -> JourneyResult | MissingInput:
    """Build journeys and the path table; writes ``roi_journeys.json`` (summary and conventions)."""
    if not engine.has_table("orders"):
        return MissingInput(N_("journeys"), _("no orders table: run the ingest stage first."))
    if not engine.has_table("touchpoints"):
        return _missing(engine, N_("journeys and attribution"),
                        _("no touchpoints source in this run: journeys and attribution need marketing touches."))
    s = roi_settings(engine, params)

    def make():
        if label == "channel":  # one pass over the touches serves both levels (journeys.by_channel)
            return by_channel(journeys_stage(engine, params, label="campaign"))
        return build_journeys(
            engine.table("touchpoints"),
            engine.table("orders"),
            lookback_days=s["lookback_days"],
            half_life_days=s["half_life_days"],
            period_start=s["period_start"],
            period_end=s["period_end"],
            label=label,
            clv=_clv_for_ltv(engine),
        )

    result = _cached(engine, f"journeys:{label}", s, make)
    if label == "channel":
        engine.write_json("roi_journeys", {
            "summary": result.summary,
            "conventions": result.conventions,
            "lengths": result.lengths.to_dict(orient="list"),
            "time_to_convert_days": result.time_to_convert.to_dict(orient="list"),
        })
    return result


def attribution_stage(engine, params: dict) -> AttributionResult | Unavailable:
    """All attribution models; writes ``attribution.parquet`` and ``roi_markov.json``.

    Without a converting journey nothing can be credited (the reason is recorded and returned). Markov and
    Shapley compare channels: with touches from one channel only (or, for exact Shapley, more than
    :data:`MAX_SHAPLEY_CHANNELS`) each is an :class:`~crmlib.status.Unavailable` in the result, with the
    reason recorded, and the rule-based models still credit every conversion.
    """
    journeys = journeys_stage(engine, params)
    if isinstance(journeys, Unavailable):
        engine.remove_tables(*ATTRIBUTION_TABLES)
        return _passed_on(N_("attribution"), journeys)
    s = roi_settings(engine, params)
    result = _cached(engine, "attribution", s, lambda: guard(engine, STAGE, N_("attribution"),
                                                              lambda: _attribute(engine, journeys.paths, s)))
    if isinstance(result, Unavailable):
        engine.remove_tables(*ATTRIBUTION_TABLES)
        return result
    engine.write_table("attribution", result.table)
    if isinstance(result.markov, Unavailable):
        engine.remove_tables("roi_markov")
    if not isinstance(result.markov, (Unavailable, type(None))):
        m = result.markov
        engine.write_json("roi_markov", {
            "convention": m.convention,
            "params": m.params_,
            "transition_matrix": {"index": list(m.transition_matrix_.index), "columns": list(m.transition_matrix_.columns),
                                  "data": m.transition_matrix_.to_numpy().tolist()},
            "removal_effects": m.removal_effects_.reset_index().to_dict(orient="records"),
        })
    return result


def _attribute(engine, paths: pd.DataFrame, s: dict, label: str = "channel") -> AttributionResult:
    """Rule-based models on every path table; Markov and Shapley where their preconditions hold."""
    if paths["conversions"].sum() == 0:
        raise CannotCompute(_(
            "attribution needs orders with a marketing touch in the {days} days before them; none of the orders in "
            "the period has one ({journeys} journeys without an order). A longer roi.lookback_days, or touchpoints "
            "that cover the order period, fixes it.").format(days=f"{s['lookback_days']:g}",
                                                            journeys=f"{len(paths):,}"))
    rule_based = [m for m in MODELS if m not in CHANNEL_COMPARING_MODELS]
    result = attribute_all(paths, models=rule_based, position_weights=s["position_weights"],
                           half_life_days=s["half_life_days"])
    channels = int(result.table["channel"].nunique())
    frames = [result.table]
    for model in CHANNEL_COMPARING_MODELS:
        step = COMPARING_STEPS[(model, label)]
        fitted = guard(engine, STAGE, step, lambda m=model: _channel_comparing(paths, m, channels, label))
        if isinstance(fitted, Unavailable):
            setattr(result, model, fitted)
            continue
        frames.append(fitted.table)
        setattr(result, model, getattr(fitted, model))
    result.table = pd.concat(frames, ignore_index=True)
    return result


def _channel_comparing(paths: pd.DataFrame, model: str, channels: int, label: str) -> AttributionResult:
    """Markov or Shapley credits, or :class:`~crmlib.status.CannotCompute` when the data cannot support them."""
    name, what = model.capitalize(), _(label)  # label: "channel" or "campaign", both in the catalog
    if channels < 2:
        raise CannotCompute(_(
            "{name} attribution compares {label}s with each other, so it needs converting journeys touched by "
            "at least two {label}s; this data has {n}, which the rule-based models credit with every "
            "conversion.").format(name=name, label=what, n=channels))
    if model == "shapley" and channels > MAX_SHAPLEY_CHANNELS:
        raise CannotCompute(_("exact Shapley attribution handles at most {limit} {label}s; this data has {n}.").format(
            limit=MAX_SHAPLEY_CHANNELS, label=what, n=f"{channels:,}"))
    try:
        return attribute_all(paths, models=[model])
    except np.linalg.LinAlgError as exc:
        # the Markov chain's transient system is singular when the journeys cannot reach a conversion
        raise CannotCompute(_("{name} attribution: the transition system of these journeys is singular ({error}), "
                              "so the journeys cannot tell the {label}s apart.").format(
            name=name, error=exc, label=what)) from exc


def roi_stage(engine, params: dict) -> pd.DataFrame | Unavailable:
    """Model x channel (and x campaign) ROI; writes ``roi.parquet``.

    Rows have ``level`` = ``channel`` or ``campaign`` (campaign rows only when touches carry campaign
    ids; their ``channel`` is the channel and ``campaign_id`` the campaign). The frame's
    ``attrs["notes"]`` lists data caveats (e.g. no spend table).
    """
    attribution = attribution_stage(engine, params)
    if isinstance(attribution, Unavailable):
        return _passed_on(N_("roi"), attribution)
    s = roi_settings(engine, params)
    spend, touches = _optional(engine, "spend"), engine.table("touchpoints")
    notes = []  # stored in English (roi_summary.json); the page translates them (crmlib.roi.messages)
    if spend is None:
        notes.append(NOTES["no_spend_table"])
    costs = channel_costs(spend, touches, period_start=s["period_start"], period_end=s["period_end"])
    from_touches = costs.loc[(costs["cost_source"] == "touches") & (costs["cost"] > 0), "channel"].tolist()
    if spend is not None and from_touches:
        notes.append(NOTES["touch_cost"].format(channels=", ".join(from_touches)))
    if costs["cost"].sum() == 0:
        notes.append(NOTES["no_cost"])
    table = roi_table(attribution.table, costs).assign(level="channel", campaign_id=None)
    frames = [table]
    has_campaigns = "campaign_id" in touches.columns and engine.to_pandas(touches.campaign_id.notnull().any())
    if has_campaigns:
        cj = journeys_stage(engine, params, label="campaign")
        if not isinstance(cj, Unavailable) and cj.paths["conversions"].sum() > 0:
            ca = _cached(engine, "attribution:campaign", s, lambda: _attribute(engine, cj.paths, s, label="campaign"))
            cc = channel_costs(spend, touches, period_start=s["period_start"], period_end=s["period_end"], level="campaign")
            ct = roi_table(ca.table, cc)
            # the label is the (channel, campaign_id) pair: both names come back exactly as loaded
            ct = ct.assign(level="campaign", channel=[c for c, _k in ct["channel"]],
                           campaign_id=[k for _c, k in ct["channel"]])
            frames.append(ct)
    out = pd.concat(frames, ignore_index=True)
    out["campaign_id"] = out["campaign_id"].astype("string")
    engine.write_table("roi", out)
    out.attrs["notes"] = notes
    return out


def disagreement_stage(engine, params: dict, measure: str = "revenue") -> pd.DataFrame | Unavailable:
    """Channel share and rank under each model and their spread; writes ``roi_disagreement.parquet``."""
    attribution = attribution_stage(engine, params)
    if isinstance(attribution, Unavailable):
        return _passed_on(N_("model disagreement"), attribution)
    table = model_disagreement(attribution.table, measure)
    engine.write_table("roi_disagreement", table)
    return table


def mmm_stage(engine, params: dict) -> MediaMixModel | Unavailable:
    """Fit the media-mix model on weekly totals; writes ``mmm.parquet``.

    Without cost data the step is skipped (a :class:`MissingInput`); on too few weeks, without spend
    that varies, or on a singular design the reason is recorded and an :class:`~crmlib.status.Unavailable`
    returned (a stale ``mmm.parquet`` copied from an earlier run is removed).
    """
    s = roi_settings(engine, params)
    if not s["mmm_enabled"]:
        return MissingInput(N_("media-mix model"), _("disabled by roi.mmm.enabled = false."))
    if not engine.has_table("orders"):
        return MissingInput(N_("media-mix model"), _("no orders table."))
    spend, touches = _optional(engine, "spend"), _optional(engine, "touchpoints")
    if spend is None and (touches is None or "cost" not in touches.columns):
        return _missing(engine, N_("media-mix model"),
                        _("no spend table and no touch-level cost: nothing to relate revenue to."))

    def make():
        weekly = weekly_totals(engine.table("orders"), spend, touches,
                               period_start=s["period_start"], period_end=s["period_end"])
        channels = [c for c in weekly.columns if c not in ("week", "revenue") and weekly[c].sum() > 0]
        if not channels:
            raise CannotCompute(_("the media-mix model relates weekly revenue to marketing cost; there is no "
                                  "marketing cost in the complete weeks of the period."))
        needed = max(MIN_MMM_WEEKS, 2 * len(channels) + 8)
        if len(weekly) < needed:
            raise CannotCompute(_(
                "the media-mix model needs at least {needed} complete weeks of revenue and spend for "
                "{channels} channel(s) (trend, seasonality and each channel's carry-over are estimated "
                "from them); this data has {weeks}. A longer period of orders and spend fixes it.").format(
                needed=needed, channels=len(channels), weeks=len(weekly)))
        model = MediaMixModel(n_bootstrap=s["mmm_bootstrap"], block_weeks=s["mmm_block_weeks"], seed=s["mmm_seed"])
        return model.fit(weekly, channels)

    model = _cached(engine, "mmm", s, lambda: guard(engine, STAGE, N_("media-mix model"), make))
    if isinstance(model, MediaMixModel):
        cols = ["channel", "spend", "roas", "roas_low", "roas_high", "mroas", "identified"]
        summary = model.summary_.assign(method=model.summary_.attrs.get("convention", ""))
        engine.write_table("mmm", summary[cols + [c for c in summary.columns if c not in cols]])
    elif s["mmm_enabled"]:
        engine.remove_tables("mmm")
    return model


def budget_stage(engine, params: dict) -> BudgetResult | Unavailable:
    """Reallocate the weekly budget within ``roi.budget_bounds``; writes ``roi_budget.parquet``.

    Needs a fitted media-mix model: without one the reason is recorded and returned.
    """
    model = mmm_stage(engine, params)
    if isinstance(model, Unavailable):
        if isinstance(model, MissingInput):
            return _passed_on(N_("budget reallocation"), model)
        reason = _("the reallocation moves budget along the media-mix model's response curves: {reason}").format(
            reason=model.reason)
        _warn_once(engine, N_("budget reallocation"), reason)
        engine.remove_tables("roi_budget")
        return Unavailable(N_("budget reallocation"), reason)
    s = roi_settings(engine, params)
    result = _cached(engine, "budget", s, lambda: guard(engine, STAGE, N_("budget reallocation"),
                                                         lambda: reallocate_budget(model, bounds=s["budget_bounds"])))
    if isinstance(result, Unavailable):
        engine.remove_tables("roi_budget")
        return result
    engine.write_table("roi_budget", result.table.assign(
        gain=result.gain, gain_low=result.gain_low, gain_high=result.gain_high))
    if not result.table["identified"].any() and "nothing moves" not in result.method:
        result.method = NOTHING_IDENTIFIED.format(method=result.method)
    return result


def response_curves_stage(engine, params: dict) -> pd.DataFrame | Unavailable:
    """Response curves of the fitted MMM (``channel, weekly_spend, response, low, high``)."""
    model = mmm_stage(engine, params)
    if isinstance(model, Unavailable):
        return _passed_on(N_("response curves"), model)
    return model.response_curves()


# -- the stage call: compute once, write every table ---------------------------------------------------
#: What the stage call writes under ``tables/`` (Parquet or JSON); the report's views read only these.
TABLES = ("roi_journeys", "attribution", "roi_markov", "roi", "roi_disagreement", "mmm", "roi_response_curves",
          "roi_budget", "roi_budget_summary", "roi_summary", "funnel")
#: The attribution model whose credited revenue and CAC the page's one-model figures use.
REFERENCE_MODEL = "linear"


def _summary(engine, table: pd.DataFrame, journeys) -> dict:
    """Blended figures of the channel rows (cost and credited revenue of the reference model)."""
    ch = table[table["level"] == "channel"]
    model = REFERENCE_MODEL if REFERENCE_MODEL in set(ch["model"]) else str(ch["model"].iloc[0])
    ref = ch[ch["model"] == model]
    cost, revenue = float(ref["cost"].sum()), float(ref["revenue"].sum())
    new = float(ref["new_customers"].sum()) if "new_customers" in ref else None
    out = {"reference_model": model, "total_cost": cost, "credited_revenue": revenue,
           "blended_roas": revenue / cost if cost > 0 else None,
           "new_customers": new, "cac": cost / new if new and cost > 0 else None,
           "notes": list(table.attrs.get("notes", []))}
    if not isinstance(journeys, Unavailable):
        total, touched = float(journeys.summary["conversion_value"]), float(journeys.summary["touched_value"])
        out.update(conversion_value=total, touched_value=touched, touched_share=touched / total if total else None)
    return out


def run_roi(engine, params: dict) -> None:
    """The stage call: compute every ROI step once and write its tables; the report cells only read them.

    Writes ``roi_journeys.json``, ``attribution``, ``roi_markov.json``, ``roi``, ``roi_disagreement``,
    ``roi_summary.json`` (blended ROAS, CAC, the share of revenue marketing touched), ``mmm``,
    ``roi_response_curves``, ``roi_budget``, ``roi_budget_summary.json`` and, from the run's events,
    ``funnel`` (:func:`crmlib.roi.funnel.funnel_stage`). A step that cannot be computed writes nothing (and
    removes a stale copy); its reason is in ``warnings.jsonl``.
    """
    progress.step("journeys")
    journeys = journeys_stage(engine, params)
    progress.step("attribution and ROI")
    table = roi_stage(engine, params)
    if isinstance(table, Unavailable):
        engine.remove_tables("roi_summary")
    else:
        disagreement_stage(engine, params)
        engine.write_json("roi_summary", _summary(engine, table, journeys))
    progress.step("media-mix model")
    model = mmm_stage(engine, params)
    if isinstance(model, MediaMixModel):
        engine.write_table("roi_response_curves", model.response_curves())
    else:
        engine.remove_tables("roi_response_curves")
    progress.step("budget reallocation")
    budget = budget_stage(engine, params)
    if isinstance(budget, BudgetResult):
        engine.write_json("roi_budget_summary", {
            "gain": budget.gain, "gain_low": budget.gain_low, "gain_high": budget.gain_high,
            "ci_level": budget.ci_level, "total_budget": budget.total_budget, "method": budget.method,
            "caveats": list(budget.caveats)})
    else:
        engine.remove_tables("roi_budget_summary")
    progress.step("funnel")
    funnel_stage(engine, params)


# -- report views: one call per notebook cell; they read the tables run_roi wrote ---------------------------
def _read_table(engine, name: str) -> pd.DataFrame | None:
    return pd.read_parquet(engine.table_path(name)) if engine.has_table(name) else None


def _read_json(engine, name: str):
    return engine.read_json(name) if (engine.tables_dir / f"{name}.json").exists() else None


def _absent(engine, step: str, *warned_steps: str) -> Unavailable:
    """The notice shown where a table is missing: the reason the stage recorded, else "not computed"."""
    reason = recorded_reason(engine, STAGE, *(warned_steps or (step,)))
    if reason is not None:
        return Unavailable(step, reason)
    return MissingInput(step, _("not computed in this run (the ROI stage call writes it)."))


def key_findings(engine, params: dict):
    """The page's opening "Key findings" (an HTML list), from the stage's tables (:mod:`crmlib.roi.findings`)."""
    from crmlib.roi.findings import findings_markdown, roi_findings

    found = roi_findings(engine.tables_dir, currency=params["run"]["currency"])
    return findings_markdown(found, empty=_("No ROI could be computed in this run; the reasons are below."))


def journey_summary(engine, params: dict):
    """Journey counts in plain words (conversions, touched share, unattributable touches)."""
    from crmlib import report
    from crmlib.present import fmt_count, fmt_money

    j = _read_json(engine, "roi_journeys")
    if j is None:
        return _absent(engine, N_("journeys"), "journeys and attribution", "journeys")
    s, cur = j["summary"], params["run"]["currency"]
    rows = [
        (_("orders in the period"), fmt_count(s["conversions"]), fmt_money(s["conversion_value"], cur)),
        (_("orders with a marketing touch before them"), fmt_count(s["touched_conversions"]),
         fmt_money(s["touched_value"], cur)),
        (_("orders without a touch"), fmt_count(s["untouched_conversions"]), fmt_money(s["untouched_value"], cur)),
        (_("journeys without an order"), fmt_count(s["non_converting_journeys"]), ""),
        (_("touches in the period"), fmt_count(s["touches_in_period"]), ""),
        (_("touches that cannot be tied to a customer"), fmt_count(s["touches_unattributable"]), ""),
    ]
    return report.show(pd.DataFrame(rows, columns=[_("measure"), _("count"), _("revenue")]),
                       caption=_("Journeys"))


def journey_charts(engine, params: dict):
    """Journey-length and time-to-convert distributions side by side, as one captioned figure."""
    import matplotlib.pyplot as plt

    from crmlib import report
    from crmlib.roi.plotting import plot_journey_lengths, plot_time_to_convert

    j = _read_json(engine, "roi_journeys")
    if j is None:
        return show_notice(_absent(engine, N_("journeys"), "journeys and attribution", "journeys"))
    lengths, ttc = pd.DataFrame(j["lengths"]), pd.DataFrame(j["time_to_convert_days"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    plot_journey_lengths(lengths, ax=left)
    plot_time_to_convert(ttc, ax=right)
    fig.tight_layout()
    share_one = (float(lengths.loc[lengths["touches"] == 1, "converting"].sum()) / float(lengths["converting"].sum())
                 if len(lengths) and lengths["converting"].sum() else float("nan"))
    from crmlib.present import fmt_percent

    report.figure(fig, title=_("{share} of converting journeys have a single touch").format(share=fmt_percent(share_one)),
                  caption=_("Left: touches per journey, converting and non-converting. Right: whole days from a "
                            "converting journey's first touch to its order."),
                  alt=_("Histograms of journey length and of days from first touch to conversion."))
    return left, right


def roi_chart(engine, params: dict, *, metric: str = "roas"):
    """Every channel's cost beside its ROAS on a log scale (range over the attribution models), with a takeaway
    title, caption and alt text; returns the two axes."""
    from crmlib import report
    from crmlib.present import fmt_money, fmt_ratio
    from crmlib.roi.plotting import plot_roas_by_channel, roas_ranges

    table = _read_table(engine, "roi")
    if table is None:
        return show_notice(_absent(engine, N_("roi"), "attribution", "journeys and attribution"))
    channels = table[table["level"] == "channel"]
    ranges = roas_ranges(channels)
    if ranges.empty:
        return show_notice(MissingInput(N_("ROI chart"), _("no channel has a cost in the period, so ROAS is undefined.")))
    axes = plot_roas_by_channel(channels, currency=params["run"]["currency"])
    from crmlib.roi.findings import SMALL_COST_SHARE

    share = ranges["cost"] / ranges["cost"].sum()
    material, small = ranges[share >= SMALL_COST_SHARE], ranges[share < SMALL_COST_SHARE]
    pays = material[material["roas_low"] > 1]
    title = _("{k} of {n} channels with material spend return more than they cost under every attribution "
              "model").format(k=len(pays), n=len(material))
    if len(small):
        title += _("; {names} look high only because almost none of their cost is recorded").format(
            names=_(", ").join(map(str, small["channel"])))
    no_cost = sorted(set(channels["channel"]) - set(ranges["channel"]))
    caption = _("Left: cost in the period. Right: ROAS (credited revenue / cost) on a log scale so that every channel "
                "shows; the bar reaches the median over the attribution models, the black line spans the lowest to "
                "the highest model, the dashed line is break-even.")
    if no_cost:
        caption += " " + _("Not shown (no cost recorded): {names}.").format(names=_(", ").join(map(str, no_cost)))
    alt = _("ROAS by channel: {rows}").format(rows=_("; ").join(
        _("{channel} cost {cost}, ROAS {low} to {high}").format(channel=r["channel"], cost=fmt_money(r["cost"], params["run"]["currency"]),
                                                               low=fmt_ratio(r["roas_low"]), high=fmt_ratio(r["roas_high"]))
        for _i, r in ranges.iterrows()))
    report.figure(axes[0], title=title, caption=caption, alt=alt)
    return axes


def roi_view(engine, params: dict, *, run_dir=None):
    """One row per channel: cost, credited revenue and CAC of the reference model, and the ROAS range over the
    attribution models; the full model x channel table is a download."""
    from crmlib import report
    from crmlib.roi.plotting import roas_ranges
    from crmlib.roi.findings import _range

    table = _read_table(engine, "roi")
    if table is None:
        return _absent(engine, N_("roi"), "attribution", "journeys and attribution")
    ch = table[table["level"] == "channel"]
    code = REFERENCE_MODEL if REFERENCE_MODEL in set(ch["model"]) else str(ch["model"].iloc[0])
    ref = ch[ch["model"] == code].set_index("channel")
    model = _(code)  # the model's name in the headers
    ranges = roas_ranges(ch).set_index("channel")
    mmm = _read_table(engine, "mmm")
    mmm = mmm.set_index("channel") if mmm is not None else None
    order = ref.sort_values("cost", ascending=False).index
    view = pd.DataFrame({
        _("channel"): order,
        _("cost"): ref.loc[order, "cost"].to_numpy(),
        _("credited revenue ({model})").format(model=model): ref.loc[order, "revenue"].to_numpy(),
        _("ROAS over the models"): [_range(ranges.loc[c, "roas_low"], ranges.loc[c, "roas_high"])
                                    if c in ranges.index else "" for c in order],
        _("media-mix ROAS"): [_mmm_words(mmm, c) for c in order],
        _("CAC ({model})").format(model=model): ref.loc[order, "cac"].to_numpy() if "cac" in ref else None,
    })
    if "ltv_cac" in ref:
        view[_("LTV:CAC ({model})").format(model=model)] = ref.loc[order, "ltv_cac"].to_numpy()
    kinds = {_("cost"): "money", _("credited revenue ({model})").format(model=model): "money",
             _("CAC ({model})").format(model=model): "money", _("LTV:CAC ({model})").format(model=model): "ratio"}
    shown = report.show(view, kinds=kinds, currency=params["run"]["currency"], caption=_("ROI by channel"), max_rows=20)
    if run_dir is None:
        return shown
    from IPython.display import HTML, display

    display(shown)
    # the page shows one row per channel; the download is every model x channel (and campaign) row
    return HTML(_download_links(table.drop(columns=["convention"], errors="ignore"), "roi", run_dir,
                                _("Every attribution model, channel and campaign")))


def _download_links(full: pd.DataFrame, name: str, run_dir, label: str) -> str:
    """Write ``full`` as ``run_dir/downloads/<name>.csv`` and ``.xlsx`` (formula cells neutralised) and return
    the HTML line linking them (the page lives in ``run_dir``)."""
    import html as _html

    from crmlib import report

    folder = Path(run_dir) / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    report.write_people_csv(full, folder / f"{name}.csv")
    report._write_xlsx(full, folder / f"{name}.xlsx")  # the same writer report.show(download=...) uses
    e = _html.escape
    lead = _("{label} (full table):").format(label=label)
    return (f"<p class='crm-download'>{e(lead)} "
            f"<a href='downloads/{e(name)}.csv' download>CSV</a> &middot; "
            f"<a href='downloads/{e(name)}.xlsx' download>Excel</a></p>")


def _mmm_words(mmm: pd.DataFrame | None, channel: str) -> str:
    from crmlib.present import fmt_ratio

    if mmm is None or channel not in mmm.index:
        return ""
    r = mmm.loc[channel]
    if bool(r["identified"]):
        return _("{roas} ({low} to {high})").format(roas=fmt_ratio(r["roas"]), low=fmt_ratio(r["roas_low"]),
                                                   high=fmt_ratio(r["roas_high"]))
    if str(r.get("reason", "")).startswith("not modelled"):
        return _("not modelled")
    return _("not identified")


def campaign_roi(engine, params: dict, *, run_dir=None):
    """The campaigns with the most cost (reference model), a few columns; every campaign row is a download."""
    from crmlib import report

    table = _read_table(engine, "roi")
    if table is None:
        return _absent(engine, N_("campaign ROI"), "attribution", "journeys and attribution")
    camp = table[table["level"] == "campaign"]
    if camp.empty:
        from IPython.display import Markdown

        return Markdown(_("*The touches carry no campaign ids: no campaign ROI.*"))
    code = REFERENCE_MODEL if REFERENCE_MODEL in set(camp["model"]) else str(camp["model"].iloc[0])
    ref = camp[camp["model"] == code].sort_values("cost", ascending=False)
    view = pd.DataFrame({_("campaign"): ref["campaign_id"], _("channel"): ref["channel"], _("cost"): ref["cost"],
                         _("orders credited"): ref["conversions"], _("revenue credited"): ref["revenue"],
                         _("ROAS"): ref["roas"], _("CAC"): ref.get("cac")})
    raw = ref.drop(columns=["convention", *[c for c in view.columns if c in ref.columns]], errors="ignore")
    full = pd.concat([view.reset_index(drop=True), raw.reset_index(drop=True)], axis=1)
    return report.show(full, columns=list(view.columns), currency=params["run"]["currency"], max_rows=10,
                       kinds={_("cost"): "money", _("orders credited"): "number", _("revenue credited"): "money",
                              _("ROAS"): "ratio", _("CAC"): "money"},
                       caption=_("Campaigns with the most cost ({model} attribution)").format(model=_(code)),
                       download="roi_campaigns" if run_dir is not None else None, run_dir=run_dir)


def disagreement_view(engine, params: dict):
    """Each channel's share of credited revenue: lowest and highest over the models, and its rank range."""
    from crmlib import report

    d = _read_table(engine, "roi_disagreement")
    if d is None:
        return _absent(engine, N_("model disagreement"), "attribution", "journeys and attribution")
    view = pd.DataFrame({_("channel"): d["channel"], _("lowest share"): d["share_min"],
                         _("highest share"): d["share_max"], _("spread"): d["share_spread"],
                         _("ranks apart"): d["rank_range"]})
    return report.show(view, kinds={_("lowest share"): "percent", _("highest share"): "percent",
                                    _("spread"): "percent", _("ranks apart"): "count"},
                       caption=_("Share of credited revenue over the attribution models"))


def markov_charts(engine, params: dict):
    """Markov removal effects and the channel transition matrix (from ``roi_markov.json``) as one figure."""
    import matplotlib.pyplot as plt

    from crmlib import report
    from crmlib.roi.plotting import plot_removal_effects, plot_transition_matrix

    m = _read_json(engine, "roi_markov")
    if m is None:
        return show_notice(_absent(engine, N_("Markov model"), "Markov attribution", "attribution", "journeys and attribution"))
    removal = pd.DataFrame(m["removal_effects"]).set_index("channel")
    tm = m["transition_matrix"]
    matrix = pd.DataFrame(tm["data"], index=tm["index"], columns=tm["columns"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 1.3]})
    plot_removal_effects(removal, ax=left)
    plot_transition_matrix(matrix, ax=right)
    fig.tight_layout()
    top = removal["conversions"].idxmax() if len(removal) else ""
    report.figure(fig, title=_("Removing {channel} would lose the most conversions").format(channel=top),
                  caption=_("Left: share of conversions lost if a channel were removed from every journey. Right: "
                            "probability of moving from one step of a journey to the next."),
                  alt=_("Markov removal effects by channel and the transition matrix between channels."))
    return left, right


def mmm_table(engine, params: dict) -> pd.DataFrame | Unavailable:
    """The media-mix summary per channel (``identified`` false: the data cannot pin the channel down)."""
    s = _read_table(engine, "mmm")
    if s is None:
        return _absent(engine, N_("media-mix model"))
    reason = s["reason"].astype(str)
    says_itself = s["identified"] | reason.str.startswith("not modelled")
    verdict = reason.where(says_itself, [NOT_IDENTIFIED.format(reason=r) for r in reason])
    # no point estimate, and nothing it can be read back from, for a channel the data cannot pin down
    cols = ["channel", "spend", "roas", "roas_low", "roas_high", "mroas", "mroas_low", "mroas_high"]
    return s[[c for c in cols if c in s.columns]].assign(verdict=verdict)


def mmm_view(engine, params: dict):
    """The media-mix model per channel in words: spend, incremental ROAS with its interval, or why not."""
    from crmlib import report

    t = mmm_table(engine, params)
    if isinstance(t, Unavailable):
        return t
    mmm = t.set_index("channel")
    view = pd.DataFrame({_("channel"): t["channel"], _("spend"): t["spend"],
                         _("incremental ROAS (interval)"): [_mmm_words(_read_table(engine, "mmm").set_index("channel"), c)
                                                            for c in t["channel"]],
                         _("why"): [recorded_text(v) for v in mmm["verdict"]]})
    return report.show(view, kinds={_("spend"): "money"}, currency=params["run"]["currency"],
                       caption=_("Media-mix model"))


def response_curves_chart(engine, params: dict):
    """Response curves of the media-mix model with bootstrap bands (unidentified channels dashed)."""
    from crmlib import report
    from crmlib.roi.plotting import plot_response_curves

    curves = _read_table(engine, "roi_response_curves")
    mmm = _read_table(engine, "mmm")
    if curves is None or mmm is None:
        return show_notice(_absent(engine, N_("response curves"), "media-mix model"))
    identified = mmm.set_index("channel")["identified"]
    ax = plot_response_curves(curves, identified=identified)
    ax.set_title("")
    n = int(identified.sum())
    report.figure(ax, title=(_("{n} channel(s) have a response curve the data can pin down").format(n=n) if n else
                             _("No channel's response curve is pinned down by this data")),
                  caption=_("Predicted weekly revenue at each weekly spend (steady state), with bootstrap bands; the dot "
                            "is current spend; dashed lines are channels the data cannot identify."),
                  alt=_("Media-mix response curves for {names}").format(names=_(", ").join(map(str, curves["channel"].unique()))))
    return ax


def budget_table(engine, params: dict) -> pd.DataFrame | Unavailable:
    """The proposed weekly reallocation per channel, never beyond the bounds (``roi_budget``)."""
    t = _read_table(engine, "roi_budget")
    return _absent(engine, N_("budget reallocation")) if t is None else t


def budget_view(engine, params: dict):
    """The proposed weekly reallocation in a few columns."""
    from crmlib import report

    t = budget_table(engine, params)
    if isinstance(t, Unavailable):
        return t
    view = pd.DataFrame({_("channel"): t["channel"], _("weekly spend now"): t["current"],
                         _("proposed"): t["proposed"], _("change"): t["change_pct"],
                         _("lowest allowed"): t["lower"], _("highest allowed"): t["upper"],
                         _("identified"): [_("yes") if b else _("no") for b in t["identified"].astype(bool)]})
    return report.show(view, kinds={_("weekly spend now"): "money", _("proposed"): "money", _("change"): "percent",
                                    _("lowest allowed"): "money", _("highest allowed"): "money"},
                       currency=params["run"]["currency"], caption=_("Budget reallocation (weekly)"))


def budget_caveats(engine, params: dict):
    """The reallocation's predicted gain, its interval and its caveats, in plain words (Markdown)."""
    from IPython.display import Markdown

    from crmlib.present import fmt_money, fmt_percent
    from crmlib.report import escape_markdown

    b = _read_json(engine, "roi_budget_summary")
    if b is None:
        return _absent(engine, N_("budget reallocation"))
    cur = params["run"]["currency"]
    head = _("Predicted change in weekly revenue: {gain} ({level} interval {low} to {high}) for the same weekly "
             "budget of {budget}.").format(gain=fmt_money(b["gain"], cur), level=fmt_percent(b["ci_level"]),
                                           low=fmt_money(b["gain_low"], cur), high=fmt_money(b["gain_high"], cur),
                                           budget=fmt_money(b["total_budget"], cur))
    lines = [f"**{escape_markdown(head)}**", ""]
    lines += [f"- {escape_markdown(recorded_text(c))}" for c in b["caveats"]]  # caveats name channels: data
    return Markdown("\n".join(lines))


def _journey_value(key: str, value) -> str:
    """A journey convention's value on the page: the label kind and the rules in words, numbers and dates as stored."""
    if key == "label":
        return _(str(value))
    return recorded_text(str(value)) if key in ("path_format", "conversion") else str(value)


def method_notes(engine, params: dict):
    """"How this was computed": one note per attribution model and per model step, not one per row."""
    from IPython.display import Markdown

    from crmlib.report import escape_markdown

    colon = _(": ")  # the separator after a note's bold name, in the run's language

    def note(name: str, text: str) -> str:
        return f"- **{escape_markdown(name)}**{escape_markdown(colon)}{escape_markdown(text)}"

    lines = []
    roi = _read_table(engine, "roi")
    if roi is not None and "convention" in roi:
        for model, notes in roi.groupby("model", sort=False)["convention"]:
            said = dict.fromkeys(recorded_text(str(n)) for n in notes.dropna())
            lines.append(note(_(model), _("; ").join(said)))
    j = _read_json(engine, "roi_journeys")
    if j is not None:
        conv = _("; ").join(_("{name} {value}").format(name=_(JOURNEY_CONVENTIONS.get(k, k)), value=_journey_value(k, v))
                            for k, v in j["conventions"].items() if v is not None)
        lines.append(note(_("journeys"), conv))
    m = _read_json(engine, "roi_markov")
    if m is not None:
        lines.append(note(_("Markov removal effects"), recorded_text(m["convention"])))
    mmm = _read_table(engine, "mmm")
    if mmm is not None and "method" in mmm and len(mmm):
        lines.append(note(_("media-mix model"), recorded_text(mmm["method"].iloc[0])))
    b = _read_json(engine, "roi_budget_summary")
    if b is not None:
        lines.append(note(_("budget reallocation"), recorded_text(b["method"])))
    s = _read_json(engine, "roi_summary")
    if s is not None:
        lines.append(note(_("blended ROAS and CAC"), _(
            "credited revenue and cost of the {model} model summed over channels; CAC = cost / new customers "
            "credited").format(model=_(s["reference_model"]))))
        lines += [note(_("data note"), recorded_text(n)) for n in s.get("notes", [])]
    if funnel_method(engine, params):
        lines.append(funnel_method(engine, params))
    return Markdown("\n".join(lines) if lines else _("*No method notes: nothing was computed.*"))
