"""Verdict logic, families and the A/A default-verdict check on analyze()."""

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import test_proportions_2indep as sm_wald

from crmlib.abtest.analysis import RESULT_COLUMNS, analyze, cumulative_comparisons, resolve_controls
from crmlib.abtest.sequential import confidence_sequence
from crmlib.abtest.stats import proportion_test
from crmlib.params import complete_params

NAN = np.nan


def _ab(partial: dict) -> dict:
    """An ``ab_tests`` section completed through the params schema (as a run's params would be)."""
    return complete_params({"ab_tests": partial})["ab_tests"]


def _rows(exp, variant, metric, n, sy, sy2=None, sx=0.0, sx2=0.0, sxy=0.0, is_control=None, mtype=None):
    return {"experiment_id": exp, "variant": variant, "metric": metric, "n": n, "is_control": is_control,
            "sum_y": sy, "sum_y2": sy if sy2 is None else sy2, "sum_x": sx, "sum_x2": sx2, "sum_xy": sxy,
            "sum_den": NAN, "sum_den2": NAN, "sum_yden": NAN,
            "metric_type": mtype or ("binary" if metric == "conversion" else "mean")}


def _mean_rows(exp, variant, metric, n, mean, sd, **kw):
    return _rows(exp, variant, metric, n, n * mean, (n - 1) * sd**2 + n * mean**2, **kw)


def test_contract_columns_srm_and_ship():
    stats = pd.DataFrame([
        _rows("win", "control", "conversion", 10000, 1000), _rows("win", "treatment", "conversion", 10000, 1250),
        _mean_rows("win", "control", "revenue", 10000, 50.0, 30.0),
        _mean_rows("win", "treatment", "revenue", 10000, 51.0, 30.0),
        _rows("srm", "control", "conversion", 10000, 1000), _rows("srm", "treatment", "conversion", 10600, 1300),
    ])
    ab = {"experiments": [{"id": "win", "guardrails": [{"metric": "revenue", "margin": 0.05}],
                           "planned_n_per_arm": 20000}]}
    a = analyze(stats, _ab(ab))
    assert list(a.results.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    v = a.verdicts.set_index("experiment_id")
    assert v.loc["srm", "verdict"] == "blocked: SRM" and "sample-ratio check p < 0.001" in v.loc["srm", "reason"]
    assert (a.results.loc[a.results.experiment_id == "srm", "verdict"] == "blocked: SRM").all()
    assert v.loc["win", "verdict"] == "ship" and v.loc["win", "variant"] == "treatment"
    # fixed-horizon p hidden until planned n is reached
    assert np.isnan(v.loc["win", "p_value_fixed_horizon"]) and not v.loc["win", "planned_n_reached"]
    row = a.results[(a.results.experiment_id == "win") & (a.results.metric == "conversion")
                    & (a.results.variant == "treatment")].iloc[0]
    r = proportion_test(1000, 10000, 1250, 10000)
    assert row["p_value"] == pytest.approx(float(r.pvalue), rel=1e-12)    # no pre-period -> no CUPED
    z_row = analyze(stats, _ab(ab), test="z").results.loc[row.name]
    assert z_row["p_value"] == pytest.approx(sm_wald(1250, 10000, 1000, 10000, method="wald").pvalue, rel=1e-9)
    _, _, pseq = confidence_sequence(r.abs_lift, r.se, 20000)
    assert row["p_value_sequential"] == pytest.approx(float(pseq), rel=1e-12)
    assert row["srm_p_value"] == pytest.approx(1.0)
    g = a.guardrails.iloc[0]
    assert g["metric"] == "revenue" and g["guardrail_status"] == "pass"
    pw = a.power.set_index("experiment_id").loc["win"]
    assert pw["fraction_of_plan"] == pytest.approx(0.5) and 0 < pw["power_achieved"] < 0.8


def test_guardrail_failure_blocks_shipping_and_inconclusive_guardrail_holds_it():
    stats = pd.DataFrame([
        _rows("e", "control", "conversion", 20000, 2000), _rows("e", "treatment", "conversion", 20000, 2400),
        _mean_rows("e", "control", "revenue", 20000, 50.0, 60.0),
        _mean_rows("e", "treatment", "revenue", 20000, 44.0, 60.0),        # much worse
        _mean_rows("e", "control", "orders", 20000, 1.0, 3.0),
        _mean_rows("e", "treatment", "orders", 20000, 0.99, 3.0),          # noisy: not shown non-inferior
    ])
    ab = {"experiments": [{"id": "e", "guardrails": [{"metric": "revenue", "margin": 0.02}]}]}
    v = analyze(stats, _ab(ab)).verdicts.iloc[0]
    assert v["verdict"] == "do not ship" and "revenue" in v["reason"]
    ab = {"experiments": [{"id": "e", "guardrails": [{"metric": "orders", "margin": 0.01}]}]}
    v = analyze(stats, _ab(ab)).verdicts.iloc[0]
    assert v["verdict"] == "inconclusive" and "not yet shown unharmed" in v["reason"]


def test_families_holm_and_bh_within_experiment():
    rows = [_rows("e", "control", "conversion", 5000, 500)]
    rows += [_rows("e", v, "conversion", 5000, x) for v, x in (("b", 540), ("c", 580), ("d", 500))]
    for m, mean_t in (("revenue", 52.0), ("orders", 1.1)):
        rows += [_mean_rows("e", "control", m, 5000, 50.0 if m == "revenue" else 1.0, 20.0),
                 _mean_rows("e", "b", m, 5000, mean_t, 20.0), _mean_rows("e", "c", m, 5000, mean_t, 20.0),
                 _mean_rows("e", "d", m, 5000, mean_t, 20.0)]
    stats = pd.DataFrame(rows)
    for corr, sm_name in (("holm", "holm"), ("bh", "fdr_bh")):
        ab = {"correction": corr, "experiments": [{"id": "e", "secondary_metrics": ["revenue", "orders"]}]}
        res = analyze(stats, _ab(ab)).results
        t = res[~res["is_control"]]
        prim = t[t.metric == "conversion"]
        assert np.allclose(prim["p_adjusted"], multipletests(prim["p_value"], method=sm_name)[1])
        sec = t[t.metric.isin(["revenue", "orders"])]
        assert len(sec) == 6
        assert np.allclose(sec["p_adjusted"], multipletests(sec["p_value"], method=sm_name)[1])
        assert np.allclose(sec["p_sequential_adjusted"],
                           multipletests(sec["p_value_sequential"], method=sm_name)[1])
        assert set(t["role"]) == {"primary", "secondary"}


def test_control_resolution_and_unknown_variant():
    s = pd.DataFrame([_rows("x", "A", "conversion", 100, 10, is_control=None),
                      _rows("x", "B", "conversion", 100, 12, is_control=None),
                      _rows("y", "holdout", "conversion", 100, 10), _rows("y", "exposed", "conversion", 400, 60),
                      _rows("z", "B", "conversion", 100, 10, is_control=True),
                      _rows("z", "A", "conversion", 100, 10, is_control=False)])
    ctl = resolve_controls(s, _ab({"experiments": [{"id": "x", "weights": {"B": 0.5, "A": 0.5}}]}))
    assert ctl["x"] == ("B", "first variant in params weights")
    assert ctl["y"][0] == "holdout" and ctl["z"] == ("B", "is_control flag")
    a = analyze(s, _ab({"experiments": [{"id": "y", "weights": {"holdout": 0.2, "exposed": 0.8}},
                                        {"id": "z", "weights": {"B": 0.5, "C": 0.5}}]}))
    v = a.verdicts.set_index("experiment_id")
    assert v.loc["y", "srm_p_value"] == pytest.approx(1.0)
    assert v.loc["z", "verdict"] == "blocked: SRM" and "not in the designed weights" in v.loc["z", "reason"]


def test_aa_default_verdict_with_daily_peeks_stays_below_alpha(aa_counts):
    """The stage's default verdict (CUPED when possible, Holm, always-valid p) re-run daily for 14 days."""
    xc, xt, n = aa_counts
    e = xc.shape[0]
    ids = np.array([f"aa{i:04d}" for i in range(e)])
    ever_called = np.zeros(e, bool)
    for day in range(xc.shape[1]):
        c = pd.DataFrame({"experiment_id": ids, "variant": "control", "metric": "conversion", "n": n[:, day],
                          "is_control": True, "sum_y": xc[:, day], "sum_y2": xc[:, day]})
        t = c.assign(variant="treatment", is_control=False, sum_y=xt[:, day], sum_y2=xt[:, day])
        st = pd.concat([c, t], ignore_index=True).assign(
            sum_x=0.0, sum_x2=0.0, sum_xy=0.0, sum_den=NAN, sum_den2=NAN, sum_yden=NAN, metric_type="binary")
        v = analyze(st, _ab({"alpha": 0.05})).verdicts
        ever_called |= v.set_index("experiment_id").loc[ids, "verdict"].isin(["ship", "do not ship"]).to_numpy()
    fpr = ever_called.mean()
    print(f"A/A default sequential verdict FPR with 14 daily looks: {fpr:.4f}")
    assert fpr <= 0.05


def test_cumulative_comparisons_last_day_equals_full_analysis():
    days = pd.date_range("2026-01-01", periods=3)
    rows = []
    for i, d in enumerate(days):
        for v, rate in (("control", 0.10), ("treatment", 0.12)):
            n = 1000 * (i + 1)
            r = _rows("e", v, "conversion", n, round(n * rate))
            r["date"] = d
            rows.append(r)
    daily = pd.DataFrame(rows)
    cum = cumulative_comparisons(daily, _ab({}))
    assert len(cum) == 3 and (cum["seq_ci_low"] < cum["abs_ci_low"]).all()
    full = analyze(daily[daily.date == days[-1]].drop(columns="date"), _ab({})).results
    full = full[~full.is_control].iloc[0]
    assert cum.iloc[-1]["p_value"] == pytest.approx(full["p_value"], rel=1e-12)
    assert cum.iloc[-1]["p_value_sequential"] == pytest.approx(full["p_value_sequential"], rel=1e-12)


def test_relative_ci_choice_and_disagreement_flag():
    # a drop near the boundary: delta CI excludes 0 while the absolute p is above 0.05
    stats = pd.DataFrame([_rows("e", "control", "conversion", 1390, 183),
                          _rows("e", "treatment", "conversion", 1391, 151)])
    a = analyze(stats, _ab({})).results
    t = a[~a.is_control].iloc[0]
    assert t["p_value"] > 0.05 and t["rel_ci_high"] < 0 and t["rel_ci_disagrees_with_p"]
    f = analyze(stats, _ab({}), relative_ci="fieller").results
    tf = f[~f.is_control].iloc[0]
    assert tf["rel_ci_low"] == tf["fieller_low"] and tf["rel_ci_high"] > 0 and not tf["rel_ci_disagrees_with_p"]
    assert "Fieller" in tf["method"]
    with pytest.raises(ValueError):
        analyze(stats, _ab({}), relative_ci="naive")


def test_srm_in_the_analysis_is_the_tested_srm_test():
    """One chi-square: the stage's SRM table is :func:`crmlib.abtest.srm.srm_test` on the observed arms."""
    from scipy.stats import chisquare

    from crmlib.abtest.srm import srm_test

    stats = pd.DataFrame([
        _rows("three", "a", "conversion", 3300, 300), _rows("three", "b", "conversion", 3400, 310),
        _rows("three", "c", "conversion", 3150, 290),
        _rows("design", "control", "conversion", 2080, 200), _rows("design", "treatment", "conversion", 7920, 800),
    ])
    srm = analyze(stats, _ab({"experiments": [{"id": "design", "weights": {"control": 0.2, "treatment": 0.8}}]})).srm
    srm = srm.set_index("experiment_id")
    ref = srm_test([2080, 7920], [0.2, 0.8])
    assert srm.loc["design", "srm_p_value"] == pytest.approx(float(ref.pvalue), rel=1e-12)
    assert srm.loc["design", "srm_chi2"] == pytest.approx(float(ref.statistic), rel=1e-12)
    assert srm.loc["design", "max_share_deviation"] == pytest.approx(float(ref.max_share_deviation), rel=1e-12)
    # and both agree with scipy's goodness-of-fit test
    assert srm.loc["three", "srm_p_value"] == pytest.approx(chisquare([3300, 3400, 3150]).pvalue, rel=1e-9)


def test_an_experiment_that_cannot_be_compared_says_why():
    from crmlib.abtest.analysis import require_comparable
    from crmlib.status import CannotCompute

    stats = pd.DataFrame([
        _rows("ok", "control", "conversion", 100, 10), _rows("ok", "treatment", "conversion", 100, 12),
        _rows("solo", "treatment", "conversion", 40, 4), _rows("solo", "treatment", "revenue", 40, 400.0),
        _rows("empty", "control", "conversion", 0, 0), _rows("empty", "treatment", "conversion", 0, 0),
    ])
    require_comparable(stats, "ok", weights={"control": 0.5, "treatment": 0.5})
    # the designed control arm has no units: treatment and a stray arm are not a comparison with a control
    with pytest.raises(CannotCompute, match=r"'ok' has no units in its control arm 'holdout' .*'control': 100"):
        require_comparable(stats, "ok", weights={"exposed": 0.8, "holdout": 0.2})
    with pytest.raises(CannotCompute, match=r"'solo' has units in one arm only \('treatment', 40 units\)"):
        require_comparable(stats, "solo")
    for experiment_id in ("empty", "not_in_the_log"):
        with pytest.raises(CannotCompute, match=rf"'{experiment_id}' has no units with a complete 14-day outcome "
                                                r"window by 2026-06-30"):
            require_comparable(stats, experiment_id, window_days=14, as_of="2026-06-30")
