"""crmlib.plotting: one colour per channel and segment on every chart and in every run; laptop-sized charts."""

from __future__ import annotations

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from crmlib import plotting  # noqa: E402
from crmlib.plotting import OTHER_COLOR, PALETTE, color_for, colors_for  # noqa: E402
from crmlib.ingest.plotting import plot_monthly_orders  # noqa: E402
from crmlib.roi import plotting as roi_plots  # noqa: E402
from crmlib.sample import generator  # noqa: E402
from crmlib.segmentation import plotting as seg_plots  # noqa: E402
from crmlib.segmentation.rfm import SEGMENTS  # noqa: E402


@pytest.fixture(autouse=True)
def report_style():
    with matplotlib.rc_context():
        plotting.use_report_style()
        yield
    plt.close("all")


def test_every_rfm_segment_has_its_own_fixed_colour():
    colours = [color_for(s, "segment") for s in SEGMENTS]
    assert len(set(colours)) == len(SEGMENTS)
    assert color_for("Champions", "segment") == plotting.SEGMENT_COLORS["Champions"]


def test_the_samples_channels_all_differ_and_ignore_case_and_separators():
    channels = list(generator.CHANNELS) + ["web", "手机App", "小程序", "store"]
    colours = [color_for(c) for c in channels]
    assert len(set(colours)) == len(channels)
    assert color_for("Paid-Search") == color_for("paid_search") == color_for(" PAID SEARCH ")
    assert color_for("mini_program") == color_for("小程序")


def test_unknown_names_hash_to_the_same_colour_in_another_process():
    names = ["TV", "户外广告", "podcast", "品牌_春季_2026"]
    here = [color_for(n) for n in names]
    assert all(c in PALETTE for c in here)
    code = ("from crmlib.plotting import color_for; "
            f"print(','.join(color_for(n) for n in {names!r}))")
    # another interpreter with another str-hash seed: the colour must not depend on it
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert out.stdout.strip().split(",") == here


def test_missing_and_other_names_are_grey():
    for name in (None, float("nan"), "", "other", "其他"):
        assert color_for(name) == OTHER_COLOR


def test_names_on_one_chart_never_share_a_colour_and_known_ones_keep_theirs():
    unknown = [f"campaign_{i}" for i in range(8)]
    names = ["email", "微信"] + unknown
    colours = colors_for(names)
    assert list(colours) == names
    assert len(set(colours.values())) == len(names)
    assert colours["email"] == color_for("email") and colours["微信"] == color_for("微信")
    # the same names in another order get the same colours
    assert colors_for(list(reversed(names))) == colours


def test_stage_charts_use_the_shared_colours():
    channels = ["paid_search", "email", "微信", "短信"]
    ax = roi_plots.plot_removal_effects(pd.DataFrame({"conversions": [0.1, 0.2, 0.3, 0.4]}, index=channels))
    bars = {t.get_text(): to_hex(p.get_facecolor()) for t, p in zip(ax.get_yticklabels(), ax.patches)}
    assert bars == {c: color_for(c).lower() for c in channels}

    spend = np.linspace(0, 100, 5)
    curves = pd.concat([pd.DataFrame({"channel": ch, "weekly_spend": spend, "response": spend, "low": spend,
                                      "high": spend, "current_weekly_spend": 50.0}) for ch in ("social", "display")])
    ax = roi_plots.plot_response_curves(curves)
    assert [to_hex(line.get_color()) for line in ax.get_legend().get_lines()] == [
        color_for("display").lower(), color_for("social").lower()]

    shares = pd.DataFrame({"segment": ["Champions", "At Risk"], "share_customers": [0.2, 0.8],
                           "share_revenue": [0.6, 0.4]})
    ax = seg_plots.plot_segment_shares(shares)
    assert to_hex(ax.patches[0].get_facecolor()) == color_for("Champions", "segment").lower()
    assert to_hex(ax.patches[1].get_facecolor()) == color_for("At Risk", "segment").lower()

    orders = pd.DataFrame({"month": pd.to_datetime(["2026-05-01"] * 2), "channel": ["小程序", "web"],
                           "orders": [3, 4], "revenue": [1.0, 2.0]})
    ax = plot_monthly_orders(orders)
    legend = {t.get_text(): to_hex(h.get_facecolor()) for t, h in
              zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles)}
    assert legend == {"web": color_for("web").lower(), "小程序": color_for("小程序").lower()}


def test_default_and_stage_figures_fit_a_laptop_page():
    assert matplotlib.rcParams["figure.figsize"][0] * matplotlib.rcParams["savefig.dpi"] <= plotting.MAX_FIGURE_PX
    fig, _ = plt.subplots()
    assert fig.get_size_inches()[0] * plotting.FIGURE_DPI <= plotting.MAX_FIGURE_PX
    width, height = plotting.figure_size(16, 6)
    assert width * plotting.FIGURE_DPI == pytest.approx(plotting.MAX_FIGURE_PX) and height == pytest.approx(6 * width / 16)
    wide, _ = plt.subplots(figsize=(14, 7))
    plotting.fit_to_page(wide)
    assert wide.get_size_inches() == pytest.approx([plotting.MAX_FIGURE_PX / plotting.FIGURE_DPI,
                                                    7 * plotting.MAX_FIGURE_PX / plotting.FIGURE_DPI / 14])
    budget = pd.DataFrame({"channel": ["a"], "current": [1.0], "proposed": [2.0], "lower": [0.0], "upper": [3.0]})
    for ax in (roi_plots.plot_budget(budget),
               roi_plots.plot_transition_matrix(pd.DataFrame(np.eye(2), ["a", "b"], ["a", "b"])),
               seg_plots.plot_segment_shares(pd.DataFrame({"segment": ["New"], "share_customers": [1.0],
                                                           "share_revenue": [1.0]}))):
        assert ax.figure.get_size_inches()[0] * plotting.FIGURE_DPI <= plotting.MAX_FIGURE_PX


def test_a_chart_with_long_labels_is_saved_no_wider_than_a_laptop_page():
    import io

    from PIL import Image

    fig, ax = plt.subplots(figsize=(7, 3))
    ax.barh(["free_shipping_threshold · conversion · treatment · 小程序_首页改版_第二轮", "b"], [1, 2])
    at_default = io.BytesIO()
    fig.savefig(at_default, format="png", dpi=plotting.FIGURE_DPI, bbox_inches="tight")
    assert Image.open(at_default).size[0] > plotting.MAX_FIGURE_PX  # the labels reach past the edge
    fitted = io.BytesIO()
    fig.savefig(fitted, format="png", dpi=plotting.page_dpi(fig), bbox_inches="tight")
    assert plotting.MAX_FIGURE_PX * 0.9 <= Image.open(fitted).size[0] <= plotting.MAX_FIGURE_PX
    small, _ = plt.subplots(figsize=(4, 3))
    assert plotting.page_dpi(small) == plotting.FIGURE_DPI
