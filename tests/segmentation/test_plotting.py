"""Plots return Axes, draw on a given Axes, and label the time unit and calibration end."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from crmlib.segmentation import plotting  # noqa: E402
from crmlib.segmentation.bgnbd import BetaGeoFitter  # noqa: E402
from crmlib.segmentation.rfm import score_rfm  # noqa: E402
from crmlib.segmentation.summary import calibration_holdout_evaluation  # noqa: E402


@pytest.fixture(scope="module")
def model(cdnow_summary):
    s = cdnow_summary
    return BetaGeoFitter(time_unit="W", calibration_end="1997-09-30").fit(s["frequency"], s["recency"], s["T"])


def test_rf_heatmap_counts():
    rng = np.random.default_rng(0)
    feats = pd.DataFrame(
        {
            "customer_key": [str(i) for i in range(200)],
            "recency_days": rng.integers(0, 400, 200),
            "frequency": rng.integers(1, 10, 200),
            "monetary": rng.gamma(2, 50, 200),
        }
    )
    fig, ax = plt.subplots()
    out = plotting.plot_rf_heatmap(score_rfm(feats), as_of="2024-06-30", ax=ax)
    assert out is ax and "2024-06-30" in ax.get_title()
    assert np.nansum(ax.images[0].get_array()) == 200
    plt.close("all")


def test_matrices_are_bounded_and_labelled(model):
    ax = plotting.plot_frequency_recency_matrix(model, T=38.86, horizon=52, max_frequency=500)
    values = np.ma.filled(ax.images[0].get_array().astype(float), np.nan)
    assert values.shape[0] <= plotting.MAX_GRID and values.shape[1] <= plotting.MAX_GRID
    assert "1997-09-30" in ax.get_title() and "weeks" in ax.get_title()
    assert "weeks" in ax.get_xlabel()
    # Row x=0: only the t_x=0 cell is defined; and the value there matches the model.
    assert np.isnan(values[0, 1:]).all()
    assert values[0, 0] == pytest.approx(
        float(model.conditional_expected_number_of_purchases_up_to_time(52, 0, 0, 38.86))
    )
    ax2 = plotting.plot_probability_alive_matrix(model, T=38.86, max_frequency=10)
    p = np.ma.filled(ax2.images[0].get_array().astype(float), np.nan)
    assert np.nanmax(p) <= 1 and np.nanmin(p) >= 0
    plt.close("all")


def test_calibration_holdout_and_clv_plots(model, cdnow_summary):
    ev = calibration_holdout_evaluation(
        model, cdnow_summary, time_unit="W", calibration_end="1997-09-30", holdout_end="1998-06-30"
    )
    ax = plotting.plot_calibration_holdout(ev)
    assert "1997-09-30" in ax.get_title() and "39 weeks" in ax.get_ylabel()
    assert len(ax.lines) == 2
    clv = pd.DataFrame({"segment": ["Champions", "New", "Champions"], "clv": [10.0, 2.0, 30.0]})
    ax = plotting.plot_clv_by_segment(clv, time_unit="W", horizon=52, calibration_end="1997-09-30")
    assert "52 weeks" in ax.get_title() and [t.get_text() for t in ax.get_xticklabels()] == ["Champions", "New"]
    scan = pd.DataFrame({"k": [2, 3], "inertia": [10.0, 5.0], "silhouette": [0.4, 0.5]})
    scan.attrs["rows"] = 200_000
    ax = plotting.plot_k_scan(scan, 3)
    assert isinstance(ax, matplotlib.axes.Axes) and ax.get_title().endswith("(chosen k=3, 200,000 customers)")
    plt.close("all")


def test_segment_shares_and_migration():
    segments = pd.DataFrame(
        {"segment": ["Champions", "New"], "share_customers": [0.3, 0.7], "share_revenue": [0.8, 0.2]}
    )
    ax = plotting.plot_segment_shares(segments, as_of="2024-06-30")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Champions", "New"] and len(ax.patches) == 4
    assert ax.xaxis.get_major_formatter()(0.5, 0) == "50%"  # shares read as percentages
    matrix = pd.DataFrame([[1, 2], [3, 4]], index=["new", "Gold"], columns=["Gold", "none"])
    ax = plotting.plot_migration_matrix(matrix, as_of="2024-06-30")
    assert np.ma.filled(ax.images[0].get_array()).sum() == 10 and "2024-06-30" in ax.get_title()
    plt.close("all")


def test_chart_words_follow_the_report_language(zh_cn, model):
    segments = pd.DataFrame({"segment": ["Champions", "Can't Lose"], "share_customers": [0.4, 0.6],
                             "share_revenue": [0.7, 0.3]})
    ax = plotting.plot_segment_shares(segments, as_of="2024-06-30")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["冠军客户", "不可流失客户"]
    assert ax.get_xlabel() == "占比" and ax.get_title() == "RFM 客群（截至 2024-06-30）"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["客户占比", "净收入占比"]
    ax = plotting.plot_probability_alive_matrix(model, T=39)
    assert ax.get_xlabel() == "最近购买 t_x（首次到末次购买的周数）"
    assert "校准期截至 1997-09-30" in ax.get_title() and "alive" not in ax.get_title()
    matrix = pd.DataFrame([[3, 1], [0, 2]], index=["new", "Gold"], columns=["Gold", "none"])
    ax = plotting.plot_migration_matrix(matrix)
    # the pipeline's own tier words are translated; the params' tier names are the user's and stay
    assert [t.get_text() for t in ax.get_yticklabels()] == ["新客", "Gold"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Gold", "无等级"]
    plt.close("all")
