"""Benchmark: BG/NBD + Gamma-Gamma fit on simulated customers, crmlib vs lifetimes.

    python bench/clv.py [--n 1000000] [--seed 0] [--lifetimes-python /path/to/python]

Data: ``--n`` customers drawn from the BG/NBD process (r=0.243, alpha=4.414, a=0.793, b=2.426, the
CDNOW estimates, weeks) with observation lengths of 1..104 weeks in whole days (purchase dates per
calendar day, as real order data give), and Gamma-Gamma mean spends (p=6.25, q=3.74, v=15.44).

lifetimes 0.11.3 does not import with pandas 3, so it runs in a separate interpreter when
``--lifetimes-python`` (or the ``LIFETIMES_PYTHON`` environment variable) points to one, e.g. a throwaway
venv made with ``python -m venv /tmp/lt && /tmp/lt/bin/pip install "pandas<2" "numpy<2" "scipy<1.14"
lifetimes==0.11.3``; if lifetimes imports in this interpreter it runs in-process. Both sides get the same
arrays (one row per customer, no weights - lifetimes' usual call); lifetimes is also timed with the
rows compressed into weighted patterns, for a like-for-like comparison of the optimiser alone.
Timings include our pattern compression and Hessian standard errors (lifetimes computes an autograd
Hessian too).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crmlib.segmentation import BetaGeoFitter, GammaGammaFitter, simulate_bgnbd, simulate_gamma_gamma  # noqa: E402

TRUE_BG = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
TRUE_GG = {"p": 6.25, "q": 3.74, "v": 15.44}

LIFETIMES_SCRIPT = r"""
import json, sys, time, warnings
import numpy as np, pandas as pd
warnings.filterwarnings("ignore")
from lifetimes import BetaGeoFitter, GammaGammaFitter
d = np.load(sys.argv[1])
out = {"lifetimes_version": __import__("lifetimes").__version__, "pandas": pd.__version__}
x, tx, T, m = d["x"], d["tx"], d["T"], d["m"]
t0 = time.perf_counter(); bg = BetaGeoFitter().fit(x, tx, T); out["bg_seconds"] = time.perf_counter() - t0
out["bg"] = {k: float(bg.params_[k]) for k in ["r", "alpha", "a", "b"]}
rep = x > 0
t0 = time.perf_counter(); gg = GammaGammaFitter().fit(x[rep], m[rep]); out["gg_seconds"] = time.perf_counter() - t0
out["gg"] = {k: float(gg.params_[k]) for k in ["p", "q", "v"]}
f = pd.DataFrame({"x": x, "tx": tx, "T": T}).groupby(["x", "tx", "T"]).size().reset_index(name="w")
t0 = time.perf_counter(); bgw = BetaGeoFitter().fit(f["x"].values, f["tx"].values, f["T"].values, weights=f["w"].values)
out["bg_weighted_seconds"] = time.perf_counter() - t0
out["bg_weighted"] = {k: float(bgw.params_[k]) for k in ["r", "alpha", "a", "b"]}
print(json.dumps(out))
"""


def simulate(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days_observed = rng.integers(7, 729, size=n)  # 1..104 weeks, whole days
    bg = simulate_bgnbd(n, **TRUE_BG, T=days_observed / 7.0, seed=rng, day_grid=1 / 7)
    gg = simulate_gamma_gamma(bg["frequency"].to_numpy(), **TRUE_GG, seed=rng)
    return pd.DataFrame(
        {"x": bg["frequency"], "tx": bg["recency"], "T": bg["T"], "m": np.round(gg["monetary_value"], 2)}
    )


def run_ours(data: pd.DataFrame) -> dict:
    t0 = time.perf_counter()
    bg = BetaGeoFitter().fit(data["x"].to_numpy(), data["tx"].to_numpy(), data["T"].to_numpy())
    bg_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    gg = GammaGammaFitter().fit(data["x"].to_numpy(), data["m"].to_numpy())
    gg_s = time.perf_counter() - t0
    return {
        "bg_seconds": bg_s,
        "gg_seconds": gg_s,
        "bg": bg.params_.to_dict(),
        "gg": gg.params_.to_dict(),
        "bg_patterns": bg.n_patterns_,
        "gg_patterns": gg.n_patterns_,
        "bg_ll": bg.log_likelihood_,
        "bg_converged": bg.convergence_.success,
        "gg_converged": gg.convergence_.success,
        "bg_gradient_norm": bg.convergence_.gradient_norm,
    }


def run_lifetimes(data: pd.DataFrame, python: str | None) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        np.savez(path, x=data["x"].to_numpy(), tx=data["tx"].to_numpy(), T=data["T"].to_numpy(), m=data["m"].to_numpy())
        try:
            import lifetimes  # noqa: F401

            interpreter = sys.executable
        except Exception as exc:  # lifetimes 0.11.3 fails on pandas 3 at import
            if not python:
                print(
                    f"lifetimes not importable here ({type(exc).__name__}: {exc}); pass --lifetimes-python to compare"
                )
                return None
            interpreter = python
        proc = subprocess.run([interpreter, "-c", LIFETIMES_SCRIPT, str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            print("lifetimes run failed:\n" + proc.stderr[-3000:])
            return None
        return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lifetimes-python", default=os.environ.get("LIFETIMES_PYTHON"))
    args = parser.parse_args()

    t0 = time.perf_counter()
    data = simulate(args.n, args.seed)
    print(
        f"simulated {args.n:,} customers in {time.perf_counter() - t0:.1f} s; "
        f"{(data['x'] > 0).sum():,} with repeat purchases; mean x = {data['x'].mean():.3f}"
    )
    ours = run_ours(data)
    print(
        f"crmlib   BG/NBD fit {ours['bg_seconds']:7.2f} s ({ours['bg_patterns']:,} distinct patterns, "
        f"LL {ours['bg_ll']:.2f}, converged {ours['bg_converged']}, |grad| {ours['bg_gradient_norm']:.1e})"
    )
    print(f"crmlib   Gamma-Gamma fit {ours['gg_seconds']:7.2f} s ({ours['gg_patterns']:,} distinct patterns)")
    print("true     " + ", ".join(f"{k}={v}" for k, v in {**TRUE_BG, **TRUE_GG}.items()))
    print("crmlib   " + ", ".join(f"{k}={v:.5f}" for k, v in {**ours["bg"], **ours["gg"]}.items()))

    lt = run_lifetimes(data, args.lifetimes_python)
    if lt is None and os.environ.get("CRM_BENCH_REQUIRE_PEERS"):
        sys.exit("bench/clv.py: lifetimes was not compared; `make bench-peers` needs it (.venv-peers)")
    if lt is None:
        return
    print(
        f"lifetimes {lt['lifetimes_version']} (pandas {lt['pandas']}): BG/NBD {lt['bg_seconds']:.2f} s, "
        f"Gamma-Gamma {lt['gg_seconds']:.2f} s; BG/NBD with weighted patterns {lt['bg_weighted_seconds']:.2f} s"
    )
    print("lifetimes " + ", ".join(f"{k}={v:.5f}" for k, v in {**lt["bg"], **lt["gg"]}.items()))
    ours_total = ours["bg_seconds"] + ours["gg_seconds"]
    lt_total = lt["bg_seconds"] + lt["gg_seconds"]
    print(
        f"total fit time: crmlib {ours_total:.2f} s, lifetimes {lt_total:.2f} s -> {lt_total / ours_total:.1f}x faster "
        f"(BG/NBD alone {lt['bg_seconds'] / ours['bg_seconds']:.1f}x; vs lifetimes on weighted patterns "
        f"{lt['bg_weighted_seconds'] / ours['bg_seconds']:.1f}x)"
    )
    rel = {k: abs(ours["bg"][k] / lt["bg"][k] - 1) for k in lt["bg"]}
    rel.update({k: abs(ours["gg"][k] / lt["gg"][k] - 1) for k in lt["gg"]})
    rel_w = {k: abs(ours["bg"][k] / lt["bg_weighted"][k] - 1) for k in lt["bg_weighted"]}
    print("relative parameter differences vs lifetimes: " + ", ".join(f"{k} {v:.1e}" for k, v in rel.items()))
    print("relative differences vs lifetimes (weighted BG/NBD): " + ", ".join(f"{k} {v:.1e}" for k, v in rel_w.items()))
    print(f"max relative difference {max(rel.values()):.1e} (target <= 1e-4)")


if __name__ == "__main__":
    main()
