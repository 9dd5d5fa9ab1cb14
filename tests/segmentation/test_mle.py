"""Shared MLE machinery: pattern compression vs pandas groupby; the warm start does not change the MLE."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import crmlib.segmentation.bgnbd as bgnbd_module
import crmlib.segmentation.gamma_gamma as gg_module
from crmlib.segmentation import _mle as mle_module
from crmlib.segmentation._mle import compress_patterns, numerical_hessian, warm_start_weights
from crmlib.segmentation.simulate import simulate_bgnbd, simulate_gamma_gamma


def test_compress_patterns_matches_groupby():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "x": rng.integers(0, 5, 5000).astype(float),
            "t": rng.integers(0, 30, 5000) / 7,
            "T": 40 / 7 + rng.integers(0, 3, 5000) / 7,
        }
    )
    weights = rng.uniform(0.5, 2.0, 5000)
    patterns = compress_patterns({c: frame[c].to_numpy() for c in frame}, weights)
    got = pd.DataFrame({**patterns.values, "w": patterns.weights}).sort_values(["x", "t", "T"]).reset_index(drop=True)
    expected = frame.assign(w=weights).groupby(["x", "t", "T"], as_index=False)["w"].sum()
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)
    for name in ["x", "t", "T"]:
        np.testing.assert_array_equal(patterns.uniques[name][patterns.codes[name]], patterns.values[name])


def test_numerical_hessian_of_quadratic():
    a = np.array([[3.0, 1.0], [1.0, 2.0]])
    for scheme in ["central", "forward"]:
        np.testing.assert_allclose(numerical_hessian(lambda v: a @ v, np.array([0.3, -1.2]), scheme), a, rtol=1e-6)


def test_warm_start_only_for_large_data():
    assert warm_start_weights(np.ones(1000)) is None
    thinned = warm_start_weights(np.full(300_000, 2.0))
    assert thinned is not None and abs(thinned.sum() - 50_000) < 1_000


def test_warm_start_reaches_the_same_optimum(monkeypatch):
    sim = simulate_bgnbd(
        220_000, 0.4, 5.0, 0.8, 2.5, T=np.random.default_rng(1).integers(14, 400, 220_000) / 7, seed=2, day_grid=1 / 7
    )
    spend = simulate_gamma_gamma(sim["frequency"].to_numpy(), 6.0, 4.0, 15.0, seed=3)["monetary_value"].round(2)
    with_warm = bgnbd_module.BetaGeoFitter().fit(sim["frequency"], sim["recency"], sim["T"])
    calls = []

    def small_target(w):  # the ~90k repeat customers are below the default threshold: force a warm start
        calls.append(1)
        return warm_start_weights(w, target=10_000)

    monkeypatch.setattr(mle_module, "warm_start_weights", small_target)
    gg_warm = gg_module.GammaGammaFitter().fit(sim["frequency"], spend)
    assert calls and gg_warm.n_patterns_ > 20_000 and gg_warm.n_customers_ > 40_000
    monkeypatch.setattr(mle_module, "warm_start_weights", lambda w: None)
    cold = bgnbd_module.BetaGeoFitter().fit(sim["frequency"], sim["recency"], sim["T"])
    gg_cold = gg_module.GammaGammaFitter().fit(sim["frequency"], spend)
    assert with_warm.n_patterns_ > 20_000
    np.testing.assert_allclose(with_warm.params_, cold.params_, rtol=1e-6)
    np.testing.assert_allclose(gg_warm.params_, gg_cold.params_, rtol=1e-6)
    assert with_warm.log_likelihood_ == pytest.approx(cold.log_likelihood_, abs=1e-4)
    np.testing.assert_allclose(with_warm.summary["se(coef)"], cold.summary["se(coef)"], rtol=1e-3)
