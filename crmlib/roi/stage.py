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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from crmlib.asof import resolve_as_of
from crmlib.roi.budget import BudgetResult, reallocate_budget
from crmlib.roi.journeys import JourneyResult, build_journeys
from crmlib.roi.mmm import MediaMixModel, weekly_totals
from crmlib.roi.roi_table import (
    MODELS,
    AttributionResult,
    attribute_all,
    channel_costs,
    model_disagreement,
    roi_table,
)
from crmlib.status import CannotCompute, Unavailable, guard, record_warning

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

        return f"**{escape_markdown(self.step)}: skipped** - {escape_markdown(self.reason)}"

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


def _remove_tables(engine, *names: str) -> None:
    """Remove run tables (Parquet or JSON) a step could not write this time: a run that starts from a copy
    of an earlier run's tables must not pass a stale table off as its own result."""
    for name in names:
        engine.table_path(name).unlink(missing_ok=True)
        (engine.tables_dir / f"{name}.json").unlink(missing_ok=True)


def _show(unavailable: Unavailable) -> Unavailable:
    """Display the notice (chart cells end with ";", which hides a returned value) and return it."""
    from IPython.display import display

    display(unavailable)
    return unavailable


def roi_settings(engine, params: dict) -> dict:
    """The stage's settings from validated params (:func:`crmlib.params.load_params` or
    :func:`crmlib.params.complete_params`, which fill every default; see ``docs/PARAMS.md``).

    ``period_end`` is ``roi.period_end``, else the run's analysis date (:func:`crmlib.asof.resolve_as_of`),
    else None when the run has neither a ``run.as_of`` nor orders (the stages then report the missing input).
    """
    roi, mmm = params["roi"], params["roi"]["mmm"]
    period_end = roi["period_end"]
    if period_end is None:
        try:
            period_end = resolve_as_of(engine, params).isoformat()
        except CannotCompute:
            period_end = None
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
        return MissingInput("journeys", "no orders table: run the ingest stage first.")
    if not engine.has_table("touchpoints"):
        return _missing(engine, "journeys and attribution",
                        "no touchpoints source in this run: journeys and attribution need marketing touches.")
    s = roi_settings(engine, params)

    def make():
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
        _remove_tables(engine, *ATTRIBUTION_TABLES)
        return _passed_on("attribution", journeys)
    s = roi_settings(engine, params)
    result = _cached(engine, "attribution", s, lambda: guard(engine, STAGE, "attribution",
                                                              lambda: _attribute(engine, journeys.paths, s)))
    if isinstance(result, Unavailable):
        _remove_tables(engine, *ATTRIBUTION_TABLES)
        return result
    engine.write_table("attribution", result.table)
    if isinstance(result.markov, Unavailable):
        _remove_tables(engine, "roi_markov")
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
        raise CannotCompute(
            f"attribution needs orders with a marketing touch in the {s['lookback_days']:g} days before them; "
            f"none of the orders in the period has one ({len(paths):,} journeys without an order). A longer "
            "roi.lookback_days, or touchpoints that cover the order period, fixes it.")
    rule_based = [m for m in MODELS if m not in CHANNEL_COMPARING_MODELS]
    result = attribute_all(paths, models=rule_based, position_weights=s["position_weights"],
                           half_life_days=s["half_life_days"])
    channels = int(result.table["channel"].nunique())
    frames = [result.table]
    for model in CHANNEL_COMPARING_MODELS:
        step = f"{model.capitalize()} attribution" + ("" if label == "channel" else f" by {label}")
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
    name = model.capitalize()
    if channels < 2:
        raise CannotCompute(
            f"{name} attribution compares {label}s with each other, so it needs converting journeys touched by "
            f"at least two {label}s; this data has {channels}, which the rule-based models credit with every "
            "conversion.")
    if model == "shapley" and channels > MAX_SHAPLEY_CHANNELS:
        raise CannotCompute(f"exact Shapley attribution handles at most {MAX_SHAPLEY_CHANNELS} {label}s; this data "
                            f"has {channels:,}.")
    try:
        return attribute_all(paths, models=[model])
    except np.linalg.LinAlgError as exc:
        # the Markov chain's transient system is singular when the journeys cannot reach a conversion
        raise CannotCompute(f"{name} attribution: the transition system of these journeys is singular ({exc}), "
                            f"so the journeys cannot tell the {label}s apart.") from exc


def roi_stage(engine, params: dict) -> pd.DataFrame | Unavailable:
    """Model x channel (and x campaign) ROI; writes ``roi.parquet``.

    Rows have ``level`` = ``channel`` or ``campaign`` (campaign rows only when touches carry campaign
    ids; their ``channel`` is the channel and ``campaign_id`` the campaign). The frame's
    ``attrs["notes"]`` lists data caveats (e.g. no spend table).
    """
    attribution = attribution_stage(engine, params)
    if isinstance(attribution, Unavailable):
        return _passed_on("roi", attribution)
    s = roi_settings(engine, params)
    spend, touches = _optional(engine, "spend"), engine.table("touchpoints")
    notes = []
    if spend is None:
        notes.append("no spend table: cost is the touch-level cost only")
    costs = channel_costs(spend, touches, period_start=s["period_start"], period_end=s["period_end"])
    from_touches = costs.loc[(costs["cost_source"] == "touches") & (costs["cost"] > 0), "channel"].tolist()
    if spend is not None and from_touches:
        notes.append(f"no spend rows for {', '.join(from_touches)}: their cost is the touch-level cost")
    if costs["cost"].sum() == 0:
        notes.append("no cost in the period: ROI, ROAS, CPA and CAC are undefined (null)")
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
            ct = ct.assign(level="campaign", channel=[c for c, _ in ct["channel"]],
                           campaign_id=[k for _, k in ct["channel"]])
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
        return _passed_on("model disagreement", attribution)
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
        return MissingInput("media-mix model", "disabled by roi.mmm.enabled = false.")
    if not engine.has_table("orders"):
        return MissingInput("media-mix model", "no orders table.")
    spend, touches = _optional(engine, "spend"), _optional(engine, "touchpoints")
    if spend is None and (touches is None or "cost" not in touches.columns):
        return _missing(engine, "media-mix model",
                        "no spend table and no touch-level cost: nothing to relate revenue to.")

    def make():
        weekly = weekly_totals(engine.table("orders"), spend, touches,
                               period_start=s["period_start"], period_end=s["period_end"])
        channels = [c for c in weekly.columns if c not in ("week", "revenue") and weekly[c].sum() > 0]
        if not channels:
            raise CannotCompute("the media-mix model relates weekly revenue to marketing cost; there is no "
                                "marketing cost in the complete weeks of the period.")
        needed = max(MIN_MMM_WEEKS, 2 * len(channels) + 8)
        if len(weekly) < needed:
            raise CannotCompute(
                f"the media-mix model needs at least {needed} complete weeks of revenue and spend for "
                f"{len(channels)} channel(s) (trend, seasonality and each channel's carry-over are estimated "
                f"from them); this data has {len(weekly)}. A longer period of orders and spend fixes it.")
        model = MediaMixModel(n_bootstrap=s["mmm_bootstrap"], block_weeks=s["mmm_block_weeks"], seed=s["mmm_seed"])
        return model.fit(weekly, channels)

    model = _cached(engine, "mmm", s, lambda: guard(engine, STAGE, "media-mix model", make))
    if isinstance(model, MediaMixModel):
        cols = ["channel", "spend", "roas", "roas_low", "roas_high", "mroas", "identified"]
        summary = model.summary_.assign(method=model.summary_.attrs.get("convention", ""))
        engine.write_table("mmm", summary[cols + [c for c in summary.columns if c not in cols]])
    elif s["mmm_enabled"]:
        _remove_tables(engine, "mmm")
    return model


def budget_stage(engine, params: dict) -> BudgetResult | Unavailable:
    """Reallocate the weekly budget within ``roi.budget_bounds``; writes ``roi_budget.parquet``.

    Needs a fitted media-mix model: without one the reason is recorded and returned.
    """
    model = mmm_stage(engine, params)
    if isinstance(model, Unavailable):
        if isinstance(model, MissingInput):
            return _passed_on("budget reallocation", model)
        reason = f"the reallocation moves budget along the media-mix model's response curves: {model.reason}"
        _warn_once(engine, "budget reallocation", reason)
        _remove_tables(engine, "roi_budget")
        return Unavailable("budget reallocation", reason)
    s = roi_settings(engine, params)
    result = _cached(engine, "budget", s, lambda: guard(engine, STAGE, "budget reallocation",
                                                         lambda: reallocate_budget(model, bounds=s["budget_bounds"])))
    if isinstance(result, Unavailable):
        _remove_tables(engine, "roi_budget")
        return result
    engine.write_table("roi_budget", result.table.assign(
        gain=result.gain, gain_low=result.gain_low, gain_high=result.gain_high))
    if not result.table["identified"].any() and "nothing moves" not in result.method:
        result.method += "; no channel is identified by the data, so nothing moves"
    return result


def response_curves_stage(engine, params: dict) -> pd.DataFrame | Unavailable:
    """Response curves of the fitted MMM (``channel, weekly_spend, response, low, high``)."""
    model = mmm_stage(engine, params)
    if isinstance(model, Unavailable):
        return _passed_on("response curves", model)
    return model.response_curves()


# -- report views: one call per notebook cell, passing an Unavailable through unchanged -----------------
# (chart views display it themselves: their cells end with ";", which hides a returned value)
def journey_summary(engine, params: dict) -> pd.DataFrame | Unavailable:
    """Journey counts in plain words (conversions, touched share, unattributable touches) and conventions."""
    journeys = journeys_stage(engine, params)
    if isinstance(journeys, Unavailable):
        return journeys
    rows = [(k.replace("_", " "), v) for k, v in {**journeys.summary, **journeys.conventions}.items()]
    return pd.DataFrame(rows, columns=["measure", "value"]).astype({"value": "string"})


def journey_charts(engine, params: dict):
    """Journey-length and time-to-convert distributions side by side; returns the two axes."""
    import matplotlib.pyplot as plt

    from crmlib.roi.plotting import plot_journey_lengths, plot_time_to_convert

    journeys = journeys_stage(engine, params)
    if isinstance(journeys, Unavailable):
        return _show(journeys)
    _, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    plot_journey_lengths(journeys.lengths, ax=left)
    plot_time_to_convert(journeys.time_to_convert, ax=right)
    return left, right


def roi_chart(engine, params: dict, *, metric: str = "roi"):
    """Channel ROI (or ``roas``) under every attribution model in one chart."""
    from crmlib.roi.plotting import plot_roi_by_model

    table = roi_stage(engine, params)
    if isinstance(table, Unavailable):
        return _show(table)
    return plot_roi_by_model(table[table["level"] == "channel"], metric=metric)


def campaign_roi(engine, params: dict) -> pd.DataFrame | Unavailable:
    """Campaign rows of the ROI table (empty when touches carry no campaign ids)."""
    table = roi_stage(engine, params)
    if isinstance(table, Unavailable):
        return table
    return table[table["level"] == "campaign"].drop(columns=["level"])


def markov_charts(engine, params: dict):
    """Markov removal effects and the channel transition matrix; returns the two axes."""
    import matplotlib.pyplot as plt

    from crmlib.roi.plotting import plot_removal_effects, plot_transition_matrix

    attribution = attribution_stage(engine, params)
    if isinstance(attribution, Unavailable):
        return _show(attribution)
    if isinstance(attribution.markov, Unavailable):
        return _show(attribution.markov)
    if attribution.markov is None:
        return _show(MissingInput("Markov model", "the Markov model was not fitted."))
    _, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 1.3]})
    plot_removal_effects(attribution.markov.removal_effects_, ax=left)
    plot_transition_matrix(attribution.markov.transition_matrix_, ax=right)
    return left, right


def mmm_table(engine, params: dict) -> pd.DataFrame | Unavailable:
    """The media-mix summary per channel (``identified`` false: the data cannot pin the channel down)."""
    model = mmm_stage(engine, params)
    if isinstance(model, Unavailable):
        return model
    s = model.summary_
    reason = s["reason"].astype(str)
    says_itself = s["identified"] | reason.str.startswith("not modelled")
    verdict = reason.where(says_itself, "not identified by this data: " + reason)
    # no point estimate, and nothing it can be read back from, for a channel the data cannot pin down
    cols = ["channel", "spend", "roas", "roas_low", "roas_high", "mroas", "mroas_low", "mroas_high"]
    return s[[c for c in cols if c in s.columns]].assign(verdict=verdict)


def response_curves_chart(engine, params: dict):
    """Response curves of the media-mix model with bootstrap bands (unidentified channels dashed)."""
    from crmlib.roi.plotting import plot_response_curves

    model = mmm_stage(engine, params)
    if isinstance(model, Unavailable):
        return _show(model)
    identified = model.summary_.set_index("channel")["identified"]
    return plot_response_curves(model.response_curves(), identified=identified)


def budget_table(engine, params: dict) -> pd.DataFrame | Unavailable:
    """The proposed weekly reallocation per channel, never beyond the bounds."""
    result = budget_stage(engine, params)
    return result if isinstance(result, Unavailable) else result.table


def budget_caveats(engine, params: dict):
    """The reallocation's predicted gain, its interval and its caveats, in plain words (Markdown)."""
    from IPython.display import Markdown

    from crmlib.report import escape_markdown

    result = budget_stage(engine, params)
    if isinstance(result, Unavailable):
        return result
    lines = [f"**Predicted change in weekly revenue:** {result.gain:,.0f} "
             f"({result.ci_level:.0%} interval {result.gain_low:,.0f} to {result.gain_high:,.0f}) "
             f"for the same weekly budget of {result.total_budget:,.0f}.", "", f"*Method:* {escape_markdown(result.method)}", ""]
    lines += [f"- {escape_markdown(c)}" for c in result.caveats]  # caveats name channels: data
    return Markdown("\n".join(lines))
