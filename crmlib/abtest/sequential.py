"""Always-valid (peeking-safe) inference: an asymptotic confidence sequence.

**Which method.** The default is the asymptotic confidence sequence of Waudby-Smith, Arnold, Wu,
Howard & Ramdas ("Time-uniform central limit theory and asymptotic confidence sequences",
arXiv:2103.06476v7, eq. 9 with the mixing parameter of eq. 161 and the p-value of eq. 155), the
one GrowthBook's stats engine uses. With ``N`` units in the comparison (both arms), ``σ̂² = N·SE²``
and tuning parameter ``T`` (the total sample size at which the sequence is tightest):

    ρ² = (-2 log α + log(1 - 2 log α)) / T
    half-width = σ̂ · sqrt( 2 (N ρ² + 1) / (N² ρ²) · log( sqrt(N ρ² + 1) / α ) )
    p_seq = min(1, sqrt(N ρ² + 1) · exp( - N ρ² z² / (2 (N ρ² + 1)) )),   z = estimate / SE

The interval and the p-value are built from the same SE, so ``p_seq < α`` exactly when the sequence
excludes 0. Unlike the fixed-horizon p-value, they stay valid however often the scheduled pipeline
looks at the data (a daily re-run *is* a peek). The price is width: ~1.5-2x the fixed-horizon CI.

:func:`msprt_pvalue` (the normal-mixture mSPRT of Johari et al.) is provided for comparison.
"""

from __future__ import annotations

import numpy as np

from crmlib.params import schema_default

__all__ = ["confidence_sequence", "msprt_pvalue"]

#: default significance level: the params schema's ``ab_tests.alpha`` (one place defines it)
_ALPHA = schema_default("ab_tests.alpha")


def _rho2(alpha: float, tuning: float) -> float:
    return (-2 * np.log(alpha) + np.log(-2 * np.log(alpha) + 1)) / tuning


def confidence_sequence(
    estimate, se, n_total, *, alpha: float = _ALPHA,
    tuning: float = schema_default("ab_tests.sequential_tuning"), null: float | np.ndarray = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymptotic confidence sequence and always-valid p-value (vectorized).

    Parameters
    ----------
    estimate, se : array_like
        Point estimate and its (fixed-horizon) standard error.
    n_total : array_like
        Units in the comparison so far (both arms).
    alpha : float
        Two-sided level of the sequence.
    tuning : float
        Total sample size where the sequence is tightest (GrowthBook default 5000).
    null : float or array_like
        Value tested by the always-valid p-value.

    Returns
    -------
    low, high, p_value : ndarray
    """
    est, se, n = (np.asarray(a, float) for a in (estimate, se, n_total))
    r2 = _rho2(alpha, tuning)
    tr = n * r2 + 1.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sigma2 = se**2 * n
        half = np.sqrt(sigma2 * 2 * tr / (n**2 * r2) * np.log(np.sqrt(tr) / alpha))
        z2 = (est - null) ** 2 / se**2
        log_e = n * r2 * z2 / (2 * tr) - 0.5 * np.log(tr)
        p = np.minimum(1.0, np.exp(-log_e))
    return est - half, est + half, p


def msprt_pvalue(estimate, var_per_pair, n_per_arm, *, tau: float) -> np.ndarray:
    """Normal-mixture mSPRT always-valid p-value (Johari, Pekelis & Walsh), H0: difference = 0.

    ``var_per_pair`` is the variance of one treatment-minus-control pair (``σ_t² + σ_c²``) and ``tau``
    the mixing standard deviation of the effect. Returns ``min(1, 1/Λ)`` at the current look (the
    running minimum over looks is the always-valid p-value of a monitored test).
    """
    d, v, n = (np.asarray(a, float) for a in (estimate, var_per_pair, n_per_arm))
    t2 = tau**2
    with np.errstate(over="ignore"):
        log_lam = 0.5 * np.log(v / (v + n * t2)) + n**2 * t2 * d**2 / (2 * v * (v + n * t2))
        return np.minimum(1.0, np.exp(-log_lam))
