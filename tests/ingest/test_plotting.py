"""crmlib.ingest.plotting: returns Axes, one bar segment per (month, channel), no plt.show()."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from crmlib.ingest.plotting import plot_monthly_orders  # noqa: E402


def test_plot_monthly_orders():
    df = pd.DataFrame({"month": pd.to_datetime(["2026-01-01", "2026-01-01", "2026-02-01"]),
                       "channel": ["online", "store", "online"], "orders": [3, 2, 5],
                       "revenue": [30.0, 20.0, 50.0]})
    ax = plot_monthly_orders(df)
    assert isinstance(ax, plt.Axes)
    heights = sorted(round(p.get_height()) for p in ax.patches)
    assert heights == [0, 2, 3, 5]  # store has no February bar: a zero-height segment
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2026-01", "2026-02"]
    fig, ax2 = plt.subplots()
    assert plot_monthly_orders(df, ax=ax2, value="revenue") is ax2 and "revenue" in ax2.get_ylabel()
    assert plot_monthly_orders(df.iloc[:0]).texts[0].get_text() == "no orders"
    plt.close("all")
