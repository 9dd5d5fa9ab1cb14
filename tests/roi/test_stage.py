import numpy as np
import pandas as pd

from crmlib.engine import Engine
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
        for _ in range(int(rng.integers(0, 6))):
            d = int(rng.integers(0, n_days))
            touches.append((key, None, start + pd.Timedelta(days=d, hours=int(rng.integers(0, 24))),
                            str(rng.choice(CHANNELS)), f"cmp{int(rng.integers(0, 3))}" if rng.random() < 0.7 else None,
                            0.5))
        for _ in range(int(rng.poisson(1.0))):
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


PARAMS = {"run": {"as_of": None}, "roi": {"lookback_days": 30, "mmm": {"bootstrap": 20}}}


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
    roi = stage.roi_stage(eng, {"roi": {"mmm": {"enabled": False}}})
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
    roi = stage.roi_stage(eng, {"roi": {"mmm": {"enabled": False}}})
    assert "no spend table" in roi.attrs["notes"][0]
    assert isinstance(stage.mmm_stage(eng, {"roi": {"mmm": {"enabled": False}}}), stage.MissingInput)


def test_settings_nested_and_flat():
    class E:
        def has_table(self, name):
            return False
    s = stage.roi_settings(E(), {"roi": {"lookback_days": 14, "mmm": {"seed": 3}}, "run": {"as_of": "2026-06-30"}})
    assert s["lookback_days"] == 14 and s["mmm_seed"] == 3 and s["period_end"] == "2026-06-30"
    s = stage.roi_settings(E(), {"roi.lookback_days": 10})
    assert s["lookback_days"] == 10 and s["mmm_bootstrap"] == 200
