"""Two-sample comparisons from sufficient statistics, vectorized over many comparisons at once.

Every function here takes per-arm sums (``n``, ``Σy``, ``Σy²`` ...) as scalars or numpy arrays of the
same shape, one element per comparison, and returns a :class:`TwoSampleResult` whose fields are
arrays of that shape. Nothing loops in Python over comparisons.

Conventions (stated once here, repeated in every result's ``method`` string)
--------------------------------------------------------------------------
* **Lift** is treatment minus control (absolute) and ``treatment / control - 1`` (relative).
* **Default test: Welch (unpooled) t with Satterthwaite degrees of freedom.** ``test="z"`` gives the
  unpooled (Wald) z test instead. For the sample sizes of online experiments the two agree to
  about 1e-5 in the p-value; Welch is the default because it stays honest for small arms.
* **One standard error per result.** The p-value and the absolute CI come from the same SE and the
  same reference distribution, so "CI excludes 0" holds exactly when ``p < alpha``.
* **Variances.** Continuous metrics use the sample variance (ddof=1). Binary metrics (0/1 values,
  detected from ``Σy² == Σy`` or passed as ``binary=True``) use the Bernoulli variance ``p(1-p)``,
  as statsmodels' Wald test and GrowthBook do.
* **Relative lift CI: delta method** (``Var(r) = V_t/m_c² + m_t² V_c/m_c⁴``), with the same critical
  value as the absolute CI. The Fieller interval is returned beside it; ``fieller_unbounded`` flags
  comparisons where the control mean is too noisy for a bounded interval (``m_c² <= crit² V_c``).
  The relative CI is never the absolute CI divided by the control mean (that ignores control noise).
  Note the delta-method relative CI rests on its own SE, so near the boundary it can disagree with
  the absolute p-value; the Fieller interval contains 0 exactly when the absolute test does not
  reject (same critical value), which is why it is offered.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd
from scipy import stats as sps

from crmlib.i18n import N_
from crmlib.params import schema_default

__all__ = [
    "TwoSampleResult",
    "moments_from_sums",
    "compare_means",
    "welch_test",
    "proportion_test",
    "relative_ci_delta",
    "fieller_interval",
    "non_inferiority_test",
    "proportion_confint",
    "welch_df",
]

#: default significance level: the params schema's ``ab_tests.alpha`` (one place defines it)
_ALPHA = schema_default("ab_tests.alpha")

_TESTS = ("welch", "z")


@dataclass
class TwoSampleResult:
    """Result of one or many two-sample comparisons (treatment vs control).

    Unpacks to ``(statistic, pvalue)`` like a statsmodels/scipy result. Every numeric field is a
    numpy array with one element per comparison (0-d for a single comparison).

    Attributes
    ----------
    statistic, pvalue : ndarray
        Test statistic (t or z) and two-sided p-value of H0: no difference.
    df : ndarray
        Degrees of freedom of the t reference (``inf`` for z).
    n_control, n_treatment, mean_control, mean_treatment : ndarray
        Units and (possibly adjusted) means per arm.
    abs_lift, se, abs_ci_low, abs_ci_high : ndarray
        Absolute lift, its standard error, and the CI built from that SE.
    rel_lift, rel_se, rel_ci_low, rel_ci_high : ndarray
        Relative lift with its delta-method SE and CI.
    fieller_low, fieller_high, fieller_unbounded : ndarray
        Fieller CI for the relative lift; NaN and ``True`` where it is unbounded.
    var_mean_control, var_mean_treatment : ndarray
        Variances of the arm means (what the SE is built from).
    alpha : float
        Two-sided level of the CIs.
    method : str
        The convention: test, variance, scale, CI construction.
    """

    statistic: np.ndarray
    pvalue: np.ndarray
    df: np.ndarray
    n_control: np.ndarray
    n_treatment: np.ndarray
    mean_control: np.ndarray
    mean_treatment: np.ndarray
    abs_lift: np.ndarray
    se: np.ndarray
    abs_ci_low: np.ndarray
    abs_ci_high: np.ndarray
    rel_lift: np.ndarray
    rel_se: np.ndarray
    rel_ci_low: np.ndarray
    rel_ci_high: np.ndarray
    fieller_low: np.ndarray
    fieller_high: np.ndarray
    fieller_unbounded: np.ndarray
    var_mean_control: np.ndarray
    var_mean_treatment: np.ndarray
    alpha: float = _ALPHA
    method: str = ""
    extra: dict = field(default_factory=dict)

    def __iter__(self):
        yield self.statistic
        yield self.pvalue

    @property
    def ci(self) -> tuple[np.ndarray, np.ndarray]:
        """Absolute-lift CI ``(low, high)``."""
        return self.abs_ci_low, self.abs_ci_high

    @property
    def rel_ci(self) -> tuple[np.ndarray, np.ndarray]:
        """Relative-lift CI ``(low, high)`` (delta method)."""
        return self.rel_ci_low, self.rel_ci_high

    def to_frame(self) -> pd.DataFrame:
        """One row per comparison, one column per numeric field, plus ``method``."""
        cols = {}
        for f in fields(self):
            if f.name in ("alpha", "method", "extra"):
                continue
            cols[f.name] = np.atleast_1d(getattr(self, f.name))
        for k, v in self.extra.items():
            cols[k] = np.broadcast_to(np.atleast_1d(v), np.atleast_1d(self.pvalue).shape)
        out = pd.DataFrame(cols)
        out["method"] = self.method
        return out

    def __repr__(self) -> str:
        if np.ndim(self.pvalue) == 0:
            return (
                f"TwoSampleResult(statistic={float(self.statistic):.5g}, pvalue={float(self.pvalue):.5g}, "
                f"abs_lift={float(self.abs_lift):.5g} [{float(self.abs_ci_low):.5g}, "
                f"{float(self.abs_ci_high):.5g}], rel_lift={float(self.rel_lift):.5g} "
                f"[{float(self.rel_ci_low):.5g}, {float(self.rel_ci_high):.5g}], "
                f"n=({float(self.n_control):.0f}, {float(self.n_treatment):.0f}), method={self.method!r})"
            )
        return f"TwoSampleResult({np.size(self.pvalue)} comparisons, method={self.method!r})"


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype=float)


def moments_from_sums(n, sum_y, sum_y2, *, binary: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Mean and per-unit variance from ``(n, Σy, Σy²)``.

    Parameters
    ----------
    n, sum_y, sum_y2 : array_like
        Units, sum and sum of squares.
    binary : bool
        ``True``: Bernoulli variance ``p(1-p)``; ``False``: sample variance with ddof=1.

    Returns
    -------
    mean, variance : ndarray
    """
    n, sum_y, sum_y2 = _arr(n), _arr(sum_y), _arr(sum_y2)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = sum_y / n
        if binary:
            var = mean * (1.0 - mean)
        else:
            # max(., 0) guards against tiny negative values from floating-point cancellation
            var = np.maximum(sum_y2 - sum_y * mean, 0.0) / (n - 1.0)
    return mean, var


def welch_df(var_mean_control, n_control, var_mean_treatment, n_treatment) -> np.ndarray:
    """Satterthwaite degrees of freedom from the variances of the two arm means."""
    vc, vt = _arr(var_mean_control), _arr(var_mean_treatment)
    nc, nt = _arr(n_control), _arr(n_treatment)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (vc + vt) ** 2 / (vc**2 / (nc - 1.0) + vt**2 / (nt - 1.0))


def _critical(alpha: float, df: np.ndarray) -> np.ndarray:
    return np.where(np.isinf(df), sps.norm.isf(alpha / 2), sps.t.isf(alpha / 2, np.where(np.isinf(df), 1.0, df)))


def _two_sided_p(stat: np.ndarray, df: np.ndarray) -> np.ndarray:
    # t.sf with df=inf is not the normal in every scipy version; branch explicitly
    return np.where(
        np.isinf(df), 2 * sps.norm.sf(np.abs(stat)), 2 * sps.t.sf(np.abs(stat), np.where(np.isinf(df), 1.0, df))
    )


def relative_ci_delta(mean_c, var_mean_c, mean_t, var_mean_t, crit) -> tuple[np.ndarray, ...]:
    """Relative lift ``m_t/m_c - 1``, its delta-method SE and CI ``rel ± crit·SE``.

    ``var_mean_*`` are variances *of the means*; the arms are independent.
    """
    mc, vc, mt, vt = _arr(mean_c), _arr(var_mean_c), _arr(mean_t), _arr(var_mean_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = mt / mc - 1.0
        se = np.sqrt(vt / mc**2 + mt**2 * vc / mc**4)
    return rel, se, rel - crit * se, rel + crit * se


def fieller_interval(mean_c, var_mean_c, mean_t, var_mean_t, crit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fieller CI for the relative lift ``m_t/m_c - 1`` (independent arms).

    Returns ``(low, high, unbounded)``; ``low``/``high`` are NaN where ``unbounded`` is True, i.e. where
    the control mean is not significantly different from zero (``m_c² <= crit² V_c``) and no bounded
    interval exists.
    """
    mc, vc, mt, vt = _arr(mean_c), _arr(var_mean_c), _arr(mean_t), _arr(var_mean_t)
    crit = _arr(crit)
    a = mc**2 - crit**2 * vc
    b = -2.0 * mt * mc
    c = mt**2 - crit**2 * vt
    disc = b * b - 4 * a * c
    unbounded = (a <= 0) | (disc < 0) | ~np.isfinite(disc)
    with np.errstate(divide="ignore", invalid="ignore"):
        sq = np.sqrt(np.where(unbounded, np.nan, disc))
        r1 = (-b - sq) / (2 * a) - 1.0
        r2 = (-b + sq) / (2 * a) - 1.0
    return np.where(unbounded, np.nan, r1), np.where(unbounded, np.nan, r2), unbounded


def compare_means(
    n_control,
    mean_control,
    var_mean_control,
    n_treatment,
    mean_treatment,
    var_mean_treatment,
    *,
    alpha: float = _ALPHA,
    test: str = "welch",
    label: str = "",
) -> TwoSampleResult:
    """The shared core: compare two arm means given the variances of those means.

    Used by the plain, ratio (delta method) and CUPED comparisons so that all of them build their
    p-value and CI from one SE.

    Parameters
    ----------
    n_control, n_treatment : array_like
        Units per arm (for the Welch degrees of freedom).
    mean_control, mean_treatment : array_like
        Arm means (or ratios / adjusted means).
    var_mean_control, var_mean_treatment : array_like
        Variances of those means.
    alpha : float
        Two-sided level.
    test : {"welch", "z"}
        Welch t with Satterthwaite df (default) or unpooled z.
    label : str
        Prefix for the ``method`` string (variance and metric convention).
    """
    if test not in _TESTS:
        raise ValueError(f"test must be one of {_TESTS}, got {test!r}")
    nc, nt = _arr(n_control), _arr(n_treatment)
    mc, mt = _arr(mean_control), _arr(mean_treatment)
    vc, vt = _arr(var_mean_control), _arr(var_mean_treatment)
    diff = mt - mc
    se = np.sqrt(vc + vt)
    if test == "welch":
        df = welch_df(vc, nc, vt, nt)
        df = np.where(np.isfinite(df), df, np.inf)
    else:
        df = np.full(np.broadcast(diff, se).shape, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = diff / se
    p = _two_sided_p(stat, df)
    crit = _critical(alpha, df)
    rel, rel_se, rel_lo, rel_hi = relative_ci_delta(mc, vc, mt, vt, crit)
    f_lo, f_hi, f_unb = fieller_interval(mc, vc, mt, vt, crit)
    # the method text is stored in English, one "; "-separated part per convention; each part is a catalog
    # message, so the page can show it in the report's language (crmlib.abtest.analysis.method_text)
    test_name = N_("Welch t (Satterthwaite df), unpooled SE") if test == "welch" else N_("unpooled z, unpooled SE")
    method = "; ".join([*([label] if label else []), test_name, N_("abs CI from same SE"), N_("rel CI delta method")])
    return TwoSampleResult(
        statistic=stat, pvalue=p, df=df, n_control=nc, n_treatment=nt, mean_control=mc, mean_treatment=mt,
        abs_lift=diff, se=se, abs_ci_low=diff - crit * se, abs_ci_high=diff + crit * se,
        rel_lift=rel, rel_se=rel_se, rel_ci_low=rel_lo, rel_ci_high=rel_hi,
        fieller_low=f_lo, fieller_high=f_hi, fieller_unbounded=f_unb,
        var_mean_control=vc, var_mean_treatment=vt, alpha=alpha, method=method,
    )


def _is_binary(sum_y, sum_y2) -> bool:
    return bool(np.allclose(_arr(sum_y), _arr(sum_y2), rtol=1e-12, atol=1e-9))


def welch_test(
    n_control,
    sum_control,
    sum_sq_control,
    n_treatment,
    sum_treatment,
    sum_sq_treatment,
    *,
    alpha: float = _ALPHA,
    test: str = "welch",
    binary: bool | None = None,
) -> TwoSampleResult:
    """Two-sample test of means from per-arm ``(n, Σy, Σy²)``.

    Parameters
    ----------
    n_control, sum_control, sum_sq_control : array_like
        Control arm sufficient statistics.
    n_treatment, sum_treatment, sum_sq_treatment : array_like
        Treatment arm sufficient statistics.
    alpha : float
        Two-sided level of the CIs.
    test : {"welch", "z"}
        Welch t with Satterthwaite df (default) or unpooled z.
    binary : bool, optional
        Bernoulli variance ``p(1-p)``. ``None`` detects it from ``Σy² == Σy`` in both arms.

    Returns
    -------
    TwoSampleResult

    Examples
    --------
    >>> r = welch_test(4000, 208000.0, 59203900.0, 4100, 235750.0, 77602500.0)
    >>> round(float(r.pvalue), 6)
    0.035445
    """
    if binary is None:
        binary = _is_binary(sum_control, sum_sq_control) and _is_binary(sum_treatment, sum_sq_treatment)
    mc, vc = moments_from_sums(n_control, sum_control, sum_sq_control, binary=binary)
    mt, vt = moments_from_sums(n_treatment, sum_treatment, sum_sq_treatment, binary=binary)
    nc, nt = _arr(n_control), _arr(n_treatment)
    label = N_("binary metric, Bernoulli variance p(1-p)") if binary else N_("mean metric, sample variance (ddof=1)")
    return compare_means(nc, mc, vc / nc, nt, mt, vt / nt, alpha=alpha, test=test, label=label)


def proportion_test(
    conversions_control, n_control, conversions_treatment, n_treatment, *, alpha: float = _ALPHA, test: str = "welch"
) -> TwoSampleResult:
    """Two-proportion comparison (binary metric: ``Σy² = Σy``), unpooled SE.

    ``test="z"`` equals statsmodels ``test_proportions_2indep(method="wald")``; the default Welch t
    differs from it only through the t reference distribution.
    """
    return welch_test(
        n_control, conversions_control, conversions_control, n_treatment, conversions_treatment,
        conversions_treatment, alpha=alpha, test=test, binary=True,
    )


def non_inferiority_test(result: TwoSampleResult, margin, *, alpha: float | None = None) -> dict[str, np.ndarray]:
    """One-sided non-inferiority test (higher is better) on a :class:`TwoSampleResult`.

    H0: ``lift <= -margin · mean_control`` vs H1: ``lift > -margin · mean_control``; ``margin`` is
    relative to the control mean, which is treated as fixed (spotify-confidence / statsmodels
    ``value=`` convention). Uses the result's own SE and reference distribution.

    Returns
    -------
    dict
        ``margin_abs``, ``statistic``, ``pvalue`` (one-sided), ``lower_bound`` (one-sided
        ``1 - alpha`` bound of the lift), ``non_inferior`` (``pvalue < alpha``).
    """
    alpha = result.alpha if alpha is None else alpha
    margin_abs = _arr(margin) * result.mean_control
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = (result.abs_lift + margin_abs) / result.se
    df = result.df
    p = np.where(np.isinf(df), sps.norm.sf(stat), sps.t.sf(stat, np.where(np.isinf(df), 1.0, df)))
    crit = np.where(np.isinf(df), sps.norm.isf(alpha), sps.t.isf(alpha, np.where(np.isinf(df), 1.0, df)))
    lower = result.abs_lift - crit * result.se
    return {"margin_abs": margin_abs, "statistic": stat, "pvalue": p, "lower_bound": lower, "non_inferior": p < alpha}


def proportion_confint(count, nobs, *, alpha: float = _ALPHA, method: str = "wilson") -> tuple[np.ndarray, np.ndarray]:
    """Single-arm CI for a conversion rate (vectorized).

    ``method="wilson"`` (default; stays sensible at 0 conversions) or ``"jeffreys"``.
    """
    x, n = _arr(count), _arr(nobs)
    z = sps.norm.isf(alpha / 2)
    if method == "wilson":
        p = x / n
        denom = 1 + z**2 / n
        center = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
        return np.clip(center - half, 0, 1), np.clip(center + half, 0, 1)
    if method == "jeffreys":
        lo = np.where(x > 0, sps.beta.ppf(alpha / 2, x + 0.5, n - x + 0.5), 0.0)
        hi = np.where(x < n, sps.beta.ppf(1 - alpha / 2, x + 0.5, n - x + 0.5), 1.0)
        return lo, hi
    raise ValueError(f"method must be 'wilson' or 'jeffreys', got {method!r}")
