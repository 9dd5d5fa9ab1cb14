"""The Spark backend: the same Ibis expressions on Apache Spark (``engine: {kind: spark}``).

One SparkSession per process, made from the params ``engine:`` section (``master``, ``conf``); a session
that already exists (``spark-submit``, a notebook on a cluster, Spark Connect) is reused as it is.
Spark-specific behaviour lives here and nowhere else:

* **Scratch relations.** Ibis' PySpark backend has no temporary tables, and a lazily cached view breaks
  when its input is dropped, so a scratch relation is computed eagerly (``localCheckpoint(eager=True)``:
  the rows are kept by the executors, the lineage is cut) and registered as a temporary view.
* **Run tables** are written as a folder of part files at ``tables/<name>.parquet``; DuckDB (reports,
  the run page) reads the folder too. On a cluster the run folder must be on storage every executor
  and the driver see.
* **Time stamps** are wall-clock times without a zone (``TIMESTAMP_NTZ``) as on DuckDB, and the session
  time zone is UTC so nothing is shifted on the way in or out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import ibis
import pandas as pd

__all__ = ["connect", "scratch", "drop", "read_parquet", "write_parquet", "session_conf"]

KIND = "spark"
#: Session settings crmlib needs for results equal to DuckDB's; a params ``engine.conf`` entry wins.
BASE_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
#: On a local master the default 200 shuffle partitions make every small query pay for 200 tasks.
LOCAL_SHUFFLE_PARTITIONS = "8"


def session_conf(settings: Mapping[str, Any], scratch_dir: Path) -> dict[str, str]:
    """The Spark configuration a new session is built with (base settings, then ``engine.conf``)."""
    master = str(settings.get("master") or "local[*]")
    conf = dict(BASE_CONF)
    if master.startswith("local"):
        conf["spark.sql.shuffle.partitions"] = LOCAL_SHUFFLE_PARTITIONS
        conf["spark.local.dir"] = (scratch_dir / "spark").as_posix()
        if settings.get("memory_limit"):
            conf["spark.driver.memory"] = _java_size(str(settings["memory_limit"]))
    jar = _splink_jar()
    if jar:
        conf["spark.jars"] = jar
    conf.update({str(k): str(v) for k, v in (settings.get("conf") or {}).items()})
    return conf


def connect(settings: Mapping[str, Any], scratch_dir: Path, **_: Any) -> Any:
    """An Ibis connection over the process's SparkSession (created from ``settings`` if none is active)."""
    from crmlib.backends.java import ensure_java

    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is None:
        ensure_java()
        builder = SparkSession.builder.master(str(settings.get("master") or "local[*]")).appName("crmlib")
        for key, value in session_conf(settings, scratch_dir).items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
    con = ibis.pyspark.connect(session)
    con._crm_scratch = {}
    return con


def _spark_frame(con: Any, obj: Any) -> Any:
    """The pyspark DataFrame of an Ibis expression or a pandas DataFrame."""
    expr = ibis.memtable(obj) if isinstance(obj, pd.DataFrame) else obj
    con._run_pre_execute_hooks(expr)
    return con._session.sql(con.compile(expr))


def scratch(con: Any, name: str, obj: Any, *, schema: Any = None) -> ibis.Table:
    """Compute ``obj`` now and keep its rows as the temporary view ``name`` (see the module docstring)."""
    if isinstance(obj, pd.DataFrame) and schema is not None:
        obj = ibis.memtable(obj, schema=schema)
    frame = _spark_frame(con, obj).localCheckpoint(eager=True)
    drop(con, name)
    frame.createOrReplaceTempView(name)
    con._crm_scratch[name] = frame
    return con.table(name)


def drop(con: Any, name: str) -> None:
    """Drop the temporary view ``name`` and release its checkpointed rows."""
    con._session.catalog.dropTempView(name)
    frame = getattr(con, "_crm_scratch", {}).pop(name, None)
    if frame is not None:
        frame.unpersist()


def read_parquet(con: Any, path: Path, name: str) -> ibis.Table:
    """A run table (one Parquet file or a folder of parts) as a temporary view."""
    return con.read_parquet(path.as_posix(), table_name=name)


def write_parquet(con: Any, expr: ibis.Table, path: Path, compression: Mapping[str, Any]) -> None:
    """Write ``expr`` as a folder of Parquet part files at ``path`` (Spark's own layout)."""
    frame = _spark_frame(con, expr)
    frame.write.mode("overwrite").option("compression", str(compression.get("compression", "zstd"))).parquet(
        path.as_posix())


def to_pandas(con: Any, expr: ibis.Expr) -> pd.DataFrame:
    return expr.to_pandas()


def disconnect(con: Any) -> None:
    """Release this engine's scratch views; the session stays for the next engine of the process."""
    for name in list(getattr(con, "_crm_scratch", {})):
        try:
            drop(con, name)
        except Exception:  # a session already stopped: nothing left to release
            pass


def _splink_jar() -> str | None:
    """Splink's similarity functions for Spark (jaro-winkler and friends), if Splink is installed."""
    try:
        from splink.internals.spark.jar_location import similarity_jar_location
    except ImportError:
        return None
    return similarity_jar_location()


def _java_size(text: str) -> str:
    """``"3GB"``/``"3GiB"``/``"3000MB"`` as a JVM size (``3g``, ``3000m``)."""
    t = text.strip().lower().replace("ib", "").replace("b", "")
    return t if t[-1:] in "kmgt" else t + "m"


# -- functions whose SQL differs between backends ------------------------------------------------------
# (filled in by the ingest and identity work: date parsing, string distance, Splink)
