"""Benchmark: the whole recommendation step on synthetic order lines, beside implicit's ALS.

    python bench/recommend.py [--customers 1000000] [--lines 10000000] [--products 20000]
                              [--seed 0] [--peers-python .venv-peers/bin/python]

Data (generated here, written as Parquet to a scratch folder): a catalogue with Zipf popularity in 40
categories; 40 % of products are staples with a repurchase cycle of 10-90 days; each product has two
complements added to a basket with probability 0.35. Every customer is active for an exponential time
within the year, buys two staples on their cycle (times 0.7-1.4 for the person, with jitter) and visits
about once a month; each order adds best-sellers (Zipf) and, with them, their complements. The step is
timed in a child process (its peak RSS is the child's alone, including DuckDB's memory): evaluation on a
30-day temporal holdout, the fit on all data, both lists for every customer and the run tables written.
Set ``CRM_DUCKDB_MEMORY_LIMIT`` (e.g. ``2GB``) to bound DuckDB's share. With ``--peers-python`` pointing
to an interpreter that has ``implicit`` (``make bench-peers`` builds ``.venv-peers``), implicit's ALS
(BM25-weighted, 64 factors, 15 iterations, already-bought products allowed) is trained on the same
training split and scored on the same customers with the same metric code. Figures are printed; nothing
is asserted.
Targets (issue #14): next-basket NDCG@10 at least buy-again's and above ALS; the step <= 60 s and <= 4 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

AS_OF = "2025-12-31"
DAYS = 365

ALS_SCRIPT = r"""
import json, sys, time
import numpy as np, scipy.sparse as sp
from implicit.als import AlternatingLeastSquares
from implicit.nearest_neighbours import bm25_weight
import implicit
d = np.load(sys.argv[1])
items = sp.csr_matrix((d["data"], d["indices"], d["indptr"]), shape=tuple(d["shape"]))
users = d["users"]
t0 = time.perf_counter()
weighted = bm25_weight(items, K1=100, B=0.8).tocsr().astype(np.float32)
model = AlternatingLeastSquares(factors=64, iterations=15, regularization=0.05, random_state=0)
model.fit(weighted, show_progress=False)
fit_s = time.perf_counter() - t0
t0 = time.perf_counter()
ids, _scores = model.recommend(users, weighted[users], N=int(d["k"]), filter_already_liked_items=False)
np.save(sys.argv[2], ids)
print(json.dumps({"implicit": implicit.__version__, "fit_seconds": fit_s,
                  "recommend_seconds": time.perf_counter() - t0}))
"""


def generate(customers: int, lines: int, products: int, seed: int) -> pa.Table:
    """Synthetic order lines (see the module docstring) as an Arrow table in the ``order_lines`` contract.

    ``lines`` sets the number of products bought per order on top of the staples, so the total lands
    near it; the exact count is printed.
    """
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, products + 1) ** 0.9
    popularity /= popularity.sum()
    consumable = rng.random(products) < 0.4
    cycle = rng.uniform(10, 90, products)                       # days between repurchases of a staple
    complements = rng.choice(products, size=(products, 2), p=popularity)
    category = rng.integers(0, 40, products)
    # each customer: active from `start` for an exponential time, with two staples bought on their cycle
    start = rng.uniform(-DAYS, DAYS, customers)
    stop = np.minimum(start + rng.exponential(DAYS, customers), DAYS)
    start = np.maximum(start, 0)
    pool = np.flatnonzero(consumable)
    staples = pool[rng.choice(pool.size, size=(customers, 2), p=popularity[pool] / popularity[pool].sum())]
    owner = np.repeat(np.arange(customers), 2)
    staple = staples.ravel()
    personal = cycle[staple] * rng.uniform(0.7, 1.4, owner.size)
    first = start[owner] + rng.uniform(0, personal)
    count = np.maximum(np.floor((stop[owner] - first) / personal).astype(np.int64) + 1, 0)
    buyer = np.repeat(np.arange(owner.size), count)
    step_no = np.arange(buyer.size) - np.repeat(np.cumsum(count) - count, count)
    day = first[buyer] + personal[buyer] * (step_no + rng.normal(0, 0.12, buyer.size))
    ok = (day >= 0) & (day < DAYS)
    staple_customer, staple_day, staple_item = owner[buyer][ok], day[ok].astype(np.int64), staple[buyer][ok]
    # other visits: about one a month while active
    visits = rng.poisson(np.maximum(stop - start, 0) / 30)
    visit_customer = np.repeat(np.arange(customers), visits)
    visit_day = (start[visit_customer] + rng.uniform(0, 1, visit_customer.size)
                 * (stop - start)[visit_customer]).astype(np.int64)
    # an order is one (customer, day)
    order_key = np.unique(np.r_[staple_customer * DAYS + staple_day, visit_customer * DAYS + visit_day])
    order_customer, order_day = order_key // DAYS, order_key % DAYS
    staple_order = np.searchsorted(order_key, staple_customer * DAYS + staple_day)
    # best-sellers per order (each brings a complement 35 % of the time) to land near `lines` in total
    extra_per_order = max((lines - staple_order.size) / max(order_key.size, 1), 0.1) / 1.35
    n_random = rng.poisson(extra_per_order, order_key.size)
    random_order = np.repeat(np.arange(order_key.size), n_random)
    random_item = rng.choice(products, size=random_order.size, p=popularity)
    with_partner = rng.random(random_order.size) < 0.35
    partner_item = complements[random_item[with_partner], rng.integers(0, 2, int(with_partner.sum()))]
    orders = np.r_[staple_order, random_order, random_order[with_partner]]
    items = np.r_[staple_item, random_item, partner_item]
    key = np.unique(orders.astype(np.int64) * products + items)   # one line per (order, product)
    orders, items = key // products, key % products
    quantity = 1 + rng.poisson(0.3, orders.size)
    amount = np.round(quantity * (5 + 50 * rng.random(products))[items], 2)
    refund = rng.random(orders.size) < 0.01
    amount[refund] = -amount[refund]
    ts = np.datetime64("2025-01-01") + order_day[orders].astype("timedelta64[D]")
    product_ids = np.char.add("P", np.arange(products).astype(str))
    return pa.table({
        "customer_key": pa.array(np.char.add("C", order_customer[orders].astype(str))),
        "order_id": pa.array(np.char.add("O", orders.astype(str))),
        "order_ts": pa.array(ts.astype("datetime64[us]")),
        "product_id": pa.array(product_ids[items]),
        "quantity": pa.array(quantity.astype(np.int64)),
        "amount": pa.array(amount),
        "product_name": pa.array(np.char.add("product ", items.astype(str))),
        "category": pa.array(np.char.add("category ", category[items].astype(str))),
        "brand": pa.array(np.char.add("brand ", (items % 300).astype(str))),
    })


def _peak_rss_gib() -> float:
    """This process's peak resident memory. ``VmHWM`` belongs to the process image, so it is not the
    parent's: ``ru_maxrss`` is inherited at fork and kept across exec (it would report the generator's
    memory)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024 / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def step(data_path: str, out_json: str) -> None:
    """The timed step (run in a child process): load the lines into an engine and build every table."""
    from crmlib.engine import Engine
    from crmlib.segmentation.recommend import RecommendSettings, recommendation_tables

    with tempfile.TemporaryDirectory() as run_dir, Engine(run_dir) as engine:
        t0 = time.perf_counter()
        engine.write_table("order_lines", engine.con.read_parquet(data_path))
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = recommendation_tables(engine, AS_OF, RecommendSettings())
        total = time.perf_counter() - t0
        peak = _peak_rss_gib()
        Path(out_json).write_text(json.dumps({
            "load_seconds": load_s, "step_seconds": total, "parts": result.seconds, "rows": result.rows,
            "peak_rss_gib": peak, "evaluation": result.evaluation.to_dict("records")}, default=str))


def run_als(peers_python: str, data_path: str, work: Path) -> dict | None:
    """implicit's ALS on the evaluation's training split, scored like the other methods."""
    import ibis

    from crmlib.segmentation.recommend import RecommendSettings, temporal_holdout

    try:
        check = subprocess.run([peers_python, "-c", "import implicit"], capture_output=True)
    except OSError:  # no such interpreter: the peers' environment was not built
        check = None
    if check is None or check.returncode != 0:
        print(f"implicit is not installed in {peers_python}: ALS skipped")
        return None
    con = ibis.duckdb.connect()
    holdout = temporal_holdout(con.read_parquet(data_path), AS_OF, RecommendSettings())
    rec = holdout.recommender
    customers, _relevant, _keys = holdout.truth("next_basket")
    items = (rec._times > 0).astype(np.float32).tocsr()
    np.savez(work / "als_in.npz", data=items.data, indices=items.indices, indptr=items.indptr,
             shape=np.array(items.shape), users=customers, k=rec.k)
    script = work / "als.py"
    script.write_text(ALS_SCRIPT)
    proc = subprocess.run([peers_python, str(script), str(work / "als_in.npz"), str(work / "als_out.npy")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print("ALS failed:", proc.stderr[-2000:])
        return None
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    ids = np.load(work / "als_out.npy")
    rows = np.repeat(customers, ids.shape[1])
    cols = ids.ravel()
    ok = cols >= 0
    info["score"] = holdout.score("als", "next_basket", rows[ok], cols[ok])
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peers-python", default=os.environ.get("PEERS_PYTHON"))
    parser.add_argument("--step", nargs=2, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        step(*args.step)
        return 0
    with tempfile.TemporaryDirectory(prefix="crmlib-bench-rec-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        table = generate(args.customers, args.lines, args.products, args.seed)
        data_path = work / "order_lines.parquet"
        pq.write_table(table, data_path)
        print(f"data: {table.num_rows:,} order lines, {args.customers:,} customers drawn, {args.products:,} "
              f"products ({time.perf_counter() - t0:.1f} s to generate)")
        del table
        out = work / "step.json"
        subprocess.run([sys.executable, __file__, "--step", str(data_path), str(out)], check=True)
        result = json.loads(out.read_text())
        parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in result["parts"].items())
        print(f"recommendation step: {result['step_seconds']:.1f} s ({parts}), peak RSS "
              f"{result['peak_rss_gib']:.2f} GiB (loading the lines into the engine: {result['load_seconds']:.1f} s, "
              "not counted)")
        print(f"tables: {result['rows']}")
        rows = result["evaluation"]
        if args.peers_python:
            als = run_als(args.peers_python, str(data_path), work)
            if als is None and os.environ.get("CRM_BENCH_REQUIRE_PEERS"):
                print("bench/recommend.py: implicit's ALS was not compared; `make bench-peers` needs it",
                      file=sys.stderr)
                return 1
            if als:
                print(f"implicit {als['implicit']} ALS: fit {als['fit_seconds']:.1f} s, recommend "
                      f"{als['recommend_seconds']:.1f} s")
                rows.append(als["score"])
        print(f"\n{'method':<12} {'list':<12} {'customers':>9}  {'NDCG@k [95% interval]':<26} {'hit@k':>6} "
              f"{'MAP@k':>6} {'recall':>6} {'coverage':>8}")
        for r in rows:
            print(f"{r['method']:<12} {r['list']:<12} {r['customers']:>9,}  {r['ndcg']:.4f} "
                  f"[{r['ndcg_low']:.4f}, {r['ndcg_high']:.4f}]   {r['hit_rate']:>6.3f} {r['map']:>6.3f} "
                  f"{r['recall']:>6.3f} {r['coverage']:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
