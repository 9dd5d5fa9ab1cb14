"""Benchmark: 1,000 experiments x 3 metrics from sufficient statistics, vectorized vs a per-test loop.

Metrics per experiment: conversion (binary), revenue per unit (mean), revenue per session (ratio,
delta method). The vectorized path runs crmlib.abtest on arrays (absolute + relative delta CI,
Fieller CI, always-valid confidence sequence); the loop calls statsmodels once per comparison
(``test_proportions_2indep`` + ``confint_proportions_2indep`` for conversion, ``CompareMeans`` on
``DescrStatsW`` built from the sums for revenue, ``_zstat_generic`` on the delta-method SE for the
ratio), i.e. what one would write without a vectorized core. It also times the full ``analyze()``
(SRM, CUPED, families, verdicts, power) on the same 3,000 comparisons.

Run: ``python bench/abtest.py``. Prints both timings and their ratio (target >= 100x).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import confint_proportions_2indep, test_proportions_2indep
from statsmodels.stats.weightstats import _zstat_generic, _tconfint_generic, _tstat_generic

from crmlib.abtest import analyze, confidence_sequence, proportion_test, ratio_test, welch_test

E = 1000


def make_stats(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_c = rng.integers(5_000, 50_000, E).astype(float)
    n_t = np.round(n_c * rng.uniform(0.98, 1.02, E))
    out = {"n_c": n_c, "n_t": n_t}
    for arm, n, lift in (("c", n_c, 1.0), ("t", n_t, 1.03)):
        p = 0.1 * lift
        x = rng.binomial(n.astype(int), p).astype(float)
        mean, sd = 50.0 * lift, 120.0
        s = n * (mean + rng.normal(0, sd / np.sqrt(n)))
        ss = (n - 1) * sd**2 + s**2 / n
        sess = n * 3.0 * rng.uniform(0.99, 1.01, E)
        var_d, cov_md = 2.0, 0.3 * sd * np.sqrt(2.0)        # per-unit session variance, revenue-session cov
        out |= {f"x_{arm}": x, f"sum_{arm}": s, f"ss_{arm}": ss, f"den_{arm}": sess,
                f"den2_{arm}": sess**2 / n + (n - 1) * var_d, f"numden_{arm}": s * sess / n + (n - 1) * cov_md}
    return out


def vectorized(st: dict) -> dict[str, np.ndarray]:
    conv = proportion_test(st["x_c"], st["n_c"], st["x_t"], st["n_t"], test="z")
    rev = welch_test(st["n_c"], st["sum_c"], st["ss_c"], st["n_t"], st["sum_t"], st["ss_t"], binary=False)
    arm = lambda a: {"n": st[f"n_{a}"], "sum_num": st[f"sum_{a}"], "sum_num2": st[f"ss_{a}"],  # noqa: E731
                     "sum_den": st[f"den_{a}"], "sum_den2": st[f"den2_{a}"], "sum_num_den": st[f"numden_{a}"]}
    ratio = ratio_test(arm("c"), arm("t"), test="z")
    for r in (conv, rev, ratio):
        confidence_sequence(r.abs_lift, r.se, r.n_control + r.n_treatment)
    return {"conversion": conv.pvalue, "revenue": rev.pvalue, "ratio": ratio.pvalue}


def loop(st: dict) -> dict[str, np.ndarray]:
    out = {k: np.empty(E) for k in ("conversion", "revenue", "ratio")}
    for i in range(E):
        nc, nt = st["n_c"][i], st["n_t"][i]
        r = test_proportions_2indep(st["x_t"][i], nt, st["x_c"][i], nc, method="wald", compare="diff")
        confint_proportions_2indep(st["x_t"][i], nt, st["x_c"][i], nc, method="wald", compare="diff")
        out["conversion"][i] = r.pvalue
        mc, mt = st["sum_c"][i] / nc, st["sum_t"][i] / nt
        vc = (st["ss_c"][i] - st["sum_c"][i] * mc) / (nc - 1)
        vt = (st["ss_t"][i] - st["sum_t"][i] * mt) / (nt - 1)
        se = np.sqrt(vc / nc + vt / nt)
        dof = (vc / nc + vt / nt) ** 2 / ((vc / nc) ** 2 / (nc - 1) + (vt / nt) ** 2 / (nt - 1))
        out["revenue"][i] = _tstat_generic(mt, mc, se, dof, "two-sided", 0)[1]
        _tconfint_generic(mt - mc, se, dof, 0.05, "two-sided")
        ps = []
        for a, n in (("c", nc), ("t", nt)):
            m, d = st[f"sum_{a}"][i] / n, st[f"den_{a}"][i] / n
            vm = (st[f"ss_{a}"][i] - st[f"sum_{a}"][i] * m) / (n - 1)
            vd = (st[f"den2_{a}"][i] - st[f"den_{a}"][i] * d) / (n - 1)
            cmd = (st[f"numden_{a}"][i] - st[f"sum_{a}"][i] * d) / (n - 1)
            rr = m / d
            ps.append((rr, (vm - 2 * rr * cmd + rr**2 * vd) / d**2 / n))
        out["ratio"][i] = _zstat_generic(ps[1][0], ps[0][0], np.sqrt(ps[0][1] + ps[1][1]), "two-sided", 0)[1]
    return out


def as_long(st: dict) -> pd.DataFrame:
    ids = np.array([f"exp{i:04d}" for i in range(E)])
    rows = []
    for arm, variant in (("c", "control"), ("t", "treatment")):
        base = {"experiment_id": ids, "variant": variant, "n": st[f"n_{arm}"], "is_control": arm == "c",
                "sum_x": 0.0, "sum_x2": 0.0, "sum_xy": 0.0}
        rows.append(pd.DataFrame({**base, "metric": "conversion", "metric_type": "binary", "sum_y": st[f"x_{arm}"],
                                  "sum_y2": st[f"x_{arm}"], "sum_den": np.nan, "sum_den2": np.nan,
                                  "sum_yden": np.nan}))
        rows.append(pd.DataFrame({**base, "metric": "revenue", "metric_type": "mean", "sum_y": st[f"sum_{arm}"],
                                  "sum_y2": st[f"ss_{arm}"], "sum_den": np.nan, "sum_den2": np.nan,
                                  "sum_yden": np.nan}))
        rows.append(pd.DataFrame({**base, "metric": "revenue_per_session", "metric_type": "ratio",
                                  "sum_y": st[f"sum_{arm}"], "sum_y2": st[f"ss_{arm}"], "sum_den": st[f"den_{arm}"],
                                  "sum_den2": st[f"den2_{arm}"], "sum_yden": st[f"numden_{arm}"],
                                  "sum_x": np.nan, "sum_x2": np.nan, "sum_xy": np.nan}))
    return pd.concat(rows, ignore_index=True)


def best_of(fn, *args, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    st = make_stats()
    v, lp = vectorized(st), loop(st)
    for k in v:
        assert np.allclose(v[k], lp[k], rtol=1e-6, atol=1e-12), k
    t_vec = best_of(vectorized, st)
    t_loop = best_of(loop, st, repeat=1)
    long = as_long(st)
    t_full = best_of(analyze, long, {}, repeat=2)
    print(f"{E} experiments x 3 metrics = {3 * E} comparisons (p-values agree to 1e-6)")
    print(f"  crmlib.abtest vectorized (z/Welch + rel CI + Fieller + confidence sequence): {t_vec * 1e3:8.2f} ms")
    print(f"  statsmodels per-test loop (p-value + CI only):                              {t_loop * 1e3:8.2f} ms")
    print(f"  speed-up: {t_loop / t_vec:,.0f}x (target >= 100x)")
    print(f"  full analyze() incl. SRM, CUPED, families, verdicts, power, Bayes: {t_full * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
