"""End-to-end stage on a seeded synthetic run (real Engine): true lifts recovered, broken split blocked."""

import numpy as np
import pandas as pd
import pytest

from crmlib.abtest import stage
from crmlib.abtest.analysis import RESULT_COLUMNS
from crmlib.params import complete_params


@pytest.fixture(scope="module")
def results(synthetic_run):
    engine, params = synthetic_run
    return stage.ab_results(engine, params)


def test_ab_results_table_follows_the_contract(synthetic_run, results):
    engine, _ = synthetic_run
    written = pd.read_parquet(engine.table_path("ab_results"))
    assert list(written.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    # one row per experiment x metric x variant
    assert not written.duplicated(["experiment_id", "metric", "variant"]).any()
    assert len(written) == 3 * 4 * 2
    assert set(written["metric"]) == {"conversion", "revenue", "orders", "revenue_per_session"}
    t = written[~written["is_control"]]
    assert ((t["p_value_sequential"] >= t["p_value"]) | t["p_value"].isna()).all()


def test_true_lift_recovered_and_shipped(synthetic_run, results, synthetic_truth):
    engine, params = synthetic_run
    r = results[(results.experiment_id == "checkout_button") & (results.metric == "conversion")
                & (results.variant == "treatment")].iloc[0]
    assert r["rel_ci_low"] < synthetic_truth['conversion_lift'] < r["rel_ci_high"]
    v = stage.verdict_table(engine, params).set_index("experiment_id")
    assert v.loc["checkout_button", "verdict"] == "ship"
    assert v.loc["checkout_button", "planned_n_reached"]
    assert 0 < v.loc["checkout_button", "p_value_fixed_horizon"] < 0.05
    assert v.loc["checkout_button", "prob_beat_control"] > 0.99
    g = stage.guardrail_table(engine, params)
    assert g.set_index("metric").loc["revenue", "guardrail_status"] == "pass"
    p = stage.power_table(engine, params).set_index("experiment_id").loc["checkout_button"]
    assert p["fraction_of_plan"] == pytest.approx(1.2) and p["power_achieved"] > 0.8


def test_broken_split_is_blocked(synthetic_run, results):
    engine, params = synthetic_run
    v = stage.verdict_table(engine, params).set_index("experiment_id")
    assert v.loc["broken_split", "verdict"] == "blocked: SRM"
    assert (results.loc[results.experiment_id == "broken_split", "verdict"] == "blocked: SRM").all()
    srm = stage.srm_table(engine, params).set_index("experiment_id")
    assert srm.loc["broken_split", "srm_p_value"] < 1e-6
    # the 20/80 holdout design is not an SRM
    assert srm.loc["email_holdout", "srm_p_value"] > 0.001 and srm.loc["email_holdout", "control_variant"] == "holdout"


def test_holdout_incrementality(synthetic_run, results, synthetic_truth):
    engine, params = synthetic_run
    h = stage.holdout_table(engine, params)
    assert set(h["attribution_model"]) == {"last_touch", "linear"}
    row = h.iloc[0]
    assert row["cost"] == pytest.approx(20 * 1000.0)
    # truth: 8% base conversion on average, +50% in the exposed arm of 8,000 units
    t = synthetic_truth
    true_inc = t['holdout_base_rate'] * t['holdout_lift'] * t['holdout_exposed_n']
    assert row["incremental_conversions_low"] < true_inc < row["incremental_conversions_high"]
    conv = results[(results.experiment_id == "email_holdout") & (results.metric == "revenue")
                   & (results.variant == "exposed")].iloc[0]
    assert row["incremental_revenue"] == pytest.approx(conv["abs_lift"] * 8000)
    assert row["incremental_roi"] == pytest.approx((row["incremental_revenue"] - 20000) / 20000)
    assert row["attribution_match"].startswith("channel")


def test_cumulative_lift_and_plots(synthetic_run, results):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    engine, params = synthetic_run
    cum = stage.cumulative_lift(engine, params)
    c = cum[cum.experiment_id == "checkout_button"]
    assert c["date"].is_monotonic_increasing and len(c) == 10
    last = c.iloc[-1]
    r = results[(results.experiment_id == "checkout_button") & (results.metric == "conversion")
                & (results.variant == "treatment")].iloc[0]
    assert last["rel_lift"] == pytest.approx(r["rel_lift"], rel=1e-12)
    assert (c["seq_ci_high"] - c["seq_ci_low"] > c["abs_ci_high"] - c["abs_ci_low"]).all()
    ax = stage.forest_plot(engine, params)
    assert isinstance(ax, Axes) and len(ax.get_yticklabels()) == 12
    ax2 = stage.cumulative_plot(engine, params, "checkout_button")
    assert isinstance(ax2, Axes) and "checkout_button" in ax2.get_title()
    import matplotlib.pyplot as plt

    plt.close("all")


def test_segment_results_are_separate(synthetic_run):
    engine, params = synthetic_run
    seg = engine.con.create_table("ab_test_segments", pd.DataFrame({
        "customer_key": [f"checkout_button_{a}_{i}" for a in ("control", "treatment") for i in range(3000)],
        "segment": "first_half"}), overwrite=True)
    res = stage.segment_results(engine, params, seg)
    conv = res[(res.experiment_id == "checkout_button") & (res.metric == "conversion")]
    assert set(conv["segment"]) == {"first_half", "(none)"}
    assert conv.groupby("segment")["n"].sum().to_dict() == {"(none)": 6000, "first_half": 6000}


def test_no_experiments_table_is_reported_not_raised(tmp_path):
    from crmlib.engine import Engine

    with Engine(tmp_path) as eng:
        res = stage.ab_results(eng, complete_params())
        assert res.empty and list(res.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
        assert stage.verdict_table(eng, complete_params()).empty
        assert stage.holdout_table(eng, complete_params()).empty


def test_winsorized_run_reports_caps(synthetic_run):
    engine, params = synthetic_run
    p = {**params, "ab_tests": {**params["ab_tests"], "winsorize": 0.99}}
    caps = stage.winsorization_table(engine, p).set_index("experiment_id")
    raw = stage.unit_outcome_table(engine, p).to_pandas()
    for exp_id, g in raw.groupby("experiment_id"):
        cap = np.quantile(g["revenue"], 0.99, method="linear")
        assert caps.loc[exp_id, "cap_revenue"] == pytest.approx(cap, rel=1e-12)
        assert caps.loc[exp_id, "n_capped_revenue"] == (g["revenue"] > cap).sum()
    res = stage.analysis(engine, p).results
    rev = res[(res.metric == "revenue") & (res.experiment_id == "checkout_button") & ~res.is_control].iloc[0]
    assert "capped at the pooled 0.99 quantile" in rev["method"]
    assert stage.winsorization_table(engine, params).empty


def _sample_run(root, seed):
    """The project's sample generator (5,000 customers), keyed by its true person ids.

    The run tables are built from the generator's truth files (real orders, person ids), not through
    the ingest stage, so the A/B stage alone is checked against the planted effects.
    """
    import json

    from crmlib.engine import Engine
    from crmlib.sample import generate_sample

    out = root / "data"
    generate_sample(out, customers=5000, seed=seed)
    rec = pd.read_parquet(out / "truth" / "records.parquet")
    key = rec[rec["source"] == "eshop_accounts"].set_index("source_customer_id")["person_id"]
    exps = pd.read_csv(out / "experiments.csv", parse_dates=["assigned_ts"])
    exps["customer_key"] = exps["source_customer_id"].map(key)
    orders = pd.read_parquet(out / "truth" / "orders.parquet")
    orders = orders[orders["is_real_order"] & orders["person_id"].notna()]
    orders = pd.DataFrame({"customer_key": orders["person_id"], "order_ts": orders["true_order_ts"],
                           "amount": orders["true_amount"]})
    events = pd.read_parquet(out / "web_events.parquet")
    events["customer_key"] = events["source_customer_id"].map(key)
    spend = pd.read_csv(out / "marketing_spend.csv", parse_dates=["date"])
    tables = root / "run" / "tables"
    tables.mkdir(parents=True)
    for name, df in {"experiments": exps, "orders": orders, "events": events, "spend": spend}.items():
        df.to_parquet(tables / f"{name}.parquet", index=False)
    truth = json.loads((out / "truth" / "experiments.json").read_text())
    params = complete_params({"run": {"as_of": "2026-06-30"}, "ab_tests": {
        "window_days": truth["window_days"], "alpha": 0.05,
        "experiments": [{"id": e["experiment_id"], "weights": e["design_weights"],
                         **({"holdout": e["holdout"]} if e.get("holdout") else {})} for e in truth["experiments"]]}})
    return Engine(root / "run"), params, {e["experiment_id"]: e for e in truth["experiments"]}


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    engine, params, truth = _sample_run(tmp_path_factory.mktemp("sample"), 42)
    yield engine, params, truth
    engine.close()


def test_sample_generator_truth_recovered(sample_run):
    engine, params, truth = sample_run
    res = stage.ab_results(engine, params)
    verdicts = stage.verdict_table(engine, params).set_index("experiment_id")
    for exp_id, t in truth.items():
        # the deliberately broken split is blocked, and only it
        assert (verdicts.loc[exp_id, "verdict"] == "blocked: SRM") == t["srm_expected"], exp_id
        conv = res[(res.experiment_id == exp_id) & (res.metric == "conversion") & ~res.is_control].iloc[0]
        assert conv["n"] == pytest.approx(t["n_treatment"], abs=2)
    # the null experiment never gets a ship / do-not-ship call from the peeking-safe verdict
    assert verdicts.loc["aa_homepage_banner", "verdict"] == "inconclusive"
    real = res[(res.experiment_id == "checkout_redesign") & (res.metric == "conversion") & ~res.is_control].iloc[0]
    assert real["rel_ci_low"] < truth["checkout_redesign"]["true_rel_lift_conversion"] < real["rel_ci_high"]
    assert real["abs_lift"] > 0
    h = stage.holdout_table(engine, params).iloc[0]
    assert h["campaign_id"] == "EM_520_2026" and h["cost"] >= 0


def test_sample_generator_planted_lifts_inside_always_valid_intervals(tmp_path):
    """Coverage is a rate, so it is checked over five samples (seeds 42, 1-4) x the three experiments with a
    sound split: the planted absolute conversion lift must lie inside the always-valid (sequential)
    interval in at least 13 of 15 (nominal >= 95 %; P(<= 12 of 15) < 4 % even at exactly 95 %), and the
    holdout's true incremental conversions inside the holdout table's interval in at least 4 of 5.
    Measured: 14 of 15 and 4 of 5 - seed 42's holdout lands just outside both (its treatment arm
    converted 2 standard errors above expectation organically, by chance)."""
    covered, total, holdout_covered = 0, 0, 0
    for seed in (42, 1, 2, 3, 4):
        engine, params, truth = _sample_run(tmp_path / str(seed), seed)
        res = stage.ab_results(engine, params)
        for exp_id, t in truth.items():
            if t["srm_expected"]:
                continue
            conv = res[(res.experiment_id == exp_id) & (res.metric == "conversion") & ~res.is_control].iloc[0]
            covered += bool(conv["seq_ci_low"] < t["true_abs_lift_conversion"] < conv["seq_ci_high"])
            total += 1
        h = stage.holdout_table(engine, params).iloc[0]
        true_inc = truth["email_520_holdout"]["true_abs_lift_conversion"] * truth["email_520_holdout"]["n_treatment"]
        holdout_covered += bool(h["incremental_conversions_low"] < true_inc < h["incremental_conversions_high"])
        engine.close()
    assert total == 15 and covered >= 13 and holdout_covered >= 4


def test_the_stage_call_writes_every_table_and_views_only_read(tmp_path, synthetic_factory):
    """Compute once, present many: the stage call writes the tables; a view before it finds nothing written
    (and says so), and no view writes a table."""
    from types import SimpleNamespace

    from crmlib.abtest.stage import TABLES, run_ab_tests
    from crmlib.engine import Engine

    run = tmp_path / "r"
    params = synthetic_factory(run)
    with Engine(run) as eng:
        with pytest.raises(RuntimeError, match="run the A/B stage call"):
            stage.verdict_table(eng, params)
        assert not any(eng.has_table(t) for t in TABLES)   # a view cell writes nothing
        a = run_ab_tests(SimpleNamespace(engine=eng, params=params))
        assert all(eng.has_table(t) for t in TABLES)
        assert len(pd.read_parquet(eng.table_path("ab_results"))) == len(a.results)
        stamps = {t: eng.table_path(t).stat().st_mtime_ns for t in TABLES}
        v = stage.verdict_table(eng, params)
        assert len(v) == 3 and {"next_step", "n_more_per_arm", "days_more"} <= set(v.columns)
        for view in (stage.verdict_view, stage.srm_view, stage.guardrail_view, stage.power_view,
                     stage.holdout_view, stage.method_notes):
            view(eng, params)
        assert stamps == {t: eng.table_path(t).stat().st_mtime_ns for t in TABLES}


def test_one_bad_experiment_does_not_stop_the_others(tmp_path, synthetic_factory):
    """An experiment with every unit in one arm, and one listed in the params without units, are left out
    with their reasons recorded; the others are analysed as before."""
    from crmlib.engine import Engine
    from crmlib.params import complete_params
    from crmlib.status import read_warnings

    run = tmp_path / "r"
    params = synthetic_factory(run)
    exps = pd.read_parquet(run / "tables" / "experiments.parquet")
    one_arm = exps[exps["experiment_id"] == "checkout_button"].assign(experiment_id="one_arm", variant="treatment",
                                                                    is_control=False)
    pd.concat([exps, one_arm]).to_parquet(run / "tables" / "experiments.parquet", index=False)
    params = complete_params({**params, "ab_tests": {**params["ab_tests"], "experiments": [
        *params["ab_tests"]["experiments"], {"id": "not_started", "weights": {"control": 0.5, "treatment": 0.5}}]}})
    with Engine(run) as eng:
        res = stage.ab_results(eng, params)
        assert set(res["experiment_id"]) == {"checkout_button", "broken_split", "email_holdout"}
        assert set(pd.read_parquet(eng.table_path("ab_results"))["experiment_id"]) == set(res["experiment_id"])
        v = stage.verdict_table(eng, params).set_index("experiment_id")
        assert v.loc["checkout_button", "verdict"] == "ship" and v.loc["broken_split", "verdict"] == "blocked: SRM"
        assert v.loc["one_arm", "verdict"] == "not analysed" and "one arm only" in v.loc["one_arm", "reason"]
        assert v.loc["not_started", "verdict"] == "not analysed" and "no units" in v.loc["not_started", "reason"]
        assert set(stage.unavailable_experiments(eng, params)["experiment_id"]) == {"one_arm", "not_started"}
        assert set(stage.srm_table(eng, params)["experiment_id"]) == set(res["experiment_id"])
        assert "one_arm" not in set(stage.cumulative_lift(eng, params)["experiment_id"])
    warnings = {w["step"]: w["message"] for w in read_warnings(run, "ab_tests")}
    assert set(warnings) == {"experiment one_arm", "experiment not_started"}
    assert "('treatment', 12,000 units)" in warnings["experiment one_arm"]  # both arms' 6,000 units
