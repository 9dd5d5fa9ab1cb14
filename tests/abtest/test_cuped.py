"""CUPED (pooled theta) from sufficient statistics vs OLS on the row-level data."""

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as sps

from crmlib.abtest.cuped import cuped_test


def _suff(df):
    out = {}
    for arm, g in df.groupby("arm"):
        out[arm] = {"n": len(g), "sum_y": g.y.sum(), "sum_y2": (g.y**2).sum(), "sum_x": g.x_pre.sum(),
                    "sum_x2": (g.x_pre**2).sum(), "sum_xy": (g.x_pre * g.y).sum()}
    return out


def test_cuped_reference_values(quick, ref):
    ss = ref["cuped"]["inputs"]["sufficient_statistics_per_arm"]
    r = cuped_test(ss["control"], ss["treatment"], test="z")
    assert r.theta == pytest.approx(quick["cuped.theta"], rel=1e-9)
    assert r.adjusted.abs_lift == pytest.approx(quick["cuped.diff"], rel=1e-9)
    assert r.adjusted.se == pytest.approx(quick["cuped.se"], rel=1e-9)
    out = ref["cuped"]["outputs"]
    assert r.unadjusted.pvalue == pytest.approx(out["unadjusted (Welch z)"]["p_value"], rel=1e-9)
    assert r.variance_reduction == pytest.approx(
        out["cuped pooled theta (Deng et al. 2013)"]["variance_reduction"], rel=1e-9)
    gb = out["gbstats.TwoSidedTTest(RegressionAdjustedStatistic,absolute)"]
    rw = cuped_test(ss["control"], ss["treatment"])
    assert rw.adjusted.pvalue == pytest.approx(gb["p_value"], rel=1e-6)
    np.testing.assert_allclose(rw.adjusted.ci, gb["ci"], rtol=1e-6)


def test_cuped_against_ols_on_the_csv(cuped_data):
    s = _suff(cuped_data)
    r = cuped_test(s["control"], s["treatment"])
    fit = sm.OLS(cuped_data.y, sm.add_constant(cuped_data[["treat", "x_pre"]])).fit()
    # pooled-theta CUPED and ANCOVA differ only through the slope estimate (pooled vs within-arm)
    assert r.adjusted.abs_lift == pytest.approx(fit.params["treat"], rel=1e-4)
    assert r.adjusted.se == pytest.approx(fit.bse["treat"], rel=1e-3)
    assert r.adjusted.pvalue == pytest.approx(fit.pvalues["treat"], rel=1e-2)
    # the unadjusted estimate is the plain difference; the adjusted one is ~44% narrower
    assert r.unadjusted.abs_lift == pytest.approx(
        cuped_data.y[cuped_data.treat == 1].mean() - cuped_data.y[cuped_data.treat == 0].mean(), rel=1e-10)
    assert r.adjusted.se / r.unadjusted.se == pytest.approx(np.sqrt(1 - r.variance_reduction), rel=1e-12)
    assert 0.6 < r.variance_reduction < 0.75
    # balance check = Welch test of the pre-period covariate
    x = cuped_data
    bal = sps.ttest_ind(x.x_pre[x.treat == 1], x.x_pre[x.treat == 0], equal_var=False)
    assert r.balance_pvalue == pytest.approx(bal.pvalue, rel=1e-9)
    stat, p = r
    assert p == r.adjusted.pvalue and "CUPED" in r.adjusted.method


def test_cuped_detects_pre_period_imbalance():
    rng = np.random.default_rng(4)
    x0, x1 = rng.normal(10, 3, 3000), rng.normal(10.6, 3, 3000)      # arms differed before the start
    y0, y1 = x0 + rng.normal(0, 1, 3000), x1 + rng.normal(0, 1, 3000)

    def arm(x, y):
        return {"n": x.size, "sum_y": y.sum(), "sum_y2": (y**2).sum(), "sum_x": x.sum(),
                "sum_x2": (x**2).sum(), "sum_xy": (x * y).sum()}

    r = cuped_test(arm(x0, y0), arm(x1, y1))
    assert r.balance_pvalue < 1e-6
    assert r.unadjusted.pvalue < 1e-6 and r.adjusted.pvalue > 0.01   # CUPED removes the pre-existing gap


def test_cuped_coverage_and_variance_reduction_by_simulation():
    # 3000 experiments, y = 5 + 0.8 x + noise + 1.0 * treatment (as the reference generator)
    rng = np.random.default_rng(12)
    sims, n = 3000, 400

    def arm(effect):
        x = rng.gamma(2.0, 10.0, (sims, n))
        y = 5.0 + 0.8 * x + rng.normal(0, 8.0, (sims, n)) + effect
        return {"n": n, "sum_y": y.sum(1), "sum_y2": (y**2).sum(1), "sum_x": x.sum(1), "sum_x2": (x**2).sum(1),
                "sum_xy": (x * y).sum(1)}

    c, t = arm(0.0), arm(1.0)
    r = cuped_test(c, t)
    cov = ((r.adjusted.abs_ci_low <= 1.0) & (1.0 <= r.adjusted.abs_ci_high)).mean()
    assert abs(cov - 0.95) < 0.015
    # relative lift truth: 1 / E[y_control] with E[x] = 20 -> 1 / 21
    rel_true = 1.0 / 21.0
    rel_cov = ((r.adjusted.rel_ci_low <= rel_true) & (rel_true <= r.adjusted.rel_ci_high)).mean()
    assert abs(rel_cov - 0.95) < 0.015
    # the estimator is unbiased and much less variable than the unadjusted difference
    assert abs(r.adjusted.abs_lift.mean() - 1.0) < 0.02
    assert r.adjusted.abs_lift.std() < 0.65 * r.unadjusted.abs_lift.std()
