import itertools

import numpy as np
import pytest

from crmlib.roi.budget import _repair, reallocate_budget
from crmlib.roi.mmm import MediaMixModel

from .test_mmm import simulate


@pytest.fixture(scope="module")
def model():
    weekly, _ = simulate(0)
    return MediaMixModel(n_bootstrap=60, seed=0).fit(weekly)


def test_bounds_total_and_frozen_channels(model):
    for b in [0.0, 0.1, 0.3, 0.6]:
        res = reallocate_budget(model, bounds=b)
        t = res.table
        assert (t["proposed"] >= t["current"] * (1 - b) - 1e-9).all()
        assert (t["proposed"] <= t["current"] * (1 + b) + 1e-9).all()
        assert t["proposed"].sum() == pytest.approx(t["current"].sum(), rel=1e-10)
        frozen = t[~t["identified"]]
        np.testing.assert_allclose(frozen["proposed"], frozen["current"])
        assert res.gain >= -1e-9


def test_matches_grid_search(model):
    # independent check: exhaustive grid over the identified channels' shares
    res = reallocate_budget(model, bounds=0.3)
    t = res.table.set_index("channel")
    free = t.index[t["identified"]].tolist()
    assert len(free) >= 2
    cur = t.loc[free, "current"].to_numpy()
    total = cur.sum()
    best = -np.inf
    grid = np.linspace(-0.3, 0.3, 61)
    for moves in itertools.product(grid, repeat=len(free) - 1):
        s = cur[:-1] * (1 + np.array(moves))
        last = total - s.sum()
        if not (0.7 * cur[-1] - 1e-9 <= last <= 1.3 * cur[-1] + 1e-9):
            continue
        alloc = np.append(s, last)
        best = max(best, sum(model.response(c, x)[0] for c, x in zip(free, alloc)))
    optimum = sum(model.response(c, x)[0] for c, x in zip(free, t.loc[free, "proposed"]))
    assert optimum >= best - 1e-6 * abs(best)
    assert res.gain_low <= res.gain <= res.gain_high


def test_repair_never_leaves_bounds():
    rng = np.random.default_rng(0)
    for _ in range(200):
        lo = rng.uniform(0, 10, 5)
        hi = lo + rng.uniform(0, 10, 5)
        total = rng.uniform(lo.sum(), hi.sum())
        s = _repair(rng.uniform(-5, 25, 5), lo, hi, total)
        assert (s >= lo - 1e-12).all() and (s <= hi + 1e-12).all()
        assert s.sum() == pytest.approx(total)


def test_nothing_identified_moves_nothing_and_says_why():
    # pure noise revenue: no channel can be pinned down
    weekly, _ = simulate(0)
    weekly["revenue"] = 50000 + 2000 * np.random.default_rng(1).standard_normal(len(weekly))
    res = reallocate_budget(MediaMixModel(n_bootstrap=30, seed=0).fit(weekly))
    assert not res.table["identified"].any()
    np.testing.assert_allclose(res.table["proposed"], res.table["current"])
    assert res.gain == 0 and res.table["current_response"].isna().all()
    assert res.caveats[0].startswith("Nothing moves: the data pinned down 0 of 4")
