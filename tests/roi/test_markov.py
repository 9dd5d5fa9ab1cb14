import numpy as np
import pytest

from crmlib.roi.markov import CONVERSION, NULL, START, MarkovAttribution
from crmlib.roi.paths import collapse_repeats, make_path_table


def test_hand_computed(hand_paths):
    # Collapsed journeys: a>b (c, 10), a>b (c, 30), b (c, 20), a (null), a (c, 40). N = 5, 4 conversions.
    # Transitions: start->a 4, start->b 1; a->b 2, a->null 1, a->conv 1; b->conv 3.
    # x_b = 1; x_a = 2/4 * 1 + 1/4 = 3/4; P = 4/5 * 3/4 + 1/5 * 1 = 4/5 (= 4/5 observed).
    # Remove a: P = 1/5 -> RE_a = 1 - (1/5)/(4/5) = 3/4.
    # Remove b: x_a = 1/4 -> P = 4/5 * 1/4 = 1/5 -> RE_b = 3/4.  Credits 4 * (3/4)/(3/2) = 2 each.
    # Value rewards: r_a = 40 / 4 = 10, r_b = 60 / 3 = 20. V_a = 1/2 * 20 + 10 = 20, V = 4/5*20 + 1/5*20 = 20.
    # Remove a: V = 1/5 * 20 = 4 -> RE = 4/5.  Remove b: V_a = 10, V = 8 -> RE = 3/5.
    # Value credits: a = 100 * (4/5)/(7/5) = 400/7, b = 300/7.
    m = MarkovAttribution().fit(hand_paths)
    tm = m.transition_matrix_
    assert tm.loc[START, "a"] == pytest.approx(0.8) and tm.loc["a", "b"] == pytest.approx(0.5)
    assert tm.loc["a", NULL] == pytest.approx(0.25) and tm.loc["b", CONVERSION] == pytest.approx(1.0)
    assert m.params_["conversion_probability"] == pytest.approx(0.8)
    np.testing.assert_allclose(m.removal_effects_.loc[["a", "b"], "conversions"], [0.75, 0.75])
    np.testing.assert_allclose(m.removal_effects_.loc[["a", "b"], "value"], [0.8, 0.6])
    c = m.credits_.set_index("channel")
    np.testing.assert_allclose(c["conversions"], [2.0, 2.0])
    np.testing.assert_allclose(c["value"], [400 / 7, 300 / 7])


def _random_journeys(rng, n_journeys=600, channels="abcdef"):
    journeys = []
    for _ in range(n_journeys):
        seq = list(rng.choice(list(channels), int(rng.integers(1, 6)), p=None))
        # channel-dependent conversion so removal effects differ
        p = 0.1 + 0.15 * ("c" in seq) + 0.2 * (seq[-1] == "a")
        converted = rng.random() < p
        journeys.append((seq, converted, float(rng.gamma(2.0, 40.0)) if converted else 0.0))
    return journeys


def _iterate_absorption(journeys, removed=None, reward="conversions"):
    """Independent solver: raw dict counts, then push probability mass until it is absorbed."""
    counts = {}
    conv_value = {}
    for seq, converted, value in journeys:
        states = ["S", *collapse_repeats(seq), "C" if converted else "N"]
        for s, t in zip(states[:-1], states[1:]):
            counts.setdefault(s, {}).setdefault(t, 0.0)
            counts[s][t] += 1.0
        if converted:
            conv_value[states[-2]] = conv_value.get(states[-2], 0.0) + value
    mass = {"S": 1.0}
    absorbed = 0.0
    for _ in range(10_000):
        new = {}
        for s, w in mass.items():
            if s == removed:
                continue  # redirected to null
            out = counts[s]
            total = sum(out.values())
            for t, n in out.items():
                if t == "C":
                    absorbed += w * (n / total if reward == "conversions" else conv_value[s] / total)
                elif t != "N":
                    new[t] = new.get(t, 0.0) + w * n / total
        mass = new
        if sum(mass.values()) < 1e-15:
            break
    return absorbed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_independent_iteration(seed):
    rng = np.random.default_rng(seed)
    journeys = _random_journeys(rng)
    m = MarkovAttribution().fit(make_path_table(journeys))
    for reward in ["conversions", "value"]:
        base = _iterate_absorption(journeys, reward=reward)
        for ch in "abcdef":
            re = 1 - _iterate_absorption(journeys, removed=ch, reward=reward) / base
            assert m.removal_effects_.loc[ch, reward] == pytest.approx(re, rel=1e-9, abs=1e-12)


def test_matches_seeded_random_walks():
    rng = np.random.default_rng(7)
    journeys = _random_journeys(rng, 300, "abcd")
    m = MarkovAttribution().fit(make_path_table(journeys))
    tm = m.transition_matrix_
    states = list(tm.columns)
    walker = np.random.default_rng(123)
    n_walks, hits = 200_000, 0
    cum = tm.cumsum(axis=1).to_numpy()
    row = {s: i for i, s in enumerate(tm.index)}
    state = np.zeros(n_walks, dtype=int)  # row index; start = 0
    alive = np.ones(n_walks, dtype=bool)
    while alive.any():
        u = walker.random(alive.sum())
        nxt = (u[:, None] > cum[state[alive]]).sum(axis=1)
        names = np.array(states)[nxt]
        hits += int((names == CONVERSION).sum())
        still = (names != CONVERSION) & (names != NULL)
        idx = np.flatnonzero(alive)
        alive[idx[~still]] = False
        state[idx[still]] = [row[s] for s in names[still]]
    p_sim = hits / n_walks
    se = np.sqrt(p_sim * (1 - p_sim) / n_walks)
    assert abs(p_sim - m.params_["conversion_probability"]) < 4 * se


def test_conversion_probability_equals_observed_rate():
    rng = np.random.default_rng(5)
    paths = make_path_table(_random_journeys(rng))
    m = MarkovAttribution().fit(paths)
    assert m.params_["conversion_probability"] == pytest.approx(m.params_["observed_conversion_rate"], rel=1e-12)


def test_credits_sum_to_totals():
    rng = np.random.default_rng(9)
    paths = make_path_table(
        [(s, c, v, None, {"new_customers": float(c)}) for s, c, v in _random_journeys(rng)]
    )
    m = MarkovAttribution().fit(paths)
    for col in ["conversions", "value", "new_customers"]:
        assert m.credits_[col].sum() == pytest.approx(paths[col].sum(), rel=1e-12)
    assert (m.credits_[["conversions", "value"]] >= 0).all().all()
    np.testing.assert_allclose(m.transition_matrix_.sum(axis=1), 1.0)


def test_repeats_collapse():
    # a>a>b must give exactly the same model as a>b
    p1 = make_path_table([(["a", "a", "b"], True, 5.0), (["b"], False, 0.0)])
    p2 = make_path_table([(["a", "b"], True, 5.0), (["b"], False, 0.0)])
    c1 = MarkovAttribution().fit(p1).credits_
    c2 = MarkovAttribution().fit(p2).credits_
    np.testing.assert_allclose(c1[["conversions", "value"]], c2[["conversions", "value"]])
