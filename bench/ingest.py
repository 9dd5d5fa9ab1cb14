"""Benchmark the ingest stage: 10M orders for 1M customers, against a bare DuckDB scan of the same files.

    .venv/bin/python bench/ingest.py [--orders 10_000_000] [--customers 1_000_000] [--dir /tmp/crm_bench]
                                     [--memory-limit 1GB] [--identity deterministic]

Data: a vectorized writer (numpy + pyarrow, seconds) makes ``contacts.csv`` (one row per customer, with
phone/email variants) and ``orders.csv`` (dirty like real exports: ~0.2 % repeated order ids, 0.05 % bad
dates, 0.05 % non-numeric amounts, 1 % amounts like '¥1,234.50', 10 % 'YYYY/MM/DD HH:MM' times, 0.5 %
rows without an order id). Files are reused when they exist with the same sizes.

Timed, in one process, each on a fresh DuckDB database file:

* **ingest** - :func:`crmlib.ingest.stage.ingest`: read + validate + dedup + identity records +
  identity resolution + customers table + quarantine + quality report + fact tables with customer_key
  (all written as Parquet). The breakdown per step is printed; ``ingest without identity`` excludes the
  identity-resolution step (owned by ``crmlib.ingest.identity``).
  ``files -> customers table`` is the target's scope (read + validate + dedup + customers table, with the
  identity resolution the customers table needs): every step up to and including the customers table,
  which the stage builds before it writes the fact tables.
* **bare scan** - ``CREATE TABLE AS SELECT * FROM read_csv(<file>)`` for both files into an in-memory
  DuckDB (same memory limit, spilling to disk; DuckDB's type sniffing, no validation) - the baseline of
  the ratio - and ``SELECT count(*)`` over the same files (DuckDB can skip most of the parsing there).
* **Parquet write floor** - ``COPY`` of the bare-loaded orders to Parquet with the run tables' compression:
  what writing a 10M-row orders table costs by itself, with no parsing, validation or joins. The stage
  must write that table, so ``bare load + Parquet write`` is the least any ingest producing it does.

The bare load runs before and after ingest (the machine may be shared) and the ratio uses their mean;
the process' CPU seconds (user + system, DuckDB's threads included) are printed too, a ratio that other
work on the machine disturbs less.
Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the process' high-water mark), printed after
the first bare load and after ingest.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crmlib.engine import PARQUET_COMPRESSION, Engine  # noqa: E402
from crmlib.ingest.stage import ingest  # noqa: E402
from crmlib.params import validate_params  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (DuckDB's threads included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_data(folder: Path, n_orders: int, n_customers: int, seed: int = 7) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    contacts, orders = folder / "contacts.csv", folder / "orders.csv"
    stamp = folder / f".made_{n_orders}_{n_customers}_{seed}"
    if stamp.exists() and contacts.exists() and orders.exists():
        return contacts, orders
    rng = np.random.default_rng(seed)
    ids = np.char.add("C", np.arange(n_customers).astype(str))
    mobile = pd.Series(np.char.add("13", np.char.zfill(rng.integers(0, 10**9, n_customers).astype(str), 9)))
    style = rng.integers(0, 4, n_customers)
    spaced = mobile.str[:3] + " " + mobile.str[3:7] + " " + mobile.str[7:]
    phone = np.select([style == 0, style == 1, style == 2], [mobile, "+86 " + mobile, spaced],
                      default="0086-" + mobile.str[:3] + "-" + mobile.str[3:])
    email = np.char.add(np.char.add("user", np.arange(n_customers).astype(str)), "@Example.com ")
    pacsv.write_csv(pa.table({"customer_id": ids, "email": email, "phone": phone,
                              "gender": rng.choice(np.array(["M", "F", "男", "女"]), n_customers),
                              "city": rng.choice(np.array(["上海", "北京", "广州", "深圳", "杭州"]), n_customers)}),
                    contacts)
    chunk = 2_000_000
    start = np.datetime64("2024-01-01T00:00:00")
    writer = None
    for lo in range(0, n_orders, chunk):
        n = min(chunk, n_orders - lo)
        cust = ids[rng.integers(0, n_customers, n)]
        oid = np.char.add("O", (np.arange(lo, lo + n)).astype(str))
        repeat = rng.random(n) < 0.002
        oid = np.where(repeat, np.char.add("O", np.maximum(0, np.arange(lo, lo + n) - 1).astype(str)), oid)
        oid = np.where(rng.random(n) < 0.005, "", oid)
        ts = start + rng.integers(0, 2 * 365 * 86400, n).astype("timedelta64[s]")
        ts_text = np.datetime_as_string(ts, unit="s")
        ts_text = np.char.replace(ts_text, "T", " ")
        slash = rng.random(n) < 0.10
        ts_text = np.where(slash, np.char.replace(np.char.replace(np.char.replace(ts_text, "-", "/"), ":00", ""), ":00", ""), ts_text)
        ts_text = np.where(rng.random(n) < 0.0005, "not a date", ts_text)
        amount = np.round(rng.gamma(2.0, 120.0, n), 2)
        amount = np.where(rng.random(n) < 0.03, -amount, amount)
        amount_text = np.char.mod("%.2f", amount)
        fancy = rng.random(n) < 0.01
        amount_text = np.where(fancy, np.char.add("¥", amount_text), amount_text)
        amount_text = np.where(rng.random(n) < 0.0005, "n/a", amount_text)
        table = pa.table({
            "order_id": oid, "customer_id": cust, "order_ts": ts_text, "amount": amount_text,
            "currency": np.full(n, "CNY"), "channel": rng.choice(np.array(["online", "store", "app"]), n),
            "store_id": np.char.add("S", rng.integers(1, 200, n).astype(str)),
            "status": rng.choice(np.array(["completed", "completed", "completed", "returned"]), n),
            "items": rng.integers(1, 6, n).astype(str),
        })
        if writer is None:
            writer = pacsv.CSVWriter(orders, table.schema)
        writer.write_table(table)
    writer.close()
    stamp.touch()
    return contacts, orders


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--orders", type=int, default=10_000_000)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/crm_bench"))
    ap.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit for both runs")
    ap.add_argument("--identity", default="deterministic", choices=("deterministic", "splink"))
    args = ap.parse_args()

    clock = time.perf_counter()
    contacts, orders = write_data(args.dir / "data", args.orders, args.customers)
    print(f"data: {orders.stat().st_size / 2**20:.0f} MiB orders.csv, {contacts.stat().st_size / 2**20:.0f} MiB "
          f"contacts.csv ({time.perf_counter() - clock:.1f} s to write or reuse)")

    params = validate_params({
        "run": {"name": "bench", "timezone": "Asia/Shanghai", "output_dir": str(args.dir)},
        "sources": [
            {"name": "crm", "kind": "contacts", "path": str(contacts),
             "columns": {"customer_id": "source_customer_id"}},
            {"name": "orders", "kind": "orders", "path": str(orders), "id_source": "crm",
             "columns": {"customer_id": "source_customer_id"}},
        ],
        "ingest": {"tags": {"high_value": "revenue >= 5000"}, "identity": {"method": args.identity}},
    }, args.dir)

    def bare_load() -> tuple[float, float, float, float]:
        """(CTAS seconds, count(*) seconds, CTAS CPU seconds, orders Parquet write seconds) for both files in
        a fresh in-memory DuckDB."""
        scan_dir = args.dir / "scan"
        shutil.rmtree(scan_dir, ignore_errors=True)
        scan_dir.mkdir(parents=True)
        con = duckdb.connect()  # in memory, spilling to scan_dir: the fastest place DuckDB can load into
        con.execute(f"SET memory_limit = '{args.memory_limit}'")
        con.execute(f"SET temp_directory = '{scan_dir}'")
        clock, cpu = time.perf_counter(), cpu_seconds()
        for name, path in (("contacts", contacts), ("orders", orders)):
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_csv('{path}')")
        load, load_cpu = time.perf_counter() - clock, cpu_seconds() - cpu
        clock = time.perf_counter()
        options = ", ".join(f"{k.upper()} {v}" for k, v in PARQUET_COMPRESSION.items())
        con.execute(f"COPY orders TO '{scan_dir / 'orders.parquet'}' (FORMAT parquet, {options})")
        write = time.perf_counter() - clock
        con.execute("DROP TABLE orders; DROP TABLE contacts")
        clock = time.perf_counter()
        for path in (contacts, orders):
            con.execute(f"SELECT count(*) FROM read_csv('{path}')").fetchall()
        count = time.perf_counter() - clock
        con.close()
        return load, count, load_cpu, write

    # The machine may be shared: the bare load runs before and after ingest and both are printed.
    load_before, count_before, cpu_before, write_before = bare_load()
    rss_bare = peak_rss_mib()

    run_dir = args.dir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    clock, cpu = time.perf_counter(), cpu_seconds()
    with Engine(run_dir, memory_limit=args.memory_limit) as eng:
        summary = ingest(eng, params)
    ingest_s, ingest_cpu = time.perf_counter() - clock, cpu_seconds() - cpu
    rss_ingest = peak_rss_mib()
    load_after, count_after, cpu_after, write_after = bare_load()
    scan_s, count_s = (load_before + load_after) / 2, (count_before + count_after) / 2
    scan_cpu = (cpu_before + cpu_after) / 2
    write_s = (write_before + write_after) / 2

    t = summary.timings
    without_identity = ingest_s - t.get("identity", 0.0)
    to_customers = sum(t.get(k, 0.0) for k in ("read_validate", "records", "identity", "customers"))
    q = summary.quality["sources"]["orders"]
    print(f"orders: read {q['rows_read']:,}, loaded {q['rows_loaded']:,}, quarantined {q['rows_quarantined']:,}, "
          f"duplicates {q['duplicates_dropped']:,}; customers {summary.n_customers:,}")
    print("ingest steps (s): " + ", ".join(f"{k} {v:.1f}" for k, v in t.items()))
    print(f"ingest total:                 {ingest_s:7.1f} s")
    print(f"ingest without identity:      {without_identity:7.1f} s")
    print(f"files -> customers table:     {to_customers:7.1f} s   (read + validate + dedup + identity + customers; "
          "the fact tables are written after it)")
    read_validate = t.get("read_validate", 0.0)
    print(f"bare DuckDB load (CTAS, mem): {scan_s:7.1f} s   (before ingest {load_before:.1f} s, after {load_after:.1f} s)")
    print(f"bare DuckDB count(*) scan:    {count_s:7.1f} s   (before {count_before:.1f} s, after {count_after:.1f} s)")
    print(f"ratio ingest / bare load:     {ingest_s / scan_s:7.2f}x  (without identity {without_identity / scan_s:.2f}x; "
          f"read+validate+dedup alone {read_validate / scan_s:.2f}x)")
    print(f"ratio files -> customers:     {to_customers / scan_s:7.2f}x")
    print(f"Parquet write of the orders:  {write_s:7.1f} s   ({write_s / scan_s:.2f}x the bare load: the floor for "
          "writing the orders table, no parsing or validation)")
    print(f"ratio ingest / (bare load + Parquet write): {ingest_s / (scan_s + write_s):.2f}x")
    print(f"CPU seconds (user+sys):       ingest {ingest_cpu:.1f}, bare load {scan_cpu:.1f} -> {ingest_cpu / scan_cpu:.2f}x  "
          "(less sensitive to a shared machine than wall time)")
    print(f"peak RSS after bare load:     {rss_bare:7.0f} MiB")
    print(f"peak RSS after ingest:        {rss_ingest:7.0f} MiB   (DuckDB memory_limit {args.memory_limit}; "
          "ru_maxrss, the process high-water mark)")

if __name__ == "__main__":
    main()
