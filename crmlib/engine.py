"""The engine: Ibis expressions over one embedded DuckDB database per run.

Row-level work (reading, joining, deduplicating, aggregating) is written as Ibis expressions against
:class:`Engine`; statistics run in Python on the small results. The run's data products live as Parquet
files in ``run_dir/tables``; the DuckDB file (``run_dir/engine.duckdb``) is the engine's scratch space
for staging tables, so that data larger than memory spills to disk instead of into pandas.

Stages hand data to each other only through ``tables/*.parquet``: a stage opens its own Engine on the
run directory and reads earlier stages' tables with :meth:`Engine.table`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Hashable

import ibis
import pandas as pd

from crmlib.sql import configure_duckdb, drop_relation

__all__ = ["Engine", "TABLES_DIR", "DATABASE_FILE", "PARQUET_COMPRESSION", "replace_temp_table"]

TABLES_DIR = "tables"
DATABASE_FILE = "engine.duckdb"
#: Parquet compression of the run tables. Zstandard at level 1 writes as fast as DuckDB's default
#: (Snappy) and the files are ~45 % smaller (10M orders: 246 vs 438 MiB, same CPU to write and to read
#: back); higher levels cost ~10 % more CPU for 2 % less. Format version 1 (the default) is kept: every
#: Parquet reader understands it.
PARQUET_COMPRESSION = {"compression": "zstd", "compression_level": 1}


class Engine:
    """An Ibis connection to the run's DuckDB database plus the run's table folder.

    Parameters
    ----------
    run_dir : str or Path
        The run directory. ``tables/`` is created inside it.
    database : str or Path, optional
        DuckDB database file. Default ``run_dir/engine.duckdb``; ``":memory:"`` for a throwaway engine.
    memory_limit : str, optional
        DuckDB ``memory_limit`` (e.g. ``"2GB"``). Default: the ``CRM_DUCKDB_MEMORY_LIMIT`` environment
        variable, else DuckDB's own default (80 % of RAM).
    threads : int, optional
        DuckDB worker threads; default DuckDB's (all cores).

    Examples
    --------
    >>> eng = Engine(run_dir)                                   # doctest: +SKIP
    >>> orders = eng.table("orders")                            # an ibis.Table
    >>> per_day = orders.group_by(orders.order_ts.date()).agg(n=orders.count())
    >>> eng.to_pandas(per_day)
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        database: str | Path | None = None,
        memory_limit: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.tables_dir = self.run_dir / TABLES_DIR
        self.tables_dir.mkdir(parents=True, exist_ok=True)
        db = self.run_dir / DATABASE_FILE if database is None else database
        self.database = str(db)
        self.con = ibis.duckdb.connect(self.database)
        self._memo: dict[Hashable, Any] = {}
        # Spill to the run directory, not to a system temp dir that may be small.
        configure_duckdb(self.con, memory_limit=memory_limit or os.environ.get("CRM_DUCKDB_MEMORY_LIMIT"),
                         threads=threads, temp_directory=(self.run_dir / ".duckdb_tmp").as_posix())

    def __repr__(self) -> str:
        return f"<crmlib.Engine run_dir={str(self.run_dir)!r} tables={self.list_tables()}>"

    # -- run tables (Parquet, the hand-off between stages) -------------------------------------
    def table_path(self, name: str) -> Path:
        """Path of the run table ``name`` (``tables/<name>.parquet``)."""
        return self.tables_dir / f"{name}.parquet"

    def has_table(self, name: str) -> bool:
        """Whether the run table ``name`` exists."""
        return self.table_path(name).exists()

    def list_tables(self) -> list[str]:
        """Names of the run's Parquet tables."""
        return sorted(p.stem for p in self.tables_dir.glob("*.parquet"))

    def table(self, name: str) -> ibis.Table:
        """The run table ``name`` as an Ibis table (a view over its Parquet file).

        Raises
        ------
        FileNotFoundError
            If no earlier stage wrote the table; the message lists the tables that exist.
        """
        path = self.table_path(name)
        if not path.exists():
            raise FileNotFoundError(
                f"run table {name!r} does not exist in {self.tables_dir} "
                f"(tables present: {', '.join(self.list_tables()) or 'none'}); "
                "run the stage that writes it first."
            )
        return self.con.read_parquet(path, table_name=f"run_{name}")

    def write_table(self, name: str, data: ibis.Table | pd.DataFrame) -> Path:
        """Write ``data`` as the run table ``name`` and return its path.

        An Ibis expression is written by DuckDB directly (streamed, never through pandas);
        a DataFrame is written with pyarrow. Both compress with :data:`PARQUET_COMPRESSION`.
        """
        path = self.table_path(name)
        tmp = path.with_suffix(".parquet.tmp")
        if isinstance(data, pd.DataFrame):
            data.to_parquet(tmp, index=False, **PARQUET_COMPRESSION)
        else:
            self.con.to_parquet(data, tmp, **PARQUET_COMPRESSION)
        os.replace(tmp, path)
        return path

    def write_json(self, name: str, obj: Any) -> Path:
        """Write a small JSON document (model parameters, quality report) as ``tables/<name>.json``."""
        path = self.tables_dir / f"{name}.json"
        path.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default), encoding="utf-8")
        return path

    def read_json(self, name: str) -> Any:
        """Read ``tables/<name>.json`` written by :meth:`write_json`."""
        return json.loads((self.tables_dir / f"{name}.json").read_text(encoding="utf-8"))

    # -- scratch tables inside the DuckDB file ---------------------------------------------------
    def materialize(self, name: str, expr: ibis.Table | pd.DataFrame) -> ibis.Table:
        """Store ``expr`` as a table in the engine database (overwriting) and return it.

        Use it to stop a long expression from being recomputed by several downstream queries.
        """
        return self.con.create_table(name, expr, overwrite=True)

    def scratch(self, name: str, expr: ibis.Table | pd.DataFrame, **kwargs: Any) -> ibis.Table:
        """Store ``expr`` as a temporary table ``name`` (replacing any relation of that name) and return it;
        see :func:`replace_temp_table`."""
        return replace_temp_table(self.con, name, expr, **kwargs)

    def memo(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()`` computed once per ``key`` for this engine, so a notebook's cells share one journey
        build or one fit. The memo lives and dies with the engine; :meth:`forget` drops it when the
        run's tables change under the same engine."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def forget(self) -> None:
        """Drop everything :meth:`memo` remembered."""
        self._memo.clear()

    def to_pandas(self, expr: ibis.Expr) -> pd.DataFrame:
        """Execute ``expr`` and return a pandas object (the boundary to Python statistics)."""
        return expr.to_pandas()

    def close(self) -> None:
        """Close the DuckDB connection (the database file stays)."""
        self.con.disconnect()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def replace_temp_table(con: Any, name: str, obj: Any, **kwargs: Any) -> ibis.Table:
    """Store ``obj`` (an Ibis expression or a DataFrame) as the temporary table ``name`` of ``con``.

    A temporary table lives in memory, spills to the run's temp directory under pressure, is never
    written to the database file (no checkpoint) and disappears with the connection. Any old relation
    of that name is dropped first: Ibis' ``overwrite=True`` would build a temporary table under another
    name and then copy it, storing every row twice. ``kwargs`` go to ``create_table`` (e.g. ``schema``).
    """
    drop_relation(con, name)
    return con.create_table(name, obj, temp=True, **kwargs)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
