import numpy as np
import pandas as pd
import pytest

from crmlib.engine import Engine
from crmlib.i18n import _, set_language
from crmlib.params import complete_params
from crmlib.roi import stage
from crmlib.roi.plotting import (
    plot_budget,
    plot_journey_lengths,
    plot_removal_effects,
    plot_response_curves,
    plot_roi_by_model,
    plot_time_to_convert,
    plot_transition_matrix,
)

CHANNELS = ["search", "social", "email", "display"]


def _write_run(tmp_path, with_spend=True, with_touches=True, weeks=60, seed=0):
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-01-06")
    n_days = weeks * 7
    eng = Engine(tmp_path, database=":memory:")
    touches, orders = [], []
    for i in range(600):
        key = f"k{i}"
        for _touch in range(int(rng.integers(0, 6))):
            d = int(rng.integers(0, n_days))
            touches.append((key, None, start + pd.Timedelta(days=d, hours=int(rng.integers(0, 24))),
                            str(rng.choice(CHANNELS)), f"cmp{int(rng.integers(0, 3))}" if rng.random() < 0.7 else None,
                            0.5))
        for _order in range(int(rng.poisson(1.0))):
            d = int(rng.integers(0, n_days))
            orders.append((key, start + pd.Timedelta(days=d, hours=12), float(rng.gamma(2, 50)), f"o{len(orders)}"))
    orders.append(("k0", start + pd.Timedelta(days=3), -20.0, "refund"))
    eng.write_table("orders", pd.DataFrame(orders, columns=["customer_key", "order_ts", "amount", "order_id"]))
    if with_touches:
        eng.write_table("touchpoints", pd.DataFrame(
            touches, columns=["customer_key", "anonymous_id", "touch_ts", "channel", "campaign_id", "cost"]))
    if with_spend:
        days = pd.date_range(start, periods=n_days, freq="D")
        eng.write_table("spend", pd.DataFrame({
            "date": np.repeat(days.date, len(CHANNELS)),
            "channel": np.tile(CHANNELS, n_days),
            "campaign_id": None,
            "cost": rng.uniform(10, 50, n_days * len(CHANNELS))}))
    return eng


PARAMS = complete_params({"run": {"as_of": None}, "roi": {"lookback_days": 30, "mmm": {"bootstrap": 20}}})
NO_MMM = complete_params({"roi": {"mmm": {"enabled": False}}})


def test_full_stage_writes_contract_tables(tmp_path):
    eng = _write_run(tmp_path)
    journeys = stage.journeys_stage(eng, PARAMS)
    assert journeys.summary["touched_conversions"] > 0
    attribution = stage.attribution_stage(eng, PARAMS)
    att = pd.read_parquet(eng.table_path("attribution"))
    assert list(att.columns[:4]) == ["model", "channel", "conversions", "revenue"]
    sums = att.groupby("model")[["conversions", "revenue"]].sum()
    np.testing.assert_allclose(sums["conversions"], journeys.paths["conversions"].sum())
    np.testing.assert_allclose(sums["revenue"], journeys.paths["value"].sum())
    roi = stage.roi_stage(eng, PARAMS)
    written = pd.read_parquet(eng.table_path("roi"))
    for col in ["model", "channel", "cost", "revenue", "roi", "roas"]:
        assert col in written
    ch = written[written["level"] == "channel"]
    np.testing.assert_allclose(ch["roi"], (ch["revenue"] - ch["cost"]) / ch["cost"])
    assert (written["level"] == "campaign").any()
    dis = stage.disagreement_stage(eng, PARAMS)
    assert "share_spread" in dis
    model = stage.mmm_stage(eng, PARAMS)
    mmm = pd.read_parquet(eng.table_path("mmm"))
    assert list(mmm.columns[:7]) == ["channel", "spend", "roas", "roas_low", "roas_high", "mroas", "identified"]
    assert mmm.loc[~mmm["identified"], "roas"].isna().all()
    # the report's table gives an unidentified channel no point ROAS, and nothing to read one back from
    shown = stage.mmm_table(eng, PARAMS)
    assert not {"roas_estimate", "contribution"} & set(shown.columns)
    unidentified = shown[~shown["verdict"].eq("identified")]
    assert unidentified["roas"].isna().all() and unidentified["mroas"].isna().all()
    assert unidentified["verdict"].str.match(r"not (identified by this data|modelled)").all()
    budget = stage.budget_stage(eng, PARAMS)
    t = budget.table
    assert (t["proposed"] <= t["upper"] + 1e-9).all() and (t["proposed"] >= t["lower"] - 1e-9).all()
    curves = stage.response_curves_stage(eng, PARAMS)
    # every figure draws without error and returns its Axes
    for ax in [
        plot_roi_by_model(ch),
        plot_removal_effects(attribution.markov.removal_effects_),
        plot_transition_matrix(attribution.markov.transition_matrix_),
        plot_response_curves(curves, identified=model.summary_.set_index("channel")["identified"]),
        plot_journey_lengths(journeys.lengths),
        plot_time_to_convert(journeys.time_to_convert),
        plot_budget(t),
    ]:
        assert ax.has_data()


def test_ltv_cac_with_clv_table(tmp_path):
    eng = _write_run(tmp_path, seed=2)
    keys = [f"k{i}" for i in range(600)]
    eng.write_table("clv", pd.DataFrame({"customer_key": keys, "clv": np.linspace(10, 600, 600)}))
    roi = stage.roi_stage(eng, NO_MMM)
    ch = roi[(roi["level"] == "channel") & (roi["new_customers"] > 0)]
    assert {"ltv", "ltv_cac"} <= set(roi.columns)
    np.testing.assert_allclose(ch["ltv_cac"], ch["ltv"] / ch["cac"])
    assert (ch["ltv"].between(10, 600)).all()


def test_missing_inputs_are_reported(tmp_path):
    eng = _write_run(tmp_path, with_spend=False, with_touches=False)
    for fn in [stage.journeys_stage, stage.attribution_stage, stage.roi_stage, stage.mmm_stage, stage.budget_stage]:
        out = fn(eng, PARAMS)
        assert isinstance(out, stage.MissingInput)
        assert "skipped" in repr(out)
    assert not eng.has_table("attribution") and not eng.has_table("mmm")


def test_roi_without_spend_uses_touch_cost(tmp_path):
    eng = _write_run(tmp_path, with_spend=False, seed=1)
    roi = stage.roi_stage(eng, NO_MMM)
    assert "no spend table" in roi.attrs["notes"][0]
    assert isinstance(stage.mmm_stage(eng, NO_MMM), stage.MissingInput)


def test_settings_read_the_validated_params(tmp_path):
    eng = Engine(tmp_path / "run")
    s = stage.roi_settings(eng, complete_params({"roi": {"lookback_days": 14, "mmm": {"seed": 3}},
                                                 "run": {"as_of": "2026-06-30"}}))
    assert s["lookback_days"] == 14 and s["mmm_seed"] == 3 and s["period_end"] == "2026-06-30"
    assert s["mmm_bootstrap"] == 200  # the schema's default
    # no run.as_of and no orders: no period end to take from the latest order
    assert stage.roi_settings(eng, complete_params())["period_end"] is None
    # no run.as_of: the run's analysis date, i.e. the latest order's date
    eng.write_table("orders", pd.DataFrame({"order_ts": pd.to_datetime(["2026-05-01 08:00", "2026-05-03 23:30"])}))
    assert stage.roi_settings(eng, complete_params())["period_end"] == "2026-05-03"
    eng.close()


# -- steps the data cannot support: the reason is recorded, the other steps go on -------------------------
def _one_channel_run(tmp_path, touch_day_offset=-2):
    """Eight customers, one order each, touched by email only (``touch_day_offset`` days from the order)."""
    eng = Engine(tmp_path, database=":memory:")
    keys = [f"k{i}" for i in range(8)]
    order_ts = pd.Timestamp("2025-03-03 12:00") + pd.to_timedelta(np.arange(8) * 3, unit="D")
    eng.write_table("orders", pd.DataFrame({"customer_key": keys, "order_ts": order_ts, "amount": 50.0,
                                            "order_id": [f"o{i}" for i in range(8)]}))
    eng.write_table("touchpoints", pd.DataFrame({
        "customer_key": keys, "anonymous_id": None, "touch_ts": order_ts + pd.Timedelta(days=touch_day_offset),
        "channel": "email", "campaign_id": None, "cost": 1.0}))
    return eng


def test_one_channel_skips_markov_and_shapley_and_credits_the_rest(tmp_path):
    from crmlib.status import Unavailable, read_warnings

    eng = _one_channel_run(tmp_path)
    result = stage.attribution_stage(eng, NO_MMM)
    for model in (result.markov, result.shapley):
        assert isinstance(model, Unavailable) and "at least two channels; this data has 1" in model.reason
    written = pd.read_parquet(eng.table_path("attribution"))
    assert set(written["model"]) == {"first_touch", "last_touch", "linear", "time_decay", "position_based"}
    assert written.groupby("model")["conversions"].sum().eq(8).all() and set(written["channel"]) == {"email"}
    assert [w["step"] for w in read_warnings(tmp_path, "roi")] == ["Markov attribution", "Shapley attribution"]
    assert isinstance(stage.markov_charts(eng, NO_MMM), Unavailable)
    assert stage.roi_stage(eng, NO_MMM)["model"].nunique() == 5


def test_no_converting_journey_is_reported(tmp_path):
    from crmlib.status import Unavailable, read_warnings

    eng = _one_channel_run(tmp_path, touch_day_offset=2)  # every touch comes after its order
    for fn in (stage.attribution_stage, stage.roi_stage, stage.disagreement_stage):
        out = fn(eng, NO_MMM)
        assert isinstance(out, Unavailable) and "none of the orders in the period has one" in out.reason
    assert not eng.has_table("attribution") and not eng.has_table("roi")
    assert [w["step"] for w in read_warnings(tmp_path, "roi")] == ["attribution"]


def test_mmm_on_too_few_weeks_and_the_budget_that_needs_it(tmp_path):
    from crmlib.status import Unavailable, read_warnings

    eng = _write_run(tmp_path, weeks=12)
    eng.write_table("mmm", pd.DataFrame({"channel": ["stale"]}))  # left by an earlier run's copy
    model = stage.mmm_stage(eng, PARAMS)
    assert isinstance(model, Unavailable) and not isinstance(model, stage.MissingInput)
    assert "at least 26 complete weeks" in model.reason and "this data has" in model.reason
    assert not eng.has_table("mmm")
    budget = stage.budget_stage(eng, PARAMS)
    assert isinstance(budget, Unavailable) and model.reason in budget.reason and not eng.has_table("roi_budget")
    assert isinstance(stage.response_curves_chart(eng, PARAMS), Unavailable)
    assert {w["step"] for w in read_warnings(tmp_path, "roi")} == {"media-mix model", "budget reallocation"}
    # attribution does not depend on the MMM
    assert not isinstance(stage.roi_stage(eng, PARAMS), Unavailable)


def test_missing_touchpoints_are_recorded_and_mmm_still_runs(tmp_path):
    from crmlib.status import read_warnings

    eng = _write_run(tmp_path, with_touches=False)
    assert isinstance(stage.roi_stage(eng, PARAMS), stage.MissingInput)
    assert read_warnings(tmp_path, "roi")[0]["step"] == "journeys and attribution"
    assert stage.mmm_stage(eng, PARAMS).n_weeks_ > 26


def test_clv_table_without_clv_values_gives_no_ltv(tmp_path):
    eng = _write_run(tmp_path, seed=2)
    keys = [f"k{i}" for i in range(600)]
    # the segmentation stage's table when only the purchase model could be fitted
    eng.write_table("clv", pd.DataFrame({"customer_key": keys, "p_alive": 0.5, "clv": np.nan}))
    roi = stage.roi_stage(eng, NO_MMM)
    assert "ltv" not in roi.columns and "ltv_cac" not in roi.columns


def test_run_roi_writes_every_table_once_and_the_views_only_read(tmp_path):
    """Compute once, present many: the stage call writes the tables; the report views change none of them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eng = _write_run(tmp_path)
    for view in (stage.roi_view, stage.mmm_view, stage.budget_view):  # before the stage call: nothing to read
        assert isinstance(view(eng, PARAMS), stage.Unavailable)
    assert not any(eng.has_table(t) or (eng.tables_dir / f"{t}.json").exists() for t in stage.TABLES)
    stage.run_roi(eng, PARAMS)
    written = {p.name: p.stat().st_mtime_ns for p in eng.tables_dir.iterdir()}
    assert {"roi.parquet", "attribution.parquet", "mmm.parquet", "roi_response_curves.parquet", "roi_budget.parquet",
            "roi_disagreement.parquet", "roi_summary.json", "roi_budget_summary.json", "roi_journeys.json"} <= set(written)
    summary = eng.read_json("roi_summary")
    ref = pd.read_parquet(eng.table_path("roi")).query("level == 'channel' and model == 'linear'")
    assert summary["blended_roas"] == ref["revenue"].sum() / ref["cost"].sum()
    for view in (stage.key_findings, stage.journey_summary, stage.journey_charts, stage.roi_chart, stage.roi_view,
                 stage.campaign_roi, stage.disagreement_view, stage.markov_charts, stage.mmm_view,
                 stage.response_curves_chart, stage.budget_view, stage.budget_caveats, stage.method_notes):
        assert not isinstance(view(eng, PARAMS), stage.Unavailable), view.__name__
    plt.close("all")
    assert {p.name: p.stat().st_mtime_ns for p in eng.tables_dir.iterdir()} == written


# -- the page in the run's language: tables stay English, what the page shows is translated ------------------
@pytest.fixture
def chinese():
    """Run the test with the report language zh-CN (as ``open_run`` sets it for a zh-CN run)."""
    set_language("zh-CN")
    try:
        yield
    finally:
        set_language("en")


def test_recorded_text_reads_stored_english_back_in_the_run_language(chinese):
    from crmlib.roi.messages import NOT_IDENTIFIED, NOTES, recorded_text
    from crmlib.roi.mmm import REASONS

    stored = NOT_IDENTIFIED.format(reason=REASONS["wide"].format(width="0.5"))   # as mmm_table writes it
    assert recorded_text(stored) == _(NOT_IDENTIFIED).format(reason=_(REASONS["wide"]).format(width="0.5"))
    assert recorded_text(stored) != stored and "interval" not in recorded_text(stored)
    # values that are data (channel names) come back as they are, even one spelled like a catalog message
    note = NOTES["touch_cost"].format(channels="linear, 微信")
    assert recorded_text(note) == _(NOTES["touch_cost"]).format(channels="linear, 微信") != note
    assert recorded_text("a text the stage never wrote") == "a text the stage never wrote"
    set_language("en")
    assert recorded_text(stored) == stored


def test_reasons_are_written_in_the_run_language_and_steps_stay_codes(tmp_path, chinese):
    from crmlib.status import Unavailable, read_warnings

    eng = _one_channel_run(tmp_path)
    result = stage.attribution_stage(eng, NO_MMM)
    assert isinstance(result.markov, Unavailable)
    english = ("{name} attribution compares {label}s with each other, so it needs converting journeys touched by at "
               "least two {label}s; this data has {n}, which the rule-based models credit with every conversion.")
    assert result.markov.reason == _(english).format(name="Markov", label=_("channel"), n=1)
    assert result.markov.reason != english.format(name="Markov", label="channel", n=1)
    # the warning keeps the step's code (other code looks steps up by it); its message is the page's language
    warnings = read_warnings(tmp_path, "roi")
    assert [w["step"] for w in warnings] == ["Markov attribution", "Shapley attribution"]
    assert warnings[0]["message"] == result.markov.reason
    skipped = stage.mmm_stage(eng, NO_MMM)._repr_markdown_()
    assert _("{step}: skipped").format(step=_("media-mix model")) in skipped and "skipped" not in skipped


def test_views_show_the_run_language_and_the_tables_stay_english(tmp_path, chinese):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from crmlib.roi.mmm import REASONS

    eng = _write_run(tmp_path)
    stage.run_roi(eng, PARAMS)
    mmm = pd.read_parquet(eng.table_path("mmm"))
    english_reasons = {r for r in mmm["reason"] if r in REASONS.values() or r.startswith("not modelled")}
    assert len(english_reasons) > 0 and english_reasons <= set(mmm["reason"])   # the run page reads these
    shown = stage.mmm_view(eng, PARAMS).shown
    assert list(shown.columns) == [_("channel"), _("spend"), _("incremental ROAS (interval)"), _("why")]
    assert shown.columns[0] != "channel"
    for why in shown[_("why")]:
        assert not {"interval", "identified", "modelled", "spend"} & set(why.replace(":", " ").split()), why
    roi = stage.roi_view(eng, PARAMS).shown
    assert _("credited revenue ({model})").format(model=_("linear")) in roi.columns
    notes = stage.method_notes(eng, PARAMS).data
    for code in ("first_touch", "time_decay", "converting journey", "lookback days", "no identified channel"):
        assert code not in notes, code
    assert f"**{_('linear')}**" in notes
    plt.close("all")


def test_markov_ticks_translate_the_chain_states_not_the_channels(chinese):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from crmlib.roi.markov import CONVERSION, START

    matrix = pd.DataFrame([[0.5, 0.5], [0.2, 0.8]], index=[START, "linear"], columns=["linear", CONVERSION])
    ax = plot_transition_matrix(matrix)
    assert [t.get_text() for t in ax.get_yticklabels()] == [_(START), "linear"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["linear", _(CONVERSION)]
    assert _(START) != START and ax.get_xlabel() == _("to") != "to"
    plt.close("all")
