"""The raw SQL crmlib needs where Ibis has no expression for it - kept in this one module.

Everything else is an Ibis expression, so it runs unchanged on another Ibis backend (Spark, a
warehouse). Each function here documents why it is SQL and what a port to another engine needs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["configure_duckdb"]


def configure_duckdb(con: Any, *, memory_limit: str | None, threads: int | None, temp_directory: str) -> None:
    """DuckDB session settings (Ibis has no API for engine pragmas; other backends ignore this)."""
    if memory_limit:
        con.raw_sql(f"SET memory_limit = '{memory_limit}'")
    if threads:
        con.raw_sql(f"SET threads = {int(threads)}")
    con.raw_sql(f"SET temp_directory = '{temp_directory}'")
