"""Chinese renders in every chart: the bundled CJK font is registered, and drawing the project's charts
with Chinese channel, campaign, city and tier names raises no missing-glyph warning."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from crmlib import plotting  # noqa: E402
from crmlib.abtest.plotting import plot_cumulative_lift, plot_forest  # noqa: E402
from crmlib.ingest.plotting import plot_monthly_orders  # noqa: E402
from crmlib.roi import plotting as roi_plots  # noqa: E402
from crmlib.sample import generator, vocab  # noqa: E402
from crmlib.segmentation import plotting as seg_plots  # noqa: E402
from crmlib.segmentation.rfm import SEGMENTS, score_rfm  # noqa: E402

CHINESE_CHANNELS = ["小程序", "手机App", "微信"]


@contextlib.contextmanager
def glyph_problems():
    """Collect every missing-glyph or font-fallback complaint matplotlib makes, as a warning or a log line."""
    found: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            found.append(record.getMessage())

    handler = Collect(level=logging.DEBUG)
    logger = logging.getLogger("matplotlib")
    logger.addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield found
        finally:
            plt.close("all")
            logger.removeHandler(handler)
    found.extend(str(w.message) for w in caught)
    found[:] = [m for m in found if "missing from font" in m or "Failed to find font" in m]


def render(ax_or_fig) -> None:
    """Draw to PNG bytes, as the report does: glyphs are looked up only when text is rendered."""
    fig = getattr(ax_or_fig, "figure", ax_or_fig)
    fig.savefig(io.BytesIO(), format="png")


@pytest.fixture(autouse=True)
def report_style():
    with matplotlib.rc_context():
        assert plotting.use_report_style() == plotting.CJK_FAMILY
        yield


def test_the_bundled_font_is_registered_by_family_name():
    from matplotlib import font_manager

    path = plotting.cjk_font_path()
    assert path is not None and path.is_file() and path.suffix == ".ttc"
    assert matplotlib.rcParams["font.sans-serif"][0] == "Noto Sans CJK SC"
    found = font_manager.findfont(font_manager.FontProperties(family="Noto Sans CJK SC"), fallback_to_default=False)
    assert found == str(path)


def test_the_check_catches_boxes_when_only_dejavu_is_used():
    """The detector itself: without the CJK font the same labels do complain (so a pass means something)."""
    with matplotlib.rc_context({"font.sans-serif": ["DejaVu Sans"]}), glyph_problems() as problems:
        fig, ax = plt.subplots()
        ax.bar(CHINESE_CHANNELS, [1, 2, 3])
        render(fig)
    assert any("missing from font" in p for p in problems)


def test_chinese_channel_and_city_labels_render_without_missing_glyphs():
    months = pd.to_datetime(["2026-04-01", "2026-05-01", "2026-06-01"])
    orders = pd.DataFrame([(m, ch, 10 + i, 1000.0 * (i + 1)) for m in months
                           for i, ch in enumerate(CHINESE_CHANNELS + ["web", "门店"])],
                          columns=["month", "channel", "orders", "revenue"])
    with glyph_problems() as problems:
        ax = plot_monthly_orders(orders, value="revenue")
        ax.set_title("上海: 每月净收入 − 按渠道")
        render(ax)
        removal = pd.DataFrame({"conversions": [0.4, 0.2, 0.1]}, index=CHINESE_CHANNELS)
        render(roi_plots.plot_removal_effects(removal))
        budget = pd.DataFrame({"channel": CHINESE_CHANNELS, "current": [100.0, 200.0, 50.0],
                               "proposed": [120.0, 150.0, 80.0], "lower": [50.0, 100.0, 0.0],
                               "upper": [200.0, 300.0, 100.0]})
        render(roi_plots.plot_budget(budget))
    assert problems == []


def _sample_names() -> tuple[list[str], list[str], list[str]]:
    channels = list(generator.CHANNELS)
    campaigns = list(generator.CAMPAIGNS)
    cities = [c for c, _, _ in vocab.CITIES]
    assert any("\u4e00" <= ch <= "\u9fff" for name in channels + campaigns for ch in name)
    return channels, campaigns, cities


def test_the_samples_charts_render_every_name_the_sample_carries():
    """Every channel, campaign and city name of the sample through the segmentation, ROI and A/B figures."""
    channels, campaigns, cities = _sample_names()
    paid = [c for c, v in generator.CHANNELS.items() if v["paid"]]
    rng = np.random.default_rng(0)
    with glyph_problems() as problems:
        roi = pd.DataFrame([(ch, model, float(rng.uniform(-0.5, 5))) for ch in channels
                            for model in ("last_touch", "markov", "shapley")], columns=["channel", "model", "roi"])
        render(roi_plots.plot_roi_by_model(roi))
        states = ["(start)"] + channels + ["(conversion)", "(null)"]
        m = rng.random((len(states), len(states)))
        render(roi_plots.plot_transition_matrix(pd.DataFrame(m / m.sum(1, keepdims=True), states, states)))
        spend = np.linspace(0, 1000, 20)
        curves = pd.concat([pd.DataFrame({"channel": ch, "weekly_spend": spend, "response": np.sqrt(spend) * (i + 1),
                                          "low": np.sqrt(spend) * i, "high": np.sqrt(spend) * (i + 2),
                                          "current_weekly_spend": 400.0}) for i, ch in enumerate(paid)])
        render(roi_plots.plot_response_curves(curves, identified=pd.Series({paid[0]: False})))
        budget = pd.DataFrame({"channel": campaigns, "current": 100.0, "proposed": 120.0, "lower": 50.0,
                               "upper": 200.0})
        render(roi_plots.plot_budget(budget))

        feats = pd.DataFrame({"customer_key": [str(i) for i in range(300)],
                              "recency_days": rng.integers(0, 400, 300), "frequency": rng.integers(1, 10, 300),
                              "monetary": rng.gamma(2, 50, 300)})
        render(seg_plots.plot_rf_heatmap(score_rfm(feats), as_of="2026-06-30"))
        shares = pd.DataFrame({"segment": SEGMENTS, "share_customers": 0.1, "share_revenue": 0.1})
        render(seg_plots.plot_segment_shares(shares, as_of="2026-06-30"))
        clv = pd.DataFrame({"segment": np.repeat(cities[:6], 5), "clv": rng.gamma(2, 100, 30)})
        render(seg_plots.plot_clv_by_segment(clv, horizon=52, currency="CNY"))
        tiers = ["普通会员", "银卡", "金卡", "铂金卡"]
        render(seg_plots.plot_migration_matrix(pd.DataFrame(rng.integers(0, 50, (4, 4)), tiers, tiers)))

        results = pd.DataFrame({
            "experiment_id": ["小程序_首页改版"] * 3, "metric": ["conversion", "转化率", "revenue"],
            "variant": ["control", "新版", "新版"], "is_control": [True, False, False],
            "rel_lift": [np.nan, 0.1, -0.05], "rel_ci_low": [np.nan, 0.02, -0.2], "rel_ci_high": [np.nan, 0.18, 0.1],
            "abs_lift": [np.nan, 0.01, -2.0], "abs_ci_low": [np.nan, 0.002, -8.0], "abs_ci_high": [np.nan, 0.018, 4.0],
            "seq_ci_low": [np.nan, -0.002, -11.0], "seq_ci_high": [np.nan, 0.022, 7.0],
            "verdict": ["control", "better", "inconclusive"]})
        render(plot_forest(results))
        days = pd.date_range("2026-05-11", periods=5)
        cumulative = pd.DataFrame({"experiment_id": "小程序_首页改版", "metric": "转化率", "variant": "新版",
                                   "date": days, "rel_lift": 0.1, "rel_ci_low": -0.1, "rel_ci_high": 0.3,
                                   "seq_rel_ci_low": -0.3, "seq_rel_ci_high": 0.5})
        render(plot_cumulative_lift(cumulative, "小程序_首页改版"))
    assert problems == []


def test_without_any_cjk_font_one_warning_is_raised_and_recorded(monkeypatch, tmp_path):
    from crmlib.status import read_warnings

    monkeypatch.setattr(plotting, "_register_cjk_font", lambda: None)
    monkeypatch.setattr(plotting, "_cjk_warned", False)
    with pytest.warns(plotting.CJKFontMissing, match="Chinese"):
        assert plotting.use_report_style(where=tmp_path, stage="roi") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", plotting.CJKFontMissing)
        plotting.use_report_style()  # once per process: the second call stays quiet
    recorded = read_warnings(tmp_path, "roi")
    assert len(recorded) == 1 and "noto-cjk-sans-otc" in recorded[0]["message"]
