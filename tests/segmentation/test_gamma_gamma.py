"""Gamma-Gamma: published CDNOW estimates, recovery from the generative process, independent checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from crmlib.segmentation._mle import compress_patterns
from crmlib.segmentation.gamma_gamma import GammaGammaFitter, _nll_and_grad, _Prepared, gamma_gamma_log_likelihood
from crmlib.segmentation.simulate import simulate_bgnbd, simulate_gamma_gamma


@pytest.fixture(scope="module")
def cdnow_gg(cdnow_summary) -> GammaGammaFitter:
    return GammaGammaFitter().fit(cdnow_summary["frequency"], cdnow_summary["monetary_value"])


def test_cdnow_published_estimates(cdnow_gg):
    # Fader & Hardie, "The Gamma-Gamma Model of Monetary Value": p=6.25, q=3.74, gamma=15.44, 946 customers.
    p = cdnow_gg.params_
    assert p["p"] == pytest.approx(6.25, abs=0.005)
    assert p["q"] == pytest.approx(3.74, abs=0.005)
    assert p["v"] == pytest.approx(15.44, abs=0.005)
    assert cdnow_gg.n_customers_ == 946
    assert cdnow_gg.n_skipped_ == 2357 - 946
    assert cdnow_gg.convergence_.success
    assert "946 repeat customers" in repr(cdnow_gg)


def test_cdnow_mean_repeat_spend(cdnow_summary):
    # Fader & Hardie's note reports a mean of the 946 average repeat spends of $35.08.
    repeaters = cdnow_summary[cdnow_summary["frequency"] > 0]
    assert repeaters["monetary_value"].mean() == pytest.approx(35.08, abs=0.01)


def test_frequency_spend_correlation_reported(cdnow_gg, cdnow_summary):
    rep = cdnow_summary[cdnow_summary["frequency"] > 0]
    expected = stats.pearsonr(rep["frequency"], rep["monetary_value"])[0]
    assert cdnow_gg.frequency_monetary_correlation_ == pytest.approx(expected, rel=1e-10)


def test_gradient_matches_finite_differences(cdnow_summary):
    rep = cdnow_summary[cdnow_summary["frequency"] > 0]
    x, m = rep["frequency"].to_numpy(float), rep["monetary_value"].to_numpy()
    data = _Prepared(compress_patterns({"x": x, "m": m}, None))
    theta = np.log([5.0, 3.0, 12.0])
    numeric = optimize.approx_fprime(theta, lambda t: _nll_and_grad(t, data)[0], 1e-7)
    np.testing.assert_allclose(_nll_and_grad(theta, data)[1], numeric, rtol=1e-4, atol=1e-3)
    # The fitted objective (per distinct x) equals the plain per-customer density.
    plain = -gamma_gamma_log_likelihood(np.exp(theta), x, m).sum()
    assert _nll_and_grad(theta, data)[0] == pytest.approx(plain, rel=1e-12)


def test_density_integrates_to_one():
    # The per-customer density of the mean spend must integrate to 1 over m for any x.
    for x in (1, 3, 10):
        total = integrate.quad(lambda m: np.exp(gamma_gamma_log_likelihood((6.0, 3.5, 15.0), x, m)), 0, np.inf)[0]
        assert total == pytest.approx(1.0, abs=1e-8)


def test_conditional_expectation_matches_posterior_integral(cdnow_gg):
    p, q, v = cdnow_gg.params_
    for x, m in [(1, 20.0), (4, 55.0), (12, 8.0)]:
        # Posterior of nu given x spends with mean m, integrated numerically; E[Z | nu] = p / nu.
        def kernel(nu):
            return stats.gamma(q, scale=1 / v).pdf(nu) * nu ** (p * x) * np.exp(-nu * x * m)

        norm = integrate.quad(kernel, 0, np.inf, epsabs=0, epsrel=1e-12, limit=200)[0]
        mean = integrate.quad(lambda nu: p / nu * kernel(nu), 0, np.inf, epsabs=0, epsrel=1e-12, limit=200)[0] / norm
        assert float(cdnow_gg.conditional_expected_average_profit(x, m)) == pytest.approx(mean, rel=1e-7)
    # No repeat purchase: the population mean p v / (q - 1).
    assert float(cdnow_gg.conditional_expected_average_profit(0, 0.0)) == pytest.approx(p * v / (q - 1), rel=1e-12)


def test_parameter_recovery_from_simulated_process():
    truth = {"p": 6.0, "q": 4.0, "v": 15.0}
    counts = simulate_bgnbd(40_000, 0.5, 4.0, 0.7, 2.5, T=52.0, seed=3)["frequency"].to_numpy()
    sim = simulate_gamma_gamma(counts, **truth, seed=5)
    model = GammaGammaFitter().fit(sim["frequency"], sim["monetary_value"])
    assert model.convergence_.success and model.convergence_.gradient_norm < 1e-6
    for name, value in truth.items():
        est, se = model.params_[name], model.summary.loc[name, "se(coef)"]
        assert abs(est - value) < 3.5 * se, (name, est, value, se)
        assert abs(est / value - 1) < 0.2
    assert model.n_skipped_ == int((counts == 0).sum())


def test_skips_non_positive_spend():
    model = GammaGammaFitter().fit([1, 2, 0, 3, 1, 2, 4], [10.0, 12.0, 0.0, -5.0, 8.0, 20.0, 15.0])
    assert model.n_customers_ == 5 and model.n_skipped_ == 2
