"""Stage functions for the ROI notebook: one call per cell, each ``(engine, params)``.

Reads ``tables/orders.parquet`` (required), ``touchpoints``, ``spend``, ``events`` and
``identity_map`` (for stitching anonymous touches) and ``clv`` (segmentation stage) when present.
Writes the contract tables ``attribution.parquet``, ``roi.parquet``, ``mmm.parquet`` and the stage's
own ``roi_disagreement.parquet``, ``roi_budget.parquet``, ``roi_journeys.json``, ``roi_markov.json``.
A function whose inputs are missing returns a :class:`MissingInput` saying so (and writes nothing)
instead of failing.

Params keys read (defaults in brackets)::

    run.as_of                  [latest order date]  default end of the analysis period
    roi.lookback_days          [30]                 journey lookback window, days
    roi.half_life_days         [7]                  time-decay half-life, days
    roi.position_weights       [[0.4, 0.2, 0.4]]    first / middle / last
    roi.period_start           [None = all data]    analysis period start (inclusive date)
    roi.period_end             [None = run.as_of]   analysis period end (inclusive date)
    roi.budget_bounds          [0.3]                +/- fraction of current weekly spend
    roi.mmm.enabled            [True]
    roi.mmm.bootstrap          [200]                bootstrap draws
    roi.mmm.block_weeks        [4]                  moving-block length
    roi.mmm.seed               [0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from crmlib.roi.budget import BudgetResult, reallocate_budget
from crmlib.roi.journeys import JourneyResult, build_journeys
from crmlib.roi.mmm import MediaMixModel, weekly_totals
from crmlib.roi.roi_table import AttributionResult, attribute_all, channel_costs, model_disagreement, roi_table

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


@dataclass
class MissingInput:
    """What a stage function returns when its inputs are missing: a plain-words message."""

    stage: str
    message: str

    def __repr__(self) -> str:
        return f"{self.stage}: skipped - {self.message}"

    def _repr_markdown_(self) -> str:
        return f"**{self.stage}: skipped** - {self.message}"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"stage": [self.stage], "status": ["skipped"], "reason": [self.message]})


def _get(params: dict, dotted: str, default: Any = None) -> Any:
    """Nested (``params["roi"]["mmm"]["seed"]``) or flat dotted (``params["roi.mmm.seed"]``) lookup."""
    if dotted in params:
        return params[dotted] if params[dotted] is not None else default
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return default if node is None else node


def roi_settings(engine, params: dict) -> dict:
    """The stage's settings with defaults filled in (see the module docstring)."""
    period_end = _get(params, "roi.period_end") or _get(params, "run.as_of")
    if period_end is None and engine.has_table("orders"):
        latest = engine.to_pandas(engine.table("orders").order_ts.max())
        period_end = None if latest is None or pd.isna(latest) else pd.Timestamp(latest).date().isoformat()
    return {
        "lookback_days": float(_get(params, "roi.lookback_days", 30)),
        "half_life_days": float(_get(params, "roi.half_life_days", 7)),
        "position_weights": tuple(float(w) for w in _get(params, "roi.position_weights", [0.4, 0.2, 0.4])),
        "period_start": _get(params, "roi.period_start"),
        "period_end": period_end,
        "budget_bounds": float(_get(params, "roi.budget_bounds", 0.3)),
        "mmm_enabled": bool(_get(params, "roi.mmm.enabled", True)),
        "mmm_bootstrap": int(_get(params, "roi.mmm.bootstrap", 200)),
        "mmm_block_weeks": int(_get(params, "roi.mmm.block_weeks", 4)),
        "mmm_seed": int(_get(params, "roi.mmm.seed", 0)),
    }


def _optional(engine, name: str):
    return engine.table(name) if engine.has_table(name) else None


def _cached(engine, key: str, settings: dict, make):
    """One result per (step, settings) for this engine: the notebook's cells share journeys and the MMM fit."""
    return engine.memo(("roi", key, tuple(sorted((s, str(v)) for s, v in settings.items()))), make)


def journeys_stage(engine, params: dict, *, label: str = "channel") -> JourneyResult | MissingInput:
    """Build journeys and the path table; writes ``roi_journeys.json`` (summary and conventions)."""
    if not engine.has_table("orders"):
        return MissingInput("journeys", "no orders table: run the ingest stage first.")
    if not engine.has_table("touchpoints"):
        return MissingInput("journeys", "no touchpoints source in this run: attribution needs marketing touches.")
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
            events=_optional(engine, "events"),
            identity_map=_optional(engine, "identity_map"),
            clv=_optional(engine, "clv"),
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


def attribution_stage(engine, params: dict) -> AttributionResult | MissingInput:
    """All attribution models; writes ``attribution.parquet`` and ``roi_markov.json``."""
    journeys = journeys_stage(engine, params)
    if isinstance(journeys, MissingInput):
        return MissingInput("attribution", journeys.message)
    if journeys.paths["conversions"].sum() == 0:
        return MissingInput("attribution", "no conversion in the period has a touch in its lookback window.")
    s = roi_settings(engine, params)
    result = _cached(engine, "attribution", s, lambda: attribute_all(journeys.paths, position_weights=s["position_weights"],
                                                                       half_life_days=s["half_life_days"]))
    engine.write_table("attribution", result.table)
    if result.markov is not None:
        m = result.markov
        engine.write_json("roi_markov", {
            "convention": m.convention,
            "params": m.params_,
            "transition_matrix": {"index": list(m.transition_matrix_.index), "columns": list(m.transition_matrix_.columns),
                                  "data": m.transition_matrix_.to_numpy().tolist()},
            "removal_effects": m.removal_effects_.reset_index().to_dict(orient="records"),
        })
    return result


def roi_stage(engine, params: dict) -> pd.DataFrame | MissingInput:
    """Model x channel (and x campaign) ROI; writes ``roi.parquet``.

    Rows have ``level`` = ``channel`` or ``campaign`` (campaign rows only when touches carry campaign
    ids; their ``channel`` is the channel and ``campaign_id`` the campaign). The frame's
    ``attrs["notes"]`` lists data caveats (e.g. no spend table).
    """
    attribution = attribution_stage(engine, params)
    if isinstance(attribution, MissingInput):
        return MissingInput("roi", attribution.message)
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
        if not isinstance(cj, MissingInput) and cj.paths["conversions"].sum() > 0:
            ca = _cached(engine, "attribution:campaign", s, lambda: attribute_all(cj.paths, position_weights=s["position_weights"]))
            cc = channel_costs(spend, touches, period_start=s["period_start"], period_end=s["period_end"], level="campaign")
            ct = roi_table(ca.table, cc)
            split = ct["channel"].str.split(":", n=1, expand=True)
            ct = ct.assign(level="campaign", channel=split[0], campaign_id=split[1].replace("(none)", None))
            frames.append(ct)
    out = pd.concat(frames, ignore_index=True)
    out["campaign_id"] = out["campaign_id"].astype("string")
    engine.write_table("roi", out)
    out.attrs["notes"] = notes
    return out


def disagreement_stage(engine, params: dict, measure: str = "revenue") -> pd.DataFrame | MissingInput:
    """Channel share and rank under each model and their spread; writes ``roi_disagreement.parquet``."""
    attribution = attribution_stage(engine, params)
    if isinstance(attribution, MissingInput):
        return MissingInput("model disagreement", attribution.message)
    table = model_disagreement(attribution.table, measure)
    engine.write_table("roi_disagreement", table)
    return table


def mmm_stage(engine, params: dict) -> MediaMixModel | MissingInput:
    """Fit the media-mix model on weekly totals; writes ``mmm.parquet``."""
    s = roi_settings(engine, params)
    if not s["mmm_enabled"]:
        return MissingInput("media-mix model", "disabled by roi.mmm.enabled = false.")
    if not engine.has_table("orders"):
        return MissingInput("media-mix model", "no orders table.")
    spend, touches = _optional(engine, "spend"), _optional(engine, "touchpoints")
    if spend is None and (touches is None or "cost" not in touches.columns):
        return MissingInput("media-mix model", "no spend table and no touch-level cost: nothing to relate revenue to.")

    def make():
        weekly = weekly_totals(engine.table("orders"), spend, touches,
                               period_start=s["period_start"], period_end=s["period_end"])
        channels = [c for c in weekly.columns if c not in ("week", "revenue") and weekly[c].sum() > 0]
        if not channels:
            return MissingInput("media-mix model", "no marketing cost in the period.")
        needed = max(MIN_MMM_WEEKS, 2 * len(channels) + 8)
        if len(weekly) < needed:
            return MissingInput("media-mix model", f"only {len(weekly)} weeks of data; at least {needed} are needed "
                                f"for {len(channels)} channels.")
        model = MediaMixModel(n_bootstrap=s["mmm_bootstrap"], block_weeks=s["mmm_block_weeks"], seed=s["mmm_seed"])
        return model.fit(weekly, channels)

    model = _cached(engine, "mmm", s, make)
    if isinstance(model, MediaMixModel):
        cols = ["channel", "spend", "roas", "roas_low", "roas_high", "mroas", "identified"]
        summary = model.summary_.assign(method=model.summary_.attrs.get("convention", ""))
        engine.write_table("mmm", summary[cols + [c for c in summary.columns if c not in cols]])
    return model


def budget_stage(engine, params: dict) -> BudgetResult | MissingInput:
    """Reallocate the weekly budget within ``roi.budget_bounds``; writes ``roi_budget.parquet``."""
    model = mmm_stage(engine, params)
    if isinstance(model, MissingInput):
        return MissingInput("budget reallocation", model.message)
    s = roi_settings(engine, params)
    result = reallocate_budget(model, bounds=s["budget_bounds"])
    engine.write_table("roi_budget", result.table.assign(
        gain=result.gain, gain_low=result.gain_low, gain_high=result.gain_high))
    if not result.table["identified"].any():
        result.method += "; no channel is identified by the data, so nothing moves"
    return result


def response_curves_stage(engine, params: dict) -> pd.DataFrame | MissingInput:
    """Response curves of the fitted MMM (``channel, weekly_spend, response, low, high``)."""
    model = mmm_stage(engine, params)
    if isinstance(model, MissingInput):
        return MissingInput("response curves", model.message)
    return model.response_curves()


# -- report views: one call per notebook cell, passing a MissingInput through unchanged ------------------
def journey_summary(engine, params: dict) -> pd.DataFrame | MissingInput:
    """Journey counts in plain words (conversions, touched share, unattributable touches) and conventions."""
    journeys = journeys_stage(engine, params)
    if isinstance(journeys, MissingInput):
        return journeys
    rows = [(k.replace("_", " "), v) for k, v in {**journeys.summary, **journeys.conventions}.items()]
    return pd.DataFrame(rows, columns=["measure", "value"]).astype({"value": "string"})


def journey_charts(engine, params: dict):
    """Journey-length and time-to-convert distributions side by side; returns the two axes."""
    import matplotlib.pyplot as plt

    from crmlib.roi.plotting import plot_journey_lengths, plot_time_to_convert

    journeys = journeys_stage(engine, params)
    if isinstance(journeys, MissingInput):
        return journeys
    _, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    plot_journey_lengths(journeys.lengths, ax=left)
    plot_time_to_convert(journeys.time_to_convert, ax=right)
    return left, right


def roi_chart(engine, params: dict, *, metric: str = "roi"):
    """Channel ROI (or ``roas``) under every attribution model in one chart."""
    from crmlib.roi.plotting import plot_roi_by_model

    table = roi_stage(engine, params)
    if isinstance(table, MissingInput):
        return table
    return plot_roi_by_model(table[table["level"] == "channel"], metric=metric)


def campaign_roi(engine, params: dict) -> pd.DataFrame | MissingInput:
    """Campaign rows of the ROI table (empty when touches carry no campaign ids)."""
    table = roi_stage(engine, params)
    if isinstance(table, MissingInput):
        return table
    return table[table["level"] == "campaign"].drop(columns=["level"])


def markov_charts(engine, params: dict):
    """Markov removal effects and the channel transition matrix; returns the two axes."""
    import matplotlib.pyplot as plt

    from crmlib.roi.plotting import plot_removal_effects, plot_transition_matrix

    attribution = attribution_stage(engine, params)
    if isinstance(attribution, MissingInput):
        return attribution
    if attribution.markov is None:
        return MissingInput("Markov model", "the Markov model was not fitted.")
    _, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 1.3]})
    plot_removal_effects(attribution.markov.removal_effects_, ax=left)
    plot_transition_matrix(attribution.markov.transition_matrix_, ax=right)
    return left, right


def mmm_table(engine, params: dict) -> pd.DataFrame | MissingInput:
    """The media-mix summary per channel (``identified`` false: the data cannot pin the channel down)."""
    model = mmm_stage(engine, params)
    if isinstance(model, MissingInput):
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
    if isinstance(model, MissingInput):
        return model
    identified = model.summary_.set_index("channel")["identified"]
    return plot_response_curves(model.response_curves(), identified=identified)


def budget_table(engine, params: dict) -> pd.DataFrame | MissingInput:
    """The proposed weekly reallocation per channel, never beyond the bounds."""
    result = budget_stage(engine, params)
    return result if isinstance(result, MissingInput) else result.table


def budget_caveats(engine, params: dict):
    """The reallocation's predicted gain, its interval and its caveats, in plain words (Markdown)."""
    from IPython.display import Markdown

    result = budget_stage(engine, params)
    if isinstance(result, MissingInput):
        return result
    lines = [f"**Predicted change in weekly revenue:** {result.gain:,.0f} "
             f"({result.ci_level:.0%} interval {result.gain_low:,.0f} to {result.gain_high:,.0f}) "
             f"for the same weekly budget of {result.total_budget:,.0f}.", "", f"*Method:* {result.method}", ""]
    lines += [f"- {c}" for c in result.caveats]
    return Markdown("\n".join(lines))
