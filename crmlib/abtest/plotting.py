"""Figures for the A/B report: forest plot of lifts with CIs, cumulative lift over time.

Both take the stage's DataFrames and an optional ``ax``, return the Axes and never call
``plt.show()``. No customer-level data is drawn.
"""

from __future__ import annotations

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import PercentFormatter

from crmlib.i18n import _

__all__ = ["plot_forest", "plot_cumulative_lift", "verdict_interval", "NEUTRAL"]

#: Only a significant result gets a colour; everything else (inconclusive, blocked, a guardrail not yet
#: clear) is grey, so a null experiment never reads as an effect.
_COLORS = {"better": "tab:green", "worse": "tab:red", "guardrail pass": "tab:green", "guardrail fail": "tab:red"}
#: The colour of a row whose verdict is not a significant result.
NEUTRAL = "#9a9a9a"


def verdict_interval(results: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The relative interval the verdict uses: the always-valid (confidence-sequence) one.

    ``seq_rel_ci_low/high`` when the table has them (the absolute sequence relative to the control mean);
    otherwise the absolute sequence scaled by the delta-method ratio of the fixed-horizon relative and
    absolute intervals.
    """
    if {"seq_rel_ci_low", "seq_rel_ci_high"} <= set(results.columns):
        return results["seq_rel_ci_low"].to_numpy(float), results["seq_rel_ci_high"].to_numpy(float)
    lift = results["rel_lift"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = ((results["rel_ci_high"] - results["rel_ci_low"]) / (results["abs_ci_high"] - results["abs_ci_low"])
                 ).to_numpy(float)
    lo = lift - (results["abs_lift"] - results["seq_ci_low"]).to_numpy(float) * scale
    hi = lift + (results["seq_ci_high"] - results["abs_lift"]).to_numpy(float) * scale
    return lo, hi


def plot_forest(results: pd.DataFrame, experiment_id: str | None = None, *, sequential: bool = True,
                ax: Axes | None = None) -> Axes:
    """Relative lift with its interval per experiment x metric x treatment variant.

    By default the interval drawn is the one the verdict uses (the always-valid confidence sequence), so
    what the chart shows and what the verdict says agree. Only a significant row (better, worse, a
    guardrail passed or failed) is coloured; inconclusive and blocked rows are grey.

    Parameters
    ----------
    results : DataFrame
        ``ab_results`` rows.
    experiment_id : str, optional
        Only this experiment.
    sequential : bool
        True (default): the always-valid interval the verdict uses; False: the fixed-horizon CI (valid
        only at one planned look).
    ax : matplotlib Axes, optional
    """
    r = results[~results["is_control"].astype(bool)]
    if experiment_id is not None:
        r = r[r["experiment_id"] == experiment_id]
    r = r[np.isfinite(r["rel_lift"].astype(float))].iloc[::-1]
    if ax is None:
        _fig, ax = plt.subplots(figsize=(7, 0.45 * max(len(r), 2) + 1))
    y = np.arange(len(r))
    lift = r["rel_lift"].to_numpy(float)
    if sequential:
        lo, hi = verdict_interval(r)
    else:
        lo, hi = r["rel_ci_low"].to_numpy(float), r["rel_ci_high"].to_numpy(float)
    colors = [_COLORS.get(v, NEUTRAL) for v in r["verdict"]]
    ax.hlines(y, lo, hi, colors=colors, lw=2)
    ax.scatter(lift, y, c=colors, zorder=3)
    ax.axvline(0, color="black", lw=0.8)
    labels = [f"{e} · {m} · {v}" if experiment_id is None else f"{m} · {v}"
              for e, m, v in zip(r["experiment_id"], r["metric"], r["variant"])]
    ax.set_yticks(y, labels)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(_("relative lift vs control (always-valid interval, the one the verdict uses)") if sequential
                  else _("relative lift vs control (fixed-horizon interval, valid at one planned look only)"))
    return ax


def plot_cumulative_lift(cumulative: pd.DataFrame, experiment_id: str, *, variant: str | None = None,
                         ax: Axes | None = None) -> Axes:
    """Cumulative relative lift by assignment date with the confidence sequence (and fixed CI, dashed).

    ``cumulative`` comes from :func:`crmlib.abtest.stage.cumulative_lift`.
    """
    c = cumulative[cumulative["experiment_id"] == experiment_id]
    if variant is not None:
        c = c[c["variant"] == variant]
    if ax is None:
        _fig, ax = plt.subplots(figsize=(8, 4))
    for v, g in c.groupby("variant", sort=True):
        d = pd.to_datetime(g["date"])
        line, = ax.plot(d, g["rel_lift"], label=_("{variant}: lift").format(variant=v))
        ax.fill_between(d, g["seq_rel_ci_low"].astype(float), g["seq_rel_ci_high"].astype(float),
                        color=line.get_color(), alpha=0.2,
                        label=_("{variant}: confidence sequence (peeking-safe)").format(variant=v))
        ax.plot(d, g["rel_ci_low"], ls="--", lw=0.8, color=line.get_color())
        ax.plot(d, g["rel_ci_high"], ls="--", lw=0.8, color=line.get_color(),
                label=_("{variant}: fixed-horizon CI (one look only)").format(variant=v))
    ax.axhline(0, color="black", lw=0.8)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    locator = mdates.AutoDateLocator(maxticks=8)
    ax.xaxis.set_major_locator(locator)
    # the month names of the default formats are English: the catalog gives each language its own
    # i18n: strftime formats of the chart's date ticks (year; month; year-month; year-month-day)
    month, year_month, full = _("%b"), _("%Y-%b"), _("%Y-%b-%d")
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(
        locator, formats=["%Y", month, "%d", "%H:%M", "%H:%M", "%S.%f"],
        offset_formats=["", "%Y", year_month, full, full, f"{full} %H:%M"]))
    metric = c["metric"].iloc[0] if len(c) else ""
    ax.set_title(_("{experiment}: cumulative lift in {metric}").format(experiment=experiment_id, metric=metric))
    ax.set_xlabel(_("units assigned up to date"))
    ax.set_ylabel(_("relative lift"))
    ax.legend(fontsize=8)
    return ax
