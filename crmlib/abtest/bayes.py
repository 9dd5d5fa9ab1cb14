"""Bayesian chance to beat control for conversions: exact Beta-Binomial.

**Not peeking-safe.** "Chance to beat control > 95 %" checked daily gives ~21 % false positives in an
A/A test (notes/ab_testing.md); this number is descriptive, never the verdict.

With independent Beta(a, b) priors (uniform by default) the posteriors are
``p_A ~ Beta(a + x_A, b + n_A - x_A)`` and ``p_B ~ Beta(a + x_B, b + n_B - x_B)`` and

    P(p_B > p_A) = Σ_{i=0}^{α_B - 1} B(α_A + i, β_A + β_B) / ((β_B + i) B(1 + i, β_B) B(α_A, β_A))

(closed form, integer α_B; one-dimensional quadrature otherwise). Expected loss of shipping B is
``E[max(p_A - p_B, 0)]`` by quadrature.
"""

from __future__ import annotations

import numpy as np
from scipy import integrate
from scipy import stats as sps
from scipy.special import betainc, betaln

__all__ = ["prob_beat_control", "expected_loss"]

LABEL = "exact Beta-Binomial posterior (not peeking-safe)"
_MAX_CLOSED_FORM_TERMS = 200_000
_MAX_BATCH_ELEMENTS = 20_000_000


def _p_beat_one(aa, ba, ab, bb) -> float:
    if float(ab).is_integer() and ab <= _MAX_CLOSED_FORM_TERMS:
        i = np.arange(int(ab))
        terms = betaln(aa + i, ba + bb) - np.log(bb + i) - betaln(1 + i, bb) - betaln(aa, ba)
        return float(np.exp(terms).sum())
    lo, hi = sps.beta.ppf([1e-12, 1 - 1e-12], ab, bb)
    val, _ = integrate.quad(lambda p: sps.beta.pdf(p, ab, bb) * sps.beta.cdf(p, aa, ba), lo, hi, limit=200)
    return float(val)


def prob_beat_control(conversions_control, n_control, conversions_treatment, n_treatment, *,
                      prior_alpha: float = 1.0, prior_beta: float = 1.0) -> np.ndarray:
    """P(treatment rate > control rate) under independent Beta priors (vectorized over comparisons)."""
    xc, nc, xt, nt = np.broadcast_arrays(*(np.asarray(a, float) for a in
                                           (conversions_control, n_control, conversions_treatment, n_treatment)))
    scalar = xc.ndim == 0
    xc, nc, xt, nt = (np.atleast_1d(x) for x in (xc, nc, xt, nt))
    aa, ba = prior_alpha + xc, prior_beta + nc - xc
    ab, bb = prior_alpha + xt, prior_beta + nt - xt
    out = np.empty(xc.shape)
    integer = (ab == np.round(ab)) & (ab <= _MAX_CLOSED_FORM_TERMS)
    flat = integer.ravel()
    if flat.any() and flat.sum() * ab.ravel()[flat].max() <= _MAX_BATCH_ELEMENTS:
        # all closed-form sums at once: a (comparisons x terms) matrix, masked beyond each alpha_B
        A, B, C, D = (x.ravel()[flat][:, None] for x in (aa, ba, ab, bb))
        i = np.arange(int(C.max()))[None, :]
        terms = betaln(A + i, B + D) - np.log(D + i) - betaln(1 + i, D) - betaln(A, B)
        vals = np.where(i < C, np.exp(terms), 0.0).sum(axis=1)
        res = out.ravel()
        res[flat] = vals
        out = res.reshape(xc.shape)
        rest = ~integer
    else:
        rest = np.ones(xc.shape, bool)
    for idx in zip(*np.nonzero(rest)):
        out[idx] = _p_beat_one(aa[idx], ba[idx], ab[idx], bb[idx])
    return out[0] if scalar else out


def _shortfall(a_x, b_x, a_y, b_y) -> float:
    """E[max(X - Y, 0)] for independent X ~ Beta(a_x, b_x), Y ~ Beta(a_y, b_y)."""
    mx = a_x / (a_x + b_x)

    def inner(y):
        return mx * (1 - betainc(a_x + 1, b_x, y)) - y * (1 - betainc(a_x, b_x, y))

    lo, hi = sps.beta.ppf([1e-12, 1 - 1e-12], a_y, b_y)
    val, _ = integrate.quad(lambda y: inner(y) * sps.beta.pdf(y, a_y, b_y), lo, hi, limit=200, epsabs=1e-14)
    return float(val)


def expected_loss(conversions_control, n_control, conversions_treatment, n_treatment, *,
                  prior_alpha: float = 1.0, prior_beta: float = 1.0) -> np.ndarray:
    """Expected absolute loss of shipping the treatment, ``E[max(p_A - p_B, 0)]`` (quadrature)."""
    xc, nc, xt, nt = np.broadcast_arrays(*(np.asarray(a, float) for a in
                                           (conversions_control, n_control, conversions_treatment, n_treatment)))
    out = np.empty(xc.shape)
    for idx in np.ndindex(xc.shape):
        out[idx] = _shortfall(prior_alpha + xc[idx], prior_beta + nc[idx] - xc[idx],
                              prior_alpha + xt[idx], prior_beta + nt[idx] - xt[idx])
    return out if out.ndim else out[()]
