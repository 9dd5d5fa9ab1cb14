"""CUPED (Deng et al. 2013) from sufficient statistics, with a pooled θ and a pre-period balance check.

For a metric ``y`` and its pre-period value ``x`` (the same metric over the same window length before
assignment), ``θ = Cov(x, y) / Var(x)`` is estimated on **both arms pooled** (ignoring the arm, so θ
cannot depend on the treatment). Each arm's adjusted mean is ``ȳ_a - θ (x̄_a - x̄)`` with per-unit
variance ``Var(y) + θ² Var(x) - 2θ Cov(x, y)`` (within-arm, ddof=1). The comparison then runs through
the same core as the unadjusted test (same SE for p-value and CI; relative lift on the adjusted means
by the delta method, so the control-mean noise is included).

The unadjusted result is always returned beside the adjusted one, together with a Welch test of the
pre-period means (the balance check: a small p-value there means the arms differed before the
experiment started, and both results deserve suspicion).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crmlib.i18n import N_
from crmlib.params import schema_default

from .stats import TwoSampleResult, compare_means, welch_test

__all__ = ["CupedResult", "cuped_test"]

#: default significance level: the params schema's ``ab_tests.alpha`` (one place defines it)
_ALPHA = schema_default("ab_tests.alpha")


@dataclass
class CupedResult:
    """CUPED-adjusted comparison next to the unadjusted one.

    Unpacks to the adjusted ``(statistic, pvalue)``.

    Attributes
    ----------
    adjusted, unadjusted : TwoSampleResult
    balance : TwoSampleResult
        Welch test of the pre-period covariate between arms.
    theta : ndarray
        Pooled θ.
    variance_reduction : ndarray
        ``1 - Var_adj / Var_unadj`` of the lift estimate.
    """

    adjusted: TwoSampleResult
    unadjusted: TwoSampleResult
    balance: TwoSampleResult
    theta: np.ndarray
    variance_reduction: np.ndarray

    def __iter__(self):
        yield self.adjusted.statistic
        yield self.adjusted.pvalue

    @property
    def balance_pvalue(self) -> np.ndarray:
        return self.balance.pvalue

    def __repr__(self) -> str:
        if np.ndim(self.adjusted.pvalue) == 0:
            return (f"CupedResult(theta={float(self.theta):.5g}, adjusted_lift={float(self.adjusted.abs_lift):.5g}, "
                    f"pvalue={float(self.adjusted.pvalue):.5g}, unadjusted_pvalue={float(self.unadjusted.pvalue):.5g}, "
                    f"variance_reduction={float(self.variance_reduction):.3f}, "
                    f"balance_pvalue={float(self.balance.pvalue):.4g})")
        return f"CupedResult({np.size(self.adjusted.pvalue)} comparisons)"


def _arm(d: dict):
    n = np.asarray(d["n"], float)
    sy, syy = np.asarray(d["sum_y"], float), np.asarray(d["sum_y2"], float)
    sx, sxx = np.asarray(d["sum_x"], float), np.asarray(d["sum_x2"], float)
    sxy = np.asarray(d["sum_xy"], float)
    return n, sy, syy, sx, sxx, sxy


def cuped_test(control: dict, treatment: dict, *, alpha: float = _ALPHA, test: str = "welch") -> CupedResult:
    """CUPED comparison from per-arm sums.

    Parameters
    ----------
    control, treatment : dict
        Keys ``n, sum_y, sum_y2, sum_x, sum_x2, sum_xy`` (scalars or arrays of equal shape).
    alpha : float
        Two-sided level.
    test : {"welch", "z"}
        Reference distribution (Welch df on the adjusted variances).

    Returns
    -------
    CupedResult
    """
    nc, syc, syyc, sxc, sxxc, sxyc = _arm(control)
    nt, syt, syyt, sxt, sxxt, sxyt = _arm(treatment)
    with np.errstate(divide="ignore", invalid="ignore"):
        # pooled over both arms, ignoring the arm label (Deng et al.; GrowthBook; spotify)
        n = nc + nt
        sx, sy = sxc + sxt, syc + syt
        cov_pooled = (sxyc + sxyt - sx * sy / n) / (n - 1)
        var_x_pooled = (sxxc + sxxt - sx * sx / n) / (n - 1)
        theta = np.where(var_x_pooled > 0, cov_pooled / var_x_pooled, 0.0)
        x_bar = sx / n

        def adjusted(nn, sy_, syy_, sx_, sxx_, sxy_):
            my, mx = sy_ / nn, sx_ / nn
            vy = (syy_ - sy_ * my) / (nn - 1)
            vx = (sxx_ - sx_ * mx) / (nn - 1)
            cxy = (sxy_ - sx_ * my) / (nn - 1)
            v = np.maximum(vy + theta**2 * vx - 2 * theta * cxy, 0.0)
            return my - theta * (mx - x_bar), v / nn

        mc, vmc = adjusted(nc, syc, syyc, sxc, sxxc, sxyc)
        mt, vmt = adjusted(nt, syt, syyt, sxt, sxxt, sxyt)
    adj = compare_means(nc, mc, vmc, nt, mt, vmt, alpha=alpha, test=test,
                        label=N_("CUPED (pooled theta, adjusted means), sample variance (ddof=1)"))
    unadj = welch_test(nc, syc, syyc, nt, syt, syyt, alpha=alpha, test=test, binary=False)
    balance = welch_test(nc, sxc, sxxc, nt, sxt, sxxt, alpha=alpha, test=test, binary=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        vr = 1.0 - adj.se**2 / unadj.se**2
    adj.extra["theta"] = theta
    return CupedResult(adjusted=adj, unadjusted=unadj, balance=balance, theta=theta, variance_reduction=vr)
