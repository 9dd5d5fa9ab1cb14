"""MMM tests on data simulated with known adstock, saturation and ROAS.

Tolerances (stated honestly, from seeds 0-5 of this simulator): the large flighted channel (tv)
is recovered within 3 %; the mid-size flighted channel (social) within ~25 % (within 15 % for seed 0,
asserted below); the always-on, heavily saturated channel (search) and the near-constant channel
(always_on) are often not identified, which is the correct answer for such data.
"""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from crmlib.roi.mmm import MediaMixModel, fourier_terms, geometric_adstock, hill, weekly_totals

TRUTH = {  # channel: (decay, half_sat as multiple of mean adstock, beta)
    "tv": (0.6, 1.0, 40000.0),
    "search": (0.1, 0.5, 25000.0),
    "social": (0.3, 2.0, 15000.0),
    "always_on": (0.0, 1.0, 2000.0),
}


def simulate(seed=0, n=156, noise=2000.0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)

    def flights(p, lo, hi):
        return np.where(rng.random(n) < p, rng.uniform(lo, hi, n), 0.0)

    spend = {
        "tv": flights(0.4, 5000, 15000),
        "search": rng.uniform(1000, 8000, n),
        "social": flights(0.5, 2000, 6000),
        "always_on": 1000 * (1 + 0.01 * rng.standard_normal(n)),
    }
    y = 50000 + 30 * t + 4000 * np.sin(2 * np.pi * t / 52.1775) + 2000 * np.cos(2 * np.pi * t / 52.1775)
    true_roas = {}
    for ch, (d, h, beta) in TRUTH.items():
        a = geometric_adstock(spend[ch], d)
        contribution = beta * hill(a, h * a.mean())
        y = y + contribution
        true_roas[ch] = contribution.sum() / spend[ch].sum()
    y = y + noise * rng.standard_normal(n)
    weekly = pd.DataFrame({"week": pd.date_range("2023-01-02", periods=n, freq="7D"), "revenue": y, **spend})
    return weekly, true_roas


@pytest.fixture(scope="module")
def fitted():
    weekly, true_roas = simulate(0)
    return MediaMixModel(n_bootstrap=100, seed=0).fit(weekly), true_roas


def test_adstock_and_hill_by_hand():
    # a = [1, 0 + 0.5*1, 2 + 0.5*0.5] = [1, 0.5, 2.25]
    np.testing.assert_allclose(geometric_adstock([1.0, 0.0, 2.0], 0.5), [1.0, 0.5, 2.25])
    # warm start: spend before the data ran at the mean of the first 2 weeks (0.5): a_-1 = 0.5 / 0.5 = 1
    np.testing.assert_allclose(geometric_adstock([1.0, 0.0, 2.0], 0.5, warm_start=2), [1.5, 0.75, 2.375])
    np.testing.assert_allclose(hill([0.0, 2.0, 6.0], 2.0, 1.0), [0.0, 0.5, 0.75])
    np.testing.assert_allclose(hill([2.0, 4.0], 2.0, 2.0), [0.5, 0.8])


def test_recovers_known_roas(fitted):
    model, true_roas = fitted
    s = model.summary_.set_index("channel")
    assert s.loc["tv", "identified"] and s.loc["social", "identified"]
    assert s.loc["tv", "roas"] == pytest.approx(true_roas["tv"], rel=0.05)
    assert s.loc["social", "roas"] == pytest.approx(true_roas["social"], rel=0.15)
    for ch in ["tv", "social"]:
        assert s.loc[ch, "roas_low"] <= true_roas[ch] <= s.loc[ch, "roas_high"]
    # the near-constant channel cannot be told apart from the intercept
    assert not s.loc["always_on", "identified"] and np.isnan(s.loc["always_on", "roas"])
    assert model.params_.loc["tv", "decay"] == pytest.approx(0.6)


def test_final_fit_is_statsmodels_ols_on_chosen_transforms(fitted):
    model, _ = fitted
    weekly, _ = simulate(0)
    n = len(weekly)
    t = np.arange(n)
    # piecewise-linear trend: hinges every 26 weeks, the last at least 13 weeks before the end
    hinges = [np.maximum(0, t - k) for k in (26, 52, 78, 104, 130)]
    cols = [np.ones(n), t, *hinges, fourier_terms(n, 2)]
    for ch in model.channels_:
        p = model.params_.loc[ch]
        x = weekly[ch].to_numpy()
        a, carry = np.empty(n), x[:4].mean() / (1 - p["decay"])  # steady state at the first 4 weeks' mean
        for i in range(n):
            carry = x[i] + p["decay"] * carry
            a[i] = carry
        cols.append(hill(a, p["half_sat_spend"], p["shape"]))
    ref = sm.OLS(weekly["revenue"].to_numpy(), np.column_stack(cols)).fit()
    np.testing.assert_allclose(model.params_["beta"].to_numpy(), ref.params[-len(model.channels_):], rtol=1e-8)


def test_mroas_is_derivative_of_response(fitted):
    model, _ = fitted
    s = model.summary_.set_index("channel")
    m = s.loc["tv", "mean_weekly_spend"]
    h = 1e-3 * m
    numeric = (model.response("tv", m + h)[0] - model.response("tv", m - h)[0]) / (2 * h)
    assert s.loc["tv", "mroas"] == pytest.approx(numeric, rel=1e-5)


def test_bootstrap_is_seeded():
    weekly, _ = simulate(1, n=104)
    a = MediaMixModel(n_bootstrap=20, seed=5).fit(weekly).summary_
    b = MediaMixModel(n_bootstrap=20, seed=5).fit(weekly).summary_
    pd.testing.assert_frame_equal(a, b)


def test_response_curves(fitted):
    model, _ = fitted
    curves = model.response_curves(n_points=20)
    assert set(curves["channel"]) == set(model.channels_)
    tv = curves[curves["channel"] == "tv"]
    assert tv["response"].iloc[0] == 0 and np.all(np.diff(tv["response"]) > 0)
    assert (tv["low"] <= tv["high"]).all()


def test_weekly_totals_from_engine():
    import ibis

    con = ibis.duckdb.connect()
    orders = con.create_table("orders", pd.DataFrame({
        "order_ts": pd.to_datetime(["2024-01-01 10:00", "2024-01-07 23:00", "2024-01-08 01:00", "2024-01-20 00:00"]),
        "amount": [10.0, 5.0, -3.0, 7.0], "customer_key": ["a", "b", "a", "c"]}))
    spend = con.create_table("spend", pd.DataFrame({
        "date": pd.to_datetime(["2024-01-02", "2024-01-09"]).date, "channel": ["tv", "tv"], "cost": [100.0, 50.0]}))
    w = weekly_totals(orders, spend, complete_weeks_only=False)
    # weeks start Monday 2024-01-01; the refund is not revenue; week of 01-08 has no positive order
    assert w["revenue"].tolist() == [15.0, 0.0, 7.0]
    assert w["tv"].tolist() == [100.0, 50.0, 0.0]
    # the last order is on Saturday 2024-01-20: its week is incomplete and dropped
    assert weekly_totals(orders, spend)["revenue"].tolist() == [15.0, 0.0]
    # a period ending on Sunday 2024-01-21 keeps it; one starting on Tuesday drops the first week
    assert weekly_totals(orders, spend, period_end="2024-01-21")["revenue"].tolist() == [15.0, 0.0, 7.0]
    assert weekly_totals(orders, spend, period_start="2024-01-02", period_end="2024-01-21")["revenue"].tolist() == [0.0, 7.0]


@pytest.fixture(scope="module")
def sample_weekly(tmp_path_factory):
    """Weekly truth of the sample generator (5,000 customers, seed 42): revenue by order origin, paid spend."""
    import json

    from crmlib.sample.generator import generate_sample

    out = tmp_path_factory.mktemp("sample")
    generate_sample(out, customers=5000, seed=42)
    channels = json.loads((out / "truth" / "channels.json").read_text())["channels"]
    paid = [c for c, v in channels.items() if v["paid"]]
    spend = pd.read_parquet(out / "truth" / "mmm_weekly.parquet").pivot(index="week_start", columns="channel",
                                                                       values="spend")[paid]
    orders = pd.read_parquet(out / "truth" / "orders.parquet")
    orders = orders[orders.is_real_order & (orders.true_amount > 0)]
    week = orders.true_order_ts.dt.to_period("W-SUN").dt.start_time
    revenue = orders.groupby([week, orders.origin]).true_amount.sum().unstack(fill_value=0.0)
    weekly = revenue.join(spend, how="inner").iloc[1:-1].rename_axis("week").reset_index()  # whole weeks
    true_roas = {c: channels[c]["true_incremental_roas"] for c in paid}
    return weekly, paid, true_roas


def _fit(weekly, paid, revenue, *, shift=0, n_bootstrap=40):
    data = pd.DataFrame({"week": weekly["week"], "revenue": revenue,
                         **{c: np.roll(weekly[c].to_numpy(), shift) for c in paid}})
    return MediaMixModel(n_bootstrap=n_bootstrap, seed=0).fit(data).summary_.set_index("channel")


def test_sample_spend_unrelated_to_revenue_is_never_identified(sample_weekly):
    """Null calibration on the sample: organic revenue against the sample's own spend shifted by 13-117 weeks
    (same flights and promotions, no causal link). Measured: 0 of 36 channel fits identified (seeds 42 and 7).
    The 90 % intervals alone under-cover - 50 % of them exclude 0 on this null at 50,000 customers, because
    the profile search picks the best of 72 transforms per channel - so the width rule is what keeps the
    model from claiming; this test guards it."""
    weekly, paid, _ = sample_weekly
    claimed = []
    for shift in range(13, 130, 26):
        s = _fit(weekly, paid, weekly["organic"].to_numpy(), shift=shift)
        claimed += [(shift, c) for c in paid if s.loc[c, "identified"]]
    assert claimed == []


def test_sample_generator_channel_effects_are_not_overclaimed(sample_weekly):
    """Known truth from the sample generator (5,000 customers, seed 42; paid media ~5 % of revenue, its
    incremental revenue ~8 %). Weekly revenue = all orders, as the stage fits it.

    Tolerance, measured honestly (seeds 42 and 7):

    * with the baseline known (revenue = the journeys' conversions only) point ROAS are within 3-19 % of
      the truth for all four paid channels at seed 42 and within 34-67 % for the large ones at seed 7,
      every interval covering the truth at seed 42 - but no channel is narrow enough to be identified;
    * with all revenue (organic weekly noise ~9 % of revenue hides channel effects of 2-4 %) no channel
      is identified and point estimates are off by 25-500 %: the stage shows no point ROAS for them and
      the budget step moves nothing, saying why. At 50,000 customers with known transforms the same data
      gives the three large channels within 4-18 % (intervals about +/-35 %); with searched transforms
      the estimates are still 40-100 % off - the search, not the data, is the limit.

    Asserted: no channel is declared identified with the true ROAS outside its interval, and every
    unidentified channel gets no point ROAS.
    """
    weekly, paid, true_roas = sample_weekly
    revenue = weekly[["organic", "marketing", "experiment"]].sum(axis=1).to_numpy()
    s = _fit(weekly, paid, revenue, n_bootstrap=100)
    for ch in paid:
        if s.loc[ch, "identified"]:
            assert s.loc[ch, "roas_low"] <= true_roas[ch] <= s.loc[ch, "roas_high"]
        else:
            assert np.isnan(s.loc[ch, "roas"]) and np.isnan(s.loc[ch, "mroas"])


def test_sample_large_channels_recovered_when_the_baseline_is_known(sample_weekly):
    """The sample's two largest paid channels (search, social) from the journeys' own conversions (no
    organic orders): the data carries their effect. Measured at seed 42: -3 % and -12 % (asserted within
    25 %), intervals covering the truth; the smaller channels within 19 % but, like the large ones, not
    narrow enough to be identified."""
    weekly, paid, true_roas = sample_weekly
    s = _fit(weekly, paid, weekly["marketing"].to_numpy(), n_bootstrap=100)
    for ch in ("paid_search", "social"):
        assert s.loc[ch, "roas_estimate"] == pytest.approx(true_roas[ch], rel=0.25)
        assert s.loc[ch, "roas_low"] <= true_roas[ch] <= s.loc[ch, "roas_high"]


def test_sse_of_each_candidate_matches_one_lstsq_per_candidate():
    from crmlib.roi.mmm import _sse_adding_each

    rng = np.random.default_rng(3)
    n = 80
    others = np.column_stack([np.ones(n), np.arange(n), rng.normal(size=n)])
    candidates = rng.random((6, n))
    candidates[5] = 2 * others[:, 1] + 1  # inside the span of the others: explains nothing more
    y = rng.normal(size=n) + candidates[2] * 3
    sse, beta = _sse_adding_each(others, candidates, y, with_beta=True)
    for g in range(5):
        design = np.column_stack([others, candidates[g]])
        coef, res, *_ = np.linalg.lstsq(design, y, rcond=None)
        assert sse[g] == pytest.approx(float(np.sum((y - design @ coef) ** 2)), rel=1e-9)
        assert beta[g] == pytest.approx(coef[-1], rel=1e-9)
    base, *_ = np.linalg.lstsq(others, y, rcond=None)
    assert sse[5] == pytest.approx(float(np.sum((y - others @ base) ** 2)), rel=1e-9) and beta[5] == 0


def test_spend_that_never_varies_cannot_be_modelled():
    from crmlib.status import CannotCompute

    weekly = pd.DataFrame({"week": pd.date_range("2024-01-01", periods=60, freq="W-MON"),
                           "revenue": np.random.default_rng(0).normal(1000, 50, 60),
                           "flat": 200.0, "never": 0.0})
    with pytest.raises(CannotCompute, match="no channel's spend varies over these 60 weeks .*flat: spend does not "
                                            "vary from week to week; never: no spend"):
        MediaMixModel(n_bootstrap=5).fit(weekly, ["flat", "never"])


def test_a_flat_channel_is_not_modelled_beside_a_varying_one():
    sim, _ = simulate(seed=0, n=104)
    weekly = sim.assign(flat=300.0)
    model = MediaMixModel(n_bootstrap=5).fit(weekly, ["tv", "flat"])
    assert model.channels_ == ["tv"]
    row = model.summary_.set_index("channel").loc["flat"]
    assert not row["identified"] and row["reason"] == "not modelled: spend does not vary from week to week"


def test_fewer_weeks_than_terms_cannot_be_modelled():
    from crmlib.status import CannotCompute

    sim, _ = simulate(seed=1, n=10)
    with pytest.raises(CannotCompute, match="needs more weeks than terms to estimate: 10 weeks"):
        MediaMixModel(n_bootstrap=5).fit(sim, ["tv", "search", "social"])
