"""BG/NBD: published CDNOW estimates, parameter recovery, and independent checks of every formula."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats
from scipy.special import hyp2f1
from threadpoolctl import threadpool_limits

from crmlib.segmentation.bgnbd import BetaGeoFitter, _nll_and_grad, _Prepared, bgnbd_log_likelihood
from crmlib.segmentation.simulate import simulate_bgnbd


@pytest.fixture(scope="module")
def cdnow_fit(cdnow_summary) -> BetaGeoFitter:
    s = cdnow_summary
    return BetaGeoFitter(time_unit="W", calibration_end="1997-09-30").fit(s["frequency"], s["recency"], s["T"])


def test_cdnow_published_estimates(cdnow_fit):
    # Fader, Hardie & Lee (2005): r=0.243, alpha=4.414, a=0.793, b=2.426, LL=-9582.4 (weeks).
    p = cdnow_fit.params_
    assert p["r"] == pytest.approx(0.243, abs=0.001)
    assert p["alpha"] == pytest.approx(4.414, abs=0.001)
    assert p["a"] == pytest.approx(0.793, abs=0.001)
    assert p["b"] == pytest.approx(2.426, abs=0.001)
    assert cdnow_fit.log_likelihood_ == pytest.approx(-9582.4, abs=0.1)
    assert cdnow_fit.n_customers_ == 2357
    assert cdnow_fit.convergence_.success
    assert cdnow_fit.convergence_.gradient_norm < 1e-6


def test_cdnow_paper_example_conditional_expectation(cdnow_fit):
    # FHL (2005) worked example: x=2, t_x=30.43, T=38.86 -> 1.226 expected purchases in the next 39 weeks.
    value = cdnow_fit.conditional_expected_number_of_purchases_up_to_time(39, 2, 30.43, 38.86)
    assert float(value) == pytest.approx(1.226, abs=0.001)


def test_repr_summary_and_units(cdnow_fit):
    text = repr(cdnow_fit)
    assert "r=0.2426" in text and "time unit W" in text and "1997-09-30" in text
    assert list(cdnow_fit.summary.columns[:4]) == ["coef", "se(coef)", "lower 95% bound", "upper 95% bound"]
    assert (cdnow_fit.summary["lower 95% bound"] < cdnow_fit.summary["coef"]).all()


def test_gradient_matches_finite_differences(cdnow_summary):
    s = cdnow_summary
    x, t_x, big_t = s["frequency"].to_numpy(float), s["recency"].to_numpy(), s["T"].to_numpy()
    data = _Prepared.from_arrays(x, t_x, big_t)
    theta = np.log([0.3, 5.0, 0.9, 2.0])
    numeric = optimize.approx_fprime(theta, lambda t: _nll_and_grad(t, data)[0], 1e-7)
    analytic = _nll_and_grad(theta, data)[1]
    np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-3)
    # The fitted objective (gathered per distinct x/T/t_x) equals the plain betaln form of the likelihood.
    assert _nll_and_grad(theta, data)[0] == pytest.approx(
        -bgnbd_log_likelihood(np.exp(theta), x, t_x, big_t).sum(), rel=1e-12
    )


def test_standard_errors_match_natural_scale_hessian_of_loglik(cdnow_fit, cdnow_summary):
    # Independent route: second differences of the summed log-likelihood *values* on the natural scale.
    s = cdnow_summary
    x, t_x, big_t = s["frequency"].to_numpy(float), s["recency"].to_numpy(), s["T"].to_numpy()
    est = cdnow_fit.params_.to_numpy()

    def nll(par):
        return -bgnbd_log_likelihood(par, x, t_x, big_t).sum()

    k = est.size
    h = 1e-4 * est
    hess = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            e_i, e_j = np.eye(k)[i] * h[i], np.eye(k)[j] * h[j]
            hess[i, j] = (nll(est + e_i + e_j) - nll(est + e_i - e_j) - nll(est - e_i + e_j) + nll(est - e_i - e_j)) / (
                4 * h[i] * h[j]
            )
    se_natural = np.sqrt(np.diag(np.linalg.inv(hess)))
    np.testing.assert_allclose(cdnow_fit.summary["se(coef)"].to_numpy(), se_natural, rtol=2e-3)


def test_penalizer_moves_a_and_b(cdnow_summary):
    s = cdnow_summary
    plain = BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"]).params_
    penalised = BetaGeoFitter(penalizer_coef=0.001).fit(s["frequency"], s["recency"], s["T"]).params_
    assert abs(penalised["a"] / plain["a"] - 1) > 0.2
    assert abs(penalised["b"] / plain["b"] - 1) > 0.2


def test_weights_equal_expanded_rows(cdnow_summary):
    s = cdnow_summary
    grouped = s.groupby(["frequency", "recency", "T"], as_index=False).size()
    by_pattern = BetaGeoFitter().fit(grouped["frequency"], grouped["recency"], grouped["T"], weights=grouped["size"])
    by_row = BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"])
    np.testing.assert_allclose(by_pattern.params_, by_row.params_, rtol=1e-7)
    assert by_pattern.log_likelihood_ == pytest.approx(by_row.log_likelihood_, abs=1e-6)


def test_parameter_recovery_from_simulated_process():
    truth = {"r": 0.5, "alpha": 6.0, "a": 0.8, "b": 2.5}
    rng = np.random.default_rng(42)
    big_t = rng.uniform(20, 80, size=30_000)
    sim = simulate_bgnbd(30_000, **truth, T=big_t, seed=7)
    model = BetaGeoFitter().fit(sim["frequency"], sim["recency"], sim["T"])
    assert model.convergence_.success and model.convergence_.gradient_norm < 1e-6
    for name, value in truth.items():
        est = model.params_[name]
        se = model.summary.loc[name, "se(coef)"]
        assert abs(est - value) < 3.5 * se, (name, est, value, se)
        assert abs(est / value - 1) < 0.25, (name, est, value)
    # The 95 % bounds should cover the truth for (nearly) all parameters.
    covered = [
        (model.summary.loc[n, "lower 95% bound"] <= v <= model.summary.loc[n, "upper 95% bound"])
        for n, v in truth.items()
    ]
    assert sum(covered) >= 3


def test_unconditional_expectation_matches_monte_carlo(cdnow_fit):
    params = cdnow_fit.params_
    sim = simulate_bgnbd(400_000, params["r"], params["alpha"], params["a"], params["b"], T=39.0, seed=11)
    mc_mean = sim["frequency"].mean()
    mc_se = sim["frequency"].std() / np.sqrt(len(sim))
    assert abs(cdnow_fit.expected_number_of_purchases_up_to_time(39.0) - mc_mean) < 4 * mc_se


@functools.cache
def _gauss_legendre(n: int):
    # One LAPACK thread: the eigen-solve inside leggauss stalls for seconds on a busy 2-core machine.
    with threadpool_limits(limits=1):
        return np.polynomial.legendre.leggauss(n)


def _posterior_integrals(params, x, t_x, big_t, t):
    """P(alive) and E[Y(t)] by direct 2-D Gauss-Legendre integration over (lambda, p) of the model
    definition: purchase likelihood given (lambda, p) times the Gamma and Beta mixing densities."""
    r, alpha, a, b = params
    lam_nodes, lam_w = _gauss_legendre(600)
    p_nodes, p_w = _gauss_legendre(300)
    lam_max = 12.0
    lam = (lam_nodes + 1) * lam_max / 2
    p = (p_nodes + 1) / 2
    weight = np.outer(lam_w * lam_max / 2, p_w / 2) * np.outer(
        stats.gamma(r, scale=1 / alpha).pdf(lam), stats.beta(a, b).pdf(p)
    )
    lam, p = lam[:, None], p[None, :]
    alive = (1 - p) ** x * lam**x * np.exp(-lam * big_t)
    dead = p * (1 - p) ** (x - 1) * lam**x * np.exp(-lam * t_x) if x > 0 else np.zeros_like(alive)
    future = alive * (1 - np.exp(-lam * p * t)) / p
    total = np.sum(weight * (alive + dead))
    return np.sum(weight * alive) / total, np.sum(weight * future) / total


@pytest.mark.parametrize("x, t_x, big_t, t", [(3, 10.0, 20.0, 8.0), (0, 0.0, 15.0, 26.0), (7, 30.0, 31.0, 52.0)])
def test_p_alive_and_expected_purchases_match_direct_integration(x, t_x, big_t, t):
    params = (2.0, 5.0, 3.0, 4.0)
    model = BetaGeoFitter()
    model.params_ = pd.Series(params, index=["r", "alpha", "a", "b"])
    p_alive_int, expected_int = _posterior_integrals(params, x, t_x, big_t, t)
    assert float(model.conditional_probability_alive(x, t_x, big_t)) == pytest.approx(p_alive_int, rel=1e-6)
    assert float(model.conditional_expected_number_of_purchases_up_to_time(t, x, t_x, big_t)) == pytest.approx(
        expected_int, rel=1e-6
    )


def test_cdnow_predictions_match_textbook_formula(cdnow_fit, cdnow_summary):
    # Naive transcription of FHL (2005) eq. (10) and the P(alive) formula, no log-space tricks.
    r, alpha, a, b = cdnow_fit.params_
    s = cdnow_summary
    x, t_x, big_t = s["frequency"].to_numpy(float), s["recency"].to_numpy(), s["T"].to_numpy()
    t = 52.0
    ratio = np.where(x > 0, a / (b + np.maximum(x, 1) - 1) * ((alpha + big_t) / (alpha + t_x)) ** (r + x), 0.0)
    p_alive = 1 / (1 + ratio)
    numer = (
        (a + b + x - 1)
        / (a - 1)
        * (
            1
            - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x)
            * hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + big_t + t))
        )
    )
    expected = numer / (1 + ratio)
    np.testing.assert_allclose(cdnow_fit.conditional_probability_alive(x, t_x, big_t), p_alive, rtol=1e-10)
    np.testing.assert_allclose(
        cdnow_fit.conditional_expected_number_of_purchases_up_to_time(t, x, t_x, big_t), expected, rtol=1e-10
    )


def test_rejects_inconsistent_inputs():
    with pytest.raises(ValueError):
        BetaGeoFitter().fit([1, 2], [5.0, 3.0], [4.0, 10.0])  # recency > T
    with pytest.raises(ValueError):
        BetaGeoFitter().fit([0, 2], [1.0, 3.0], [4.0, 10.0])  # x = 0 with recency > 0
    with pytest.raises(RuntimeError):
        BetaGeoFitter().conditional_probability_alive(1, 1.0, 2.0)


def test_large_frequency_is_stable_and_matches_paper_form_where_that_works():
    model = BetaGeoFitter()
    model.params_ = pd.Series([0.243, 30.9, 0.793, 2.426], index=["r", "alpha", "a", "b"])  # daily scale
    r, alpha, a, b = model.params_
    for x, t_x, big_t in [(30, 300.0, 365.0), (100, 500.0, 520.0), (150, 700.0, 730.0)]:
        t = 365.0
        z = t / (alpha + big_t + t)
        paper = (
            (a + b + x - 1)
            / (a - 1)
            * (1 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z))
            * model.conditional_probability_alive(x, t_x, big_t)
        )
        got = model.conditional_expected_number_of_purchases_up_to_time(t, x, t_x, big_t)
        assert float(got) == pytest.approx(float(paper), rel=1e-8)
    # Where the paper's form overflows (nan), the transformed one stays finite and increasing in t.
    values = model.conditional_expected_number_of_purchases_up_to_time(
        np.array([30.0, 365.0, 3650.0]), 5000, 729.0, 730.0
    )
    assert np.all(np.isfinite(values)) and np.all(np.diff(values) > 0)
