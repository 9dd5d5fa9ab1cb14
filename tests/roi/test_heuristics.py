import numpy as np
import pandas as pd
import pytest

from crmlib.roi import heuristics
from crmlib.roi.heuristics import position_shares
from crmlib.roi.paths import make_path_table


def credits(df):
    return df.set_index("channel")[["conversions", "value"]]


def test_first_touch_hand(hand_paths):
    # first touches of converting journeys: a (a>b, 10), a (a>a>b, 30), b (b, 20), a (a, 40)
    c = credits(heuristics.first_touch(hand_paths))
    assert c.loc["a"].tolist() == [3.0, 80.0]
    assert c.loc["b"].tolist() == [1.0, 20.0]


def test_last_touch_hand(hand_paths):
    c = credits(heuristics.last_touch(hand_paths))
    assert c.loc["a"].tolist() == [1.0, 40.0]
    assert c.loc["b"].tolist() == [3.0, 60.0]


def test_linear_hand(hand_paths):
    # a>b: 1/2 each (5, 5); a>a>b: a 2/3, b 1/3 (20, 10); b: 1 (20); a: 1 (40)
    c = credits(heuristics.linear(hand_paths))
    np.testing.assert_allclose(c.loc["a"], [0.5 + 2 / 3 + 1, 5 + 20 + 40])
    np.testing.assert_allclose(c.loc["b"], [0.5 + 1 / 3 + 1, 5 + 10 + 20])


def test_position_based_hand(hand_paths):
    # a>b: 50/50 (5, 5); a>a>b: 0.4+0.2 = 0.6 to a, 0.4 to b (18, 12); singles: 100 %
    c = credits(heuristics.position_based(hand_paths))
    np.testing.assert_allclose(c.loc["a"], [0.5 + 0.6 + 1, 5 + 18 + 40])
    np.testing.assert_allclose(c.loc["b"], [0.5 + 0.4 + 1, 5 + 12 + 20])


def test_position_shares_conventions():
    np.testing.assert_allclose(position_shares(1), [1.0])
    np.testing.assert_allclose(position_shares(2), [0.5, 0.5])
    np.testing.assert_allclose(position_shares(4), [0.4, 0.1, 0.1, 0.4])
    np.testing.assert_allclose(position_shares(2, (0.3, 0.1, 0.6)), [1 / 3, 2 / 3])
    with pytest.raises(ValueError):
        position_shares(3, (0.5, 0.5, 0.5))


def test_time_decay_hand(hand_paths):
    # half-life 7 days.
    # a>b ages (7, 0): weights 0.5, 1 -> a 1/3, b 2/3; value 10 -> a 10/3, b 20/3
    # a>a>b ages (14, 7, 0): 0.25, 0.5, 1 -> a 0.75/1.75 = 3/7, b 4/7; value 30 -> a 90/7, b 120/7
    # b: 1 -> b (20); a (age 3.5): 1 -> a (40)
    c = credits(heuristics.time_decay(hand_paths))
    np.testing.assert_allclose(c.loc["a"], [1 / 3 + 3 / 7 + 1, 10 / 3 + 90 / 7 + 40])
    np.testing.assert_allclose(c.loc["b"], [2 / 3 + 4 / 7 + 1, 20 / 3 + 120 / 7 + 20])


def test_time_decay_needs_ages():
    paths = make_path_table([(["a", "b"], True, 1.0)])
    with pytest.raises(ValueError, match="touch ages"):
        heuristics.time_decay(paths)


@pytest.mark.parametrize("model", ["first_touch", "last_touch", "linear", "position_based", "time_decay"])
def test_credits_sum_to_totals_random(model):
    rng = np.random.default_rng(3)
    channels = list("abcdefg")
    journeys = []
    for _ in range(400):
        n = int(rng.integers(1, 7))
        seq = list(rng.choice(channels, n))
        ages = sorted(rng.uniform(0, 30, n), reverse=True)
        converted = rng.random() < 0.4
        journeys.append((seq, converted, float(rng.gamma(2, 50)) if converted else 0.0, ages,
                         {"new_customers": float(rng.random() < 0.5) if converted else 0.0}))
    paths = make_path_table(journeys, half_life_days=5.0)
    out = getattr(heuristics, model)(paths)
    for m in ["conversions", "value", "new_customers"]:
        assert out[m].sum() == pytest.approx(paths[m].sum(), rel=1e-12)
    assert (out[["conversions", "value"]] >= 0).all().all()


def test_brute_force_linear_matches_per_journey_loop():
    # independent per-journey loop (no explode / groupby) on random journeys
    rng = np.random.default_rng(11)
    journeys, expected = [], {}
    for _ in range(200):
        seq = list(rng.choice(list("xyz"), int(rng.integers(1, 5))))
        val = float(rng.integers(1, 100))
        journeys.append((seq, True, val))
        for ch in seq:
            expected[ch] = expected.get(ch, 0.0) + val / len(seq)
    out = heuristics.linear(make_path_table(journeys)).set_index("channel")["value"]
    pd.testing.assert_series_equal(out.sort_index(), pd.Series(expected).sort_index(), check_names=False)
