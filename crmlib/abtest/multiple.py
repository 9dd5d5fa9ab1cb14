"""Multiple-comparison corrections within an explicit family.

Families used by the stage (per experiment): the primary metric alone (across treatment arms),
the secondary metrics as one family (metrics x treatment arms). Guardrails are *not* corrected: each
is a one-sided non-inferiority test and shipping requires **all** of them to pass (an
intersection-union test, which keeps its level without correction).

Boundary rule: an adjusted p-value equal to alpha rejects (``p_adj <= alpha``), as in statsmodels
``multipletests``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmlib.params import schema_default

__all__ = ["holm", "benjamini_hochberg", "adjust_pvalues", "adjust_grouped", "reject"]

#: default significance level: the params schema's ``ab_tests.alpha`` (one place defines it)
_ALPHA = schema_default("ab_tests.alpha")


def _adjust(pvalues, step) -> np.ndarray:
    """Apply ``step(sorted p-values) -> adjusted`` to the non-NaN p-values, capped at 1, in input order."""
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    if q.size == 0:
        return out
    order = np.argsort(q, kind="mergesort")
    res = np.empty(q.size)
    res[order] = np.minimum(step(q[order]), 1.0)
    out[ok] = res
    return out


def holm(pvalues) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values (FWER). NaNs are kept and excluded from the family."""
    return _adjust(pvalues, lambda q: np.maximum.accumulate((q.size - np.arange(q.size)) * q))


def benjamini_hochberg(pvalues) -> np.ndarray:
    """Benjamini-Hochberg (1995) step-up adjusted p-values (FDR). NaNs are kept and excluded."""
    return _adjust(pvalues, lambda q: np.minimum.accumulate((q * q.size / np.arange(1, q.size + 1))[::-1])[::-1])


def adjust_pvalues(pvalues, method: str = schema_default("ab_tests.correction")) -> np.ndarray:
    """Adjust one family of p-values; ``method`` is ``"holm"`` (default) or ``"bh"``."""
    if method == "holm":
        return holm(pvalues)
    if method in ("bh", "fdr_bh"):
        return benjamini_hochberg(pvalues)
    raise ValueError(f"correction must be 'holm' or 'bh', got {method!r}")


def reject(adjusted, alpha: float = _ALPHA) -> np.ndarray:
    """Rejections with the ``<=`` boundary rule (as statsmodels)."""
    a = np.asarray(adjusted, float)
    return np.where(np.isnan(a), False, a <= alpha)


def adjust_grouped(pvalues, families, method: str = schema_default("ab_tests.correction")) -> np.ndarray:
    """Adjust p-values within each family at once (vectorized over many families).

    Parameters
    ----------
    pvalues : array_like
        One p-value per test; NaNs are excluded from their family and stay NaN.
    families : array_like
        Family label per test (same length).
    method : {"holm", "bh"}
    """
    if method not in ("holm", "bh", "fdr_bh"):
        raise ValueError(f"correction must be 'holm' or 'bh', got {method!r}")
    p = np.asarray(pvalues, float)
    fam = pd.factorize(pd.Series(np.asarray(families)))[0]
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if not ok.any():
        return out
    idx = np.flatnonzero(ok)
    f, q = fam[idx], p[idx]
    order = np.lexsort((q, f))
    f_s, q_s = f[order], q[order]
    size = np.bincount(f_s)[f_s]
    first = np.r_[0, np.flatnonzero(np.diff(f_s)) + 1]
    start = np.repeat(first, np.diff(np.r_[first, f_s.size]))
    rank = np.arange(f_s.size) - start                     # 0-based rank within family
    df = pd.DataFrame({"f": f_s})
    if method == "holm":
        df["v"] = (size - rank) * q_s
        adj = df.groupby("f")["v"].cummax().to_numpy()
    else:
        df["v"] = q_s * size / (rank + 1)
        adj = df.iloc[::-1].groupby("f")["v"].cummin().iloc[::-1].to_numpy()
    res = np.empty(f_s.size)
    res[order] = np.minimum(adj, 1.0)
    out[idx] = res
    return out
