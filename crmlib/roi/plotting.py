"""Figures of the ROI stage. Every function draws on ``ax`` (or a new one) and returns it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

__all__ = [
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
        _, ax = plt.subplots(figsize=size)
    return ax


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
        ax.bar(x + (i - (n_models - 1) / 2) * width, wide[model].to_numpy(), width, label=model)
    ax.set_xticks(x, wide.index, rotation=30, ha="right")
    ax.axhline(0.0 if metric == "roi" else 1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_ylabel({"roi": "ROI = (revenue - cost) / cost", "roas": "ROAS = revenue / cost"}.get(metric, metric))
    ax.set_title(f"{metric.upper()} by channel under each attribution model")
    ax.legend(fontsize="small", ncol=2)
    return ax


def plot_removal_effects(removal_effects: pd.DataFrame, *, measure: str = "conversions", ax: Axes | None = None) -> Axes:
    """Horizontal bars of the Markov removal effects (share of conversions lost without the channel)."""
    ax = _ax(ax, (7, 4))
    re = removal_effects[measure].sort_values()
    ax.barh(re.index, re.to_numpy())
    ax.set_xlabel(f"removal effect ({measure}): 1 - P(without channel) / P")
    ax.set_title("Markov removal effects")
    ax.set_xlim(0, max(1.0, float(re.max()) * 1.05) if len(re) else 1.0)
    return ax


def plot_transition_matrix(transition_matrix: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Heat map of the Markov transition probabilities with the values written in the cells."""
    ax = _ax(ax, (8, 6))
    m = transition_matrix.to_numpy(float)
    ax.imshow(m, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(m.shape[1]), transition_matrix.columns, rotation=45, ha="right")
    ax.set_yticks(range(m.shape[0]), transition_matrix.index)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if m[i, j] > 0:
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > 0.6 else "black")
    ax.set_xlabel("to")
    ax.set_ylabel("from")
    ax.set_title("Markov transition probabilities")
    return ax


def plot_response_curves(
    curves: pd.DataFrame, *, identified: pd.Series | None = None, ax: Axes | None = None
) -> Axes:
    """Steady-state weekly response per channel with bootstrap bands; a dot marks current spend.

    ``curves`` comes from :meth:`MediaMixModel.response_curves`; ``identified`` (channel -> bool)
    draws unidentified channels dashed.
    """
    ax = _ax(ax)
    for channel, c in curves.groupby("channel", sort=True):
        ok = True if identified is None else bool(identified.get(channel, True))
        line = ax.plot(c["weekly_spend"], c["response"], linestyle="-" if ok else "--",
                       label=channel if ok else f"{channel} (not identified)")[0]
        ax.fill_between(c["weekly_spend"], c["low"], c["high"], color=line.get_color(), alpha=0.15)
        cur = float(c["current_weekly_spend"].iloc[0])
        ax.plot([cur], [np.interp(cur, c["weekly_spend"], c["response"])], "o", color=line.get_color())
    ax.set_xlabel("weekly spend")
    ax.set_ylabel("predicted weekly revenue (steady state)")
    ax.set_title("Response curves (dot = current spend)")
    ax.legend(fontsize="small")
    return ax


def plot_journey_lengths(lengths: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Journey-length distribution (touches per journey), converting vs non-converting."""
    ax = _ax(ax, (7, 4))
    x = lengths["touches"].to_numpy()
    ax.bar(x - 0.2, lengths["converting"], 0.4, label="converting")
    ax.bar(x + 0.2, lengths["non_converting"], 0.4, label="non-converting")
    ax.set_xlabel("touches in journey")
    ax.set_ylabel("journeys")
    ax.set_title("Journey length")
    ax.legend()
    return ax


def plot_time_to_convert(time_to_convert: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Histogram of whole days from a converting journey's first touch to the order."""
    ax = _ax(ax, (7, 4))
    ax.bar(time_to_convert["days"], time_to_convert["conversions"], width=0.9)
    ax.set_xlabel("days from first touch to conversion (floored)")
    ax.set_ylabel("conversions")
    ax.set_title("Time to convert")
    return ax


def plot_budget(table: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Current vs proposed weekly spend per channel, with the allowed range as error bars."""
    ax = _ax(ax, (7, 4))
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["current"], 0.4, label="current")
    ax.bar(x + 0.2, table["proposed"], 0.4, label="proposed")
    mid = (table["lower"] + table["upper"]) / 2
    ax.errorbar(x + 0.2, mid, yerr=(table["upper"] - table["lower"]) / 2, fmt="none", ecolor="black",
                capsize=4, label="allowed range")
    ax.set_xticks(x, table["channel"], rotation=30, ha="right")
    ax.set_ylabel("weekly spend")
    ax.set_title("Budget reallocation")
    ax.legend(fontsize="small")
    return ax
