"""The engine's backends: everything that differs between DuckDB and Spark, one module per backend.

:class:`crmlib.engine.Engine` is the only caller. Each module exposes the same functions:

``connect(settings, scratch_dir)``
    An Ibis connection configured from the params ``engine:`` section.
``scratch(con, name, obj)`` / ``drop(con, name)``
    The one scratch mechanism: store an expression or DataFrame as a named relation that later
    queries read instead of recomputing it, and drop it.
``read_parquet(con, path, name)`` / ``write_parquet(con, expr, path)``
    Run tables: DuckDB writes one file, Spark a folder of part files; both read either.
``try_parse_timestamp(text, fmt)``, ``char_levenshtein(a, b)``, ``splink_db_api(engine)``
    The few functions whose SQL differs (see each module).
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["KINDS", "backend_module", "ClosingContext"]

#: The engines a params file may name in ``engine.kind``.
KINDS = ("duckdb", "spark")


def backend_module(kind: str) -> ModuleType:
    """The backend module for ``kind`` (imported on first use: PySpark is an optional extra)."""
    if kind == "duckdb":
        from crmlib.backends import duckdb as module
    elif kind == "spark":
        from crmlib.backends import spark as module
    else:
        raise ValueError(f"unknown engine kind {kind!r}; use one of {', '.join(KINDS)}")
    return module


class ClosingContext:
    """A resource whose ``close()`` runs when a ``with`` block ends (the backends' Splink databases)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
