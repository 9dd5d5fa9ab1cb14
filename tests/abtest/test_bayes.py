"""Exact Beta-Binomial chance to beat control."""

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from crmlib.abtest.bayes import LABEL, expected_loss, prob_beat_control


def test_reference_chance_to_beat_and_loss(ref, quick):
    out = ref["bayesian_binomial"]["outputs"]["formula.exact Beta(1,1)-binomial"]
    assert prob_beat_control(1000, 10000, 1100, 10000) == pytest.approx(quick["bayes.ctw_exact_beta11"], rel=1e-9)
    assert expected_loss(1000, 10000, 1100, 10000) == pytest.approx(
        out["expected_loss_if_ship_treatment E[max(pA-pB,0)]"], rel=1e-6)
    assert "not peeking-safe" in LABEL


def test_closed_form_against_quadrature_and_monte_carlo():
    for xa, na, xb, nb in ((3, 40, 7, 45), (120, 900, 100, 880), (0, 30, 2, 30)):
        val, _ = integrate.quad(lambda p: sps.beta.pdf(p, xb + 1, nb - xb + 1) * sps.beta.cdf(p, xa + 1, na - xa + 1),
                                0, 1, limit=200)
        assert prob_beat_control(xa, na, xb, nb) == pytest.approx(val, abs=1e-8)
    rng = np.random.default_rng(0)
    a, b = rng.beta(121, 781, 400_000), rng.beta(101, 781, 400_000)
    assert prob_beat_control(120, 900, 100, 880) == pytest.approx((b > a).mean(), abs=3e-3)
    v = prob_beat_control([120, 3], [900, 40], [100, 7], [880, 45])
    assert v.shape == (2,)


def test_non_integer_prior_uses_quadrature():
    p = prob_beat_control(10, 100, 15, 100, prior_alpha=0.5, prior_beta=0.5)
    rng = np.random.default_rng(1)
    a, b = rng.beta(10.5, 90.5, 400_000), rng.beta(15.5, 85.5, 400_000)
    assert p == pytest.approx((b > a).mean(), abs=3e-3)


def test_batched_closed_form_equals_one_by_one():
    rng = np.random.default_rng(4)
    n = rng.integers(100, 3000, 40)
    xc, xt = rng.binomial(n, 0.1), rng.binomial(n, 0.11)
    batch = prob_beat_control(xc, n, xt, n)
    for i in range(40):
        assert batch[i] == pytest.approx(prob_beat_control(xc[i], n[i], xt[i], n[i]), rel=1e-12)
