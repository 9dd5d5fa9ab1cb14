"""Shared scaffolding of the parity suite: one SparkSession per pytest process, a DuckDB and a Spark Engine
over the same run folder, and the table comparison every parity test uses.

Usage in a test file::

    from tests.spark_support import assert_same_table, both_engines

    def test_rfm_same_on_both_engines(spark_session, some_run_dir):
        with both_engines(some_run_dir) as (duck, spark):
            assert_same_table(duck.to_pandas(rfm_expr(duck)), spark.to_pandas(rfm_expr(spark)),
                              keys=["customer_key"])

The ``spark_session`` fixture (session scope; made available to every test by ``tests/conftest.py``) is
built by the engine's own Spark backend, from :data:`SPARK_SETTINGS`, so the tests exercise the same
session set-up a run uses; later Engines of the process reuse it. A machine without a usable Java
runtime makes these tests FAIL (``ensure_java`` raises): the parity suite is never skipped silently.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import pytest

__all__ = ["SPARK_SETTINGS", "DUCKDB_SETTINGS", "spark_session", "engines", "both_engines", "assert_same_table",
           "comparable_frame", "table_frame", "ci_sample", "ci_duckdb_run", "run_cli", "with_engine"]

#: The Spark engine the tests run: two local cores and a small JVM (the test machine is shared). Few
#: shuffle partitions: the CI sample is tiny, and every partition is a task to schedule.
SPARK_SETTINGS: dict[str, Any] = {
    "kind": "spark",
    "master": "local[2]",
    "conf": {
        "spark.driver.memory": "1g",
        "spark.sql.shuffle.partitions": "4",
        "spark.default.parallelism": "2",
    },
}
DUCKDB_SETTINGS: dict[str, Any] = {"kind": "duckdb", "threads": 2}


@pytest.fixture(scope="session")
def spark_session(tmp_path_factory) -> Iterator[Any]:
    """The process's one SparkSession, created through :class:`crmlib.engine.Engine` and stopped at the end.

    Fails (never skips) when no Java 17/21 runtime is found or the session cannot start.
    """
    from crmlib.engine import Engine

    starter = Engine(tmp_path_factory.mktemp("spark-session"), settings=SPARK_SETTINGS)
    session = starter.con._session
    try:
        yield session
    finally:
        starter.close()
        session.stop()


@pytest.fixture(scope="module")
def engines(spark_session, tmp_path_factory) -> Iterator[tuple[Any, Any]]:
    """A DuckDB engine and a Spark engine (:data:`SPARK_SETTINGS`) on the test process's one SparkSession,
    each on its own empty run folder, for a test module."""
    from crmlib.engine import Engine

    duck = Engine(tmp_path_factory.mktemp("duck"))
    spark = Engine(tmp_path_factory.mktemp("spark"), settings=SPARK_SETTINGS)
    yield duck, spark
    spark.close()
    duck.close()


@contextlib.contextmanager
def both_engines(run_dir: str | Path, *, workdir: str | Path | None = None) -> Iterator[tuple[Any, Any]]:
    """A DuckDB and a Spark :class:`~crmlib.engine.Engine`, each on its own copy of ``run_dir``.

    Each engine writes its run tables into its own copy, so a stage function run on both leaves two
    results to compare and ``run_dir`` untouched. Both engines are closed and the copies removed on exit.

    Parameters
    ----------
    run_dir : str or Path
        A run folder (at least ``tables/``), e.g. the DuckDB run of the CI sample.
    workdir : str or Path, optional
        Where the copies go (default: a new temporary folder, removed on exit).

    Yields
    ------
    (Engine, Engine)
        The DuckDB engine and the Spark engine (which reuses the process's SparkSession).
    """
    from crmlib.engine import Engine

    own = workdir is None
    base = Path(tempfile.mkdtemp(prefix="crm-parity-")) if own else Path(workdir)
    copies = {kind: base / f"{Path(run_dir).name}-{kind}" for kind in ("duckdb", "spark")}
    engines: list[Any] = []
    try:
        for target in copies.values():
            shutil.copytree(run_dir, target, dirs_exist_ok=True)
        engines.append(Engine(copies["duckdb"], settings=DUCKDB_SETTINGS))
        engines.append(Engine(copies["spark"], settings=SPARK_SETTINGS))
        yield engines[0], engines[1]
    finally:
        for engine in engines:
            engine.close()
        if own:
            shutil.rmtree(base, ignore_errors=True)


def table_frame(path: str | Path) -> pd.DataFrame:
    """A run table (one Parquet file from DuckDB or pandas, or Spark's folder of part files) as a DataFrame."""
    return pd.read_parquet(path)


def _kind(series: pd.Series) -> str:
    """The kind of a column for comparison: integer width, string storage and time unit do not matter."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "timestamp"
    non_null = series.dropna()
    if len(non_null) and all(isinstance(v, (list, tuple, np.ndarray)) for v in non_null):
        return "list"
    if len(non_null) and all(isinstance(v, dict) for v in non_null):
        return "struct"
    return "object"


def _hashable(value: Any) -> Any:
    """A nested value (list, array, struct) as nested tuples, so rows can be sorted and compared."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def comparable_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with comparable cells: integers (nullable, any width) as Int64, booleans as boolean,
    timestamps in microseconds without a zone (UTC when they had one), strings and nested values as
    Python objects (nested values as tuples), missing values as ``None``/``NA``/``NaT``."""
    out = {}
    for name in frame.columns:
        col = frame[name]
        kind = _kind(col)
        if kind == "int":
            out[name] = col.astype("Int64")
        elif kind == "bool":
            out[name] = col.astype("boolean")
        elif kind == "float":
            out[name] = col.astype("float64")
        elif kind == "timestamp":
            if getattr(col.dt, "tz", None) is not None:
                col = col.dt.tz_convert("UTC").dt.tz_localize(None)
            out[name] = col.astype("datetime64[us]")
        else:
            out[name] = col.astype(object).map(lambda v: None if _is_missing(v) else _hashable(v))
    return pd.DataFrame(out, index=frame.index)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _sort_key(series: pd.Series, float_digits: int) -> pd.Series:
    """A sortable stand-in for a column: floats rounded (so 1e-15 noise cannot reorder rows), missing
    values first, everything else by its text."""
    if pd.api.types.is_float_dtype(series.dtype):
        rounded = series.map(lambda v: "" if pd.isna(v) else f"{v:+.{float_digits}e}")
        return rounded
    return series.map(lambda v: "" if _is_missing(v) else "\x01" + repr(v))


def _aligned(frame: pd.DataFrame, keys: Sequence[str], float_digits: int) -> pd.DataFrame:
    """Rows sorted by ``keys``, then by every other column (tie-break for rows whose keys repeat)."""
    order = list(keys) + [c for c in frame.columns if c not in keys]
    sort_cols = {f"__k{i}": _sort_key(frame[c], float_digits) for i, c in enumerate(order)}
    keyed = frame.assign(**sort_cols).sort_values(list(sort_cols), kind="mergesort")
    return keyed.drop(columns=list(sort_cols)).reset_index(drop=True)


def assert_same_table(a: pd.DataFrame, b: pd.DataFrame, keys: Sequence[str] = (), *, rtol: float = 1e-9,
                      name: str = "table", ignore_columns: Sequence[str] = ()) -> None:
    """Assert that two results (DuckDB ``a``, Spark ``b``) hold the same rows.

    Row order is not compared (neither engine promises one unless the query sorts): rows are aligned by
    ``keys`` and then by the remaining columns. Then:

    * the same columns, of the same kind (integer widths, string storage and time units may differ);
    * exactly the same number of rows and the same key values;
    * integers, booleans, strings, timestamps and nested values (lists, structs) equal, missing where
      the other is missing;
    * floats equal within ``rtol`` relative, with an absolute floor of ``rtol`` times the column's largest
      magnitude (so a value that cancels to ~1e-13 on one engine and 0 on the other passes); NaN matches NaN.

    Parameters
    ----------
    a, b : DataFrame
        The two results.
    keys : sequence of str
        Columns that identify a row (compared exactly). Empty: rows are aligned on all columns.
    rtol : float
        Relative tolerance of float columns.
    name : str
        Name used in the failure messages.
    ignore_columns : sequence of str
        Columns left out of the comparison (each caller says why).

    Raises
    ------
    AssertionError
        With the table, column and first differing rows.
    """
    a = comparable_frame(a.drop(columns=list(ignore_columns), errors="ignore"))
    b = comparable_frame(b.drop(columns=list(ignore_columns), errors="ignore"))
    assert list(a.columns) == list(b.columns) or sorted(a.columns) == sorted(b.columns), (
        f"{name}: columns differ: only in DuckDB {sorted(set(a.columns) - set(b.columns))}, "
        f"only in Spark {sorted(set(b.columns) - set(a.columns))}")
    b = b[list(a.columns)]
    kinds_a = {c: _kind(a[c]) for c in a.columns}
    kinds_b = {c: _kind(b[c]) for c in b.columns}
    differ = {c: (kinds_a[c], kinds_b[c]) for c in a.columns
              if kinds_a[c] != kinds_b[c] and len(a[c].dropna()) and len(b[c].dropna())}
    assert not differ, f"{name}: column kinds differ (DuckDB, Spark): {differ}"
    assert len(a) == len(b), f"{name}: {len(a)} rows on DuckDB, {len(b)} on Spark"
    missing_keys = [k for k in keys if k not in a.columns]
    assert not missing_keys, f"{name}: key columns {missing_keys} not in the table"

    digits = max(3, int(round(-np.log10(rtol))) - 2) if rtol > 0 else 15
    a = _aligned(a, keys, digits)
    b = _aligned(b, keys, digits)
    if keys:
        key_a, key_b = a[list(keys)], b[list(keys)]
        same = (key_a.astype(str).to_numpy() == key_b.astype(str).to_numpy()).all(axis=1)
        if not same.all():
            first = int(np.flatnonzero(~same)[0])
            raise AssertionError(f"{name}: keys differ; first at sorted row {first}: "
                                 f"DuckDB {key_a.iloc[first].to_dict()} vs Spark {key_b.iloc[first].to_dict()}")
    for column in a.columns:
        x, y = a[column], b[column]
        if _kind(x) == "float" or _kind(y) == "float":
            xv = x.astype("float64").to_numpy()
            yv = y.astype("float64").to_numpy()
            both = np.concatenate([xv, yv])
            finite = both[np.isfinite(both)]
            scale = float(np.abs(finite).max()) if finite.size else 0.0
            ok = np.isclose(xv, yv, rtol=rtol, atol=rtol * scale, equal_nan=True)
        else:
            xn, yn = x.isna().to_numpy(), y.isna().to_numpy()
            xs = x.astype(object).where(~x.isna(), None).to_numpy()
            ys = y.astype(object).where(~y.isna(), None).to_numpy()
            ok = (xn & yn) | (~xn & ~yn & np.array([_equal(p, q) for p, q in zip(xs, ys)], dtype=bool))
        if not ok.all():
            bad = np.flatnonzero(~ok)
            rows = [(a.loc[i, list(keys)].to_dict() if keys else i, x.iloc[i], y.iloc[i]) for i in bad[:3]]
            raise AssertionError(f"{name}.{column}: {len(bad)} of {len(a)} rows differ "
                                 f"(keys, DuckDB, Spark): {rows}")


def _equal(p: Any, q: Any) -> bool:
    if p is None or q is None:
        return p is None and q is None
    if isinstance(p, (int, np.integer)) and isinstance(q, (int, np.integer)):
        return int(p) == int(q)
    return bool(p == q) if not isinstance(p, tuple) else p == q


# -- the CI sample and its DuckDB run, shared by the parity tests and the end-to-end Spark run ----------------
#: The CI sample as tests/test_pipeline.py builds it (params/ci.yaml is written for it).
CI_CUSTOMERS = 400
CI_SEED = 7
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def ci_sample(tmp_path_factory) -> Path:
    """A project folder with ``params/ci.yaml`` and the CI sample in ``data/ci`` (runs go to ``reports/``)."""
    from crmlib.sample import generate_sample

    base = tmp_path_factory.mktemp("ci-parity")
    (base / "params").mkdir()
    shutil.copy(ROOT / "params" / "ci.yaml", base / "params" / "ci.yaml")
    generate_sample(base / "data" / "ci", customers=CI_CUSTOMERS, seed=CI_SEED)
    return base


def run_cli(base: Path, params_name: str, run_id: str, *extra: str, timeout: int = 1800) -> dict:
    """``crm run --params params/<params_name> --run-id <run_id>`` in ``base``, as a scheduler would call it.

    Returns
    -------
    dict
        ``proc`` (the finished process), ``run_dir`` (the last line printed, or None) and ``base``.
    """
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "crmlib", "run", "--params", str(base / "params" / params_name),
                           "--run-id", run_id, *extra], capture_output=True, text=True, timeout=timeout, cwd=base)
    lines = proc.stdout.strip().splitlines()
    return {"proc": proc, "run_dir": Path(lines[-1]) if lines else None, "base": base}


def with_engine(base: Path, source: str, target: str, engine: dict[str, Any]) -> Path:
    """Write ``params/<target>``: ``params/<source>`` with its ``engine:`` section replaced by ``engine``."""
    import yaml

    params = yaml.safe_load((base / "params" / source).read_text(encoding="utf-8"))
    params["engine"] = engine
    path = base / "params" / target
    path.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def ci_duckdb_run(ci_sample) -> dict:
    """The whole pipeline on the CI sample with the default engine (DuckDB), run once per test session.

    Fails when that run does not end with exit code 0: every parity comparison starts from it.
    """
    result = run_cli(ci_sample, "ci.yaml", "ci-duckdb")
    assert result["proc"].returncode == 0, result["proc"].stdout + result["proc"].stderr
    return result
