"""Shared maximum-likelihood machinery for the CLV fitters (log-parameter space, Hessian SEs).

Conventions used by every fitter built on :func:`fit_log_params`:

* the optimiser works on ``theta = log(params)`` so every parameter stays positive;
* the objective is the weighted *mean* negative log-likelihood (better conditioned than the total)
  plus an optional ``penalizer_coef * sum(params**2)`` on the natural scale (lifetimes' form; 0 by default);
* after BFGS a few Newton steps with a numerical Hessian polish the optimum so the gradient of the
  *total* log-likelihood is ~0 (estimates reproducible to many digits);
* standard errors come from the numerical Hessian (central differences of the analytic gradient;
  forward differences when the data have > 100k distinct patterns) of
  the total negative log-likelihood at the optimum, in log space, and are mapped to the natural scale
  by the delta method: ``se(param) = param * se(log param)``. Confidence bounds are
  ``exp(log param +/- z se(log param))`` (log-scale Wald bounds: always positive).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

from crmlib.i18n import _
from crmlib.present import fmt_number
from crmlib.status import CannotCompute

__all__ = ["BaseFitter", "ConvergenceReport", "MLEResult", "fit_log_params", "fit_warm_started", "numerical_hessian",
           "require_convergence"]


@dataclass
class ConvergenceReport:
    """How the optimiser ended.

    ``gradient_norm`` is the max-abs gradient of the *total* negative log-likelihood with respect to
    the log-parameters at the reported optimum.
    """

    success: bool
    iterations: int
    function_evaluations: int
    gradient_norm: float
    message: str
    method: str = "BFGS + Newton polish, log-parameter space"
    hessian_positive_definite: bool = True

    def __repr__(self) -> str:
        return (
            f"ConvergenceReport(success={self.success}, iterations={self.iterations}, "
            f"gradient_norm={self.gradient_norm:.2e}, message={self.message!r})"
        )


@dataclass
class MLEResult:
    params: np.ndarray
    log_params: np.ndarray
    log_likelihood: float  # total, unpenalised
    hessian_log: np.ndarray  # of the total negative log-likelihood (incl. penalty) wrt log-params
    convergence: ConvergenceReport
    extra: dict = field(default_factory=dict)


def numerical_hessian(
    grad: Callable[[np.ndarray], np.ndarray], x: np.ndarray, scheme: str = "central", g0: np.ndarray | None = None
) -> np.ndarray:
    """Symmetrised finite-difference Jacobian of an analytic gradient.

    ``central``: steps 1e-5 (truncation error ~1e-10 relative); ``forward``: steps 1e-6 from ``g0``
    (half the gradient evaluations, error ~1e-6 relative: used when one evaluation is costly).
    """
    x = np.asarray(x, dtype=float)
    k = x.size
    hess = np.empty((k, k))
    if scheme == "forward" and g0 is None:
        g0 = grad(x)
    for i in range(k):
        h = (1e-5 if scheme == "central" else 1e-6) * max(1.0, abs(x[i]))
        up = x.copy()
        up[i] += h
        if scheme == "central":
            dn = x.copy()
            dn[i] -= h
            hess[:, i] = (grad(up) - grad(dn)) / (2.0 * h)
        else:
            hess[:, i] = (grad(up) - g0) / h
    return 0.5 * (hess + hess.T)


def fit_log_params(
    nll_and_grad_total: Callable[[np.ndarray], tuple[float, np.ndarray]],
    theta0: np.ndarray,
    n_weight: float,
    penalizer_coef: float = 0.0,
    gtol: float = 1e-9,
    maxiter: int = 2000,
    hess_inv0: np.ndarray | None = None,
    hessian_scheme: str = "central",
) -> MLEResult:
    """Minimise a total negative log-likelihood over log-parameters.

    Parameters
    ----------
    nll_and_grad_total : callable
        ``theta -> (total negative log-lik, gradient wrt theta)``, unpenalised.
    theta0 : ndarray
        Starting log-parameters.
    n_weight : float
        Number of customers (sum of weights); the objective is divided by it.
    penalizer_coef : float
        L2 penalty on the natural-scale parameters added to the mean negative log-likelihood.
    hess_inv0 : ndarray, optional
        Starting inverse Hessian for BFGS (of the mean objective), e.g. from a fit on a subsample.
    """

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            nll, grad = nll_and_grad_total(theta)
        params = np.exp(theta)
        val = nll / n_weight + penalizer_coef * float(np.sum(params**2))
        g = grad / n_weight + penalizer_coef * 2.0 * params**2
        if not np.isfinite(val) or not np.all(np.isfinite(g)):
            return 1e100, np.zeros_like(theta)
        return float(val), g

    options = {"gtol": gtol, "maxiter": maxiter}
    if hess_inv0 is not None:
        options["hess_inv0"] = hess_inv0
    res = optimize.minimize(objective, np.asarray(theta0, float), jac=True, method="BFGS", options=options)
    theta = res.x.copy()
    iterations = int(res.nit)
    nfev = int(res.nfev)

    def grad_only(t: np.ndarray) -> np.ndarray:
        return objective(t)[1]

    # Newton polish: BFGS stops on a mean-scale gradient; a million customers need a tighter optimum.
    val, g = float(res.fun), np.asarray(res.jac, dtype=float)
    evals_per_hessian = theta.size * (2 if hessian_scheme == "central" else 1)
    hess = numerical_hessian(grad_only, theta, hessian_scheme, g0=g)
    nfev += evals_per_hessian
    for _attempt in range(8):
        if np.max(np.abs(g)) * n_weight < 1e-7:
            break
        try:
            step = np.linalg.solve(hess, g)
        except np.linalg.LinAlgError:
            break
        new = theta - step
        new_val, new_g = objective(new)
        nfev += 1
        # Near the optimum the mean objective is flat to rounding (a decrease of ~g H^-1 g ~ 1e-17), so
        # a step is accepted when the value does not rise beyond rounding and the gradient shrinks.
        if not (new_val <= val + 1e-12 * max(1.0, abs(val)) and np.max(np.abs(new_g)) < np.max(np.abs(g))):
            break
        moved = float(np.max(np.abs(new - theta)))
        theta, val, g = new, new_val, new_g
        iterations += 1
        # A step this small leaves the Hessian unchanged to ~1e-7 relative; skip the 2k evaluations.
        if moved > 1e-6:
            hess = numerical_hessian(grad_only, theta, hessian_scheme, g0=g)
            nfev += evals_per_hessian

    total_nll = (val - penalizer_coef * float(np.sum(np.exp(theta) ** 2))) * n_weight
    hess_total = hess * n_weight
    eig = np.linalg.eigvalsh(hess_total)
    pd_ok = bool(np.all(eig > 0))
    grad_norm = float(np.max(np.abs(g)) * n_weight)
    success = bool(np.isfinite(total_nll) and pd_ok and grad_norm < 1e-3)
    message = f"BFGS: {res.message} ({int(res.nit)} iterations); Newton polish: {iterations - int(res.nit)} steps"
    if not pd_ok:
        message += " | Hessian not positive definite at the optimum (standard errors unreliable)"
    conv = ConvergenceReport(
        success=success,
        iterations=iterations,
        function_evaluations=nfev,
        gradient_norm=grad_norm,
        message=message,
        hessian_positive_definite=pd_ok,
    )
    return MLEResult(
        params=np.exp(theta),
        log_params=theta,
        log_likelihood=-float(total_nll),
        hessian_log=hess_total,
        convergence=conv,
    )


def require_convergence(result: MLEResult, model: str, data_size: str) -> None:
    """Raise :class:`~crmlib.status.CannotCompute` unless the fit reached a proper maximum.

    A maximum-likelihood fit that does not converge, or stops where the Hessian is not positive
    definite, has parameters the data do not pin down (typically running off to a boundary on a few
    customers); its predictions would be arbitrary numbers, so the model step is reported as not computed.
    """
    conv = result.convergence
    finite = bool(np.all(np.isfinite(result.params)) and np.isfinite(result.log_likelihood))
    if conv.success and finite:
        return
    why = (_("the parameters are not finite") if not finite else
           _("the likelihood has no proper maximum (Hessian not positive definite)")
           if not conv.hessian_positive_definite else
           _("the optimiser stopped with gradient norm {norm}").format(norm=fmt_number(conv.gradient_norm)))
    raise CannotCompute(_(
        "{model} did not converge on this data ({data_size}): {why}, so its parameters are not pinned "
        "down. More customers or a longer order history would fix it; a small segmentation.clv.penalizer_coef "
        "(e.g. 0.001) can stabilise a small data set.").format(model=model, data_size=data_size, why=why))


def summary_frame(names: list[str], result: MLEResult, level: float = 0.95) -> pd.DataFrame:
    """Coefficient table: estimate, delta-method SE, log-scale Wald bounds, SE of log-parameter."""
    try:
        cov_log = np.linalg.inv(result.hessian_log)
        se_log = np.sqrt(np.clip(np.diag(cov_log), 0, None))
    except np.linalg.LinAlgError:
        se_log = np.full(len(names), np.nan)
    z = stats.norm.ppf(0.5 + level / 2)
    pct = int(round(level * 100))
    return pd.DataFrame(
        {
            "coef": result.params,
            "se(coef)": result.params * se_log,
            f"lower {pct}% bound": np.exp(result.log_params - z * se_log),
            f"upper {pct}% bound": np.exp(result.log_params + z * se_log),
            "se(log coef)": se_log,
        },
        index=pd.Index(names, name="param"),
    )


@dataclass
class Patterns:
    """Distinct rows of some columns: values per pattern, each column's sorted distinct values and
    the code (index into them) of every pattern, and the summed weight of every pattern."""

    values: dict[str, np.ndarray]
    codes: dict[str, np.ndarray]
    uniques: dict[str, np.ndarray]
    weights: np.ndarray


def compress_patterns(columns: dict[str, np.ndarray], weights: np.ndarray | None) -> Patterns:
    """Collapse identical rows into distinct patterns with summed weights (hash-based, no sort of rows)."""
    codes, uniques = [], []
    for values in columns.values():
        values = np.asarray(values)
        lo, hi = (values.min(), values.max()) if values.size else (0, 0)
        if values.size and lo >= 0 and hi < 100_000 and np.array_equal(values, np.floor(values)):
            # Counts: the value is its own code (no hashing).
            codes.append(values.astype(np.int64))
            uniques.append(np.arange(int(hi) + 1, dtype=values.dtype))
        else:
            code, uniq = pd.factorize(values, sort=False)
            codes.append(code)
            uniques.append(np.asarray(uniq))
    sizes = [u.size for u in uniques]
    if float(np.prod(np.array(sizes, dtype=float))) >= 2.0**62:
        raise ValueError("too many distinct values to compress")
    key = codes[0].astype(np.int64)
    for code, size in zip(codes[1:], sizes[1:]):
        key *= size
        key += code
    pattern_of_row, pattern_keys = pd.factorize(key, size_hint=key.size)
    if weights is None:
        pattern_w = np.bincount(pattern_of_row, minlength=pattern_keys.size).astype(float)
    else:
        pattern_w = np.bincount(
            pattern_of_row, weights=np.asarray(weights, dtype=float).ravel(), minlength=pattern_keys.size
        )
    rest = np.asarray(pattern_keys, dtype=np.int64)
    pattern_codes: list[np.ndarray] = [rest] * len(sizes)
    for i in range(len(sizes) - 1, 0, -1):
        rest, pattern_codes[i] = np.divmod(rest, sizes[i])
    pattern_codes[0] = rest
    names = list(columns)
    return Patterns(
        values={n: uniques[i][pattern_codes[i]] for i, n in enumerate(names)},
        codes={n: pattern_codes[i] for i, n in enumerate(names)},
        uniques={n: uniques[i] for i, n in enumerate(names)},
        weights=pattern_w,
    )


def warm_start_weights(weights: np.ndarray, target: int = 50_000, seed: int = 0) -> np.ndarray | None:
    """Thinned pattern weights for a warm-start fit on about ``target`` customers, or None when the
    data are small enough to fit directly. Binomial thinning for whole-number weights, else Poisson."""
    total = float(weights.sum())
    if total <= 4 * target or weights.size <= 20_000:
        return None
    frac = target / total
    rng = np.random.default_rng(seed)
    if np.all(weights == np.round(weights)):
        return rng.binomial(weights.astype(np.int64), frac).astype(float)
    return rng.poisson(weights * frac).astype(float)


def fit_warm_started(
    nll_and_grad: Callable[[np.ndarray, object], tuple[float, np.ndarray]],
    data: object,
    prepare: Callable[..., object],
    patterns: Patterns,
    init: np.ndarray,
    *,
    penalizer_coef: float,
) -> MLEResult:
    """Fit on all patterns, warm-started on large data from a seeded ~50k-customer thinning.

    ``data`` is ``prepare(patterns)``, the model's data object (with ``.n``, the customer count);
    ``prepare(patterns, weights)`` builds the thinned one; ``nll_and_grad(theta, data)`` is the negative
    log-likelihood and gradient. The thinning only picks the starting point and inverse Hessian: the
    final estimate is the full-data MLE either way.
    """
    hess_inv0 = None
    thinned = warm_start_weights(patterns.weights)
    if thinned is not None:
        sub = prepare(patterns, thinned)
        warm = fit_log_params(lambda t: nll_and_grad(t, sub), init, n_weight=sub.n, penalizer_coef=penalizer_coef)
        if warm.convergence.hessian_positive_definite:
            init = warm.log_params
            hess_inv0 = np.linalg.inv(warm.hessian_log / sub.n)
            hess_inv0 = 0.5 * (hess_inv0 + hess_inv0.T)
    return fit_log_params(
        lambda t: nll_and_grad(t, data),
        init,
        n_weight=data.n,
        penalizer_coef=penalizer_coef,
        hess_inv0=hess_inv0,
        hessian_scheme="forward" if patterns.weights.size > 100_000 else "central",
    )


class BaseFitter:
    """What the maximum-likelihood fitters share: storing a fit and refusing to predict before one.

    Subclasses set ``PARAM_NAMES`` and call :meth:`_store_fit` at the end of ``fit()``.
    """

    PARAM_NAMES: tuple[str, ...] = ()

    def _store_fit(self, result: MLEResult, *, n_customers: float, n_patterns: int, started: float) -> None:
        names = list(self.PARAM_NAMES)
        self._result = result
        self.params_ = pd.Series(result.params, index=names, name="estimate")
        self.log_likelihood_ = result.log_likelihood
        self.convergence_: ConvergenceReport = result.convergence
        self.summary = summary_frame(names, result)
        self.n_customers_ = int(round(n_customers))
        self.n_patterns_ = int(n_patterns)
        self.fit_seconds_ = time.perf_counter() - started

    def _check_fitted(self) -> np.ndarray:
        if not hasattr(self, "params_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        return self.params_.to_numpy()
