"""Figures of the ROI stage. Every function draws on ``ax`` (or a new one) and returns it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from crmlib.i18n import _
from crmlib.plotting import color_for, colors_for

__all__ = [
    "plot_roas_by_channel",
    "roas_ranges",
    "plot_roi_by_model",
    "plot_removal_effects",
    "plot_response_curves",
    "plot_transition_matrix",
    "plot_journey_lengths",
    "plot_time_to_convert",
    "plot_budget",
]


def _ax(ax: Axes | None, size: tuple[float, float] = (8, 4.5)) -> Axes:
    if ax is None:
        _fig, ax = plt.subplots(figsize=size)
    return ax


def _model_label(model) -> str:
    """An attribution model's name in the report's language (our code, unlike the channel names beside it)."""
    from crmlib.roi.roi_table import MODELS

    return _(model) if model in MODELS else str(model)


def _state_labels(labels) -> list[str]:
    """Markov chain states as tick labels: the chain's own states translated, channel names (data) as they are."""
    from crmlib.roi.markov import CONVERSION, NULL, START

    return [_(s) if s in (START, CONVERSION, NULL) else str(s) for s in labels]


def roas_ranges(roi: pd.DataFrame) -> pd.DataFrame:
    """Per channel with cost: cost, the lowest, median and highest ROAS over the attribution models.

    ``roi`` holds the channel rows of ``roi.parquet`` (``model, channel, cost, roas``). Sorted by cost,
    largest first; channels without cost (ROAS undefined) are left out.
    """
    r = roi[(roi["cost"].astype(float) > 0) & np.isfinite(roi["roas"].astype(float))]
    if r.empty:
        return pd.DataFrame(columns=["channel", "cost", "roas_low", "roas_mid", "roas_high", "models"])
    g = r.groupby("channel", sort=False)
    out = pd.DataFrame({"cost": g["cost"].max(), "roas_low": g["roas"].min(), "roas_mid": g["roas"].median(),
                        "roas_high": g["roas"].max(), "models": g["model"].nunique()}).reset_index()
    return out.sort_values("cost", ascending=False, kind="mergesort").reset_index(drop=True)


def plot_roas_by_channel(roi: pd.DataFrame, *, currency: str | None = None, axes=None):
    """Every channel with cost on one readable chart: cost beside ROAS on a log scale.

    Left panel: cost per channel (bars). Right panel: ROAS = credited revenue / cost on a log axis, so a
    channel with ROAS 6,000 and one with 0.6 are both visible: a bar from the axis floor to the median over
    the attribution models, a black line over the range from the lowest to the highest model, and a dashed
    line at break-even (ROAS 1).

    Parameters
    ----------
    roi : DataFrame
        Channel rows of ``roi.parquet`` (``model, channel, cost, roas``).
    currency : str, optional
        Written on the cost axis.
    axes : pair of Axes, optional
        (cost axes, ROAS axes); new ones side by side otherwise.

    Returns
    -------
    (Axes, Axes)
    """
    from matplotlib.ticker import FuncFormatter

    from crmlib.plotting import colors_for
    from crmlib.present import fmt_money, fmt_number, fmt_ratio

    table = roas_ranges(roi).iloc[::-1].reset_index(drop=True)  # largest cost on top
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 0.55 * max(len(table), 3) + 1.4), sharey=True,
                                 gridspec_kw={"width_ratios": [1, 1.6]})
    cost_ax, roas_ax = axes
    y = np.arange(len(table))
    colors = colors_for(table["channel"], "channel")
    color_list = [colors[c] for c in table["channel"]]
    cost_ax.barh(y, table["cost"].to_numpy(float), color=color_list)
    cost_ax.set_yticks(y, table["channel"].astype(str))
    # reversed axis (bars grow leftwards towards the names) with room for the cost written beside each bar
    cost_ax.set_xlim(float(table["cost"].max()) * 1.6 if len(table) else 1.0, 0)
    cost_ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt_number(v)))
    cost_ax.set_xlabel(_("cost ({currency})").format(currency=currency) if currency else _("cost"))
    for yi, c in zip(y, table["cost"]):
        cost_ax.text(c, yi, " " + fmt_money(c, currency) + " ", va="center", ha="right", fontsize=8)
    high = table["roas_high"].to_numpy(float)
    low = table["roas_low"].to_numpy(float)
    mid = table["roas_mid"].to_numpy(float)
    positive = np.concatenate([low[low > 0], [1.0]])
    floor = 10 ** np.floor(np.log10(positive.min() / 2))
    ceiling = 10 ** np.ceil(np.log10(max(float(np.nanmax(high, initial=1.0)), 1.0) * 3))
    roas_ax.set_xscale("log")
    roas_ax.barh(y, np.maximum(mid, floor) - floor, left=floor, color=color_list, alpha=0.85)
    roas_ax.hlines(y, np.maximum(low, floor), np.maximum(high, floor), color="black", lw=1.5)
    roas_ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    roas_ax.set_xlim(floor, ceiling)
    for yi, lo_, hi_ in zip(y, low, high):
        text = fmt_ratio(lo_) if np.isclose(lo_, hi_) else f"{fmt_ratio(lo_)} - {fmt_ratio(hi_)}"
        roas_ax.text(max(hi_, floor) * 1.15, yi, text, va="center", fontsize=8)
    roas_ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt_number(v)))
    roas_ax.set_xlabel(_("ROAS = credited revenue / cost (log scale; dashed line: break-even)"))
    roas_ax.tick_params(axis="y", left=False)
    return cost_ax, roas_ax


def plot_roi_by_model(roi: pd.DataFrame, *, metric: str = "roi", ax: Axes | None = None) -> Axes:
    """Grouped bars: ``metric`` (ROI by default) per channel, one bar per attribution model.

    Channels without cost (ROI undefined) are left out; a dashed line marks break-even.
    """
    ax = _ax(ax)
    wide = roi.pivot(index="channel", columns="model", values=metric).dropna(how="all")
    n_models = max(len(wide.columns), 1)
    width = 0.8 / n_models
    x = np.arange(len(wide))
    for i, model in enumerate(wide.columns):
        ax.bar(x + (i - (n_models - 1) / 2) * width, wide[model].to_numpy(), width, label=_model_label(model))
    ax.set_xticks(x, wide.index, rotation=30, ha="right")
    ax.axhline(0.0 if metric == "roi" else 1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_ylabel({"roi": _("ROI = (revenue - cost) / cost"), "roas": _("ROAS = revenue / cost")}.get(metric, metric))
    ax.set_title(_("{metric} by channel under each attribution model").format(metric=metric.upper()))
    ax.legend(fontsize="small", ncol=2)
    return ax


def plot_removal_effects(removal_effects: pd.DataFrame, *, measure: str = "conversions", ax: Axes | None = None) -> Axes:
    """Horizontal bars of the Markov removal effects (share of conversions lost without the channel)."""
    ax = _ax(ax, (7, 4))
    re = removal_effects[measure].sort_values()
    ax.barh(re.index, re.to_numpy(), color=[color_for(c) for c in re.index])
    ax.set_xlabel(_("removal effect ({measure}): 1 - P(without channel) / P").format(measure=_(measure)))
    ax.set_title(_("Markov removal effects"))
    ax.set_xlim(0, max(1.0, float(re.max()) * 1.05) if len(re) else 1.0)
    return ax


def plot_transition_matrix(transition_matrix: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Heat map of the Markov transition probabilities with the values written in the cells."""
    ax = _ax(ax, (8, 6))
    m = transition_matrix.to_numpy(float)
    ax.imshow(m, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(m.shape[1]), _state_labels(transition_matrix.columns), rotation=45, ha="right")
    ax.set_yticks(range(m.shape[0]), _state_labels(transition_matrix.index))
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if m[i, j] > 0:
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > 0.6 else "black")
    ax.set_xlabel(_("to"))
    ax.set_ylabel(_("from"))
    ax.set_title(_("Markov transition probabilities"))
    return ax


def plot_response_curves(
    curves: pd.DataFrame, *, identified: pd.Series | None = None, ax: Axes | None = None
) -> Axes:
    """Steady-state weekly response per channel with bootstrap bands; a dot marks current spend.

    ``curves`` comes from :meth:`MediaMixModel.response_curves`; ``identified`` (channel -> bool)
    draws unidentified channels dashed.
    """
    ax = _ax(ax)
    colors = colors_for(sorted(curves["channel"].unique()))
    for channel, c in curves.groupby("channel", sort=True):
        ok = True if identified is None else bool(identified.get(channel, True))
        line = ax.plot(c["weekly_spend"], c["response"], linestyle="-" if ok else "--", color=colors[channel],
                       label=channel if ok else _("{channel} (not identified)").format(channel=channel))[0]
        ax.fill_between(c["weekly_spend"], c["low"], c["high"], color=line.get_color(), alpha=0.15)
        cur = float(c["current_weekly_spend"].iloc[0])
        ax.plot([cur], [np.interp(cur, c["weekly_spend"], c["response"])], "o", color=line.get_color())
    ax.set_xlabel(_("weekly spend"))
    ax.set_ylabel(_("predicted weekly revenue (steady state)"))
    ax.set_title(_("Response curves (dot = current spend)"))
    ax.legend(fontsize="small")
    return ax


def plot_journey_lengths(lengths: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Journey-length distribution (touches per journey), converting vs non-converting."""
    ax = _ax(ax, (7, 4))
    x = lengths["touches"].to_numpy()
    ax.bar(x - 0.2, lengths["converting"], 0.4, label=_("converting"))
    ax.bar(x + 0.2, lengths["non_converting"], 0.4, label=_("non-converting"))
    ax.set_xlabel(_("touches in journey"))
    ax.set_ylabel(_("journeys"))
    ax.set_title(_("Journey length"))
    ax.legend()
    return ax


def plot_time_to_convert(time_to_convert: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Histogram of whole days from a converting journey's first touch to the order."""
    ax = _ax(ax, (7, 4))
    ax.bar(time_to_convert["days"], time_to_convert["conversions"], width=0.9)
    ax.set_xlabel(_("days from first touch to conversion (floored)"))
    ax.set_ylabel(_("conversions"))
    ax.set_title(_("Time to convert"))
    return ax


def plot_budget(table: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Current vs proposed weekly spend per channel, with the allowed range as error bars."""
    ax = _ax(ax, (7, 4))
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["current"], 0.4, label=_("current"))
    ax.bar(x + 0.2, table["proposed"], 0.4, label=_("proposed"))
    mid = (table["lower"] + table["upper"]) / 2
    ax.errorbar(x + 0.2, mid, yerr=(table["upper"] - table["lower"]) / 2, fmt="none", ecolor="black",
                capsize=4, label=_("allowed range"))
    ax.set_xticks(x, table["channel"], rotation=30, ha="right")
    ax.set_ylabel(_("weekly spend"))
    ax.set_title(_("Budget reallocation"))
    ax.legend(fontsize="small")
    return ax
