"""Sample-ratio mismatch (SRM): Pearson chi-square of observed arm sizes against the designed weights.

An experiment whose p-value is below ``threshold`` (0.001, the GrowthBook/Eppo/Statsig/Kohavi
convention) is **blocked**: its split is broken, so no effect estimate from it can be trusted and no
verdict is given. The largest absolute deviation of an arm's share from its designed share is
reported next to the p-value, so trivial imbalances at huge n can be judged by size too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

__all__ = ["SRMResult", "srm_test", "SRM_THRESHOLD"]

SRM_THRESHOLD = 0.001


@dataclass
class SRMResult:
    """Chi-square goodness-of-fit result; unpacks to ``(statistic, pvalue)``.

    Attributes
    ----------
    statistic, pvalue, dof : ndarray
    blocked : ndarray of bool
        ``pvalue < threshold``.
    max_share_deviation : ndarray
        max over arms of ``|observed share - designed share|``.
    threshold : float
    method : str
    """

    statistic: np.ndarray
    pvalue: np.ndarray
    dof: np.ndarray
    blocked: np.ndarray
    max_share_deviation: np.ndarray
    threshold: float = SRM_THRESHOLD
    method: str = "Pearson chi-square vs designed weights (no continuity correction)"

    def __iter__(self):
        yield self.statistic
        yield self.pvalue


def srm_test(observed, weights=None, *, threshold: float = SRM_THRESHOLD) -> SRMResult:
    """Sample-ratio check, vectorized over rows.

    Parameters
    ----------
    observed : array_like, shape (k,) or (m, k)
        Units per arm (one row per experiment).
    weights : array_like, shape (k,) or (m, k), optional
        Designed allocation (any positive scale; normalized). Default equal weights.
    threshold : float
        p-value below which the experiment is blocked.

    Returns
    -------
    SRMResult
    """
    obs = np.atleast_1d(np.asarray(observed, float))
    w = np.ones_like(obs) if weights is None else np.broadcast_to(np.asarray(weights, float), obs.shape)
    share = w / w.sum(axis=-1, keepdims=True)
    total = obs.sum(axis=-1, keepdims=True)
    expected = total * share
    stat = ((obs - expected) ** 2 / expected).sum(axis=-1)
    dof = np.full(stat.shape, obs.shape[-1] - 1.0)
    p = sps.chi2.sf(stat, dof)
    dev = np.abs(obs / total - share).max(axis=-1)
    return SRMResult(statistic=stat, pvalue=p, dof=dof, blocked=p < threshold, max_share_deviation=dev,
                     threshold=threshold)
