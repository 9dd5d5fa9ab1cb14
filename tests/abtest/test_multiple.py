"""Holm and Benjamini-Hochberg vs statsmodels.multipletests."""

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from crmlib.abtest.multiple import adjust_grouped, adjust_pvalues, benjamini_hochberg, holm, reject


def test_bh1995_reference(ref, quick):
    p = ref["multiple_testing"]["inputs"]["bh1995_15"]
    np.testing.assert_allclose(holm(p), quick["multiple_testing.holm_bh1995"], rtol=1e-12)
    np.testing.assert_allclose(benjamini_hochberg(p), quick["multiple_testing.bh_bh1995"], rtol=1e-12)
    assert reject(holm(p)).sum() == 3 and reject(benjamini_hochberg(p)).sum() == 4


def test_unsorted_and_boundary(ref):
    p = ref["multiple_testing"]["inputs"]["unsorted_5"]
    out = ref["multiple_testing"]["outputs"]["unsorted_5"]
    np.testing.assert_allclose(holm(p), out["statsmodels.multipletests(holm)"]["p_adjusted"], rtol=1e-12)
    np.testing.assert_allclose(benjamini_hochberg(p), out["statsmodels.multipletests(fdr_bh)"]["p_adjusted"],
                               rtol=1e-12)
    # BH-adjusted values of exactly alpha reject (<=), as in multipletests
    assert reject(benjamini_hochberg(p), 0.05).tolist() == out["statsmodels.multipletests(fdr_bh)"]["reject"]


def test_random_families_against_statsmodels():
    rng = np.random.default_rng(2)
    p = rng.random(60) ** 2
    fam = rng.integers(0, 4, 60)
    p[[5, 47]] = np.nan
    for ours, theirs in (("holm", "holm"), ("bh", "fdr_bh")):
        adj = adjust_grouped(p, fam, ours)
        for f in range(4):
            m = (fam == f) & ~np.isnan(p)
            np.testing.assert_allclose(adj[m], multipletests(p[m], method=theirs)[1], rtol=1e-12)
            np.testing.assert_allclose(adjust_pvalues(p[m], ours), adj[m], rtol=1e-12)
        assert np.isnan(adj[[5, 47]]).all()
    with pytest.raises(ValueError):
        adjust_pvalues([0.1], "bonferroni")
