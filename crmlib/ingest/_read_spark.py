"""Ingest's Spark reader: input files to text columns with file row numbers, on a SparkSession.

The Spark twin of :mod:`crmlib.ingest._sql_duckdb`, and like it the only ingest code that touches the
engine's connection. It uses the DataFrame API where Ibis has no expression: a file row number, the
lines Spark's CSV parser could not split, and reading every column as text.

**Row numbers.** Spark has no ``rowid``, and ``monotonically_increasing_id`` is only increasing within
one task. Each row is tagged at the scan with ``input_file_block_start()`` (the byte offset of the file
split it came from) and ``monotonically_increasing_id()`` (consecutive within the split); counting the
rows of each split gives every split's offset, and the row number is the offset plus the position inside
the split. Splits are still read in parallel; only one row per split reaches the driver. Parquet has a
real row index (``_metadata.row_index``).

**The numbering matches DuckDB's.** On DuckDB a CSV scan numbers the rows that split into the header's
fields (``rowid``), lists the rejected lines with their file data-row number, and the ingest stage then
shifts the good rows' numbers past the rejected ones (``_renumber_after_rejects``). This reader gives the
same pair: ``_row_number`` counts the rows that split, and :func:`read_csv` returns the rejected lines
with their true data-row numbers.

**Rejected lines.** ``mode=PERMISSIVE`` with a corrupt-record column keeps each line whose field count
differs from the header's, whole; the reason (too many or too few fields) is counted on the driver.
The parse is materialized once (``localCheckpoint``), because with column pruning a later query that
reads fewer columns could judge a line differently.

**Quoted line breaks.** Spark splits a CSV file at line ends unless ``multiLine`` is set, which reads
the whole file in one task. A quoted field spanning lines opens on a line with an odd number of quote
characters (a doubled ``""`` inside a field counts twice), so one parallel pass over the lines decides:
``multiLine`` only for files that need it (and for files with a line of only white space, which the
line-by-line read drops without a word).

**Encodings.** Spark 4 reads only UTF-8, UTF-16/32, ASCII and Latin-1 (``spark.sql.legacy.javaCharsets``
restores the JVM's others), so GBK, GB18030, Big5... are read from the same UTF-8 copy the DuckDB path
makes (:func:`crmlib.ingest.readers.transcode_to_utf8`). Bytes that are not UTF-8 in a file read in
place become U+FFFD without an error; :func:`read_csv` says whether any field holds one, and the reader
then finds the bad bytes itself.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import ibis

from crmlib.ingest.errors import IngestError

__all__ = ["read_csv", "read_jsonl", "jsonl_columns", "parquet_columns", "read_parquet", "CORRUPT",
           "JSON_SAMPLE_LINES"]

#: The corrupt-record column (a name no export uses).
CORRUPT = "_crm_unparsed_line"
#: JSON lines read to find the keys, as DuckDB's ``read_json`` samples them (its ``sample_size``).
JSON_SAMPLE_LINES = 20480
_BLOCK, _ID = "_crm_split_start", "_crm_split_row"
_REPLACEMENT = "\ufffd"


def _session(engine: Any) -> Any:
    return engine.con._session


def _col(name: str) -> Any:
    """A column by its exact name (dots, spaces and back-ticks in file headers are not paths)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def _text_schema(names: list[str]) -> Any:
    from pyspark.sql import types as T

    return T.StructType([T.StructField(n, T.StringType(), True) for n in [*names, CORRUPT]])


# -- CSV ----------------------------------------------------------------------------------------------
def _store_tagged_lines(engine: Any, view: str, frame: Any, columns: list[tuple[str, str]]) -> str:
    """Store ``frame``'s columns renamed, its corrupt-record column, and each row's chunk start and id
    within the chunk (what the file row number is computed from) once, as the scratch relation
    ``<view>_lines``; return that name (the caller drops it)."""
    from pyspark.sql import functions as F

    lines = frame.select(*[_col(src).alias(dst) for src, dst in columns], _col(CORRUPT),
                         F.input_file_block_start().alias(_BLOCK), F.monotonically_increasing_id().alias(_ID))
    stored = f"{view}_lines"
    engine.scratch(stored, lines)
    return stored


def read_csv(engine: Any, view: str, path: str, *, header: list[str], columns: list[tuple[str, str]],
             delimiter: str) -> tuple[ibis.Table, list[tuple[int, str, str]], bool]:
    """Read a UTF-8 CSV file into the scratch relation ``view``: ``_row_number`` first, every column as
    text, renamed.

    Parameters
    ----------
    header : list[str]
        The file's header fields (made unique), in file order.
    columns : list[tuple[str, str]]
        ``(header field, view column)`` pairs.

    Returns
    -------
    table : ibis.Table
        The rows that split into the header's fields, ``_row_number`` counting them (see the module
        docstring).
    rejects : list[tuple[int, str, str]]
        ``(data row, reason, line text)`` for each line that did not split, in file order.
    replaced : bool
        Whether any field or rejected line holds U+FFFD (bytes that were not UTF-8, or the character
        itself).
    """
    from pyspark.sql import functions as F

    spark = _session(engine)
    frame = (spark.read.schema(_text_schema(header))
             .option("header", True).option("enforceSchema", True).option("sep", delimiter)
             .option("quote", '"').option("escape", '"').option("encoding", "UTF-8")
             .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
             .option("multiLine", _needs_whole_file_parse(spark, path))
             .csv(path))
    stored = _store_tagged_lines(engine, view, frame, columns)
    try:
        lines = spark.table(stored)
        targets = [dst for _src, dst in columns]
        replaced_any = F.lit(False)
        for name in [*targets, CORRUPT]:
            replaced_any = replaced_any | F.coalesce(F.instr(_col(name), _REPLACEMENT) > 0, F.lit(False))
        splits = lines.groupBy(_BLOCK).agg(F.min(_ID).alias("first"), F.count(F.lit(1)).alias("rows"),
                                          F.count(_col(CORRUPT)).alias("rejected"),
                                          F.max(replaced_any.cast("int")).alias("replaced")).collect()
        offsets = _offsets([(r[_BLOCK], r["first"], r["rows"]) for r in splits])
        replaced = any(r["replaced"] for r in splits)
        rejects: list[tuple[int, str, str]] = []
        if any(r["rejected"] for r in splits):
            bad = lines.filter(_col(CORRUPT).isNotNull()).select(_BLOCK, _ID, CORRUPT).collect()
            for r in bad:
                start, first = offsets[r[_BLOCK]]
                text = r[CORRUPT].rstrip("\r\n")
                rejects.append((start + r[_ID] - first + 1, _reason(text, delimiter, len(header)), text))
            rejects.sort()
            # the good rows numbered again, without the gaps: what DuckDB's rowid gives
            good = lines.filter(_col(CORRUPT).isNull()).select(
                *[_col(t) for t in targets], _BLOCK, F.monotonically_increasing_id().alias(_ID))
            table = _store_numbered(engine, view, good, targets)
        else:
            table = _store_numbered(engine, view, lines, targets, offsets=offsets)
    finally:
        engine.drop(stored)
    return table, rejects, replaced


def _needs_whole_file_parse(spark: Any, path: str) -> bool:
    """Whether a line of the file has an odd number of ``"`` (a quoted field goes on to the next line), or
    only white space: Spark's line-by-line CSV read drops such a line unseen, where DuckDB (and Spark's
    ``multiLine`` parse) reads it as a record - too few fields, or a row of empty fields in a TSV."""
    from pyspark.sql import functions as F

    text = spark.read.text(path)
    quotes = F.length("value") - F.length(F.regexp_replace("value", '"', ""))
    blank = F.col("value").rlike(r"^[\x00-\x20]+$")
    return bool(text.filter((quotes % 2 == 1) | blank).limit(1).count())


def _reason(text: str, delimiter: str, width: int) -> str:
    """Why a line did not split, in the words of :func:`crmlib.ingest.readers.rejected_rows`."""
    fields = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
    if len(fields) > width:
        return "malformed_row:too_many_fields"
    if len(fields) < width:
        return "malformed_row:too_few_fields"
    return "malformed_row:unparsable"


def _offsets(splits: list[tuple[int, int, int]]) -> dict[int, tuple[int, int]]:
    """``{split start: (rows before the split, the split's first row id)}`` from ``(start, first id,
    rows)`` per split."""
    out, before = {}, 0
    for start, first, rows in sorted(splits):
        out[start] = (before, first)
        before += rows
    return out


def _store_numbered(engine: Any, view: str, frame: Any, targets: list[str],
                    offsets: dict[int, tuple[int, int]] | None = None) -> ibis.Table:
    """``frame``'s rows as the scratch relation ``view`` with ``_row_number`` (1 = the first row in file
    order) from its split start and row id columns (``offsets``: :func:`_offsets` of ``frame``, when
    known)."""
    from pyspark.sql import functions as F

    spark = _session(engine)
    if offsets is None:
        splits = frame.groupBy(_BLOCK).agg(F.min(_ID).alias("first"), F.count(F.lit(1)).alias("rows")).collect()
        offsets = _offsets([(r[_BLOCK], r["first"], r["rows"]) for r in splits])
    starts = spark.createDataFrame([(start, before, first) for start, (before, first) in offsets.items()],
                                   f"{_BLOCK} long, _before long, _first long")
    numbered = frame.join(F.broadcast(starts), _BLOCK).select(
        (F.col("_before") + F.col(_ID) - F.col("_first") + 1).cast("long").alias("_row_number"),
        *[_col(t) for t in targets])
    return engine.scratch(view, numbered)


# -- JSON lines ------------------------------------------------------------------------------------------
def jsonl_columns(path: str | Path, *, source: str) -> list[str]:
    """The keys of the file's objects in order of first appearance, over the first
    :data:`JSON_SAMPLE_LINES` lines (the columns DuckDB's ``read_json`` finds)."""
    keys: dict[str, None] = {}
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if number > JSON_SAMPLE_LINES:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise IngestError(f"not valid JSON lines: line {number}: {exc}", source=source, path=str(path),
                                  row=number, hint="each line must be one JSON object") from None
            if not isinstance(record, dict):
                raise IngestError(f"not valid JSON lines: line {number} is a JSON {type(record).__name__}, "
                                  "not an object", source=source, path=str(path), row=number,
                                  hint="each line must be one JSON object")
            keys.update(dict.fromkeys(record))
    return list(keys)


def read_jsonl(engine: Any, view: str, path: str, *, columns: list[tuple[str, str]], source: str) -> ibis.Table:
    """Every key read as text (numbers keep their digits as written, objects their JSON text) into the
    scratch relation ``view`` with ``_row_number`` (1 = the first object; blank lines are no rows).

    Raises
    ------
    IngestError
        For a line that is not a JSON object, with its row number.
    """
    spark = _session(engine)
    keys = [src for src, _dst in columns]
    frame = (spark.read.schema(_text_schema(keys)).option("mode", "PERMISSIVE")
             .option("columnNameOfCorruptRecord", CORRUPT).option("encoding", "UTF-8").json(path))
    stored = _store_tagged_lines(engine, view, frame, columns)
    try:
        lines = spark.table(stored)
        table = _store_numbered(engine, view, lines, [dst for _src, dst in columns] + [CORRUPT])
        bad = table.filter(table[CORRUPT].notnull()).order_by("_row_number").limit(1).to_pyarrow().to_pylist()
    finally:
        engine.drop(stored)
    if bad:
        engine.drop(view)
        raise IngestError(f"not valid JSON lines: row {bad[0]['_row_number']} is not a JSON object: "
                          f"{bad[0][CORRUPT][:80]!r}", source=source, path=str(path), row=bad[0]["_row_number"],
                          hint="each line must be one JSON object")
    return table.drop(CORRUPT)


# -- Parquet ---------------------------------------------------------------------------------------------
def parquet_columns(engine: Any, path: str) -> list[str]:
    """The file's column names (reads the footer only)."""
    return list(_session(engine).read.parquet(path).columns)


def read_parquet(engine: Any, view: str, path: str, *, columns: list[tuple[str, str]]) -> ibis.Table:
    """A view straight over the file: ``_metadata.row_index`` is the file row (0-based) and the file is
    cheap to scan again, as on DuckDB (:func:`crmlib.ingest._sql_duckdb.create_parquet_view`).

    Values become the text Spark casts them to, which is DuckDB's but for doubles in scientific
    notation (``1.0E7`` for DuckDB's ``10000000.0``: the same number to the validation), and time
    stamps stored as UTC instants keep their offset (``2026-01-02 10:00:00+00``, as on DuckDB): without
    it the validation would read them as local wall-clock times.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    spark = _session(engine)
    frame = spark.read.parquet(path)
    instants = {f.name for f in frame.schema.fields if isinstance(f.dataType, T.TimestampType)}

    def text(src: str) -> Any:
        if src in instants:  # cast() writes the session time zone's wall-clock time, date_format its offset
            return F.concat(_col(src).cast("string"), F.date_format(_col(src), "x"))
        return _col(src).cast("string")

    frame = frame.select((F.col("_metadata.row_index") + 1).cast("long").alias("_row_number"),
                         *[text(src).alias(dst) for src, dst in columns])
    engine.drop(view)
    frame.createOrReplaceTempView(view)
    return engine.con.table(view)
