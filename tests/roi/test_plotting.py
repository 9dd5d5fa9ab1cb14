"""The ROI-by-channel chart shows every channel with cost: a 138-yuan channel with ROAS 6,000 beside paid
channels with ROAS 0.6-3.2 does not hide them (log scale, cost panel beside)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from crmlib.roi.plotting import plot_roas_by_channel, roas_ranges  # noqa: E402

ROWS = [("email", 137.79, 6203.99, 5292.77), ("affiliate", 97090.0, 3.2, 3.1), ("display", 132198.0, 1.5, 1.4),
        ("paid_search", 299988.0, 0.64, 0.77), ("social", 171751.0, 0.97, 1.1), ("push", 0.0, np.nan, np.nan)]


def _roi():
    return pd.DataFrame([{"model": m, "channel": c, "cost": cost, "roas": r, "level": "channel"}
                         for c, cost, r1, r2 in ROWS for m, r in (("first_touch", r1), ("last_touch", r2))])


def test_every_channel_with_cost_gets_a_visible_bar():
    cost_ax, roas_ax = plot_roas_by_channel(_roi(), currency="CNY")
    assert roas_ax.get_xscale() == "log"
    names = [t.get_text() for t in cost_ax.get_yticklabels()]
    assert sorted(names) == ["affiliate", "display", "email", "paid_search", "social"]   # push: no cost, no ROAS
    lo, hi = roas_ax.get_xlim()
    ranges = roas_ranges(_roi()).set_index("channel")
    bars = roas_ax.patches
    assert len(bars) == 5
    for bar in bars:
        channel = names[int(round(bar.get_y() + bar.get_height() / 2))]
        right = bar.get_x() + bar.get_width()
        # the bar starts at the axis floor and ends at the channel's median ROAS, inside the axes, and spans
        # at least a fifth of a decade: visible for ROAS 0.64 as for 6,000
        assert bar.get_x() == lo and right < hi
        assert right == np.float64(ranges.loc[channel, "roas_mid"])
        assert np.log10(right) - np.log10(lo) > 0.2
    assert lo < 0.64 and hi > 6203.99
    # cost beside it: one bar per channel, as long as its cost
    costs = {names[int(round(b.get_y() + b.get_height() / 2))]: b.get_width() for b in cost_ax.patches}
    assert costs == {c: cost for c, cost, *_ in ROWS if cost > 0}
    # break-even marked
    assert any(np.allclose(line.get_xdata(), 1.0) for line in roas_ax.get_lines())
    plt.close("all")


def test_roas_ranges_span_the_models_and_drop_channels_without_cost():
    r = roas_ranges(_roi()).set_index("channel")
    assert list(r.index) == ["paid_search", "social", "display", "affiliate", "email"]   # by cost
    assert r.loc["paid_search", ["roas_low", "roas_high"]].tolist() == [0.64, 0.77]
    assert r.loc["email", "roas_mid"] == (6203.99 + 5292.77) / 2
