"""Gamma-Gamma model of spend per transaction (Fader, Hardie & Lee 2005; Fader & Hardie's note
"The Gamma-Gamma Model of Monetary Value"), fitted by maximum likelihood.

Data per customer: ``frequency`` x = number of repeat purchases (> 0) and ``monetary_value`` m = mean
spend of those repeat purchases (the first purchase is excluded, as in the papers). Model: spend per
transaction z ~ Gamma(p, nu) (shape p, rate nu), nu ~ Gamma(q, gamma) across customers, independent of
the purchase process. The density of the mean of x transactions is

    f(m | x) = G(p x + q) / (G(p x) G(q)) * gamma^q x^(p x) m^(p x - 1) / (gamma + x m)^(p x + q).

``gamma`` is called ``v`` in lifetimes and in the contract's ``clv_model.json``. Customers with x = 0
or m <= 0 carry no information and are skipped; :attr:`GammaGammaFitter.n_skipped_` reports how many.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.special import digamma, gammaln

from crmlib.params import schema_default
from crmlib.segmentation._mle import (
    BaseFitter,
    fit_warm_started,
    Patterns,
    compress_patterns,
    require_convergence,
)
from crmlib.segmentation.bgnbd import _dot
from crmlib.i18n import _
from crmlib.present import fmt_count, fmt_number
from crmlib.status import CannotCompute

__all__ = ["GammaGammaFitter", "MIN_CUSTOMERS"]

PARAM_NAMES = ["p", "q", "v"]
#: Fewest repeat customers with positive spend the three-parameter spend model is fitted on.
MIN_CUSTOMERS = 3


def gamma_gamma_log_likelihood(params, frequency, monetary_value) -> np.ndarray:
    """Per-customer log density of the mean repeat spend given x (x > 0, m > 0)."""
    p, q, v = params
    x = np.asarray(frequency, float)
    m = np.asarray(monetary_value, float)
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(v + x * m)
    )


class _Prepared:
    """Distinct (x, m) patterns; gammaln/digamma terms are evaluated once per distinct x."""

    def __init__(self, patterns: Patterns, weights: np.ndarray | None = None) -> None:
        w = patterns.weights if weights is None else weights
        keep = w > 0
        self.w = w[keep]
        # x = 0 never reaches here, but a count code table may list it (with zero weight): keep it finite.
        ux = patterns.uniques["x"].astype(float)
        self.ux, self.ix = np.where(ux > 0, ux, 1.0), patterns.codes["x"][keep]
        self.x = self.ux[self.ix]
        self.m = patterns.values["m"][keep].astype(float)
        self.xm = self.x * self.m
        self.log_m = np.log(self.m)
        self.w_by_x = np.bincount(self.ix, weights=self.w, minlength=self.ux.size)
        self.wx_log_m = _dot(self.w * self.x, self.log_m)
        self.w_log_m = _dot(self.w, self.log_m)
        self.n = float(self.w.sum())


def _nll_and_grad(theta, data: _Prepared) -> tuple[float, np.ndarray]:
    """Total negative log-likelihood and gradient wrt log-params (per-x special functions)."""
    p, q, v = np.exp(theta)
    ux = data.ux
    pux = p * ux
    psi_pxq = digamma(pux + q)
    # Per distinct x: the terms of log f that do not involve m.
    c_x = gammaln(pux + q) - gammaln(pux) - gammaln(q) + q * np.log(v) + pux * np.log(ux)
    dc_p = ux * (psi_pxq - digamma(pux) + np.log(ux))
    dc_q = psi_pxq - digamma(q) + np.log(v)
    # Per pattern.
    log_vxm = np.log(v + data.xm)
    pxq = p * data.x + q
    w = data.w
    ll = _dot(data.w_by_x, c_x) + p * data.wx_log_m - data.w_log_m - _dot(w, pxq * log_vxm)
    g_p = _dot(data.w_by_x, dc_p) + data.wx_log_m - _dot(w * data.x, log_vxm)
    g_q = _dot(data.w_by_x, dc_q) - _dot(w, log_vxm)
    g_v = data.n * q / v - _dot(w, pxq / (v + data.xm))
    return -ll, -np.array([g_p * p, g_q * q, g_v * v])


class GammaGammaFitter(BaseFitter):
    """Gamma-Gamma spend model fitter.

    Parameters
    ----------
    penalizer_coef : float, default 0.0
        L2 penalty ``penalizer_coef * (p^2 + q^2 + v^2)`` added to the mean negative log-likelihood
        (the same form as lifetimes' GammaGammaFitter, which does not rescale spend).
    currency : str, optional
        Label shown in outputs.

    Attributes
    ----------
    params_ : pandas.Series
        p, q, v (v is the paper's gamma).
    summary : pandas.DataFrame
    log_likelihood_ : float
        Total log-likelihood of the included customers.
    convergence_ : ConvergenceReport
    n_customers_ : int
        Customers used (x > 0 and m > 0).
    n_skipped_ : int
        Customers skipped (x == 0 or m <= 0).
    frequency_monetary_correlation_ : float
        Pearson correlation of x and m among the included customers (the model assumes independence
        of spend and purchase frequency; a value near 0 supports it).
    """

    PARAM_NAMES = tuple(PARAM_NAMES)

    def __init__(self, penalizer_coef: float = schema_default("segmentation.clv.penalizer_coef"),
                 currency: str | None = None) -> None:
        self.penalizer_coef = float(penalizer_coef)
        self.currency = currency

    def fit(self, frequency, monetary_value, weights=None, initial_params: dict | None = None) -> GammaGammaFitter:
        """Fit by maximum likelihood on distinct (x, m) patterns; skips x == 0 and m <= 0. Returns self."""
        start = time.perf_counter()
        x = np.asarray(frequency, float).ravel()
        m = np.asarray(monetary_value, float).ravel()
        w_all = np.ones_like(x) if weights is None else np.asarray(weights, float).ravel()
        keep = (x > 0) & (m > 0) & np.isfinite(m)
        self.n_skipped_ = int(round(w_all[~keep].sum()))
        x, m, w_in = x[keep], m[keep], w_all[keep]
        if x.size < MIN_CUSTOMERS:
            raise CannotCompute(_(
                "Gamma-Gamma needs at least {needed} customers who bought more than once with positive "
                "spend; this data has {n} (a new shop, a pilot region or a short extract looks like this). "
                "A longer order history fixes it.").format(needed=MIN_CUSTOMERS, n=fmt_count(x.size)))
        if np.std(x) > 0 and np.std(m) > 0:
            self.frequency_monetary_correlation_ = (
                float(np.corrcoef(x, m)[0, 1])
                if weights is None
                else float(
                    np.cov(x, m, aweights=w_in)[0, 1] / np.sqrt(np.cov(x, aweights=w_in) * np.cov(m, aweights=w_in))
                )
            )
        else:
            self.frequency_monetary_correlation_ = float("nan")
        patterns = compress_patterns({"x": x, "m": m}, w_in)
        data = _Prepared(patterns)
        n = data.n
        if initial_params is None:
            mean_m = float(np.average(data.m, weights=data.w))
            init = np.log([1.0, 2.0, mean_m])  # prior mean p v/(q-1) = mean spend
        else:
            init = np.log([initial_params[k] for k in PARAM_NAMES])
        result = fit_warm_started(_nll_and_grad, data, _Prepared, patterns, init, penalizer_coef=self.penalizer_coef)
        # Unlike BG/NBD, a Gamma-Gamma fit that stops on a boundary (q and v -> infinity: every customer has
        # the same mean spend; p -> infinity: no shrinkage) is a limit of the model whose predictions stay
        # sensible, so only a fit without finite parameters is refused; ``convergence_`` reports the rest.
        if not np.all(np.isfinite(result.params)) or not np.isfinite(result.log_likelihood):
            require_convergence(result, "Gamma-Gamma", _("{n} repeat customers with positive spend").format(
                n=fmt_count(n)))
        self._store_fit(result, n_customers=n, n_patterns=data.w.size, started=start)
        return self

    def __repr__(self) -> str:
        if not hasattr(self, "params_"):
            return f"<GammaGammaFitter: not fitted, penalizer_coef={self.penalizer_coef}>"
        p = self.params_
        return (
            f"<GammaGammaFitter: fitted with {self.n_customers_:,} repeat customers "
            f"({self.n_skipped_:,} skipped: no repeat purchase or non-positive spend), "
            f"p={p['p']:.4f}, q={p['q']:.4f}, v={p['v']:.4f}; log-lik={self.log_likelihood_:.2f}; "
            f"corr(frequency, spend)={self.frequency_monetary_correlation_:.3f}, converged={self.convergence_.success}>"
        )

    def population_mean_spend(self) -> float:
        """E[Z] = p v / (q - 1) (infinite when q <= 1)."""
        p, q, v = self._check_fitted()
        return float(p * v / (q - 1.0)) if q > 1 else float("inf")

    def conditional_expected_average_profit(self, frequency, monetary_value) -> np.ndarray:
        """E[Z | x, m] = p (v + x m) / (p x + q - 1): a weighted mean of the population mean
        p v/(q-1) and the customer's observed mean m. Customers with x == 0 (or m not positive) get the
        population mean. Requires q > 1.
        """
        p, q, v = self._check_fitted()
        if q <= 1:
            raise CannotCompute(_(
                "the fitted Gamma-Gamma spend model has q = {q} <= 1, so its mean spend per purchase is "
                "infinite and no expected order value can be given: the repeat buyers' spend is too heavy-tailed "
                "or too few for the model.").format(q=fmt_number(q)))
        x = np.asarray(frequency, float)
        m = np.asarray(monetary_value, float)
        informative = (x > 0) & (m > 0) & np.isfinite(m)
        x_eff = np.where(informative, x, 0.0)
        m_eff = np.where(informative, m, 0.0)
        return p * (v + x_eff * m_eff) / (p * x_eff + q - 1.0)

    expected_average_order_value = conditional_expected_average_profit
