import itertools
import math

import numpy as np
import pytest

from crmlib.roi.paths import make_path_table
from crmlib.roi.shapley import ShapleyAttribution, mobius_transform, shapley_values, zeta_transform


def brute_force_shapley(v, n):
    """Average marginal contribution over all n! orderings."""
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        mask = 0
        for i in order:
            phi[i] += v(mask | 1 << i) - v(mask)
            mask |= 1 << i
    return phi / math.factorial(n)


def test_glove_game_textbook():
    # Glove game: players 0 and 1 own left gloves, player 2 a right glove; a pair is worth 1.
    # Textbook Shapley values: (1/6, 1/6, 2/3).
    v = np.array([1.0 if (s & 0b11) and (s & 0b100) else 0.0 for s in range(8)])
    np.testing.assert_allclose(shapley_values(v), [1 / 6, 1 / 6, 2 / 3])


@pytest.mark.parametrize("n", [1, 3, 5, 6])
def test_random_games_vs_permutations(n):
    rng = np.random.default_rng(n)
    v = rng.normal(size=1 << n)
    v[0] = 0
    np.testing.assert_allclose(shapley_values(v), brute_force_shapley(lambda s: v[s], n), atol=1e-12)


def test_zeta_mobius_inverse():
    rng = np.random.default_rng(0)
    f = rng.normal(size=64)
    np.testing.assert_allclose(mobius_transform(zeta_transform(f)), f, atol=1e-12)
    # zeta by definition on one entry: S = 0b101 sums f[0], f[1], f[4], f[5]
    assert zeta_transform(f)[0b101] == pytest.approx(f[0] + f[1] + f[4] + f[5])


def test_hand(hand_paths):
    # channel sets of converting journeys: {a,b} (10), {a,b} (30), {b} (20), {a} (40)
    # phi_a = 2/2 + 1 = 2 conversions, value 40/2 + 40 = 60; phi_b = 2 conversions, value 20 + 20 = 40
    c = ShapleyAttribution().fit(hand_paths).credits_.set_index("channel")
    np.testing.assert_allclose(c.loc["a", ["conversions", "value"]], [2.0, 60.0])
    np.testing.assert_allclose(c.loc["b", ["conversions", "value"]], [2.0, 40.0])


def _random_paths(seed, channels="abcde", n=300):
    rng = np.random.default_rng(seed)
    journeys = []
    for _ in range(n):
        seq = list(rng.choice(list(channels), int(rng.integers(1, 5))))
        conv = rng.random() < 0.5
        journeys.append((seq, conv, float(rng.integers(1, 200)) if conv else 0.0))
    return journeys


def test_vs_brute_force_on_coalition_function():
    journeys = _random_paths(1)
    channels = sorted({c for s, _, _ in journeys for c in s})

    def v(mask):  # conversions of journeys whose channel set is inside the coalition
        members = {c for i, c in enumerate(channels) if mask >> i & 1}
        return sum(1.0 for s, conv, _ in journeys if conv and set(s) <= members)

    expected = brute_force_shapley(v, len(channels))
    got = ShapleyAttribution().fit(make_path_table(journeys)).credits_["conversions"].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-10)


def test_sparse_equals_dense_and_efficiency():
    paths = make_path_table(_random_paths(2, "abcdefgh", 800))
    dense = ShapleyAttribution().fit(paths)
    sparse = ShapleyAttribution(dense_max_channels=0).fit(paths)
    np.testing.assert_allclose(dense.credits_[["conversions", "value"]], sparse.credits_[["conversions", "value"]])
    for m in ["conversions", "value"]:
        assert dense.credits_[m].sum() == pytest.approx(paths[m].sum(), rel=1e-12)
        assert (dense.credits_[m] >= 0).all()
    assert dense.characteristic_["conversions"].iloc[-1] == pytest.approx(paths["conversions"].sum())


def test_channels_only_in_null_paths_get_nothing_and_tokens_shortcut():
    from crmlib.roi.paths import tokenize

    paths = make_path_table([(["a", "b"], True, 10.0), (["z"], False, 0.0), (["z", "a"], False, 0.0)])
    plain = ShapleyAttribution().fit(paths)
    shared = ShapleyAttribution().fit(paths, tokens=tokenize(paths["path"]))
    assert plain.credits_["channel"].tolist() == ["a", "b"]
    np.testing.assert_allclose(plain.credits_["value"], [5.0, 5.0])
    np.testing.assert_allclose(shared.credits_[["conversions", "value"]], plain.credits_[["conversions", "value"]])
