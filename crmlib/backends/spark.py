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

import re
import atexit
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping

import ibis
import ibis.expr.datatypes as dt
import pandas as pd

from crmlib.backends import ClosingContext

__all__ = ["connect", "scratch", "drop", "read_parquet", "write_parquet", "session_conf", "char_levenshtein",
           "splink_db_api", "SplinkDatabase"]

KIND = "spark"
#: Session settings crmlib needs for results equal to DuckDB's; a params ``engine.conf`` entry wins.
BASE_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # the driver keeps the plans and metrics of recent queries for the (disabled) UI; a run makes
    # thousands of small queries, and the defaults (1,000 each) held hundreds of MB of a 1 GB driver
    "spark.sql.ui.retainedExecutions": "20",
    "spark.ui.retainedJobs": "20",
    "spark.ui.retainedStages": "20",
}
#: log4j2 settings of the driver: errors only, on stderr.
LOG_CONFIG = Path(__file__).with_name("log4j2-spark.properties")
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
    # Spark's start-up notices and warnings would reach the console before any setLogLevel: a scheduler
    # reads stderr for operator warnings only, so the driver logs errors only unless conf says otherwise
    conf["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()}"
    conf.update({str(k): str(v) for k, v in (settings.get("conf") or {}).items()})
    return conf


def connect(settings: Mapping[str, Any], scratch_dir: Path | None = None, **_: Any) -> Any:
    """An Ibis connection over the process's SparkSession (created from ``settings`` if none is active).

    ``master: sc://host:port`` opens a Spark Connect session: no local JVM, and only ``spark.sql.*``
    settings, since a client cannot change a running server's static configuration.
    """
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is None:
        master = str(settings.get("master") or "local[*]")
        # the session outlives this Engine (later Engines of the process reuse it), so its spill folder
        # and log are the process's own scratch directory, removed at exit, not this Engine's
        session_dir = _process_scratch_dir()
        conf = session_conf(settings, session_dir)
        if master.startswith("sc://"):
            builder = SparkSession.builder.remote(master).appName("crmlib")
            conf = {k: v for k, v in conf.items() if k.startswith("spark.sql.")}
        else:
            from crmlib.backends.java import ensure_java

            ensure_java()
            builder = SparkSession.builder.master(master).appName("crmlib")
        for key, value in conf.items():
            builder = builder.config(key, value)
        with _stderr_to(session_dir / "spark-driver.log"):
            session = builder.getOrCreate()
    con = ibis.pyspark.connect(session)
    con.compiler = _DoubleLiteralCompiler()
    con._crm_scratch = {}
    return con


#: ASCII white space as Python's str.strip and DuckDB's trim see it (Java regex syntax).
_ASCII_SPACE = r"[ \t\n\r\x0B\f]"
_EDGE_SPACE = "^" + _ASCII_SPACE + "+|" + _ASCII_SPACE + "+$"


def _double_literal_compiler_class() -> type:
    import sqlglot.expressions as sge
    from ibis.backends.sql.compilers.pyspark import PySparkCompiler

    class DoubleLiteralCompiler(PySparkCompiler):
        """Ibis' PySpark compiler, with three results made equal to DuckDB's.

        * Float literals are typed DOUBLE: Spark reads ``60.0`` as a DECIMAL, and an integer divided by
          a DECIMAL is rounded to 6 decimal places (``seconds / 60.0`` differed in the 7th digit).
        * ``strip`` removes ASCII white space only: Ibis writes ``TRIM('\\t\\n\\r\\v\\f' FROM x)``, and Spark
          reads ``\\v`` and ``\\f`` as the letters v and f (``"chef"`` became ``"che"``).
        * ``re_replace`` refers to groups as ``\\1`` (DuckDB's RE2); Spark's Java regex wants ``$1``.
        """

        def visit_NonNullLiteral(self, op, *, value, dtype):
            result = super().visit_NonNullLiteral(op, value=value, dtype=dtype)
            if dtype.is_floating():
                return self.cast(result, dtype)
            return result

        def visit_Strip(self, op, *, arg):
            return self.f.regexp_replace(arg, _EDGE_SPACE, "")

        def visit_RegexReplace(self, op, *, arg, pattern, replacement):
            from ibis.expr import operations as ops

            if isinstance(op.replacement, ops.Literal) and isinstance(op.replacement.value, str):
                text = op.replacement.value.replace("$", "\\$")
                replacement = sge.convert(re.sub(r"\\(\d)", r"$\1", text))
            return self.f.regexp_replace(arg, pattern, replacement)

    # set after the class is made: a subclass re-installs the parent's SIMPLE_OPS (LTRIM/RTRIM, which on
    # Spark trim the space character only) over visit methods defined in its body
    DoubleLiteralCompiler.visit_LStrip = lambda self, op, *, arg: self.f.regexp_replace(
        arg, "^" + _ASCII_SPACE + "+", "")
    DoubleLiteralCompiler.visit_RStrip = lambda self, op, *, arg: self.f.regexp_replace(
        arg, _ASCII_SPACE + "+$", "")
    return DoubleLiteralCompiler


def _DoubleLiteralCompiler() -> Any:
    return _double_literal_compiler_class()()


def _spark_frame(con: Any, obj: Any) -> Any:
    """The pyspark DataFrame of an Ibis expression or a pandas DataFrame (a pyspark DataFrame as it is:
    ingest's Spark reader numbers file rows with the DataFrame API)."""
    if hasattr(obj, "sparkSession"):
        return obj
    expr = ibis.memtable(obj) if isinstance(obj, pd.DataFrame) else obj
    con._run_pre_execute_hooks(expr)
    frame = con._session.sql(con.compile(expr))
    # Ibis registers a DataFrame's naive time stamps as Spark's TIMESTAMP (an instant), which Parquet
    # then stores as UTC instants and DuckDB reads back zoned: keep them wall-clock times (TIMESTAMP_NTZ)
    naive = {name for name, dtype in expr.schema().items() if dtype.is_timestamp() and dtype.timezone is None}
    instants = [f.name for f in frame.schema.fields
                if f.name in naive and f.dataType.typeName() == "timestamp"]
    if instants:
        frame = frame.withColumns({name: frame[name].cast("timestamp_ntz") for name in instants})
    return frame


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
        # a checkpointed frame's rows are blocks of the RDD under its plan, which DataFrame.unpersist
        # (the cache manager's) does not release
        try:
            frame._jdf.queryExecution().analyzed().rdd().unpersist(False)
        except Exception:  # Spark Connect: the server releases the rows with the session
            pass


def read_parquet(con: Any, path: Path, name: str) -> ibis.Table:
    """A run table (one Parquet file or a folder of parts) as a temporary view."""
    return con.read_parquet(path.as_posix(), table_name=name)


def write_parquet(con: Any, expr: ibis.Table, path: Path, compression: Mapping[str, Any]) -> None:
    """Write ``expr`` as a folder of Parquet part files at ``path`` (Spark's own layout)."""
    frame = _spark_frame(con, expr)
    frame.write.mode("overwrite").option("compression", str(compression.get("compression", "zstd"))).parquet(
        path.as_posix())


def to_pandas(con: Any, expr: ibis.Expr) -> pd.DataFrame:
    # on the engine's connection: an expression made only of memtables would otherwise run on Ibis'
    # default backend (DuckDB) and pass for a Spark result
    return con.execute(expr)


def disconnect(con: Any) -> None:
    """Release this engine's scratch views; the session stays for the next engine of the process."""
    for name in list(getattr(con, "_crm_scratch", {})):
        try:
            drop(con, name)
        except Exception:  # a session already stopped: nothing left to release
            pass


_PROCESS_SCRATCH: list[Path] = []


def _process_scratch_dir() -> Path:
    """A scratch directory for the Spark session of this process (see :func:`crmlib.engine.make_scratch_dir`),
    held until the interpreter exits."""
    if not _PROCESS_SCRATCH:
        from crmlib.engine import make_scratch_dir, remove_scratch_dir

        path, lock_fd = make_scratch_dir("spark-")
        atexit.register(remove_scratch_dir, path, lock_fd)
        _PROCESS_SCRATCH.append(path)
    return _PROCESS_SCRATCH[0]


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send this process's stderr (file descriptor 2) to ``path`` while the block runs.

    A local driver JVM inherits the descriptor it starts with and writes its start-up notices there (the
    JVM's own "Using incubator modules" among them), which no log setting silences; a scheduler reads
    stderr for operator warnings only. Java errors still reach the caller as Python exceptions.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


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


# -- string distance ---------------------------------------------------------------------------------
# Spark's levenshtein counts characters (Java strings), as crmlib wants on every engine; Splink's
# jaro_winkler (its similarity jar, registered by SplinkDatabase) compares characters too.


def char_levenshtein(a: ibis.Value, b: ibis.Value) -> ibis.Value:
    """Levenshtein distance of two strings counted in characters (null if either is null)."""
    return a.levenshtein(b)


# -- Splink ------------------------------------------------------------------------------------------


class SplinkDatabase(ClosingContext):
    """Where Splink computes on Spark: the engine's own session, nothing pulled to the driver.

    Splink's Spark API registers the similarity functions of its jar (``jaro_winkler``; the jar is on
    the session's class path, see :func:`session_conf`). Its intermediate tables are persisted
    DataFrames behind temporary views (no checkpoint folder needed); :meth:`close` releases the ones
    this object made. Custom SQL in Splink settings is written in the DuckDB dialect (``dialect``) and
    transpiled by Splink: read as Spark SQL, its double-quoted identifiers would be string literals.
    """

    dialect = "duckdb"
    levenshtein_function = "levenshtein"
    jaro_winkler_function = "jaro_winkler"

    def __init__(self, con: Any) -> None:
        from splink.backends.spark import SparkAPI

        self._con = con
        self._session = con._session
        self._before = {t.name for t in self._session.catalog.listTables() if t.isTemporary}
        self.api = SparkAPI(spark_session=self._session, break_lineage_method="persist")
        self._registered: list[str] = []

    def register(self, expr: ibis.Table, name: str) -> Any:
        """Hand the engine table ``expr`` to Splink as its input table ``name`` (a Spark DataFrame)."""
        self._registered.append(name)
        return self.api.register(_spark_frame(self._con, expr), table_name=name)

    def result(self, physical_name: str, columns: list[str]) -> ibis.Table:
        """Splink's output ``physical_name`` (``columns`` only) as a table of the engine."""
        return self._con.table(physical_name).select(*columns)

    def close(self) -> None:
        """Drop the temporary views Splink made and unpersist their DataFrames."""
        for table in self._session.catalog.listTables():
            made = table.name.startswith("__splink") or table.name in self._registered
            if table.isTemporary and table.name not in self._before and made:
                try:
                    self._session.table(table.name).unpersist()
                except Exception:  # a view whose input is gone: nothing cached to release
                    pass
                self._session.catalog.dropTempView(table.name)


def splink_db_api(engine: Any) -> SplinkDatabase:
    """Splink's database for ``engine`` (a :class:`crmlib.engine.Engine`; see :class:`SplinkDatabase`)."""
    return SplinkDatabase(engine.con)


# -- date parsing ------------------------------------------------------------------------------------
# crmlib.ingest.normalize names its formats in strftime notation (TIMESTAMP_FORMATS, a source's
# date_format) and DuckDB reads them natively; here they become Java DateTimeFormatter patterns, and
# every function gives DuckDB's result for the same text (tests/ingest/test_dates_parity.py checks the
# whole table of formats, offsets, Chinese dates and bad values on both engines).

#: strftime directive -> Java pattern letters when the field stands alone (any number of digits, as
#: DuckDB reads ``%m`` = ``3``), and when it touches another number (``%Y%m%d``: fixed widths).
_JAVA_FIELDS = {
    "Y": ("y", "yyyy"), "m": ("M", "MM"), "d": ("d", "dd"), "H": ("H", "HH"), "M": ("m", "mm"),
    "S": ("s", "ss"), "I": ("h", "hh"), "y": ("yy", "yy"), "j": ("D", "DDD"),
}
_JAVA_TEXT = {"p": "a", "b": "MMM", "B": "MMMM", "a": "EEE", "A": "EEEE", "f": "SSSSSS", "z": "XX", "Z": "z",
              "e": "d"}
#: DuckDB's cast reads ISO 8601 and nothing else; Spark's cast also reads ``2026``, ``2026-03``,
#: ``2026/3/1`` or ``2026-03-01T14``, which must stay null here as they are on DuckDB.
#: DuckDB's cast takes ``-``, ``/`` or a space between year, month and day (the same one twice), a time
#: after ``T`` or a space (``24:00`` is the end of the day), and ignores an offset after the time.
_ISO_TIMESTAMP = (r"^([0-9]{4})([-/ ])([0-9]{1,2})\2([0-9]{1,2})(([T ])[0-9]{1,2}:[0-9]{1,2}(:[0-9]{1,2}(\.[0-9]*)?)?"
                  r"(Z|[+-][0-9]{2}(:?[0-9]{2}(:?[0-9]{2})?)?)?)? ?$")
_ISO_PARTS = (r"^([0-9]{4})[-/ ]([0-9]{1,2})[-/ ]([0-9]{1,2})(?:[T ]([0-9]{1,2}:[0-9]{1,2}(?::[0-9]{1,2}(?:\.[0-9]*)?)?))?"
              r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2}(?::?[0-9]{2})?)?)? ?$")
_END_OF_DAY = r"^24:00(:00(\.0*)?)?$"
_OFFSET_END = r"([+-])([0-9]{2}):?([0-9]{2})?$"


@ibis.udf.scalar.builtin(name="try_to_timestamp")
def _try_to_timestamp(text: dt.string, pattern: dt.string) -> dt.timestamp:  # NTZ (the session's type)
    ...


@ibis.udf.scalar.builtin(name="convert_timezone")
def _convert_timezone(source: dt.string, target: dt.string, ts: dt.timestamp) -> dt.timestamp:
    ...


def java_pattern(fmt: str) -> str:
    """The Java ``DateTimeFormatter`` pattern that reads what the strftime format ``fmt`` reads on DuckDB.

    Literal text is quoted (``年``, ``T``, ``/``); a numeric field next to another numeric field gets a
    fixed width (``%Y%m%d`` -> ``yyyyMMdd``; DuckDB would also read ``2026031``, which is why
    :func:`crmlib.ingest.normalize.parse_timestamp` tries such formats only on texts of their length).

    Raises
    ------
    ValueError
        For a directive with no Java equivalent.
    """
    parts: list[tuple[str, str]] = []  # (kind, text): kind "num" (directive letter), "text" or "lit"
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%" and i + 1 < len(fmt):
            code = fmt[i + 1]
            i += 2
            if code == "%":
                parts.append(("lit", "%"))
            elif code in _JAVA_FIELDS:
                parts.append(("num", code))
            elif code in _JAVA_TEXT:
                parts.append(("text", _JAVA_TEXT[code]))
            else:
                raise ValueError(f"date format {fmt!r}: %{code} has no equivalent on Spark")
        else:
            parts.append(("lit", ch))
            i += 1
    out, literal = [], ""
    for k, (kind, value) in enumerate(parts):
        if kind == "lit":
            literal += value
            continue
        if literal:  # one quoted run: two quoted pieces side by side would read as a quote character
            out.append("'" + literal.replace("'", "''") + "'")
            literal = ""
        if kind == "num":
            touches = any(0 <= j < len(parts) and parts[j][0] == "num" for j in (k - 1, k + 1))
            free, fixed = _JAVA_FIELDS[value]
            out.append(fixed if touches else free)
        else:
            out.append(value)
    if literal:
        out.append("'" + literal.replace("'", "''") + "'")
    return "".join(out)


def _duckdb_whitespace(text: ibis.Value) -> ibis.Value:
    """Whitespace as DuckDB's strptime sees it: none at the ends, any run of it one space."""
    return text.re_replace(r"\s+", " ").re_replace(r"^ | $", "")


def try_parse_timestamp(text: ibis.Value, fmt: str) -> ibis.Value:
    """``text`` read with the strftime format ``fmt`` as a naive timestamp; null when it does not fit
    (``try_to_timestamp`` with :func:`java_pattern`)."""
    squeezed = " ".join(fmt.split())
    return _try_to_timestamp(_duckdb_whitespace(text), java_pattern(squeezed))


def try_cast_timestamp(text: ibis.Value) -> ibis.Value:
    """ISO 8601 text (``2026-03-01``, ``2026-3-1 14:05[:09[.123]]``, with ``T``) as a naive timestamp;
    an offset at the end is ignored; null for anything else (as DuckDB's cast).

    The text is rewritten as ``yyyy-M-d H:m[:s[.f]]`` first: Spark's cast alone also reads ``2026``,
    ``2026-03`` or ``2026-03-01T14``, and not an offset right after the minutes.
    """
    shaped = text.re_search(_ISO_TIMESTAMP)
    day = (text.re_extract(_ISO_PARTS, 1) + "-" + text.re_extract(_ISO_PARTS, 2) + "-"
           + text.re_extract(_ISO_PARTS, 3))
    clock = text.re_extract(_ISO_PARTS, 4).nullif("")  # "" or null where the text has no time
    end_of_day = clock.re_search(_END_OF_DAY).fill_null(False)
    stamp = ibis.ifelse(end_of_day | clock.isnull(), day, day + " " + clock).try_cast("timestamp")
    stamp = ibis.ifelse(end_of_day, stamp + ibis.interval(days=1), stamp)
    return ibis.ifelse(shaped, stamp, ibis.null("timestamp"))


def zoned_to_local(text: ibis.Value, timezone: str) -> ibis.Value:
    """ISO 8601 text that ends in an offset (``+08:00``, ``+0800``, ``+08``, ``Z``) as the naive wall
    time in ``timezone`` of the instant it names; null when it does not parse.

    The wall time the text states, minus its offset, is the instant in UTC (``convert_timezone`` then
    gives the wall time in ``timezone``): Spark's own zoned cast would need a ``TIMESTAMP_LTZ`` that
    Ibis does not name.
    """
    stated = try_cast_timestamp(text)
    sign = ibis.ifelse(text.re_extract(_OFFSET_END, 1) == "-", -1, 1)
    hours = text.re_extract(_OFFSET_END, 2).nullif("").cast("int64").fill_null(0)
    minutes = text.re_extract(_OFFSET_END, 3).nullif("").cast("int64").fill_null(0)
    offset_s = sign * (hours * 3600 + minutes * 60)
    utc = stated - offset_s.as_interval("s")
    return _convert_timezone(ibis.literal("UTC"), ibis.literal(timezone), utc)


def trim_spaces(text: ibis.Value) -> ibis.Value:
    """``text`` without space separators (Unicode category Zs: the space, no-break space U+00A0,
    full-width space U+3000, ...) at either end; a tab or newline stays. DuckDB's one-argument ``trim``
    does exactly this; Spark's trims the space character only."""
    return text.re_replace(r"^\p{Zs}+|\p{Zs}+$", "")
