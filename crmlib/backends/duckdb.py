"""The DuckDB backend: the embedded default engine, and the only core module that writes DuckDB SQL.

Ibis has no API for DuckDB's session settings, for dropping a relation whatever its type, or for
DuckDB's ``try_strptime``; those few statements live here. Ingest's reader SQL lives with ingest
(:mod:`crmlib.ingest._sql_duckdb`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import ibis
import ibis.expr.datatypes as dt
import pandas as pd

from crmlib.backends import ClosingContext

__all__ = ["connect", "scratch", "drop", "read_parquet", "write_parquet", "default_memory_limit", "quote_ident",
           "quote_literal", "drop_relation", "configure", "MEMORY_SHARE", "MEMORY_FLOOR", "MEMORY_CEILING",
           "char_levenshtein", "char_jaro_winkler", "splink_db_api", "SplinkDatabase"]

KIND = "duckdb"
#: The default DuckDB memory limit is this share of the machine's memory, within
#: [:data:`MEMORY_FLOOR`, :data:`MEMORY_CEILING`] bytes. DuckDB's own default (80 % of RAM) let the
#: 1M-customer sample peak at 9.8 GB; the stage's pandas frames, the Python heap and Splink's private
#: connection need the rest. A query that needs more spills to the engine's scratch folder.
MEMORY_SHARE = 1 / 12
MEMORY_FLOOR = 1 << 30
MEMORY_CEILING = 16 << 30


def quote_ident(name: str) -> str:
    """``name`` as a DuckDB identifier."""
    return '"' + str(name).replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """``value`` as a DuckDB string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def machine_memory() -> int | None:
    """Physical memory in bytes (the cgroup limit when one is set and smaller), or None if unknown."""
    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and (total is None or int(text) < total):
            total = int(text)
    return total


def default_memory_limit() -> str:
    """The memory limit used when neither the params nor ``CRM_DUCKDB_MEMORY_LIMIT`` set one."""
    total = machine_memory()
    limit = MEMORY_FLOOR if total is None else int(min(max(total * MEMORY_SHARE, MEMORY_FLOOR), MEMORY_CEILING))
    return f"{limit // (1 << 20)}MiB"


def connect(settings: Mapping[str, Any], scratch_dir: Path, *, database: str | None = None) -> Any:
    """A DuckDB connection whose database file and spill files live in ``scratch_dir``.

    The memory limit is, first to last: ``settings['memory_limit']``, ``CRM_DUCKDB_MEMORY_LIMIT``,
    :func:`default_memory_limit`.
    """
    db = str(scratch_dir / "engine.duckdb") if database is None else str(database)
    con = ibis.duckdb.connect(db)
    limit = settings.get("memory_limit") or os.environ.get("CRM_DUCKDB_MEMORY_LIMIT") or default_memory_limit()
    configure(con, memory_limit=str(limit), threads=settings.get("threads"),
              temp_directory=(scratch_dir / "duckdb_tmp").as_posix())
    return con


def configure(con: Any, *, memory_limit: str | None, threads: int | None, temp_directory: str) -> None:
    """DuckDB session settings. ``temp_directory`` is where DuckDB spills: the engine's private scratch
    folder, never the run folder. Values are quoted as literals (the path may hold a quote)."""
    if memory_limit:
        con.raw_sql(f"SET memory_limit = {quote_literal(str(memory_limit))}")
    if threads:
        con.raw_sql(f"SET threads = {int(threads)}")
    con.raw_sql(f"SET temp_directory = {quote_literal(temp_directory)}")


def settings(con: Any) -> dict[str, str]:
    """The connection's memory limit and threads, for a second connection that must keep to them."""
    return {key: str(con.raw_sql(f"SELECT current_setting({quote_literal(key)})").fetchone()[0])
            for key in ("memory_limit", "threads")}


def scratch(con: Any, name: str, obj: Any, **kwargs: Any) -> ibis.Table:
    """Store ``obj`` (an Ibis expression or a DataFrame) as the temporary table ``name``.

    A temporary table lives in memory, spills to the scratch folder under pressure, is never written to
    the database file and disappears with the connection. Any old relation of that name is dropped
    first: Ibis' ``overwrite=True`` would build a table under another name and then copy it, storing
    every row twice. ``kwargs`` go to ``create_table`` (e.g. ``schema``).
    """
    drop_relation(con, name)
    return con.create_table(name, obj, temp=True, **kwargs)


def drop(con: Any, name: str) -> None:
    """Drop the relation ``name`` (table or view) if it exists."""
    drop_relation(con, name)


def drop_relation(con: Any, name: str) -> None:
    """Drop every view or table ``name`` (persistent or temporary) if it exists.

    DuckDB refuses DROP VIEW on a table and vice versa, hence the catalog look-up.
    """
    rows = con.raw_sql(
        f"SELECT table_type FROM information_schema.tables WHERE table_name = {quote_literal(name)}").fetchall()
    for (kind,) in rows:
        con.raw_sql(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} IF EXISTS {quote_ident(name)}")


def read_parquet(con: Any, path: Path, name: str) -> ibis.Table:
    """A run table: one Parquet file, or a folder of part files (as Spark writes them)."""
    source = (path / "*.parquet").as_posix() if path.is_dir() else path.as_posix()
    return con.read_parquet(source, table_name=name)


def write_parquet(con: Any, expr: ibis.Table, path: Path, compression: Mapping[str, Any]) -> None:
    """Stream ``expr`` into one Parquet file at ``path`` (never through pandas).

    DuckDB sums BIGINTs into HUGEINTs, which Parquet stores as DOUBLE, while Ibis types the column int64
    (and drops a cast to int64 as a no-op): such columns are cast back, through a decimal, so the file
    holds the integers the schema promises - as Spark writes them.
    """
    con._run_pre_execute_hooks(expr)
    described = con.raw_sql(f"DESCRIBE {con.compile(expr)}").fetchall()
    huge = {row[0] for row in described if str(row[1]).upper() == "HUGEINT"}
    if huge:
        expr = expr.mutate(**{name: expr[name].cast("decimal(38, 0)").cast("int64") for name in huge
                              if expr.schema()[name].is_integer()})
    con.to_parquet(expr, path, **compression)


def to_pandas(con: Any, expr: ibis.Expr) -> pd.DataFrame:
    return con.execute(expr)


def disconnect(con: Any) -> None:
    con.disconnect()


# -- functions whose SQL differs between backends ------------------------------------------------------
# (filled in by the ingest and identity work: date parsing, string distance, Splink)


# -- string distance ---------------------------------------------------------------------------------
# DuckDB's levenshtein and jaro_winkler_similarity work on UTF-8 bytes: levenshtein('王伟', '王炜') is 3,
# and a Chinese name's Jaro-Winkler mixes bytes of different characters. Names are compared in
# characters on every engine, so these two are vectorized Python functions (RapidFuzz, C++), exactly
# Spark's levenshtein and Splink's jaro_winkler on Java strings.


def _pairwise(scorer: Any, a: Any, b: Any, dtype: Any) -> Any:
    """``scorer`` over two Arrow string arrays, element by element; null where either side is null."""
    import pyarrow as pa
    from rapidfuzz.process import cpdist

    left, right = _arrow_strings(a), _arrow_strings(b)
    valid = [x is not None and y is not None for x, y in zip(left, right)]
    out: list[Any] = [None] * len(left)
    idx = [i for i, ok in enumerate(valid) if ok]
    if idx:
        # cpdist returns float32 similarities unless told otherwise
        scores = cpdist([left[i] for i in idx], [right[i] for i in idx], scorer=scorer, workers=1,
                        dtype=dtype.to_pandas_dtype())
        for i, s in zip(idx, scores.tolist()):
            out[i] = s
    return pa.array(out, type=dtype)


def _arrow_strings(values: Any) -> list[str | None]:
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.to_pylist()


def _char_levenshtein_arrow(a: Any, b: Any) -> Any:
    import pyarrow as pa
    from rapidfuzz.distance import Levenshtein

    return _pairwise(Levenshtein.distance, a, b, pa.int64())


def _char_jaro_winkler_arrow(a: Any, b: Any) -> Any:
    import pyarrow as pa
    from rapidfuzz.distance import JaroWinkler

    return _pairwise(JaroWinkler.similarity, a, b, pa.float64())


@ibis.udf.scalar.pyarrow(name="crm_char_levenshtein")
def _char_levenshtein_udf(a: str, b: str) -> dt.int64:
    return _char_levenshtein_arrow(a, b)


@ibis.udf.scalar.pyarrow(name="crm_char_jaro_winkler")
def _char_jaro_winkler_udf(a: str, b: str) -> dt.float64:  # Python's float would be float32
    return _char_jaro_winkler_arrow(a, b)


def char_levenshtein(a: ibis.Value, b: ibis.Value) -> ibis.Value:
    """Levenshtein distance of two strings counted in characters (null if either is null)."""
    return _char_levenshtein_udf(a, b)


def char_jaro_winkler(a: ibis.Value, b: ibis.Value) -> ibis.Value:
    """Jaro-Winkler similarity of two strings over characters (prefix weight 0.1, boost above 0.7)."""
    return _char_jaro_winkler_udf(a, b)


# -- Splink ------------------------------------------------------------------------------------------


class SplinkDatabase(ClosingContext):
    """Where Splink computes on DuckDB: a private in-memory connection with the engine's limits.

    Splink writes many intermediate tables; on the engine's own database they would go to its file.
    The records and pairs Splink needs are handed over as Arrow (one machine: no distribution to keep),
    the result comes back into the engine as a table. The connection has the character distances
    :data:`levenshtein_function` and :data:`jaro_winkler_function` (see "string distance" above).

    Use as a context manager; :meth:`close` closes the private connection.
    """

    dialect = "duckdb"
    levenshtein_function = "crm_char_levenshtein"
    jaro_winkler_function = "crm_char_jaro_winkler"

    def __init__(self, con: Any) -> None:
        import duckdb
        from duckdb import sqltypes
        from splink import DuckDBAPI

        limits = settings(con)
        self._engine_con = con
        self.con = duckdb.connect(":memory:", config={"threads": int(limits["threads"]),
                                                      "memory_limit": limits["memory_limit"]})
        text = sqltypes.VARCHAR
        self.con.create_function(self.levenshtein_function, _char_levenshtein_arrow, [text, text],
                                 sqltypes.BIGINT, type="arrow", null_handling="special")
        self.con.create_function(self.jaro_winkler_function, _char_jaro_winkler_arrow, [text, text],
                                 sqltypes.DOUBLE, type="arrow", null_handling="special")
        self.api = DuckDBAPI(connection=self.con)

    def register(self, expr: ibis.Table, name: str) -> Any:
        """Hand the engine table ``expr`` to Splink as its input table ``name``."""
        return self.api.register(expr.to_pyarrow(), table_name=name)

    def result(self, physical_name: str, columns: list[str]) -> ibis.Table:
        """Splink's output table ``physical_name`` (``columns`` only) as a table the engine can read."""
        relation = self.con.table(physical_name).select(*columns)
        # DuckDB 1.5 deprecates fetch_arrow_table (removed in 2.0) in favour of to_arrow_table
        arrow = relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.fetch_arrow_table()
        return ibis.memtable(arrow)

    def close(self) -> None:
        self.con.close()


def splink_db_api(engine: Any) -> SplinkDatabase:
    """Splink's database for ``engine`` (a :class:`crmlib.engine.Engine`; see :class:`SplinkDatabase`)."""
    return SplinkDatabase(engine.con)


# -- date parsing ------------------------------------------------------------------------------------
# DuckDB reads the formats of crmlib.ingest.normalize.TIMESTAMP_FORMATS (strftime notation) natively;
# the Spark backend translates them and matches this module's results (tests/ingest/test_dates_parity.py).


@ibis.udf.scalar.builtin(name="try_strptime")
def _try_strptime(text: dt.string, fmt: dt.string) -> dt.timestamp:  # null when it does not parse
    ...


@ibis.udf.scalar.builtin(name="timezone")
def _wall_time_in(zone: dt.string, ts: dt.Timestamp(timezone="UTC")) -> dt.timestamp:
    ...


@ibis.udf.scalar.builtin(name="trim")
def _trim(text: dt.string) -> dt.string:  # the one-argument trim: space separators (Zs), not tabs
    ...


def try_parse_timestamp(text: ibis.Value, fmt: str) -> ibis.Value:
    """``text`` read with the strftime format ``fmt`` as a naive timestamp; null when it does not fit.

    DuckDB's ``try_strptime``: a number may have fewer digits than its field (``%m`` reads ``3``),
    whitespace in the format matches any run of whitespace, a date not on the calendar is null.
    """
    return _try_strptime(text, fmt)


def try_cast_timestamp(text: ibis.Value) -> ibis.Value:
    """ISO 8601 text (``2026-03-01``, ``2026-3-1 14:05[:09[.123]]``, with ``T``) as a naive timestamp;
    an offset at the end is ignored; null for anything else."""
    return text.try_cast("timestamp")


def zoned_to_local(text: ibis.Value, timezone: str) -> ibis.Value:
    """ISO 8601 text that ends in an offset (``+08:00``, ``+0800``, ``+08``, ``Z``) as the naive wall
    time in ``timezone`` of the instant it names; null when it does not parse."""
    # DuckDB's zoned cast wants seconds before an offset ('14:05+08:00' would be null)
    with_seconds = text.re_replace(r"([T ][0-9]{1,2}:[0-9]{2})([Z+-])", r"\1:00\2")
    return _wall_time_in(timezone, with_seconds.try_cast(dt.Timestamp(timezone="UTC")))


def trim_spaces(text: ibis.Value) -> ibis.Value:
    """``text`` without space separators (Unicode category Zs: the space, no-break space U+00A0,
    full-width space U+3000, ...) at either end; a tab or newline stays.

    DuckDB's one-argument ``trim`` (Ibis' ``strip()`` trims ASCII whitespace with a character list,
    which DuckDB runs ~3x slower).
    """
    return _trim(text)


