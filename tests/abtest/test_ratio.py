"""Ratio metrics by the delta method at the randomization unit."""

import numpy as np
import pytest

from crmlib.abtest.ratio import ratio_moments, ratio_test


def _arm(s):
    return {"n": s["n_users"], "sum_num": s["sum_rev"], "sum_num2": s["sum_rev2"], "sum_den": s["sum_sess"],
            "sum_den2": s["sum_sess2"], "sum_num_den": s["sum_rev_sess"]}


def test_ratio_reference_case(ref, quick):
    case = ref["ratio_metric"]
    ss = case["inputs"]["sufficient_statistics_per_arm"]
    f = case["outputs"]["formula.delta_method (user-level)"]
    r = ratio_test(_arm(ss["control"]), _arm(ss["treatment"]), test="z")
    assert r.abs_lift == pytest.approx(quick["ratio.diff"], rel=1e-9)
    assert r.se == pytest.approx(quick["ratio.se_diff"], rel=1e-9)
    assert r.pvalue == pytest.approx(f["p_value"], rel=1e-9)
    np.testing.assert_allclose(r.ci, f["ci_absolute"], rtol=1e-9)
    np.testing.assert_allclose(r.rel_ci, f["ci_relative"], rtol=1e-9)
    gb = case["outputs"]["gbstats.TwoSidedTTest(RatioStatistic,absolute)"]
    rw = ratio_test(_arm(ss["control"]), _arm(ss["treatment"]))
    assert rw.pvalue == pytest.approx(gb["p_value"], rel=1e-6)
    assert rw.df == pytest.approx(gb["welch_dof"], rel=1e-6)
    # the user-level bootstrap SE (Monte Carlo) agrees within a few percent
    boot = case["outputs"]["bootstrap (user-level, 2000 resamples, default_rng(11))"]["se_diff"]
    assert r.se == pytest.approx(boot, rel=0.05)
    # treating sessions as iid would be 18% too small: the delta SE is not that
    naive = case["outputs"]["naive session-level iid SE (incorrect)"]["se_diff"]
    assert r.se / naive > 1.2


def test_ratio_moments_against_row_level_delta():
    rng = np.random.default_rng(5)
    d = 1 + rng.poisson(2.0, 2000)
    m = rng.gamma(2.0, 3.0, 2000) * d
    r, v = ratio_moments(d.size, m.sum(), (m**2).sum(), d.sum(), (d**2).sum(), (m * d).sum())
    assert r == pytest.approx(m.sum() / d.sum(), rel=1e-12)
    # linearization: Var(R) = Var(M - R D) / (n mean(D)^2)
    lin = m - r * d
    assert v == pytest.approx(lin.var(ddof=1) / (d.size * d.mean() ** 2), rel=1e-9)


def test_ratio_ci_coverage_under_user_randomization():
    # users with heterogeneous propensity: CI from the delta method covers ~95%
    rng = np.random.default_rng(21)
    sims, n = 1500, 400
    def arm(lift):
        u = rng.gamma(2.0, 0.5, (sims, n))
        d = 1 + rng.poisson(2.0, (sims, n))
        m = rng.gamma(0.8 * d, 5.0 * u * lift)
        return {"n": n, "sum_num": m.sum(1), "sum_num2": (m**2).sum(1), "sum_den": d.sum(1),
                "sum_den2": (d**2).sum(1), "sum_num_den": (m * d).sum(1)}
    r = ratio_test(arm(1.0), arm(1.0))
    cov = ((r.abs_ci_low <= 0) & (0 <= r.abs_ci_high)).mean()
    assert abs(cov - 0.95) < 0.02
