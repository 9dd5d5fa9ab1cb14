"""Fellegi-Sunter model fitted by EM on comparison-vector pattern counts (numpy, small aggregates).

Why not Splink's own EM: Splink fixes u at its random-pair estimate (or, with u free, fails as soon as
a level is never seen among non-matches: u = 0 is rejected). The pairs we judge are not random: they
already share an email or phone, and the non-matches among them are relatives and colleagues, who
agree on surname and city far more often than random pairs. So the mixture is fitted *within the
candidate pairs* - m, u and lambda all free - with a Dirichlet pseudo-count on every level so no
probability is ever 0 or 1 (no single field can veto or force a link). Splink still defines the
comparison levels and computes every pair's comparison vector in the database.

Convention: ``lambda`` here is the share of matches among candidate pairs (not among all pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["FellegiSunterFit", "fit_fellegi_sunter"]


@dataclass
class FellegiSunterFit:
    """Fitted two-class mixture.

    Attributes
    ----------
    m, u : dict[str, np.ndarray]
        Per comparison, probability of each level (index = comparison vector value, 0 = else) among
        matches (m) and non-matches (u).
    lambda_ : float
        Share of matches among the pairs the model was fitted on.
    iterations : int
    converged : bool
    log_likelihood : float
    """

    m: dict[str, np.ndarray]
    u: dict[str, np.ndarray]
    lambda_: float
    iterations: int
    converged: bool
    log_likelihood: float

    def match_probability(self, patterns: pd.DataFrame) -> np.ndarray:
        """Posterior match probability of each row of ``patterns`` (columns = comparison names,
        values = comparison vector values, -1 = null: that field contributes nothing)."""
        log_odds = np.full(len(patterns), np.log(self.lambda_) - np.log1p(-self.lambda_))
        for name, m in self.m.items():
            g = patterns[name].to_numpy(dtype=np.int64)
            ok = g >= 0
            log_odds[ok] += np.log(m[g[ok]]) - np.log(self.u[name][g[ok]])
        return 1.0 / (1.0 + np.exp(-log_odds))

    def summary(self) -> pd.DataFrame:
        """comparison, level (comparison vector value, 0 = else), m, u, bayes_factor."""
        rows = []
        for name in self.m:
            for level in range(len(self.m[name]) - 1, -1, -1):
                m, u = float(self.m[name][level]), float(self.u[name][level])
                rows.append({"comparison": name, "level": level, "m": m, "u": u, "bayes_factor": m / u})
        return pd.DataFrame(rows)


def fit_fellegi_sunter(
    patterns: pd.DataFrame,
    n_levels: dict[str, int],
    *,
    count_column: str = "n",
    pseudo_count: float = 1.0,
    prior_m: dict[str, np.ndarray] | None = None,
    prior_u: dict[str, np.ndarray] | None = None,
    prior_strength: float = 20.0,
    max_iterations: int = 500,
    tolerance: float = 1e-8,
    lambda_start: float = 0.5,
) -> FellegiSunterFit:
    """Fit m, u and lambda by EM on pattern counts.

    Parameters
    ----------
    patterns : DataFrame
        One row per distinct comparison vector: a column per comparison (levels ``0..L-1`` with 0 the
        weakest, ``L-1`` exact agreement; -1 = null) and ``count_column`` (how many pairs show it).
    n_levels : dict
        Number of non-null levels per comparison (the comparisons fitted, in order).
    pseudo_count : float
        Dirichlet pseudo-count added to every level of m and of u in every M step (comparisons
        without a prior).
    prior_m, prior_u : dict, optional
        Prior probabilities per level for some comparisons: their pseudo-counts are
        ``prior_strength * prior`` (a weakly informative Dirichlet prior worth ``prior_strength``
        pairs, which also gives the starting values). With thousands of candidate pairs the data
        decide; with a handful (tiny test inputs) the prior keeps the decisions sensible.
    max_iterations, tolerance : stopping rule (largest absolute change of any parameter).
    lambda_start : float
        Starting share of matches. Without a prior the starting m puts 0.9 on the top level
        (agreement) and u is uniform, so the component labelled "match" is the one that agrees.

    Returns
    -------
    FellegiSunterFit
    """
    counts = patterns[count_column].to_numpy(dtype=np.float64)
    names = list(n_levels)
    gammas = {k: patterns[k].to_numpy(dtype=np.int64) for k in names}
    m = {}
    u = {}
    alpha_m = {}
    alpha_u = {}
    for k, levels in n_levels.items():
        if prior_m is not None and k in prior_m:
            m[k] = np.asarray(prior_m[k], dtype=np.float64) / np.sum(prior_m[k])
            alpha_m[k] = prior_strength * m[k]
        else:
            start = np.full(levels, 0.1 / max(levels - 1, 1))
            start[-1] = 0.9
            m[k] = start / start.sum()
            alpha_m[k] = np.full(levels, pseudo_count)
        if prior_u is not None and k in prior_u:
            u[k] = np.asarray(prior_u[k], dtype=np.float64) / np.sum(prior_u[k])
            alpha_u[k] = prior_strength * u[k]
        else:
            u[k] = np.full(levels, 1.0 / levels)
            alpha_u[k] = np.full(levels, pseudo_count)
        if len(m[k]) != levels or len(u[k]) != levels:
            raise ValueError(f"prior for {k!r} needs {levels} levels")
    lam = lambda_start
    converged = False
    log_lik = float("nan")
    iteration = 0
    for iteration in range(1, max_iterations + 1):
        log_m = np.zeros(len(counts))
        log_u = np.zeros(len(counts))
        for k in names:
            g = gammas[k]
            ok = g >= 0
            log_m[ok] += np.log(m[k][g[ok]])
            log_u[ok] += np.log(u[k][g[ok]])
        a = np.log(lam) + log_m
        b = np.log1p(-lam) + log_u
        top = np.maximum(a, b)
        log_total = top + np.log(np.exp(a - top) + np.exp(b - top))
        w = np.exp(a - log_total)  # posterior match probability per pattern
        log_lik = float((counts * log_total).sum())
        wm = counts * w
        wu = counts * (1.0 - w)
        change = 0.0
        new_lam = float(wm.sum() / counts.sum())
        new_lam = min(max(new_lam, 1e-9), 1 - 1e-9)
        change = max(change, abs(new_lam - lam))
        lam = new_lam
        for k in names:
            g = gammas[k]
            levels = n_levels[k]
            ok = g >= 0
            mk = np.bincount(g[ok], weights=wm[ok], minlength=levels) + alpha_m[k]
            uk = np.bincount(g[ok], weights=wu[ok], minlength=levels) + alpha_u[k]
            mk, uk = mk / mk.sum(), uk / uk.sum()
            change = max(change, float(np.abs(mk - m[k]).max()), float(np.abs(uk - u[k]).max()))
            m[k], u[k] = mk, uk
        if change < tolerance:
            converged = True
            break
    return FellegiSunterFit(m=m, u=u, lambda_=lam, iterations=iteration, converged=converged,
                            log_likelihood=log_lik)
