"""Read one source file into the engine as text columns with file row numbers.

Every format becomes the same thing: a DuckDB view (or, for Excel, a table) named ``raw_<source>`` with
``_row_number`` (1-based data row: row 1 is the first row after the header) and every file column as
VARCHAR, renamed to its canonical name when the params' ``columns`` mapping (or the header itself, up
to case and spaces) says so. Unmapped columns are kept under their own name as *extras*. Nothing is
typed yet, so nothing is lost to type inference; :mod:`crmlib.ingest.validate` parses the text.

CSV/TSV files are scanned by DuckDB. DuckDB 1.5 reads only UTF-8, UTF-16 and Latin-1 without the
``encodings`` extension (not installable offline), so any other encoding (GBK, GB18030, Big5, ...) is
transcoded to a UTF-8 file in the run's scratch folder first, streaming 4 MiB at a time.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
from dataclasses import dataclass, field
from pathlib import Path

import ibis
import pandas as pd

from crmlib.engine import Engine
from crmlib import sql as _sql
from crmlib.ingest.errors import IngestError
from crmlib.params import CANONICAL_COLUMNS, KINDS, REQUIRED_COLUMNS

__all__ = ["RawSource", "read_source", "rejected_rows", "transcode_to_utf8", "suggest_encoding", "ENCODING_CANDIDATES"]

ENCODING_CANDIDATES = ("utf-8", "gb18030", "gbk", "big5", "shift_jis", "utf-16", "latin-1")
_UTF8 = {"utf-8", "utf8", "utf-8-sig", "ascii", "us-ascii"}
_CHUNK = 4 << 20


@dataclass
class RawSource:
    """One source read into the engine, untyped.

    Attributes
    ----------
    name, kind, path, format : str
        From the params.
    table : ibis.Table
        ``_row_number`` plus one string column per file column (canonical names where mapped).
    canonical : list[str]
        Canonical columns present in the file.
    extras : list[str]
        File columns kept under their own names.
    file_columns : list[str]
        The header as it is in the file.
    rejects_table : str | None
        For CSV: DuckDB table of lines with the wrong field count, filled when ``table`` is scanned.
    """

    name: str
    kind: str
    path: str
    format: str
    table: ibis.Table
    canonical: list[str]
    extras: list[str]
    file_columns: list[str]
    source: dict = field(repr=False, default_factory=dict)
    rejects_table: str | None = None
    read_path: str | None = None  # the UTF-8 file DuckDB scans (a transcoded copy for other encodings)
    warnings: list[str] = field(default_factory=list)
    # "column": ``table`` has ``_row_number``; "rowid": it has none, and the first table materialized from
    # one scan of it numbers the rows (``_sql.create_numbered_table``)
    row_numbers: str = "column"

    def numbered(self) -> ibis.Table:
        """``table`` with ``_row_number`` first (for CSV/JSON lines: ``row_number() OVER ()`` in scan
        order - one thread; the stage numbers big files by storing them instead)."""
        if "_row_number" in self.table.columns:
            return self.table
        return self.table.mutate(_row_number=(ibis.row_number() + 1).cast("int64")).relocate("_row_number")


def read_source(engine: Engine, source: dict, *, scratch_dir: str | Path | None = None) -> RawSource:
    """Read ``source`` (one entry of ``params["sources"]``) into ``engine`` as text columns.

    Parameters
    ----------
    engine : Engine
        The run's engine.
    source : dict
        ``name``, ``kind``, ``path``, ``format``, ``encoding``, ``columns``, ``sheet``, ``delimiter``.
    scratch_dir : path, optional
        Where transcoded copies go; default ``engine.run_dir / ".ingest_tmp"``.

    Raises
    ------
    IngestError
        Missing or empty file, unknown kind or format, undecodable text, or a required column that is
        neither in the file nor mapped (the message lists the file's columns and suggests a mapping).
    """
    name, kind, path = source["name"], source["kind"], Path(source["path"])
    fmt = (source.get("format") or _format_from_suffix(path) or "").lower()
    if kind not in KINDS:
        raise IngestError(f"unknown kind {kind!r}", source=name, path=str(path),
                          hint=f"set kind to one of: {', '.join(KINDS)}")
    if not path.is_file():
        raise IngestError("file not found", source=name, path=str(path),
                          hint="check the path in the params file (relative paths resolve against the "
                               "params file's folder)")
    if path.stat().st_size == 0:
        raise IngestError("the file is empty (0 bytes)", source=name, path=str(path),
                          hint="export the data again, or remove this source from the params file")
    view = f"raw_{name}"
    encoding = (source.get("encoding") or "utf-8").lower()
    scratch = Path(scratch_dir) if scratch_dir else engine.run_dir / ".ingest_tmp"
    warns: list[str] = []
    if fmt in ("csv", "tsv"):
        delimiter = source.get("delimiter") or ("\t" if fmt == "tsv" else ",")
        read_path = path
        if codecs.lookup(encoding).name not in {codecs.lookup(e).name for e in _UTF8}:
            scratch.mkdir(parents=True, exist_ok=True)
            read_path = transcode_to_utf8(path, encoding, scratch / f"{name}.utf8.csv", source=name,
                                          delimiter=delimiter)
            with open(path, "rb") as fh:
                head = fh.read(1 << 20)
            if not head.isascii() and suggest_encoding(head) == "utf-8":
                warns.append(f"source {name!r}, file {path}: declared `encoding: {encoding}` but the text also "
                             "decodes as UTF-8 - if names look garbled, set `encoding: utf-8`")
        header = _read_header(read_path, delimiter, source=name, original=path, encoding=encoding)
        header = [h.lstrip("\ufeff") for h in header]
        mapping = _map_columns(header, source, kind)
        rejects = f"rejects_{name}"
        _sql.create_csv_view(engine.con, view, str(read_path), header=_unique(header),
                             columns=[(u, mapping[h]) for h, u in zip(header, _unique(header))],
                             delimiter=delimiter, rejects_table=rejects)
        table = engine.con.table(view)
        if not _has_data_lines(read_path):
            raise IngestError("the file has a header but no data rows", source=name, path=str(path),
                              hint="export the data again, or remove this source from the params file")
        return _raw(source, fmt, table, header, mapping, rejects_table=rejects, read_path=str(read_path),
                    warnings=warns, row_numbers="rowid")
    if fmt == "parquet":
        header = list(engine.con.read_parquet(path).columns)
        mapping = _map_columns(header, source, kind)
        _sql.create_parquet_view(engine.con, view, str(path), columns=[(h, mapping[h]) for h in header])
    elif fmt == "jsonl":
        try:
            header = list(engine.con.read_json(path, format="newline_delimited").columns)
        except Exception as exc:  # DuckDB names the line; keep its words
            raise IngestError(f"not valid JSON lines: {str(exc).splitlines()[0]}", source=name,
                              path=str(path), hint="each line must be one JSON object") from None
        mapping = _map_columns(header, source, kind)
        _sql.create_jsonl_view(engine.con, view, str(path), columns=[(h, mapping[h]) for h in header])
        table = engine.con.table(view)
        if table.limit(1).count().execute() == 0:
            raise IngestError("the file has no data rows", source=name, path=str(path),
                              hint="export the data again, or remove this source from the params file")
        return _raw(source, fmt, table, header, mapping, row_numbers="rowid")
    elif fmt == "xlsx":
        sheet = source.get("sheet")
        try:
            frame = pd.read_excel(path, sheet_name=0 if sheet is None else sheet, dtype=str)
        except ValueError as exc:
            raise IngestError(f"cannot read the sheet: {exc}", source=name, path=str(path),
                              hint="set `sheet:` to an existing sheet name or 0-based index") from None
        header = [str(c) for c in frame.columns]
        mapping = _map_columns(header, source, kind)
        frame.columns = [mapping[h] for h in header]
        frame = frame.astype(object).where(frame.notna(), None)
        frame.insert(0, "_row_number", range(1, len(frame) + 1))
        table = engine.scratch(view, frame)
        if len(frame) == 0:
            raise IngestError("the sheet has a header but no data rows", source=name, path=str(path),
                              hint="check `sheet:` or export the data again")
        return _raw(source, fmt, table, header, mapping)
    else:
        raise IngestError(f"unknown format {fmt!r}", source=name, path=str(path),
                          hint="set `format:` to one of csv, tsv, parquet, jsonl, xlsx")
    table = engine.con.table(view)
    if table.count().execute() == 0:
        raise IngestError("the file has no data rows", source=name, path=str(path),
                          hint="export the data again, or remove this source from the params file")
    return _raw(source, fmt, table, header, mapping)


def _has_data_lines(path: Path) -> bool:
    """Whether anything but blank lines follows the header line (read without scanning the file)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
        rest = fh.read(1)
    body = head.split(b"\n", 1)[1] if b"\n" in head else b""
    return bool(body.strip()) or bool(rest)


def _raw(source: dict, fmt: str, table: ibis.Table, header: list[str], mapping: dict[str, str],
         **kw) -> RawSource:
    canon = set(CANONICAL_COLUMNS[source["kind"]])
    targets = [mapping[h] for h in header]
    return RawSource(
        name=source["name"], kind=source["kind"], path=str(source["path"]), format=fmt, table=table,
        canonical=[t for t in targets if t in canon], extras=[t for t in targets if t not in canon],
        file_columns=header, source=source, **kw)


def _format_from_suffix(path: Path) -> str | None:
    return {".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet",
            ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".xlsx": "xlsx",
            ".xlsm": "xlsx"}.get(path.suffix.lower())


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = n.lower()
        seen[k] = seen.get(k, 0) + 1
        out.append(n if seen[k] == 1 else f"{n}_{seen[k]}")
    return out


def _normal(name: str) -> str:
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def _map_columns(header: list[str], source: dict, kind: str) -> dict[str, str]:
    """File column -> view column: the params mapping, then same-name canonical columns, else itself."""
    canonical = CANONICAL_COLUMNS[kind]
    explicit = {str(k).strip(): v for k, v in (source.get("columns") or {}).items()}
    stripped = {h: h.strip().lstrip("\ufeff") for h in header}
    unknown = [k for k in explicit if k not in stripped.values()]
    if unknown:
        raise IngestError(
            f"the columns mapping names {', '.join(map(repr, unknown))}, which the file does not have "
            f"(its columns: {', '.join(header)})", source=source["name"], path=str(source["path"]),
            column=unknown[0], hint="fix the left-hand side of `columns:` to match the file's header exactly")
    mapping: dict[str, str] = {}
    for h in header:
        s = stripped[h]
        if s in explicit:
            mapping[h] = explicit[s]
        elif _normal(s) in canonical and _normal(s) not in explicit.values():
            mapping[h] = _normal(s)
        else:
            mapping[h] = s or f"column{header.index(h) + 1}"
    targets = list(mapping.values())
    clash = sorted({t for t in targets if targets.count(t) > 1})
    if clash:
        raise IngestError(f"more than one file column maps to {', '.join(clash)}", source=source["name"],
                          path=str(source["path"]), column=clash[0],
                          hint="map only one file column to each canonical column in `columns:`")
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in targets]
    if kind in ("events", "touchpoints") and not ({"source_customer_id", "anonymous_id"} & set(targets)):
        missing.append("source_customer_id or anonymous_id")
    if missing:
        unmapped = [h for h in header if mapping[h] not in canonical]
        suggestion = {}
        for m in missing:
            close = difflib.get_close_matches(m.split(" ")[0], [_normal(u) for u in unmapped], n=1, cutoff=0.3)
            pick = next((u for u in unmapped if close and _normal(u) == close[0]), unmapped[0] if unmapped else "<file column>")
            suggestion[pick] = m.split(" ")[0]
        example = "{" + ", ".join(f"{k}: {v}" for k, v in suggestion.items()) + "}"
        glued = next((d for d in (";", "\t", "|", ",") if len(header) == 1 and d in header[0]), None)
        if glued:
            raise IngestError(
                f"the header is one column {header[0]!r}: the file looks delimited by {glued!r}, so required "
                f"{kind} column(s) {', '.join(map(repr, missing))} were not found",
                source=source["name"], path=str(source["path"]), column=missing[0],
                hint=f"set `delimiter: {glued!r}` for this source")
        raise IngestError(
            f"required {kind} column(s) {', '.join(map(repr, missing))} missing: neither in the file nor "
            f"mapped. The file's columns are: {', '.join(header)}",
            source=source["name"], path=str(source["path"]), column=missing[0],
            hint=f"add a mapping from the file's column to the canonical name under this source, e.g. "
                 f"`columns: {example}`")
    return mapping


def _read_header(path: Path, delimiter: str, *, source: str, original: Path, encoding: str) -> list[str]:
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the 1 MiB boundary
            first_line = head.split(b"\n", 1)[0]
            if exc.start <= len(first_line):
                raise _decode_error(original, encoding, head, exc.start, source=source, row=None,
                                    line=1) from None
        text = head[: exc.start].decode("utf-8-sig")
    try:
        header = next(csv.reader(io.StringIO(text), delimiter=delimiter))
    except StopIteration:
        header = []
    if not any(h.strip() for h in header):
        raise IngestError("the first line (the header) is empty", source=source, path=str(original), row=0,
                          hint="the file needs a header row naming its columns")
    return header


def suggest_encoding(sample: bytes, exclude: str | None = None) -> str | None:
    """The first of :data:`ENCODING_CANDIDATES` that decodes ``sample`` strictly (UTF-16 only with a BOM)."""
    excluded = codecs.lookup(exclude).name if exclude else None
    for enc in ENCODING_CANDIDATES:
        if codecs.lookup(enc).name == excluded:
            continue
        if enc == "utf-16" and not sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            continue
        if enc == "latin-1" and excluded in ("gbk", "gb18030", "big5", "shift_jis"):
            continue  # everything decodes as Latin-1; it is no advice for a CJK export
        try:
            sample.decode(enc)
            return enc
        except UnicodeDecodeError as exc:
            if enc != "utf-16" and exc.start >= len(sample) - 3:  # a character cut at the sample's end
                try:
                    sample[: exc.start].decode(enc)
                    return enc
                except UnicodeDecodeError:
                    pass
    return None


def _decode_error(path: Path, encoding: str, data: bytes, pos: int, *, source: str, row: int | None,
                  line: int | None, offset: int = 0, delimiter: str = ",", header: list[str] | None = None,
                  sample: bytes | None = None) -> IngestError:
    """An IngestError for bytes at ``data[pos]`` that are not ``encoding``."""
    start = data.rfind(b"\n", 0, pos) + 1
    column = None
    if header:
        prefix = data[start:pos].decode(encoding, errors="replace")
        fields = next(csv.reader(io.StringIO(prefix), delimiter=delimiter), [""])
        if 0 < len(fields) <= len(header):
            column = header[len(fields) - 1]
    bad = data[pos: pos + 4].hex(" ")
    guess = suggest_encoding(sample if sample is not None else data, exclude=encoding)
    hint = (f"set `encoding: {guess}` for this source (the file decodes as {guess})" if guess
            else "find the encoding the exporting system used and set `encoding:` for this source")
    return IngestError(
        f"text is not valid {encoding}: bytes {bad} at byte {offset + pos} (line {line} of the file)",
        source=source, path=str(path), row=row, column=column, hint=hint)


def transcode_to_utf8(path: str | Path, encoding: str, out: str | Path, *, source: str = "",
                      delimiter: str = ",") -> Path:
    """Stream ``path`` from ``encoding`` into a UTF-8 file ``out`` (4 MiB chunks); return ``out``.

    Raises
    ------
    IngestError
        At the first undecodable byte: its byte offset, file line, data row and column, and an encoding
        that decodes the file's first MiB plus the bad spot, when one of the candidates does.
    """
    path, out = Path(path), Path(out)
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    header: list[str] | None = None
    offset, lines = 0, 0
    with open(path, "rb") as src, open(out, "w", encoding="utf-8", newline="") as dst:
        first = True
        while True:
            chunk = src.read(_CHUNK)
            final = not chunk
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError as exc:
                # exc.start is relative to the decoder's buffered input + this chunk; re-decode the
                # chunk alone to place it (the decoder buffers at most a few bytes).
                pos = _first_bad(chunk, encoding)
                if header is None and offset == 0:
                    first_line = chunk.split(b"\n", 1)[0].decode(encoding, errors="replace").lstrip("\ufeff")
                    header = next(csv.reader(io.StringIO(first_line), delimiter=delimiter), None)
                line = lines + chunk.count(b"\n", 0, pos) + 1
                with open(path, "rb") as fh:
                    sample = fh.read(1 << 20)
                sample = sample + b"\n" + chunk[max(0, pos - 2048): pos + 2048]
                raise _decode_error(path, encoding, chunk, pos, source=source, row=line - 1, line=line,
                                    offset=offset, delimiter=delimiter, header=header,
                                    sample=sample) from None
            if first:
                text = text.lstrip("\ufeff")
                if text:
                    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0]), delimiter=delimiter), None)
                first = False
            dst.write(text)
            lines += chunk.count(b"\n")
            offset += len(chunk)
            if final:
                break
    return out


def _first_bad(chunk: bytes, encoding: str) -> int:
    try:
        chunk.decode(encoding)
    except UnicodeDecodeError as exc:
        return exc.start
    return 0


def rejected_rows(engine: Engine, raw: RawSource) -> list[tuple[int, str, str]]:
    """Lines DuckDB could not split into the header's fields, after ``raw.table`` has been scanned.

    Returns ``(row_number, reason, raw line)`` triples (row number = file line - 1, exact when no
    quoted field spans lines). Raises :class:`IngestError` for bytes that are not UTF-8 (a wrong
    ``encoding:``), with the position and a suggested encoding.
    """
    if raw.rejects_table is None:
        return []
    rejects = _sql.csv_rejects(engine.con, raw.rejects_table)
    bad_text = [r for r in rejects if r[1] == "INVALID ENCODING"]
    if bad_text:
        line = bad_text[0][0]
        data = Path(raw.read_path or raw.path).read_bytes() if Path(raw.read_path or raw.path).stat().st_size < (64 << 20) else None
        if data is None:
            with open(raw.read_path or raw.path, "rb") as fh:
                data = fh.read(64 << 20)
        starts = [0]
        idx = -1
        for _ in range(line - 1):
            idx = data.find(b"\n", idx + 1)
            if idx < 0:
                break
            starts.append(idx + 1)
        lo = starts[-1]
        hi = data.find(b"\n", lo)
        hi = len(data) if hi < 0 else hi
        pos = lo + _first_bad(data[lo:hi], "utf-8")
        enc = raw.source.get("encoding") or "utf-8"
        raise _decode_error(Path(raw.path), enc, data, pos, source=raw.name, row=line - 1, line=line,
                            delimiter=raw.source.get("delimiter") or ("\t" if raw.format == "tsv" else ","),
                            header=raw.file_columns, sample=data[: 1 << 20] + b"\n" + data[lo:hi])
    reasons = {"TOO MANY COLUMNS": "malformed_row:too_many_fields",
               "MISSING COLUMNS": "malformed_row:too_few_fields"}
    return [(line - 1, reasons.get(kind, "malformed_row:" + kind.lower().replace(" ", "_")), text)
            for line, kind, text, _col in rejects]
