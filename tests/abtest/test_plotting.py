"""Plot functions return Axes, draw the intervals they are given, and accept an ax."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from crmlib.abtest.plotting import plot_cumulative_lift, plot_forest  # noqa: E402


def test_forest_plot_draws_each_interval():
    res = pd.DataFrame({
        "experiment_id": ["e", "e", "e"], "metric": ["conversion", "conversion", "revenue"],
        "variant": ["control", "t", "t"], "is_control": [True, False, False],
        "rel_lift": [np.nan, 0.1, -0.05], "rel_ci_low": [np.nan, 0.02, -0.2], "rel_ci_high": [np.nan, 0.18, 0.1],
        "abs_lift": [np.nan, 0.01, -2.0], "abs_ci_low": [np.nan, 0.002, -8.0], "abs_ci_high": [np.nan, 0.018, 4.0],
        "seq_ci_low": [np.nan, -0.002, -11.0], "seq_ci_high": [np.nan, 0.022, 7.0],
        "verdict": ["control", "better", "inconclusive"]})
    fig, ax = plt.subplots()
    out = plot_forest(res, "e", ax=ax, sequential=False)
    assert out is ax
    segs = ax.collections[0].get_segments()
    spans = sorted((round(s[0][0], 6), round(s[1][0], 6)) for s in segs)
    assert spans == [(-0.2, 0.1), (0.02, 0.18)]
    ax2 = plot_forest(res)
    spans2 = sorted((round(s[0][0], 6), round(s[1][0], 6)) for s in ax2.collections[0].get_segments())
    assert spans2[1][0] < 0.02 and spans2[1][1] > 0.18             # sequence wider than the fixed CI
    plt.close("all")


def test_cumulative_plot():
    d = pd.date_range("2026-01-01", periods=4)
    cum = pd.DataFrame({"experiment_id": "e", "metric": "conversion", "variant": "t", "date": d,
                        "rel_lift": [0.3, 0.2, 0.15, 0.12], "rel_ci_low": [-0.2, -0.05, 0.0, 0.02],
                        "rel_ci_high": [0.8, 0.45, 0.3, 0.22], "seq_rel_ci_low": [-0.6, -0.3, -0.15, -0.08],
                        "seq_rel_ci_high": [1.2, 0.7, 0.45, 0.32]})
    ax = plot_cumulative_lift(cum, "e")
    assert ax.get_title() == "e: cumulative lift in conversion"
    assert np.allclose(ax.lines[0].get_ydata(), cum["rel_lift"])
    plt.close("all")


def test_forest_plot_draws_the_verdict_interval_and_greys_what_is_not_significant():
    """The default interval is the always-valid one the verdict uses; only a significant row is coloured, so an
    A/A experiment whose fixed-horizon interval excludes zero is drawn grey across zero."""
    from matplotlib.colors import to_hex

    from crmlib.abtest.plotting import NEUTRAL

    res = pd.DataFrame({
        "experiment_id": ["aa", "aa", "win"], "metric": ["revenue", "revenue", "conversion"],
        "variant": ["control", "t", "t"], "is_control": [True, False, False],
        "rel_lift": [np.nan, -0.33, 0.74], "rel_ci_low": [np.nan, -0.53, 0.38], "rel_ci_high": [np.nan, -0.12, 1.11],
        "seq_rel_ci_low": [np.nan, -0.65, 0.18], "seq_rel_ci_high": [np.nan, 0.02, 1.31],
        "verdict": ["control", "inconclusive", "better"]})
    ax = plot_forest(res)
    spans = {round(s[0][1]): (round(s[0][0], 6), round(s[1][0], 6)) for s in ax.collections[0].get_segments()}
    labels = [t.get_text() for t in ax.get_yticklabels()]
    by_label = {labels[y]: spans[y] for y in spans}
    assert by_label["aa · revenue · t"] == (-0.65, 0.02)       # crosses zero, as the verdict reads it
    assert by_label["win · conversion · t"] == (0.18, 1.31)
    colors = [to_hex(c) for c in ax.collections[0].get_colors()]
    row_of = {labels[int(round(s[0][1]))]: to_hex(c) for s, c in zip(ax.collections[0].get_segments(),
                                                                        ax.collections[0].get_colors())}
    assert row_of["aa · revenue · t"] == to_hex(NEUTRAL)
    assert row_of["win · conversion · t"] != to_hex(NEUTRAL) and len(set(colors)) == 2
    assert "always-valid" in ax.get_xlabel()
    plt.close("all")
