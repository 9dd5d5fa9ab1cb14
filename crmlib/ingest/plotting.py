"""Figures of the ingest report (counts only, never people)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

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
        _, ax = plt.subplots()
    if df.empty:
        ax.text(0.5, 0.5, "no orders", ha="center", va="center", transform=ax.transAxes)
        return ax
    wide = df.pivot_table(index="month", columns="channel", values=value, aggfunc="sum", fill_value=0)
    wide.index = pd.to_datetime(wide.index).strftime("%Y-%m")
    wide.plot.bar(stacked=True, ax=ax, width=0.85, color=colors_for(wide.columns))
    ax.set_xlabel("month (local time)")
    ax.set_ylabel("orders (positive amounts)" if value == "orders" else "net revenue")
    ax.set_title(f"{'Orders' if value == 'orders' else 'Net revenue'} per month by channel")
    ax.legend(title="channel", fontsize="small")
    return ax
