"""Attribution under every model, channel costs, the ROI table and the model-disagreement table.

Conventions
-----------
* ``cost`` = spend-table cost (``spend.date`` in the period) of the channel; for a channel without
  spend rows in the period, its touch-level cost (``touchpoints.cost`` of touches in the period,
  anonymous touches included: they were paid for). Adding both for every channel is available
  (``touch_cost="add"``) but double counts when the spend export already contains click costs, as
  it usually does (and does in the sample data).
* ``ROI = (revenue - cost) / cost``, ``ROAS = revenue / cost``, ``CPA = cost / credited conversions``,
  ``CAC = cost / credited new customers`` (conversions that were the customer's first order),
  ``LTV = credited CLV of new customers / credited new customers`` and ``LTV:CAC = LTV / CAC``
  (only when a CLV table was used). Ratios with a zero denominator are null. Rates are fractions.
* Revenue is the credited conversion value (positive order amounts) of *attributed* conversions:
  untouched conversions are not in any channel's revenue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import ibis
import numpy as np
import pandas as pd

from crmlib.i18n import N_
from crmlib.params import schema_default
from crmlib.roi import heuristics
from crmlib.roi.journeys import _to_ts
from crmlib.roi.markov import MarkovAttribution
from crmlib.roi.paths import label_array, measures_of, sort_by_label, sort_labels, tokenize
from crmlib.roi.shapley import ShapleyAttribution

__all__ = [
    "MODELS",
    "model_conventions",
    "AttributionResult",
    "attribute_all",
    "channel_costs",
    "roi_table",
    "model_disagreement",
]

#: default position-based weights: the params schema's ``roi.position_weights``
_POSITION_WEIGHTS = tuple(schema_default("roi.position_weights"))

#: the attribution models, by code; the codes are marked for the catalog, pages show them through ``_()``
MODELS = (N_("first_touch"), N_("last_touch"), N_("linear"), N_("time_decay"), N_("position_based"), N_("markov"),
          N_("shapley"))
#: each model's one-line convention, stored in English in ``roi.parquet`` and shown translated on the page
#: (:func:`crmlib.roi.messages.recorded_text` reads the values back through these templates)
CONVENTIONS = {
    "first_touch": N_("100 % to the first touch of each converting journey"),
    "last_touch": N_("100 % to the last touch of each converting journey"),
    "linear": N_("equal shares to every touch (repeats counted)"),
    "time_decay": N_("shares 2^(-age/half-life) normalised per journey"),
    "time_decay_half_life": N_("shares 2^(-age/half-life) normalised per journey, half-life {days} days"),
    "position_based": N_("{first}/{middle}/{last} first/middle/last; 1 touch 100 %, 2 touches split pro rata"),
    "markov": N_("first-order Markov, exact absorbing-chain solve; credit = total x RE/sum(RE), "
                 "RE = 1 - P(without c)/P, repeats collapsed"),
    "shapley": N_("exact Shapley, v(S) = conversions of journeys whose channel set is within S "
                  "(= equal split over a journey's distinct channels)"),
}


def model_conventions(position_weights=_POSITION_WEIGHTS, half_life_days: float | None = None) -> dict[str, str]:
    """One-line convention of every model, written next to its credits."""
    f, m, l = position_weights
    return {
        "first_touch": CONVENTIONS["first_touch"],
        "last_touch": CONVENTIONS["last_touch"],
        "linear": CONVENTIONS["linear"],
        "time_decay": (CONVENTIONS["time_decay_half_life"].format(days=f"{half_life_days:g}") if half_life_days
                       else CONVENTIONS["time_decay"]),
        "position_based": CONVENTIONS["position_based"].format(first=f"{f:g}", middle=f"{m:g}", last=f"{l:g}"),
        "markov": CONVENTIONS["markov"],
        "shapley": CONVENTIONS["shapley"],
    }


@dataclass
class AttributionResult:
    """Credits of every model (long table) plus the fitted Markov and Shapley models."""

    table: pd.DataFrame
    markov: MarkovAttribution | None
    shapley: ShapleyAttribution | None

    def wide(self, measure: str = "conversions") -> pd.DataFrame:
        """Channels x models for one measure (``conversions``, ``revenue``, ...)."""
        return self.table.pivot(index="channel", columns="model", values=measure).fillna(0.0)


def attribute_all(
    paths: pd.DataFrame,
    *,
    models: Sequence[str] = MODELS,
    position_weights: Sequence[float] = _POSITION_WEIGHTS,
    half_life_days: float | None = None,
) -> AttributionResult:
    """Run every attribution model on a path table.

    Returns a long table ``model, channel, conversions, revenue`` (+ ``new_customers``, ``new_clv``
    when the path table has them) and ``convention``; ``revenue`` is the credited ``value``.
    ``time_decay`` is skipped when the path table has no decay columns (``half_life_days`` only
    labels the convention: the half-life is fixed when the path table is built).
    """
    conventions = model_conventions(position_weights, half_life_days)
    frames, markov, shapley = [], None, None
    tokens = tokenize(paths["path"]) if {"markov", "shapley"} & set(models) else None
    for model in models:
        if model == "markov":
            markov = MarkovAttribution().fit(paths, tokens=tokens)
            credits = markov.credits_
        elif model == "shapley":
            shapley = ShapleyAttribution().fit(paths, tokens=tokens)
            credits = shapley.credits_
        elif model == "position_based":
            credits = heuristics.position_based(paths, position_weights)
        elif model == "time_decay" and "decay_conversions" not in paths.columns:
            continue
        elif model in MODELS:
            credits = getattr(heuristics, model)(paths)
        else:
            raise ValueError(f"unknown model {model!r}; choose from {MODELS}")
        frames.append(credits.assign(model=model, convention=conventions[model]))
    cols = ["model", "channel", *measures_of(paths), "convention"]
    table = pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
    return AttributionResult(table.rename(columns={"value": "revenue"}), markov, shapley)


def channel_costs(
    spend: ibis.Table | None,
    touchpoints: ibis.Table | None,
    *,
    period_start: str | date | datetime | None = None,
    period_end: str | date | datetime | None = None,
    level: str = "channel",
    touch_cost: str = "fallback",
) -> pd.DataFrame:
    """Cost per channel (or per ``(channel, campaign_id)`` label) over the period, from the engine.

    Parameters
    ----------
    touch_cost : {"fallback", "add"}
        ``"fallback"`` (default): a channel's cost is its spend-table cost when the channel has spend
        rows in the period, otherwise its touch-level cost - spend exports usually already contain the
        click costs also logged on touches, and adding both would count them twice. ``"add"``: spend
        + touch cost for every channel.

    Returns
    -------
    pandas.DataFrame
        ``channel``, ``spend_cost``, ``touch_cost``, ``cost``, ``cost_source``; at
        ``level="campaign"`` ``channel`` holds the label of campaign-level
        journeys - the ``(channel, campaign_id)`` pair, ``campaign_id`` None for touches or spend rows
        without a campaign - and ``channel_name`` the channel.
    """
    if touch_cost not in ("fallback", "add"):
        raise ValueError("touch_cost must be 'fallback' or 'add'")
    start, end_excl = _to_ts(period_start), _to_ts(period_end, end=True)
    keys = ["channel_name", "campaign"]
    parts = []
    if spend is not None:
        s = spend
        if start is not None:
            s = s.filter(s.date.cast("timestamp") >= start)
        if end_excl is not None:
            s = s.filter(s.date.cast("timestamp") < end_excl)
        ls = _label(s, level)
        parts.append(ls.group_by(keys).agg(spend_cost=ls.cost.cast("float64").sum(), spend_rows=ls.count()).to_pandas())
    if touchpoints is not None and "cost" in touchpoints.columns:
        t = touchpoints.filter(touchpoints.cost.notnull())
        if start is not None:
            t = t.filter(t.touch_ts >= start)
        if end_excl is not None:
            t = t.filter(t.touch_ts < end_excl)
        lt = _label(t, level)
        parts.append(lt.group_by(keys).agg(touch_cost=lt.cost.cast("float64").sum()).to_pandas())
    out = pd.DataFrame({"channel_name": pd.Series(dtype=str), "campaign": pd.Series(dtype=str)})
    for part in parts:
        out = out.merge(part, on=keys, how="outer")
    for col in ("spend_cost", "touch_cost", "spend_rows"):
        out[col] = out[col].fillna(0.0).astype(float) if col in out else 0.0
    has_spend = out.groupby("channel_name")["spend_rows"].transform("sum") > 0
    if touch_cost == "add":
        out["cost"] = out["spend_cost"] + out["touch_cost"]
        out["cost_source"] = "spend + touches"
    else:
        out["cost"] = np.where(has_spend, out["spend_cost"], out["touch_cost"])
        out["cost_source"] = np.where(has_spend, "spend", "touches")
    out = out.drop(columns="spend_rows")
    if level == "channel":
        out = out.drop(columns="campaign").rename(columns={"channel_name": "channel"})
    else:  # the journeys' campaign label: the (channel, campaign_id) pair, names kept as data
        pairs = [(c, None if pd.isna(k) else k) for c, k in zip(out["channel_name"], out["campaign"])]
        out = out.drop(columns="campaign")
        out.insert(0, "channel", label_array(pairs))
    return sort_by_label(out)


def _label(t: ibis.Table, level: str) -> ibis.Table:
    channel = t.channel.cast("string")
    if level == "channel" or "campaign_id" not in t.columns:
        return t.mutate(channel_name=channel, campaign=ibis.literal(None, "string"))
    return t.mutate(channel_name=channel, campaign=t.campaign_id.cast("string"))


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    num, den = num.astype(float), den.astype(float)
    return (num / den.where(den > 0)).astype(float)


def roi_table(attribution: pd.DataFrame, costs: pd.DataFrame) -> pd.DataFrame:
    """Model x channel ROI table (conventions in the module docstring).

    Parameters
    ----------
    attribution : pandas.DataFrame
        Long credits table from :func:`attribute_all` (``model, channel, conversions, revenue, ...``).
    costs : pandas.DataFrame
        From :func:`channel_costs`. Channels with cost but no credit get zero revenue under every model.
    """
    models = attribution["model"].unique()
    channels = sort_labels([*attribution["channel"], *costs["channel"]])
    # a cross join, not MultiIndex.from_product: campaign labels are (channel, campaign_id) pairs
    grid = pd.DataFrame({"model": models}).merge(pd.DataFrame({"channel": label_array(channels)}), how="cross")
    out = grid.merge(attribution, on=["model", "channel"], how="left")
    for col in attribution.columns.drop(["model", "channel"]):
        if pd.api.types.is_numeric_dtype(attribution[col]):
            out[col] = out[col].fillna(0.0)
    if "convention" in out:
        out["convention"] = out["model"].map(attribution.groupby("model")["convention"].first())
    out = out.merge(costs[["channel", "cost"]], on="channel", how="left")
    out["cost"] = out["cost"].fillna(0.0)
    out["roi"] = _ratio(out["revenue"] - out["cost"], out["cost"])
    out["roas"] = _ratio(out["revenue"], out["cost"])
    out["cpa"] = _ratio(out["cost"], out["conversions"])
    if "new_customers" in out:
        out["cac"] = _ratio(out["cost"], out["new_customers"])
    if "new_clv" in out:
        out["ltv"] = _ratio(out["new_clv"], out["new_customers"])
        out["ltv_cac"] = _ratio(out["ltv"], out["cac"])
    first = ["model", "channel", "cost", "conversions", "revenue", "roi", "roas", "cpa"]
    rest = [c for c in out.columns if c not in first and c != "convention"]
    return out[first + rest + (["convention"] if "convention" in out else [])]


def model_disagreement(attribution: pd.DataFrame, measure: str = "revenue") -> pd.DataFrame:
    """Share and rank of each channel under each model, and how much the models disagree.

    Columns: ``share_<model>`` (channel's share of the credited ``measure``), ``rank_<model>``
    (1 = largest), ``share_min``, ``share_max``, ``share_spread`` (max - min, in share points as a
    fraction) and ``rank_range`` (worst - best rank). Sorted by spread, largest first.
    """
    wide = attribution.pivot_table(index="channel", columns="model", values=measure, aggfunc="sum").fillna(0.0)
    wide.columns.name = None
    totals = wide.sum(axis=0).replace(0.0, np.nan)
    share = wide / totals
    rank = wide.rank(ascending=False, method="min")
    out = pd.concat([share.add_prefix("share_"), rank.add_prefix("rank_")], axis=1)
    out["share_min"], out["share_max"] = share.min(axis=1), share.max(axis=1)
    out["share_spread"] = out["share_max"] - out["share_min"]
    out["rank_range"] = rank.max(axis=1) - rank.min(axis=1)
    return out.sort_values("share_spread", ascending=False).reset_index()
