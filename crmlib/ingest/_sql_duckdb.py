"""Ingest's DuckDB SQL: reading input files where Ibis has no expression for it (the DuckDB reader).

Everything else in ingest is an Ibis expression. Each function here documents why it is SQL; the Spark
reader is :mod:`crmlib.ingest._read_spark`.
"""

from __future__ import annotations

import json
from typing import Any

import ibis

import duckdb

from crmlib.backends.duckdb import drop_relation, quote_ident, quote_literal

__all__ = ["create_csv_view", "create_numbered_table", "create_parquet_view", "create_jsonl_view", "csv_rejects",
           "Error"]

#: What DuckDB raises when a scan cannot parse a file (the reader turns it into an IngestError).
Error = duckdb.Error


# -- ingest: file row numbers, rejected CSV lines, scratch relations ------------------------------------
# Why SQL here:
#
# * **File row numbers.** Ibis' ``read_csv``/``read_json`` give no file row number and its
#   ``row_number()`` always adds an ``ORDER BY``. The validated rows of a CSV/JSON file are stored by
#   one ``CREATE TABLE AS`` straight from the file scan, which keeps the file's order, so
#   ``rowid + 1`` is the data row (:func:`create_numbered_table`). Parquet has a real
#   ``file_row_number``.
# * **Rejected CSV lines.** ``store_rejects`` keeps lines with the wrong number of fields (or bytes that
#   are not UTF-8) in a rejects table instead of failing or dropping them silently, so they can be
#   quarantined and counted. Ibis has no option for it.
#
# The Spark reader (:mod:`crmlib.ingest._read_spark`) gets the same numbers from ``input_file_block_start``
# and ``monotonically_increasing_id``, and the rejected lines from ``mode=PERMISSIVE``.


def _select_list(columns: list[tuple[str, str]]) -> str:
    """``file column AS view column`` pairs, all as VARCHAR."""
    return ", ".join(f"CAST({quote_ident(src)} AS VARCHAR) AS {quote_ident(dst)}" for src, dst in columns)


def create_csv_view(engine: Any, view: str, path: str, *, header: list[str], columns: list[tuple[str, str]],
                    delimiter: str, rejects_table: str) -> Any:
    """A view over a UTF-8 CSV file: every column as VARCHAR, renamed; no row number (see
    :func:`create_numbered_table`).

    The header is given explicitly (all VARCHAR, no type sniffing) so nothing is lost to inference;
    lines whose field count differs from the header land in ``rejects_table`` when the view is scanned.
    """
    con = engine.con
    cols = "{" + ", ".join(f"{quote_literal(h)}: 'VARCHAR'" for h in header) + "}"
    for name in (rejects_table, rejects_table + "_scan"):
        con.raw_sql(f"DROP TABLE IF EXISTS {quote_ident(name)}")
    drop_relation(con, view)
    con.raw_sql(
        f"CREATE OR REPLACE TEMP VIEW {quote_ident(view)} AS SELECT {_select_list(columns)} "
        f"FROM read_csv({quote_literal(path)}, header = true, columns = {cols}, "
        f"delim = {quote_literal(delimiter)}, quote = '\"', escape = '\"', auto_detect = false, "
        f"store_rejects = true, rejects_table = {quote_literal(rejects_table)}, "
        f"rejects_scan = {quote_literal(rejects_table + '_scan')})"
    )
    return con.table(view)


def create_numbered_table(engine: Any, name: str, select_sql: Any) -> Any:
    """Materialize ``select_sql`` (one scan of a file view: SQL text or an Ibis expression) as a temporary
    table and return it as the view ``name`` with ``_row_number`` = ``rowid + 1`` first.

    One ``CREATE TABLE AS`` keeps the scan's order (``preserve_insertion_order``, DuckDB's default)
    while the scan and the expressions run on every thread, so ``rowid + 1`` is the file's data row
    (checked on 5M rows: every rowid equal to the line's own id). ``row_number() OVER ()`` over the
    scan gives the same numbers but forces one thread (2x slower on 10M rows).

    That holds only while the plan is the scan plus projections. DuckDB rewrites ``x IN (<5 or more
    constants>)`` - the word lists of booleans and genders - into a hash join with the list, which does
    not keep the order (1M contacts: 84 % of the rows got another row's number), so that rewrite is
    switched off for this statement; and a plan with any other operator that can reorder or drop rows
    is refused (a bug in the caller, not bad input).

    Raises
    ------
    RuntimeError
        If the plan holds a join, aggregate, window, sort, filter, union or limit.
    """
    con = engine.con
    if not isinstance(select_sql, str):
        select_sql = ibis.to_sql(select_sql, dialect="duckdb")
    drop_relation(con, name)
    drop_relation(con, f"{name}_rows")
    previous = con.raw_sql("SELECT current_setting('disabled_optimizers')").fetchone()[0] or ""
    con.raw_sql(f"SET disabled_optimizers = {quote_literal(','.join(filter(None, [previous, 'in_clause'])))}")
    try:
        plan = con.raw_sql(f"EXPLAIN (FORMAT json) {select_sql}").fetchall()
        operators = [op for _kind, tree in plan for op in _operator_names(json.loads(tree))]
        unordered = [op for op in operators if any(word in op for word in _REORDERING)]
        if unordered:
            raise RuntimeError(f"cannot number rows through {', '.join(unordered)}: the stored order would not "
                               "be the file's")
        con.raw_sql(f"CREATE TEMP TABLE {quote_ident(name + '_rows')} AS {select_sql}")
    finally:
        con.raw_sql(f"SET disabled_optimizers = {quote_literal(previous)}")
    con.raw_sql(f"CREATE TEMP VIEW {quote_ident(name)} AS SELECT CAST(rowid + 1 AS BIGINT) AS _row_number, * "
                f"FROM {quote_ident(name + '_rows')}")
    return con.table(name)


# physical operators that may reorder or drop rows (substrings of DuckDB's operator names)
_REORDERING = ("JOIN", "GROUP", "AGGREGATE", "WINDOW", "ORDER", "TOP_N", "FILTER", "UNION", "LIMIT", "DISTINCT",
               "SAMPLE")


def _operator_names(nodes: Any) -> list[str]:
    """Every operator name in DuckDB's JSON plan (a list of trees)."""
    out: list[str] = []
    for node in nodes if isinstance(nodes, list) else [nodes]:
        out.append(str(node.get("name", "")))
        out += _operator_names(node.get("children", []))
    return out


def create_parquet_view(engine: Any, view: str, path: str, *, columns: list[tuple[str, str]]) -> Any:
    """A view straight over the file: Parquet has a real ``file_row_number`` and is cheap to re-scan."""
    con = engine.con
    drop_relation(con, view)
    con.raw_sql(
        f"CREATE OR REPLACE TEMP VIEW {quote_ident(view)} AS "
        f"SELECT CAST(file_row_number + 1 AS BIGINT) AS _row_number, {_select_list(columns)} "
        f"FROM read_parquet({quote_literal(path)}, file_row_number = true)"
    )
    return con.table(view)


def parquet_columns(engine: Any, path: str) -> list[str]:
    """The column names of a Parquet file."""
    return list(engine.con.read_parquet(path).columns)


def jsonl_columns(engine: Any, path: str) -> list[str]:
    """The keys of a JSON-lines file, as DuckDB infers them."""
    return list(engine.con.read_json(path, format="newline_delimited").columns)


def create_jsonl_view(engine: Any, view: str, path: str, *, columns: list[tuple[str, str]]) -> Any:
    """Every key read as VARCHAR (numbers keep their text, strings lose no quotes); no row number (see
    :func:`create_numbered_table`)."""
    con = engine.con
    spec = "{" + ", ".join(f"{quote_literal(src)}: 'VARCHAR'" for src, _ in columns) + "}"
    drop_relation(con, view)
    con.raw_sql(
        f"CREATE OR REPLACE TEMP VIEW {quote_ident(view)} AS SELECT {_select_list(columns)} "
        f"FROM read_json({quote_literal(path)}, format = 'newline_delimited', records = true, "
        f"columns = {spec})"
    )
    return con.table(view)


def csv_rejects(engine: Any, rejects_table: str) -> list[tuple[int, str, str, str]]:
    """Distinct rejected lines after a scan: ``(line, error_type, csv_line, column_name)``.

    DuckDB appends to the rejects table on every scan of the view, and may report several errors for
    one line (one per missing column): one entry per line.
    """
    con = engine.con
    try:
        cur = con.raw_sql(
            "SELECT line, min(error_type), min(csv_line), min(column_name) "
            f"FROM {quote_ident(rejects_table)} GROUP BY line ORDER BY line")
    except Exception:  # the table only exists after a scan
        return []
    rows = cur.fetchall()

    return [(int(r[0]), str(r[1]), "" if r[2] is None else str(r[2]).strip("\r\n"), r[3]) for r in rows]
