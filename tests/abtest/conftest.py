"""Shared fixtures for crmlib.abtest tests: reference vectors and a seeded synthetic run.

``ab_reference.json`` / ``ab_cuped_data.csv`` in tests/data/ab are copies of the reference vectors
produced by notes/ab_reference.py (statsmodels 0.15, scipy 1.17, gbstats 0.8, spotify-confidence 4.1).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crmlib.params import complete_params

DATA = Path(__file__).resolve().parents[1] / "data" / "ab"


@pytest.fixture(scope="session")
def ref() -> dict:
    """Reference cases by id."""
    d = json.loads((DATA / "ab_reference.json").read_text())
    return {c["id"]: c for c in d["cases"]}


@pytest.fixture(scope="session")
def quick() -> dict:
    d = json.loads((DATA / "ab_reference.json").read_text())
    return {q["name"]: q["value"] for q in d["quick_checks"]}


@pytest.fixture(scope="session")
def cuped_data() -> pd.DataFrame:
    return pd.read_csv(DATA / "ab_cuped_data.csv")


# --- a synthetic run with known truth -------------------------------------------------------------
TRUE_CONVERSION_LIFT = 0.30          # checkout_button: relative lift in conversion
TRUE_REVENUE_PER_ORDER = 50.0
HOLDOUT_LIFT = 0.50                  # email_holdout: relative lift of exposed vs holdout
WINDOW = 14


def _experiment(rng, exp_id, arms: dict[str, int], base_rate, lifts: dict[str, float], start, days=10):
    """Units, pre-period orders and in-window orders for one experiment (vectorized)."""
    rows_e, rows_o, rows_ev = [], [], []
    for arm, n in arms.items():
        keys = np.array([f"{exp_id}_{arm}_{i}" for i in range(n)])
        assigned = start + pd.to_timedelta(rng.integers(0, days * 24 * 60, n), unit="min")
        propensity = rng.gamma(2.0, 0.5, n)                       # mean 1: drives pre and post behaviour
        p_pre = np.clip(base_rate * propensity, 0, 1)
        p_post = np.clip(base_rate * propensity * (1 + lifts.get(arm, 0.0)), 0, 1)
        pre = rng.random(n) < p_pre
        post = rng.random(n) < p_post
        rows_e.append(pd.DataFrame({"experiment_id": exp_id, "customer_key": keys, "variant": arm,
                                    "assigned_ts": assigned, "is_control": arm in ("control", "holdout"),
                                    "source": "synthetic"}))
        for mask, sign in ((pre, -1), (post, 1)):
            k = int(mask.sum())
            offset = pd.to_timedelta(rng.uniform(0.01, WINDOW - 0.01, k), unit="D")
            ts = assigned[mask] + offset if sign > 0 else assigned[mask] - offset
            rows_o.append(pd.DataFrame({"customer_key": keys[mask], "order_ts": ts,
                                        "amount": np.round(rng.gamma(4.0, TRUE_REVENUE_PER_ORDER / 4.0, k), 2)}))
        nsess = 1 + rng.poisson(2.0 * propensity)
        sk = np.repeat(keys, nsess)
        sts = np.repeat(assigned.to_numpy(), nsess) + pd.to_timedelta(
            rng.uniform(0, WINDOW - 0.01, nsess.sum()), unit="D").to_numpy()
        rows_ev.append(pd.DataFrame({"customer_key": sk, "anonymous_id": None, "event_ts": sts,
                                     "event_type": "session_start"}))
    return pd.concat(rows_e), pd.concat(rows_o), pd.concat(rows_ev)


def make_synthetic_run(run_dir: Path, seed: int = 11) -> dict:
    """Write experiments/orders/events/spend/roi parquet tables into ``run_dir/tables``; return the params."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-03-01")
    parts = [
        _experiment(rng, "checkout_button", {"control": 6000, "treatment": 6000}, 0.10,
                    {"treatment": TRUE_CONVERSION_LIFT}, start),
        _experiment(rng, "broken_split", {"control": 5000, "treatment": 5600}, 0.10, {}, start),
        _experiment(rng, "email_holdout", {"holdout": 2000, "exposed": 8000}, 0.08,
                    {"exposed": HOLDOUT_LIFT}, start),
    ]
    exps = pd.concat([p[0] for p in parts], ignore_index=True)
    orders = pd.concat([p[1] for p in parts], ignore_index=True)
    orders["source"], orders["source_customer_id"], orders["currency"] = "synthetic", orders["customer_key"], "CNY"
    events = pd.concat([p[2] for p in parts], ignore_index=True)
    spend = pd.DataFrame({"date": pd.date_range(start, periods=20, freq="D").date, "channel": "email",
                          "campaign_id": "spring_sale", "cost": 1000.0, "impressions": 0, "clicks": 0,
                          "source": "synthetic"})
    roi = pd.DataFrame({"model": ["last_touch", "linear"], "channel": ["email", "email"], "cost": [20000.0] * 2,
                        "revenue": [90000.0, 70000.0], "roi": [3.5, 2.5], "roas": [4.5, 3.5]})
    tables = Path(run_dir) / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    for name, df in {"experiments": exps, "orders": orders, "events": events, "spend": spend, "roi": roi}.items():
        df.to_parquet(tables / f"{name}.parquet", index=False)
    return complete_params({
        "run": {"as_of": "2026-04-30"},
        "ab_tests": {
            "window_days": WINDOW, "alpha": 0.05, "correction": "holm", "sequential_tuning": 5000,
            "winsorize": None,
            "experiments": [
                {"id": "checkout_button", "weights": {"control": 0.5, "treatment": 0.5},
                 "primary_metric": "conversion", "secondary_metrics": ["orders", "revenue_per_session"],
                 "guardrails": [{"metric": "revenue", "margin": 0.05}], "planned_n_per_arm": 5000},
                {"id": "broken_split", "weights": {"control": 0.5, "treatment": 0.5}},
                {"id": "email_holdout", "weights": {"holdout": 0.2, "exposed": 0.8},
                 "holdout": {"channel": "email", "campaign_id": "spring_sale"}},
            ],
        },
    })


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    from crmlib.engine import Engine

    run_dir = tmp_path_factory.mktemp("abrun")
    params = make_synthetic_run(run_dir)
    engine = Engine(run_dir)
    yield engine, params
    engine.close()


# --- A/A simulation shared by the sequential and analysis tests ---------------------------------------
AA_EXPERIMENTS, AA_DAYS, AA_PER_DAY, AA_RATE = 2000, 14, 357, 0.05


@pytest.fixture(scope="session")
def aa_counts():
    """Cumulative conversions per day for 2,000 A/A experiments (5% in both arms, 357 units/arm/day)."""
    rng = np.random.default_rng(2026)
    shape = (AA_EXPERIMENTS, AA_DAYS)
    xc = rng.binomial(AA_PER_DAY, AA_RATE, size=shape).cumsum(axis=1)
    xt = rng.binomial(AA_PER_DAY, AA_RATE, size=shape).cumsum(axis=1)
    n = np.broadcast_to(AA_PER_DAY * np.arange(1, AA_DAYS + 1), shape).astype(float)
    return xc.astype(float), xt.astype(float), n


@pytest.fixture(scope="session")
def synthetic_truth() -> dict:
    """The effects planted by :func:`make_synthetic_run`."""
    return {"conversion_lift": TRUE_CONVERSION_LIFT, "holdout_lift": HOLDOUT_LIFT, "holdout_base_rate": 0.08,
            "holdout_exposed_n": 8000}


@pytest.fixture(scope="session")
def synthetic_factory():
    """:func:`make_synthetic_run` itself (writes the tables into a run dir, returns params)."""
    return make_synthetic_run
