"""Two-sample tests from sufficient statistics vs scipy/statsmodels/gbstats reference values."""

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint as sm_proportion_confint,
    test_proportions_2indep as sm_test_proportions_2indep,
)
from statsmodels.stats.weightstats import ttest_ind

from crmlib.abtest.stats import (
    TwoSampleResult,
    fieller_interval,
    non_inferiority_test,
    proportion_confint,
    proportion_test,
    relative_ci_delta,
    welch_test,
)

Z = sps.norm.isf(0.025)


def test_two_proportions_z_matches_statsmodels_wald(ref):
    out = ref["conv_basic"]["outputs"]
    r = proportion_test(1000, 10000, 1100, 10000, test="z")
    sm = sm_test_proportions_2indep(1100, 10000, 1000, 10000, method="wald", compare="diff")
    assert r.pvalue == pytest.approx(sm.pvalue, rel=1e-10)
    assert r.statistic == pytest.approx(sm.statistic, rel=1e-10)
    assert r.pvalue == pytest.approx(out["statsmodels.test_proportions_2indep(method=wald)"]["p_value"], rel=1e-9)
    ci = confint_proportions_2indep(1100, 10000, 1000, 10000, method="wald", compare="diff")
    np.testing.assert_allclose(r.ci, ci, rtol=1e-9)
    # the pooled z test is a different convention: close, not equal
    assert r.pvalue != pytest.approx(out["statsmodels.proportions_ztest(pooled)"]["p_value"], rel=1e-6)
    assert r.pvalue == pytest.approx(out["statsmodels.proportions_ztest(pooled)"]["p_value"], rel=1e-2)


def test_two_proportions_welch_default_matches_gbstats(ref):
    out = ref["conv_basic"]["outputs"]
    r = proportion_test(1000, 10000, 1100, 10000)
    gb = out["gbstats.TwoSidedTTest(absolute)"]
    assert r.pvalue == pytest.approx(gb["p_value"], rel=1e-9)
    assert r.df == pytest.approx(gb["welch_dof"], rel=1e-9)
    np.testing.assert_allclose(r.ci, gb["ci"], rtol=1e-9)
    np.testing.assert_allclose(r.rel_ci, out["gbstats.TwoSidedTTest(relative)"]["ci"], rtol=1e-9)
    assert "Welch" in r.method and "delta" in r.method


def test_relative_delta_ci_z_reference(quick):
    r = proportion_test(1000, 10000, 1100, 10000, test="z")
    np.testing.assert_allclose(r.rel_ci, quick["conv_basic.rel_ci_delta_z"], rtol=1e-9)
    np.testing.assert_allclose(r.ci, quick["conv_basic.abs_ci_wald"], rtol=1e-9)
    # the naive "absolute CI / control mean" interval is strictly narrower: we do not produce it
    naive = np.asarray(r.ci) / 0.1
    assert r.rel_ci_low < naive[0] and r.rel_ci_high > naive[1]


def test_welch_from_summary_matches_scipy(ref, quick):
    c, t = ref["welch_summary"]["inputs"]["control"], ref["welch_summary"]["inputs"]["treatment"]
    ss = ref["welch_summary"]["inputs"]["sufficient_statistics"]
    r = welch_test(ss["control"]["n"], ss["control"]["sum"], ss["control"]["sum_squares"],
                   ss["treatment"]["n"], ss["treatment"]["sum"], ss["treatment"]["sum_squares"])
    sp = sps.ttest_ind_from_stats(t["mean"], t["sd"], t["n"], c["mean"], c["sd"], c["n"], equal_var=False)
    assert r.statistic == pytest.approx(sp.statistic, rel=1e-10)
    assert r.pvalue == pytest.approx(sp.pvalue, rel=1e-10)
    assert r.pvalue == pytest.approx(quick["welch_summary.p"], rel=1e-9)
    np.testing.assert_allclose(r.ci, quick["welch_summary.ci_t"], rtol=1e-9)
    assert r.df == pytest.approx(quick["welch_summary.dof"], rel=1e-6)
    f = ref["welch_summary"]["outputs"]["formula.welch"]
    rz = welch_test(ss["control"]["n"], ss["control"]["sum"], ss["control"]["sum_squares"],
                    ss["treatment"]["n"], ss["treatment"]["sum"], ss["treatment"]["sum_squares"], test="z")
    np.testing.assert_allclose(rz.ci, f["ci_absolute_z"], rtol=1e-9)
    np.testing.assert_allclose(rz.rel_ci, f["ci_relative_delta_z"], rtol=1e-9)
    np.testing.assert_allclose([rz.fieller_low, rz.fieller_high], f["ci_relative_fieller_z"], rtol=1e-9)


def test_row_level_equals_sufficient_statistics_path(ref):
    inp = ref["welch_raw"]["inputs"]
    c, t = np.array(inp["control"]), np.array(inp["treatment"])
    r = welch_test(c.size, c.sum(), (c**2).sum(), t.size, t.sum(), (t**2).sum())
    sp = sps.ttest_ind(t, c, equal_var=False)
    assert r.pvalue == pytest.approx(sp.pvalue, rel=1e-10)
    tstat, p, dof = ttest_ind(t, c, usevar="unequal")
    assert r.df == pytest.approx(dof, rel=1e-10)
    np.testing.assert_allclose(r.ci, sp.confidence_interval(0.95), rtol=1e-9)


def test_small_sample_conversion_matches_gbstats(ref):
    out = ref["small_sample_conv"]["outputs"]
    r = proportion_test(20, 200, 35, 210)
    gb = out["gbstats.TwoSidedTTest(absolute)"]
    assert r.pvalue == pytest.approx(gb["p_value"], rel=1e-9)
    np.testing.assert_allclose(r.ci, gb["ci"], rtol=1e-9)
    assert proportion_test(20, 200, 35, 210, test="z").pvalue == pytest.approx(
        out["statsmodels.test_proportions_2indep(wald)"]["p_value"], rel=1e-9)


def test_p_value_and_ci_agree_at_the_boundary():
    # many comparisons around the 5% boundary: CI excludes 0 exactly when p < alpha
    rng = np.random.default_rng(3)
    n = np.full(5000, 4000.0)
    xc = rng.binomial(4000, 0.1, 5000).astype(float)
    xt = xc + rng.integers(-60, 60, 5000)
    for test in ("welch", "z"):
        r = proportion_test(xc, n, xt, n, test=test)
        excludes = (r.abs_ci_low > 0) | (r.abs_ci_high < 0)
        assert np.array_equal(excludes, r.pvalue < 0.05)
        assert 50 < excludes.sum() < 4950
        # Fieller's interval contains 0 exactly when the absolute test does not reject
        fexcl = (r.fieller_low > 0) | (r.fieller_high < 0)
        assert np.array_equal(fexcl, r.pvalue < 0.05)


def test_relative_lift_methods_reference(ref):
    out = ref["relative_lift_methods"]["outputs"]
    for case in out.values():
        i = case["inputs"]
        rel, se, lo, hi = relative_ci_delta(i["mean_c"], i["var_of_mean_c"], i["mean_t"], i["var_of_mean_t"], Z)
        np.testing.assert_allclose([lo, hi], case["delta_method_ci"], rtol=1e-9)
        flo, fhi, unb = fieller_interval(i["mean_c"], i["var_of_mean_c"], i["mean_t"], i["var_of_mean_t"], Z)
        assert not unb
        np.testing.assert_allclose([flo, fhi], case["fieller_ci"], rtol=1e-9)


def test_fieller_flags_noisy_control():
    # control mean 0.5 with SE 0.3: not significantly different from 0 -> no bounded interval
    lo, hi, unb = fieller_interval([0.5, 10.0], [0.09, 0.09], [0.7, 11.0], [0.09, 0.09], Z)
    assert unb.tolist() == [True, False]
    assert np.isnan(lo[0]) and np.isfinite(lo[1])
    r = welch_test(20, 10.0, 60.0, 20, 14.0, 80.0)          # noisy small control
    assert r.fieller_unbounded == (r.mean_control**2 <= sps.t.isf(0.025, r.df) ** 2 * r.var_mean_control)


def test_delta_method_relative_ci_coverage_by_simulation():
    # 4000 simulated experiments, lognormal revenue, true relative lift 0.3
    rng = np.random.default_rng(7)
    sims, n, lift = 4000, 800, 0.3
    mu_c = np.exp(1.0 + 1.0**2 / 2)
    yc = rng.lognormal(1.0, 1.0, (sims, n))
    yt = rng.lognormal(1.0, 1.0, (sims, n)) * (1 + lift)
    r = welch_test(n, yc.sum(1), (yc**2).sum(1), n, yt.sum(1), (yt**2).sum(1))
    covered = (r.rel_ci_low <= lift) & (lift <= r.rel_ci_high)
    assert abs(covered.mean() - 0.95) < 0.012          # MC sd ~0.0035
    fieller = (r.fieller_low <= lift) & (lift <= r.fieller_high)
    assert abs(fieller.mean() - 0.95) < 0.012
    naive_lo, naive_hi = r.abs_ci_low / r.mean_control, r.abs_ci_high / r.mean_control
    naive_cov = ((naive_lo <= lift) & (lift <= naive_hi)).mean()
    assert naive_cov < covered.mean() - 0.015          # dividing the absolute CI undercovers (~0.93)
    assert abs(r.mean_control.mean() - mu_c) < 0.05


def test_vectorized_equals_scalar_calls():
    rng = np.random.default_rng(1)
    n = rng.integers(50, 500, (2, 30)).astype(float)
    s = rng.uniform(10, 100, (2, 30)) * n
    ss = s**2 / n * 1.5
    v = welch_test(n[0], s[0], ss[0], n[1], s[1], ss[1])
    for i in range(30):
        one = welch_test(n[0, i], s[0, i], ss[0, i], n[1, i], s[1, i], ss[1, i])
        assert one.pvalue == pytest.approx(v.pvalue[i], rel=1e-12)
        assert one.rel_ci_high == pytest.approx(v.rel_ci_high[i], rel=1e-12)
    assert len(v.to_frame()) == 30


def test_result_unpacks_like_statsmodels():
    r = proportion_test(1000, 10000, 1100, 10000)
    stat, p = r
    assert isinstance(r, TwoSampleResult)
    assert (stat, p) == (r.statistic, r.pvalue)
    assert r.n_control == 10000 and r.mean_treatment == pytest.approx(0.11)
    assert "Bernoulli" in r.method and "TwoSampleResult(" in repr(r)


def test_non_inferiority_matches_statsmodels(ref):
    inp = ref["non_inferiority"]["inputs"]
    out = ref["non_inferiority"]["outputs"]
    r = proportion_test(8000, 20000, 7950, 20000, test="z")
    ni = non_inferiority_test(r, 0.02)
    sm = sm_test_proportions_2indep(7950, 20000, 8000, 20000, value=-0.02 * 0.4, compare="diff", method="wald",
                                 alternative="larger")
    assert ni["pvalue"] == pytest.approx(sm.pvalue, rel=1e-9)
    assert ni["pvalue"] == pytest.approx(
        out["statsmodels.test_proportions_2indep(wald, H0: diff<=-0.02*pA, larger)"]["p_value"], rel=1e-9)
    assert ni["lower_bound"] == pytest.approx(out["spotify.ZTest NIM=(0.02,'increase')"]["ci"][0], rel=1e-9)
    assert not ni["non_inferior"] and inp["relative_margin"] == 0.02


@pytest.mark.parametrize("method", ["wilson", "jeffreys"])
def test_single_proportion_ci_matches_statsmodels(method):
    for x, n in ((1000, 10000), (3, 50)):
        lo, hi = proportion_confint(x, n, method=method)
        np.testing.assert_allclose([lo, hi], sm_proportion_confint(x, n, method=method), rtol=1e-7, atol=1e-12)
    lo, hi = proportion_confint(0, 40, method=method)
    # at 0 conversions the lower bound is 0 (Brown-Cai-DasGupta convention for Jeffreys); upper as statsmodels
    assert lo == 0.0
    assert hi == pytest.approx(sm_proportion_confint(0, 40, method=method)[1], rel=1e-7)
