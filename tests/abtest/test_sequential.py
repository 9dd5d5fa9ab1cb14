"""Always-valid inference: reference values and the A/A peeking simulation."""

import numpy as np
import pytest

from crmlib.abtest.sequential import confidence_sequence, msprt_pvalue
from crmlib.abtest.stats import proportion_test


def test_confidence_sequence_matches_gbstats(ref):
    out = ref["sequential"]["outputs"]
    for scale in ("absolute", "relative"):
        gb = out[f"gbstats.SequentialTwoSidedTTest({scale}, tuning=5000)"]
        lo, hi, p = confidence_sequence(gb["estimate"], gb["se"], 20000, tuning=5000)
        np.testing.assert_allclose([lo, hi], gb["ci"], rtol=1e-9)
        assert p == pytest.approx(gb["p_value"], rel=1e-9)


def test_msprt_reference(ref):
    out = ref["sequential"]["outputs"]["formula.mSPRT normal mixture (Johari et al.), H0: pB-pA=0"]
    v = 0.1 * 0.9 + 0.11 * 0.89
    for tau in (0.005, 0.01, 0.02):
        assert msprt_pvalue(0.01, v, 10000, tau=tau) == pytest.approx(out[f"tau={tau}"]["always_valid_p"], rel=1e-9)


def test_sequence_excludes_zero_exactly_when_p_below_alpha():
    rng = np.random.default_rng(0)
    est = rng.normal(0, 0.01, 20000)
    se = rng.uniform(0.002, 0.006, 20000)
    n = rng.integers(100, 100000, 20000)
    lo, hi, p = confidence_sequence(est, se, n, alpha=0.05, tuning=5000)
    assert np.array_equal((lo > 0) | (hi < 0), p < 0.05)
    assert 100 < (p < 0.05).sum() < 19900
    # always wider than the fixed-horizon 95% interval
    assert np.all(hi - est > 1.96 * se)


def test_aa_simulation_fixed_horizon_naive_peeking_and_sequential(aa_counts):
    xc, xt, n = aa_counts
    r = proportion_test(xc, n, xt, n)                 # default Welch, all 2,000 x 14 looks at once
    fixed = (r.pvalue[:, -1] < 0.05).mean()
    naive = (r.pvalue < 0.05).any(axis=1).mean()
    _, _, pseq = confidence_sequence(r.abs_lift, r.se, 2 * n, tuning=5000)
    sequential = (pseq < 0.05).any(axis=1).mean()
    print(f"A/A FPR: fixed-horizon {fixed:.4f}, naive daily peeking {naive:.4f}, sequential {sequential:.4f}")
    assert 0.04 <= fixed <= 0.06                       # 5 +- 1 %
    assert naive > 0.15                                # ~24% expected: the simulation has power to see it
    assert sequential <= 0.05
