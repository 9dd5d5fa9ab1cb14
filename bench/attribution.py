"""Benchmark: journeys and attribution on 1M simulated journeys over 8 channels.

Times (1) path building in the engine (Ibis over DuckDB, from touchpoint and order tables),
(2) every attribution model on the path table, and (3) ChannelAttribution's ``markov_model`` on the
same path table when it is importable - either in this interpreter or in the interpreter named by
``--ca-python`` (a throwaway venv: ChannelAttribution is GPL and is not a project dependency).
Prints times, the speed ratio and the credit differences.

    python bench/attribution.py [--journeys 1000000] [--ca-python /tmp/ca_venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

from crmlib.engine import Engine
from crmlib.roi import heuristics
from crmlib.roi.journeys import build_journeys
from crmlib.roi.markov import MarkovAttribution
from crmlib.roi.paths import tokenize
from crmlib.roi.roi_table import attribute_all
from crmlib.roi.shapley import ShapleyAttribution

CHANNELS = ["search", "social", "email", "display", "video", "affiliate", "push", "sms"]
REACH = np.array([0.30, 0.20, 0.15, 0.12, 0.08, 0.07, 0.05, 0.03])
LIFT = np.array([0.05, 0.03, 0.06, 0.01, 0.02, 0.04, 0.01, 0.00])  # additive conversion lift


def simulate(n_journeys: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One journey per customer: 1-10 touches (geometric), conversion ~ base + channel lifts."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.geometric(0.4, n_journeys), 10)
    n_touches = int(lengths.sum())
    journey = np.repeat(np.arange(n_journeys), lengths)
    channel = rng.choice(len(CHANNELS), n_touches, p=REACH / REACH.sum())
    t0 = pd.Timestamp("2025-01-01").value // 10**9
    start = t0 + rng.integers(0, 300 * 86400, n_journeys)
    offsets = rng.integers(0, 25 * 86400, n_touches)
    touch_ts = start[journey] + offsets
    has = np.zeros((n_journeys, len(CHANNELS)), dtype=bool)
    has[journey, channel] = True
    p = np.clip(0.02 + has @ LIFT, 0, 1)
    converted = rng.random(n_journeys) < p
    last = np.zeros(n_journeys, dtype=np.int64)
    np.maximum.at(last, journey, touch_ts)
    keys = np.char.add("c", np.arange(n_journeys).astype(str))
    touches = pd.DataFrame({
        "customer_key": keys[journey],
        "anonymous_id": pd.Series([None] * n_touches, dtype="string"),
        "touch_ts": pd.to_datetime(touch_ts, unit="s"),
        "channel": np.array(CHANNELS)[channel],
        "campaign_id": pd.Series([None] * n_touches, dtype="string"),
        "cost": 0.1,
    })
    conv_idx = np.flatnonzero(converted)
    orders = pd.DataFrame({
        "customer_key": keys[conv_idx],
        "order_ts": pd.to_datetime(last[conv_idx] + rng.integers(60, 86400, len(conv_idx)), unit="s"),
        "amount": np.round(rng.gamma(2.0, 60.0, len(conv_idx)), 2),
        "order_id": np.char.add("o", conv_idx.astype(str)),
    })
    return touches, orders


CA_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import pandas as pd
    import ChannelAttribution as ca
    paths = pd.read_csv(sys.argv[1])
    results = []
    for nsim, seed in json.loads(sys.argv[2]):
        t0 = time.perf_counter()
        out = ca.markov_model(paths, var_path="path", var_conv="conversions", var_value="value",
                              var_null="nulls", order=1, sep=">", verbose=False, flg_pro=False,
                              nsim_start=nsim, seed=seed)
        results.append({"nsim": nsim, "seed": seed, "seconds": time.perf_counter() - t0,
                        "credits": out.to_dict(orient="list")})
    print(json.dumps(results))
    """
)


def run_channel_attribution(paths: pd.DataFrame, python: str, configs: list[tuple[float, int]]) -> list[dict] | None:
    """Run ``markov_model`` once per ``(nsim_start, seed)`` in ``python``; None when it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "paths.csv"
        # ChannelAttribution reads '>'-joined strings; the bench's channel names contain no '>'
        as_text = paths.assign(path=paths["path"].map(">".join))
        as_text[["path", "conversions", "value", "nulls"]].to_csv(file, index=False)
        script = Path(tmp) / "ca.py"
        script.write_text(CA_SCRIPT)
        proc = subprocess.run([python, str(script), str(file), json.dumps(configs)], capture_output=True, text=True)
        if proc.returncode != 0:
            print("ChannelAttribution failed:", proc.stderr.strip().splitlines()[-1:] or proc.stderr)
            return None
        line = [x for x in proc.stdout.splitlines() if x.startswith("[")][-1]
        return json.loads(line)


def ca_python(candidate: str | None) -> str | None:
    for python in [sys.executable, candidate]:
        if python and subprocess.run([python, "-c", "import ChannelAttribution"], capture_output=True).returncode == 0:
            return python
    return None


def _missing_peer() -> None:
    """``make bench-peers`` promises a comparison: without the peer it fails instead of printing a note."""
    if os.environ.get("CRM_BENCH_REQUIRE_PEERS"):
        sys.exit("bench/attribution.py: ChannelAttribution was not compared; `make bench-peers` needs it")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--journeys", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ca-python", default="/tmp/ca_venv/bin/python")
    ap.add_argument("--repeat", type=int, default=3, help="repeats of the model timings (median)")
    ap.add_argument("--ca-converge", action="store_true", help="also run ChannelAttribution with nsim_start=1e7")
    args = ap.parse_args()

    t = time.perf_counter()
    touches, orders = simulate(args.journeys, args.seed)
    print(f"simulated {args.journeys:,} journeys, {len(touches):,} touches, {len(orders):,} conversions "
          f"over {len(CHANNELS)} channels in {time.perf_counter() - t:.1f} s")

    with tempfile.TemporaryDirectory() as run_dir:
        engine = Engine(run_dir)
        engine.write_table("touchpoints", touches)
        engine.write_table("orders", orders)
        del touches, orders
        t = time.perf_counter()
        journeys = build_journeys(engine.table("touchpoints"), engine.table("orders"), lookback_days=30,
                                  half_life_days=7)
        path_seconds = time.perf_counter() - t
        engine.close()
    paths = journeys.paths
    print(f"path building (engine): {path_seconds:.2f} s -> {len(paths):,} distinct paths, "
          f"{paths['conversions'].sum():,.0f} conversions, {paths['nulls'].sum():,.0f} non-converting")

    timings, credits = {}, {}
    models = {
        "first_touch": heuristics.first_touch,
        "last_touch": heuristics.last_touch,
        "linear": heuristics.linear,
        "time_decay": heuristics.time_decay,
        "position_based": heuristics.position_based,
        "markov": lambda p: MarkovAttribution().fit(p).credits_,
        "shapley": lambda p: ShapleyAttribution().fit(p).credits_,
    }
    for name, fn in models.items():
        runs = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            out = fn(paths)
            runs.append(time.perf_counter() - t)
        timings[name] = float(np.median(runs))
        credits[name] = out.set_index("channel")
        total_ok = np.isclose(out["conversions"].sum(), paths["conversions"].sum()) and np.isclose(
            out["value"].sum(), paths["value"].sum())
        print(f"  {name:15s} {timings[name]*1000:9.1f} ms   sums to totals: {bool(total_ok)}")
    runs = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        tokens = tokenize(paths["path"])  # one split shared by both models, as attribute_all does
        MarkovAttribution().fit(paths, tokens=tokens)
        ShapleyAttribution().fit(paths, tokens=tokens)
        runs.append(time.perf_counter() - t)
    exact = float(np.median(runs))
    print(f"exact Markov + Shapley (one shared path split): {exact*1000:.1f} ms "
          f"(separately: {(timings['markov'] + timings['shapley'])*1000:.1f} ms)")
    t = time.perf_counter()
    attribute_all(paths)
    print(f"all seven models via attribute_all: {(time.perf_counter() - t)*1000:.1f} ms")

    python = ca_python(args.ca_python)
    if python is None:
        print("ChannelAttribution: not importable here or in --ca-python; not compared")
        _missing_peer()
        return
    configs = [(1e5, 0)] * args.repeat + [(1e5, 1)] + ([(1e7, 0)] if args.ca_converge else [])
    runs = run_channel_attribution(paths, python, configs)
    if runs is None:
        _missing_peer()
        return
    default = runs[: args.repeat]
    ca_seconds = float(np.median([r["seconds"] for r in default]))
    print(f"ChannelAttribution markov_model (order 1, nsim_start=1e5 default, seed 0, {python}): "
          f"{ca_seconds:.2f} s (median of {args.repeat})")
    print(f"speed ratio ChannelAttribution / (exact Markov + Shapley): {ca_seconds / exact:.1f}x")

    def ca_frame(run: dict) -> pd.DataFrame:
        return pd.DataFrame(run["credits"]).set_index("channel_name")

    ours = credits["markov"]
    ca0 = ca_frame(default[0])
    cmp = pd.DataFrame({
        "exact_conversions": ours["conversions"],
        "ca_conversions": ca0["total_conversions"],
        "exact_value": ours["value"],
        "ca_value": ca0["total_conversion_value"],
    })
    cmp["conv_diff_pct"] = 100 * (cmp["ca_conversions"] / cmp["exact_conversions"] - 1)
    cmp["value_diff_pct"] = 100 * (cmp["ca_value"] / cmp["exact_value"] - 1)
    for run in runs[args.repeat:]:
        label = f"ca_nsim{run['nsim']:.0e}_seed{run['seed']}_diff_pct"
        cmp[label] = 100 * (ca_frame(run)["total_conversions"] / cmp["exact_conversions"] - 1)
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.float_format", "{:,.2f}".format):
        print(cmp)
    tv = 0.5 * (cmp["ca_conversions"] - cmp["exact_conversions"]).abs().sum() / cmp["exact_conversions"].sum()
    print(f"ChannelAttribution (default settings) vs exact: max |difference| per channel "
          f"{cmp['conv_diff_pct'].abs().max():.2f} %, total variation {100 * tv:.2f} % of conversions")
    if args.ca_converge:
        print(f"with nsim_start=1e7 ({runs[-1]['seconds']:.1f} s) the largest difference shrinks to "
              f"{cmp.iloc[:, -1].abs().max():.2f} %: the simulation converges to the exact solution")


if __name__ == "__main__":
    main()
