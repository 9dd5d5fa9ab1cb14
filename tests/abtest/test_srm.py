"""Sample-ratio mismatch vs scipy.stats.chisquare."""

import numpy as np
import pytest
from scipy import stats as sps

from crmlib.abtest.srm import srm_test


def test_srm_reference_cases(ref, quick):
    assert srm_test([10000, 10300]).pvalue == pytest.approx(quick["srm.p_10000_vs_10300"], rel=1e-9)
    assert not srm_test([10000, 10300]).blocked
    out = ref["srm"]["outputs"]
    assert srm_test([3300, 3400, 3150]).pvalue == pytest.approx(
        out["scipy.chisquare 3 arms equal weights [3300,3400,3150]"]["p_value"], rel=1e-9)
    r = srm_test([2080, 7920], [0.2, 0.8])
    assert r.statistic == pytest.approx(4.0) and r.pvalue == pytest.approx(
        out["scipy.chisquare 20/80 design [2080,7920]"]["p_value"], rel=1e-9)
    assert r.max_share_deviation == pytest.approx(0.008)


def test_srm_vectorized_against_scipy_and_threshold():
    rng = np.random.default_rng(0)
    obs = rng.integers(900, 1100, (50, 3)).astype(float)
    w = np.array([0.2, 0.3, 0.5])
    obs[:, 2] *= 2.2
    r = srm_test(obs, w)
    for i in range(50):
        sp = sps.chisquare(obs[i], obs[i].sum() * w)
        assert r.pvalue[i] == pytest.approx(sp.pvalue, rel=1e-9)
    assert np.array_equal(r.blocked, r.pvalue < 0.001)
    stat, p = srm_test([5000, 5600])
    assert p < 0.001 and srm_test([5000, 5600]).blocked


def test_srm_false_alarm_rate_is_about_the_threshold():
    rng = np.random.default_rng(8)
    a = rng.binomial(20000, 0.5, 200_000)
    r = srm_test(np.stack([a, 20000 - a], axis=1))
    assert r.blocked.mean() == pytest.approx(0.001, abs=0.0003)
