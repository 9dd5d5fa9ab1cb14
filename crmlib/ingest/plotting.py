"""Figures of the ingest report (counts only, never people)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from crmlib.i18n import _
from crmlib.plotting import colors_for

__all__ = ["plot_monthly_orders"]


def plot_monthly_orders(df: pd.DataFrame, ax=None, *, value: str = "orders"):
    """Stacked bars of ``value`` (``orders`` or ``revenue``) per month and channel.

    Parameters
    ----------
    df : DataFrame
        From :func:`crmlib.ingest.stage.monthly_orders_by_channel`: month, channel, orders, revenue.
    ax : matplotlib Axes, optional
    value : {"orders", "revenue"}

    Returns
    -------
    matplotlib Axes
    """
    if ax is None:
        _fig, ax = plt.subplots()
    if df.empty:
        ax.text(0.5, 0.5, _("no orders"), ha="center", va="center", transform=ax.transAxes)
        return ax
    wide = df.pivot_table(index="month", columns="channel", values=value, aggfunc="sum", fill_value=0)
    wide.index = pd.to_datetime(wide.index).strftime("%Y-%m")
    wide.plot.bar(stacked=True, ax=ax, width=0.85, color=colors_for(wide.columns))
    ax.set_xlabel(_("month (local time)"))
    ax.set_ylabel(_("orders (positive amounts)") if value == "orders" else _("net revenue"))
    ax.set_title(_("Orders per month by channel") if value == "orders" else _("Net revenue per month by channel"))
    ax.legend(title=_("channel"), fontsize="small")
    return ax
