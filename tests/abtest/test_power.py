"""Power, MDE and sample size vs statsmodels (one convention: unpooled normal approximation)."""

import numpy as np
import pytest
from statsmodels.stats.power import NormalIndPower

from crmlib.abtest.power import achieved_power, mde, sample_size_means, sample_size_per_arm, sample_size_proportions


def test_sample_size_proportions_reference(ref):
    out = ref["sample_size_binomial"]["outputs"]
    n = sample_size_proportions(0.05, 0.10)
    assert n == pytest.approx(out["formula.unpooled (z_a+z_b)^2 (p1q1+p2q2)/d^2"]["n_per_arm"], rel=1e-10)
    assert int(np.ceil(n)) == 31231
    # the same convention in statsmodels terms: effect size d / sqrt((p1q1+p2q2)/2), two-sided
    p1, p2 = 0.05, 0.055
    es = (p2 - p1) / np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2)
    sm_n = NormalIndPower().solve_power(effect_size=es, alpha=0.05, power=0.8, ratio=1.0)
    assert n == pytest.approx(sm_n, rel=1e-5)      # statsmodels also counts the far tail


def test_sample_size_means_and_cuped(ref):
    out = ref["sample_size_continuous"]["outputs"]
    assert sample_size_means(110, 5.5) == pytest.approx(out["formula 2(z_a+z_b)^2 sd^2/mde^2"]["n_per_arm"], rel=1e-10)
    assert sample_size_means(110, 5.5) == pytest.approx(out["statsmodels.NormalIndPower"]["n_per_arm"], rel=1e-5)
    assert sample_size_means(110, 5.5, rho=0.6) == pytest.approx(
        out["formula with CUPED rho=0.6 (n * (1-rho^2))"]["n_per_arm"], rel=1e-10)


def test_achieved_power_matches_normalindpower(ref):
    out = ref["sample_size_continuous"]["outputs"]["achieved_power_at_n=4000"]
    p = achieved_power(5.5, 4000, 4000, 110**2, 110**2)
    assert p == pytest.approx(out["statsmodels.NormalIndPower"]["power"], rel=1e-9)
    for es, n, ratio in ((0.05, 3000, 1.0), (0.1, 500, 2.0), (0.02, 20000, 0.5)):
        sm_p = NormalIndPower().power(effect_size=es, nobs1=n, alpha=0.05, ratio=ratio)
        assert achieved_power(es, n, n * ratio, 1.0, 1.0) == pytest.approx(sm_p, rel=1e-9)


def test_mde_inverts_the_planner():
    n = sample_size_per_arm(0.09, 0.09, 0.01)
    assert mde(n, n, 0.09, 0.09) == pytest.approx(0.01, rel=1e-12)
    assert mde(n, n, 0.09, 0.09, rho=0.5) == pytest.approx(0.01 * np.sqrt(0.75), rel=1e-12)
    assert achieved_power(0.01, n, n, 0.09, 0.09) == pytest.approx(0.8, abs=1e-4)
