"""End to end on Spark: ``crm run`` with ``engine: {kind: spark, master: "local[2]"}`` on the CI sample gives
the same run as the default engine (DuckDB).

Both runs go through the command line, as a scheduler calls it; the notebook kernels pick the engine up
from the params alone (``context.open_run`` hands ``params["engine"]`` to the Engine). Every run table
(``tables/*.parquet`` and ``tables/*.json``) and every audience file must be equal: the same rows and keys,
floats to 1e-9 relative, strings, integers and timestamps exactly. The only differences allowed are:

* the order of rows (no run table promises one; rows are aligned by key before comparing);
* how a table is stored: Spark writes a folder of part files at ``tables/<name>.parquet``, DuckDB and
  pandas one file (integer widths and string storage may differ, values may not);
* when the run happened, inside JSON documents (timings and time stamps: keys in :data:`RUN_TIME_KEYS`);
* the standard errors of fitted models (:data:`LOOSER_JSON`): a per-customer mean summed in another order
  differs in its last bit, the optimiser then stops at a point that differs within its own tolerance, and
  a finite-difference Hessian magnifies that to ~1e-8; the fitted parameters still agree to 1e-9.

Spark needs a Java 17 or 21 runtime: without one the Spark run fails, and so do these tests.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.spark_support import ROOT, SPARK_SETTINGS, assert_same_table, run_cli, table_frame, with_engine

#: Row keys of the contract tables, for readable failures (other tables are aligned on all their columns).
KEYS = {
    "customers": ["customer_key"],
    "identity_map": ["source", "source_customer_id"],
    "quarantine": ["source", "row_number"],
    "rfm": ["customer_key"],
    "clv": ["customer_key"],
    "clusters": ["customer_key"],
    "loyalty": ["customer_key"],
    "attribution": ["model", "channel"],
    "roi": ["model", "channel"],
    "mmm": ["channel"],
    "segments": ["segment"],
}
#: JSON keys that say when or how fast the run went, not what it found: they differ from run to run on
#: either engine.
RUN_TIME_KEYS = ("generated_at", "fit_seconds", "seconds", "duration_s", "elapsed_s")
#: JSON values compared with a looser relative tolerance, by key, and why (see the module docstring).
LOOSER_JSON = {"standard_errors": 1e-6}
#: The row-level tables: they can be large, so on Spark the engine writes them itself (a folder of part
#: files), never through pandas on the driver.
ROW_LEVEL_TABLES = ("orders", "order_lines", "events", "touchpoints")


@pytest.fixture(scope="module")
def spark_run(ci_sample) -> dict:
    """The whole pipeline on the CI sample with the Spark engine (``local[2]``, a 1 GB driver per kernel)."""
    with_engine(ci_sample, "ci.yaml", "ci_spark.yaml", dict(SPARK_SETTINGS))
    return run_cli(ci_sample, "ci_spark.yaml", "ci-spark")


def _stage_errors(proc) -> str:
    """The run's progress lines and the stage errors (the Spark and Java log noise left out)."""
    keep = [line for line in proc.stderr.splitlines() if not any(
        noise in line for noise in (" WARN ", "log4j", "setLogLevel", "incubator modules"))]
    return proc.stdout + "\n".join(keep)


@pytest.mark.pipeline
def test_spark_run_succeeds_with_every_stage_ok(spark_run):
    proc = spark_run["proc"]
    assert proc.returncode == 0, _stage_errors(proc)
    manifest = json.loads((spark_run["run_dir"] / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["params"]["engine"]["kind"] == "spark"
    assert {s["stage"]: s["status"] for s in manifest["stages"]} == {
        "ingest": "ok", "segmentation": "ok", "roi": "ok", "ab_tests": "ok"}, _stage_errors(proc)


@pytest.mark.pipeline
def test_row_level_tables_are_written_by_spark(spark_run, ci_duckdb_run):
    tables = spark_run["run_dir"] / "tables"
    for name in ROW_LEVEL_TABLES:
        if (ci_duckdb_run["run_dir"] / "tables" / f"{name}.parquet").exists():
            path = tables / f"{name}.parquet"
            assert path.is_dir() and list(path.glob("part-*.parquet")), f"{name}: not a folder of Spark part files"


@pytest.mark.pipeline
def test_same_run_tables_as_duckdb(spark_run, ci_duckdb_run):
    duck, spark = ci_duckdb_run["run_dir"] / "tables", spark_run["run_dir"] / "tables"
    names_duck = sorted(p.name for p in duck.iterdir() if not p.name.startswith("."))
    names_spark = sorted(p.name for p in spark.iterdir() if not p.name.startswith("."))
    assert names_spark == names_duck, (f"only on DuckDB: {sorted(set(names_duck) - set(names_spark))}; "
                                       f"only on Spark: {sorted(set(names_spark) - set(names_duck))}")
    failures = []
    for name in names_duck:
        try:
            if name.endswith(".parquet"):
                stem = name[: -len(".parquet")]
                assert_same_table(table_frame(duck / name), table_frame(spark / name), keys=KEYS.get(stem, ()),
                                  name=stem)
            elif name.endswith(".json"):
                assert_same_json(_read_json(duck / name), _read_json(spark / name), name)
        except AssertionError as exc:  # every differing table in one report, so each can be routed
            failures.append(str(exc)[:1500])
    assert not failures, f"{len(failures)} of {len(names_duck)} run tables differ:\n" + "\n".join(failures)


@pytest.mark.pipeline
def test_same_audience_files_as_duckdb(spark_run, ci_duckdb_run):
    duck, spark = ci_duckdb_run["run_dir"] / "audiences", spark_run["run_dir"] / "audiences"
    names = sorted(p.name for p in duck.glob("*.parquet"))
    assert names, "the DuckDB run wrote no audience files"
    assert sorted(p.name for p in spark.glob("*.parquet")) == names
    for name in names:
        assert_same_table(table_frame(duck / name), table_frame(spark / name), name=f"audiences/{name}")
        csv = name.replace(".parquet", ".csv")
        # numbers parsed back: a sum in another order may print as 6603.189999999999 instead of 6603.19
        assert_same_table(pd.read_csv(duck / csv), pd.read_csv(spark / csv), name=f"audiences/{csv}")


@pytest.mark.pipeline
def test_report_pages_of_the_spark_run_are_written(spark_run, ci_duckdb_run):
    run_dir = spark_run["run_dir"]
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    index = (run_dir / "index.html").read_text(encoding="utf-8")
    assert "engine spark (local[2])" in index
    assert "engine duckdb" not in (ci_duckdb_run["run_dir"] / "index.html").read_text(encoding="utf-8")
    for stage in manifest["stages"]:
        assert stage.get("html"), f"{stage['stage']}: no page ({stage['status']})"
        page = (run_dir / stage["html"]).read_text(encoding="utf-8")
        assert "Traceback" not in page, stage["stage"]
        assert stage["html"] in index, stage["stage"]


def test_sample_spark_params_are_the_sample_on_spark():
    """params/sample_spark.yaml is params/sample.yaml with the Spark engine and its own run name."""
    from crmlib.params import load_params

    duck, spark = load_params(ROOT / "params" / "sample.yaml"), load_params(ROOT / "params" / "sample_spark.yaml")
    assert spark["engine"]["kind"] == "spark" and spark["engine"]["master"] == "local[2]"
    assert duck["engine"]["kind"] == "duckdb"
    assert spark["run"]["name"] != duck["run"]["name"]  # its runs are listed apart in the reports index
    for params in (duck, spark):
        params.pop("engine")
        params.pop("_path")
        params["run"].pop("name")
    assert spark == duck


def test_run_page_names_an_engine_other_than_duckdb():
    from crmlib.report import _engine_text

    spark = {"params": {"engine": {"kind": "spark", "master": "spark://<head>:7077"}}}
    assert _engine_text(spark, "engine") == " &middot; engine spark (spark://&lt;head&gt;:7077)"
    assert _engine_text({"params": {"engine": {"kind": "duckdb", "master": "local[*]"}}}, "engine") == ""
    assert _engine_text({"params": {}}, "engine") == ""  # manifests of runs made before engine: existed


# -- JSON documents --------------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def assert_same_json(a: Any, b: Any, where: str, *, rtol: float = 1e-9) -> None:
    """Two JSON documents are equal: the same keys and items, numbers to ``rtol`` relative (looser under
    the keys of :data:`LOOSER_JSON`), timings and time stamps (:data:`RUN_TIME_KEYS`) left out."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys_a = {k for k in a if k not in RUN_TIME_KEYS}
        keys_b = {k for k in b if k not in RUN_TIME_KEYS}
        assert keys_a == keys_b, f"{where}: keys only on DuckDB {sorted(keys_a - keys_b)}, only on Spark " \
                                 f"{sorted(keys_b - keys_a)}"
        for key in sorted(keys_a):
            assert_same_json(a[key], b[key], f"{where}.{key}", rtol=max(rtol, LOOSER_JSON.get(key, 0.0)))
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} items on DuckDB, {len(b)} on Spark"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_json(x, y, f"{where}[{i}]", rtol=rtol)
    elif isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), f"{where}: {a!r} vs {b!r}"
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rtol, abs_tol=1e-12), \
            f"{where}: {a!r} on DuckDB, {b!r} on Spark"
    else:
        assert a == b, f"{where}: {a!r} on DuckDB, {b!r} on Spark"


# -- the harness itself: the comparison must see every kind of difference --------------------------------
def _orders() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_key": ["a", "b", "c"],
        "orders": pd.array([1, 2, 3], dtype="int64"),
        "revenue": [10.0, 2.5e6, 0.1],
        "last_ts": pd.to_datetime(["2026-01-01 10:00:00", "2026-02-01 00:00:01", None]),
        "tags": [["x"], [], None],
    })


def test_same_rows_in_another_order_and_width_are_the_same_table():
    a = _orders()
    b = a.iloc[::-1].astype({"orders": "int32"}).reset_index(drop=True)
    b.loc[b.customer_key == "b", "revenue"] = 2.5e6 * (1 + 1e-12)
    assert_same_table(a, b, keys=["customer_key"])


@pytest.mark.parametrize("change, message", [
    (lambda f: f.iloc[:2], "rows"),
    (lambda f: f.assign(customer_key=["a", "b", "d"]), "keys differ"),
    (lambda f: f.assign(orders=[1, 2, 4]), "orders"),
    (lambda f: f.assign(revenue=[10.0, 2.5e6 * (1 + 1e-8), 0.1]), "revenue"),
    (lambda f: f.assign(revenue=[10.0, 2.5e6, None]), "revenue"),
    (lambda f: f.assign(last_ts=pd.to_datetime(["2026-01-01 10:00:00", "2026-02-01 00:00:02", None])), "last_ts"),
    (lambda f: f.assign(tags=[["x"], ["y"], None]), "tags"),
    (lambda f: f.assign(orders=[1.0, 2.0, 3.0]), "kinds differ"),
    (lambda f: f.drop(columns=["tags"]), "columns differ"),
])
def test_every_kind_of_difference_fails(change, message):
    with pytest.raises(AssertionError, match=message):
        assert_same_table(_orders(), change(_orders()), keys=["customer_key"])


def test_both_engines_write_and_read_the_same_table(spark_session, tmp_path):
    from tests.spark_support import both_engines

    run_dir = tmp_path / "run"
    (run_dir / "tables").mkdir(parents=True)
    _orders().drop(columns=["tags"]).to_parquet(run_dir / "tables" / "orders.parquet", index=False)
    with both_engines(run_dir) as (duck, spark):
        assert (duck.kind, spark.kind) == ("duckdb", "spark")
        for engine in (duck, spark):
            orders = engine.table("orders")
            engine.write_table("totals", orders.group_by("customer_key").agg(
                revenue=orders.revenue.sum(), orders=orders.count(), last_ts=orders.last_ts.max()))
        assert duck.table_path("totals").is_file() and spark.table_path("totals").is_dir()
        assert_same_table(table_frame(duck.table_path("totals")), table_frame(spark.table_path("totals")),
                          keys=["customer_key"], name="totals")
    assert not (run_dir / "tables" / "totals.parquet").exists()  # each engine wrote into its own copy
