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
import pandas as pd

__all__ = ["connect", "scratch", "drop", "read_parquet", "write_parquet", "default_memory_limit", "quote_ident",
           "quote_literal", "drop_relation", "configure", "MEMORY_SHARE", "MEMORY_FLOOR", "MEMORY_CEILING"]

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
    """Stream ``expr`` into one Parquet file at ``path`` (never through pandas)."""
    con.to_parquet(expr, path, **compression)


def to_pandas(con: Any, expr: ibis.Expr) -> pd.DataFrame:
    return expr.to_pandas()


def disconnect(con: Any) -> None:
    con.disconnect()


# -- functions whose SQL differs between backends ------------------------------------------------------
# (filled in by the ingest and identity work: date parsing, string distance, Splink)
